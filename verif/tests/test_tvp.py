"""The Tile Vector Processor (rtl/tile/tvp.py): TVP commands over rows in the tile SRAM.

Amaranth simulator: the TVP against memory models (random stalls and latency on both ports, one
shared memory), random legal and illegal commands of every op; the final memory must equal the
golden model's (:func:`openmaia.sdk.golden.execute_tvp`) byte for byte and the events must come
in order with the golden statuses. cocotb + Verilator: the same workloads on the elaborated TVP
next to a real TileSram (ECC on), loaded and read back through a host port.
"""

import dataclasses
import random

import numpy as np
import pytest
from openmaia.benches.tvp import ILLEGAL_KINDS, TvpWithTileSram, TvpWorkload
from openmaia.config import get_config
from openmaia.errors import ErrorCode
from openmaia.harness.amaranth_sim import memory_process, run_streams
from openmaia.harness.elaborate import lint
from openmaia.harness.sim import simulate
from openmaia.harness.streams import pack, unpack
from openmaia.numerics.formats import Format
from openmaia.tile.isa import TvpCmd, TvpCommand, TvpEvent, TvpOp
from openmaia.tile.tvp import TileVectorProcessor, TvpCounters, tvp_status

TSRAM = 2048


def _tvp(lanes=4, formats=None, **kw):
    formats = formats or get_config("small").formats
    return TileVectorProcessor(lanes=lanes, formats=formats, tsram_bytes=TSRAM,
                               bank_bytes=4 * lanes, port_words=1, **kw)


def _workload(seed, lanes=4, formats=None, **kw):
    formats = formats or get_config("small").formats
    return TvpWorkload(lanes=lanes, formats=formats, tsram_bytes=TSRAM, seed=seed, **kw)


def run_tvp(wl, *, seed, lanes=4, formats=None, gap=0.0, stall=0.0, mem_stall=0.0,
            latency=(2, 4), poison=frozenset(), want_events=None, budget=None, **kw):
    """Run a workload on the TVP with memory models; check memory and events; return
    (last cycle, counters)."""
    dut = _tvp(lanes, formats or wl.formats, **kw)
    golden_events, want_memory = wl.expected()
    want_events = want_events or golden_events
    memory = wl.memory.copy()
    rng = random.Random(seed)
    procs = [memory_process(port, memory, word_bytes=4 * lanes,
                            rng=random.Random(rng.getrandbits(32)), stall=mem_stall,
                            latency=latency, poison=poison if port is dut.mem_rd else ())
             for port in (dut.mem_rd, dut.mem_wr)]

    async def probe(ctx):
        return unpack(TvpCounters, ctx.get(dut.counters.as_value()))

    out, last, counters = run_streams(
        dut, sources={"cmd": [pack(TvpCommand, c) for c in wl.commands]},
        sinks={"event": len(want_events)}, gap=gap, stall=stall, seed=rng.getrandbits(32),
        budget=budget or 1_000 + 12 * wl.elements() // lanes + 60 * len(wl.commands),
        probe=probe, processes=procs)
    events = [unpack(TvpEvent, x) for x in out["event"]]
    for i, (got, want) in enumerate(zip(events, want_events, strict=True)):
        assert got == want, f"event {i}: {got} != {want} ({wl.kinds[i]}: {wl.commands[i]})"
    diff = np.flatnonzero(memory != want_memory)
    assert diff.size == 0, (f"{diff.size} bytes differ, first at {diff[0]:#x}: got "
                            f"{memory[diff[0]]:#x}, expected {want_memory[diff[0]]:#x}")
    assert counters["ops"] == sum(wl.status(c) == ErrorCode.OK for c in wl.commands)
    assert counters["rejected"] == sum(wl.status(c) != ErrorCode.OK for c in wl.commands)
    assert counters["elements"] == wl.elements()
    return last, counters


@pytest.mark.slow
@pytest.mark.parametrize("op", list(TvpOp))
def test_every_op(op, seed):
    """(The default tier runs every op in test_random_commands.)"""
    wl = _workload(seed)
    for _ in range(3):
        wl.random_command(op)
    run_tvp(wl, seed=seed, stall=0.2, mem_stall=0.2)


def test_random_commands(seed):
    """Every op (three of each, random shapes and places, in place or not), one command of
    every illegal kind and more at random, each refused command followed by good ones; random
    gaps, backpressure, memory stalls and latency."""
    fmts = get_config("small").formats - {Format.INT8, Format.E5M2}
    wl = _workload(seed, formats=fmts)
    for op in TvpOp:
        wl.random_command(op)
    wl.random(2 * len(TvpOp))
    kinds = set(wl.kinds)
    assert set(ILLEGAL_KINDS) <= kinds and {op.name for op in TvpOp} <= kinds
    statuses = {e["status"] for e in wl.expected()[0]}
    assert statuses == {ErrorCode.OK, ErrorCode.ILLEGAL_FIELD, ErrorCode.FORMAT_NOT_BUILT,
                        ErrorCode.ILLEGAL_SHAPE, ErrorCode.TSRAM_OUT_OF_RANGE}
    run_tvp(wl, seed=seed, formats=fmts, gap=0.2, stall=0.3, mem_stall=0.3, latency=(2, 6))


def test_one_lane_and_poisoned_words(seed):
    """One lane (4-byte ports, the ice40 shape): random commands; a poisoned read word makes
    every command that reads it ECC_UNCORRECTABLE (its results still written) and no other."""
    fmts = get_config("ice40").formats
    wl = _workload(seed, lanes=1, formats=fmts, max_cols=20)
    wl.random(8, illegal=0.0)
    events, _ = wl.expected()
    good = [i for i, c in enumerate(wl.commands) if wl.status(c) == ErrorCode.OK]
    victim = wl.commands[good[len(good) // 2]]
    word = min(wl.read_words(victim, 4))
    for i, c in enumerate(wl.commands):
        if word in wl.read_words(c, 4):
            events[i]["status"] = ErrorCode.ECC_UNCORRECTABLE
    assert any(e["status"] == ErrorCode.ECC_UNCORRECTABLE for e in events)
    run_tvp(wl, seed=seed, lanes=1, formats=fmts, poison={word}, want_events=events,
            stall=0.2, mem_stall=0.2)


@pytest.mark.slow
def test_sixteen_lanes(seed):
    """The `default` preset's shape (16 lanes, 64-byte ports): random commands of every op and
    the illegal kinds."""
    wl = _workload(seed, lanes=16, max_cols=80)
    for op in TvpOp:
        wl.random_command(op)
    wl.random(len(TvpOp), illegal=0.0)
    run_tvp(wl, seed=seed, lanes=16, stall=0.2, mem_stall=0.2)


def _config(name):
    """A preset, or ``one-lane``: the ``ice40`` shape with a 1-lane vector unit (the ``ice40``
    preset itself has none since stop 14)."""
    if name == "one-lane":
        return dataclasses.replace(get_config("ice40"), name="one-lane", tvp_lanes=1)
    return get_config(name)


@pytest.mark.parametrize("config", ["small", "one-lane", "ulx3s"])
def test_compiler_commands_are_legal(config):
    """The SDK compiler's TVP commands (bias, activations, re-quantisation, N chunks) pass the
    TVP's rules: the compiler keeps within them."""
    from openmaia.sdk.compiler import Layer, compile_layers
    cfg = _config(config)
    fmts = sorted(cfg.format_names)
    layers = [Layer(n=150, fmt_w=fmts[0], out_fmt=fmts[-1]),
              Layer(n=40, fmt_w=fmts[-1], activation="gelu", out_fmt=fmts[0]),
              Layer(n=10, fmt_w=fmts[0], activation=None)]
    compiled = compile_layers(cfg, m=13, k=70, fmt_in=fmts[0], layers=layers)
    tvp = [c for c in compiled.program.commands if isinstance(c, TvpCmd)]
    assert {c.op for c in tvp} >= {TvpOp.BIAS_ADD, TvpOp.RELU, TvpOp.GELU, TvpOp.QUANT_MX}
    for c in tvp:
        assert tvp_status(c, formats=cfg.formats, tsram_bytes=cfg.tsram_bytes) == ErrorCode.OK, c


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["no_pad_mask", "drop_flush", "bias_strided"])
def test_faults_are_caught(fault, seed):
    """Each deliberate bug fails the memory-and-event scoreboard."""
    wl = _workload(seed)
    op = {"no_pad_mask": TvpOp.QUANT_MX, "drop_flush": TvpOp.RELU,
          "bias_strided": TvpOp.BIAS_ADD}[fault]
    for _ in range(6):
        wl.random_command(op)
    with pytest.raises(AssertionError, match="bytes differ"):
        run_tvp(wl, seed=seed, faults={fault})


def test_parameter_checks():
    with pytest.raises(ValueError, match="lanes"):
        _tvp(lanes=3)
    with pytest.raises(ValueError, match="lanes"):
        TileVectorProcessor(lanes=64, formats={"e4m3"}, tsram_bytes=1 << 16, bank_bytes=16,
                            port_words=16)
    with pytest.raises(ValueError, match="port_words"):
        TileVectorProcessor(lanes=4, formats={"e4m3"}, tsram_bytes=TSRAM, bank_bytes=16,
                            port_words=2)
    with pytest.raises(ValueError, match="tsram_bytes"):
        TileVectorProcessor(lanes=4, formats={"e4m3"}, tsram_bytes=1000, bank_bytes=16,
                            port_words=1)
    with pytest.raises(ValueError, match="faults"):
        _tvp(faults={"nope"})
    with pytest.raises(ValueError, match="formats"):
        TileVectorProcessor(lanes=4, formats=(), tsram_bytes=TSRAM, bank_bytes=16,
                            port_words=1)


@pytest.mark.parametrize("config", ["small", "one-lane"])
def test_lint(config):
    lint(TileVectorProcessor.from_config(_config(config)), name=f"tvp_{config.replace('-', '_')}")


def _bench(config, *, commands, seed, name=None, check=True, **kw):
    cfg = get_config(config)
    top = TvpWithTileSram(cfg, **kw.pop("tvp_kw", {}))
    params = dict(lanes=cfg.tvp_lanes, formats=sorted(cfg.format_names),
                  tsram_bytes=cfg.tsram_bytes, host_bytes=top.host_bytes,
                  host_addr_bits=top.host.signature.addr_width, commands=commands) | kw
    result = simulate(top, bench="openmaia.benches.tvp", name=name or "tvp_top",
                      testcase="random_commands", params=params, seed=seed, check=check)
    print(f"build {result.build_seconds:.1f} s (cached {result.build_cached}), "
          f"run {result.run_seconds:.1f} s")
    return result


def test_cocotb_random_small(seed):
    """Verilator: random commands of every op and every illegal kind on the small TVP + TSRAM."""
    _bench("small", commands=16, seed=seed)


@pytest.mark.slow
def test_cocotb_random_small_long(seed):
    _bench("small", commands=40, rounds=5, seed=seed)


@pytest.mark.slow
@pytest.mark.parametrize("fault, ops", [("drop_flush", ["RELU", "CVT_BF16"]),
                                        ("no_pad_mask", ["QUANT_MX"])])
def test_cocotb_faults_are_caught(fault, ops, seed):
    """The bench's SRAM scoreboard catches deliberate TVP bugs (a fresh Verilator build each)."""
    result = _bench("small", commands=12, seed=seed, name=f"tvp_top_{fault}", check=False,
                    ops=ops, tvp_kw={"faults": {fault}})
    assert not result.passed, f"fault {fault} was not caught"
    assert "SRAM bytes differ" in result.log_tail(200), result.log_tail()
