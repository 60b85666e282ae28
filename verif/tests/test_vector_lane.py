"""VectorAlu (the TVP's lane arithmetic): Amaranth-simulator tests, mutation checks, lint, and
the cocotb bench on Verilator, all bit-exact against openmaia.numerics.vector.

The Amaranth simulator runs this design at a few dozen cycles a second per lane, so its tests
use one lane and a sample of the directed vectors (each op on special pairs, GELU piece edges,
BF16 ties); the cocotb bench runs every directed vector and thousands of random ones on two
lanes (default tier) and more in the slow tier.
"""

import random

import pytest

from openmaia.benches.vector_lane import (SPECIALS, UNDEFINED_OP, directed_beats, expected,
                                          random_beats)
from openmaia.compute.vector_lane import FAULTS, Fp32Mul, VectorAlu
from openmaia.errors import ErrorCode
from openmaia.harness.amaranth_sim import run_stream
from openmaia.harness.streams import pack, unpack
from openmaia.numerics.vector import VectorOp

BENCH = "openmaia.benches.vector_lane"
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def _run(alu, beats, *, gap=0.0, stall=0.0, seed=0):
    in_layout, out_layout = alu.input_layout(alu.lanes), alu.output_layout(alu.lanes)
    outputs, in_cycles, out_cycles = run_stream(alu, [pack(in_layout, b) for b in beats],
                                                count=len(beats), gap=gap, stall=stall,
                                                seed=seed, quiet=alu.latency + 2)
    results = [unpack(out_layout, bits) for bits in outputs]
    errors = [f"beat {n} {beat}: got {got}, expected {expected(beat)}"
              for n, (beat, got) in enumerate(zip(beats, results)) if got != expected(beat)]
    return errors, in_cycles, out_cycles


def _sample(beats, rng, per_op):
    """``per_op`` beats of each op from ``beats``, chosen at random."""
    by_op = {}
    for beat in beats:
        by_op.setdefault(beat["op"], []).append(beat)
    return [b for op in sorted(by_op) for b in rng.sample(by_op[op], min(per_op, len(by_op[op])))]


def _targeted(lanes):
    """Short vectors aimed at each op's corner cases (signed zeros, ties, NaN, tails)."""
    def beat(op, a, b=0):
        return {"op": int(op), "a": [a] * lanes, "b": [b] * lanes}
    return [
        beat(VectorOp.MAX, 0x80000000, 0), beat(VectorOp.MAX, 0, 0x80000000),
        beat(VectorOp.RELU, 0x80000000), beat(VectorOp.RELU, 0xFF800000),
        beat(VectorOp.RELU, 0x7FA00000), beat(VectorOp.MAX, 0xBF800000, 0x7F800001),
        beat(VectorOp.TO_BF16, 0x3F818000), beat(VectorOp.TO_BF16, 0x3F808001),
        beat(VectorOp.TO_BF16, 0x7F7FFFFF), beat(VectorOp.TO_BF16, 0xFFC12345),
        beat(VectorOp.FROM_BF16, 0x00007F81), beat(VectorOp.FROM_BF16, 0x12348000),
        beat(VectorOp.MUL, 0x3F800001, 0x3F800001), beat(VectorOp.MUL, 0x3FFFFFFF, 0x3FFFFFFF),
        beat(VectorOp.MUL, 0x00000003, 0x3F000000), beat(VectorOp.MUL, 0x3F800003, 0x3F7FFFFF),
        beat(VectorOp.MUL, 0x7F800000, 0), beat(VectorOp.MUL, 0x80000001, 0x7F7FFFFF),
        beat(VectorOp.MUL, 0x3FB988EC, 0xBFBC7288),   # guard and sticky set, even: rounds up
        beat(VectorOp.ADD, 0x3F800000, 0x33800000), beat(VectorOp.ADD, 0x3F800001, 0xBF800000),
        beat(VectorOp.GELU, 0xBF800000), beat(VectorOp.GELU, 0xC0400000),
        beat(VectorOp.GELU, 0x3F800000), beat(VectorOp.GELU, 0xFF800000),
        beat(VectorOp.GELU, 0x80000000), beat(VectorOp.GELU, 0xC1000000),
        beat(UNDEFINED_OP, 0x3F800000, 0x3F800000), beat(VectorOp.ADD, 0x3F800000, 0x3F800000),
    ]


def test_directed_sample(seed):
    """Each op (and the undefined code) on special pairs, GELU edges and BF16 ties, one lane,
    with input gaps and output backpressure; plus the targeted vectors."""
    rng = random.Random(seed)
    beats = _sample(directed_beats(1, rng), rng, 24) + _targeted(1)
    errors, _, _ = _run(VectorAlu(lanes=1), beats, gap=0.3, stall=0.3, seed=seed)
    assert not errors, "\n".join(errors[:5])


def test_random_two_lanes(seed):
    rng = random.Random(seed)
    beats = random_beats(2, rng, 60)
    errors, _, _ = _run(VectorAlu(lanes=2), beats, gap=0.2, stall=0.4, seed=seed)
    assert not errors, "\n".join(errors[:5])


def test_full_rate_and_latency():
    """One transfer a cycle in and out; the first result ``latency`` cycles after the first
    input; in order."""
    alu = VectorAlu(lanes=1)
    beats = random_beats(1, random.Random(5), 30)
    errors, in_cycles, out_cycles = _run(alu, beats)
    assert not errors, "\n".join(errors[:5])
    assert in_cycles == list(range(in_cycles[0], in_cycles[0] + len(beats)))
    assert out_cycles == [c + alu.latency for c in in_cycles]
    assert alu.latency == 23


def test_illegal_op_then_good():
    alu = VectorAlu(lanes=1)
    beats = [{"op": UNDEFINED_OP, "a": [0x3F800000], "b": [0x3F800000]},
             {"op": int(VectorOp.ADD), "a": [0x3F800000], "b": [0x3F800000]}]
    errors, _, _ = _run(alu, beats)
    assert not errors, "\n".join(errors)
    assert expected(beats[0])["status"] == ErrorCode.ILLEGAL_OPCODE
    assert expected(beats[1]) == {"value": [0x40000000], "status": 0}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_caught(fault):
    """Each deliberate bug changes some result of the targeted vectors (and not most)."""
    beats = _targeted(1)
    errors, _, _ = _run(VectorAlu(lanes=1, faults={fault}), beats)
    assert errors, f"fault {fault} not detected"
    assert len(errors) < len(beats) // 2


def test_counters():
    from amaranth.sim import Simulator
    alu = VectorAlu(lanes=1)
    layout = alu.input_layout(1)
    beats = [{"op": op, "a": [0x3F800000], "b": [0x40000000]} for op in (0, 7, 1, 7, 4)]

    async def bench(ctx):
        for n, beat in enumerate(beats):
            ctx.set(alu.i.payload.as_value(), pack(layout, beat))
            ctx.set(alu.i.valid, 1)
            await ctx.tick()
        ctx.set(alu.i.valid, 0)
        ctx.set(alu.o.ready, 0)
        await ctx.tick().repeat(alu.latency + 5)   # results stall at the output
        ctx.set(alu.o.ready, 1)
        await ctx.tick().repeat(10)
        cnt = alu.counters
        assert ctx.get(cnt.beats) == 5 and ctx.get(cnt.illegal) == 2
        assert ctx.get(cnt.stall_output) >= 5
        assert ctx.get(cnt.busy) >= alu.latency + 5
        assert ctx.get(cnt.stall_input) >= alu.latency - 1

    sim = Simulator(alu)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(lanes=0), ValueError, "lanes must be an integer"),
    (dict(lanes=65), ValueError, "lanes must be an integer"),
    (dict(lanes=2.0), ValueError, "lanes must be an integer"),
    (dict(lanes=True), ValueError, "lanes must be an integer"),
    (dict(lanes=1, faults={"nope"}), ValueError, "unknown fault 'nope'"),
    (dict(lanes=1, faults="bf16_truncate"), TypeError, "collection of fault"),
])
def test_parameter_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        VectorAlu(**kwargs)


def test_positional_rejected():
    with pytest.raises(TypeError):
        VectorAlu(2)
    with pytest.raises(ValueError, match="round_stages"):
        Fp32Mul(round_stages=0)


def test_lint():
    from openmaia.harness import lint
    lint(VectorAlu(lanes=2), name="vector_alu")


# cocotb + Verilator


def _simulate(alu, testcase=None, check=True, **params):
    from openmaia.harness import simulate
    result = simulate(alu, bench=BENCH, name="vector_alu", testcase=testcase, check=check,
                      params={"lanes": alu.lanes, "latency": alu.latency} | params)
    print(f"build {result.build_seconds:.1f} s (cached {result.build_cached}), run "
          f"{result.run_seconds:.1f} s, log {result.log_file}")
    return result


@pytest.mark.sim
def test_cocotb():
    """Every directed vector (coverage complete), 3,000 random beats, full rate: 2 lanes."""
    result = _simulate(VectorAlu(lanes=2), count=3000)
    assert result.tests == 3 and result.passed
    result.coverage.assert_complete()


@pytest.mark.sim
@pytest.mark.slow
def test_cocotb_slow():
    result = _simulate(VectorAlu(lanes=4), count=100_000, testcase="random_ops")
    assert result.tests == 1 and result.passed


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_cocotb_fault_caught(fault):
    result = _simulate(VectorAlu(lanes=1, faults={fault}), testcase="directed", check=False)
    assert result.failed, f"fault {fault} passed the bench"
