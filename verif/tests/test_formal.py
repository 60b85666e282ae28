"""Formal proofs (SymbiYosys through :func:`openmaia.harness.formal.prove`).

Every proof is a :class:`Proof` in :data:`PROOFS`: a wrapper component holding the property, the
mode and depth, and whether it must pass. Each property has a broken twin (a ``faults=`` variant
of the block, or a deliberately wrong component) that must fail, so a vacuous proof cannot pass.

Tiers: ``test_formal`` is marked ``formal`` and runs every proof (``pytest -m formal``);
``test_formal_quick`` is unmarked and runs the quick ones (under ~20 s each) in the default tier,
so ``-m formal`` never runs a proof twice and the default tier still proves the quick ones.
"""

import itertools
from dataclasses import dataclass
from typing import Callable

import pytest
from amaranth.hdl import Assert, Assume, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from openmaia.bus.memory_port import EccStatus
from openmaia.harness.formal import FormalToolMissing, prove
from openmaia.tile.secded import SecdedCode, SecdedDecoder, SecdedEncoder

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


# --- SECDED ---------------------------------------------------------------------------------

class SecdedProof(wiring.Component):
    """The SECDED promise for every ``data`` word of ``data_width`` bits (a free input).

    The encoder's codeword goes to one decoder unflipped (``OK``, data unchanged), to one decoder
    per single flip position (``CORRECTED``, data restored) and, with ``doubles``, to one decoder
    per pair of distinct positions (``UNCORRECTABLE``). Positions are constants, one decoder each,
    which the solver handles far better than a free flip index (a free-index version of the
    16-bit proof took 6 minutes).
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


# --- the proof table ------------------------------------------------------------------------

@dataclass(frozen=True)
class Proof:
    """One proof run: ``build()`` makes the design; ``expect``: it must pass (or fail)."""
    name: str
    build: Callable[[], wiring.Component]
    mode: str
    depth: int
    expect: bool
    quick: bool
    config: str


PROOFS = [
    Proof("secded8", lambda: SecdedProof(data_width=8), "bmc", 1, True, True,
          "8 data bits: no flip, all 13 single flips, all 78 double flips"),
    Proof("secded8_no_correct", lambda: SecdedProof(data_width=8, doubles=False,
                                                    faults={"no_correct"}),
          "bmc", 1, False, True, "broken twin: decoder fault no_correct"),
    Proof("secded8_no_double_detect", lambda: SecdedProof(data_width=8,
                                                          faults={"no_double_detect"}),
          "bmc", 1, False, True, "broken twin: decoder fault no_double_detect"),
    Proof("secded16", lambda: SecdedProof(data_width=16), "bmc", 1, True, False,
          "16 data bits: no flip, all 22 single flips, all 231 double flips"),
]


def _run(proof: Proof):
    try:
        result = prove(proof.build(), name=proof.name, mode=proof.mode, depth=proof.depth)
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
