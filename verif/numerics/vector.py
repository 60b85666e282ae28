"""Lane arithmetic of the Tile Vector Processor (TVP): the bit-exact golden model.

Every function takes and returns FP32 bit patterns (anything converting to ``uint32``;
arrays broadcast; a scalar in gives an ``np.uint32`` out), except :func:`fp32_to_bf16` /
:func:`bf16_to_fp32`, whose BF16 side is ``uint16``. Everything is integer arithmetic on the bits,
as in :mod:`.dot`: no result depends on the host's floating-point unit. The rules (prose in
docs/tvp.md, numerics section):

* :func:`fp32_add` (``add``, ``bias_add``) and :func:`fp32_mul` (``mul``, ``scale``): IEEE 754
  binary32, round to nearest even, subnormal operands and results kept (no flush to zero),
  overflow to +-Inf. Any NaN operand, ``Inf - Inf`` and ``0 * Inf`` give NaN, and every NaN result
  is :data:`~.dot.CANONICAL_NAN` (``0x7FC00000``). ``x + (-x)`` is +0, ``(-0) + (-0)`` is -0; a
  product's sign (also of a zero or an underflow to zero) is the XOR of the operands' signs.
* :func:`fp32_max`: the larger operand, with -0 < +0 (``max(-0, +0) = +0`` in either order);
  a NaN operand gives the canonical NaN (IEEE 754-2019 ``maximum``). Otherwise the result is one
  of the operands, bit for bit.
* :func:`relu`: ``fp32_max(x, +0)``: negative values and -0 give +0, NaN gives the canonical
  NaN, -Inf gives +0.
* :func:`fp32_to_bf16`: round to nearest even on the 16 dropped bits (BF16 has FP32's exponent
  range, so subnormals round the same way and only the top binade overflows, to +-Inf); every
  NaN gives ``0x7FC0`` (canonical, positive). Equals ``ml_dtypes.bfloat16`` on every non-NaN
  input. :func:`bf16_to_fp32`: exact (the 16 bits move to the top); a NaN gives the canonical NaN.
* :func:`gelu`: ``x * Phi(x)`` with the normal CDF ``Phi`` from a table of cubic pieces of its
  tail ``Q(a) = Phi(-a)``, ``a = |x|``, evaluated as a fixed sequence of FP32 operations
  (:func:`gelu` documents it); every operation is one of the above.
"""

from __future__ import annotations

import enum

import numpy as np

from .dot import CANONICAL_NAN, FP32_NEG_INF, FP32_NEG_ZERO, fp32_add, round_to_fp32_array

__all__ = [
    "VectorOp", "BF16_CANONICAL_NAN", "FP32_ONE", "GELU_STEPS", "GELU_SEGMENTS", "GELU_TOP",
    "GELU_TABLE", "fp32_add", "fp32_mul", "fp32_max", "relu", "scale", "bias_add",
    "fp32_to_bf16", "bf16_to_fp32", "gelu_segment", "gelu", "apply",
]

#: The one BF16 NaN :func:`fp32_to_bf16` produces (the top half of ``CANONICAL_NAN``).
BF16_CANONICAL_NAN = CANONICAL_NAN >> 16
#: FP32 bits of 1.0.
FP32_ONE = 0x3F800000
_ABS = 0x7FFFFFFF
_SIGN = 0x80000000


class VectorOp(enum.IntEnum):
    """A lane operation and its 3-bit hardware code (``b`` is ignored where not listed).

    ``ADD``: ``a + b`` (also bias add); ``MUL``: ``a * b`` (also scale, ``b`` the scalar);
    ``MAX``: ``max(a, b)``; ``RELU``: ``max(a, +0)``; ``GELU``: :func:`gelu` of ``a``;
    ``TO_BF16``: :func:`fp32_to_bf16` of ``a`` in the low 16 bits, the high 16 bits 0;
    ``FROM_BF16``: :func:`bf16_to_fp32` of the low 16 bits of ``a``. Code 7 is undefined.
    """
    ADD = 0
    MUL = 1
    MAX = 2
    RELU = 3
    GELU = 4
    TO_BF16 = 5
    FROM_BF16 = 6


def _u64(bits) -> np.ndarray:
    return np.asarray(bits).astype(np.uint32).astype(np.int64)


def _out(value, scalar: bool):
    value = np.asarray(value).astype(np.uint32)
    return np.uint32(value) if scalar else value


def _is_nan(x: np.ndarray) -> np.ndarray:
    return (x & _ABS) > 0x7F800000


def fp32_mul(a_bits, b_bits):
    """IEEE 754 binary32 product ``a * b``, round to nearest even (module docstring rules).

    The exact product of the two 24-bit significands is rounded once
    (:func:`~.dot.round_to_fp32_array`): gradual underflow, a nonzero product that rounds to zero
    gives a zero of the product's sign, overflow gives +-Inf. ``0 * Inf`` and NaN operands give
    :data:`~.dot.CANONICAL_NAN`; ``Inf * x`` (``x`` nonzero) gives the signed Inf.
    """
    a, b = np.broadcast_arrays(_u64(a_bits), _u64(b_bits))
    scalar = a.ndim == 0
    sign = ((a ^ b) >> 31) & 1
    ea, eb = (a >> 23) & 0xFF, (b >> 23) & 0xFF
    fa, fb = a & 0x7FFFFF, b & 0x7FFFFF
    nan_a, nan_b = (ea == 0xFF) & (fa != 0), (eb == 0xFF) & (fb != 0)
    inf_a, inf_b = (ea == 0xFF) & (fa == 0), (eb == 0xFF) & (fb == 0)
    zero_a, zero_b = (a & _ABS) == 0, (b & _ABS) == 0
    nan = nan_a | nan_b | (inf_a & zero_b) | (zero_a & inf_b)
    inf = (inf_a | inf_b) & ~nan
    finite = ~(nan | inf)
    ma = np.where(ea == 0, fa, fa | 0x800000)
    mb = np.where(eb == 0, fb, fb | 0x800000)
    product = np.where(finite, ma * mb, 0)                 # < 2**48
    exp2 = np.maximum(ea, 1) + np.maximum(eb, 1) - 300
    bits = round_to_fp32_array(product, exp2).astype(np.int64) | (sign << 31)
    bits = np.where(inf, 0x7F800000 | (sign << 31), bits)
    bits = np.where(nan, CANONICAL_NAN, bits)
    return _out(bits, scalar)


def _order_key(x: np.ndarray) -> np.ndarray:
    """A signed integer that orders FP32 values, with -0 just below +0 (NaN excluded)."""
    return np.where(x >> 31 == 1, -(x & _ABS) - 1, x)


def fp32_max(a_bits, b_bits):
    """The larger of ``a`` and ``b``; -0 < +0; a NaN operand gives the canonical NaN."""
    a, b = np.broadcast_arrays(_u64(a_bits), _u64(b_bits))
    out = np.where(_order_key(a) >= _order_key(b), a, b)
    out = np.where(_is_nan(a) | _is_nan(b), CANONICAL_NAN, out)
    return _out(out, a.ndim == 0)


def relu(x_bits):
    """``fp32_max(x, +0)``: +0 for negatives, -0 and -Inf; the canonical NaN for NaN."""
    return fp32_max(x_bits, 0)


def scale(x_bits, s_bits):
    """``x * s`` (``s`` an FP32 scalar or a broadcasting array): :func:`fp32_mul`."""
    return fp32_mul(x_bits, s_bits)


def bias_add(x_bits, b_bits):
    """``x + b``: :func:`~.dot.fp32_add`."""
    return fp32_add(x_bits, b_bits)


def fp32_to_bf16(x_bits):
    """BF16 bits (``uint16``) of FP32 ``x``: round to nearest even, NaN -> ``0x7FC0``."""
    x = _u64(x_bits)
    rounded = (x + 0x7FFF + ((x >> 16) & 1)) >> 16
    out = np.where(_is_nan(x), BF16_CANONICAL_NAN, rounded).astype(np.uint16)
    return np.uint16(out) if x.ndim == 0 else out


def bf16_to_fp32(h_bits):
    """FP32 bits of BF16 ``h`` (exact); a NaN gives the canonical NaN."""
    h = np.asarray(h_bits).astype(np.uint16).astype(np.int64)
    x = h << 16
    return _out(np.where(_is_nan(x), CANONICAL_NAN, x), h.ndim == 0)


# --------------------------------------------------------------------------------------------
# GELU
# --------------------------------------------------------------------------------------------

#: Table pieces per unit of |x|: piece ``k`` covers ``[k / GELU_STEPS, (k + 1) / GELU_STEPS)``.
GELU_STEPS = 8
#: Pieces in the table; ``|x| >= GELU_TOP`` (and NaN) selects piece ``GELU_SEGMENTS`` (all 0).
GELU_SEGMENTS = 64
GELU_TOP = GELU_SEGMENTS // GELU_STEPS
_STEP_BITS = GELU_STEPS.bit_length() - 1
#: FP32 bits of ``(c0, c1, c2, c3)`` per piece: ``Q(k / 8 + t) ~ c0 + t (c1 + t (c2 + t c3))``,
#: fitted (relative least squares on Chebyshev nodes, c0 of piece 0 fixed to 0.5) to
#: ``Q(a) = Phi(-a)`` by scripts/tvp_gelu.py, then rounded to FP32; the last row is the
#: saturated piece.
GELU_TABLE = np.array([
    (0x3F000000, 0xBECC424A, 0x382B605F, 0x3D875197),  # [0/8, 1/8)
    (0x3EE688B7, 0xBECAABCF, 0x3CCC07C7, 0x3D80F89A),  # [1/8, 2/8)
    (0x3ECD765E, 0xBEC5FA4A, 0x3D471833, 0x3D69C4AA),  # [2/8, 3/8)
    (0x3EB5293E, 0xBEBE6501, 0x3D8F87F1, 0x3D47D756),  # [3/8, 4/8)
    (0x3E9DF8A3, 0xBEB44353, 0x3DB51F12, 0x3D1EA8F8),  # [4/8, 5/8)
    (0x3E882F43, 0xBEA8063C, 0x3DD2F3DD, 0x3CE245EF),  # [5/8, 6/8)
    (0x3E681103, 0xBE9A3037, 0x3DE8355E, 0x3C849E75),  # [6/8, 7/8)
    (0x3E435DAB, 0xBE8B4C3D, 0x3DF4A55E, 0x3BA88423),  # [7/8, 8/8)
    (0x3E227689, 0xBE77C9BE, 0x3DF890E9, 0xBBA0DA19),  # [8/8, 9/8)
    (0x3E056BEF, 0xBE58F854, 0x3DF4BD37, 0xBC5D2226),  # [9/8, 10/8)
    (0x3DD85EEC, 0xBE3B0A01, 0x3DEA4BFB, 0xBCA66F62),  # [10/8, 11/8)
    (0x3DAD30CD, 0xBE1EBCA9, 0x3DDA9AF1, 0xBCCEB45B),  # [11/8, 12/8)
    (0x3D88D238, 0xBE04A0E2, 0x3DC7226E, 0xBCE78A75),  # [12/8, 13/8)
    (0x3D55532F, 0xBDDA3115, 0x3DB15683, 0xBCF22C9C),  # [13/8, 14/8)
    (0x3D241511, 0xBDB0B1C1, 0x3D9A8D5C, 0xBCF09D3E),  # [14/8, 15/8)
    (0x3CF901C6, 0xBD8CDED3, 0x3D83EC79, 0xBCE556BA),  # [15/8, 16/8)
    (0x3CBA5E76, 0xBD5D22D4, 0x3D5CBAF4, 0xBCD2FF33),  # [16/8, 17/8)
    (0x3C899217, 0xBD2AE055, 0x3D35141E, 0xBCBC2787),  # [17/8, 18/8)
    (0x3C484919, 0xBD01FDF3, 0x3D11BC14, 0xBCA31A3E),  # [18/8, 19/8)
    (0x3C0FC2C2, 0xBCC2B663, 0x3CE63838, 0xBC89BC38),  # [19/8, 20/8)
    (0x3BCB7A57, 0xBC8F9106, 0x3CB284BD, 0xBC62FCC9),  # [20/8, 21/8)
    (0x3B8DF71D, 0xBC506D67, 0x3C87EF89, 0xBC36BBC4),  # [21/8, 22/8)
    (0x3B4347F6, 0xBC14F305, 0x3C4B5736, 0xBC0FDDAD),  # [22/8, 23/8)
    (0x3B046423, 0xBBD19642, 0x3C15694A, 0xBBDDB7FB),  # [23/8, 24/8)
    (0x3AB0EED3, 0xBB912B19, 0x3BD7BF97, 0xBBA75503),  # [24/8, 25/8)
    (0x3A690D19, 0xBB45FAE7, 0x3B9914FB, 0xBB7781ED),  # [25/8, 26/8)
    (0x3A174333, 0xBB04E896, 0x3B55844B, 0xBB33762E),  # [26/8, 27/8)
    (0x39C1806D, 0xBAAFAE75, 0x3B125FC4, 0xBAFF3F36),  # [27/8, 28/8)
    (0x3973ED3B, 0xBA649E3E, 0x3AC54CDA, 0xBAB21758),  # [28/8, 29/8)
    (0x39177F45, 0xBA127221, 0x3A82BD18, 0xBA73E568),  # [29/8, 30/8)
    (0x38B96BFD, 0xB9B8B523, 0x3A2A5E89, 0xBA23F204),  # [30/8, 31/8)
    (0x385F9AC0, 0xB9655A4A, 0x39DA51E8, 0xB9D869A9),  # [31/8, 32/8)
    (0x3804D617, 0xB90C2F96, 0x398990E8, 0xB98C468D),  # [32/8, 33/8)
    (0x379B7E7A, 0xB8A8B647, 0x392A80D3, 0xB9329F14),  # [33/8, 34/8)
    (0x373351BD, 0xB847E4C4, 0x38CFD9F8, 0xB8DF728A),  # [34/8, 35/8)
    (0x36CBB966, 0xB7E92A2E, 0x38793A37, 0xB8895255),  # [35/8, 36/8)
    (0x366401BF, 0xB785E0AB, 0x3812FA5B, 0xB825DBEC),  # [36/8, 37/8)
    (0x35FB613F, 0xB7175AA1, 0x37AA87C7, 0xB7C4E0A7),  # [37/8, 38/8)
    (0x35888156, 0xB6A8752B, 0x3742A3E3, 0xB765B264),  # [38/8, 39/8)
    (0x351208A8, 0xB63895FE, 0x36DA8E1E, 0xB703B662),  # [39/8, 40/8)
    (0x3499E32A, 0xB5C71EF8, 0x36716FB6, 0xB6947E7B),  # [40/8, 41/8)
    (0x341FBB0F, 0xB55377FF, 0x360333CF, 0xB6249752),  # [41/8, 42/8)
    (0x33A34E35, 0xB4DD193C, 0x358C4C46, 0xB5B35EBF),  # [42/8, 43/8)
    (0x332472FE, 0xB46394C5, 0x35139BFB, 0xB5403503),  # [43/8, 44/8)
    (0x32A31B75, 0xB3E69EBC, 0x3498CE55, 0xB4CA87E2),  # [44/8, 45/8)
    (0x321F5662, 0xB366130C, 0x341BA5BE, 0xB451DD6F),  # [45/8, 46/8)
    (0x31994E42, 0xB2E1F834, 0x339C005B, 0xB3D5DD5C),  # [46/8, 47/8)
    (0x31114625, 0xB25A7EC3, 0x3319DAAA, 0xB35657DC),  # [47/8, 48/8)
    (0x308794DB, 0xB1CFFDA0, 0x32954FB7, 0xB2D3495A),  # [48/8, 49/8)
    (0x2FF93DB0, 0xB142EB81, 0x320E96F0, 0xB24CDA8E),  # [49/8, 50/8)
    (0x2F619EF9, 0xB0B3D63C, 0x3185FFC1, 0xB1C35D07),  # [50/8, 51/8)
    (0x2EC9249E, 0xB02358D6, 0x30F7D716, 0xB1374488),  # [51/8, 52/8)
    (0x2E30999D, 0xAF921149, 0x30618D0E, 0xB0A91DF4),  # [52/8, 53/8)
    (0x2D98B28F, 0xAF0096F5, 0x2FCA00B3, 0xB01984CE),  # [53/8, 54/8)
    (0x2D020627, 0xAE5EE4DE, 0x2F320A02, 0xAF891857),  # [54/8, 55/8)
    (0x2C5A1159, 0xADBE2EB8, 0x2E9A6D75, 0xAEF0E2BC),  # [55/8, 56/8)
    (0x2BB41515, 0xAD1FC117, 0x2E03D2AE, 0xAE503333),  # [56/8, 57/8)
    (0x2B127322, 0xAC841CD0, 0x2D5D7CD0, 0xADB10A53),  # [57/8, 58/8)
    (0x2A6A918F, 0xABD71E07, 0x2CB71FA9, 0xAD141D2E),  # [58/8, 59/8)
    (0x29B8FDC4, 0xAB2C6B60, 0x2C150230, 0xAC73D534),  # [59/8, 60/8)
    (0x290FAAF0, 0xAA880D73, 0x2B6EA98E, 0xABC5795B),  # [60/8, 61/8)
    (0x285BBEE4, 0xA9D3619E, 0x2ABC1B97, 0xAB1D5BA0),  # [61/8, 62/8)
    (0x27A57D66, 0xA921A949, 0x2A11EB6F, 0xAA76C152),  # [62/8, 63/8)
    (0x26F57415, 0xA8736F9D, 0x295ECFEB, 0xA9BE5DE4),  # [63/8, 64/8)
    (0x00000000, 0x00000000, 0x00000000, 0x00000000),  # |x| >= 8, NaN
], dtype=np.uint32)
_X0_BITS = np.array([0] + [int(np.float32(k / GELU_STEPS).view(np.uint32))
                           for k in range(1, GELU_SEGMENTS)], np.uint32)


def gelu_segment(x_bits):
    """``(k, x0)``: the piece of the table ``x`` uses and the FP32 bits of its start ``k / 8``.

    ``k = floor(|x| * 8)`` for ``|x| < 8``, else (``|x| >= 8``, Inf, NaN) ``GELU_SEGMENTS`` with
    ``x0 = +0``. Computed on the bits: ``floor(M * 2**(E - 147)) = M >> (147 - E)`` for the
    significand ``M`` and the exponent field ``E`` (1 for subnormals).
    """
    x = _u64(x_bits)
    e = np.maximum((x >> 23) & 0xFF, 1)
    m = np.where((x >> 23) & 0xFF == 0, x & 0x7FFFFF, (x & 0x7FFFFF) | 0x800000)
    shift = 150 - _STEP_BITS - e
    k = m >> np.clip(shift, 0, 63)
    saturated = (x & _ABS) >= int(np.float32(GELU_TOP).view(np.uint32))
    k = np.where(saturated, GELU_SEGMENTS, k)
    x0 = np.where(saturated, 0, _X0_BITS[np.minimum(k, GELU_SEGMENTS - 1)])
    return k, x0


def gelu(x_bits):
    """GELU of FP32 ``x``: the fixed sequence of FP32 operations below, bit-exact.

    With ``a = |x|`` and ``(k, x0) = gelu_segment(x)``, ``(c0, c1, c2, c3) = GELU_TABLE[k]``::

        t = a - x0              (exact; +0 for the saturated piece)
        q = c3 * t
        q = q + c2
        q = q * t
        q = q + c1
        q = q * t
        q = q + c0              (q ~ Q(a) = Phi(-a))
        p = q + (-0)   if x is negative (sign bit set, -0 included), else   p = 1 - q
        y = x * p

    each step one :func:`~.dot.fp32_add` / :func:`fp32_mul`. So ``gelu(+0) = +0``,
    ``gelu(-0) = -0``, ``x >= 8`` and +Inf give ``x``, finite ``x <= -8`` gives -0, NaN gives the
    canonical NaN, and one rule is added: ``gelu(-Inf) = -0`` (the sequence would give
    ``-Inf * 0 = NaN``). Error against ``x * Phi(x)``: docs/tvp.md.
    """
    x = _u64(x_bits)
    scalar = x.ndim == 0
    sign = (x >> 31) & 1
    k, x0 = gelu_segment(x)
    c0, c1, c2, c3 = (GELU_TABLE[k, j].astype(np.int64) for j in range(4))
    a = x & _ABS
    t = np.where(k == GELU_SEGMENTS, 0, fp32_add(a, x0 | _SIGN).astype(np.int64))
    q = fp32_mul(c3, t)
    q = fp32_add(q, c2)
    q = fp32_mul(q, t)
    q = fp32_add(q, c1)
    q = fp32_mul(q, t)
    q = fp32_add(q, c0).astype(np.int64)
    p = np.where(sign == 1, fp32_add(q, FP32_NEG_ZERO), fp32_add(FP32_ONE, q ^ _SIGN))
    y = fp32_mul(x, p).astype(np.int64)
    y = np.where(x == FP32_NEG_INF, FP32_NEG_ZERO, y)
    return _out(y, scalar)


# --------------------------------------------------------------------------------------------
# One lane operation by code
# --------------------------------------------------------------------------------------------

def apply(op, a_bits, b_bits=0):
    """The result bits (``uint32``) of lane operation ``op`` (a :class:`VectorOp` or its code)
    on ``a`` and ``b``, as the TVP's ALU gives them (``TO_BF16``: the BF16 bits in the low half).
    ``op`` may be an array of codes broadcasting with the operands. An undefined code raises
    :class:`ValueError` (the ALU answers it with ``ILLEGAL_OPCODE``).
    """
    op = np.asarray(op).astype(np.int64)
    if op.size and (op.min() < 0 or op.max() > max(VectorOp)):
        raise ValueError(f"undefined vector op code in {np.unique(op)}")
    a, b, op = np.broadcast_arrays(_u64(a_bits), _u64(b_bits), op)
    results = {
        VectorOp.ADD: lambda: fp32_add(a, b),
        VectorOp.MUL: lambda: fp32_mul(a, b),
        VectorOp.MAX: lambda: fp32_max(a, b),
        VectorOp.RELU: lambda: relu(a),
        VectorOp.GELU: lambda: gelu(a),
        VectorOp.TO_BF16: lambda: fp32_to_bf16(a),
        VectorOp.FROM_BF16: lambda: bf16_to_fp32(a & 0xFFFF),
    }
    out = np.zeros(a.shape, np.int64)
    for code, fn in results.items():
        sel = op == code
        if sel.any():
            out = np.where(sel, np.asarray(fn()).astype(np.int64), out)
    return _out(out, a.ndim == 0)
