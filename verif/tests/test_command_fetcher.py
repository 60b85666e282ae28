"""CommandFetcher (rtl/tile/command_fetcher.py): the command ring in HBM -> the TCP's stream.

An AXI4 read responder with random ready, latency and error responses serves a byte array;
the TCP side takes commands with random stalls. Checks: every command arrives once, in ring
order, bit for bit; ``head`` counts exactly the commands taken; bursts are whole commands, stay
inside the ring and never cross 4 KiB; an error response hands on an all-zero command; a flush
drops everything queued and sets ``head`` = ``tail``; an unusable ring fetches nothing.
"""

import random
from collections import deque

import numpy as np
import pytest
from amaranth.sim import Simulator
from openmaia.config import get_config
from openmaia.harness.elaborate import lint
from openmaia.tile.command_fetcher import CommandFetcher

CMD = 64


def axi_read_responder(axi, memory, *, data_bytes, rng, stall=0.3, bad_addrs=frozenset(),
                       log=None):
    """AR / R of an AXI4 subordinate over ``memory`` (uint8 array); beats of an address in
    ``bad_addrs`` (64-byte command addresses) answer SLVERR. ``log`` gets (addr, beats)."""
    async def process(ctx):
        beats = deque()
        while True:
            ctx.set(axi.arready, rng.random() >= stall)
            if beats:
                addr, resp, last = beats[0]
                word = int.from_bytes(memory[addr:addr + data_bytes].tobytes(), "little")
                ctx.set(axi.rvalid, rng.random() >= stall)
                ctx.set(axi.rdata, word)
                ctx.set(axi.rresp, resp)
                ctx.set(axi.rlast, last)
            else:
                ctx.set(axi.rvalid, 0)
            _, _, arvalid, arready, araddr, arlen, rvalid, rready = await ctx.tick().sample(
                axi.arvalid, axi.arready, axi.araddr, axi.arlen, axi.rvalid, axi.rready)
            if rvalid and rready:
                beats.popleft()
            if arvalid and arready:
                n = arlen + 1
                if log is not None:
                    log.append((araddr, n))
                for i in range(n):
                    a = araddr + i * data_bytes
                    beats.append((a, 2 if (a // CMD * CMD) in bad_addrs else 0, i == n - 1))
    return process


def _commands(rng, n):
    return [rng.getrandbits(512) | 0x3 for _ in range(n)]      # non-zero opcode byte


def _ring_image(memory, base, commands, start):
    size = len(commands)
    for i, c in enumerate(commands):
        slot = (start + i) % size
        memory[base + CMD * slot: base + CMD * (slot + 1)] = np.frombuffer(
            c.to_bytes(CMD, "little"), np.uint8)


def _run(dut, memory, script, *, data_bytes, rng, stall=0.3, bad=frozenset(), cycles=20_000):
    """Run ``script(ctx, dut, received)`` (sets base / size / tail / run / flush) next to the
    responder and a random-stall consumer. Returns (received, ar log, head trace)."""
    received, log, heads = [], [], []
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(axi_read_responder(dut.m_axi, memory, data_bytes=data_bytes, rng=rng,
                                       stall=stall, bad_addrs=bad, log=log))

    async def consumer(ctx):
        taken = 0
        while True:
            ctx.set(dut.cmd.ready, rng.random() >= stall)
            _, _, valid, ready, payload, head = await ctx.tick().sample(
                dut.cmd.valid, dut.cmd.ready, dut.cmd.payload, dut.head)
            heads.append((taken, head))
            if valid and ready:
                received.append(payload.as_value().value)
                taken += 1
    sim.add_process(consumer)

    async def bench(ctx):
        await script(ctx, dut, received)
    sim.add_testbench(bench)
    sim.run_until(cycles * 1e-8)
    return received, log, heads


async def _wait_for(ctx, received, n, limit=5000):
    for _ in range(limit):
        if len(received) >= n:
            return
        await ctx.tick()
    raise AssertionError(f"only {len(received)} of {n} commands arrived")


def _check_bursts(log, *, base, size, beats):
    for addr, n in log:
        assert n % beats == 0, f"burst of {n} beats is not whole commands"
        first = (addr - base) // CMD
        assert (addr - base) % CMD == 0 and 0 <= first and first + n // beats <= size, \
            f"burst {addr:#x}+{n} beats leaves the ring"
        assert addr // 4096 == (addr + n * (CMD // beats) - 1) // 4096, "burst crosses 4 KiB"


@pytest.mark.parametrize("data_bits,depth", [(32, 4), (128, 4), (512, 4), (32, 1)])
def test_ring_in_order_with_wrap(seed, data_bits, depth):
    """Depth 1 is the ``ice40`` preset's (one command buffered, bursts of one command)."""
    rng = random.Random(seed)
    data_bytes = data_bits // 8
    dut = CommandFetcher(addr_width=16, data_width=data_bits, id_width=2, depth=depth)
    memory = np.zeros(1 << 16, np.uint8)
    base, size = 4096 - 5 * CMD, 11                  # the ring crosses a 4 KiB page
    batches = [_commands(rng, rng.randint(1, size - 1)) for _ in range(5)]
    expected = [c for b in batches for c in b]

    async def script(ctx, dut, received):
        ctx.set(dut.base, base | 0x2A)                # low 6 bits ignored
        ctx.set(dut.size, size)
        ctx.set(dut.run, 1)
        tail, done = 0, 0
        for batch in batches:
            for c in batch:
                memory[base + CMD * tail: base + CMD * (tail + 1)] = np.frombuffer(
                    c.to_bytes(CMD, "little"), np.uint8)
                tail = (tail + 1) % size
            ctx.set(dut.tail, tail)
            done += len(batch)
            await _wait_for(ctx, received, done)
            for _ in range(rng.randint(0, 20)):
                await ctx.tick()
        await ctx.tick().repeat(5)
        assert ctx.get(dut.head) == tail
        counters = ctx.get(dut.counters)
        assert counters.commands == len(expected)
        assert counters.read_errors == 0

    received, log, heads = _run(dut, memory, script, data_bytes=data_bytes, rng=rng)
    assert received == expected
    _check_bursts(log, base=base, size=size, beats=max(1, 512 // data_bits))
    one = max(1, 512 // data_bits)
    if depth > 1:
        assert max(n for _, n in log) > one, "never more than one command a burst"
    else:
        assert {n for _, n in log} == {one}, "a burst of more commands than the buffer holds"
    for taken, head in heads:
        assert head == taken % size, f"head {head} after {taken} commands taken"


def test_head_at_fetch_twin_is_caught(seed):
    rng = random.Random(seed)
    dut = CommandFetcher(addr_width=16, data_width=128, id_width=1, depth=4,
                         faults={"head_at_fetch"})
    memory = np.zeros(1 << 16, np.uint8)
    cmds = _commands(rng, 6)
    _ring_image(memory, 0, cmds + [0] * 2, 0)

    async def script(ctx, dut, received):
        ctx.set(dut.size, 8)
        ctx.set(dut.run, 1)
        ctx.set(dut.tail, 6)
        await _wait_for(ctx, received, 6)

    _, _, heads = _run(dut, memory, script, data_bytes=16, rng=rng, stall=0.5, cycles=3000)
    assert any(head != taken % 8 for taken, head in heads)


@pytest.mark.parametrize("faults", [frozenset(), frozenset({"keep_error_data"})])
def test_error_response_gives_zero_command(seed, faults):
    rng = random.Random(seed)
    dut = CommandFetcher(addr_width=16, data_width=128, id_width=1, depth=4, faults=faults)
    memory = np.zeros(1 << 16, np.uint8)
    cmds = _commands(rng, 5)
    _ring_image(memory, 1024, cmds, 0)

    async def script(ctx, dut, received):
        ctx.set(dut.base, 1024)
        ctx.set(dut.size, 5)
        ctx.set(dut.run, 1)
        ctx.set(dut.tail, 4)
        await _wait_for(ctx, received, 4)
        assert ctx.get(dut.counters).read_errors == 1

    received, _, _ = _run(dut, memory, script, data_bytes=16, rng=rng,
                          bad=frozenset({1024 + 2 * CMD}))
    expected = cmds[:2] + [0] + cmds[3:4]
    if faults:
        assert received != expected
    else:
        assert received == expected


def test_flush_drops_queue_and_resumes(seed):
    rng = random.Random(seed)
    dut = CommandFetcher(addr_width=16, data_width=64, id_width=1, depth=8)
    memory = np.zeros(1 << 16, np.uint8)
    first, second = _commands(rng, 14), _commands(rng, 5)
    _ring_image(memory, 0, first + [0] * 18, 0)

    async def script(ctx, dut, received):
        ctx.set(dut.size, 32)
        ctx.set(dut.run, 1)
        ctx.set(dut.tail, 14)
        await _wait_for(ctx, received, 3)
        ctx.set(dut.flush, 1)
        await ctx.tick()
        ctx.set(dut.flush, 0)
        n_before = len(received)
        for _ in range(2000):
            if not ctx.get(dut.flushing):
                break
            await ctx.tick()
        assert ctx.get(dut.head) == 14 and len(received) == n_before
        for i, c in enumerate(second):
            memory[CMD * (14 + i): CMD * (15 + i)] = np.frombuffer(c.to_bytes(CMD, "little"),
                                                                   np.uint8)
        ctx.set(dut.tail, 19)
        await _wait_for(ctx, received, n_before + 5)
        assert received[n_before:] == second
        assert received[:n_before] == first[:n_before]

    _run(dut, memory, script, data_bytes=8, rng=rng)


@pytest.mark.parametrize("size, tail", [(0, 0), (5, 5), (5, 9), (1 << 17, 3)])
def test_unusable_ring_fetches_nothing(size, tail):
    rng = random.Random(1)
    dut = CommandFetcher(addr_width=16, data_width=128, id_width=1, depth=4, index_bits=16)
    memory = np.zeros(1 << 16, np.uint8)

    async def script(ctx, dut, received):
        ctx.set(dut.size, size)
        ctx.set(dut.tail, tail)
        ctx.set(dut.run, 1)
        await ctx.tick().repeat(50)
        assert ctx.get(dut.queue_error)
        assert ctx.get(dut.counters).bursts == 0

    received, log, _ = _run(dut, memory, script, data_bytes=16, rng=rng, cycles=200)
    assert not log and not received


def test_parameter_checks():
    with pytest.raises(ValueError, match="data_width"):
        CommandFetcher(addr_width=16, data_width=48, id_width=1)
    with pytest.raises(ValueError, match="depth"):
        CommandFetcher(addr_width=16, data_width=64, id_width=1, depth=3)
    with pytest.raises(ValueError, match="faults"):
        CommandFetcher(addr_width=16, data_width=64, id_width=1, faults={"nope"})


@pytest.mark.parametrize("preset", ["small", "ice40"])
def test_lint(preset):
    lint(CommandFetcher.from_config(get_config(preset)), name=f"command_fetcher_{preset}")
