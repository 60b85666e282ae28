"""OpenMaia numerics: the bit-exact golden model of the chip's MX arithmetic.

The model mirrors the hardware's layers (see docs/numerics.md):

* :mod:`.formats`: the element formats and the E8M0 scale.
* :mod:`.elements`: element codes <-> FP32 (:func:`encode`, :func:`decode`,
  :func:`element_value_int`): the element decoders and the quantiser's rounding.
* :mod:`.mx`: block tensors (:class:`MXTensor`, :func:`quantize_mx`, :func:`dequantize`).
* :mod:`.dot`: one block's dot product (:func:`block_dot`, the dot engine), FP32 rounding and
  addition (:func:`round_to_fp32`, :func:`fp32_add`), multi-block dot products
  (:func:`dot_blocks`) and the matrix product of the tensor unit (:func:`mx_matmul`).
"""

from .dot import (CANONICAL_NAN, FP32_NEG_INF, FP32_NEG_ZERO, FP32_POS_INF, block_dot,
                  block_sum_int, dot_blocks, fp32_add, mx_matmul, round_to_fp32,
                  round_to_fp32_array)
from .elements import (check_codes, decode, element_fraction, element_sign, element_value_int,
                       encode, inf_code, max_code, nan_code)
from .formats import BLOCK_SIZE, E8M0_BIAS, E8M0_NAN, Format, FormatSpec, block_sum_bits
from .mx import MXTensor, dequantize, quantize_mx, scale_codes, shared_exponent

__all__ = [
    "Format", "FormatSpec", "BLOCK_SIZE", "E8M0_BIAS", "E8M0_NAN", "CANONICAL_NAN",
    "block_sum_bits",
    "FP32_NEG_ZERO", "FP32_POS_INF", "FP32_NEG_INF",
    "encode", "decode", "element_value_int", "element_sign", "element_fraction", "check_codes",
    "nan_code", "inf_code", "max_code",
    "MXTensor", "quantize_mx", "dequantize", "scale_codes", "shared_exponent",
    "round_to_fp32", "round_to_fp32_array", "fp32_add", "block_sum_int", "block_dot",
    "dot_blocks", "mx_matmul",
]
