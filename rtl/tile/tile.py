"""The tile top: control processor, DMA, tile SRAM, tensor unit, vector unit and the HBM model,
with the host's register port and memory port (docs/tile.md).

```text
 host s_axil --> HostRegisters --(cq base/size/doorbell, windows, restart, flush)--+
                                                                                    v
 host_axi ------------------+         CommandFetcher --cmd--> TileControlProcessor
                            v              |                 |dma[q]   |ttu      |tvp
                       AxiArbiter <--------+            TileDma  TileTensorEngine  TileVectorProcessor
                  (host, fetcher, DMA)                  |   |     |a |b |c          |rd |wr
                            |                           |   +-----+--+--+-----------+---+--> TileSram
                            v                           |
                     HbmInterleaver  <------------------+ (the DMA's m_axi is arbiter port 2)
                            |  x hbm_pseudo_channels
                      HbmController
```

Without the vector unit (``config.vector_unit`` False, ``tvp_lanes=0``) the tile builds no TVP:
the TCP refuses TVP commands (``ENGINE_NOT_BUILT``), the SRAM has no TVP ports and the TVP
counters read 0.

With an ``ONCHIP`` HBM preset (the FPGA presets) the pseudo-channels are :class:`OnChipMemory`
blocks behind the same AXI4 ports instead of the HBM timing model.

Every parameter comes from the :class:`~openmaia.config.Config`; ``hbm_bytes`` (the modelled
HBM capacity, split evenly over the pseudo-channels) is the one size chosen per build, because
each byte of the model's backing store costs elaboration and simulation time.
"""

from amaranth.hdl import Cat, Module, Mux, Shape, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..bus.axi import Axi4Signature, AxiLiteSignature
from ..bus.axi_arbiter import AxiArbiter
from ..bus.axi_staller import AxiStaller
from ..hbm.controller import HbmController
from ..hbm.interleaver import HbmInterleaver
from ..hbm.onchip import OnChipMemory
from .command_fetcher import CommandFetcher
from .dma import COUNTERS as DMA_COUNTERS
from .dma import TileDma
from .registers import HostRegisters
from .tcp import TileControlProcessor
from .tsram import TileSram, tile_ports
from .ttu_engine import TileTensorEngine
from .tvp import TileVectorProcessor

__all__ = ["HOST_MANAGERS", "Tile", "split_hbm_image"]

#: The AXI arbiter's managers, in port order (the index is the top bits of the HBM-side ID).
HOST_MANAGERS = ("host", "fetcher", "dma")


def _counter_mask(shape, bits, offset=0) -> int:
    """The bits of a counter group (structs and arrays of counters) kept when every counter is
    cut to its low ``bits`` bits."""
    try:
        layout = data.Layout.cast(shape)
    except TypeError:
        return ((1 << min(Shape.cast(shape).width, bits)) - 1) << offset
    if isinstance(layout, data.ArrayLayout):
        size = layout.size // layout.length
        return sum(_counter_mask(layout.elem_shape, bits, offset + i * size)
                   for i in range(layout.length))
    return sum(_counter_mask(f.shape, bits, offset + f.offset) for _, f in layout)


def split_hbm_image(image, *, channel_bytes, interleave_map) -> list:
    """The contents of each pseudo-channel (``channel_bytes`` each) that make flat addresses
    ``0 .. len(image) - 1`` read ``image`` through ``interleave_map``
    (:class:`~openmaia.hbm.interleaver.InterleaveMap`)."""
    channels = [bytearray(channel_bytes) for _ in range(interleave_map.channels)]
    for addr, byte in enumerate(image):
        channel, channel_addr = interleave_map.map(addr)
        channels[channel][channel_addr] = byte
    return [bytes(c) for c in channels]


class Tile(wiring.Component):
    """One OpenMaia tile with its HBM model.

    Parameters
    ----------
    config : Config
        Every size (array, formats, TSRAM, DMA, TCP, TVP, HBM preset and pseudo-channels, AXI).
    hbm_bytes : int
        Modelled HBM capacity in bytes (a power of two, at least 4 KiB per pseudo-channel).
    register_addr_bits : int
        Byte-address bits of the register port.
    hbm_init : bytes-like or None
        Initial contents of the memory from address 0 (only with an ``ONCHIP`` HBM preset, whose
        memories are initialised at configuration time; the HBM timing model starts zeroed).
        Interleaved over the pseudo-channels as :class:`HbmInterleaver` maps addresses.

    Ports
    -----
    s_axil : In(AxiLiteSignature(addr_width=register_addr_bits, data_width=32))
        The host registers (docs/registers.md).
    host_axi : In(Axi4Signature(config.axi_addr_bits, config.axi_data_bits, config.axi_id_bits))
        The host's port into HBM (loads inputs and commands, reads results); it shares the HBM
        with the command fetcher and the DMA through a round-robin arbiter.
    irq : Out(1)
        The register block's interrupt line.
    """

    def __init__(self, config, *, hbm_bytes=1 << 18, register_addr_bits=12, hbm_init=None):
        P = config.hbm_pseudo_channels
        if (not isinstance(hbm_bytes, int) or hbm_bytes & (hbm_bytes - 1)
                or hbm_bytes < 4096 * P or hbm_bytes > 1 << config.axi_addr_bits):
            raise ValueError(f"hbm_bytes must be a power of two of at least {4096 * P} (4 KiB a "
                             f"pseudo-channel) within the {config.axi_addr_bits}-bit address "
                             f"space, not {hbm_bytes!r}")
        if hbm_init is not None:
            hbm_init = bytes(hbm_init)
            if config.hbm_preset != "ONCHIP":
                raise ValueError(f"hbm_init needs an ONCHIP HBM preset, not "
                                 f"{config.hbm_preset!r} (the HBM model starts zeroed)")
            if len(hbm_init) > hbm_bytes:
                raise ValueError(f"hbm_init has {len(hbm_init)} bytes, more than hbm_bytes "
                                 f"({hbm_bytes})")
        self.config, self.hbm_bytes, self.hbm_init = config, hbm_bytes, hbm_init
        self.host_sig = Axi4Signature(addr_width=config.axi_addr_bits,
                                      data_width=config.axi_data_bits,
                                      id_width=config.axi_id_bits)
        self.registers = HostRegisters.from_config(config, addr_width=register_addr_bits)
        super().__init__({
            "s_axil": In(AxiLiteSignature(addr_width=register_addr_bits, data_width=32)),
            "host_axi": In(self.host_sig),
            "irq": Out(1),
        })

    @property
    def register_map(self):
        return self.registers.map

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.registers = regs = self.registers
        m.submodules.fetcher = fetcher = CommandFetcher.from_config(cfg)
        m.submodules.tcp = tcp = TileControlProcessor.from_config(cfg)
        m.submodules.dma = dma = TileDma.from_config(cfg)
        m.submodules.tsram = sram = TileSram.from_config(cfg, ports=tile_ports(cfg))
        m.submodules.ttu = ttu = TileTensorEngine.from_config(cfg)
        tvp = None
        if cfg.vector_unit:
            m.submodules.tvp = tvp = TileVectorProcessor.from_config(cfg)
        m.submodules.arbiter = arbiter = AxiArbiter(
            managers=len(HOST_MANAGERS), addr_width=cfg.axi_addr_bits,
            data_width=cfg.axi_data_bits, id_width=cfg.axi_id_bits)
        id_bits = arbiter.m_sig.id_width
        m.submodules.interleaver = interleaver = HbmInterleaver(
            channels=cfg.hbm_pseudo_channels, addr_width=cfg.axi_addr_bits,
            data_width=cfg.axi_data_bits, id_width=id_bits)
        per_channel = self.hbm_bytes // cfg.hbm_pseudo_channels
        if cfg.hbm_preset == "ONCHIP":
            inits = [None] * cfg.hbm_pseudo_channels
            if self.hbm_init:
                inits = split_hbm_image(self.hbm_init, channel_bytes=per_channel,
                                        interleave_map=interleaver.map)
            memories = [OnChipMemory(capacity_bytes=per_channel, addr_width=cfg.axi_addr_bits,
                                     data_width=cfg.axi_data_bits, id_width=id_bits, init=init)
                        for init in inits]
            for p, mem in enumerate(memories):
                m.submodules[f"mem{p}"] = mem
            ports = [mem.s_axi for mem in memories]
        else:
            m.submodules.hbm = hbm = HbmController(
                pseudo_channels=cfg.hbm_pseudo_channels, timing=cfg.hbm_preset,
                mapping=cfg.hbm_mapping, queue_depth=cfg.hbm_queue_depth,
                capacity_bytes=per_channel, addr_width=cfg.axi_addr_bits,
                data_width=cfg.axi_data_bits, id_width=id_bits)
            ports = list(hbm.s_axi)

        # host side
        wiring.connect(m, wiring.flipped(self.s_axil), regs.axi)
        m.d.comb += self.irq.eq(regs.irq)

        # HBM side: host, fetcher, DMA -> arbiter -> interleaver -> pseudo-channels
        wiring.connect(m, wiring.flipped(self.host_axi), arbiter.s_axi[0])
        wiring.connect(m, fetcher.m_axi, arbiter.s_axi[1])
        wiring.connect(m, dma.m_axi, arbiter.s_axi[2])
        wiring.connect(m, arbiter.m_axi, interleaver.s_axi)
        for p in range(cfg.hbm_pseudo_channels):
            staller = AxiStaller(signature=interleaver.sig, seed=p + 1)
            m.submodules[f"pause{p}"] = staller
            m.d.comb += staller.pause.eq(regs.hbm_pause)
            wiring.connect(m, interleaver.m_axi[p], staller.s_axi)
            wiring.connect(m, staller.m_axi, ports[p])

        # command path
        m.d.comb += [
            fetcher.base.eq(regs.cq_base), fetcher.size.eq(regs.cq_size),
            fetcher.tail.eq(regs.cq_tail), fetcher.run.eq(regs.run),
            fetcher.flush.eq(regs.flush),
            regs.cq_head.eq(fetcher.head), regs.cq_error.eq(fetcher.queue_error),
        ]
        wiring.connect(m, fetcher.cmd, tcp.cmd)
        for q in range(cfg.dma_queues):
            wiring.connect(m, tcp.dma[q], dma.desc[q])
            m.d.comb += [dma.window_base[q].eq(regs.dma_window_base[q]),
                         dma.window_limit[q].eq(regs.dma_window_limit[q])]
        wiring.connect(m, dma.event, tcp.dma_event)
        wiring.connect(m, tcp.ttu, ttu.cmd)
        wiring.connect(m, ttu.event, tcp.ttu_event)
        if tvp is not None:
            wiring.connect(m, tcp.tvp, tvp.cmd)
            wiring.connect(m, tvp.event, tcp.tvp_event)
        m.d.comb += [
            tcp.restart.eq(regs.restart), tcp.irq_ack.eq(regs.tcp_irq_ack),
            regs.tcp_status.eq(tcp.status), regs.tcp_semaphores.eq(tcp.semaphores),
            regs.tcp_irq.eq(tcp.irq), regs.tcp_irq_code.eq(tcp.irq_code),
        ]

        # tile SRAM ports
        wiring.connect(m, dma.tsram, sram.dma)
        wiring.connect(m, ttu.mem_a, sram.ttu_a)
        wiring.connect(m, ttu.mem_b, sram.ttu_b)
        wiring.connect(m, ttu.mem_c, sram.ttu_c)
        if tvp is not None:
            wiring.connect(m, tvp.mem_rd, sram.tvp_rd)
            wiring.connect(m, tvp.mem_wr, sram.tvp_wr)
        m.d.comb += [sram.inject.valid.eq(0), sram.err_clear.eq(regs.tsram_err_clear),
                     regs.tsram_err_sticky.eq(sram.err_sticky)]

        # counters
        tc_own = Signal(regs.tile_counters.shape())
        beat = self.host_sig.data_bytes
        own = {"cycles": 1,
               "dma_read_bytes": Mux(dma.m_axi.rvalid & dma.m_axi.rready, beat, 0),
               "dma_write_bytes": Mux(dma.m_axi.wvalid & dma.m_axi.wready, beat, 0)}
        for name, step in own.items():
            counter = Signal(48, name=f"tile_{name}")
            with m.If(regs.counters_clear):
                m.d.sync += counter.eq(0)
            with m.Else():
                m.d.sync += counter.eq(counter + step)
            m.d.comb += tc_own[name].eq(counter)
        # The map has counters for every tile SRAM port; a port not built reads 0.
        tsram_counters = Signal(regs.tsram_layout)
        for name, layout in regs.tsram_layout:
            ours = sram.counters[name]
            if isinstance(layout.shape, data.ArrayLayout):
                m.d.comb += tsram_counters[name].as_value()[:len(ours.as_value())].eq(
                    ours.as_value())
            else:
                m.d.comb += tsram_counters[name].eq(ours)
        sources = {
            "tile": tc_own, "tcp": tcp.counters,
            "dma": Cat(*(getattr(dma, name) for name in DMA_COUNTERS)),
            "ttu": ttu.counters, "tsram": tsram_counters, "fetch": fetcher.counters,
            "tvp": tvp.counters if tvp is not None else 0,
        }
        for group, value in sources.items():
            port = getattr(regs, f"{group}_counters")
            if cfg.counter_bits:
                mask = _counter_mask(port.shape(), cfg.counter_bits)
                if group == "tile":     # the host's clock (TileDriver's time base) stays whole
                    cycles = data.Layout.cast(port.shape())["cycles"]
                    mask |= ((1 << Shape.cast(cycles.shape).width) - 1) << cycles.offset
                value = Value.cast(value) & mask
            m.d.comb += port.eq(value)
        m.d.comb += [unit.counters_clear.eq(regs.counters_clear)
                     for unit in (tcp, dma, ttu, sram, fetcher, tvp) if unit is not None]
        return m
