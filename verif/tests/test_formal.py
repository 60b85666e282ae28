"""Formal proofs (SymbiYosys through :func:`openmaia.harness.formal.prove`).

Every proof is a :class:`Proof` in :data:`PROOFS`: a wrapper component holding the property, the
mode and depth, and whether it must pass. Each property has a broken twin (a ``faults=`` variant
of the block, or a deliberately wrong component) that must fail, so a vacuous proof cannot pass.

Tiers: ``test_formal`` is marked ``formal`` and runs every proof (``pytest -m formal``);
``test_formal_quick`` is unmarked and runs the quick ones (under ~20 s each) in the default tier,
so ``-m formal`` never runs a proof twice and the default tier still proves the quick ones.
"""

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from amaranth.hdl import (
    Assert,
    Assume,
    Cat,
    Const,
    Module,
    Mux,
    ResetSignal,
    Signal,
    Value,
    signed,
)
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In
from openmaia.bus.memory_port import EccStatus
from openmaia.compute.dot_engine import MxDotEngine
from openmaia.compute.dot_lanes import (
    add_carry,
    aligned_term,
    lane_product,
    lane_widths,
    sum_terms,
)
from openmaia.compute.element_decoder import ElementDecoder
from openmaia.harness.formal import FormalToolMissing, prove
from openmaia.numerics.formats import Format
from openmaia.tile.secded import SecdedCode, SecdedDecoder, SecdedEncoder

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


# --- SECDED ---------------------------------------------------------------------------------

class SecdedProof(wiring.Component):
    """The SECDED promise for every ``data`` word of ``data_width`` bits (a free input).

    The encoder's codeword goes to one decoder unflipped (``OK``, data unchanged), to one decoder
    per single flip position (``CORRECTED``, data restored) and, with ``doubles``, to one decoder
    per pair of distinct positions (``UNCORRECTABLE``). Positions are constants, one decoder each,
    which the solver handles far better than a free flip index (a free-index version of the
    16-bit proof took 6 minutes). 16 data bits in this form did not finish in 10 minutes (z3 and
    XOR-heavy miters), so only 8 bits are in the table.
    """

    def __init__(self, *, data_width: int, doubles: bool = True, faults=()):
        self.spec = SecdedCode(data_width)
        self.doubles = doubles
        self.faults = frozenset(faults)
        super().__init__({"data": In(data_width)})

    def elaborate(self, platform):
        m = Module()
        n, k = self.spec.code_width, self.spec.data_width
        m.submodules.enc = enc = SecdedEncoder(data_width=k)
        code = Signal(n)
        m.d.comb += [enc.data.eq(self.data), code.eq(enc.code)]
        cases = [()] + [(i,) for i in range(n)]
        if self.doubles:
            cases += list(itertools.combinations(range(n), 2))
        for flips in cases:
            dec = SecdedDecoder(data_width=k, faults=self.faults)
            m.submodules["dec_" + "_".join(map(str, flips)) if flips else "dec"] = dec
            m.d.comb += dec.code.eq(code ^ Const(sum(1 << p for p in flips), n))
            if len(flips) < 2:
                status = EccStatus.CORRECTED if flips else EccStatus.OK
                m.d.comb += [Assert(dec.status == status), Assert(dec.data == self.data)]
            else:
                m.d.comb += Assert(dec.status == EccStatus.UNCORRECTABLE)
        return m


# --- dot engine: a beat's exact sum -----------------------------------------------------------

def reference_units(m: Module, code, fmt: Format, *, name: str, hidden_subnormal=False):
    """``(sign, magnitude, nan)`` of a float element ``code``, the magnitude in units of
    ``2 ** lsb_exp``, written from docs/numerics.md alone: ``S.E.M`` is ``2^(E - bias) * (1 +
    M / 2^m)`` for ``E > 0`` and ``2^(1 - bias) * M / 2^m`` for ``E = 0``. ``hidden_subnormal``
    is the deliberately wrong reference of a broken twin."""
    spec = fmt.spec
    code = code[:spec.bits]
    man, e = code[:spec.mbits], code[spec.mbits:spec.mbits + spec.ebits]
    sign = code[spec.bits - 1]
    normal_shift = -spec.bias - spec.mbits - spec.lsb_exp   # value = (2^m + M) << (E + this)
    sub_shift = 1 - spec.bias - spec.mbits - spec.lsb_exp    # value = M << this
    assert normal_shift + 1 >= 0 and sub_shift >= 0
    width = spec.mbits + 1 + (1 << spec.ebits) + normal_shift
    mag = Signal(width, name=f"{name}_mag")
    sub = Cat(man, Const(1 if hidden_subnormal else 0, 1)) << sub_shift
    m.d.comb += mag.eq(Mux(e == 0, sub, (Cat(man, Const(1, 1)) << e) << (normal_shift)
                           if normal_shift >= 0 else
                           (Cat(man, Const(1, 1)) << e) >> -normal_shift))
    nan = Const(0, 1)
    if spec.has_nan and fmt is Format.E4M3:
        nan = code[:spec.bits - 1] == (1 << (spec.bits - 1)) - 1   # S.1111.111
    return sign, mag, nan


class LaneSumProof(wiring.Component):
    """One beat of the MX dot engine's stage 0 and 1 (:func:`lane_product`, :func:`aligned_term`,
    :func:`sum_terms`, the carry the engine adds last) equals the reference sum of products.

    ``a``, ``b``: free ``lanes`` 8-bit codes each; the format pair is ``fmt`` x ``fmt``, the
    build has only ``fmt`` (and the FP4 double-rate path when ``double_rate``: each byte then holds
    two E2M1 elements, low nibble first, and the beat has ``2 * lanes`` products). The engine's
    sum (``widths.sum`` bits) must equal the exact reference in units of ``2 ** (2 * lsb_exp)``
    whenever no operand is NaN, and the NaN flag must be set exactly when one is.
    """

    def __init__(self, *, fmt: Format, lanes: int, double_rate: bool = False, faults=(),
                 wrong_reference: bool = False):
        self.fmt, self.lanes, self.double_rate = fmt, lanes, double_rate
        self.faults, self.wrong_reference = frozenset(faults), wrong_reference
        super().__init__({"a": In(8 * lanes), "b": In(8 * lanes)})

    def elaborate(self, platform):
        m = Module()
        fmt, lanes = self.fmt, self.lanes
        formats = frozenset({fmt})
        widths = lane_widths(formats, self.double_rate)
        sel = Const(fmt.spec.hw_code, 3)
        fp4 = Const(1 if self.double_rate else 0, 1)
        lo_terms, hi_terms, nans = [], [], []
        for j in range(lanes):
            a, b = self.a[8 * j:8 * j + 8], self.b[8 * j:8 * j + 8]
            lo, hi, flags = lane_product(m, a, b, sel, sel, fp4, formats=formats, widths=widths,
                                         swap_a="fp4_nibble_swap" in self.faults,
                                         stuck=j == 0 and "lane_stuck_zero" in self.faults,
                                         name=f"lane{j}")
            lo_terms.append(aligned_term(m, lo, widths.stages, name=f"term{j}"))
            if hi is not None:
                hi_terms.append(aligned_term(m, hi, widths.hi_stages, name=f"hi_term{j}"))
            nans.append(flags.nan)
        carries = [neg for _, neg in lo_terms + hi_terms]
        total, carries = sum_terms([t for t, _ in lo_terms], carries, widths.sum)
        if hi_terms:
            high_sum, carries = sum_terms([t for t, _ in hi_terms], carries, widths.sum)
            total = add_carry(total, high_sum, carries.pop())
        beat = Signal(signed(widths.sum))
        m.d.comb += beat.eq(add_carry(Const(0, signed(widths.sum)), total, carries.pop()))
        assert not carries

        elements = []
        for j in range(lanes):
            a, b = self.a[8 * j:8 * j + 8], self.b[8 * j:8 * j + 8]
            elements.append((a, b))
            if self.double_rate:
                elements.append((a[4:8], b[4:8]))
        products, any_nan = [], []
        for k, (a, b) in enumerate(elements):
            sa, va, na = reference_units(m, a, fmt, name=f"ref_a{k}",
                                         hidden_subnormal=self.wrong_reference)
            sb, vb, nb = reference_units(m, b, fmt, name=f"ref_b{k}")
            mag = Signal(len(va) + len(vb), name=f"ref_p{k}")
            m.d.comb += mag.eq(va * vb)
            products.append(Mux(sa ^ sb, -mag, mag))
            any_nan += [na, nb]
        ref = Signal(signed(widths.sum + 8))
        m.d.comb += ref.eq(sum(products))
        nan = Cat(*any_nan).any()
        m.d.comb += [Assert(Cat(*nans).any() == nan), Assert(nan | (beat == ref))]
        return m


# --- stream handshakes -----------------------------------------------------------------------

class DroppingStage(wiring.Component):
    """A deliberately wrong one-register stream stage (broken twin of the handshake proof): it
    takes a new payload every cycle whatever ``o.ready`` says, so it drops a stalled transfer."""

    def __init__(self, *, width: int = 4):
        super().__init__({"i": In(stream.Signature(width)),
                          "o": wiring.Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(1)
        m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        return m


class StreamProof(wiring.Component):
    """``lib.stream`` rules on the ``i`` -> ``o`` streams of the component ``build()`` makes.

    Assumed of the producer (free ``i_valid``, ``i_payload``) and the consumer (free
    ``o_ready``): the producer holds ``i.valid`` and its payload until ``i.ready``; reset stays
    low. Asserted of the block: once ``o.valid`` is high and ``o.ready`` low, the next cycle
    ``o.valid`` is still high and ``o.payload`` unchanged; and, for a block holding at most
    ``capacity`` transfers, transfers in minus transfers out is the number of valid outputs it
    holds (``o.valid`` for a one-register stage, ``one_register``): nothing dropped, nothing
    duplicated.
    """

    def __init__(self, *, build, name: str, one_register: bool = True):
        self.dut = build()
        self.dut_name = name
        self.one_register = one_register
        i_width = len(Value.cast(self.dut.i.payload))
        super().__init__({"i_valid": In(1), "i_payload": In(i_width), "o_ready": In(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        o_payload = Value.cast(dut.o.payload)
        m.d.comb += [dut.i.valid.eq(self.i_valid), dut.i.payload.eq(self.i_payload),
                     dut.o.ready.eq(self.o_ready), Assume(~ResetSignal())]
        started = Signal()
        prev_i_valid, prev_i_ready = Signal(), Signal()
        prev_i_payload = Signal(len(self.i_payload))
        prev_o_valid, prev_o_ready = Signal(), Signal()
        prev_o_payload = Signal(len(o_payload))
        m.d.sync += [started.eq(1), prev_i_valid.eq(dut.i.valid), prev_i_ready.eq(dut.i.ready),
                     prev_i_payload.eq(self.i_payload), prev_o_valid.eq(dut.o.valid),
                     prev_o_ready.eq(dut.o.ready), prev_o_payload.eq(o_payload)]
        with m.If(started & prev_i_valid & ~prev_i_ready):
            m.d.comb += [Assume(self.i_valid), Assume(self.i_payload == prev_i_payload)]
        with m.If(started & prev_o_valid & ~prev_o_ready):
            m.d.comb += [Assert(dut.o.valid), Assert(o_payload == prev_o_payload)]
        if self.one_register:
            held = Signal(range(4))
            taken_in = dut.i.valid & dut.i.ready
            taken_out = dut.o.valid & dut.o.ready
            m.d.sync += held.eq(held + taken_in - taken_out)
            m.d.comb += Assert(held == dut.o.valid)
        return m


class ReadyDependentStage(wiring.Component):
    """A deliberately wrong stream stage (broken twin of the miter): its ``o.valid`` is gated by
    ``o.ready``, a combinational path from ready to valid that the stream rules forbid."""

    def __init__(self, *, width: int = 4):
        super().__init__({"i": In(stream.Signature(width)),
                          "o": wiring.Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        full = Signal()
        m.d.comb += [self.i.ready.eq(~full | self.o.ready), self.o.valid.eq(full & self.o.ready)]
        with m.If(self.i.ready):
            m.d.sync += [full.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        return m


class ReadyMiter(wiring.Component):
    """Two-copy miter: ``o.valid`` never depends combinationally on ``o.ready``.

    Both copies of the block see the same input stream; their ``o.ready`` inputs are free and
    separate. While every earlier cycle gave both the same ``o.ready`` (so both copies are in the
    same state), their ``o.valid`` must agree in the current cycle, whatever the two current
    ``o.ready`` values are. Bounded (the state equality is not inductive without naming the
    block's registers).
    """

    def __init__(self, *, build):
        self.a, self.b = build(), build()
        i_width = len(Value.cast(self.a.i.payload))
        super().__init__({"i_valid": In(1), "i_payload": In(i_width), "ready_a": In(1),
                          "ready_b": In(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.a, m.submodules.b = self.a, self.b
        for dut, ready in ((self.a, self.ready_a), (self.b, self.ready_b)):
            m.d.comb += [dut.i.valid.eq(self.i_valid), dut.i.payload.eq(self.i_payload),
                         dut.o.ready.eq(ready)]
        same_so_far = Signal(init=1)
        m.d.sync += same_so_far.eq(same_so_far & (self.ready_a == self.ready_b))
        m.d.comb += Assume(~ResetSignal())
        with m.If(same_so_far):
            m.d.comb += Assert(self.a.o.valid == self.b.o.valid)
        return m


# --- the proof table ------------------------------------------------------------------------

@dataclass(frozen=True)
class Proof:
    """One proof run: ``build()`` makes the design; ``expect``: it must pass (or fail);
    ``quick``: also in the default tier; ``timeout``: SymbiYosys's limit in seconds;
    ``solver``: the SMT solver smtbmc drives; ``script``: Yosys commands after ``prep``
    (:func:`prove`)."""
    name: str
    build: Callable[[], wiring.Component]
    mode: str
    depth: int
    expect: bool
    quick: bool
    config: str
    timeout: int = 600
    solver: str = "z3"
    script: tuple[str, ...] = ()


PROOFS = [
    Proof("secded8", lambda: SecdedProof(data_width=8), "bmc", 1, True, True,
          "8 data bits: no flip, all 13 single flips, all 78 double flips"),
    Proof("secded8_no_correct", lambda: SecdedProof(data_width=8, doubles=False,
                                                    faults={"no_correct"}),
          "bmc", 1, False, True, "broken twin: decoder fault no_correct"),
    Proof("secded8_no_double_detect", lambda: SecdedProof(data_width=8,
                                                          faults={"no_double_detect"}),
          "bmc", 1, False, True, "broken twin: decoder fault no_double_detect"),
    Proof("dot_e2m1_lane", lambda: LaneSumProof(fmt=Format.E2M1, lanes=1), "bmc", 1, True, True,
          "E2M1 x E2M1, 1 lane, single rate: lane_product + aligned_term + sum_terms + carry"),
    Proof("dot_e2m1_fp4_lane", lambda: LaneSumProof(fmt=Format.E2M1, lanes=1, double_rate=True),
          "bmc", 1, True, True, "E2M1 x E2M1 double rate, 1 lane (2 products, both nibbles)"),
    Proof("dot_e2m1_fp4_2lanes", lambda: LaneSumProof(fmt=Format.E2M1, lanes=2,
                                                      double_rate=True),
          "bmc", 1, True, False, "E2M1 x E2M1 double rate, 2 lanes (4 products)", timeout=1800),
    Proof("dot_e4m3_lane", lambda: LaneSumProof(fmt=Format.E4M3, lanes=1), "bmc", 1, True, False,
          "E4M3 x E4M3, 1 lane, NaN codes included (flag checked, sum don't-care)"),
    Proof("dot_e2m1_wrong_reference", lambda: LaneSumProof(fmt=Format.E2M1, lanes=1,
                                                           wrong_reference=True),
          "bmc", 1, False, True, "broken twin: reference gives subnormals a hidden bit"),
    Proof("dot_e2m1_fp4_nibble_swap", lambda: LaneSumProof(fmt=Format.E2M1, lanes=1,
                                                           double_rate=True,
                                                           faults={"fp4_nibble_swap"}),
          "bmc", 1, False, True, "broken twin: engine fault fp4_nibble_swap"),
    Proof("dot_e4m3_lane_stuck_zero", lambda: LaneSumProof(fmt=Format.E4M3, lanes=1,
                                                           faults={"lane_stuck_zero"}),
          "bmc", 1, False, True, "broken twin: engine fault lane_stuck_zero"),
    Proof("stream_element_decoder",
          lambda: StreamProof(build=lambda: ElementDecoder(formats={"e2m1"}, lanes=1),
                              name="element_decoder"),
          "prove", 3, True, True, "ElementDecoder, E2M1 only, 1 lane: k-induction"),
    Proof("stream_dot_engine",
          lambda: StreamProof(build=lambda: MxDotEngine(formats={"e2m1"}, lanes=1, slots=1,
                                                        fp4_double_rate=False),
                              name="dot_engine", one_register=False),
          "prove", 3, True, True, "MxDotEngine, E2M1 only, 1 lane, 1 slot, single rate: "
          "output valid/payload held under backpressure, k-induction"),
    Proof("stream_dropping_stage",
          lambda: StreamProof(build=DroppingStage, name="dropping_stage"),
          "prove", 3, False, True, "broken twin: a stage that ignores o.ready"),
    Proof("miter_element_decoder",
          lambda: ReadyMiter(build=lambda: ElementDecoder(formats={"e2m1"}, lanes=1)),
          "bmc", 6, True, True, "ElementDecoder, E2M1 only, 1 lane: valid/ready miter, 6 cycles"),
    Proof("miter_ready_dependent_stage", lambda: ReadyMiter(build=ReadyDependentStage),
          "bmc", 6, False, True, "broken twin: a stage whose o.valid is gated by o.ready"),
]


def _run(proof: Proof):
    try:
        result = prove(proof.build(), name=proof.name, mode=proof.mode, depth=proof.depth,
                       timeout=proof.timeout, solver=proof.solver, script=proof.script)
    except FormalToolMissing as error:
        pytest.skip(str(error))
    assert result.status in ("PASS", "FAIL"), result
    if proof.expect:
        assert result.passed, f"{proof.config}: {result}"
    else:
        assert not result.passed and result.failed_assertions, \
            f"broken twin passed ({proof.config}): {result}"


@pytest.mark.formal
@pytest.mark.parametrize("proof", PROOFS, ids=[p.name for p in PROOFS])
def test_formal(proof):
    _run(proof)


QUICK = [p for p in PROOFS if p.quick]


@pytest.mark.parametrize("proof", QUICK, ids=[p.name for p in QUICK])
def test_formal_quick(proof):
    _run(proof)


def test_prove_checks_its_arguments():
    design = DroppingStage()
    with pytest.raises(ValueError, match="mode"):
        prove(design, name="x", mode="induct", depth=1)
    with pytest.raises(ValueError, match="depth"):
        prove(design, name="x", depth=0)
    with pytest.raises(ValueError, match="name"):
        prove(design, name="not an identifier", depth=1)
    with pytest.raises(ValueError, match="solver"):
        prove(design, name="x", depth=1, solver="cvc")
    with pytest.raises(TypeError, match="ports="):
        prove(Module(), name="x", depth=1)
