"""SECDED code of the tile SRAM: an extended Hamming code over a ``data_width``-bit word.

One definition, three users: :class:`SecdedCode` (pure Python: the golden side and the tests),
:class:`SecdedEncoder` and :class:`SecdedDecoder` (combinational Amaranth components, small and
separate so that the encoder/decoder pair can be proved formally on its own).

Codeword layout (``code_width = data_width + check_bits + 1`` bits, low to high):

* bits ``[0, data_width)``: the data, unchanged (the code is systematic);
* bits ``[data_width, data_width + check_bits)``: Hamming check bits ``c0 .. c(r-1)``;
* the top bit: the overall parity ``p``, making the XOR of all codeword bits zero.

Hamming positions (1-based): check bit ``ci`` sits at position ``2**i``; data bit ``j`` at the
``j``-th position that is not a power of two (3, 5, 6, 7, 9, ...). ``ci`` is the XOR of the data
bits whose position has bit ``i`` set. ``check_bits`` is the least ``r`` with
``2**r >= data_width + r + 1``, so positions ``1 .. data_width + check_bits`` are all used.

Decoding: the syndrome ``s`` is the stored check bits XOR those recomputed from the stored data;
``e`` is the XOR of every stored bit (0 for a codeword).

========  =========  ============================================================
``e``     ``s``      result
========  =========  ============================================================
0         0          ``OK``
1         0          ``CORRECTED`` (the overall parity bit flipped; data intact)
1         a position ``CORRECTED`` (that data bit flipped back, or a check bit)
1         other      ``UNCORRECTABLE`` (syndrome names no position: >= 3 flips)
0         nonzero    ``UNCORRECTABLE`` (an even number of flips, e.g. two)
========  =========  ============================================================

Every single flip is corrected and every double flip detected (tests: exhaustive for small
widths, every single and random doubles for 128 and 256 bits).
"""

from collections.abc import Iterable
from functools import cached_property

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..bus.memory_port import EccStatus

__all__ = ["SecdedCode", "SecdedEncoder", "SecdedDecoder", "check_bits_for", "DECODER_FAULTS"]

#: Deliberate bugs :class:`SecdedDecoder` can build in (mutation-testing hooks).
DECODER_FAULTS = {
    "no_correct": "a single flipped data bit is reported CORRECTED but not flipped back",
    "no_double_detect": "an even number of flips is reported OK instead of UNCORRECTABLE",
}


def check_bits_for(data_width: int) -> int:
    """Hamming check bits ``r`` for ``data_width`` data bits (least ``r``, ``2**r >= k+r+1``)."""
    if not isinstance(data_width, int) or data_width < 1:
        raise ValueError(f"data_width must be a positive integer, not {data_width!r}")
    r = 2
    while (1 << r) < data_width + r + 1:
        r += 1
    return r


class SecdedCode:
    """Pure-Python reference of the code for one data width (see the module docstring)."""

    def __init__(self, data_width: int):
        self.data_width = data_width
        self.check_bits = check_bits_for(data_width)
        self.code_width = data_width + self.check_bits + 1

    @cached_property
    def data_positions(self) -> tuple[int, ...]:
        """Hamming position of each data bit."""
        positions, pos = [], 1
        while len(positions) < self.data_width:
            if pos & (pos - 1):
                positions.append(pos)
            pos += 1
        return tuple(positions)

    @cached_property
    def check_masks(self) -> tuple[int, ...]:
        """For each check bit, the mask of data bits it covers."""
        return tuple(sum(1 << j for j, pos in enumerate(self.data_positions) if pos >> i & 1)
                     for i in range(self.check_bits))

    @cached_property
    def _position_to_data_bit(self) -> dict:
        return {pos: j for j, pos in enumerate(self.data_positions)}

    def _check(self, data: int) -> int:
        return sum((((data & mask).bit_count()) & 1) << i
                   for i, mask in enumerate(self.check_masks))

    def encode(self, data: int) -> int:
        """The codeword of ``data``."""
        if not 0 <= data < 1 << self.data_width:
            raise ValueError(f"data {data:#x} does not fit in {self.data_width} bits")
        word = data | self._check(data) << self.data_width
        return word | (word.bit_count() & 1) << (self.code_width - 1)

    def decode(self, code: int) -> tuple[int, EccStatus]:
        """``(data, status)`` of a stored codeword (data corrected when ``CORRECTED``)."""
        if not 0 <= code < 1 << self.code_width:
            raise ValueError(f"codeword {code:#x} does not fit in {self.code_width} bits")
        data = code & ((1 << self.data_width) - 1)
        stored = code >> self.data_width & ((1 << self.check_bits) - 1)
        syndrome = stored ^ self._check(data)
        parity_error = code.bit_count() & 1
        if not parity_error:
            return data, (EccStatus.OK if syndrome == 0 else EccStatus.UNCORRECTABLE)
        if syndrome == 0 or syndrome & (syndrome - 1) == 0:
            return data, EccStatus.CORRECTED
        bit = self._position_to_data_bit.get(syndrome)
        if bit is None:
            return data, EccStatus.UNCORRECTABLE
        return data ^ (1 << bit), EccStatus.CORRECTED


def _xor_reduce(bits: list):
    return Cat(*bits).xor() if bits else Const(0, 1)


class SecdedEncoder(wiring.Component):
    """Combinational SECDED encoder: ``code`` is the codeword of ``data``.

    Parameters
    ----------
    data_width : int
        Data bits; ``code`` has :attr:`SecdedCode.code_width` bits.
    """

    def __init__(self, *, data_width: int):
        self.spec = SecdedCode(data_width)
        super().__init__({"data": In(data_width), "code": Out(self.spec.code_width)})

    def elaborate(self, platform):
        m = Module()
        spec = self.spec
        check = Signal(spec.check_bits)
        for i, mask in enumerate(spec.check_masks):
            m.d.comb += check[i].eq(_xor_reduce([self.data[j] for j in range(spec.data_width)
                                                 if mask >> j & 1]))
        m.d.comb += self.code.eq(Cat(self.data, check, Cat(self.data, check).xor()))
        return m


class SecdedDecoder(wiring.Component):
    """Combinational SECDED decoder: ``data`` (corrected) and ``status`` of a stored ``code``.

    ``status`` is an :class:`~openmaia.bus.memory_port.EccStatus` value (2 bits);
    ``syndrome`` is exposed for diagnostics.

    Parameters
    ----------
    data_width : int
        Data bits.
    faults : collection of str
        Deliberate bugs from :data:`DECODER_FAULTS`; empty for the real design.
    """

    def __init__(self, *, data_width: int, faults: Iterable[str] = frozenset()):
        self.spec = SecdedCode(data_width)
        self.faults = _check_faults(faults, DECODER_FAULTS)
        spec = self.spec
        super().__init__({"code": In(spec.code_width), "data": Out(data_width),
                          "status": Out(2), "syndrome": Out(spec.check_bits)})

    def elaborate(self, platform):
        m = Module()
        spec = self.spec
        k, r = spec.data_width, spec.check_bits
        stored_data = self.code[:k]
        stored_check = self.code[k:k + r]
        recomputed = Signal(r)
        for i, mask in enumerate(spec.check_masks):
            m.d.comb += recomputed[i].eq(_xor_reduce([stored_data[j] for j in range(k)
                                                      if mask >> j & 1]))
        parity_error = Signal()
        m.d.comb += [self.syndrome.eq(stored_check ^ recomputed),
                     parity_error.eq(self.code.xor())]
        syndrome = self.syndrome
        # Valid single-error syndromes: 0 (the parity bit), a power of two (a check bit), or
        # a data position (all of 3 .. k + r, since positions are dense).
        names_position = Signal()
        m.d.comb += names_position.eq(syndrome <= k + r)
        single = Signal()
        m.d.comb += single.eq(parity_error & names_position)
        flips = Signal(k)
        if "no_correct" not in self.faults:
            for j, pos in enumerate(spec.data_positions):
                m.d.comb += flips[j].eq(single & (syndrome == pos))
        m.d.comb += self.data.eq(stored_data ^ flips)
        with m.If(parity_error):
            with m.If(names_position):
                m.d.comb += self.status.eq(EccStatus.CORRECTED)
            with m.Else():
                m.d.comb += self.status.eq(EccStatus.UNCORRECTABLE)
        with m.Elif(syndrome.any() if "no_double_detect" not in self.faults else 0):
            m.d.comb += self.status.eq(EccStatus.UNCORRECTABLE)
        with m.Else():
            m.d.comb += self.status.eq(EccStatus.OK)
        return m


def _check_faults(faults, known: dict) -> frozenset:
    if isinstance(faults, str) or not isinstance(faults, Iterable):
        raise TypeError(f"faults must be a collection of fault names, not {faults!r}")
    faults = frozenset(faults)
    for fault in sorted(faults, key=str):
        if fault not in known:
            raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(known)}")
    return faults
