"""Drive a component's ``lib.stream`` ports in Amaranth's own simulator.

:func:`run_stream` is the Amaranth-simulator counterpart of :mod:`.streams` (which serves
cocotb): a producer with random input gaps, a consumer with random backpressure that checks a
stalled payload is held, and the cycle of every transfer, for quick unit tests.
"""

import random
from collections import deque

from amaranth.hdl import Value
from amaranth.sim import Simulator

__all__ = ["run_stream", "run_streams", "memory_process"]


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


def run_streams(dut, *, sources, sinks, gap=0.0, stall=0.0, seed=0, budget=10_000,
                until=None, probe=None, processes=()):
    """Several ``lib.stream`` ports at once: push ``sources`` (``{port name: [payload bits]}``)
    into the DUT's input streams and collect its output streams ``sinks`` (``{port name:
    count}``), each with its own random gaps / backpressure.

    Runs until every sink has its count (or ``until()`` is true), failing after ``budget``
    cycles or if a stalled output changes. ``probe(ctx)``, if given, is awaited once after the
    end (e.g. to read counters). ``processes``: more simulator processes (e.g.
    :func:`memory_process`) to run beside them. Returns ``(outputs, cycles, probed)``: ``{sink: [bits]}``,
    the cycle of the last transfer, and what ``probe`` returned.
    """
    rng = random.Random(seed)
    outputs = {name: [] for name in sinks}
    state = {"cycle": 0, "last": 0, "probed": None}

    def make_producer(name, payloads, prng):
        port = getattr(dut, name)

        async def producer(ctx):
            pending, presenting = deque(payloads), False
            while pending:
                if not presenting and prng.random() >= gap:
                    ctx.set(Value.cast(port.payload), pending[0])
                    presenting = True
                ctx.set(port.valid, presenting)
                _, _, ready = await ctx.tick().sample(port.ready)
                if presenting and ready:
                    pending.popleft()
                    presenting = False
            ctx.set(port.valid, 0)
        return producer

    def make_consumer(name, prng):
        port = getattr(dut, name)

        async def consumer(ctx):
            held = None
            while True:
                ready = prng.random() >= stall
                ctx.set(port.ready, ready)
                _, _, valid, bits = await ctx.tick().sample(port.valid, Value.cast(port.payload))
                if held is not None:
                    assert valid and bits == held, f"{name}: stalled output not held"
                held = bits if valid and not ready else None
                if valid and ready:
                    outputs[name].append(bits)
                    state["last"] = state["cycle"]
        return consumer

    async def watchdog(ctx):
        while True:
            await ctx.tick()
            state["cycle"] += 1
            done = all(len(outputs[n]) >= c for n, c in sinks.items())
            if until is not None:
                done = done and until()
            if done:
                break
            assert state["cycle"] < budget, (
                "timeout: " + ", ".join(f"{n} {len(outputs[n])}/{c}" for n, c in sinks.items()))
        await ctx.tick().repeat(4)
        if probe is not None:
            state["probed"] = await probe(ctx)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for name, payloads in sources.items():
        sim.add_process(make_producer(name, list(payloads), random.Random(rng.getrandbits(32))))
    for name in sinks:
        sim.add_process(make_consumer(name, random.Random(rng.getrandbits(32))))
    for process in processes:
        sim.add_process(process)
    sim.add_testbench(watchdog)
    sim.run()
    return outputs, state["last"], state["probed"]


def memory_process(port, memory, *, word_bytes, rng, stall=0.0, latency=(2, 4),
                   poison=frozenset(), log=None):
    """A simulator process that serves a ``MemoryPortSignature`` requester ``port`` from
    ``memory`` (a 1-D ``numpy.uint8`` array, ``word_bytes`` a word; address = word index).

    Each cycle ``req`` is not ready with probability ``stall``. A read takes the word when it is
    accepted and answers it, in order, ``latency`` (an inclusive range) cycles later or as soon as
    the previous answers have gone; words in ``poison`` answer ``UNCORRECTABLE`` (status 2).
    A write stores the bytes whose strobe is set. ``log``, a list, collects ``(write, addr)`` of
    every accepted request. Addresses past the memory fail the test, and so does a request
    withdrawn or changed while it waits for ``ready`` (the stream rule).
    """
    async def process(ctx):
        pending, presenting, cycle, ready_at = deque(), None, 0, 0
        waiting = None
        req, rsp = port.req, port.rsp
        while True:
            ready = rng.random() >= stall
            ctx.set(req.ready, ready)
            if presenting is None and pending and pending[0][0] <= cycle:
                presenting = pending.popleft()
            ctx.set(rsp.valid, presenting is not None)
            if presenting is not None:
                ctx.set(rsp.payload.data, presenting[1])
                ctx.set(rsp.payload.status, presenting[2])
            _, _, valid, addr, write, wdata, strb, rsp_ready = await ctx.tick().sample(
                req.valid, req.payload.addr, req.payload.write, req.payload.data,
                req.payload.strb, rsp.ready)
            if presenting is not None and rsp_ready:
                presenting = None
            offered = (addr, write, wdata, strb)
            if waiting is not None:
                assert valid and offered == waiting, (
                    f"cycle {cycle}: a stalled request was withdrawn or changed: "
                    f"{waiting} -> {offered if valid else 'withdrawn'}")
            waiting = offered if valid and not ready else None
            if valid and ready:
                base = addr * word_bytes
                assert base + word_bytes <= len(memory), f"request past the memory: {addr:#x}"
                if log is not None:
                    log.append((bool(write), addr))
                if write:
                    for b in range(word_bytes):
                        if strb >> b & 1:
                            memory[base + b] = wdata >> 8 * b & 0xFF
                else:
                    word = int.from_bytes(memory[base:base + word_bytes].tobytes(), "little")
                    ready_at = max(ready_at, cycle + rng.randint(*latency))
                    pending.append((ready_at, word, 2 if addr in poison else 0))
            cycle += 1
    return process
