"""Tile DMA under Verilator through cocotb: cocotbext-axi AxiRam as HBM, a TSRAM model, random
pauses on every channel, whole-memory scoreboards (bench: openmaia.benches.dma).

Default tier (small preset, one Verilator build): contiguous copies of 1 B .. 1 KiB at every
HBM offset class, both directions; 2D / 3D patterns with the 64 x 64 tile of a 4096-wide
matrix; every rejection code with no bus traffic and the next descriptor still running; random
valid and invalid descriptors on both queues; SLVERR (poisoned AxiRam words), DECERR (unmapped
AxiRam ranges) and uncorrectable ECC reported in the event, the next descriptors unaffected.
The same bench (contiguous, errors, random mix, roundtrip) with the TSRAM request slice
(``Config.dma_request_slice``).

Slow tier: the sweep up to 64 KiB and offsets 0..63 (a TSRAM large enough); the ulx3s-shaped
engine (64-bit AXI, 128-bit TSRAM words: two bus words a TSRAM word) and the ice40-shaped one
(32-bit AXI, 1 KiB bursts); each fault variant fails the bench.
"""

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from openmaia.config import PRESETS
from openmaia.harness import simulate
from openmaia.tile.dma import FAULTS, TileDma
from openmaia.tile.tsram import TileSram

BENCH = "openmaia.benches.dma"
SMALL = PRESETS["small"]

pytestmark = [pytest.mark.sim,
              pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")]

SHORT_LENGTHS = [1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 64, 100, 255, 256, 1000, 1024]
SHORT_OFFSETS = [0, 1, 5, 8, 15]


def bench_params(config, dma, **extra):
    return {"axi_addr_bits": config.axi_addr_bits, "word_bytes": config.axi_data_bytes,
            "tsram_bytes": dma.tsram_bytes, "tsram_bank_bytes": config.tsram_bank_bytes,
            "queues": config.dma_queues, "hbm_bytes": 1 << 19, "pause": 0.3, **extra}


class DmaWithTileSram(wiring.Component):
    """Test top: the DMA's ``tsram`` port on the real :class:`TileSram` (one 1-word port); every
    other DMA port brought out under its own name, so the same bench drives it."""

    def __init__(self, config):
        self.dma = TileDma.from_config(config)
        self.sram = TileSram.from_config(config, ports={"dma": 1})
        self.tsram_bytes = self.dma.tsram_bytes
        members = dict(self.dma.signature.members.items())
        del members["tsram"]
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dma = dma = self.dma
        m.submodules.sram = sram = self.sram
        wiring.connect(m, dma.tsram, sram.dma)
        m.d.comb += [sram.inject.valid.eq(0), sram.err_clear.eq(0)]
        for name, member in self.signature.members.items():
            ours, theirs = getattr(self, name), getattr(dma, name)
            if member.is_port:
                if member.flow == wiring.In:
                    m.d.comb += theirs.eq(ours)
                else:
                    m.d.comb += ours.eq(theirs)
            elif member.dimensions:
                for k in range(member.dimensions[0]):
                    wiring.connect(m, wiring.flipped(ours[k]), theirs[k])
            else:
                wiring.connect(m, wiring.flipped(ours), theirs)
        return m


def run(testcase, config=SMALL, faults=frozenset(), check=True, top=None, **extra):
    dma = top or TileDma.from_config(config, faults=faults)
    params = bench_params(config, dma, **extra)
    result = simulate(dma, bench=BENCH, name="tile_dma", testcase=testcase, params=params,
                      check=check)
    print(f"{testcase} [{config.name}{' ' + ','.join(sorted(faults)) if faults else ''}]: "
          f"build {result.build_seconds:.1f} s (cached {result.build_cached}), "
          f"run {result.run_seconds:.1f} s, log {result.log_file}")
    return result


def test_contiguous():
    run("contiguous", lengths=SHORT_LENGTHS, offsets=SHORT_OFFSETS)


def test_strided():
    run("strided")


def test_protection():
    run("protection")


def test_random_mix():
    run("random_mix", count=80)


def test_errors():
    run("errors")


def test_roundtrip():
    run("roundtrip")


@pytest.mark.parametrize("testcase", ["contiguous", "errors", "random_mix", "roundtrip"])
def test_request_slice(testcase):
    """``Config.dma_request_slice`` (the FPGA presets): the same bench through the TSRAM request
    slice."""
    config = SMALL.replace(name="small-slice", dma_request_slice=True)
    extra = {"lengths": SHORT_LENGTHS, "offsets": SHORT_OFFSETS} if testcase == "contiguous" \
        else {"count": 80} if testcase == "random_mix" else {}
    run(testcase, config=config, **extra)


def test_overlap():
    run("overlap")


@pytest.mark.slow
def test_roundtrip_real_tsram():
    run("roundtrip", top=DmaWithTileSram(SMALL), tsram_model=False, count=10)


@pytest.mark.slow
def test_random_mix_long():
    run("random_mix", count=400)


@pytest.mark.slow
def test_contiguous_long():
    big = SMALL.replace(tsram_bank_depth=8192)        # 128 KiB of TSRAM for 64 KiB copies
    run("contiguous", config=big, lengths=[4096, 4097, 8191, 16384, 65536],
        offsets=[0, 1, 15, 63], hbm_bytes=1 << 18)


@pytest.mark.slow
def test_contiguous_all_offsets():
    run("contiguous", lengths=[1, 5, 16, 47, 300], offsets=list(range(64)))


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["ulx3s", "ice40"])
@pytest.mark.parametrize("testcase", ["contiguous", "strided", "protection", "random_mix",
                                      "errors"])
def test_other_shapes(preset, testcase):
    # At least 16 KiB of TSRAM: the `errors` case puts its clean TSRAM rows at 0x2000.
    config = PRESETS[preset].replace(tsram_bank_depth=1024 if preset == "ulx3s" else 4096)
    run(testcase, config=config, lengths=SHORT_LENGTHS, offsets=SHORT_OFFSETS, count=80)


@pytest.mark.slow
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_is_caught(fault):
    testcase = {"no_4k_split": "strided", "window_off_by_one": "protection",
                "full_strobes": "contiguous", "unstable_wdata": "strided",
                "decerr_as_slverr": "errors", "read_status_at_finish": "overlap",
                "serial_check_skip": "protection"}[fault]
    config = SMALL.replace(serial_checks=True) if fault == "serial_check_skip" else SMALL
    result = run(testcase, config=config, faults={fault}, check=False, lengths=SHORT_LENGTHS,
                 offsets=SHORT_OFFSETS)
    assert result.tests == 1 and result.failed == 1, f"fault {fault} not caught"
