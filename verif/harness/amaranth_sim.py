"""Drive a component's ``lib.stream`` ports in Amaranth's own simulator.

:func:`run_stream` is the Amaranth-simulator counterpart of :mod:`.streams` (which serves
cocotb): a producer with random input gaps, a consumer with random backpressure that checks a
stalled payload is held, and the cycle of every transfer, for quick unit tests.
"""

import random
from collections import deque

from amaranth.sim import Simulator

__all__ = ["run_stream"]


def run_stream(dut, payloads, *, count, gap=0.0, stall=0.0, seed=0, budget=None, quiet=0):
    """Push ``payloads`` (ints, the input payload's bits) into ``dut.i`` and take ``count``
    payloads from ``dut.o``.

    Each cycle the input is idle with probability ``gap`` and the output not ready with
    probability ``stall``. Fails if a stalled output changes or drops ``valid``, if the outputs
    do not all come out within ``budget`` cycles, or if anything comes out during ``quiet``
    further cycles. Returns ``(outputs, in_cycles, out_cycles)``: output payloads as ints and the
    cycle of every input and output transfer.
    """
    in_rng, out_rng = random.Random(seed), random.Random(~seed)
    outputs, in_cycles, out_cycles = [], [], []
    if budget is None:
        budget = 100 + 4 * max(len(payloads), count) / ((1 - gap) * (1 - stall))
    done = [False]

    async def producer(ctx):
        pending, presenting, cycle = deque(payloads), False, 0
        while pending:
            if not presenting and in_rng.random() >= gap:
                ctx.set(dut.i.payload.as_value(), pending[0])
                presenting = True
            ctx.set(dut.i.valid, presenting)
            _, _, ready = await ctx.tick().sample(dut.i.ready)
            if presenting and ready:
                pending.popleft()
                in_cycles.append(cycle)
                presenting = False
            cycle += 1
        ctx.set(dut.i.valid, 0)
        done[0] = True

    async def consumer(ctx):
        held, cycle = None, 0
        while not done[0] or len(outputs) < count:
            ready = out_rng.random() >= stall
            ctx.set(dut.o.ready, ready)
            _, _, valid, bits = await ctx.tick().sample(dut.o.valid, dut.o.payload.as_value())
            if held is not None:
                assert valid and bits == held, f"cycle {cycle}: stalled output not held"
            held = bits if valid and not ready else None
            if valid and ready:
                outputs.append(bits)
                out_cycles.append(cycle)
            cycle += 1
            assert cycle < budget, f"only {len(outputs)} of {count} outputs came out"
        for _ in range(quiet):
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid, "an unexpected output"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return outputs, in_cycles, out_cycles
