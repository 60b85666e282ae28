"""AxiStaller (rtl/bus/axi_staller.py): pause 0 is a wire; with pauses, every channel is held
back some cycles, a transfer once offered stays offered until taken (legal AXI), and payloads
pass unchanged."""

import random

import pytest
from amaranth.sim import Simulator

from openmaia.bus.axi import Axi4Signature
from openmaia.bus.axi_staller import AxiStaller
from openmaia.harness.elaborate import lint

SIG = Axi4Signature(addr_width=16, data_width=32, id_width=2)
FORWARD = {"aw": "awaddr", "w": "wdata", "ar": "araddr"}
BACK = {"r": "rdata", "b": "bid"}


def _run(pause, seed, cycles=600):
    dut = AxiStaller(signature=SIG, seed=3)
    rng = random.Random(seed)
    stats = {ch: {"offered": 0, "passed": 0, "held": 0} for ch in (*FORWARD, *BACK)}
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def bench(ctx):
        ctx.set(dut.pause, pause)
        sent = {ch: 0 for ch in stats}
        shown = {ch: None for ch in stats}          # payload the receiver saw offered
        for _ in range(cycles):
            for ch, field in (*FORWARD.items(), *BACK.items()):
                src, dst = (dut.s_axi, dut.m_axi) if ch in FORWARD else (dut.m_axi, dut.s_axi)
                ctx.set(getattr(src, f"{ch}valid"), 1)
                ctx.set(getattr(src, field), sent[ch] & 3 if field == "bid" else sent[ch])
                ctx.set(getattr(dst, f"{ch}ready"), rng.random() < 0.6)
            await ctx.delay(1e-9)
            for ch, field in (*FORWARD.items(), *BACK.items()):
                src, dst = (dut.s_axi, dut.m_axi) if ch in FORWARD else (dut.m_axi, dut.s_axi)
                valid, ready = ctx.get(getattr(dst, f"{ch}valid")), ctx.get(getattr(dst,
                                                                                f"{ch}ready"))
                payload = ctx.get(getattr(dst, field))
                expect = sent[ch] & 3 if field == "bid" else sent[ch]
                if shown[ch] is not None:
                    assert valid, f"{ch}: valid dropped before the transfer"
                if valid:
                    assert payload == expect, f"{ch}: payload changed"
                    stats[ch]["offered"] += 1
                else:
                    stats[ch]["held"] += 1
                assert ctx.get(getattr(src, f"{ch}ready")) == (valid and ready)
                if valid and ready:
                    sent[ch] += 1
                    stats[ch]["passed"] += 1
                    shown[ch] = None
                else:
                    shown[ch] = payload if valid else None
            await ctx.tick()
    sim.add_testbench(bench)
    sim.run()
    return stats


def test_pause_zero_is_a_wire(seed):
    stats = _run(0, seed)
    assert all(s["held"] == 0 for s in stats.values())


@pytest.mark.parametrize("pause", [77, 200])
def test_pauses_hold_back_every_channel_legally(seed, pause):
    stats = _run(pause, seed)
    for ch, s in stats.items():
        assert s["held"] > 0 and s["passed"] > 0, (ch, s)
    held = sum(s["held"] for s in stats.values()) / sum(600 for _ in stats)
    assert held > pause / 256 * 0.3, held


def test_lint():
    lint(AxiStaller(signature=Axi4Signature(addr_width=32, data_width=256, id_width=6)),
         name="axi_staller")
