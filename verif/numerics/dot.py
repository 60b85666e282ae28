"""MX dot products: the bit-exact arithmetic of the dot engine and the tensor unit.

Layers (each public so an RTL bench can check the matching hardware block):

* :func:`round_to_fp32` / :func:`round_to_fp32_array`: an exact value ``numerator * 2**exp2``
  rounded once to FP32 (nearest even, gradual underflow, overflow to +-Inf): the dot engine's
  normalise-and-round stage.
* :func:`block_sum_int`: the exact integer sum of one block's element products (the adder tree).
* :func:`block_dot`: one block of two MX vectors to FP32 bits, with every special case (the dot
  engine).
* :func:`fp32_add`: IEEE binary32 addition, nearest even, canonical NaN (the accumulator adder).
* :func:`dot_blocks`: a multi-block dot product accumulated in FP32 in K order from an
  accumulator input (one output of the tensor unit).
* :func:`mx_matmul`: ``C = A @ B (+ C_in)`` over MX tensors (the tensor unit), vectorised and
  bit-identical to :func:`dot_blocks` on every output.

Definition of one block (fixed by this project, see docs/numerics.md): with element values
``a_i = A_i * 2**lsb_a`` and ``b_i = B_i * 2**lsb_b`` (``A_i``, ``B_i`` integers) and scale codes
``sa``, ``sb``, the block result is ``S * 2**(lsb_a + lsb_b + sa + sb - 254)`` with
``S = sum_i A_i * B_i`` computed exactly, rounded once to FP32. Specials: a NaN scale (255) or a
NaN element -> NaN; Inf x 0 -> NaN; Inf x finite nonzero -> signed Inf; +Inf and -Inf products in
one block -> NaN. A zero sum is -0.0 iff every product of the block is a negative zero, else
+0.0. Every NaN produced is :data:`CANONICAL_NAN` (``0x7FC00000``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .elements import check_codes, codes_table, element_sign, element_value_int
from .formats import BLOCK_SIZE, E8M0_BIAS, E8M0_NAN, Format

if TYPE_CHECKING:  # pragma: no cover
    from .mx import MXTensor

__all__ = [
    "CANONICAL_NAN", "FP32_NEG_ZERO", "FP32_POS_INF", "FP32_NEG_INF", "round_to_fp32",
    "round_to_fp32_array", "fp32_add", "block_sum_int", "block_dot", "dot_blocks", "mx_matmul",
]

#: The one NaN bit pattern the golden model (and the chip) produces.
CANONICAL_NAN = 0x7FC00000
#: -0.0, the default accumulator input.
FP32_NEG_ZERO = 0x80000000
FP32_POS_INF = 0x7F800000
FP32_NEG_INF = 0xFF800000

_U32 = np.uint32


# --------------------------------------------------------------------------------------------
# Rounding an exact value to FP32
# --------------------------------------------------------------------------------------------

def round_to_fp32(numerator: int, exp2: int) -> np.uint32:
    """FP32 bits of the exact value ``numerator * 2**exp2``, rounded once.

    Round to nearest, ties to even; results below 2**-126 are subnormal (gradual underflow) and a
    nonzero value that rounds to zero gives a zero with its sign; a value whose rounded magnitude
    reaches 2**128 gives +-Inf. ``numerator == 0`` gives +0.0 (the caller decides a zero's sign).
    Arbitrary Python integers are accepted.
    """
    n = int(numerator)
    e = int(exp2)
    if n == 0:
        return _U32(0)
    sign = n < 0
    mag = -n if sign else n
    top = mag.bit_length() - 1 + e           # exponent of the leading bit
    q = max(top - 23, -149)                   # exponent of the result's last place
    shift = q - e
    if shift <= 0:
        m = mag << -shift
    else:
        m = mag >> shift
        rem = mag & ((1 << shift) - 1)
        half = 1 << (shift - 1)
        if rem > half or (rem == half and m & 1):
            m += 1
    if m == 1 << 24:                          # rounding carried into a new binade
        m >>= 1
        q += 1
    if m < 1 << 23:                           # subnormal (or zero): q == -149
        bits = m
    else:
        biased = q + 150
        bits = FP32_POS_INF if biased >= 255 else (biased << 23) | (m & 0x7FFFFF)
    return _U32(bits | (sign << 31))


def _bit_length(mag: np.ndarray) -> np.ndarray:
    """Exact bit length of int64 values in [0, 2**62)."""
    L = np.frexp(mag.astype(np.float64))[1].astype(np.int64)
    # float64 may round a value just below 2**k up to 2**k: correct by one.
    high = np.where(L > 0, mag >> np.maximum(L - 1, 0), 1)
    return np.where(high == 0, L - 1, L)


def round_to_fp32_array(numerators, exp2) -> np.ndarray:
    """Vectorised :func:`round_to_fp32` for int64 numerators with ``|numerator| < 2**62``.

    ``numerators`` and ``exp2`` broadcast; returns ``uint32`` FP32 bits, identical to
    :func:`round_to_fp32` element by element.
    """
    num = np.asarray(numerators, dtype=np.int64)
    e = np.asarray(exp2, dtype=np.int64)
    num, e = np.broadcast_arrays(num, e)
    sign = num < 0
    mag = np.abs(num)
    if mag.size and int(mag.max()) >= 1 << 62:
        raise ValueError("round_to_fp32_array needs |numerator| < 2**62; use round_to_fp32")
    L = _bit_length(mag)
    top = L - 1 + e
    q = np.maximum(top - 23, -149)
    shift = q - e
    rs = np.clip(shift, 0, 62)
    ls = np.clip(-shift, 0, 24)
    m_trunc = mag >> rs
    rem = mag & ((np.int64(1) << rs) - 1)
    half = np.where(rs > 0, np.int64(1) << np.maximum(rs - 1, 0), 0)
    up = (rs > 0) & ((rem > half) | ((rem == half) & ((m_trunc & 1) == 1)))
    m = np.where(shift > 0, m_trunc + up, mag << ls)
    m = np.where(shift > 62, 0, m)            # far below half the smallest subnormal
    carry = m == (1 << 24)
    m = np.where(carry, m >> 1, m)
    q = q + carry
    biased = q + 150
    normal = m >= (1 << 23)
    bits = np.where(normal, (biased << 23) | (m & 0x7FFFFF), m)
    bits = np.where(normal & (biased >= 255), FP32_POS_INF, bits)
    bits = np.where(mag == 0, 0, bits)
    bits = bits | (sign.astype(np.int64) << 31)
    return bits.astype(np.uint32)


# --------------------------------------------------------------------------------------------
# FP32 addition
# --------------------------------------------------------------------------------------------

def fp32_add(a_bits, b_bits):
    """IEEE 754 binary32 addition of FP32 bit patterns, round to nearest even.

    Gradual underflow (no flush to zero). x + (-x) = +0; (-0) + (-0) = -0. Inf + finite = Inf,
    Inf - Inf = NaN, any NaN operand gives NaN, and every NaN result is :data:`CANONICAL_NAN`.
    Accepts scalars or broadcasting arrays of bits (anything converting to uint32); returns
    ``np.uint32`` / a ``uint32`` array. Pure integer arithmetic: independent of the host FPU.
    """
    a = np.asarray(a_bits).astype(np.uint32).astype(np.int64)
    b = np.asarray(b_bits).astype(np.uint32).astype(np.int64)
    a, b = np.broadcast_arrays(a, b)
    scalar = a.ndim == 0
    sa, sb = a >> 31, b >> 31
    ea, eb = (a >> 23) & 0xFF, (b >> 23) & 0xFF
    fa, fb = a & 0x7FFFFF, b & 0x7FFFFF
    nan_a, nan_b = (ea == 0xFF) & (fa != 0), (eb == 0xFF) & (fb != 0)
    inf_a, inf_b = (ea == 0xFF) & (fa == 0), (eb == 0xFF) & (fb == 0)
    res_nan = nan_a | nan_b | (inf_a & inf_b & (sa != sb))
    res_inf = (inf_a | inf_b) & ~res_nan

    # Finite: order by magnitude, |x| >= |y|.
    mag_a, mag_b = a & 0x7FFFFFFF, b & 0x7FFFFFFF
    a_big = mag_a >= mag_b
    x = np.where(a_big, a, b)
    y = np.where(a_big, b, a)
    sx, sy = x >> 31, y >> 31
    ex, ey = (x >> 23) & 0xFF, (y >> 23) & 0xFF
    mx_ = np.where(ex == 0, x & 0x7FFFFF, (x & 0x7FFFFF) | 0x800000)
    my_ = np.where(ey == 0, y & 0x7FFFFF, (y & 0x7FFFFF) | 0x800000)
    ex1, ey1 = np.maximum(ex, 1), np.maximum(ey, 1)     # value = M * 2**(E - 150)
    d = np.clip(ex1 - ey1, 0, 60)
    X = mx_ << 30
    Yf = my_ << 30
    Y = Yf >> d
    sticky = (Yf & ((np.int64(1) << d) - 1)) != 0
    Y = Y | sticky                                      # jam: result stays correctly rounded
    R = np.where(sx == sy, X + Y, X - Y)                # >= 0
    R = np.where(sx == 1, -R, R)
    fin = round_to_fp32_array(np.where(res_nan | res_inf, 0, R), ex1 - 180).astype(np.int64)
    zero_sign = (sa & sb) << 31                         # exact zero: -0 only for (-0) + (-0)
    fin = np.where(R == 0, zero_sign, fin)
    out = np.where(res_inf, np.where(inf_a, a, b), fin)
    out = np.where(res_nan, CANONICAL_NAN, out).astype(np.uint32)
    return _U32(out) if scalar else out


# --------------------------------------------------------------------------------------------
# One block
# --------------------------------------------------------------------------------------------

def block_sum_int(a_codes, b_codes, fmt_a: Format | str, fmt_b: Format | str) -> int:
    """Exact ``sum_i A_i * B_i`` (Python int) of two equal-length code vectors.

    ``A_i`` / ``B_i`` are :func:`~.elements.element_value_int` values; Inf / NaN codes count as
    0 here (:func:`block_dot` handles them). The block result is this sum times
    ``2**(lsb_a + lsb_b + sa + sb - 254)``.
    """
    va, _, _ = element_value_int(a_codes, fmt_a)
    vb, _, _ = element_value_int(b_codes, fmt_b)
    if va.shape != vb.shape or va.ndim != 1:
        raise ValueError(f"block operands must be equal-length vectors, got {va.shape} and "
                         f"{vb.shape}")
    return sum(int(p) * int(q) for p, q in zip(va.tolist(), vb.tolist()))


def block_dot(a_codes, b_codes, fmt_a: Format | str, fmt_b: Format | str, scale_a: int,
              scale_b: int) -> np.uint32:
    """FP32 bits of one MX block dot product (normally 32 elements; any equal length works).

    ``scale_a`` / ``scale_b`` are E8M0 codes. Precedence: NaN scale or NaN element -> NaN; then
    Inf x 0 -> NaN; then Inf products: both signs present -> NaN, else the signed Inf; otherwise
    the exact sum rounded once (:func:`round_to_fp32`); an exactly zero sum is -0.0 iff every
    product is a negative zero (a zero operand and differing signs), else +0.0. NaN is
    :data:`CANONICAL_NAN`. This is the scalar reference; :func:`mx_matmul` is its vectorised twin.
    """
    fa, fb = Format.of(fmt_a), Format.of(fmt_b)
    a = check_codes(a_codes, fa).ravel()
    b = check_codes(b_codes, fb).ravel()
    if a.shape != b.shape:
        raise ValueError(f"block operands differ in length: {a.size} and {b.size}")
    scale_a, scale_b = int(scale_a), int(scale_b)
    for s in (scale_a, scale_b):
        if not 0 <= s <= 255:
            raise ValueError(f"E8M0 scale code {s} out of range 0..255")
    if scale_a == E8M0_NAN or scale_b == E8M0_NAN:
        return _U32(CANONICAL_NAN)
    va, nan_a, inf_a = element_value_int(a, fa)
    vb, nan_b, inf_b = element_value_int(b, fb)
    if nan_a.any() or nan_b.any():
        return _U32(CANONICAL_NAN)
    sa, sb = element_sign(a, fa), element_sign(b, fb)
    zero_a = (va == 0) & ~inf_a
    zero_b = (vb == 0) & ~inf_b
    if np.any((inf_a & zero_b) | (zero_a & inf_b)):
        return _U32(CANONICAL_NAN)
    inf_p = inf_a | inf_b
    if inf_p.any():
        neg = (sa ^ sb)[inf_p]
        if neg.all():
            return _U32(FP32_NEG_INF)
        if not neg.any():
            return _U32(FP32_POS_INF)
        return _U32(CANONICAL_NAN)
    S = sum(int(p) * int(q) for p, q in zip(va.tolist(), vb.tolist()))
    if S == 0:
        all_neg_zero = bool(np.all((zero_a | zero_b) & (sa ^ sb)))
        return _U32(FP32_NEG_ZERO if all_neg_zero else 0)
    exp2 = fa.spec.lsb_exp + fb.spec.lsb_exp + scale_a + scale_b - 2 * E8M0_BIAS
    return round_to_fp32(S, exp2)


def dot_blocks(a_codes, b_codes, fmt_a: Format | str, fmt_b: Format | str, scales_a, scales_b,
               acc: int = FP32_NEG_ZERO, block: int = BLOCK_SIZE) -> np.uint32:
    """FP32 bits of ``acc + sum_j block_dot(block j)`` accumulated in K order.

    ``a_codes`` / ``b_codes``: length-K code vectors; ``scales_a`` / ``scales_b``: their
    ``ceil(K / block)`` E8M0 codes. A partial last block is padded with code 0 (+0) to ``block``
    elements. ``acc`` is the accumulator input: FP32 bits (an int or ``np.uint32``, default
    -0.0) or a float (converted to float32). Each step is ``acc = fp32_add(acc, block_result)``.
    """
    a = check_codes(a_codes, fmt_a).ravel()
    b = check_codes(b_codes, fmt_b).ravel()
    if a.size != b.size:
        raise ValueError(f"dot operands differ in length: {a.size} and {b.size}")
    nb = -(-a.size // block)
    sa = np.asarray(scales_a).ravel()
    sb = np.asarray(scales_b).ravel()
    if sa.size != nb or sb.size != nb:
        raise ValueError(f"K={a.size} with block {block} needs {nb} scales per operand, got "
                         f"{sa.size} and {sb.size}")
    pad = nb * block - a.size
    a = np.concatenate([a, np.zeros(pad, np.uint8)])
    b = np.concatenate([b, np.zeros(pad, np.uint8)])
    if isinstance(acc, (float, np.floating)):
        acc = np.float32(acc).view(np.uint32)
    out = _U32(int(acc))
    for j in range(nb):
        sl = slice(j * block, (j + 1) * block)
        out = fp32_add(out, block_dot(a[sl], b[sl], fmt_a, fmt_b, sa[j], sb[j]))
    if nb == 0 and _is_nan_bits(out):
        out = _U32(CANONICAL_NAN)
    return _U32(out)


def _is_nan_bits(bits) -> np.ndarray:
    b = np.asarray(bits).astype(np.uint32)
    return (b & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)


# --------------------------------------------------------------------------------------------
# Matrix product
# --------------------------------------------------------------------------------------------

def _block_sums(A3: np.ndarray, B3: np.ndarray, bound: int) -> np.ndarray:
    """Exact ``A3 @ B3`` (batched over blocks). int64 if ``bound`` < 2**62, else object ints."""
    if bound < 1 << 62:
        return np.matmul(A3, B3)
    # Split A into 16-bit limbs so each partial product sum fits int64 (E5M2 x E5M2: 70 bits).
    hi = A3 >> 16
    lo = A3 & 0xFFFF
    S_hi = np.matmul(hi, B3).astype(object)
    S_lo = np.matmul(lo, B3).astype(object)
    return S_hi * (1 << 16) + S_lo


def mx_matmul(a: "MXTensor", b: "MXTensor", c=None) -> np.ndarray:
    """``C = A @ B + C_in`` over MX tensors, bit-exact to the tensor unit (``float32``, M x N).

    ``a``: M x K blocked along K (axis 1); ``b``: K x N blocked along K (axis 0); any format pair;
    equal ``block``. ``c``: optional M x N float32 accumulator input (default -0.0 everywhere).
    Output ``(i, j)`` is :func:`dot_blocks` of row ``i`` of A and column ``j`` of B starting from
    ``c[i, j]``: each block's exact sum rounded once to FP32, then added to the accumulator in FP32
    (nearest even) in K order. Every NaN in the result is :data:`CANONICAL_NAN`.
    Raises :class:`ValueError` for mismatched shapes, axes or block sizes.
    """
    if a.codes.ndim != 2 or b.codes.ndim != 2:
        raise ValueError(f"mx_matmul needs 2-d operands, got shapes {a.shape} and {b.shape}")
    if a.axis != 1:
        raise ValueError(f"A must be blocked along K (axis 1), got axis {a.axis}")
    if b.axis != 0:
        raise ValueError(f"B must be blocked along K (axis 0), got axis {b.axis}")
    if a.block != b.block:
        raise ValueError(f"block sizes differ: A {a.block}, B {b.block}")
    M, K = a.shape
    K2, N = b.shape
    if K != K2:
        raise ValueError(f"inner dimensions differ: A is {M}x{K}, B is {K2}x{N}")
    blk = a.block
    nb = -(-K // blk)
    fa, fb = a.fmt, b.fmt
    ta, tb = codes_table(fa), codes_table(fb)

    if c is None:
        acc = np.full((M, N), FP32_NEG_ZERO, np.uint32)
    else:
        cf = np.asarray(c, dtype=np.float32)
        try:
            cf = np.broadcast_to(cf, (M, N))
        except ValueError:
            raise ValueError(f"accumulator input of shape {cf.shape} does not fit {M}x{N}")
        acc = np.ascontiguousarray(cf).view(np.uint32).copy()

    if nb == 0:
        acc = np.where(_is_nan_bits(acc), CANONICAL_NAN, acc).astype(np.uint32)
        return acc.view(np.float32)

    pad = nb * blk - K
    ac = np.pad(a.codes, ((0, 0), (0, pad)))
    bc = np.pad(b.codes, ((0, pad), (0, 0)))
    # (nb, M, blk) and (nb, blk, N)
    ac3 = ac.reshape(M, nb, blk).transpose(1, 0, 2)
    bc3 = bc.reshape(nb, blk, N)
    A3 = ta.value_int[ac3]
    B3 = tb.value_int[bc3]
    sa = a.scales.astype(np.int64).T[:, :, None]          # (nb, M, 1)
    sb = b.scales.astype(np.int64)[:, None, :]            # (nb, 1, N)
    exp2 = fa.spec.lsb_exp + fb.spec.lsb_exp + sa + sb - 2 * E8M0_BIAS

    # Largest |S|: INT8's -2.0 (code 0x80, -128) is its largest magnitude.
    bound = int(np.abs(ta.value_int).max()) * int(np.abs(tb.value_int).max()) * blk
    S = _block_sums(A3, B3, bound)
    if S.dtype == object:
        fits = np.abs(S) < (1 << 62)
        R = round_to_fp32_array(np.where(fits, S, 0).astype(np.int64), exp2)
        exp2 = np.broadcast_to(exp2, S.shape)
        for idx in zip(*np.nonzero(~fits)):
            R[idx] = round_to_fp32(S[idx], exp2[idx])
        zero = (S == 0).astype(bool)
    else:
        R = round_to_fp32_array(S, exp2)
        zero = S == 0

    # Zero sign: -0 iff every product of the block is a negative zero.
    if zero.any():
        za = ((A3 == 0) & ~ta.inf[ac3]).astype(np.int64)
        zb = ((B3 == 0) & ~tb.inf[bc3]).astype(np.int64)
        ga = ta.sign[ac3].astype(np.int64)
        gb = tb.sign[bc3].astype(np.int64)
        na, nb_ = 1 - za, 1 - zb
        # sum_k (za | zb) & (ga ^ gb) = sum (ga ^ gb) - sum na nb (ga ^ gb)
        xor_sum = ga.sum(-1)[:, :, None] + gb.sum(-2)[:, None, :] - 2 * np.matmul(ga, gb)
        nz_xor = (np.matmul(na * ga, nb_) + np.matmul(na, nb_ * gb)
                  - 2 * np.matmul(na * ga, nb_ * gb))
        all_neg_zero = (xor_sum - nz_xor) == blk
        R = np.where(zero, np.where(all_neg_zero, FP32_NEG_ZERO, 0), R).astype(np.uint32)

    # Specials.
    nan_a = ta.nan[ac3].any(-1) | (sa[:, :, 0] == E8M0_NAN)      # (nb, M)
    nan_b = tb.nan[bc3].any(-2) | (sb[:, 0, :] == E8M0_NAN)      # (nb, N)
    inf_a = ta.inf[ac3].any(-1)
    inf_b = tb.inf[bc3].any(-2)
    nan_blk = nan_a[:, :, None] | nan_b[:, None, :]
    inf_blk = (inf_a[:, :, None] | inf_b[:, None, :]) & ~nan_blk
    R = np.where(nan_blk, CANONICAL_NAN, R).astype(np.uint32)
    for j, i, n in zip(*np.nonzero(inf_blk)):
        R[j, i, n] = block_dot(ac3[j, i], bc3[j, :, n], fa, fb, sa[j, i, 0], sb[j, 0, n])

    for j in range(nb):
        acc = fp32_add(acc, R[j])
    return acc.view(np.float32)
