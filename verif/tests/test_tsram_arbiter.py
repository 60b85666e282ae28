"""The tile SRAM's arbiter (rtl/tile/tsram_arbiter.py) is the documented greedy pass, proved.

:class:`BankVectorArbiter` is the pass written the direct way, as docs/tsram.md states it (and as
the TSRAM computed it until 2026-11-28): step by step in priority order, each request tests its
bank mask against the banks the earlier steps took (``taken``), wrote (``wtaken``) and claimed for
the next cycle (``nbusy``), and adds its own. :class:`TsramArbiter` must give the same grant, lose
and defer vectors for *every* input: the proof is combinational (``bmc`` depth 1) with every input
free (requests, any bank masks, busy and claimed banks, the head, also past the last port), for
the port geometry of every preset and a few others (yices: 4-25 s a geometry of up to 8 banks, in
the default tier; 80 s for the 16 banks of ``default``, in the ``formal`` tier). Broken twins of
the reference (the wide-first order dropped; a deferral that ignores same-cycle writes) must fail,
so the proof is not vacuous.
The TSRAM's own tests (test_tsram.py: fairness, wait bound, deferred writes, random traffic) run
on the real arbiter inside the TSRAM.
"""

import pytest
from amaranth.hdl import Assert, Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In
from openmaia.config import PRESETS
from openmaia.tile.tsram import tile_ports
from openmaia.tile.tsram_arbiter import TsramArbiter, arbiter_signature, priority_order
from test_formal import Proof, _run

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

MUTANTS = ("circular_only", "defer_ignores_writes")


class BankVectorArbiter(wiring.Component):
    """The reference: the greedy pass with bank vectors carried from step to step.

    ``mutant``: one of :data:`MUTANTS` (a broken twin) or None.
    """

    def __init__(self, *, widths, banks, mutant=None):
        assert mutant in (None, *MUTANTS)
        self.widths, self.nbanks, self.mutant = tuple(widths), banks, mutant
        super().__init__(arbiter_signature(len(self.widths), banks))

    def elaborate(self, platform):
        m = Module()
        n, banks = len(self.widths), self.nbanks
        mask = [self.banks[p] for p in range(n)]
        per_head = []
        for head in range(n):
            order = priority_order(self.widths, head)
            if self.mutant == "circular_only":
                order = ([order[0]] + [(p, False) for p, _ in order[n:]]
                         + [(p, True) for p, _ in order[n:]])
            taken, wtaken, nbusy = self.pretaken, Const(0, banks), self.claimed
            g_terms, l_terms, d_terms = ([[] for _ in range(n)] for _ in range(3))
            for step, (p, kind) in enumerate(order):
                active = (Const(1) if kind is None
                          else self.deferrable[p] if kind else ~self.deferrable[p])
                want = self.eligible[p] & ~self.out_of_range[p]
                clash = (mask[p] & taken).any()
                normal = ~clash & ~(self.rmw[p] & (mask[p] & nbusy).any())
                busy_next = wtaken | nbusy if self.mutant != "defer_ignores_writes" else nbusy
                dfr = self.deferrable[p] & clash & ~(mask[p] & busy_next).any()
                lost = want & ~normal & ~dfr
                g_terms[p].append(active & self.eligible[p]
                                  & (self.out_of_range[p] | normal | dfr))
                l_terms[p].append(active & lost)
                d_terms[p].append(active & want & dfr)
                use = active & want & (normal | dfr)
                claim = active & want & ((normal & self.rmw[p]) | dfr)
                if step == 0:
                    claim = claim | lost
                nxt = [Signal(banks) for _ in range(3)]
                m.d.comb += [nxt[0].eq(taken | Mux(use, mask[p], 0)),
                             nxt[1].eq(wtaken | Mux(use & ~self.read[p], mask[p], 0)),
                             nxt[2].eq(nbusy | Mux(claim, mask[p], 0))]
                taken, wtaken, nbusy = nxt
            per_head.append([Cat(*(Cat(*t).any() for t in terms))
                             for terms in (g_terms, l_terms, d_terms)])
        with m.Switch(self.head):
            for head in range(n):
                with (m.Case(head) if head < n - 1 else m.Default()):
                    g, l, d = per_head[head]
                    m.d.comb += [self.grant.eq(g), self.lose.eq(l), self.defer.eq(d)]
        return m


class ArbiterEquivalence(wiring.Component):
    """Free arbiter inputs into :class:`TsramArbiter` and :class:`BankVectorArbiter`; asserts
    their outputs are equal."""

    def __init__(self, *, widths, banks, mutant=None):
        self.widths, self.nbanks, self.mutant = tuple(widths), banks, mutant
        sig = arbiter_signature(len(self.widths), banks)
        super().__init__({name: In(member.shape) for name, member in sig.members.items()
                          if member.flow == In})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = TsramArbiter(widths=self.widths, banks=self.nbanks)
        m.submodules.ref = ref = BankVectorArbiter(widths=self.widths, banks=self.nbanks,
                                                   mutant=self.mutant)
        for name, member in dut.signature.members.items():
            if member.flow == In:
                m.d.comb += [getattr(dut, name).eq(getattr(self, name)),
                             getattr(ref, name).eq(getattr(self, name))]
        for name in ("grant", "lose", "defer"):
            m.d.comb += Assert(getattr(dut, name) == getattr(ref, name), name)
        return m


def _geometries():
    """(name, widths, banks): every preset's tile ports, and two test geometries."""
    seen, out = set(), []
    for name, config in PRESETS.items():
        key = (tuple(tile_ports(config).values()), config.tsram_banks)
        if key not in seen:
            seen.add(key)
            out.append((name.replace("-", "_"), *key))
    out += [("mixed8", (1, 2, 2, 1), 8), ("one_port", (2,), 4)]
    return out


GEOMETRIES = _geometries()

PROOFS = [
    *(Proof(f"tsram_arbiter_{name}", lambda w=widths, b=banks: ArbiterEquivalence(
        widths=w, banks=b), "bmc", 1, True, banks <= 8, f"ports {widths}, {banks} banks",
        solver="yices")
      for name, widths, banks in GEOMETRIES),
    *(Proof(f"tsram_arbiter_{mutant}", lambda mutant=mutant: ArbiterEquivalence(
        widths=(1, 2, 2, 1), banks=8, mutant=mutant), "bmc", 1, False, True,
        f"broken twin: {mutant}", solver="yices") for mutant in MUTANTS),
]


@pytest.mark.parametrize("proof", [
    pytest.param(p, marks=() if p.quick else pytest.mark.formal, id=p.name) for p in PROOFS])
def test_arbiter_equals_bank_vector_pass(proof):
    _run(proof)


def test_priority_order():
    # non-deferrable steps: the wide ports first, circular from the head among equal widths;
    # then the deferrable steps in circular order
    assert priority_order((1, 4, 4, 1), 1) == [
        (1, None), (2, False), (3, False), (0, False), (2, True), (3, True), (0, True)]
    assert priority_order((1, 4, 4, 1), 3) == [
        (3, None), (1, False), (2, False), (0, False), (0, True), (1, True), (2, True)]
    assert priority_order((2,), 0) == [(0, None)]


@pytest.mark.parametrize("kwargs", [dict(widths=(), banks=4), dict(widths=(1, 0), banks=4),
                                    dict(widths=(1,), banks=0), dict(widths=(1.5,), banks=2)])
def test_parameter_checks(kwargs):
    with pytest.raises(ValueError):
        TsramArbiter(**kwargs)
