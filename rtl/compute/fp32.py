"""FP32 arithmetic units of the dot engine: rounding an exact value once, and addition.

:class:`Fp32Round` is the normalise-and-round stage that turns an exact block sum into FP32 bits
(:func:`openmaia.numerics.dot.round_to_fp32`); :class:`Fp32Add` is the accumulator adder
(:func:`openmaia.numerics.dot.fp32_add`). Both are bit-exact to the golden model: round to
nearest even, gradual underflow, overflow to +-Inf, every NaN result ``0x7FC00000``.

Both are pipelines without handshakes: ``en`` advances every register of the unit at once, so the
result of an input sampled in a cycle with ``en`` high appears on ``o`` after exactly ``stages``
more cycles with ``en`` high, and ``o`` holds while ``en`` is low.
"""

from collections.abc import Iterable

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..numerics.dot import CANONICAL_NAN

__all__ = ["Fp32Round", "Fp32Add", "FAULTS"]


#: Deliberate bugs :class:`Fp32Round` can build in (mutation-testing hooks).
FAULTS = {
    "rounding_truncate": "round toward zero (truncate) instead of to nearest even",
    "drop_sticky":       "ignore the sticky bit: every set guard bit is taken for a tie",
}

_FRAC_BITS = 23
_SIG_BITS = _FRAC_BITS + 1
_EXP_MAX = 0xFF
_NAN_FRAC = CANONICAL_NAN & ((1 << _FRAC_BITS) - 1)


def _check_int(name, value, minimum):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, not {value!r}")
    return value


def check_faults(faults, known=None) -> frozenset:
    """``faults`` as a frozenset, checked against the fault names ``known`` (default: this
    module's :data:`FAULTS`); TypeError / ValueError otherwise. Shared by the compute blocks."""
    known = FAULTS if known is None else known
    if isinstance(faults, str) or not isinstance(faults, Iterable):
        raise TypeError(f"faults must be a collection of fault names, not {faults!r}")
    faults = frozenset(faults)
    for fault in sorted(faults, key=str):
        if fault not in known:
            raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(known)}")
    return faults


_check_faults = check_faults


# Datapath building blocks (combinational). Each intermediate value that is used more than once
# is a named wire: Amaranth lowers an expression tree as a tree, so a shared subexpression would
# be duplicated at every use (exponentially many times in a logarithmic shifter).


def _wire(m: Module, value, name: str) -> Signal:
    value = Value.cast(value)
    wire = Signal(value.shape(), name=name)
    m.d.comb += wire.eq(value)
    return wire


def _shift_left(m: Module, x: Value, amount: Value, name: str) -> Value:
    """``x << amount``, truncated to ``len(x)`` bits (a logarithmic shifter)."""
    width = len(x)
    x = _wire(m, x, f"{name}_in")
    for k in range(len(amount)):
        n = 1 << k
        shifted = Cat(Const(0, n), x[:width - n]) if n < width else Const(0, width)
        x = _wire(m, Mux(amount[k], shifted, x), f"{name}_{k}")
    return x


def _normalize_window(m: Module, x: Value, amount: Value, keep: int,
                      name: str) -> tuple[Value, Value]:
    """``(top, sticky)``: the top ``keep`` bits of ``x << amount`` and whether any bit below
    them is set, for an ``amount`` of at most the leading zeros of ``x`` (no set bit leaves).

    A logarithmic shifter taken most significant stage first, so each stage keeps only the
    bits that can still reach the top ``keep`` after the remaining, smaller shifts (``keep +
    2 ** k - 1`` after stage ``k``); the bits it drops can only end below them and are ORed
    into ``sticky``. Far fewer multiplexers than a full-width shifter when ``len(x)`` is well
    above ``keep``.
    """
    x = _wire(m, x, f"{name}_in")
    dropped = []
    for k in reversed(range(len(amount))):
        n, width = 1 << k, len(x)
        shifted = Cat(Const(0, n), x[:width - n]) if n < width else Const(0, width)
        x = _wire(m, Mux(amount[k], shifted, x), f"{name}_{k}")
        cut = len(x) - min(len(x), keep + n - 1)
        if cut:
            dropped.append(x[:cut])
            x = x[cut:]
    sticky = Cat(*dropped).any() if dropped else Const(0, 1)
    assert len(x) == keep
    return x, _wire(m, sticky, f"{name}_sticky")


def _shift_right_sticky(m: Module, x: Value, amount: Value, name: str) -> tuple[Value, Value]:
    """``(x >> amount, any bit shifted out)`` (a logarithmic shifter collecting sticky bits)."""
    width = len(x)
    x = _wire(m, x, f"{name}_in")
    sticky = Const(0, 1)
    for k in range(len(amount)):
        n = 1 << k
        if n < width:
            lost, shifted = x[:n].any(), Cat(x[n:], Const(0, n))
        else:
            lost, shifted = x.any(), Const(0, width)
        sticky = sticky | (amount[k] & lost)
        x = _wire(m, Mux(amount[k], shifted, x), f"{name}_{k}")
    return x, _wire(m, sticky, f"{name}_sticky")


def _leading_zeros(m: Module, x: Value, name: str) -> Value:
    """Leading zeros of ``x`` (a power of two wide, at least 2); ``len(x) - 1`` if ``x == 0``."""
    width = len(x)
    assert width >= 2 and width & (width - 1) == 0

    def count(x):
        if len(x) == 2:
            return ~x[1]
        half = len(x) // 2
        hi, lo = x[half:], x[:half]
        return Mux(hi.any(), Cat(count(hi), Const(0, 1)), Cat(count(lo), Const(1, 1)))

    return _wire(m, count(_wire(m, x, f"{name}_in")), name)


def _pad_to_power_of_two(x: Value, fill: int) -> Value:
    """``x`` extended at the bottom with ``fill`` bits to a power-of-two width (at least 2)."""
    width = max(2, 1 << (len(x) - 1).bit_length())
    pad = width - len(x)
    return Cat(Const((1 << pad) - 1 if fill else 0, pad), x) if pad else x


def _round_pack(m: Module, sig: Value, guard: Value, sticky: Value, exp_field: Value,
                sign: Value, nan: Value, inf: Value, zero: Value, faults: frozenset) -> Value:
    """FP32 bits from a 24-bit significand truncated to the result's last place.

    ``exp_field`` is the biased exponent minus one for a significand with its hidden bit set, 0
    for a subnormal one (below 2**23): adding the rounded significand to ``exp_field << 23``
    packs both, a carry out of the significand included. A field of 255 or more is +-Inf.
    Priorities: ``nan``, then ``inf``, then ``zero`` (a zero of sign ``sign``), then overflow.
    """
    if "rounding_truncate" in faults:
        up = Const(0, 1)
    elif "drop_sticky" in faults:
        up = guard & sig[0]
    else:
        up = guard & (sticky | sig[0])
    rounded = _wire(m, (sig + up)[:_SIG_BITS + 1], "rounded")
    field = _wire(m, exp_field + rounded[_FRAC_BITS:], "field")
    overflow = field >= _EXP_MAX
    frac = Mux(nan, _NAN_FRAC, Mux(inf | zero | overflow, 0, rounded[:_FRAC_BITS]))
    exp = Mux(nan | inf, _EXP_MAX, Mux(zero, 0, Mux(overflow, _EXP_MAX, field[:8])))
    return Cat(frac[:_FRAC_BITS], exp[:8], sign & ~nan)


def _pipeline(m: Module, en: Value, phases: list, output: Value, *, stages: int,
              boundaries: list):
    """Chain ``phases`` (each a function from a dict of values to a dict of values; the last one
    returns ``{"o": result}``) and drive ``output`` from the result ``stages`` enabled cycles
    later. The phase boundaries named first in ``boundaries`` (the index of the phase before
    each) get ``stages - 1`` registers; the rest are output registers. Every register is enabled
    by ``en``."""
    registered = set(boundaries[:stages - 1])
    values = {}
    for index, phase in enumerate(phases):
        values = phase(values)
        if index not in registered:
            values = {key: _wire(m, value, f"p{index}_{key}") for key, value in values.items()}
            continue
        regs = {}
        for key, value in values.items():
            value = Value.cast(value)
            regs[key] = Signal(value.shape(), name=f"p{index}_{key}", reset_less=True)
            with m.If(en):
                m.d.sync += regs[key].eq(value)
        values = regs
    result = values["o"]
    for n in range(stages - len(registered)):
        reg = Signal(len(output), name=f"out{n}", reset_less=True)
        with m.If(en):
            m.d.sync += reg.eq(result)
        result = reg
    m.d.comb += output.eq(result)


class Fp32Round(wiring.Component):
    """Rounds the exact value ``sum * 2 ** exp`` once to FP32 bits, as
    :func:`~openmaia.numerics.dot.round_to_fp32` does.

    Round to nearest, ties to even; gradual underflow (a result below 2**-126 is subnormal,
    rounded once; a nonzero value that rounds to zero gives a zero of its sign); a rounded
    magnitude of 2**128 or more gives +-Inf. Any ``sum`` and ``exp`` of the given widths are
    handled. Special inputs, in priority order: ``nan`` gives ``0x7FC00000``; ``inf`` gives
    -Inf if ``inf_neg`` else +Inf; a zero ``sum`` gives -0.0 if ``zero_neg`` else +0.0.

    Parameters
    ----------
    sum_width : :class:`int`
        Bits of the two's complement ``sum`` (at least 2).
    exp_width : :class:`int`
        Bits of the two's complement ``exp`` (at least 2).
    stages : :class:`int`
        Latency in enabled cycles (at least 1).
    faults : collection of :class:`str`
        Deliberate bugs to build in, from :data:`FAULTS`. Empty for the real design.

    Members
    -------
    en : :py:`In(1)`
        Pipeline enable: the unit's registers advance only in cycles where it is high.
    i : :py:`In(Fp32Round.input_layout(sum_width, exp_width))`
        ``sum``, ``exp``, ``nan``, ``inf``, ``inf_neg``, ``zero_neg``; sampled when ``en`` is
        high.
    o : :py:`Out(32)`
        FP32 bits of the input sampled ``stages`` enabled cycles earlier.
    """

    def __init__(self, *, sum_width, exp_width, stages=2, faults=frozenset()):
        self._sum_width = _check_int("sum_width", sum_width, 2)
        self._exp_width = _check_int("exp_width", exp_width, 2)
        self._stages = _check_int("stages", stages, 1)
        self._faults = _check_faults(faults)
        super().__init__({
            "en": In(1),
            "i": In(self.input_layout(sum_width, exp_width)),
            "o": Out(32),
        })

    @staticmethod
    def input_layout(sum_width: int, exp_width: int) -> data.StructLayout:
        """Layout of the input ``i`` for the given field widths."""
        return data.StructLayout({
            "sum": signed(sum_width),
            "exp": signed(exp_width),
            "nan": 1,
            "inf": 1,
            "inf_neg": 1,
            "zero_neg": 1,
        })

    @property
    def sum_width(self) -> int:
        return self._sum_width

    @property
    def exp_width(self) -> int:
        return self._exp_width

    @property
    def stages(self) -> int:
        return self._stages

    @property
    def latency(self) -> int:
        """Enabled cycles from an input to its result (``stages``)."""
        return self._stages

    @property
    def faults(self) -> frozenset:
        return self._faults

    def elaborate(self, platform):
        m = Module()
        width = self._sum_width
        # The normalised value keeps at least the 24 significand bits, a guard and a sticky bit.
        norm_width = max(width, _SIG_BITS + 2)
        top_shape = signed(max(self._exp_width, width.bit_length() + 1) + 2)

        def magnitude(_):
            i = self.i
            neg = i.sum[-1]
            zero = ~i.sum.any()
            return {
                "mag": ((i.sum.as_unsigned() ^ neg.replicate(width)) + neg)[:width],
                "exp": i.exp,
                "sign": Mux(i.inf, i.inf_neg, Mux(zero, i.zero_neg, neg)),
                "nan": i.nan,
                "inf": i.inf,
                "zero": zero,
            }

        def normalise(v):
            mag = Cat(Const(0, norm_width - width), v["mag"])
            lz = _leading_zeros(m, _pad_to_power_of_two(mag, 0), "lz")
            norm, sticky = _normalize_window(m, mag, lz, _SIG_BITS + 1, "norm")
            top = Signal(top_shape, name="top")  # exponent of the leading bit
            m.d.comb += top.eq(v["exp"] + (width - 1) - lz)
            return {
                "sig": norm[1:],
                "guard": norm[0],
                "sticky": sticky,
                "top": top,
                **{key: v[key] for key in ("sign", "nan", "inf", "zero")},
            }

        def round_pack(v):
            top = v["top"]
            normal = top >= -126
            below = -126 - top
            shift = Mux(normal, 0, Mux(below > 31, 31, below[:5]))[:5]
            frac, lost = _shift_right_sticky(m, Cat(v["sticky"], v["guard"], v["sig"]), shift,
                                             "denorm")
            return {"o": _round_pack(m, frac[2:], frac[1], frac[0] | lost,
                                     Mux(normal, top + 126, 0), v["sign"], v["nan"], v["inf"],
                                     v["zero"], self._faults)}

        _pipeline(m, self.en, [magnitude, normalise, round_pack], self.o, stages=self._stages,
                  boundaries=[1, 0])
        return m


class Fp32Add(wiring.Component):
    """IEEE 754 binary32 addition ``a + b``, as :func:`~openmaia.numerics.dot.fp32_add` does.

    Round to nearest, ties to even; subnormal operands and results are kept (no flush to zero);
    overflow gives +-Inf. ``x + (-x)`` is +0 and ``(-0) + (-0)`` is -0. Inf plus a finite value
    is that Inf, ``Inf + (-Inf)`` is NaN, and any NaN operand gives NaN; every NaN result is
    ``0x7FC00000``.

    Parameters
    ----------
    stages : :class:`int`
        Latency in enabled cycles (at least 1).

    Members
    -------
    en : :py:`In(1)`
        Pipeline enable: the unit's registers advance only in cycles where it is high.
    a, b : :py:`In(32)`
        FP32 bits of the operands; sampled when ``en`` is high.
    o : :py:`Out(32)`
        FP32 bits of the sum of the operands sampled ``stages`` enabled cycles earlier.
    """

    def __init__(self, *, stages=2):
        self._stages = _check_int("stages", stages, 1)
        super().__init__({"en": In(1), "a": In(32), "b": In(32), "o": Out(32)})

    @property
    def stages(self) -> int:
        return self._stages

    @property
    def latency(self) -> int:
        """Enabled cycles from an input to its result (``stages``)."""
        return self._stages

    def elaborate(self, platform):
        m = Module()
        extra = 3  # guard, round and sticky bits below the significand
        width = _SIG_BITS + extra  # 27: an aligned significand; the sum has one more bit

        def align(_):
            a, b = self.a, self.b
            sign_a, sign_b = a[31], b[31]
            exp_a, exp_b = a[_FRAC_BITS:31], b[_FRAC_BITS:31]
            frac_a, frac_b = a[:_FRAC_BITS].any(), b[:_FRAC_BITS].any()
            inf_a = exp_a.all() & ~frac_a
            inf_b = exp_b.all() & ~frac_b
            nan = (exp_a.all() & frac_a) | (exp_b.all() & frac_b) | \
                  (inf_a & inf_b & (sign_a ^ sign_b))
            a_big = a[:31] >= b[:31]
            x = _wire(m, Mux(a_big, a, b), "x")
            y = _wire(m, Mux(a_big, b, a), "y")
            exp_x, exp_y = x[_FRAC_BITS:31], y[_FRAC_BITS:31]
            normal_x, normal_y = exp_x.any(), exp_y.any()
            # Value = significand * 2 ** (max(E, 1) - 150).
            ex = _wire(m, Cat(exp_x[0] | ~normal_x, exp_x[1:]), "ex")
            ey = _wire(m, Cat(exp_y[0] | ~normal_y, exp_y[1:]), "ey")
            diff = (ex - ey)[:8]
            shift = Mux(diff[5:].any(), 31, diff[:5])[:5]
            sig_y, lost = _shift_right_sticky(
                m, Cat(Const(0, extra), y[:_FRAC_BITS], normal_y), shift, "align")
            return {
                "x": Cat(Const(0, extra), x[:_FRAC_BITS], normal_x),
                "y": sig_y | lost,
                "sub": x[31] ^ y[31],
                "exp": ex,
                "sign": Mux(inf_a | inf_b, Mux(inf_a, sign_a, sign_b), x[31]),
                "zero_sign": sign_a & sign_b,
                "nan": nan,
                "inf": inf_a | inf_b,
            }

        def add(v):
            sub = v["sub"]
            # x - y as x + ~y + 1: one adder. x >= y, so the sum is never negative.
            y = Cat(v["y"], Const(0, 1)) ^ sub.replicate(width + 1)
            total = _wire(m, (v["x"] + y + sub)[:width + 1], "total")
            zero = ~total.any()
            return {
                "sum": total,
                "exp": v["exp"],
                "sign": Mux(zero & ~v["inf"], v["zero_sign"], v["sign"]),
                "nan": v["nan"],
                "inf": v["inf"],
                "zero": zero,
            }

        def round_pack(v):
            total, exp = v["sum"], v["exp"]
            lz = _leading_zeros(m, _pad_to_power_of_two(total, 1), "lz")
            # The normalising shift stops at ``exp``: results below 2**-126 stay subnormal.
            shift = _wire(m, Mux(exp < lz, exp, lz)[:len(lz)], "shift")
            norm = _shift_left(m, total, shift, "norm")
            return {"o": _round_pack(m, norm[extra + 1:], norm[extra], norm[:extra].any(),
                                     (exp - shift)[:9], v["sign"], v["nan"], v["inf"],
                                     v["zero"], frozenset())}

        _pipeline(m, self.en, [align, add, round_pack], self.o, stages=self._stages,
                  boundaries=[1, 0])
        return m
