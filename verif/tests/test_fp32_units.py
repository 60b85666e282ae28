"""FP32 units (Fp32Round, Fp32Add): Amaranth-simulator tests, mutation checks, lint, and the
cocotb bench on Verilator.

Every run feeds one vector a cycle, either with ``en`` always high or with random ``en`` gaps
(random vectors driven while ``en`` is low must be ignored), and checks ``o`` after every clock
edge against the golden model (``round_to_fp32``, ``fp32_add``) for the input accepted exactly
``stages`` enabled edges earlier (:func:`~openmaia.benches.fp32_units.check_stream`).
"""

import random
from fractions import Fraction

import pytest
from amaranth.sim import Simulator

from openmaia.benches.fp32_units import (add_directed, add_random, check_stream, expected_add,
                                         expected_round, fit_value, pack_round, round_directed,
                                         round_random)
from openmaia.compute.fp32 import FAULTS, Fp32Add, Fp32Round
from openmaia.numerics import Format, block_sum_bits
from openmaia.numerics.dot import CANONICAL_NAN, FP32_NEG_INF, FP32_NEG_ZERO, FP32_POS_INF

BENCH = "openmaia.benches.fp32_units"
WIDEST = max(block_sum_bits(a, b) for a in Format for b in Format)
# (sum_width, exp_width, stages): the widest block sum, a narrow one, and odd widths.
ROUND_CONFIGS = [(WIDEST, 10, 2), (14, 10, 1), (42, 9, 3)]
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def run_unit(dut, inputs, expected, *, gap=0.0, rng=None):
    """Drive ``inputs`` through ``dut`` in the Amaranth simulator, one a cycle when ``en`` is
    high (low with probability ``gap``); the mismatches found by ``check_stream``."""
    rng = rng or random.Random(0)
    outputs, enables = [], []
    if isinstance(dut, Fp32Round):
        port = dut.i.as_value()

        def drive(ctx, vector):
            ctx.set(port, pack_round(vector, dut.sum_width, dut.exp_width))
    else:
        def drive(ctx, vector):
            ctx.set(dut.a, vector[0])
            ctx.set(dut.b, vector[1])

    async def bench(ctx):
        fed = 0
        while fed < len(inputs) + dut.stages:
            en = fed >= len(inputs) or rng.random() >= gap
            drive(ctx, inputs[fed] if en and fed < len(inputs) else rng.choice(inputs))
            fed += en
            ctx.set(dut.en, en)
            await ctx.tick()
            enables.append(int(en))
            outputs.append(ctx.get(dut.o))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return check_stream(outputs, expected, dut.stages, enables)


def round_unit(sum_width, exp_width, stages, faults=frozenset()):
    return Fp32Round(sum_width=sum_width, exp_width=exp_width, stages=stages, faults=faults)


# The reference and the vector generators


def test_pack_round_matches_layout(rng):
    for sw, ew, _ in ROUND_CONFIGS:
        layout = Fp32Round.input_layout(sw, ew)
        for v in round_directed(sw, ew, rng)[::7] + round_random(sw, ew, rng, 50):
            assert pack_round(v, sw, ew) == layout.const(v).as_bits()


def test_fit_value(rng):
    for _ in range(2000):
        sw, ew = rng.randint(2, 80), rng.randint(2, 12)
        n = rng.randint(-(1 << sw), 1 << sw) >> rng.randint(0, sw)
        e = rng.randint(-600, 600)
        fit = fit_value(n, e, sw, ew, rng, widest=rng.getrandbits(1))
        if fit is None:
            continue
        s, x = fit
        assert -(1 << sw - 1) <= s < 1 << sw - 1 and -(1 << ew - 1) <= x < 1 << ew - 1
        assert Fraction(s) * Fraction(2) ** x == Fraction(n) * Fraction(2) ** e


@pytest.mark.parametrize("sum_width, exp_width", [(WIDEST, 10), (14, 10)])
def test_round_directed_classes(sum_width, exp_width, rng):
    """The directed vectors reach every class of result they are meant to."""
    vectors = round_directed(sum_width, exp_width, rng)
    results = {}
    for v in vectors:
        results.setdefault(expected_round(v), []).append(v)
    nonzero = lambda bits: [v for v in results.get(bits, []) if v["sum"] and not v["inf"]
                            and not v["nan"]]
    assert nonzero(0) and nonzero(FP32_NEG_ZERO), "underflow to zero of both signs"
    assert nonzero(1) and nonzero(0x80000001), "the smallest subnormal"
    assert nonzero(0x00800000) and nonzero(0x80800000), "the smallest normal"
    assert nonzero(FP32_POS_INF) and nonzero(FP32_NEG_INF), "overflow"
    if sum_width > 24:
        assert nonzero(0x007FFFFF) and nonzero(0x807FFFFF), "the largest subnormal"
        assert nonzero(0x7F7FFFFF) and nonzero(0xFF7FFFFF), "the largest float"
    assert [v for v in results[0] if not v["sum"]], "+0"
    assert [v for v in results[FP32_NEG_ZERO] if not v["sum"]], "-0"
    assert CANONICAL_NAN in results
    assert any(v["sum"] == -(1 << sum_width - 1) for v in vectors), "the full width"
    assert any(v["sum"] == (1 << sum_width - 1) - 1 for v in vectors), "the full width"
    if sum_width > 26:
        ties = [v for v in vectors if v["sum"] and abs(v["sum"]).bit_length() >= 26
                and _is_tie(abs(v["sum"]), v["exp"])]
        assert len(ties) > 20


def _is_tie(mag, exp):
    top = mag.bit_length() - 1 + exp
    q = max(top - 23, -149)
    shift = q - exp
    return shift > 0 and mag & ((1 << shift) - 1) == 1 << shift - 1


# Fp32Round, Amaranth simulator


@pytest.mark.parametrize("sum_width, exp_width, stages", ROUND_CONFIGS)
def test_round_directed(sum_width, exp_width, stages, rng):
    vectors = round_directed(sum_width, exp_width, rng)
    errors = run_unit(round_unit(sum_width, exp_width, stages), vectors,
                      [expected_round(v) for v in vectors])
    assert not errors, "\n".join(errors[:10])


@pytest.mark.parametrize("sum_width, exp_width, stages", ROUND_CONFIGS + [(WIDEST, 10, 4)])
def test_round_random_gaps(sum_width, exp_width, stages, rng):
    vectors = round_random(sum_width, exp_width, rng, 600)
    errors = run_unit(round_unit(sum_width, exp_width, stages), vectors,
                      [expected_round(v) for v in vectors], gap=0.4, rng=rng)
    assert not errors, "\n".join(errors[:10])


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_round_fault_caught(fault, rng):
    sum_width, exp_width, stages = ROUND_CONFIGS[0]
    vectors = round_directed(sum_width, exp_width, rng)
    expected = [expected_round(v) for v in vectors]
    errors = run_unit(round_unit(sum_width, exp_width, stages, faults={fault}), vectors, expected)
    assert errors, f"fault {fault} not detected"
    assert len(errors) < len(vectors) // 2, "the fault should change few results"


# Fp32Add, Amaranth simulator


def test_add_directed(rng):
    pairs = add_directed(rng)
    errors = run_unit(Fp32Add(stages=2), pairs, expected_add(pairs))
    assert not errors, "\n".join(errors[:10])


@pytest.mark.parametrize("stages", [1, 3])
def test_add_random_gaps(stages, rng):
    pairs = add_random(rng, 500)
    errors = run_unit(Fp32Add(stages=stages), pairs, expected_add(pairs), gap=0.4, rng=rng)
    assert not errors, "\n".join(errors[:10])


def test_check_stream_sees_latency():
    """The checker rejects a result stream that is one cycle late or early."""
    expected = [1, 2, 3, 4]
    enables = [1] * 6
    assert not check_stream([0, 1, 2, 3, 4, 0], expected, 2, enables)
    assert check_stream([0, 0, 1, 2, 3, 4], expected, 2, enables)
    assert check_stream([1, 2, 3, 4, 0, 0], expected, 2, enables)
    assert check_stream([0, 1, 2, 3], expected, 2, [1] * 4)
    gaps = [1, 1, 1, 0, 1, 1, 0, 1]
    assert not check_stream([0, 1, 2, 2, 3, 4, 4, 0], expected, 2, gaps)
    assert check_stream([0, 1, 2, 3, 3, 4, 4, 0], expected, 2, gaps)


# Parameters and properties


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(sum_width=1, exp_width=10), ValueError, "sum_width must be an integer"),
    (dict(sum_width=70.0, exp_width=10), ValueError, "sum_width must be an integer"),
    (dict(sum_width=70, exp_width=True), ValueError, "exp_width must be an integer"),
    (dict(sum_width=70, exp_width=1), ValueError, "exp_width must be an integer"),
    (dict(sum_width=70, exp_width=10, stages=0), ValueError, "stages must be an integer"),
    (dict(sum_width=70, exp_width=10, faults={"nope"}), ValueError, "unknown fault 'nope'"),
    (dict(sum_width=70, exp_width=10, faults="drop_sticky"), TypeError, "collection of fault"),
])
def test_round_parameter_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        Fp32Round(**kwargs)


@pytest.mark.parametrize("stages", [0, -1, 1.5, True, "2"])
def test_add_parameter_errors(stages):
    with pytest.raises(ValueError, match="stages must be an integer"):
        Fp32Add(stages=stages)


def test_positional_parameters_rejected():
    with pytest.raises(TypeError):
        Fp32Round(70, 10)
    with pytest.raises(TypeError):
        Fp32Add(2)


def test_properties():
    unit = Fp32Round(sum_width=70, exp_width=10, stages=3, faults=["drop_sticky"])
    assert (unit.sum_width, unit.exp_width, unit.stages, unit.latency) == (70, 10, 3, 3)
    assert unit.faults == frozenset({"drop_sticky"})
    layout = Fp32Round.input_layout(70, 10)
    assert [(name, field.width) for name, field in layout] == [
        ("sum", 70), ("exp", 10), ("nan", 1), ("inf", 1), ("inf_neg", 1), ("zero_neg", 1)]
    assert unit.i.shape() == layout
    assert Fp32Add(stages=4).latency == 4


# Verilog: lint, and the cocotb bench under Verilator


@pytest.mark.parametrize("stages", [1, 2, 3])
def test_lint(stages):
    from openmaia.harness import lint
    lint(Fp32Add(stages=stages), name="fp32_add")
    lint(round_unit(WIDEST, 10, stages), name="fp32_round")


def test_lint_narrowest():
    from openmaia.harness import lint
    lint(round_unit(2, 2, 2), name="fp32_round")


def _round_params(sum_width, exp_width, stages, **extra):
    return dict(unit="round", sum_width=sum_width, exp_width=exp_width, stages=stages, **extra)


@pytest.mark.sim
def test_cocotb_round():
    from openmaia.harness import simulate
    sw, ew, stages = ROUND_CONFIGS[0]
    result = simulate(round_unit(sw, ew, stages), bench=BENCH, name="fp32_round",
                      params=_round_params(sw, ew, stages))
    assert result.tests == 2


@pytest.mark.sim
def test_cocotb_add():
    from openmaia.harness import simulate
    result = simulate(Fp32Add(stages=2), bench=BENCH, name="fp32_add",
                      params=dict(unit="add", stages=2))
    assert result.tests == 2


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("sum_width, exp_width, stages, count",
                         [(*ROUND_CONFIGS[0], 1_000_000), (*ROUND_CONFIGS[1], 200_000)])
def test_cocotb_round_long(sum_width, exp_width, stages, count):
    from openmaia.harness import simulate
    result = simulate(round_unit(sum_width, exp_width, stages), bench=BENCH, name="fp32_round",
                      testcase="random_gaps",
                      params=_round_params(sum_width, exp_width, stages, count=count))
    assert result.tests == 1


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("stages, count", [(2, 1_000_000), (1, 200_000)])
def test_cocotb_add_long(stages, count):
    from openmaia.harness import simulate
    result = simulate(Fp32Add(stages=stages), bench=BENCH, name="fp32_add",
                      testcase="random_gaps", params=dict(unit="add", stages=stages, count=count))
    assert result.tests == 1


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_cocotb_catches_fault(fault):
    from openmaia.harness import simulate
    sw, ew, stages = ROUND_CONFIGS[0]
    result = simulate(round_unit(sw, ew, stages, faults={fault}), bench=BENCH,
                      name="fp32_round", testcase="full_rate", check=False,
                      params=_round_params(sw, ew, stages))
    assert result.tests == 1 and result.failed == 1, result.log_tail()
