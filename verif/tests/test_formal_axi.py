"""Formal proofs of the AXI4 protocol rules (issue 8) on the DMA manager and the HBM models.

The rules are :func:`openmaia.harness.formal_axi.axi4_rules` (AMBA AXI4, written from the
specification; its docstring lists them): asserted for the block under test, assumed for the
free partner the solver plays. Each proof has broken twins that must fail with a
counterexample:

* :class:`TileDmaAxiProof`: :class:`~openmaia.tile.dma.TileDma` as the manager, in the reduced
  configuration of verif/tests/test_formal_dma.py (:class:`TileDmaHarness`); the subordinate
  is free with its rules assumed. Twins: the DMA faults ``unstable_wdata`` (a waiting W beat's
  data changes), ``full_strobes`` (strobes below an unaligned burst start), ``no_4k_split``
  (a burst crosses 4 KiB; 13-bit addresses).
* :class:`SubordinateAxiProof`: :class:`~openmaia.hbm.onchip.OnChipMemory` and
  :class:`~openmaia.hbm.controller.HbmChannel` as the subordinate, the manager free with its
  rules assumed. Twin: the ``OnChipMemory`` fault ``r_data_not_held``.
* :class:`MiniSubordinate` / :class:`MiniWriter`: two deliberately small AXI blocks (one burst
  at a time) whose faults break the rules no design fault here breaks (``RLAST`` early, a B
  before the last W beat, ``WLAST`` early, an R in the AR handshake cycle); their correct
  versions are proved by k-induction, so the checker's own state is shown inductive.

The proof table, tiers and runner are those of verif/tests/test_formal.py (imported).
"""

from dataclasses import dataclass

import pytest
from amaranth.hdl import Assert, Assume, Cover, Module, ResetSignal, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from openmaia.bus.axi import Axi4Signature, AxiBurst, AxiLiteSignature, AxiResp
from openmaia.harness.formal_axi import MANAGER, SUBORDINATE, axi4_rules, axi_lite_rules
from openmaia.hbm.controller import HbmChannel
from openmaia.hbm.onchip import OnChipMemory
from openmaia.hbm.timing import HbmTiming
from openmaia.tile.registers import HostRegisters
from test_formal import Proof, _run
from test_formal_dma import TileDmaHarness

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


# --- the DMA as the manager -------------------------------------------------------------------

#: The DMA's own limit on read bursts in flight: ``outstanding_reads`` chunks in the chunk FIFO
#: plus the one the beat walker holds (the FIFO entry leaves when the walker takes the chunk,
#: before its R beats arrive). docs/dma.md says ``outstanding_reads``; the proof found one more.
DMA_MAX_READS = 3
#: Write bursts the checker tracks (AW or W begun, B not yet): the DMA documents no limit (its
#: ``pending`` count is 16 bits); 8 is more than a bounded run of this depth can begin.
DMA_MAX_WRITES = 8


class TileDmaAxiProof(TileDmaHarness):
    """The AXI4 manager rules on ``TileDma.m_axi`` (every burst INCR and full-size: docs/dma.md
    promises both), at most :data:`DMA_MAX_READS` read bursts outstanding; the subordinate's
    rules assumed (R only for an outstanding AR, RLAST on beat ARLEN, B after AW and last W,
    RID / BID 0, R / B held until ready). TSRAM read data and ``rdata`` are free."""

    def __init__(self, **kwargs):
        super().__init__(free_data=True, **kwargs)

    def properties(self, m, inner):
        axi4_rules(m, self.dut.m_axi, under_test=MANAGER, max_reads=DMA_MAX_READS,
                   max_writes=DMA_MAX_WRITES, incr_only=True, full_size=True)


DMA_TEXT = ("TileDma, {aw}-bit AXI addresses, 16-bit bus, 1-bit ID, 2 queues of depth 1, 2 "
            "outstanding reads, counts 0..3, 5-bit TSRAM fields, 32-byte TSRAM, every input "
            "free (R / TSRAM data included; subordinate rules assumed)")
DMA_DEPTH = 8
TWIN_DEPTH = 6


# --- the HBM models as the subordinate --------------------------------------------------------

class SubordinateAxiProof(wiring.Component):
    """The AXI4 subordinate rules on ``build().s_axi``; the manager's signals are free inputs
    with the manager's rules assumed (any legal burst: FIXED, WRAP, narrow, every length; at
    most ``max_reads`` / ``max_writes`` outstanding); reset low. Responses in request order
    over all IDs (both models document it)."""

    def __init__(self, *, build, max_reads=4, max_writes=4):
        self.dut = build()
        self.max_reads, self.max_writes = max_reads, max_writes
        super().__init__({"bus": In(self.dut.axi)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        wiring.connect(m, wiring.flipped(self.bus), dut.s_axi)
        m.d.comb += Assume(~ResetSignal())
        t = axi4_rules(m, dut.s_axi, under_test=SUBORDINATE, max_reads=self.max_reads,
                       max_writes=self.max_writes)
        # Reachability (mode "cover"): a read burst of two beats or more completes, and a write
        # burst is answered, so the bounded proof's depth covers whole transactions.
        axi = dut.s_axi
        m.d.comb += [Cover(axi.rvalid & axi.rready & axi.rlast & (t.r_beat != 0)),
                     Cover(axi.bvalid & axi.bready)]
        return m


#: A reduced HBM timing (every value in cycles, the relations of HBM3_6400 kept: tRC > tRAS +
#: tRP, tRCD_RD > tRCD_WR, ...) so that a bounded run reaches read data, write responses and a
#: refresh.
AXI_TIMING = HbmTiming(
    name="FORMAL_AXI", tck_ns=1.0, CL=2, CWL=1, tRCD_RD=3, tRCD_WR=2, tRP=2, tRAS=4, tRC=7,
    tWR=2, tRTP=1, tRTW=3, tCCD_S=2, tCCD_L=3, tCCD_R=2, tRRD_S=1, tRRD_L=2, tFAW=5,
    tWTR_S=1, tWTR_L=2, tREFI=16, tRFC=3, tBURST=2)
AXI_TIMING_TEXT = ("CL 2, CWL 1, tRCD_RD/WR 3/2, tRP 2, tRAS 4, tRC 7, tWR 2, tRTP 1, tRTW 3, "
                   "tCCD_S/R/L 2/2/3, tRRD_S/L 1/2, tFAW 5, tWTR_S/L 1/2, tREFI 16, tRFC 3")


def onchip(**faults):
    return OnChipMemory(capacity_bytes=64, addr_width=8, data_width=32, id_width=2,
                        faults=frozenset(faults))


def hbm_channel(*, timing_only):
    return HbmChannel(timing=AXI_TIMING, mapping="RoBaRaCoCh", queue_depth=2, row_hit_cap=2,
                      capacity_bytes=4096, addr_width=12, data_width=64, id_width=2,
                      timing_only=timing_only)


ONCHIP_TEXT = ("OnChipMemory, 64 bytes, 8-bit addresses, 32-bit data, 2-bit IDs; manager free "
               "(rules assumed, up to 4 reads and 4 writes outstanding)")
HBM_TEXT = ("HbmChannel, full organisation, RoBaRaCoCh, queue 2, row_hit_cap 2, 4 KiB, 12-bit "
            "addresses, 64-bit data, 2-bit IDs, timing " + AXI_TIMING_TEXT + "; manager free "
            "(rules assumed, up to 4 reads and 4 writes outstanding)")


# --- small deliberately checked blocks ------------------------------------------------------

SIG = Axi4Signature(addr_width=8, data_width=32, id_width=2)


class MiniSubordinate(wiring.Component):
    """One read burst and one write burst at a time: AR / AW taken while idle, R beats
    ``ARLEN + 1`` with RLAST on the last, W beats taken until WLAST, then B. Faults:
    ``rlast_early`` (RLAST on beat ARLEN - 1 of a longer burst), ``b_early`` (B offered with
    the last W beat, before it is taken), ``r_with_ar`` (the first R beat in the AR handshake
    cycle)."""

    FAULTS = frozenset({"rlast_early", "b_early", "r_with_ar"})

    def __init__(self, *, faults=()):
        self.faults = frozenset(faults)
        assert self.faults <= self.FAULTS
        self.axi = SIG
        super().__init__({"s_axi": In(SIG)})

    def elaborate(self, platform):
        m = Module()
        axi = self.s_axi
        r_on, r_len, r_beat, r_id = Signal(), Signal(8), Signal(8), Signal(2)
        m.d.comb += axi.arready.eq(~r_on)
        with m.If(axi.arvalid & axi.arready):
            m.d.sync += [r_on.eq(1), r_len.eq(axi.arlen), r_beat.eq(0), r_id.eq(axi.arid)]
        last = Signal()
        m.d.comb += last.eq(r_beat == r_len)
        if "rlast_early" in self.faults:
            m.d.comb += last.eq((r_beat == r_len) | (r_beat + 1 == r_len))
        m.d.comb += [axi.rvalid.eq(r_on), axi.rlast.eq(last), axi.rid.eq(r_id),
                     axi.rresp.eq(AxiResp.OKAY), axi.rdata.eq(r_beat)]
        if "r_with_ar" in self.faults:
            with m.If(~r_on):
                m.d.comb += [axi.rvalid.eq(axi.arvalid), axi.rid.eq(axi.arid),
                             axi.rlast.eq(axi.arlen == 0)]
        with m.If(axi.rvalid & axi.rready):
            m.d.sync += r_beat.eq(r_beat + 1)
            with m.If(last):
                m.d.sync += r_on.eq(0)
        w_on, b_on, w_id = Signal(), Signal(), Signal(2)
        m.d.comb += [axi.awready.eq(~w_on & ~b_on), axi.wready.eq(w_on),
                     axi.bvalid.eq(b_on), axi.bid.eq(w_id), axi.bresp.eq(AxiResp.OKAY)]
        if "b_early" in self.faults:
            m.d.comb += axi.bvalid.eq(b_on | (w_on & axi.wvalid & axi.wlast))
        with m.If(axi.awvalid & axi.awready):
            m.d.sync += [w_on.eq(1), w_id.eq(axi.awid)]
        with m.If(axi.wvalid & axi.wready & axi.wlast):
            m.d.sync += [w_on.eq(0), b_on.eq(1)]
        with m.If(axi.bvalid & axi.bready):
            m.d.sync += b_on.eq(0)
        return m


class MiniWriter(wiring.Component):
    """A write-only manager: when idle and ``go``, one INCR full-size burst of ``length + 1``
    (1..4) beats at the 16-byte aligned ``addr << 4``, AW and W offered together, W beats
    counted to WLAST, then it waits for B. Fault ``wlast_early``: WLAST one beat early on
    bursts of two beats or more."""

    def __init__(self, *, faults=()):
        self.faults = frozenset(faults)
        super().__init__({"m_axi": Out(SIG), "go": In(1), "length": In(2), "addr": In(4)})

    def elaborate(self, platform):
        m = Module()
        axi = self.m_axi
        aw_on, w_on, b_wait = Signal(), Signal(), Signal()
        a, n, beat = Signal(8), Signal(8), Signal(8)
        idle = ~aw_on & ~w_on & ~b_wait
        with m.If(idle & self.go):
            m.d.sync += [aw_on.eq(1), w_on.eq(1), a.eq(self.addr << 4), n.eq(self.length),
                         beat.eq(0)]
        last = Signal()
        m.d.comb += last.eq(beat == n)
        if "wlast_early" in self.faults:
            m.d.comb += last.eq((beat == n) | (beat + 1 == n))
        m.d.comb += [axi.awvalid.eq(aw_on), axi.awaddr.eq(a), axi.awlen.eq(n),
                     axi.awsize.eq(2), axi.awburst.eq(AxiBurst.INCR),
                     axi.wvalid.eq(w_on), axi.wdata.eq(beat), axi.wstrb.eq(0xF),
                     axi.wlast.eq(last), axi.bready.eq(1)]
        with m.If(axi.awvalid & axi.awready):
            m.d.sync += aw_on.eq(0)
        with m.If(axi.wvalid & axi.wready):
            m.d.sync += beat.eq(beat + 1)
            with m.If(last):
                m.d.sync += [w_on.eq(0), b_wait.eq(1)]
        with m.If(axi.bvalid & axi.bready):
            m.d.sync += b_wait.eq(0)
        return m


class ManagerAxiProof(wiring.Component):
    """The AXI4 manager rules on ``build().m_axi`` (INCR full-size promised); the subordinate's
    signals are free inputs with its rules assumed; the block's other inputs (``go``,
    ``length``, ``addr`` of :class:`MiniWriter`) are free; reset low."""

    def __init__(self, *, build):
        self.dut = build()
        super().__init__({"bus": Out(SIG), "go": In(1), "length": In(2), "addr": In(4)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        wiring.connect(m, wiring.flipped(self.bus), dut.m_axi)
        m.d.comb += [dut.go.eq(self.go), dut.length.eq(self.length), dut.addr.eq(self.addr),
                     Assume(~ResetSignal())]
        axi4_rules(m, dut.m_axi, under_test=MANAGER, max_reads=1, max_writes=1,
                   incr_only=True, full_size=True)
        return m


# --- AXI4-Lite: the host registers as the subordinate ----------------------------------------

class LiteSubordinateProof(wiring.Component):
    """The AXI4-Lite subordinate rules on ``build().axi``; the manager's signals and every other
    input of the block are free (manager rules assumed, at most 4 reads and 4 writes
    outstanding); reset low. ``invariants``: assert the checker's counts from the block's own
    ports, for k-induction (:class:`~openmaia.tile.registers.HostRegisters` and
    :class:`MiniLite` take one read and one AW + W at a time: reads outstanding = ``rvalid``,
    AWs = ``~awready + bvalid``, Ws = ``~wready + bvalid``)."""

    def __init__(self, *, build, invariants=True):
        self.dut = build()
        self.invariants = invariants
        super().__init__(self.dut.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        wiring.connect(m, wiring.flipped(self), dut)
        m.d.comb += Assume(~ResetSignal())
        n_ar, n_aw, n_w = axi_lite_rules(m, dut.axi, under_test=SUBORDINATE, max_reads=4,
                                         max_writes=4)
        axi = dut.axi
        if self.invariants:
            m.d.comb += [Assert(n_ar == axi.rvalid), Assert(n_aw == ~axi.awready + axi.bvalid),
                         Assert(n_w == ~axi.wready + axi.bvalid)]
        return m


class MiniLite(wiring.Component):
    """A one-register AXI4-Lite subordinate (test block): AW and W each held in a register
    until both are there, then B; AR answered with the register's value. Fault ``b_on_aw``:
    B comes as soon as the AW is held, without waiting for W."""

    def __init__(self, *, faults=()):
        self.faults = frozenset(faults)
        super().__init__({"axi": In(AxiLiteSignature(addr_width=4))})

    def elaborate(self, platform):
        m = Module()
        bus = self.axi
        aw_full, w_full, value, w_data = Signal(), Signal(), Signal(32), Signal(32)
        m.d.comb += [bus.awready.eq(~aw_full), bus.wready.eq(~w_full),
                     bus.arready.eq(~bus.rvalid)]
        with m.If(bus.awvalid & ~aw_full):
            m.d.sync += aw_full.eq(1)
        with m.If(bus.wvalid & ~w_full):
            m.d.sync += [w_full.eq(1), w_data.eq(bus.wdata)]
        both = aw_full if "b_on_aw" in self.faults else aw_full & w_full
        with m.If(both & ~bus.bvalid):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), bus.bvalid.eq(1), value.eq(w_data)]
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        with m.If(bus.arvalid & ~bus.rvalid):
            m.d.sync += [bus.rvalid.eq(1), bus.rdata.eq(value)]
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        return m


def host_registers(**faults):
    return HostRegisters(semaphores=2, tsram_counters=data.StructLayout({"reads": 32}),
                         dma_queues=1, hbm_addr_bits=12, extra_counters={},
                         faults=frozenset(faults))


# --- the proof table ------------------------------------------------------------------------

@dataclass(frozen=True)
class YicesProof(Proof):
    """A :class:`~test_formal.Proof` run with yices (far faster than z3 on the DMA's
    arithmetic, verif/tests/test_formal_dma.py)."""
    solver: str = "yices"


PROOFS = [
    YicesProof("axi_dma_manager", lambda: TileDmaAxiProof(), "bmc", DMA_DEPTH, True, False,
               DMA_TEXT.format(aw=10) + f": AXI4 manager rules, INCR, full size, at most "
               f"{DMA_MAX_READS} reads outstanding, bounded, {DMA_DEPTH} cycles"),
    YicesProof("axi_dma_manager_short", lambda: TileDmaAxiProof(), "bmc", 4, True, True,
               DMA_TEXT.format(aw=10) + ": the same, bounded, 4 cycles (default tier)"),
    YicesProof("axi_dma_unstable_wdata", lambda: TileDmaAxiProof(faults={"unstable_wdata"}),
               "bmc", TWIN_DEPTH, False, False,
               "broken twin: TileDma fault unstable_wdata (W payload changes while waiting)"),
    YicesProof("axi_dma_full_strobes", lambda: TileDmaAxiProof(faults={"full_strobes"}),
               "bmc", TWIN_DEPTH, False, False,
               "broken twin: TileDma fault full_strobes (strobes below an unaligned start)"),
    YicesProof("axi_dma_no_4k_split",
               lambda: TileDmaAxiProof(addr_bits=13, faults={"no_4k_split"}),
               "bmc", TWIN_DEPTH, False, False,
               "broken twin: TileDma fault no_4k_split, 13-bit addresses (a burst crosses 4 KiB)"),
    YicesProof("axi_onchip", lambda: SubordinateAxiProof(build=onchip), "bmc", 12, True, False,
               ONCHIP_TEXT + ": AXI4 subordinate rules, bounded, 12 cycles"),
    YicesProof("axi_onchip_r_data_not_held",
               lambda: SubordinateAxiProof(build=lambda: onchip(r_data_not_held=True)),
               "bmc", 12, False, True,
               "broken twin: OnChipMemory fault r_data_not_held (R data changes while waiting)"),
    YicesProof("axi_hbm_channel",
               lambda: SubordinateAxiProof(build=lambda: hbm_channel(timing_only=False)),
               "bmc", 12, True, False, HBM_TEXT + ": AXI4 subordinate rules, bounded, 12 cycles"),
    YicesProof("axi_onchip_reach", lambda: SubordinateAxiProof(build=onchip), "cover", 12, True,
               False, ONCHIP_TEXT + ": within 12 cycles a read burst of 2+ beats completes and "
               "a B is taken (the bounded proof covers whole transactions)"),
    YicesProof("axi_hbm_channel_reach",
               lambda: SubordinateAxiProof(build=lambda: hbm_channel(timing_only=False)),
               "cover", 12, True, False, "the same reachability for the HbmChannel proof"),
    YicesProof("axi_mini_subordinate", lambda: SubordinateAxiProof(build=MiniSubordinate),
               "bmc", 8, True, False, "MiniSubordinate (test block), bounded, 8 cycles"),
    YicesProof("axi_mini_rlast_early",
               lambda: SubordinateAxiProof(build=lambda: MiniSubordinate(
                   faults={"rlast_early"})), "bmc", 8, False, False,
               "broken twin: MiniSubordinate fault rlast_early"),
    YicesProof("axi_mini_b_early",
               lambda: SubordinateAxiProof(build=lambda: MiniSubordinate(faults={"b_early"})),
               "bmc", 8, False, False, "broken twin: MiniSubordinate fault b_early"),
    YicesProof("axi_mini_r_with_ar",
               lambda: SubordinateAxiProof(build=lambda: MiniSubordinate(faults={"r_with_ar"})),
               "bmc", 8, False, False, "broken twin: MiniSubordinate fault r_with_ar"),
    YicesProof("axi_mini_writer", lambda: ManagerAxiProof(build=MiniWriter), "bmc", 8, True,
               False, "MiniWriter (test block), bounded, 8 cycles"),
    YicesProof("axi_mini_wlast_early",
               lambda: ManagerAxiProof(build=lambda: MiniWriter(faults={"wlast_early"})),
               "bmc", 8, False, True, "broken twin: MiniWriter fault wlast_early"),
    YicesProof("axil_host_registers", lambda: LiteSubordinateProof(build=host_registers),
               "prove", 3, True, True, "HostRegisters (2 semaphores, 1 DMA queue, 12-bit HBM "
               "addresses, 12-bit AXI4-Lite addresses), every input free: AXI4-Lite "
               "subordinate rules, k-induction"),
    YicesProof("axil_mini_lite", lambda: LiteSubordinateProof(build=MiniLite), "prove", 3,
               True, False, "MiniLite (test block): AXI4-Lite subordinate rules, k-induction"),
    YicesProof("axil_mini_lite_b_on_aw",
               lambda: LiteSubordinateProof(build=lambda: MiniLite(faults={"b_on_aw"}),
                                            invariants=False),
               "bmc", 4, False, True, "broken twin: MiniLite fault b_on_aw (B before W)"),
]


@pytest.mark.formal
@pytest.mark.parametrize("proof", PROOFS, ids=[p.name for p in PROOFS])
def test_formal_axi(proof):
    _run(proof)


QUICK = [p for p in PROOFS if p.quick]


def test_axi_rules_check_arguments():
    m = Module()
    bus = Axi4Signature(addr_width=8, data_width=32).create()
    with pytest.raises(ValueError, match="under_test"):
        axi4_rules(m, bus, under_test="dut", max_reads=1, max_writes=1)
    with pytest.raises(ValueError, match="max_reads"):
        axi4_rules(m, bus, under_test=MANAGER, max_reads=0, max_writes=1)
    with pytest.raises(ValueError, match="max_writes"):
        axi4_rules(m, bus, under_test=MANAGER, max_reads=1, max_writes=300)
    with pytest.raises(TypeError, match="Axi4Signature"):
        axi4_rules(m, AxiLiteSignature(addr_width=4).create(), under_test=MANAGER,
                   max_reads=1, max_writes=1)
    with pytest.raises(TypeError, match="AxiLiteSignature"):
        axi_lite_rules(m, bus, under_test=SUBORDINATE, max_reads=1, max_writes=1)


@pytest.mark.parametrize("proof", QUICK, ids=[p.name for p in QUICK])
def test_formal_axi_quick(proof):
    _run(proof)
