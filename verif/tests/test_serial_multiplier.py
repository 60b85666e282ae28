"""SerialMultiplier: exact products after exactly ``a_width`` cycles (Amaranth simulator)."""

import random

import pytest
from amaranth.sim import Simulator

from openmaia.compute.serial_multiplier import SerialMultiplier


def _run(dut, cases, *, seed):
    """Multiply each (a, b); check the product, the busy time and that a start while busy is
    ignored. Idle gaps between operations are random."""
    rng = random.Random(seed)
    seen = []

    async def bench(ctx):
        for a, b in cases:
            for _ in range(rng.randrange(3)):
                await ctx.tick()
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            busy = 0
            while ctx.get(dut.busy):
                if rng.random() < 0.3:      # ignored while busy
                    ctx.set(dut.a, rng.getrandbits(dut.a_width))
                    ctx.set(dut.start, 1)
                await ctx.tick()
                ctx.set(dut.start, 0)
                busy += 1
            seen.append((ctx.get(dut.product), busy))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


@pytest.mark.parametrize("a_width, b_width", [(1, 1), (4, 7), (16, 18), (16, 33)])
def test_products_exact(a_width, b_width, seed):
    print(f"seed {seed}")
    rng = random.Random(seed)
    edges = [(0, 0), (0, (1 << b_width) - 1), ((1 << a_width) - 1, 0),
             ((1 << a_width) - 1, (1 << b_width) - 1), (1, 1)]
    cases = edges + [(rng.getrandbits(a_width), rng.getrandbits(b_width)) for _ in range(40)]
    dut = SerialMultiplier(a_width=a_width, b_width=b_width)
    assert dut.cycles == a_width
    for (a, b), (product, busy) in zip(cases, _run(dut, cases, seed=seed), strict=True):
        assert (product, busy) == (a * b, a_width), (a, b)


def test_parameters():
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match="a_width"):
            SerialMultiplier(a_width=bad, b_width=4)
        with pytest.raises(ValueError, match="b_width"):
            SerialMultiplier(a_width=4, b_width=bad)


def test_lint():
    from openmaia.harness.elaborate import lint
    lint(SerialMultiplier(a_width=16, b_width=18), name="serial_multiplier")
