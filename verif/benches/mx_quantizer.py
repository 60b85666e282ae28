"""cocotb bench of :class:`~openmaia.compute.mx_quantizer.MxQuantizer`, bit-exact against
:func:`openmaia.numerics.quantize_mx` (one 32-value block, ``saturate=True``).

Driver: a :class:`~openmaia.harness.streams.StreamSource` sending each block as ``32 / lanes``
beats with random gaps (the ``fmt`` of beats after the first is random: it must be ignored);
monitor: a :class:`~openmaia.harness.streams.StreamSink` with random backpressure; reference:
the golden model; scoreboard: in order, reporting lost, extra and wrong blocks, then the
counters. Coverage: format (and an unbuilt selector) x block kind.

Parameters (:func:`openmaia.harness.bench_params`): ``formats`` (names), ``lanes``,
``latency``; ``count`` (random blocks, default 1,500), ``gap``, ``stall`` (default 0.3).

A block is a dict ``{"fmt": hw_code, "x": [32 FP32 bit patterns], "kind": str}``; the
generators are shared with verif/tests/test_mx_quantizer.py.
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
from openmaia.numerics import BLOCK_SIZE, E8M0_NAN, Format, decode, quantize_mx
from openmaia.numerics.elements import codes_table

__all__ = ["edge_blocks", "random_blocks", "expected", "KINDS", "beats_of"]

KINDS = ("random", "zero", "subnormal", "tiny", "pow2_edge", "fp32_max", "special", "tie",
         "saturate")
_F32_MAX = 0x7F7FFFFF


def _bits(values) -> list[int]:
    return [int(b) for b in np.asarray(values, np.float32).view(np.uint32)]


def _block(fmt: Format, x, kind: str) -> dict:
    x = list(x)
    assert len(x) == BLOCK_SIZE
    return {"fmt": fmt.spec.hw_code, "x": [int(v) & 0xFFFFFFFF for v in x], "kind": kind}


def _random_below(rng: random.Random, top_exp: int, n: int, spread: int = 12) -> list[int]:
    """``n`` random FP32 patterns of both signs with biased exponent fields in
    ``[top_exp - spread, top_exp]`` (clamped at 0: subnormals)."""
    out = []
    for _ in range(n):
        e = max(0, top_exp - rng.randint(0, spread))
        out.append(rng.getrandbits(1) << 31 | e << 23 | rng.getrandbits(23))
    return out


def _with_amax(rng: random.Random, amax_bits: int, spread: int = 12) -> list[int]:
    """A block holding ``amax_bits`` (random sign and place) and smaller random values."""
    e = (amax_bits >> 23) & 0xFF
    rest = [x for x in _random_below(rng, e, 40, spread)
            if (x & 0x7FFFFFFF) <= (amax_bits & 0x7FFFFFFF)][:BLOCK_SIZE - 1]
    while len(rest) < BLOCK_SIZE - 1:
        rest.append(rng.getrandbits(1) << 31)
    rest.insert(rng.randrange(BLOCK_SIZE), amax_bits | rng.getrandbits(1) << 31)
    return rest


def _ties(fmt: Format, rng: random.Random, shared: int) -> list[int]:
    """Midpoints between neighbouring element values (and their FP32 neighbours) at shared
    exponent ``shared``; element 0 is +max so the block's scale is ``shared``."""
    t = codes_table(fmt)
    vals = t.pos_values
    out = [int(np.float32(np.ldexp(float(t.max_int), fmt.spec.lsb_exp + shared)).view(
        np.uint32))]
    while len(out) < BLOCK_SIZE:
        i = rng.randrange(len(vals) - 1)
        mid = np.ldexp((float(vals[i]) + float(vals[i + 1])) / 2, fmt.spec.lsb_exp + shared)
        bits = int(np.float32(mid).view(np.uint32))
        bits += rng.choice([0, 0, 1, -1]) if bits > 1 else 0
        out.append(bits | rng.getrandbits(1) << 31)
    return out


def edge_blocks(formats, rng: random.Random) -> list[dict]:
    """The directed blocks, for every format: zeros of both signs, subnormal-only blocks, tiny
    blocks (scale clamped to 0), amax at a power of two, just below it and at the binade's top
    for several exponents, FP32 max, Inf / NaN anywhere, ties (and neighbours) at several
    scales, saturating maxima."""
    blocks = []
    for fmt in sorted(formats, key=lambda f: f.spec.hw_code):
        emax = fmt.spec.emax
        blocks += [_block(fmt, [0] * 32, "zero"), _block(fmt, [0x80000000] * 32, "zero"),
                   _block(fmt, [rng.getrandbits(1) << 31 for _ in range(32)], "zero")]
        for _ in range(2):
            blocks.append(_block(fmt, [rng.getrandbits(1) << 31 | rng.getrandbits(23)
                                       for _ in range(32)], "subnormal"))
            blocks.append(_block(fmt, [rng.getrandbits(1) << 31 | rng.getrandbits(23) >>
                                       rng.randint(0, 22) for _ in range(32)], "subnormal"))
        for e in sorted({1, 2, max(emax - 1, 1), emax, emax + 1, emax + 2}):
            blocks.append(_block(fmt, _with_amax(rng, e << 23 | rng.getrandbits(23), 30),
                                 "tiny"))
        for e in (1, 2, 3, 60, 100, 126, 127, 128, 150, 200, 253, 254):
            for amax in (e << 23, (e << 23) - 1, e << 23 | 0x7FFFFF, e << 23 | 0x700000):
                if 0 < amax <= _F32_MAX:
                    blocks.append(_block(fmt, _with_amax(rng, amax), "pow2_edge"))
        blocks.append(_block(fmt, _with_amax(rng, _F32_MAX, 30), "fp32_max"))
        for special in (0x7F800000, 0xFF800000, 0x7FC00000, 0xFFFFFFFF, 0x7F800001):
            x = _with_amax(rng, rng.randint(1, 254) << 23)
            x[rng.randrange(32)] = special
            blocks.append(_block(fmt, x, "special"))
        for shared in (-127, -126, -100, -20, 0, 1, 30, 100, 127 - emax):
            if -127 <= shared and 1 <= shared + 127 + emax <= 254:
                blocks.append(_block(fmt, _ties(fmt, rng, shared), "tie"))
        t = codes_table(fmt)
        top = float(t.max_int) * 2.0 ** fmt.spec.lsb_exp
        binade_top = 2.0 ** (emax + 1) * (1 - 2.0 ** -24)
        for shared in (-127, -50, 0, 40):
            for v in (binade_top, (top + 2.0 ** (emax + 1)) / 2, top):
                x = _with_amax(rng, int(np.float32(np.ldexp(v, shared)).view(np.uint32)), 2)
                blocks.append(_block(fmt, x, "saturate"))
    return blocks


def random_blocks(formats, rng: random.Random, count: int, illegal: tuple = ()) -> list[dict]:
    """``count`` random blocks: random format (1 in 40 an ``illegal`` selector if given), amax
    exponent anywhere, values spread over up to 30 binades below it, a few specials."""
    formats = sorted(formats, key=lambda f: f.spec.hw_code)
    blocks = []
    for _ in range(count):
        fmt = rng.choice(formats)
        x = _with_amax(rng, rng.randint(1, 254) << 23 | rng.getrandbits(23), rng.randint(0, 30))
        if rng.random() < 0.03:
            x[rng.randrange(32)] = rng.choice([0x7F800000, 0xFF800000, 0x7FC00000])
        block = _block(fmt, x, "random")
        if illegal and rng.random() < 0.025:
            block["fmt"] = rng.choice(illegal)
        blocks.append(block)
    return blocks


def expected(block: dict, formats) -> dict:
    """``{"scale", "codes", "status"}`` the quantiser must give for ``block``."""
    codes = {f.spec.hw_code: f for f in formats}
    fmt = codes.get(block["fmt"])
    if fmt is None:
        return {"scale": E8M0_NAN, "codes": [0] * BLOCK_SIZE,
                "status": int(ErrorCode.FORMAT_NOT_BUILT)}
    x = np.array(block["x"], np.uint32).view(np.float32)
    t = quantize_mx(x, fmt)
    return {"scale": int(t.scales[0]), "codes": [int(c) for c in t.codes],
            "status": int(ErrorCode.OK)}


def beats_of(block: dict, lanes: int, rng: random.Random | None = None) -> list[dict]:
    """The input beats of ``block``; beats after the first carry a random ``fmt`` if ``rng``."""
    beats = []
    for j in range(BLOCK_SIZE // lanes):
        fmt = block["fmt"] if j == 0 or rng is None else rng.randrange(8)
        beats.append({"values": block["x"][j * lanes:(j + 1) * lanes], "fmt": fmt})
    return beats


def _formats(params):
    return frozenset(Format.of(f) for f in params["formats"])


def coverage_model(formats) -> Coverage:
    names = [f.value for f in sorted(formats, key=lambda f: f.spec.hw_code)]
    return Coverage("mx_quantizer", fmt=names, kind=list(KINDS))


async def _run(dut, blocks, *, rng, gap, stall, coverage=None):
    from openmaia.compute.mx_quantizer import MxQuantizer, QuantizerCounters
    params = bench_params()
    formats, lanes = _formats(params), params["lanes"]
    in_layout, out_layout = MxQuantizer.input_layout(lanes), MxQuantizer.output_layout()
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    source = StreamSource(dut, "i", dut.clk, pauses=random_pauses(rng, gap))
    sink = StreamSink(dut, "o", dut.clk, pauses=random_pauses(rng, stall))
    await ClockCycles(dut.clk, 2)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    cocotb.start_soon(source.run())
    cocotb.start_soon(sink.run())
    for block in blocks:
        for beat in beats_of(block, lanes, rng):
            source.send_nowait(pack(in_layout, beat))
    nbeats = len(blocks) * (BLOCK_SIZE // lanes)
    budget = 200 + int(4 * nbeats / ((1 - gap) * (1 - stall)))
    for _ in range(budget):
        await FallingEdge(dut.clk)
        if len(sink.items) >= len(blocks):
            break
    await ClockCycles(dut.clk, params["latency"] + 5)
    errors = []
    by_code = {f.spec.hw_code: f.value for f in formats}
    for n, (block, item) in enumerate(zip(blocks, sink.items)):
        got, want = unpack(out_layout, item), expected(block, formats)
        if got != want:
            errors.append(f"block {n} ({block['kind']}, fmt {block['fmt']}): got scale "
                          f"{got['scale']} status {got['status']} codes "
                          f"{[hex(c) for c in got['codes']]}, expected scale {want['scale']} "
                          f"status {want['status']} codes {[hex(c) for c in want['codes']]}; "
                          f"x {[hex(x) for x in block['x']]}")
        elif coverage is not None and block["fmt"] in by_code:
            coverage.sample(fmt=by_code[block["fmt"]], kind=block["kind"])
    if len(sink.items) < len(blocks):
        errors.append(f"lost: {len(blocks) - len(sink.items)} of {len(blocks)} blocks missing")
    if len(sink.items) > len(blocks):
        errors.append(f"extra: {len(sink.items) - len(blocks)} blocks nobody sent")
    counters = unpack(QuantizerCounters, dut.counters.value.to_unsigned())
    illegal = sum(b["fmt"] not in by_code for b in blocks)
    if (counters["beats"], counters["blocks"], counters["illegal"]) != (nbeats, len(blocks),
                                                                        illegal):
        errors.append(f"counters {counters}: expected {nbeats} beats, {len(blocks)} blocks, "
                      f"{illegal} illegal")
    if stall and not counters["stall_output"]:
        errors.append("stall_output never counted under output backpressure")
    for error in errors[:5]:
        dut._log.error("%s", error)
    assert not errors, f"{len(errors)} errors; first: {errors[0]}"
    dut._log.info("%d blocks checked, counters %s", len(blocks), counters)


@cocotb.test()
async def directed(dut):
    """The edge blocks of every built format, gaps and backpressure, complete coverage of
    format x kind (the ``random`` kind from a few random blocks)."""
    params = bench_params()
    rng = random.Random(cocotb.RANDOM_SEED)
    formats = _formats(params)
    blocks = edge_blocks(formats, rng) + random_blocks(formats, rng, 12 * len(formats))
    coverage = coverage_model(formats)
    await _run(dut, blocks, rng=rng, gap=params.get("gap", 0.3), stall=params.get("stall", 0.3),
               coverage=coverage)
    export()
    missing = coverage.report().missing()
    assert not missing, f"coverage bins not hit: {missing[:10]}"


@cocotb.test()
async def random_traffic(dut):
    """``count`` random blocks, unbuilt format selectors among them, gaps and backpressure."""
    params = bench_params()
    rng = random.Random(cocotb.RANDOM_SEED + 1)
    formats = _formats(params)
    illegal = tuple(c for c in range(8) if c not in {f.spec.hw_code for f in formats})
    await _run(dut, random_blocks(formats, rng, params.get("count", 1500), illegal), rng=rng,
               gap=params.get("gap", 0.3), stall=params.get("stall", 0.3))


@cocotb.test()
async def full_rate(dut):
    """No gaps or backpressure: a block every ``32 / lanes`` cycles."""
    params = bench_params()
    rng = random.Random(cocotb.RANDOM_SEED + 2)
    formats = _formats(params)
    blocks = random_blocks(formats, rng, 40)
    await _run(dut, blocks, rng=rng, gap=0.0, stall=0.0)
    # (Throughput itself: test_mx_quantizer.py::test_full_rate_and_latency.)
