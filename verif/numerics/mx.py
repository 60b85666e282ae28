"""MX block tensors: the E8M0 scale rule, quantisation from FP32 and dequantisation to FP32.

A tensor is cut into blocks of ``block`` (32) consecutive elements along one axis; each block
shares one E8M0 scale ``2 ** (code - 127)``. The scale rule (fixed by this project, see
docs/numerics.md):

* ``shared_exp = (biased FP32 exponent field of amax) - 127 - emax_elem``, clamped to
  ``[-127, 127]``; the scale code is ``shared_exp + 127``.
* a block whose amax is zero or an FP32 subnormal gets code 0 (``shared_exp = -127``);
* a block holding any Inf or NaN gets code 255 (E8M0 NaN) and all its element codes are 0.

Elements are ``x / 2 ** shared_exp`` (exact) rounded with :func:`~.elements.encode`'s rules.
A last partial block (axis length not a multiple of ``block``) takes its scale from its own
elements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .elements import _encode_bits, check_codes, codes_table
from .formats import BLOCK_SIZE, E8M0_BIAS, E8M0_NAN, Format

__all__ = ["MXTensor", "quantize_mx", "dequantize", "scale_codes", "shared_exponent"]


@dataclass(frozen=True)
class MXTensor:
    """An MX-quantised tensor.

    ``codes``: ``uint8`` element codes, one element per byte, shape ``shape``.
    ``scales``: ``uint8`` E8M0 codes; shape ``shape`` with ``shape[axis]`` replaced by
    ``ceil(shape[axis] / block)``. ``fmt``: the element :class:`Format`. ``axis``: the blocked
    axis (non-negative). ``block``: elements per block (32 for MX).
    """
    codes: np.ndarray
    scales: np.ndarray
    fmt: Format
    axis: int
    shape: tuple
    block: int = BLOCK_SIZE

    def __post_init__(self):
        object.__setattr__(self, "fmt", Format.of(self.fmt))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "codes", check_codes(self.codes, self.fmt))
        object.__setattr__(self, "scales", np.asarray(self.scales, dtype=np.uint8))
        if self.codes.shape != self.shape:
            raise ValueError(f"codes shape {self.codes.shape} != shape {self.shape}")
        if not 0 <= self.axis < len(self.shape):
            raise ValueError(f"axis {self.axis} out of range for shape {self.shape}")
        if self.block < 1:
            raise ValueError(f"block must be positive, got {self.block}")
        if self.scales.shape != self.scales_shape:
            raise ValueError(f"scales shape {self.scales.shape} != expected {self.scales_shape}")

    @property
    def nblocks(self) -> int:
        """Blocks along the blocked axis."""
        return -(-self.shape[self.axis] // self.block)

    @property
    def scales_shape(self) -> tuple:
        s = list(self.shape)
        s[self.axis] = self.nblocks
        return tuple(s)

    def expanded_scales(self) -> np.ndarray:
        """The scale code of every element (shape ``shape``)."""
        rep = np.repeat(self.scales, self.block, axis=self.axis)
        return np.take(rep, np.arange(self.shape[self.axis]), axis=self.axis)


def shared_exponent(amax_bits, fmt: Format | str) -> np.ndarray:
    """The shared exponent of blocks whose largest magnitude has FP32 bits ``amax_bits``.

    ``(biased exponent field) - 127 - emax_elem`` clamped to ``[-127, 127]``; -127 for a zero or
    subnormal amax. (Inf / NaN blocks are the caller's business: their scale code is 255.)
    """
    fmt = Format.of(fmt)
    e = (np.asarray(amax_bits, np.int64) >> 23) & 0xFF
    se = np.clip(e - E8M0_BIAS - fmt.spec.emax, -127, 127)
    return np.where(e == 0, -127, se)


def _blocked_bits(x: np.ndarray, axis: int, block: int) -> tuple[np.ndarray, int]:
    """FP32 bits of ``x`` moved to (..., nblocks, block) with +0 padding; returns (bits, n)."""
    xm = np.moveaxis(x, axis, -1)
    n = xm.shape[-1]
    nb = -(-n // block)
    pad = nb * block - n
    if pad:
        xm = np.concatenate([xm, np.zeros(xm.shape[:-1] + (pad,), np.float32)], axis=-1)
    return xm.view(np.uint32).reshape(xm.shape[:-1] + (nb, block)), n


def scale_codes(x, fmt: Format | str, axis: int = -1, block: int = BLOCK_SIZE) -> np.ndarray:
    """The E8M0 scale codes :func:`quantize_mx` gives ``x`` (``uint8``, the scales' shape)."""
    fmt = Format.of(fmt)
    x = np.asarray(x, dtype=np.float32)
    axis = _norm_axis(axis, x.ndim)
    bits, _ = _blocked_bits(x, axis, block)
    return np.moveaxis(_scales_of_blocks(bits, fmt), -1, axis)


def _scales_of_blocks(bits: np.ndarray, fmt: Format) -> np.ndarray:
    absb = bits & np.uint32(0x7FFFFFFF)
    special = np.any(absb >= np.uint32(0x7F800000), axis=-1)
    amax = absb.max(axis=-1) if absb.shape[-1] else np.zeros(absb.shape[:-1], np.uint32)
    code = shared_exponent(amax, fmt) + E8M0_BIAS
    return np.where(special, E8M0_NAN, code).astype(np.uint8)


def _norm_axis(axis: int, ndim: int) -> int:
    if ndim == 0:
        raise ValueError("cannot block a 0-d array")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} out of range for {ndim}-d input")
    return axis % ndim


def quantize_mx(x, fmt: Format | str, axis: int = -1, block: int = BLOCK_SIZE,
                saturate: bool = True) -> MXTensor:
    """Quantise FP32 ``x`` to an :class:`MXTensor` blocked along ``axis``.

    ``x`` is converted to float32 first. Scales follow the rule of the module docstring; element
    ``i`` of a block with shared exponent ``s`` is the code of ``x_i / 2**s`` (exact) rounded to
    nearest even with :func:`~.elements.encode`'s overflow rules (``saturate=True`` clamps finite
    overflow to +-max; ``saturate=False`` uses the OFP8 non-saturating rule). A block with scale
    code 255 (it holds an Inf or NaN) has all element codes 0.
    """
    fmt = Format.of(fmt)
    if block < 1:
        raise ValueError(f"block must be positive, got {block}")
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    axis = _norm_axis(axis, x.ndim)
    bits, n = _blocked_bits(x, axis, block)
    scales = _scales_of_blocks(bits, fmt)
    shared = scales.astype(np.int64)[..., None] - E8M0_BIAS
    codes = _encode_bits(bits, fmt, saturate, shared)
    codes = np.where((scales == E8M0_NAN)[..., None], 0, codes).astype(np.uint8)
    codes = codes.reshape(codes.shape[:-2] + (-1,))[..., :n]
    return MXTensor(codes=np.moveaxis(codes, -1, axis).copy(),
                    scales=np.moveaxis(scales, -1, axis).copy(),
                    fmt=fmt, axis=axis, shape=x.shape, block=block)


def dequantize(t: MXTensor) -> np.ndarray:
    """The FP32 values of an :class:`MXTensor`: ``decode(code) * 2**(scale - 127)``.

    The exact product is rounded once to float32 with
    :func:`~.dot.round_to_fp32_array` (nearest even, gradual underflow, overflow to +-Inf; it can
    only be inexact below 2**-126 or above FP32 max). A block with scale code 255 is NaN
    throughout (bits :data:`~.dot.CANONICAL_NAN`), as are NaN element codes; Inf codes give
    +-Inf; -0 codes give -0.0 (as does a negative value that underflows to zero).
    """
    from .dot import CANONICAL_NAN, round_to_fp32_array
    tab = codes_table(t.fmt)
    c = t.codes
    s = t.expanded_scales().astype(np.int64)
    bits = round_to_fp32_array(tab.value_int[c], s - E8M0_BIAS + t.fmt.spec.lsb_exp)
    bits = bits | (tab.sign[c].astype(np.uint32) << np.uint32(31))     # -0 codes, Inf signs
    bits = np.where(tab.inf[c], bits | np.uint32(0x7F800000), bits)
    bits = np.where(tab.nan[c] | (s == E8M0_NAN), np.uint32(CANONICAL_NAN), bits)
    return bits.astype(np.uint32).view(np.float32)
