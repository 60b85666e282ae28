"""The verification harness: lint waivers, cached and locked builds, seeds, waves, Icarus,
coverage and the command line."""

import json
import multiprocessing
import os

import pytest

from openmaia.cli import main
from openmaia.config import get_config
from openmaia.harness import LintError, elaborate, lint, simulate
from openmaia.harness.coverage import Coverage, CoverageReport
from openmaia.harness.toolchain import VERILATOR_WAIVERS, waiver_config_text
from openmaia.tops import TOPS, get_top

DECODER = get_top("element-decoder")


def _decoder(config="small", **params):
    config = get_config(config)
    decoder = DECODER.build(config)
    return decoder, DECODER.bench_params(config, decoder) | params


def test_waivers_are_exactly_the_generated_code_ones():
    assert set(VERILATOR_WAIVERS) == {"WIDTHEXPAND", "UNUSEDSIGNAL", "PROCASSINIT",
                                      "DECLFILENAME"}
    text = waiver_config_text()
    assert text.startswith("`verilator_config")
    assert text.count("lint_off") == len(VERILATOR_WAIVERS) + 1


# The TTU of the big presets takes minutes to elaborate (64 / 16 engines of 16 lanes); the
# 16-lane vector ALU about a minute (its 4-lane build is linted in the default tier); the tile
# holds the TTU engine (its `small` lint, about 130 s, is in the slow tier too: its blocks are
# linted on `small` in the default tier and test_tile.py builds it with Verilator).
_BIG = {("ttu", "default"), ("ttu", "ulx3s"), ("ttu-engine", "default"), ("ttu-engine", "ulx3s"),
        ("vector-alu", "default"), ("vector-alu", "ulx3s"), ("tile", "default"),
        ("tile", "ulx3s"), ("tile", "ice40"), ("tvp", "default"), ("tvp", "ulx3s"),
        ("tile", "small")}


@pytest.mark.parametrize("top, config", [
    pytest.param(top, config, marks=[pytest.mark.slow] if (top, config) in _BIG else [])
    for top in sorted(TOPS) for config in ["small", "default", "ice40", "ulx3s"]
    if TOPS[top].builds_for(get_config(config))])
def test_every_registered_top_is_lint_clean(top, config):
    entry = get_top(top)
    lint(entry.build(get_config(config)), name=entry.module_name)


@pytest.mark.parametrize("verilog, rule", [
    ("module bad(input [3:0] a, output [1:0] y); assign y = a; endmodule", "WIDTHTRUNC"),
    ("module bad(input a, output y); wire w; assign y = a & w; endmodule", "UNDRIVEN"),
    ("module bad(input a, output y); assign y = a; always @* begin end endmodule", "ALWNEVER"),
])
def test_lint_keeps_every_other_warning_fatal(verilog, rule):
    with pytest.raises(LintError, match=rule):
        lint(verilog + "\n", name="bad")


def test_lint_waives_only_the_logical_not_truncation():
    text = ("module bad(input [3:0] a, input [3:0] b, output y, output [1:0] z);\n"
            "assign y = !a; assign z = b[1:0]; endmodule\n")
    lint(text, name="bad")
    with pytest.raises(LintError, match="WIDTHTRUNC"):
        lint(text.replace("b[1:0]", "b"), name="bad")


@pytest.mark.slow      # a private cold build of the decoder (about 90 s); CI budget
def test_cached_build_and_exact_seed(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENMAIA_BUILD_DIR", str(tmp_path))
    component, params = _decoder()
    first = simulate(component, bench=DECODER.bench, name="decoder", params=params, seed=1234)
    again = simulate(_decoder()[0], bench=DECODER.bench, name="decoder", params=params,
                     seed=1234)
    assert first.passed and again.passed
    assert not first.build_cached and again.build_cached
    assert again.build_seconds < first.build_seconds
    for result in (first, again):
        assert result.seed == 1234
        assert "Seeding Python random module with 1234" in result.log_file.read_text()
    assert first.run_dir != again.run_dir


def _simulate_in_process(build_dir, queue):
    os.environ["OPENMAIA_BUILD_DIR"] = build_dir
    component, params = _decoder()
    result = simulate(component, bench=DECODER.bench, name="decoder", params=params,
                      check=False)
    queue.put((result.passed, result.build_cached))


@pytest.mark.slow      # two processes racing for one private cold build; CI budget
def test_parallel_runs_share_one_locked_build(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_simulate_in_process, args=(str(tmp_path), queue))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    assert all(passed for passed, _ in results)
    assert sorted(cached for _, cached in results) == [False, True]
    assert len(list(tmp_path.glob("decoder-verilator-*/build.done"))) == 1


def test_failing_bench_is_reported_with_its_seed():
    from openmaia.compute.element_decoder import ElementDecoder
    config = get_config("small")
    component = ElementDecoder(formats=config.formats, lanes=config.lanes, faults={"int8_min"})
    params = DECODER.bench_params(config, component)
    result = simulate(component, bench=DECODER.bench, name="decoder_int8_min", params=params,
                      check=False)
    assert not result.passed and result.failed >= 1
    with pytest.raises(AssertionError, match=f"seed {result.seed}"):
        result.check()


@pytest.mark.slow      # a private wave build of the decoder (about 85 s); CI budget
def test_vcd_waves(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENMAIA_BUILD_DIR", str(tmp_path))
    component, params = _decoder()
    result = simulate(component, bench=DECODER.bench, name="decoder", params=params,
                      testcase="full_rate", waves="vcd")
    assert result.waves_file is not None and result.waves_file.suffix == ".vcd"
    assert "$enddefinitions" in result.waves_file.read_text(errors="replace")[:100_000]


@pytest.mark.slow
def test_fst_waves(tmp_path, monkeypatch, fst):
    monkeypatch.setenv("OPENMAIA_BUILD_DIR", str(tmp_path))
    component, params = _decoder()
    result = simulate(component, bench=DECODER.bench, name="decoder", params=params,
                      testcase="full_rate", waves="fst")
    assert result.waves_file is not None and result.waves_file.suffix == ".fst"


def test_icarus(icarus):
    component, params = _decoder()
    result = simulate(component, bench=DECODER.bench, name="decoder", params=params,
                      simulator=icarus)
    assert result.passed and result.simulator == "icarus"


def test_coverage_model_reports_missing_bins():
    model = Coverage("harness_selftest", fmt=["e4m3", "e2m1"], special=["nan", "zero"])
    model.sample(fmt="e4m3", special="nan")
    model.sample(fmt="e2m1", special="zero")
    model.sample(fmt="e2m1", special="not-a-bin")
    report = model.report()
    assert ("openmaia.harness_selftest.fmt_x_special", "('e4m3', 'zero')") in report.missing()
    with pytest.raises(AssertionError, match="2 coverage bins not hit"):
        report.assert_complete()
    model.sample(fmt="e4m3", special="zero")
    model.sample(fmt="e2m1", special="nan")
    model.report().assert_complete()
    assert model.report().percentage() == 100.0


def test_coverage_reports_merge_and_round_trip(tmp_path):
    from openmaia.harness.coverage import export
    model = Coverage("harness_merge", kind=["a", "b"])
    model.sample(kind="a")
    path = export(tmp_path / "coverage.yml")
    loaded = CoverageReport.load(path)
    assert loaded.items["openmaia.harness_merge.kind"] == {"a": 1, "b": 0}
    other = CoverageReport({"openmaia.harness_merge.kind": {"a": 0, "b": 3}})
    loaded.merge(other).assert_complete()
    with pytest.raises(AssertionError, match="no coverage"):
        CoverageReport().assert_complete()


def test_coverage_is_exported_by_benches():
    component, params = _decoder()
    result = simulate(component, bench=DECODER.bench, name="decoder", params=params)
    assert result.coverage is not None
    result.coverage.assert_complete()


def test_cli_config_and_elaborate(tmp_path, capsys):
    assert main(["config", "small", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["name"] == "small" and summary["fp4_macs_per_cycle"] == 32
    out = tmp_path / "decoder.v"
    assert main(["elaborate", "element-decoder", "--config", "small", "-o", str(out),
                 "--lint"]) == 0
    assert out.read_text() == elaborate(_decoder()[0], name="element_decoder")
    with pytest.raises(SystemExit):
        main(["elaborate", "no-such-top", "-o", str(out)])


def test_cli_selfcheck_of_chosen_tops(capsys):
    """The default tier: two small blocks through `selfcheck --top` (every top has its own tests
    besides; the tile's in test_tile.py, the self-check of all tops in the slow tier)."""
    assert main(["selfcheck", "--config", "small", "--top", "onchip-memory", "--top", "tcp",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and [row["top"] for row in report["tops"]] == ["tcp",
                                                                           "onchip-memory"]
    with pytest.raises(SystemExit, match="unknown top"):
        main(["selfcheck", "--config", "small", "--top", "no-such-top"])


@pytest.mark.slow
def test_cli_selfcheck(capsys):
    assert main(["selfcheck", "--config", "small", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and {row["top"] for row in report["tops"]} == set(TOPS)
    assert all(row["result"] == "PASS" for row in report["tops"])


def test_elaboration_is_the_same_in_every_process():
    """Builds are cached by a hash of the Verilog, so elaboration must not depend on Python's
    per-process hash randomization (it did once: sets of formats iterated in hash order)."""
    import subprocess
    import sys
    code = ("from openmaia.compute.dot_engine import MxDotEngine;"
            "from openmaia.harness.elaborate import elaborate, verilog_digest;"
            "from openmaia.config import get_config;"
            "print(verilog_digest(elaborate(MxDotEngine(formats=get_config('small').formats,"
            " lanes=1), name='x')))")
    digests = {subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                              text=True, env={**__import__("os").environ,
                                              "PYTHONHASHSEED": str(s)}).stdout
               for s in (1, 2, 3)}
    assert len(digests) == 1


def test_identical_submodules_are_merged():
    """deduplicate_rtlil: three identical decoders become one module, a different one stays."""
    import re

    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from openmaia.compute.element_decoder import ElementDecoder
    from openmaia.numerics.formats import Format

    class Four(wiring.Component):
        def __init__(self):
            self.decs = [ElementDecoder(formats={Format.E4M3}, lanes=1) for _ in range(3)]
            self.decs.append(ElementDecoder(formats={Format.E2M1}, lanes=1))
            super().__init__({"i": In(len(self.decs)), "o": Out(len(self.decs))})

        def elaborate(self, platform):
            m = Module()
            for n, dec in enumerate(self.decs):
                m.submodules[f"dec{n}"] = dec
                m.d.comb += [dec.i.valid.eq(self.i[n]), dec.o.ready.eq(1),
                             self.o[n].eq(dec.o.valid)]
            return m

    text = elaborate(Four(), name="four")
    modules = re.findall(r"^module (\S+)", text, re.M)
    assert len(modules) == 3, modules          # top, the E4M3 decoder, the E2M1 decoder
    assert len(re.findall(r"^  \\four\.dec0 +dec[0-2] \($", text, re.M)) == 3
    lint(text, name="four")


def test_vector_unit_tops_only_where_a_vector_unit_is_built(capsys):
    tvp, ice40 = get_top("tvp"), get_config("ice40")
    assert not ice40.vector_unit and get_config("small").vector_unit
    assert not tvp.builds_for(ice40) and tvp.builds_for(get_config("small"))
    assert get_top("tile").builds_for(ice40)
    with pytest.raises(ValueError, match="no vector unit"):
        tvp.build(ice40)
    assert main(["lint", "--config", "ice40", "tvp"]) == 0
    assert "tvp: not built in ice40 (no vector unit)" in capsys.readouterr().out
