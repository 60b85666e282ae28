"""StreamRegister (rtl/bus/stream_register.py): order, rate, and no path through the handshake.

Amaranth simulator. The handshake proofs (stream rules, ins - outs = transfers held, ``o.valid``
independent of ``o.ready``) are in test_formal_streams.py.
"""

import pytest
from amaranth.lib import data
from amaranth.sim import Simulator
from openmaia.bus.stream_register import StreamRegister
from openmaia.harness.amaranth_sim import run_stream

BYTE = data.StructLayout({"value": 8})


@pytest.mark.parametrize("gap, stall", [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5), (0.4, 0.4)])
def test_every_transfer_once_in_order(gap, stall, seed, rng):
    """Random input gaps and output stalls: every payload comes out once, in order, and a
    stalled output holds (run_stream checks that); nothing comes out afterwards."""
    payloads = [rng.randrange(256) for _ in range(300)]
    out, _, _ = run_stream(StreamRegister(BYTE), payloads, count=len(payloads), gap=gap,
                           stall=stall, seed=seed, quiet=4)
    assert out == payloads


def test_full_rate_one_cycle_later():
    """Without gaps or stalls one transfer a cycle, each one cycle after it went in."""
    payloads = list(range(100))
    out, ins, outs = run_stream(StreamRegister(BYTE), payloads, count=100)
    assert out == payloads
    assert ins == list(range(100))
    assert outs == [c + 1 for c in ins]


def test_outputs_do_not_follow_inputs_in_the_same_cycle(rng):
    """``i.ready``, ``o.valid`` and ``o.payload`` are registers: whatever ``i.valid``,
    ``i.payload`` and ``o.ready`` do within a cycle, they keep their value until the clock edge;
    ``empty`` is low exactly while a transfer is held."""
    dut = StreamRegister(BYTE)

    async def bench(ctx):
        held = 0
        for _ in range(400):
            watched = (dut.i.ready, dut.o.valid, dut.o.payload.as_value(), dut.empty)
            before = [ctx.get(s) for s in watched]
            for _ in range(3):
                ctx.set(dut.i.valid, rng.randrange(2))
                ctx.set(dut.i.payload.as_value(), rng.randrange(256))
                ctx.set(dut.o.ready, rng.randrange(2))
                now = [ctx.get(s) for s in watched]
                assert now == before
            assert before[3] == (held == 0)
            i_fire = ctx.get(dut.i.valid) and ctx.get(dut.i.ready)
            o_fire = ctx.get(dut.o.valid) and ctx.get(dut.o.ready)
            held += i_fire - o_fire
            assert 0 <= held <= 2
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
