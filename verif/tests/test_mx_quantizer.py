"""MxQuantizer (on-chip MX quantisation of FP32 blocks): the reference cross-checked with
ml_dtypes, Amaranth-simulator tests, mutation checks, lint, and the cocotb bench on Verilator,
all bit-exact against openmaia.numerics.quantize_mx.
"""

import random

import ml_dtypes
import numpy as np
import pytest

from openmaia.benches.mx_quantizer import (KINDS, beats_of, edge_blocks, expected,
                                           random_blocks)
from openmaia.compute.mx_quantizer import FAULTS, MxQuantizer, QuantizerCounters
from openmaia.errors import ErrorCode
from openmaia.harness.amaranth_sim import run_stream
from openmaia.harness.streams import pack, unpack
from openmaia.numerics import BLOCK_SIZE, Format

BENCH = "openmaia.benches.mx_quantizer"
ALL = frozenset(Format)
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def _run(q, blocks, *, gap=0.0, stall=0.0, seed=0):
    rng = random.Random(seed)
    layout = q.input_layout(q.lanes)
    payloads = [pack(layout, beat) for block in blocks for beat in beats_of(block, q.lanes, rng)]
    outputs, in_cycles, out_cycles = run_stream(q, payloads, count=len(blocks), gap=gap,
                                                stall=stall, seed=seed, quiet=q.latency + 2)
    errors = []
    for n, (block, bits) in enumerate(zip(blocks, outputs)):
        got, want = unpack(q.output_layout(), bits), expected(block, q.formats)
        if got != want:
            errors.append(f"block {n} {block['kind']} fmt {block['fmt']}: got {got}, expected "
                          f"{want}; x {[hex(x) for x in block['x']]}")
    return errors, in_cycles, out_cycles


def _sample(blocks, rng, per_kind):
    by = {}
    for b in blocks:
        by.setdefault((b["fmt"], b["kind"]), []).append(b)
    return [b for key in sorted(by) for b in rng.sample(by[key], min(per_kind, len(by[key])))]


# The reference, against ml_dtypes


def test_reference_vs_ml_dtypes(seed):
    """Every code the bench expects equals ml_dtypes' rounding of ``x / 2**shared_exp``
    clamped to +-max (INT8: numpy's round-half-even of ``64 x / 2**shared_exp``, clamped to
    +-127), and the scale is the amax exponent rule, on all edge and random blocks."""
    rng = random.Random(seed)
    blocks = edge_blocks(ALL, rng) + random_blocks(ALL, rng, 600)
    kinds = set()
    for block in blocks:
        fmt = Format.from_hw_code(block["fmt"])
        want = expected(block, ALL)
        x = np.array(block["x"], np.uint32)
        if ((x >> 23) & 0xFF == 0xFF).any():
            assert want["scale"] == 255 and want["codes"] == [0] * 32
            continue
        e_amax = int(((x & 0x7FFFFFFF).max() >> 23) & 0xFF)
        assert want["scale"] == max(e_amax - fmt.spec.emax, 0)
        scaled = x.view(np.float32).astype(np.float64) * 2.0 ** (127 - want["scale"])
        top = float(fmt.spec.max_value)
        if fmt is Format.INT8:
            ref = np.clip(np.round(scaled * 64), -127, 127).astype(np.int64) & 0xFF
        else:
            dtype = getattr(ml_dtypes, fmt.spec.ml_dtype)
            ref = np.clip(scaled, -top, top).astype(dtype).view(np.uint8)
            if fmt.spec.bits < 8:
                ref = ref & ((1 << fmt.spec.bits) - 1)
        assert want["codes"] == [int(c) for c in ref], (block["kind"], fmt)
        kinds.add(block["kind"])
    assert kinds == set(KINDS) - {"special"}


def test_edge_blocks_hit_their_cases(rng):
    """Saturating blocks give +-max, tiny blocks clamp the scale to 0, for every format."""
    from openmaia.numerics.elements import max_code
    blocks = edge_blocks(ALL, rng)
    for fmt in ALL:
        mine = [b for b in blocks if b["fmt"] == fmt.spec.hw_code]
        tops = {max_code(fmt), max_code(fmt, True)}
        assert any(tops & set(expected(b, ALL)["codes"]) for b in mine
                   if b["kind"] == "saturate"), fmt
        assert any(expected(b, ALL)["scale"] == 0 for b in mine if b["kind"] == "tiny"), fmt
        assert any(expected(b, ALL)["scale"] == 254 - fmt.spec.emax for b in mine
                   if b["kind"] == "fp32_max"), fmt


# Amaranth simulator


def test_edge_sample_all_formats(seed):
    """A sample of every (format, kind) of the edge blocks, 8 lanes, gaps and backpressure."""
    rng = random.Random(seed)
    blocks = _sample(edge_blocks(ALL, rng), rng, 2) + random_blocks(ALL, rng, 12, (6, 7))
    errors, _, _ = _run(MxQuantizer(formats=ALL, lanes=8), blocks, gap=0.3, stall=0.3,
                        seed=seed)
    assert not errors, "\n".join(errors[:3])


@pytest.mark.parametrize("lanes, formats", [(32, {Format.E2M1}), (1, {Format.E4M3, Format.INT8}),
                                            (16, {Format.E5M2, Format.E3M2, Format.E2M3})])
def test_lanes_and_subsets(lanes, formats, seed):
    rng = random.Random(seed)
    formats = frozenset(formats)
    illegal = tuple(c for c in range(8) if c not in {f.spec.hw_code for f in formats})
    blocks = _sample(edge_blocks(formats, rng), rng, 1) + random_blocks(formats, rng, 6, illegal)
    if lanes == 1:
        blocks = blocks[::4]
    errors, _, _ = _run(MxQuantizer(formats=formats, lanes=lanes), blocks, gap=0.2, stall=0.3,
                        seed=seed)
    assert not errors, "\n".join(errors[:3])


def test_full_rate_and_latency():
    q = MxQuantizer(formats=ALL, lanes=8)
    blocks = random_blocks(ALL, random.Random(3), 10)
    errors, in_cycles, out_cycles = _run(q, blocks)
    assert not errors, "\n".join(errors[:3])
    assert in_cycles == list(range(in_cycles[0], in_cycles[0] + len(in_cycles)))
    lasts = in_cycles[q.beats - 1::q.beats]
    assert out_cycles == [c + q.latency for c in lasts]


def test_illegal_format_then_good():
    q = MxQuantizer(formats={Format.E4M3}, lanes=32)
    x = [0x3F800000] * 32
    blocks = [{"fmt": 7, "x": x, "kind": "random"}, {"fmt": 0, "x": x, "kind": "random"},
              {"fmt": Format.E2M1.spec.hw_code, "x": x, "kind": "random"}]
    errors, _, _ = _run(q, blocks)
    assert not errors, "\n".join(errors)
    assert expected(blocks[0], q.formats)["status"] == ErrorCode.FORMAT_NOT_BUILT
    assert expected(blocks[1], q.formats) == {"scale": 127 - 8, "codes": [0x78] * 32,
                                              "status": 0}   # 1.0 = 2**8 * 2**-8


def _targeted():
    """Blocks aimed at the faults: ties, saturation, subnormal inputs, amax in an early beat."""
    rng = random.Random(11)
    blocks = [b for b in edge_blocks(ALL, rng) if b["kind"] in ("tie", "saturate", "subnormal")]
    early = [0x3F800000] + [0x3E000000] * 31             # amax in beat 0
    blocks.append({"fmt": Format.E4M3.spec.hw_code, "x": early, "kind": "random"})
    return blocks[::3] + blocks[-1:]


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_caught(fault):
    blocks = _targeted()
    errors, _, _ = _run(MxQuantizer(formats=ALL, lanes=8, faults={fault}), blocks)
    assert errors, f"fault {fault} not detected"


def test_counters():
    from amaranth.sim import Simulator
    q = MxQuantizer(formats={Format.E4M3}, lanes=16)
    layout = q.input_layout(16)
    blocks = [{"fmt": f, "x": [0x3F800000] * 32, "kind": "random"} for f in (0, 7, 0)]
    beats = [b for block in blocks for b in beats_of(block, 16)]

    async def bench(ctx):
        ctx.set(q.o.ready, 1)
        for beat in beats:
            ctx.set(q.i.payload.as_value(), pack(layout, beat))
            ctx.set(q.i.valid, 1)
            await ctx.tick()
        ctx.set(q.i.valid, 0)
        ctx.set(q.o.ready, 0)                     # the last block's result waits at the output
        await ctx.tick().repeat(q.latency + 6)
        ctx.set(q.o.ready, 1)
        await ctx.tick().repeat(8)
        cnt = ctx.get(q.counters)
        assert (cnt.beats, cnt.blocks, cnt.illegal) == (6, 3, 1)
        assert cnt.stall_output >= 6 and cnt.busy >= 6 + q.latency

    sim = Simulator(q)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(formats=ALL, lanes=3), ValueError, "lanes must be one of"),
    (dict(formats=ALL, lanes=64), ValueError, "lanes must be one of"),
    (dict(formats=ALL, lanes=True), ValueError, "lanes must be one of"),
    (dict(formats=(), lanes=8), ValueError, "at least one element format"),
    (dict(formats="e4m3", lanes=8), TypeError, "collection of element formats"),
    (dict(formats=ALL, lanes=8, faults={"nope"}), ValueError, "unknown fault 'nope'"),
    (dict(formats=ALL, lanes=8, faults="no_saturate"), TypeError, "collection of fault"),
])
def test_parameter_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        MxQuantizer(**kwargs)


def test_properties():
    q = MxQuantizer(formats=["e4m3", "int8"], lanes=4)
    assert q.formats == {Format.E4M3, Format.INT8} and q.lanes == 4 and q.beats == 8
    assert q.output_layout().size == 8 + 8 * BLOCK_SIZE + 8
    assert QuantizerCounters.as_shape().size > 0


@pytest.mark.parametrize("formats, lanes", [
    (ALL, 8), pytest.param({Format.E2M1}, 32, marks=pytest.mark.slow),
    pytest.param({Format.E4M3, Format.INT8}, 1, marks=pytest.mark.slow)])
def test_lint(formats, lanes):
    from openmaia.harness import lint
    lint(MxQuantizer(formats=formats, lanes=lanes), name="mx_quantizer")


# cocotb + Verilator


def _simulate(q, testcase=None, check=True, **params):
    from openmaia.harness import simulate
    base = {"formats": [f.value for f in Format if f in q.formats], "lanes": q.lanes,
            "latency": q.latency}
    result = simulate(q, bench=BENCH, name="mx_quantizer", testcase=testcase, check=check,
                      params=base | params)
    print(f"build {result.build_seconds:.1f} s (cached {result.build_cached}), run "
          f"{result.run_seconds:.1f} s, log {result.log_file}")
    return result


@pytest.mark.sim
def test_cocotb():
    """Every edge block of every format (coverage format x kind complete), 1,500 random
    blocks with unbuilt selectors, full rate; 8 lanes."""
    result = _simulate(MxQuantizer(formats=ALL, lanes=8), count=1500)
    assert result.tests == 3 and result.passed
    result.coverage.assert_complete()


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("lanes, formats", [(32, ALL), (1, {Format.E4M3, Format.E2M1})])
def test_cocotb_slow(lanes, formats):
    result = _simulate(MxQuantizer(formats=formats, lanes=lanes), count=20_000)
    assert result.tests == 3 and result.passed


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_cocotb_fault_caught(fault):
    result = _simulate(MxQuantizer(formats=ALL, lanes=8, faults={fault}), testcase="directed",
                       check=False)
    assert result.failed, f"fault {fault} passed the bench"
