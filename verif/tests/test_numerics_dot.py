"""Golden model, dot layer: FP32 rounding and addition, block dot products, mx_matmul.

The references are independent of the model: exact sums in :class:`fractions.Fraction`, rounding
to FP32 by Fraction comparisons (the exactly representable result is then packed by ``struct``),
products of specials by Python float semantics, and FP32 accumulation by numpy's IEEE float32
addition. Nothing is computed in float64 where that could be inexact.
"""

import functools
import math
import struct
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openmaia.numerics import (BLOCK_SIZE, CANONICAL_NAN, E8M0_NAN, Format, MXTensor, block_dot,
                               block_sum_int, decode, dot_blocks, element_value_int, fp32_add,
                               max_code, mx_matmul, quantize_mx, round_to_fp32,
                               round_to_fp32_array)

FORMATS = list(Format)
U = Fraction(1, 2 ** 24)
HYP = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

E4M3, E5M2, INT8 = Format.E4M3, Format.E5M2, Format.INT8


# ---------------------------------------------------------------------------------------------
# Independent references
# ---------------------------------------------------------------------------------------------

def f32_bits(x) -> int:
    return int(np.asarray(x, np.float32).view(np.uint32))


def bits_f32(b) -> np.float32:
    return np.array(b, np.uint32).view(np.float32)[()]


def ref_round(q: Fraction) -> int:
    """FP32 bits of the exact rational ``q`` rounded to nearest even (gradual underflow, overflow
    to Inf). Written with Fraction comparisons only; the rounded value is exactly representable,
    so ``struct`` packs it without further rounding. A zero keeps the sign of ``q``."""
    neg = q < 0
    a = -q if neg else q
    if a == 0:
        return 0
    e = a.numerator.bit_length() - a.denominator.bit_length()
    while Fraction(2) ** e > a:
        e -= 1
    while Fraction(2) ** (e + 1) <= a:
        e += 1
    quantum = Fraction(2) ** max(e - 23, -149)
    m = a / quantum
    fl = m.numerator // m.denominator
    r = m - fl
    if r > Fraction(1, 2) or (r == Fraction(1, 2) and fl % 2 == 1):
        fl += 1
    v = fl * quantum
    if v >= Fraction(2) ** 128:
        bits = 0x7F800000
    else:
        bits = struct.unpack("<I", struct.pack("<f", float(v)))[0]
        assert Fraction(struct.unpack("<f", struct.pack("<I", bits))[0]) == v
    return bits | (neg << 31)


def frac_of_bits(b: int) -> Fraction:
    return Fraction(float(bits_f32(b)))


def ref_values(codes, fmt):
    """Python floats of element codes (decode() is checked against ml_dtypes elsewhere)."""
    return [float(v) for v in decode(np.asarray(codes, np.uint8), fmt)]


def ref_block(a_codes, b_codes, fa, fb, sa, sb):
    """Reference block result bits and the exact scaled sum (None for specials)."""
    if sa == E8M0_NAN or sb == E8M0_NAN:
        return CANONICAL_NAN, None
    av, bv = ref_values(a_codes, fa), ref_values(b_codes, fb)
    prods = [x * y for x, y in zip(av, bv)]             # Python float: IEEE specials
    if any(math.isnan(p) for p in prods) or (math.inf in prods and -math.inf in prods):
        return CANONICAL_NAN, None
    if math.inf in prods:
        return 0x7F800000, None
    if -math.inf in prods:
        return 0xFF800000, None
    s = sum(Fraction(x) * Fraction(y) for x, y in zip(av, bv))
    s *= Fraction(2) ** (int(sa) + int(sb) - 254)
    if s == 0:
        if all(p == 0 for p in prods):                 # IEEE sum of the signed zero products
            return f32_bits(functools.reduce(lambda x, y: x + y, prods)), s
        return 0, s
    return ref_round(s), s


def ref_matmul(a: MXTensor, b: MXTensor, c=None):
    """Reference C bits, and per output the exact block sums (None when a block is special)."""
    M, K = a.shape
    N = b.shape[1]
    blk = a.block
    nb = -(-K // blk)
    pad = nb * blk - K
    ac = np.pad(a.codes, ((0, 0), (0, pad)))
    bc = np.pad(b.codes, ((0, pad), (0, 0)))
    cin = np.full((M, N), -0.0, np.float32) if c is None else np.broadcast_to(
        np.asarray(c, np.float32), (M, N))
    out = np.zeros((M, N), np.uint32)
    sums = {}
    for i in range(M):
        for j in range(N):
            acc = cin[i, j]
            ss = []
            for k in range(nb):
                sl = slice(k * blk, (k + 1) * blk)
                r, s = ref_block(ac[i, sl], bc[sl, j], a.fmt, b.fmt, a.scales[i, k],
                                 b.scales[k, j])
                ss.append(s)
                with np.errstate(over="ignore", invalid="ignore"):
                    acc = np.float32(acc + bits_f32(r))   # host IEEE binary32 addition
            out[i, j] = CANONICAL_NAN if math.isnan(acc) else f32_bits(acc)
            sums[i, j] = ss
    return out, sums


def gamma(n: int) -> Fraction:
    return n * U / (1 - n * U)


# ---------------------------------------------------------------------------------------------
# round_to_fp32
# ---------------------------------------------------------------------------------------------

def test_ref_round_self_check():
    for x in [1.0, -3.5, 1e-45, 2.0 ** -126, 3.4028234663852886e38, -1.17e-38]:
        assert ref_round(Fraction(x)) == f32_bits(np.float32(x))


@settings(max_examples=600, **HYP)
@given(st.integers(-(1 << 80), 1 << 80), st.integers(-330, 200))
def test_round_to_fp32_matches_fraction_reference(num, exp2):
    ref = ref_round(Fraction(num) * Fraction(2) ** exp2) if num else 0
    assert int(round_to_fp32(num, exp2)) == ref


@pytest.mark.parametrize("num,exp2,expected", [
    (0, 5, 0x00000000),
    (1, -150, 0x00000000),                    # half the min subnormal: tie to even (0)
    (-1, -150, 0x80000000),                   # ... with the sign of the value
    (3, -151, 0x00000001),                    # 0.75 min subnormal
    (3, -150, 0x00000002),                    # 1.5 -> 2 (tie to even)
    (5, -151, 0x00000001),                    # 1.25 -> 1
    ((1 << 24) - 1, -150, 0x00800000),        # rounds up into the first normal binade
    ((1 << 23) - 1, -149, 0x007FFFFF),        # largest subnormal, exact
    ((1 << 24) - 1, 104, 0x7F7FFFFF),         # FP32 max
    ((1 << 25) - 1, 103, 0x7F800000),         # max + half ulp: tie -> even -> Inf
    ((1 << 26) - 3, 102, 0x7F7FFFFF),         # max + quarter ulp -> max
    (-(1 << 200), 0, 0xFF800000),
    ((1 << 24) + 1, 0, 0x4B800000),           # 2**24 + 1 -> 2**24 (tie to even)
    ((1 << 24) + 3, 0, 0x4B800002),           # 2**24 + 3 -> 2**24 + 4
])
def test_round_to_fp32_cases(num, exp2, expected):
    assert int(round_to_fp32(num, exp2)) == expected
    assert int(round_to_fp32_array([num], [exp2])[0]) == expected if abs(num) < 1 << 62 else True


def test_round_to_fp32_array_matches_scalar(seed):
    rng = np.random.default_rng(seed)
    n = 20000
    bitlen = rng.integers(0, 62, n)
    num = rng.integers(0, 1 << 62, n, dtype=np.int64) >> (62 - bitlen)
    num = num * rng.choice([-1, 1], n)
    exp2 = rng.integers(-260, 140, n)
    got = round_to_fp32_array(num, exp2)
    assert got.dtype == np.uint32
    for x, e, g in zip(num.tolist(), exp2.tolist(), got.tolist()):
        assert g == int(round_to_fp32(x, e)), (x, e)
    with pytest.raises(ValueError):
        round_to_fp32_array([1 << 62], [0])


# ---------------------------------------------------------------------------------------------
# fp32_add
# ---------------------------------------------------------------------------------------------

def np_add_bits(a, b):
    with np.errstate(over="ignore", invalid="ignore"):
        s = (a.view(np.float32) + b.view(np.float32)).view(np.uint32)
    return np.where(np.isnan(s.view(np.float32)), np.uint32(CANONICAL_NAN), s)


def test_fp32_add_matches_ieee(seed):
    rng = np.random.default_rng(seed)
    n = 1 << 17
    a = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    b = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    # Close magnitudes (cancellation, carries), opposite and equal signs.
    near = (a ^ rng.integers(0, 1 << 6, n, dtype=np.uint32)) ^ \
        (rng.integers(0, 2, n, dtype=np.uint32) << np.uint32(31))
    # Exponent differences 0..30 and subnormals.
    shifted = (a & np.uint32(0x807FFFFF)) | (np.clip(
        ((a >> np.uint32(23)) & np.uint32(0xFF)).astype(np.int64) - rng.integers(0, 31, n), 0,
        254).astype(np.uint32) << np.uint32(23))
    sub = rng.integers(0, 1 << 24, n, dtype=np.uint32) | \
        (rng.integers(0, 2, n, dtype=np.uint32) << np.uint32(31))
    small_b = b & np.uint32(0x80FFFFFF)
    for x, y in [(a, b), (a, near), (a, shifted), (sub, small_b), (sub, sub[::-1])]:
        got = fp32_add(x, y)
        assert got.dtype == np.uint32
        assert np.array_equal(got, np_add_bits(x, y))


def test_fp32_add_specials():
    P0, N0, PI, NI, NAN = 0, 0x80000000, 0x7F800000, 0xFF800000, CANONICAL_NAN
    one, mone = f32_bits(1.0), f32_bits(-1.0)
    cases = [
        (P0, N0, P0), (N0, N0, N0), (N0, P0, P0), (one, mone, P0), (mone, one, P0),
        (PI, NI, NAN), (NI, PI, NAN), (PI, PI, PI), (NI, one, NI), (one, PI, PI),
        (0x7F800001, one, NAN), (0xFFFFFFFF, PI, NAN), (one, 0x7FA00000, NAN),
        (0x7F7FFFFF, 0x7F7FFFFF, PI), (0xFF7FFFFF, 0xF3800000, NI),   # max - 2**104 ulp tie
        (0x00000001, 0x80000001, P0), (0x007FFFFF, 0x00000001, 0x00800000),
    ]
    for a, b, expected in cases:
        assert int(fp32_add(a, b)) == expected, (hex(a), hex(b))
        assert int(fp32_add(b, a)) == expected
    assert isinstance(fp32_add(one, one), np.uint32)


# ---------------------------------------------------------------------------------------------
# One block
# ---------------------------------------------------------------------------------------------

def finite_codes(rng, fmt, n, zero_frac=0.0):
    d = decode(np.arange(fmt.spec.codes, dtype=np.uint8), fmt)
    ok = np.nonzero(np.isfinite(d))[0].astype(np.uint8)
    c = rng.choice(ok, n)
    c[rng.random(n) < zero_frac] = 0
    return c


@settings(max_examples=300, **HYP)
@given(fa=st.sampled_from(FORMATS), fb=st.sampled_from(FORMATS), seed=st.integers(0, 2 ** 32 - 1),
       sa=st.integers(0, 254), sb=st.integers(0, 254), zero_frac=st.sampled_from([0, 0.5, 0.97]))
def test_block_dot_correctly_rounded(fa, fb, seed, sa, sb, zero_frac):
    rng = np.random.default_rng(seed)
    a = finite_codes(rng, fa, BLOCK_SIZE, zero_frac)
    b = finite_codes(rng, fb, BLOCK_SIZE, zero_frac)
    r, s = ref_block(a, b, fa, fb, sa, sb)
    assert int(block_dot(a, b, fa, fb, sa, sb)) == r
    S = block_sum_int(a, b, fa, fb)
    assert Fraction(S) * Fraction(2) ** (fa.spec.lsb_exp + fb.spec.lsb_exp + sa + sb - 254) == s


def test_e5m2_example():
    """Products 2**30, 2**6, 2**-32: exact sum rounds to 2**30 + 2**7; float64 would give 2**30."""
    a = np.zeros(BLOCK_SIZE, np.uint8)
    a[:3] = [0x78, 0x48, 0x01]                # 2**15, 2**3, 2**-16 (min subnormal)
    assert decode(a[:3], "e5m2").tolist() == [2.0 ** 15, 8.0, 2.0 ** -16]
    r = block_dot(a, a, "e5m2", "e5m2", 127, 127)
    assert bits_f32(r) == 2.0 ** 30 + 2.0 ** 7
    assert np.float32(2.0 ** 30 + 2.0 ** 6 + 2.0 ** -32) == 2.0 ** 30      # the float64 pitfall
    t = MXTensor(codes=a[None, :], scales=[[127]], fmt="e5m2", axis=1, shape=(1, 32))
    u = MXTensor(codes=a[:, None], scales=[[127]], fmt="e5m2", axis=0, shape=(32, 1))
    assert mx_matmul(t, u)[0, 0] == 2.0 ** 30 + 2.0 ** 7


def blk(codes, n=BLOCK_SIZE):
    """A block of codes: ``codes`` followed by code 0 (+0 in every format) up to ``n``."""
    c = np.zeros(n, np.uint8)
    c[:len(codes)] = codes
    return c


def test_block_specials():
    NAN, PI, NI = CANONICAL_NAN, 0x7F800000, 0xFF800000
    one4 = blk([0x38] * 32)                          # E4M3 1.0 everywhere
    one5 = blk([0x3C] * 32)
    # NaN scale on either side.
    assert block_dot(one4, one4, E4M3, E4M3, 255, 127) == NAN
    assert block_dot(one4, one4, E4M3, E4M3, 127, 255) == NAN
    # NaN elements (E4M3 0x7F / 0xFF; E5M2 0x7D..0x7F, 0xFD..0xFF), also against zero.
    for fmt, code in [(E4M3, 0x7F), (E4M3, 0xFF), (E5M2, 0x7D), (E5M2, 0xFE), (E5M2, 0xFF)]:
        a = blk([code])
        assert block_dot(a, one4, fmt, E4M3, 127, 127) == NAN
        assert block_dot(one5, a, E5M2, fmt, 127, 127) == NAN
        assert block_dot(a, blk([]), fmt, INT8, 127, 127) == NAN
    inf, ninf = blk([0x7C]), blk([0xFC])
    # Inf x 0 (either zero sign, any format's zero) -> NaN.
    for other, fmt in [(blk([]), E4M3), (blk([0x80]), E4M3), (blk([]), INT8),
                       (blk([0x20]), Format.E3M2)]:
        assert block_dot(inf, other, E5M2, fmt, 127, 127) == NAN
        assert block_dot(other, ninf, fmt, E5M2, 127, 127) == NAN
    # Inf x finite nonzero -> signed Inf, whatever the rest of the block and the scales.
    assert block_dot(inf, one4, E5M2, E4M3, 0, 0) == PI
    assert block_dot(ninf, one4, E5M2, E4M3, 254, 254) == NI
    assert block_dot(inf, blk([0xB8] * 32), E5M2, E4M3, 127, 127) == NI   # x -1
    assert block_dot(inf, inf, E5M2, E5M2, 127, 127) == PI                # rest: 0 x 0
    assert block_dot(inf, blk([0, 0x7C]), E5M2, E5M2, 127, 127) == NAN    # Inf x 0 twice
    both = blk([0x7C, 0xFC] + [0x3C] * 30)
    assert block_dot(both, one5, E5M2, E5M2, 127, 127) == NAN             # +Inf and -Inf
    same = blk([0x7C, 0xFC] + [0x3C] * 30)
    signs = blk([0x3C, 0xBC] + [0x3C] * 30)
    assert block_dot(same, signs, E5M2, E5M2, 127, 127) == PI             # +Inf twice
    # Overflow of a finite block -> Inf.
    mx5 = blk([0x7B] * 32)
    assert block_dot(mx5, mx5, E5M2, E5M2, 254, 254) == PI
    assert block_dot(mx5, blk([0xFB] * 32), E5M2, E5M2, 200, 200) == NI


def test_block_zero_signs():
    P0, N0 = 0x00000000, 0x80000000
    pz, nz = blk([]), blk([0x80] * 32)         # +0 / -0 everywhere
    pos, neg = blk([0x38] * 32), blk([0xB8] * 32)
    assert block_dot(nz, pos, E4M3, E4M3, 127, 127) == N0     # every product -0
    assert block_dot(pz, neg, E4M3, E4M3, 127, 127) == N0
    assert block_dot(nz, neg, E4M3, E4M3, 127, 127) == P0
    assert block_dot(pz, pos, E4M3, E4M3, 127, 127) == P0
    mixed = neg.copy()
    mixed[7] = 0x38                                          # one product +0
    assert block_dot(nz, mixed, E4M3, E4M3, 127, 127) == P0
    # Products that cancel exactly: +0 even if the other products are -0.
    a = nz.copy()
    a[:2] = [0x38, 0x38]
    b = pos.copy()
    b[1] = 0xB8
    assert block_dot(a, b, E4M3, E4M3, 127, 127) == P0
    # A nonzero sum that underflows keeps its sign.
    tiny = blk([0x01])                                 # 2**-9
    assert block_dot(tiny, blk([0x81]), E4M3, E4M3, 0, 0) == N0
    assert block_dot(tiny, tiny, E4M3, E4M3, 0, 0) == P0
    # INT8 zero is +0: INT8 0 x E4M3 -1 is -0, INT8 -1/64 x E4M3 +0 is -0.
    i0, im = blk([]), blk([0xFF] * 32)
    assert block_dot(i0, neg, INT8, E4M3, 127, 127) == N0
    assert block_dot(i0, pos, INT8, E4M3, 127, 127) == P0
    assert block_dot(im, pz, INT8, E4M3, 127, 127) == N0
    assert block_dot(im, nz, INT8, E4M3, 127, 127) == P0
    # A short (partial) block checked alone: every one of its products counts.
    assert block_dot(nz[:5], pos[:5], E4M3, E4M3, 127, 127) == N0
    # ... but dot_blocks pads a partial block with +0 codes: +0 x +1 = +0, so +0.
    assert dot_blocks(nz[:5], pos[:5], E4M3, E4M3, [127], [127]) == P0


def test_block_subnormal_results():
    one = blk([0x38])
    for s in range(0, 40):
        # 1.0 * 2**(s - 254 + 127): from 2**-127 (subnormal) upwards.
        r = block_dot(one, one, E4M3, E4M3, s, 127)
        assert r == ref_round(Fraction(2) ** (s - 127))
        assert r == (1 << 22 if s == 0 else s << 23)
    r = block_dot(blk([0x01] * 3), blk([0x3C] * 3), E4M3, E4M3, 0, 0)
    assert r == ref_round(3 * Fraction(2) ** -9 * Fraction(3, 2) * Fraction(2) ** -254)


def test_block_arg_errors():
    with pytest.raises(ValueError, match="length"):
        block_dot(np.zeros(32, np.uint8), np.zeros(31, np.uint8), E4M3, E4M3, 127, 127)
    with pytest.raises(ValueError, match="scale"):
        block_dot(np.zeros(32, np.uint8), np.zeros(32, np.uint8), E4M3, E4M3, 256, 127)


# ---------------------------------------------------------------------------------------------
# mx_matmul
# ---------------------------------------------------------------------------------------------

@st.composite
def mx_operands(draw, max_k=100, specials=False):
    fa = draw(st.sampled_from(FORMATS))
    fb = draw(st.sampled_from(FORMATS))
    M, N = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    K = draw(st.integers(1, max_k))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    zero_frac = draw(st.sampled_from([0.0, 0.3, 0.95, 1.0]))
    centre = draw(st.integers(0, 254))
    spread = draw(st.sampled_from([0, 2, 20, 254]))
    rng = np.random.default_rng(seed)
    nb = -(-K // BLOCK_SIZE)

    def scales(shape):
        s = np.clip(centre + rng.integers(-spread, spread + 1, shape), 0, 254)
        if specials:
            s[rng.random(shape) < 0.05] = E8M0_NAN
        return s.astype(np.uint8)

    def codes(fmt, shape):
        if specials:
            c = rng.integers(0, fmt.spec.codes, shape).astype(np.uint8)
            c[rng.random(shape) < zero_frac] = 0
            return c
        return finite_codes(rng, fmt, int(np.prod(shape)), zero_frac).reshape(shape)

    a = MXTensor(codes=codes(fa, (M, K)), scales=scales((M, nb)), fmt=fa, axis=1, shape=(M, K))
    b = MXTensor(codes=codes(fb, (K, N)), scales=scales((nb, N)), fmt=fb, axis=0, shape=(K, N))
    return a, b


@settings(max_examples=250, **HYP)
@given(ops=mx_operands(max_k=BLOCK_SIZE))
def test_matmul_single_block_correctly_rounded(ops):
    a, b = ops
    got = mx_matmul(a, b).view(np.uint32)
    ref, sums = ref_matmul(a, b)
    assert np.array_equal(got, ref)
    for (i, j), (s,) in sums.items():              # one block: C == round(exact) (or its -0)
        assert got[i, j] == ref_round(s) or s == 0


@settings(max_examples=150, **HYP)
@given(ops=mx_operands(max_k=200))
def test_matmul_multi_block_exact_and_error_bound(ops):
    a, b = ops
    got = mx_matmul(a, b)
    ref, sums = ref_matmul(a, b)
    assert np.array_equal(got.view(np.uint32), ref)
    for (i, j), ss in sums.items():
        if not np.isfinite(got[i, j]):
            continue
        n = len(ss)
        exact = sum(ss, Fraction(0))
        err = abs(Fraction(float(got[i, j])) - exact)
        assert err <= gamma(n) * sum(abs(s) for s in ss) + n * Fraction(2) ** -150


@settings(max_examples=150, **HYP)
@given(ops=mx_operands(max_k=100, specials=True))
def test_matmul_with_specials_matches_references(ops):
    a, b = ops
    got = mx_matmul(a, b).view(np.uint32)
    ref, _ = ref_matmul(a, b)
    assert np.array_equal(got, ref)
    nan = np.isnan(got.view(np.float32))
    assert np.all(got[nan] == CANONICAL_NAN)
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            assert got[i, j] == dot_blocks(a.codes[i], b.codes[:, j], a.fmt, b.fmt,
                                           a.scales[i], b.scales[:, j])


@settings(max_examples=60, **HYP)
@given(ops=mx_operands(max_k=100), cseed=st.integers(0, 2 ** 32 - 1))
def test_matmul_accumulator_input(ops, cseed):
    a, b = ops
    rng = np.random.default_rng(cseed)
    M, N = a.shape[0], b.shape[1]
    c = (rng.standard_normal((M, N)) * np.ldexp(1.0, rng.integers(-140, 120, (M, N))))
    c = c.astype(np.float32)
    got = mx_matmul(a, b, c).view(np.uint32)
    ref, _ = ref_matmul(a, b, c)
    assert np.array_equal(got, ref)


def test_matmul_specials_across_blocks():
    NAN = CANONICAL_NAN
    K = 96
    ac = np.zeros((1, K), np.uint8)
    ac[0, 0] = 0x7C                                      # +Inf in block 0
    ac[0, 32] = 0xFC                                     # -Inf in block 1
    bc = np.full((K, 1), 0x3C, np.uint8)                 # +1
    a = MXTensor(codes=ac, scales=[[127] * 3], fmt=E5M2, axis=1, shape=(1, K))
    b = MXTensor(codes=bc, scales=[[127]] * 3, fmt=E5M2, axis=0, shape=(K, 1))
    assert mx_matmul(a, b).view(np.uint32)[0, 0] == NAN                 # Inf - Inf
    ac[0, 32] = 0x7C
    assert mx_matmul(a, b)[0, 0] == np.inf                              # Inf + Inf
    ac[0, 32] = 0x3C
    assert mx_matmul(a, b)[0, 0] == np.inf                              # Inf + finite
    # NaN scale in a later block poisons the output.
    a2 = MXTensor(codes=ac, scales=[[127, 127, 255]], fmt=E5M2, axis=1, shape=(1, K))
    assert mx_matmul(a2, b).view(np.uint32)[0, 0] == NAN
    b2 = MXTensor(codes=bc, scales=[[127], [255], [127]], fmt=E5M2, axis=0, shape=(K, 1))
    assert mx_matmul(a, b2).view(np.uint32)[0, 0] == NAN
    # Finite blocks whose FP32 sum overflows.
    big = MXTensor(codes=np.full((1, K), 0x7B, np.uint8), scales=[[180] * 3], fmt=E5M2, axis=1,
                   shape=(1, K))
    bb = MXTensor(codes=bc, scales=[[180]] * 3, fmt=E5M2, axis=0, shape=(K, 1))
    one_block = block_dot(big.codes[0, :32], bc[:32, 0], E5M2, E5M2, 180, 180)
    assert np.isfinite(bits_f32(one_block))
    assert mx_matmul(big, bb)[0, 0] == np.inf


def test_matmul_zero_signs_and_accumulator():
    K = 64
    nz = MXTensor(codes=np.full((1, K), 0x80, np.uint8), scales=[[127, 127]], fmt=E4M3, axis=1,
                  shape=(1, K))
    pos = MXTensor(codes=np.full((K, 2), 0x38, np.uint8), scales=[[127, 127]] * 2, fmt=E4M3,
                   axis=0, shape=(K, 2))
    r = mx_matmul(nz, pos)
    assert r.view(np.uint32).tolist() == [[0x80000000, 0x80000000]]   # -0 + -0 + -0
    r = mx_matmul(nz, pos, c=np.float32(0.0))
    assert r.view(np.uint32).tolist() == [[0, 0]]                     # +0 + -0 = +0
    r = mx_matmul(nz, pos, c=[[1.5, -np.inf]])
    assert r.tolist() == [[1.5, -np.inf]]
    r = mx_matmul(nz, pos, c=np.array([[np.nan, 7.0]], np.float32))
    assert r.view(np.uint32)[0, 0] == CANONICAL_NAN
    odd_nan = np.array([[0x7F800001, 0xFFC00001]], np.uint32).view(np.float32)
    assert mx_matmul(nz, pos, c=odd_nan).view(np.uint32).tolist() == [[CANONICAL_NAN] * 2]
    inf_a = MXTensor(codes=np.full((1, K), 0x7C, np.uint8), scales=[[127, 127]], fmt=E5M2, axis=1,
                     shape=(1, K))
    assert mx_matmul(inf_a, pos, c=[[-np.inf, np.inf]]).view(np.uint32).tolist() == \
        [[CANONICAL_NAN, 0x7F800000]]
    # A partial block of -0 products is +0 (padding products are +0).
    nz5 = MXTensor(codes=np.full((1, 5), 0x80, np.uint8), scales=[[127]], fmt=E4M3, axis=1,
                   shape=(1, 5))
    pos5 = MXTensor(codes=np.full((5, 1), 0x38, np.uint8), scales=[[127]], fmt=E4M3, axis=0,
                    shape=(5, 1))
    assert mx_matmul(nz5, pos5).view(np.uint32)[0, 0] == 0


def test_matmul_shape_errors():
    a = quantize_mx(np.ones((2, 64)), "e4m3", axis=1)
    b = quantize_mx(np.ones((64, 3)), "e4m3", axis=0)
    assert mx_matmul(a, b).shape == (2, 3)
    with pytest.raises(ValueError, match="inner dimensions"):
        mx_matmul(a, quantize_mx(np.ones((96, 3)), "e4m3", axis=0))
    with pytest.raises(ValueError, match="block sizes"):
        mx_matmul(a, quantize_mx(np.ones((64, 3)), "e4m3", axis=0, block=16))
    with pytest.raises(ValueError, match="axis 1"):
        mx_matmul(quantize_mx(np.ones((2, 64)), "e4m3", axis=0), b)
    with pytest.raises(ValueError, match="axis 0"):
        mx_matmul(a, quantize_mx(np.ones((64, 3)), "e4m3", axis=1))
    with pytest.raises(ValueError, match="2-d"):
        mx_matmul(quantize_mx(np.ones(64), "e4m3"), b)
    with pytest.raises(ValueError, match="accumulator"):
        mx_matmul(a, b, c=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="scales"):
        dot_blocks(a.codes[0], b.codes[:, 0], "e4m3", "e4m3", [127], [127, 127])


@pytest.mark.parametrize("fa,fb", [(E5M2, E5M2), (E4M3, Format.E2M1), (INT8, Format.E3M2)],
                         ids=str)
def test_matmul_16x512x16_matches_dot_blocks(fa, fb, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((16, 512)) * np.ldexp(1.0, rng.integers(-30, 30, (16, 512))))
    w = (rng.standard_normal((512, 16)) * np.ldexp(1.0, rng.integers(-30, 30, (512, 16))))
    a = quantize_mx(x.astype(np.float32), fa, axis=1)
    b = quantize_mx(w.astype(np.float32), fb, axis=0)
    got = mx_matmul(a, b).view(np.uint32)
    for i in range(0, 16, 5):
        for j in range(0, 16, 3):
            assert got[i, j] == dot_blocks(a.codes[i], b.codes[:, j], fa, fb, a.scales[i],
                                           b.scales[:, j])


@pytest.mark.slow
@pytest.mark.parametrize("fa", FORMATS, ids=str)
def test_matmul_all_pairs_against_fraction_reference(fa, seed):
    rng = np.random.default_rng(seed)
    for fb in FORMATS:
        x = rng.standard_normal((4, 300)) * np.ldexp(1.0, rng.integers(-60, 60, (4, 300)))
        w = rng.standard_normal((300, 4)) * np.ldexp(1.0, rng.integers(-60, 60, (300, 4)))
        a = quantize_mx(x.astype(np.float32), fa, axis=1)
        b = quantize_mx(w.astype(np.float32), fb, axis=0)
        ref, _ = ref_matmul(a, b)
        assert np.array_equal(mx_matmul(a, b).view(np.uint32), ref)


@pytest.mark.slow
@settings(max_examples=3000, **HYP)
@given(ops=mx_operands(max_k=130, specials=True))
def test_matmul_many_examples_slow(ops):
    a, b = ops
    ref, _ = ref_matmul(a, b)
    assert np.array_equal(mx_matmul(a, b).view(np.uint32), ref)


@pytest.mark.slow
@settings(max_examples=1500, **HYP)
@given(ops=mx_operands(max_k=300))
def test_matmul_error_bound_many_examples_slow(ops):
    a, b = ops
    got = mx_matmul(a, b)
    _, sums = ref_matmul(a, b)
    for (i, j), ss in sums.items():
        if np.isfinite(got[i, j]):
            n = len(ss)
            err = abs(Fraction(float(got[i, j])) - sum(ss, Fraction(0)))
            assert err <= gamma(n) * sum(abs(s) for s in ss) + n * Fraction(2) ** -150


WIDTHS = {  # signed bits of an exact 32-term block sum (docs/numerics.md, the brief's table)
    ("e5m2", "e5m2"): 70, ("e5m2", "e4m3"): 56, ("e5m2", "e3m2"): 47, ("e5m2", "int8"): 45,
    ("e5m2", "e2m3"): 44, ("e5m2", "e2m1"): 42, ("e4m3", "e4m3"): 42, ("e4m3", "e3m2"): 33,
    ("e4m3", "int8"): 31, ("e4m3", "e2m3"): 30, ("e4m3", "e2m1"): 28, ("e3m2", "e3m2"): 24,
    ("e3m2", "int8"): 22, ("e3m2", "e2m3"): 21, ("int8", "int8"): 21, ("e3m2", "e2m1"): 19,
    ("e2m3", "int8"): 19, ("e2m3", "e2m3"): 18, ("e2m1", "int8"): 17, ("e2m3", "e2m1"): 16,
    ("e2m1", "e2m1"): 14,
}


def test_block_sum_widths():
    def biggest(fmt):
        v, _, _ = element_value_int(np.arange(fmt.spec.codes, dtype=np.uint8), fmt)
        return int(np.abs(v).max())
    assert len(WIDTHS) == 21
    for (fa, fb), bits in WIDTHS.items():
        fa, fb = Format(fa), Format(fb)
        m = biggest(fa) * biggest(fb) * BLOCK_SIZE
        assert m.bit_length() + 1 == bits, (fa, fb)
        # The extreme sum itself goes through the model exactly.
        ca = np.full(BLOCK_SIZE, 0x80 if fa is INT8 else max_code(fa, True), np.uint8)
        cb = np.full(BLOCK_SIZE, 0x80 if fb is INT8 else max_code(fb, True), np.uint8)
        assert block_sum_int(ca, cb, fa, fb) == m
