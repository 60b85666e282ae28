"""HBM pseudo-channel interleaver: one flat AXI4 address space over ``channels`` AXI4 ports.

:class:`InterleaveMap` is the address map (Python, and the RTL expressions built from the same
parameters); :class:`HbmInterleaver` is the block. Contract and figures: docs/interconnect.md.
"""

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..bus.axi import AXI_BOUNDARY_BYTES, Axi4Signature, AxiBurst
from ..bus.axi_arbiter import (
    AX_NAMES,
    COUNTER_BITS,
    ax_fields,
    ax_layout,
    b_layout,
    case,
    queue,
    r_layout,
    w_layout,
)

__all__ = [
    "DEFAULT_GRANULE_BYTES",
    "INTERLEAVER_FAULTS",
    "HbmInterleaver",
    "InterleaveMap",
    "interleaver_stats_layout",
]

#: Deliberate bugs for the mutation tests: ``no_split`` sends every burst whole to the channel
#: of its first address; ``rlast_each_sub_burst`` raises RLAST on the last beat of every
#: sub-burst instead of only the parent burst's last beat.
INTERLEAVER_FAULTS = frozenset({"no_split", "rlast_each_sub_burst"})

#: 256 B: four 64 B HBM line requests a granule, so a 4 KiB DMA burst becomes 16 sub-bursts
#: that alternate over two pseudo-channels (both stream at once), while the order queues stay
#: short (32 sub-bursts cover 8 KiB in flight). docs/interconnect.md has the measurements.
DEFAULT_GRANULE_BYTES = 256


def _log2(n):
    return n.bit_length() - 1


def _is_pow2(n):
    return isinstance(n, int) and not isinstance(n, bool) and n > 0 and n & (n - 1) == 0


@dataclass(frozen=True)
class InterleaveMap:
    """The flat address -> (channel, channel address) map and its inverse.

    A flat address has fields ``upper : field : offset`` with ``offset`` the low
    ``log2(granule_bytes)`` bits and ``field`` the next ``log2(channels)`` bits. The channel is
    ``field`` (``fold`` false) or ``field`` XOR every ``log2(channels)``-bit chunk of ``upper``
    (``fold`` true, the default: power-of-two strides, e.g. the rows of a tile of a wide matrix,
    then spread over the channels instead of landing in one). The channel address squeezes the
    field out: ``upper : offset``. A granule stays whole in one channel; consecutive granules
    alternate channels; each channel's address space is dense.
    """
    channels: int
    granule_bytes: int = DEFAULT_GRANULE_BYTES
    addr_width: int = 32
    fold: bool = True

    def __post_init__(self):
        if not _is_pow2(self.channels):
            raise ValueError(f"channels must be a power of two >= 1, not {self.channels!r}")
        if not _is_pow2(self.granule_bytes) or self.granule_bytes > AXI_BOUNDARY_BYTES:
            raise ValueError(f"granule_bytes must be a power of two <= {AXI_BOUNDARY_BYTES}, "
                             f"not {self.granule_bytes!r}")
        if (not isinstance(self.addr_width, int)
                or self.addr_width <= self.granule_bits + self.channel_bits):
            raise ValueError(f"addr_width must exceed log2(granule_bytes) + log2(channels) = "
                             f"{self.granule_bits + self.channel_bits}, "
                             f"not {self.addr_width!r}")

    @classmethod
    def from_config(cls, config, *, granule_bytes=DEFAULT_GRANULE_BYTES, fold=True):
        return cls(channels=config.hbm_pseudo_channels, granule_bytes=granule_bytes,
                   addr_width=config.axi_addr_bits, fold=fold)

    @property
    def granule_bits(self):
        return _log2(self.granule_bytes)

    @property
    def channel_bits(self):
        return _log2(self.channels)

    def _fold(self, upper):
        c, f = self.channel_bits, 0
        if c == 0 or not self.fold:
            return 0
        while upper:
            f ^= upper & (self.channels - 1)
            upper >>= c
        return f

    def map(self, addr: int) -> tuple[int, int]:
        """``(channel, channel_address)`` of flat byte address ``addr``."""
        if not 0 <= addr < 1 << self.addr_width:
            raise ValueError(f"address {addr:#x} outside {self.addr_width} bits")
        g, c = self.granule_bits, self.channel_bits
        upper = addr >> (g + c)
        field = (addr >> g) & (self.channels - 1)
        return field ^ self._fold(upper), (upper << g) | (addr & (self.granule_bytes - 1))

    def unmap(self, channel: int, channel_addr: int) -> int:
        """The flat address of ``channel_addr`` in ``channel`` (inverse of :meth:`map`)."""
        g, c = self.granule_bits, self.channel_bits
        if not 0 <= channel < self.channels:
            raise ValueError(f"channel {channel} outside 0..{self.channels - 1}")
        if not 0 <= channel_addr < 1 << (self.addr_width - c):
            raise ValueError(f"channel address {channel_addr:#x} outside "
                             f"{self.addr_width - c} bits")
        upper = channel_addr >> g
        field = channel ^ self._fold(upper)
        return (upper << (g + c)) | (field << g) | (channel_addr & (self.granule_bytes - 1))

    # RTL, from the same parameters.

    def channel_rtl(self, addr):
        """The channel of an ``addr_width``-bit address (a value expression)."""
        g, c = self.granule_bits, self.channel_bits
        if c == 0:
            return Const(0, 1)
        result = addr[g:g + c]
        if self.fold:
            upper = addr[g + c:self.addr_width]
            for lo in range(0, len(upper), c):
                chunk = upper[lo:lo + c]
                result = result ^ chunk
        return result

    def channel_addr_rtl(self, addr):
        """The channel address of ``addr``, zero-extended to ``addr_width`` bits."""
        g, c = self.granule_bits, self.channel_bits
        return Cat(addr[:g], addr[g + c:self.addr_width], Const(0, c))


def _pick(m, vec, index, name):
    """Bit ``index`` of ``vec`` through a full-width named shift (no truncating shift)."""
    shifted = Signal(len(vec), name=f"{name}_sh")
    m.d.comb += shifted.eq(vec >> index)
    return shifted[0]


def interleaver_stats_layout(channels: int) -> data.StructLayout:
    """Counters (32 bits, wrapping): ``busy`` (a request, beat or response held, or an
    order entry outstanding), ``stall_in`` (write data owed to an issued sub-burst has not
    arrived on ``s_axi``), ``stall_out`` (an output valid not taken: an ``m_axi`` AR / AW / W or
    the ``s_axi`` R / B); per channel (arrays) ``sub_reads`` / ``sub_writes`` (sub-bursts
    issued)."""
    per = data.ArrayLayout(COUNTER_BITS, channels)
    return data.StructLayout({"busy": COUNTER_BITS, "stall_in": COUNTER_BITS,
                              "stall_out": COUNTER_BITS, "sub_reads": per, "sub_writes": per})


class HbmInterleaver(wiring.Component):
    """One AXI4 subordinate ``s_axi`` onto ``channels`` AXI4 manager ports ``m_axi[c]``.

    Parameters (keyword-only)
    -------------------------
    channels : int
        Pseudo-channels, a power of two; 1 is a plain pass-through (wires, counters only).
    granule_bytes : int
        Interleave granule: a power of two, at least a data beat, at most 4 KiB.
    addr_width, data_width, id_width : int
        Both sides use the same signature; ``m_axi`` addresses are channel addresses
        (:meth:`InterleaveMap.map`), zero-extended.
    fold : bool
        XOR-fold the upper address bits into the channel (:class:`InterleaveMap`).
    order_depth : int
        Sub-bursts in flight per direction (the order queues), >= 2.
    w_buffer_beats : int
        W beats buffered per channel (>= 2; default: a granule, 2 to 16 beats). Write data
        goes out in sub-burst order, so a channel that takes W slowly would hold the stream
        for the others without it.
    faults : set of str
        :data:`INTERLEAVER_FAULTS`, for mutation tests only.

    Contract. An INCR burst (any AxSIZE, unaligned start) is split at granule boundaries into
    sub-bursts, each sent to its channel with the channel bits squeezed out of the address and
    the parent's ID and attributes; FIXED and WRAP bursts go whole to the channel of their
    start address (exact for FIXED and for a WRAP whose wrap boundary lies inside one granule;
    HbmController answers both with SLVERR anyway). One sub-burst is issued a cycle. Reads:
    R beats are returned in request order (an order queue of sub-bursts, each taken from its
    channel), RRESP per beat as the channel gave it, RLAST only on the parent's last beat.
    Writes: W beats are routed to the sub-burst they belong to (WLAST set on each sub-burst's
    last beat; the manager's WLAST is not used), one B per parent, after all its sub-bursts'
    B, with the worst BRESP (DECERR > SLVERR > EXOKAY > OKAY). Each ``m_axi`` subordinate must
    answer its own requests in order (HbmController and cocotbext-axi's AxiRam do; an AXI
    subordinate may reorder different IDs, which this block does not support). Every input
    enters a queue and every output comes from a register or queue (no output valid or ready
    depends combinationally on an input valid). Latency: 2 cycles request to sub-request, 1
    cycle R / B back; one beat a cycle on R and W when nothing stalls.
    Ports: ``s_axi``, ``m_axi`` (array), ``stats`` (:func:`interleaver_stats_layout`).
    """

    def __init__(self, *, channels, addr_width, data_width, id_width,
                 granule_bytes=DEFAULT_GRANULE_BYTES, fold=True, order_depth=32,
                 w_buffer_beats=None, faults=frozenset()):
        self.map = InterleaveMap(channels=channels, granule_bytes=granule_bytes,
                                 addr_width=addr_width, fold=fold)
        self.sig = Axi4Signature(addr_width=addr_width, data_width=data_width,
                                 id_width=id_width)
        if granule_bytes < self.sig.data_bytes:
            raise ValueError(f"granule_bytes ({granule_bytes}) must be at least a data beat "
                             f"({self.sig.data_bytes} bytes)")
        if not isinstance(order_depth, int) or isinstance(order_depth, bool) or order_depth < 2:
            raise ValueError(f"order_depth must be an integer >= 2, not {order_depth!r}")
        if w_buffer_beats is None:
            w_buffer_beats = min(16, max(2, granule_bytes // self.sig.data_bytes))
        if (not isinstance(w_buffer_beats, int) or isinstance(w_buffer_beats, bool)
                or w_buffer_beats < 2):
            raise ValueError(f"w_buffer_beats must be an integer >= 2, not {w_buffer_beats!r}")
        self.w_buffer_beats = w_buffer_beats
        faults = frozenset(faults)
        if faults - INTERLEAVER_FAULTS:
            raise ValueError(f"unknown faults {sorted(faults - INTERLEAVER_FAULTS)}; "
                             f"known: {sorted(INTERLEAVER_FAULTS)}")
        self.channels = channels
        self.granule_bytes = granule_bytes
        self.order_depth = order_depth
        self.faults = faults
        super().__init__({
            "s_axi": In(self.sig),
            "m_axi": Out(self.sig).array(channels),
            "stats": Out(interleaver_stats_layout(channels)),
        })

    @classmethod
    def from_config(cls, config, *, granule_bytes=DEFAULT_GRANULE_BYTES, fold=True,
                    order_depth=32, w_buffer_beats=None, id_width=None, faults=frozenset()):
        """The interleaver in front of ``config``'s HBM pseudo-channels (its AXI parameters;
        ``id_width`` defaults to ``axi_id_bits``, behind an :class:`AxiArbiter` pass its
        ``m_sig.id_width``)."""
        return cls(channels=config.hbm_pseudo_channels, addr_width=config.axi_addr_bits,
                   data_width=config.axi_data_bits,
                   id_width=config.axi_id_bits if id_width is None else id_width,
                   granule_bytes=granule_bytes, fold=fold, order_depth=order_depth,
                   w_buffer_beats=w_buffer_beats, faults=faults)

    def elaborate(self, platform):
        m = Module()
        s, st = self.s_axi, self.stats
        if self.channels == 1:
            mx = self.m_axi[0]
            wiring.connect(m, wiring.flipped(s), wiring.flipped(mx))
            busy, stall = Signal(), Signal()
            m.d.comb += [
                busy.eq(s.arvalid | s.awvalid | s.wvalid | s.rvalid | s.bvalid),
                stall.eq((s.rvalid & ~s.rready) | (s.bvalid & ~s.bready)
                         | (mx.arvalid & ~mx.arready) | (mx.awvalid & ~mx.awready)
                         | (mx.wvalid & ~mx.wready)),
            ]
            m.d.sync += [st.busy.eq(st.busy + busy), st.stall_out.eq(st.stall_out + stall),
                         st.sub_reads[0].eq(st.sub_reads[0] + (s.arvalid & s.arready)),
                         st.sub_writes[0].eq(st.sub_writes[0] + (s.awvalid & s.awready))]
            return m

        p = self.channels
        cb = self.map.channel_bits
        sig = self.sig
        ax, wl = ax_layout(sig), w_layout(sig)

        order_layout = data.StructLayout({"ch": cb, "last": 1})
        word_layout = data.StructLayout({"ch": cb, "len": 8})
        rord, rord_w, rord_r = queue(m, "r_order", order_layout, self.order_depth)
        bord, bord_w, bord_r = queue(m, "b_order", order_layout, self.order_depth)
        word, word_w, word_r = queue(m, "w_route", word_layout, self.order_depth)

        issued = {}
        for ch in ("ar", "aw"):
            q, qw, head = queue(m, f"{ch}_q", ax, 2)
            m.d.comb += [q.w_en.eq(getattr(s, ch + "valid")),
                         getattr(s, ch + "ready").eq(q.w_rdy),
                         *[getattr(qw, f).eq(v) for f, v in ax_fields(s, ch).items()]]
            room_ok = (rord.w_rdy if ch == "ar" else bord.w_rdy & word.w_rdy)
            emit, sub = self._splitter(m, ch, q, head, room_ok)
            issued[ch] = (emit, sub["ch"])
            if ch == "ar":
                m.d.comb += [rord.w_en.eq(emit), rord_w.ch.eq(sub["ch"]),
                             rord_w.last.eq(sub["last"])]
            else:
                m.d.comb += [bord.w_en.eq(emit), bord_w.ch.eq(sub["ch"]),
                             bord_w.last.eq(sub["last"]),
                             word.w_en.eq(emit), word_w.ch.eq(sub["ch"]),
                             word_w.len.eq(sub["len"])]

        # W: route the manager's beats to the sub-burst at the head of the route queue.
        wq, wq_w, wq_r = queue(m, "w_q", wl, 2)
        m.d.comb += [wq.w_en.eq(s.wvalid), s.wready.eq(wq.w_rdy), wq_w.data.eq(s.wdata),
                     wq_w.strb.eq(s.wstrb), wq_w.last.eq(s.wlast)]
        w_count = Signal(8)
        w_last = Signal()
        w_move = Signal()
        w_free = Signal(p)
        w_fifos = []
        for c, mc in enumerate(self.m_axi):
            f, f_w, f_r = queue(m, f"w_buf{c}", wl, self.w_buffer_beats)
            m.d.comb += [f.w_en.eq(w_move & (word_r.ch == c)), f_w.data.eq(wq_r.data),
                         f_w.strb.eq(wq_r.strb), f_w.last.eq(w_last),
                         mc.wvalid.eq(f.r_rdy), mc.wdata.eq(f_r.data), mc.wstrb.eq(f_r.strb),
                         mc.wlast.eq(f_r.last), f.r_en.eq(mc.wready)]
            w_fifos.append(f)
        m.d.comb += [w_last.eq(w_count == word_r.len),
                     w_free.eq(Cat(f.w_rdy for f in w_fifos)),
                     w_move.eq(word.r_rdy & wq.r_rdy & _pick(m, w_free, word_r.ch, "w_free_ch")),
                     wq.r_en.eq(w_move), word.r_en.eq(w_move & w_last)]
        with m.If(w_move):
            m.d.sync += w_count.eq(Mux(w_last, 0, w_count + 1))

        # R: take beats from the channel of the oldest sub-burst, in order.
        rq, rq_w, rq_r = queue(m, "r_q", r_layout(sig), 2)
        r_sel = Signal(r_layout(sig))
        r_sel_valid = Signal()
        with m.Switch(rord_r.ch):
            for c, mc in enumerate(self.m_axi):
                with case(m, c, p):
                    m.d.comb += [r_sel.id.eq(mc.rid), r_sel.data.eq(mc.rdata),
                                 r_sel.resp.eq(mc.rresp), r_sel.last.eq(mc.rlast),
                                 r_sel_valid.eq(mc.rvalid)]
        r_take = Signal()
        m.d.comb += r_take.eq(rord.r_rdy & rq.w_rdy)
        for c, mc in enumerate(self.m_axi):
            m.d.comb += mc.rready.eq(r_take & (rord_r.ch == c))
        last_each = "rlast_each_sub_burst" in self.faults
        m.d.comb += [rq.w_en.eq(r_take & r_sel_valid),
                     rq_w.id.eq(r_sel.id), rq_w.data.eq(r_sel.data), rq_w.resp.eq(r_sel.resp),
                     rq_w.last.eq(r_sel.last & (1 if last_each else rord_r.last)),
                     rord.r_en.eq(r_take & r_sel_valid & r_sel.last),
                     s.rvalid.eq(rq.r_rdy), s.rid.eq(rq_r.id), s.rdata.eq(rq_r.data),
                     s.rresp.eq(rq_r.resp), s.rlast.eq(rq_r.last), rq.r_en.eq(s.rready)]

        # B: one per parent, after all its sub-bursts' B, worst response.
        bq, bq_w, bq_r = queue(m, "b_q", b_layout(sig), 2)
        b_sel_valid = Signal()
        b_sel_id = Signal(sig.id_width)
        b_sel_resp = Signal(2)
        with m.Switch(bord_r.ch):
            for c, mc in enumerate(self.m_axi):
                with case(m, c, p):
                    m.d.comb += [b_sel_valid.eq(mc.bvalid), b_sel_id.eq(mc.bid),
                                 b_sel_resp.eq(mc.bresp)]
        b_take = Signal()
        b_fire = Signal()
        b_acc = Signal(2)
        b_worst = Signal(2)
        m.d.comb += [b_take.eq(bord.r_rdy & (~bord_r.last | bq.w_rdy)),
                     b_fire.eq(b_take & b_sel_valid),
                     b_worst.eq(Mux(b_sel_resp > b_acc, b_sel_resp, b_acc)),
                     bord.r_en.eq(b_fire),
                     bq.w_en.eq(b_fire & bord_r.last), bq_w.id.eq(b_sel_id),
                     bq_w.resp.eq(b_worst),
                     s.bvalid.eq(bq.r_rdy), s.bid.eq(bq_r.id), s.bresp.eq(bq_r.resp),
                     bq.r_en.eq(s.bready)]
        for c, mc in enumerate(self.m_axi):
            m.d.comb += mc.bready.eq(b_take & (bord_r.ch == c))
        with m.If(b_fire):
            m.d.sync += b_acc.eq(Mux(bord_r.last, 0, b_worst))

        # Counters.
        busy, stall_in, stall_out = Signal(), Signal(), Signal()
        outs = []
        for mc in self.m_axi:
            outs += [mc.arvalid & ~mc.arready, mc.awvalid & ~mc.awready, mc.wvalid & ~mc.wready]
        m.d.comb += [
            busy.eq(Cat(rord.r_rdy, bord.r_rdy, word.r_rdy, rq.r_rdy, bq.r_rdy, wq.r_rdy,
                        *(mc.arvalid for mc in self.m_axi), *(mc.awvalid for mc in self.m_axi),
                        *(f.r_rdy for f in w_fifos)).any()),
            stall_in.eq(word.r_rdy & ~wq.r_rdy),
            stall_out.eq(Cat(*outs, s.rvalid & ~s.rready, s.bvalid & ~s.bready).any()),
        ]
        m.d.sync += [st.busy.eq(st.busy + busy), st.stall_in.eq(st.stall_in + stall_in),
                     st.stall_out.eq(st.stall_out + stall_out)]
        for ch, name in (("ar", "sub_reads"), ("aw", "sub_writes")):
            for c in range(p):
                cnt = getattr(st, name)[c]
                emit, sub_ch = issued[ch]
                m.d.sync += cnt.eq(cnt + (emit & (sub_ch == c)))
        return m

    def _splitter(self, m, ch, q, head, room_ok):
        """Split the burst at the head of queue ``q`` into per-granule sub-bursts, one a cycle,
        into per-channel output registers driving ``m_axi[c].<ch>*``. Returns the issue strobe
        and the sub-burst's channel / last / len signals."""
        mp, sig = self.map, self.sig
        aw, gb = sig.addr_width, mp.granule_bits
        busy = Signal(name=f"{ch}_split_busy")
        cur_addr = Signal(aw, name=f"{ch}_cur_addr")
        cur_rem = Signal(9, name=f"{ch}_cur_rem")
        addr = Signal(aw, name=f"{ch}_addr")
        rem = Signal(9, name=f"{ch}_rem")
        m.d.comb += [addr.eq(Mux(busy, cur_addr, head.addr)),
                     rem.eq(Mux(busy, cur_rem, head.len + 1))]
        # Beats from the (size-aligned) address to the end of its granule.
        low = Signal(gb + 1, name=f"{ch}_low")
        room = Signal(gb + 1, name=f"{ch}_room")
        size_mask = Signal(aw, name=f"{ch}_size_mask")
        with m.Switch(head.size):
            for k in range(8):
                with case(m, k, 8):
                    m.d.comb += size_mask.eq((1 << k) - 1)
        m.d.comb += [low.eq(addr[:gb] & ~size_mask),
                     room.eq((self.granule_bytes - low) >> head.size)]
        beats = Signal(9, name=f"{ch}_beats")
        last = Signal(name=f"{ch}_last")
        split = Signal(name=f"{ch}_split")
        m.d.comb += split.eq((head.burst == AxiBurst.INCR) & (rem > room) & (room != 0))
        if "no_split" in self.faults:
            m.d.comb += split.eq(0)
        m.d.comb += [beats.eq(Mux(split, room, rem)), last.eq(~split)]
        sub_len = Signal(8, name=f"{ch}_sub_len")
        m.d.comb += sub_len.eq(beats - 1)
        sub_ch = Signal(max(mp.channel_bits, 1), name=f"{ch}_sub_ch")
        sub_addr = Signal(aw, name=f"{ch}_sub_addr")
        m.d.comb += [sub_ch.eq(mp.channel_rtl(addr)), sub_addr.eq(mp.channel_addr_rtl(addr))]

        valid = [Signal(name=f"{ch}_valid{c}") for c in range(self.channels)]
        out = [Signal(ax_layout(sig), name=f"{ch}_out{c}") for c in range(self.channels)]
        free = Signal(self.channels, name=f"{ch}_free")
        m.d.comb += free.eq(Cat(~valid[c] | getattr(mc, ch + "ready")
                                for c, mc in enumerate(self.m_axi)))
        emit = Signal(name=f"{ch}_emit")
        m.d.comb += [emit.eq(q.r_rdy & room_ok & _pick(m, free, sub_ch, f"{ch}_free_ch")),
                     q.r_en.eq(emit & last)]
        with m.If(emit):
            m.d.sync += busy.eq(~last)
            m.d.sync += [cur_addr.eq((addr & ~size_mask) + (beats << head.size)),
                         cur_rem.eq(rem - beats)]
        for c, mc in enumerate(self.m_axi):
            with m.If(emit & (sub_ch == c)):
                m.d.sync += [valid[c].eq(1), out[c].addr.eq(sub_addr), out[c].len.eq(sub_len),
                             *[getattr(out[c], f).eq(getattr(head, f))
                               for f in AX_NAMES if f not in ("addr", "len")]]
            with m.Elif(getattr(mc, ch + "ready")):
                m.d.sync += valid[c].eq(0)
            m.d.comb += [getattr(mc, ch + "valid").eq(valid[c]),
                         *[getattr(mc, ch + f).eq(getattr(out[c], f)) for f in AX_NAMES]]
        return emit, {"ch": sub_ch, "last": last, "len": sub_len}
