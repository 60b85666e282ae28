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

from openmaia.benches.ttu_engine import ILLEGAL_KINDS, EngineWithTileSram, EngineWorkload
from openmaia.config import get_config
from openmaia.errors import ErrorCode
from openmaia.harness.amaranth_sim import memory_process, run_streams
from openmaia.harness.sim import simulate
from openmaia.harness.streams import pack, unpack
from openmaia.tile.tile_op import TileOpCommand
from openmaia.tile.ttu_engine import EngineCounters, TileTensorEngine
from openmaia.tile.ttu_stream import TtuEvent


def _workload(cfg, seed, **kw):
    return EngineWorkload(rows=cfg.array_rows, cols=cfg.array_cols, slots=cfg.acc_depth,
                          panel_blocks=cfg.ttu_panel_blocks, formats=cfg.formats,
                          tsram_bytes=cfg.tsram_bytes, seed=seed, **kw)


def run_engine(cfg, wl, *, seed, gap=0.0, stall=0.0, mem_stall=0.0, latency=(2, 4),
               budget=None, poison=frozenset(), want_events=None, **engine_kw):
    """Run a workload on the engine with memory models; check memory and events; return
    (cycles, counters). ``poison``: operand-port word addresses that read as uncorrectable
    (then ``want_events`` gives the events)."""
    dut = TileTensorEngine.from_config(cfg, **engine_kw)
    golden_events, want_memory = wl.expected()
    want_events = want_events or golden_events
    memory = wl.memory.copy()
    rng = random.Random(seed)
    procs = [memory_process(port, memory, word_bytes=port.signature.data_width // 8,
                            rng=random.Random(rng.getrandbits(32)), stall=mem_stall,
                            latency=latency, poison=poison if port is not dut.mem_c else ())
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
    assert counters["ops"] == sum(e["status"] == 0 for e in golden_events)
    assert counters["rejected"] == sum(e["status"] != 0 for e in golden_events)
    assert counters["ttu"]["macs"] == wl.macs()
    return last, counters


@pytest.mark.slow
def test_random_ops_small(seed):
    """(The default tier runs random ops under Verilator: test_cocotb_random_small.)"""
    cfg = get_config("small")
    wl = _workload(cfg, seed).random(10, chains=1)
    run_engine(cfg, wl, seed=seed, gap=0.2, stall=0.3, mem_stall=0.3)


def test_every_illegal_kind_then_a_good_op(seed):
    cfg = get_config("small")
    wl = _workload(cfg, seed)
    for kind in ILLEGAL_KINDS:
        wl.illegal(kind)
        wl.random_op(max_m_tiles=1, max_n_tiles=1, max_k=2)
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


def test_uncorrectable_operand_word_fails_its_op_only(seed):
    cfg = get_config("small")
    wl = _workload(cfg, seed)
    for _ in range(3):
        wl.random_op(max_m_tiles=1, max_n_tiles=1, max_k=2)
    victim = wl.ops[1]
    word = victim.a.codes // (cfg.ttu_port_words * cfg.tsram_bank_bytes)
    events = wl.expected()[0]
    events[1]["status"] = ErrorCode.ECC_UNCORRECTABLE
    run_engine(cfg, wl, seed=seed, poison={word}, want_events=events)


@pytest.mark.parametrize("config, serial", [("small", False), ("small", True),
                                            ("ice40", True)])
def test_range_checks_at_the_sram_edges(config, serial, seed):
    """Each plane ending exactly at the top of the SRAM runs; one step past, a stride or base
    of 2**32 - 8, refuse with TSRAM_OUT_OF_RANGE, with the combinational and the serial
    (Config.serial_checks) range checks; good ops in between still run."""
    cfg = get_config(config)
    wl = _workload(cfg, seed)
    statuses = wl.range_edges()
    assert ErrorCode.OK in statuses and ErrorCode.TSRAM_OUT_OF_RANGE in statuses
    wl.random_op(max_m_tiles=1, max_n_tiles=1, max_k=1)
    dut_cycles, _ = run_engine(cfg, wl, seed=seed, stall=0.2, serial_checks=serial)
    print(f"{config} serial={serial}: {len(wl.ops)} ops in {dut_cycles} cycles")


def test_random_ops_ice40(seed):
    """The `ice40` engine (serial checks, queues of 2): random ops, resident chains and every
    illegal kind, with gaps, backpressure and memory stalls."""
    cfg = get_config("ice40")
    assert cfg.ttu_queue_depth == 2 and cfg.serial_checks
    wl = _workload(cfg, seed).random(6, chains=1)
    run_engine(cfg, wl, seed=seed, gap=0.2, stall=0.3, mem_stall=0.3)


def test_range_check_fault_is_caught(seed):
    """The broken twin: leaving the check stage before the serial verdicts are in."""
    cfg = get_config("ice40")
    wl = _workload(cfg, seed)
    wl.range_edges()
    with pytest.raises(AssertionError):
        run_engine(cfg, wl, seed=seed, check_faults={"dispatch_before_verdict"})


def test_serial_checks_follow_the_config():
    assert not TileTensorEngine.from_config(get_config("small")).serial_checks
    assert TileTensorEngine.from_config(get_config("ice40")).serial_checks
    assert not TileTensorEngine.from_config(get_config("ice40"), serial_checks=False).serial_checks
    with pytest.raises(TypeError, match="serial_checks"):
        TileTensorEngine.from_config(get_config("small"), serial_checks=1)


@pytest.mark.parametrize("fault", ["no_room_check", "fp6_msb_first", "full_strobes",
                                   "drop_high_word"])
def test_faults_are_caught(fault, seed):
    """Each deliberate fetcher / writer bug fails the memory-and-event scoreboard."""
    cfg = get_config("small")
    wl = _workload(cfg, seed)
    # C starts 4 bytes before a port-word boundary, so the first row's first tile piece
    # (4 x cols bytes) straddles two words wherever the random stride puts the other rows:
    # drop_high_word cannot miss
    port_bytes = cfg.ttu_port_words * cfg.tsram_bank_bytes
    for _ in range(2):
        wl.add(m=cfg.array_rows, n=2 * cfg.array_cols, k=3, fmt_a="e3m2", fmt_b="e2m3",
               c_phase=(port_bytes, port_bytes - 4))
    kind = "fetch_faults" if fault in ("no_room_check", "fp6_msb_first") else "writer_faults"
    with pytest.raises(AssertionError):
        run_engine(cfg, wl, seed=seed, latency=(2, 6), budget=20_000, **{kind: {fault}})


def test_parameter_checks():
    cfg = get_config("small")
    with pytest.raises(ValueError):
        TileTensorEngine.from_config(cfg.replace(tsram_bank_depth=3))
    with pytest.raises(ValueError):
        TileTensorEngine(formats=cfg.formats, rows=2, cols=2, lanes=4, slots=4, panel_blocks=8,
                         tsram_bytes=1000, port_bytes=32, bank_bytes=16)


# Lint: every preset through the top registry (verif/tests/test_harness.py, `ttu-engine`).


def _bench(config, *, ops, seed, name=None, **kw):
    cfg = get_config(config)
    top = EngineWithTileSram(cfg)
    params = dict(rows=cfg.array_rows, cols=cfg.array_cols, lanes=cfg.lanes,
                  slots=cfg.acc_depth, panel_blocks=cfg.ttu_panel_blocks,
                  formats=sorted(cfg.format_names), tsram_bytes=cfg.tsram_bytes,
                  host_bytes=top.host_bytes, host_addr_bits=top.host.signature.addr_width,
                  ops=ops) | kw
    result = simulate(top, bench="openmaia.benches.ttu_engine", name=name or "ttu_engine",
                      testcase="random_ops", params=params, seed=seed)
    print(f"build {result.build_seconds:.1f} s (cached {result.build_cached}), "
          f"run {result.run_seconds:.1f} s")


def test_cocotb_random_small(seed):
    """Verilator: random ops, illegal ones and resident chains on the small engine + TSRAM."""
    _bench("small", ops=12, seed=seed)


@pytest.mark.slow
def test_cocotb_random_small_long(seed):
    _bench("small", ops=15, chains=2, rounds=10, seed=seed)
