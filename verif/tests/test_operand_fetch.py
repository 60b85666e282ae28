"""The TTU operand fetcher (rtl/tile/operand_fetch.py) in the Amaranth simulator: random tile ops
placed at random legal addresses in a memory model with random stalls and latency; every beat
must equal the reference stream (``ttu_stream.a_beats`` / ``b_beats``) in order, every op's
status must come out, and poisoned words must poison exactly the ops that read them."""

import random

import numpy as np
import pytest

from openmaia.benches.ttu import random_operand
from openmaia.config import get_config
from openmaia.errors import ErrorCode
from openmaia.harness.amaranth_sim import memory_process, run_streams
from openmaia.harness.elaborate import lint
from openmaia.harness.streams import pack, unpack
from openmaia.layout import packed_row_bytes
from openmaia.numerics.formats import BLOCK_SIZE, Format
from openmaia.numerics.mx import MXTensor
from openmaia.tile.operand_fetch import FetchCounters, FetchJob, OperandFetcher
from openmaia.tile.tile_op import OperandPlace, ResultPlace, TileOp, fetch_jobs
from openmaia.tile.ttu_stream import OperandBeat, TtuOp, a_beats, b_beats

ALL = tuple(Format)


class Placer:
    """Hands out disjoint byte ranges of a memory, at random gaps and alignments."""

    def __init__(self, rng, size):
        self.rng, self.size, self.cursor = rng, size, 0

    def take(self, nbytes, align):
        base = self.cursor + self.rng.randrange(0, 40)
        base = -(-base // align) * align
        self.cursor = base + nbytes
        assert self.cursor <= self.size, "test memory too small"
        return base


def place_operand(rng, placer, mem, codes, scales, fmt, k):
    """Write one operand (rows x 32k codes) with random legal strides; its OperandPlace."""
    rows = codes.shape[0]
    row_bytes = packed_row_bytes(k * BLOCK_SIZE, fmt)
    cstride = row_bytes + 8 * rng.randrange(0, 3)
    sstride = k + rng.randrange(0, 5)
    cbase = placer.take((rows - 1) * cstride + row_bytes, 8)
    sbase = placer.take((rows - 1) * sstride + k, 1)
    place = OperandPlace(cbase, cstride, sbase, sstride)
    place.layout(rows=rows, k_blocks=k, fmt=fmt).write(mem, codes, scales)
    return place


def random_tile_op(rng, nprng, placer, mem, *, rows, cols, formats, panel_blocks, tag=0):
    fa, fb = rng.choice(formats), rng.choice(formats)
    m = rng.randint(1, 3 * rows)
    n = rng.randint(1, 5 * cols)
    k = rng.choice([1, 2, panel_blocks, rng.randint(1, panel_blocks)])
    op = TtuOp(m=m, n=n, k=k, fmt_a=fa, fmt_b=fb, tag=tag)
    ac, as_ = random_operand(nprng, Format.of(fa), m, k, 0.1)
    bc, bs = random_operand(nprng, Format.of(fb), n, k, 0.1)
    a = place_operand(rng, placer, mem, ac, as_, Format.of(fa), k)
    b = place_operand(rng, placer, mem, bc, bs, Format.of(fb), k)
    K = k * BLOCK_SIZE
    ta = MXTensor(codes=ac, scales=as_, fmt=fa, axis=1, shape=(m, K))
    tb = MXTensor(codes=np.ascontiguousarray(bc.T), scales=np.ascontiguousarray(bs.T), fmt=fb,
                  axis=0, shape=(K, n))
    return TileOp(op, a, b, ResultPlace(0, 4 * n)), ta, tb


def _fetcher(cfg, side, **kw):
    W = cfg.ttu_port_words * cfg.tsram_bank_bytes
    args = dict(count=cfg.array_rows if side == "a" else cfg.array_cols,
                tiles=1 if side == "a" else 2, lanes=cfg.lanes, formats=cfg.formats,
                fp4_double_rate=True, word_bytes=W, scale_bytes=cfg.tsram_bank_bytes,
                addr_width=(cfg.tsram_bytes // W - 1).bit_length(),
                panel_blocks=cfg.ttu_panel_blocks) | kw
    return OperandFetcher(**args)


def run_fetch(cfg, side, ops, mem, *, seed, gap=0.0, stall=0.0, mem_stall=0.0,
              latency=(2, 4), poison=frozenset(), budget=None, faults=frozenset()):
    """Run the ops' jobs of one side through a fetcher; return (beats, statuses, counters,
    cycles, request log). The memory model fails the run if a stalled request changes."""
    dut = _fetcher(cfg, side, faults=frozenset(faults))
    rows, cols, lanes = cfg.array_rows, cfg.array_cols, cfg.lanes
    count = rows if side == "a" else cols
    jobs, want = [], []
    for t, ta, tb in ops:
        pair = t.op.fmt_a is Format.E2M1 and t.op.fmt_b is Format.E2M1
        jobs += fetch_jobs(t, side=side, rows=rows, cols=cols, pair=pair)
        want += (a_beats(t.op, ta, rows=rows, lanes=lanes) if side == "a"
                 else b_beats(t.op, tb, rows=rows, cols=cols, lanes=lanes))
    rng = random.Random(seed)
    log = []
    mem_proc = memory_process(dut.mem, mem, word_bytes=dut.word_bytes,
                              rng=random.Random(rng.getrandbits(32)), stall=mem_stall,
                              latency=latency, poison=poison, log=log)

    async def probe(ctx):
        return unpack(FetchCounters, ctx.get(dut.counters.as_value()))

    layout = FetchJob.of(dut.tiles * count, dut.job_addr_bits)
    out, last, counters = run_streams(
        dut, sources={"job": [pack(layout, j) for j in jobs]},
        sinks={"beats": len(want), "status": len(ops)}, gap=gap, stall=stall,
        seed=rng.getrandbits(32), budget=budget or 200 + 8 * len(want) + 40 * len(jobs),
        probe=probe, processes=[mem_proc])
    beat_layout = OperandBeat.of(count, lanes)
    got = [unpack(beat_layout, x) for x in out["beats"]]
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"beat {i}: got {g}, expected {w}"
    return got, out["status"], counters, last, log


def _memory_case(seed, cfg, nops, formats=None):
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    mem = np.zeros(cfg.tsram_bytes, np.uint8)
    placer = Placer(rng, cfg.tsram_bytes)
    ops = [random_tile_op(rng, nprng, placer, mem, rows=cfg.array_rows, cols=cfg.array_cols,
                          formats=formats or sorted(cfg.formats, key=str),
                          panel_blocks=cfg.ttu_panel_blocks, tag=i) for i in range(nops)]
    return mem, ops


@pytest.mark.parametrize("side", ["a", "b"])
def test_memory_answering_the_next_cycle(side, seed):
    """The port contract sets no minimum latency: a memory answering one cycle after the request
    (the tag FIFO is two cycles deep) still lands every word in its row's buffer."""
    cfg = get_config("small")
    mem, ops = _memory_case(seed, cfg, 4)
    _, status, _, _, _ = run_fetch(cfg, side, ops, mem, seed=seed, gap=0.2, stall=0.3,
                                   latency=(1, 2))
    assert status == [0] * len(ops)


@pytest.mark.parametrize("side", ["a", "b"])
def test_stalled_request_keeps_its_address(side, seed):
    """A request the memory stalls keeps its address until taken, though room freed meanwhile
    makes other words eligible (the stream rule; the memory model checks it). The fault
    ``regrant_while_stalled`` re-arbitrates; it needs a stall just as room frees, which a random
    workload of side b has in about 60 % of cases (4 workloads missed all for seed 322389672),
    so the mutant runs on up to ten workloads (stopping at the first catch) and must be caught
    on one."""
    cfg = get_config("small")
    caught = False
    for sub in range(10):
        case = seed * 10 + sub
        mem, ops = _memory_case(case, cfg, 6)
        _, status, _, _, _ = run_fetch(cfg, side, ops, mem.copy(), seed=case, stall=0.5,
                                       mem_stall=0.7, latency=(1, 2))
        assert status == [0] * len(ops)
        try:
            run_fetch(cfg, side, ops, mem.copy(), seed=case, stall=0.5, mem_stall=0.7,
                      latency=(1, 2), faults={"regrant_while_stalled"})
        except AssertionError as error:
            assert "stalled request" in str(error), error
            caught = True
            break
    assert caught, "the regrant_while_stalled fault went unnoticed"


@pytest.mark.parametrize("side", ["a", "b"])
def test_random_ops_every_format(side, seed):
    cfg = get_config("small")
    mem, ops = _memory_case(seed, cfg, 8)
    _, status, counters, _, _ = run_fetch(cfg, side, ops, mem, seed=seed, gap=0.2, stall=0.3,
                                          mem_stall=0.3)
    assert status == [0] * len(ops)
    assert counters["poisoned"] == 0


@pytest.mark.parametrize("fa,fb", [("e4m3", "e4m3"), ("e2m1", "e2m1"), ("e4m3", "e2m1"),
                                   ("e3m2", "e2m3"), ("int8", "e5m2")])
def test_each_pair_both_sides(fa, fb, seed):
    cfg = get_config("small")
    mem, ops = _memory_case(seed, cfg, 3, formats=[fa, fb])
    for side in "ab":
        run_fetch(cfg, side, ops, mem, seed=seed, gap=0.1, stall=0.2, mem_stall=0.2)


def test_poisoned_word_poisons_its_op_only(seed):
    cfg = get_config("small")
    mem, ops = _memory_case(seed, cfg, 4, formats=["e4m3"])
    W = cfg.ttu_port_words * cfg.tsram_bank_bytes
    victim = ops[1][0].b
    bad = victim.codes // W + 1           # a code word of op 1's B rows
    _, status, counters, _, _ = run_fetch(cfg, "b", ops, mem, seed=seed, poison={bad})
    assert status == [0, ErrorCode.ECC_UNCORRECTABLE, 0, 0]
    assert counters["poisoned"] > 0


def test_steady_state_rate_and_reads(seed):
    """With an always-ready memory and consumer, a long op streams about one beat a cycle, and
    every word of the footprint is read once per pass (no re-reads)."""
    cfg = get_config("small")
    rng = random.Random(seed)
    mem = np.zeros(cfg.tsram_bytes, np.uint8)
    placer = Placer(rng, cfg.tsram_bytes)
    nprng = np.random.default_rng(seed)
    k = cfg.ttu_panel_blocks
    op = TtuOp(m=cfg.array_rows, n=2 * cfg.array_cols, k=k, fmt_a="e4m3", fmt_b="e4m3")
    ac, as_ = random_operand(nprng, Format.E4M3, op.m, k, 0.0)
    bc, bs = random_operand(nprng, Format.E4M3, op.n, k, 0.0)
    a = place_operand(rng, placer, mem, ac, as_, Format.E4M3, k)
    b = place_operand(rng, placer, mem, bc, bs, Format.E4M3, k)
    K = k * BLOCK_SIZE
    ta = MXTensor(codes=ac, scales=as_, fmt="e4m3", axis=1, shape=(op.m, K))
    tb = MXTensor(codes=np.ascontiguousarray(bc.T), scales=np.ascontiguousarray(bs.T),
                  fmt="e4m3", axis=0, shape=(K, op.n))
    ops = [(TileOp(op, a, b, ResultPlace(0, 4 * op.n)), ta, tb)] * 4
    beats, _, counters, cycles, log = run_fetch(cfg, "b", ops, mem, seed=seed,
                                                latency=(2, 2))
    print(f"{len(beats)} beats in {cycles} cycles: {len(beats) / cycles:.3f} beats/cycle, "
          f"stall_input {counters['stall_input']}")
    assert counters["beats"] == len(beats)
    assert counters["reads"] == len(log)
    assert len(beats) / cycles > 0.9


def test_parameter_checks():
    cfg = get_config("small")
    for bad in (dict(count=3), dict(tiles=3), dict(word_bytes=4), dict(word_bytes=24),
                dict(scale_bytes=64), dict(panel_blocks=0), dict(formats=[])):
        with pytest.raises(ValueError):
            _fetcher(cfg, "b", **bad)


@pytest.mark.parametrize("config", ["small", "ice40"])
def test_lint(config):
    cfg = get_config(config)
    for side in "ab":
        lint(_fetcher(cfg, side), name=f"operand_fetch_{config}_{side}")


def test_one_read_serves_rows_sharing_a_word(seed):
    """Tight FP4 rows of one block (16 B) and their scales (1 B a row): one 32-byte read
    serves two rows' codes, one read all rows' scales."""
    cfg = get_config("small")
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    mem = np.zeros(cfg.tsram_bytes, np.uint8)
    G = 2 * cfg.array_cols
    op = TtuOp(m=cfg.array_rows, n=G, k=1, fmt_a="e2m1", fmt_b="e2m1")
    ac, as_ = random_operand(nprng, Format.E2M1, op.m, 1, 0.0)
    bc, bs = random_operand(nprng, Format.E2M1, op.n, 1, 0.0)
    a = OperandPlace(0, 16, 512, 1)
    b = OperandPlace(1024, 16, 1536, 1)
    a.layout(rows=op.m, k_blocks=1, fmt="e2m1").write(mem, ac, as_)
    b.layout(rows=op.n, k_blocks=1, fmt="e2m1").write(mem, bc, bs)
    ta = MXTensor(codes=ac, scales=as_, fmt="e2m1", axis=1, shape=(op.m, BLOCK_SIZE))
    tb = MXTensor(codes=np.ascontiguousarray(bc.T), scales=np.ascontiguousarray(bs.T),
                  fmt="e2m1", axis=0, shape=(BLOCK_SIZE, op.n))
    ops = [(TileOp(op, a, b, ResultPlace(0, 4 * op.n)), ta, tb)]
    _, _, counters, _, log = run_fetch(cfg, "b", ops, mem, seed=rng.getrandbits(32))
    W = cfg.ttu_port_words * cfg.tsram_bank_bytes
    assert len(log) == G * 16 // W + 1, log
