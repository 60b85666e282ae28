"""The TileTensorEngine (TTU + operand fetchers + result writer): tile ops addressed in tile SRAM.

Amaranth simulator: the engine against memory models (random stalls and latency on all three
ports, one shared memory), random legal and illegal ops, keep / accumulate chains; the final
memory must equal the golden tile-command layer's byte for byte and the events must come in
order with the golden statuses. cocotb + Verilator: the same workloads on the elaborated engine
next to a real TileSram (ECC on), loaded and read back through a host port.
"""

import random

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, connect

from openmaia.benches.ttu_engine import ILLEGAL_KINDS, EngineWithTileSram, EngineWorkload
from openmaia.config import get_config
from openmaia.errors import ErrorCode
from openmaia.harness.amaranth_sim import memory_process, run_streams
from openmaia.harness.elaborate import lint
from openmaia.harness.sim import simulate
from openmaia.harness.streams import pack, unpack
from openmaia.tile.tile_op import TileOpCommand
from openmaia.tile.tsram import TileSram
from openmaia.tile.ttu_engine import EngineCounters, TileTensorEngine
from openmaia.tile.ttu_stream import TtuEvent


def _workload(cfg, seed, **kw):
    return EngineWorkload(rows=cfg.array_rows, cols=cfg.array_cols, slots=cfg.acc_depth,
                          panel_blocks=cfg.ttu_panel_blocks, formats=cfg.formats,
                          tsram_bytes=cfg.tsram_bytes, seed=seed, **kw)


def run_engine(cfg, wl, *, seed, gap=0.0, stall=0.0, mem_stall=0.0, latency=(2, 4),
               budget=None):
    """Run a workload on the engine with memory models; check memory and events; return
    (cycles, counters)."""
    dut = TileTensorEngine.from_config(cfg)
    want_events, want_memory = wl.expected()
    memory = wl.memory.copy()
    rng = random.Random(seed)
    procs = [memory_process(port, memory, word_bytes=port.signature.data_width // 8,
                            rng=random.Random(rng.getrandbits(32)), stall=mem_stall,
                            latency=latency)
             for port in (dut.mem_a, dut.mem_b, dut.mem_c)]

    async def probe(ctx):
        return unpack(EngineCounters, ctx.get(dut.counters.as_value()))

    out, last, counters = run_streams(
        dut, sources={"cmd": [pack(TileOpCommand, c) for c in wl.commands()]},
        sinks={"event": len(want_events)}, gap=gap, stall=stall, seed=rng.getrandbits(32),
        budget=budget or 2_000 + 6 * wl.macs() // (cfg.array_rows * cfg.array_cols * cfg.lanes),
        probe=probe, processes=procs)
    events = [unpack(TtuEvent, x) for x in out["event"]]
    assert events == want_events
    diff = np.flatnonzero(memory != want_memory)
    assert diff.size == 0, f"{diff.size} bytes differ, first at {diff[0]:#x}"
    assert counters["ops"] == sum(e["status"] == 0 for e in want_events)
    assert counters["rejected"] == sum(e["status"] != 0 for e in want_events)
    assert counters["ttu"]["macs"] == wl.macs()
    return last, counters


def test_random_ops_small(seed):
    cfg = get_config("small")
    wl = _workload(cfg, seed).random(10, chains=1)
    run_engine(cfg, wl, seed=seed, gap=0.2, stall=0.3, mem_stall=0.3)


def test_every_illegal_kind_then_a_good_op(seed):
    cfg = get_config("small")
    wl = _workload(cfg, seed)
    for kind in ILLEGAL_KINDS:
        wl.illegal(kind)
        wl.random_op(max_m_tiles=1, max_n_tiles=2)
    events, _ = wl.expected()
    assert [e["status"] != 0 for e in events] == [k != "random" for k in wl.kinds]
    run_engine(cfg, wl, seed=seed, stall=0.2)


def test_statuses_cover_every_rule(seed):
    """The workload's illegal kinds produce every status the rules define (on a configuration
    that leaves formats out)."""
    cfg = get_config("small").replace(formats={"e4m3", "e2m1"})
    wl = _workload(cfg, seed)
    for kind in ILLEGAL_KINDS:
        wl.illegal(kind)
    statuses = {e["status"] for e in wl.expected()[0]}
    assert statuses == {ErrorCode.ILLEGAL_SHAPE, ErrorCode.FORMAT_NOT_BUILT,
                        ErrorCode.ILLEGAL_FIELD, ErrorCode.TSRAM_OUT_OF_RANGE}


def test_parameter_checks():
    cfg = get_config("small")
    with pytest.raises(ValueError):
        TileTensorEngine.from_config(cfg.replace(tsram_bank_depth=3))
    with pytest.raises(ValueError):
        TileTensorEngine(formats=cfg.formats, rows=2, cols=2, lanes=4, slots=4, panel_blocks=8,
                         tsram_bytes=1000, port_bytes=32, bank_bytes=16)


@pytest.mark.parametrize("config", ["small", "ice40"])
def test_lint(config):
    lint(TileTensorEngine.from_config(get_config(config)), name=f"ttu_engine_{config}")


def _bench(config, *, ops, seed, name=None, **kw):
    cfg = get_config(config)
    top = EngineWithTileSram(cfg)
    params = dict(rows=cfg.array_rows, cols=cfg.array_cols, lanes=cfg.lanes,
                  slots=cfg.acc_depth, panel_blocks=cfg.ttu_panel_blocks,
                  formats=sorted(cfg.format_names), tsram_bytes=cfg.tsram_bytes,
                  host_bytes=top.host_bytes, host_addr_bits=top.host.signature.addr_width,
                  ops=ops) | kw
    result = simulate(top, bench="openmaia.benches.ttu_engine", name=name or f"ttu_engine_{config}",
                      testcase="random_ops", params=params, seed=seed)
    print(f"build {result.build_seconds:.1f} s (cached {result.build_cached}), "
          f"run {result.run_seconds:.1f} s")


def test_cocotb_random_small(seed):
    """Verilator: random ops, illegal ones and resident chains on the small engine + TSRAM."""
    _bench("small", ops=12, seed=seed)


@pytest.mark.slow
def test_cocotb_random_small_long(seed):
    _bench("small", ops=150, chains=10, seed=seed)
