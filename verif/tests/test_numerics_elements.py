"""Golden model, element layer: decode / encode of every format against ml_dtypes and by rule.

ml_dtypes is an independent implementation of the OCP formats; where its rules differ from ours
(it does not saturate FP8, and maps NaN to -0 in FP6 / FP4) the reference clamps first or the
test states our rule explicitly.
"""

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from openmaia.numerics import (Format, check_codes, decode, element_fraction, element_sign,
                               element_value_int, encode, inf_code, max_code, nan_code)

FORMATS = list(Format)
FLOATS = [f for f in Format if f.is_float]
FP8 = [Format.E4M3, Format.E5M2]
NO_SPECIALS = [Format.E3M2, Format.E2M3, Format.E2M1, Format.INT8]


def all_codes(fmt):
    return np.arange(fmt.spec.codes, dtype=np.uint8)


def ml_dtype(fmt):
    return getattr(ml_dtypes, fmt.spec.ml_dtype)


def bits32(x):
    return np.asarray(x, np.float32).view(np.uint32)


def ref_encode(x, fmt, saturate=True):
    """Codes from ml_dtypes (FP) or an independent float64 rint (INT8); NaN inputs excluded."""
    x = np.asarray(x, np.float32)
    mx = np.float32(fmt.spec.max_value)
    if fmt is Format.INT8:
        r = np.clip(np.rint(x.astype(np.float64) * 64), -127, 127)
        return r.astype(np.int8).view(np.uint8)
    if saturate or fmt not in FP8:
        x = np.clip(x, -mx, mx)
    return x.astype(ml_dtype(fmt)).view(np.uint8)


def finite_values(fmt):
    """Sorted distinct finite values of ``fmt`` (float64), both signs."""
    d = decode(all_codes(fmt), fmt).astype(np.float64)
    return np.unique(d[np.isfinite(d)])


# ---------------------------------------------------------------------------------------------
# decode
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FLOATS, ids=str)
def test_decode_every_code_matches_ml_dtypes(fmt):
    c = all_codes(fmt)
    ours = decode(c, fmt)
    ref = c.view(ml_dtype(fmt)).astype(np.float32)
    assert ours.dtype == np.float32 and ours.shape == c.shape
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(ours), nan)
    # Bitwise: also checks the sign of zero.
    assert np.array_equal(bits32(ours)[~nan], bits32(ref)[~nan])


def test_decode_int8_every_code():
    c = all_codes(Format.INT8)
    ours = decode(c, Format.INT8)
    ref = (c.view(np.int8).astype(np.float64) / 64).astype(np.float32)
    assert np.array_equal(bits32(ours), bits32(ref))
    assert decode([0x80], "int8")[0] == -2.0
    assert decode([0x7F], "INT8")[0] == 127 / 64


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_value_int_sign_and_fraction_agree_with_decode(fmt):
    c = all_codes(fmt)
    v, nan, inf = element_value_int(c, fmt)
    d = decode(c, fmt)
    assert v.dtype == np.int64
    assert np.array_equal(nan, np.isnan(d))
    assert np.array_equal(inf, np.isinf(d))
    fin = ~nan & ~inf
    assert np.array_equal(np.ldexp(v[fin].astype(np.float64), fmt.spec.lsb_exp), d[fin])
    assert np.all(v[~fin] == 0)
    sign = element_sign(c, fmt)
    assert np.array_equal(sign[fin], np.signbit(d[fin]))
    for code in c[fin]:
        assert element_fraction(code, fmt) == Fraction(float(d[code]))
    assert Fraction(float(d[max_code(fmt)])) == fmt.spec.max_value
    assert float(d[max_code(fmt, negative=True)]) == -fmt.spec.max_value


def test_special_codes():
    assert nan_code("e4m3") == 0x7F and nan_code("e4m3", True) == 0xFF
    assert nan_code("e5m2") == 0x7E and nan_code("e5m2", True) == 0xFE
    assert inf_code("e5m2") == 0x7C and inf_code("e5m2", True) == 0xFC
    for fmt in NO_SPECIALS:
        assert nan_code(fmt) is None and inf_code(fmt) is None
    assert inf_code("e4m3") is None
    assert max_code("e4m3") == 0x7E and max_code("e5m2") == 0x7B and max_code("int8") == 0x7F
    assert max_code("int8", negative=True) == 0x81 and max_code("e2m1", True) == 0xF


@pytest.mark.parametrize("fmt", [Format.E3M2, Format.E2M3, Format.E2M1], ids=str)
def test_narrow_codes_must_fit(fmt):
    with pytest.raises(ValueError, match="low"):
        decode([1 << fmt.spec.bits], fmt)
    with pytest.raises(ValueError):
        check_codes([-1], fmt)
    with pytest.raises(ValueError, match="unknown element format"):
        decode([0], "e4m4")


# ---------------------------------------------------------------------------------------------
# encode
# ---------------------------------------------------------------------------------------------

def test_encode_shapes_and_scalars():
    assert encode(1.0, "e4m3").shape == ()
    assert encode(1.0, "e4m3") == 0x38
    out = encode(np.ones((2, 3, 4)), Format.E2M1)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4) and np.all(out == 2)


@pytest.mark.parametrize("saturate", [True, False], ids=["sat", "nonsat"])
@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_encode_representable_values_and_midpoints(fmt, saturate):
    v = finite_values(fmt)
    mids = (v[:-1] + v[1:]) / 2                        # exact in float32 (one more bit)
    m32 = mids.astype(np.float32)
    assert np.array_equal(m32.astype(np.float64), mids)
    near = np.concatenate([np.nextafter(m32, np.float32(np.inf)),
                           np.nextafter(m32, np.float32(-np.inf))])
    mx = np.float32(fmt.spec.max_value)
    step = np.float32(v[-1] - v[-2])
    edge = np.array([mx, mx + step / 2, mx + step, 2 * mx, 1e30, np.float32(3e38), np.inf],
                    np.float32)
    half_sub = np.float32(2.0 ** (fmt.spec.lsb_exp - 1))
    tiny = np.array([half_sub, np.nextafter(half_sub, np.float32(1)),
                     np.nextafter(half_sub, np.float32(0)), 1e-45, 0.0], np.float32)
    x = np.concatenate([v.astype(np.float32), m32, near, edge, -edge, tiny, -tiny])
    assert np.array_equal(encode(x, fmt, saturate), ref_encode(x, fmt, saturate))


@pytest.mark.parametrize("saturate", [True, False], ids=["sat", "nonsat"])
@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_encode_random_float32(fmt, saturate, seed):
    rng = np.random.default_rng(seed)
    n = 1 << 16
    b = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)   # every FP32 pattern
    # ... and values in the format's own range, including FP32 subnormals.
    lo, hi = fmt.spec.lsb_exp - 3, fmt.spec.emax + 3
    y = np.ldexp(rng.uniform(1, 2, n), rng.integers(lo, hi, n)) * rng.choice([-1, 1], n)
    sub = rng.integers(0, 1 << 23, 1024, dtype=np.uint32) | np.uint32(0x80000000) * \
        rng.integers(0, 2, 1024, dtype=np.uint32)
    x = np.concatenate([b.view(np.float32), y.astype(np.float32), sub.view(np.float32)])
    x = x[~np.isnan(x)]
    assert np.array_equal(encode(x, fmt, saturate), ref_encode(x, fmt, saturate))


@pytest.mark.parametrize("fmt", FP8, ids=str)
def test_encode_nan_fp8_matches_ml_dtypes(fmt):
    nans = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFFFFFFF, 0x7FBFFFFF], np.uint32)
    x = nans.view(np.float32)
    for saturate in (True, False):
        ours = encode(x, fmt, saturate)
        with np.errstate(invalid="ignore"):
            assert np.array_equal(ours, x.astype(ml_dtype(fmt)).view(np.uint8))
        assert list(ours) == [nan_code(fmt), nan_code(fmt, True), nan_code(fmt),
                              nan_code(fmt, True), nan_code(fmt)]


def test_encode_overflow_rules():
    inf = np.float32(np.inf)
    # Saturating: overflow and Inf clamp to +-max in every format.
    for fmt in FORMATS:
        assert list(encode([inf, -inf, 1e30, -1e30], fmt, True)) == \
            [max_code(fmt), max_code(fmt, True)] * 2
    # Non-saturating OFP8.
    assert list(encode([inf, -inf, 465.0, -1e9], "e4m3", False)) == [0x7F, 0xFF, 0x7F, 0xFF]
    assert list(encode([inf, -inf, 61440.0, -1e9], "e5m2", False)) == [0x7C, 0xFC, 0x7C, 0xFC]
    # 464 is the tie between 448 and 480 (not representable): to even, 448, no overflow.
    assert encode(464.0, "e4m3", False) == 0x7E
    assert encode(57344.0 + 4095.0, "e5m2", False) == 0x7B
    # Formats without Inf / NaN saturate in both modes.
    for fmt in NO_SPECIALS:
        assert list(encode([inf, -inf, 1e9], fmt, False)) == \
            [max_code(fmt), max_code(fmt, True), max_code(fmt)]


@pytest.mark.parametrize("fmt", NO_SPECIALS, ids=str)
def test_encode_nan_without_nan_code_is_zero(fmt):
    x = np.array([0x7FC00000, 0xFFC00000, 0x7F800001], np.uint32).view(np.float32)
    assert np.all(encode(x, fmt, True) == 0) and np.all(encode(x, fmt, False) == 0)


def test_encode_zero_signs_and_underflow():
    for fmt in FLOATS:
        sign = 1 << (fmt.spec.bits - 1)
        lsb = 2.0 ** fmt.spec.lsb_exp
        x = np.array([0.0, -0.0, lsb / 2, -lsb / 2, lsb * 0.75, -lsb * 0.75, lsb * 1.5,
                      -1e-45], np.float32)
        assert list(encode(x, fmt)) == [0, sign, 0, sign, 1, sign | 1, 2, sign]
    # INT8 has no -0.
    assert list(encode([-0.0, -1 / 128, -1e-30], "int8")) == [0, 0, 0]


def test_encode_int8_rules():
    q = 1 / 64
    x = [-2.0, 2.0, 127 * q, -128 * q, 0.5 * q, 1.5 * q, 2.5 * q, -0.5 * q, -1.5 * q, 126.5 * q,
         127.5 * q]
    assert list(encode(x, "int8")) == [0x81, 0x7F, 0x7F, 0x81, 0, 2, 2, 0, 0xFE, 0x7E, 0x7F]
    assert list(encode(x, "int8", saturate=False)) == list(encode(x, "int8"))


def test_encode_fp4_table():
    x = [0.0, 0.25, 0.26, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 5.1, 7.0, -7.0, -0.1]
    assert list(encode(x, "e2m1")) == [0, 0, 1, 2, 2, 4, 4, 6, 6, 7, 7, 15, 8]


# ---------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("saturate", [True, False], ids=["sat", "nonsat"])
@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_round_trip(fmt, saturate):
    c = all_codes(fmt)
    d = decode(c, fmt)
    e = encode(d, fmt, saturate)
    expected = c.copy()
    if fmt is Format.INT8:
        expected[0x80] = 0x81                  # -2.0 saturates symmetrically to -127/64
    if fmt is Format.E5M2 and saturate:
        expected[[0x7C, 0xFC]] = [0x7B, 0xFB]  # +-Inf saturate to +-max
    nan = np.isnan(d)
    expected[nan] = np.where(c[nan] & 0x80, nan_code(fmt, True) or 0, nan_code(fmt) or 0)
    assert np.array_equal(e, expected)
    same = (expected == c) & ~nan             # everything but the cases above and NaN
    assert np.array_equal(bits32(decode(e, fmt))[same], bits32(d)[same])


@pytest.mark.slow
@pytest.mark.parametrize("saturate", [True, False], ids=["sat", "nonsat"])
@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_encode_many_random_float32(fmt, saturate, seed):
    rng = np.random.default_rng(seed)
    for _ in range(8):
        b = rng.integers(0, 1 << 32, 1 << 21, dtype=np.uint64).astype(np.uint32)
        # Concentrate half of the patterns in the format's exponent range.
        e = rng.integers(127 + fmt.spec.lsb_exp - 3, 127 + fmt.spec.emax + 3, b.size >> 1)
        b[: b.size >> 1] = (b[: b.size >> 1] & np.uint32(0x807FFFFF)) | (e.astype(np.uint32) << 23)
        x = b.view(np.float32)
        x = x[~np.isnan(x)]
        assert np.array_equal(encode(x, fmt, saturate), ref_encode(x, fmt, saturate))
