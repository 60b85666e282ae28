"""Element codes of the MX formats: decode to FP32 and encode (round) from FP32.

This is the lowest layer of the golden model, the one the hardware's element decoders and the
host-side quantiser implement. All rounding here is done with exact integer arithmetic on the bits
of the FP32 input: there is no float arithmetic that could round twice.

Codes are ``uint8`` arrays holding one element per byte. FP6 and FP4 codes occupy the low 6 / 4
bits of the byte; a code with any higher bit set is rejected with :class:`ValueError`.

Rules (see docs/numerics.md for the full specification):

* Rounding is to nearest, ties to even, on the exact value of the FP32 input.
  Exactly half the minimum subnormal rounds to (signed) zero.
* Saturating mode (``saturate=True``, the MX default): a finite value whose rounded magnitude
  exceeds the format's maximum, and +-Inf, become +-max.
* Non-saturating mode (OFP8, ``saturate=False``): overflow and +-Inf become NaN for E4M3 and
  +-Inf for E5M2. Formats without Inf / NaN (E3M2, E2M3, E2M1, INT8) saturate in both modes.
* NaN input: the canonical NaN code with the input's sign bit: E4M3 ``0x7F`` / ``0xFF``,
  E5M2 ``0x7E`` / ``0xFE`` (the codes ml_dtypes produces). Formats without NaN encode NaN as code
  0 (+0): a defined answer, not a meaningful one.
* Zero keeps its sign in the float formats (-0.0 encodes to the sign bit alone; a negative value
  that rounds to zero gives -0). INT8 has no -0: every zero is code 0.
* MXINT8: code ``c`` means ``int8(c) / 64``; code 0x80 decodes to -2.0. Encoding rounds
  ``x * 64`` to nearest even and saturates symmetrically to +-127 (so -2.0 encodes to 0x81).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cache

import numpy as np

from .formats import Format

__all__ = [
    "encode", "decode", "element_value_int", "element_sign", "element_fraction", "nan_code",
    "inf_code", "max_code", "check_codes", "codes_table",
]


@dataclass(frozen=True)
class _Table:
    """Per-format lookup tables over all ``2**bits`` codes."""
    value_int: np.ndarray    # int64: exact value / 2**lsb_exp (0 for NaN / Inf codes)
    nan: np.ndarray          # bool
    inf: np.ndarray          # bool
    sign: np.ndarray         # bool: the sign bit (bit bits-1) of the code
    as_float32: np.ndarray   # float32 decoded value
    pos_values: np.ndarray   # int64, sorted value_int of the non-negative finite codes
    pos_codes: np.ndarray    # uint8, the codes matching pos_values
    max_int: int             # value_int of the largest finite value
    max_code: int            # its (positive) code


def _decode_one(code: int, fmt: Format) -> tuple[int, bool, bool]:
    """(value / 2**lsb_exp, is_nan, is_inf) of one code, by the format's definition."""
    spec = fmt.spec
    if fmt is Format.INT8:
        return (code - 256 if code >= 128 else code), False, False
    sign = code >> (spec.bits - 1)
    e = (code >> spec.mbits) & ((1 << spec.ebits) - 1)
    m = code & ((1 << spec.mbits) - 1)
    emask = (1 << spec.ebits) - 1
    if fmt is Format.E5M2 and e == emask:
        return 0, m != 0, m == 0
    if fmt is Format.E4M3 and e == emask and m == (1 << spec.mbits) - 1:
        return 0, True, False
    mag = m if e == 0 else ((1 << spec.mbits) | m) << (e - 1)
    return (-mag if sign else mag), False, False


@cache
def codes_table(fmt: Format) -> _Table:
    """The lookup tables of ``fmt`` (internal, but stable: benches may use it)."""
    fmt = Format.of(fmt)
    spec = fmt.spec
    n = spec.codes
    vi = np.zeros(n, np.int64)
    nan = np.zeros(n, bool)
    inf = np.zeros(n, bool)
    for c in range(n):
        vi[c], nan[c], inf[c] = _decode_one(c, fmt)
    sign = (np.arange(n) >> (spec.bits - 1)).astype(bool)
    f = np.ldexp(vi.astype(np.float64), spec.lsb_exp)
    if fmt is not Format.INT8:
        f = np.where(sign & (vi == 0), -0.0, f)    # sign-bit-only codes are -0
    f[nan] = np.where(sign[nan], -np.nan, np.nan)   # quiet NaN with the code's sign
    f[inf] = np.where(sign[inf], -np.inf, np.inf)
    # Non-negative finite codes (for a float format: sign bit clear; for INT8: value >= 0).
    if fmt is Format.INT8:
        pos = np.arange(128)
    else:
        pos = np.array([c for c in range(n >> 1) if not nan[c] and not inf[c]])
    order = np.argsort(vi[pos], kind="stable")
    pos_values = vi[pos][order]
    pos_codes = pos[order].astype(np.uint8)
    assert np.all(np.diff(pos_values) > 0), "finite codes must have distinct values"
    max_int = int(pos_values[-1])
    if spec.max_value != Fraction(max_int) * Fraction(2) ** spec.lsb_exp:
        raise AssertionError(f"{fmt}: decoded max disagrees with FormatSpec.max_value")
    return _Table(vi, nan, inf, sign, f.astype(np.float32), pos_values, pos_codes, max_int,
                  int(pos_codes[-1]))


def check_codes(codes, fmt: Format | str) -> np.ndarray:
    """Return ``codes`` as a ``uint8`` array after checking every code fits ``fmt``'s width.

    Raises :class:`ValueError` for a code with a bit set above the format's ``bits``, or for
    values outside 0..255.
    """
    fmt = Format.of(fmt)
    arr = np.asarray(codes)
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(f"{fmt} codes must be in 0..255")
        arr = arr.astype(np.uint8)
    bits = fmt.spec.bits
    if bits < 8 and arr.size and int(arr.max()) >> bits:
        raise ValueError(f"{fmt} codes occupy the low {bits} bits; got code "
                         f"{int(arr.max()):#04x}")
    return arr


def nan_code(fmt: Format | str, negative: bool = False) -> int | None:
    """The canonical NaN code of ``fmt`` (``None`` if the format has no NaN)."""
    fmt = Format.of(fmt)
    base = {Format.E4M3: 0x7F, Format.E5M2: 0x7E}.get(fmt)
    if base is None:
        return None
    return base | (0x80 if negative else 0)


def inf_code(fmt: Format | str, negative: bool = False) -> int | None:
    """The Inf code of ``fmt`` (``None`` if the format has no Inf)."""
    fmt = Format.of(fmt)
    if fmt is not Format.E5M2:
        return None
    return 0x7C | (0x80 if negative else 0)


def max_code(fmt: Format | str, negative: bool = False) -> int:
    """The code of +max (or -max) of ``fmt``."""
    fmt = Format.of(fmt)
    t = codes_table(fmt)
    if not negative:
        return t.max_code
    if fmt is Format.INT8:
        return (-t.max_code) & 0xFF
    return t.max_code | (1 << (fmt.spec.bits - 1))


def decode(codes, fmt: Format | str) -> np.ndarray:
    """Decode element codes to their exact values as ``float32`` (same shape).

    Every value of every format is exactly representable in FP32. NaN codes decode to the quiet
    FP32 NaN with the code's sign (``0x7FC00000`` / ``0xFFC00000``), E5M2 Inf codes to +-Inf,
    sign-bit-only codes to -0.0.
    """
    fmt = Format.of(fmt)
    arr = check_codes(codes, fmt)
    return codes_table(fmt).as_float32[arr]


def element_value_int(codes, fmt: Format | str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact integer values of element codes: ``(value_int, nan, inf)``.

    ``value_int`` (int64) is the signed value divided by ``2 ** fmt.spec.lsb_exp``: the exact
    integer the hardware's element decoder produces. It is 0 for NaN and Inf codes, which are
    flagged in the boolean masks ``nan`` and ``inf`` (the sign of an Inf is
    :func:`element_sign`). The sign of a zero is lost here; it is also in :func:`element_sign`.
    """
    fmt = Format.of(fmt)
    arr = check_codes(codes, fmt)
    t = codes_table(fmt)
    return t.value_int[arr], t.nan[arr], t.inf[arr]


def element_sign(codes, fmt: Format | str) -> np.ndarray:
    """The sign of each element (bool): the top bit of its ``bits``-wide code.

    For the float formats this is the sign bit (so -0 is negative). For INT8 it is the two's
    complement sign: negative values are negative, and the only zero, code 0, is positive.
    """
    fmt = Format.of(fmt)
    arr = check_codes(codes, fmt)
    return codes_table(fmt).sign[arr]


def element_fraction(code: int, fmt: Format | str) -> Fraction:
    """The exact value of one finite code as a :class:`~fractions.Fraction` (for references)."""
    fmt = Format.of(fmt)
    v, nan, inf = _decode_one(int(code), fmt)
    if nan or inf:
        raise ValueError(f"{fmt} code {int(code):#04x} is not finite")
    return Fraction(v) * Fraction(2) ** fmt.spec.lsb_exp


def _bitlen24(m: np.ndarray) -> np.ndarray:
    """Bit length of non-negative integers below 2**53 (exact: frexp of an exact float64)."""
    return np.frexp(m.astype(np.float64))[1].astype(np.int64)


def _encode_bits(bits: np.ndarray, fmt: Format, saturate: bool,
                 scale_exp: np.ndarray | int = 0) -> np.ndarray:
    """Codes of ``float32(bits) / 2**scale_exp`` (exact value, rounded once). Internal kernel.

    ``bits`` is a uint32 array of FP32 bit patterns; ``scale_exp`` broadcasts against it.
    """
    spec = fmt.spec
    t = codes_table(fmt)
    bits = bits.astype(np.int64)
    sign = (bits >> 31).astype(bool)
    expf = (bits >> 23) & 0xFF
    frac = bits & 0x7FFFFF
    is_nan = (expf == 0xFF) & (frac != 0)
    is_inf = (expf == 0xFF) & (frac == 0)
    finite = expf != 0xFF
    # |x| = M * 2**E exactly, M < 2**24.
    M = np.where(expf == 0, frac, frac | 0x800000)
    M = np.where(finite, M, 0)
    E = np.where(expf == 0, -149, expf - 150) - np.asarray(scale_exp, np.int64)
    E = np.broadcast_to(E, M.shape)
    nz = M != 0
    L = _bitlen24(M)
    top = E + L - 1                                   # floor(log2 |x|) where x != 0
    if fmt is Format.INT8:
        q = np.full(M.shape, spec.lsb_exp, np.int64)  # fixed point, quantum 2**-6
        over_pre = nz & (top >= 1)                    # |x| >= 2 cannot round below 128/64
    else:
        q = np.maximum(top - spec.mbits, spec.lsb_exp)
        over_pre = nz & (top > spec.emax)
    ok = nz & ~over_pre
    shift = np.where(ok, q - E, 0)
    # For ok lanes -shift <= 8 (left shifts stay small); right shifts >= 26 round to zero.
    rs = np.clip(shift, 0, 40)
    ls = np.clip(-shift, 0, 8)
    n_trunc = M >> rs
    rem = M & ((np.int64(1) << rs) - 1)
    half = np.where(rs > 0, np.int64(1) << np.maximum(rs - 1, 0), 0)
    up = (rs > 0) & ((rem > half) | ((rem == half) & ((n_trunc & 1) == 1)))
    n = np.where(shift > 0, n_trunc + up, M << ls)
    n = np.where(ok, n, 0)
    qs = np.clip(q - spec.lsb_exp, 0, 40)
    V = np.where(ok, n << qs, 0)                      # |rounded value| / 2**lsb_exp
    overflow = over_pre | (ok & (V > t.max_int))
    V = np.where(overflow, 0, V)

    # Finite in-range result -> code.
    if fmt is Format.INT8:
        codes = np.where(sign, (-V) & 0xFF, V)
    else:
        idx = np.searchsorted(t.pos_values, V)
        idx = np.minimum(idx, len(t.pos_values) - 1)
        assert np.all(t.pos_values[idx] == V), "rounded value not representable"
        codes = t.pos_codes[idx].astype(np.int64) | (sign.astype(np.int64) << (spec.bits - 1))

    # Overflow and Inf.
    sat_pos, sat_neg = max_code(fmt), max_code(fmt, True)
    sat = np.where(sign, sat_neg, sat_pos)
    big = overflow | is_inf
    if saturate or not spec.has_nan:
        big_code = sat
    elif spec.has_inf:
        big_code = np.where(sign, inf_code(fmt, True), inf_code(fmt))
    else:
        big_code = np.where(sign, nan_code(fmt, True), nan_code(fmt))
    codes = np.where(big, big_code, codes)

    # NaN.
    if spec.has_nan:
        nanc = np.where(sign, nan_code(fmt, True), nan_code(fmt))
    else:
        nanc = 0
    codes = np.where(is_nan, nanc, codes)
    return codes.astype(np.uint8)


def encode(values, fmt: Format | str, saturate: bool = True) -> np.ndarray:
    """Round FP32 values to element codes of ``fmt`` (``uint8``, same shape).

    ``values`` is converted to ``float32`` first (the inputs of the chip are FP32); the exact FP32
    value is then rounded once, to nearest even, with the overflow, Inf and NaN rules of the module
    docstring. ``saturate`` selects the MX saturating mode (default) or the OFP8 non-saturating
    mode.
    """
    fmt = Format.of(fmt)
    x = np.asarray(values, dtype=np.float32)
    return _encode_bits(x.view(np.uint32), fmt, saturate)
