"""`openmaia run gemm` on the golden backend: quantize, compile, run, check bit-exact."""

import json

from openmaia.cli import main


def test_run_gemm_golden_json(capsys):
    assert main(["run", "gemm", "--m", "9", "--n", "13", "--k", "70", "--a-fmt", "e4m3",
                 "--b-fmt", "e2m1", "--config", "small", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["backend"] == "golden"
    assert report["macs"] == 9 * 13 * 96          # K padded to whole 32-element blocks


def test_run_gemm_fpga_backend_is_refused_with_a_reason(capsys):
    try:
        code = main(["run", "gemm", "--m", "4", "--n", "4", "--k", "32", "--backend", "fpga"])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    assert "board" in capsys.readouterr().err
