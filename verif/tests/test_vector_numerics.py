"""The TVP lane golden model (openmaia.numerics.vector) against independent references.

``fp32_mul`` and the GELU sequence against numpy float32 (IEEE binary32, nearest even, no flush
to zero on this host: checked below) and exact ``Fraction`` rounding; ``fp32_to_bf16`` against
ml_dtypes; the NaN, signed-zero and Inf rules one by one; the GELU error bounds of docs/tvp.md on
a sample (the exhaustive figures come from scripts/tvp_gelu.py).
"""

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from scipy.special import erfc

from openmaia.numerics import CANONICAL_NAN, round_to_fp32
from openmaia.numerics import vector as v
from openmaia.numerics.vector import VectorOp

NEG_ZERO, POS_INF, NEG_INF = 0x80000000, 0x7F800000, 0xFF800000
SPECIALS = np.array([0, NEG_ZERO, POS_INF, NEG_INF, CANONICAL_NAN, 0xFFC00000, 0x7F800001,
                     0xFFFFFFFF, 0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00800000,
                     0x80800000, 0x3F800000, 0xBF800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x3F000000,
                     0x5F800000, 0x1F800000, 0x20000000, 0x3F7FFFFF], np.uint32)


def _is_nan(bits):
    return (np.asarray(bits, np.uint32) & 0x7FFFFFFF) > 0x7F800000


def _numpy_ref(fn, a, b):
    """numpy float32 result bits with every NaN made canonical."""
    with np.errstate(all="ignore"):
        out = fn(a.view(np.float32), b.view(np.float32)).astype(np.float32).view(np.uint32)
    return np.where(_is_nan(out), np.uint32(CANONICAL_NAN), out)


def _random_bits(rng, n):
    a = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    # Close exponents and small exponents (products near the subnormal range), both signs.
    near = (a & np.uint32(0x807FFFFF)) | (rng.integers(40, 90, n).astype(np.uint32) << 23)
    return np.where(rng.random(n) < 0.3, near, a)


def test_host_keeps_subnormals():
    """numpy float32 on this host is a valid reference: no flush to zero of subnormals."""
    tiny = np.array([0x00000001, 0x00800000], np.uint32).view(np.float32)
    assert (tiny[1] * np.float32(0.5)).view(np.uint32) == 0x00400000
    assert (tiny[0] * np.float32(1)).view(np.uint32) == 1


# Multiplication


def test_mul_specials_grid():
    a, b = np.meshgrid(SPECIALS, SPECIALS)
    assert np.array_equal(v.fp32_mul(a, b), _numpy_ref(np.multiply, a, b))


def test_mul_random_vs_numpy(seed):
    rng = np.random.default_rng(seed)
    a, b = _random_bits(rng, 400_000), _random_bits(rng, 400_000)
    got, ref = v.fp32_mul(a, b), _numpy_ref(np.multiply, a, b)
    bad = np.nonzero(got != ref)[0]
    assert bad.size == 0, [(hex(a[i]), hex(b[i]), hex(got[i]), hex(ref[i])) for i in bad[:5]]


def _exact(bits: int) -> Fraction:
    e, f = (bits >> 23) & 0xFF, bits & 0x7FFFFF
    m = f if e == 0 else f | 1 << 23
    val = Fraction(m) * Fraction(2) ** (max(e, 1) - 150)
    return -val if bits >> 31 else val


def test_mul_vs_fraction(rng):
    """Products rounded once from the exact rational value (subnormal and overflow results)."""
    for _ in range(3000):
        a = rng.getrandbits(32) & 0xFF7FFFFF
        b = (rng.getrandbits(32) & 0x807FFFFF) | rng.randint(0, 254) << 23
        p = _exact(a) * _exact(b)
        if p == 0:
            want = ((a ^ b) & NEG_ZERO)
        else:
            num, den = p.numerator, p.denominator
            shift = den.bit_length() - 1
            assert den == 1 << shift
            want = int(round_to_fp32(num, -shift))
            if (want & 0x7FFFFFFF) == 0:
                want |= (a ^ b) & NEG_ZERO
        assert int(v.fp32_mul(a, b)) == want, (hex(a), hex(b))


def test_mul_rules():
    assert v.fp32_mul(0, POS_INF) == CANONICAL_NAN
    assert v.fp32_mul(NEG_INF, NEG_ZERO) == CANONICAL_NAN
    assert v.fp32_mul(NEG_INF, 0x3F800000) == NEG_INF
    assert v.fp32_mul(NEG_INF, 0x80000001) == POS_INF
    assert v.fp32_mul(0x7F800001, 0) == CANONICAL_NAN
    assert v.fp32_mul(NEG_ZERO, 0x3F800000) == NEG_ZERO
    assert v.fp32_mul(0x80000001, 0x3F000000) == NEG_ZERO   # half the smallest: tie to even 0
    assert v.fp32_mul(0x80000003, 0x3F000000) == 0x80000002  # 1.5 ulp: tie to even
    assert v.fp32_mul(0x7F7FFFFF, 0x40000000) == POS_INF
    assert v.scale(0x40400000, 0x3E800000) == 0x3F400000    # 3 * 0.25
    assert isinstance(v.fp32_mul(1, 1), np.uint32)


# Max, ReLU


def test_max_rules():
    assert v.fp32_max(NEG_ZERO, 0) == 0 and v.fp32_max(0, NEG_ZERO) == 0
    assert v.fp32_max(NEG_ZERO, NEG_ZERO) == NEG_ZERO
    for x in SPECIALS:
        assert v.fp32_max(x, 0x7FA00000) == CANONICAL_NAN
        assert v.fp32_max(0xFFC00001, x) == CANONICAL_NAN
    assert v.fp32_max(NEG_INF, 0xFF7FFFFF) == 0xFF7FFFFF
    assert v.fp32_max(POS_INF, 0x7F7FFFFF) == POS_INF
    assert v.fp32_max(0x80000001, NEG_ZERO) == NEG_ZERO
    assert v.fp32_max(0x00000001, 0) == 1


def test_max_vs_numpy(seed):
    rng = np.random.default_rng(seed)
    a, b = _random_bits(rng, 200_000), _random_bits(rng, 200_000)
    b = np.where(rng.random(a.size) < 0.2, a ^ np.uint32(1), b)
    got = v.fp32_max(a, b)
    ref = _numpy_ref(np.maximum, a, b)
    # numpy's maximum returns either zero for max(-0, +0); ours is +0, so compare on values and
    # the zero rule apart.
    zeros = ((a | b) & np.uint32(0x7FFFFFFF)) == 0
    assert np.array_equal(got[~zeros], ref[~zeros])
    assert np.all(got[zeros] == ((a & b)[zeros]))
    assert np.all((got == a) | (got == b) | (got == CANONICAL_NAN))


def test_relu():
    x = np.concatenate([SPECIALS, _random_bits(np.random.default_rng(1), 10_000)])
    got = v.relu(x)
    want = np.where(_is_nan(x), CANONICAL_NAN, np.where(x >> 31 == 1, 0, x))
    assert np.array_equal(got, want)
    assert v.relu(NEG_ZERO) == 0 and v.relu(NEG_INF) == 0 and v.relu(POS_INF) == POS_INF


# BF16


BF16_EDGES = np.array([0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF, 0x7F7F8000, 0x7F7F7FFF,
                       0xFF7F8000, 0x00008000, 0x00018000, 0x80008000, 0x007F8000, 0x007FFFFF,
                       0x7F800000, 0xFF800000, 0, NEG_ZERO, 0x7F7FFFFF, 0x00000001], np.uint32)


def _bf16_ref(x):
    with np.errstate(invalid="ignore"):
        out = x.view(np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)
    return np.where(_is_nan(x), np.uint16(v.BF16_CANONICAL_NAN), out)


def test_bf16_vs_ml_dtypes(seed):
    rng = np.random.default_rng(seed)
    x = np.concatenate([BF16_EDGES, SPECIALS, _random_bits(rng, 500_000)])
    # Exact ties and their neighbours at random exponents.
    ties = (rng.integers(0, 1 << 32, 50_000, dtype=np.uint64).astype(np.uint32)
            & np.uint32(0xFFFF0000)) | np.uint32(0x8000)
    x = np.concatenate([x, ties, ties + 1, ties - 1])
    assert np.array_equal(v.fp32_to_bf16(x), _bf16_ref(x))


@pytest.mark.slow
def test_bf16_exhaustive():
    step = 1 << 26
    for lo in range(0, 1 << 32, step):
        x = np.arange(lo, lo + step, dtype=np.uint64).astype(np.uint32)
        assert np.array_equal(v.fp32_to_bf16(x), _bf16_ref(x)), hex(lo)


def test_bf16_rules():
    assert v.fp32_to_bf16(0x3F808000) == 0x3F80          # tie, even below
    assert v.fp32_to_bf16(0x3F818000) == 0x3F82          # tie, odd below: up
    assert v.fp32_to_bf16(0x7F7FFFFF) == 0x7F80          # overflow to Inf
    assert v.fp32_to_bf16(0xFFC12345) == 0x7FC0          # any NaN: canonical, positive
    assert v.fp32_to_bf16(0x7F800001) == 0x7FC0
    assert v.fp32_to_bf16(0x00008000) == 0x0000          # subnormal tie to even 0
    assert v.fp32_to_bf16(NEG_ZERO) == 0x8000


def test_bf16_to_fp32():
    h = np.arange(1 << 16, dtype=np.uint32)
    got = v.bf16_to_fp32(h)
    ref = h.astype(np.uint16).view(ml_dtypes.bfloat16).astype(np.float32).view(np.uint32)
    nan = _is_nan(ref)
    assert np.array_equal(got[~nan], ref[~nan]) and np.all(got[nan] == CANONICAL_NAN)
    # Round trip of every non-NaN BF16 value.
    assert np.array_equal(v.fp32_to_bf16(got[~nan]), h[~nan])


# GELU


def _gelu_f32(xb):
    """The documented sequence in numpy float32: an independent evaluation of the definition."""
    x = xb.view(np.float32)
    with np.errstate(invalid="ignore"):
        a = np.abs(x).astype(np.float64)
        k = np.where(a < 8, np.floor(a * 8), 64).astype(np.int64)   # NaN lands in 64
    c = v.GELU_TABLE[k].view(np.float32)
    x0 = (np.minimum(k, 63) / 8).astype(np.float32)
    with np.errstate(invalid="ignore"):
        t = np.where(k == 64, np.float32(0), np.abs(x) - x0)
        q = ((c[:, 3] * t + c[:, 2]) * t + c[:, 1]) * t + c[:, 0]   # float32 at every step
        p = np.where(np.signbit(x), q, np.float32(1) - q)
        y = (x * p).view(np.uint32)
    y = np.where(xb == NEG_INF, np.uint32(NEG_ZERO), y)
    return np.where(_is_nan(y), np.uint32(CANONICAL_NAN), y)


def test_gelu_segment():
    x = np.float32([0, 0.1, 0.125, 0.13, 1, 7.99, 7.9999995, 8, 1e30, 1e-45, -0.3, np.inf,
                    np.nan]).view(np.uint32)
    k, x0 = v.gelu_segment(x)
    assert k.tolist() == [0, 0, 1, 1, 8, 63, 63, 64, 64, 0, 2, 64, 64]
    assert np.array_equal(np.asarray(x0, np.uint32).view(np.float32),
                          np.float32([0, 0, .125, .125, 1, 7.875, 7.875, 0, 0, 0, .25, 0, 0]))


def test_gelu_vs_float32_sequence(seed):
    rng = np.random.default_rng(seed)
    x = np.concatenate([
        SPECIALS, _random_bits(rng, 100_000),
        rng.uniform(-9, 9, 200_000).astype(np.float32).view(np.uint32),
        (np.arange(-80, 81) / 8).astype(np.float32).view(np.uint32),       # piece starts
        ((np.arange(-80, 81) / 8).astype(np.float32).view(np.uint32) - np.uint32(1)),
    ])
    got, ref = v.gelu(x), _gelu_f32(x)
    bad = np.nonzero(got != ref)[0]
    assert bad.size == 0, [(hex(x[i]), hex(got[i]), hex(ref[i])) for i in bad[:5]]


def test_gelu_rules():
    assert v.gelu(0) == 0 and v.gelu(NEG_ZERO) == NEG_ZERO
    assert v.gelu(POS_INF) == POS_INF and v.gelu(NEG_INF) == NEG_ZERO
    assert v.gelu(0x7F800001) == CANONICAL_NAN and v.gelu(0xFFC00000) == CANONICAL_NAN
    big = np.float32([8, 9.5, 1e38, 3.4e38]).view(np.uint32)
    assert np.array_equal(v.gelu(big), big)
    assert np.all(v.gelu(big | np.uint32(NEG_ZERO)) == NEG_ZERO)
    tiny = np.array([1, 2, 0x00400000, 0x00800000, 0x2F800000], np.uint32)
    # |x| tiny: x * (1 - 0.5) = x / 2 exactly (rounded to even for the odd subnormal).
    assert np.array_equal(v.gelu(tiny), v.fp32_mul(tiny, 0x3F000000))


def _gelu_ref(x):
    x = x.astype(np.float64)
    return 0.5 * x * erfc(-x / np.sqrt(2))


def test_gelu_error_bounds(seed):
    """The bounds docs/tvp.md states (measured exhaustively by scripts/tvp_gelu.py) hold on a
    sample: absolute error below 5e-7 everywhere, relative error below 2e-5 for x >= -4."""
    rng = np.random.default_rng(seed)
    xs = np.concatenate([rng.uniform(-12, 12, 300_000), rng.normal(0, 2, 200_000),
                         rng.uniform(-1e-3, 1e-3, 50_000)]).astype(np.float32)
    y = v.gelu(xs.view(np.uint32)).view(np.float32).astype(np.float64)
    ref = _gelu_ref(xs)
    err = np.abs(y - ref)
    assert err.max() < 5e-7
    sel = (xs >= -4) & (ref != 0)
    assert (err[sel] / np.abs(ref[sel])).max() < 2e-5


def test_apply_dispatch(rng):
    nprng = np.random.default_rng(rng.getrandbits(32))
    a, b = _random_bits(nprng, 2000), _random_bits(nprng, 2000)
    ops = nprng.integers(0, 7, 2000)
    got = v.apply(ops, a, b)
    for op, fn in [(VectorOp.ADD, lambda: v.fp32_add(a, b)),
                   (VectorOp.MUL, lambda: v.fp32_mul(a, b)),
                   (VectorOp.MAX, lambda: v.fp32_max(a, b)), (VectorOp.RELU, lambda: v.relu(a)),
                   (VectorOp.GELU, lambda: v.gelu(a)),
                   (VectorOp.TO_BF16, lambda: v.fp32_to_bf16(a).astype(np.uint32)),
                   (VectorOp.FROM_BF16, lambda: v.bf16_to_fp32(a & np.uint32(0xFFFF)))]:
        sel = ops == op
        assert np.array_equal(got[sel], fn()[sel]), op.name
    assert v.apply(VectorOp.RELU, NEG_ZERO) == 0
    with pytest.raises(ValueError, match="undefined vector op"):
        v.apply(7, 0, 0)
