"""cocotb bench of :class:`openmaia.compute.dot_engine.MxDotEngine`, bit-exact to openmaia.numerics.

The engine's contract is docs/dot-engine.md; the arithmetic is docs/numerics.md. Four tests:

* :func:`exhaustive_products`: every code pair of every element-format pair as a single product.
  Item ``i`` of a pair ``(fa, fb)`` (``ca = i // nb``, ``cb = i % nb``) is one block whose only
  nonzero-capable product sits in element ``i % 32`` (so in lane ``i % V``, and in FP4 x FP4 mode in
  both nibbles in turn); the other 31 products are zeros of each format, negative zeros where a
  format has one (so the sign of a zero pair product shows in the result). NaN and Inf codes are
  included. Scales are random in 107..147 (no overflow or underflow for any pair), ``first = last
  = 1``, ``acc = -0.0`` so that the result is ``block_dot`` exactly. Gap-free, sink always ready.
* :func:`scale_sweep`: every pair of E8M0 scale codes (NaN included), or the rows and columns of
  edge codes, with four element patterns: max x max (all 32 elements), min subnormal x min
  subnormal (one element), -1 x 1 (one element), -0 x x (all elements, x positive). The format pair
  rotates through ``pairs``.
* :func:`random_dots`: random multi-block dot products with special values mixed in (directed
  flavours first, each format pair, then random ones), interleaved over the accumulator slots,
  random input gaps and output backpressure, junk in the fields of non-first beats; functional
  coverage of format pair x special-value class (:func:`coverage_bins`), exported for pytest.
* :func:`cycle_count`: per format pair, about 1,000 gap-free beats (single-block outputs, then
  multi-block outputs interleaved over all slots) into an always-ready sink finish in exactly
  ``beats + latency`` cycles, counted on the simulation clock from the first beat's acceptance
  to the last result's acceptance.

Parameters (:func:`openmaia.harness.bench_params`): ``formats`` (names), ``lanes``, ``slots``,
``fp4_double_rate`` (default true), ``latency`` (the engine's, for ``cycle_count``), ``pairs``
(list of ``[fa, fb]`` names; default: every pair of ``formats``), and per test: ``chunk``
(``[start, stop)`` over the concatenated items of ``pairs``) and ``sample`` (items per pair, at
random) for ``exhaustive_products``; ``scales`` (``"all"`` or ``"edges"``) and ``sa_range``
(``[lo, hi)``) for ``scale_sweep``; ``count``, ``gap``, ``stall`` for ``random_dots``;
``beats`` for ``cycle_count``.

The pieces are small classes: :class:`BeatFormat` (payload packing from the engine's DotBeat /
DotResult layouts: offsets are read from the layout, not hard-coded), :class:`BeatDriver` (drives
``i``), :class:`ResultMonitor` (accepts from ``o``; both run in one coroutine,
:func:`stream_loop`, for speed), :class:`ReferenceModel`
(the golden model, batched: :func:`block_results` uses the golden model's layers exactly as
``mx_matmul`` does, and a sample of blocks and outputs is re-checked against the scalar
``block_dot`` / ``dot_blocks``), and :class:`Scoreboard` (in-order, bit-exact, counts and reports
mismatches with full context, detects lost, duplicated and reordered results).
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from amaranth.lib import data

from openmaia.harness import bench_params
from openmaia.harness.streams import pack, random_pauses
from openmaia.numerics import (CANONICAL_NAN, FP32_NEG_ZERO, block_dot, dot_blocks, encode,
                               fp32_add, max_code, round_to_fp32, round_to_fp32_array)
from openmaia.numerics.elements import codes_table
from openmaia.numerics.formats import BLOCK_SIZE, E8M0_BIAS, E8M0_NAN, Format

CLOCK_NS = 10
FP32_POS_INF = 0x7F800000
HEADER_FIELDS = ("fmt_a", "fmt_b", "scale_a", "scale_b", "first", "last", "slot", "acc")


# --------------------------------------------------------------------------------------------
# Formats and code pools
# --------------------------------------------------------------------------------------------

def pair_name(fa: Format, fb: Format) -> str:
    return f"{fa.value}*{fb.value}"


def all_pairs(formats) -> list[tuple[Format, Format]]:
    fs = [f for f in Format if f in {Format.of(x) for x in formats}]
    return [(fa, fb) for fa in fs for fb in fs]


def pairs_from_params(params) -> list[tuple[Format, Format]]:
    if params.get("pairs"):
        return [(Format.of(a), Format.of(b)) for a, b in params["pairs"]]
    return all_pairs(params["formats"])


@dataclass(frozen=True)
class Pools:
    """Code pools of one format (uint8 arrays) and a few named codes."""
    finite: np.ndarray
    nonzero: np.ndarray
    pos_nonzero: np.ndarray
    top: np.ndarray            # |value| >= max / 4
    top2: np.ndarray           # |value| >= max / 2
    small: np.ndarray          # the smallest nonzero magnitudes
    nan: np.ndarray
    inf_pos: int | None
    inf_neg: int | None
    neg_zero: int | None       # sign-bit-only code (None for INT8)
    one: int
    minus_one: int
    max_pos: int
    max_neg: int
    min_neg: int
    sign_bit: int


@cache
def pools(fmt: Format) -> Pools:
    t = codes_table(fmt)
    n = fmt.spec.codes
    codes = np.arange(n)
    finite = ~t.nan & ~t.inf
    vi = t.value_int
    nonzero = finite & (vi != 0)
    mag = np.abs(vi)
    top = nonzero & (mag * 4 >= t.max_int)
    small = nonzero & (mag <= 8)
    inf_codes = codes[t.inf]
    inf_pos = [int(c) for c in inf_codes if not t.sign[c]]
    inf_neg = [int(c) for c in inf_codes if t.sign[c]]
    one, minus_one = (int(c) for c in encode(np.array([1.0, -1.0], np.float32), fmt))
    return Pools(
        finite=codes[finite].astype(np.uint8), nonzero=codes[nonzero].astype(np.uint8),
        pos_nonzero=codes[nonzero & (vi > 0)].astype(np.uint8),
        top=codes[top].astype(np.uint8),
        top2=codes[nonzero & (mag * 2 >= t.max_int)].astype(np.uint8),
        small=codes[small].astype(np.uint8),
        nan=codes[t.nan].astype(np.uint8),
        inf_pos=inf_pos[0] if inf_pos else None, inf_neg=inf_neg[0] if inf_neg else None,
        neg_zero=None if fmt is Format.INT8 else 1 << (fmt.spec.bits - 1),
        one=one, minus_one=minus_one, max_pos=max_code(fmt), max_neg=max_code(fmt, True),
        min_neg=0xFF if fmt is Format.INT8 else 1 | (1 << (fmt.spec.bits - 1)),
        sign_bit=1 << (fmt.spec.bits - 1))


def negate_codes(codes: np.ndarray, fmt: Format) -> np.ndarray:
    """Codes of the negated values (finite codes; INT8 0x80 has no negation and becomes 0x81)."""
    codes = np.asarray(codes, np.uint8)
    if fmt is Format.INT8:
        v = codes.astype(np.int64)
        v = np.where(v >= 128, v - 256, v)
        v = np.maximum(v, -127)
        return ((-v) & 0xFF).astype(np.uint8)
    return (codes ^ np.uint8(1 << (fmt.spec.bits - 1))).astype(np.uint8)


def zero_fillers(fa: Format, fb: Format) -> tuple[int, int]:
    """Filler codes whose product is a negative zero (+0 x +0 for INT8 x INT8)."""
    pa, pb = pools(fa), pools(fb)
    if pa.neg_zero is not None:
        return pa.neg_zero, 0
    if pb.neg_zero is not None:
        return 0, pb.neg_zero
    return 0, 0


def fp32_class(bits: int) -> str:
    e, m = (bits >> 23) & 0xFF, bits & 0x7FFFFF
    if e == 0xFF:
        return "nan" if m else "inf"
    if e == 0:
        return "subnormal" if m else "zero"
    return "normal"


def fp32_str(bits: int) -> str:
    bits = int(bits)
    return f"{bits:#010x} ({np.uint32(bits).view(np.float32)!r})"


# --------------------------------------------------------------------------------------------
# Payload layout
# --------------------------------------------------------------------------------------------

class BeatFormat:
    """Packs ``DotBeat`` payloads and unpacks ``DotResult`` payloads, from the engine's layouts.

    Field offsets come from the Amaranth layouts (``engine.i.payload.shape()``); nothing is
    hard-coded. :meth:`self_check` compares the fast integer packing with
    :func:`openmaia.harness.streams.pack`.
    """

    def __init__(self, beat_shape, result_shape, *, lanes: int, formats, fp4_double_rate: bool):
        self.beat_layout = data.Layout.cast(beat_shape)
        self.result_layout = data.Layout.cast(result_shape)
        fields = dict(self.beat_layout)
        missing = {"a", "b", *HEADER_FIELDS} - fields.keys()
        if missing:
            raise ValueError(f"DotBeat lacks fields {sorted(missing)}")
        self.offset = {name: f.offset for name, f in fields.items()}
        self.width = {name: f.width for name, f in fields.items()}
        self.lanes = lanes
        self.formats = frozenset(Format.of(f) for f in formats)
        self.e2m1 = (Format.E2M1.spec.hw_code
                     if fp4_double_rate and Format.E2M1 in self.formats else None)
        # Lane offsets of a and b relative to the field.
        self.lane_offsets = {}
        for side in ("a", "b"):
            arr = data.Layout.cast(fields[side].shape)
            offs = [(f.offset, f.width) for _, f in arr]
            if len(offs) != lanes or any(w != 8 for _, w in offs):
                raise ValueError(f"DotBeat.{side} is not {lanes} lanes of 8 bits: {offs}")
            self.lane_offsets[side] = [o for o, _ in offs]
        self.contiguous = all(offs == [8 * j for j in range(lanes)]
                              for offs in self.lane_offsets.values())
        rfields = dict(self.result_layout)
        if {"value", "slot"} - rfields.keys():
            raise ValueError(f"DotResult lacks value / slot: {list(rfields)}")
        self.value_shift, self.value_mask = rfields["value"].offset, (1 << 32) - 1
        if rfields["value"].width != 32:
            raise ValueError("DotResult.value is not 32 bits")
        self.slot_shift = rfields["slot"].offset
        self.slot_mask = (1 << rfields["slot"].width) - 1
        self.slots_max = 1 << self.width["slot"]

    # header fields

    def header(self, fa: int, fb: int, sa: int, sb: int, first: int, last: int, slot: int,
               acc: int) -> int:
        o = self.offset
        return ((fa << o["fmt_a"]) | (fb << o["fmt_b"]) | (sa << o["scale_a"])
                | (sb << o["scale_b"]) | (first << o["first"]) | (last << o["last"])
                | (slot << o["slot"]) | (acc << o["acc"]))

    def junk_headers(self, rng: random.Random, n: int = 64) -> list[int]:
        """Random header fields for the beats after a block's first (the engine ignores them)."""
        out = []
        for _ in range(n):
            bits = 0
            for name in HEADER_FIELDS:
                bits |= rng.getrandbits(self.width[name]) << self.offset[name]
            out.append(bits)
        return out

    # lanes

    def fp4_mode(self, fa: int, fb: int) -> bool:
        return self.e2m1 is not None and fa == fb == self.e2m1

    def beats_per_block(self, fa: int, fb: int) -> int:
        return (BLOCK_SIZE // 2 if self.fp4_mode(fa, fb) else BLOCK_SIZE) // self.lanes

    def lane_words(self, codes: np.ndarray, fp4: bool) -> list[int]:
        """The lane bits of every beat of blocks ``codes`` (N x 32 uint8), block-major."""
        codes = np.asarray(codes, np.uint8)
        if fp4:
            codes = codes[:, 0::2] | (codes[:, 1::2] << 4)
        V = self.lanes
        x = np.ascontiguousarray(codes.reshape(-1, V))
        if not self.contiguous:
            return [self._scatter(row) for row in x.tolist()]
        words = np.zeros((x.shape[0], -(-V // 8) * 8), np.uint8)
        words[:, :V] = x
        w64 = words.view("<u8").reshape(x.shape[0], -1)
        if w64.shape[1] == 1:
            return w64[:, 0].tolist()
        lo, hi = w64[:, 0].tolist(), w64[:, 1].tolist()
        return [a | (b << 64) for a, b in zip(lo, hi)]

    def _scatter(self, row) -> int:
        offs = self.lane_offsets["a"]
        return sum(c << o for c, o in zip(row, offs))

    def block_beats(self, a: np.ndarray, b: np.ndarray, headers: list[int], fp4: bool,
                    junk: list[int] | None, rng: random.Random | None = None) -> list[int]:
        """Payloads of blocks ``a``, ``b`` (N x 32, one mode), first beats carrying ``headers``."""
        aw = self.lane_words(a, fp4)
        bw = self.lane_words(b, fp4)
        nb = len(aw) // len(headers)
        oa, ob = self.offset["a"], self.offset["b"]
        if not self.contiguous:
            ob_rel = self.lane_offsets["b"][0] - self.lane_offsets["a"][0]
            assert self.lane_offsets["b"] == [o + ob_rel for o in self.lane_offsets["a"]]
        out = []
        nj = len(junk) if junk else 0
        k = 0
        for hdr in headers:
            out.append(hdr | (aw[k] << oa) | (bw[k] << ob))
            k += 1
            for _ in range(nb - 1):
                j = junk[rng.randrange(nj)] if nj else 0
                out.append(j | (aw[k] << oa) | (bw[k] << ob))
                k += 1
        return out

    def self_check(self, rng: random.Random) -> None:
        """The fast packing agrees with :func:`streams.pack` on random beats."""
        V = self.lanes
        for fp4 in (False, True):
            a = np.array([[rng.randrange(16 if fp4 else 256) for _ in range(BLOCK_SIZE)]],
                         np.uint8)
            b = np.array([[rng.randrange(16 if fp4 else 256) for _ in range(BLOCK_SIZE)]],
                         np.uint8)
            vals = {name: rng.getrandbits(self.width[name]) for name in HEADER_FIELDS}
            hdr = self.header(**{k: vals[n] for k, n in zip(
                ("fa", "fb", "sa", "sb", "first", "last", "slot", "acc"), HEADER_FIELDS)})
            beats = self.block_beats(a, b, [hdr], fp4, None)
            for k, bits in enumerate(beats):
                if fp4:
                    la = [int(a[0, 2 * (k * V + j)] | (a[0, 2 * (k * V + j) + 1] << 4))
                          for j in range(V)]
                    lb = [int(b[0, 2 * (k * V + j)] | (b[0, 2 * (k * V + j) + 1] << 4))
                          for j in range(V)]
                else:
                    la = [int(x) for x in a[0, k * V:(k + 1) * V]]
                    lb = [int(x) for x in b[0, k * V:(k + 1) * V]]
                want = {name: (vals[name] if k == 0 else 0) for name in HEADER_FIELDS}
                want.update(a=la, b=lb)
                ref = pack(self.beat_layout, want)
                assert bits == ref, f"fast packing {bits:#x} != streams.pack {ref:#x}"

    def result(self, bits: int) -> tuple[int, int]:
        return ((bits >> self.value_shift) & self.value_mask,
                (bits >> self.slot_shift) & self.slot_mask)


# --------------------------------------------------------------------------------------------
# Reference model
# --------------------------------------------------------------------------------------------

@dataclass
class BlockInfo:
    """Per-block results of :func:`block_results` (arrays over the blocks of one batch)."""
    bits: np.ndarray          # uint32 FP32 result of each block
    S: list                   # exact block sums (Python ints; Inf / NaN elements count 0)
    exp2: np.ndarray
    nan_scale: np.ndarray
    nan_elem: np.ndarray
    inf_elem: np.ndarray
    inf_zero: np.ndarray
    inf_both: np.ndarray
    nonzero_prod: np.ndarray
    max_max: np.ndarray
    min_min: np.ndarray


def block_results(a, b, fa: Format, fb: Format, sa, sb, *, detail: bool = False):
    """FP32 bits of ``block_dot`` for N blocks of one format pair (a, b: N x 32 codes; sa, sb: N).

    Built from the golden model's layers exactly as ``mx_matmul`` builds its block results
    (``codes_table`` values, exact integer sums, ``round_to_fp32_array``, the zero-sign rule, NaN
    precedence), with blocks holding an Inf element passed to the scalar ``block_dot``. With
    ``detail``, returns a :class:`BlockInfo` for coverage classification.
    """
    a = np.asarray(a, np.uint8)
    b = np.asarray(b, np.uint8)
    sa = np.asarray(sa, np.int64)
    sb = np.asarray(sb, np.int64)
    ta, tb = codes_table(fa), codes_table(fb)
    A, B = ta.value_int[a], tb.value_int[b]
    bound = int(np.abs(ta.value_int).max()) * int(np.abs(tb.value_int).max()) * a.shape[1]
    exp2 = fa.spec.lsb_exp + fb.spec.lsb_exp + sa + sb - 2 * E8M0_BIAS
    if bound < 1 << 62:
        S64 = (A * B).sum(axis=1)
        R = round_to_fp32_array(S64, exp2)
        S = S64.tolist() if detail else None
        zero = S64 == 0
    else:
        S = [sum(p * q for p, q in zip(ra, rb)) for ra, rb in zip(A.tolist(), B.tolist())]
        fits = np.array([abs(s) < 1 << 62 for s in S], bool)
        S64 = np.array([s if f else 0 for s, f in zip(S, fits)], np.int64)
        R = round_to_fp32_array(S64, exp2)
        for k in np.nonzero(~fits)[0]:
            R[k] = round_to_fp32(S[k], int(exp2[k]))
        zero = np.array([s == 0 for s in S], bool)
    inf_a, inf_b = ta.inf[a], tb.inf[b]
    za = (A == 0) & ~inf_a
    zb = (B == 0) & ~inf_b
    ga, gb = ta.sign[a], tb.sign[b]
    all_neg_zero = ((za | zb) & (ga ^ gb)).all(axis=1)
    R = np.where(zero, np.where(all_neg_zero, np.uint32(FP32_NEG_ZERO), np.uint32(0)), R)
    R = R.astype(np.uint32)
    nan_scale = (sa == E8M0_NAN) | (sb == E8M0_NAN)
    nan_elem = ta.nan[a].any(axis=1) | tb.nan[b].any(axis=1)
    nan = nan_scale | nan_elem
    inf_any = (inf_a | inf_b).any(axis=1)
    R[nan] = CANONICAL_NAN
    for k in np.nonzero(inf_any & ~nan)[0]:
        R[k] = block_dot(a[k], b[k], fa, fb, int(sa[k]), int(sb[k]))
    if not detail:
        return R
    inf_p = inf_a | inf_b
    neg = ga ^ gb
    pa, pb = pools(fa), pools(fb)
    is_max_a = (a == pa.max_pos) | (a == pa.max_neg)
    is_max_b = (b == pb.max_pos) | (b == pb.max_neg)
    return BlockInfo(
        bits=R, S=S, exp2=exp2, nan_scale=nan_scale, nan_elem=nan_elem, inf_elem=inf_any,
        inf_zero=((inf_a & zb) | (za & inf_b)).any(axis=1),
        inf_both=(inf_p & neg).any(axis=1) & (inf_p & ~neg).any(axis=1),
        nonzero_prod=((A != 0) & (B != 0)).any(axis=1),
        max_max=(is_max_a & is_max_b).any(axis=1),
        min_min=((np.abs(A) == 1) & (np.abs(B) == 1)).any(axis=1))


def rounding_of(S: int, exp2: int) -> tuple[str, str] | None:
    """How ``S * 2**exp2`` rounds to FP32: ``(kind, range)`` with kind ``tie_even`` (a tie kept
    at an even last place), ``tie_odd`` (a tie rounded up to even), ``sticky`` (round bit set,
    lower bits nonzero, last place even: only the sticky bit makes it round up), or None when
    none of these; range ``sub`` (result below 2**-126) or ``norm``."""
    if S == 0:
        return None
    mag = abs(S)
    L = mag.bit_length()
    top = L - 1 + exp2
    if top > 127:
        return None
    q = max(top - 23, -149)
    k = q - exp2
    if k < 1:
        return None
    kind = _round_pattern(mag, k)
    return None if kind is None else (kind, "sub" if top < -126 else "norm")


def _round_pattern(mag: int, k: int) -> str | None:
    """The rounding kind of magnitude ``mag`` when its ``k`` low bits are dropped."""
    rbit = (mag >> (k - 1)) & 1
    rest = mag & ((1 << (k - 1)) - 1)
    lsb = (mag >> k) & 1
    if not rbit:
        return None
    if rest == 0:
        return "tie_odd" if lsb else "tie_even"
    return None if lsb else "sticky"


@cache
def _powers_of_two(fmt: Format) -> dict[int, int]:
    """``{j: code}``: a positive code of ``fmt`` whose integer value is ``2**j``."""
    t = codes_table(fmt)
    out = {}
    for c in range(fmt.spec.codes):
        v = int(t.value_int[c])
        if v > 0 and not t.nan[c] and not t.inf[c] and v & (v - 1) == 0:
            out.setdefault(v.bit_length() - 1, c)
    return out


# Coverage classes of one checked output (see docs at coverage_bins).
CLASSES = (
    "normal", "max_x_max", "min_x_min", "neg_zero_block", "zero_cancel", "acc_cancel",
    "neg_zero_result", "subnormal_result", "underflow_zero", "overflow_inf", "acc_overflow",
    "acc_inf_minus_inf", "tie_even_sub", "tie_odd_sub", "sticky_sub", "tie_even_norm",
    "tie_odd_norm", "sticky_norm", "nan_scale", "nan_element", "inf_element", "inf_times_zero",
    "inf_minus_inf", "acc_input_special", "illegal_format",
)


def possible_classes(fa: Format, fb: Format) -> list[str]:
    """The classes a format pair can produce (impossible ones are not declared as bins).

    * ``neg_zero_block`` (a block of negative-zero products) needs a -0 code: not INT8 x INT8.
    * ``*_norm`` rounding (an inexact normal result) needs block sums of 26 or more bits.
    * ``nan_element`` needs E4M3 or E5M2; ``inf_element``, ``inf_times_zero`` and
      ``inf_minus_inf`` (within a block) need E5M2.
    """
    out = []
    wide = (BLOCK_SIZE * fa.spec.max_int * fb.spec.max_int).bit_length() >= 27
    for cls in CLASSES:
        if cls == "neg_zero_block" and fa is Format.INT8 and fb is Format.INT8:
            continue
        if cls.endswith("_norm") and not wide:
            continue
        if cls == "nan_element" and not (fa.spec.has_nan or fb.spec.has_nan):
            continue
        if cls in ("inf_element", "inf_times_zero", "inf_minus_inf") and not (
                fa.spec.has_inf or fb.spec.has_inf):
            continue
        out.append(cls)
    return out


def coverage_bins(pairs) -> list[str]:
    """Coverage bins ``"fa*fb:class"`` of :func:`random_dots` for format pairs ``pairs``."""
    return [f"{pair_name(fa, fb)}:{cls}" for fa, fb in pairs for cls in possible_classes(fa, fb)]


def _is_inf(bits: int) -> bool:
    return (bits & 0x7FFFFFFF) == FP32_POS_INF


def _is_finite(bits: int) -> bool:
    return (bits & 0x7F800000) != 0x7F800000


def _is_zero(bits: int) -> bool:
    return (bits & 0x7FFFFFFF) == 0


@dataclass(eq=False)
class Block:
    a: np.ndarray
    b: np.ndarray
    sa: int
    sb: int
    illegal: tuple[int, int] | None = None   # (fmt_a, fmt_b) selectors replacing the pair's


@dataclass(eq=False)
class Output:
    """One dot product: blocks of one format pair accumulated from ``acc`` into ``slot``."""
    fa: Format
    fb: Format
    blocks: list
    acc: int
    flavour: str
    index: int = 0
    slot: int = 0
    expected: int = 0
    classes: tuple = ()
    block_bits: list = field(default_factory=list)

    def selectors(self, blk: Block) -> tuple[int, int]:
        return blk.illegal or (self.fa.spec.hw_code, self.fb.spec.hw_code)


class ReferenceModel:
    """Expected results (and coverage classes) of outputs, from the golden model.

    Block results come from :func:`block_results` in batches per format pair; the accumulation is
    ``fp32_add`` in K order from ``acc`` (the definition of ``dot_blocks``), vectorised over the
    outputs. A random sample of blocks is re-checked against the scalar ``block_dot`` and of
    outputs against ``dot_blocks``; a disagreement is a bench bug and fails the test.
    """

    def __init__(self, rng: random.Random, check_fraction: float = 0.01):
        self.rng = rng
        self.check_fraction = check_fraction
        self.checked_blocks = 0
        self.checked_outputs = 0

    def check_blocks(self, a, b, fa, fb, sa, sb, bits) -> None:
        n = len(bits)
        picks = [k for k in range(n) if self.rng.random() < self.check_fraction]
        if n and not picks:
            picks = [self.rng.randrange(n)]
        for k in picks:
            want = int(block_dot(a[k], b[k], fa, fb, int(sa[k]), int(sb[k])))
            assert int(bits[k]) == want, (
                f"bench reference disagrees with block_dot: {pair_name(fa, fb)} a={a[k].tolist()} "
                f"b={b[k].tolist()} sa={sa[k]} sb={sb[k]}: {int(bits[k]):#x} != {want:#x}")
            self.checked_blocks += 1

    def singles(self, a, b, fa, fb, sa, sb) -> np.ndarray:
        """Results of single-block outputs with ``acc = -0`` (= block_dot)."""
        bits = block_results(a, b, fa, fb, sa, sb)
        self.check_blocks(a, b, fa, fb, sa, sb, bits)
        return bits

    def outputs(self, outs: list[Output], classify: bool = False) -> None:
        """Fill ``expected`` (and ``classes``) of outputs (any mix of format pairs)."""
        groups: dict[tuple, list] = {}
        for o in outs:
            groups.setdefault((o.fa, o.fb), []).append(o)
        for (fa, fb), group in groups.items():
            blocks = [(o, j, blk) for o in group for j, blk in enumerate(o.blocks)]
            a = np.stack([blk.a for _, _, blk in blocks])
            b = np.stack([blk.b for _, _, blk in blocks])
            sa = np.array([blk.sa for _, _, blk in blocks], np.int64)
            sb = np.array([blk.sb for _, _, blk in blocks], np.int64)
            info = block_results(a, b, fa, fb, sa, sb, detail=True)
            legal = np.array([blk.illegal is None for _, _, blk in blocks], bool)
            keep = np.nonzero(legal)[0]
            self.check_blocks(a[keep], b[keep], fa, fb, sa[keep], sb[keep], info.bits[keep])
            bits = np.where(legal, info.bits, np.uint32(CANONICAL_NAN)).astype(np.uint32)
            pos = 0
            for o in group:
                n = len(o.blocks)
                o.block_bits = [int(x) for x in bits[pos:pos + n]]
                o._info = (info, pos, legal)
                pos += n
            self._accumulate(group)
            if classify:
                for o in group:
                    o.classes = tuple(self._classify(o))
            for o in group:
                if all(blk.illegal is None for blk in o.blocks) and (
                        self.rng.random() < self.check_fraction):
                    want = int(dot_blocks(np.concatenate([blk.a for blk in o.blocks]),
                                          np.concatenate([blk.b for blk in o.blocks]), fa, fb,
                                          [blk.sa for blk in o.blocks],
                                          [blk.sb for blk in o.blocks], acc=o.acc))
                    assert want == o.expected, (
                        f"bench reference disagrees with dot_blocks on output {o.index}: "
                        f"{o.expected:#x} != {want:#x}")
                    self.checked_outputs += 1
                del o._info

    def _accumulate(self, group: list[Output]) -> None:
        acc = np.array([o.acc for o in group], np.uint32)
        steps = max(len(o.blocks) for o in group)
        trace = [[] for _ in group]       # per output: (x, y, result) of each addition
        for j in range(steps):
            idx = [k for k, o in enumerate(group) if len(o.blocks) > j]
            x = acc[idx]
            y = np.array([group[k].block_bits[j] for k in idx], np.uint32)
            r = fp32_add(x, y)
            acc[idx] = r
            for k, xx, yy, rr in zip(idx, x.tolist(), y.tolist(), np.atleast_1d(r).tolist()):
                trace[k].append((xx, yy, rr))
        for o, value, tr in zip(group, acc.tolist(), trace):
            o.expected = int(value)
            o._trace = tr

    def _classify(self, o: Output) -> list[str]:
        info, pos, legal = o._info
        cls = set()
        special_in = False
        n = len(o.blocks)
        for j in range(n):
            k = pos + j
            if not legal[k]:
                cls.add("illegal_format")
                special_in = True
                continue
            bits = o.block_bits[j]
            if info.max_max[k]:
                cls.add("max_x_max")
            if info.min_min[k]:
                cls.add("min_x_min")
            if info.nan_scale[k]:
                cls.add("nan_scale")
            if info.nan_elem[k]:
                cls.add("nan_element")
            if info.nan_scale[k] or info.nan_elem[k]:
                special_in = True
                continue
            if info.inf_elem[k]:
                special_in = True
                if info.inf_zero[k]:
                    cls.add("inf_times_zero")
                elif info.inf_both[k]:
                    cls.add("inf_minus_inf")
                elif _is_inf(bits):
                    cls.add("inf_element")
                continue
            S = info.S[k]
            if S == 0:
                if info.nonzero_prod[k]:
                    cls.add("zero_cancel")
                elif bits == FP32_NEG_ZERO:
                    cls.add("neg_zero_block")
                continue
            if _is_zero(bits):
                cls.add("underflow_zero")
            elif _is_inf(bits):
                cls.add("overflow_inf")
            if n == 1 and _is_zero(o.acc):
                r = rounding_of(S, int(info.exp2[k]))
                if r is not None:
                    cls.add(f"{r[0]}_{r[1]}")
        for x, y, r in o._trace:
            if _is_inf(x) and _is_inf(y) and (x ^ y) >> 31:
                cls.add("acc_inf_minus_inf")
            if _is_finite(x) and _is_finite(y):
                if _is_zero(r) and not _is_zero(x) and not _is_zero(y):
                    cls.add("acc_cancel")
                if _is_inf(r):
                    cls.add("acc_overflow")
        if not _is_finite(o.acc):
            cls.add("acc_input_special")
            special_in = True
        if o.expected == FP32_NEG_ZERO:
            cls.add("neg_zero_result")
        kind = fp32_class(o.expected)
        if kind == "subnormal":
            cls.add("subnormal_result")
        if kind == "normal" and not special_in:
            cls.add("normal")
        del o._trace
        allowed = set(possible_classes(o.fa, o.fb))
        assert cls <= allowed, (f"output {o.index} ({pair_name(o.fa, o.fb)}, {o.flavour}) has "
                                f"classes {sorted(cls - allowed)} declared impossible")
        return sorted(cls)


# --------------------------------------------------------------------------------------------
# Stimulus: random dot products with special values
# --------------------------------------------------------------------------------------------

DIRECTED = (
    "random", "max", "min", "neg_zero", "cancel_block", "cancel_acc", "subnormal", "underflow",
    "overflow", "acc_overflow", "acc_inf_minus_inf", "tie_even_sub", "tie_odd_sub",
    "sticky_sub", "tie_even_norm", "tie_odd_norm", "sticky_norm", "nan_scale", "nan_element",
    "inf_element", "inf_times_zero", "inf_minus_inf", "acc_special", "illegal", "mixed",
)
RANDOM_WEIGHTS = {
    "random": 30, "mixed": 20, "max": 3, "min": 3, "neg_zero": 3, "cancel_block": 3,
    "cancel_acc": 3, "subnormal": 4, "underflow": 2, "overflow": 2, "acc_overflow": 2,
    "acc_inf_minus_inf": 1, "tie_even_sub": 2, "tie_odd_sub": 2, "sticky_sub": 2,
    "tie_even_norm": 2, "tie_odd_norm": 2, "sticky_norm": 2, "nan_scale": 2, "nan_element": 2,
    "inf_element": 2, "inf_times_zero": 1, "inf_minus_inf": 1, "acc_special": 2, "illegal": 1,
}


class DotGenerator:
    """Random dot products of one format pair, each built to exercise one flavour (a directed
    pass over every flavour first, then a weighted random choice)."""

    def __init__(self, rng: random.Random, fa: Format, fb: Format, illegal_selectors):
        self.rng = rng
        self.np_rng = np.random.default_rng(rng.getrandbits(64))
        self.fa, self.fb = fa, fb
        self.pa, self.pb = pools(fa), pools(fb)
        self.illegal_selectors = list(illegal_selectors)
        self.lsb = fa.spec.lsb_exp + fb.spec.lsb_exp
        flavours = [f for f in DIRECTED if self._applicable(f)]
        self.directed = deque(flavours)
        self.weights = [(f, w) for f, w in RANDOM_WEIGHTS.items() if f in flavours]

    def _applicable(self, flavour: str) -> bool:
        fa, fb = self.fa, self.fb
        if flavour == "nan_element":
            return fa.spec.has_nan or fb.spec.has_nan
        if flavour in ("inf_element", "inf_times_zero", "inf_minus_inf"):
            return fa.spec.has_inf or fb.spec.has_inf
        if flavour.endswith("_norm"):
            return flavour in possible_classes(fa, fb)
        if flavour == "illegal":
            return bool(self.illegal_selectors)
        return True

    def next(self) -> Output:
        if self.directed:
            flavour = self.directed.popleft()
        else:
            flavours, weights = zip(*self.weights)
            flavour = self.rng.choices(flavours, weights)[0]
        if flavour.startswith(("tie", "sticky")):
            return self._rounding(flavour)
        return getattr(self, "_" + flavour)()

    # helpers ---------------------------------------------------------------------------------

    def _codes(self, pool: np.ndarray, n: int = BLOCK_SIZE) -> np.ndarray:
        return pool[self.np_rng.integers(0, len(pool), n)].astype(np.uint8)

    def _random_pair(self, density: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Random finite codes of both sides, with a random share of zeros."""
        a = self._codes(self.pa.finite)
        b = self._codes(self.pb.finite)
        if density is None:
            density = self.rng.choice((1.0, 1.0, 0.8, 0.5, 0.2))
        mask = self.np_rng.random(BLOCK_SIZE) >= density
        if mask.any():
            a[mask] = self._zero_codes(self.pa, mask.sum())
        return a, b

    def _zero_codes(self, p: Pools, n: int) -> np.ndarray:
        if p.neg_zero is None:
            return np.zeros(n, np.uint8)
        return self.np_rng.choice(np.array([0, p.neg_zero], np.uint8), n)

    def _nonzero_pair(self) -> tuple[np.ndarray, np.ndarray]:
        return self._codes(self.pa.nonzero), self._codes(self.pb.nonzero)

    def _scales_for(self, exp2: int) -> tuple[int, int] | None:
        """Non-NaN scale codes with ``lsb_a + lsb_b + sa + sb - 254 == exp2``."""
        total = exp2 + 2 * E8M0_BIAS - self.lsb
        lo, hi = max(0, total - 254), min(254, total)
        if lo > hi:
            return None
        sa = self.rng.randint(lo, hi)
        return sa, total - sa

    def _scales_near_one(self, spread: int = 12) -> tuple[int, int]:
        return (E8M0_BIAS + self.rng.randint(-spread, spread),
                E8M0_BIAS + self.rng.randint(-spread, spread))

    def _block_sum(self, a, b) -> int:
        ta, tb = codes_table(self.fa), codes_table(self.fb)
        return sum(int(p) * int(q) for p, q in zip(ta.value_int[a].tolist(),
                                                    tb.value_int[b].tolist()))

    def _placed(self, a, b, top: int) -> Block | None:
        """A block of codes a, b scaled so that its exact value's leading bit is 2**top."""
        S = self._block_sum(a, b)
        if S == 0:
            return None
        sc = self._scales_for(top - (abs(S).bit_length() - 1))
        if sc is None:
            return None
        return Block(a, b, *sc)

    def _random_placed(self, top_lo: int, top_hi: int, tries: int = 20) -> Block:
        for _ in range(tries):
            a, b = self._random_pair(density=self.rng.choice((1.0, 0.5, 0.1)))
            blk = self._placed(a, b, self.rng.randint(top_lo, top_hi))
            if blk is not None:
                return blk
        a, b = self._nonzero_pair()
        return self._placed(a, b, self.rng.randint(top_lo, top_hi)) or Block(a, b, 127, 127)

    def _acc(self, magnitude: int | None = None) -> int:
        r = self.rng.random()
        if r < 0.5:
            return FP32_NEG_ZERO
        if r < 0.6:
            return 0
        if r < 0.9 and magnitude is not None:
            e = max(1, min(254, magnitude + 127 + self.rng.randint(-30, 3)))
            return (self.rng.getrandbits(1) << 31) | (e << 23) | self.rng.getrandbits(23)
        e = self.rng.randint(0, 254)
        return (self.rng.getrandbits(1) << 31) | (e << 23) | self.rng.getrandbits(23)

    def _out(self, blocks, acc, flavour) -> Output:
        return Output(self.fa, self.fb, list(blocks), int(acc), flavour)

    def _nblocks(self) -> int:
        return self.rng.choices((1, 2, 3, 4, 5, 6, 8), (45, 20, 12, 9, 6, 5, 3))[0]

    # flavours --------------------------------------------------------------------------------

    def _random(self) -> Output:
        blocks = []
        for _ in range(self._nblocks()):
            a, b = self._random_pair()
            blocks.append(Block(a, b, *self._scales_near_one()))
        return self._out(blocks, self._acc(magnitude=10), "random")

    def _mixed(self) -> Output:
        """Random blocks with special codes sprinkled in and occasional extreme scales."""
        blocks = []
        for _ in range(self._nblocks()):
            a, b = self._random_pair()
            for codes, p in ((a, self.pa), (b, self.pb)):
                for _ in range(self.rng.choice((0, 1, 2, 3))):
                    i = self.rng.randrange(BLOCK_SIZE)
                    choices = [p.max_pos, p.max_neg, 1, p.min_neg, 0]
                    if p.neg_zero is not None:
                        choices.append(p.neg_zero)
                    if self.rng.random() < 0.15 and len(p.nan):
                        choices.append(int(self.rng.choice(p.nan.tolist())))
                    if self.rng.random() < 0.15 and p.inf_pos is not None:
                        choices += [p.inf_pos, p.inf_neg]
                    codes[i] = self.rng.choice(choices)
            r = self.rng.random()
            if r < 0.8:
                sc = self._scales_near_one(40)
            elif r < 0.97:
                sc = (self.rng.randint(0, 254), self.rng.randint(0, 254))
            else:
                sc = (E8M0_NAN, self.rng.randint(0, 255))[::self.rng.choice((1, -1))]
            blocks.append(Block(a, b, *sc))
        return self._out(blocks, self._acc(magnitude=0), "mixed")

    def _max(self) -> Output:
        blocks = []
        for _ in range(self.rng.choice((1, 1, 2))):
            a, b = self._random_pair()
            n = self.rng.choice((1, 4, BLOCK_SIZE))
            idx = self.np_rng.choice(BLOCK_SIZE, n, replace=False)
            sign = self.rng.getrandbits(1)
            a[idx] = self.pa.max_neg if sign else self.pa.max_pos
            b[idx] = self.pb.max_pos
            blk = self._placed(a, b, self.rng.randint(100, 135))
            blocks.append(blk or Block(a, b, 254, 254))
        return self._out(blocks, self._acc(), "max")

    def _min(self) -> Output:
        a = self._zero_codes(self.pa, BLOCK_SIZE)
        b = np.zeros(BLOCK_SIZE, np.uint8)
        n = self.rng.choice((1, 2, 3, 7, BLOCK_SIZE))
        idx = self.np_rng.choice(BLOCK_SIZE, n, replace=False)
        for i in idx:
            a[i] = 1 if self.rng.random() < 0.7 else negate_codes(np.array([1]), self.fa)[0]
            b[i] = 1
        sc = self._scales_for(self.rng.randint(-160, -120)) or (0, 0)
        return self._out([Block(a, b, *sc)], self._acc(), "min")

    def _neg_zero(self) -> Output:
        blocks = []
        for _ in range(self.rng.choice((1, 1, 2, 3))):
            if self.pa.neg_zero is None and self.pb.neg_zero is None:
                # INT8 x INT8 has no -0 code: a negative sum that underflows gives -0.
                blocks.append(self._negative_underflow())
                continue
            if self.pa.neg_zero is not None and (self.pb.neg_zero is None or
                                                 self.rng.random() < 0.5):
                a = np.full(BLOCK_SIZE, self.pa.neg_zero, np.uint8)
                b = self._codes(self.pb.finite)
                b = np.where(codes_table(self.fb).sign[b], 0, b).astype(np.uint8)
            else:
                b = np.full(BLOCK_SIZE, self.pb.neg_zero, np.uint8)
                a = self._codes(self.pa.finite)
                a = np.where(codes_table(self.fa).sign[a], 0, a).astype(np.uint8)
            blocks.append(Block(a, b, *self._scales_near_one(60)))
        return self._out(blocks, FP32_NEG_ZERO, "neg_zero")

    def _negative_underflow(self) -> Block:
        for _ in range(50):
            a, b = self._nonzero_pair()
            if self._block_sum(a, b) < 0:
                blk = self._placed(a, b, self.rng.randint(-170, -152))
                if blk is not None:
                    return blk
        a = np.zeros(BLOCK_SIZE, np.uint8)
        b = np.zeros(BLOCK_SIZE, np.uint8)
        a[0], b[0] = self.pa.minus_one, self.pb.one
        return Block(a, b, 0, 0)

    def _cancel_block(self) -> Output:
        half = BLOCK_SIZE // 2
        a = self._codes(self.pa.nonzero, half)
        b = self._codes(self.pb.nonzero, half)
        if self.fa is Format.INT8:
            a = np.where(a == 0x80, np.uint8(0x81), a).astype(np.uint8)
        a2 = np.concatenate([a, negate_codes(a, self.fa)])
        b2 = np.concatenate([b, b])
        perm = self.np_rng.permutation(BLOCK_SIZE)
        blk = Block(a2[perm].astype(np.uint8), b2[perm].astype(np.uint8),
                    *self._scales_near_one(60))
        return self._out([blk], self.rng.choice((FP32_NEG_ZERO, 0)), "cancel_block")

    def _cancel_acc(self) -> Output:
        blk = self._random_placed(-100, 100)
        a = np.where((blk.a == 0x80) & (self.fa is Format.INT8), np.uint8(0x81), blk.a)
        a = a.astype(np.uint8)
        blk = Block(a, blk.b, blk.sa, blk.sb)
        neg = Block(negate_codes(a, self.fa), blk.b.copy(), blk.sa, blk.sb)
        blocks = [blk, neg]
        if self.rng.random() < 0.3:
            a, b = self._random_pair()
            if self.fa is Format.INT8:
                a = np.where(a == 0x80, np.uint8(0x81), a).astype(np.uint8)
            sc = self._scales_near_one()
            blocks = [Block(a, b, *sc), Block(negate_codes(a, self.fa), b.copy(), *sc)] + blocks
        return self._out(blocks, FP32_NEG_ZERO, "cancel_acc")

    def _subnormal(self) -> Output:
        blocks = [self._random_placed(-149, -127) for _ in range(self.rng.choice((1, 1, 2)))]
        return self._out(blocks, self.rng.choice((FP32_NEG_ZERO, 0, FP32_NEG_ZERO)), "subnormal")

    def _underflow(self) -> Output:
        if self.rng.random() < 0.5:
            blk = self._negative_underflow()
        else:
            blk = self._random_placed(-170, -151)
        return self._out([blk], self.rng.choice((FP32_NEG_ZERO, 0)), "underflow")

    def _overflow(self) -> Output:
        blk = self._random_placed(128, 140)
        return self._out([blk], self._acc(magnitude=120), "overflow")

    def _acc_overflow(self) -> Output:
        blk = self._random_placed(127, 127)
        return self._out([blk, Block(blk.a.copy(), blk.b.copy(), blk.sa, blk.sb)],
                         FP32_NEG_ZERO, "acc_overflow")

    def _acc_inf_minus_inf(self) -> Output:
        blk = self._random_placed(129, 140)
        a = blk.a
        if self.fa is Format.INT8:
            a = np.where(a == 0x80, np.uint8(0x81), a).astype(np.uint8)
        blk = Block(a, blk.b, blk.sa, blk.sb)
        neg = Block(negate_codes(a, self.fa), blk.b.copy(), blk.sa, blk.sb)
        if self.rng.random() < 0.3:
            return self._out([blk], 0xFF800000 if self._block_sum(a, blk.b) > 0 else FP32_POS_INF,
                             "acc_inf_minus_inf")
        return self._out([blk, neg], FP32_NEG_ZERO, "acc_inf_minus_inf")

    def _rounding(self, flavour: str) -> Output:
        kind, range_ = flavour.rsplit("_", 1)
        make = self._rounding_norm if range_ == "norm" else self._rounding_sub
        for _ in range(100):
            blk = make(kind)
            if blk is not None:
                S = self._block_sum(blk.a, blk.b)
                exp2 = self.lsb + blk.sa + blk.sb - 2 * E8M0_BIAS
                assert rounding_of(S, exp2) == (kind, range_), (flavour, S, exp2)
                return self._out([blk], self.rng.choice((FP32_NEG_ZERO, 0)), flavour)
        return self._random()

    def _rounding_sub(self, kind: str) -> Block | None:
        """A random block scaled so that its subnormal result rounds as ``kind`` says."""
        a, b = self._random_pair(density=self.rng.choice((1.0, 0.3, 0.1)))
        S = self._block_sum(a, b)
        if S == 0:
            return None
        mag = abs(S)
        L = mag.bit_length()
        ks = list(range(max(1, L - 23), L + 1))
        self.rng.shuffle(ks)
        for k in ks:
            if _round_pattern(mag, k) == kind:
                sc = self._scales_for(-149 - k)      # q = -149: k bits are dropped
                return None if sc is None else Block(a, b, *sc)
        return None

    def _rounding_norm(self, kind: str) -> Block | None:
        """A block of large same-sign products (a sum of 25 or more bits whose low bits are
        zero) plus one or two power-of-two products that set the round, sticky and last-place
        bits as ``kind`` says; scaled to a normal result."""
        big = self.rng.random() < 0.5
        a = self._codes(self.pa.top2 if big else self.pa.top)
        b = self._codes(self.pb.top2 if big else self.pb.top)
        ta, tb = codes_table(self.fa), codes_table(self.fb)
        flip = ta.sign[a] ^ tb.sign[b]
        a = np.where(flip, negate_codes(a, self.fa), a).astype(np.uint8)
        free = self.np_rng.choice(BLOCK_SIZE, 2, replace=False)
        a[free] = 0
        b[free] = 0
        S0 = self._block_sum(a, b)
        L = S0.bit_length()
        k = L - 24
        if k < (2 if kind == "sticky" else 1) or S0 % (1 << (k + 1)):
            return None
        if kind == "tie_even":
            fix = [k - 1]
        elif kind == "tie_odd":
            fix = [k, k - 1]
        else:
            fix = [k - 1, self.rng.randint(0, k - 2)]
        for j, pos in zip(fix, free):
            codes = self._power_of_two_product(j)
            if codes is None:
                return None
            a[pos], b[pos] = codes
        if self.rng.random() < 0.5:
            if self.fa is not Format.INT8:
                a = negate_codes(a, self.fa)
            elif self.fb is not Format.INT8:
                b = negate_codes(b, self.fb)
        S = self._block_sum(a, b)
        if abs(S).bit_length() != L:
            return None
        sc = self._scales_for(self.rng.randint(-120, 120) - (L - 1))
        return None if sc is None else Block(a, b, *sc)

    def _power_of_two_product(self, j: int) -> tuple[int, int] | None:
        """Positive codes (ca, cb) whose integer values multiply to ``2**j``."""
        pa, pb = _powers_of_two(self.fa), _powers_of_two(self.fb)
        options = [(pa[ja], pb[j - ja]) for ja in pa if (j - ja) in pb]
        return self.rng.choice(options) if options else None

    def _nan_scale(self) -> Output:
        out = self._random()
        blk = self.rng.choice(out.blocks)
        if self.rng.random() < 0.5:
            blk.sa = E8M0_NAN
        else:
            blk.sb = E8M0_NAN
        if self.rng.random() < 0.2:
            blk.sa = blk.sb = E8M0_NAN
        out.flavour = "nan_scale"
        return out

    def _nan_element(self) -> Output:
        out = self._random()
        blk = self.rng.choice(out.blocks)
        sides = [(codes, p) for codes, p in ((blk.a, self.pa), (blk.b, self.pb)) if len(p.nan)]
        codes, p = self.rng.choice(sides)
        for _ in range(self.rng.choice((1, 1, 2))):
            codes[self.rng.randrange(BLOCK_SIZE)] = self.rng.choice(p.nan.tolist())
        out.flavour = "nan_element"
        return out

    def _inf_block(self, mode: str) -> Block:
        a, b = self._nonzero_pair()
        a_inf = self.pa.inf_pos is not None and (self.pb.inf_pos is None or
                                                 self.rng.random() < 0.5)
        inf_codes, other, p_inf, p_other, t_other = (
            (a, b, self.pa, self.pb, codes_table(self.fb)) if a_inf
            else (b, a, self.pb, self.pa, codes_table(self.fa)))
        n = self.rng.choice((1, 1, 2, 5))
        idx = self.np_rng.choice(BLOCK_SIZE, n + 1, replace=False)
        sign = self.rng.getrandbits(1)
        for i in idx[:n]:
            # Same sign of every Inf product: Inf code sign xor partner sign == sign.
            partner_neg = bool(t_other.sign[other[i]])
            inf_neg = bool(sign) ^ partner_neg
            inf_codes[i] = p_inf.inf_neg if inf_neg else p_inf.inf_pos
        if mode == "zero":
            i = idx[0]
            other[i] = p_other.neg_zero if (p_other.neg_zero is not None and
                                            self.rng.random() < 0.5) else 0
        elif mode == "both":
            i = idx[n]
            partner_neg = bool(t_other.sign[other[i]])
            inf_codes[i] = p_inf.inf_pos if (bool(sign) ^ partner_neg) else p_inf.inf_neg
        return Block(a, b, *self._scales_near_one(60))

    def _with_inf(self, mode: str, flavour: str) -> Output:
        out = self._random()
        out.blocks[self.rng.randrange(len(out.blocks))] = self._inf_block(mode)
        out.flavour = flavour
        return out

    def _inf_element(self) -> Output:
        return self._with_inf("plain", "inf_element")

    def _inf_times_zero(self) -> Output:
        return self._with_inf("zero", "inf_times_zero")

    def _inf_minus_inf(self) -> Output:
        return self._with_inf("both", "inf_minus_inf")

    def _acc_special(self) -> Output:
        out = self._random()
        out.acc = self.rng.choice((FP32_POS_INF, 0xFF800000, CANONICAL_NAN, 0xFFC00000,
                                   0x7F800001, 0xFFBFFFFF, 0x7FA5A5A5))
        out.flavour = "acc_special"
        return out

    def _illegal(self) -> Output:
        out = self._random()
        blk = self.rng.choice(out.blocks)
        sel = self.rng.choice(self.illegal_selectors)
        fa, fb = self.fa.spec.hw_code, self.fb.spec.hw_code
        blk.illegal = (sel, fb) if self.rng.random() < 0.5 else (fa, sel)
        out.flavour = "illegal"
        return out


def schedule(outputs: list[Output], slots: int, rng: random.Random, *, interleave: float = 0.7):
    """Interleave the blocks of outputs over ``slots`` accumulators.

    Yields ``(output, block_index)`` in stream order. At most ``slots`` outputs are in flight, each
    in its own slot; a slot is freed by its output's last block and may be reused at once.
    Sets each output's ``slot``; the order of last blocks is the order of results.
    """
    pending = deque(outputs)
    active: list[list] = []                    # [output, next block]
    free = list(range(slots))
    while pending or active:
        start = pending and free and (not active or rng.random() > interleave
                                      or len(active) < rng.randint(1, slots))
        if start:
            o = pending.popleft()
            o.slot = free.pop(rng.randrange(len(free)))
            active.append([o, 0])
            entry = active[-1]
        else:
            entry = rng.choice(active)
        o, j = entry
        yield o, j
        entry[1] += 1
        if entry[1] == len(o.blocks):
            active.remove(entry)
            free.append(o.slot)


# --------------------------------------------------------------------------------------------
# Scoreboard
# --------------------------------------------------------------------------------------------

class Scoreboard:
    """In-order, bit-exact check of results (value bits and slot) against expectations.

    Mismatches are counted; the first few are logged with full context (``describe(ctx)``). A
    result that matches a later expectation is reported as reordered / lost; results beyond the
    expectations are reported as unexpected (duplicated); a stalled result that changes or
    disappears before it is taken is a stream protocol error.
    """

    def __init__(self, fmt: BeatFormat, log, describe, *, limit: int = 8):
        self.fmt = fmt
        self.log = log
        self.describe = describe
        self.limit = limit
        self.expected: deque = deque()
        self.compared = 0
        self.mismatches = 0
        self.unexpected = 0
        self.protocol_errors = 0
        self.errors: list[str] = []
        self.target = None
        self._done = None
        self.on_result = None

    def expect(self, value: int, slot: int, ctx) -> None:
        self.expected.append((value, slot, ctx))

    def wait_for(self, total: int, event) -> None:
        self.target, self._done = total, event
        if self.compared >= total:
            event.set()

    def compare(self, bits: int) -> None:
        if self.on_result is not None:
            self.on_result(bits)
        value, slot = self.fmt.result(bits)
        if not self.expected:
            self.unexpected += 1
            self._error(f"unexpected result {fp32_str(value)} slot {slot} after "
                        f"{self.compared} results (duplicated?)")
            return
        want, want_slot, ctx = self.expected.popleft()
        n = self.compared
        self.compared += 1
        if value != want or slot != want_slot:
            self.mismatches += 1
            if self.mismatches <= self.limit:
                hint = ""
                common = (0, FP32_NEG_ZERO, CANONICAL_NAN, FP32_POS_INF, FP32_POS_INF | 1 << 31)
                for k, (v, s, _) in enumerate(itertools.islice(self.expected, 16)):
                    if v == value and s == slot and value not in common:
                        hint = f" (it matches expected result #{n + k + 1}: lost / reordered?)"
                        break
                self._error(f"result #{n}: got {fp32_str(value)} slot {slot}, expected "
                            f"{fp32_str(want)} slot {want_slot}{hint}\n    {self.describe(ctx)}")
        if self._done is not None and self.compared >= self.target:
            self._done.set()

    def protocol_error(self, msg: str) -> None:
        self.protocol_errors += 1
        self._error(f"stream protocol: {msg}")

    def _error(self, msg: str) -> None:
        if len(self.errors) < self.limit:
            self.errors.append(msg)
            self.log.error("%s", msg)

    def report(self) -> str:
        return (f"{self.mismatches} mismatches, {self.unexpected} unexpected results and "
                f"{self.protocol_errors} stream protocol errors in {self.compared} compared, "
                f"{len(self.expected)} never came out; first:\n" + "\n".join(self.errors))

    def assert_clean(self, total: int) -> None:
        assert not (self.mismatches or self.unexpected or self.protocol_errors
                    or self.expected), self.report()
        assert self.compared == total, f"{self.compared} results compared, {total} expected"


def describe_block(fa, fb, blk_a, blk_b, sa, sb, sel=None) -> str:
    da = codes_table(fa).as_float32[blk_a]
    db = codes_table(fb).as_float32[blk_b]
    nz = [i for i in range(len(blk_a)) if not (da[i] == 0 and db[i] == 0)] or [0]
    shown = ", ".join(f"[{i}] {int(blk_a[i]):#04x}({da[i]:g})x{int(blk_b[i]):#04x}({db[i]:g})"
                      for i in nz[:12])
    more = f" ... {len(nz) - 12} more" if len(nz) > 12 else ""
    sel = f" selectors {sel}" if sel else ""
    return (f"scales {sa},{sb}{sel}; a={bytes(np.asarray(blk_a, np.uint8)).hex()} "
            f"b={bytes(np.asarray(blk_b, np.uint8)).hex()}; non-zero-zero elements: {shown}{more}")


def describe_output(o: Output) -> str:
    lines = [f"output {o.index} {pair_name(o.fa, o.fb)} flavour {o.flavour} slot {o.slot} acc "
             f"{fp32_str(o.acc)} classes {list(o.classes)}"]
    for j, blk in enumerate(o.blocks):
        lines.append(f"  block {j}: result {fp32_str(o.block_bits[j])}; "
                     + describe_block(o.fa, o.fb, blk.a, blk.b, blk.sa, blk.sb,
                                      blk.illegal))
    return "\n    ".join(lines)


# --------------------------------------------------------------------------------------------
# cocotb: driver, monitor, tests
# --------------------------------------------------------------------------------------------

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.simtime import get_sim_time
    from cocotb.triggers import (ClockCycles, Event, FallingEdge, ReadOnly, SimTimeoutError,
                                 with_timeout)
except ImportError:  # pragma: no cover - the pure-Python parts are usable without cocotb
    cocotb = None


def _cycle() -> int:
    return int(get_sim_time("ns")) // CLOCK_NS


class BeatDriver:
    """The ``i`` side: DotBeat payloads, at most one a cycle, idle when ``pauses`` says so.

    Payloads come from ``feed``: iterators of payload lists, pulled whenever the queue runs dry
    (so the scoreboard learns a batch's expectations before its beats go in). ``record`` keeps
    the cycle of every accepted beat.
    """

    def __init__(self, dut, *, pauses=None, record: bool = False):
        self.valid, self.ready, self.payload = dut.i__valid, dut.i__ready, dut.i__payload
        self.pauses = pauses
        self._feeds: deque = deque()
        self.queue: deque = deque()
        self.record = record
        self.accept_cycles: list[int] = []
        self.sent = 0

    def feed(self, batches) -> None:
        self._feeds.append(iter(batches))

    def refill(self) -> bool:
        while self._feeds:
            batch = next(self._feeds[0], None)
            if batch is None:
                self._feeds.popleft()
                continue
            self.queue.extend(batch)
            if self.queue:
                return True
        return False

    def accepted(self) -> None:
        self.sent += 1
        if self.record:
            self.accept_cycles.append(_cycle())


class ResultMonitor:
    """The ``o`` side: ready unless ``pauses`` says otherwise; each accepted result goes to the
    scoreboard. ``record`` keeps the cycle of every accepted result."""

    def __init__(self, dut, scoreboard: Scoreboard, *, pauses=None, record: bool = False):
        self.valid, self.ready, self.payload = dut.o__valid, dut.o__ready, dut.o__payload
        self.pauses = pauses
        self.scoreboard = scoreboard
        self.record = record
        self.accept_cycles: list[int] = []

    def accepted(self, bits: int) -> None:
        if self.record:
            self.accept_cycles.append(_cycle())
        self.scoreboard.compare(bits)

    def protocol_error(self, msg: str) -> None:
        self.scoreboard.protocol_error(f"cycle {_cycle()}: {msg}")


async def stream_loop(clock, driver: BeatDriver, monitor: ResultMonitor):
    """Runs the driver and the monitor, one falling edge and one read-only phase a cycle.

    Both sides drive on the falling edge (writing a signal only when it changes) and sample in
    the read-only phase after it, so a transfer is counted for exactly the rising edge where
    ``valid & ready`` holds. (One coroutine for both sides, rather than a StreamSource and a
    StreamSink of their own, halves the simulator callbacks a cycle: the exhaustive runs are
    bound by them.)
    """
    fe, ro = FallingEdge(clock), ReadOnly()
    queue, in_pauses, out_pauses = driver.queue, driver.pauses, monitor.pauses
    i_valid, i_ready, i_payload = driver.valid, driver.ready, driver.payload
    o_valid, o_ready, o_payload = monitor.valid, monitor.ready, monitor.payload
    presenting = driven = False
    ready_driven = held = None
    while True:
        await fe
        if not presenting and (queue or driver.refill()):
            if in_pauses is None or not next(in_pauses):
                i_payload.value = queue.popleft()
                presenting = True
        if presenting != driven:
            i_valid.value = int(presenting)
            driven = presenting
        ready = out_pauses is None or not next(out_pauses)
        if ready is not ready_driven:
            o_ready.value = int(ready)
            ready_driven = ready
        await ro
        if presenting and i_ready.value:
            presenting = False
            driver.accepted()
        if ready:
            if o_valid.value:
                bits = o_payload.value.to_unsigned()
                if held is not None and bits != held:
                    monitor.protocol_error(f"result changed from {held:#x} to {bits:#x} "
                                           f"while stalled")
                monitor.accepted(bits)
            elif held is not None:
                monitor.protocol_error(f"valid dropped while stalled (held {held:#x})")
            held = None
        elif o_valid.value:             # stalled: the result must stay until it is taken
            bits = o_payload.value.to_unsigned()
            if held is not None and bits != held:
                monitor.protocol_error(f"result changed from {held:#x} to {bits:#x} while "
                                       f"stalled")
            held = bits
        elif held is not None:
            monitor.protocol_error(f"valid dropped while stalled (held {held:#x})")
            held = None


class Bench:
    """The engine's model (layouts), driver, monitor and scoreboard of one cocotb test."""

    def __init__(self, dut, *, gap: float = 0.0, stall: float = 0.0, record: bool = False,
                 describe=None):
        from openmaia.compute.dot_engine import MxDotEngine
        self.dut = dut
        self.params = params = bench_params()
        self.seed = cocotb.RANDOM_SEED
        self.rng = random.Random(self.seed)
        self.lanes = params["lanes"]
        self.slots = params.get("slots", 4)
        self.formats = [Format.of(f) for f in params["formats"]]
        fp4 = params.get("fp4_double_rate", True)
        engine = MxDotEngine(formats=self.formats, lanes=self.lanes, slots=self.slots,
                             fp4_double_rate=fp4)
        self.latency = params.get("latency", getattr(engine, "latency", None))
        self.fmt = BeatFormat(engine.i.payload.shape(), engine.o.payload.shape(),
                              lanes=self.lanes, formats=self.formats, fp4_double_rate=fp4)
        self.fmt.self_check(self.rng)
        self.junk = self.fmt.junk_headers(self.rng)
        self.reference = ReferenceModel(random.Random(self.rng.getrandbits(32)),
                                        params.get("check_fraction", 0.01))
        self.scoreboard = Scoreboard(self.fmt, dut._log, describe or str)
        in_pauses = random_pauses_or_none(self.rng, gap)
        out_pauses = random_pauses_or_none(self.rng, stall)
        self.driver = BeatDriver(dut, pauses=in_pauses, record=record)
        self.monitor = ResultMonitor(dut, self.scoreboard, pauses=out_pauses, record=record)
        built = {f.spec.hw_code for f in self.formats}
        self.illegal_selectors = [c for c in range(1 << self.fmt.width["fmt_a"])
                                  if c not in built]
        dut._log.info("params %s, seed %d", params, self.seed)

    async def start(self):
        dut = self.dut
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        dut.rst.value = 1
        dut.i__valid.value = 0
        dut.o__ready.value = 0
        await ClockCycles(dut.clk, 3)
        await FallingEdge(dut.clk)
        dut.rst.value = 0
        cocotb.start_soon(stream_loop(dut.clk, self.driver, self.monitor))

    async def finish(self, total: int, budget_cycles: int, *, drain: int = 64):
        """Wait until ``total`` results were compared (or the budget runs out), then check."""
        done = Event()
        self.scoreboard.wait_for(total, done)
        try:
            await with_timeout(done.wait(), budget_cycles * CLOCK_NS, "ns")
        except SimTimeoutError as exc:
            raise AssertionError(
                f"timeout after {budget_cycles} cycles: {self.scoreboard.compared} of {total} "
                f"results, {self.driver.sent} beats sent\n{self.scoreboard.report()}") from exc
        await ClockCycles(self.dut.clk, drain)
        self.scoreboard.assert_clean(total)


def random_pauses_or_none(rng: random.Random, p: float):
    if not p:
        return None
    return random_pauses(random.Random(rng.getrandbits(32)), p)


def _budget(beats: int, blocks: int, gap: float = 0.0, stall: float = 0.0) -> int:
    return int(2000 + 3 * beats / ((1 - gap) * (1 - stall)) + 40 * blocks)


# exhaustive single products -------------------------------------------------------------------

def exhaustive_plan(pairs, chunk=None, sample=None, rng: random.Random | None = None):
    """``[(fa, fb, item indices)]`` of the items to run: ``chunk`` = [start, stop) over the
    concatenation of all pairs' items; ``sample`` = that many random items per pair."""
    plan, base = [], 0
    start, stop = chunk if chunk else (0, None)
    for fa, fb in pairs:
        n = fa.spec.codes * fb.spec.codes
        if sample is not None:
            idx = np.array(sorted(rng.sample(range(n), min(sample, n))), np.int64)
        else:
            lo = max(start - base, 0)
            hi = n if stop is None else min(stop - base, n)
            idx = np.arange(lo, hi, dtype=np.int64) if hi > lo else np.zeros(0, np.int64)
        base += n
        if len(idx):
            plan.append((fa, fb, idx))
    return plan


def exhaustive_total(pairs) -> int:
    return sum(fa.spec.codes * fb.spec.codes for fa, fb in pairs)


def _describe_product(ctx) -> str:
    fa, fb, ca, cb, pos, sa, sb = ctx
    a = np.full(BLOCK_SIZE, zero_fillers(fa, fb)[0], np.uint8)
    b = np.full(BLOCK_SIZE, zero_fillers(fa, fb)[1], np.uint8)
    a[pos], b[pos] = ca, cb
    return (f"{pair_name(fa, fb)} code pair ({ca:#04x}, {cb:#04x}) at element {pos}, "
            f"acc -0; " + describe_block(fa, fb, a, b, sa, sb))


def _product_batches(bench: Bench, plan, rng: random.Random, batch: int = 4096):
    fmt, sb_ = bench.fmt, bench.scoreboard
    for fa, fb, idx in plan:
        nb = fb.spec.codes
        fill_a, fill_b = zero_fillers(fa, fb)
        sel_a, sel_b = fa.spec.hw_code, fb.spec.hw_code
        fp4 = fmt.fp4_mode(sel_a, sel_b)
        for s in range(0, len(idx), batch):
            ii = idx[s:s + batch]
            n = len(ii)
            ca, cb, pos = ii // nb, ii % nb, ii % BLOCK_SIZE
            A = np.full((n, BLOCK_SIZE), fill_a, np.uint8)
            B = np.full((n, BLOCK_SIZE), fill_b, np.uint8)
            A[np.arange(n), pos] = ca
            B[np.arange(n), pos] = cb
            sa = np.array([rng.randint(107, 147) for _ in range(n)], np.int64)
            sb = np.array([rng.randint(107, 147) for _ in range(n)], np.int64)
            bits = bench.reference.singles(A, B, fa, fb, sa, sb).tolist()
            slots = (ii % bench.slots).tolist()
            headers = []
            for k in range(n):
                headers.append(fmt.header(sel_a, sel_b, int(sa[k]), int(sb[k]), 1, 1, slots[k],
                                          FP32_NEG_ZERO))
                sb_.expect(bits[k], slots[k], (fa, fb, int(ca[k]), int(cb[k]), int(pos[k]),
                                               int(sa[k]), int(sb[k])))
            yield fmt.block_beats(A, B, headers, fp4, bench.junk, rng)


if cocotb is not None:

    @cocotb.test()
    async def exhaustive_products(dut):
        """Every code pair of the format pairs (or a chunk / sample) as a single product."""
        bench = Bench(dut, describe=_describe_product)
        p = bench.params
        pairs = pairs_from_params(p)
        rng = random.Random(bench.rng.getrandbits(32))
        plan = exhaustive_plan(pairs, p.get("chunk"), p.get("sample"), rng)
        total = sum(len(idx) for _, _, idx in plan)
        beats = sum(len(idx) * bench.fmt.beats_per_block(fa.spec.hw_code, fb.spec.hw_code)
                    for fa, fb, idx in plan)
        dut._log.info("%d single products (%d beats) over %d format pairs", total, beats,
                      len(plan))
        await bench.start()
        bench.driver.feed(_product_batches(bench, plan, rng))
        await bench.finish(total, _budget(beats, total))
        dut._log.info("%d results bit-exact; %d blocks re-checked with block_dot", total,
                      bench.reference.checked_blocks)

    # scale sweep -----------------------------------------------------------------------------

    PATTERNS = ("max_x_max", "min_x_min", "neg1_x_1", "neg0_x_x")
    EDGE_SCALES = (0, 1, 2, 126, 127, 128, 252, 253, 254, 255)

    def scale_items(p, pairs):
        """``[(sa, sb, pattern, pair)]`` of the sweep, in stream order."""
        lo, hi = p.get("sa_range", (0, 256))
        which = p.get("scales", "all")
        items = []
        for sa in range(lo, hi):
            for sb in range(256):
                if which == "edges" and sa not in EDGE_SCALES and sb not in EDGE_SCALES:
                    continue
                for k, pat in enumerate(PATTERNS):
                    items.append((sa, sb, pat, pairs[(sa + 7 * sb + k) % len(pairs)]))
        return items

    def pattern_block(fa, fb, pat, sa, sb, rng):
        pa, pb = pools(fa), pools(fb)
        a = np.zeros(BLOCK_SIZE, np.uint8)
        b = np.zeros(BLOCK_SIZE, np.uint8)
        pos = (sa + 3 * sb) % BLOCK_SIZE
        neg = (sa ^ sb) & 1
        if pat == "max_x_max":
            a[:] = pa.max_neg if neg else pa.max_pos
            b[:] = pb.max_pos
        elif pat == "min_x_min":
            a[pos] = negate_codes(np.array([1]), fa)[0] if neg else 1
            b[pos] = 1
        elif pat == "neg1_x_1":
            a[pos], b[pos] = pa.minus_one, pb.one
        else:
            if pa.neg_zero is not None:
                a[:] = pa.neg_zero
                b[:] = pb.pos_nonzero[[rng.randrange(len(pb.pos_nonzero))
                                       for _ in range(BLOCK_SIZE)]]
            else:
                b[:] = pb.neg_zero if pb.neg_zero is not None else 0
                a[:] = pa.pos_nonzero[[rng.randrange(len(pa.pos_nonzero))
                                       for _ in range(BLOCK_SIZE)]]
        return a, b

    def _describe_scale(ctx) -> str:
        fa, fb, pat, a, b, sa, sb = ctx
        return f"{pair_name(fa, fb)} pattern {pat}; " + describe_block(fa, fb, a, b, sa, sb)

    def _scale_batches(bench: Bench, items, rng, batch: int = 2048):
        fmt = bench.fmt
        n_out = 0
        for s in range(0, len(items), batch):
            chunk = items[s:s + batch]
            blocks = [pattern_block(fa, fb, pat, sa, sb, rng) for sa, sb, pat, (fa, fb) in chunk]
            bits = [0] * len(chunk)
            groups: dict = {}
            for k, (_, _, _, pair) in enumerate(chunk):
                groups.setdefault(pair, []).append(k)
            for (fa, fb), ks in groups.items():
                A = np.stack([blocks[k][0] for k in ks])
                B = np.stack([blocks[k][1] for k in ks])
                sa = np.array([chunk[k][0] for k in ks], np.int64)
                sb = np.array([chunk[k][1] for k in ks], np.int64)
                for k, v in zip(ks, bench.reference.singles(A, B, fa, fb, sa, sb).tolist()):
                    bits[k] = v
            # Stream in item order; each mode change is its own run of beats.
            out = []
            for k, (sa, sb, pat, (fa, fb)) in enumerate(chunk):
                slot = n_out % bench.slots
                n_out += 1
                sel = (fa.spec.hw_code, fb.spec.hw_code)
                hdr = fmt.header(*sel, sa, sb, 1, 1, slot, FP32_NEG_ZERO)
                a, b = blocks[k]
                bench.scoreboard.expect(bits[k], slot, (fa, fb, pat, a, b, sa, sb))
                out += fmt.block_beats(a[None], b[None], [hdr], fmt.fp4_mode(*sel), bench.junk,
                                       rng)
            yield out

    @cocotb.test()
    async def scale_sweep(dut):
        """Every pair of E8M0 scales (NaN included), or the edge rows and columns, with the
        max x max, min x min, -1 x 1 and -0 x x element patterns."""
        bench = Bench(dut, describe=_describe_scale)
        pairs = pairs_from_params(bench.params)
        items = scale_items(bench.params, pairs)
        rng = random.Random(bench.rng.getrandbits(32))
        beats = sum(bench.fmt.beats_per_block(fa.spec.hw_code, fb.spec.hw_code)
                    for _, _, _, (fa, fb) in items)
        dut._log.info("%d scale-sweep blocks (%d beats)", len(items), beats)
        await bench.start()
        bench.driver.feed(_scale_batches(bench, items, rng))
        await bench.finish(len(items), _budget(beats, len(items)))

    # random dot products -----------------------------------------------------------------------

    def _random_batches(bench: Bench, outs, coverage, rng, batch: int = 512):
        fmt = bench.fmt
        for s in range(0, len(outs), batch):
            group = outs[s:s + batch]
            bench.reference.outputs(group, classify=True)
            for o in group:
                name = pair_name(o.fa, o.fb)
                for c in o.classes:
                    coverage.sample(case=f"{name}:{c}")
            payloads = []
            for o, j in schedule(group, bench.slots, rng):
                blk = o.blocks[j]
                sel = o.selectors(blk)
                first, last = int(j == 0), int(j == len(o.blocks) - 1)
                hdr = fmt.header(*sel, blk.sa, blk.sb, first, last, o.slot,
                                 o.acc if first else rng.getrandbits(32))
                payloads += fmt.block_beats(blk.a[None], blk.b[None], [hdr], fmt.fp4_mode(*sel),
                                            bench.junk, rng)
                if last:
                    bench.scoreboard.expect(o.expected, o.slot, o)
            yield payloads

    @cocotb.test()
    async def random_dots(dut):
        """Random multi-block dot products with special values, interleaved slots, gaps and
        backpressure; coverage of format pair x special-value class."""
        from openmaia.harness.coverage import Coverage, export
        p = bench_params()
        gap, stall = p.get("gap", 0.3), p.get("stall", 0.3)
        bench = Bench(dut, gap=gap, stall=stall, describe=describe_output)
        pairs = pairs_from_params(p)
        count = p.get("count", 200)
        coverage = Coverage("dot_engine", case=coverage_bins(pairs))
        rng = random.Random(bench.rng.getrandbits(32))
        outs = []
        gens = [DotGenerator(random.Random(rng.getrandbits(32)), fa, fb,
                             bench.illegal_selectors) for fa, fb in pairs]
        for _ in range(count):
            for g in gens:
                outs.append(g.next())
        # Mix the pairs, keeping each pair's directed flavours early.
        order = sorted(range(len(outs)), key=lambda k: (k // (4 * len(pairs)), rng.random()))
        outs = [outs[k] for k in order]
        for k, o in enumerate(outs):
            o.index = k
        blocks = sum(len(o.blocks) for o in outs)
        beats = sum(bench.fmt.beats_per_block(*o.selectors(blk)) for o in outs
                    for blk in o.blocks)
        dut._log.info("%d dot products, %d blocks, %d beats over %d pairs", len(outs), blocks,
                      beats, len(pairs))
        await bench.start()
        bench.driver.feed(_random_batches(bench, outs, coverage, rng))
        try:
            await bench.finish(len(outs), _budget(beats, blocks, gap, stall))
        finally:
            export()
        report = coverage.report()
        dut._log.info("coverage %.1f%%, %d bins missing; %d blocks and %d outputs re-checked "
                      "with block_dot / dot_blocks", report.percentage(), len(report.missing()),
                      bench.reference.checked_blocks, bench.reference.checked_outputs)

    # cycle count --------------------------------------------------------------------------------

    def _cycle_outputs(gen: DotGenerator, nblocks: int, per_output: int, slots: int):
        outs = []
        for _ in range(nblocks // per_output):
            blocks = []
            for _ in range(per_output):
                a, b = gen._random_pair()
                blocks.append(Block(a, b, *gen._scales_near_one()))
            outs.append(Output(gen.fa, gen.fb, blocks, gen._acc(magnitude=10), "cycle"))
        return outs

    def _round_robin(outs, slots):
        """Stream order: groups of ``slots`` outputs, their blocks interleaved round-robin."""
        for g in range(0, len(outs), slots):
            group = outs[g:g + slots]
            for s, o in enumerate(group):
                o.slot = s
            for j in range(len(group[0].blocks)):
                for o in group:
                    yield o, j

    @cocotb.test()
    async def cycle_count(dut):
        """Per format pair: ~1,000 gap-free beats finish in exactly beats + latency cycles."""
        bench = Bench(dut, record=True, describe=describe_output)
        p = bench.params
        latency = bench.latency
        assert isinstance(latency, int), "cycle_count needs the engine's latency in params"
        pairs = pairs_from_params(p)
        target = p.get("beats", 1000)
        per_outputs = p.get("blocks_per_output", [1, 2])
        fmt, sb = bench.fmt, bench.scoreboard
        rng = random.Random(bench.rng.getrandbits(32))
        await bench.start()
        results = 0
        failures = []
        for fa, fb in pairs:
            sel = (fa.spec.hw_code, fb.spec.hw_code)
            bpb = fmt.beats_per_block(*sel)
            gen = DotGenerator(random.Random(rng.getrandbits(32)), fa, fb, [])
            for per in per_outputs:
                nblocks = -(-target // bpb)
                if per > 1:     # whole groups of `slots` outputs, interleaved
                    nblocks = -(-nblocks // (per * bench.slots)) * per * bench.slots
                outs = _cycle_outputs(gen, nblocks, per, bench.slots)
                bench.reference.outputs(outs)
                payloads = []
                for o, j in _round_robin(outs, bench.slots):
                    blk = o.blocks[j]
                    first, last = int(j == 0), int(j == len(o.blocks) - 1)
                    hdr = fmt.header(*sel, blk.sa, blk.sb, first, last, o.slot,
                                     o.acc if first else 0)
                    payloads += fmt.block_beats(blk.a[None], blk.b[None], [hdr],
                                                fmt.fp4_mode(*sel), bench.junk, rng)
                    if last:
                        sb.expect(o.expected, o.slot, o)
                beats = len(payloads)
                d0, m0 = len(bench.driver.accept_cycles), len(bench.monitor.accept_cycles)
                bench.driver.feed([payloads])
                results += len(outs)
                await bench.finish(results, _budget(beats, nblocks), drain=latency + 8)
                ins = bench.driver.accept_cycles[d0:]
                outs_c = bench.monitor.accept_cycles[m0:]
                assert len(ins) == beats and len(outs_c) == len(outs)
                took = outs_c[-1] - ins[0] + 1
                gaps = sum(1 for x, y in zip(ins, ins[1:]) if y != x + 1)
                msg = (f"{pair_name(fa, fb)} ({per} block(s) an output, {bench.slots} slots "
                       f"interleaved): {beats} beats took {took} cycles, expected "
                       f"{beats} + latency {latency} = {beats + latency}; input stalled "
                       f"{gaps} times")
                dut._log.info("%s", msg)
                if took != beats + latency or gaps:
                    failures.append(msg)
                await ClockCycles(dut.clk, 4)
        assert not failures, "not full rate:\n" + "\n".join(failures)

