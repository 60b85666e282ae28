"""The Tile Tensor Unit's interfaces, defined once: the command, the operand and result stream
payloads, the completion event, and the order in which operand beats must arrive.

Contract (docs/ttu.md): a tile operation computes ``C (M x N, FP32) = A (M x K) x B (K x N) +
C0`` with K a whole number of 32-element blocks. A is the stationary operand: for each *M tile*
(``rows`` rows of A) the TTU loads a *panel* (every K block of those rows) into a double-buffered
panel buffer and reuses it for every N tile; B streams, one *B beat* a cycle. This module's
Python functions (:func:`schedule`, :func:`a_beats`, :func:`b_beats`, :func:`expected_rows`) are
the reference for that order; testbenches and the operand fetchers use them.
"""

import functools
from dataclasses import dataclass

import numpy as np
from amaranth.lib import data
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered

from ..numerics.dot import FP32_NEG_ZERO, mx_matmul
from ..numerics.formats import BLOCK_SIZE, Format
from ..numerics.mx import MXTensor

__all__ = ["queue", "TtuCommand", "OperandBeat", "CRow", "TtuEvent", "TtuOp", "TileCoord",
           "beats_per_block", "schedule", "a_beats", "b_beats", "expected_rows",
           "tensor_unit_op", "DIM_BITS", "TAG_BITS"]

#: Bits of the M, N and K (blocks) fields of a command.
DIM_BITS = 16
#: Bits of a command's tag (returned in its event and its C rows).
TAG_BITS = 8


def queue(*, width: int, depth: int):
    """A first-word-fall-through FIFO of ``depth`` entries for the TTU's op and job queues:
    ``SyncFIFOBuffered`` (registered output), or for ``depth`` 2 a ``SyncFIFO`` (a buffered one
    of 2 has a 1-entry memory whose zero-width address wires fail the lint)."""
    return SyncFIFO(width=width, depth=depth) if depth < 3 else \
        SyncFIFOBuffered(width=width, depth=depth)


class TtuCommand(data.Struct):
    """A tile operation.

    ``m``, ``n``: rows of A / C and columns of B / C (1 .. 65535); ``k``: K in 32-element
    blocks (1 .. ``panel_blocks``); ``fmt_a``, ``fmt_b``: element formats (``hw_code``);
    ``accumulate``: start every output from its accumulator's resident value instead of -0;
    ``keep``: leave the outputs resident instead of streaming C out (no C rows); ``tag``: echoed
    in the event and the C rows.
    """
    m:          DIM_BITS
    n:          DIM_BITS
    k:          DIM_BITS
    fmt_a:      3
    fmt_b:      3
    accumulate: 1
    keep:       1
    tag:        TAG_BITS


class OperandBeat(data.Struct):
    """One beat of A (``rows`` rows) or of B (``cols`` columns): :meth:`of` gives the layout.

    ``data[r]``: the ``lanes`` element bytes of row (column) ``r`` for this beat, exactly as an
    engine's ``DotBeat.a`` / ``.b`` (one code a byte; in FP4 x FP4 mode two codes a byte, low
    nibble first); ``scale[r]``: the E8M0 scale of the block this beat belongs to.
    """

    @staticmethod
    def of(count: int, lanes: int) -> data.StructLayout:
        return _operand_beat(count, lanes)


@functools.cache
def _operand_beat(count, lanes):
    return data.StructLayout({"data": data.ArrayLayout(data.ArrayLayout(8, lanes), count),
                              "scale": data.ArrayLayout(8, count)})


class CRow(data.Struct):
    """One row of an output tile: :meth:`of` gives the layout for ``cols`` columns.

    ``values[j]``: FP32 bits of ``C[row, col + j]``, valid where ``mask`` bit ``j`` is set
    (columns past N are 0 and masked); ``last``: the op's final row; ``tag``: the op's tag.
    """

    @staticmethod
    def of(cols: int) -> data.StructLayout:
        return _c_row(cols)


@functools.cache
def _c_row(cols):
    return data.StructLayout({"values": data.ArrayLayout(32, cols), "mask": cols,
                              "row": DIM_BITS, "col": DIM_BITS, "tag": TAG_BITS, "last": 1})


class TtuEvent(data.Struct):
    """Completion of one command: its ``tag`` and ``status`` (an ``ErrorCode``; 0 = done)."""
    tag:    TAG_BITS
    status: 8


@dataclass(frozen=True)
class TtuOp:
    """A tile operation in Python (the fields of :class:`TtuCommand`, formats by name)."""
    m: int
    n: int
    k: int
    fmt_a: Format
    fmt_b: Format
    accumulate: bool = False
    keep: bool = False
    tag: int = 0

    def __post_init__(self):
        object.__setattr__(self, "fmt_a", Format.of(self.fmt_a))
        object.__setattr__(self, "fmt_b", Format.of(self.fmt_b))

    def command(self) -> dict:
        """The :class:`TtuCommand` fields (for ``harness.streams.pack``)."""
        return {"m": self.m, "n": self.n, "k": self.k, "fmt_a": self.fmt_a.spec.hw_code,
                "fmt_b": self.fmt_b.spec.hw_code, "accumulate": int(self.accumulate),
                "keep": int(self.keep), "tag": self.tag}


@dataclass(frozen=True)
class TileCoord:
    """One beat of the compute order: M tile ``mt``, N tile ``nt``, block ``kb``, beat ``beat``."""
    mt: int
    nt: int
    kb: int
    beat: int


def _ceil_div(a, b):
    return -(-a // b)


def beats_per_block(fmt_a, fmt_b, lanes: int, fp4_double_rate: bool = True) -> int:
    """Beats one block takes: 16 / lanes for FP4 x FP4 (double rate), else 32 / lanes."""
    fp4 = Format.of(fmt_a) is Format.E2M1 and Format.of(fmt_b) is Format.E2M1
    return (BLOCK_SIZE // 2 if fp4 and fp4_double_rate else BLOCK_SIZE) // lanes


def schedule(op: TtuOp, *, rows: int, cols: int, lanes: int, fp4_double_rate: bool = True):
    """The compute order of ``op``: a list of :class:`TileCoord`, one per B beat.

    For each M tile, the N tiles go in pairs (the last pair may be one tile); within a pair the
    two tiles alternate block by block (block 0 of the first, block 0 of the second, block 1 of
    the first, ...), so the two outputs' FP32 accumulations interleave.
    """
    bpb = beats_per_block(op.fmt_a, op.fmt_b, lanes, fp4_double_rate)
    m_tiles, n_tiles = _ceil_div(op.m, rows), _ceil_div(op.n, cols)
    order = []
    for mt in range(m_tiles):
        for pair in range(0, n_tiles, 2):
            group = range(pair, min(pair + 2, n_tiles))
            for kb in range(op.k):
                for nt in group:
                    order += [TileCoord(mt, nt, kb, beat) for beat in range(bpb)]
    return order


def _beat_bytes(codes: np.ndarray, fmt_pair_fp4: bool, kb: int, beat: int, lanes: int):
    """The ``lanes`` bytes of one beat of one K-contiguous row of codes (length K)."""
    if fmt_pair_fp4:
        lo = codes[kb * BLOCK_SIZE + beat * 2 * lanes:][:2 * lanes:2]
        hi = codes[kb * BLOCK_SIZE + beat * 2 * lanes + 1:][:2 * lanes:2]
        return [int(x) | int(y) << 4 for x, y in zip(lo, hi, strict=True)]
    return [int(x) for x in codes[kb * BLOCK_SIZE + beat * lanes:][:lanes]]


def _operand_beats(codes_rows, scales_rows, count, tiles, fp4, lanes):
    """Beats over ``tiles`` (an iterable of (tile index, k block, beat)) of a row-major operand
    (``codes_rows``: R x K codes, ``scales_rows``: R x K/32), ``count`` rows a beat, padded."""
    R = codes_rows.shape[0]
    beats = []
    for t, kb, beat in tiles:
        rows_data, rows_scale = [], []
        for r in range(t * count, t * count + count):
            if r < R:
                rows_data.append(_beat_bytes(codes_rows[r], fp4, kb, beat, lanes))
                rows_scale.append(int(scales_rows[r, kb]))
            else:
                rows_data.append([0] * lanes)
                rows_scale.append(0)
        beats.append({"data": rows_data, "scale": rows_scale})
    return beats


def _is_fp4_pair(op, fp4_double_rate):
    return fp4_double_rate and op.fmt_a is Format.E2M1 and op.fmt_b is Format.E2M1


def a_beats(op: TtuOp, a: MXTensor, *, rows: int, lanes: int, fp4_double_rate=True):
    """The A stream of ``op``: per M tile, every block of its ``rows`` rows, beat by beat (rows
    past M are zero). ``a``: M x K, blocked along K."""
    bpb = beats_per_block(op.fmt_a, op.fmt_b, lanes, fp4_double_rate)
    tiles = [(mt, kb, beat) for mt in range(_ceil_div(op.m, rows))
             for kb in range(op.k) for beat in range(bpb)]
    return _operand_beats(a.codes, a.scales, rows, tiles, _is_fp4_pair(op, fp4_double_rate),
                          lanes)


def b_beats(op: TtuOp, b: MXTensor, *, rows: int, cols: int, lanes: int, fp4_double_rate=True):
    """The B stream of ``op`` in :func:`schedule` order (columns past N are zero). ``b``: K x N,
    blocked along K."""
    order = schedule(op, rows=rows, cols=cols, lanes=lanes, fp4_double_rate=fp4_double_rate)
    tiles = [(c.nt, c.kb, c.beat) for c in order]
    return _operand_beats(b.codes.T, b.scales.T, cols, tiles, _is_fp4_pair(op, fp4_double_rate),
                          lanes)


def expected_rows(op: TtuOp, c: np.ndarray, *, rows: int, cols: int):
    """The C rows the TTU streams for ``op`` (none when ``keep``), in order, from the M x N
    result ``c`` (float32 or uint32 bits): dicts of :class:`CRow` fields."""
    if op.keep:
        return []
    bits = np.ascontiguousarray(c).view(np.uint32)
    m_tiles, n_tiles = _ceil_div(op.m, rows), _ceil_div(op.n, cols)
    out = []
    for mt in range(m_tiles):
        for nt in range(n_tiles):
            c0 = nt * cols
            ncols = min(cols, op.n - c0)
            for r in range(mt * rows, min(mt * rows + rows, op.m)):
                values = [int(bits[r, c0 + j]) if j < ncols else 0 for j in range(cols)]
                out.append({"values": values, "mask": (1 << ncols) - 1, "row": r, "col": c0,
                            "tag": op.tag, "last": 0})
    out[-1]["last"] = 1
    return out


def tensor_unit_op(op: TtuOp, a: MXTensor, b: MXTensor, resident=None):
    """The golden tensor-unit layer: ``(C, resident')`` for one operation.

    ``resident``: the M x N FP32 accumulators left by earlier ``keep`` operations (bits), used
    when ``op.accumulate``; otherwise every output starts from -0. Returns the M x N result as
    ``uint32`` bits (the values the accumulators hold after the op) and what stays resident.
    """
    if op.accumulate:
        if resident is None:
            raise ValueError("an accumulate operation needs the resident accumulators")
        c0 = np.asarray(resident, np.uint32).view(np.float32)
    else:
        c0 = np.full((op.m, op.n), FP32_NEG_ZERO, np.uint32).view(np.float32)
    c = np.ascontiguousarray(mx_matmul(a, b, c0)).view(np.uint32)
    return c, (c if op.keep else None)
