"""On-chip memory behind an AXI4 subordinate port: the FPGA presets' stand-in for the HBM model.

The FPGA presets (``hbm_preset="ONCHIP"``) put :class:`OnChipMemory` where the other presets put
:class:`~openmaia.hbm.controller.HbmController`: the same AXI4 contract, no DRAM timing. The store
is one ``amaranth.lib.memory.Memory`` with one synchronous read port and one byte-granular write
port (block RAM on the FPGA). docs/hbm.md ("On-chip memory (FPGA presets)") is the contract.
"""

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..bus.axi import Axi4Signature, AxiBurst, AxiResp

__all__ = ["ONCHIP_FAULTS", "ONCHIP_STAT_NAMES", "OnChipMemory", "onchip_stats_layout"]

#: Deliberate bugs for the mutation tests: ``ignore_strobes`` writes every byte lane of a beat;
#: ``r_data_not_held`` lets the read port load a new word while R is stalled (the held beat's
#: data is replaced by the next beat's); ``no_slverr`` serves FIXED / WRAP / narrow bursts as
#: if they were INCR full-width bursts, answering OKAY.
ONCHIP_FAULTS = frozenset({"ignore_strobes", "r_data_not_held", "no_slverr"})
COUNTER_BITS = 32
ONCHIP_STAT_NAMES = ("reads", "writes", "read_beats", "write_beats", "busy", "stall_in",
                     "stall_r", "stall_b", "errors")


def onchip_stats_layout() -> data.StructLayout:
    """Counters (32 bits each, wrapping): ``reads`` / ``writes`` (AR / AW handshakes),
    ``read_beats`` / ``write_beats`` (R / W handshakes), ``busy`` (a burst, beat or response
    held), ``stall_in`` (a write burst accepted but no W beat offered), ``stall_r`` /
    ``stall_b`` (R / B valid and not taken: stalled on output), ``errors`` (bursts answered
    SLVERR or DECERR, counted when their last R beat or their B is sent)."""
    return data.StructLayout({name: COUNTER_BITS for name in ONCHIP_STAT_NAMES})


def _ax_layout(sig: Axi4Signature) -> data.StructLayout:
    return data.StructLayout({"id": sig.id_width, "addr": sig.addr_width, "len": 8,
                              "size": 3, "burst": 2})


def _b_layout(sig: Axi4Signature) -> data.StructLayout:
    return data.StructLayout({"id": sig.id_width, "resp": 2})


class OnChipMemory(wiring.Component):
    """``capacity_bytes`` of on-chip memory behind an AXI4 subordinate port ``s_axi``.

    Parameters
    ----------
    capacity_bytes : int
        Size of the store: a power of two, at least 64 and at most ``2**addr_width``. Beats at
        or above it answer DECERR (reads: that beat; writes: on B, the beat is not written).
    addr_width, data_width, id_width : int
        The AXI port; ``data_width`` 32..512 bits.
    init : bytes, optional
        Initial contents (at most ``capacity_bytes``; the rest is zero). Amaranth writes a
        memory's initial contents out bit by bit (a few seconds of elaboration per 64 KiB).
    faults : set of str
        Deliberate bugs (:data:`ONCHIP_FAULTS`), for mutation tests only.

    Members: ``s_axi`` (``In(Axi4Signature(...))``), ``stats`` (``Out(onchip_stats_layout())``).

    AXI: INCR bursts of full-width beats (``AxSIZE`` = the bus width), any length up to 256; the
    first beat may be unaligned (its lanes are those of the aligned beat); beat k of a burst is
    the aligned word at ``(addr // D + k) * D`` (``D`` bytes a beat, no wrap at 4 KiB: a burst
    crossing one is the manager's error and continues linearly). Byte strobes are honoured.
    FIXED / WRAP bursts and narrow sizes answer SLVERR on every beat (writes: on B, nothing is
    written); the device keeps working. No address aliasing: a beat at or above
    ``capacity_bytes`` answers DECERR. Reads and writes are each served one burst at a time, in
    request order over all IDs (RID / BID = the request's ID); a read and a write proceed
    concurrently. Read data is the memory's contents when the beat is read: a write is visible
    to reads issued after its B. ``lock``, ``cache``, ``prot`` and ``qos`` are ignored.

    Timing: one R beat and one W beat a cycle when nothing stalls, back to back across bursts.
    AR handshake to first R beat valid: 2 cycles; AW handshake to first W ready: 1 cycle; last
    W beat to B valid: 1 cycle. ``arready`` / ``awready`` come from registers (two-entry request
    FIFOs); ``rvalid``, ``bvalid`` and their payloads are registers.
    """

    def __init__(self, *, capacity_bytes, addr_width, data_width, id_width, init=None,
                 faults=frozenset()):
        for name, value in (("addr_width", addr_width), ("id_width", id_width)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if data_width not in (32, 64, 128, 256, 512):
            raise ValueError(f"data_width must be 32, 64, 128, 256 or 512, not {data_width!r}")
        if (not isinstance(capacity_bytes, int) or capacity_bytes < 64
                or capacity_bytes & (capacity_bytes - 1)):
            raise ValueError(f"capacity_bytes must be a power of two >= 64, "
                             f"not {capacity_bytes!r}")
        if capacity_bytes > 1 << addr_width:
            raise ValueError(f"capacity_bytes ({capacity_bytes}) exceeds the {addr_width}-bit "
                             f"AXI address space")
        if capacity_bytes < data_width // 8:
            raise ValueError(f"capacity_bytes ({capacity_bytes}) is smaller than one beat")
        if init is not None:
            init = bytes(init)
            if len(init) > capacity_bytes:
                raise ValueError(f"init has {len(init)} bytes, more than capacity_bytes "
                                 f"({capacity_bytes})")
        faults = frozenset(faults)
        if faults - ONCHIP_FAULTS:
            raise ValueError(f"unknown faults {sorted(faults - ONCHIP_FAULTS)}; known: "
                             f"{sorted(ONCHIP_FAULTS)}")
        self.capacity_bytes = capacity_bytes
        self.init = init
        self.faults = faults
        self.axi = Axi4Signature(addr_width=addr_width, data_width=data_width, id_width=id_width)
        super().__init__({"s_axi": In(self.axi), "stats": Out(onchip_stats_layout())})

    @classmethod
    def from_config(cls, config, *, capacity_bytes, init=None, faults=frozenset()):
        """The memory for ``config``'s AXI port (``axi_addr_bits``, ``axi_data_bits``,
        ``axi_id_bits``)."""
        return cls(capacity_bytes=capacity_bytes, addr_width=config.axi_addr_bits,
                   data_width=config.axi_data_bits, id_width=config.axi_id_bits, init=init,
                   faults=faults)

    @property
    def depth(self) -> int:
        """Words (beats) of the store."""
        return self.capacity_bytes // self.axi.data_bytes

    def _init_words(self):
        if not self.init:
            return []
        d = self.axi.data_bytes
        padded = self.init + bytes(-len(self.init) % d)
        return [int.from_bytes(padded[i:i + d], "little") for i in range(0, len(padded), d)]

    def elaborate(self, platform):
        m = Module()
        axi, sig = self.s_axi, self.axi
        D = sig.data_bytes
        lg_d = sig.size_code
        depth_bits = (self.depth - 1).bit_length()
        word_bits = sig.addr_width - lg_d
        no_slverr = "no_slverr" in self.faults

        m.submodules.store = store = Memory(shape=sig.data_width, depth=self.depth,
                                            init=self._init_words())
        rd = store.read_port()
        wr = store.write_port(granularity=8)

        def request_fifo(name, prefix):
            layout = _ax_layout(sig)
            fifo = SyncFIFO(width=layout.size, depth=2)
            m.submodules[name] = fifo
            w = data.View(layout, fifo.w_data)
            m.d.comb += [w.id.eq(getattr(axi, prefix + "id")),
                         w.addr.eq(getattr(axi, prefix + "addr")),
                         w.len.eq(getattr(axi, prefix + "len")),
                         w.size.eq(getattr(axi, prefix + "size")),
                         w.burst.eq(getattr(axi, prefix + "burst")),
                         fifo.w_en.eq(getattr(axi, prefix + "valid")),
                         getattr(axi, prefix + "ready").eq(fifo.w_rdy)]
            return fifo, data.View(layout, fifo.r_data)

        def beat(prefix, head):
            """The current beat of the burst at ``head``: word address, last, bad, in range."""
            count = Signal(8, name=f"{prefix}_beat")
            word = Signal(word_bits, name=f"{prefix}_word")
            last = Signal(name=f"{prefix}_last_beat")
            bad = Signal(name=f"{prefix}_bad")
            in_range = Signal(name=f"{prefix}_in_range")
            m.d.comb += [word.eq(head.addr[lg_d:] + count), last.eq(count == head.len),
                         in_range.eq((word >> depth_bits) == 0)]
            if not no_slverr:
                m.d.comb += bad.eq((head.burst != AxiBurst.INCR) | (head.size != lg_d))
            return count, word, last, bad, in_range

        # ---------------- reads ----------------
        arq, ar_head = request_fifo("arq", "ar")
        r_count, r_word, r_last_beat, r_bad, r_in = beat("r", ar_head)
        r_valid = Signal(); r_id = Signal(sig.id_width); r_resp = Signal(2); r_last = Signal()
        r_adv = Signal(name="r_adv")
        r_issue = Signal(name="r_issue")
        m.d.comb += [r_adv.eq(~r_valid | axi.rready), r_issue.eq(arq.r_rdy & r_adv),
                     rd.addr.eq(r_word[:depth_bits]),
                     rd.en.eq(1 if "r_data_not_held" in self.faults else r_adv),
                     axi.rvalid.eq(r_valid), axi.rid.eq(r_id), axi.rresp.eq(r_resp),
                     axi.rlast.eq(r_last), axi.rdata.eq(rd.data)]
        with m.If(r_adv):
            m.d.sync += [r_valid.eq(r_issue), r_id.eq(ar_head.id), r_last.eq(r_last_beat),
                         r_resp.eq(Mux(r_bad, AxiResp.SLVERR,
                                       Mux(r_in, AxiResp.OKAY, AxiResp.DECERR)))]
        with m.If(r_issue):
            with m.If(r_last_beat):
                m.d.sync += r_count.eq(0)
                m.d.comb += arq.r_en.eq(1)
            with m.Else():
                m.d.sync += r_count.eq(r_count + 1)
        # a read burst's error status: SLVERR on every beat, or DECERR on any beat
        r_err_acc = Signal()
        r_burst_err = Signal()
        r_done = Signal()
        m.d.comb += [r_done.eq(axi.rvalid & axi.rready & axi.rlast),
                     r_burst_err.eq(r_err_acc | (axi.rresp != AxiResp.OKAY))]
        with m.If(axi.rvalid & axi.rready):
            m.d.sync += r_err_acc.eq(Mux(axi.rlast, 0, r_burst_err))

        # ---------------- writes ----------------
        awq, aw_head = request_fifo("awq", "aw")
        w_count, w_word, w_last_beat, w_bad, w_in = beat("w", aw_head)
        bq = SyncFIFO(width=_b_layout(sig).size, depth=2)
        m.submodules.bq = bq
        bq_in = data.View(_b_layout(sig), bq.w_data)
        bq_out = data.View(_b_layout(sig), bq.r_data)
        w_take = Signal(name="w_take")
        w_dec = Signal(name="w_decerr_acc")
        strb = Signal(D, name="w_strb")
        m.d.comb += [axi.wready.eq(awq.r_rdy & bq.w_rdy),
                     w_take.eq(axi.wvalid & axi.wready),
                     strb.eq(Const((1 << D) - 1, D) if "ignore_strobes" in self.faults
                             else axi.wstrb),
                     wr.addr.eq(w_word[:depth_bits]), wr.data.eq(axi.wdata),
                     wr.en.eq(Mux(w_take & ~w_bad & w_in, strb, 0)),
                     bq_in.id.eq(aw_head.id),
                     bq_in.resp.eq(Mux(w_bad, AxiResp.SLVERR,
                                       Mux(w_dec | ~w_in, AxiResp.DECERR, AxiResp.OKAY))),
                     bq.w_en.eq(w_take & w_last_beat),
                     axi.bvalid.eq(bq.r_rdy), axi.bid.eq(bq_out.id), axi.bresp.eq(bq_out.resp),
                     bq.r_en.eq(axi.bready)]
        with m.If(w_take):
            with m.If(w_last_beat):
                m.d.sync += [w_count.eq(0), w_dec.eq(0)]
                m.d.comb += awq.r_en.eq(1)
            with m.Else():
                m.d.sync += [w_count.eq(w_count + 1), w_dec.eq(w_dec | ~w_in)]

        # ---------------- counters ----------------
        s = self.stats
        events = {
            "reads": axi.arvalid & axi.arready, "writes": axi.awvalid & axi.awready,
            "read_beats": axi.rvalid & axi.rready, "write_beats": w_take,
            "busy": arq.r_rdy | awq.r_rdy | r_valid | bq.r_rdy,
            "stall_in": awq.r_rdy & bq.w_rdy & ~axi.wvalid,
            "stall_r": axi.rvalid & ~axi.rready, "stall_b": axi.bvalid & ~axi.bready,
        }
        for name, event in events.items():
            counter = getattr(s, name)
            m.d.sync += counter.eq(counter + event)
        b_err = Signal()
        m.d.comb += b_err.eq(axi.bvalid & axi.bready & (axi.bresp != AxiResp.OKAY))
        m.d.sync += s.errors.eq(s.errors + (r_done & r_burst_err) + b_err)
        return m
