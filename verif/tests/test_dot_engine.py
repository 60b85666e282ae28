"""MX dot engine: Amaranth-simulator tests against the golden model, lint, and mutation checks.

Every output is compared bit for bit with :func:`~openmaia.numerics.dot.block_dot` accumulated by
:func:`~openmaia.numerics.dot.fp32_add` from its accumulator input, which is
:func:`~openmaia.numerics.dot.dot_blocks` for a single format pair (checked too). The tests cover
every format pair of the small preset, the accumulator control (first / last / slot / acc, slot
interleaving, the interlock), random gaps and backpressure, the latency and the rate in every
mode, the {E4M3, E2M1} subset build, parameter errors, lint, and each deliberate fault (each
killed by a targeted vector: the mutation check).
"""

import random
from collections import deque
from dataclasses import dataclass
from itertools import product

import numpy as np
import pytest

from openmaia.compute.dot_engine import FAULTS, DotBeat, DotResult, MxDotEngine
from openmaia.compute.dot_lanes import lane_widths
from openmaia.config import PRESETS
from openmaia.harness.amaranth_sim import run_stream
from openmaia.harness.streams import pack, unpack
from openmaia.numerics import (CANONICAL_NAN, block_dot, block_sum_bits, dot_blocks, fp32_add)
from openmaia.numerics.elements import codes_table
from openmaia.numerics.formats import BLOCK_SIZE, Format

SMALL = PRESETS["small"]
SUBSET = frozenset({Format.E4M3, Format.E2M1})
ALL_PAIRS = list(product(sorted(SMALL.formats, key=lambda f: f.spec.hw_code), repeat=2))
# A constructor that raises leaves an Elaboratable behind, which warns when it is collected.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


# Jobs: outputs made of blocks, their beats, and their expected results


@dataclass
class Block:
    fmt_a: int                      # hw_code selectors (6 and 7 are illegal)
    fmt_b: int
    a: list                         # 32 codes each
    b: list
    scale_a: int = 127
    scale_b: int = 127


@dataclass
class Output:
    blocks: list
    slot: int = 0
    acc: int = 0x80000000


def _fmt(code):
    try:
        return Format.from_hw_code(code)
    except ValueError:
        return None


def block_result(block: Block, formats) -> int:
    fa, fb = _fmt(block.fmt_a), _fmt(block.fmt_b)
    if fa not in formats or fb not in formats:
        return CANONICAL_NAN
    return int(block_dot(np.array(block.a, np.uint8), np.array(block.b, np.uint8), fa, fb,
                         block.scale_a, block.scale_b))


def expected(output: Output, formats) -> int:
    acc = np.uint32(output.acc)
    for block in output.blocks:
        acc = fp32_add(acc, np.uint32(block_result(block, formats)))
    return int(acc)


def block_beats(engine: MxDotEngine, block: Block, *, first, last, slot, acc, rng=None):
    """The beat payloads (dicts) of one block; ``rng``: fill unused code bits with junk."""
    lanes = engine.lanes
    fa, fb = _fmt(block.fmt_a), _fmt(block.fmt_b)
    fp4 = engine.double_rate and fa is Format.E2M1 and fb is Format.E2M1

    def lane_codes(codes, fmt):
        if fp4:
            return [codes[2 * k] | codes[2 * k + 1] << 4 for k in range(BLOCK_SIZE // 2)]
        if rng is not None and fmt is not None and fmt.spec.bits < 8 and rng.random() < 0.5:
            return [c | (rng.randrange(256) & ~(fmt.spec.codes - 1)) for c in codes]
        return list(codes)

    a, b = lane_codes(block.a, fa), lane_codes(block.b, fb)
    header = dict(fmt_a=block.fmt_a, fmt_b=block.fmt_b, scale_a=block.scale_a,
                  scale_b=block.scale_b, first=int(first), last=int(last), slot=slot, acc=acc)
    beats = []
    for n in range(0, len(a), lanes):
        beat = dict(header) if n == 0 or rng is None else {
            key: rng.getrandbits(32) for key in header}
        beat.update(a=a[n:n + lanes], b=b[n:n + lanes])
        beats.append(beat)
    return beats


def schedule(engine: MxDotEngine, outputs, *, group=None, rng=None):
    """Beats (packed ints) for ``outputs``, issued in groups of ``group`` (default
    ``engine.slots``) outputs whose blocks interleave round robin, each output of a group on its
    own slot (a random one if ``rng``, which also fills unused beat bits with junk). Also returns
    the outputs in the order their results must appear, and the index of the beat that
    completes each."""
    layout = engine.i.payload.shape()
    group = group or engine.slots
    beats, order, last_beat = [], [], []
    for start in range(0, len(outputs), group):
        members = outputs[start:start + group]
        slots = rng.sample(range(engine.slots), len(members)) if rng else range(len(members))
        for slot, output in zip(slots, members):
            output.slot = slot
        queues = [deque(enumerate(output.blocks)) for output in members]
        while any(queues):
            for output, queue in zip(members, queues):
                if not queue:
                    continue
                n, block = queue.popleft()
                last = n == len(output.blocks) - 1
                for beat in block_beats(engine, block, first=n == 0, last=last,
                                        slot=output.slot, acc=output.acc, rng=rng):
                    beats.append(pack(layout, beat))
                if last:
                    order.append(output)
                    last_beat.append(len(beats) - 1)
    return beats, order, last_beat


def run(engine: MxDotEngine, beats, *, count, gap=0.0, stall=0.0, seed=0):
    """Push packed ``beats`` through ``engine`` in the Amaranth simulator, expecting ``count``
    results (and no more).

    Returns ``(results, in_cycles, out_cycles)``: ``(value, slot)`` of each result and the cycle
    of each input and output transfer. Fails if a stalled output changes or the engine hangs.
    """
    layout = engine.o.payload.shape()
    budget = 100 + (len(beats) * 3) / ((1 - gap) * (1 - stall))
    outputs, in_cycles, out_cycles = run_stream(engine, beats, count=count, gap=gap,
                                                stall=stall, seed=seed, budget=budget,
                                                quiet=engine.latency + 4)
    results = [(fields["value"], fields["slot"])
               for fields in (unpack(layout, bits) for bits in outputs)]
    return results, in_cycles, out_cycles


def check(engine: MxDotEngine, outputs, *, gap=0.0, stall=0.0, seed=0, group=None, junk=True):
    """Run ``outputs`` (see :func:`schedule`) and compare every result bit for bit.

    Returns ``(in_cycles, out_cycles, last_beat)`` of the run (see :func:`run`)."""
    rng = random.Random(seed ^ 0x5A5A) if junk else None
    beats, order, last_beat = schedule(engine, outputs, group=group, rng=rng)
    results, in_cycles, out_cycles = run(engine, beats, count=len(order), gap=gap, stall=stall,
                                         seed=seed)
    assert len(results) == len(order), f"{len(results)} results for {len(order)} outputs"
    for n, (output, (value, slot)) in enumerate(zip(order, results)):
        want = expected(output, engine.formats)
        assert (value, slot) == (want, output.slot), (
            f"result {n}: {value:#010x} slot {slot}, want {want:#010x} slot {output.slot}; "
            f"blocks {[(b.fmt_a, b.fmt_b, b.scale_a, b.scale_b) for b in output.blocks]}")
    return in_cycles, out_cycles, last_beat


# Random blocks


def _finite_codes(fmt: Format) -> list:
    table = codes_table(fmt)
    return [c for c in range(fmt.spec.codes) if not table.nan[c] and not table.inf[c]]


def _negate(fmt: Format, code: int):
    if fmt.is_float:
        return code ^ (1 << (fmt.spec.bits - 1))
    return None if code == 0x80 else (-code) & 0xFF


def _zeros(fmt: Format) -> list:
    return [0, 1 << (fmt.spec.bits - 1)] if fmt.is_float else [0]


def _specials(fmt: Format) -> list:
    table = codes_table(fmt)
    return [c for c in range(fmt.spec.codes) if table.nan[c] or table.inf[c]] + _zeros(fmt)


STYLES = ("random", "random", "special", "zeros", "neg_zero", "cancel", "extreme", "sparse")


def random_block(rng: random.Random, fa: Format, fb: Format, style: str = None) -> Block:
    """A block of one of :data:`STYLES`: random finite codes; a few NaN / Inf / zero codes or a
    NaN scale; many zeros; all products -0 (or all but one); exact cancellation; extreme scales
    (overflow, subnormal results); mostly zero A."""
    style = style or rng.choice(STYLES)
    fin_a, fin_b = _finite_codes(fa), _finite_codes(fb)
    a = [rng.choice(fin_a) for _ in range(BLOCK_SIZE)]
    b = [rng.choice(fin_b) for _ in range(BLOCK_SIZE)]
    scale_a, scale_b = (rng.randrange(120, 135) for _ in range(2))
    if style == "special":
        for _ in range(rng.randrange(1, 3)):
            k = rng.randrange(BLOCK_SIZE)
            if rng.random() < 0.5:
                a[k] = rng.choice(_specials(fa))
            else:
                b[k] = rng.choice(_specials(fb))
        if rng.random() < 0.2:
            scale_a = 255
    elif style == "zeros":
        for k in range(BLOCK_SIZE):
            if rng.random() < 0.8:
                a[k] = rng.choice(_zeros(fa))
            if rng.random() < 0.5:
                b[k] = rng.choice(_zeros(fb))
    elif style == "neg_zero":
        # A float side's -0 times any finite code of the other side (a positive one for an
        # INT8 side, whose zero is +0), except one +0 product now and then.
        for k in range(BLOCK_SIZE):
            if fa.is_float:
                a[k] = _zeros(fa)[1]
                if not fb.is_float:
                    b[k] = rng.choice([c for c in fin_b if c < 0x80])
            elif fb.is_float:
                b[k] = _zeros(fb)[1]
                a[k] = rng.choice([c for c in fin_a if c < 0x80])
        if rng.random() < 0.3:
            k = rng.randrange(BLOCK_SIZE)
            a[k], b[k] = 0, 0
    elif style == "cancel":
        for k in range(BLOCK_SIZE // 2):
            neg = _negate(fa, a[k])
            if neg is not None:
                a[k + 16], b[k + 16] = neg, b[k]
            else:
                a[k + 16], b[k + 16] = a[k], _negate(fb, b[k]) or 0
        if rng.random() < 0.5:
            k = rng.randrange(BLOCK_SIZE)
            a[k] = rng.choice(fin_a)
    elif style == "extreme":
        scale_a, scale_b = rng.choice([(0, 0), (1, 20), (254, 254), (200, 200), (254, 130),
                                       (10, 90), (0, 127), (40, 40), (60, 60), (240, 150)])
    elif style == "sparse":
        for k in range(BLOCK_SIZE):
            if rng.random() < 0.8:
                a[k] = 0
    return Block(fa.spec.hw_code, fb.spec.hw_code, a, b, scale_a, scale_b)


def random_output(rng, fa, fb, blocks=None) -> Output:
    n = blocks or rng.randrange(2, 4)
    acc = rng.choice([0x80000000, 0, 0x3F800000, 0xC1200000, 0x7F800000, 0xFF800000,
                      0x7FC00001, 0x00000001, 0x7F7FFFFF, rng.randrange(1 << 32)])
    return Output([random_block(rng, fa, fb) for _ in range(n)], acc=acc)


# Every format pair of the small preset


@pytest.fixture(scope="module")
def small_engine():
    return MxDotEngine(formats=SMALL.formats, lanes=SMALL.lanes, slots=SMALL.acc_depth)


@pytest.mark.parametrize("chunk", range(4))
def test_format_pairs(small_engine, chunk, seed):
    rng = random.Random(seed)
    pairs = ALL_PAIRS[chunk::4]
    outputs = [random_output(rng, fa, fb) for fa, fb in pairs for _ in range(3)]
    rng.shuffle(outputs)
    check(small_engine, outputs, gap=0.1, stall=0.1, seed=seed)


def test_dot_blocks_equivalence(small_engine, seed):
    """One long output per mode equals dot_blocks (a single format pair, K = 32 * blocks)."""
    rng = random.Random(seed)
    outputs = []
    for fa, fb in [(Format.E4M3, Format.E2M1), (Format.E2M1, Format.E2M1),
                   (Format.E5M2, Format.E5M2), (Format.INT8, Format.E3M2)]:
        output = random_output(rng, fa, fb, blocks=5)
        for block in output.blocks:
            block.fmt_a, block.fmt_b = fa.spec.hw_code, fb.spec.hw_code
        want = dot_blocks(np.concatenate([blk.a for blk in output.blocks]).astype(np.uint8),
                          np.concatenate([blk.b for blk in output.blocks]).astype(np.uint8),
                          fa, fb, [blk.scale_a for blk in output.blocks],
                          [blk.scale_b for blk in output.blocks], acc=output.acc)
        assert expected(output, SMALL.formats) == int(want)
        outputs.append(output)
    check(small_engine, outputs, seed=seed)


# Accumulator control: first / last / slot / acc, interleaving, the interlock


def test_accumulator_control(small_engine, seed):
    """Single-block and long outputs, every kind of accumulator input, illegal selectors, on
    random slots, four outputs interleaved, then one at a time."""
    rng = random.Random(seed)
    accs = [0x80000000, 0x00000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00123,
            0x7F7FFFFF, 0xFF7FFFFF, 0x00000001, 0x80000001, 0x3F800000, 0x4B000000]
    outputs = []
    for acc in accs:
        fa, fb = rng.choice(ALL_PAIRS)
        outputs.append(Output([random_block(rng, fa, fb) for _ in range(rng.choice([1, 1, 6]))],
                              acc=acc))
    for fmt_a, fmt_b in [(6, 0), (0, 7), (7, 6), (4, 6)]:
        block = random_block(rng, Format.E4M3, Format.E4M3)
        block.fmt_a, block.fmt_b = fmt_a, fmt_b
        block.a = [rng.randrange(256) for _ in block.a]
        outputs.append(Output([random_block(rng, Format.E2M1, Format.E2M1), block], acc=0))
    check(small_engine, outputs, seed=seed)
    check(small_engine, outputs, seed=seed, group=1)


@pytest.fixture(scope="module")
def wide_engine():
    """16 lanes, {E4M3, E2M1}: an FP4 x FP4 block is a single beat."""
    return MxDotEngine(formats=SUBSET, lanes=16, slots=2)


def _one_beat_outputs(rng, count, blocks):
    return [Output([random_block(rng, Format.E2M1, Format.E2M1) for _ in range(blocks)],
                   acc=rng.choice([0, 0x80000000, 0x3F800000]))
            for _ in range(count)]


def test_interlock_same_slot(wide_engine, seed):
    """Back-to-back blocks of one slot wait for the adder: one stall per non-first block."""
    rng = random.Random(seed)
    outputs = _one_beat_outputs(rng, 4, 5)
    in_cycles, _, _ = check(wide_engine, outputs, group=1, seed=seed)
    steps = np.diff(in_cycles)
    firsts = np.cumsum([len(output.blocks) for output in outputs])[:-1]
    waits = [steps[k - 1] for k in range(1, len(in_cycles)) if k not in firsts]
    assert set(waits) == {MxDotEngine.ADD_STAGES}, "non-first blocks must wait for the adder"
    assert all(steps[k - 1] == 1 for k in firsts), "a first block must not wait"


def test_interlock_interleaved(wide_engine, seed):
    """Two slots interleaved keep one block a cycle going in FP4 x FP4 mode."""
    rng = random.Random(seed)
    outputs = _one_beat_outputs(rng, 6, 4)
    in_cycles, out_cycles, last_beat = check(wide_engine, outputs, seed=seed)
    assert in_cycles == list(range(len(in_cycles)))
    assert [out - in_cycles[n] for out, n in zip(out_cycles, last_beat)] == \
        [wide_engine.latency] * len(out_cycles)


def test_two_beat_blocks_never_wait(wide_engine, seed):
    """16 lanes, FP8: a block is two beats, so even one slot runs gap-free."""
    rng = random.Random(seed)
    outputs = [Output([random_block(rng, Format.E4M3, Format.E2M1) for _ in range(4)])
               for _ in range(3)]
    in_cycles, _, _ = check(wide_engine, outputs, group=1, seed=seed)
    assert in_cycles == list(range(len(in_cycles)))


# Backpressure: random gaps and stalls lose, duplicate and reorder nothing


@pytest.mark.parametrize("gap, stall", [(0.5, 0.5), (0.0, 0.8), (0.8, 0.0)])
def test_backpressure(small_engine, gap, stall, seed):
    rng = random.Random(seed)
    outputs = [random_output(rng, *rng.choice(ALL_PAIRS), blocks=rng.choice([1, 2, 3]))
               for _ in range(14)]
    check(small_engine, outputs, gap=gap, stall=stall, seed=seed)


# Rate and latency: N gap-free beats finish in N + latency cycles


@pytest.mark.parametrize("fa, fb", [(Format.E4M3, Format.E4M3), (Format.E2M1, Format.E2M1),
                                    (Format.E4M3, Format.E2M1)], ids=["fp8", "fp4", "fp8xfp4"])
def test_rate_and_latency(small_engine, fa, fb, seed):
    beats_total = 1000
    per_block = small_engine.beats_per_block(fa, fb)
    assert per_block == (4 if fa is fb is Format.E2M1 else 8)
    rng = random.Random(seed)
    blocks = beats_total // per_block
    outputs = [Output([random_block(rng, fa, fb, "random") for _ in range(5)])
               for _ in range(blocks // 5)]
    in_cycles, out_cycles, last_beat = check(small_engine, outputs, group=1, seed=seed,
                                             junk=False)
    assert in_cycles == list(range(beats_total)), "the input stalled"
    assert [out - in_cycles[n] for out, n in zip(out_cycles, last_beat)] == \
        [small_engine.latency] * len(outputs)
    assert out_cycles[-1] + 1 == beats_total + small_engine.latency


def test_latency_property():
    engine = MxDotEngine(formats=SUBSET, lanes=4)
    assert engine.latency == 2 + MxDotEngine.ROUND_STAGES + MxDotEngine.ADD_STAGES == 6


# The {E4M3, E2M1} build


@pytest.fixture(scope="module")
def subset_engine():
    return MxDotEngine(formats=SUBSET, lanes=4, slots=2)


def test_subset(subset_engine, seed):
    rng = random.Random(seed)
    pairs = list(product([Format.E4M3, Format.E2M1], repeat=2))
    outputs = [random_output(rng, fa, fb) for fa, fb in pairs for _ in range(3)]
    for fmt in (Format.E5M2, Format.E3M2, Format.E2M3, Format.INT8):   # compiled out: NaN
        block = random_block(rng, Format.E4M3, Format.E4M3, "random")
        block.fmt_b = fmt.spec.hw_code
        outputs.append(Output([random_block(rng, Format.E4M3, Format.E2M1), block]))
    check(subset_engine, outputs, gap=0.2, stall=0.2, seed=seed)


def test_no_double_rate(seed):
    """Without fp4_double_rate, E2M1 x E2M1 takes one element a lane: 32 / lanes beats."""
    engine = MxDotEngine(formats=SUBSET, lanes=8, slots=2, fp4_double_rate=False)
    assert not engine.double_rate and engine.beats_per_block("e2m1", "e2m1") == 4
    rng = random.Random(seed)
    outputs = [random_output(rng, Format.E2M1, Format.E2M1) for _ in range(4)]
    check(engine, outputs, seed=seed)


# Widths, layouts and parameters


@pytest.mark.parametrize("formats, sum_width, term, block_exp", [
    (SMALL.formats, 70, 64, 10),
    (SUBSET, 42, 36, 10),
    ({Format.E2M1}, 14, 8, 9),       # exponents -256..254
    ({Format.INT8}, 21, 15, 10),
    ({Format.E4M3, Format.INT8}, 42, 36, 10),
])
def test_widths(formats, sum_width, term, block_exp):
    widths = lane_widths(frozenset(formats), Format.E2M1 in formats)
    assert widths.sum == sum_width == max(block_sum_bits(fa, fb)
                                          for fa in formats for fb in formats)
    assert widths.term == term
    assert widths.block_exp == block_exp
    assert [k for k, _ in widths.stages] == list(range(len(widths.stages)))
    assert [w for _, w in widths.stages] == sorted(w for _, w in widths.stages)
    engine = MxDotEngine(formats=formats, lanes=2)
    assert engine.sum_width == sum_width


def test_layouts():
    engine = MxDotEngine(formats=SUBSET, lanes=8, slots=2)
    beat = DotBeat.of(8, 2)
    assert engine.i.payload.shape() is beat and issubclass(beat, DotBeat)
    assert [name for name, _ in beat.as_shape()] == [
        "a", "b", "fmt_a", "fmt_b", "scale_a", "scale_b", "first", "last", "slot", "acc"]
    assert beat.as_shape().size == 2 * 64 + 6 + 16 + 2 + 1 + 32
    assert DotBeat.of(4, 16).as_shape()["slot"].width == 4
    assert DotBeat.of(4, 1).as_shape()["slot"].width == 1
    assert engine.o.payload.shape() is DotResult.of(2)
    assert [name for name, _ in DotResult.of(8).as_shape()] == ["value", "slot"]


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(formats=[], lanes=4), ValueError, "at least one"),
    (dict(formats="e4m3", lanes=4), TypeError, "collection of element formats"),
    (dict(formats=SUBSET, lanes=3), ValueError, "lanes must be one of"),
    (dict(formats=SUBSET, lanes=32), ValueError, "lanes must be one of"),
    (dict(formats=SUBSET, lanes=True), ValueError, "lanes must be one of"),
    (dict(formats=SUBSET, lanes=4, slots=3), ValueError, "slots must be a power of two"),
    (dict(formats=SUBSET, lanes=4, slots=0), ValueError, "slots must be a power of two"),
    (dict(formats=SUBSET, lanes=4, slots=128), ValueError, "slots must be a power of two"),
    (dict(formats=SUBSET, lanes=4, fp4_double_rate=1), TypeError, "fp4_double_rate"),
    (dict(formats=SUBSET, lanes=4, faults={"nope"}), ValueError, "unknown fault 'nope'"),
    (dict(formats=SUBSET, lanes=4, faults="zero_sign"), TypeError, "collection of fault"),
    (dict(formats={Format.E4M3}, lanes=4, faults={"fp4_nibble_swap"}), ValueError,
     "fp4_nibble_swap"),
    (dict(formats=SUBSET, lanes=4, fp4_double_rate=False, faults={"fp4_nibble_swap"}),
     ValueError, "fp4_nibble_swap"),
])
def test_parameter_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        MxDotEngine(**kwargs)


def test_positional_parameters_rejected():
    with pytest.raises(TypeError):
        MxDotEngine(SUBSET, 4)


# Lint


@pytest.mark.parametrize("formats, lanes", [(SMALL.formats, SMALL.lanes), (SUBSET, 4)],
                         ids=["small", "e4m3+e2m1"])
def test_lint(formats, lanes):
    from openmaia.harness import lint
    lint(MxDotEngine(formats=formats, lanes=lanes), name="dot_engine")


# Mutation check: each deliberate fault is killed by a targeted vector


def _block(fa, fb, a, b, scale_a=127, scale_b=127):
    pad = [0] * (BLOCK_SIZE - len(a))
    return Block(fa.spec.hw_code, fb.spec.hw_code, list(a) + pad, list(b) + pad, scale_a,
                 scale_b)


E4M3, E2M1 = Format.E4M3, Format.E2M1
ONE_E4M3, ONE_E2M1 = 0x38, 0x2

#: Per fault: blocks (one output each) whose result the fault changes.
TARGETED = {
    # 2**16 + 2**-8 + 2**-18: above the half-ulp tie, so RNE rounds up; truncation and a
    # dropped sticky bit (a tie, to even) both give 2**16.
    "rounding_truncate": [_block(E4M3, E4M3, [0x78, 0x18, 0x01], [0x78, 0x18, 0x01])],
    "drop_sticky": [_block(E4M3, E4M3, [0x78, 0x18, 0x01], [0x78, 0x18, 0x01])],
    # Every product -0 (and the accumulator input -0): the result is -0.
    "zero_sign": [_block(E4M3, E4M3, [0x80] * 32, [ONE_E4M3] * 32)],
    # Scale 255 is NaN; as 2**128 the result would be finite.
    "ignore_nan_scale": [_block(E4M3, E4M3, [ONE_E4M3] * 32, [ONE_E4M3] * 32, 255, 0)],
    # A's even elements 1.0, odd 0; B's even 1.0, odd 2.0: 16, or 32 with A's nibbles swapped.
    "fp4_nibble_swap": [_block(E2M1, E2M1, [ONE_E2M1, 0] * 16, [ONE_E2M1, 0x4] * 16)],
    # All ones: 32, or 24 without lane 0's products; 64 or 48 in FP4 x FP4 mode (1.0 x 2.0).
    "lane_stuck_zero": [_block(E4M3, E4M3, [ONE_E4M3] * 32, [ONE_E4M3] * 32),
                        _block(E2M1, E2M1, [ONE_E2M1] * 32, [0x4] * 32)],
}


def test_targeted_vectors(small_engine):
    outputs = [Output([block]) for blocks in TARGETED.values() for block in blocks]
    check(small_engine, outputs, junk=False)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_killed(fault):
    assert set(TARGETED) == set(FAULTS)
    engine = MxDotEngine(formats=SMALL.formats, lanes=SMALL.lanes, faults={fault})
    outputs = [Output([block]) for block in TARGETED[fault]]
    beats, order, _ = schedule(engine, outputs)
    results, _, _ = run(engine, beats, count=len(order))
    want = [expected(output, SMALL.formats) for output in order]
    assert len(results) == len(want)
    assert all(value != w for (value, _), w in zip(results, want)), \
        f"fault {fault} survives: {[hex(v) for v, _ in results]} == {[hex(w) for w in want]}"
