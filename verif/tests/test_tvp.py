"""The Tile Vector Processor (rtl/tile/tvp.py): TVP commands over rows in the tile SRAM.

Amaranth simulator: the TVP against memory models (random stalls and latency on both ports, one
shared memory), random legal and illegal commands of every op; the final memory must equal the
golden model's (:func:`openmaia.sdk.golden.execute_tvp`) byte for byte and the events must come
in order with the golden statuses. cocotb + Verilator: the same workloads on the elaborated TVP
next to a real TileSram (ECC on), loaded and read back through a host port.
"""

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
from openmaia.sdk.compiler import ACTIVATIONS  # noqa: F401  (the compiler's TVP users)
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


@pytest.mark.parametrize("op", list(TvpOp))
def test_every_op(op, seed):
    wl = _workload(seed)
    for _ in range(3):
        wl.random_command(op)
    run_tvp(wl, seed=seed, stall=0.2, mem_stall=0.2)
