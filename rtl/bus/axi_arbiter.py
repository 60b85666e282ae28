"""AXI4 arbiter: ``managers`` AXI4 managers share one subordinate port (docs/interconnect.md).

Also the AXI channel payload layouts and the small registered-queue helpers that
:mod:`openmaia.hbm.interleaver` shares.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .axi import Axi4Signature

__all__ = [
    "ARBITER_FAULTS",
    "COUNTER_BITS",
    "AxiArbiter",
    "arbiter_stats_layout",
    "assign",
    "ax_fields",
    "ax_layout",
    "b_layout",
    "case",
    "queue",
    "r_layout",
    "w_layout",
]

#: Deliberate bugs for the mutation tests: ``w_ignores_order`` takes W beats from any manager
#: that has one (locked to it until WLAST) instead of following the AW grant order.
ARBITER_FAULTS = frozenset({"w_ignores_order"})
COUNTER_BITS = 32
AX_NAMES = ("id", "addr", "len", "size", "burst", "lock", "cache", "prot", "qos")


def ax_layout(sig: Axi4Signature, id_width=None) -> data.StructLayout:
    """An AR or AW request (``id_width`` overrides the signature's)."""
    return data.StructLayout({
        "id": sig.id_width if id_width is None else id_width, "addr": sig.addr_width,
        "len": 8, "size": 3, "burst": 2, "lock": 1, "cache": 4, "prot": 3, "qos": 4})


def w_layout(sig: Axi4Signature) -> data.StructLayout:
    return data.StructLayout({"data": sig.data_width, "strb": sig.data_bytes, "last": 1})


def r_layout(sig: Axi4Signature) -> data.StructLayout:
    return data.StructLayout({"id": sig.id_width, "data": sig.data_width, "resp": 2, "last": 1})


def b_layout(sig: Axi4Signature) -> data.StructLayout:
    return data.StructLayout({"id": sig.id_width, "resp": 2})


def ax_fields(bus, ch):
    """The AR (``ch`` = "ar") or AW ("aw") payload members of an AXI port, by layout name."""
    return {name: getattr(bus, ch + name) for name in AX_NAMES}


def queue(m, name, layout, depth):
    """A :class:`SyncFIFO` of ``layout`` entries: ``w_rdy`` / ``r_rdy`` come from its level
    (registers), a write is readable the next cycle, one write and one read a cycle.
    Returns the FIFO, a writable view of ``w_data`` and a view of ``r_data``."""
    fifo = SyncFIFO(width=data.Layout.cast(layout).size, depth=depth)
    m.submodules[name] = fifo
    return fifo, data.View(layout, fifo.w_data), data.View(layout, fifo.r_data)


def assign(view, values):
    """Statements setting the fields of ``view`` from a ``{name: value}`` dict."""
    return [getattr(view, name).eq(value) for name, value in values.items()]


def case(m, i, n):
    """``m.Case(i)`` inside a ``m.Switch`` over ``n`` choices, the last one as ``m.Default()``
    (so the Verilog case is complete for any ``n``)."""
    return m.Case(i) if i < n - 1 else m.Default()


def arbiter_stats_layout(managers: int) -> data.StructLayout:
    """Counters (32 bits, wrapping). Per manager (arrays): ``ar_grants`` / ``aw_grants``
    (requests granted), ``ar_wait`` / ``aw_wait`` (cycles a request waited for its grant).
    Whole block: ``busy`` (a request, beat or response held anywhere), ``stall_out`` (an output
    valid not taken: ``m_axi`` AR / AW / W or an ``s_axi`` R / B), ``w_wait`` (the manager at
    the head of the W order has no beat: stalled on input)."""
    per = data.ArrayLayout(COUNTER_BITS, managers)
    return data.StructLayout({"busy": COUNTER_BITS, "stall_out": COUNTER_BITS,
                              "w_wait": COUNTER_BITS, "ar_grants": per, "aw_grants": per,
                              "ar_wait": per, "aw_wait": per})


def _round_robin(m, name, req, last, n):
    """Grant (index) and ``any`` of a round-robin choice among ``req`` bits: the first
    requester after ``last`` (the index granted before), wrapping."""
    grant = Signal(range(max(n, 2)), name=f"{name}_grant")
    anyreq = Signal(name=f"{name}_any")
    m.d.comb += [anyreq.eq(req.any()), grant.eq(0)]
    if n == 1:
        return grant, anyreq
    with m.Switch(last):
        for prev in range(n):
            with case(m, prev, n):
                order = [(prev + k) % n for k in range(1, n + 1)]
                for k, idx in enumerate(order):
                    with (m.If if k == 0 else m.Elif)(req[idx]):
                        m.d.comb += grant.eq(idx)
    return grant, anyreq


class AxiArbiter(wiring.Component):
    """``managers`` AXI4 subordinate ports ``s_axi[i]`` onto one AXI4 manager port ``m_axi``.

    Parameters (keyword-only)
    -------------------------
    managers : int
        Number of upstream managers, >= 1 (1 is a plain registered pass-through with the same
        ID width).
    addr_width, data_width, id_width : int
        The ``s_axi`` ports; ``m_axi`` has ``id_width + ceil(log2(managers))`` ID bits, the
        manager index in the top bits.
    w_order_depth : int
        AW grants whose W beats have not all passed yet (the W-order queue), >= 1.
    faults : set of str
        :data:`ARBITER_FAULTS`, for mutation tests only.

    Contract: AR and AW are each granted round-robin among the managers with a request
    (one grant a cycle per channel). R and B are routed back by the top ID bits, the ID's low
    bits returned unchanged. W beats go out in the order the AWs were granted: a manager's W
    beats wait until its AW is granted and every earlier granted burst's W has passed. Every
    ``s_axi`` input enters a 2-entry queue and every ``m_axi`` output and ``s_axi`` R / B
    output comes from a register or queue, so no output valid or ready depends combinationally
    on an input valid; the only combinational paths are an input ready to the queue read it
    enables. Latency: AR / AW / W 2 cycles (queue + output register), R / B 1 cycle; one beat a
    cycle on R and W when nothing stalls. Ports: ``s_axi`` (array), ``m_axi``, ``stats``
    (:func:`arbiter_stats_layout`).
    """

    def __init__(self, *, managers, addr_width, data_width, id_width, w_order_depth=4,
                 faults=frozenset()):
        for name, value in (("managers", managers), ("id_width", id_width),
                            ("w_order_depth", w_order_depth)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        faults = frozenset(faults)
        if faults - ARBITER_FAULTS:
            raise ValueError(f"unknown faults {sorted(faults - ARBITER_FAULTS)}; "
                             f"known: {sorted(ARBITER_FAULTS)}")
        self.managers = managers
        self.select_bits = (managers - 1).bit_length()
        self.w_order_depth = w_order_depth
        self.faults = faults
        self.s_sig = Axi4Signature(addr_width=addr_width, data_width=data_width,
                                   id_width=id_width)
        self.m_sig = Axi4Signature(addr_width=addr_width, data_width=data_width,
                                   id_width=id_width + self.select_bits)
        super().__init__({
            "s_axi": In(self.s_sig).array(managers),
            "m_axi": Out(self.m_sig),
            "stats": Out(arbiter_stats_layout(managers)),
        })

    @classmethod
    def from_config(cls, config, *, managers=3, w_order_depth=4, faults=frozenset()):
        """The tile's arbiter: ``s_axi`` ports with ``config``'s AXI parameters (the
        signature of :class:`~openmaia.tile.dma.TileDma` ``m_axi``); ``m_axi`` has
        ``axi_id_bits + ceil(log2(managers))`` ID bits, so the HBM side (interleaver,
        controller) is built with ``id_width=arbiter.m_sig.id_width``."""
        return cls(managers=managers, addr_width=config.axi_addr_bits,
                   data_width=config.axi_data_bits, id_width=config.axi_id_bits,
                   w_order_depth=w_order_depth, faults=faults)

    def elaborate(self, platform):
        m = Module()
        n, sb, s_sig = self.managers, self.select_bits, self.s_sig
        mx = self.m_axi
        iw = s_sig.id_width
        ax_in, w_in = ax_layout(s_sig), w_layout(s_sig)
        ax_out = ax_layout(self.m_sig)

        # Input queues.
        arq, awq, wq = [], [], []
        for i, s in enumerate(self.s_axi):
            q, wv, _ = queue(m, f"ar_q{i}", ax_in, 2)
            m.d.comb += [q.w_en.eq(s.arvalid), s.arready.eq(q.w_rdy),
                         *assign(wv, ax_fields(s, "ar"))]
            arq.append(q)
            q, wv, _ = queue(m, f"aw_q{i}", ax_in, 2)
            m.d.comb += [q.w_en.eq(s.awvalid), s.awready.eq(q.w_rdy),
                         *assign(wv, ax_fields(s, "aw"))]
            awq.append(q)
            q, wv, _ = queue(m, f"w_q{i}", w_in, 2)
            m.d.comb += [q.w_en.eq(s.wvalid), s.wready.eq(q.w_rdy),
                         *assign(wv, {"data": s.wdata, "strb": s.wstrb, "last": s.wlast})]
            wq.append(q)

        worder, worder_w, worder_r = queue(m, "w_order", data.StructLayout({"m": max(sb, 1)}),
                                           self.w_order_depth)

        grants = {}
        for ch, qs in (("ar", arq), ("aw", awq)):
            valid = Signal(name=f"{ch}_out_valid")
            out = Signal(ax_out, name=f"{ch}_out")
            last = Signal(range(max(n, 2)), name=f"{ch}_last")
            req = Signal(n, name=f"{ch}_req")
            m.d.comb += req.eq(Cat(q.r_rdy for q in qs))
            grant, anyreq = _round_robin(m, ch, req, last, n)
            free = Signal(name=f"{ch}_free")
            take = Signal(name=f"{ch}_take")
            m.d.comb += free.eq(~valid | getattr(mx, ch + "ready"))
            if ch == "aw":
                m.d.comb += take.eq(free & anyreq & worder.w_rdy)
                m.d.comb += [worder.w_en.eq(take), worder_w.m.eq(grant)]
            else:
                m.d.comb += take.eq(free & anyreq)
            sel = Signal(ax_in, name=f"{ch}_sel")
            with m.Switch(grant):
                for i, q in enumerate(qs):
                    with case(m, i, n):
                        m.d.comb += sel.eq(q.r_data)
            m.d.comb += [q.r_en.eq(take & (grant == i)) for i, q in enumerate(qs)]
            with m.If(take):
                m.d.sync += [valid.eq(1), last.eq(grant),
                             out.id.eq(Cat(sel.id, grant[:sb]) if sb else sel.id),
                             *[getattr(out, f).eq(getattr(sel, f)) for f in AX_NAMES[1:]]]
            with m.Elif(getattr(mx, ch + "ready")):
                m.d.sync += valid.eq(0)
            m.d.comb += [getattr(mx, ch + "valid").eq(valid),
                         *[getattr(mx, ch + name).eq(getattr(out, name)) for name in AX_NAMES]]
            grants[ch] = (grant, take, req)

        # W: follow the AW grant order.
        w_valid = Signal()
        w_out = Signal(w_in)
        w_free = Signal()
        m.d.comb += [w_free.eq(~w_valid | mx.wready), mx.wvalid.eq(w_valid),
                     mx.wdata.eq(w_out.data), mx.wstrb.eq(w_out.strb), mx.wlast.eq(w_out.last)]
        src = Signal(range(max(n, 2)))
        src_ok = Signal()
        if "w_ignores_order" in self.faults:
            locked, lock_src = Signal(), Signal(range(max(n, 2)))
            m.d.comb += src.eq(lock_src)
            with m.If(~locked):
                for i in reversed(range(n)):
                    with m.If(wq[i].r_rdy):
                        m.d.comb += src.eq(i)
            m.d.comb += src_ok.eq(worder.r_rdy)
        else:
            m.d.comb += [src.eq(worder_r.m), src_ok.eq(worder.r_rdy)]
        w_sel = Signal(w_in)
        w_sel_rdy = Signal()
        w_move = Signal()
        with m.Switch(src):
            for i, q in enumerate(wq):
                with case(m, i, n):
                    m.d.comb += [w_sel.eq(q.r_data), w_sel_rdy.eq(q.r_rdy)]
        m.d.comb += [q.r_en.eq(w_move & (src == i)) for i, q in enumerate(wq)]
        m.d.comb += [w_move.eq(src_ok & w_sel_rdy & w_free), worder.r_en.eq(w_move & w_sel.last)]
        with m.If(w_move):
            m.d.sync += [w_valid.eq(1), w_out.eq(w_sel)]
        with m.Elif(mx.wready):
            m.d.sync += w_valid.eq(0)
        if "w_ignores_order" in self.faults:
            with m.If(w_move):
                m.d.sync += [locked.eq(~w_sel.last), lock_src.eq(src)]

        # R and B: a 2-entry queue from m_axi, routed by the ID's top bits.
        resp_busy = []
        for ch, layout, fields in (
                ("r", r_layout(self.m_sig), ("id", "data", "resp", "last")),
                ("b", b_layout(self.m_sig), ("id", "resp"))):
            q, wv, rv = queue(m, f"{ch}_q", layout, 2)
            m.d.comb += [q.w_en.eq(getattr(mx, ch + "valid")),
                         getattr(mx, ch + "ready").eq(q.w_rdy),
                         *[getattr(wv, f).eq(getattr(mx, ch + f)) for f in fields]]
            dest = Signal(range(max(n, 2)), name=f"{ch}_dest")
            m.d.comb += dest.eq(rv.id[iw:] if sb else 0)
            for i, s in enumerate(self.s_axi):
                m.d.comb += [getattr(s, ch + "valid").eq(q.r_rdy & (dest == i)),
                             getattr(s, ch + "id").eq(rv.id[:iw]),
                             *[getattr(s, ch + f).eq(getattr(rv, f))
                               for f in fields if f != "id"]]
            with m.Switch(dest):
                for i, s in enumerate(self.s_axi):
                    with case(m, i, n):
                        m.d.comb += q.r_en.eq(getattr(s, ch + "ready"))
            resp_busy.append(q)

        # Counters.
        st = self.stats
        busy = Signal()
        stall_out = Signal()
        m.d.comb += [
            busy.eq(Cat(*(q.r_rdy for q in arq + awq + wq + resp_busy), worder.r_rdy,
                        mx.arvalid, mx.awvalid, mx.wvalid).any()),
            stall_out.eq((mx.arvalid & ~mx.arready) | (mx.awvalid & ~mx.awready)
                         | (mx.wvalid & ~mx.wready)
                         | Cat(*((s.rvalid & ~s.rready) | (s.bvalid & ~s.bready)
                                 for s in self.s_axi)).any()),
        ]
        m.d.sync += [st.busy.eq(st.busy + busy), st.stall_out.eq(st.stall_out + stall_out),
                     st.w_wait.eq(st.w_wait + (src_ok & ~w_sel_rdy))]
        for ch in ("ar", "aw"):
            grant, take, req = grants[ch]
            for i in range(n):
                won = Signal(name=f"{ch}_won{i}")
                m.d.comb += won.eq(take & (grant == i))
                g, w = getattr(st, f"{ch}_grants")[i], getattr(st, f"{ch}_wait")[i]
                m.d.sync += [g.eq(g + won), w.eq(w + (req[i] & ~won))]
        return m
