"""cocotb bench of :class:`~openmaia.compute.vector_lane.VectorAlu`, bit-exact against
:func:`openmaia.numerics.vector.apply`.

Driver: a :class:`~openmaia.harness.streams.StreamSource` on ``i`` with random gaps; monitor: a
:class:`~openmaia.harness.streams.StreamSink` on ``o`` with random backpressure; reference: the
golden model; scoreboard: in-order comparison that reports lost, extra and wrong results, then
the counters (``beats``, ``illegal``, ``busy`` at least the result cycles). Coverage: every op
(and the undefined code) x the class of operand ``a`` (zero, subnormal, normal, Inf, NaN).

Parameters (:func:`openmaia.harness.bench_params`): ``lanes``, ``latency`` (the design's);
``count`` (random transfers, default 3,000), ``gap`` and ``stall`` (pause probabilities of the
input and the output, default 0.3 each).

The vector generators and the reference are shared with the Amaranth-simulator tests
(verif/tests/test_vector_lane.py). A beat is a dict ``{"op", "a", "b"}`` (``a``, ``b``: lists of
``lanes`` FP32 bit patterns).
"""

import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge

from openmaia.errors import ErrorCode
from openmaia.harness import bench_params
from openmaia.harness.coverage import Coverage, export
from openmaia.harness.streams import StreamSink, StreamSource, pack, random_pauses, unpack
from openmaia.numerics.dot import CANONICAL_NAN
from openmaia.numerics.vector import GELU_SEGMENTS, GELU_STEPS, VectorOp, apply

__all__ = ["directed_beats", "random_beats", "expected", "operand_class", "OPERAND_CLASSES",
           "OP_BINS", "pack_beat", "unpack_result"]

OPERAND_CLASSES = ("zero", "subnormal", "normal", "inf", "nan")
OP_BINS = tuple(op.name for op in VectorOp) + ("UNDEFINED",)
UNDEFINED_OP = 7

SPECIALS = [0, 0x80000000, 0x7F800000, 0xFF800000, CANONICAL_NAN, 0xFFC00000, 0x7F800001,
            0xFFFFFFFF, 0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00800000, 0x80800000,
            0x3F800000, 0xBF800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x3F000000, 0x5F800000, 0x1F800000,
            0x3F808000, 0x3F818000, 0x41000000, 0xC1000000, 0x40FFFFFF, 0xC0FFFFFF]


def operand_class(bits: int) -> str:
    e, f = (bits >> 23) & 0xFF, bits & 0x7FFFFF
    if e == 0xFF:
        return "nan" if f else "inf"
    if e == 0:
        return "subnormal" if f else "zero"
    return "normal"


def _f32(x: float) -> int:
    return int(np.float32(x).view(np.uint32))


def _rand_bits(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.1:
        return rng.choice(SPECIALS)
    if r < 0.2:   # subnormal
        return rng.getrandbits(1) << 31 | rng.getrandbits(23)
    if r < 0.4:   # small exponents: products near the subnormal range
        return rng.getrandbits(1) << 31 | rng.randint(40, 90) << 23 | rng.getrandbits(23)
    if r < 0.5:   # large exponents: overflow
        return rng.getrandbits(1) << 31 | rng.randint(190, 254) << 23 | rng.getrandbits(23)
    return rng.getrandbits(32)


def _gelu_operand(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.5:
        return _f32(rng.uniform(-9, 9))
    if r < 0.7:   # a piece start or its neighbour below
        k = rng.randint(-GELU_SEGMENTS, GELU_SEGMENTS)
        bits = _f32(k / GELU_STEPS)
        return bits - 1 if rng.getrandbits(1) and bits & 0x7FFFFFFF else bits
    if r < 0.8:
        return _f32(rng.uniform(-1e-3, 1e-3))
    return _rand_bits(rng)


def _operands(op: int, rng: random.Random, lanes: int) -> tuple[list, list]:
    a = [(_gelu_operand if op == VectorOp.GELU else _rand_bits)(rng) for _ in range(lanes)]
    b = []
    for x in a:
        r = rng.random()
        if op == VectorOp.ADD and r < 0.3:     # cancellation and ties
            b.append((x ^ 1 << 31) + rng.randint(-3, 3) & 0xFFFFFFFF)
        elif op == VectorOp.MAX and r < 0.3:   # equal magnitudes, signed zeros
            b.append(x ^ rng.choice([1 << 31, 0, 1]))
        elif op == VectorOp.MUL and r < 0.3:   # a power of two: exact, subnormal or overflow
            b.append(rng.getrandbits(1) << 31 | rng.randint(0, 254) << 23)
        else:
            b.append(_rand_bits(rng))
    return a, b


def directed_beats(lanes: int, rng: random.Random) -> list[dict]:
    """Every op (and the undefined code) on every ordered pair of :data:`SPECIALS` (one
    operand = ``a``, the other ``b``), packed ``lanes`` pairs a beat, plus the GELU piece starts
    and their lower neighbours, both signs, and BF16 ties."""
    pairs = [(x, y) for x in SPECIALS for y in SPECIALS]
    gelu = []
    for k in range(GELU_SEGMENTS + 2):
        for sign in (0, 1 << 31):
            bits = _f32(k / GELU_STEPS) | sign
            gelu += [bits, bits - 1 if bits & 0x7FFFFFFF else 1]
    bf16 = [rng.getrandbits(16) << 16 | 0x8000 for _ in range(40)]
    beats = []
    for op in list(VectorOp) + [UNDEFINED_OP]:
        items = pairs
        if op == VectorOp.GELU:
            items = pairs + [(x, 0) for x in gelu]
        elif op == VectorOp.TO_BF16:
            items = pairs + [(x, 0) for x in bf16 + [x + 1 for x in bf16] + [x - 1 for x in bf16]]
        for n in range(0, len(items), lanes):
            chunk = items[n:n + lanes]
            chunk += [chunk[-1]] * (lanes - len(chunk))
            beats.append({"op": int(op), "a": [x for x, _ in chunk], "b": [y for _, y in chunk]})
    return beats


def random_beats(lanes: int, rng: random.Random, count: int) -> list[dict]:
    """``count`` beats of random ops (the undefined code 1 in 50) and operand classes."""
    beats = []
    for _ in range(count):
        op = UNDEFINED_OP if rng.random() < 0.02 else rng.randrange(len(VectorOp))
        a, b = _operands(op, rng, lanes)
        beats.append({"op": op, "a": a, "b": b})
    return beats


def expected(beat: dict) -> dict:
    """The result ``{"value": [...], "status": ...}`` the ALU must give for ``beat``."""
    if beat["op"] > max(VectorOp):
        return {"value": [CANONICAL_NAN] * len(beat["a"]), "status": int(ErrorCode.ILLEGAL_OPCODE)}
    values = apply(beat["op"], np.array(beat["a"], np.uint32), np.array(beat["b"], np.uint32))
    return {"value": [int(x) for x in values], "status": int(ErrorCode.OK)}


def pack_beat(layout, beat: dict) -> int:
    return pack(layout, beat)


def unpack_result(layout, bits: int) -> dict:
    return unpack(layout, bits)


def coverage_model() -> Coverage:
    return Coverage("vector_alu", op=list(OP_BINS), operand=list(OPERAND_CLASSES))


def _op_bin(op: int) -> str:
    return VectorOp(op).name if op <= max(VectorOp) else "UNDEFINED"


# The cocotb bench


def _layouts(lanes):
    from openmaia.compute.vector_lane import VectorAlu
    return VectorAlu.input_layout(lanes), VectorAlu.output_layout(lanes)


async def _run(dut, beats: list, *, gap: float, stall: float, rng: random.Random,
               coverage: Coverage | None = None):
    params = bench_params()
    lanes = params["lanes"]
    in_layout, out_layout = _layouts(lanes)
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    source = StreamSource(dut, "i", dut.clk, pauses=random_pauses(rng, gap))
    sink = StreamSink(dut, "o", dut.clk, pauses=random_pauses(rng, stall))
    await ClockCycles(dut.clk, 2)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    cocotb.start_soon(source.run())
    cocotb.start_soon(sink.run())
    for beat in beats:
        source.send_nowait(pack(in_layout, beat))
    budget = 200 + params["latency"] + int(4 * len(beats) / ((1 - gap) * (1 - stall)))
    for _ in range(budget):
        await FallingEdge(dut.clk)
        if len(sink.items) >= len(beats):
            break
    await ClockCycles(dut.clk, params["latency"] + 5)   # anything extra would show up here
    errors = []
    for n, (beat, item) in enumerate(zip(beats, sink.items)):
        got, want = unpack(out_layout, item), expected(beat)
        if got != want:
            errors.append(f"result {n}: op {beat['op']} a {[hex(x) for x in beat['a']]} "
                          f"b {[hex(x) for x in beat['b']]}: got "
                          f"{[hex(x) for x in got['value']]} status {got['status']}, expected "
                          f"{[hex(x) for x in want['value']]} status {want['status']}")
        elif coverage is not None:
            for x in beat["a"]:
                coverage.sample(op=_op_bin(beat["op"]), operand=operand_class(x))
    if len(sink.items) < len(beats):
        errors.append(f"lost: {len(beats) - len(sink.items)} of {len(beats)} results missing")
    if len(sink.items) > len(beats):
        errors.append(f"extra: {len(sink.items) - len(beats)} results nobody sent")
    from openmaia.compute.vector_lane import VectorCounters
    counters = unpack(VectorCounters, dut.counters.value.to_unsigned())
    illegal = sum(b["op"] > max(VectorOp) for b in beats)
    if counters["beats"] != len(beats) or counters["illegal"] != illegal:
        errors.append(f"counters {counters}: expected beats {len(beats)}, illegal {illegal}")
    if counters["busy"] < len(beats) or counters["busy"] < params["latency"]:
        errors.append(f"busy counter {counters['busy']} below {len(beats)} results")
    if stall and not counters["stall_output"]:
        errors.append("stall_output never counted under output backpressure")
    for error in errors[:10]:
        dut._log.error("%s", error)
    assert not errors, f"{len(errors)} errors; first: {errors[0]}"
    dut._log.info("%d beats checked, counters %s", len(beats), counters)


@cocotb.test()
async def directed(dut):
    """Every op on every pair of special values, GELU piece edges, BF16 ties; gaps and
    backpressure; complete op x operand-class coverage."""
    params = bench_params()
    rng = random.Random(cocotb.RANDOM_SEED)
    coverage = coverage_model()
    await _run(dut, directed_beats(params["lanes"], rng), gap=params.get("gap", 0.3),
               stall=params.get("stall", 0.3), rng=rng, coverage=coverage)
    export()
    missing = coverage.report().missing()
    assert not missing, f"coverage bins not hit: {missing[:10]}"


@cocotb.test()
async def random_ops(dut):
    """``count`` random beats with gaps and backpressure."""
    params = bench_params()
    rng = random.Random(cocotb.RANDOM_SEED + 1)
    await _run(dut, random_beats(params["lanes"], rng, params.get("count", 3000)),
               gap=params.get("gap", 0.3), stall=params.get("stall", 0.3), rng=rng)


@cocotb.test()
async def full_rate(dut):
    """No gaps, no backpressure: one result a cycle, the first ``latency`` cycles after the
    first input."""
    params = bench_params()
    rng = random.Random(cocotb.RANDOM_SEED + 2)
    lanes = params["lanes"]
    in_layout, _ = _layouts(lanes)
    beats = random_beats(lanes, rng, 200)
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    source = StreamSource(dut, "i", dut.clk)
    sink = StreamSink(dut, "o", dut.clk)
    await ClockCycles(dut.clk, 2)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    for beat in beats:
        source.send_nowait(pack(in_layout, beat))
    cocotb.start_soon(sink.run())
    cocotb.start_soon(source.run())
    cycles = 0
    while len(sink.items) < len(beats):
        await FallingEdge(dut.clk)
        cycles += 1
        assert cycles < 10 * len(beats), "results stopped"
    assert cycles <= len(beats) + params["latency"] + 2, f"{cycles} cycles for {len(beats)} beats"
    assert [unpack(_layouts(lanes)[1], x) for x in sink.items] == [expected(b) for b in beats]
