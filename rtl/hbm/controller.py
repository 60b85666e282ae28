"""Cycle-level HBM3 pseudo-channel controller model behind AXI4 subordinate ports.

One model clock is one memory cycle (tCK); the AXI side runs on the same clock. Per pseudo-channel
(:class:`HbmChannel`): an AXI4 front end that splits INCR bursts into 64 B line requests, a
request queue of ``queue_depth`` entries (age-ordered, collapsing), per-bank state (open row),
timing counters and issue legality in their own component (:class:`HbmTimers`), one row command
(ACT / PRE / REF) and one column command (RD / WR, one 32 B burst each) a cycle, open-page FR-FCFS
with a cap on row-hit reordering, all-bank refresh every tREFI, a data store
(``capacity_bytes``), a command-stream output (``trace``) and counters (``stats``).
:class:`HbmController` puts ``pseudo_channels`` of them side by side. docs/hbm.md is the contract.
"""

import enum

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..bus.axi import Axi4Signature, AxiBurst, AxiResp
from .mapping import check_mapping, map_address_rtl
from .timing import ORGANISATION, HbmOrganisation, HbmTiming, get_timing

__all__ = ["HbmController", "HbmChannel", "HbmTimers", "RowCmd", "ColCmd", "FAULTS",
           "TIMING_FAULTS", "oldest_wait_bound", "HIST_BINS", "trace_layout", "stats_layout",
           "histogram_bin"]

#: Deliberate bugs for the checker's mutation tests: each ``*_short`` shortens one limit by one
#: cycle in :class:`HbmTimers`; ``no_refresh`` never refreshes; ``no_hit_cap`` drops the row-hit
#: reordering cap; ``no_age_cap`` drops the age cap (the oldest request can starve);
#: ``col_ignores_timers`` issues column commands without the timers' ``rd_ok`` / ``wr_ok``.
TIMING_FAULTS = {
    "trcd_short": ("tRCD_RD", "tRCD_WR"), "trp_short": ("tRP",), "tras_short": ("tRAS",),
    "trc_short": ("tRC",), "twr_short": ("tWR",), "trtp_short": ("tRTP",),
    "trtw_short": ("tRTW",), "tccd_s_short": ("tCCD_S",), "tccd_l_short": ("tCCD_L",),
    "tccd_r_short": ("tCCD_R",), "trrd_s_short": ("tRRD_S",), "trrd_l_short": ("tRRD_L",),
    "tfaw_short": ("tFAW",), "twtr_s_short": ("tWTR_S",), "twtr_l_short": ("tWTR_L",),
    "trfc_short": ("tRFC",),
}
FAULTS = frozenset(TIMING_FAULTS) | {"no_refresh", "no_hit_cap", "no_age_cap",
                                     "col_ignores_timers"}

#: Latency histogram: bin 0 holds latencies below 16 cycles, bin k (1..15) holds
#: [2**(k+3), 2**(k+4)), the last bin everything from 2**18 up.
HIST_BINS = 16
COUNTER_BITS = 32


def histogram_bin(latency: int) -> int:
    """The histogram bin of a latency in cycles (the RTL's rule, in Python)."""
    if latency < 16:
        return 0
    return min(latency.bit_length() - 4, HIST_BINS - 1)


def oldest_wait_bound(timing: HbmTiming, organisation: HbmOrganisation = ORGANISATION) -> int:
    """T of the age cap's bound (docs/hbm.md, "Scheduling"): once the oldest request has been
    the oldest for ``age_cap`` cycles, its last burst issues within T more cycles.

    With P = max(tRAS, tRTP, CWL + tBURST + tWR) (a bank's PRE), A = max(tRP, tRC, tRRD_L,
    tRRD_S, tFAW, tRFC) (its ACT), C = max(tCCD_L, tCCD_R, CWL + tBURST + tWTR_L, tRTW) (its
    first burst after other column commands): without a refresh it needs at most
    N = P + A + max(tRCD_RD, tRCD_WR, C) + tCCD_L (PRE, ACT, first burst, second burst); a
    refresh closes every bank (one PRE a cycle: at most P + banks - 2 after it falls due, REF
    tRP later) and the request starts again from a closed bank, S = A + max(tRCD, C) + tCCD_L;
    its progress before the refresh is lost, at most N - 1 cycles. T = N - 1 + P + banks - 2 +
    tRP + S. Valid when at most one refresh falls due in the window:
    tREFI >= P + banks - 1 + tRP + S (raises ``ValueError`` otherwise).
    """
    t, nb = timing, organisation.total_banks
    p = max(t.tRAS, t.tRTP, t.CWL + t.tBURST + t.tWR)
    a = max(t.tRP, t.tRC, t.tRRD_L, t.tRRD_S, t.tFAW, t.tRFC)
    c = max(t.tCCD_L, t.tCCD_R, t.CWL + t.tBURST + t.tWTR_L, t.tRTW)
    rcd = max(t.tRCD_RD, t.tRCD_WR, c)
    n = p + a + rcd + t.tCCD_L
    s = a + rcd + t.tCCD_L
    if t.tREFI < p + nb - 1 + t.tRP + s:
        raise ValueError(f"tREFI {t.tREFI} < {p + nb - 1 + t.tRP + s}: more than one refresh "
                         f"can fall due while the oldest request waits; no bound derived")
    return n - 1 + p + nb - 2 + t.tRP + s


class RowCmd(enum.IntEnum):
    NOP = 0
    ACT = 1
    PRE = 2
    REF = 3


class ColCmd(enum.IntEnum):
    RD = 0
    WR = 1


def trace_layout(organisation: HbmOrganisation = ORGANISATION) -> data.StructLayout:
    """One cycle of the command stream, registered: commands issued in cycle ``cycle``.

    ``row_*``: the row-bus command (ACT / PRE with its bank and, for ACT, row; REF);
    ``col_*``: the column-bus command (RD / WR, bank, row it reads, column of its 32 B burst);
    ``rlat_valid`` / ``rlat``: an AXI read burst finished (last R beat taken) after ``rlat``
    cycles counted from its AR handshake; ``wlat_*`` the same for writes (B handshake after AW).
    """
    o = organisation
    return data.StructLayout({
        "cycle": unsigned(COUNTER_BITS),
        "row_valid": 1, "row_cmd": RowCmd, "row_sid": o.bits("sid"), "row_bg": o.bits("bg"),
        "row_ba": o.bits("ba"), "row_row": o.bits("row"),
        "col_valid": 1, "col_cmd": ColCmd, "col_sid": o.bits("sid"), "col_bg": o.bits("bg"),
        "col_ba": o.bits("ba"), "col_row": o.bits("row"), "col_col": o.bits("col"),
        "rlat_valid": 1, "rlat": 24, "wlat_valid": 1, "wlat": 24,
    })


STAT_NAMES = ("cycles", "busy", "stall_in", "stall_out", "bytes", "reads", "writes",
              "activates", "precharges", "refreshes", "row_hits", "row_misses", "row_conflicts",
              "errors")


def stats_layout() -> data.StructLayout:
    """Counters (32 bits each, wrapping): ``cycles``; ``busy`` (a request held); ``stall_in``
    (an address or write beat waits at the AXI port); ``stall_out`` (R or B waits for the
    manager); ``bytes`` moved by column commands; ``reads`` / ``writes`` (64 B line requests
    admitted); ``activates``, ``precharges``, ``refreshes``; ``row_hits`` / ``row_misses`` /
    ``row_conflicts`` (per line request: no row command on its behalf, an ACT, a PRE);
    ``errors`` (lines answered DECERR / SLVERR); ``hist`` (AXI burst latencies, reads and
    writes, binned by :func:`histogram_bin`)."""
    fields = {name: unsigned(COUNTER_BITS) for name in STAT_NAMES}
    fields["hist"] = data.ArrayLayout(unsigned(COUNTER_BITS), HIST_BINS)
    return data.StructLayout(fields)


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def _pack(layout, **values):
    """A value of ``layout`` from field values (missing fields are zero), as one expression."""
    parts = []
    for name, field in sorted(layout, key=lambda item: item[1].offset):
        value = values.get(name, 0)
        parts.append(Const(value, field.width) if isinstance(value, int)
                     else value.as_value()[:field.width] if hasattr(value, "as_value")
                     else value[:field.width] if len(value) > field.width else value)
    return Cat(*parts)


def _lowest(m, vec, name):
    """One-hot of the lowest set bit of ``vec``, a mask of the bits at or above it, and its
    index: wide vector operations instead of a priority chain (cheap for deep queues)."""
    n = len(vec)
    neg = Signal(n + 1, name=f"{name}_neg")
    oh = Signal(n, name=f"{name}_oh")
    below = Signal(n + 1, name=f"{name}_below")
    ge = Signal(n, name=f"{name}_ge")
    idx = Signal(range(max(n, 2)), name=f"{name}_idx")
    m.d.comb += [neg.eq(~vec + 1), oh.eq(vec & neg[:n]), below.eq(oh - 1), ge.eq(~below[:n])]
    bits = []
    for b in range(max(1, (n - 1).bit_length())):
        mask = sum(1 << i for i in range(n) if (i >> b) & 1)
        bits.append((oh & mask).any())
    m.d.comb += idx.eq(Cat(*bits))
    return oh, ge, idx


def _pick(m, vec, index, name):
    """Bit ``index`` of ``vec`` through a full-width named shift (no truncating shift)."""
    shifted = Signal(len(vec), name=f"{name}_sh")
    bit = Signal(name=name)
    m.d.comb += [shifted.eq(vec >> index), bit.eq(shifted[0])]
    return bit


class HbmTimers(wiring.Component):
    """Timing counters and issue legality of one pseudo-channel (separable for formal proofs).

    Inputs: the row command and the column command issued this cycle (``*_valid``, kind, bank
    index ``Cat(ba, bg, sid)``). Outputs, for the next command: ``act_ok[b]``, ``pre_ok[b]``,
    ``rd_ok[b]``, ``wr_ok[b]`` per bank and ``ref_ok`` (the caller also needs every bank closed).
    Each limit is a down counter loaded with ``max(current, limit) - 1`` when its first command
    issues; the second command is legal when the counter is zero. Scopes: per bank tRCD, tRP,
    tRAS, tRC, tRTP, CWL + tBURST + tWR; per bank group tCCD_L, tRRD_L, CWL + tBURST + tWTR_L;
    per stack ID tCCD_S (same stack ID) and tCCD_R (the other); per pseudo-channel tRRD_S,
    tRTW, CWL + tBURST + tWTR_S, tFAW (four counters: a rolling window), tRFC (REF -> ACT,
    REF -> REF) and tRP before REF.
    """

    def __init__(self, *, timing: HbmTiming, organisation: HbmOrganisation = ORGANISATION,
                 faults=frozenset()):
        faults = frozenset(faults)
        unknown = faults - FAULTS
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {sorted(FAULTS)}")
        self.timing = timing
        self.organisation = organisation
        self.faults = faults
        nb = organisation.total_banks
        super().__init__({
            "row_valid": In(1), "row_cmd": In(RowCmd), "row_bank": In(range(nb)),
            "col_valid": In(1), "col_cmd": In(ColCmd), "col_bank": In(range(nb)),
            "act_ok": Out(nb), "pre_ok": Out(nb), "rd_ok": Out(nb), "wr_ok": Out(nb),
            "ref_ok": Out(1),
        })

    def limit(self, name: str) -> int:
        """A timing value as this (possibly faulty) block uses it."""
        value = getattr(self.timing, name)
        if any(name in params for f, params in TIMING_FAULTS.items() if f in self.faults):
            value -= 1
        return value

    def elaborate(self, platform):
        m = Module()
        t, o = self.limit, self.organisation
        nb, nbg, nsid = o.total_banks, o.stack_ids * o.bank_groups, o.stack_ids
        ba_bits, bg_bits = o.bits("ba"), o.bits("bg")
        wr_pre = t("CWL") + t("tBURST") + t("tWR")
        wtr_s = t("CWL") + t("tBURST") + t("tWTR_S")
        wtr_l = t("CWL") + t("tBURST") + t("tWTR_L")

        act = Signal(); pre = Signal(); ref = Signal(); rd = Signal(); wr = Signal()
        m.d.comb += [act.eq(self.row_valid & (self.row_cmd == RowCmd.ACT)),
                     pre.eq(self.row_valid & (self.row_cmd == RowCmd.PRE)),
                     ref.eq(self.row_valid & (self.row_cmd == RowCmd.REF)),
                     rd.eq(self.col_valid & (self.col_cmd == ColCmd.RD)),
                     wr.eq(self.col_valid & (self.col_cmd == ColCmd.WR))]
        row_bg = Signal(range(nbg)); col_bg = Signal(range(nbg)); col_sid = Signal(range(nsid))
        m.d.comb += [row_bg.eq(self.row_bank >> ba_bits), col_bg.eq(self.col_bank >> ba_bits),
                     col_sid.eq(self.col_bank >> (ba_bits + bg_bits))]

        def counter(name, loads):
            top = max(v for _, v in loads)
            c = Signal(range(max(top, 2)), name=name)
            nxt = Signal.like(c, name=f"{name}_next")
            dec = Signal.like(c, name=f"{name}_dec")
            m.d.comb += dec.eq(Mux(c == 0, 0, c - 1))
            m.d.comb += nxt.eq(dec)
            # Later loads override earlier ones only when larger: max of all loads.
            for cond, value in sorted(loads, key=lambda cv: cv[1]):
                if value - 1 > 0:
                    with m.If(cond & (dec < value - 1)):
                        m.d.comb += nxt.eq(value - 1)
            m.d.sync += c.eq(nxt)
            return c

        bank_c = {}
        for b in range(nb):
            row_here = Signal(name=f"row_here_{b}"); col_here = Signal(name=f"col_here_{b}")
            m.d.comb += [row_here.eq(self.row_bank == b), col_here.eq(self.col_bank == b)]
            c_act = counter(f"act_{b}", [(act & row_here, t("tRC")), (pre & row_here, t("tRP")),
                                         (ref, t("tRFC"))])
            c_rd = counter(f"rd_{b}", [(act & row_here, t("tRCD_RD"))])
            c_wr = counter(f"wr_{b}", [(act & row_here, t("tRCD_WR"))])
            c_pre = counter(f"pre_{b}", [(act & row_here, t("tRAS")), (rd & col_here, t("tRTP")),
                                         (wr & col_here, wr_pre)])
            bank_c[b] = (c_act, c_rd, c_wr, c_pre)
        bg_c = []
        for g in range(nbg):
            c_act = counter(f"act_bg_{g}", [(act & (row_bg == g), t("tRRD_L"))])
            c_col = counter(f"col_bg_{g}", [((rd | wr) & (col_bg == g), t("tCCD_L"))])
            c_wtr = counter(f"wtr_bg_{g}", [(wr & (col_bg == g), wtr_l)])
            bg_c.append((c_act, c_col, c_wtr))
        sid_c = []
        for s in range(nsid):
            sid_c.append(counter(f"col_sid_{s}", [((rd | wr) & (col_sid == s), t("tCCD_S")),
                                                  ((rd | wr) & (col_sid != s), t("tCCD_R"))]))
        c_rrd = counter("rrd_s", [(act, t("tRRD_S"))])
        c_wtr = counter("wtr_s", [(wr, wtr_s)])
        c_rtw = counter("rtw", [(rd, t("tRTW"))])
        c_ref = counter("ref", [(pre, t("tRP")), (ref, t("tRFC"))])

        faw = [Signal(range(t("tFAW") + 1), name=f"faw_{i}") for i in range(4)]
        free = Signal(4)
        m.d.comb += free.eq(Cat(*(f == 0 for f in faw)))
        for i, f in enumerate(faw):
            first_free = Signal(name=f"faw_first_{i}")
            m.d.comb += first_free.eq(free[i] & ~(free[:i].any() if i else Const(0)))
            with m.If(act & first_free):
                m.d.sync += f.eq(t("tFAW") - 1)
            with m.Elif(f != 0):
                m.d.sync += f.eq(f - 1)

        act_pc = Signal(); rd_pc = Signal(); wr_pc = Signal()
        m.d.comb += [act_pc.eq((c_rrd == 0) & free.any()), rd_pc.eq(c_wtr == 0),
                     wr_pc.eq(c_rtw == 0)]
        for b in range(nb):
            c_act, c_rd, c_wr, c_pre = bank_c[b]
            g, s = b >> ba_bits, b >> (ba_bits + bg_bits)
            g_act, g_col, g_wtr = bg_c[g]
            col_ok = Signal(name=f"col_ok_{b}")
            m.d.comb += col_ok.eq((g_col == 0) & (sid_c[s] == 0))
            m.d.comb += [
                self.act_ok[b].eq((c_act == 0) & (g_act == 0) & act_pc),
                self.pre_ok[b].eq(c_pre == 0),
                self.rd_ok[b].eq((c_rd == 0) & col_ok & (g_wtr == 0) & rd_pc),
                self.wr_ok[b].eq((c_wr == 0) & col_ok & wr_pc),
            ]
        m.d.comb += self.ref_ok.eq(c_ref == 0)
        return m


def _entry_layout(o, tag_bits, line_bits, beats):
    return data.StructLayout({
        "valid": 1, "write": 1, "hit": 1, "half": 1, "cls": 2,
        "bank": _bits(o.total_banks), "row": o.bits("row"), "col": o.bits("col") - 1,
        "tag": tag_bits, "line": line_bits, "mask": beats,
    })


class HbmChannel(wiring.Component):
    """One HBM pseudo-channel behind an AXI4 subordinate port ``s_axi``.

    Parameters
    ----------
    timing : HbmTiming or str
        A preset of :mod:`openmaia.hbm.timing`.
    mapping : str
        ``"RoBaRaCoCh"`` or ``"MOP4CLXOR"`` (:mod:`openmaia.hbm.mapping`).
    queue_depth : int
        64 B line requests the controller holds (2..1024): queue entries and buffer tags.
    row_hit_cap : int
        After an activate, at most this many row-hit column bursts of a bank pass (are issued
        ahead of) an older request for another row of that bank; then the bank's column
        commands stop and it is precharged. Hits older than every waiting request for another
        row are not reordering and do not count. At least 2.
    age_cap : int
        Starvation cap: once the oldest queued request has been the oldest for ``age_cap``
        cycles without finishing, only it may issue column and row commands (refresh keeps its
        priority) until its last burst issues, so no stream of younger requests (row hits to
        other banks keeping tWTR / tRTW loaded, or hits to its own bank) holds it back for
        longer than ``age_cap`` + T cycles (docs/hbm.md, "Scheduling"). At least 1.
    capacity_bytes : int
        Bytes of the address space and of the backing store (a power of two, 4 KiB .. the
        organisation's 512 MiB); lines at or above it answer DECERR. The store is an
        ``amaranth.lib.memory.Memory`` whose (zero) initial contents Amaranth writes out bit by
        bit: about 6 s of elaboration per 64 KiB, so functional builds stay small.
    timing_only : bool
        Build without the backing store (for long benchmark runs over a large address space):
        every timing and command is the same, but reads return zeros and write data is
        dropped. Never used where data is checked.
    addr_width, data_width, id_width : int
        The AXI port; ``data_width`` 32..256 bits (a beat at most one 32 B burst).
    faults : set of str
        Deliberate bugs (:data:`FAULTS`), for mutation tests only.

    AXI: INCR bursts of full-width beats (``AxSIZE`` = the bus width), any length; a first beat
    may be unaligned (its lanes are those of the aligned beat). Other burst types or narrow
    sizes answer SLVERR on every beat (writes: on B), and the device keeps working. Read data
    and write responses return in request order (over all IDs). A write's B is sent when all its
    lines were written to the DRAM (their WR commands issued). A line request waits at the
    port while an older queued request to the same line exists and either is a write.
    """

    def __init__(self, *, timing="HBM3_6400", mapping="MOP4CLXOR", queue_depth=32,
                 row_hit_cap=16, age_cap=1024, capacity_bytes=1 << 16, addr_width=32,
                 data_width=128, id_width=4, timing_only=False,
                 organisation: HbmOrganisation = ORGANISATION, faults=frozenset()):
        self.timing = get_timing(timing)
        check_mapping(mapping, organisation)
        if not isinstance(queue_depth, int) or not 2 <= queue_depth <= 1024:
            raise ValueError(f"queue_depth must be an integer in 2..1024, not {queue_depth!r}")
        if not isinstance(row_hit_cap, int) or row_hit_cap < 2:
            raise ValueError(f"row_hit_cap must be an integer >= 2, not {row_hit_cap!r}")
        if not isinstance(age_cap, int) or isinstance(age_cap, bool) or age_cap < 1:
            raise ValueError(f"age_cap must be an integer >= 1, not {age_cap!r}")
        if (not isinstance(capacity_bytes, int) or capacity_bytes < 4096
                or capacity_bytes & (capacity_bytes - 1) or capacity_bytes > organisation.bytes):
            raise ValueError(f"capacity_bytes must be a power of two in 4096..{organisation.bytes},"
                             f" not {capacity_bytes!r}")
        if data_width not in (32, 64, 128, 256):
            raise ValueError(f"data_width must be 32, 64, 128 or 256 (a beat within one 32 B "
                             f"burst), not {data_width!r}")
        if not isinstance(addr_width, int) or addr_width < 8:
            raise ValueError(f"addr_width must be an integer >= 8, not {addr_width!r}")
        if capacity_bytes > 1 << addr_width:
            raise ValueError("capacity_bytes exceeds the AXI address space")
        faults = frozenset(faults)
        if faults - FAULTS:
            raise ValueError(f"unknown faults {sorted(faults - FAULTS)}; known: {sorted(FAULTS)}")
        self.mapping = mapping
        self.queue_depth = queue_depth
        self.row_hit_cap = row_hit_cap
        self.age_cap = age_cap
        self.capacity_bytes = capacity_bytes
        self.timing_only = bool(timing_only)
        self.organisation = organisation
        self.faults = faults
        self.axi = Axi4Signature(addr_width=addr_width, data_width=data_width, id_width=id_width)
        super().__init__({
            "s_axi": In(self.axi),
            "trace": Out(trace_layout(organisation)),
            "stats": Out(stats_layout()),
        })

    def elaborate(self, platform):
        m = Module()
        o, tm, axi = self.organisation, self.timing, self.s_axi
        N = self.queue_depth
        D = self.axi.data_bytes
        size_code = self.axi.size_code
        BPL = 64 // D                      # AXI beats a 64 B line
        BPH = 32 // D                      # AXI beats a 32 B burst
        lane_bits = (D - 1).bit_length()
        beat_bits = max(1, (BPL - 1).bit_length())
        tag_bits = _bits(N)
        line_bits = _bits(self.capacity_bytes // 64)
        store_bits = _bits(self.capacity_bytes // 32)
        nb = o.total_banks
        ba_bits, bg_bits = o.bits("ba"), o.bits("bg")
        layout = _entry_layout(o, tag_bits, line_bits, BPL)

        cycle = Signal(COUNTER_BITS)
        m.d.sync += cycle.eq(cycle + 1)

        # ---------------- timers ----------------
        m.submodules.timers = timers = HbmTimers(timing=tm, organisation=o, faults=self.faults)

        # ---------------- memories ----------------
        if self.timing_only:
            store_rd_addr = Signal(store_bits, name="store_rd_addr")
            store_rd_data = Const(0, 256)
            store_wr_addr = Signal(store_bits, name="store_wr_addr")
            store_wr_data = Signal(256, name="store_wr_data")
            store_wr_en = Signal(32, name="store_wr_en")
        else:
            m.submodules.store = store = Memory(shape=256, depth=self.capacity_bytes // 32,
                                                init=[])
            store_rd = store.read_port()
            store_wr = store.write_port(granularity=8)
            store_rd_addr, store_rd_data = store_rd.addr, store_rd.data
            store_wr_addr, store_wr_data, store_wr_en = store_wr.addr, store_wr.data, store_wr.en
        m.submodules.wbuf = wbuf = Memory(shape=256, depth=2 * N, init=[])
        wbuf_w = wbuf.write_port(granularity=D * 8)
        wbuf_r = wbuf.read_port()
        m.submodules.wstrb = wstrb = Memory(shape=32, depth=2 * N, init=[])
        wstrb_w = wstrb.write_port(granularity=D)
        wstrb_r = wstrb.read_port()
        m.submodules.rbuf = rbuf = Memory(shape=256, depth=2 * N, init=[])
        rbuf_w = rbuf.write_port()
        rbuf_r = rbuf.read_port()

        # ---------------- tags ----------------
        used = Signal(N)
        done = Signal(N)
        tag_free = Signal()
        m.d.comb += tag_free.eq(~used.all())
        free_oh, _, free_tag = _lowest(m, ~used, "free_tag")
        alloc = Signal()
        free_r = Signal(); free_r_tag = Signal(range(N))
        free_b = Signal(); free_b_tag = Signal(range(N))
        set_done_r = Signal(); set_done_r_tag = Signal(range(N))
        set_done_w = Signal(); set_done_w_tag = Signal(range(N))

        def decode(valid, tag, name):
            wide = Signal(N + (1 << len(tag)), name=f"{name}_wide")
            m.d.comb += wide.eq(Mux(valid, Const(1, 1) << tag, 0))
            return wide[:N]
        m.d.sync += [
            used.eq((used & ~decode(free_r, free_r_tag, "free_r")
                     & ~decode(free_b, free_b_tag, "free_b")) | Mux(alloc, free_oh, 0)),
            done.eq((done & ~Mux(alloc, free_oh, 0)) | decode(set_done_r, set_done_r_tag, "dr")
                    | decode(set_done_w, set_done_w_tag, "dw")),
        ]

        # ---------------- order FIFOs ----------------
        rec_layout = data.StructLayout({"tag": tag_bits, "first": beat_bits,
                                        "count": _bits(BPL + 1), "last": 1,
                                        "id": self.axi.id_width, "resp": 2, "ts": COUNTER_BITS})
        m.submodules.rord = rord = SyncFIFOBuffered(width=rec_layout.size, depth=N + 2)
        m.submodules.bord = bord = SyncFIFOBuffered(width=rec_layout.size, depth=N + 2)
        rord_in = Signal(rec_layout); bord_in = Signal(rec_layout)
        rord_out = rec_layout(rord.r_data); bord_out = rec_layout(bord.r_data)

        # ---------------- request queue ----------------
        q_raw = [Signal(layout.size, name=f"q{i}") for i in range(N)]
        q = [layout(r) for r in q_raw]
        qa = Array(q_raw)
        count = Signal(range(N + 1))

        bank_open = Signal(nb)
        open_row = Array(Signal(o.bits("row"), name=f"open_row_{b}") for b in range(nb))
        hit_cnt = [Signal(range(self.row_hit_cap + 1), name=f"hits_{b}") for b in range(nb)]
        cap_reached = Signal(nb)
        for b in range(nb):
            m.d.comb += cap_reached[b].eq((hit_cnt[b] >= self.row_hit_cap)
                                          & ("no_hit_cap" not in self.faults))

        # per-bank summaries over the queue
        hits_pending = Signal(nb); conflict_pending = Signal(nb)
        onehots = []
        for i, e in enumerate(q):
            oh = Signal(nb, name=f"q{i}_bank_oh")
            m.d.comb += oh.eq(Mux(e.valid, (Const(1, nb) << e.bank)[:nb], 0))
            onehots.append(oh)
        hp_terms = [Mux(q[i].hit, onehots[i], 0) for i in range(N)]
        cp_terms = []
        for i in range(N):
            cp = Signal(nb, name=f"q{i}_cp")
            m.d.comb += cp.eq(Mux(q[i].hit, 0, onehots[i]))
            cp_terms.append(cp)
        # Row-hit reordering: whether an older request for another row of an entry's bank waits
        # (the banks of the non-hit entries older than it: a prefix OR, oldest first).
        older_cp = Signal(N)
        older = Const(0, nb)
        for i in range(N):
            if i:
                acc = Signal(nb, name=f"q{i}_older_cp")
                m.d.comb += acc.eq(older | cp_terms[i - 1])
                older = acc
            m.d.comb += older_cp[i].eq((older & onehots[i]).any())

        def or_tree(terms, name):
            level = 0
            while len(terms) > 1:
                nxt = []
                for k in range(0, len(terms), 2):
                    if k + 1 < len(terms):
                        s = Signal(nb, name=f"{name}_{level}_{k // 2}")
                        m.d.comb += s.eq(terms[k] | terms[k + 1])
                        nxt.append(s)
                    else:
                        nxt.append(terms[k])
                terms, level = nxt, level + 1
            return terms[0]

        m.d.comb += [hits_pending.eq(or_tree(hp_terms, "hp")),
                     conflict_pending.eq(or_tree(cp_terms, "cp"))]
        col_block = Signal(nb)
        m.d.comb += col_block.eq(cap_reached & conflict_pending)

        # refresh
        refi = Signal(range(tm.tREFI + 1), init=tm.tREFI - 1)
        ref_due = Signal()
        with m.If(refi == 0):
            m.d.sync += refi.eq(tm.tREFI - 1)
            if "no_refresh" not in self.faults:
                m.d.sync += ref_due.eq(1)
        with m.Else():
            m.d.sync += refi.eq(refi - 1)

        # age cap: cycles entry 0 has been the oldest without finishing (restarts when it
        # leaves); at age_cap only entry 0 may issue (its bank's row-hit cap rules waived)
        age = Signal(range(self.age_cap + 1))
        aged = Signal()
        m.d.comb += aged.eq((age == self.age_cap) & ("no_age_cap" not in self.faults))

        # per-entry candidates (bank one-hot AND per-bank status: no per-entry shifts)
        col_cand = Signal(N); row_cand = Signal(N)
        no_ref = Signal()
        m.d.comb += no_ref.eq(~ref_due)
        for i, e in enumerate(q):
            oh = onehots[i]
            if "col_ignores_timers" in self.faults:
                rd_ok = wr_ok = e.valid
            else:
                rd_ok = (oh & timers.rd_ok).any()
                wr_ok = (oh & timers.wr_ok).any()
            is_open = (oh & bank_open).any()
            pre_ok = (oh & timers.pre_ok).any()
            act_ok = (oh & timers.act_ok).any()
            blk = (oh & col_block).any()
            hp = (oh & hits_pending).any()
            cr = (oh & cap_reached).any()
            if i:
                m.d.comb += [
                    col_cand[i].eq(e.hit & ~blk & no_ref & ~aged & Mux(e.write, wr_ok, rd_ok)),
                    row_cand[i].eq(~e.hit & no_ref & ~aged
                                   & Mux(is_open, pre_ok & (~hp | cr), act_ok)),
                ]
            else:
                m.d.comb += [
                    col_cand[i].eq(e.hit & (~blk | aged) & no_ref & Mux(e.write, wr_ok, rd_ok)),
                    row_cand[i].eq(~e.hit & no_ref
                                   & Mux(is_open, pre_ok & (~hp | cr | aged), act_ok)),
                ]

        col_oh, col_ge, col_sel = _lowest(m, col_cand, "col")
        oldest_leaves = Signal()
        m.d.comb += oldest_leaves.eq(col_oh[0] & q[0].half)
        with m.If(~q[0].valid | oldest_leaves):
            m.d.sync += age.eq(0)
        with m.Elif(age != self.age_cap):
            m.d.sync += age.eq(age + 1)
        row_oh, _, row_sel = _lowest(m, row_cand, "row")
        col_go = Signal(); row_go = Signal()
        m.d.comb += [col_go.eq(col_cand.any()), row_go.eq(row_cand.any())]
        ce = Signal(layout); re_ = Signal(layout)
        m.d.comb += [ce.eq(qa[col_sel]), re_.eq(qa[row_sel])]

        # row bus
        row_valid = Signal(); row_cmd = Signal(RowCmd); row_bank = Signal(range(nb))
        row_row = Signal(o.bits("row"))
        ref_pre_bank = Signal(range(nb)); ref_pre_any = Signal()
        ref_pre_cand = Signal(nb)
        m.d.comb += [ref_pre_cand.eq(bank_open & timers.pre_ok),
                     ref_pre_any.eq(ref_pre_cand.any())]
        for b in reversed(range(nb)):
            with m.If(ref_pre_cand[b]):
                m.d.comb += ref_pre_bank.eq(b)
        re_open = Signal()
        m.d.comb += re_open.eq((bank_open & (Const(1, nb) << re_.bank)[:nb]).any())
        with m.If(ref_due):
            with m.If(bank_open.any()):
                m.d.comb += [row_valid.eq(ref_pre_any), row_cmd.eq(RowCmd.PRE),
                             row_bank.eq(ref_pre_bank)]
            with m.Else():
                m.d.comb += [row_valid.eq(timers.ref_ok), row_cmd.eq(RowCmd.REF)]
        with m.Elif(row_go):
            m.d.comb += [row_valid.eq(1), row_bank.eq(re_.bank), row_row.eq(re_.row),
                         row_cmd.eq(Mux(re_open, RowCmd.PRE, RowCmd.ACT))]
        is_act = Signal(); is_pre = Signal(); is_ref = Signal()
        m.d.comb += [is_act.eq(row_valid & (row_cmd == RowCmd.ACT)),
                     is_pre.eq(row_valid & (row_cmd == RowCmd.PRE)),
                     is_ref.eq(row_valid & (row_cmd == RowCmd.REF))]
        with m.If(is_ref):
            m.d.sync += ref_due.eq(0)
        for b in range(nb):
            with m.If(is_act & (row_bank == b)):
                m.d.sync += [bank_open[b].eq(1), open_row[b].eq(row_row), hit_cnt[b].eq(0)]
            with m.If(is_pre & (row_bank == b)):
                m.d.sync += bank_open[b].eq(0)

        # column bus
        col_valid = Signal(); col_write = Signal(); col_last = Signal()
        m.d.comb += [col_valid.eq(col_go), col_write.eq(ce.write), col_last.eq(ce.half)]
        bypass = Signal()
        m.d.comb += bypass.eq((older_cp & col_oh).any())
        for b in range(nb):
            with m.If(col_valid & bypass & (ce.bank == b) & (hit_cnt[b] < self.row_hit_cap)):
                m.d.sync += hit_cnt[b].eq(hit_cnt[b] + 1)
        m.d.comb += [
            timers.row_valid.eq(row_valid), timers.row_cmd.eq(row_cmd),
            timers.row_bank.eq(row_bank),
            timers.col_valid.eq(col_valid),
            timers.col_cmd.eq(Mux(col_write, ColCmd.WR, ColCmd.RD)),
            timers.col_bank.eq(ce.bank),
        ]
        store_addr = Signal(store_bits)
        m.d.comb += store_addr.eq(Cat(ce.half, ce.line))
        # RD: store -> rbuf next cycle; completion after CL + tBURST.
        rd_p = Signal(); rd_p_tag = Signal(tag_bits); rd_p_half = Signal()
        m.d.comb += store_rd_addr.eq(store_addr)
        m.d.sync += [rd_p.eq(col_valid & ~col_write), rd_p_tag.eq(ce.tag),
                     rd_p_half.eq(ce.half)]
        m.d.comb += [rbuf_w.addr.eq(Cat(rd_p_half, rd_p_tag)), rbuf_w.data.eq(store_rd_data),
                     rbuf_w.en.eq(rd_p)]
        delay = tm.CL + tm.tBURST
        pipe = [Signal(1 + tag_bits, name=f"rdone_{k}") for k in range(delay)]
        m.d.sync += pipe[0].eq(Cat(col_valid & ~col_write & col_last, ce.tag))
        for k in range(1, delay):
            m.d.sync += pipe[k].eq(pipe[k - 1])
        m.d.comb += [set_done_r.eq(pipe[-1][0]), set_done_r_tag.eq(pipe[-1][1:])]
        # WR: wbuf -> store next cycle.
        wr_p = Signal(); wr_p_addr = Signal(store_bits); wr_p_mask = Signal(BPH)
        m.d.comb += [wbuf_r.addr.eq(Cat(ce.half, ce.tag)), wstrb_r.addr.eq(Cat(ce.half, ce.tag))]
        half_mask = Signal(BPH)
        m.d.comb += half_mask.eq(Mux(ce.half, ce.mask >> BPH, ce.mask))
        m.d.sync += [wr_p.eq(col_valid & col_write), wr_p_addr.eq(store_addr),
                     wr_p_mask.eq(half_mask)]
        lane_en = Signal(32)
        m.d.comb += lane_en.eq(Cat(*(wr_p_mask[j].replicate(D) for j in range(BPH))))
        m.d.comb += [store_wr_addr.eq(wr_p_addr), store_wr_data.eq(wbuf_r.data),
                     store_wr_en.eq(Mux(wr_p, wstrb_r.data & lane_en, 0))]
        m.d.comb += [set_done_w.eq(col_valid & col_write & col_last), set_done_w_tag.eq(ce.tag)]

        # ---------------- admission (front end) ----------------
        admit = Signal()
        new = Signal(layout)
        new_tag = Signal(tag_bits); new_mask = Signal(BPL); new_is_write = Signal()
        # insertion / removal / per-entry updates
        remove = Signal()
        m.d.comb += remove.eq(col_valid & col_last)
        ins_pos = Signal(range(N + 1))
        m.d.comb += ins_pos.eq(count - remove)
        row_by_queue = Signal()
        m.d.comb += row_by_queue.eq(row_go & no_ref)
        upd = []
        for i, e in enumerate(q):
            raw = q_raw[i]
            hit = Mux(e.bank == row_bank, Mux(is_act, e.row == row_row, ~is_pre & e.hit), e.hit)
            row_for_me = row_by_queue & row_oh[i]
            cls = Mux(row_for_me, Mux(re_open, 2, Mux(e.cls == 0, 1, e.cls)), e.cls)
            half = e.half | (col_valid & col_oh[i])
            u = Signal(layout.size, name=f"u{i}")
            m.d.comb += u.eq(Cat(e.valid, e.write, hit, half, cls[:2], raw[6:]))
            upd.append(u)
        assert [(n, f.offset) for n, f in layout][:6] == [
            ("valid", 0), ("write", 1), ("hit", 2), ("half", 3), ("cls", 4), ("bank", 6)]
        for i in range(N):
            shifted = upd[i + 1] if i + 1 < N else Const(0, layout.size)
            m.d.sync += q_raw[i].eq(Mux(admit & (ins_pos == i), new,
                                        Mux(remove & col_ge[i], shifted, upd[i])))
        m.d.sync += count.eq(count + admit - remove)

        # new entry's row-buffer state (after this cycle's row command)
        new_addr_line = Signal(line_bits)
        new_fields_addr = Signal(o.address_bits)
        f = map_address_rtl(self.mapping, new_fields_addr, o)
        nbank = Signal(_bits(nb)); nrow = Signal(o.bits("row")); ncol = Signal(o.bits("col"))
        m.d.comb += [nbank.eq(Cat(f["ba"], f["bg"], f["sid"])), nrow.eq(f["row"]),
                     ncol.eq(f["col"])]
        new_hit = Signal()
        new_open = (bank_open & (Const(1, nb) << nbank)[:nb]).any()
        with m.If(is_act & (row_bank == nbank)):
            m.d.comb += new_hit.eq(row_row == nrow)
        with m.Elif(is_pre & (row_bank == nbank)):
            m.d.comb += new_hit.eq(0)
        with m.Else():
            m.d.comb += new_hit.eq(new_open & (open_row[nbank] == nrow))

        # hazards: an older queued request to the same line, either a write
        ar_line = Signal(line_bits); aw_line = Signal(line_bits)
        hz_r_terms, hz_w_terms = [], []
        leaving = Signal(N)
        m.d.comb += leaving.eq(Mux(remove, col_oh, 0))
        for i, e in enumerate(q):
            live = e.valid & ~leaving[i]
            hz_r_terms.append(live & e.write & (e.line == ar_line))
            hz_w_terms.append(live & (e.line == aw_line))
        hz_r = Signal(); hz_w = Signal()
        m.d.comb += [hz_r.eq(Cat(*hz_r_terms).any()), hz_w.eq(Cat(*hz_w_terms).any())]

        # AR side
        ar_busy = Signal(); ar_id = Signal(self.axi.id_width); ar_addr = Signal(axi.araddr.shape())
        ar_beats = Signal(9); ar_bad = Signal(); ar_ts = Signal(COUNTER_BITS)
        m.d.comb += axi.arready.eq(~ar_busy)
        with m.If(axi.arvalid & ~ar_busy):
            m.d.sync += [ar_busy.eq(1), ar_id.eq(axi.arid),
                         ar_addr.eq(axi.araddr & ~Const(D - 1, len(axi.araddr))),
                         ar_beats.eq(axi.arlen + 1), ar_ts.eq(cycle),
                         ar_bad.eq((axi.arburst != AxiBurst.INCR) | (axi.arsize != size_code))]
        ar_beat = Signal(beat_bits); ar_n = Signal(_bits(BPL + 1)); ar_last = Signal()
        ar_oor = Signal(); ar_resp = Signal(2)
        m.d.comb += [ar_beat.eq(ar_addr[lane_bits:6] if BPL > 1 else 0),
                     ar_n.eq(Mux(ar_beats < BPL - ar_beat, ar_beats, BPL - ar_beat)),
                     ar_last.eq(ar_beats == ar_n),
                     ar_oor.eq(ar_addr >= self.capacity_bytes),
                     ar_resp.eq(Mux(ar_bad, AxiResp.SLVERR,
                                    Mux(ar_oor, AxiResp.DECERR, AxiResp.OKAY)))]

        # AW / W side
        aw_busy = Signal(); aw_id = Signal(self.axi.id_width)
        aw_addr = Signal(axi.awaddr.shape()); aw_beats = Signal(9); aw_bad = Signal()
        aw_ts = Signal(COUNTER_BITS)
        m.d.comb += axi.awready.eq(~aw_busy)
        with m.If(axi.awvalid & ~aw_busy):
            m.d.sync += [aw_busy.eq(1), aw_id.eq(axi.awid),
                         aw_addr.eq(axi.awaddr & ~Const(D - 1, len(axi.awaddr))),
                         aw_beats.eq(axi.awlen + 1), aw_ts.eq(cycle),
                         aw_bad.eq((axi.awburst != AxiBurst.INCR) | (axi.awsize != size_code))]
        aw_beat = Signal(beat_bits); aw_n = Signal(_bits(BPL + 1)); aw_last = Signal()
        aw_oor = Signal(); aw_resp = Signal(2)
        m.d.comb += [aw_beat.eq(aw_addr[lane_bits:6] if BPL > 1 else 0),
                     aw_n.eq(Mux(aw_beats < BPL - aw_beat, aw_beats, BPL - aw_beat)),
                     aw_last.eq(aw_beats == aw_n),
                     aw_oor.eq(aw_addr >= self.capacity_bytes),
                     aw_resp.eq(Mux(aw_bad, AxiResp.SLVERR,
                                    Mux(aw_oor, AxiResp.DECERR, AxiResp.OKAY)))]
        wl_active = Signal(); wl_pending = Signal(); wl_tag = Signal(tag_bits)
        wl_mask = Signal(BPL); wl_left = Signal(_bits(BPL + 1)); wl_pos = Signal(beat_bits)

        # arbitration between the read and the write side (round robin)
        prefer_w = Signal()
        r_ready_ok = Signal(); w_alloc_ok = Signal(); w_admit_ok = Signal()
        r_is_ok = Signal()
        m.d.comb += r_is_ok.eq(ar_resp == AxiResp.OKAY)
        m.d.comb += r_ready_ok.eq(ar_busy & rord.w_rdy
                                  & Mux(r_is_ok, tag_free & ~hz_r, 1))
        m.d.comb += [
            w_alloc_ok.eq(aw_busy & ~wl_active & ~wl_pending & (aw_resp == AxiResp.OKAY)
                          & tag_free),
            w_admit_ok.eq(wl_pending & bord.w_rdy & ((aw_resp != AxiResp.OKAY) | ~hz_w)),
        ]
        w_side = Signal(); do_r = Signal(); do_w = Signal()
        m.d.comb += w_side.eq(w_alloc_ok | w_admit_ok)
        m.d.comb += [do_w.eq(w_side & (prefer_w | ~r_ready_ok)),
                     do_r.eq(r_ready_ok & ~do_w)]
        with m.If(do_r):
            m.d.sync += prefer_w.eq(1)
        with m.Elif(do_w):
            m.d.sync += prefer_w.eq(0)

        # admission of the chosen line
        m.d.comb += [ar_line.eq(ar_addr[6:6 + line_bits]), aw_line.eq(aw_addr[6:6 + line_bits]),
                     new_fields_addr.eq(Mux(do_r, ar_addr, aw_addr)),
                     new_addr_line.eq(Mux(do_r, ar_line, aw_line))]
        m.d.comb += [new_is_write.eq(~do_r), new_tag.eq(Mux(do_r, free_tag, wl_tag)),
                     new_mask.eq(Mux(do_r, 0, wl_mask))]
        m.d.comb += new.eq(_pack(layout, valid=admit, write=new_is_write, hit=new_hit,
                                 bank=nbank, row=nrow, col=ncol[1:], tag=new_tag,
                                 line=new_addr_line, mask=new_mask))
        m.d.comb += rord_in.eq(_pack(rec_layout, tag=free_tag, first=ar_beat, count=ar_n,
                                     last=ar_last, id=ar_id, resp=ar_resp, ts=ar_ts))
        m.d.comb += bord_in.eq(_pack(rec_layout, tag=wl_tag, first=aw_beat, count=aw_n,
                                     last=aw_last, id=aw_id, resp=aw_resp, ts=aw_ts))
        m.d.comb += [rord.w_data.eq(rord_in), bord.w_data.eq(bord_in)]
        with m.If(do_r):
            m.d.comb += rord.w_en.eq(1)
            with m.If(r_is_ok):
                m.d.comb += [admit.eq(1), alloc.eq(1)]
            m.d.sync += [ar_addr.eq(ar_addr + (ar_n << lane_bits)),
                         ar_beats.eq(ar_beats - ar_n)]
            with m.If(ar_last):
                m.d.sync += ar_busy.eq(0)

        # write line assembly
        w_err = Signal()
        m.d.comb += w_err.eq(aw_resp != AxiResp.OKAY)
        with m.If(do_w & w_alloc_ok):
            m.d.comb += alloc.eq(1)
            m.d.sync += [wl_active.eq(1), wl_tag.eq(free_tag), wl_mask.eq(0),
                         wl_left.eq(aw_n), wl_pos.eq(aw_beat)]
        with m.If(aw_busy & ~wl_active & ~wl_pending & w_err):
            m.d.sync += [wl_active.eq(1), wl_mask.eq(0), wl_left.eq(aw_n), wl_pos.eq(aw_beat)]
        m.d.comb += axi.wready.eq(wl_active)
        w_take = Signal()
        m.d.comb += w_take.eq(axi.wvalid & wl_active)
        half_of_pos = Signal()
        m.d.comb += half_of_pos.eq(wl_pos >> (BPH.bit_length() - 1) if BPL > 1 else 0)
        lane_of_pos = Signal(max(1, BPH.bit_length() - 1))
        if BPH > 1:
            m.d.comb += lane_of_pos.eq(wl_pos[:BPH.bit_length() - 1])
        m.d.comb += [wbuf_w.addr.eq(Cat(half_of_pos, wl_tag)),
                     wstrb_w.addr.eq(Cat(half_of_pos, wl_tag)),
                     wbuf_w.data.eq(axi.wdata.replicate(BPH)),
                     wstrb_w.data.eq(axi.wstrb.replicate(BPH))]
        with m.If(w_take & ~w_err):
            m.d.comb += [wbuf_w.en.eq(Const(1, BPH) << lane_of_pos),
                         wstrb_w.en.eq(Const(1, BPH) << lane_of_pos)]
        with m.If(w_take):
            m.d.sync += [wl_mask.eq(wl_mask | (Const(1, BPL) << wl_pos)),
                         wl_pos.eq(wl_pos + 1), wl_left.eq(wl_left - 1)]
            with m.If(wl_left == 1):
                m.d.sync += [wl_active.eq(0), wl_pending.eq(1)]
        with m.If(do_w & w_admit_ok):
            m.d.comb += bord.w_en.eq(1)
            with m.If(~w_err):
                m.d.comb += admit.eq(1)
            m.d.sync += [wl_pending.eq(0), aw_addr.eq(aw_addr + (aw_n << lane_bits)),
                         aw_beats.eq(aw_beats - aw_n)]
            with m.If(aw_last):
                m.d.sync += aw_busy.eq(0)

        # ---------------- R drain ----------------
        # Credit loop: a beat issued in cycle t is `inflight` in t + 1 and in the FIFO's level
        # from t + 2 until the cycle after R takes it (t + 3 at the earliest), so it holds a
        # credit for 3 cycles; 4 credits (the FIFO depth) sustain a beat every cycle and the
        # FIFO can never overflow (level + inflight <= 4).
        rout_depth = 4
        m.submodules.rout = rout = SyncFIFOBuffered(
            width=self.axi.data_width + self.axi.id_width + 2 + 1 + COUNTER_BITS,
            depth=rout_depth)
        rd_beat = Signal(beat_bits); rd_left = Signal(_bits(BPL + 1)); rd_on = Signal()
        inflight = Signal()
        head_ok = Signal()
        m.d.comb += head_ok.eq(rord.r_rdy & ((rord_out.resp != AxiResp.OKAY)
                                             | _pick(m, done, rord_out.tag, "r_done")))
        room = Signal()
        m.d.comb += room.eq(rout.level + inflight < rout_depth)
        issue = Signal()
        m.d.comb += issue.eq(head_ok & room)
        cur_beat = Signal(beat_bits); cur_left = Signal.like(rd_left)
        m.d.comb += [cur_beat.eq(Mux(rd_on, rd_beat, rord_out.first)),
                     cur_left.eq(Mux(rd_on, rd_left, rord_out.count))]
        beat_half = Signal()
        m.d.comb += beat_half.eq(cur_beat >> (BPH.bit_length() - 1) if BPL > 1 else 0)
        m.d.comb += rbuf_r.addr.eq(Cat(beat_half, rord_out.tag))
        line_end = Signal()
        m.d.comb += line_end.eq(cur_left == 1)
        with m.If(issue):
            m.d.sync += [rd_on.eq(~line_end), rd_beat.eq(cur_beat + 1),
                         rd_left.eq(cur_left - 1)]
            with m.If(line_end):
                m.d.comb += rord.r_en.eq(1)
                with m.If(rord_out.resp == AxiResp.OKAY):
                    m.d.comb += [free_r.eq(1), free_r_tag.eq(rord_out.tag)]
        p_lane = Signal(max(1, BPH.bit_length() - 1)); p_last = Signal()
        p_id = Signal(self.axi.id_width); p_resp = Signal(2); p_ts = Signal(COUNTER_BITS)
        m.d.sync += [inflight.eq(issue), p_last.eq(rord_out.last & line_end),
                     p_id.eq(rord_out.id), p_resp.eq(rord_out.resp), p_ts.eq(rord_out.ts)]
        if BPH > 1:
            m.d.sync += p_lane.eq(cur_beat[:BPH.bit_length() - 1])
        p_data = Signal(self.axi.data_width)
        p_shift = Signal(256)
        m.d.comb += p_shift.eq(rbuf_r.data >> (p_lane * self.axi.data_width))
        m.d.comb += p_data.eq(Mux(p_resp == AxiResp.OKAY, p_shift[:self.axi.data_width], 0))
        m.d.comb += [rout.w_en.eq(inflight),
                     rout.w_data.eq(Cat(p_data, p_id, p_resp, p_last, p_ts))]
        dw, iw = self.axi.data_width, self.axi.id_width
        r_ts = Signal(COUNTER_BITS)
        m.d.comb += [axi.rvalid.eq(rout.r_rdy), axi.rdata.eq(rout.r_data[:dw]),
                     axi.rid.eq(rout.r_data[dw:dw + iw]), axi.rresp.eq(rout.r_data[dw + iw:][:2]),
                     axi.rlast.eq(rout.r_data[dw + iw + 2]),
                     r_ts.eq(rout.r_data[dw + iw + 3:]),
                     rout.r_en.eq(axi.rready)]

        # ---------------- B drain ----------------
        b_valid = Signal(); b_id = Signal(self.axi.id_width); b_resp = Signal(2)
        b_ts = Signal(COUNTER_BITS); b_err = Signal(2)
        m.d.comb += [axi.bvalid.eq(b_valid), axi.bid.eq(b_id), axi.bresp.eq(b_resp)]
        with m.If(b_valid & axi.bready):
            m.d.sync += b_valid.eq(0)
        bhead_ok = Signal()
        m.d.comb += bhead_ok.eq(bord.r_rdy & ((bord_out.resp != AxiResp.OKAY)
                                              | _pick(m, done, bord_out.tag, "b_done"))
                                & (~bord_out.last | ~b_valid))
        with m.If(bhead_ok):
            m.d.comb += bord.r_en.eq(1)
            with m.If(bord_out.resp == AxiResp.OKAY):
                m.d.comb += [free_b.eq(1), free_b_tag.eq(bord_out.tag)]
            worst = Signal(2)
            m.d.comb += worst.eq(Mux(bord_out.resp > b_err, bord_out.resp, b_err))
            with m.If(bord_out.last):
                m.d.sync += [b_valid.eq(1), b_id.eq(bord_out.id), b_resp.eq(worst),
                             b_ts.eq(bord_out.ts), b_err.eq(0)]
            with m.Else():
                m.d.sync += b_err.eq(worst)

        # ---------------- trace and counters ----------------
        tr = self.trace
        rlat = Signal(); wlat = Signal()
        m.d.comb += [rlat.eq(axi.rvalid & axi.rready & axi.rlast),
                     wlat.eq(axi.bvalid & axi.bready)]
        rlat_v = Signal(24); wlat_v = Signal(24)
        m.d.comb += [rlat_v.eq(cycle - r_ts), wlat_v.eq(cycle - b_ts)]
        m.d.sync += [
            tr.cycle.eq(cycle),
            tr.row_valid.eq(row_valid), tr.row_cmd.eq(row_cmd),
            tr.row_sid.eq(row_bank >> (ba_bits + bg_bits)), tr.row_bg.eq(row_bank >> ba_bits),
            tr.row_ba.eq(row_bank), tr.row_row.eq(row_row),
            tr.col_valid.eq(col_valid), tr.col_cmd.eq(Mux(col_write, ColCmd.WR, ColCmd.RD)),
            tr.col_sid.eq(ce.bank >> (ba_bits + bg_bits)), tr.col_bg.eq(ce.bank >> ba_bits),
            tr.col_ba.eq(ce.bank), tr.col_row.eq(ce.row), tr.col_col.eq(Cat(ce.half, ce.col)),
            tr.rlat_valid.eq(rlat), tr.rlat.eq(rlat_v),
            tr.wlat_valid.eq(wlat), tr.wlat.eq(wlat_v),
        ]
        st = self.stats
        first_col = Signal()
        m.d.comb += first_col.eq(col_valid & ~ce.half)
        stall_in = Signal(); stall_out = Signal()
        m.d.comb += [
            stall_in.eq((axi.arvalid & ~axi.arready) | (axi.awvalid & ~axi.awready)
                        | (axi.wvalid & ~axi.wready)),
            stall_out.eq((axi.rvalid & ~axi.rready) | (axi.bvalid & ~axi.bready)),
        ]
        m.d.sync += [
            st.cycles.eq(st.cycles + 1),
            st.busy.eq(st.busy + (count != 0)),
            st.stall_in.eq(st.stall_in + stall_in),
            st.stall_out.eq(st.stall_out + stall_out),
            st.bytes.eq(st.bytes + Mux(col_valid, 32, 0)),
            st.reads.eq(st.reads + (admit & ~new.write)),
            st.writes.eq(st.writes + (admit & new.write)),
            st.activates.eq(st.activates + is_act),
            st.precharges.eq(st.precharges + is_pre),
            st.refreshes.eq(st.refreshes + is_ref),
            st.row_hits.eq(st.row_hits + (first_col & (ce.cls == 0))),
            st.row_misses.eq(st.row_misses + (first_col & (ce.cls == 1))),
            st.row_conflicts.eq(st.row_conflicts + (first_col & (ce.cls == 2))),
            st.errors.eq(st.errors + (rord.w_en & (rord_in.resp != AxiResp.OKAY))
                         + (bord.w_en & (bord_in.resp != AxiResp.OKAY))),
        ]
        rbin = Signal(range(HIST_BINS)); wbin = Signal(range(HIST_BINS))
        for binsig, lat in ((rbin, rlat_v), (wbin, wlat_v)):
            for k in range(4, 4 + HIST_BINS - 1):
                with m.If(lat[k:].any()):
                    m.d.comb += binsig.eq(k - 3)
        for k in range(HIST_BINS):
            m.d.sync += st.hist[k].eq(st.hist[k] + (rlat & (rbin == k)) + (wlat & (wbin == k)))
        return m


class HbmController(wiring.Component):
    """``pseudo_channels`` independent :class:`HbmChannel` s side by side.

    Members are arrays indexed by pseudo-channel: ``s_axi[i]`` (Verilog ``s_axi__<i>__awaddr``,
    ...), ``trace[i]``, ``stats[i]``. Each pseudo-channel has its own address space of
    ``capacity_bytes``. Parameters as :class:`HbmChannel`.
    """

    def __init__(self, *, pseudo_channels=1, **channel_params):
        if not isinstance(pseudo_channels, int) or pseudo_channels < 1:
            raise ValueError(f"pseudo_channels must be a positive integer, "
                             f"not {pseudo_channels!r}")
        self.pseudo_channels = pseudo_channels
        self.channels = [HbmChannel(**channel_params) for _ in range(pseudo_channels)]
        ch = self.channels[0]
        self.timing, self.mapping = ch.timing, ch.mapping
        self.queue_depth, self.row_hit_cap = ch.queue_depth, ch.row_hit_cap
        self.age_cap = ch.age_cap
        self.capacity_bytes, self.organisation, self.faults = (ch.capacity_bytes,
                                                               ch.organisation, ch.faults)
        self.timing_only = ch.timing_only
        self.axi = ch.axi
        super().__init__({
            "s_axi": In(self.axi).array(pseudo_channels),
            "trace": Out(trace_layout(ch.organisation)).array(pseudo_channels),
            "stats": Out(stats_layout()).array(pseudo_channels),
        })

    @classmethod
    def from_config(cls, config, *, capacity_bytes=1 << 16, row_hit_cap=16, age_cap=1024,
                    timing_only=False, faults=frozenset()):
        """The controller of ``config`` (``hbm_preset`` must be an HBM preset, not ONCHIP)."""
        if config.hbm_preset == "ONCHIP":
            raise ValueError("hbm_preset ONCHIP has no HBM controller model")
        return cls(pseudo_channels=config.hbm_pseudo_channels, timing=config.hbm_preset,
                   mapping=config.hbm_mapping, queue_depth=config.hbm_queue_depth,
                   row_hit_cap=row_hit_cap, age_cap=age_cap, capacity_bytes=capacity_bytes,
                   addr_width=config.axi_addr_bits, data_width=config.axi_data_bits,
                   id_width=config.axi_id_bits, timing_only=timing_only, faults=faults)

    def elaborate(self, platform):
        m = Module()
        for i, ch in enumerate(self.channels):
            m.submodules[f"pc{i}"] = ch
            wiring.connect(m, wiring.flipped(self.s_axi[i]), ch.s_axi)
            m.d.comb += [self.trace[i].eq(ch.trace), self.stats[i].eq(ch.stats)]
        return m
