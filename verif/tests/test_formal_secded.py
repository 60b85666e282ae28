"""Formal proofs of the tile SRAM's SECDED code (issue 8) at the widths the presets use.

The promise (rtl/tile/secded.py): for every data word ``d`` of ``k`` bits, the codeword the real
:class:`~openmaia.tile.secded.SecdedEncoder` makes decodes, in the real
:class:`~openmaia.tile.secded.SecdedDecoder`, to ``(d, OK)``; with any one of its ``n`` bits
flipped to ``(d, CORRECTED)``; with any two distinct bits flipped to status ``UNCORRECTABLE``.
Every proof is combinational (``bmc`` depth 1 covers every input value) with all inputs free:
``d`` and the flip indices ``i``, ``j`` (assumed ``< n`` and ``i != j``), so a pass covers all
``2 ** k`` words and all flips, not samples. Solver: yices.

16 and 32 bits are proved in one piece (:class:`SecdedFlipProof`, one run per case). From 64
bits on, one piece does not finish (64 bits: single flips 40 s, double flips over 120 s; 128
bits: even the no-flip case over 200 s): one assertion over many wide XOR identities at once is
hard for the solver, while one XOR identity at a time takes seconds. So 64, 128 and 256 bits are
proved in pieces, on the same real encoder / decoder, each piece for every input. With ``S(x)``
the syndrome the decoder outputs for a stored word ``x``, ``P(x)`` the XOR of ``x``'s bits,
``E`` the encoder and ``u_i = 1 << i``:

* L1 (:class:`CodewordLemma`, one run per syndrome bit and one for parity): for every ``d``,
  ``S(E(d)) = 0`` and ``P(E(d)) = 0``;
* L2 (:class:`LinearityLemma`, one run per syndrome bit and one for parity): for every ``x``,
  ``y``, ``S(x ^ y) = S(x) ^ S(y)`` and ``P(x ^ y) = P(x) ^ P(y)``;
* L3 (:class:`ColumnLemma`): for every ``i < n``, ``S(u_i)`` is ``i``'s Hamming column
  (:func:`hamming_columns`, from the documented layout) and ``P(u_i) = 1``;
* D (:class:`DecoderOkLemma`): for every ``x`` with ``S(x) = 0`` and ``P(x) = 0``, the decoder
  answers ``(x``'s data bits``, OK)``;
* the contract (:class:`ContractProof`, one run per case): assumes those facts at the points it
  needs (L1 at ``d``, L2 at ``(E(d), mask)`` and ``(u_i, u_j)``, L3 at ``i`` and ``j``, D at
  ``E(d)``) and asserts the promise for every ``d``, ``i``, ``j``. Each assumed fact holds for
  every input (its lemma is proved for all inputs), so the assumptions exclude no input and the
  pass is a proof of the promise.

Broken twins (must fail with a counterexample): the decoder faults ``no_correct`` and
``no_double_detect`` in the contract runs at 128 bits (default tier) and 256 bits, and in the
32-bit one-piece proof. The proof table, tiers and the runner are those of verif/tests/test_formal.py.
"""

import pytest
from amaranth.hdl import Array, Assert, Assume, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In
from openmaia.bus.memory_port import EccStatus
from openmaia.tile.secded import SecdedCode, SecdedDecoder, SecdedEncoder
from test_formal import Proof, _run

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


class SecdedFlipProof(wiring.Component):
    """Encoder -> decoder of ``data_width`` bits with free data and free flip positions.

    ``checks`` selects the assertions: ``"none"`` (no flip), ``"single"`` (bit ``i`` flipped),
    ``"double"`` (bits ``i`` and ``j`` flipped); ``faults`` go to every decoder.
    """

    CHECKS = ("none", "single", "double")

    def __init__(self, *, data_width: int, checks=CHECKS, faults=()):
        self.spec = SecdedCode(data_width)
        checks = tuple(checks)
        for check in checks:
            if check not in self.CHECKS:
                raise ValueError(f"unknown check {check!r}; expected one of "
                                 f"{', '.join(self.CHECKS)}")
        self.checks = checks
        self.faults = frozenset(faults)
        index_bits = (self.spec.code_width - 1).bit_length()
        super().__init__({"data": In(data_width), "i": In(index_bits), "j": In(index_bits)})

    def elaborate(self, platform):
        m = Module()
        n, k = self.spec.code_width, self.spec.data_width
        m.submodules.enc = enc = SecdedEncoder(data_width=k)
        code = Signal(n)
        flip_i, flip_j = Signal(n), Signal(n)
        m.d.comb += [enc.data.eq(self.data), code.eq(enc.code),
                     flip_i.eq(Const(1, n) << self.i), flip_j.eq(Const(1, n) << self.j),
                     Assume(self.i < n), Assume(self.j < n), Assume(self.i != self.j)]
        masks = {"none": 0, "single": flip_i, "double": flip_i | flip_j}
        for check in self.checks:
            m.submodules[f"dec_{check}"] = dec = SecdedDecoder(data_width=k, faults=self.faults)
            m.d.comb += dec.code.eq(code ^ masks[check])
            if check == "none":
                m.d.comb += [Assert(dec.status == EccStatus.OK), Assert(dec.data == self.data)]
            elif check == "single":
                m.d.comb += [Assert(dec.status == EccStatus.CORRECTED),
                             Assert(dec.data == self.data)]
            else:
                m.d.comb += Assert(dec.status == EccStatus.UNCORRECTABLE)
        return m


def hamming_columns(data_width: int) -> tuple[int, ...]:
    """The syndrome a flip of each codeword bit gives, from the layout in rtl/tile/secded.py's
    docstring: data bit ``j`` -> its Hamming position (the ``j``-th positive integer that is not
    a power of two), check bit ``b`` -> ``2 ** b``, the overall parity bit -> 0."""
    r = 2
    while (1 << r) < data_width + r + 1:
        r += 1
    positions = [p for p in range(3, 1 << r) if p & (p - 1)][:data_width]
    return (*positions, *(1 << b for b in range(r)), 0)


def _index_bits(spec: SecdedCode) -> int:
    return (spec.code_width - 1).bit_length()


class CodewordLemma(wiring.Component):
    """(L1) For every ``data``: the encoder's codeword has syndrome 0 (as the decoder computes
    it) and even parity. ``part``: a syndrome bit ``b`` (int) or ``"parity"``."""

    def __init__(self, *, data_width: int, part):
        self.spec = SecdedCode(data_width)
        if part != "parity" and part not in range(self.spec.check_bits):
            raise ValueError(f"unknown part {part!r}")
        self.part = part
        super().__init__({"data": In(data_width)})

    def elaborate(self, platform):
        m = Module()
        k = self.spec.data_width
        m.submodules.enc = enc = SecdedEncoder(data_width=k)
        m.submodules.dec = dec = SecdedDecoder(data_width=k)
        m.d.comb += [enc.data.eq(self.data), dec.code.eq(enc.code)]
        if self.part == "parity":
            m.d.comb += Assert(enc.code.xor() == 0)
        else:
            m.d.comb += Assert(dec.syndrome[self.part] == 0)
        return m


class LinearityLemma(wiring.Component):
    """(L2) For every pair of stored words ``x``, ``y``: the decoder's syndrome of ``x ^ y`` is
    the XOR of the syndromes of ``x`` and ``y``, and the parity (XOR of all bits) of ``x ^ y``
    is the XOR of their parities."""

    def __init__(self, *, data_width: int, part):
        self.spec = SecdedCode(data_width)
        if part != "parity" and part not in range(self.spec.check_bits):
            raise ValueError(f"unknown part {part!r}")
        self.part = part
        n = self.spec.code_width
        super().__init__({"x": In(n), "y": In(n)})

    def elaborate(self, platform):
        m = Module()
        k, n = self.spec.data_width, self.spec.code_width
        both = Signal(n)
        m.d.comb += both.eq(self.x ^ self.y)
        syndromes = []
        for name, word in (("x", self.x), ("y", self.y), ("xy", both)):
            m.submodules[f"dec_{name}"] = dec = SecdedDecoder(data_width=k)
            m.d.comb += dec.code.eq(word)
            syndromes.append(dec.syndrome)
        sx, sy, sxy = syndromes
        if self.part == "parity":
            m.d.comb += Assert(both.xor() == (self.x.xor() ^ self.y.xor()))
        else:
            b = self.part
            m.d.comb += Assert(sxy[b] == (sx[b] ^ sy[b]))
        return m


class ColumnLemma(wiring.Component):
    """(L3) For every position ``i < code_width``: the decoder's syndrome of the word with only
    bit ``i`` set is :func:`hamming_columns` ``[i]``, and that word's parity is 1."""

    def __init__(self, *, data_width: int):
        self.spec = SecdedCode(data_width)
        super().__init__({"i": In(_index_bits(self.spec))})

    def elaborate(self, platform):
        m = Module()
        k, n, r = self.spec.data_width, self.spec.code_width, self.spec.check_bits
        columns = Array(Const(c, r) for c in hamming_columns(k))
        unit = Signal(n)
        m.submodules.dec = dec = SecdedDecoder(data_width=k)
        m.d.comb += [Assume(self.i < n), unit.eq(Const(1, n) << self.i), dec.code.eq(unit),
                     Assert(dec.syndrome == columns[self.i]), Assert(unit.xor() == 1)]
        return m


class DecoderOkLemma(wiring.Component):
    """(D) For every stored word ``x`` (free) whose syndrome (as the decoder computes it) is 0
    and whose parity is even, the decoder answers ``OK`` with ``x``'s data bits unchanged."""

    def __init__(self, *, data_width: int):
        self.spec = SecdedCode(data_width)
        super().__init__({"x": In(self.spec.code_width)})

    def elaborate(self, platform):
        m = Module()
        k = self.spec.data_width
        m.submodules.dec = dec = SecdedDecoder(data_width=k)
        m.d.comb += dec.code.eq(self.x)
        with m.If((dec.syndrome == 0) & (self.x.xor() == 0)):
            m.d.comb += [Assert(dec.status == EccStatus.OK), Assert(dec.data == self.x[:k])]
        return m


class ContractProof(wiring.Component):
    """The SECDED contract for every ``data`` word and flip position(s), from the lemmas.

    Free ``data``, ``i``, ``j`` (assumed ``< code_width``, ``i != j``). The decoder under test
    (with ``faults``) reads ``stored = enc(data) ^ mask``, ``mask`` being 0 (``case="none"``),
    ``1 << i`` (``"single"``) or ``1 << i ^ 1 << j`` (``"double"``). Helper decoders read
    ``enc(data)``, ``1 << i`` and ``1 << j``. Assumed: instances of the lemmas, each proved for
    every input by its own run (:class:`CodewordLemma` for ``data``, :class:`LinearityLemma` for
    ``(enc(data), mask)`` and ``(1 << i, 1 << j)``, :class:`ColumnLemma` for ``i`` and ``j``,
    :class:`DecoderOkLemma` for ``enc(data)`` when nothing is flipped).
    Asserted: ``none`` -> ``(data, OK)``; ``single`` -> ``(data, CORRECTED)``; ``double`` ->
    status ``UNCORRECTABLE``.
    """

    def __init__(self, *, data_width: int, case: str, faults=()):
        if case not in SecdedFlipProof.CHECKS:
            raise ValueError(f"unknown case {case!r}")
        self.spec = SecdedCode(data_width)
        self.case, self.faults = case, frozenset(faults)
        bits = _index_bits(self.spec)
        super().__init__({"data": In(data_width), "i": In(bits), "j": In(bits)})

    def elaborate(self, platform):
        m = Module()
        k, n, r = self.spec.data_width, self.spec.code_width, self.spec.check_bits
        columns = Array(Const(c, r) for c in hamming_columns(k))
        m.submodules.enc = enc = SecdedEncoder(data_width=k)
        code, unit_i, unit_j = Signal(n), Signal(n), Signal(n)
        m.d.comb += [Assume(self.i < n), Assume(self.j < n), Assume(self.i != self.j),
                     enc.data.eq(self.data), code.eq(enc.code),
                     unit_i.eq(Const(1, n) << self.i), unit_j.eq(Const(1, n) << self.j)]

        def decoder(name, word, faults=frozenset()):
            m.submodules[name] = dec = SecdedDecoder(data_width=k, faults=faults)
            m.d.comb += dec.code.eq(word)
            return dec.syndrome

        # L1 for data (the decoder under test reads enc(data) itself when nothing is flipped).
        s_code = decoder("dec" if self.case == "none" else "dec_code", code, self.faults)
        m.d.comb += [Assume(s_code == 0), Assume(code.xor() == 0)]
        if self.case == "none":
            dec = m.submodules.dec
            # D for enc(data).
            with m.If((s_code == 0) & (code.xor() == 0)):
                m.d.comb += [Assume(dec.status == EccStatus.OK), Assume(dec.data == code[:k])]
        else:
            # L3 for i (and j).
            s_i = decoder("dec_i", unit_i)
            m.d.comb += [Assume(s_i == columns[self.i]), Assume(unit_i.xor() == 1)]
            if self.case == "single":
                mask, s_mask = unit_i, s_i
            else:
                s_j = decoder("dec_j", unit_j)
                mask = Signal(n)
                m.d.comb += [Assume(s_j == columns[self.j]), Assume(unit_j.xor() == 1),
                             mask.eq(unit_i ^ unit_j)]
                # L2 for (1 << i, 1 << j).
                s_mask = decoder("dec_mask", mask)
                m.d.comb += [Assume(s_mask == (s_i ^ s_j)),
                             Assume(mask.xor() == (unit_i.xor() ^ unit_j.xor()))]
            stored = Signal(n)
            m.d.comb += stored.eq(code ^ mask)
            m.submodules.dec = dec = SecdedDecoder(data_width=k, faults=self.faults)
            # L2 for (enc(data), mask).
            m.d.comb += [dec.code.eq(stored), Assume(dec.syndrome == (s_code ^ s_mask)),
                         Assume(stored.xor() == (code.xor() ^ mask.xor()))]
        if self.case == "double":
            m.d.comb += Assert(dec.status == EccStatus.UNCORRECTABLE)
        else:
            status = EccStatus.OK if self.case == "none" else EccStatus.CORRECTED
            m.d.comb += [Assert(dec.status == status), Assert(dec.data == self.data)]
        return m


# --- the proof table ------------------------------------------------------------------------

#: Widths proved in one piece (:class:`SecdedFlipProof`, one run per case) and by the split proof.
DIRECT_WIDTHS = (16, 32)
#: 128 bits: the ``small`` and ``ulx3s`` TSRAM words; 256 bits: ``default``'s (``ice40`` has no
#: ECC); 64 for the steps in between.
SPLIT_WIDTHS = (64, 128, 256)


def _yices(name, build, expect, quick, config, timeout=600):
    return Proof(name, build, "bmc", 1, expect, quick, config, timeout=timeout, solver="yices")


def _direct(k: int, quick: bool):
    n = SecdedCode(k).code_width
    text = {"none": "no flip -> (data, OK)",
            "single": f"bit i flipped, every i < {n} -> (data, CORRECTED)",
            "double": f"bits i != j flipped, every pair < {n} -> UNCORRECTABLE"}
    return [_yices(f"secded{k}_{case}",
                   lambda case=case: SecdedFlipProof(data_width=k, checks=(case,)), True, quick,
                   f"{k} data bits ({n}-bit code), every data word, free flip index: "
                   + text[case])
            for case in SecdedFlipProof.CHECKS]


def _split(k: int):
    spec = SecdedCode(k)
    r, n = spec.check_bits, spec.code_width
    where = f"{k} data bits ({n}-bit code)"
    parts = [*range(r), "parity"]
    proofs = []
    for part in parts:
        tag = f"s{part}" if part != "parity" else "parity"
        proofs.append(_yices(f"secded{k}_l1_{tag}",
                             lambda part=part: CodewordLemma(data_width=k, part=part), True,
                             False, f"{where}, L1 {tag}: every data word's codeword has "
                             f"{'syndrome bit ' + str(part) if tag != 'parity' else 'parity'} 0"))
        proofs.append(_yices(f"secded{k}_l2_{tag}",
                             lambda part=part: LinearityLemma(data_width=k, part=part), True,
                             False, f"{where}, L2 {tag}: every stored x, y: "
                             f"{'syndrome bit ' + str(part) if tag != 'parity' else 'parity'} "
                             f"of x ^ y is the XOR of those of x and y"))
    proofs += [
        _yices(f"secded{k}_l3", lambda: ColumnLemma(data_width=k), True, False,
               f"{where}, L3: every single-bit word 1 << i, i < {n}: syndrome = Hamming column "
               f"of i, parity 1"),
        _yices(f"secded{k}_d", lambda: DecoderOkLemma(data_width=k), True, False,
               f"{where}, D: every stored word with syndrome 0 and even parity -> "
               f"(its data, OK)"),
    ]
    for case in SecdedFlipProof.CHECKS:
        proofs.append(_yices(f"secded{k}_{case}",
                             lambda case=case: ContractProof(data_width=k, case=case), True,
                             False, f"{where}, contract '{case}' for every data word and flip "
                             f"index (from L1, L2, L3, D)"))
    return proofs


PROOFS = [
    *_direct(16, quick=True),
    *_direct(32, quick=False),
    *(proof for k in SPLIT_WIDTHS for proof in _split(k)),
    *(_yices(f"secded{k}_no_correct",
             lambda k=k: ContractProof(data_width=k, case="single", faults={"no_correct"}),
             False, k == 128, f"broken twin: {k} bits, contract 'single' with decoder fault "
             f"no_correct") for k in (128, 256)),
    *(_yices(f"secded{k}_no_double_detect",
             lambda k=k: ContractProof(data_width=k, case="double",
                                       faults={"no_double_detect"}),
             False, k == 128, f"broken twin: {k} bits, contract 'double' with decoder fault "
             f"no_double_detect") for k in (128, 256)),
    _yices("secded32_no_double_detect",
           lambda: SecdedFlipProof(data_width=32, checks=("double",),
                                   faults={"no_double_detect"}),
           False, False, "broken twin: 32 bits in one piece, decoder fault no_double_detect"),
    _yices("secded32_no_correct",
           lambda: SecdedFlipProof(data_width=32, checks=("single",), faults={"no_correct"}),
           False, False, "broken twin: 32 bits in one piece, decoder fault no_correct"),
]


@pytest.mark.formal
@pytest.mark.parametrize("proof", PROOFS, ids=[p.name for p in PROOFS])
def test_formal_secded(proof):
    _run(proof)


QUICK = [p for p in PROOFS if p.quick]


@pytest.mark.parametrize("proof", QUICK, ids=[p.name for p in QUICK])
def test_formal_secded_quick(proof):
    _run(proof)


def test_hamming_columns_follow_the_documented_layout():
    columns = hamming_columns(8)
    assert columns == (3, 5, 6, 7, 9, 10, 11, 12, 1, 2, 4, 8, 0)
    assert len(hamming_columns(256)) == SecdedCode(256).code_width == 266
