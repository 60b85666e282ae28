"""``openmaia report`` (openmaia.sdk.report): the utilization arithmetic on synthetic rtl-style
counters, the golden case without cycles, the balance table, the roofline PNG and the CLI."""

import json

import pytest
from openmaia.cli import main
from openmaia.config import PRESETS, get_config
from openmaia.sdk.report import (
    ENGINES,
    balance,
    balance_table,
    breakdown,
    load_runs,
    peak_hbm_bytes_per_cycle,
    report,
    roofline_png,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rtl_counters(cycles=1000, **changes):
    """A synthetic counter set under the names of docs/sdk.md, each a distinct value."""
    counters = {"cycles": cycles, "macs": 8000, "dma_bytes_read": 6000, "dma_bytes_written": 2000}
    for i, (_, items) in enumerate(ENGINES.items()):
        for j, (_, name) in enumerate(items):
            counters[name] = 100 * (i + 1) + 10 * j
    counters.update(changes)
    return counters


def _gemm_record(counters, a_fmt="E4M3", b_fmt="E4M3", config="small", backend="rtl"):
    return {"config": config, "backend": backend, "m": 4, "n": 5, "k": 64, "a_fmt": a_fmt,
            "b_fmt": b_fmt, "macs": counters.get("macs", 0), "counters": counters}


def test_peak_hbm_bandwidth_and_balance():
    assert [peak_hbm_bytes_per_cycle(n) for n in ("small", "default", "ice40", "ulx3s")] == \
        [16, 32, 4, 8]
    # an HBM pseudo-channel behind a narrower port: the port limits; a wider one: 16 B
    assert peak_hbm_bytes_per_cycle(get_config("small").replace(axi_data_bits=64)) == 8
    assert peak_hbm_bytes_per_cycle(get_config("small").replace(axi_data_bits=512,
                                                                hbm_pseudo_channels=4)) == 64
    assert balance("default", "e4m3", "e4m3") == 1024 / 32
    assert balance("default", "e2m1", "e2m1") == 2048 / 32
    assert balance("small", "e4m3", "e2m1") == 1.0
    table = balance_table()
    assert table.count("\n") == 1 + len(PRESETS)
    assert "| default | 1600 | 32 | 1,024, 32 | 1,024, 32 | 2,048, 64 |" in table
    assert "| ulx3s | 75 | 8 | 256, 32 | 256, 32 | 512, 64 |" in table
    assert "| ulx3s-fit | 25 | 4 | 16, 4 | 16, 4 | 32, 8 |" in table


def test_utilization_arithmetic_exact():
    """small: 16 FP8 MACs a cycle, 16 HBM bytes a cycle. 8,000 MACs in 1,000 cycles = 0.5;
    8,000 bytes = 8 a cycle = 0.5 of peak; intensity 1 MAC/B; shares counter / cycles."""
    b = breakdown(load_runs(_gemm_record(_rtl_counters()))[0])
    assert b["cycles"] == 1000 and b["peak_macs_per_cycle"] == 16
    assert b["mac_utilization"] == 0.5
    assert b["hbm_bytes"] == 8000 and b["hbm_bytes_per_cycle"] == 8.0
    assert b["hbm_bandwidth_utilization"] == 0.5
    assert b["arithmetic_intensity"] == 1.0 and b["balance"] == 1.0
    assert b["seconds"] == 1000 / 1.6e9
    assert b["macs_per_second"] == pytest.approx(8000 / (1000 / 1.6e9))
    assert b["engines"]["ttu"]["busy"] == {"counter": "ttu_busy", "cycles": 100, "share": 0.1}
    assert b["engines"]["dma"]["stalled on TSRAM"]["share"] == 0.22
    assert b["engines"]["tcp"]["no command (input stall)"]["cycles"] == 420
    assert b["notes"] == []
    # FP4 x FP4 has twice the peak (32): 16,000 MACs in 1,000 cycles are half of it
    b4 = breakdown(load_runs(_gemm_record(_rtl_counters(cycles=1000, macs=16000),
                                          "E2M1", "E2M1"))[0])
    assert b4["peak_macs_per_cycle"] == 32 and b4["mac_utilization"] == 0.5
    assert b4["balance"] == 2.0


def test_missing_counters_are_named_not_invented():
    counters = _rtl_counters()
    del counters["tvp_stall_output"], counters["tcp_busy"]
    b = breakdown(load_runs(_gemm_record(counters))[0])
    assert "stalled on output" not in b["engines"]["tvp"]
    assert "tvp_stall_output" in b["notes"][0] and "tcp_busy" in b["notes"][0]


def test_counter_bytes_checked_against_the_program():
    """HBM byte counters that count every DMA byte twice (realigner in and out) are caught
    against the program's descriptors; matching ones give no note."""
    record = _gemm_record(_rtl_counters())
    record["program_bytes"] = {"read": 6000, "written": 2000}
    assert breakdown(load_runs(record)[0])["notes"] == []
    record["counters"].update(dma_bytes_read=8000, dma_bytes_written=8000)
    (note,) = breakdown(load_runs(record)[0])["notes"]
    assert "8,000 read, 8,000 written" in note and "6,000 read, 2,000 written" in note


def test_golden_run_has_no_time(capsys):
    """A real golden run: no cycles, so no utilization / rates / shares, and a note; MACs,
    bytes and intensity are the run's."""
    assert main(["run", "gemm", "--m", "8", "--n", "16", "--k", "64", "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    (b,) = report(run)
    assert b["cycles"] is None and b["mac_utilization"] is None and b["engines"] is None
    assert b["macs_per_second"] is None and b["hbm_bandwidth_utilization"] is None
    assert len(b["notes"]) == 1 and "no cycles" in b["notes"][0]     # the bytes agree
    assert run["program_bytes"] == {"read": run["bytes_in"], "written": run["bytes_out"]}
    assert b["macs"] == 8 * 16 * 64
    assert b["hbm_bytes_read"] == run["counters"]["dma_bytes_in"] == run["bytes_in"]
    assert b["hbm_bytes_written"] == 8 * 16 * 4
    assert b["arithmetic_intensity"] == run["arithmetic_intensity"]


def test_roofline_png_written(tmp_path):
    timed = breakdown(load_runs(_gemm_record(_rtl_counters()))[0])
    untimed = breakdown(load_runs(_gemm_record({"macs": 100, "dma_bytes_in": 50,
                                                "dma_bytes_out": 10}, backend="golden"))[0])
    other = breakdown(load_runs(_gemm_record(_rtl_counters(), config="default"))[0])
    out = roofline_png([timed, untimed, other], tmp_path / "roof.png")
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    with pytest.raises(ValueError, match="no runs"):
        roofline_png([], tmp_path / "empty.png")


def test_mlp_json_gives_one_breakdown_per_recipe():
    run = {"workload": "mlp-digits", "config": "small", "backend": "rtl", "runs": [
        {"recipe": "fp8", "a_fmt": "E4M3", "b_fmt": "E4M3", "counters": _rtl_counters()},
        {"recipe": "fp8xfp4", "a_fmt": "E4M3", "b_fmt": "E2M1",
         "counters": _rtl_counters(cycles=4000)}]}
    items = report(json.dumps(run))
    assert [b["name"] for b in items] == ["mlp-digits fp8", "mlp-digits fp8xfp4"]
    assert [b["mac_utilization"] for b in items] == [0.5, 0.125]


def test_cli(tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(_gemm_record(_rtl_counters())))
    png = tmp_path / "roof.png"
    assert main(["report", str(path), "--png", str(png), "--json"]) == 0
    (b,) = json.loads(capsys.readouterr().out)
    assert b["mac_utilization"] == 0.5
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert main(["report", str(path)]) == 0
    text = capsys.readouterr().out
    assert "MAC utilization" in text and "50.00%" in text and "ttu_stall_input" in text


def test_bad_input(tmp_path, capsys):
    with pytest.raises(ValueError, match="object"):
        load_runs("[1, 2]")
    with pytest.raises(ValueError, match="a_fmt"):
        load_runs({"config": "small", "b_fmt": "E4M3"})
    with pytest.raises(ValueError, match="not built"):
        breakdown(load_runs(_gemm_record({}, "E5M2", "E4M3", config="ice40"))[0])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"config": "nope", "a_fmt": "E4M3", "b_fmt": "E4M3"}))
    try:
        code = main(["report", str(path)])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2 and "unknown configuration" in capsys.readouterr().err
