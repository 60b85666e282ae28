"""Tile Tensor Unit: Amaranth-simulator unit tests of the control (sequencing, double buffering,
residency, errors, counters) and cocotb + Verilator random GEMM tiles, bit-exact to mx_matmul.

The Amaranth-simulator tests use a 2 x 2 array of 4-lane engines with E4M3 and E2M1 only (fast
to simulate); the cocotb tests run the ``small`` preset (every format) and, in the slow tier,
longer random runs and a 4 x 4 array of 16-lane engines.
"""

import numpy as np
import pytest

from openmaia.benches.dot_engine import all_pairs
from openmaia.benches.ttu import SHAPE_CLASSES, Workload
from openmaia.config import get_config
from openmaia.errors import ErrorCode
from openmaia.harness.amaranth_sim import run_streams
from openmaia.harness.elaborate import lint
from openmaia.harness.sim import simulate
from openmaia.harness.streams import pack, unpack
from openmaia.numerics.formats import Format
from openmaia.tile.ttu import TileTensorUnit, TtuCounters
from openmaia.tile.ttu_stream import (CRow, OperandBeat, TtuCommand, TtuEvent, TtuOp,
                                      beats_per_block, schedule)

SUBSET = frozenset({Format.E4M3, Format.E2M1})
GEOM = dict(rows=2, cols=2, lanes=4, slots=4, panel_blocks=4)


def _ttu(**kw):
    args = dict(GEOM, formats=SUBSET) | kw
    return TileTensorUnit(**args)


def _workload(**kw):
    args = dict(GEOM, formats=SUBSET) | kw
    return Workload(**args)


def _run(dut, wl, *, gap=0.0, stall=0.0, seed=0, budget=20_000):
    """Feed a workload through the DUT in the Amaranth simulator; check rows, events and
    counters; return (cycles of the run, counters)."""
    rows, cols, lanes = dut.rows, dut.cols, dut.lanes
    sources = {"cmd": [pack(TtuCommand, c) for c in wl.commands()],
               "a": [pack(OperandBeat.of(rows, lanes), x) for x in wl.all_a_beats()],
               "b": [pack(OperandBeat.of(cols, lanes), x) for x in wl.all_b_beats()]}
    want_rows, want_events = wl.all_rows(), wl.events()

    async def probe(ctx):
        return unpack(TtuCounters, ctx.get(dut.counters.as_value()))

    out, last, counters = run_streams(
        dut, sources=sources, sinks={"c": len(want_rows), "event": len(want_events)},
        gap=gap, stall=stall, seed=seed, budget=budget, probe=probe)
    got_rows = [unpack(CRow.of(cols), x) for x in out["c"]]
    got_events = [unpack(TtuEvent, x) for x in out["event"]]
    assert len(got_rows) == len(want_rows) and len(got_events) == len(want_events)
    for i, (g, w) in enumerate(zip(got_rows, want_rows, strict=True)):
        assert g == w, f"C row {i}: got {g}, expected {w}"
    assert got_events == want_events
    assert counters["macs"] == wl.macs()
    assert counters["beats"] == len(wl.all_b_beats())
    assert counters["ops"] == sum(s.status == 0 for s in wl.steps)
    assert counters["rejected"] == sum(s.status != 0 for s in wl.steps)
    return last, counters


# ---- the reference order -----------------------------------------------------------------

def test_schedule_pairs_n_tiles():
    op = TtuOp(m=3, n=5, k=2, fmt_a="e4m3", fmt_b="e4m3")
    order = schedule(op, rows=2, cols=2, lanes=16)     # 2 M tiles, 3 N tiles, 2 beats/block
    assert len(order) == 2 * 3 * 2 * 2
    first_pair = [(c.nt, c.kb, c.beat) for c in order[:8]]
    assert first_pair == [(0, 0, 0), (0, 0, 1), (1, 0, 0), (1, 0, 1),
                          (0, 1, 0), (0, 1, 1), (1, 1, 0), (1, 1, 1)]
    assert {(c.nt) for c in order[8:12]} == {2}
    assert beats_per_block("e2m1", "e2m1", 16) == 1
    assert beats_per_block("e4m3", "e2m1", 16) == 2


# ---- Amaranth simulator: control --------------------------------------------------------

@pytest.mark.parametrize("fa,fb", all_pairs(SUBSET), ids=lambda f: f.value)
def test_one_op_per_pair(fa, fb, seed):
    rng = np.random.default_rng(seed)
    wl = _workload()
    wl.add(TtuOp(m=3, n=3, k=2, fmt_a=fa, fmt_b=fb, tag=7), rng)
    _run(_ttu(), wl, gap=0.2, stall=0.2, seed=seed)


def test_shapes_and_residency(seed):
    """Every shape class, with gaps and backpressure."""
    rng = np.random.default_rng(seed)
    wl = _workload()
    for i, cls in enumerate(SHAPE_CLASSES):
        fa, fb = all_pairs(SUBSET)[i % 4]
        wl.add_class(rng, cls, fa, fb, max_tiles=2)
    _run(_ttu(), wl, gap=0.3, stall=0.3, seed=seed, budget=60_000)


def test_illegal_commands_and_recovery(seed):
    """Each illegal command gets its error event, consumes no operands, and the next command
    runs normally."""
    rng = np.random.default_rng(seed)
    wl = _workload()
    ok = dict(fmt_a="e4m3", fmt_b="e2m1")
    bad = [TtuOp(m=0, n=2, k=1, **ok), TtuOp(m=2, n=0, k=1, **ok), TtuOp(m=2, n=2, k=0, **ok),
           TtuOp(m=2, n=2, k=5, **ok),                       # K > panel_blocks
           TtuOp(m=2, n=2, k=1, fmt_a="e5m2", fmt_b="e4m3"),  # format not built
           TtuOp(m=2, n=2, k=1, fmt_a="e4m3", fmt_b="int8"),
           TtuOp(m=6, n=4, k=1, keep=True, **ok)]             # 6 tiles > 4 slots
    want = [ErrorCode.ILLEGAL_SHAPE] * 4 + [ErrorCode.FORMAT_NOT_BUILT] * 2 \
        + [ErrorCode.ILLEGAL_SHAPE]
    for i, op in enumerate(bad):
        wl.add(TtuOp(m=2, n=2, k=1, **ok, tag=100 + i), rng)
        wl.add(TtuOp(**{**op.__dict__, "tag": i}), rng)
    wl.add(TtuOp(m=3, n=3, k=2, **ok, tag=99), rng)
    assert [s.status for s in wl.steps[1::2]] == want
    _, counters = _run(_ttu(), wl, gap=0.2, stall=0.2, seed=seed)
    assert counters["rejected"] == len(bad)


def test_back_to_back_is_gap_free():
    """Operands always available, C always taken: back-to-back operations (K = 4 blocks, 2 N
    tiles each) keep the array busy every cycle after the first panel loads; the panel of the
    next operation loads while this one computes."""
    rng = np.random.default_rng(1)
    wl = _workload()
    for i in range(4):
        wl.add(TtuOp(m=4, n=4, k=4, fmt_a="e4m3", fmt_b="e4m3", tag=i), rng)
    cycles, counters = _run(_ttu(), wl)
    beats = len(wl.all_b_beats())
    assert counters["beats"] == beats
    # the only bubbles: loading the first panel (K x 8 beats) and the pipeline drain
    first_panel = 4 * 8
    assert counters["stall_input"] <= first_panel + 4
    assert counters["stall_output"] == 0
    assert cycles <= beats + first_panel + 40


def test_fp4_runs_twice_the_macs_per_beat():
    rng = np.random.default_rng(2)
    for fmts, want_beats in ((("e4m3", "e4m3"), 8), (("e2m1", "e2m1"), 4)):
        wl = _workload()
        wl.add(TtuOp(m=2, n=2, k=1, fmt_a=fmts[0], fmt_b=fmts[1]), rng)
        _, counters = _run(_ttu(), wl)
        assert counters["beats"] == want_beats and counters["macs"] == 2 * 2 * 32


def test_output_backpressure_counts_stalls(seed):
    rng = np.random.default_rng(seed)
    wl = _workload()
    wl.add(TtuOp(m=4, n=8, k=1, fmt_a="e2m1", fmt_b="e2m1"), rng)
    _, counters = _run(_ttu(), wl, stall=0.8, seed=seed, budget=40_000)
    assert counters["stall_output"] > 0
    assert counters["busy"] >= counters["beats"] + counters["stall_output"]


def test_engine_fault_is_caught(seed):
    """A broken engine in the array (lane 0 of engine (0, 0) stuck at zero) fails the
    scoreboard."""
    rng = np.random.default_rng(seed)
    wl = _workload()
    wl.add(TtuOp(m=2, n=2, k=2, fmt_a="e4m3", fmt_b="e4m3"), rng, special=0.0)
    with pytest.raises(AssertionError, match="C row"):
        _run(_ttu(engine_faults={"lane_stuck_zero"}), wl)


def test_parameter_checks():
    with pytest.raises(ValueError, match="rows"):
        _ttu(rows=3)
    with pytest.raises(ValueError, match="slots"):
        _ttu(slots=1)
    with pytest.raises(ValueError, match="panel_blocks"):
        _ttu(panel_blocks=0)
    t = TileTensorUnit.from_config(get_config("default"))
    assert (t.rows, t.cols, t.lanes, t.slots, t.panel_blocks) == (8, 8, 16, 8, 64)
    assert t.peak_macs_per_cycle("e2m1", "e2m1") == 2 * t.peak_macs_per_cycle("e4m3", "e4m3")


def test_lint_small():
    lint(TileTensorUnit.from_config(get_config("small")), name="ttu_small")


# ---- cocotb + Verilator --------------------------------------------------------------------

def _bench(config, *, ops, seed, gap=0.3, stall=0.3, coverage=True, name=None, **kw):
    ttu = TileTensorUnit.from_config(config)
    params = dict(rows=ttu.rows, cols=ttu.cols, lanes=ttu.lanes, slots=ttu.slots,
                  panel_blocks=ttu.panel_blocks, formats=list(config.format_names),
                  fp4_double_rate=ttu.double_rate, ops=ops, gap=gap, stall=stall,
                  coverage=coverage, **kw)
    return simulate(ttu, bench="openmaia.benches.ttu", name=name or f"ttu_{config.name}",
                    params=params, testcase="random_ops", seed=seed)


@pytest.mark.sim
def test_cocotb_random_small(seed):
    """Random GEMM tiles on the small preset (all six formats, 36 pairs), every pair x shape
    class covered, gaps and backpressure on every stream."""
    _bench(get_config("small"), ops=190, seed=seed, max_tiles=2, name="ttu")


@pytest.mark.sim
@pytest.mark.slow
def test_cocotb_random_small_long(seed):
    _bench(get_config("small"), ops=1500, seed=seed, max_tiles=3, name="ttu")


@pytest.mark.sim
@pytest.mark.slow
def test_cocotb_random_ulx3s_shape(seed):
    """A 4 x 4 array of 16-lane {E4M3, E2M1} engines (the ulx3s preset)."""
    _bench(get_config("ulx3s").replace(ttu_panel_blocks=4), ops=120, seed=seed, max_tiles=2)


def test_one_by_one_array(seed):
    """The ice40 shape: a single engine (1 x 1 array, 2 accumulators)."""
    rng = np.random.default_rng(seed)
    geom = dict(rows=1, cols=1, lanes=4, slots=2, panel_blocks=2)
    wl = _workload(**geom)
    wl.add(TtuOp(m=2, n=3, k=2, fmt_a="e4m3", fmt_b="e2m1", tag=1), rng)
    wl.add(TtuOp(m=1, n=2, k=1, fmt_a="e2m1", fmt_b="e2m1", keep=True, tag=2), rng)
    _run(_ttu(**geom), wl, gap=0.2, stall=0.2, seed=seed)
