"""Golden model, MX layer: the E8M0 scale rule, quantize_mx and dequantize.

References here are written independently of the model: scales from ``math.frexp`` of the block
maximum, elements from :func:`encode` of the exactly scaled values, dequantised values from
float64 products rounded once by the host's IEEE float64 -> float32 conversion.
"""

import math

import numpy as np
import pytest

from openmaia.numerics import (BLOCK_SIZE, CANONICAL_NAN, E8M0_NAN, Format, MXTensor, decode,
                               dequantize, encode, max_code, quantize_mx, scale_codes,
                               shared_exponent)

FORMATS = list(Format)


def ref_scale_code(amax: float, fmt: Format) -> int:
    """Independent scale rule: floor(log2 amax) via frexp; 0 for zero / FP32-subnormal amax."""
    if not math.isfinite(amax):
        return E8M0_NAN
    if amax < 2.0 ** -126:
        return 0
    e = math.frexp(amax)[1] - 1
    return min(max(e - fmt.spec.emax, -127), 127) + 127


def ref_elements(x: np.ndarray, shared: np.ndarray, fmt: Format, saturate: bool) -> np.ndarray:
    """encode() of x / 2**shared. The float64 quotient is exact; the cast to float32 is exact
    unless the quotient is below 2**-126, far below half the smallest element subnormal
    (2**-17), where any rounding still gives a signed zero code."""
    y = np.ldexp(x.astype(np.float64), -shared)
    with np.errstate(over="ignore", under="ignore"):
        return encode(y.astype(np.float32), fmt, saturate)


def ref_dequantize(t: MXTensor) -> np.ndarray:
    d = decode(t.codes, t.fmt).astype(np.float64)
    s = t.expanded_scales().astype(np.int64)
    with np.errstate(over="ignore", invalid="ignore"):
        v = np.ldexp(d, s - 127)          # exact in float64
        v = np.where(s == E8M0_NAN, np.nan, v)
        return v.astype(np.float32)       # one IEEE rounding


def bits32(x):
    return np.asarray(x, np.float32).view(np.uint32)


# ---------------------------------------------------------------------------------------------
# Scale rule
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_scale_rule_every_binade(fmt):
    """amax = 2**e, the float just below and just above, for every FP32 normal exponent."""
    e = np.arange(1, 255, dtype=np.uint32)
    b = np.concatenate([e << 23, (e << 23) - 1, (e << 23) + 1, (e << 23) | 0x7FFFFF])
    amax = b.view(np.float32)
    rng = np.random.default_rng(len(fmt.value))
    x = np.zeros((amax.size, BLOCK_SIZE), np.float32)
    x[:, 0] = amax * np.where(np.arange(amax.size) % 2, -1, 1)       # sign does not matter
    # Smaller companions in the block must not change the scale.
    x[:, 1:] = amax[:, None] * rng.uniform(-1, 1, (amax.size, BLOCK_SIZE - 1))
    t = quantize_mx(x, fmt)
    expected = np.array([ref_scale_code(float(a), fmt) for a in amax], np.uint8)
    assert t.scales.shape == (amax.size, 1)
    assert np.array_equal(t.scales[:, 0], expected)
    assert np.array_equal(scale_codes(x, fmt)[:, 0], expected)
    assert np.array_equal(shared_exponent(b, fmt) + 127, expected)
    shared = t.scales.astype(np.int64) - 127
    assert np.array_equal(t.codes, ref_elements(x, shared, fmt, True))


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_scale_rule_zero_and_subnormal_blocks(fmt):
    x = np.zeros((4, BLOCK_SIZE), np.float32)
    x[1, :] = -0.0
    x[2, 5] = np.float32(1e-45)                        # min subnormal
    x[3, :3] = np.array([0x007FFFFF, 0x80400000, 1], np.uint32).view(np.float32)
    t = quantize_mx(x, fmt)
    assert np.all(t.scales == 0)
    assert np.all(t.codes[0] == 0)
    neg_zero = 0 if fmt is Format.INT8 else 1 << (fmt.spec.bits - 1)
    assert np.all(t.codes[1] == neg_zero)
    # Subnormal blocks use scale 2**-127: elements are x * 2**127 (< 2), rounded.
    assert np.array_equal(t.codes, ref_elements(x, np.full((4, 1), -127), fmt, True))
    assert bits32(dequantize(t))[1, 0] == (0 if fmt is Format.INT8 else 0x80000000)


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_special_blocks(fmt):
    x = np.ones((3, 2 * BLOCK_SIZE), np.float32)
    x[0, 3] = np.inf
    x[1, 40] = -np.inf
    x[2, 0] = np.nan
    x[2, 63] = np.array(0xFF800001, np.uint32).view(np.float32)   # a signalling -NaN
    t = quantize_mx(x, fmt)
    assert t.scales.tolist() == [[E8M0_NAN, ref_scale_code(1.0, fmt)],
                                 [ref_scale_code(1.0, fmt), E8M0_NAN], [E8M0_NAN, E8M0_NAN]]
    special = np.repeat(t.scales == E8M0_NAN, BLOCK_SIZE, axis=1)
    assert np.all(t.codes[special] == 0)
    assert np.all(t.codes[~special] == encode(2.0 ** fmt.spec.emax, fmt))
    d = dequantize(t)
    assert np.all(bits32(d)[special] == CANONICAL_NAN)
    assert np.all(d[~special] == 1.0)


def test_fp4_example_amax_7():
    x = np.zeros(BLOCK_SIZE, np.float32)
    x[:3] = [7.0, -7.0, 3.0]
    t = quantize_mx(x, "e2m1")
    assert t.scales.tolist() == [127]                  # floor(log2 7) - 2 = 0 -> 2**0
    assert t.codes[:3].tolist() == [0x7, 0xF, 0x5]     # 7 saturates to 6; 3 is exact
    assert dequantize(t)[:3].tolist() == [6.0, -6.0, 3.0]


def test_nonsaturating_quantize():
    x = np.zeros(BLOCK_SIZE, np.float32)
    x[:3] = [500.0, -500.0, 464.0]                     # scale 2**0; 500 rounds to 512 > 448
    t = quantize_mx(x, "e4m3", saturate=False)
    assert t.scales.tolist() == [127]
    assert t.codes[:3].tolist() == [0x7F, 0xFF, 0x7E]  # NaN, -NaN, 448 (464: tie to even)
    assert quantize_mx(x, "e4m3").codes[:3].tolist() == [0x7E, 0xFE, 0x7E]
    y = x.copy()
    y[:3] = [63000.0, 1.0, -60000.0]                   # E5M2: 63000 rounds to 65536
    t = quantize_mx(y, "e5m2", saturate=False)
    assert t.codes[[0, 2]].tolist() == [0x7C, 0xFB]
    assert quantize_mx(y, "e5m2").codes[0] == max_code("e5m2")


def test_partial_last_block_and_axes():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 70)).astype(np.float32)
    x[:, 64:] *= 1000                                  # the last 6-element block has its own scale
    t = quantize_mx(x, "e4m3", axis=1)
    assert t.codes.shape == (5, 70) and t.scales.shape == (5, 3) and t.axis == 1
    assert t.shape == (5, 70) and t.block == 32 and t.fmt is Format.E4M3 and t.nblocks == 3
    for j, sl in enumerate([slice(0, 32), slice(32, 64), slice(64, 70)]):
        ref = [ref_scale_code(float(np.abs(r).max()), Format.E4M3) for r in x[:, sl]]
        assert t.scales[:, j].tolist() == ref
    t0 = quantize_mx(x.T, "e4m3", axis=0)
    assert t0.axis == 0 and t0.scales.shape == (3, 5)
    assert np.array_equal(t0.codes, t.codes.T) and np.array_equal(t0.scales, t.scales.T)
    t3 = quantize_mx(x.reshape(5, 70, 1), "e4m3", axis=-2)
    assert t3.axis == 1 and t3.scales.shape == (5, 3, 1)
    assert np.array_equal(t3.codes[..., 0], t.codes)
    t16 = quantize_mx(x, "e4m3", block=16)
    assert t16.scales.shape == (5, 5) and t16.block == 16


@pytest.mark.parametrize("saturate", [True, False], ids=["sat", "nonsat"])
@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_quantize_random_against_reference(fmt, saturate, seed):
    rng = np.random.default_rng(seed)
    rows, n = 64, 100
    # Per-row magnitudes over the whole FP32 range, wide spread inside blocks.
    mag = np.ldexp(1.0, rng.integers(-150, 127, (rows, 1)))
    x = (rng.standard_normal((rows, n)) * np.ldexp(1.0, rng.integers(-20, 1, (rows, n))) * mag)
    with np.errstate(over="ignore", under="ignore"):
        x = x.astype(np.float32)
    x[~np.isfinite(x)] = 0
    t = quantize_mx(x, fmt, saturate=saturate)
    nb = -(-n // BLOCK_SIZE)
    ref_scales = np.array([[ref_scale_code(float(np.abs(x[r, j * 32:(j + 1) * 32]).max()), fmt)
                            for j in range(nb)] for r in range(rows)], np.uint8)
    assert np.array_equal(t.scales, ref_scales)
    shared = t.expanded_scales().astype(np.int64) - 127
    assert np.array_equal(t.codes, ref_elements(x, shared, fmt, saturate))
    d = dequantize(t)
    r = ref_dequantize(t)
    assert np.array_equal(np.isnan(d), np.isnan(r))
    assert np.array_equal(bits32(d)[~np.isnan(r)], bits32(r)[~np.isnan(r)])


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_dequantize_every_code_and_extreme_scales(fmt):
    """Every code under scales 0, 1, 100, 127, 200, 254, 255: subnormal and overflowing results."""
    codes = np.arange(fmt.spec.codes, dtype=np.uint8)
    scales = np.array([0, 1, 100, 127, 200, 254, 255], np.uint8)
    for s in scales:
        t = MXTensor(codes=codes, scales=np.full(-(-codes.size // 32), s, np.uint8), fmt=fmt,
                     axis=0, shape=codes.shape)
        d, r = dequantize(t), ref_dequantize(t)
        nan = np.isnan(r)
        assert np.array_equal(np.isnan(d), nan)
        assert np.all(bits32(d)[nan] == CANONICAL_NAN)
        assert np.array_equal(bits32(d)[~nan], bits32(r)[~nan])
    # Overflow: E5M2 max * 2**127 is above FP32 max.
    if fmt is Format.E5M2:
        t = MXTensor(codes=np.array([0x7B, 0xFB], np.uint8), scales=[254], fmt=fmt, axis=0,
                     shape=(2,))
        assert dequantize(t).tolist() == [np.inf, -np.inf]


def test_quantize_dequantize_round_trip_exact_values():
    """Values already on the MX grid survive quantize -> dequantize exactly, except two cases the
    scale rule cannot reproduce: an E4M3 amax with significand 1.875 (its binade's top value is the
    NaN code, so it saturates to 1.75) and the INT8 value -2.0 (code 0x80: its exponent 1 makes the
    scale twice as coarse)."""
    rng = np.random.default_rng(3)
    for fmt in FORMATS:
        codes = rng.integers(0, fmt.spec.codes, (8, 64)).astype(np.uint8)
        d = decode(codes, fmt)
        codes[~np.isfinite(d)] = 0
        if fmt is Format.E4M3:
            codes[(codes & 7) == 7] &= 0xFE
        if fmt is Format.INT8:
            codes[codes == 0x80] = 0x81
        scales = rng.integers(90, 160, (8, 2)).astype(np.uint8)
        t = MXTensor(codes=codes, scales=scales, fmt=fmt, axis=1, shape=codes.shape)
        x = dequantize(t)
        back = dequantize(quantize_mx(x, fmt))
        assert np.array_equal(back, x)
    # The exceptions.
    x = np.zeros(BLOCK_SIZE, np.float32)
    x[0] = 240.0                                       # 1.875 * 2**7: scale 2**-1, 480 -> 448
    assert dequantize(quantize_mx(x, "e4m3"))[0] == 224.0
    x[:2] = [-2.0, 3 / 64]                             # scale 2**1: 3/64 -> 1.5/64 -> 2/64
    assert dequantize(quantize_mx(x, "int8"))[:2].tolist() == [-2.0, 4 / 64]


def test_mxtensor_validation():
    good = dict(codes=np.zeros((2, 40), np.uint8), scales=np.zeros((2, 2), np.uint8), fmt="e2m1",
                axis=1, shape=(2, 40))
    t = MXTensor(**good)
    assert t.fmt is Format.E2M1 and t.scales_shape == (2, 2)
    with pytest.raises(ValueError, match="scales shape"):
        MXTensor(**{**good, "scales": np.zeros((2, 1), np.uint8)})
    with pytest.raises(ValueError, match="codes shape"):
        MXTensor(**{**good, "shape": (2, 41)})
    with pytest.raises(ValueError, match="axis"):
        MXTensor(**{**good, "axis": 2})
    with pytest.raises(ValueError, match="low 4 bits"):
        MXTensor(**{**good, "codes": np.full((2, 40), 0x10, np.uint8)})
    with pytest.raises(ValueError, match="axis"):
        quantize_mx(np.zeros((2, 3)), "e4m3", axis=2)
    with pytest.raises(Exception):
        t.axis = 0                                    # frozen
