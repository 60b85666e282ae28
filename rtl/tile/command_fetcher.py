"""The command fetcher: reads the host's command queue from HBM and feeds the Tile Control
Processor (docs/tcp.md, "Command queue").

The queue is a ring of ``size`` 64-byte commands (:mod:`.isa`) at ``base`` in HBM. The host
writes commands at the producer index and rings the doorbell with the new producer index
(``tail``); the fetcher reads the commands from ``head`` up to ``tail`` through its own AXI4
read port, in bursts of several commands, and hands them to the TCP in order. ``head`` (the
consumer index) advances when the TCP takes a command: every entry before it may be
overwritten.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..bus.axi import (
    AXI4_MAX_BEATS,
    AXI_BOUNDARY_BYTES,
    Axi4Signature,
    AxiBurst,
    AxiResp,
)
from .isa import COMMAND_BYTES, Command

__all__ = ["FAULTS", "CommandFetcher", "FetchCounters"]

COUNTER_BITS = 32
#: Deliberate bugs for the tests: ``head_at_fetch`` advances ``head`` when a command is
#: requested instead of when the TCP takes it; ``keep_error_data`` hands a command read with an
#: error response to the TCP as read instead of as all zeros.
FAULTS = frozenset({"head_at_fetch", "keep_error_data"})


class FetchCounters(data.Struct):
    """Counters of the command fetcher (32 bits each)."""
    commands: COUNTER_BITS       # commands handed to the TCP
    bursts: COUNTER_BITS         # read bursts issued
    read_errors: COUNTER_BITS    # commands read with an error response (handed on as zeros)
    busy: COUNTER_BITS           # cycles with commands to fetch or in flight
    stall_input: COUNTER_BITS    # busy, nothing to hand on, a command on its way from HBM
    stall_output: COUNTER_BITS   # a command waits for the TCP


class CommandFetcher(wiring.Component):
    """Reads the command ring in HBM and offers the commands on ``cmd`` in ring order.

    Parameters
    ----------
    addr_width, data_width, id_width : int
        The AXI4 read port (``data_width`` 32 .. 512 bits).
    depth : int
        Commands buffered (a power of two, 1 .. 64): the fetcher requests a command only when a
        buffer entry is free for it, so it always takes read data (``rready`` is 1).
    index_bits : int
        Width of the ring indices: ``size`` at most ``2**index_bits - 1`` commands.

    Ports
    -----
    m_axi : Out(Axi4Signature)
        Reads only (the write channels are idle). INCR bursts of full-width beats, all with ID 0,
        never crossing a 4 KiB boundary; a burst carries whole commands.
    cmd : Out(stream of :class:`~.isa.Command`)
    base : In(64)
        Ring base byte address (bits 5..0 are ignored: commands are 64-byte aligned).
    size, tail : In(32)
        Ring size in commands and the producer index (the doorbell value).
    run : In(1)
        Fetch enable. When low no new burst starts (bursts in flight complete, buffered
        commands are still offered).
    flush : In(1)
        One-cycle pulse: drop every buffered and in-flight command, then ``head`` = ``tail``
        (the rest of the queued program is abandoned). ``cmd.valid`` is low until done.
    head : Out(32)
        The consumer index.
    queue_error : Out(1)
        The ring is unusable and nothing is fetched: ``size`` is 0 or above the index range, or
        ``tail`` >= ``size``.
    flushing : Out(1)
        A flush is in progress.
    counters : Out(FetchCounters), counters_clear : In(1)
    """

    def __init__(self, *, addr_width, data_width, id_width, depth=8, index_bits=16,
                 faults=frozenset()):
        if not isinstance(data_width, int) or data_width not in (32, 64, 128, 256, 512):
            raise ValueError(f"data_width must be 32, 64, 128, 256 or 512, not {data_width!r}")
        if not isinstance(addr_width, int) or not 12 <= addr_width <= 64:
            raise ValueError(f"addr_width must be an integer in 12..64, not {addr_width!r}")
        if not isinstance(depth, int) or depth < 1 or depth > 64 or depth & (depth - 1):
            raise ValueError(f"depth must be a power of two in 1..64, not {depth!r}")
        if not isinstance(index_bits, int) or not 1 <= index_bits <= 32:
            raise ValueError(f"index_bits must be an integer in 1..32, not {index_bits!r}")
        faults = frozenset(faults)
        if faults - FAULTS:
            raise ValueError(f"unknown faults {sorted(faults - FAULTS)}; known: {sorted(FAULTS)}")
        self.addr_width, self.data_width, self.depth = addr_width, data_width, depth
        self.index_bits, self.faults = index_bits, faults
        self.beats_per_command = max(1, 8 * COMMAND_BYTES // data_width)
        #: The longest burst in commands: the buffer, AXI4's 256 beats, and one 4 KiB page.
        self.max_burst = min(depth, AXI4_MAX_BEATS // self.beats_per_command,
                             AXI_BOUNDARY_BYTES // COMMAND_BYTES)
        self.axi = Axi4Signature(addr_width=addr_width, data_width=data_width,
                                 id_width=id_width)
        super().__init__({
            "m_axi": Out(self.axi),
            "cmd": Out(stream.Signature(Command)),
            "base": In(64), "size": In(32), "tail": In(32),
            "run": In(1), "flush": In(1),
            "head": Out(32), "queue_error": Out(1), "flushing": Out(1),
            "counters": Out(FetchCounters), "counters_clear": In(1),
        })

    @classmethod
    def from_config(cls, config, **kwargs):
        return cls(addr_width=config.axi_addr_bits, data_width=config.axi_data_bits,
                   id_width=config.axi_id_bits, depth=config.command_fetch_depth, **kwargs)

    def elaborate(self, platform):
        m = Module()
        axi, ib = self.m_axi, self.index_bits
        beats, dw = self.beats_per_command, self.data_width
        cbits = (self.depth).bit_length()
        page_cmds = AXI_BOUNDARY_BYTES // COMMAND_BYTES

        m.submodules.buffer = buffer = SyncFIFOBuffered(width=8 * COMMAND_BYTES,
                                                        depth=self.depth)

        size, tail = self.size[:ib], self.tail[:ib]
        fetch = Signal(ib)                  # next command to request
        head = Signal(ib)
        reserved = Signal(cbits + 1)        # requested and not yet handed on / dropped
        flushing = Signal()
        m.d.comb += [self.head.eq(head), self.flushing.eq(flushing)]
        m.d.comb += self.queue_error.eq((self.size == 0) | (self.size >> ib != 0)
                                        | (self.tail >= self.size))

        # ---- burst request -----------------------------------------------------------------
        addr_cmd = Signal(self.addr_width - 6)
        m.d.comb += addr_cmd.eq(self.base[6:self.addr_width] + fetch)
        to_page = Signal(range(page_cmds + 1))
        m.d.comb += to_page.eq(page_cmds - addr_cmd[:(page_cmds - 1).bit_length()])
        to_end = Signal(ib)                 # contiguous commands to fetch before the wrap
        m.d.comb += to_end.eq(Mux(tail >= fetch, tail - fetch, size - fetch))
        credit = Signal(cbits + 1)
        m.d.comb += credit.eq(self.depth - reserved)
        burst = Signal(range(self.max_burst + 1))
        options = [to_end, credit, to_page]
        with m.If(Cat(*(o < self.max_burst for o in options)) == 0):
            m.d.comb += burst.eq(self.max_burst)
        with m.Else():
            smallest = Signal(ib + cbits + 8)
            m.d.comb += smallest.eq(Mux(to_end < credit, to_end, credit))
            m.d.comb += burst.eq(Mux(smallest < to_page, smallest, to_page))

        want = Signal()
        m.d.comb += want.eq(self.run & ~flushing & ~self.queue_error & (fetch != tail)
                            & (fetch < size) & (burst != 0))
        with m.If(axi.arvalid & axi.arready):
            m.d.sync += axi.arvalid.eq(0)
        issue = Signal()
        m.d.comb += issue.eq(want & ~axi.arvalid)
        with m.If(issue):
            m.d.sync += [axi.arvalid.eq(1), axi.araddr.eq(Cat(Const(0, 6), addr_cmd)),
                         axi.arlen.eq(burst * beats - 1)]
            nxt = Signal(ib + 1)
            m.d.comb += nxt.eq(fetch + burst)
            m.d.sync += fetch.eq(Mux(nxt == size, 0, nxt))
        m.d.comb += [axi.arsize.eq(self.axi.size_code), axi.arburst.eq(AxiBurst.INCR),
                     axi.arid.eq(0), axi.arcache.eq(0b0011)]
        # The write channels stay idle.
        m.d.comb += [axi.awvalid.eq(0), axi.wvalid.eq(0), axi.bready.eq(1)]

        # ---- assembly of read beats into commands --------------------------------------------
        assembled = Signal(8 * COMMAND_BYTES)
        beat = Signal(range(beats))
        error = Signal()
        m.d.comb += axi.rready.eq(1)
        incoming = Signal(8 * COMMAND_BYTES)
        if beats == 1:
            m.d.comb += incoming.eq(axi.rdata[:8 * COMMAND_BYTES])
        else:
            m.d.comb += incoming.eq(Cat(assembled[dw:], axi.rdata))
        bad = Signal()
        m.d.comb += bad.eq(error | (axi.rresp != AxiResp.OKAY))
        done = Signal()                     # a whole command arrived this cycle
        m.d.comb += done.eq(axi.rvalid & (beat == beats - 1))
        with m.If(axi.rvalid):
            m.d.sync += [assembled.eq(incoming), error.eq(bad & ~done)]
            if beats > 1:
                m.d.sync += beat.eq(Mux(beat == beats - 1, 0, beat + 1))
        keep_bad = "keep_error_data" in self.faults
        m.d.comb += [buffer.w_en.eq(done & ~flushing),
                     buffer.w_data.eq(Mux(bad & ~keep_bad, 0, incoming))]

        # ---- hand-off to the TCP -----------------------------------------------------------
        m.d.comb += [self.cmd.valid.eq(buffer.r_rdy & ~flushing),
                     self.cmd.payload.eq(buffer.r_data)]
        taken = Signal()
        m.d.comb += taken.eq(self.cmd.valid & self.cmd.ready)
        m.d.comb += buffer.r_en.eq(taken | (flushing & buffer.r_rdy))
        # at most one command leaves `reserved` a cycle, except a flush draining the buffer
        # while a command arrives: both go (the arriving one is never written)
        leave = Signal(2)
        m.d.comb += leave.eq(taken + (flushing & buffer.r_rdy) + (flushing & done))
        m.d.sync += reserved.eq(reserved + Mux(issue, burst, 0) - leave)

        if "head_at_fetch" in self.faults:
            with m.If(issue):
                m.d.sync += head.eq(Mux(fetch + burst == size, 0, fetch + burst))
        else:
            with m.If(taken):
                m.d.sync += head.eq(Mux(head + 1 == size, 0, head + 1))

        # ---- flush -------------------------------------------------------------------------
        with m.If(self.flush):
            m.d.sync += flushing.eq(1)
        with m.Elif(flushing & (reserved == 0) & ~axi.arvalid):
            m.d.sync += [flushing.eq(0), head.eq(tail), fetch.eq(tail)]

        # ---- counters ----------------------------------------------------------------------
        c = self.counters
        busy = Signal()
        m.d.comb += busy.eq(self.run & ~self.queue_error & (fetch != tail) | (reserved != 0))
        events = {
            "commands": taken, "bursts": axi.arvalid & axi.arready,
            "read_errors": done & bad & ~flushing, "busy": busy,
            "stall_input": busy & ~buffer.r_rdy & (reserved != 0) & ~flushing,
            "stall_output": self.cmd.valid & ~self.cmd.ready,
        }
        for name, event in events.items():
            counter = getattr(c, name)
            with m.If(self.counters_clear):
                m.d.sync += counter.eq(0)
            with m.Else():
                m.d.sync += counter.eq(counter + event)
        return m
