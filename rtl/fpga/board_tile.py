"""The board top: the UART host bridge (:class:`~openmaia.fpga.host_bridge.HostBridge`) and one
tile (:class:`~openmaia.tile.tile.Tile`) with its on-chip memory, wired together.

```text
 rx --> HostBridge --m_axil--> Tile.s_axil
 tx <--            --m_axi---> Tile.host_axi      Tile.irq --> irq
```

The host reaches the tile only through the serial pins, with the protocol of
:mod:`openmaia.fpga.link`; the SDK's ``fpga`` backend (:mod:`openmaia.sdk.fpga`) is its host
side. Board builds wrap this component (clock, reset and pins from the platform). docs/fpga.md,
"Board top and the ``fpga`` backend", is the contract.
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import Config
from ..tile.tile import Tile
from .host_bridge import HOST_BRIDGE_FAULTS, HostBridge

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

    Members: ``rx`` (``In(1)``, idle high, from the host's TX), ``tx`` (``Out(1)``, idle high,
    to the host's RX), ``irq`` (``Out(1)``, the tile's interrupt line), ``self_test_done`` and
    ``self_test_pass`` (``Out(1)`` each: the power-up self-test has finished / has finished and
    passed; both stay 0 in a build without a self-test). ``bridge`` and ``tile``
    are the two parts (the host driver takes the register map from ``tile.register_map``).
    """

    def __init__(self, config, *, hbm_bytes, divisor, rx_fifo_depth=32, hbm_init=None,
                 faults=frozenset()):
        if not isinstance(config, Config):
            raise TypeError(f"config must be a Config, not {type(config).__name__}")
        faults = frozenset(faults)
        if faults - HOST_BRIDGE_FAULTS:
            raise ValueError(f"unknown faults {sorted(faults - HOST_BRIDGE_FAULTS)}; known: "
                             f"{sorted(HOST_BRIDGE_FAULTS)}")
        self.config, self.hbm_bytes, self.divisor = config, hbm_bytes, divisor
        self.tile = Tile(config, hbm_bytes=hbm_bytes, hbm_init=hbm_init)
        self.bridge = HostBridge.from_config(config, divisor=divisor,
                                             reg_addr_bits=self.tile.s_axil.signature.addr_width,
                                             rx_fifo_depth=rx_fifo_depth, faults=faults)
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
        wiring.connect(m, bridge=bridge.m_axil, tile=tile.s_axil)
        wiring.connect(m, bridge=bridge.m_axi, tile=tile.host_axi)
        m.d.comb += [
            bridge.rx.eq(self.rx),
            self.tx.eq(bridge.tx),
            self.irq.eq(tile.irq),
        ]
        return m
