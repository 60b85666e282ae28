"""The MX dot-product engine: the processing element of the Tile Tensor Unit.

:class:`MxDotEngine` computes MX block dot products at one beat a cycle, bit-exact to
:func:`~openmaia.numerics.dot.block_dot` and :func:`~openmaia.numerics.dot.dot_blocks`. The
contract (ports, framing, rates, latency, faults) is docs/dot-engine.md; this module is its
implementation.
"""

import functools
from collections.abc import Iterable

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..numerics.dot import E8M0_BIAS, E8M0_NAN
from ..numerics.formats import BLOCK_SIZE, Format
from .dot_lanes import (FLAGS_LAYOUT, add_carry, aligned_term, fmt_is, lane_product,
                        lane_widths, product_layout, sum_terms)
from .element_decoder import _check_formats
from .fp32 import Fp32Add, Fp32Round

__all__ = ["MxDotEngine", "DotBeat", "DotResult", "FAULTS", "LANES"]

#: Deliberate bugs :class:`MxDotEngine` can build in (mutation-testing hooks).
FAULTS = {
    "rounding_truncate": "the FP32 rounding of the block sum truncates instead of RNE",
    "drop_sticky":       "the FP32 rounding of the block sum ignores the sticky bit",
    "zero_sign":         "an exact-zero block sum of negative zeros gives +0",
    "ignore_nan_scale":  "scale 255 is taken as 2**128 instead of NaN",
    "fp4_nibble_swap":   "FP4 x FP4 mode reads A's bits 7:4 as the lower-K element",
    "lane_stuck_zero":   "lane 0's products are zero",
}
_ROUND_FAULTS = frozenset({"rounding_truncate", "drop_sticky"})

#: The lane counts an engine can have (divisors of half a block).
LANES = (1, 2, 4, 8, 16)


def _slot_width(slots: int) -> int:
    return max(1, (slots - 1).bit_length())


class DotBeat(data.Struct):
    """One input beat: a slice of one 32-element block of A and of B.

    This class has no layout of its own: :meth:`of` returns its subclass for a lane and slot
    count. Fields (docs/dot-engine.md): ``a``, ``b`` (``ArrayLayout(8, lanes)``, lane ``j`` =
    element ``beat * lanes + j``; in FP4 x FP4 mode byte ``j`` holds elements ``2j`` (bits 3:0)
    and ``2j + 1`` (bits 7:4) of the beat's ``2 * lanes``), ``fmt_a``, ``fmt_b`` (3, format
    ``hw_code``), ``scale_a``, ``scale_b`` (8, E8M0), ``first``, ``last`` (1), ``slot``
    (``log2(slots)``, at least 1) and ``acc`` (32, FP32 accumulator input). All but ``a`` and
    ``b`` are taken from a block's first beat.
    """

    @staticmethod
    def of(lanes: int, slots: int = 4) -> "type[DotBeat]":
        """The :class:`DotBeat` struct for ``lanes`` lanes and ``slots`` accumulators."""
        return _dot_beat(lanes, _slot_width(slots))


class DotResult(data.Struct):
    """One result: ``value`` (32, FP32 bits) and ``slot``. :meth:`of` gives the layout."""

    @staticmethod
    def of(slots: int = 4) -> "type[DotResult]":
        """The :class:`DotResult` struct for ``slots`` accumulators."""
        return _dot_result(_slot_width(slots))


@functools.cache
def _dot_beat(lanes: int, slot_width: int):
    class _DotBeat(DotBeat):
        a:       data.ArrayLayout(8, lanes)
        b:       data.ArrayLayout(8, lanes)
        fmt_a:   3
        fmt_b:   3
        scale_a: 8
        scale_b: 8
        first:   1
        last:    1
        slot:    slot_width
        acc:     32

    _DotBeat.__name__ = _DotBeat.__qualname__ = f"DotBeat[{lanes}, {slot_width}]"
    return _DotBeat


@functools.cache
def _dot_result(slot_width: int):
    class _DotResult(DotResult):
        value: 32
        slot:  slot_width

    _DotResult.__name__ = _DotResult.__qualname__ = f"DotResult[{slot_width}]"
    return _DotResult


class MxDotEngine(wiring.Component):
    """MX block dot products, one beat a cycle in every mode (docs/dot-engine.md).

    A beat carries ``lanes`` elements of A and of B (``2 * lanes`` in FP4 x FP4 mode); a block
    is ``32 / lanes`` beats (``16 / lanes`` in FP4 x FP4 mode). Each block's exact sum is rounded
    once to FP32 and added to its slot's accumulator (or to ``acc`` when ``first``); an output's
    result leaves on ``o`` after its ``last`` block, in the order of the last blocks. Results are
    those of :func:`~openmaia.numerics.dot.dot_blocks`, bit for bit.

    Pipeline (all registers advance together while ``o`` is not stalled): stage 0 decodes and
    multiplies, stage 1 aligns, sums and accumulates the block, then :class:`Fp32Round` and
    :class:`Fp32Add`. :attr:`latency` cycles pass from accepting the beat that completes an
    output to its result being valid. ``i.ready`` depends combinationally on ``o.ready`` and,
    through the accumulator interlock, on ``i.payload``; ``o.valid`` depends on no input.

    Parameters
    ----------
    formats : collection of :class:`~openmaia.numerics.formats.Format` or names
        The built-in formats; the others are compiled out and the datapath narrows to them.
    lanes : :class:`int`
        Element lanes ``V``: 1, 2, 4, 8 or 16.
    slots : :class:`int`
        FP32 accumulators (outputs in flight): a power of two, 1 to 64.
    fp4_double_rate : :class:`bool`
        Build the second FP4 product per lane (E2M1 x E2M1 at ``2 * lanes`` elements a beat).
        Has no effect unless E2M1 is built in.
    faults : collection of :class:`str`
        Deliberate bugs to build in, from :data:`FAULTS`. Empty for the real design.

    Members
    -------
    i : :py:`In(stream.Signature(DotBeat.of(lanes, slots)))`
    o : :py:`Out(stream.Signature(DotResult.of(slots)))`
    """

    #: Latency of the FP32 rounding and of the FP32 adder (enabled cycles).
    ROUND_STAGES = 2
    ADD_STAGES = 2

    def __init__(self, *, formats, lanes, slots=4, fp4_double_rate=True, faults=frozenset()):
        self._formats = _check_formats(formats)
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes not in LANES:
            raise ValueError(f"lanes must be one of {', '.join(map(str, LANES))}, not {lanes!r}")
        if (not isinstance(slots, int) or isinstance(slots, bool) or not 1 <= slots <= 64
                or slots & (slots - 1)):
            raise ValueError(f"slots must be a power of two from 1 to 64, not {slots!r}")
        if not isinstance(fp4_double_rate, bool):
            raise TypeError(f"fp4_double_rate must be a bool, not {fp4_double_rate!r}")
        self._lanes = lanes
        self._slots = slots
        self._double_rate = fp4_double_rate and Format.E2M1 in self._formats
        self._faults = self._check_faults(faults)
        self._widths = lane_widths(self._formats, self._double_rate)
        super().__init__({
            "i": In(stream.Signature(DotBeat.of(lanes, slots))),
            "o": Out(stream.Signature(DotResult.of(slots))),
        })

    def _check_faults(self, faults) -> frozenset:
        if isinstance(faults, str) or not isinstance(faults, Iterable):
            raise TypeError(f"faults must be a collection of fault names, not {faults!r}")
        faults = frozenset(faults)
        for fault in sorted(faults, key=str):
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
            if fault == "fp4_nibble_swap" and not self._double_rate:
                raise ValueError("fault 'fp4_nibble_swap' needs E2M1 built in and "
                                 "fp4_double_rate")
        return faults

    @property
    def formats(self) -> frozenset:
        return self._formats

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def double_rate(self) -> bool:
        """E2M1 x E2M1 runs at ``2 * lanes`` elements a beat."""
        return self._double_rate

    @property
    def faults(self) -> frozenset:
        return self._faults

    @property
    def sum_width(self) -> int:
        """Signed bits of the exact block sum (``max(block_sum_bits)`` over built-in pairs)."""
        return self._widths.sum

    @property
    def widths(self):
        """All datapath widths (:class:`~openmaia.compute.dot_lanes.LaneWidths`)."""
        return self._widths

    @property
    def latency(self) -> int:
        """Cycles from accepting the beat that completes an output to its result being valid
        (no stalls): 2 (stages 0 and 1) + FP32 rounding + FP32 addition."""
        return 2 + self.ROUND_STAGES + self.ADD_STAGES

    def beats_per_block(self, fmt_a, fmt_b) -> int:
        """Beats of one block for a format pair (names or :class:`Format`)."""
        fmt_a, fmt_b = Format.of(fmt_a), Format.of(fmt_b)
        fp4 = self._double_rate and fmt_a is Format.E2M1 and fmt_b is Format.E2M1
        return (BLOCK_SIZE // 2 if fp4 else BLOCK_SIZE) // self._lanes

    def elaborate(self, platform):
        m = Module()
        lanes, widths, faults = self._lanes, self._widths, self._faults
        beat_in = self.i.payload
        en = Signal()                # every register of the pipeline advances
        accept = Signal()

        # Framing: the beat counter, and the block's settings latched from its first beat.
        beats = BLOCK_SIZE // lanes
        beat = Signal(range(beats))
        fmt_a_q, fmt_b_q, fp4_q = Signal(3), Signal(3), Signal()
        first_beat, last_beat, fp4_in, fp4 = Signal(), Signal(), Signal(), Signal()
        fmt_a, fmt_b = Signal(3), Signal(3)
        if self._double_rate:
            m.d.comb += fp4_in.eq(fmt_is(beat_in.fmt_a, Format.E2M1)
                                  & fmt_is(beat_in.fmt_b, Format.E2M1))
        m.d.comb += [
            first_beat.eq(~beat.any()),
            fmt_a.eq(Mux(first_beat, beat_in.fmt_a, fmt_a_q)),
            fmt_b.eq(Mux(first_beat, beat_in.fmt_b, fmt_b_q)),
            fp4.eq(Mux(first_beat, fp4_in, fp4_q)),
            last_beat.eq(Mux(fp4, beat == beats // 2 - 1, beat == beats - 1)),
        ]

        header = data.StructLayout({
            "first": 1, "last": 1, "slot": len(beat_in.slot), "acc": 32,
            "exp": signed(widths.block_exp), "scale_nan": 1,
        })
        hdr0 = Signal(header)        # the block in stage 0 / 1
        first_now, slot_now = Signal(), Signal.like(beat_in.slot)
        m.d.comb += [first_now.eq(Mux(first_beat, beat_in.first, hdr0.first)),
                     slot_now.eq(Mux(first_beat, beat_in.slot, hdr0.slot))]

        def lsb(fmt_sel):
            value = Const(0, signed(6))
            for fmt in self._formats:
                value = Mux(fmt_is(fmt_sel, fmt), fmt.spec.lsb_exp, value)
            return value

        scale_nan = Const(0)
        if "ignore_nan_scale" not in faults:
            scale_nan = (beat_in.scale_a == E8M0_NAN) | (beat_in.scale_b == E8M0_NAN)
        header_in = Signal(header)
        m.d.comb += [
            header_in.first.eq(beat_in.first),
            header_in.last.eq(beat_in.last),
            header_in.slot.eq(beat_in.slot),
            header_in.acc.eq(beat_in.acc),
            header_in.exp.eq(lsb(beat_in.fmt_a) + lsb(beat_in.fmt_b) + beat_in.scale_a
                             + beat_in.scale_b - 2 * E8M0_BIAS),
            header_in.scale_nan.eq(scale_nan),
        ]

        # Accumulator interlock: a block that reads its slot (not `first`) may not complete
        # within ADD_STAGES enabled cycles of the previous block of that slot.
        slot_bits = (self._slots - 1).bit_length()

        def index(slot):             # the slot register a `slot` field selects
            return slot[:slot_bits] if slot_bits else Const(0)

        slot_index = index(slot_now)
        hazard = Const(0)
        if self.ADD_STAGES > 1:
            busy = Array(Signal(range(self.ADD_STAGES), name=f"busy{s}")
                         for s in range(self._slots))
            hazard = last_beat & ~first_now & busy[slot_index].any()
            with m.If(en):
                for s, counter in enumerate(busy):
                    with m.If(accept & last_beat & (slot_index == s)):
                        m.d.sync += counter.eq(self.ADD_STAGES - 1)
                    with m.Elif(counter.any()):
                        m.d.sync += counter.eq(counter - 1)

        m.d.comb += [
            en.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(en & ~hazard),
            accept.eq(self.i.valid & self.i.ready),
        ]
        with m.If(accept):
            m.d.sync += beat.eq(Mux(last_beat, 0, beat + 1))
            with m.If(first_beat):
                m.d.sync += [fmt_a_q.eq(beat_in.fmt_a), fmt_b_q.eq(beat_in.fmt_b),
                             fp4_q.eq(fp4_in), hdr0.eq(header_in)]

        # Stage 0: decode and multiply, per lane; the beat's flags.
        lo_layout = product_layout(widths.product, widths.shift)
        hi_layout = product_layout(widths.hi_product, widths.hi_shift)
        lo_q = [Signal(lo_layout, name=f"lo{j}") for j in range(lanes)]
        hi_q = [Signal(hi_layout, name=f"hi{j}") for j in range(lanes)] if self._double_rate \
            else []
        flags = []
        for j in range(lanes):
            lo, hi, lane_flags = lane_product(
                m, beat_in.a[j], beat_in.b[j], fmt_a, fmt_b, fp4, formats=self._formats,
                widths=widths, swap_a="fp4_nibble_swap" in faults,
                stuck=j == 0 and "lane_stuck_zero" in faults, name=f"lane{j}")
            flags.append(lane_flags)
            with m.If(en):
                m.d.sync += lo_q[j].eq(lo)
                if hi is not None:
                    m.d.sync += hi_q[j].eq(hi)
        beat_flags = Signal(FLAGS_LAYOUT)
        m.d.comb += [
            beat_flags.nan.eq(Cat(f.nan for f in flags).any()),
            beat_flags.inf_pos.eq(Cat(f.inf_pos for f in flags).any()),
            beat_flags.inf_neg.eq(Cat(f.inf_neg for f in flags).any()),
            beat_flags.neg_zero.eq(Cat(f.neg_zero for f in flags).all()),
        ]
        flags_q = Signal(FLAGS_LAYOUT)
        valid_q, first_q, last_q = Signal(), Signal(), Signal()
        with m.If(en):
            m.d.sync += [flags_q.eq(beat_flags), valid_q.eq(accept), first_q.eq(first_beat),
                         last_q.eq(last_beat)]

        # Stage 1: align, sum the beat, accumulate the block.
        main = [aligned_term(m, p, widths.stages, name=f"term{j}") for j, p in enumerate(lo_q)]
        high = [aligned_term(m, p, widths.hi_stages, name=f"hi_term{j}")
                for j, p in enumerate(hi_q)]
        carries = [neg for _, neg in main + high]
        total, carries = sum_terms([t for t, _ in main], carries, widths.sum)
        if high:
            high_sum, carries = sum_terms([t for t, _ in high], carries, widths.sum)
            total = add_carry(total, high_sum, carries.pop())
        block_sum = Signal(signed(widths.sum))
        block_flags = Signal(FLAGS_LAYOUT)
        done = Signal()              # block_sum and block_flags hold a whole block
        hdr1 = Signal(header)
        base = Mux(first_q, 0, block_sum)
        with m.If(en):
            m.d.sync += done.eq(valid_q & last_q)
            with m.If(valid_q):
                m.d.sync += [
                    block_sum.eq(add_carry(base, total, carries.pop())),
                    block_flags.nan.eq((block_flags.nan & ~first_q) | flags_q.nan),
                    block_flags.inf_pos.eq((block_flags.inf_pos & ~first_q) | flags_q.inf_pos),
                    block_flags.inf_neg.eq((block_flags.inf_neg & ~first_q) | flags_q.inf_neg),
                    block_flags.neg_zero.eq((block_flags.neg_zero | first_q)
                                            & flags_q.neg_zero),
                ]
            with m.If(valid_q & last_q):
                m.d.sync += hdr1.eq(hdr0)
        assert not carries

        # FP32 rounding of the block sum.
        m.submodules.round = rnd = Fp32Round(sum_width=widths.sum, exp_width=widths.block_exp,
                                             stages=self.ROUND_STAGES,
                                             faults=faults & _ROUND_FAULTS)
        both_inf = block_flags.inf_pos & block_flags.inf_neg
        m.d.comb += [
            rnd.en.eq(en),
            rnd.i.sum.eq(block_sum),
            rnd.i.exp.eq(hdr1.exp),
            rnd.i.nan.eq(block_flags.nan | hdr1.scale_nan | both_inf),
            rnd.i.inf.eq(block_flags.inf_pos | block_flags.inf_neg),
            rnd.i.inf_neg.eq(block_flags.inf_neg),
            rnd.i.zero_neg.eq(block_flags.neg_zero if "zero_sign" not in faults else 0),
        ]
        tag = data.StructLayout({"valid": 1, "first": 1, "last": 1, "slot": len(beat_in.slot),
                                 "acc": 32})
        tag_in = Signal(tag)
        m.d.comb += [tag_in.valid.eq(done), tag_in.first.eq(hdr1.first),
                     tag_in.last.eq(hdr1.last), tag_in.slot.eq(hdr1.slot),
                     tag_in.acc.eq(hdr1.acc)]
        for n in range(self.ROUND_STAGES):
            reg = Signal(tag, name=f"round_tag{n}")
            with m.If(en):
                m.d.sync += reg.eq(tag_in)
            tag_in = reg
        rounded = tag_in

        # FP32 accumulation: `acc` for a first block, else the slot (or the adder's output for
        # a slot written back this very cycle).
        m.submodules.add = add = Fp32Add(stages=self.ADD_STAGES)
        accs = Array(Signal(32, name=f"acc{s}") for s in range(self._slots))
        result = data.StructLayout({"valid": 1, "last": 1, "slot": len(beat_in.slot)})
        pipe = Signal(result)
        m.d.comb += [pipe.valid.eq(rounded.valid), pipe.last.eq(rounded.last),
                     pipe.slot.eq(rounded.slot)]
        for n in range(self.ADD_STAGES):
            reg = Signal(result, name=f"add_tag{n}")
            with m.If(en):
                m.d.sync += reg.eq(pipe)
            pipe = reg

        bypass = pipe.valid & (index(pipe.slot) == index(rounded.slot))
        m.d.comb += [
            add.en.eq(en),
            add.a.eq(Mux(rounded.first, rounded.acc,
                         Mux(bypass, add.o, accs[index(rounded.slot)]))),
            add.b.eq(rnd.o),
        ]
        with m.If(en & pipe.valid):
            for s, reg in enumerate(accs):
                with m.If(index(pipe.slot) == s):
                    m.d.sync += reg.eq(add.o)
        m.d.comb += [
            self.o.valid.eq(pipe.valid & pipe.last),
            self.o.payload.value.eq(add.o),
            self.o.payload.slot.eq(pipe.slot),
        ]
        return m
