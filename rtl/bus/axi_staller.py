"""A test aid between an AXI4 manager and a subordinate: random pauses on all five channels,
with a probability set at run time (the tile's HBM_PAUSE register), and no pause at all at 0.

Pauses follow the AXI handshake rules: a channel is paused by holding back ``valid`` only
before it is offered (once ``valid`` is seen by the receiver it stays until the transfer), and
by holding back ``ready`` otherwise, so the stalled traffic is legal AXI.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .axi import Axi4Signature

__all__ = ["AxiStaller"]

#: Channels, and whether they flow from manager to subordinate.
_CHANNELS = {"aw": True, "w": True, "ar": True, "r": False, "b": False}


class AxiStaller(wiring.Component):
    """``s_axi`` (from the manager) -> ``m_axi`` (to the subordinate), with random pauses.

    Parameters
    ----------
    signature : Axi4Signature
        Both sides' signature.
    seed : int
        Nonzero start value of the pause generators (distinct stallers get distinct seeds).

    Ports
    -----
    s_axi : In(signature), m_axi : Out(signature)
    pause : In(8)
        Each cycle each channel is paused with probability ``pause / 256`` (0: a plain wire).
    """

    def __init__(self, *, signature, seed=1):
        if not isinstance(signature, Axi4Signature):
            raise TypeError(f"signature must be an Axi4Signature, not {signature!r}")
        if not isinstance(seed, int) or not 0 < seed < 1 << 16:
            raise ValueError(f"seed must be an integer in 1..65535, not {seed!r}")
        self.seed, self.axi = seed, signature
        super().__init__({"s_axi": In(signature), "m_axi": Out(signature), "pause": In(8)})

    def elaborate(self, platform):
        m = Module()
        s, d = self.s_axi, self.m_axi
        for i, (ch, forward) in enumerate(_CHANNELS.items()):
            lfsr = Signal(16, init=(self.seed * (2 * i + 1) * 0x9E37) & 0xFFFF or 1,
                          name=f"{ch}_lfsr")
            m.d.sync += lfsr.eq(Cat(lfsr[1:], lfsr[0] ^ lfsr[2] ^ lfsr[3] ^ lfsr[5]))
            block = Signal(name=f"{ch}_block")
            m.d.comb += block.eq(lfsr[:8] < self.pause)
            src, dst = (s, d) if forward else (d, s)
            valid, ready = f"{ch}valid", f"{ch}ready"
            offered = Signal(name=f"{ch}_offered")     # valid shown to the receiver, not taken
            out_valid = Signal(name=f"{ch}_out_valid")
            m.d.comb += out_valid.eq(getattr(src, valid) & (~block | offered))
            m.d.sync += offered.eq(out_valid & ~getattr(dst, ready))
            m.d.comb += [getattr(dst, valid).eq(out_valid),
                         getattr(src, ready).eq(getattr(dst, ready) & out_valid)]
        for name, member in self.axi.members.items():
            if name.endswith(("valid", "ready")):
                continue
            if member.flow == Out:
                m.d.comb += getattr(d, name).eq(getattr(s, name))
            else:
                m.d.comb += getattr(s, name).eq(getattr(d, name))
        return m
