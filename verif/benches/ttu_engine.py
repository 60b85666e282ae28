"""Workloads for the TileTensorEngine (TTU + operand fetchers + result writer) and its cocotb
bench.

:class:`EngineWorkload` places random tile ops in a memory image (operands at random legal
addresses and strides, every op's C in its own region), adds illegal ops (each rule of
``tile_op``), keep / accumulate chains, and runs the golden tile-command layer
(``execute_tile_op``) over a copy of the image: the expected events, in order, and the expected
final memory (every C row written where its op says, nothing else touched).

The cocotb bench (``random_ops``) drives the engine inside a test top with a real
:class:`~openmaia.tile.tsram.TileSram` (``EngineWithTileSram`` in verif/tests/test_ttu_engine.py):
it loads the image through the ``host`` port, sends the commands with random gaps, takes events
with random backpressure, reads the whole SRAM back through ``host`` and compares it byte for
byte, and the events in order.
"""

import random

import numpy as np

from openmaia.errors import ErrorCode
from openmaia.layout import packed_row_bytes
from openmaia.numerics.formats import BLOCK_SIZE, Format
from openmaia.tile.tile_op import (OperandPlace, ResultPlace, TileOp, block_bytes,
                                   execute_tile_op, tile_op_status)
from openmaia.tile.ttu_stream import TtuOp

from .ttu import random_operand

__all__ = ["EngineWorkload", "ILLEGAL_KINDS"]

ILLEGAL_KINDS = ("k_zero", "k_too_big", "format", "resident_tiles", "codes_misaligned",
                 "codes_stride_small", "scales_stride_small", "c_misaligned", "c_stride_small",
                 "out_of_range")


class EngineWorkload:
    """Ops in a memory image of ``tsram_bytes`` with their expected events and final memory."""

    def __init__(self, *, rows, cols, slots, panel_blocks, formats, tsram_bytes, seed):
        self.geom = dict(formats=frozenset(Format.of(f) for f in formats), rows=rows, cols=cols,
                         slots=slots, panel_blocks=panel_blocks, tsram_bytes=tsram_bytes)
        self.rows, self.cols, self.slots, self.panel_blocks = rows, cols, slots, panel_blocks
        self.formats = sorted(self.geom["formats"], key=lambda f: f.value)
        self.tsram_bytes = tsram_bytes
        self.rng = random.Random(seed)
        self.nprng = np.random.default_rng(seed)
        self.memory = np.zeros(tsram_bytes, np.uint8)
        self.cursor = 0
        self.ops: list[TileOp] = []
        self.kinds: list[str] = []

    # -- placement ------------------------------------------------------------------------
    def _take(self, nbytes, align):
        base = self.cursor + self.rng.randrange(0, 40)
        base = -(-base // align) * align
        if base + nbytes > self.tsram_bytes:
            raise MemoryError("workload does not fit the SRAM")
        self.cursor = base + nbytes
        return base

    def _operand(self, fmt, nrows, k):
        codes, scales = random_operand(self.nprng, fmt, nrows, k, 0.1)
        row_bytes = packed_row_bytes(k * BLOCK_SIZE, fmt)
        cstride = row_bytes + 8 * self.rng.choice([0, 0, 1, 3])
        sstride = k + self.rng.choice([0, 0, 1, 7])
        cbase = self._take((nrows - 1) * cstride + row_bytes, 8)
        sbase = self._take((nrows - 1) * sstride + k, 1)
        place = OperandPlace(cbase, cstride, sbase, sstride)
        place.layout(rows=nrows, k_blocks=k, fmt=fmt).write(self.memory, codes, scales)
        return place

    def _result(self, m, n):
        stride = 4 * n + 4 * self.rng.choice([0, 0, 1, 5])
        return ResultPlace(self._take((m - 1) * stride + 4 * n, 4), stride)

    def fits(self, m, n, k):
        worst = 2 * (m + n) * (k * 32 + k + 16) + m * (4 * n + 24) + 256
        return self.cursor + worst <= self.tsram_bytes

    # -- ops ------------------------------------------------------------------------------
    def add(self, *, m, n, k, fmt_a, fmt_b, accumulate=False, keep=False, kind="random",
            places=None):
        op = TtuOp(m=m, n=n, k=k, fmt_a=fmt_a, fmt_b=fmt_b, accumulate=accumulate, keep=keep,
                   tag=len(self.ops) & 0xFF)
        if places is None:
            places = (self._operand(op.fmt_a, m, k), self._operand(op.fmt_b, n, k),
                      self._result(m, n))
        t = TileOp(op, *places)
        self.ops.append(t)
        self.kinds.append(kind)
        return t

    def random_op(self, *, max_m_tiles=3, max_n_tiles=4, kind="random"):
        rng = self.rng
        m = rng.randint(1, max_m_tiles * self.rows)
        n = rng.randint(1, max_n_tiles * self.cols)
        k = rng.choice([1, 2, self.panel_blocks, rng.randint(1, self.panel_blocks)])
        if not self.fits(m, n, k):
            return None
        return self.add(m=m, n=n, k=k, fmt_a=rng.choice(self.formats),
                        fmt_b=rng.choice(self.formats), kind=kind)

    def resident_chain(self):
        """keep, accumulate + keep, accumulate (streams C): one output that fits the slots."""
        rng = self.rng
        m = rng.randint(1, self.rows)
        n = rng.randint(1, self.cols * max(1, self.slots // 2))
        if not self.fits(3 * m, 3 * n, 2):
            return
        for accumulate, keep in ((False, True), (True, True), (True, False)):
            self.add(m=m, n=n, k=rng.randint(1, min(2, self.panel_blocks)),
                     fmt_a=rng.choice(self.formats), fmt_b=rng.choice(self.formats),
                     accumulate=accumulate, keep=keep, kind="resident")

    def illegal(self, kind):
        """A copy of a small legal op broken by one rule."""
        rng, f = self.rng, self.formats[0]
        base = self.add(m=self.rows, n=self.cols, k=1, fmt_a=f, fmt_b=f, kind="template")
        self.ops.pop(), self.kinds.pop()
        op, a, b, c = base.op, base.a, base.b, base.c
        fields = dict(m=op.m, n=op.n, k=op.k, fmt_a=op.fmt_a, fmt_b=op.fmt_b)
        if kind == "k_zero":
            fields["k"] = 0
        elif kind == "k_too_big":
            fields["k"] = self.panel_blocks + 1
        elif kind == "format":
            missing = [x for x in Format if x not in self.geom["formats"]]
            if not missing:
                return None
            fields["fmt_b"] = missing[0]
        elif kind == "resident_tiles":
            fields.update(n=self.cols * (self.slots + 1), keep=True)
        elif kind == "codes_misaligned":
            a = OperandPlace(a.codes + 4, a.codes_stride, a.scales, a.scales_stride)
        elif kind == "codes_stride_small":
            b = OperandPlace(b.codes, op.k * block_bytes(op.fmt_b) - 8, b.scales, b.scales_stride)
        elif kind == "scales_stride_small":
            a = OperandPlace(a.codes, a.codes_stride, a.scales, 0)
        elif kind == "c_misaligned":
            c = ResultPlace(c.base + 2, c.stride)
        elif kind == "c_stride_small":
            c = ResultPlace(c.base, 4 * op.n - 4)
        elif kind == "out_of_range":
            which = rng.randrange(3)
            if which == 0:
                a = OperandPlace(self.tsram_bytes - 8, a.codes_stride, a.scales, a.scales_stride)
            elif which == 1:
                b = OperandPlace(b.codes, b.codes_stride, self.tsram_bytes - 1, b.scales_stride)
            else:
                c = ResultPlace(self.tsram_bytes - 4 * op.n + 4, c.stride)
        t = self.add(places=(a, b, c), kind=kind, **fields)
        assert tile_op_status(t, **self.geom) != ErrorCode.OK, kind
        return t

    def random(self, count, *, illegal=0.15, chains=2):
        """``count`` random ops, ``chains`` resident chains and one of each illegal kind (with
        probability ``illegal`` more), in a random order of groups."""
        kinds = list(ILLEGAL_KINDS)
        plan = ["op"] * count + ["chain"] * chains + kinds
        self.rng.shuffle(plan)
        for item in plan:
            if item == "op":
                self.random_op()
            elif item == "chain":
                self.resident_chain()
            else:
                self.illegal(item)
            if self.rng.random() < illegal:
                self.illegal(self.rng.choice(kinds))
        return self

    # -- expectations ---------------------------------------------------------------------
    def expected(self):
        """(events, final memory): the golden tile-command layer over the ops in order."""
        memory = self.memory.copy()
        resident, events = None, []
        for t in self.ops:
            status, _, kept = execute_tile_op(memory, t, resident, **self.geom)
            if status == ErrorCode.OK:
                resident = kept
            events.append({"tag": t.op.tag, "status": int(status)})
        return events, memory

    def commands(self):
        return [t.command() for t in self.ops]

    def macs(self):
        return sum(t.op.m * t.op.n * t.op.k * BLOCK_SIZE for t in self.ops
                   if tile_op_status(t, **self.geom) == ErrorCode.OK)
