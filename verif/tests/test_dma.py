"""Tile DMA: descriptor helpers, Amaranth-simulator unit tests of the window check, the address
walkers and the realigning byte queue, their fault twins, and lint.

The system-level cocotb benches are in test_dma_cocotb.py.
"""

import random

import pytest
from amaranth.sim import Simulator
from openmaia.config import PRESETS
from openmaia.errors import ErrorCode
from openmaia.harness.elaborate import lint
from openmaia.tile.dma import (
    FAULTS,
    DmaBeatWalker,
    DmaByteFifo,
    DmaCheck,
    DmaChunkWalker,
    TileDma,
)
from openmaia.tile.dma_descriptor import (
    DmaDescriptor,
    DmaDirection,
    check_descriptor,
    dma_reference,
)

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

H2T, T2H = DmaDirection.HBM_TO_TSRAM, DmaDirection.TSRAM_TO_HBM
ADDR_BITS = 20
TSRAM_BYTES = 1 << 12


# --------------------------------------------------------------------------------------------
# Descriptor helpers and the reference
# --------------------------------------------------------------------------------------------

def test_encode_decode_roundtrip(rng):
    for _ in range(200):
        desc = DmaDescriptor(direction=rng.randrange(2), hbm_addr=rng.randrange(1 << 32),
                             tsram_addr=rng.randrange(1 << 32), count0=rng.randrange(1 << 16),
                             count1=rng.randrange(1 << 16), count2=rng.randrange(1 << 16),
                             hbm_stride1=rng.randrange(1 << 32),
                             hbm_stride2=rng.randrange(1 << 32),
                             tsram_stride1=rng.randrange(1 << 32),
                             tsram_stride2=rng.randrange(1 << 32),
                             elem_size=rng.randrange(8), tag=rng.randrange(256))
        assert DmaDescriptor.decode(desc.encode(32), 32) == desc
    with pytest.raises(ValueError, match="does not fit"):
        DmaDescriptor.contiguous(H2T, 1 << 20, 0, 4).encode(20)


def test_reference_tile_copy():
    hbm = bytearray(random.Random(1).randbytes(64 * 4096 + 256))
    ts = bytearray(4096)
    desc = DmaDescriptor(direction=H2T, hbm_addr=256, tsram_addr=0, count0=64, count1=64,
                         hbm_stride1=4096, tsram_stride1=64)
    assert dma_reference(desc, hbm, ts, hbm_addr_bits=32, window=(0, len(hbm) - 1),
                         tsram_bytes=4096) is ErrorCode.OK
    for r in range(64):
        assert ts[64 * r:64 * r + 64] == hbm[256 + 4096 * r:256 + 4096 * r + 64]


def test_reference_rejects_change_nothing():
    hbm, ts = bytearray(range(256)) * 4, bytearray(64)
    desc = DmaDescriptor.contiguous(H2T, 10, 0, 20)
    assert dma_reference(desc, hbm, ts, hbm_addr_bits=32, window=(11, 100),
                         tsram_bytes=64) is ErrorCode.DESC_OUT_OF_WINDOW
    assert ts == bytearray(64)


# --------------------------------------------------------------------------------------------
# DmaCheck against check_descriptor
# --------------------------------------------------------------------------------------------

def _random_check_case(rng):
    def edge(bits):
        return rng.choice((0, 1, 2, (1 << bits) - 1, (1 << bits) - 2, rng.randrange(1 << bits),
                           rng.randrange(1 << (bits // 2))))
    desc = DmaDescriptor(direction=rng.randrange(2), hbm_addr=edge(ADDR_BITS),
                         tsram_addr=rng.choice((edge(32), rng.randrange(TSRAM_BYTES))),
                         count0=rng.choice((0, 1, 2, rng.randrange(300), 0xFFFF)),
                         count1=rng.choice((0, 1, 2, rng.randrange(20), 0xFFFF)),
                         count2=rng.choice((0, 1, 2, rng.randrange(5), 0xFFFF)),
                         hbm_stride1=rng.choice((0, edge(ADDR_BITS), rng.randrange(5000))),
                         hbm_stride2=rng.choice((0, edge(ADDR_BITS), rng.randrange(50000))),
                         tsram_stride1=rng.choice((0, edge(32), rng.randrange(100))),
                         tsram_stride2=rng.choice((0, edge(32), rng.randrange(1000))),
                         elem_size=rng.choice((1, 2, 4, 1, 2, 4, 0, 3, 5, 6, 7)))
    lo = rng.choice((0, rng.randrange(1 << ADDR_BITS), desc.hbm_addr, desc.hbm_addr + 1))
    lo = min(lo, (1 << ADDR_BITS) - 1)
    hi = rng.choice((lo, (1 << ADDR_BITS) - 1, rng.randrange(lo, 1 << ADDR_BITS)))
    first = desc.hbm_addr
    last = (first + (desc.count2 - 1) * desc.hbm_stride2 + (desc.count1 - 1) * desc.hbm_stride1
            + desc.count0 * max(desc.elem_size, 1) - 1)
    if rng.random() < 0.3 and 0 <= last < 1 << ADDR_BITS:   # the edges of the window
        lo, hi = first + rng.choice((0, 0, 1)), last + rng.choice((0, 0, -1))
        lo, hi = min(lo, (1 << ADDR_BITS) - 1), max(min(hi, (1 << ADDR_BITS) - 1), 0)
    return desc, (lo, hi)


def _run_check(cases, faults=frozenset()):
    dut = DmaCheck(hbm_addr_bits=ADDR_BITS, tsram_bytes=TSRAM_BYTES, faults=faults)
    got = []

    async def bench(ctx):
        for desc, (lo, hi) in cases:
            ctx.set(dut.desc.as_value(), desc.encode(ADDR_BITS))
            ctx.set(dut.window_base, lo)
            ctx.set(dut.window_limit, hi)
            got.append(ctx.get(dut.status))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return got


def _check_mismatches(cases, got):
    bad = []
    for (desc, window), status in zip(cases, got):
        want = check_descriptor(desc, hbm_addr_bits=ADDR_BITS, window=window,
                                tsram_bytes=TSRAM_BYTES)
        if status != want:
            bad.append((desc, window, status, want))
    return bad


def test_check_matches_reference(rng):
    cases = [_random_check_case(rng) for _ in range(3000)]
    got = _run_check(cases)
    bad = _check_mismatches(cases, got)
    assert not bad, f"{len(bad)} mismatches, first: {bad[0]}"
    seen = {ErrorCode(s) for s in got}
    assert seen == {ErrorCode.OK, ErrorCode.DESC_BAD_ELEMENT, ErrorCode.DESC_ZERO_COUNT,
                    ErrorCode.DESC_STRIDE_OVERFLOW, ErrorCode.DESC_OUT_OF_WINDOW,
                    ErrorCode.TSRAM_OUT_OF_RANGE}, seen


def test_check_window_edges():
    """A pattern ending exactly at the limit passes; one byte more is rejected (both ends)."""
    d = DmaDescriptor(direction=T2H, hbm_addr=1000, tsram_addr=0, count0=10, count1=3,
                      count2=2, hbm_stride1=100, hbm_stride2=1000)   # last byte 2209
    cases = [(d, (1000, 2209)), (d, (1000, 2208)), (d, (1001, 2209)), (d, (999, 2210))]
    assert _run_check(cases) == [ErrorCode.OK, ErrorCode.DESC_OUT_OF_WINDOW,
                                 ErrorCode.DESC_OUT_OF_WINDOW, ErrorCode.OK]


def test_check_fault_window_off_by_one_is_caught(rng):
    d = DmaDescriptor(direction=T2H, hbm_addr=1000, tsram_addr=0, count0=10)
    assert _run_check([(d, (1000, 1008))], faults={"window_off_by_one"}) == [ErrorCode.OK]
    cases = [_random_check_case(rng) for _ in range(3000)]
    assert _check_mismatches(cases, _run_check(cases, faults={"window_off_by_one"}))


# --------------------------------------------------------------------------------------------
# Address walkers
# --------------------------------------------------------------------------------------------

def chunk_model(base, s1, s2, c1, c2, row, split, cut_at_start=False):
    out = []
    for i2 in range(c2):
        for i1 in range(c1):
            a, left = base + i2 * s2 + i1 * s1, row
            while left:
                space = split if cut_at_start else split - a % split
                n = min(left, space)
                out.append((a, n))
                a, left = a + n, left - n
    return out


def beat_model(chunks, word_bytes):
    out = []
    for a, n in chunks:
        lo = a % word_bytes
        while n:
            k = min(n, word_bytes - lo)
            out.append((a // word_bytes, lo, k, int(k == n)))
            a, n, lo = a + k, n - k, 0
    return out


def _run_walkers(patterns, *, split, word_bytes, stall, seed, cut_at_start=False):
    """Chunk walker -> beat walker in the Amaranth simulator; returns chunks and beats taken."""
    from amaranth.hdl import Module
    from amaranth.lib import wiring

    walker = DmaChunkWalker(addr_bits=ADDR_BITS, split_bytes=split, cut_at_start=cut_at_start)
    beats = DmaBeatWalker(addr_bits=ADDR_BITS, split_bytes=split, word_bytes=word_bytes)
    m = Module()
    m.submodules.walker = walker
    m.submodules.beats = beats
    wiring.connect(m, walker.chunks, beats.chunks)
    rng = random.Random(seed)
    got_chunks, got_beats, finals = [], [], []

    async def bench(ctx):
        for base, s1, s2, c1, c2, row in patterns:
            ctx.set(walker.base, base)
            ctx.set(walker.stride1, s1)
            ctx.set(walker.stride2, s2)
            ctx.set(walker.count1, c1)
            ctx.set(walker.count2, c2)
            ctx.set(walker.row_bytes, row)
            ctx.set(walker.start, 1)
            await ctx.tick()
            ctx.set(walker.start, 0)
            chunks, bts = [], []
            for _ in range(100_000):
                ready = rng.random() >= stall
                ctx.set(beats.beats.ready, ready)
                cv, cr, cp = (ctx.get(walker.chunks.valid), ctx.get(walker.chunks.ready),
                              ctx.get(walker.chunks.payload))
                bv, bp = ctx.get(beats.beats.valid), ctx.get(beats.beats.payload)
                if cv and cr:
                    chunks.append((cp.addr, cp.nbytes))
                if bv and ready:
                    bts.append((bp.word, bp.lo, bp.n, bp.last))
                    if bp.final:
                        finals.append(len(bts))
                        await ctx.tick()
                        break
                await ctx.tick()
            got_chunks.append(chunks)
            got_beats.append(bts)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got_chunks, got_beats, finals


def _walker_patterns(rng, count):
    pats = [(4096 - 40, 4096, 8192 + 17, 3, 2, 100), (128, 4096, 0, 64, 1, 64),
            (5, 0, 0, 1, 1, 1), (4095, 0, 0, 1, 1, 2), (0, 0, 0, 1, 1, 9000)]
    for _ in range(count):
        row = rng.choice((1, 2, 3, rng.randrange(1, 64), rng.randrange(1, 5000)))
        pats.append((rng.randrange(1 << 16), rng.randrange(6000), rng.randrange(30000),
                     rng.randint(1, 4), rng.randint(1, 3), row))
    return pats


@pytest.mark.parametrize("word_bytes,split", [(16, 4096), (4, 1024), (8, 2048)])
def test_walkers_match_model(rng, seed, word_bytes, split):
    pats = _walker_patterns(rng, 25)
    chunks, beats, finals = _run_walkers(pats, split=split, word_bytes=word_bytes, stall=0.3,
                                         seed=seed)
    for pat, got_c, got_b, final in zip(pats, chunks, beats, finals):
        want_c = chunk_model(*pat, split)
        assert got_c == want_c, f"pattern {pat}: chunks differ"
        assert got_b == beat_model(want_c, word_bytes), f"pattern {pat}: beats differ"
        assert final == len(got_b), f"pattern {pat}: final flag at beat {final}"
        for a, n in got_c:
            assert a // split == (a + n - 1) // split and n <= split
    assert len(finals) == len(pats)


def test_walker_fault_no_4k_split_is_caught(seed):
    pats = [(4096 - 40, 4096, 0, 2, 1, 100)]
    chunks, _, _ = _run_walkers(pats, split=4096, word_bytes=16, stall=0.0, seed=seed,
                                cut_at_start=True)
    assert chunks[0] != chunk_model(*pats[0], 4096)
    assert any(a // 4096 != (a + n - 1) // 4096 for a, n in chunks[0])


# --------------------------------------------------------------------------------------------
# Byte queue (realignment)
# --------------------------------------------------------------------------------------------

def _pieces(rng, total, wb, offset):
    """Cut ``total`` bytes into bus words starting at lane ``offset`` (like the beat walker)."""
    out, lo = [], offset
    while total:
        n = min(total, wb - lo, rng.choice((wb, wb, rng.randint(1, wb))))
        out.append((lo, n))
        total -= n
        lo = rng.randrange(0, wb - min(total, wb) + 1) if total and rng.random() < 0.3 else 0
    return out


@pytest.mark.parametrize("wb", [4, 16])
def test_byte_fifo_realigns(rng, wb):
    dut = DmaByteFifo(word_bytes=wb)
    total = 3000
    data = rng.randbytes(total)
    ins = _pieces(rng, total, wb, rng.randrange(wb))
    outs = _pieces(rng, total, wb, rng.randrange(wb))
    result = bytearray()
    cycles = [0]

    async def producer(ctx):
        pos = 0
        for lo, n in ins:
            word = bytearray(rng.randbytes(wb))
            word[lo:lo + n] = data[pos:pos + n]
            pos += n
            ctx.set(dut.i_data, int.from_bytes(word, "little"))
            ctx.set(dut.i_lo, lo)
            ctx.set(dut.i_n, n)
            while True:
                valid = rng.random() > 0.2
                ctx.set(dut.i_valid, valid)
                _, _, ready = await ctx.tick().sample(dut.i_ready)
                if valid and ready:
                    break
        ctx.set(dut.i_valid, 0)

    async def consumer(ctx):
        for lo, n in outs:
            ctx.set(dut.o_lo, lo)
            ctx.set(dut.o_n, n)
            while True:
                valid = rng.random() > 0.2
                ctx.set(dut.o_valid, valid)
                _, _, ready, word, strb = await ctx.tick().sample(dut.o_ready, dut.o_data,
                                                                  dut.o_strb)
                cycles[0] += 1
                assert cycles[0] < 20 * len(outs) + 100, "byte queue stuck"
                if valid and ready:
                    assert strb == ((1 << n) - 1) << lo
                    result.extend(word.to_bytes(wb, "little")[lo:lo + n])
                    break
        ctx.set(dut.o_valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert bytes(result) == data


# --------------------------------------------------------------------------------------------
# The engine: parameters and lint
# --------------------------------------------------------------------------------------------

def test_parameter_checks():
    small = PRESETS["small"]
    with pytest.raises(ValueError, match="multiple of the AXI data bytes"):
        TileDma.from_config(small.replace(axi_data_bits=256))
    with pytest.raises(ValueError, match="unknown faults"):
        TileDma.from_config(small, faults={"nope"})
    with pytest.raises(TypeError, match="faults"):
        TileDma.from_config(small, faults="no_4k_split")
    assert set(FAULTS) == {"no_4k_split", "window_off_by_one", "full_strobes", "unstable_wdata",
                           "decerr_as_slverr", "read_status_at_finish", "serial_check_skip"}


@pytest.mark.parametrize("preset", ["small", "ulx3s"])
def test_lint(preset):
    lint(TileDma.from_config(PRESETS[preset]), name="tile_dma")


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["default", "ice40"])
def test_lint_other_presets(preset):
    lint(TileDma.from_config(PRESETS[preset]), name="tile_dma")
