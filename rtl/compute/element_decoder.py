"""Element decoder: MX element codes to sign, exponent and integer significand.

Every finite element of every built-in format becomes ``(-1) ** sign * sig * 2 ** (exp + lsb)``
with unsigned integers ``exp`` and ``sig``, where ``lsb`` is the format's
:attr:`~openmaia.numerics.formats.FormatSpec.lsb_exp`. The dot-product engine multiplies ``sig``
and shifts by ``exp`` without knowing the formats any further.
"""

import functools
import operator
from collections.abc import Iterable

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..numerics.formats import Format

__all__ = ["DecodedElement", "decode_element", "element_widths", "ElementDecoder", "FAULTS"]


#: Deliberate bugs :class:`ElementDecoder` can build in (mutation-testing hooks), with the format
#: each one needs built in to have any effect (``None``: any floating-point format).
FAULTS = {
    "e5m2_inf_as_nan":      (Format.E5M2, "E5M2 Inf codes are flagged NaN instead of Inf"),
    "subnormal_hidden_bit": (None,        "subnormals get a hidden bit: sig = 2**mbits + M"),
    "int8_min":             (Format.INT8, "INT8 code 0x80 decodes as magnitude 0, not 128"),
}


def _check_formats(formats) -> frozenset:
    if isinstance(formats, (str, Format)) or not isinstance(formats, Iterable):
        raise TypeError(f"formats must be a collection of element formats, not {formats!r}")
    formats = frozenset(Format.of(fmt) for fmt in formats)
    if not formats:
        raise ValueError("formats must name at least one element format")
    return formats


def _check_faults(faults, formats: frozenset) -> frozenset:
    if isinstance(faults, str) or not isinstance(faults, Iterable):
        raise TypeError(f"faults must be a collection of fault names, not {faults!r}")
    faults = frozenset(faults)
    for fault in sorted(faults, key=str):
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
        needs = FAULTS[fault][0]
        if needs is None and not any(fmt.is_float for fmt in formats):
            raise ValueError(f"fault {fault!r} needs a floating-point format built in")
        if needs is not None and needs not in formats:
            raise ValueError(f"fault {fault!r} needs format {needs} built in")
    return faults


def element_widths(formats) -> tuple[int, int]:
    """Widths ``(exp, sig)`` of :class:`DecodedElement` fields for a set of built-in formats.

    Each is the minimum that holds the largest value any built-in format produces: ``exp`` up to
    ``2 ** ebits - 2`` (Inf and NaN codes included), ``sig`` up to ``2 ** (mbits + 1) - 1``, or
    128 for INT8. ``exp`` is at least one bit wide (always 0 in an INT8-only build), since
    Verilog has no zero-width vectors.
    """
    exp_max = sig_max = 0
    for fmt in _check_formats(formats):
        spec = fmt.spec
        if fmt.is_float:
            exp_max = max(exp_max, (1 << spec.ebits) - 2)
            sig_max = max(sig_max, (1 << (spec.mbits + 1)) - 1)
        else:
            sig_max = max(sig_max, 1 << (spec.bits - 1))
    return max(1, exp_max.bit_length()), sig_max.bit_length()


class DecodedElement(data.Struct):
    """One decoded element.

    This class has no layout of its own: :meth:`of` returns its subclass for a set of built-in
    formats, whose ``exp`` and ``sig`` are as narrow as those formats allow
    (:func:`element_widths`).

    Fields
    ------
    sign : 1
        The sign bit of the code (INT8: bit 7).
    exp : unsigned
        Shift of ``sig``: for finite values, ``|value| = sig * 2 ** (exp + lsb_exp)``. Normals:
        ``E - 1``; subnormals and INT8: 0.
    sig : unsigned
        Integer significand: normals ``2 ** mbits + M``, subnormals ``M``, INT8 ``|code|`` (0..128,
        code 0x80 is -128, i.e. -2.0).
    is_nan, is_inf : 1
        The code is NaN, or +-Inf. Their ``sign``, ``exp`` and ``sig`` follow the rule for normals,
        as if the format had no special values.
    is_zero : 1
        The code is +0 or -0 (``sig`` is 0).
    illegal : 1
        The format selector names no built-in format. Then ``is_nan`` is also set and every other
        field is 0, so a consumer that ignores ``illegal`` still produces NaN.
    """

    @staticmethod
    def of(formats) -> "type[DecodedElement]":
        """The :class:`DecodedElement` struct for the built-in ``formats`` (cached per set)."""
        return _decoded_element(_check_formats(formats))


@functools.cache
def _decoded_element(formats: frozenset) -> "type[DecodedElement]":
    exp_width, sig_width = element_widths(formats)

    class _DecodedElement(DecodedElement):
        sign:    1
        exp:     exp_width
        sig:     sig_width
        is_nan:  1
        is_inf:  1
        is_zero: 1
        illegal: 1

    names = ",".join(fmt.value for fmt in Format if fmt in formats)
    _DecodedElement.__name__ = _DecodedElement.__qualname__ = f"DecodedElement[{names}]"
    _DecodedElement.formats = formats
    return _DecodedElement


def decode_element(m: Module, code, fmt_sel, *, formats, faults=frozenset(), name=None):
    """Add combinational logic to ``m`` that decodes one element.

    ``code`` is 8 bits wide; FP6 and FP4 codes are in its low bits and the bits above them are
    ignored. ``fmt_sel`` is 3 bits wide and holds the
    :attr:`~openmaia.numerics.formats.FormatSpec.hw_code` of the format. Only the ``formats``
    given are built; any other selector decodes as ``illegal`` (see :class:`DecodedElement`).
    ``faults`` names deliberate bugs to build in (:data:`FAULTS`); leave it empty.

    The formats' decodes are computed side by side and AND-OR selected by ``fmt_sel``. Returns a
    view of a new :class:`DecodedElement` signal (named ``name``) driven from the ``comb``
    domain.
    """
    formats = _check_formats(formats)
    faults = _check_faults(faults, formats)
    code, fmt_sel = Value.cast(code), Value.cast(fmt_sel)
    if len(code) != 8:
        raise ValueError(f"code must be 8 bits wide, not {len(code)}")
    if len(fmt_sel) != 3:
        raise ValueError(f"fmt_sel must be 3 bits wide, not {len(fmt_sel)}")

    element = DecodedElement.of(formats)
    out = Signal(element, name=name or "decoded", src_loc_at=1)
    terms = {field: [] for field, _ in element.as_shape()}
    selects = []
    for fmt in Format:
        if fmt in formats:
            # Not `fmt_sel == 0`: Yosys writes it as `!fmt_sel`, which Verilator rejects.
            select = ~(fmt_sel ^ fmt.spec.hw_code).any()
            selects.append(select)
            if fmt.is_float:
                fields = _float_fields(code, fmt, faults)
            else:
                fields = _int8_fields(code, faults)
            for field, value in fields.items():
                terms[field].append(Mux(select, value, 0))
    illegal = ~Cat(selects).any()
    terms["illegal"].append(illegal)
    terms["is_nan"].append(illegal)
    m.d.comb += [out[field].eq(functools.reduce(operator.or_, values, Const(0)))
                 for field, values in terms.items()]
    return out


def _float_fields(code, fmt, faults):
    spec = fmt.spec
    exp = code[spec.mbits:spec.mbits + spec.ebits]
    man = code[:spec.mbits]
    normal = exp.any()
    hidden = Const(1) if "subnormal_hidden_bit" in faults else normal
    fields = {
        "sign": code[spec.bits - 1],
        "exp": (exp - normal)[:spec.ebits],
        "sig": Cat(man, hidden),
        "is_zero": ~normal & ~man.any(),
    }
    if fmt is Format.E5M2 and "e5m2_inf_as_nan" in faults:
        fields["is_nan"] = exp.all()
    elif spec.has_inf:
        fields["is_inf"] = exp.all() & ~man.any()
        fields["is_nan"] = exp.all() & man.any()
    elif spec.has_nan:
        fields["is_nan"] = exp.all() & man.all()
    return fields


def _int8_fields(code, faults):
    mag_bits = 7 if "int8_min" in faults else 8
    return {
        "sign": code[7],
        "sig": Mux(code[7], (~code + 1)[:mag_bits], code[:mag_bits]),
        "is_zero": ~code.any(),
    }


class ElementDecoder(wiring.Component):
    """Decodes ``lanes`` element codes of one format a transfer, with one cycle of latency.

    Each lane goes through :func:`decode_element`; the result is registered once. Streams follow
    the :mod:`amaranth.lib.stream` rules: a payload is taken when ``i.valid`` and ``i.ready`` are
    both high, and ``o.payload`` is held while ``o.valid`` is high and ``o.ready`` low.
    ``i.ready`` is ``~o.valid | o.ready``, so a stream with ``o.ready`` always high moves a
    transfer every cycle.

    Parameters
    ----------
    formats : collection of :class:`~openmaia.numerics.formats.Format` or names
        The built-in formats; any other format selector decodes as ``illegal``.
    lanes : :class:`int`
        Elements a transfer.
    faults : collection of :class:`str`
        Deliberate bugs to build in, from :data:`FAULTS`. Empty for the real design.

    Members
    -------
    i : :py:`In(stream.Signature(ElementDecoder.input_layout(lanes)))`
        ``codes``: ``lanes`` codes of 8 bits (FP6 / FP4 in the low bits); ``fmt``: the format's
        3-bit ``hw_code``.
    o : :py:`Out(stream.Signature(data.ArrayLayout(DecodedElement.of(formats), lanes)))`
        The decoded elements, lane ``n`` from ``codes[n]``.
    """

    def __init__(self, *, formats, lanes=1, faults=frozenset()):
        self._formats = _check_formats(formats)
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        self._lanes = lanes
        self._faults = _check_faults(faults, self._formats)
        self._element = DecodedElement.of(self._formats)
        super().__init__({
            "i": In(stream.Signature(self.input_layout(lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(self._element, lanes))),
        })

    @staticmethod
    def input_layout(lanes: int) -> data.StructLayout:
        """Layout of the input payload for ``lanes`` lanes."""
        return data.StructLayout({"codes": data.ArrayLayout(8, lanes), "fmt": 3})

    @property
    def formats(self) -> frozenset:
        return self._formats

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def faults(self) -> frozenset:
        return self._faults

    @property
    def element(self) -> "type[DecodedElement]":
        """The :class:`DecodedElement` struct of one output lane."""
        return self._element

    def elaborate(self, platform):
        m = Module()
        decoded = [decode_element(m, self.i.payload.codes[lane], self.i.payload.fmt,
                                  formats=self._formats, faults=self._faults,
                                  name=f"decoded{lane}")
                   for lane in range(self._lanes)]
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(~self.o.valid | self.o.ready):
            m.d.sync += self.o.valid.eq(self.i.valid)
            m.d.sync += [self.o.payload[lane].eq(decoded[lane]) for lane in range(self._lanes)]
        return m
