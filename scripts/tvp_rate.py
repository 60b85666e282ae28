"""Measure the Tile Vector Processor's rate in the Amaranth simulator.

Runs one command of each kind on a TVP (``--lanes``, default 4) against a memory model that
never stalls and answers every read 2 cycles after it (the tile SRAM's latency), and prints the
cycles from the command's acceptance to its event, the elements, and the elements a cycle
against the peak of ``lanes`` a cycle. Each result is checked against the golden model.

    .venv/bin/python scripts/tvp_rate.py [--lanes 4] [--rows 8] [--cols 256]
"""

import argparse
import random

from amaranth.sim import Simulator
from openmaia.benches.tvp import FIELDS, TvpWorkload
from openmaia.config import get_config
from openmaia.errors import ErrorCode
from openmaia.harness.amaranth_sim import memory_process
from openmaia.harness.streams import pack, unpack
from openmaia.tile.isa import TvpCommand, TvpEvent, TvpOp
from openmaia.tile.tvp import TileVectorProcessor


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lanes", type=int, default=4)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--cols", type=int, default=256)
    args = ap.parse_args()
    L, rows, cols = args.lanes, args.rows, args.cols
    tsram = 1 << max(14, (16 * rows * cols).bit_length())
    fmts = get_config("small").formats
    wl = TvpWorkload(lanes=L, formats=fmts, tsram_bytes=tsram, seed=1)
    quarter = tsram // 4
    stride = 4 * cols
    cases = []

    def cmd(name, op, *, a_off=0, d_off=0, **kw):
        c = {f: 0 for f in FIELDS}
        c.update(op=op.value, rows=rows, cols=cols, a=a_off, a_stride=stride, b=quarter,
                 b_stride=stride, d=2 * quarter + d_off, d_stride=stride + 16,
                 d_scales=3 * quarter, d_scales_stride=cols // 32 + 1,
                 scalar=0x40200000, tag=len(cases), **kw)
        assert wl.status(c) == ErrorCode.OK, (name, c)
        cases.append(name)
        wl.commands.append(c)
        wl.kinds.append(name)

    cmd("RELU, aligned", TvpOp.RELU)
    cmd("RELU, A and D unaligned", TvpOp.RELU, a_off=4, d_off=4)
    cmd("GELU, aligned", TvpOp.GELU)
    cmd("SCALE, aligned", TvpOp.SCALE)
    cmd("ADD, aligned", TvpOp.ADD)
    cmd("BIAS_ADD, aligned", TvpOp.BIAS_ADD)
    cmd("CVT_BF16, aligned", TvpOp.CVT_BF16)
    cmd("QUANT_MX e4m3", TvpOp.QUANT_MX, fmt=0)
    cmd("QUANT_MX e2m1", TvpOp.QUANT_MX, fmt=4)
    want_events, want_memory = wl.expected()

    dut = TileVectorProcessor(lanes=L, formats=fmts, tsram_bytes=tsram, bank_bytes=4 * L,
                              port_words=1)
    memory = wl.memory.copy()
    rng = random.Random(0)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for port in (dut.mem_rd, dut.mem_wr):
        sim.add_process(memory_process(port, memory, word_bytes=4 * L, rng=rng,
                                       latency=(2, 2)))
    times = []

    async def bench(ctx):
        cycle = 0
        ctx.set(dut.event.ready, 1)
        for c in wl.commands:
            ctx.set(dut.cmd.payload.as_value(), pack(TvpCommand, c))
            ctx.set(dut.cmd.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(dut.cmd.ready)
                cycle += 1
                if ready:
                    break
            start = cycle
            ctx.set(dut.cmd.valid, 0)
            while True:
                _, _, valid, ev = await ctx.tick().sample(dut.event.valid,
                                                          dut.event.payload.as_value())
                cycle += 1
                if valid:
                    break
            times.append((cycle - start, unpack(TvpEvent, ev)))

    sim.add_testbench(bench)
    sim.run()
    assert [e for _, e in times] == want_events, times
    assert (memory == want_memory).all(), "memory differs from the golden model"
    print(f"lanes {L}, {rows} rows x {cols} columns, memory latency 2, no stalls")
    print(f"{'command':26} {'cycles':>7} {'elements/cycle':>15} {'of peak':>8}")
    for name, (cycles, _) in zip(cases, times):
        rate = rows * cols / cycles
        print(f"{name:26} {cycles:7d} {rate:15.2f} {rate / L:8.1%}")


if __name__ == "__main__":
    main()
