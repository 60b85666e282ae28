"""The board top: the UART host bridge (:class:`~openmaia.fpga.host_bridge.HostBridge`) and one
tile (:class:`~openmaia.tile.tile.Tile`) with its on-chip memory, wired together, and optionally
the power-up self-test (:class:`~openmaia.fpga.self_test.SelfTest`).

```text
 rx --> HostBridge --m_axil--> [port mux] --> Tile.s_axil
 tx <--            --m_axi---> [port mux] --> Tile.host_axi      Tile.irq --> irq
                   SelfTest -----^  (owns both ports from reset until it is done)
```

The host reaches the tile only through the serial pins, with the protocol of
:mod:`openmaia.fpga.link`; the SDK's ``fpga`` backend (:mod:`openmaia.sdk.fpga`) is its host
side. Board builds wrap this component (clock, reset and pins from the platform). docs/fpga.md,
"Board top and the ``fpga`` backend", is the contract.
"""

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import Config
from ..tile.tile import Tile
from .host_bridge import HOST_BRIDGE_FAULTS, HostBridge
from .self_test import SelfTest, SelfTestImage

__all__ = ["BoardTile"]


class BoardTile(wiring.Component):
    """A tile behind the UART host bridge.

    Parameters (keyword-only except ``config``)
    ----------
    config : Config
        The tile's configuration (an FPGA preset: ``ice40``, ``ulx3s``; any preset elaborates).
    hbm_bytes : int
        The tile's memory (on-chip with an ``ONCHIP`` preset): a power of two of at least 4 KiB
        a pseudo-channel, as :class:`~openmaia.tile.tile.Tile` requires.
    divisor : int
        Clock cycles a UART bit (:func:`openmaia.fpga.uart.uart_divisor`).
    rx_fifo_depth : int
        The bridge's receive FIFO (bytes).
    faults : set of str
        Passed to the bridge (:data:`~openmaia.fpga.host_bridge.HOST_BRIDGE_FAULTS`), for the
        mutation tests of the end-to-end bench only.

    hbm_init : bytes-like or None
        Initial contents of the tile's on-chip memory (:class:`~openmaia.tile.tile.Tile`).
    self_test : SelfTestImage or None
        The power-up self-test (:class:`~openmaia.fpga.self_test.SelfTestImage`, made for this
        ``config`` and ``hbm_bytes``): the memory starts with ``self_test.memory`` (so
        ``hbm_init`` must be None) and a :class:`~openmaia.fpga.self_test.SelfTest` owns the
        tile's register and memory ports from reset until it is done; the bridge's requests
        wait at their AXI handshakes until then (the bridge answers PING alone). Then the
        bridge owns them for good. docs/fpga.md, "Self-test".
    self_test_faults : set of str
        Passed to the :class:`~openmaia.fpga.self_test.SelfTest` (mutation tests only).

    Members: ``rx`` (``In(1)``, idle high, from the host's TX), ``tx`` (``Out(1)``, idle high,
    to the host's RX), ``irq`` (``Out(1)``, the tile's interrupt line), ``self_test_done`` and
    ``self_test_pass`` (``Out(1)`` each: the power-up self-test has finished / has finished and
    passed; both stay 0 in a build without a self-test). ``bridge``, ``tile`` and
    ``self_test`` (None without one) are the parts (the host driver takes the register map
    from ``tile.register_map``).
    """

    def __init__(self, config, *, hbm_bytes, divisor, rx_fifo_depth=32, hbm_init=None,
                 self_test=None, self_test_faults=frozenset(), faults=frozenset()):
        if not isinstance(config, Config):
            raise TypeError(f"config must be a Config, not {type(config).__name__}")
        faults = frozenset(faults)
        if faults - HOST_BRIDGE_FAULTS:
            raise ValueError(f"unknown faults {sorted(faults - HOST_BRIDGE_FAULTS)}; known: "
                             f"{sorted(HOST_BRIDGE_FAULTS)}")
        if self_test is not None:
            if not isinstance(self_test, SelfTestImage):
                raise TypeError(f"self_test must be a SelfTestImage or None, not "
                                f"{type(self_test).__name__}")
            if self_test.config != config or self_test.memory_bytes != hbm_bytes:
                raise ValueError(f"the self-test image was made for {self_test.config.name!r} "
                                 f"with {self_test.memory_bytes} bytes of memory, not "
                                 f"{config.name!r} with {hbm_bytes}")
            if hbm_init is not None:
                raise ValueError("hbm_init and self_test both set: the self-test's image is "
                                 "the memory's initial contents")
            hbm_init = self_test.memory
        elif self_test_faults:
            raise ValueError("self_test_faults without a self_test")
        self.config, self.hbm_bytes, self.divisor = config, hbm_bytes, divisor
        self.tile = Tile(config, hbm_bytes=hbm_bytes, hbm_init=hbm_init)
        self.bridge = HostBridge.from_config(config, divisor=divisor,
                                             reg_addr_bits=self.tile.s_axil.signature.addr_width,
                                             rx_fifo_depth=rx_fifo_depth, faults=faults)
        self.self_test = None
        if self_test is not None:
            if self_test.register_addr_bits != self.tile.s_axil.signature.addr_width:
                raise ValueError(f"the self-test image has {self_test.register_addr_bits} "
                                 f"register address bits, the tile "
                                 f"{self.tile.s_axil.signature.addr_width}")
            self.self_test = SelfTest(self_test, faults=self_test_faults)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "irq": Out(1),
            "self_test_done": Out(1),
            "self_test_pass": Out(1),
        })

    @property
    def register_map(self):
        return self.tile.register_map

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = self.bridge
        m.submodules.tile = tile = self.tile
        if self.self_test is None:
            wiring.connect(m, bridge=bridge.m_axil, tile=tile.s_axil)
            wiring.connect(m, bridge=bridge.m_axi, tile=tile.host_axi)
        else:
            m.submodules.self_test = st = self.self_test
            _port_mux(m, st.active, st.m_axil, bridge.m_axil, tile.s_axil)
            _port_mux(m, st.active, st.m_axi, bridge.m_axi, tile.host_axi)
            m.d.comb += [self.self_test_done.eq(st.done), self.self_test_pass.eq(st.passed)]
        m.d.comb += [
            bridge.rx.eq(self.rx),
            self.tx.eq(bridge.tx),
            self.irq.eq(tile.irq),
        ]
        return m


def _port_mux(m, first, a, b, sub):
    """Manager ports ``a`` (while ``first``) or ``b`` (otherwise) to subordinate port ``sub``;
    the manager not selected sees every input 0 (no ready, no valid: its requests wait)."""
    for name, member in a.signature.members.items():
        if member.flow == wiring.Out:
            m.d.comb += getattr(sub, name).eq(Mux(first, getattr(a, name), getattr(b, name)))
        else:
            m.d.comb += [getattr(a, name).eq(Mux(first, getattr(sub, name), 0)),
                         getattr(b, name).eq(Mux(first, 0, getattr(sub, name)))]
