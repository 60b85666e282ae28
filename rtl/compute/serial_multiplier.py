"""A shift-and-add multiplier: one adder, one product bit a cycle.

The command and descriptor checks of the tile (:class:`~openmaia.tile.ttu_engine.TileTensorEngine`,
:class:`~openmaia.tile.dma.TileDma`) multiply a row count by a stride to find the last byte an
operation touches. Combinational, each such product is an ``a_width`` x ``b_width`` array of
adders (or DSP blocks); a small FPGA such as the iCE40UP5K has neither the logic cells nor the 8
DSPs for the dozen of them a tile has. :class:`SerialMultiplier` gives the same exact product
``a_width`` cycles later from one ``b_width``-bit adder and ``a_width + b_width + 1`` flip-flops.
``Config.serial_checks`` chooses it.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SerialMultiplier"]


class SerialMultiplier(wiring.Component):
    """Unsigned ``a * b``, exact, ``a_width`` cycles after ``start``.

    Contract: in a cycle with ``start`` high and ``busy`` low, ``a`` and ``b`` are sampled;
    ``busy`` is then high for exactly ``a_width`` cycles, after which ``product`` holds
    ``a * b`` (all ``a_width + b_width`` bits) and ``busy`` is low, until the next ``start``.
    ``start`` while ``busy`` is ignored. :attr:`cycles` is ``a_width``.

    Parameters
    ----------
    a_width, b_width : int
        Bits of the multiplier ``a`` (one cycle each) and of the multiplicand ``b`` (the
        adder's width), at least 1.

    Ports
    -----
    start : In(1)
    a : In(a_width), b : In(b_width)
    busy : Out(1)
    product : Out(a_width + b_width)
    """

    def __init__(self, *, a_width: int, b_width: int):
        for name, value in (("a_width", a_width), ("b_width", b_width)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self._a_width, self._b_width = a_width, b_width
        super().__init__({
            "start": In(1), "a": In(a_width), "b": In(b_width),
            "busy": Out(1), "product": Out(a_width + b_width),
        })

    a_width = property(lambda self: self._a_width)
    b_width = property(lambda self: self._b_width)
    cycles = property(lambda self: self._a_width)

    def elaborate(self, platform):
        m = Module()
        aw, bw = self._a_width, self._b_width
        # product = {high, low}: `low` starts as the multiplier and shifts out one bit a cycle
        # while the finished product bits shift in from `high`.
        high = Signal(bw)
        low = Signal(aw)
        mcand = Signal(bw)
        left = Signal(range(aw + 1))
        m.d.comb += [self.busy.eq(left != 0), self.product.eq(Cat(low, high))]
        with m.If(self.busy):
            partial = Signal(bw + 1)
            m.d.comb += partial.eq(high + (mcand & low[0].replicate(bw)))
            m.d.sync += [high.eq(partial[1:]), low.eq(Cat(low[1:], partial[0])),
                         left.eq(left - 1)]
        with m.Elif(self.start):
            m.d.sync += [high.eq(0), low.eq(self.a), mcand.eq(self.b), left.eq(aw)]
        return m
