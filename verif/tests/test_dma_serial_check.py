"""The serial descriptor check of the tile DMA (``Config.serial_checks``).

* :class:`~openmaia.tile.dma.DmaCheck` with ``serial=True`` next to the combinational one in one
  Amaranth simulation, on the same descriptor and window: random descriptors and windows and
  the corner cases (count 1, maximal counts and strides, every error code, the window edges, the
  TSRAM end at / one past ``tsram_bytes``); the window changes while the check runs, checks
  follow each other back to back, ``busy`` lasts exactly ``cycles - 1`` cycles. Fault twin
  ``serial_check_skip`` (done when the last product starts) is caught here; the bench catches it
  in the engine too (test_dma_cocotb.py, slow tier).
* :class:`~openmaia.tile.dma.TileDma` with ``serial_checks=True``: parameters, lint of the ice40
  preset, and the cocotb bench's scenarios (bench: openmaia.benches.dma; transfers both ways,
  every rejection followed by a good descriptor, random valid and invalid descriptors on both
  queues, AXI / ECC errors followed by good transfers, random pauses on every channel). The
  bench's ``overlap`` case is left out: it asks that most of its short reads (1 .. 32 beats)
  issue their ARs before the read ahead lands, which a 68-cycle check does not allow.
"""

import random
from dataclasses import replace

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator
from openmaia.config import PRESETS, get_config
from openmaia.errors import ErrorCode
from openmaia.harness.elaborate import lint
from openmaia.tile.dma import DmaCheck, TileDma
from openmaia.tile.dma_descriptor import DmaDescriptor, DmaDirection, check_descriptor

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

H2T, T2H = DmaDirection.HBM_TO_TSRAM, DmaDirection.TSRAM_TO_HBM
TSRAM_BYTES = 1 << 12
MAX16 = 0xFFFF
ALL_CODES = {ErrorCode.OK, ErrorCode.DESC_BAD_ELEMENT, ErrorCode.DESC_ZERO_COUNT,
             ErrorCode.DESC_STRIDE_OVERFLOW, ErrorCode.DESC_OUT_OF_WINDOW,
             ErrorCode.TSRAM_OUT_OF_RANGE}


def _last(desc, side):
    addr, s1, s2 = (getattr(desc, f"{side}_{f}") for f in ("addr", "stride1", "stride2"))
    return (addr + (desc.count2 - 1) * s2 + (desc.count1 - 1) * s1
            + desc.count0 * max(desc.elem_size, 1) - 1)


def _random_case(rng, bits):
    top = (1 << bits) - 1

    def edge(nbits):
        return rng.choice((0, 1, 2, (1 << nbits) - 1, (1 << nbits) - 2, rng.randrange(1 << nbits),
                           rng.randrange(1 << (nbits // 2))))

    desc = DmaDescriptor(direction=rng.randrange(2), hbm_addr=edge(bits),
                         tsram_addr=rng.choice((edge(32), rng.randrange(TSRAM_BYTES))),
                         count0=rng.choice((0, 1, 2, rng.randrange(300), MAX16)),
                         count1=rng.choice((0, 1, 2, rng.randrange(20), rng.randrange(1 << 16),
                                            MAX16)),
                         count2=rng.choice((0, 1, 2, rng.randrange(5), rng.randrange(1 << 16),
                                            MAX16)),
                         hbm_stride1=rng.choice((0, edge(bits), rng.randrange(5000))),
                         hbm_stride2=rng.choice((0, edge(bits), rng.randrange(50000))),
                         tsram_stride1=rng.choice((0, edge(32), rng.randrange(100))),
                         tsram_stride2=rng.choice((0, edge(32), rng.randrange(1000))),
                         elem_size=rng.choice((1, 2, 4, 1, 2, 4, 0, 3, 5, 6, 7)))
    lo = min(rng.choice((0, rng.randrange(1 << bits), desc.hbm_addr, desc.hbm_addr + 1)), top)
    hi = rng.choice((lo, top, rng.randrange(lo, 1 << bits)))
    last = _last(desc, "hbm")
    if rng.random() < 0.3 and 0 <= last <= top:   # the edges of the window
        lo, hi = desc.hbm_addr + rng.choice((0, 0, 1)), last + rng.choice((0, 0, -1))
        lo, hi = min(lo, top), max(min(hi, top), 0)
    return desc, (lo, hi)


def _corner_cases(bits):
    top = (1 << bits) - 1
    one = DmaDescriptor(direction=H2T, hbm_addr=100, tsram_addr=0, count0=10)
    tile = DmaDescriptor(direction=T2H, hbm_addr=1000, tsram_addr=64, count0=10, count1=3,
                         count2=2, hbm_stride1=100, hbm_stride2=1000, tsram_stride1=16,
                         tsram_stride2=100)
    tile_last = _last(tile, "hbm")
    cases = [
        (one, (0, top)), (one, (100, 109)), (one, (101, 109)), (one, (100, 108)),
        (tile, (1000, tile_last)), (tile, (1000, tile_last - 1)), (tile, (1001, tile_last)),
        (tile, (999, tile_last + 1)),
        # every error code
        (replace(one, elem_size=3), (0, top)), (replace(one, count2=0), (0, top)),
        (replace(one, count0=0, elem_size=5), (0, top)),
        (replace(one, hbm_addr=top, count0=2), (0, top)),
        (replace(one, tsram_addr=(1 << 32) - 1, count0=2), (0, top)),
        (replace(one, tsram_addr=TSRAM_BYTES), (0, top)),
        # maximal counts and strides
        (DmaDescriptor(direction=H2T, hbm_addr=0, tsram_addr=0, count0=MAX16, count1=MAX16,
                       count2=MAX16, hbm_stride1=top, hbm_stride2=top,
                       tsram_stride1=(1 << 32) - 1, tsram_stride2=(1 << 32) - 1,
                       elem_size=4), (0, top)),
        (DmaDescriptor(direction=H2T, hbm_addr=0, tsram_addr=0, count0=1, count1=MAX16,
                       count2=1, hbm_stride1=top // MAX16, tsram_stride1=0), (0, top)),
        (DmaDescriptor(direction=H2T, hbm_addr=0, tsram_addr=0, count0=1, count1=1,
                       count2=MAX16, hbm_stride2=top // MAX16 + 1, tsram_stride2=0), (0, top)),
        (DmaDescriptor(direction=T2H, hbm_addr=5, tsram_addr=0, count0=1, count1=MAX16,
                       count2=MAX16, hbm_stride1=0, hbm_stride2=0, tsram_stride1=0,
                       tsram_stride2=0), (5, 5)),
    ]
    # TSRAM end exactly at tsram_bytes (OK) and one past (rejected), by stride1 and by stride2.
    for count1, count2, s1, s2 in ((4, 1, 1000, 0), (1, 4, 0, 1000), (3, 3, 300, 1000)):
        d = DmaDescriptor(direction=H2T, hbm_addr=0, tsram_addr=0, count0=8, count1=count1,
                          count2=count2, hbm_stride1=8, hbm_stride2=64, tsram_stride1=s1,
                          tsram_stride2=s2)
        end = _last(d, "tsram") + 1
        for extra in (0, 1):
            cases.append((replace(d, tsram_addr=TSRAM_BYTES - end + extra), (0, top)))
    # Same with an HBM stride product that carries into the top bits (overflow by one byte).
    d = DmaDescriptor(direction=H2T, hbm_addr=0, tsram_addr=0, count0=1, count1=257,
                      count2=1, hbm_stride1=top // 256)
    for extra in (0, 1):
        cases.append((replace(d, hbm_addr=top - _last(d, "hbm") + extra), (0, top)))
    return cases


class _SideBySide:
    """The combinational and the serial check on the same inputs."""

    def __init__(self, bits, faults=frozenset()):
        self.comb = DmaCheck(hbm_addr_bits=bits, tsram_bytes=TSRAM_BYTES)
        self.serial = DmaCheck(hbm_addr_bits=bits, tsram_bytes=TSRAM_BYTES, serial=True,
                               faults=faults)
        self.m = Module()
        self.m.submodules.comb = self.comb
        self.m.submodules.serial = self.serial


def _run_side_by_side(cases, bits, seed, faults=frozenset()):
    """Returns, per case: (comb status, hbm_last, hbm_plane), (serial ...), busy cycles."""
    dut = _SideBySide(bits, faults)
    rng = random.Random(seed)
    results = []

    async def bench(ctx):
        for desc, (lo, hi) in cases:
            for check in (dut.comb, dut.serial):
                ctx.set(check.desc.as_value(), desc.encode(bits))
            # The window is free while the check runs; the outputs follow the current one.
            ctx.set(dut.serial.window_base, rng.randrange(1 << bits))
            ctx.set(dut.serial.window_limit, rng.randrange(1 << bits))
            ctx.set(dut.serial.start, 1)
            await ctx.tick()
            ctx.set(dut.serial.start, 0)
            busy = 0
            while ctx.get(dut.serial.busy):
                busy += 1
                assert busy < 10 * dut.serial.cycles, "serial check stuck"
                if rng.random() < 0.1:
                    ctx.set(dut.serial.start, 1)      # ignored while busy
                await ctx.tick()
                ctx.set(dut.serial.start, 0)
            for check in (dut.comb, dut.serial):
                ctx.set(check.window_base, lo)
                ctx.set(check.window_limit, hi)
            got = [tuple(ctx.get(getattr(c, p)) for p in ("status", "hbm_last", "hbm_plane"))
                   for c in (dut.comb, dut.serial)]
            results.append((*got, busy))
            if rng.random() < 0.3:       # an idle gap; otherwise the next check starts now
                await ctx.tick()

    sim = Simulator(dut.m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


def _mismatches(cases, results, bits):
    bad = []
    for (desc, window), (comb, serial, busy) in zip(cases, results):
        want = check_descriptor(desc, hbm_addr_bits=bits, window=window, tsram_bytes=TSRAM_BYTES)
        same = comb[0] == serial[0] and (comb[0] != ErrorCode.OK or comb == serial)
        if comb[0] != want or not same:
            bad.append((desc, window, ErrorCode(want), comb, serial))
    return bad


@pytest.mark.parametrize("bits", [20, 40])
def test_serial_check_matches_combinational(rng, seed, bits):
    cases = _corner_cases(bits) + [_random_case(rng, bits) for _ in range(600)]
    results = _run_side_by_side(cases, bits, seed)
    bad = _mismatches(cases, results, bits)
    assert not bad, f"{len(bad)} mismatches, first: {bad[0]}"
    cycles = DmaCheck(hbm_addr_bits=bits, tsram_bytes=TSRAM_BYTES, serial=True).cycles
    assert {busy for *_, busy in results} == {cycles - 1}
    seen = {ErrorCode(serial[0]) for _, serial, _ in results}
    assert seen == ALL_CODES, seen
    corner = {ErrorCode(serial[0]) for _, serial, _ in results[:len(_corner_cases(bits))]}
    assert corner == ALL_CODES, corner


def test_serial_check_fault_skip_is_caught(rng, seed):
    bits = 20
    cases = _corner_cases(bits) + [_random_case(rng, bits) for _ in range(200)]
    results = _run_side_by_side(cases, bits, seed, faults={"serial_check_skip"})
    assert _mismatches(cases, results, bits)


def test_check_parameters():
    with pytest.raises(TypeError, match="serial"):
        DmaCheck(hbm_addr_bits=20, tsram_bytes=TSRAM_BYTES, serial=1)
    assert DmaCheck(hbm_addr_bits=20, tsram_bytes=TSRAM_BYTES).cycles == 0
    assert DmaCheck(hbm_addr_bits=20, tsram_bytes=TSRAM_BYTES, serial=True).cycles == 68


# --------------------------------------------------------------------------------------------
# TileDma with serial_checks
# --------------------------------------------------------------------------------------------

def test_serial_checks_follow_the_config():
    assert not TileDma.from_config(get_config("small")).serial_checks
    assert TileDma.from_config(get_config("ice40")).serial_checks
    assert not TileDma.from_config(get_config("ice40"), serial_checks=False).serial_checks
    assert TileDma.from_config(get_config("small"), serial_checks=True).serial_checks
    with pytest.raises(TypeError, match="serial_checks"):
        TileDma.from_config(get_config("small"), serial_checks=1)
    with pytest.raises(ValueError, match="serial_check_skip needs serial_checks"):
        TileDma.from_config(get_config("small"), faults={"serial_check_skip"})


def test_lint_ice40():
    lint(TileDma.from_config(get_config("ice40")), name="dma")


SERIAL_SMALL = PRESETS["small"].replace(serial_checks=True)


@pytest.mark.sim
@pytest.mark.parametrize("testcase", [
    "protection", "errors",                      # default tier: window verdicts, error events
    *(pytest.param(t, marks=pytest.mark.slow) for t in ("contiguous", "strided", "random_mix")),
])
def test_serial_dma_bench(testcase):
    from test_dma_cocotb import SHORT_LENGTHS, SHORT_OFFSETS, run
    run(testcase, config=SERIAL_SMALL, lengths=SHORT_LENGTHS[::2], offsets=SHORT_OFFSETS[:3],
        count=40)
