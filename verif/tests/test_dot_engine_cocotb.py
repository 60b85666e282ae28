"""MX dot engine under Verilator through cocotb, bit-exact to openmaia.numerics.

The bench is :mod:`openmaia.benches.dot_engine` (driver, monitor, reference, scoreboard,
coverage). Every test here builds the engine once per configuration: builds are cached by
Verilog hash, so all default-tier tests of the small engine share one Verilator build, and each
fault variant has its own.

Default tier (``pytest -n 2``): on the small preset engine (every format, 4 lanes, 4 slots),
every code pair of three cheap format pairs and 1,024 random code pairs of every pair, the scale
sweep over the edge rows and columns, 200 random dot products per format pair with gaps and
backpressure and complete coverage, and the cycle count of every pair.

Slow tier (``-m slow``): every code pair of every format pair (831,744 single products, in
chunks), every pair of the 256 x 256 scale codes, 10,000 random dot products per format pair with
complete coverage, the mutation check (each of the engine's six faults fails a short random /
directed run of this bench), the {E4M3, E2M1} engine, and 16-lane / 1-lane configurations.
"""

import pytest

from openmaia.benches.dot_engine import (all_pairs, coverage_bins, exhaustive_total,
                                         pair_name)
from openmaia.compute.dot_engine import FAULTS, MxDotEngine
from openmaia.config import PRESETS
from openmaia.harness import simulate
from openmaia.numerics.formats import Format

BENCH = "openmaia.benches.dot_engine"
SMALL = PRESETS["small"]
ICE40 = frozenset({Format.E4M3, Format.E2M1})

pytestmark = [pytest.mark.sim,
              pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")]


def _engine(formats=SMALL.formats, faults=frozenset(), lanes=SMALL.lanes, slots=SMALL.acc_depth,
            fp4_double_rate=True):
    return MxDotEngine(formats=formats, lanes=lanes, slots=slots,
                       fp4_double_rate=fp4_double_rate, faults=faults)


def _names(pairs):
    return [[fa.value, fb.value] for fa, fb in pairs]


def _run(testcase, *, formats=SMALL.formats, faults=frozenset(), check=True, engine=None,
         **params):
    engine = engine or _engine(formats, faults)
    base = {"formats": [f.value for f in Format if f in engine.formats], "lanes": engine.lanes,
            "slots": engine.slots, "fp4_double_rate": engine.double_rate,
            "latency": engine.latency}
    result = simulate(engine, bench=BENCH, name="dot_engine", testcase=testcase,
                      params=base | params, check=check)
    print(f"{testcase}: build {result.build_seconds:.1f} s (cached {result.build_cached}), "
          f"run {result.run_seconds:.1f} s, log {result.log_file}")
    return result


def _check_coverage(result, pairs):
    report = result.coverage
    assert report is not None, "the bench exported no coverage"
    bins = report.items.get("openmaia.dot_engine.case", {})
    assert sorted(bins) == sorted(coverage_bins(pairs)), "unexpected set of coverage bins"
    report.assert_complete()
    return report


PAIRS = all_pairs(SMALL.formats)
E = {f.value: f for f in Format}


# ---------------------------------------------------------------------------------------------
# Default tier
# ---------------------------------------------------------------------------------------------

def test_exhaustive_products():
    """Every code pair (NaN codes included) of E2M1 x E2M1 (double rate: both nibbles of every
    lane), INT8 x E2M1 and E3M2 x E2M3. (E4M3 x E4M3, E5M2 x E5M2 and every other pair are
    exhaustive in the slow tier: half a million beats each.)"""
    pairs = [(E["e2m1"], E["e2m1"]), (E["int8"], E["e2m1"]), (E["e3m2"], E["e2m3"])]
    result = _run("exhaustive_products", pairs=_names(pairs))
    assert result.tests == 1


def test_exhaustive_products_sampled():
    """1,024 random code pairs of every format pair (NaN and Inf codes included)."""
    _run("exhaustive_products", pairs=_names(PAIRS), sample=1024)


def test_scale_sweep_edges():
    """Scale codes 0, 1, 2, 126..128, 252..255 on either side against all 256 on the other."""
    _run("scale_sweep", pairs=_names(PAIRS), scales="edges")


def test_random_dots():
    """200 random dot products per format pair, gaps and backpressure, coverage complete."""
    result = _run("random_dots", pairs=_names(PAIRS), count=200, gap=0.3, stall=0.3)
    _check_coverage(result, PAIRS)


def test_random_dots_no_stall():
    """Back-to-back input, heavy backpressure: the engine must hold results and stall."""
    _run("random_dots", pairs=_names(PAIRS), count=40, gap=0.0, stall=0.6)


def test_cycle_count():
    """Every format pair: 1,000 gap-free beats finish in 1,000 + latency cycles, single-block
    outputs and two-block outputs interleaved over all slots."""
    _run("cycle_count", pairs=_names(PAIRS))


# ---------------------------------------------------------------------------------------------
# Slow tier
# ---------------------------------------------------------------------------------------------

# Mutation check: each fault must be caught by a short run of the same bench. The default tier
# kills every fault in the Amaranth simulator (test_dot_engine.py::test_fault_killed); these
# cocotb kills need one Verilator build per fault (~1 min each), so they run in the slow tier.

KILL_PAIRS = [(E["e4m3"], E["e4m3"]), (E["e2m1"], E["e2m1"]), (E["e5m2"], E["int8"])]


@pytest.mark.slow
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_killed(fault):
    result = _run("random_dots", faults={fault}, check=False, pairs=_names(KILL_PAIRS),
                  count=40, gap=0.2, stall=0.2)
    assert result.tests == 1, result.log_tail()
    assert not result.passed, f"fault {fault} survived the bench (seed {result.seed})"


EXHAUSTIVE_CHUNKS = 8


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(EXHAUSTIVE_CHUNKS))
def test_exhaustive_products_full(chunk):
    """All 831,744 code pairs of the 36 format pairs, in chunks of the concatenated items."""
    total = exhaustive_total(PAIRS)
    assert total == 831_744
    step = -(-total // EXHAUSTIVE_CHUNKS)
    _run("exhaustive_products", pairs=_names(PAIRS),
         chunk=[chunk * step, min(total, (chunk + 1) * step)])


@pytest.mark.slow
@pytest.mark.parametrize("part", range(4))
def test_scale_sweep_full(part):
    """Every pair of the 256 x 256 E8M0 scale codes with four element patterns."""
    _run("scale_sweep", pairs=_names(PAIRS), scales="all", sa_range=[64 * part, 64 * part + 64])


RANDOM_GROUPS = [PAIRS[k::6] for k in range(6)]


@pytest.mark.slow
@pytest.mark.parametrize("group", range(len(RANDOM_GROUPS)))
def test_random_dots_full(group):
    """10,000 random dot products per format pair; every coverage bin of these pairs hit."""
    pairs = RANDOM_GROUPS[group]
    result = _run("random_dots", pairs=_names(pairs), count=10_000, gap=0.2, stall=0.2)
    _check_coverage(result, pairs)


@pytest.mark.slow
def test_subset_engine():
    """The {E4M3, E2M1} engine: every code pair, random dot products (the other formats'
    selectors are illegal: NaN), the edge scale sweep and the cycle count."""
    pairs = all_pairs(ICE40)
    _run("exhaustive_products", formats=ICE40, pairs=_names(pairs))
    result = _run("random_dots", formats=ICE40, pairs=_names(pairs), count=10_000, gap=0.2,
                  stall=0.2)
    _check_coverage(result, pairs)
    _run("scale_sweep", formats=ICE40, pairs=_names(pairs), scales="edges")
    _run("cycle_count", formats=ICE40, pairs=_names(pairs))


OTHER_CONFIGS = {
    "16-lanes-8-slots": dict(formats=SMALL.formats, lanes=16, slots=8),
    "1-lane-1-slot-fp4-single-rate": dict(formats=ICE40, lanes=1, slots=1,
                                          fp4_double_rate=False),
}


@pytest.mark.slow
@pytest.mark.parametrize("config", list(OTHER_CONFIGS))
def test_other_configs(config):
    """Framing at other lane and slot counts (1 lane: 32 beats a block; 16 lanes: FP4 x FP4 in
    one beat), one slot (every multi-block output interlocks), FP4 x FP4 at single rate."""
    engine = _engine(**OTHER_CONFIGS[config])
    pairs = all_pairs(engine.formats)
    beats = max(engine.beats_per_block(fa, fb) for fa, fb in pairs)
    _run("exhaustive_products", engine=engine, pairs=_names(pairs),
         sample=min(2048, 4096 // beats))
    _run("random_dots", engine=engine, pairs=_names(pairs), count=min(800, 6400 // beats),
         gap=0.2, stall=0.2)
    interleave = engine.slots >= getattr(engine, "ADD_STAGES", engine.latency)
    _run("cycle_count", engine=engine, pairs=_names(pairs),
         blocks_per_output=[1, 2] if interleave else [1])


def test_pair_names():
    assert pair_name(Format.E4M3, Format.E2M1) == "e4m3*e2m1"
    assert len(PAIRS) == 36
