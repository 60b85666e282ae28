"""Formal proofs of the HBM model (issue 8): the scheduler never issues a command that breaks a
timing limit, a waiting request is passed by at most ``row_hit_cap`` younger row hits, and the
oldest request leaves within ``age_cap`` + T cycles (no starvation).

The timing rules are asserted by :class:`~openmaia.harness.hbm_checker.HbmFormalChecker`, an
independent checker written from the definitions of the timing parameters (docs/hbm.md,
"Scopes"; it shares no code with the design nor with the simulation checker of
verif/benches/hbm_timing_checker.py), on the commands the channel issues each cycle (read at
its ``HbmTimers`` inputs, with the rows the channel issues them for).

* :class:`HbmTimersProof` (``hbm_timers``): ``HbmTimers`` alone, commands free under the
  scheduler's side of its contract; k-induction. Twins: each of the 16 ``TIMING_FAULTS``.
* :class:`HbmSchedulerProof` (``hbm_scheduler_contract``): the channel keeps that contract
  (every command has its timers bit, bank-state rules); k-induction, k = 2. With
  ``timing_rules=True`` (``hbm_channel_timing``) the checker's timing rules on the channel
  itself; k-induction. Twins: ``trcd_short``, ``trrd_s_short`` in the channel; for the
  contract, ``col_ignores_timers`` (bounded).
* :class:`HbmCapProof` (``hbm_row_hit_cap``): the row-hit cap; bounded. Twin: ``no_hit_cap``.
* :class:`HbmAgeProof` (``hbm_age_cap``): the age cap's bound on the oldest request (timing
  :data:`AGE_TIMING`, ``age_cap`` 2, T = 36); bounded, deep enough for whole windows at every
  refresh phase.
  Twin: ``no_age_cap``.

Reduced configuration (:data:`SMALL_ORGANISATION`, :data:`SMALL_TIMING`, queue 4, cap 2): the
organisation needs an address mapping of its own, which the shared table of
rtl/hbm/mapping.py does not have: :func:`small_mapping` registers it while a proof builds.

The proof table, tiers and runner are those of verif/tests/test_formal.py (imported).
"""

import dataclasses
from contextlib import contextmanager

import pytest
from amaranth.hdl import (
    Array,
    Assert,
    Assume,
    Cover,
    Fragment,
    Module,
    Mux,
    ResetSignal,
    Signal,
)
from amaranth.lib import wiring
from amaranth.lib.wiring import In
from openmaia.harness.hbm_checker import HbmFormalChecker
from openmaia.hbm import mapping as hbm_mapping
from openmaia.hbm.controller import (
    TIMING_FAULTS,
    ColCmd,
    HbmChannel,
    HbmTimers,
    RowCmd,
    _bits,
    _entry_layout,
    oldest_wait_bound,
)
from openmaia.hbm.timing import HbmOrganisation, HbmTiming
from test_formal import Proof, _run

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

#: The reduced timing of every HBM proof: HBM3_6400's relations kept (tRCD_RD > tRCD_WR,
#: tRC > tRAS + tRP, tRCD_RD + tRTP > tRAS and tRCD_WR + CWL + tBURST + tWR > tRAS so tRTP and
#: tWR can bind, tCCD_S < tCCD_R < tCCD_L, tRRD_S < tRRD_L, tFAW > 4 tRRD_S, tWTR_S < tWTR_L),
#: small numbers so a bounded proof reaches every rule, a refresh every 24 cycles.
SMALL_TIMING = HbmTiming(
    name="FORMAL_SMALL", tck_ns=1.0, CL=3, CWL=2, tRCD_RD=5, tRCD_WR=4, tRP=3, tRAS=6, tRC=10,
    tWR=3, tRTP=2, tRTW=5, tCCD_S=2, tCCD_L=4, tCCD_R=3, tRRD_S=2, tRRD_L=3, tFAW=9,
    tWTR_S=1, tWTR_L=2, tREFI=24, tRFC=6, tBURST=2)
TIMING_TEXT = ("CL 3, CWL 2, tRCD_RD 5, tRCD_WR 4, tRP 3, tRAS 6, tRC 10, tWR 3, tRTP 2, "
               "tRTW 5, tCCD_S/R/L 2/3/4, tRRD_S/L 2/3, tFAW 9, tWTR_S/L 1/2, tREFI 24, "
               "tRFC 6, tBURST 2")
#: The reduced organisation: 2 stack IDs x 2 bank groups x 2 banks (every scope has two members,
#: so every same / other distinction exists), 2 rows of 256 B (8 bursts): 4 KiB, the smallest
#: capacity HbmChannel takes.
SMALL_ORGANISATION = HbmOrganisation(stack_ids=2, bank_groups=2, banks=2, rows=2, row_bytes=256)
#: Its address mapping, RoBaRaCoCh's order (row : bank : bank group : stack ID : column)::
#:
#:     bit  11   10   9    8    7..5      4..0
#:          row  ba   bg   sid  col[2:0]  byte
SMALL_MAPPING = "FORMAL_RoBaRaCoCh"
SMALL_MAPPING_TABLE = {
    "bits": tuple([("col", i) for i in range(3)] + [("sid", 0), ("bg", 0), ("ba", 0),
                                                      ("row", 0)]),
    "xor": (),
}


@contextmanager
def small_mapping():
    """``SMALL_MAPPING`` registered in ``openmaia.hbm.mapping.MAPPINGS`` while the proof builds
    and elaborates (the shared table has only the full organisation's mappings)."""
    added = SMALL_MAPPING not in hbm_mapping.MAPPINGS
    if added:
        hbm_mapping.MAPPINGS[SMALL_MAPPING] = SMALL_MAPPING_TABLE
    try:
        yield
    finally:
        if added:
            del hbm_mapping.MAPPINGS[SMALL_MAPPING]


CHANNEL = {"timing": SMALL_TIMING, "organisation": SMALL_ORGANISATION, "mapping": SMALL_MAPPING,
           "queue_depth": 4, "row_hit_cap": 2, "capacity_bytes": 1 << 12, "addr_width": 12,
           "data_width": 256, "id_width": 1, "timing_only": True}
CHANNEL_TEXT = ("HbmChannel, organisation 2 SID x 2 BG x 2 banks x 2 rows of 256 B (4 KiB, "
                "RoBaRaCoCh order), queue 4, row_hit_cap 2, timing_only, 12-bit AXI addresses, "
                "256-bit data, 1-bit IDs; timing " + TIMING_TEXT)


def sync_registers(fragment: Fragment, *names: str, domain: str = "sync"):
    """The signals called ``names`` that ``fragment``'s own statements of ``domain`` assign
    (``"sync"``: registers, ``"comb"``), one each: a proof's read-only view of a block's
    internals, for induction helpers (Amaranth's ``Fragment`` internals)."""
    found = {}
    for statement in fragment.statements.get(domain, ()):
        for signal in statement._lhs_signals():
            if signal.name in names:
                found.setdefault(signal.name, {})[id(signal)] = signal
    for name in names:
        if len(found.get(name, ())) != 1:
            raise LookupError(f"expected one register {name!r}, found {len(found.get(name, ()))}")
    return [next(iter(found[name].values())) for name in names]


def _axi_producer_rules(m, axi, started, *, simple=False):
    """Assume the AXI manager's rules on the free inputs: a valid stays high until its ready,
    with a stable payload (AW, W, AR). ``simple``: also INCR bursts of full-width beats, one or
    two beats (at most two lines), zero write data (the data never steers a command)."""
    if simple:
        m.d.comb += [Assume(axi.awburst == 1), Assume(axi.arburst == 1),
                     Assume(axi.awsize == 5), Assume(axi.arsize == 5),
                     Assume(axi.awlen < 2), Assume(axi.arlen < 2), Assume(axi.wdata == 0)]
    channels = {
        "aw": ("awid", "awaddr", "awlen", "awsize", "awburst", "awlock", "awcache", "awprot",
               "awqos"),
        "w": ("wdata", "wstrb", "wlast"),
        "ar": ("arid", "araddr", "arlen", "arsize", "arburst", "arlock", "arcache", "arprot",
               "arqos"),
    }
    for ch, payload in channels.items():
        valid, ready = getattr(axi, f"{ch}valid"), getattr(axi, f"{ch}ready")
        stalled = Signal(name=f"{ch}_stalled")
        m.d.sync += stalled.eq(valid & ~ready)
        held = [Signal.like(getattr(axi, p), name=f"{p}_prev") for p in payload]
        m.d.sync += [h.eq(getattr(axi, p)) for h, p in zip(held, payload)]
        with m.If(started & stalled):
            m.d.comb += Assume(valid)
            m.d.comb += [Assume(getattr(axi, p) == h) for h, p in zip(held, payload)]


def timer_bounds(timers: HbmTimers) -> dict:
    """``{counter name: largest value}`` of an ``HbmTimers``' down counters (docs/hbm.md,
    "Timing counters": each is loaded with ``max(current, limit) - 1`` for the limits of its
    scope, so it never holds more than its longest limit minus one)."""
    t, o = timers.timing, timers.organisation
    wr_pre = t.CWL + t.tBURST + t.tWR
    bounds = {}
    for b in range(o.total_banks):
        bounds |= {f"act_{b}": max(t.tRC, t.tRP, t.tRFC), f"rd_{b}": t.tRCD_RD,
                   f"wr_{b}": t.tRCD_WR, f"pre_{b}": max(t.tRAS, t.tRTP, wr_pre)}
    for g in range(o.stack_ids * o.bank_groups):
        bounds |= {f"act_bg_{g}": t.tRRD_L, f"col_bg_{g}": t.tCCD_L,
                   f"wtr_bg_{g}": t.CWL + t.tBURST + t.tWTR_L}
    for s in range(o.stack_ids):
        bounds[f"col_sid_{s}"] = max(t.tCCD_S, t.tCCD_R)
    bounds |= {"rrd_s": t.tRRD_S, "wtr_s": t.CWL + t.tBURST + t.tWTR_S, "rtw": t.tRTW,
               "ref": max(t.tRP, t.tRFC)}
    bounds |= {f"faw_{i}": t.tFAW for i in range(4)}
    return {name: value - 1 for name, value in bounds.items()}


def _feed_checker(m, chk, organisation, *, row, col, row_row, col_row):
    """Drive the checker ``chk`` with the commands ``row`` / ``col`` (``(valid, cmd, bank)``,
    the bank a flat index split into bank, bank group and stack ID)."""
    (row_valid, row_cmd, row_bank), (col_valid, col_cmd, col_bank) = row, col
    ba, bg = organisation.bits("ba"), organisation.bits("bg")
    m.d.comb += [chk.row_valid.eq(row_valid), chk.row_cmd.eq(row_cmd),
                 chk.row_ba.eq(row_bank[:ba]), chk.row_bg.eq(row_bank[ba:ba + bg]),
                 chk.row_sid.eq(row_bank[ba + bg:]), chk.row_row.eq(row_row),
                 chk.col_valid.eq(col_valid), chk.col_cmd.eq(col_cmd),
                 chk.col_ba.eq(col_bank[:ba]), chk.col_bg.eq(col_bank[ba:ba + bg]),
                 chk.col_sid.eq(col_bank[ba + bg:]), chk.col_row.eq(col_row)]


def _watch_commands(m, chk, t, organisation, *, row, col, row_row, col_row, rule):
    """:func:`_feed_checker`, and apply ``rule`` (``Assume`` or ``Assert``) to "every command
    has its ``HbmTimers`` ok bit and no PRE goes with a column command to its bank" (``t``: the
    timers)."""
    _feed_checker(m, chk, organisation, row=row, col=col, row_row=row_row, col_row=col_row)
    (row_valid, row_cmd, row_bank), (col_valid, col_cmd, col_bank) = row, col
    row_ok = Signal()
    with m.Switch(row_cmd):
        with m.Case(RowCmd.ACT):
            m.d.comb += row_ok.eq(t.act_ok.bit_select(row_bank, 1))
        with m.Case(RowCmd.PRE):
            m.d.comb += row_ok.eq(t.pre_ok.bit_select(row_bank, 1))
        with m.Case(RowCmd.REF):
            m.d.comb += row_ok.eq(t.ref_ok)
    col_ok = Signal()
    m.d.comb += col_ok.eq(Mux(col_cmd == ColCmd.WR, t.wr_ok.bit_select(col_bank, 1),
                              t.rd_ok.bit_select(col_bank, 1)))
    with m.If(row_valid):
        m.d.comb += rule(row_ok)
    with m.If(col_valid):
        m.d.comb += rule(col_ok)
    with m.If(row_valid & (row_cmd == RowCmd.PRE) & col_valid):
        m.d.comb += rule(row_bank != col_bank)


def _channel_with_free_axi(m, component, platform):
    """Add ``component.dut`` (an ``HbmChannel``) under ``m`` with its AXI port on the
    component's free ``s_axi`` (the producer rules assumed, reset low); return the channel's
    fragment, its ``HbmTimers`` and the timers' fragment."""
    m.submodules.dut = fragment = Fragment.get(component.dut, platform)
    wiring.connect(m, wiring.flipped(component.s_axi), component.dut.s_axi)
    started = Signal()
    m.d.sync += started.eq(1)
    m.d.comb += Assume(~ResetSignal())
    _axi_producer_rules(m, component.s_axi, started, simple=True)
    timers, timers_fragment = next((sub.origins[0], sub) for sub, name, _
                                   in fragment.subfragments if name == "timers")
    return fragment, timers, timers_fragment


class HbmTimersProof(wiring.Component):
    """``HbmTimers`` alone: every command it allows keeps every timing rule (k-induction).

    Free inputs: the row command and the column command of each cycle (kind, bank). Assumed
    (the scheduler's side of the contract, docs/hbm.md "Timing counters": the scheduler only
    ANDs the timers' bits): a command issues only when its bit (``act_ok`` / ``pre_ok`` /
    ``rd_ok`` / ``wr_ok`` of its bank, ``ref_ok``) is set; the bank-state rules (ACT to a
    closed bank, RD / WR to the open row, REF with every bank closed, as the checker tracks
    them); no PRE in the cycle of a column command to the same bank. Reset low. The checker
    asserts every timing rule on the same commands.

    Induction helper (asserted too, so proved): each of the timers' down counters is at most
    its longest limit minus one (a counter loaded with ``max(current, limit) - 1`` never holds
    more), read from the timers' fragment by name. With it every state is a function of the
    last ``k`` commands once ``k`` exceeds the longest limit, and the induction closes.
    """

    def __init__(self, *, faults=(), timing=SMALL_TIMING, organisation=SMALL_ORGANISATION):
        self.dut = HbmTimers(timing=timing, organisation=organisation,
                             faults=frozenset(faults))
        o = organisation
        self.checker = HbmFormalChecker(timing=timing, stack_ids=o.stack_ids,
                                        bank_groups=o.bank_groups, banks=o.banks, rows=o.rows,
                                        state_rules="assume")
        nb = o.total_banks
        super().__init__({"row_valid": In(1), "row_cmd": In(RowCmd), "row_bank": In(range(nb)),
                          "row_row": In(max(1, o.bits("row"))),
                          "col_valid": In(1), "col_cmd": In(ColCmd), "col_bank": In(range(nb)),
                          "col_row": In(max(1, o.bits("row")))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.timers = fragment = Fragment.get(self.dut, platform)
        t = self.dut
        m.submodules.checker = chk = self.checker
        bounds = timer_bounds(self.dut)
        for name, signal in zip(bounds, sync_registers(fragment, *bounds)):
            m.d.comb += Assert(signal <= bounds[name])
        m.d.comb += Assume(~ResetSignal())
        m.d.comb += [t.row_valid.eq(self.row_valid), t.row_cmd.eq(self.row_cmd),
                     t.row_bank.eq(self.row_bank), t.col_valid.eq(self.col_valid),
                     t.col_cmd.eq(self.col_cmd), t.col_bank.eq(self.col_bank)]
        _watch_commands(m, chk, t, self.dut.organisation,
                        row=(self.row_valid, self.row_cmd, self.row_bank),
                        col=(self.col_valid, self.col_cmd, self.col_bank),
                        row_row=self.row_row, col_row=self.col_row, rule=Assume)
        return m


class HbmSchedulerProof(wiring.Component):
    """The channel keeps the scheduler's side of the timers' contract (the assumptions of
    :class:`HbmTimersProof`), in every reachable state (k-induction).

    Free inputs: the AXI port, as :class:`HbmTimingProof` (producer rules assumed, reset low).
    The commands are read at the channel's ``HbmTimers`` inputs (the commands issued this
    cycle) with the rows the channel issues them for; an :class:`HbmFormalChecker` (its own
    bank state from the command stream; timing rules not asserted here) asserts the bank-state
    rules. Also asserted: every command's bit from the timers (``act_ok`` / ``pre_ok`` /
    ``rd_ok`` / ``wr_ok`` of its bank, ``ref_ok``) is set; no PRE with a column command to the
    same bank in one cycle.

    Induction helpers (asserted): the checker's open banks and rows equal the channel's
    (``bank_open``, ``open_row_<b>``), and a valid queue entry's row-hit bit is set exactly
    when its bank is open at its row.
    """

    def __init__(self, *, faults=(), timing_rules=False, **channel):
        self.dut = HbmChannel(**(CHANNEL | channel), faults=frozenset(faults))
        o = self.dut.organisation
        self.timing_rules = timing_rules
        self.checker = HbmFormalChecker(timing=self.dut.timing, stack_ids=o.stack_ids,
                                        bank_groups=o.bank_groups, banks=o.banks, rows=o.rows,
                                        timing_rules=timing_rules)
        super().__init__({"s_axi": In(self.dut.axi)})

    def elaborate(self, platform):
        m = Module()
        dut, o = self.dut, self.dut.organisation
        fragment, t, t_fragment = _channel_with_free_axi(m, self, platform)
        chk = self.checker
        m.submodules.checker = Fragment.get(chk, platform)
        if self.timing_rules:
            bounds = timer_bounds(t)
            for name, signal in zip(bounds, sync_registers(t_fragment, *bounds)):
                m.d.comb += Assert(signal <= bounds[name])
        nb = o.total_banks
        bank_open, *open_row = sync_registers(fragment, "bank_open",
                                              *(f"open_row_{b}" for b in range(nb)))
        row_row, ce = sync_registers(fragment, "row_row", "ce", domain="comb")
        queue = sync_registers(fragment, *(f"q{i}" for i in range(dut.queue_depth)))
        layout = _entry_layout(o, _bits(dut.queue_depth), _bits(dut.capacity_bytes // 64),
                               64 // dut.axi.data_bytes)
        ce = layout(ce)
        _watch_commands(m, chk, t, o, row=(t.row_valid, t.row_cmd, t.row_bank),
                        col=(t.col_valid, t.col_cmd, t.col_bank),
                        row_row=row_row, col_row=ce.row, rule=Assert)
        # induction helpers
        chk_open, chk_rows = chk.state()
        m.d.comb += Assert(chk_open == bank_open)
        for b in range(nb):
            with m.If(bank_open[b]):
                m.d.comb += Assert(chk_rows[b] == open_row[b])
        open_rows = Array(open_row)
        for raw in queue:
            e = layout(raw)
            with m.If(e.valid):
                m.d.comb += Assert(e.hit == (bank_open.bit_select(e.bank, 1)
                                             & (open_rows[e.bank] == e.row)))
        return m


#: The cap proof's timing: every column and row limit one cycle (no timing constraint binds
#: but tRCD 2 / 1, CL 1), refresh after 1000 cycles (none within the bound), so the bound is
#: spent on the reordering the cap limits.
CAP_TIMING = HbmTiming(
    name="FORMAL_CAP", tck_ns=1.0, CL=1, CWL=1, tRCD_RD=2, tRCD_WR=1, tRP=1, tRAS=1, tRC=1,
    tWR=1, tRTP=1, tRTW=1, tCCD_S=1, tCCD_L=1, tCCD_R=1, tRRD_S=1, tRRD_L=1, tFAW=1, tWTR_S=1,
    tWTR_L=1, tREFI=1000, tRFC=1, tBURST=1)


class HbmCapProof(wiring.Component):
    """The row-hit cap (docs/hbm.md, "Scheduling"): after an ACT, at most ``row_hit_cap``
    row-hit bursts of a bank pass an older request for another row of that bank.

    Free inputs: the AXI port (producer rules assumed, INCR full-width bursts of one or two
    beats, zero write data, reset low) and ``watch``. The first line request admitted while
    ``watch`` is high is the watched request ``W`` (its tag, bank, row are recorded when it
    enters the queue; the commands are read at the channel's ``HbmTimers`` inputs with the
    column command's queue entry). Every request admitted after ``W`` is younger (a mask over
    buffer tags, set at admission). While ``W`` waits (from admission to its last burst), a
    column burst to ``W``'s bank from a younger request while that bank is open at another
    row than ``W``'s passes ``W``; passes are counted from ``W``'s admission or the bank's
    last ACT, whichever is later, and the count must stay <= ``row_hit_cap``. The bank state
    is the :class:`HbmFormalChecker`'s own (from the command stream; its bank-state rules are
    asserted too). Bounded.
    """

    def __init__(self, *, faults=(), **channel):
        params = CHANNEL | {"timing": CAP_TIMING, "queue_depth": 4, "row_hit_cap": 2} | channel
        self.dut = HbmChannel(**params, faults=frozenset(faults))
        o = self.dut.organisation
        self.checker = HbmFormalChecker(timing=self.dut.timing, stack_ids=o.stack_ids,
                                        bank_groups=o.bank_groups, banks=o.banks, rows=o.rows,
                                        timing_rules=False)
        super().__init__({"s_axi": In(self.dut.axi), "watch": In(1)})

    def elaborate(self, platform):
        m = Module()
        dut, o = self.dut, self.dut.organisation
        N = dut.queue_depth
        fragment, t, _ = _channel_with_free_axi(m, self, platform)
        chk = self.checker
        m.submodules.checker = Fragment.get(chk, platform)
        row_row, ce, admit, new = sync_registers(fragment, "row_row", "ce", "admit", "new",
                                                 domain="comb")
        layout = _entry_layout(o, _bits(N), _bits(dut.capacity_bytes // 64),
                               64 // dut.axi.data_bytes)
        ce, new = layout(ce), layout(new)
        _feed_checker(m, chk, o, row=(t.row_valid, t.row_cmd, t.row_bank),
                      col=(t.col_valid, t.col_cmd, t.col_bank), row_row=row_row, col_row=ce.row)
        is_open, rows = chk.state()
        rows = Array(rows)

        waiting = Signal(); used = Signal()
        w_tag = Signal(len(new.tag)); w_bank = Signal(len(new.bank)); w_row = Signal(len(new.row))
        younger = Signal(1 << len(new.tag))
        passes = Signal(range(dut.row_hit_cap + 8))
        w_open_other = Signal()
        m.d.comb += w_open_other.eq(is_open.bit_select(w_bank, 1) & (rows[w_bank] != w_row))
        passing = Signal()
        m.d.comb += passing.eq(waiting & t.col_valid & (t.col_bank == w_bank) & w_open_other
                               & younger.bit_select(ce.tag, 1))
        with m.If(waiting & t.row_valid & (t.row_cmd == RowCmd.ACT) & (t.row_bank == w_bank)):
            m.d.sync += passes.eq(0)
        with m.Elif(passing & (passes < dut.row_hit_cap + 7)):
            m.d.sync += passes.eq(passes + 1)
        with m.If(waiting & t.col_valid & (ce.tag == w_tag) & ce.half):
            m.d.sync += waiting.eq(0)
        with m.If(admit):
            with m.If(self.watch & ~used):
                m.d.sync += [waiting.eq(1), used.eq(1), w_tag.eq(new.tag), w_bank.eq(new.bank),
                             w_row.eq(new.row), younger.eq(0), passes.eq(0)]
            with m.Elif(waiting):
                m.d.sync += younger.eq(younger | (1 << new.tag))
        m.d.comb += Assert(passes <= dut.row_hit_cap)
        return m


#: The age-cap proof's timing: the smallest numbers that keep a stream of writes able to hold
#: tWTR loaded (CWL + tBURST + tWTR_S = 4 cycles, while the front end admits a 64 B write every
#: 5 cycles, two WR bursts tCCD_L = 2 apart) and every phase of the bound present (tRCD_RD 2,
#: tRC 3 = tRAS 2 + tRP 1, tFAW 4 = 4 tRRD_S, tRFC 2), a refresh every 24 cycles (the smallest
#: tREFI for which ``oldest_wait_bound`` holds: one refresh in a window). T = 36.
AGE_TIMING = HbmTiming(
    name="FORMAL_AGE", tck_ns=1.0, CL=1, CWL=2, tRCD_RD=2, tRCD_WR=1, tRP=1, tRAS=2, tRC=3,
    tWR=1, tRTP=1, tRTW=2, tCCD_S=1, tCCD_L=2, tCCD_R=1, tRRD_S=1, tRRD_L=1, tFAW=4, tWTR_S=1,
    tWTR_L=2, tREFI=24, tRFC=2, tBURST=1)
AGE_TIMING_TEXT = ("CL 1, CWL 2, tRCD_RD/WR 2/1, tRP 1, tRAS 2, tRC 3, tWR 1, tRTP 1, tRTW 2, "
                   "tCCD_S/R/L 1/1/2, tRRD_S/L 1/1, tFAW 4, tWTR_S/L 1/2, tREFI 24, tRFC 2, "
                   "tBURST 1")
AGE_CAP = 2


class HbmAgeProof(wiring.Component):
    """The age cap (docs/hbm.md, "Scheduling"): the oldest request's last burst issues within
    ``age_cap`` + T cycles of it becoming the oldest (T = ``oldest_wait_bound``).

    Free inputs: the AXI port (producer rules assumed, INCR full-width bursts of one or two
    beats, zero write data, reset low; R and B ready free, so any backpressure). The oldest
    request is queue entry 0 (the queue is age ordered); it leaves when a column command of
    its tag (buffer tags are unique among queued requests) issues its second burst. ``wait``
    counts the cycles entry 0 has been the oldest (restarting when it leaves or the queue is
    empty); asserted: ``wait`` <= ``age_cap`` + T. Bounded (from reset).

    ``free_refresh_phase``: the refresh interval counter ``refi`` starts at any value below
    tREFI (the proof's script removes its ``init``, :data:`FREE_REFI`), as after any number
    of idle cycles since reset, so the first refresh falls anywhere in the windows checked.
    ``reach_refi``: instead of the bound, cover a start with ``refi`` at that value (the check
    that the phase is free).
    """

    def __init__(self, *, faults=(), free_refresh_phase=False, reach_refi=None, **channel):
        self.free_refresh_phase, self.reach_refi = free_refresh_phase, reach_refi
        params = CHANNEL | {"timing": AGE_TIMING, "age_cap": AGE_CAP} | channel
        self.dut = HbmChannel(**params, faults=frozenset(faults))
        self.bound = self.dut.age_cap + oldest_wait_bound(self.dut.timing,
                                                          self.dut.organisation)
        super().__init__({"s_axi": In(self.dut.axi)})

    def elaborate(self, platform):
        m = Module()
        dut, o = self.dut, self.dut.organisation
        N = dut.queue_depth
        fragment, t, _ = _channel_with_free_axi(m, self, platform)
        if self.free_refresh_phase:
            (refi,) = sync_registers(fragment, "refi")
            first = Signal(init=1)
            m.d.sync += first.eq(0)
            with m.If(first):
                m.d.comb += Assume(refi < dut.timing.tREFI)
            if self.reach_refi is not None:
                m.d.comb += Cover(first & (refi == self.reach_refi))
                return m
        (ce,) = sync_registers(fragment, "ce", domain="comb")
        (q0,) = sync_registers(fragment, "q0")
        layout = _entry_layout(o, _bits(N), _bits(dut.capacity_bytes // 64),
                               64 // dut.axi.data_bytes)
        ce, q0 = layout(ce), layout(q0)
        leaves = Signal()
        m.d.comb += leaves.eq(q0.valid & t.col_valid & ce.half & (ce.tag == q0.tag))
        wait = Signal(range(self.bound + 2))
        with m.If(~q0.valid | leaves):
            m.d.sync += wait.eq(0)
        with m.Elif(wait <= self.bound):
            m.d.sync += wait.eq(wait + 1)
        m.d.comb += Assert(wait <= self.bound)
        return m


TIMERS_K = 11
#: The timers' twin that also runs in the default tier (one of the fastest to fail, about 7 s).
QUICK_TWINS = ("trcd_short",)
TIMERS_TEXT = ("HbmTimers, organisation 2 SID x 2 BG x 2 banks, timing " + TIMING_TEXT
               + "; commands free under the scheduler's contract")
CHANNEL_K = 11
CAP_DEPTH = 12
CONTRACT_TWIN_DEPTH = 8
#: Whole windows (age_cap + T + 1 = 39 cycles) starting at steps 2..7 (entry 0 is valid at
#: step 2 at the earliest). With tREFI 24 the first refresh falls due at step 24, 17..22 cycles
#: into those windows; ``hbm_age_cap_no_refresh`` (tREFI 1000) covers windows without one.
#: Every refresh phase needs 3 + 24 + 39 = 66 steps: stopped at step 53 after 18 minutes.
#: The twin fails at step 42.
AGE_DEPTH = 46
#: Yosys command for ``free_refresh_phase``: the channel's refresh counter without its init.
FREE_REFI = ("setattr -unset init top.dut/w:refi",)
AGE_TEXT = (f"{CHANNEL_TEXT.split('; timing')[0]}, age_cap {AGE_CAP}, timing FORMAL_AGE "
            f"({AGE_TIMING_TEXT}); AXI as hbm_scheduler_contract, R / B ready free")

PROOFS = [
    Proof("hbm_timers", lambda: HbmTimersProof(), "prove", TIMERS_K, True, False,
          f"{TIMERS_TEXT}; k-induction, k = {TIMERS_K}", timeout=600, solver="yices"),
    Proof("hbm_scheduler_contract", lambda: HbmSchedulerProof(), "prove", 2, True, True,
          f"{CHANNEL_TEXT}; AXI producer rules, INCR full-width bursts of 1-2 beats, zero "
          "write data; every command has its timers bit, bank-state rules; k-induction, k = 2",
          timeout=600, solver="yices"),
    Proof("hbm_scheduler_contract_col_ignores_timers",
          lambda: HbmSchedulerProof(faults={"col_ignores_timers"}), "bmc", CONTRACT_TWIN_DEPTH,
          False, True, "broken twin: channel fault col_ignores_timers (column commands without "
          f"the timers' rd_ok / wr_ok); bounded, {CONTRACT_TWIN_DEPTH} cycles", timeout=600,
          solver="yices"),
    Proof("hbm_channel_timing", lambda: HbmSchedulerProof(timing_rules=True), "prove",
          CHANNEL_K, True, False,
          f"{CHANNEL_TEXT}; AXI as hbm_scheduler_contract; every timing rule and bank-state "
          f"rule on the issued commands; k-induction, k = {CHANNEL_K}", timeout=3600,
          solver="yices"),
    Proof("hbm_channel_timing_trcd_short",
          lambda: HbmSchedulerProof(timing_rules=True, faults={"trcd_short"}), "bmc", CHANNEL_K,
          False, True, "broken twin: HbmTimers fault trcd_short in the channel", timeout=3600,
          solver="yices"),
    Proof("hbm_channel_timing_trrd_s_short",
          lambda: HbmSchedulerProof(timing_rules=True, faults={"trrd_s_short"}), "bmc",
          CHANNEL_K, False, False, "broken twin: HbmTimers fault trrd_s_short in the channel",
          timeout=3600, solver="yices"),
    Proof("hbm_row_hit_cap", lambda: HbmCapProof(), "bmc", CAP_DEPTH, True, False,
          f"{CHANNEL_TEXT.split('; timing')[0]}, timing FORMAL_CAP (limits 1, tRCD_RD 2, "
          f"no refresh within the bound); a watched request is passed by at most row_hit_cap "
          f"(2) younger row-hit bursts of its bank after each ACT; bounded, {CAP_DEPTH} cycles",
          timeout=3600, solver="yices"),
    Proof("hbm_row_hit_cap_no_hit_cap", lambda: HbmCapProof(faults={"no_hit_cap"}), "bmc",
          CAP_DEPTH, False, False, "broken twin: channel fault no_hit_cap", timeout=3600,
          solver="yices"),
    Proof("hbm_age_cap", lambda: HbmAgeProof(), "bmc", AGE_DEPTH, True, False,
          f"{AGE_TEXT}; the oldest request (queue entry 0) issues its last burst within "
          f"age_cap + T = {AGE_CAP} + {oldest_wait_bound(AGE_TIMING, SMALL_ORGANISATION)} "
          f"cycles of becoming the oldest; bounded, {AGE_DEPTH} cycles from reset",
          timeout=3600, solver="yices"),
    Proof("hbm_age_cap_no_refresh",
          lambda: HbmAgeProof(timing=dataclasses.replace(AGE_TIMING, tREFI=1000)), "bmc",
          AGE_DEPTH, True, False,
          f"{AGE_TEXT.replace('tREFI 24', 'tREFI 1000')}; as hbm_age_cap without a refresh "
          f"within the bound; bounded, {AGE_DEPTH} cycles from reset", timeout=3600,
          solver="yices"),
    Proof("hbm_age_cap_no_age_cap", lambda: HbmAgeProof(faults={"no_age_cap"}), "bmc",
          AGE_DEPTH, False, False, "broken twin: channel fault no_age_cap", timeout=3600,
          solver="yices"),
    Proof("hbm_age_cap_any_refresh_phase", lambda: HbmAgeProof(free_refresh_phase=True),
          "bmc", AGE_DEPTH, True, False,
          f"{AGE_TEXT}; as hbm_age_cap, the refresh counter starting at any value below tREFI "
          f"(every phase of the first refresh against the windows); bounded, {AGE_DEPTH} cycles",
          timeout=7200, solver="yices", script=FREE_REFI),
    Proof("hbm_age_cap_any_refresh_phase_reach",
          lambda: HbmAgeProof(free_refresh_phase=True, reach_refi=0), "cover", 1, True, True,
          "cover: with the init removed the refresh counter can start at 0 (its init is "
          "tREFI - 1)", timeout=600, solver="yices", script=FREE_REFI),
]
for _fault in sorted(TIMING_FAULTS):
    PROOFS.append(Proof(f"hbm_timers_{_fault}",
                        lambda f=_fault: HbmTimersProof(faults={f}), "prove", TIMERS_K,
                        False, _fault in QUICK_TWINS, f"broken twin: HbmTimers fault {_fault}",
                        timeout=600,
                        solver="yices"))


@pytest.mark.formal
@pytest.mark.parametrize("proof", PROOFS, ids=[p.name for p in PROOFS])
def test_formal_hbm(proof):
    with small_mapping():
        _run(proof)


QUICK = [p for p in PROOFS if p.quick]


@pytest.mark.parametrize("proof", QUICK, ids=[p.name for p in QUICK])
def test_formal_hbm_quick(proof):
    with small_mapping():
        _run(proof)
