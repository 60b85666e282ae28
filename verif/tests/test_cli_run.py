"""`openmaia run gemm` on the golden and rtl backends: quantize, compile, run, check bit-exact;
``make_backend("fpga")``."""

import json

import pytest
from openmaia.cli import main


def test_run_gemm_golden_json(capsys):
    assert main(["run", "gemm", "--m", "9", "--n", "13", "--k", "70", "--a-fmt", "e4m3",
                 "--b-fmt", "e2m1", "--config", "small", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["backend"] == "golden"
    assert report["macs"] == 9 * 13 * 96          # K padded to whole 32-element blocks


@pytest.mark.sim
@pytest.mark.slow       # its own tile build and elaboration: 555 s in the stop-14 CI run
def test_run_gemm_rtl_text_report(capsys):
    """On the small tile under Verilator: bit-exact, with cycles, MAC utilization and the bytes
    moved from the backend's own counters (HBM bus bytes) in the text report."""
    assert main(["run", "gemm", "--m", "8", "--n", "8", "--k", "64", "--config", "small",
                 "--backend", "rtl"]) == 0
    out = capsys.readouterr().out
    assert "bit-exact" in out and "MAC utilization" in out
    moved = out.split("bytes moved")[1].split("(intensity")[0].split()
    assert int(moved[0]) > 0 and int(moved[2]) > 0, out


def test_make_backend_fpga_without_a_port_is_the_simulated_board(monkeypatch):
    from openmaia.config import get_config
    from openmaia.sdk.fpga import FpgaBackend, SimulatedBoard
    from openmaia.sdk.run import make_backend
    monkeypatch.delenv("OPENMAIA_FPGA_PORT", raising=False)
    device = make_backend("fpga", get_config("ice40"), hbm_bytes=1000)
    assert isinstance(device, FpgaBackend) and isinstance(device.transport, SimulatedBoard)
    assert device.hbm_bytes == 1000 and device.memory_bytes == 4096   # nothing started yet
