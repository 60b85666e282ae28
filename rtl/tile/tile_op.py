"""A tile operation addressed in tile SRAM: the command of :class:`~.ttu_engine.TileTensorEngine`,
its checks, and the golden model of its effect on memory (the "tile commands" layer).

A *tile op* is a :class:`~.ttu_stream.TtuCommand` (M, N, K blocks, formats, accumulate / keep,
tag) plus where its operands and result live in the tile SRAM, in the layout of docs/layout.md:
A (M rows) and B (N rows, i.e. B transposed) each as a code plane and a scale plane (base and
row stride in bytes), C (FP32, M x N row-major) as a base and a row stride. The engine reads A
and B, computes ``C = A x B (+ resident C)`` bit-exact to ``mx_matmul``, and writes the
``4 * N`` bytes of every C row (never the gaps), unless ``keep``.

Rules the engine adds to docs/layout.md (checked in this order; the first that fails is the
op's status, and the op then reads and writes nothing):

1. ``ILLEGAL_SHAPE``: M, N or K is 0, or K > ``panel_blocks``;
2. ``FORMAT_NOT_BUILT``: a format the configuration does not build;
3. ``ILLEGAL_SHAPE``: ``accumulate`` or ``keep`` with more output tiles than accumulators;
4. ``ILLEGAL_FIELD``: a code-plane base or row stride not a multiple of :data:`CODE_ALIGN`, a
   code row stride < the packed row bytes, a scale row stride < K; for C (unless ``keep``): base
   or row stride not a multiple of 4, or row stride < ``4 * N``;
5. ``TSRAM_OUT_OF_RANGE``: a plane (C unless ``keep``) that ends past the tile SRAM.

Overlapping footprints are not checked: ops are not ordered against each other's memory (an op's
operand reads may run ahead of an earlier op's C writes), so software orders dependent ops.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np
from amaranth.lib import data

from ..errors import ErrorCode
from ..layout import Fp32MatrixLayout, MxOperandLayout
from ..numerics.formats import BLOCK_SIZE, Format
from ..numerics.mx import MXTensor
from .ttu_stream import TtuCommand, TtuOp, tensor_unit_op

__all__ = ["ADDR_BITS", "CODE_ALIGN", "C_ALIGN", "OperandAddress", "ResultAddress",
           "TileOpCommand", "OperandPlace", "ResultPlace", "TileOp", "block_bytes",
           "tile_op_status", "execute_tile_op", "fetch_jobs"]

#: Bits of every byte address and row stride in a tile op.
ADDR_BITS = 32
#: Code-plane bases and row strides are multiples of this many bytes (the fetchers move
#: 8-byte units: every block, 16, 24 or 32 bytes, is a whole number of them).
CODE_ALIGN = 8
#: C bases and row strides are multiples of this many bytes (one FP32 value).
C_ALIGN = 4


class OperandAddress(data.Struct):
    """An MX operand in tile SRAM: code plane and scale plane, base and row stride (bytes)."""
    codes:         ADDR_BITS
    codes_stride:  ADDR_BITS
    scales:        ADDR_BITS
    scales_stride: ADDR_BITS


class ResultAddress(data.Struct):
    """The FP32 result in tile SRAM: base and row stride (bytes)."""
    base:   ADDR_BITS
    stride: ADDR_BITS


class TileOpCommand(data.Struct):
    """A tile op: the TTU command and where A, B and C live (module docstring)."""
    op: TtuCommand
    a:  OperandAddress
    b:  OperandAddress
    c:  ResultAddress


def block_bytes(fmt) -> int:
    """Bytes of one packed 32-element block of ``fmt`` (32, 24 or 16)."""
    return BLOCK_SIZE * Format.of(fmt).spec.bits // 8


@dataclass(frozen=True)
class OperandPlace:
    """Python side of :class:`OperandAddress` (any integers, so illegal ones can be built)."""
    codes: int
    codes_stride: int
    scales: int
    scales_stride: int

    @classmethod
    def of(cls, layout: MxOperandLayout) -> "OperandPlace":
        return cls(layout.codes_base, layout.codes_row_stride, layout.scales_base,
                   layout.scales_row_stride)

    def layout(self, *, rows, k_blocks, fmt) -> MxOperandLayout:
        return MxOperandLayout(rows=rows, k=k_blocks * BLOCK_SIZE, fmt=fmt,
                               codes_base=self.codes, codes_row_stride=self.codes_stride,
                               scales_base=self.scales, scales_row_stride=self.scales_stride)

    def fields(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ResultPlace:
    """Python side of :class:`ResultAddress`."""
    base: int
    stride: int

    @classmethod
    def of(cls, layout: Fp32MatrixLayout) -> "ResultPlace":
        return cls(layout.base, layout.row_stride)

    def layout(self, *, rows, cols) -> Fp32MatrixLayout:
        return Fp32MatrixLayout(rows=rows, cols=cols, base=self.base, row_stride=self.stride)

    def fields(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TileOp:
    """A tile op in Python: :class:`TtuOp` plus the places of A, B and C."""
    op: TtuOp
    a: OperandPlace
    b: OperandPlace
    c: ResultPlace

    def command(self) -> dict:
        """The :class:`TileOpCommand` fields (for ``harness.streams.pack``)."""
        return {"op": self.op.command(), "a": self.a.fields(), "b": self.b.fields(),
                "c": self.c.fields()}


def _ceil_div(a, b):
    return -(-a // b)


def tile_op_status(t: TileOp, *, formats, rows, cols, slots, panel_blocks,
                   tsram_bytes) -> ErrorCode:
    """The status the engine gives ``t`` (module docstring, rules 1-5)."""
    op = t.op
    limit = (1 << ADDR_BITS) - 1
    if not (1 <= op.m and 1 <= op.n and 1 <= op.k <= panel_blocks):
        return ErrorCode.ILLEGAL_SHAPE
    if op.fmt_a not in formats or op.fmt_b not in formats:
        return ErrorCode.FORMAT_NOT_BUILT
    if (op.accumulate or op.keep) and _ceil_div(op.m, rows) * _ceil_div(op.n, cols) > slots:
        return ErrorCode.ILLEGAL_SHAPE
    planes = []    # (base, stride, row bytes, rows)
    for place, fmt, nrows in ((t.a, op.fmt_a, op.m), (t.b, op.fmt_b, op.n)):
        for value in (place.codes, place.codes_stride, place.scales, place.scales_stride):
            if not 0 <= value <= limit:
                raise ValueError(f"an address field does not fit {ADDR_BITS} bits: {value}")
        if place.codes % CODE_ALIGN or place.codes_stride % CODE_ALIGN:
            return ErrorCode.ILLEGAL_FIELD
        if place.codes_stride < op.k * block_bytes(fmt) or place.scales_stride < op.k:
            return ErrorCode.ILLEGAL_FIELD
        planes += [(place.codes, place.codes_stride, op.k * block_bytes(fmt), nrows),
                   (place.scales, place.scales_stride, op.k, nrows)]
    if not op.keep:
        if t.c.base % C_ALIGN or t.c.stride % C_ALIGN or t.c.stride < 4 * op.n:
            return ErrorCode.ILLEGAL_FIELD
        planes.append((t.c.base, t.c.stride, 4 * op.n, op.m))
    for base, stride, row_bytes, nrows in planes:
        if base + (nrows - 1) * stride + row_bytes > tsram_bytes:
            return ErrorCode.TSRAM_OUT_OF_RANGE
    return ErrorCode.OK


def execute_tile_op(memory: np.ndarray, t: TileOp, resident, *, formats, rows, cols, slots,
                    panel_blocks, tsram_bytes):
    """The golden tile-command layer: run ``t`` on ``memory`` (1-D uint8, modified in place).

    ``resident``: the accumulators left by earlier ``keep`` ops (M x N uint32 bits) or None.
    Returns ``(status, C bits, resident')``; a rejected op changes neither memory nor the
    resident accumulators (C bits None).
    """
    status = tile_op_status(t, formats=formats, rows=rows, cols=cols, slots=slots,
                            panel_blocks=panel_blocks, tsram_bytes=tsram_bytes)
    if status != ErrorCode.OK:
        return status, None, resident
    op = t.op
    a_codes, a_scales = t.a.layout(rows=op.m, k_blocks=op.k, fmt=op.fmt_a).read(memory)
    b_codes, b_scales = t.b.layout(rows=op.n, k_blocks=op.k, fmt=op.fmt_b).read(memory)
    k = op.k * BLOCK_SIZE
    a = MXTensor(codes=a_codes, scales=a_scales, fmt=op.fmt_a, axis=1, shape=(op.m, k))
    b = MXTensor(codes=np.ascontiguousarray(b_codes.T), scales=np.ascontiguousarray(b_scales.T),
                 fmt=op.fmt_b, axis=0, shape=(k, op.n))
    c, kept = tensor_unit_op(op, a, b, resident)
    if not op.keep:
        t.c.layout(rows=op.m, cols=op.n).write_bits(memory, c)
    return status, c, kept


def fetch_jobs(t: TileOp, *, side: str, rows: int, cols: int, pair: bool) -> list[dict]:
    """The :class:`~.operand_fetch.FetchJob` fields the engine gives its ``side`` ("a" or "b")
    fetcher for ``t``: A one job an M tile (``rows`` rows); B, for every M tile, one job a pair
    of N tiles (``2 x cols`` rows). ``pair``: FP4 x FP4 double-rate mode."""
    op = t.op
    m_tiles, n_tiles = _ceil_div(op.m, rows), _ceil_div(op.n, cols)
    place, fmt = (t.a, op.fmt_a) if side == "a" else (t.b, op.fmt_b)
    groups = ([(mt * rows, min(rows, op.m - mt * rows)) for mt in range(m_tiles)] if side == "a"
              else [(p * cols, min(2 * cols, op.n - p * cols))
                    for _ in range(m_tiles) for p in range(0, n_tiles, 2)])
    return [{"codes": place.codes + first * place.codes_stride,
             "codes_stride": place.codes_stride,
             "scales": place.scales + first * place.scales_stride,
             "scales_stride": place.scales_stride, "rows": count, "k": op.k,
             "fmt": fmt.spec.hw_code, "pair": int(pair), "last": int(n == len(groups) - 1)}
            for n, (first, count) in enumerate(groups)]
