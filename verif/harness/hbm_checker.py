"""A formal timing checker of an HBM command stream, as Amaranth logic (Assert statements).

:class:`HbmFormalChecker` watches one pseudo-channel's command stream (one row command and one
column command a cycle, as ``HbmChannel.trace`` carries them) and asserts, from the definitions
of docs/hbm.md ("Scopes") and JEDEC, that every command keeps its distance to every earlier
command it depends on. It keeps its own counters: for each command kind and scope (bank, bank
group, stack ID, pseudo-channel) the cycles since the last such command, saturating at the
largest limit that needs them, and the ages of the last four ACTs (tFAW). It also tracks which
banks are open and at which row, and asserts the state rules: ACT only to a closed bank, RD / WR
only to an open bank at the row the command names, REF only with every bank closed. It imports
nothing from the design: only the limits (an ``HbmTiming``-like object with the named fields)
and the organisation's sizes are parameters.

A distance is ``cycle(second) - cycle(first)``; a row command and a column command in the same
cycle have distance 0. The checked limits (``first -> second >= limit``):

=========  ===========================  ============================================
scope      pair                         limit
=========  ===========================  ============================================
bank       ACT -> RD / ACT -> WR        tRCD_RD / tRCD_WR
bank       PRE -> ACT                   tRP
bank       ACT -> PRE                   tRAS
bank       ACT -> ACT                   tRC
bank       RD -> PRE                    tRTP
bank       WR -> PRE                    CWL + tBURST + tWR
bank grp   ACT -> ACT                   tRRD_L
bank grp   RD/WR -> RD/WR               tCCD_L
bank grp   WR -> RD                     CWL + tBURST + tWTR_L
stack ID   RD/WR -> RD/WR same SID      tCCD_S
stack ID   RD/WR -> RD/WR other SID     tCCD_R
channel    ACT -> ACT                   tRRD_S
channel    any 5 ACTs                   first to fifth >= tFAW
channel    WR -> RD                     CWL + tBURST + tWTR_S
channel    RD -> WR                     tRTW
channel    REF -> ACT, REF -> REF       tRFC
channel    PRE (any bank) -> REF        tRP
=========  ===========================  ============================================

Optionally (``refresh_interval``) it asserts that the gap between refreshes (and from reset to
the first one) never exceeds that many cycles.
"""

from amaranth.hdl import Assert, Assume, Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

__all__ = ["ACT", "LIMITS", "PRE", "RD", "REF", "WR", "HbmFormalChecker"]

#: Row-command and column-command codes of the command stream (docs/hbm.md, "Command stream").
ACT, PRE, REF = 1, 2, 3
RD, WR = 0, 1

#: The checked rules: name -> function of the timing giving the limit in cycles.
LIMITS = {
    "tRCD_RD": lambda t: t.tRCD_RD, "tRCD_WR": lambda t: t.tRCD_WR, "tRP": lambda t: t.tRP,
    "tRAS": lambda t: t.tRAS, "tRC": lambda t: t.tRC, "tRTP": lambda t: t.tRTP,
    "tWR": lambda t: t.CWL + t.tBURST + t.tWR, "tRRD_L": lambda t: t.tRRD_L,
    "tRRD_S": lambda t: t.tRRD_S, "tFAW": lambda t: t.tFAW, "tCCD_L": lambda t: t.tCCD_L,
    "tCCD_S": lambda t: t.tCCD_S, "tCCD_R": lambda t: t.tCCD_R,
    "tWTR_L": lambda t: t.CWL + t.tBURST + t.tWTR_L,
    "tWTR_S": lambda t: t.CWL + t.tBURST + t.tWTR_S, "tRTW": lambda t: t.tRTW,
    "tRFC": lambda t: t.tRFC,
}


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


class HbmFormalChecker(wiring.Component):
    """Asserts the timing rules of the module docstring on a command stream.

    Parameters (keyword-only)
    -------------------------
    timing
        Any object with the fields of ``HbmTiming`` (``CL`` is not used).
    stack_ids, bank_groups, banks, rows : int
        The organisation of one pseudo-channel (powers of two).
    refresh_interval : int or None
        If given, also assert that no more than this many cycles pass without a REF.
    timing_rules : bool
        Assert the timing rules (``False``: only the bank-state rules, for a proof of the
        command stream's bank discipline alone).
    state_rules : ``"assert"`` or ``"assume"``
        Whether the bank-state rules (ACT to a closed bank, RD / WR to the open row, REF with
        every bank closed) are asserted, or assumed (to check a timing block alone, whose
        caller keeps the bank state).

    Ports (all ``In``): ``row_valid``, ``row_cmd`` (ACT 1, PRE 2, REF 3), ``row_sid``,
    ``row_bg``, ``row_ba``, ``row_row``; ``col_valid``, ``col_cmd`` (RD 0, WR 1), ``col_sid``,
    ``col_bg``, ``col_ba``, ``col_row``. ``violation`` (``Out``) is high in a cycle in which a
    rule is broken (the same conditions the asserts state), for simulation use.
    """

    def __init__(self, *, timing, stack_ids: int, bank_groups: int, banks: int, rows: int,
                 refresh_interval: int | None = None, state_rules: str = "assert",
                 timing_rules: bool = True):
        self.timing_rules = bool(timing_rules)
        if state_rules not in ("assert", "assume"):
            raise ValueError(f"state_rules must be 'assert' or 'assume', not {state_rules!r}")
        self.state_rules = state_rules
        for name, value in (("stack_ids", stack_ids), ("bank_groups", bank_groups),
                            ("banks", banks), ("rows", rows)):
            if not isinstance(value, int) or value < 1 or value & (value - 1):
                raise ValueError(f"{name} must be a power of two, not {value!r}")
        self.limits = {name: f(timing) for name, f in LIMITS.items()}
        for name, value in self.limits.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"limit {name} must be a positive integer, not {value!r}")
        if refresh_interval is not None and (not isinstance(refresh_interval, int)
                                             or refresh_interval < 1):
            raise ValueError(f"refresh_interval must be a positive integer or None, "
                             f"not {refresh_interval!r}")
        self.stack_ids, self.bank_groups, self.banks, self.rows = (stack_ids, bank_groups,
                                                                   banks, rows)
        self.refresh_interval = refresh_interval
        sid_b = _bits(stack_ids) if stack_ids > 1 else 0
        bg_b = _bits(bank_groups) if bank_groups > 1 else 0
        ba_b = _bits(banks) if banks > 1 else 0
        row_b = _bits(rows) if rows > 1 else 0
        super().__init__({
            "row_valid": In(1), "row_cmd": In(2), "row_sid": In(max(sid_b, 1)),
            "row_bg": In(max(bg_b, 1)), "row_ba": In(max(ba_b, 1)), "row_row": In(max(row_b, 1)),
            "col_valid": In(1), "col_cmd": In(1), "col_sid": In(max(sid_b, 1)),
            "col_bg": In(max(bg_b, 1)), "col_ba": In(max(ba_b, 1)), "col_row": In(max(row_b, 1)),
            "violation": wiring.Out(1),
        })
        self._b = (sid_b, bg_b, ba_b, row_b)

    def state(self):
        """``(open, rows)``: the checker's bank state (a bit a bank; the open row of each bank),
        for a proof's induction helpers: the signals of the last elaboration, so the proof adds
        ``Fragment.get(checker, platform)`` as its submodule first."""
        if not hasattr(self, "_is_open"):
            raise RuntimeError("elaborate the checker (Fragment.get) before reading its state")
        return self._is_open, self._open_row

    def elaborate(self, platform):
        m = Module()
        L = self.limits
        sid_b, bg_b, ba_b, row_b = self._b
        nsid, nbg_per, nba = self.stack_ids, self.bank_groups, self.banks
        ngroups = nsid * nbg_per
        nbanks = ngroups * nba
        checks = []
        assumed = []

        def check(cond, name, state=False):
            if not state and not self.timing_rules:
                return
            ok = Signal(name=f"ok_{name}")
            m.d.comb += ok.eq(cond)
            (assumed if state and self.state_rules == "assume" else checks).append(ok)

        def field(value, width):
            return value[:width] if width else Const(0, 1)

        # flat indices of the commands' bank and bank group
        row_bank = Signal(range(max(nbanks, 2)))
        col_bank = Signal(range(max(nbanks, 2)))
        row_group = Signal(range(max(ngroups, 2)))
        col_group = Signal(range(max(ngroups, 2)))
        col_sid = Signal(range(max(nsid, 2)))
        m.d.comb += [
            row_bank.eq(Cat(field(self.row_ba, ba_b), field(self.row_bg, bg_b),
                            field(self.row_sid, sid_b))),
            col_bank.eq(Cat(field(self.col_ba, ba_b), field(self.col_bg, bg_b),
                            field(self.col_sid, sid_b))),
            row_group.eq(Cat(field(self.row_bg, bg_b), field(self.row_sid, sid_b))),
            col_group.eq(Cat(field(self.col_bg, bg_b), field(self.col_sid, sid_b))),
            col_sid.eq(field(self.col_sid, sid_b)),
        ]
        act = Signal(); pre = Signal(); ref = Signal(); rd = Signal(); wr = Signal()
        m.d.comb += [act.eq(self.row_valid & (self.row_cmd == ACT)),
                     pre.eq(self.row_valid & (self.row_cmd == PRE)),
                     ref.eq(self.row_valid & (self.row_cmd == REF)),
                     rd.eq(self.col_valid & (self.col_cmd == RD)),
                     wr.eq(self.col_valid & (self.col_cmd == WR))]

        def since(name, event, cap):
            """Cycles since ``event`` was last high (1 the cycle after), saturating at
            ``cap``; ``cap`` before the first event."""
            s = Signal(range(cap + 1), init=cap, name=f"since_{name}")
            with m.If(event):
                m.d.sync += s.eq(1)
            with m.Elif(s < cap):
                m.d.sync += s.eq(s + 1)
            return s

        # ---- per bank
        for b in range(nbanks):
            g, s = b // nba, b // (nba * nbg_per)
            row_here = Signal(name=f"row_here_{b}"); col_here = Signal(name=f"col_here_{b}")
            m.d.comb += [row_here.eq(row_bank == b), col_here.eq(col_bank == b)]
            s_act = since(f"act_{b}", act & row_here,
                          max(L["tRCD_RD"], L["tRCD_WR"], L["tRAS"], L["tRC"]))
            s_pre = since(f"pre_{b}", pre & row_here, L["tRP"])
            s_rd = since(f"rd_{b}", rd & col_here, L["tRTP"])
            s_wr = since(f"wr_{b}", wr & col_here, L["tWR"])
            # a column command in the same cycle as this bank's ACT is at distance 0
            act_dist = Signal.like(s_act, name=f"act_dist_{b}")
            m.d.comb += act_dist.eq(Mux(act & row_here, 0, s_act))
            rd_dist = Signal.like(s_rd, name=f"rd_dist_{b}")
            wr_dist = Signal.like(s_wr, name=f"wr_dist_{b}")
            m.d.comb += [rd_dist.eq(Mux(rd & col_here, 0, s_rd)),
                         wr_dist.eq(Mux(wr & col_here, 0, s_wr))]
            check(~(rd & col_here) | (act_dist >= L["tRCD_RD"]), f"tRCD_RD_{b}")
            check(~(wr & col_here) | (act_dist >= L["tRCD_WR"]), f"tRCD_WR_{b}")
            check(~(act & row_here) | (s_pre >= L["tRP"]), f"tRP_{b}")
            check(~(act & row_here) | (s_act >= L["tRC"]), f"tRC_{b}")
            check(~(pre & row_here) | (s_act >= L["tRAS"]), f"tRAS_{b}")
            check(~(pre & row_here) | (rd_dist >= L["tRTP"]), f"tRTP_{b}")
            check(~(pre & row_here) | (wr_dist >= L["tWR"]), f"tWR_{b}")
            del g, s

        # ---- per bank group
        for g in range(ngroups):
            row_here = Signal(name=f"row_grp_{g}"); col_here = Signal(name=f"col_grp_{g}")
            m.d.comb += [row_here.eq(row_group == g), col_here.eq(col_group == g)]
            s_act = since(f"act_grp_{g}", act & row_here, L["tRRD_L"])
            s_col = since(f"col_grp_{g}", (rd | wr) & col_here, L["tCCD_L"])
            s_wr = since(f"wr_grp_{g}", wr & col_here, L["tWTR_L"])
            check(~(act & row_here) | (s_act >= L["tRRD_L"]), f"tRRD_L_{g}")
            check(~((rd | wr) & col_here) | (s_col >= L["tCCD_L"]), f"tCCD_L_{g}")
            check(~(rd & col_here) | (s_wr >= L["tWTR_L"]), f"tWTR_L_{g}")

        # ---- per stack ID
        s_sid = [since(f"col_sid_{s}", (rd | wr) & (col_sid == s), max(L["tCCD_S"], L["tCCD_R"]))
                 for s in range(nsid)]
        for s in range(nsid):
            here = Signal(name=f"col_in_sid_{s}")
            m.d.comb += here.eq((rd | wr) & (col_sid == s))
            check(~here | (s_sid[s] >= L["tCCD_S"]), f"tCCD_S_{s}")
            for other in range(nsid):
                if other != s:
                    check(~here | (s_sid[other] >= L["tCCD_R"]), f"tCCD_R_{other}_{s}")

        # ---- per pseudo-channel
        s_act = since("act_any", act, L["tRRD_S"])
        s_wr = since("wr_any", wr, L["tWTR_S"])
        s_rd = since("rd_any", rd, L["tRTW"])
        s_ref = since("ref", ref, L["tRFC"])
        s_pre = since("pre_any", pre, L["tRP"])
        check(~act | (s_act >= L["tRRD_S"]), "tRRD_S")
        check(~rd | (s_wr >= L["tWTR_S"]), "tWTR_S")
        check(~wr | (s_rd >= L["tRTW"]), "tRTW")
        check(~(act | ref) | (s_ref >= L["tRFC"]), "tRFC")
        check(~ref | (s_pre >= L["tRP"]), "tRP_ref")
        faw = [Signal(range(L["tFAW"] + 1), init=L["tFAW"], name=f"faw_age_{k}")
               for k in range(4)]
        with m.If(act):
            m.d.sync += faw[0].eq(1)
            for k in range(1, 4):
                m.d.sync += faw[k].eq(Mux(faw[k - 1] >= L["tFAW"], L["tFAW"], faw[k - 1] + 1))
        with m.Else():
            for f in faw:
                with m.If(f < L["tFAW"]):
                    m.d.sync += f.eq(f + 1)
        check(~act | (faw[3] >= L["tFAW"]), "tFAW")

        # ---- bank state
        is_open = self._is_open = Signal(nbanks, name="is_open")
        open_row = self._open_row = [Signal(max(row_b, 1), name=f"open_row_{b}")
                                     for b in range(nbanks)]
        for b in range(nbanks):
            with m.If(act & (row_bank == b)):
                m.d.sync += [is_open[b].eq(1), open_row[b].eq(field(self.row_row, row_b))]
            with m.If(pre & (row_bank == b)):
                m.d.sync += is_open[b].eq(0)
            col_here = (rd | wr) & (col_bank == b)
            check(~(act & (row_bank == b)) | ~is_open[b], f"act_closed_{b}", state=True)
            check(~col_here | (is_open[b] & (open_row[b] == field(self.col_row, row_b))),
                  f"col_open_{b}", state=True)
        check(~ref | ~is_open.any(), "ref_closed", state=True)

        if self.refresh_interval is not None:
            gap = Signal(range(self.refresh_interval + 2), name="refresh_gap")
            with m.If(ref):
                m.d.sync += gap.eq(0)
            with m.Elif(gap <= self.refresh_interval):
                m.d.sync += gap.eq(gap + 1)
            check(gap <= self.refresh_interval, "refresh_interval")

        for ok in checks:
            m.d.comb += Assert(ok)
        for ok in assumed:
            m.d.comb += Assume(ok)
        m.d.comb += self.violation.eq(~Cat(*checks).all())
        return m
