"""A stream register slice: every output of it is a flip-flop.

:class:`StreamRegister` sits between a producer and a consumer of a :mod:`amaranth.lib.stream`
and cuts every combinational path through the handshake: ``o.valid`` and ``o.payload`` come
from a register, and so does ``i.ready``, so neither side's logic reaches the other's in one
cycle. It keeps the full rate (one transfer a cycle when the consumer never stalls) and the
order, drops nothing and duplicates nothing; a transfer leaves one cycle after it entered at
the earliest. It holds at most two transfers: the output register and a skid register that
catches the transfer already offered when the consumer stalls. (Amaranth's
``SyncFIFOBuffered`` registers both sides too, but a transfer takes two cycles through it, and
the depth that gives it full rate puts a memory inside.)
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StreamRegister"]


class StreamRegister(wiring.Component):
    """One-cycle register slice of a stream of ``shape`` (module docstring).

    Parameters
    ----------
    shape : shape-castable
        The payload.

    Members
    -------
    i : In(stream.Signature(shape))
    o : Out(stream.Signature(shape))
    empty : Out(1)
        No transfer held (the output and the skid register are both free).
    """

    def __init__(self, shape):
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
            "empty": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        skid_valid = Signal()
        skid = Signal.like(self.i.payload)
        m.d.comb += [self.i.ready.eq(~skid_valid),
                     self.empty.eq(~self.o.valid & ~skid_valid)]
        with m.If(~self.o.valid | self.o.ready):
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & self.i.ready):
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m
