"""AMBA AXI4 and AXI4-Lite protocol rules as formal properties (issue 8).

:func:`axi4_rules` and :func:`axi_lite_rules` add ``Assert`` / ``Assume`` statements about one
bus to a ``Module``. The rules of the side under test are asserted, the rules of the other side
(the environment the solver plays) are assumed, so a proof shows that the block obeys the
protocol against every legal partner. Wire the bus of the block itself (``dut.m_axi`` or
``dut.s_axi``): the rules only read its signals.

Rules of the manager (``AW``, ``W``, ``AR`` channels), from the AMBA AXI4 specification (ARM IHI
0022): in the first cycle after reset ``AWVALID``, ``WVALID`` and ``ARVALID`` are low; a VALID,
once high, stays high until its READY, and the payload (``AxID``, ``AxADDR``, ``AxLEN``,
``AxSIZE``, ``AxBURST``, ``AxLOCK``, ``AxCACHE``, ``AxPROT``, ``AxQOS``; ``WDATA``, ``WSTRB``,
``WLAST``) does not change meanwhile; a write burst has exactly ``AWLEN + 1`` W beats with
``WLAST`` on the last one only (W beats may come before their AW: they are matched to the AWs in
order, and a burst completed before its AW is checked when the AW arrives); ``AxBURST`` is not
the reserved value 3; ``AxSIZE`` is at most the bus width; a WRAP burst has 2, 4, 8 or 16 beats
and an address aligned to ``AxSIZE``; a FIXED burst has at most 16 beats; an INCR burst does not
cross a 4 KiB boundary (:data:`~openmaia.bus.axi.AXI_BOUNDARY_BYTES`), nor, with an address
narrower than 12 bits, the top of the address space; in the first beat of an unaligned
full-width burst the strobes of the lanes below the start address are low. Options add the
promises a design documents: ``incr_only`` (every burst INCR), ``full_size`` (``AxSIZE`` = the
bus width). Outstanding transactions: at most ``max_reads`` read bursts (AR taken, last R beat
not yet) and at most ``max_writes`` write bursts (AW or first W beat taken, B not yet). For a
manager under test that is asserted; for a manager in the environment it is assumed as "a new
AR / AW / first W beat is offered only while fewer are outstanding".

Rules of the subordinate (``R``, ``B``): in the first cycle after reset ``RVALID`` and
``BVALID`` are low; VALID held until READY with ``RID``, ``RDATA``, ``RRESP``, ``RLAST`` /
``BID``, ``BRESP`` stable; an R beat only while a read burst is outstanding (its AR taken in an
earlier cycle), ``RLAST`` exactly on beat ``ARLEN``; a B only for a write burst whose AW and last
W beat were taken in earlier cycles. Order: responses in request order over all IDs, so ``RID``
/ ``BID`` is the ID of the oldest outstanding read / write (the documented behaviour of every
OpenMaia block: one ID on the DMA, in-order subordinates). A subordinate that reorders across
IDs needs per-ID queues, which this checker does not have.

Tracking: two queues of ``depth`` entries (the next power of two >= the limit) hold the length,
ID and low address bits of every outstanding burst; the counts are in :class:`AxiTracker`, for
induction invariants. Reset: every check is off in a cycle with ``ResetSignal()`` high, and the
tracking state resets with the domain (both sides reset together, as the specification
requires).
"""

from dataclasses import dataclass

from amaranth.hdl import (
    Array,
    Assert,
    Assume,
    Cat,
    Const,
    Mux,
    ResetSignal,
    Signal,
    Value,
)
from amaranth.lib import wiring
from openmaia.bus.axi import (
    AXI4_MAX_BEATS,
    AXI_BOUNDARY_BYTES,
    Axi4Signature,
    AxiBurst,
    AxiLiteSignature,
)

__all__ = ["MANAGER", "SUBORDINATE", "AxiTracker", "axi4_rules", "axi_lite_rules"]

MANAGER = "manager"
SUBORDINATE = "subordinate"

_AX_FIELDS = ("id", "addr", "len", "size", "burst", "lock", "cache", "prot", "qos")


def _unflipped(bus, kind):
    sig = bus.signature
    if isinstance(sig, wiring.FlippedSignature):
        sig = sig.flip()
    if not isinstance(sig, kind):
        raise TypeError(f"bus must have a {kind.__name__}, not {sig!r}")
    return sig


def _check_side(under_test):
    if under_test not in (MANAGER, SUBORDINATE):
        raise ValueError(f"under_test must be {MANAGER!r} or {SUBORDINATE!r}, "
                         f"not {under_test!r}")


def _check_limit(name, value):
    if not isinstance(value, int) or not 1 <= value <= 256:
        raise ValueError(f"{name} must be an integer in 1..256, not {value!r}")


class _Rules:
    """Statements about one bus: ``Assert`` for the side under test, ``Assume`` otherwise."""

    def __init__(self, m, bus, under_test, name, domain):
        self.m, self.bus, self.under_test, self.name = m, bus, under_test, name
        self.domain = domain
        self.live = Signal(name=f"{name}_live")
        self.fresh = Signal(init=1, name=f"{name}_fresh")
        m.d.comb += self.live.eq(~ResetSignal(domain))
        m.d[domain] += self.fresh.eq(0)

    def sig(self, name, **kwargs):
        return Signal(name=f"{self.name}_{name}", **kwargs)

    def rule(self, driver, test, guard=None):
        """``test`` is a rule of ``driver`` (MANAGER or SUBORDINATE), checked when ``guard``."""
        prop = Assert if driver == self.under_test else Assume
        cond = self.live if guard is None else self.live & guard
        with self.m.If(cond):
            self.m.d.comb += prop(test, src_loc_at=1)

    def handshake(self, driver, prefix, valid, ready, payload):
        """VALID low right after reset; held, with a stable payload, until READY."""
        m = self.m
        value = Cat(*payload)
        waiting = self.sig(f"{prefix}_waiting")
        held = self.sig(f"{prefix}_held", shape=len(value))
        m.d[self.domain] += [waiting.eq(self.live & valid & ~ready), held.eq(value)]
        self.rule(driver, ~valid, self.fresh)
        self.rule(driver, valid, waiting)
        self.rule(driver, value == held, waiting)
        return waiting


@dataclass(frozen=True)
class AxiTracker:
    """The checker's state, for induction invariants: reads outstanding (``n_ar``: AR taken,
    last R beat not yet), the beat of the current R burst (``r_beat``); writes: AWs taken and
    W bursts completed, not yet answered by B (``n_aw``, ``n_wb``), the beat of the current W
    burst (``w_beat``); the queues' heads (``rd_head``, ``wr_head``) and entries (``rd_len``,
    ``rd_id``, ``wr_len``, ``wr_id``)."""
    depth: int
    n_ar: Value
    r_beat: Value
    rd_head: Value
    rd_len: tuple
    rd_id: tuple
    n_aw: Value
    n_wb: Value
    w_beat: Value
    wr_head: Value
    wr_len: tuple
    wr_id: tuple


def _pow2_at_least(n):
    return max(2, 1 << (n - 1).bit_length())


def axi4_rules(m, bus, *, under_test, max_reads, max_writes, incr_only=False, full_size=False,
               name="axi", domain="sync"):
    """Add the AXI4 rules of ``bus`` (an interface of :class:`~openmaia.bus.axi.Axi4Signature`,
    either direction) to ``m``; assert those of ``under_test`` (:data:`MANAGER` or
    :data:`SUBORDINATE`), assume the others. Returns the :class:`AxiTracker`.

    ``max_reads`` / ``max_writes`` (1..256): outstanding read / write bursts (module docstring).
    ``incr_only``, ``full_size``: the manager's documented promises (every burst INCR;
    ``AxSIZE`` = the bus width), asserted or assumed with the manager's other rules.
    """
    _check_side(under_test)
    _check_limit("max_reads", max_reads)
    _check_limit("max_writes", max_writes)
    sig = _unflipped(bus, Axi4Signature)
    r = _Rules(m, bus, under_test, name, domain)
    M, S = MANAGER, SUBORDINATE
    aw_bits = sig.addr_width
    lanes = sig.data_bytes
    lane_bits = max(1, sig.size_code)
    idw = sig.id_width

    def ax(prefix):
        return {f: getattr(bus, prefix + f) for f in _AX_FIELDS}

    ar, awc = ax("ar"), ax("aw")
    r.handshake(M, "ar", bus.arvalid, bus.arready, ar.values())
    r.handshake(M, "aw", bus.awvalid, bus.awready, awc.values())
    r.handshake(M, "w", bus.wvalid, bus.wready, (bus.wdata, bus.wstrb, bus.wlast))
    r.handshake(S, "r", bus.rvalid, bus.rready, (bus.rid, bus.rdata, bus.rresp, bus.rlast))
    r.handshake(S, "b", bus.bvalid, bus.bready, (bus.bid, bus.bresp))

    # Burst shape (manager).
    for prefix, c in (("ar", ar), ("aw", awc)):
        valid = getattr(bus, prefix + "valid")
        r.rule(M, c["burst"] != 3, valid)
        r.rule(M, c["size"] <= sig.size_code, valid)
        if incr_only:
            r.rule(M, c["burst"] == AxiBurst.INCR, valid)
        if full_size:
            r.rule(M, c["size"] == sig.size_code, valid)
        is_wrap = valid & (c["burst"] == AxiBurst.WRAP)
        r.rule(M, (c["len"] == 1) | (c["len"] == 3) | (c["len"] == 7) | (c["len"] == 15),
               is_wrap)
        align = r.sig(f"{prefix}_misaligned")
        m.d.comb += align.eq((c["addr"] & ((Const(1, aw_bits + 1) << c["size"]) - 1)) != 0)
        r.rule(M, ~align, is_wrap)
        r.rule(M, c["len"] < 16, valid & (c["burst"] == AxiBurst.FIXED))
        page_bits = min(12, aw_bits)
        page = min(AXI_BOUNDARY_BYTES, 1 << aw_bits)
        start = r.sig(f"{prefix}_page_start", shape=page_bits)
        end = r.sig(f"{prefix}_page_end", shape=page_bits + 10)
        m.d.comb += [start.eq((c["addr"][:page_bits] >> c["size"]) << c["size"]),
                     end.eq(start + ((c["len"] + 1) << c["size"]))]
        r.rule(M, end <= page, valid & (c["burst"] == AxiBurst.INCR))

    # Read tracking: a queue of outstanding ARs (length, ID).
    depth_r = _pow2_at_least(max_reads)
    hb_r = max(1, (depth_r - 1).bit_length())
    rd_len = [r.sig(f"rd_len{i}", shape=8) for i in range(depth_r)]
    rd_id = [r.sig(f"rd_id{i}", shape=idw) for i in range(depth_r)]
    rd_head = r.sig("rd_head", shape=hb_r)
    n_ar = r.sig("n_ar", shape=range(max_reads + 1))
    r_beat = r.sig("r_beat", shape=8)
    ar_take = r.sig("ar_take")
    r_take = r.sig("r_take")
    r_end = r.sig("r_end")
    cur_len = r.sig("r_cur_len", shape=8)
    cur_id = r.sig("r_cur_id", shape=idw)
    m.d.comb += [ar_take.eq(bus.arvalid & bus.arready), r_take.eq(bus.rvalid & bus.rready),
                 cur_len.eq(Array(rd_len)[rd_head]), cur_id.eq(Array(rd_id)[rd_head]),
                 r_end.eq(r_take & (r_beat == cur_len))]
    # A new AR only while fewer than max_reads are outstanding.
    r.rule(M, n_ar < max_reads, bus.arvalid)
    r.rule(S, n_ar != 0, bus.rvalid)
    r.rule(S, bus.rlast == (r_beat == cur_len), bus.rvalid)
    r.rule(S, bus.rid == cur_id, bus.rvalid)
    ar_slot = r.sig("ar_slot", shape=hb_r)
    m.d.comb += ar_slot.eq(rd_head + n_ar)
    for i in range(depth_r):
        with m.If(ar_take & (ar_slot == i)):
            m.d[domain] += [rd_len[i].eq(bus.arlen), rd_id[i].eq(bus.arid)]
    with m.If(r_take):
        m.d[domain] += r_beat.eq(Mux(r_end, 0, r_beat + 1))
    m.d[domain] += [n_ar.eq(n_ar + ar_take - r_end), rd_head.eq(rd_head + r_end)]

    # Write tracking: AWs and W bursts matched in order; a queue of the unanswered bursts
    # (length from whichever came first, ID and start lane from the AW).
    depth_w = _pow2_at_least(max_writes)
    hb_w = max(1, (depth_w - 1).bit_length())
    wr_len = [r.sig(f"wr_len{i}", shape=8) for i in range(depth_w)]
    wr_id = [r.sig(f"wr_id{i}", shape=idw) for i in range(depth_w)]
    wr_lane = [r.sig(f"wr_lane{i}", shape=lane_bits) for i in range(depth_w)]
    wr_full = [r.sig(f"wr_full{i}") for i in range(depth_w)]   # full-size INCR burst
    wr_head = r.sig("wr_head", shape=hb_w)
    n_aw = r.sig("n_aw", shape=range(max_writes + 1))
    n_wb = r.sig("n_wb", shape=range(max_writes + 1))
    w_beat = r.sig("w_beat", shape=8)
    aw_take, w_take, b_take = r.sig("aw_take"), r.sig("w_take"), r.sig("b_take")
    m.d.comb += [aw_take.eq(bus.awvalid & bus.awready), w_take.eq(bus.wvalid & bus.wready),
                 b_take.eq(bus.bvalid & bus.bready)]
    aw_slot, wb_slot = r.sig("aw_slot", shape=hb_w), r.sig("wb_slot", shape=hb_w)
    m.d.comb += [aw_slot.eq(wr_head + n_aw), wb_slot.eq(wr_head + n_wb)]
    aw_full = r.sig("aw_full_incr")
    m.d.comb += aw_full.eq((bus.awburst == AxiBurst.INCR) & (bus.awsize == sig.size_code))

    # The current W burst's AW: queued, or taken in this cycle, or not yet known.
    known = r.sig("w_aw_known")
    w_len, w_lane, w_full = (r.sig("w_len", shape=8), r.sig("w_lane", shape=lane_bits),
                             r.sig("w_full"))
    queued = r.sig("w_aw_queued")
    m.d.comb += queued.eq(n_aw > n_wb)
    m.d.comb += known.eq(queued | (aw_take & (n_aw == n_wb)))
    m.d.comb += [
        w_len.eq(Mux(queued, Array(wr_len)[wb_slot], bus.awlen)),
        w_lane.eq(Mux(queued, Array(wr_lane)[wb_slot], bus.awaddr[:lane_bits])),
        w_full.eq(Mux(queued, Array(wr_full)[wb_slot], aw_full)),
    ]
    w_end = r.sig("w_end")
    m.d.comb += w_end.eq(w_take & Mux(known, w_beat == w_len, bus.wlast))
    r.rule(M, bus.wlast == (w_beat == w_len), bus.wvalid & known)
    r.rule(M, w_beat != AXI4_MAX_BEATS - 1, bus.wvalid & ~known & ~bus.wlast)
    if lanes > 1:
        below = r.sig("w_strb_below", shape=lanes)
        m.d.comb += below.eq((Const(1, lanes + 1) << w_lane) - 1)
        r.rule(M, (bus.wstrb & below) == 0, bus.wvalid & known & w_full & (w_beat == 0))
    # An AW for a burst whose W beats came first: its length must match them.
    early_len = r.sig("aw_early_len", shape=8)
    m.d.comb += early_len.eq(Array(wr_len)[aw_slot])
    r.rule(M, bus.awlen == early_len, bus.awvalid & (n_wb > n_aw))
    r.rule(M, bus.awlen >= w_beat, bus.awvalid & (n_wb == n_aw))
    # A new AW, or the first W beat of a burst, only while fewer than max_writes are begun.
    r.rule(M, n_aw < max_writes, bus.awvalid)
    r.rule(M, n_wb < max_writes, bus.wvalid)
    # B only after the burst's AW and last W beat; BID of the oldest unanswered write.
    r.rule(S, (n_aw != 0) & (n_wb != 0), bus.bvalid)
    r.rule(S, bus.bid == Array(wr_id)[wr_head], bus.bvalid)
    for i in range(depth_w):
        with m.If(aw_take & (aw_slot == i)):
            m.d[domain] += [wr_id[i].eq(bus.awid), wr_lane[i].eq(bus.awaddr[:lane_bits]),
                            wr_full[i].eq(aw_full)]
            with m.If(n_wb <= n_aw):
                m.d[domain] += wr_len[i].eq(bus.awlen)
        with m.If(w_end & ~known & (wb_slot == i)):
            m.d[domain] += wr_len[i].eq(w_beat)
    with m.If(w_take):
        m.d[domain] += w_beat.eq(Mux(w_end, 0, w_beat + 1))
    m.d[domain] += [n_aw.eq(n_aw + aw_take - b_take), n_wb.eq(n_wb + w_end - b_take),
                    wr_head.eq(wr_head + b_take)]

    return AxiTracker(depth=depth_r, n_ar=n_ar, r_beat=r_beat, rd_head=rd_head,
                      rd_len=tuple(rd_len), rd_id=tuple(rd_id), n_aw=n_aw, n_wb=n_wb,
                      w_beat=w_beat, wr_head=wr_head, wr_len=tuple(wr_len), wr_id=tuple(wr_id))


def axi_lite_rules(m, bus, *, under_test, max_reads, max_writes, name="axil", domain="sync"):
    """Add the AXI4-Lite rules of ``bus`` (an :class:`~openmaia.bus.axi.AxiLiteSignature`
    interface) to ``m``: VALID held with a stable payload until READY, low right after reset;
    an R only while a read is outstanding; a B only after both the AW and the W of a write
    (taken in earlier cycles; AW and W may come in either order); at most ``max_reads`` /
    ``max_writes`` outstanding (asserted of a manager under test, assumed of an environment
    manager as "no new request while that many are outstanding"). Returns the counts
    ``(n_ar, n_aw, n_w)``."""
    _check_side(under_test)
    _check_limit("max_reads", max_reads)
    _check_limit("max_writes", max_writes)
    _unflipped(bus, AxiLiteSignature)
    r = _Rules(m, bus, under_test, name, domain)
    M, S = MANAGER, SUBORDINATE
    r.handshake(M, "ar", bus.arvalid, bus.arready, (bus.araddr, bus.arprot))
    r.handshake(M, "aw", bus.awvalid, bus.awready, (bus.awaddr, bus.awprot))
    r.handshake(M, "w", bus.wvalid, bus.wready, (bus.wdata, bus.wstrb))
    r.handshake(S, "r", bus.rvalid, bus.rready, (bus.rdata, bus.rresp))
    r.handshake(S, "b", bus.bvalid, bus.bready, (bus.bresp,))
    n_ar = r.sig("n_ar", shape=range(max_reads + 1))
    n_aw = r.sig("n_aw", shape=range(max_writes + 1))
    n_w = r.sig("n_w", shape=range(max_writes + 1))
    ar_take, r_take = bus.arvalid & bus.arready, bus.rvalid & bus.rready
    aw_take, w_take = bus.awvalid & bus.awready, bus.wvalid & bus.wready
    b_take = bus.bvalid & bus.bready
    r.rule(M, n_ar < max_reads, bus.arvalid)
    r.rule(M, n_aw < max_writes, bus.awvalid)
    r.rule(M, n_w < max_writes, bus.wvalid)
    r.rule(S, n_ar != 0, bus.rvalid)
    r.rule(S, (n_aw != 0) & (n_w != 0), bus.bvalid)
    m.d[domain] += [n_ar.eq(n_ar + ar_take - r_take), n_aw.eq(n_aw + aw_take - b_take),
                    n_w.eq(n_w + w_take - b_take)]
    return n_ar, n_aw, n_w
