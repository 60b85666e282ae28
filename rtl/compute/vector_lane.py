"""The arithmetic core of the Tile Vector Processor: FP32 lane operations on a stream.

:class:`VectorAlu` applies one :class:`~openmaia.numerics.vector.VectorOp` to ``lanes`` pairs of
FP32 operands a transfer, fully pipelined, bit-exact to :func:`openmaia.numerics.vector.apply`.
The contract (ops, rules, latency, counters, errors) is docs/tvp.md.

Every op runs through one fixed chain of nine FP32 units per lane, the GELU sequence of
:func:`~openmaia.numerics.vector.gelu`::

    pre -> add -> mul -> add -> mul -> add -> mul -> add -> add -> mul

An op uses some units and passes its value through the others as exact identities
(``v + (-0) = v`` and ``v * 1 = v`` for every non-NaN ``v``; a NaN becomes the canonical NaN,
which is every op's NaN rule): ADD uses the first adder (``a + b``), MUL the first multiplier
(``a * b``); MAX, ReLU and the BF16 conversions are computed in the ``pre`` stage and pass
through; GELU uses them all. The adders are :class:`~openmaia.compute.fp32.Fp32Add` (the dot
engine's accumulator adder), the multipliers :class:`Fp32Mul`, a 24 x 24 significand product
rounded by the dot engine's :class:`~openmaia.compute.fp32.Fp32Round`.
"""

import struct

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import ERROR_CODE_BITS, ErrorCode
from ..numerics.dot import CANONICAL_NAN, FP32_NEG_INF, FP32_NEG_ZERO
from ..numerics.vector import (
    BF16_CANONICAL_NAN,
    FP32_ONE,
    GELU_SEGMENTS,
    GELU_STEPS,
    GELU_TABLE,
    GELU_TOP,
    VectorOp,
)
from .fp32 import Fp32Add, Fp32Round, check_faults

__all__ = ["VectorAlu", "Fp32Mul", "VectorCounters", "FAULTS", "COUNTER_BITS"]

#: Deliberate bugs :class:`VectorAlu` can build in (mutation-testing hooks).
FAULTS = {
    "mul_drop_sticky": "the multipliers' rounding ignores the sticky bit",
    "max_zero_sign":   "MAX and ReLU take -0 and +0 as equal (the first operand wins)",
    "bf16_truncate":   "FP32 -> BF16 truncates instead of rounding to nearest even",
    "gelu_no_tail":    "GELU computes 1 - Q(|x|) for negative x too (the positive branch)",
}

COUNTER_BITS = 48
_OPS = max(VectorOp) + 1
_STEP_BITS = GELU_STEPS.bit_length() - 1


def _fp32_bits(value: float) -> int:
    return struct.unpack("<I", struct.pack("<f", value))[0]


_TOP_BITS = _fp32_bits(float(GELU_TOP))
_X0_BITS = [0] + [_fp32_bits(k / GELU_STEPS) for k in range(1, GELU_SEGMENTS)]


def _check_faults(faults) -> frozenset:
    return check_faults(faults, FAULTS)


def _wire(m: Module, value, name: str) -> Signal:
    value = Value.cast(value)
    wire = Signal(value.shape(), name=name)
    m.d.comb += wire.eq(value)
    return wire


def _delay(m: Module, en: Value, value, cycles: int, name: str, *, reset_less=True) -> Value:
    """``value`` delayed by ``cycles`` registers that advance when ``en`` is high."""
    shape = value.shape() if isinstance(value, data.View) else Value.cast(value).shape()
    for n in range(cycles):
        reg = Signal(shape, name=f"{name}_d{n}", reset_less=reset_less)
        with m.If(en):
            m.d.sync += reg.eq(value)
        value = reg
    return value


class Fp32Mul(wiring.Component):
    """IEEE 754 binary32 product ``a * b``, as :func:`~openmaia.numerics.vector.fp32_mul`.

    Round to nearest even, subnormals kept, overflow to +-Inf, ``0 * Inf`` and NaN operands give
    ``0x7FC00000``, the sign of every result (zeros included) is the XOR of the operands' signs.
    Stage 1 multiplies the 24-bit significands; :class:`~openmaia.compute.fp32.Fp32Round`
    rounds the exact 48-bit product in ``round_stages`` more. Enable-driven like the FP32 units:
    the result of operands sampled with ``en`` high is on ``o`` ``latency`` enabled cycles
    later.

    Parameters
    ----------
    round_stages : :class:`int`
        Stages of the rounding unit (at least 1).
    faults : collection of :class:`str`
        Faults passed to :class:`~openmaia.compute.fp32.Fp32Round` (its ``FAULTS``).
    """

    SUM_WIDTH = 49   # a signed 48-bit significand product
    EXP_WIDTH = 10   # exponent of the product's last place: -298 .. 208

    def __init__(self, *, round_stages=2, faults=frozenset()):
        if not isinstance(round_stages, int) or isinstance(round_stages, bool) or \
                round_stages < 1:
            raise ValueError(f"round_stages must be an integer of at least 1, not "
                             f"{round_stages!r}")
        self._round_stages = round_stages
        self._faults = frozenset(faults)
        super().__init__({"en": In(1), "a": In(32), "b": In(32), "o": Out(32)})

    @property
    def latency(self) -> int:
        """Enabled cycles from operands to their product (1 + ``round_stages``)."""
        return 1 + self._round_stages

    def elaborate(self, platform):
        m = Module()
        m.submodules.round = rnd = Fp32Round(sum_width=self.SUM_WIDTH, exp_width=self.EXP_WIDTH,
                                             stages=self._round_stages, faults=self._faults)
        a, b = self.a, self.b
        ea, eb = a[23:31], b[23:31]
        frac_a, frac_b = a[:23].any(), b[:23].any()
        normal_a, normal_b = ea.any(), eb.any()
        inf_a, inf_b = ea.all() & ~frac_a, eb.all() & ~frac_b
        nan_a, nan_b = ea.all() & frac_a, eb.all() & frac_b
        zero_a, zero_b = ~a[:31].any(), ~b[:31].any()
        sign = a[31] ^ b[31]
        product = _wire(m, Cat(a[:23], normal_a) * Cat(b[:23], normal_b), "product")
        exp = Cat(ea[0] | ~normal_a, ea[1:]) + Cat(eb[0] | ~normal_b, eb[1:]) - 300
        layout = Fp32Round.input_layout(self.SUM_WIDTH, self.EXP_WIDTH)
        stage = Signal(layout)
        with m.If(self.en):
            m.d.sync += [
                stage.sum.eq(Mux(sign, -product, product)),
                stage.exp.eq(exp),
                stage.nan.eq(nan_a | nan_b | (inf_a & zero_b) | (zero_a & inf_b)),
                stage.inf.eq(inf_a | inf_b),
                stage.inf_neg.eq(sign),
                stage.zero_neg.eq(sign),
            ]
        m.d.comb += [rnd.en.eq(self.en), rnd.i.eq(stage), self.o.eq(rnd.o)]
        return m


class VectorCounters(data.Struct):
    """Performance counters (count up from reset). ``beats``: transfers accepted; ``busy``:
    cycles with a beat anywhere in the pipeline; ``stall_input``: busy cycles without an input
    beat while the pipeline could take one; ``stall_output``: cycles a result waits for
    ``o.ready``; ``illegal``: beats answered ``ILLEGAL_OPCODE``."""
    beats:        COUNTER_BITS
    busy:         COUNTER_BITS
    stall_input:  COUNTER_BITS
    stall_output: COUNTER_BITS
    illegal:      32


class VectorAlu(wiring.Component):
    """FP32 lane operations on ``lanes`` operand pairs a transfer (module docstring).

    A transfer on ``i`` carries ``op`` (3 bits, a :class:`~openmaia.numerics.vector.VectorOp`
    code) and ``lanes`` operands ``a`` and ``b`` (FP32 bits; ``b`` is used by ADD, MUL and MAX;
    scale and bias add broadcast their scalar or vector into ``b``); its result on ``o`` is
    ``value[n] = apply(op, a[n], b[n])`` (TO_BF16: BF16 bits in the low half) with ``status``
    ``OK``. Code 7 is answered with ``status = ILLEGAL_OPCODE`` and every lane
    ``0x7FC00000``; the next transfer is unaffected.

    Fully pipelined: one transfer a cycle, results in order, :attr:`latency` cycles from an
    accepted input to its result when ``o`` is not stalled. All registers advance together
    when ``o.valid`` is low or ``o.ready`` high; ``i.ready`` is exactly that condition, so it
    depends combinationally on ``o.ready`` (``o.valid`` depends on no input).

    Parameters
    ----------
    lanes : :class:`int`
        Operand pairs a transfer (1 to 64).
    faults : collection of :class:`str`
        Deliberate bugs to build in, from :data:`FAULTS`. Empty for the real design.

    Members
    -------
    i : :py:`In(stream.Signature(VectorAlu.input_layout(lanes)))`
    o : :py:`Out(stream.Signature(VectorAlu.output_layout(lanes)))`
    counters : :py:`Out(VectorCounters)`
    """

    #: Stages of each adder, of the multipliers' rounding, and of the input (pre) stage.
    ADD_STAGES = 2
    ROUND_STAGES = 2
    PRE_STAGES = 1
    #: The chain after the pre stage.
    CHAIN = ("add", "mul", "add", "mul", "add", "mul", "add", "add", "mul")

    def __init__(self, *, lanes, faults=frozenset()):
        if not isinstance(lanes, int) or isinstance(lanes, bool) or not 1 <= lanes <= 64:
            raise ValueError(f"lanes must be an integer from 1 to 64, not {lanes!r}")
        self._lanes = lanes
        self._faults = _check_faults(faults)
        super().__init__({
            "i": In(stream.Signature(self.input_layout(lanes))),
            "o": Out(stream.Signature(self.output_layout(lanes))),
            "counters": Out(VectorCounters),
        })

    @staticmethod
    def input_layout(lanes: int) -> data.StructLayout:
        """``op`` (3), ``a``, ``b`` (``ArrayLayout(32, lanes)``)."""
        return data.StructLayout({"op": 3, "a": data.ArrayLayout(32, lanes),
                                  "b": data.ArrayLayout(32, lanes)})

    @staticmethod
    def output_layout(lanes: int) -> data.StructLayout:
        """``value`` (``ArrayLayout(32, lanes)``), ``status`` (8, an ``ErrorCode``)."""
        return data.StructLayout({"value": data.ArrayLayout(32, lanes),
                                  "status": ERROR_CODE_BITS})

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def faults(self) -> frozenset:
        return self._faults

    @property
    def latency(self) -> int:
        """Cycles from accepting a transfer to its result being valid (no stalls)."""
        mul = 1 + self.ROUND_STAGES
        return self.PRE_STAGES + sum(self.ADD_STAGES if unit == "add" else mul
                                     for unit in self.CHAIN)

    def elaborate(self, platform):
        m = Module()
        en = Signal()
        accept = Signal()
        m.d.comb += [
            en.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(en),
            accept.eq(self.i.valid & en),
        ]
        op_in = self.i.payload.op

        # The beat's tag: op decode, travelling beside the lanes.
        tag = data.StructLayout({"valid": 1, "illegal": 1, "gelu": 1})
        tag_in = Signal(tag)
        m.d.comb += [tag_in.valid.eq(accept), tag_in.illegal.eq(op_in >= _OPS),
                     tag_in.gelu.eq(op_in == VectorOp.GELU)]
        tags = _delay(m, en, tag_in, self.latency, "tag", reset_less=False)
        o_valid = tags.valid

        values = []
        for lane in range(self._lanes):
            values.append(self._lane(m, en, op_in, self.i.payload.a[lane],
                                     self.i.payload.b[lane], lane))
        m.d.comb += self.o.valid.eq(o_valid)
        for lane, value in enumerate(values):
            m.d.comb += self.o.payload.value[lane].eq(Mux(tags.illegal, CANONICAL_NAN, value))
        m.d.comb += self.o.payload.status.eq(Mux(tags.illegal, ErrorCode.ILLEGAL_OPCODE,
                                                 ErrorCode.OK))

        # Counters.
        cnt = self.counters
        busy = Signal()
        in_flight = Signal(range(self.latency + 2))
        m.d.sync += in_flight.eq(in_flight + accept - (self.o.valid & self.o.ready))
        m.d.comb += busy.eq(in_flight.any())
        with m.If(accept):
            m.d.sync += cnt.beats.eq(cnt.beats + 1)
            with m.If(tag_in.illegal):
                m.d.sync += cnt.illegal.eq(cnt.illegal + 1)
        with m.If(busy):
            m.d.sync += cnt.busy.eq(cnt.busy + 1)
        with m.If(busy & en & ~self.i.valid):
            m.d.sync += cnt.stall_input.eq(cnt.stall_input + 1)
        with m.If(self.o.valid & ~self.o.ready):
            m.d.sync += cnt.stall_output.eq(cnt.stall_output + 1)
        return m

    def _lane(self, m: Module, en: Value, op: Value, a: Value, b: Value, lane: int) -> Value:
        """One lane's chain; returns its result (valid with the output tag)."""
        faults = self._faults
        name = f"l{lane}"

        def is_op(code):
            return op == code

        # Pre stage: MAX / ReLU / BF16 conversions, the GELU piece, the first addend.
        rhs = _wire(m, Mux(is_op(VectorOp.RELU), 0, b), f"{name}_rhs")
        a_nan = a[23:31].all() & a[:23].any()
        rhs_nan = rhs[23:31].all() & rhs[:23].any()
        a_key = Cat(Mux(a[31], ~a[:31], a[:31]), ~a[31])        # orders values, -0 < +0
        rhs_key = Cat(Mux(rhs[31], ~rhs[:31], rhs[:31]), ~rhs[31])
        if "max_zero_sign" in faults:
            both_zero = ~a[:31].any() & ~rhs[:31].any()
            a_wins = (a_key >= rhs_key) | both_zero
        else:
            a_wins = a_key >= rhs_key
        maximum = Mux(a_nan | rhs_nan, CANONICAL_NAN, Mux(a_wins, a, rhs))
        if "bf16_truncate" in faults:
            bf16 = a[16:32]
        else:
            bf16 = (a + 0x7FFF + a[16])[16:32]
        bf16 = Mux(a_nan, BF16_CANONICAL_NAN, bf16)

        mag = a[:31]
        saturated = _wire(m, mag >= _TOP_BITS, f"{name}_saturated")
        exp = a[23:31]
        sig = Cat(a[:23], exp.any())
        # k = floor(|a| * 8) = sig >> (147 - max(exp, 1)); below 2**-5 (shift >= 24) it is 0.
        shift = (150 - _STEP_BITS) - Cat(exp[0] | ~exp.any(), exp[1:])
        k_small = _wire(m, sig >> shift[:5], f"{name}_k_small")
        k = _wire(m, Mux(saturated, GELU_SEGMENTS, Mux(shift >= 24, 0, k_small[:_STEP_BITS + 3])),
                  f"{name}_k")
        x0 = Signal(32, name=f"{name}_x0")
        with m.Switch(k):
            for seg, bits in enumerate(_X0_BITS):
                with m.Case(seg):
                    m.d.comb += x0.eq(bits)
            with m.Default():
                m.d.comb += x0.eq(0)

        gelu = is_op(VectorOp.GELU)
        v0 = Signal(32, name=f"{name}_v0")
        k0 = Signal(32, name=f"{name}_k0")
        with m.Switch(op):
            with m.Case(VectorOp.ADD):
                m.d.comb += [v0.eq(a), k0.eq(b)]
            with m.Case(VectorOp.MAX, VectorOp.RELU):
                m.d.comb += [v0.eq(maximum), k0.eq(FP32_NEG_ZERO)]
            with m.Case(VectorOp.GELU):
                m.d.comb += [v0.eq(Mux(saturated, 0, mag)), k0.eq(x0 | FP32_NEG_ZERO)]
            with m.Case(VectorOp.TO_BF16):
                m.d.comb += [v0.eq(bf16), k0.eq(FP32_NEG_ZERO)]
            with m.Case(VectorOp.FROM_BF16):
                m.d.comb += [v0.eq(Cat(Const(0, 16), a[:16])), k0.eq(FP32_NEG_ZERO)]
            with m.Default():   # MUL, and the undefined code (its result is replaced)
                m.d.comb += [v0.eq(a), k0.eq(FP32_NEG_ZERO)]

        ctl = data.StructLayout({"mul": 1, "gelu": 1, "pos": 1, "neg_inf": 1,
                                 "k": range(GELU_SEGMENTS + 1)})
        ctl_in = Signal(ctl, name=f"{name}_ctl_in")
        pos = ~a[31]
        if "gelu_no_tail" in faults:
            pos = Const(1)
        m.d.comb += [ctl_in.mul.eq(is_op(VectorOp.MUL)), ctl_in.gelu.eq(gelu),
                     ctl_in.pos.eq(pos), ctl_in.neg_inf.eq(a == FP32_NEG_INF), ctl_in.k.eq(k)]
        # Registered pre stage.
        state = {
            "v": _delay(m, en, v0, 1, f"{name}_v0r"),
            "k0": _delay(m, en, k0, 1, f"{name}_k0r"),
            "ctl": _delay(m, en, ctl_in, 1, f"{name}_ctl"),
            "x": _delay(m, en, a, 1, f"{name}_x"),
            "b": _delay(m, en, b, 1, f"{name}_b"),
        }

        def coefficient(k, j, stage):
            c = Signal(32, name=f"{name}_c{j}_s{stage}")
            with m.Switch(k):
                for seg in range(GELU_SEGMENTS):
                    with m.Case(seg):
                        m.d.comb += c.eq(int(GELU_TABLE[seg, j]))
                with m.Default():
                    m.d.comb += c.eq(0)
            return c

        mul_faults = frozenset({"drop_sticky"}) if "mul_drop_sticky" in faults else frozenset()
        one, neg_zero = Const(FP32_ONE, 32), Const(FP32_NEG_ZERO, 32)
        for stage, unit in enumerate(self.CHAIN):
            ctl_s = state["ctl"]
            g = ctl_s.gelu
            if unit == "add":
                m.submodules[f"{name}_add{stage}"] = fu = Fp32Add(stages=self.ADD_STAGES)
                lhs, addend = state["v"], neg_zero
                if stage == 0:
                    addend = state["k0"]
                elif stage == 7:   # p = 1 - q for x >= 0 (GELU)
                    flip = g & ctl_s.pos
                    lhs = Cat(state["v"][:31], state["v"][31] ^ flip)
                    addend = Mux(flip, one, neg_zero)
                else:
                    j = {2: 2, 4: 1, 6: 0}[stage]
                    addend = Mux(g, coefficient(ctl_s.k, j, stage), neg_zero)
                m.d.comb += [fu.en.eq(en), fu.a.eq(lhs), fu.b.eq(addend)]
                latency = self.ADD_STAGES
            else:
                m.submodules[f"{name}_mul{stage}"] = fu = Fp32Mul(
                    round_stages=self.ROUND_STAGES, faults=mul_faults)
                if stage == 1:
                    factor = Mux(ctl_s.mul, state["b"], Mux(g, coefficient(ctl_s.k, 3, 1), one))
                elif stage == 8:
                    factor = Mux(g, state["x"], one)
                else:
                    factor = Mux(g, state["t"], one)
                m.d.comb += [fu.en.eq(en), fu.a.eq(state["v"]), fu.b.eq(factor)]
                latency = fu.latency
            nxt = {"v": fu.o}
            for key in ("ctl", "x", "t") + (("b",) if stage == 0 else ()):
                if key in state:
                    nxt[key] = _delay(m, en, state[key], latency, f"{name}_{key}{stage}")
            if stage == 0:
                nxt["t"] = fu.o
            if "t" in nxt and stage >= 5:
                del nxt["t"]
            state = nxt
        result = state["v"]
        return Mux(state["ctl"].gelu & state["ctl"].neg_inf, FP32_NEG_ZERO, result)
