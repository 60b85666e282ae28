"""The TTU's result writer: C rows -> FP32 rows in tile SRAM.

:class:`ResultWriter` writes every :class:`~.ttu_stream.CRow` the TTU streams at
``base + row * stride + 4 * col`` (docs/layout.md section 7) through one
:class:`~..bus.memory_port.MemoryPortSignature` port, with strobes on exactly the row's valid
columns (never the gaps, never a masked column). A row that crosses a port-word boundary takes
two writes. ``place`` gives the base and stride of each op that streams C, and is taken with the
op's last row; after that row's writes are accepted, ``done`` carries one token (a write is
visible to any read the SRAM accepts later).
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..bus.memory_port import MemoryPortSignature
from .tile_op import ADDR_BITS, ResultAddress
from .ttu_stream import CRow

__all__ = ["ResultWriter", "WriterCounters", "FAULTS"]

#: Deliberate bugs for mutation tests: ``full_strobes`` (every byte of a written word strobed,
#: so gaps and neighbouring data are overwritten), ``drop_high_word`` (a row that crosses a word
#: boundary loses the part in the second word).
FAULTS = ("full_strobes", "drop_high_word")


class WriterCounters(data.Struct):
    """``rows`` written; ``writes`` (requests); ``busy``: cycles holding a row;
    ``stall_output``: cycles a write waits for the SRAM."""
    rows:         48
    writes:       48
    busy:         48
    stall_output: 48


def _log2(n):
    return n.bit_length() - 1


class ResultWriter(wiring.Component):
    """C rows -> tile SRAM (module docstring).

    Parameters
    ----------
    cols : int
        Values a C row (power of two).
    word_bytes : int
        Bytes a write moves (power of two >= 4 x ``cols``).
    addr_width : int
        Address bits of the port (``word_bytes`` units).
    faults : collection of str
        Deliberate bugs from :data:`FAULTS`; empty for the real design.

    Ports
    -----
    rows : In(stream of CRow.of(cols))
    place : In(stream of ResultAddress)
    mem : Out(MemoryPortSignature(addr_width=addr_width, data_width=8 * word_bytes))
    done : Out(stream of 1)       one token (payload 0) per op
    counters : Out(WriterCounters), counters_clear : In(1)
    """

    def __init__(self, *, cols, word_bytes, addr_width, faults=frozenset()):
        faults = frozenset(faults)
        if not faults <= set(FAULTS):
            raise ValueError(f"unknown faults {sorted(faults - set(FAULTS))}")
        self._faults = faults
        if not isinstance(cols, int) or cols < 1 or cols & (cols - 1):
            raise ValueError(f"cols must be a power of two, not {cols!r}")
        if (not isinstance(word_bytes, int) or word_bytes & (word_bytes - 1)
                or word_bytes < 4 * cols):
            raise ValueError(f"word_bytes must be a power of two >= 4 x cols ({4 * cols}), "
                             f"not {word_bytes!r}")
        if not isinstance(addr_width, int) or not 1 <= addr_width <= ADDR_BITS:
            raise ValueError(f"addr_width must be in 1..{ADDR_BITS}, not {addr_width!r}")
        self._cols, self._word_bytes, self._addr_width = cols, word_bytes, addr_width
        super().__init__({
            "rows": In(stream.Signature(CRow.of(cols))),
            "place": In(stream.Signature(ResultAddress)),
            "mem": Out(MemoryPortSignature(addr_width=addr_width, data_width=8 * word_bytes)),
            "done": Out(stream.Signature(1)),
            "counters": Out(WriterCounters), "counters_clear": In(1),
        })

    cols = property(lambda self: self._cols)
    word_bytes = property(lambda self: self._word_bytes)

    def elaborate(self, platform):
        m = Module()
        cols, W = self._cols, self._word_bytes
        row, place = self.rows.payload, self.place.payload

        # stage: one row, placed in a two-word window
        held = Signal()
        group = Signal(ADDR_BITS - _log2(W))
        wdata = Signal(16 * W)
        wstrb = Signal(2 * W)
        hi = Signal()                  # the low word is written (or had no strobes)
        last = Signal()
        addr = Signal(ADDR_BITS + 17)
        m.d.comb += addr.eq(place.base + row.row * place.stride + 4 * row.col)
        off = Signal(range(max(W // 4, 2)))
        if W > 4:
            m.d.comb += off.eq(addr[2:_log2(W)])
        values = Cat(*row.values)
        strobes = Cat(*(Mux(row.mask[j], 0b1111, 0) for j in range(cols)))
        shifted_d = [Cat(Const(0, 32 * o), values, Const(0, 16 * W - 32 * o - 32 * cols))
                     for o in range(W // 4)]
        shifted_s = [Cat(Const(0, 4 * o), strobes, Const(0, 2 * W - 4 * o - 4 * cols))
                     for o in range(W // 4)]
        if "drop_high_word" in self._faults:
            shifted_s = [x[:W] for x in shifted_s]

        def pick(options):
            return options[0] if len(options) == 1 else Array(options)[off]

        req = self.mem.req
        m.submodules.done_q = done_q = SyncFIFOBuffered(width=1, depth=4)
        lo_strb, hi_strb = wstrb[:W], wstrb[W:]
        final = Signal()               # the held row's last write goes this cycle (or none left)
        m.d.comb += [
            req.payload.write.eq(1),
            req.payload.addr.eq(group + hi),
            req.payload.data.eq(Mux(hi, wdata[8 * W:], wdata[:8 * W])),
            req.payload.strb.eq(Const((1 << W) - 1, W) if "full_strobes" in self._faults
                                else Mux(hi, hi_strb, lo_strb)),
            req.valid.eq(held & Mux(hi, hi_strb.any(), lo_strb.any())
                         & (~last | done_q.w_rdy)),
        ]
        m.d.comb += final.eq(held & (~last | done_q.w_rdy)
                             & Mux(hi, req.ready,
                                   ~hi_strb.any() & (~lo_strb.any() | req.ready)))
        with m.If(held & ~hi & (~lo_strb.any() | req.ready) & hi_strb.any()
                  & (~last | done_q.w_rdy)):
            m.d.sync += hi.eq(1)
        take = Signal()
        m.d.comb += [
            take.eq(self.rows.valid & self.place.valid & (~held | final)),
            self.rows.ready.eq(take),
            self.place.ready.eq(take & row.last),
            done_q.w_en.eq(final & last), done_q.w_data.eq(0),
            self.done.valid.eq(done_q.r_rdy), self.done.payload.eq(0),
            done_q.r_en.eq(self.done.ready),
        ]
        with m.If(final):
            m.d.sync += [held.eq(0), hi.eq(0)]
        with m.If(take):
            m.d.sync += [held.eq(1), hi.eq(0), last.eq(row.last), group.eq(addr >> _log2(W)),
                         wdata.eq(pick(shifted_d)), wstrb.eq(pick(shifted_s))]

        cnt = self.counters
        with m.If(take):
            m.d.sync += cnt.rows.eq(cnt.rows + 1)
        with m.If(req.valid & req.ready):
            m.d.sync += cnt.writes.eq(cnt.writes + 1)
        with m.If(held):
            m.d.sync += cnt.busy.eq(cnt.busy + 1)
        with m.If(req.valid & ~req.ready):
            m.d.sync += cnt.stall_output.eq(cnt.stall_output + 1)
        with m.If(self.counters_clear):
            m.d.sync += self.counters.eq(0)
        return m
