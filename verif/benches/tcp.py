"""cocotb bench of :class:`openmaia.tile.tcp.TileControlProcessor` (contract: docs/tcp.md).

The world around the TCP is :class:`openmaia.tile.tcp_model.TcpWorld`, the same one the
Amaranth-simulator tests use: a command feeder with random gaps, the DMA queues, the TTU and the
TVP as random-latency responders with random backpressure on their command streams and random
gaps on their event streams, an interrupt handler acknowledging after a random delay, and a
restart between programs. Here it runs on the elaborated Verilog: every falling clock edge the
bench drives the world's inputs, then samples the outputs in the read-only phase and lets the
world observe the handshakes of that cycle.

Scoreboard (:func:`openmaia.tile.tcp_model.check_trace`, per program): every engine (every DMA
queue) gets exactly the golden model's commands in order, bit for bit (nothing lost,
duplicated, reordered); no engine command and no interrupt comes before the completions that
satisfy a WAIT ahead of it, before the completions of everything ahead of a FENCE, or before an
earlier INTERRUPT; the final state, error, position and semaphores; plus the counter identities
over the whole run.

Test ``random_programs``: ``programs`` random programs of ``length`` commands each (random
engine payloads, WAIT / SIGNAL / FENCE / INTERRUPT, HALT on some), per program random latency
ranges per engine, random gaps and stalls; one program in four has an engine event failing, one
in four has an illegal command somewhere, one in four ends without HALT, one in four with it;
a restart before each next program. Coverage: opcode x program end; with 8 or more programs
every opcode must have retired and every end (running, halted, command error, engine error)
must have been seen.

Parameters (:func:`openmaia.harness.bench_params`): ``semaphores``, ``dma_queues``,
``hbm_addr_bits``, ``outstanding``, ``event_queue_bits``, ``programs``, ``length``.
"""

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly
from openmaia.errors import ErrorCode
from openmaia.harness import bench_params
from openmaia.harness.coverage import Coverage, export
from openmaia.tile.isa import Opcode, raw
from openmaia.tile.tcp_model import (
    SOURCE_NAMES,
    STATE_NAMES,
    TcpWorld,
    check_trace,
    random_program,
    run_model,
)

CLOCK_NS = 10
ILLEGAL = [raw(opcode=0), raw(opcode=0x0C), raw(opcode=Opcode.FENCE.value, signal=1),
           raw(opcode=Opcode.WAIT.value, body=250), raw(opcode=Opcode.HALT.value, body=1 << 400)]
ENGINE_CODES = [ErrorCode.DESC_ZERO_COUNT, ErrorCode.ILLEGAL_SHAPE, ErrorCode.AXI_SLVERR,
                ErrorCode.ECC_UNCORRECTABLE]


async def _reset(dut):
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    dut.rst.value = 1
    for name in ("cmd__valid", "restart", "irq_ack", "dma_event__valid", "ttu_event__valid",
                 "tvp_event__valid"):
        getattr(dut, name).value = 0
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


def _int(value):
    """A sampled value as an int (a single bit is a ``Logic``, wider ones a ``LogicArray``)."""
    return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)


async def run_world(dut, world, budget):
    ins = {n: getattr(dut, n) for n in world.port_names()}
    outs = {n: getattr(dut, n) for n in world.sampled_ports()}
    while not world.done:
        await FallingEdge(dut.clk)
        for name, value in world.drive().items():
            ins[name].value = value
        await ReadOnly()
        world.observe({n: _int(h.value) for n, h in outs.items()})
        assert world.cycle < budget, f"no end after {budget} cycles"


@cocotb.test()
async def random_programs(dut):
    p = bench_params()
    shape = {k: p[k] for k in ("semaphores", "dma_queues", "hbm_addr_bits")}
    rng = random.Random(cocotb.RANDOM_SEED)
    programs, fails = [], []
    for n in range(p["programs"]):
        kind = n % 4
        halt = {0: False, 3: True}.get(kind, rng.random() < 0.5)
        prog = random_program(rng, length=p["length"], **shape, halt=halt)
        fail = {}
        if kind == 1:
            counts = [len(x) for x in run_model(prog, **shape).issued]
            live = [k for k, c in enumerate(counts) if c]
            if live:
                k = rng.choice(live)
                fail[(k, rng.randrange(counts[k]))] = rng.choice(ENGINE_CODES)
        elif kind == 2:
            at = rng.randrange(len(prog))
            prog = prog[:at] + [rng.choice(ILLEGAL)] + prog[at:]
        programs.append(prog)
        fails.append(fail)
    targets = shape["dma_queues"] + 2
    latencies = {k: rng.choice([(1, 3), (1, 20), (10, 60)]) for k in range(targets)}
    world = TcpWorld(programs, semaphores=shape["semaphores"], dma_queues=shape["dma_queues"],
                     event_queue_bits=p["event_queue_bits"], rng=rng, gap=0.3, stall=0.3,
                     latency=latencies, fail=fails)
    await _reset(dut)
    budget = 200 * p["length"] * p["programs"] + 10_000
    await run_world(dut, world, budget)

    ends = ["RUNNING", "HALTED", "ERROR_COMMAND", "ERROR_ENGINE"]
    cov = Coverage("tcp", opcode=[o.name for o in Opcode], end=ends)
    seen_ops, seen_ends = set(), set()
    for n, (prog, trace) in enumerate(zip(programs, world.traces, strict=True)):
        exp = check_trace(prog, trace, **shape, final=True)
        state = STATE_NAMES[trace.status["state"]]
        end = state if state != "ERROR" else (
            "ERROR_COMMAND" if SOURCE_NAMES[trace.status["source"]] == "COMMAND"
            else "ERROR_ENGINE")
        for item in exp.items:
            cov.sample(opcode=item[0].name, end=end)
            seen_ops.add(item[0].name)
        seen_ends.add(end)
        dut._log.info(f"program {n}: {len(prog)} commands, {state} at {exp.position}"
                      f"{' (' + hex(trace.status['error']) + ')' if trace.status['error'] else ''}")
    c = world.check_counters()
    dut._log.info(f"{world.cycle} cycles; counters {c}")
    export()
    if p["programs"] >= 8:
        assert seen_ops == {o.name for o in Opcode}, f"opcodes not retired: {seen_ops}"
        assert seen_ends == set(ends), f"program ends seen: {seen_ends}"
