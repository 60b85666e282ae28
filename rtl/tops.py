"""Registry of the elaboratable tops: the names ``openmaia elaborate`` and the self-check know.

Each entry builds a component from a :class:`~openmaia.config.Config` and names the cocotb bench
that checks it (run by ``openmaia selfcheck`` and by the test suite).
"""

from dataclasses import dataclass
from typing import Callable

from amaranth.lib import wiring

from .config import Config

__all__ = ["Top", "TOPS", "get_top"]


@dataclass(frozen=True)
class Top:
    """An elaboratable top: ``build(config)`` makes the component, ``bench`` checks it with the
    parameters ``bench_params(config, component)`` (only its test ``testcase``, if named)."""
    name: str
    description: str
    build: Callable[[Config], wiring.Component]
    bench: str
    bench_params: Callable[[Config, wiring.Component], dict]
    testcase: str | None = None
    #: The top is a part of the vector unit: it exists only for configurations that build one.
    needs_vector_unit: bool = False

    def builds_for(self, config: Config) -> bool:
        """Whether ``config`` has what this top is a part of."""
        return config.vector_unit or not self.needs_vector_unit

    @property
    def module_name(self) -> str:
        """The Verilog module name of this top."""
        return self.name.replace("-", "_")


def _element_decoder(config: Config):
    from .compute.element_decoder import ElementDecoder
    return ElementDecoder(formats=config.formats, lanes=config.lanes)


def _element_decoder_params(config: Config, decoder) -> dict:
    return {"formats": list(config.format_names), "lanes": config.lanes}


def _dot_engine(config: Config):
    from .compute.dot_engine import MxDotEngine
    return MxDotEngine(formats=config.formats, lanes=config.lanes, slots=config.acc_depth)


def _dot_engine_params(config: Config, engine) -> dict:
    from .benches.dot_engine import all_pairs
    return {"formats": list(config.format_names), "lanes": engine.lanes, "slots": engine.slots,
            "fp4_double_rate": engine.double_rate, "latency": engine.latency,
            "pairs": [[fa.value, fb.value] for fa, fb in all_pairs(config.formats)],
            "count": 20, "gap": 0.3, "stall": 0.3}


def _tile_dma(config: Config):
    from .tile.dma import TileDma
    return TileDma.from_config(config)


def _tile_dma_params(config: Config, dma) -> dict:
    return {"axi_addr_bits": config.axi_addr_bits, "word_bytes": config.axi_data_bytes,
            "tsram_bytes": dma.tsram_bytes, "tsram_bank_bytes": config.tsram_bank_bytes,
            "queues": config.dma_queues, "hbm_bytes": 1 << 19, "pause": 0.3, "count": 60}


def _tsram(config: Config):
    from .tile.tsram import TileSram, tile_ports
    return TileSram.from_config(config, ports=tile_ports(config))


def _tsram_params(config: Config, sram) -> dict:
    from .benches.tsram import dut_params
    return dut_params(sram) | {"count": 100, "req_pause": 0.3, "rsp_pause": 0.5}


def _ttu(config: Config):
    from .tile.ttu import TileTensorUnit
    return TileTensorUnit.from_config(config)


def _ttu_params(config: Config, ttu) -> dict:
    return {"rows": ttu.rows, "cols": ttu.cols, "lanes": ttu.lanes, "slots": ttu.slots,
            "panel_blocks": ttu.panel_blocks, "formats": list(config.format_names),
            "fp4_double_rate": ttu.double_rate, "ops": 40, "max_tiles": 2, "gap": 0.3,
            "stall": 0.3}


def _ttu_engine(config: Config):
    from .benches.ttu_engine import EngineWithTileSram
    return EngineWithTileSram(config)


def _ttu_engine_params(config: Config, top) -> dict:
    return {"rows": config.array_rows, "cols": config.array_cols, "lanes": config.lanes,
            "slots": config.acc_depth, "panel_blocks": config.ttu_panel_blocks,
            "formats": list(config.format_names), "tsram_bytes": config.tsram_bytes,
            "host_bytes": top.host_bytes, "host_addr_bits": top.host.signature.addr_width,
            "ops": 12, "chains": 1}


def _tcp(config: Config):
    from .tile.tcp import TileControlProcessor
    return TileControlProcessor.from_config(config)


def _tcp_params(config: Config, tcp) -> dict:
    return {"semaphores": tcp.n_semaphores, "dma_queues": tcp.dma_queues,
            "hbm_addr_bits": tcp.hbm_addr_bits, "outstanding": tcp.outstanding,
            "event_queue_bits": len(tcp.dma_event.payload.queue), "programs": 8, "length": 60}


def _host_registers(config: Config):
    from .tile.registers import HostRegisters
    return HostRegisters.from_config(config)


def _host_registers_params(config: Config, regs) -> dict:
    return {"config": config.name, "pause": 0.3, "count": 200, "pairs": 8}


def _vector_alu(config: Config):
    from .compute.vector_lane import VectorAlu
    return VectorAlu(lanes=config.lanes)


def _vector_alu_params(config: Config, alu) -> dict:
    return {"lanes": alu.lanes, "latency": alu.latency, "count": 300}


def _mx_quantizer(config: Config):
    from .compute.mx_quantizer import MxQuantizer
    return MxQuantizer(formats=config.formats, lanes=8)


def _mx_quantizer_params(config: Config, q) -> dict:
    return {"formats": list(config.format_names), "lanes": q.lanes, "latency": q.latency,
            "count": 200}


def _onchip(config: Config):
    from .hbm.onchip import OnChipMemory
    return OnChipMemory.from_config(config, capacity_bytes=8192)


def _host_bridge(config: Config):
    from .fpga.host_bridge import HostBridge
    return HostBridge.from_config(config, divisor=4)


def _host_bridge_params(config: Config, bridge) -> dict:
    from .benches.host_bridge import bench_params_for
    return bench_params_for(bridge)


def _onchip_params(config: Config, mem) -> dict:
    return {"capacity": mem.capacity_bytes, "data_bytes": mem.axi.data_bytes,
            "addr_width": mem.axi.addr_width, "id_width": mem.axi.id_width,
            "ops": 200, "max_beats": 16}


def _tile(config: Config):
    from .sdk.rtl import TILE_HBM_BYTES
    from .tile.tile import Tile
    return Tile(config, hbm_bytes=TILE_HBM_BYTES)


def _tile_params(config: Config, tile) -> dict:
    from .sdk.rtl import config_to_params
    return {"config": config_to_params(config), "hbm_bytes": tile.hbm_bytes,
            "ring_entries": 64, "pause": 0.3, "count": 2}


def _tvp(config: Config):
    from .benches.tvp import TvpWithTileSram
    if not config.vector_unit:
        raise ValueError(f"configuration {config.name!r} has no vector unit (tvp_lanes=0)")
    return TvpWithTileSram(config)


def _tvp_params(config: Config, top) -> dict:
    return {"lanes": config.tvp_lanes, "formats": sorted(config.format_names),
            "tsram_bytes": config.tsram_bytes, "host_bytes": top.host_bytes,
            "host_addr_bits": top.host.signature.addr_width, "commands": 16}


def _axi_arbiter(config: Config):
    from .bus.axi_arbiter import AxiArbiter
    return AxiArbiter.from_config(config, managers=3)


def _axi_arbiter_params(config: Config, arb) -> dict:
    return {"managers": arb.managers, "id_width": arb.s_sig.id_width,
            "data_bytes": arb.s_sig.data_bytes, "region": 4096, "workers": 2, "ops": 30,
            "max_bytes": 600, "pause": 0.3}


def _hbm_interleaver(config: Config):
    from .hbm.interleaver import HbmInterleaver
    return HbmInterleaver.from_config(config)


def _hbm_interleaver_params(config: Config, il) -> dict:
    return {"channels": il.channels, "granule_bytes": il.granule_bytes, "fold": il.map.fold,
            "addr_width": il.sig.addr_width, "data_bytes": il.sig.data_bytes,
            "flat_bytes": 1 << 15, "workers": 3, "max_beats": 32, "extra": 20,
            "narrow": 0.15, "pause": 0.3}


TOPS: dict[str, Top] = {top.name: top for top in [
    Top(name="element-decoder",
        description="MX element decoder (codes -> sign, exponent, significand), one per lane",
        build=_element_decoder, bench="openmaia.benches.element_decoder",
        bench_params=_element_decoder_params),
    Top(name="dot-engine",
        description="MX dot-product engine (the TTU's processing element), random dot products",
        build=_dot_engine, bench="openmaia.benches.dot_engine",
        bench_params=_dot_engine_params, testcase="random_dots"),
    Top(name="tsram",
        description="Tile SRAM: interleaved banks, round-robin ports, SECDED; random traffic",
        build=_tsram, bench="openmaia.benches.tsram", bench_params=_tsram_params,
        testcase="random_traffic"),
    Top(name="tile-dma",
        description="Tile DMA: strided HBM <-> TSRAM copies over AXI4, window protection",
        build=_tile_dma, bench="openmaia.benches.dma", bench_params=_tile_dma_params,
        testcase="random_mix"),
    Top(name="ttu",
        description="Tile Tensor Unit (array of dot engines), random GEMM tiles vs mx_matmul",
        build=_ttu, bench="openmaia.benches.ttu", bench_params=_ttu_params,
        testcase="random_ops"),
    Top(name="ttu-engine",
        description="TTU + operand fetchers + result writer on a Tile SRAM: tile ops addressed "
                    "in SRAM, whole SRAM checked",
        build=_ttu_engine, bench="openmaia.benches.ttu_engine", bench_params=_ttu_engine_params,
        testcase="random_ops"),
    Top(name="tcp",
        description="Tile Control Processor: command stream to DMA / TTU / TVP, semaphores, "
                    "random programs vs the golden ordering model",
        build=_tcp, bench="openmaia.benches.tcp", bench_params=_tcp_params,
        testcase="random_programs"),
    Top(name="host-bridge",
        description="UART host bridge (FPGA host link): serial pins to AXI4-Lite registers and "
                    "AXI4 memory; random requests, bus errors, breaks vs a reference",
        build=_host_bridge, bench="openmaia.benches.host_bridge",
        bench_params=_host_bridge_params, testcase="random_ops"),
    Top(name="host-registers",
        description="Host registers: AXI4-Lite subordinate, map generated into docs/registers.md "
                    "and openmaia.sdk.registers; every register vs the model",
        build=_host_registers, bench="openmaia.benches.registers",
        bench_params=_host_registers_params, testcase="full_map"),
    Top(name="vector-alu", description="TVP lane ALU: add, mul, max, relu, GELU, BF16",
        build=_vector_alu, bench="openmaia.benches.vector_lane",
        bench_params=_vector_alu_params, testcase="random_ops"),
    Top(name="mx-quantizer", description="TVP MX quantiser: FP32 blocks -> E8M0 scale + codes",
        build=_mx_quantizer, bench="openmaia.benches.mx_quantizer",
        bench_params=_mx_quantizer_params, testcase="random_traffic"),
    Top(name="onchip-memory",
        description="On-chip memory (FPGA presets' HBM stand-in): AXI4 subordinate, random "
                    "bursts vs a byte model, SLVERR / DECERR cases, counters",
        build=_onchip, bench="openmaia.benches.onchip", bench_params=_onchip_params,
        testcase="random_traffic"),
    Top(name="tile",
        description="The tile: command fetcher, TCP, DMA, TSRAM, TTU engine, TVP, registers, "
                    "AXI arbiter, HBM interleaver and model; SDK GEMMs bit-exact",
        build=_tile, bench="openmaia.benches.tile", bench_params=_tile_params,
        testcase="smoke"),
    Top(name="tvp",
        description="Tile Vector Processor on a Tile SRAM: TVP commands (every op, illegal ones), "
                    "whole SRAM vs the golden model",
        build=_tvp, bench="openmaia.benches.tvp", bench_params=_tvp_params,
        testcase="random_commands", needs_vector_unit=True),
    Top(name="axi-arbiter",
        description="AXI4 arbiter: 3 managers onto one port (round-robin AR / AW, W in AW "
                    "order); random traffic from 3 AxiMasters into an AxiRam",
        build=_axi_arbiter, bench="openmaia.benches.axi_arbiter",
        bench_params=_axi_arbiter_params, testcase="random_traffic"),
    Top(name="hbm-interleaver",
        description="HBM pseudo-channel interleaver: bursts split per granule, in-order merge; "
                    "random bursts vs a flat model through the address map",
        build=_hbm_interleaver, bench="openmaia.benches.hbm_interleaver",
        bench_params=_hbm_interleaver_params, testcase="random_bursts"),
]}


def get_top(name: str) -> Top:
    try:
        return TOPS[name]
    except KeyError:
        raise ValueError(f"unknown top {name!r}; tops: {', '.join(TOPS)}") from None
