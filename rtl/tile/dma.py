"""The tile DMA engine: strided copies between HBM (AXI4 manager) and the tile SRAM.

Contract: docs/dma.md. The descriptor and its reference semantics: :mod:`.dma_descriptor`.

Structure (descriptors from ``dma_queues`` queues served round-robin; a read descriptor may
issue its HBM reads while the read before it lands, anything else runs alone):

* :class:`DmaCheck` decides, from the descriptor and the queue's window alone, whether the
  descriptor runs or is rejected with an :class:`~openmaia.errors.ErrorCode`. It is
  combinational and small, on purpose (issue 8 proves the window property on it); with
  ``serial_checks`` its four multiplications share one shift-and-add multiplier, and the head
  descriptor waits for them.
* Two :class:`DmaChunkWalker` (HBM side, TSRAM side) walk the rows of the pattern and cut them
  into chunks that never cross an aligned ``split_bytes`` boundary (HBM side: the smaller of
  4 KiB and 256 beats, so one chunk is one legal AXI INCR burst). HBM rows without gaps between
  them are walked as one run.
* Two :class:`DmaBeatWalker` cut chunks into bus words (AXI beats, or ``W``-byte pieces of TSRAM
  words), each with its first byte lane ``lo`` and byte count ``n``.
* :class:`DmaByteFifo` joins the two sides: source words enter with their valid lanes, the
  destination takes exactly the bytes each of its words needs and places them at its lanes.
  This realigns any source offset to any destination offset at one word a cycle.
"""

from collections.abc import Iterable

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..bus.axi import (
    AXI4_MAX_BEATS,
    AXI_BOUNDARY_BYTES,
    Axi4Signature,
    AxiBurst,
    AxiResp,
)
from ..bus.memory_port import EccStatus, MemoryPortSignature
from ..bus.stream_register import StreamRegister
from ..compute.serial_multiplier import SerialMultiplier
from ..errors import ERROR_CODE_BITS, ErrorCode
from .dma_descriptor import (
    COUNT_BITS,
    TSRAM_ADDR_BITS,
    DmaDescriptorLayout,
    DmaDirection,
    DmaEventLayout,
)

__all__ = [
    "COUNTERS",
    "FAULTS",
    "DmaBeatWalker",
    "DmaByteFifo",
    "DmaCheck",
    "DmaChunkWalker",
    "TileDma",
]

#: Deliberate bugs for the mutation checks (docs/dma.md).
FAULTS = {
    "no_4k_split": "HBM chunks are cut at 256 beats from their start, not at 4 KiB boundaries",
    "window_off_by_one": "the window check lets the pattern end one byte past the limit",
    "full_strobes": "AXI writes and TSRAM writes carry all-ones strobes",
    "unstable_wdata": "unstrobed lanes of a waiting W beat / TSRAM write show bytes queued behind",
    "decerr_as_slverr": "any AXI error response (resp[1] set) is reported as AXI_SLVERR",
    "read_status_at_finish": "R errors go to the read that finishes next, not to the read "
                             "whose beat carried them",
    "serial_check_skip": "the serial descriptor check reports done when its last product starts, "
                         "not when it is ready (needs serial_checks)",
}

#: The counter outputs, each 32 bits.
COUNTERS = ("busy_cycles", "axi_stall_cycles", "tsram_stall_cycles", "bytes_read",
            "bytes_written", "descs_done", "descs_rejected")

COUNTER_BITS = 32
ROW_BITS = COUNT_BITS + 2   # count0 x element size (at most 4)


def _log2(n):
    return n.bit_length() - 1


def _is_pow2(n):
    return isinstance(n, int) and n > 0 and n & (n - 1) == 0


class _State(enum.Enum, shape=1):
    IDLE = 0
    RUN = 1


class DmaCheck(wiring.Component):
    """Whether a descriptor may run.

    Ports: ``desc`` (:class:`DmaDescriptorLayout`), ``window_base``, ``window_limit`` (inclusive
    byte addresses), ``status`` (``ErrorCode``; ``OK`` = run), ``hbm_last`` (last HBM byte the
    pattern touches) and ``hbm_plane`` (bytes from a plane's first HBM byte to one past its last
    row's end), both valid when the status is ``OK``.

    ``serial=False``: combinational, no state (issue 8 proves the window property on it).

    ``serial=True`` (``Config.serial_checks``): the four row-count x stride products come from
    one shared :class:`~openmaia.compute.serial_multiplier.SerialMultiplier`, one after the
    other, instead of four multipliers; everything else stays combinational, the window too.
    Extra ports ``start`` (In) and ``busy`` (Out). Contract: in a cycle with ``start`` high and
    ``busy`` low a check of ``desc`` begins (a ``start`` while ``busy`` is ignored); ``busy`` is
    then high for :attr:`cycles` ``- 1`` cycles, so the outputs are valid from :attr:`cycles`
    cycles after the start, until the next start. They equal the combinational check's for
    the same ``desc`` and the current window (``hbm_last`` and ``hbm_plane`` when the status is
    ``OK``; they are :attr:`extent_bits` = ``max(hbm_addr_bits, 18) + 2`` bits wide, which
    holds them then), provided ``desc`` does not change from the start until they are used.
    """

    def __init__(self, *, hbm_addr_bits, tsram_bytes, serial=False, faults=frozenset()):
        if not isinstance(serial, bool):
            raise TypeError(f"serial must be a bool, not {serial!r}")
        self.hbm_addr_bits = hbm_addr_bits
        self.tsram_bytes = tsram_bytes
        self.serial = serial
        self._faults = frozenset(faults)
        # Serial: narrow sums (see _serial), which still hold any passing descriptor's extent.
        self.extent_bits = (max(hbm_addr_bits, ROW_BITS) + 2 if serial
                            else hbm_addr_bits + ROW_BITS + 2)
        members = {
            "desc": In(DmaDescriptorLayout.of(hbm_addr_bits)),
            "window_base": In(hbm_addr_bits),
            "window_limit": In(hbm_addr_bits),
            "status": Out(ERROR_CODE_BITS),
            "hbm_last": Out(self.extent_bits),
            "hbm_plane": Out(self.extent_bits),
        }
        if serial:
            members.update({"start": In(1), "busy": Out(1)})
        super().__init__(members)

    #: Cycles from ``start`` to valid outputs (serial): four products of COUNT_BITS cycles
    #: each, plus one cycle each to take the product and start the next.
    SERIAL_CYCLES = 4 * (COUNT_BITS + 1)

    @property
    def cycles(self):
        """Cycles from ``start`` to valid outputs (0: combinational)."""
        return self.SERIAL_CYCLES if self.serial else 0

    def elaborate(self, platform):
        m = Module()
        d = self.desc
        row_bytes = Signal(ROW_BITS)
        bad_element = Signal()
        zero_count = Signal()
        with m.If(d.elem_size == 1):
            m.d.comb += row_bytes.eq(d.count0)
        with m.Elif(d.elem_size == 2):
            m.d.comb += row_bytes.eq(d.count0 << 1)
        with m.Elif(d.elem_size == 4):
            m.d.comb += row_bytes.eq(d.count0 << 2)
        with m.Else():
            m.d.comb += [row_bytes.eq(0), bad_element.eq(1)]
        m.d.comb += zero_count.eq((d.count0 == 0) | (d.count1 == 0) | (d.count2 == 0))

        if self.serial:
            overflow, ts_range = self._serial(m, row_bytes)
        else:
            overflow, ts_range = self._combinational(m, row_bytes)
        limit = Signal(self.hbm_addr_bits + 1)
        m.d.comb += limit.eq(self.window_limit + int("window_off_by_one" in self._faults))
        out_of_window = Signal()
        m.d.comb += out_of_window.eq((d.hbm_addr < self.window_base) | (self.hbm_last > limit))
        with m.If(bad_element):
            m.d.comb += self.status.eq(ErrorCode.DESC_BAD_ELEMENT)
        with m.Elif(zero_count):
            m.d.comb += self.status.eq(ErrorCode.DESC_ZERO_COUNT)
        with m.Elif(overflow):
            m.d.comb += self.status.eq(ErrorCode.DESC_STRIDE_OVERFLOW)
        with m.Elif(out_of_window):
            m.d.comb += self.status.eq(ErrorCode.DESC_OUT_OF_WINDOW)
        with m.Elif(ts_range):
            m.d.comb += self.status.eq(ErrorCode.TSRAM_OUT_OF_RANGE)
        with m.Else():
            m.d.comb += self.status.eq(ErrorCode.OK)
        return m

    def _combinational(self, m, row_bytes):
        d = self.desc

        def plane_and_last(addr, stride1, stride2, width):
            plane = Signal(width + ROW_BITS + 2)
            last = Signal(width + ROW_BITS + 2)
            m.d.comb += [plane.eq((d.count1 - 1) * stride1 + row_bytes),
                         last.eq(addr + (d.count2 - 1) * stride2 + plane - 1)]
            return plane, last

        hbm_plane, hbm_last = plane_and_last(d.hbm_addr, d.hbm_stride1, d.hbm_stride2,
                                             self.hbm_addr_bits)
        _, ts_last = plane_and_last(d.tsram_addr, d.tsram_stride1, d.tsram_stride2,
                                    TSRAM_ADDR_BITS)
        m.d.comb += [self.hbm_last.eq(hbm_last), self.hbm_plane.eq(hbm_plane)]
        overflow = Signal()
        m.d.comb += overflow.eq((hbm_last >> self.hbm_addr_bits).any()
                                | (ts_last >> TSRAM_ADDR_BITS).any())
        ts_range = Signal()
        m.d.comb += ts_range.eq(ts_last >= self.tsram_bytes)
        return overflow, ts_range

    def _serial(self, m, row_bytes):
        """Products in the order TSRAM stride1, TSRAM stride2, HBM stride2, HBM stride1, each
        ``count - 1`` (COUNT_BITS cycles) x stride. A product too large for its side to pass
        (TSRAM: at least 2**33; HBM: at least 2**hbm_addr_bits) only sets ``big`` (the pattern
        overflows, as the combinational check finds), so the sums are narrow. ``acc`` holds the
        TSRAM products' sum, whose two verdicts are then kept as flags, and next the HBM
        stride2 product; the HBM stride1 product stays in the multiplier."""
        d = self.desc
        aw = self.hbm_addr_bits
        tw = TSRAM_ADDR_BITS + 1
        m.submodules.mul = mul = SerialMultiplier(a_width=COUNT_BITS,
                                                  b_width=max(aw, TSRAM_ADDR_BITS))
        step = Signal(range(4))
        running = Signal()
        product_ready = Signal()
        last_done = Signal()
        idle = Signal()
        m.d.comb += [
            product_ready.eq(running & ~mul.busy),
            last_done.eq((step == 3) & (product_ready | ("serial_check_skip" in self._faults))),
            idle.eq(~running | last_done),
            self.busy.eq(~idle),
        ]
        # The operands of the product started in this cycle: step 0 at a check's start, else
        # the step after the one that has just finished.
        operand_step = Signal(range(4))
        count = Signal(COUNT_BITS)
        m.d.comb += [operand_step.eq(Mux(idle, 0, step + 1)),
                     count.eq(Mux(operand_step[0] ^ operand_step[1], d.count2, d.count1)),
                     mul.a.eq(count - 1)]
        with m.Switch(operand_step):
            for k, stride in enumerate((d.tsram_stride1, d.tsram_stride2, d.hbm_stride2,
                                        d.hbm_stride1)):
                with m.Case(k):
                    m.d.comb += mul.b.eq(stride)

        ts_big, hbm_big = Signal(), Signal()
        m.d.comb += [ts_big.eq((mul.product >> tw).any()),
                     hbm_big.eq((mul.product >> aw).any())]
        acc = Signal(max(tw + 1, aw))
        big = Signal()
        ts_last = Signal(tw + 3)
        ts_over, ts_range = Signal(), Signal()
        m.d.comb += ts_last.eq(d.tsram_addr + acc + row_bytes - 1)
        with m.If(product_ready):
            with m.If(step == 0):
                m.d.sync += [acc.eq(mul.product[:tw]), big.eq(ts_big)]
            with m.Elif(step == 1):
                m.d.sync += [acc.eq(acc + mul.product[:tw]), big.eq(big | ts_big)]
            with m.Elif(step == 2):
                m.d.sync += [acc.eq(mul.product[:aw]), big.eq(hbm_big),
                             ts_over.eq(big | (ts_last >> TSRAM_ADDR_BITS).any()),
                             ts_range.eq(ts_last >= self.tsram_bytes)]
            with m.If(step == 3):
                m.d.sync += running.eq(0)
            with m.Else():
                m.d.comb += mul.start.eq(1)
                m.d.sync += step.eq(step + 1)
        with m.If(idle & self.start):
            m.d.comb += mul.start.eq(1)
            m.d.sync += [running.eq(1), step.eq(0)]

        hbm_plane = Signal(self.extent_bits)
        hbm_last = Signal(self.extent_bits)
        m.d.comb += [hbm_plane.eq(mul.product[:aw] + row_bytes),
                     hbm_last.eq(d.hbm_addr + acc[:aw] + hbm_plane - 1),
                     self.hbm_last.eq(hbm_last), self.hbm_plane.eq(hbm_plane)]
        overflow = Signal()
        m.d.comb += overflow.eq((hbm_last >> aw).any() | big | hbm_big | ts_over)
        return overflow, ts_range


def _chunk_layout(addr_bits, split_bytes):
    return data.StructLayout({"addr": addr_bits, "nbytes": _log2(split_bytes) + 1,
                              "final": 1})


class DmaChunkWalker(wiring.Component):
    """Walks a ``count2 x count1`` pattern of rows and emits chunks of at most ``split_bytes``
    bytes, each inside one aligned ``split_bytes`` block, in row order.

    ``start`` (one cycle, while idle) loads ``base``, ``stride1``, ``stride2``, ``count1``,
    ``count2`` (non-zero) and ``row_bytes`` (non-zero); the walker then emits on ``chunks``
    (``addr``, ``nbytes``, ``final`` on the descriptor's last chunk) and ``busy`` stays high until
    the final chunk is taken. The caller guarantees (via :class:`DmaCheck`) that no address
    overflows ``addr_bits``. ``cut_at_start`` (a fault) cuts at ``split_bytes`` from the chunk's
    start instead of at aligned boundaries.
    """

    def __init__(self, *, addr_bits, split_bytes, row_bits=ROW_BITS, cut_at_start=False):
        if not _is_pow2(split_bytes):
            raise ValueError(f"split_bytes must be a power of two, not {split_bytes!r}")
        self.addr_bits = addr_bits
        self.split_bytes = split_bytes
        self.row_bits = row_bits
        self._cut_at_start = cut_at_start
        super().__init__({
            "start": In(1),
            "base": In(addr_bits), "stride1": In(addr_bits), "stride2": In(addr_bits),
            "count1": In(COUNT_BITS), "count2": In(COUNT_BITS), "row_bytes": In(row_bits),
            "busy": Out(1),
            "chunks": Out(stream.Signature(_chunk_layout(addr_bits, split_bytes))),
        })

    def elaborate(self, platform):
        m = Module()
        aw = self.addr_bits
        plane = Signal(aw)
        row = Signal(aw)
        cur = Signal(aw)
        left = Signal(self.row_bits)
        i1 = Signal(COUNT_BITS)
        i2 = Signal(COUNT_BITS)
        stride1, stride2 = Signal(aw), Signal(aw)
        count1, count2 = Signal(COUNT_BITS), Signal(COUNT_BITS)
        row_bytes = Signal(self.row_bits)
        active = Signal()

        sb = _log2(self.split_bytes)
        space = Signal(sb + 1)
        if self._cut_at_start:
            m.d.comb += space.eq(self.split_bytes)
        else:
            m.d.comb += space.eq(self.split_bytes - cur[:sb])
        nbytes = Signal(sb + 1)
        row_end = Signal()
        m.d.comb += [
            row_end.eq(left <= space),
            nbytes.eq(Mux(row_end, left, space)),
        ]
        last_row1 = Signal()
        last_row2 = Signal()
        m.d.comb += [last_row1.eq(i1 == count1 - 1), last_row2.eq(i2 == count2 - 1)]
        final = Signal()
        m.d.comb += final.eq(row_end & last_row1 & last_row2)
        m.d.comb += [
            self.busy.eq(active),
            self.chunks.valid.eq(active),
            self.chunks.payload.addr.eq(cur),
            self.chunks.payload.nbytes.eq(nbytes),
            self.chunks.payload.final.eq(final),
        ]
        with m.If(self.start & ~active):
            m.d.sync += [
                active.eq(1), plane.eq(self.base), row.eq(self.base), cur.eq(self.base),
                left.eq(self.row_bytes), i1.eq(0), i2.eq(0),
                stride1.eq(self.stride1), stride2.eq(self.stride2),
                count1.eq(self.count1), count2.eq(self.count2), row_bytes.eq(self.row_bytes),
            ]
        with m.If(self.chunks.valid & self.chunks.ready):
            with m.If(~row_end):
                m.d.sync += [cur.eq(cur + nbytes), left.eq(left - nbytes)]
            with m.Elif(~last_row1):
                m.d.sync += [i1.eq(i1 + 1), row.eq(row + stride1), cur.eq(row + stride1),
                             left.eq(row_bytes)]
            with m.Elif(~last_row2):
                m.d.sync += [i1.eq(0), i2.eq(i2 + 1), plane.eq(plane + stride2),
                             row.eq(plane + stride2), cur.eq(plane + stride2),
                             left.eq(row_bytes)]
            with m.Else():
                m.d.sync += active.eq(0)
        return m


def _beat_layout(addr_bits, word_bytes):
    return data.StructLayout({"word": addr_bits - _log2(word_bytes), "lo": _log2(word_bytes),
                              "n": _log2(word_bytes) + 1, "last": 1, "final": 1})


class DmaBeatWalker(wiring.Component):
    """Cuts chunks into ``word_bytes``-wide words: for each, the word address, the first byte
    lane ``lo``, the byte count ``n`` (>= 1), ``last`` (the chunk's last word) and ``final``
    (the descriptor's last word). When idle, a chunk's first word is offered in the cycle the
    chunk arrives (a combinational path from ``chunks`` to ``beats``)."""

    def __init__(self, *, addr_bits, split_bytes, word_bytes):
        self.addr_bits = addr_bits
        self.word_bytes = word_bytes
        super().__init__({
            "chunks": In(stream.Signature(_chunk_layout(addr_bits, split_bytes))),
            "beats": Out(stream.Signature(_beat_layout(addr_bits, word_bytes))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        wb = self.word_bytes
        lb = _log2(wb)
        word_r = Signal(self.addr_bits - lb)
        lo_r = Signal(lb)
        left_r = Signal(len(self.chunks.payload.nbytes))
        final_r = Signal()
        active = Signal()
        # While idle, a waiting chunk's first word goes out in the cycle the chunk arrives.
        word = Signal(self.addr_bits - lb)
        lo = Signal(lb)
        left = Signal(len(self.chunks.payload.nbytes))
        final = Signal()
        cp = self.chunks.payload
        m.d.comb += [
            word.eq(Mux(active, word_r, cp.addr[lb:])),
            lo.eq(Mux(active, lo_r, cp.addr[:lb])),
            left.eq(Mux(active, left_r, cp.nbytes)),
            final.eq(Mux(active, final_r, cp.final)),
        ]
        room = Signal(lb + 1)
        last = Signal()
        n = Signal(lb + 1)
        fire = Signal()
        m.d.comb += [
            room.eq(wb - lo),
            last.eq(left <= room),
            n.eq(Mux(last, left, room)),
            self.busy.eq(active),
            self.beats.valid.eq(active | self.chunks.valid),
            self.beats.payload.word.eq(word),
            self.beats.payload.lo.eq(lo),
            self.beats.payload.n.eq(n),
            self.beats.payload.last.eq(last),
            self.beats.payload.final.eq(last & final),
            self.chunks.ready.eq(~active | (self.beats.ready & last)),
            fire.eq(self.beats.valid & self.beats.ready),
        ]
        with m.If(active):
            with m.If(fire):
                m.d.sync += [word_r.eq(word + 1), lo_r.eq(0), left_r.eq(left - n)]
                with m.If(last):
                    m.d.sync += active.eq(0)
            with m.If(self.chunks.valid & self.chunks.ready):
                m.d.sync += [active.eq(1), word_r.eq(cp.addr[lb:]), lo_r.eq(cp.addr[:lb]),
                             left_r.eq(cp.nbytes), final_r.eq(cp.final)]
        with m.Elif(self.chunks.valid):
            # The chunk is taken now; keep what is left of it, if anything.
            m.d.sync += [word_r.eq(word), lo_r.eq(lo), left_r.eq(left), final_r.eq(final)]
            with m.If(fire):
                m.d.sync += [word_r.eq(word + 1), lo_r.eq(0), left_r.eq(left - n),
                             active.eq(~last)]
            with m.Else():
                m.d.sync += active.eq(1)
        return m


class DmaByteFifo(wiring.Component):
    """A byte queue of ``2 * word_bytes`` bytes that realigns words, with fall-through.

    ``i``: a word with its valid lanes ``lo .. lo + n - 1``; those bytes are appended in order.
    ``o``: the consumer presents ``o_lo``, ``o_n`` and ``o_valid``; when ``n`` bytes are queued or
    offered on ``i`` in this cycle, ``o_ready`` is high, ``o_data`` holds the next ``n`` bytes at
    lanes ``lo ..`` and ``o_strb`` marks them (the other lanes of ``o_data`` are zero, so a
    waiting word stays stable); the transfer takes place at ``o_valid & o_ready``. Whenever
    ``o_ready`` counts bytes from ``i``, ``i_ready`` is high too, so they are taken in that
    cycle. One word in and one out a cycle. ``level`` is the number of bytes queued.
    """

    def __init__(self, *, word_bytes, unmasked=False):
        if not _is_pow2(word_bytes):
            raise ValueError(f"word_bytes must be a power of two, not {word_bytes!r}")
        self.word_bytes = word_bytes
        self._unmasked = unmasked
        lb = _log2(word_bytes)
        super().__init__({
            "i_valid": In(1), "i_ready": Out(1), "i_data": In(8 * word_bytes),
            "i_lo": In(lb), "i_n": In(lb + 1),
            "o_valid": In(1), "o_ready": Out(1), "o_lo": In(lb), "o_n": In(lb + 1),
            "o_data": Out(8 * word_bytes), "o_strb": Out(word_bytes),
            "level": Out(range(2 * word_bytes + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        wb = self.word_bytes
        lb = _log2(wb)
        buf = Signal(16 * wb)
        level = self.level
        offered = Signal(range(3 * wb + 1))
        take = Signal()
        took = Signal(lb + 1)
        kept_wb = Signal(range(3 * wb + 1))      # bytes kept after the take, plus wb (>= 0)
        put = Signal()
        shifted_in = Signal(8 * wb)
        masked_in = Signal(8 * wb)
        in_mask = Signal(8 * wb)
        in_head = Signal(8 * wb)
        head = Signal(8 * wb)
        out_mask = Signal(8 * wb)
        drained = Signal(16 * wb)
        inserted = Signal(16 * wb)
        m.d.comb += [
            shifted_in.eq(self.i_data >> (self.i_lo << 3)),
            in_mask.eq(~(Const(-1, 8 * wb + 8) << (self.i_n << 3))),
            masked_in.eq(shifted_in & in_mask),
            offered.eq(level + Mux(self.i_valid, self.i_n, 0)),
            self.o_ready.eq(offered >= self.o_n),
            take.eq(self.o_valid & self.o_ready),
            took.eq(Mux(take, self.o_n, 0)),
            kept_wb.eq(level + wb - took),
            self.i_ready.eq(kept_wb <= 2 * wb),
            put.eq(self.i_valid & self.i_ready),
            # The bytes above `level` in `buf` are zero; the offered bytes follow the queued.
            in_head.eq(Mux(level < wb, masked_in << (level[:lb] << 3), 0)),
            head.eq(buf[:8 * wb] | in_head),
            out_mask.eq(Const(-1, 8 * wb) if self._unmasked
                        else ~(Const(-1, 8 * wb + 8) << (self.o_n << 3))),
            self.o_data.eq((head & out_mask) << (self.o_lo << 3)),
            self.o_strb.eq(~(Const(-1, wb + 1) << self.o_n) << self.o_lo),
            drained.eq(buf >> (took << 3)),
            # The new bytes land at byte `kept` = kept_wb - wb (negative when the take used
            # some of them): shift by kept_wb, drop the low wb bytes.
            inserted.eq((masked_in << (kept_wb << 3)) >> (8 * wb)),
        ]
        with m.If(take | put):
            m.d.sync += [
                buf.eq(drained | Mux(put, inserted, 0)),
                level.eq(kept_wb - wb + Mux(put, self.i_n, 0)),
            ]
        return m


class TileDma(wiring.Component):
    """The tile DMA engine (contract: docs/dma.md).

    Parameters
    ----------
    axi_addr_bits, axi_data_bits, axi_id_bits : int
        The AXI4 manager port ``m_axi``.
    tsram_bank_bytes, tsram_bytes : int
        The TSRAM requester port ``tsram``: one word is ``tsram_bank_bytes`` (a power-of-two
        multiple of the AXI data bytes); ``tsram_bytes`` is the SRAM's size.
    queues, queue_depth : int
        Descriptor queues ``desc[q]`` and the entries each buffers.
    outstanding_reads : int
        Depth of the read chunk FIFO: at most ``outstanding_reads + 1`` AXI read bursts are in
        flight (the beat walker holds one more); also the AXI write bursts the engine runs ahead
        of its data.
    tsram_reads : int
        TSRAM reads in flight.
    serial_checks : bool
        Check descriptors with the serial :class:`DmaCheck` (``Config.serial_checks``): the
        same verdicts from one shift-and-add multiplier instead of four combinational ones;
        the head descriptor waits :attr:`DmaCheck.SERIAL_CYCLES` cycles for its check, which
        overlaps the transfer before it.
    request_slice : bool
        TSRAM requests leave through a :class:`~..bus.stream_register.StreamRegister`
        (``Config.dma_request_slice``): no path from the TSRAM's ``req.ready`` to anything but
        the slice, for a cycle more a descriptor (two for HBM -> TSRAM, whose event then waits
        until the slice is empty instead of coming with the last write).
    faults : collection of str
        Deliberate bugs from :data:`FAULTS`; empty for the real design.

    Ports: ``m_axi``, ``tsram``, ``desc`` (array of ``queues`` streams of descriptors),
    ``window_base`` / ``window_limit`` (arrays of ``queues`` inclusive byte addresses),
    ``event`` (stream of {queue, tag, status}), ``busy``, ``last_status``, the counters of
    :data:`COUNTERS`, and ``counters_clear`` (zeroes them).
    """

    def __init__(self, *, axi_addr_bits, axi_data_bits, axi_id_bits, tsram_bank_bytes,
                 tsram_bytes, queues, queue_depth, outstanding_reads, tsram_reads=4,
                 serial_checks=False, request_slice=False, faults=frozenset()):
        for name, value in (("axi_addr_bits", axi_addr_bits), ("axi_id_bits", axi_id_bits),
                            ("queues", queues), ("queue_depth", queue_depth),
                            ("outstanding_reads", outstanding_reads),
                            ("tsram_reads", tsram_reads)):
            if not isinstance(value, int) or value < 1:
                raise TypeError(f"{name} must be a positive integer, not {value!r}")
        self.axi_sig = Axi4Signature(addr_width=axi_addr_bits, data_width=axi_data_bits,
                                     id_width=axi_id_bits)
        self.word_bytes = self.axi_sig.data_bytes
        if not _is_pow2(tsram_bank_bytes) or tsram_bank_bytes % self.word_bytes:
            raise ValueError(f"tsram_bank_bytes ({tsram_bank_bytes}) must be a power of two "
                             f"and a multiple of the AXI data bytes ({self.word_bytes})")
        if not _is_pow2(tsram_bytes) or tsram_bytes < tsram_bank_bytes:
            raise ValueError(f"tsram_bytes must be a power of two >= tsram_bank_bytes, "
                             f"not {tsram_bytes!r}")
        if tsram_bytes > 1 << TSRAM_ADDR_BITS:
            raise ValueError(f"tsram_bytes must be at most 2**{TSRAM_ADDR_BITS}")
        if isinstance(faults, str) or not isinstance(faults, Iterable):
            raise TypeError(f"faults must be a collection of fault names, not {faults!r}")
        faults = frozenset(faults)
        if faults - FAULTS.keys():
            raise ValueError(f"unknown faults {sorted(faults - FAULTS.keys())}; "
                             f"known: {', '.join(FAULTS)}")
        if not isinstance(serial_checks, bool):
            raise TypeError(f"serial_checks must be a bool, not {serial_checks!r}")
        if not isinstance(request_slice, bool):
            raise TypeError(f"request_slice must be a bool, not {request_slice!r}")
        self._request_slice = request_slice
        if "serial_check_skip" in faults and not serial_checks:
            raise ValueError("fault serial_check_skip needs serial_checks=True")
        self._serial_checks = serial_checks
        self.axi_addr_bits = axi_addr_bits
        self.tsram_bank_bytes = tsram_bank_bytes
        self.tsram_bytes = tsram_bytes
        self.queues = queues
        self.queue_depth = queue_depth
        self.outstanding_reads = outstanding_reads
        self.tsram_reads = tsram_reads
        self.faults = faults
        self.hbm_split = min(AXI_BOUNDARY_BYTES, AXI4_MAX_BEATS * self.word_bytes)
        self.tsram_words = tsram_bytes // tsram_bank_bytes
        self.desc_layout = DmaDescriptorLayout.of(axi_addr_bits)
        self.event_layout = DmaEventLayout.of(max(1, (queues - 1).bit_length()))
        tsram_sig = MemoryPortSignature(addr_width=max(1, _log2(self.tsram_words)),
                                        data_width=8 * tsram_bank_bytes)
        members = {
            "m_axi": Out(self.axi_sig),
            "tsram": Out(tsram_sig),
            "desc": In(stream.Signature(self.desc_layout)).array(queues),
            "window_base": In(data.ArrayLayout(axi_addr_bits, queues)),
            "window_limit": In(data.ArrayLayout(axi_addr_bits, queues)),
            "event": Out(stream.Signature(self.event_layout)),
            "busy": Out(1),
            "last_status": Out(ERROR_CODE_BITS),
            "counters_clear": In(1),
        }
        members.update({name: Out(COUNTER_BITS) for name in COUNTERS})
        super().__init__(members)

    serial_checks = property(lambda self: self._serial_checks)

    @classmethod
    def from_config(cls, config, **kwargs):
        kwargs.setdefault("serial_checks", config.serial_checks)
        kwargs.setdefault("request_slice", config.dma_request_slice)
        return cls(axi_addr_bits=config.axi_addr_bits, axi_data_bits=config.axi_data_bits,
                   axi_id_bits=config.axi_id_bits, tsram_bank_bytes=config.tsram_bank_bytes,
                   tsram_bytes=config.tsram_bytes, queues=config.dma_queues,
                   queue_depth=config.dma_queue_depth,
                   outstanding_reads=config.dma_outstanding_reads, **kwargs)

    def elaborate(self, platform):
        m = Module()
        wb = self.word_bytes
        lb = _log2(wb)
        aw = self.axi_addr_bits
        axi = self.m_axi
        ts = self.tsram
        nq = self.queues
        qbits = max(1, (nq - 1).bit_length())

        # Descriptor queues, round-robin pick. An empty queue is bypassed: the descriptor on its
        # input is its head, and a pop takes it without writing it into the queue.
        heads = []
        for q in range(nq):
            width = len(self.desc[q].payload.as_value())
            fifo = SyncFIFO(width=width, depth=self.queue_depth)
            m.submodules[f"queue{q}"] = fifo
            h_rdy = Signal(name=f"head{q}_rdy")
            h_data = Signal(width, name=f"head{q}_data")
            h_pop = Signal(name=f"head{q}_pop")
            m.d.comb += [
                h_rdy.eq(fifo.r_rdy | self.desc[q].valid),
                h_data.eq(Mux(fifo.r_rdy, fifo.r_data, self.desc[q].payload.as_value())),
                fifo.r_en.eq(h_pop),
                fifo.w_data.eq(self.desc[q].payload.as_value()),
                fifo.w_en.eq(self.desc[q].valid & ~(h_pop & ~fifo.r_rdy)),
                self.desc[q].ready.eq(fifo.w_rdy),
            ]
            heads.append((h_rdy, h_data, h_pop))

        desc = Signal(self.desc_layout)
        head = Signal(self.desc_layout)
        queue = Signal(qbits)
        rr = Signal(qbits)
        pick = Signal(qbits)
        xfer_status = Signal(ERROR_CODE_BITS)

        m.submodules.check = check = DmaCheck(
            hbm_addr_bits=aw, tsram_bytes=self.tsram_bytes, serial=self._serial_checks,
            faults=self.faults & {"window_off_by_one", "serial_check_skip"})
        base_sel = Signal(aw)
        limit_sel = Signal(aw)
        for q in range(nq):
            with m.If(pick == q):
                m.d.comb += [head.as_value().eq(heads[q][1]),
                             base_sel.eq(self.window_base[q]),
                             limit_sel.eq(self.window_limit[q])]
        m.d.comb += [check.desc.eq(head), check.window_base.eq(base_sel),
                     check.window_limit.eq(limit_sel)]

        row_bytes = Signal(ROW_BITS)
        with m.If(head.elem_size == 2):
            m.d.comb += row_bytes.eq(head.count0 << 1)
        with m.Elif(head.elem_size == 4):
            m.d.comb += row_bytes.eq(head.count0 << 2)
        with m.Else():
            m.d.comb += row_bytes.eq(head.count0)
        to_hbm = Signal()
        m.d.comb += to_hbm.eq(desc.direction == DmaDirection.TSRAM_TO_HBM)

        # Walkers.
        start = Signal()
        m.submodules.hbm_walk = hw = DmaChunkWalker(
            addr_bits=aw, split_bytes=self.hbm_split, row_bits=len(check.hbm_last),
            cut_at_start="no_4k_split" in self.faults)
        m.submodules.ts_walk = tw = DmaChunkWalker(addr_bits=TSRAM_ADDR_BITS,
                                                   split_bytes=self.hbm_split)
        # The HBM walker always starts from the popped head; the TSRAM walker either from the
        # head (a descriptor that enters an idle engine) or from `nxt` (a read descriptor whose
        # HBM reads were started early, when the read before it lands: `promote`).
        hw_start = Signal()
        promote = Signal()
        nxt = Signal(self.desc_layout)
        nxt_row_bytes = Signal(ROW_BITS)
        ts_src = Signal(self.desc_layout)
        ts_row_bytes = Signal(ROW_BITS)
        m.d.comb += [ts_src.eq(Mux(promote, nxt, head)),
                     ts_row_bytes.eq(Mux(promote, nxt_row_bytes, row_bytes))]
        for walker, prefix, src, rbytes, go in ((hw, "hbm", head, row_bytes, hw_start),
                                                (tw, "tsram", ts_src, ts_row_bytes,
                                                 start | promote)):
            m.d.comb += [walker.start.eq(go), walker.base.eq(src[f"{prefix}_addr"]),
                         walker.stride1.eq(src[f"{prefix}_stride1"]),
                         walker.stride2.eq(src[f"{prefix}_stride2"]),
                         walker.count1.eq(src.count1), walker.count2.eq(src.count2),
                         walker.row_bytes.eq(rbytes)]
        # HBM rows that follow each other without a gap are walked as one run, so short rows
        # (scale rows, narrow tiles) still make long bursts: every row of a plane when
        # stride1 = row bytes (or one row a plane), and all planes too when, besides,
        # stride2 = the plane's length (or one plane). The byte stream is the same.
        rows_joined = Signal()
        planes_joined = Signal()
        m.d.comb += [
            rows_joined.eq((head.hbm_stride1 == row_bytes) | (head.count1 == 1)),
            planes_joined.eq(rows_joined & ((head.hbm_stride2 == check.hbm_plane)
                                            | (head.count2 == 1))),
        ]
        with m.If(planes_joined):
            m.d.comb += [hw.count1.eq(1), hw.count2.eq(1),
                         hw.row_bytes.eq(check.hbm_last - head.hbm_addr + 1)]
        with m.Elif(rows_joined):
            m.d.comb += [hw.count1.eq(1), hw.row_bytes.eq(check.hbm_plane)]
        m.submodules.hbm_chunks = hfifo = SyncFIFO(
            width=len(hw.chunks.payload.as_value()), depth=self.outstanding_reads)
        m.submodules.aw_fifo = awfifo = SyncFIFO(width=aw + 8, depth=self.outstanding_reads)
        m.submodules.hbm_beats = hb = DmaBeatWalker(addr_bits=aw, split_bytes=self.hbm_split,
                                                    word_bytes=wb)
        m.submodules.ts_beats = tb = DmaBeatWalker(addr_bits=TSRAM_ADDR_BITS,
                                                   split_bytes=self.hbm_split, word_bytes=wb)
        m.d.comb += [hb.chunks.payload.as_value().eq(hfifo.r_data),
                     hb.chunks.valid.eq(hfifo.r_rdy), hfifo.r_en.eq(hb.chunks.ready)]
        wiring.connect(m, tw.chunks, tb.chunks)

        m.submodules.bytes = bf = DmaByteFifo(word_bytes=wb,
                                              unmasked="unstable_wdata" in self.faults)

        # HBM chunk -> AXI burst header.
        hc = hw.chunks.payload
        beats_m1 = Signal(8)
        m.d.comb += beats_m1.eq((hc.addr[:lb] + hc.nbytes - 1) >> lb)
        axi_fixed = [axi.awsize.eq(lb), axi.awburst.eq(AxiBurst.INCR), axi.awid.eq(0),
                     axi.arsize.eq(lb), axi.arburst.eq(AxiBurst.INCR), axi.arid.eq(0),
                     axi.awcache.eq(0), axi.arcache.eq(0), axi.awprot.eq(0), axi.arprot.eq(0),
                     axi.awlock.eq(0), axi.arlock.eq(0), axi.awqos.eq(0), axi.arqos.eq(0)]
        m.d.comb += axi_fixed
        m.d.comb += hfifo.w_data.eq(hw.chunks.payload.as_value())
        m.d.comb += [axi.araddr.eq(hc.addr), axi.arlen.eq(beats_m1),
                     awfifo.w_data.eq(Cat(hc.addr, beats_m1)),
                     axi.awaddr.eq(awfifo.r_data[:aw]), axi.awlen.eq(awfifo.r_data[aw:]),
                     axi.awvalid.eq(awfifo.r_rdy), awfifo.r_en.eq(axi.awready)]
        running = Signal()
        with m.If(~to_hbm):
            m.d.comb += [axi.arvalid.eq(running & hw.chunks.valid & hfifo.w_rdy),
                         hw.chunks.ready.eq(axi.arready & hfifo.w_rdy),
                         hfifo.w_en.eq(axi.arvalid & axi.arready)]
        with m.Else():
            both = Signal()
            m.d.comb += [both.eq(hfifo.w_rdy & awfifo.w_rdy),
                         hw.chunks.ready.eq(both),
                         hfifo.w_en.eq(hw.chunks.valid & both),
                         awfifo.w_en.eq(hw.chunks.valid & both)]

        # HBM beats: R data in (to TSRAM) or W data out (to HBM).
        hbp = hb.beats.payload
        tbp = tb.beats.payload
        full_strobes = "full_strobes" in self.faults
        r_fire = Signal()
        w_fire = Signal()
        rsp_fire = Signal()
        req_fire = Signal()
        ratio = self.tsram_bank_bytes // wb
        rb = _log2(ratio)
        side = SyncFIFO(width=lb + (lb + 1) + max(rb, 1), depth=self.tsram_reads)
        m.submodules.tsram_reads = side
        side_lo = Signal(lb)
        side_n = Signal(lb + 1)
        side_sel = Signal(max(rb, 1))
        m.d.comb += Cat(side_lo, side_n, side_sel).eq(side.r_data)
        piece = Signal(8 * wb)
        for k in range(ratio):
            with m.If(side_sel == k):
                m.d.comb += piece.eq(ts.rsp.payload.data[8 * wb * k:8 * wb * (k + 1)])
        # `treq`: where TSRAM requests go; with `request_slice` a register slice in front of the
        # port (without it the TSRAM's grant reaches the byte queue and the walkers' address
        # adders in the cycle it is computed: the ULX3S tile's critical path, docs/fpga.md).
        if self._request_slice:
            m.submodules.ts_req = ts_req = StreamRegister(ts.req.payload.shape())
            wiring.connect(m, ts_req.o, wiring.flipped(ts.req))
            treq = ts_req.i
        else:
            treq = ts.req
        ts_word = Signal(len(treq.payload.addr))
        ts_sel = Signal(max(rb, 1))
        m.d.comb += [ts_word.eq(tbp.word[rb:]), ts_sel.eq(tbp.word[:rb] if rb else 0)]
        m.d.comb += treq.payload.addr.eq(ts_word)

        with m.If(~to_hbm):
            m.d.comb += [
                bf.i_data.eq(axi.rdata), bf.i_lo.eq(hbp.lo), bf.i_n.eq(hbp.n),
                bf.i_valid.eq(axi.rvalid & hb.beats.valid),
                axi.rready.eq(hb.beats.valid & bf.i_ready),
                r_fire.eq(axi.rvalid & axi.rready),
                hb.beats.ready.eq(r_fire),
                bf.o_lo.eq(tbp.lo), bf.o_n.eq(tbp.n),
                bf.o_valid.eq(tb.beats.valid & treq.ready),
                treq.valid.eq(tb.beats.valid & bf.o_ready),
                treq.payload.write.eq(1),
                treq.payload.data.eq(bf.o_data.replicate(ratio)),
                req_fire.eq(treq.valid & treq.ready),
                tb.beats.ready.eq(req_fire),
            ]
            strb = Const(-1, wb) if full_strobes else bf.o_strb
            m.d.comb += treq.payload.strb.eq(strb << (ts_sel << lb) if rb else strb)
        with m.Else():
            m.d.comb += [
                treq.valid.eq(tb.beats.valid & side.w_rdy),
                treq.payload.write.eq(0),
                req_fire.eq(treq.valid & treq.ready),
                tb.beats.ready.eq(req_fire),
                side.w_en.eq(req_fire),
                side.w_data.eq(Cat(tbp.lo, tbp.n, ts_sel)),
                bf.i_data.eq(piece), bf.i_lo.eq(side_lo), bf.i_n.eq(side_n),
                bf.i_valid.eq(ts.rsp.valid & side.r_rdy),
                ts.rsp.ready.eq(side.r_rdy & bf.i_ready),
                rsp_fire.eq(ts.rsp.valid & ts.rsp.ready),
                side.r_en.eq(rsp_fire),
                bf.o_lo.eq(hbp.lo), bf.o_n.eq(hbp.n),
                bf.o_valid.eq(hb.beats.valid & axi.wready),
                axi.wvalid.eq(hb.beats.valid & bf.o_ready),
                axi.wdata.eq(bf.o_data),
                axi.wstrb.eq(Const(-1, wb) if full_strobes else bf.o_strb),
                axi.wlast.eq(hbp.last),
                w_fire.eq(axi.wvalid & axi.wready),
                hb.beats.ready.eq(w_fire),
            ]

        # Write responses.
        pending = Signal(16)
        m.d.comb += axi.bready.eq(1)
        b_fire = Signal()
        aw_push = Signal()
        m.d.comb += [b_fire.eq(axi.bvalid), aw_push.eq(awfifo.w_en)]
        m.d.sync += pending.eq(pending + aw_push - b_fire)

        # Transfer errors (first one kept). A write descriptor (TSRAM -> HBM) runs alone, and
        # `xfer_status` keeps its first B or ECC error. Read descriptors may overlap, so R errors
        # are kept per descriptor: `r_status` for the one whose R beats are arriving, then, from
        # its final beat, in `r_done` (two entries: the landing read and the one behind it)
        # until its event.
        error_now = Signal(ERROR_CODE_BITS)
        r_error = Signal(ERROR_CODE_BITS)
        decerr = ErrorCode.AXI_SLVERR if "decerr_as_slverr" in self.faults \
            else ErrorCode.AXI_DECERR
        with m.If(r_fire & (axi.rresp == AxiResp.SLVERR)):
            m.d.comb += r_error.eq(ErrorCode.AXI_SLVERR)
        with m.Elif(r_fire & (axi.rresp == AxiResp.DECERR)):
            m.d.comb += r_error.eq(decerr)
        with m.If(b_fire & (axi.bresp == AxiResp.SLVERR)):
            m.d.comb += error_now.eq(ErrorCode.AXI_SLVERR)
        with m.Elif(b_fire & (axi.bresp == AxiResp.DECERR)):
            m.d.comb += error_now.eq(decerr)
        with m.Elif(rsp_fire & (ts.rsp.payload.status == EccStatus.UNCORRECTABLE)):
            m.d.comb += error_now.eq(ErrorCode.ECC_UNCORRECTABLE)
        with m.If((xfer_status == ErrorCode.OK) & (error_now != ErrorCode.OK)):
            m.d.sync += xfer_status.eq(error_now)

        r_status = Signal(ERROR_CODE_BITS)
        r_status_now = Signal(ERROR_CODE_BITS)
        r_done_pop = Signal()
        m.d.comb += r_status_now.eq(Mux(r_status != ErrorCode.OK, r_status, r_error))
        r_final = Signal()
        if "read_status_at_finish" in self.faults:
            m.d.comb += r_final.eq(r_done_pop)
        else:
            m.d.comb += r_final.eq(r_fire & hbp.final)
        with m.If(r_final):
            m.d.sync += r_status.eq(ErrorCode.OK)
        with m.Elif((r_status == ErrorCode.OK) & (r_error != ErrorCode.OK)):
            m.d.sync += r_status.eq(r_error)
        r_done = [Signal(ERROR_CODE_BITS, name=f"r_done{k}") for k in range(2)]
        r_done_n = Signal(range(3))
        read_status = Signal(ERROR_CODE_BITS)   # the landing read's status, at its finish
        m.d.comb += read_status.eq(Mux(r_done_n != 0, r_done[0], r_status_now))
        # A finish with an empty `r_done` is the landing read's final beat in the same cycle
        # (byte-queue fall-through): it takes `r_status_now`, and nothing is queued.
        with m.If(r_final & r_done_pop):
            with m.If(r_done_n == 1):
                m.d.sync += r_done[0].eq(r_status_now)
            with m.Elif(r_done_n == 2):
                m.d.sync += [r_done[0].eq(r_done[1]), r_done[1].eq(r_status_now)]
        with m.Elif(r_final):
            with m.If(r_done_n == 0):
                m.d.sync += r_done[0].eq(r_status_now)
            with m.Else():
                m.d.sync += r_done[1].eq(r_status_now)
            m.d.sync += r_done_n.eq(r_done_n + 1)
        with m.Elif(r_done_pop):
            m.d.sync += [r_done[0].eq(r_done[1]), r_done_n.eq(r_done_n - 1)]

        # Control.
        # Done: the last TSRAM write is being accepted (with the slice: has left it), or the last
        # write response arrives.
        dst_done = Signal()
        with m.If(~to_hbm):
            if self._request_slice:
                m.d.comb += dst_done.eq(~tw.busy & ~tb.busy & ts_req.empty)
            else:
                m.d.comb += dst_done.eq(~tw.busy & (~tb.busy | (req_fire & tbp.final)))
        with m.Else():
            m.d.comb += dst_done.eq(~hw.busy & ~hfifo.r_rdy & ~hb.busy
                                    & ((pending == 0) | ((pending == 1) & b_fire)))

        any_ready = Signal()
        rr_pick = Signal(qbits) if self._serial_checks else pick
        for k in reversed(range(nq)):
            cand = Signal(qbits, name=f"cand{k}")
            m.d.comb += cand.eq(Mux(rr + k >= nq, rr + k - nq, rr + k))
            ready_k = Signal(name=f"ready{k}")
            for q in range(nq):
                with m.If(cand == q):
                    m.d.comb += ready_k.eq(heads[q][0])
            with m.If(ready_k):
                m.d.comb += rr_pick.eq(cand)
        m.d.comb += any_ready.eq(Cat(h[0] for h in heads).any())
        # `head_ready`: the picked head may be popped (its check, if serial, is done).
        head_ready = Signal()
        pop = Signal()
        early = Signal()
        if self._serial_checks:
            # A check starts on the round-robin pick and locks the pick to that queue until its
            # head is popped. A queue's head changes only when it is popped (an arriving
            # descriptor that is the head of an empty queue is written into the queue in that
            # cycle, the same bits), so the check result belongs to the head while locked.
            locked = Signal()
            locked_q = Signal(qbits)
            m.d.comb += [pick.eq(Mux(locked, locked_q, rr_pick)),
                         check.start.eq(any_ready & ~locked),
                         head_ready.eq(locked & ~check.busy)]
            with m.If(check.start):
                m.d.sync += [locked.eq(1), locked_q.eq(rr_pick)]
            with m.If(pop | early):
                m.d.sync += locked.eq(0)
        else:
            m.d.comb += head_ready.eq(any_ready)

        # Events: one produced in a cycle (`ev_load`) is offered on `event` in that cycle; if
        # `event` does not take it, a one-entry register holds it. While the register is full,
        # `event` shows it, and a new event may be produced only in a cycle that empties it.
        ev = self.event.payload
        ev_free = Signal()
        ev_load = Signal()
        ev_rejected = Signal()
        ev_queue = Signal(qbits)
        ev_tag = Signal(len(ev.tag))
        ev_status = Signal(ERROR_CODE_BITS)
        ev_held = Signal()
        held = Signal(self.event_layout)
        new_ev = Signal(self.event_layout)
        m.d.comb += [
            new_ev.queue.eq(ev_queue), new_ev.tag.eq(ev_tag), new_ev.status.eq(ev_status),
            ev_free.eq(~ev_held | self.event.ready),
            self.event.valid.eq(ev_held | ev_load),
            ev.eq(Mux(ev_held, held, new_ev)),
        ]
        with m.If(ev_free):
            m.d.sync += [ev_held.eq(ev_load & (ev_held | ~self.event.ready)), held.eq(new_ev)]
        with m.If(ev_load):
            m.d.sync += self.last_status.eq(ev_status)

        # Two stages: the landing descriptor (`desc`, `queue`, state RUN) owns the TSRAM side and
        # the event; a read descriptor behind a landing read may already issue its HBM reads
        # (`nxt`, popped by `early`) and lands when the one before it finishes (`promote`).
        # Writes, and descriptors the check rejects, enter only an idle engine, so events keep
        # the pop order.
        state = Signal(_State)
        finish = Signal()
        nxt_valid = Signal()
        nxt_queue = Signal(qbits)
        desc_is_read = Signal()
        head_is_read = Signal()
        m.d.comb += [
            desc_is_read.eq(desc.direction == DmaDirection.HBM_TO_TSRAM),
            head_is_read.eq(head.direction == DmaDirection.HBM_TO_TSRAM),
            finish.eq((state == _State.RUN) & dst_done & ev_free),
            promote.eq(finish & nxt_valid),
            r_done_pop.eq(finish & desc_is_read),
        ]
        with m.If(finish):
            m.d.comb += [ev_load.eq(1), ev_queue.eq(queue), ev_tag.eq(desc.tag),
                         ev_status.eq(Mux(desc_is_read, read_status,
                                          Mux(xfer_status != ErrorCode.OK, xfer_status,
                                              error_now)))]
            with m.If(nxt_valid):
                m.d.sync += [desc.eq(nxt), queue.eq(nxt_queue), nxt_valid.eq(0)]
            with m.Else():
                m.d.sync += state.eq(_State.IDLE)
        with m.If((state == _State.IDLE) | (finish & ~nxt_valid)):
            # A rejected descriptor needs the event register, which `finish` is filling.
            m.d.comb += pop.eq(head_ready & ((check.status == ErrorCode.OK)
                                             | (ev_free & ~finish)))
        with m.Elif((state == _State.RUN) & ~finish & desc_is_read & ~nxt_valid & ~hw.busy):
            m.d.comb += early.eq(head_ready & head_is_read & (check.status == ErrorCode.OK))
        with m.If(pop | early):
            for q in range(nq):
                with m.If(pick == q):
                    m.d.comb += heads[q][2].eq(1)
            m.d.sync += rr.eq(Mux(pick == nq - 1, 0, pick + 1))
        with m.If(early):
            m.d.comb += hw_start.eq(1)
            m.d.sync += [nxt.eq(head), nxt_row_bytes.eq(row_bytes), nxt_queue.eq(pick),
                         nxt_valid.eq(1)]
        with m.If(pop):
            m.d.sync += [desc.eq(head), queue.eq(pick)]
            with m.If(check.status == ErrorCode.OK):
                m.d.comb += [start.eq(1), hw_start.eq(1)]
                m.d.sync += [xfer_status.eq(ErrorCode.OK), state.eq(_State.RUN)]
            with m.Else():
                m.d.comb += [ev_load.eq(1), ev_rejected.eq(1), ev_queue.eq(pick),
                             ev_tag.eq(head.tag), ev_status.eq(check.status)]
        m.d.comb += running.eq(state == _State.RUN)

        # Counters.
        counters = {name: Signal(COUNTER_BITS, name=name) for name in COUNTERS}
        for name, sig in counters.items():
            m.d.comb += getattr(self, name).eq(sig)
        axi_stall = Signal()
        tsram_stall = Signal()
        m.d.comb += [
            axi_stall.eq((axi.arvalid & ~axi.arready) | (axi.awvalid & ~axi.awready)
                         | (axi.wvalid & ~axi.wready) | (hb.beats.valid & ~to_hbm & ~axi.rvalid)),
            tsram_stall.eq((ts.req.valid & ~ts.req.ready)
                           | (side.r_rdy & to_hbm & ~ts.rsp.valid)),
        ]
        m.d.comb += self.busy.eq(running | any_ready | ev_held)
        m.d.sync += counters["busy_cycles"].eq(counters["busy_cycles"] + self.busy)
        m.d.sync += [
            counters["axi_stall_cycles"].eq(counters["axi_stall_cycles"] + (running & axi_stall)),
            counters["tsram_stall_cycles"].eq(counters["tsram_stall_cycles"]
                                              + (running & tsram_stall)),
            counters["bytes_read"].eq(counters["bytes_read"]
                                      + Mux(bf.i_valid & bf.i_ready, bf.i_n, 0)),
            counters["bytes_written"].eq(counters["bytes_written"]
                                         + Mux(bf.o_valid & bf.o_ready, bf.o_n, 0)),
            counters["descs_done"].eq(counters["descs_done"] + (ev_load & ~ev_rejected)),
            counters["descs_rejected"].eq(counters["descs_rejected"] + (ev_load & ev_rejected)),
        ]
        with m.If(self.counters_clear):
            m.d.sync += [sig.eq(0) for sig in counters.values()]
        return m
