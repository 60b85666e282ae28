"""The one configuration object of OpenMaia, and its named presets.

A :class:`Config` flows from the CLI (``--config NAME``) into the RTL, the SDK, the reports and
the FPGA builds. Every size that another part needs is either a field here or a property computed
here; nothing re-derives a parameter on its own.

Wave 1 has one clock domain: one HBM model cycle is one tile cycle (``clock_mhz``).
"""

import dataclasses
from dataclasses import dataclass, field

from .numerics.formats import BLOCK_SIZE, Format

__all__ = ["Config", "PRESETS", "HBM_PRESETS", "HBM_MAPPINGS", "get_config", "preset_names"]

#: HBM presets the memory model knows (timing tables in docs/ and ../shared/brief/hbm3.md).
#: ``ONCHIP`` stands for FPGA block RAM / SPRAM behind the same AXI4 port.
HBM_PRESETS = ("HBM3_6400", "HBM3E_9600", "ONCHIP")
#: Address mappings of the HBM model (bit layouts in docs/hbm.md).
HBM_MAPPINGS = ("RoBaRaCoCh", "MOP4CLXOR")

ALL_FORMATS = frozenset(Format)


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True, kw_only=True)
class Config:
    """Parameters of one OpenMaia build.

    Tile Tensor Unit: an ``array_rows`` x ``array_cols`` grid of MX dot-product engines, each
    consuming ``lanes`` FP8 elements (``2 * lanes`` FP4 elements) of A and of B a cycle, with
    ``acc_depth`` FP32 accumulators per engine. ``formats`` is the set of element formats the
    hardware builds in; the others are compiled out. ``ttu_panel_blocks``: the longest K (in
    32-element blocks) one tile operation may have, the size of each half of the TTU's
    double-buffered stationary-operand (A panel) buffer. ``ttu_port_words``: tile SRAM words
    one read request of a TTU operand fetcher moves (its port width, a power of two <=
    ``tsram_banks``, at least 8 bytes).

    Tile SRAM: ``tsram_banks`` banks of ``tsram_bank_depth`` words of ``tsram_bank_bytes`` bytes,
    SECDED-protected when ``tsram_ecc``. ``tsram_single_port``: each bank is a single-ported
    memory (one access, read or write, through one address a cycle), as the iCE40 UP5K's SPRAM
    (``SB_SPRAM256KA``); otherwise a bank has a read port and a separate write port.
    ``ttu_queue_depth``: ops (and operand-fetch jobs) each queue inside the TTU and its
    operand path holds (run-ahead between command checks, fetchers and the array; the order
    queue holds twice as many). ``tsram_rsp_depth``: read responses each TSRAM port holds (3 or more for one read a cycle
    per port; fewer saves the response FIFOs' area and slows back-to-back reads).

    Memory: ``hbm_preset`` (one of :data:`HBM_PRESETS`) with ``hbm_pseudo_channels``
    pseudo-channels, each behind an AXI4 port of ``axi_data_bits`` data, ``axi_addr_bits``
    address and ``axi_id_bits`` ID bits; the HBM controller model holds ``hbm_queue_depth``
    requests and maps addresses with ``hbm_mapping`` (one of :data:`HBM_MAPPINGS`).

    Tile DMA: ``dma_queues`` descriptor queues of ``dma_queue_depth`` entries (each queue with its
    own allowed HBM window), ``dma_outstanding_reads`` read bursts queued and one more in
    flight in the beat walker (the HBM presets keep the read latency covered: 16 bursts on
    ``small``, 32 on ``default``; the on-chip memory of the FPGA presets answers within a few
    cycles, and 4 do).

    Tile Control Processor: ``tcp_semaphores`` counting semaphores (16 bits each, at most 256);
    at most ``tcp_outstanding`` incomplete commands per engine (per DMA queue). The command
    fetcher buffers ``command_fetch_depth`` 64-byte commands (a power of two, at most 64).

    Tile Vector Processor: ``tvp_lanes`` FP32 lanes (one element each a cycle); its tile SRAM
    read and write ports are ``tvp_port_words`` words wide (4 x ``tvp_lanes`` bytes).
    ``tvp_lanes=0``: the tile has no vector unit (:attr:`vector_unit` is False); the TCP refuses
    every TVP command with ``ENGINE_NOT_BUILT`` and the TVP counters read 0.

    Counters: ``counter_bits`` (None: every counter at its full width, 32 or 48 bits) keeps
    the low ``counter_bits`` bits of every performance counter the host registers show (they
    wrap at ``2 ** counter_bits``; the upper bits read 0 and synthesis removes their logic),
    except ``tile.cycles``, the host driver's clock, which stays whole.

    Area: ``serial_checks`` computes the row-count x stride products of the TTU's command
    checks and the DMA's descriptor checks with one shift-and-add multiplier each
    (:class:`~openmaia.compute.serial_multiplier.SerialMultiplier`, a few dozen cycles a
    command or descriptor) instead of combinational multipliers (same cycle): the same
    verdicts, a fraction of the logic, no DSP blocks.

    Clock: ``dma_request_slice`` puts a register slice on the DMA's TSRAM requests, so the
    TSRAM's grant does not reach the DMA's byte queue and address walkers in the same cycle
    (an FPGA clock; docs/fpga.md). It costs a cycle a descriptor (two for HBM -> TSRAM, whose
    event waits for the slice to drain): off on the ASIC-shaped presets, whose DMA figures
    (docs/dma.md) are cycle counts with the target at one cycle's margin.
    """
    name: str
    array_rows: int
    array_cols: int
    lanes: int
    acc_depth: int
    formats: frozenset = field(default=ALL_FORMATS)
    ttu_panel_blocks: int = 16
    ttu_port_words: int = 2
    ttu_queue_depth: int = 4
    tsram_banks: int
    tsram_bank_bytes: int
    tsram_bank_depth: int
    tsram_ecc: bool = True
    tsram_single_port: bool = False
    tsram_rsp_depth: int = 4
    hbm_preset: str = "HBM3_6400"
    hbm_pseudo_channels: int = 1
    axi_data_bits: int = 128
    axi_addr_bits: int = 32
    axi_id_bits: int = 4
    hbm_queue_depth: int = 32
    hbm_mapping: str = "MOP4CLXOR"
    dma_queues: int = 2
    dma_queue_depth: int = 4
    dma_outstanding_reads: int = 4
    tcp_semaphores: int = 16
    tcp_outstanding: int = 8
    command_fetch_depth: int = 8
    tvp_lanes: int = 4
    counter_bits: int | None = None
    serial_checks: bool = False
    dma_request_slice: bool = False
    clock_mhz: float

    def __post_init__(self):
        object.__setattr__(self, "formats", frozenset(Format.of(f) for f in self.formats))
        for name in ("array_rows", "array_cols", "acc_depth", "tsram_banks", "tsram_bank_depth",
                     "hbm_pseudo_channels", "ttu_panel_blocks", "axi_id_bits", "hbm_queue_depth", "dma_queues",
                     "dma_queue_depth", "dma_outstanding_reads", "tcp_semaphores",
                     "tcp_outstanding", "tsram_rsp_depth", "command_fetch_depth",
                     "ttu_queue_depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not isinstance(self.lanes, int) or self.lanes not in (1, 2, 4, 8, 16):
            raise ValueError(f"lanes must be 1, 2, 4, 8 or 16 (a divisor of half the "
                             f"{BLOCK_SIZE}-element block), not {self.lanes!r}")
        if not self.formats:
            raise ValueError("formats must name at least one element format")
        if not _is_pow2(self.command_fetch_depth) or self.command_fetch_depth > 64:
            raise ValueError(f"command_fetch_depth must be a power of two <= 64, "
                             f"not {self.command_fetch_depth}")
        if not _is_pow2(self.tsram_banks):
            raise ValueError(f"tsram_banks must be a power of two, not {self.tsram_banks}")
        if not _is_pow2(self.tsram_bank_bytes) or self.tsram_bank_bytes < 4:
            raise ValueError(f"tsram_bank_bytes must be a power of two >= 4, "
                             f"not {self.tsram_bank_bytes}")
        if (not _is_pow2(self.ttu_port_words) or self.ttu_port_words > self.tsram_banks
                or self.ttu_port_words * self.tsram_bank_bytes < 8):
            raise ValueError(f"ttu_port_words must be a power of two <= tsram_banks "
                             f"({self.tsram_banks}) and move at least 8 bytes, "
                             f"not {self.ttu_port_words!r}")
        if not _is_pow2(self.tsram_bank_depth):
            raise ValueError(f"tsram_bank_depth must be a power of two, "
                             f"not {self.tsram_bank_depth}")
        if self.hbm_preset not in HBM_PRESETS:
            raise ValueError(f"hbm_preset must be one of {', '.join(HBM_PRESETS)}, "
                             f"not {self.hbm_preset!r}")
        if self.hbm_mapping not in HBM_MAPPINGS:
            raise ValueError(f"hbm_mapping must be one of {', '.join(HBM_MAPPINGS)}, "
                             f"not {self.hbm_mapping!r}")
        if self.axi_data_bits not in (32, 64, 128, 256, 512):
            raise ValueError(f"axi_data_bits must be 32, 64, 128, 256 or 512, "
                             f"not {self.axi_data_bits}")
        if not 16 <= self.axi_addr_bits <= 64:
            raise ValueError(f"axi_addr_bits must be in 16..64, not {self.axi_addr_bits}")
        if self.tvp_lanes != 0 and (
                not isinstance(self.tvp_lanes, int) or not _is_pow2(self.tvp_lanes)
                or self.tvp_lanes > 32 or not self.tsram_bank_bytes <= 4 * self.tvp_lanes
                <= self.tsram_banks * self.tsram_bank_bytes):
            raise ValueError(f"tvp_lanes must be 0 (no vector unit) or a power of two <= 32 (a "
                             f"beat within one MX block) whose 4 x lanes bytes are "
                             f"1 to {self.tsram_banks} tile SRAM words of "
                             f"{self.tsram_bank_bytes} bytes, not {self.tvp_lanes!r}")
        if self.counter_bits is not None and (
                not isinstance(self.counter_bits, int) or isinstance(self.counter_bits, bool)
                or not 8 <= self.counter_bits <= 48):
            raise ValueError(f"counter_bits must be None or an integer in 8..48, "
                             f"not {self.counter_bits!r}")
        if self.ttu_queue_depth < 2:
            raise ValueError(f"ttu_queue_depth must be at least 2, not {self.ttu_queue_depth}")
        for name in ("serial_checks", "dma_request_slice"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, not {getattr(self, name)!r}")
        for name in ("tsram_ecc", "tsram_single_port"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, not {getattr(self, name)!r}")
        if self.tcp_semaphores > 256:
            raise ValueError(f"tcp_semaphores must be at most 256 (8-bit index), "
                             f"not {self.tcp_semaphores}")
        if not self.clock_mhz > 0:
            raise ValueError(f"clock_mhz must be positive, not {self.clock_mhz!r}")

    # Derived sizes: the only place they are computed.

    @property
    def block_size(self) -> int:
        """Elements per MX block."""
        return BLOCK_SIZE

    @property
    def engines(self) -> int:
        """Dot-product engines in the Tile Tensor Unit."""
        return self.array_rows * self.array_cols

    @property
    def fp8_macs_per_cycle(self) -> int:
        """Peak MACs a cycle for pairs whose wider side is 6 or 8 bits wide."""
        return self.engines * self.lanes

    @property
    def fp4_macs_per_cycle(self) -> int:
        """Peak MACs a cycle for FP4 x FP4 (twice the FP8 rate)."""
        return 2 * self.fp8_macs_per_cycle

    def macs_per_cycle(self, fmt_a: Format | str, fmt_b: Format | str) -> int:
        """Peak MACs a cycle for one element-format pair (the wider side sets the rate)."""
        fmt_a, fmt_b = Format.of(fmt_a), Format.of(fmt_b)
        for fmt in (fmt_a, fmt_b):
            if fmt not in self.formats:
                raise ValueError(f"format {fmt} is not built into configuration {self.name!r}")
        if fmt_a is Format.E2M1 and fmt_b is Format.E2M1:
            return self.fp4_macs_per_cycle
        return self.fp8_macs_per_cycle

    @property
    def tsram_bytes(self) -> int:
        """Total tile SRAM capacity in bytes."""
        return self.tsram_banks * self.tsram_bank_bytes * self.tsram_bank_depth

    @property
    def ttu_max_k(self) -> int:
        """The longest K (elements) of one tile operation."""
        return self.ttu_panel_blocks * BLOCK_SIZE

    @property
    def ttu_result_words(self) -> int:
        """Tile SRAM words of the TTU result writer's port: one C row (4 x array_cols bytes)."""
        return max(1, 4 * self.array_cols // self.tsram_bank_bytes)

    @property
    def vector_unit(self) -> bool:
        """The tile builds the Tile Vector Processor (``tvp_lanes > 0``)."""
        return self.tvp_lanes > 0

    @property
    def tvp_port_words(self) -> int:
        """Tile SRAM words of each TVP port: one beat of ``tvp_lanes`` FP32 values (0 without
        the vector unit)."""
        return 4 * self.tvp_lanes // self.tsram_bank_bytes

    @property
    def axi_data_bytes(self) -> int:
        return self.axi_data_bits // 8

    @property
    def format_names(self) -> tuple[str, ...]:
        """Built-in formats in the canonical order of :class:`Format`."""
        return tuple(f.value for f in Format if f in self.formats)

    def replace(self, **changes) -> "Config":
        """A copy with some fields changed (validated like a new object)."""
        return dataclasses.replace(self, **changes)

    def summary(self) -> dict:
        """Fields and derived sizes as plain data (for reports and ``--json``)."""
        data = dataclasses.asdict(self)
        data["formats"] = list(self.format_names)
        data.update(engines=self.engines, fp8_macs_per_cycle=self.fp8_macs_per_cycle,
                    fp4_macs_per_cycle=self.fp4_macs_per_cycle, tsram_bytes=self.tsram_bytes)
        return data


PRESETS: dict[str, Config] = {
    # Fast tests: every format, a 2 x 2 array of 4-lane engines.
    "small": Config(name="small", array_rows=2, array_cols=2, lanes=4, acc_depth=4,
                    ttu_panel_blocks=8, ttu_port_words=2, tvp_lanes=4,
                    tsram_banks=4, tsram_bank_bytes=16, tsram_bank_depth=256,
                    hbm_preset="HBM3_6400", hbm_pseudo_channels=1, axi_data_bits=128,
                    dma_outstanding_reads=16, clock_mhz=1600.0),
    # A realistic tile: 8 x 8 engines of 16 lanes (1,024 FP8 / 2,048 FP4 MACs a cycle), 1 MiB of
    # TSRAM in 16 banks of 32-byte words, two HBM3-6400 pseudo-channels. Maia 200's per-tile
    # sizes are not public; these are our choice (docs/architecture.md).
    "default": Config(name="default", array_rows=8, array_cols=8, lanes=16, acc_depth=8,
                      ttu_panel_blocks=64, ttu_port_words=8, tvp_lanes=16,
                      tsram_banks=16, tsram_bank_bytes=32, tsram_bank_depth=2048,
                      hbm_preset="HBM3_6400", hbm_pseudo_channels=2, axi_data_bits=256,
                      dma_outstanding_reads=32, clock_mhz=1600.0),
    # iCEBreaker (iCE40UP5K, 5,280 logic cells): one 4-lane engine, E4M3 and E2M1 only, no
    # vector unit; the TSRAM is the four 16-bit x 16 K SPRAMs (2 banks of 32-bit words, two
    # SPRAMs side by side each: 128 KiB) with 2-deep response FIFOs; short TCP / DMA queues
    # (the on-chip memory answers in a few cycles). 16 semaphores: every preset has the one
    # register map. 16-bit counters (tile.cycles excepted; the SDK's differences wrap). One
    # buffered command: a 512-bit register instead of 32 of the 30 EBR.
    "ice40": Config(name="ice40", array_rows=1, array_cols=1, lanes=4, acc_depth=2,
                    ttu_panel_blocks=4, ttu_port_words=2, ttu_queue_depth=2, tvp_lanes=0,
                    formats=frozenset({Format.E4M3, Format.E2M1}),
                    tsram_banks=2, tsram_bank_bytes=4, tsram_bank_depth=16384, tsram_ecc=False,
                    tsram_single_port=True, tsram_rsp_depth=2,
                    hbm_preset="ONCHIP", hbm_pseudo_channels=1, axi_data_bits=32,
                    axi_addr_bits=24, dma_queue_depth=2, dma_outstanding_reads=2,
                    tcp_outstanding=2, command_fetch_depth=1, counter_bits=16,
                    serial_checks=True, dma_request_slice=True, clock_mhz=24.0),
    # ULX3S (ECP5-85F): 4 x 4 engines of 16 lanes, E4M3 and E2M1 (256 FP8 / 512 FP4 lanes).
    "ulx3s": Config(name="ulx3s", array_rows=4, array_cols=4, lanes=16, acc_depth=4,
                    ttu_panel_blocks=16, ttu_port_words=4, tvp_lanes=8,
                    formats=frozenset({Format.E4M3, Format.E2M1}),
                    tsram_banks=8, tsram_bank_bytes=16, tsram_bank_depth=1024,
                    hbm_preset="ONCHIP", hbm_pseudo_channels=1, axi_data_bits=64,
                    axi_addr_bits=28, dma_request_slice=True, clock_mhz=75.0),
    # The ULX3S tile that fits and routes (docs/fpga.md, "ULX3S: the first bitstream" and "16
    # lanes"): one 16-lane engine (16 FP8 / 32 FP4 MACs a cycle), a 1-lane TVP, 128 KiB of TSRAM
    # in 4 banks of 4-byte words with ECC, 32-bit AXI, serial range checks, 16-bit counters (as
    # `ice40`); 59-61 % of the LFE5U-85F's logic cells. 25 MHz: the oscillator's own clock,
    # met by place and route at 25.10 MHz (docs/fpga.md).
    "ulx3s-fit": Config(name="ulx3s-fit", array_rows=1, array_cols=1, lanes=16, acc_depth=4,
                        ttu_panel_blocks=16, ttu_port_words=4, tvp_lanes=1,
                        formats=frozenset({Format.E4M3, Format.E2M1}),
                        tsram_banks=4, tsram_bank_bytes=4, tsram_bank_depth=8192,
                        hbm_preset="ONCHIP", hbm_pseudo_channels=1, axi_data_bits=32,
                        axi_addr_bits=28, counter_bits=16, serial_checks=True,
                        dma_request_slice=True, clock_mhz=25.0),
}


def preset_names() -> tuple[str, ...]:
    return tuple(PRESETS)


def get_config(name: "str | Config") -> Config:
    """The preset called ``name`` (a :class:`Config` passes through unchanged)."""
    if isinstance(name, Config):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown configuration {name!r}; presets: "
                         f"{', '.join(PRESETS)}") from None
