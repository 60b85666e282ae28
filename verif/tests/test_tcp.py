"""Tile Control Processor: Amaranth-simulator unit tests against the golden ordering model
(openmaia.tile.tcp_model), its fault twins, lint, and the cocotb + Verilator bench.

Engines are random-latency responders with random backpressure (:class:`TcpWorld`); every
program's trace is checked by :func:`check_trace` (each engine gets exactly its commands in
order; nothing reaches an engine before the WAITs, FENCEs and INTERRUPTs ahead of it allow; the
final status, semaphores and counters).
"""

import gc
import random
import types
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable, Value
from amaranth.sim import Simulator
from openmaia.config import PRESETS
from openmaia.errors import ErrorCode
from openmaia.harness.elaborate import lint
from openmaia.harness.sim import simulate
from openmaia.tile.dma_descriptor import DmaDescriptor
from openmaia.tile.isa import (
    DmaCmd,
    FenceCmd,
    HaltCmd,
    InterruptCmd,
    SignalCmd,
    TileOpCmd,
    TvpCmd,
    TvpOp,
    WaitCmd,
    encode,
    raw,
)
from openmaia.tile.tcp import FAULTS, TcpState, TileControlProcessor
from openmaia.tile.tcp_model import (
    SOURCE_NAMES,
    STATE_NAMES,
    TcpWorld,
    check_trace,
    random_engine_command,
    random_program,
    run_model,
)

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

P = {"semaphores": 4, "dma_queues": 2, "hbm_addr_bits": 32}
TTU, TVP = 2, 3


def make(faults=frozenset(), outstanding=4, **kw):
    return TileControlProcessor(**(P | kw), outstanding=outstanding, faults=faults)


def _port(dut, name):
    obj = dut
    for part in name.split("__"):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return Value.cast(obj)


def run_world(dut, programs, *, seed, budget=20_000, **world_kw):
    """Run ``programs`` through ``dut`` in the Amaranth simulator; return the world (traces)."""
    world = TcpWorld(programs, semaphores=dut.n_semaphores, dma_queues=dut.dma_queues,
                     event_queue_bits=len(dut.dma_event.payload.queue),
                     rng=random.Random(seed), vector_unit=dut.vector_unit, **world_kw)
    ins = {n: _port(dut, n) for n in world.port_names()}
    outs = {n: _port(dut, n) for n in world.sampled_ports()}

    async def bench(ctx):
        while not world.done:
            for name, value in world.drive().items():
                ctx.set(ins[name], value)
            values = await ctx.tick().sample(*outs.values())
            world.observe(dict(zip(outs, values[2:], strict=True)))
            assert world.cycle < budget, f"no end after {budget} cycles"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return world


def check(dut, world, programs, final=True):
    exps = [check_trace(p, t, semaphores=dut.n_semaphores, dma_queues=dut.dma_queues,
                        hbm_addr_bits=dut.hbm_addr_bits, final=final or i == len(programs) - 1,
                        vector_unit=dut.vector_unit)
            for i, (p, t) in enumerate(zip(programs, world.traces, strict=True))]
    world.check_counters()
    return exps


def dma(queue=0, signal=None, tag=0, nbytes=64):
    return DmaCmd(queue=queue, desc=DmaDescriptor.contiguous(0, 0x1000, 0, nbytes, tag=tag),
                  signal=signal)


def ttu(signal=None, rng=None):
    cmd = random_engine_command(rng or random.Random(5), kind="ttu", signal=0, **P)
    return TileOpCmd(cmd.op, signal=signal)


def tvp(signal=None, op=TvpOp.RELU):
    return TvpCmd(op=op, rows=2, cols=64, a=0x100, a_stride=256, d=0x400, d_stride=256,
                  scalar=0.5, tag=9, signal=signal)


# --------------------------------------------------------------------------------------------
# Parameters, lint
# --------------------------------------------------------------------------------------------

def test_parameter_checks():
    for bad in ({"semaphores": 0}, {"semaphores": 257}, {"dma_queues": 0},
                {"hbm_addr_bits": 65}, {"outstanding": 0}, {"semaphores": True}):
        with pytest.raises(ValueError, match="must be an integer"):
            TileControlProcessor(**({**P, "outstanding": 4} | bad))
    with pytest.raises(ValueError, match="unknown faults"):
        make(faults={"nope"})
    with pytest.raises(TypeError, match="collection"):
        make(faults="drop_wait")
    with pytest.raises(TypeError, match="vector_unit"):
        make(vector_unit=0)


@pytest.mark.parametrize("params", [P | {"outstanding": 4},
                                    {"semaphores": 16, "dma_queues": 1, "hbm_addr_bits": 64,
                                         "outstanding": 8},
                                    P | {"outstanding": 2, "vector_unit": False}])
def test_lint(params):
    lint(TileControlProcessor(**params), name="tcp")


def test_from_config():
    """The configuration fields the TCP takes (``tcp_semaphores`` / ``tcp_outstanding`` are a
    pending rtl/config.py change: until it lands, a stand-in carries them)."""
    cfg = PRESETS["small"]
    if not hasattr(cfg, "tcp_semaphores"):
        cfg = types.SimpleNamespace(tcp_semaphores=16, tcp_outstanding=8,
                                    dma_queues=cfg.dma_queues, axi_addr_bits=cfg.axi_addr_bits)
    dut = TileControlProcessor.from_config(cfg)
    assert (dut.n_semaphores, dut.dma_queues, dut.hbm_addr_bits, dut.outstanding) == (
        cfg.tcp_semaphores, cfg.dma_queues, cfg.axi_addr_bits, cfg.tcp_outstanding)


# --------------------------------------------------------------------------------------------
# Every opcode
# --------------------------------------------------------------------------------------------

def test_every_opcode(seed):
    program = [dma(0, signal=1, tag=3), dma(1, tag=4), ttu(signal=2), tvp(signal=3),
               SignalCmd(sem=0, count=5), WaitCmd(sem=0, count=2), WaitCmd(sem=1),
               WaitCmd(sem=2), WaitCmd(sem=3), InterruptCmd(code=0xA5A5), FenceCmd(),
               InterruptCmd(code=0x1234), tvp(op=TvpOp.QUANT_MX), FenceCmd(), HaltCmd()]
    dut = make()
    world = run_world(dut, [program], seed=seed)
    (exp,) = check(dut, world, [program])
    t = world.traces[0]
    assert exp.state == "HALTED" and exp.position == len(program)
    assert t.semaphores == [3, 0, 0, 0]
    assert [len(a) for a in t.arrivals] == [1, 1, 1, 2]
    assert t.irq_codes() == [0xA5A5, 0x1234]


def test_halt_holds_no_command_and_restart_continues(seed):
    """After HALT nothing more is taken; the restart resumes with the next program."""
    first = [dma(0, signal=0), WaitCmd(sem=0), HaltCmd()]
    second = [ttu(), FenceCmd(), HaltCmd()]
    dut = make()
    world = run_world(dut, [first, second], seed=seed)
    check(dut, world, [first, second])
    assert [STATE_NAMES[t.status["state"]] for t in world.traces] == ["HALTED", "HALTED"]


def test_back_to_back_issue_rate():
    """With ready engines and no gaps, engine commands issue one a cycle."""
    program = [ttu(), tvp(), dma(0), dma(1)] * 4 + [FenceCmd(), HaltCmd()]
    dut = make(outstanding=8)
    world = run_world(dut, [program], seed=1, gap=0.0, stall=0.0, latency=(30, 30),
                      ack_delay=(0, 0))
    check(dut, world, [program])
    cycles = sorted(c for a in world.traces[0].arrivals for c, _ in a)
    assert cycles[-1] - cycles[0] == 15


# --------------------------------------------------------------------------------------------
# Semaphore order, FENCE, random programs
# --------------------------------------------------------------------------------------------

def double_buffered(tiles):
    """Load tile i + 1 (DMA queue 0) while tile i computes, store tile i (queue 1); two
    buffers. Semaphores: LOADED[b] = b, COMPUTED[b] = 2 + b, FREE[b] = 4 + b."""
    def load(i):
        return ([WaitCmd(sem=4 + i % 2)] if i >= 2 else []) + [dma(0, signal=i % 2, tag=i)]
    prog = load(0)
    for i in range(tiles):
        b = i % 2
        if i + 1 < tiles:
            prog += load(i + 1)
        prog += [WaitCmd(sem=b), ttu(signal=2 + b), WaitCmd(sem=2 + b),
                 dma(1, signal=4 + b, tag=i)]
    return prog + [FenceCmd(), HaltCmd()]


def test_double_buffering_order(seed):
    program = double_buffered(6)
    dut = make(semaphores=8)
    world = run_world(dut, [program], seed=seed, latency=(1, 25))
    check(dut, world, [program])


def test_fence_waits_for_every_engine(seed):
    program = [dma(0), dma(1), ttu(), tvp(), FenceCmd(), tvp(), ttu(), FenceCmd(), HaltCmd()]
    dut = make()
    world = run_world(dut, [program], seed=seed, latency=(5, 40))
    check(dut, world, [program])
    assert world.counters["fence_cycles"] > 0


@pytest.mark.parametrize("n", range(3))
def test_random_programs(seed, n):
    rng = random.Random(seed + n)
    programs = [random_program(rng, length=40, **P, halt=i == 1) for i in range(2)]
    dut = make(outstanding=rng.choice([1, 2, 4]))
    world = run_world(dut, programs, seed=seed + n, latency=(1, 30))
    check(dut, world, programs)


def test_wait_blocks_only_issue_and_counts(seed):
    """A WAIT no completion can satisfy: the stream stays at it (RUNNING, position), engines
    drain; a restart recovers and the next program runs."""
    stuck = [dma(0, signal=0), WaitCmd(sem=0, count=2), ttu()]
    after = [tvp(), FenceCmd(), HaltCmd()]
    dut = make()
    world = run_world(dut, [stuck, after], seed=seed)
    exps = check(dut, world, [stuck, after])
    assert exps[0].blocked == "WAIT" and exps[0].position == 1
    t = world.traces[0]
    assert STATE_NAMES[t.status["state"]] == "RUNNING" and t.semaphores[0] == 1
    assert world.counters["wait_cycles"] > 20


# --------------------------------------------------------------------------------------------
# Errors and restart
# --------------------------------------------------------------------------------------------

def illegal_commands():
    good = encode(WaitCmd(sem=0, count=0))
    return {
        "opcode 0": (raw(opcode=0), ErrorCode.ILLEGAL_OPCODE),
        "opcode 0x09": (raw(opcode=0x09), ErrorCode.ILLEGAL_OPCODE),
        "opcode 0xff": (raw(opcode=0xFF), ErrorCode.ILLEGAL_OPCODE),
        "reserved header bit": (good | 1 << 12, ErrorCode.ILLEGAL_FIELD),
        "reserved body bit": (good | 1 << 511, ErrorCode.ILLEGAL_FIELD),
        "signal on WAIT": (good | 1 << 8, ErrorCode.ILLEGAL_FIELD),
        "sem without signal": (encode(ttu()) | 1 << 16, ErrorCode.ILLEGAL_FIELD),
        "DMA queue": (encode(dma(0)) | 2 << 32, ErrorCode.ILLEGAL_FIELD),
        "DMA HBM address width": (encode(dma(0)) | 1 << (32 + 8 + 60 + 40),
                                  ErrorCode.ILLEGAL_FIELD),
        "TVP op": (encode(tvp()) | 0xF << (32 + 328), ErrorCode.ILLEGAL_FIELD),
        "WAIT index": (encode(WaitCmd(sem=4)), ErrorCode.SEMAPHORE_INDEX),
        "SIGNAL index": (encode(SignalCmd(sem=200)), ErrorCode.SEMAPHORE_INDEX),
        "completion index": (encode(tvp(signal=7)), ErrorCode.SEMAPHORE_INDEX),
        "SIGNAL overflow": (None, ErrorCode.SEMAPHORE_OVERFLOW),
    }


def test_illegal_commands_stop_cleanly_and_restart_recovers(seed):
    """Each illegal command after some good ones: the stream stops at it (code, position),
    nothing after it is issued; a restart, then a good program runs."""
    programs, codes = [], []
    for name, (bits, code) in illegal_commands().items():
        if bits is None:
            head = [SignalCmd(sem=1, count=0xFFF0), dma(0, signal=2)]
            bits = encode(SignalCmd(sem=1, count=0x10))
        else:
            head = [dma(1, signal=2), ttu()]
        programs.append(head + [bits, tvp(), HaltCmd()])
        codes.append((name, code, len(head)))
    programs.append([dma(0, signal=0), WaitCmd(sem=0), tvp(), FenceCmd(), HaltCmd()])
    dut = make()
    world = run_world(dut, programs, seed=seed, budget=60_000)
    check(dut, world, programs)
    for (name, code, pos), t in zip(codes, world.traces, strict=False):
        assert STATE_NAMES[t.status["state"]] == "ERROR", name
        assert (t.status["error"], t.status["error_position"]) == (code, pos), name
        assert len(t.arrivals[TVP]) == 0, name
    assert STATE_NAMES[world.traces[-1].status["state"]] == "HALTED"


def test_no_vector_unit_refuses_tvp_and_restart_recovers(seed):
    """Without the vector unit: no TVP ports; each TVP command (any fields, with or without a
    completion signal) stops the stream with ENGINE_NOT_BUILT at its position, what came
    before it completes; after a restart DMA and tile ops run; issued_tvp stays 0. The golden
    model says the same, and with the vector unit the same commands are legal."""
    rng = random.Random(seed)
    dut = make(vector_unit=False)
    assert not hasattr(dut, "tvp") and not hasattr(dut, "tvp_event")
    bad = [tvp(), tvp(signal=3, op=TvpOp.QUANT_MX),
           random_engine_command(rng, kind="tvp", **P),
           encode(tvp()) | 1 << 9]      # a reserved header bit set too: still the engine
    programs, positions = [], []
    for cmd in bad:
        head = [dma(0, signal=0), WaitCmd(sem=0), ttu(signal=1)]
        programs.append(head + [cmd, dma(1), HaltCmd()])
        positions.append(len(head))
    weights = {"dma": 4, "ttu": 3, "tvp": 0, "wait": 4, "signal": 1, "fence": 1, "interrupt": 1}
    programs.append(random_program(rng, length=25, weights=weights, **P))
    world = run_world(dut, programs, seed=seed, budget=60_000)
    check(dut, world, programs)
    for pos, prog, t in zip(positions, programs, world.traces, strict=False):
        assert STATE_NAMES[t.status["state"]] == "ERROR"
        assert SOURCE_NAMES[t.status["source"]] == "COMMAND"
        assert (t.status["error"], t.status["error_position"]) == (
            ErrorCode.ENGINE_NOT_BUILT, pos)
        assert [len(a) for a in t.arrivals] == [1, 0, 1, 0]
        model = run_model(prog, vector_unit=False, **P)
        assert (model.state, model.error, model.position) == ("ERROR",
                                                              ErrorCode.ENGINE_NOT_BUILT, pos)
        assert run_model(prog, **P).error != ErrorCode.ENGINE_NOT_BUILT
    assert STATE_NAMES[world.traces[-1].status["state"]] == "HALTED"
    assert world.check_counters()["issued_tvp"] == 0


def test_no_vector_unit_model_is_checked(seed):
    """The checker's twin: a trace of the no-TVP TCP checked against the model of a tile with
    the vector unit fails (the TVP command would have been issued)."""
    dut = make(vector_unit=False)
    program = [dma(0), tvp(), HaltCmd()]
    world = run_world(dut, [program], seed=seed)
    check(dut, world, [program])
    with pytest.raises(AssertionError):
        check_trace(program, world.traces[0], semaphores=dut.n_semaphores,
                    dma_queues=dut.dma_queues, hbm_addr_bits=dut.hbm_addr_bits)


def test_engine_error_stops_stream(seed):
    """An engine event with a non-zero status stops the stream after what was issued; the first
    code and the count are recorded; restart and a good program."""
    rng = random.Random(seed)
    fail_prog = [ttu(signal=0)] + [WaitCmd(sem=0)] + [dma(0), tvp(), ttu()] * 3 + [HaltCmd()]
    good = random_program(rng, length=20, **P)
    fail = [{(TTU, 0): ErrorCode.ILLEGAL_SHAPE, (0, 1): ErrorCode.AXI_SLVERR}, {}]
    dut = make()
    world = run_world(dut, [fail_prog, good], seed=seed, fail=fail)
    check(dut, world, [fail_prog, good])
    t = world.traces[0]
    assert t.status["error"] == ErrorCode.ILLEGAL_SHAPE
    assert SOURCE_NAMES[t.status["source"]] == "TTU"
    assert t.status["position"] == 1     # the failed op's event stops the stream at the WAIT
    assert world.traces[1].status["error"] == 0


def test_random_engine_errors(seed):
    rng = random.Random(seed)
    programs = [random_program(rng, length=30, **P) for _ in range(3)]
    fails = []
    for p in programs:
        n = [len(x) for x in run_model(p, **P).issued]
        k = rng.choice([k for k in range(4) if n[k]])
        fails.append({(k, rng.randrange(n[k])): rng.choice([0x10, 0x21, 0x30, 0x04])})
    dut = make()
    world = run_world(dut, programs, seed=seed, fail=fails)
    check(dut, world, programs)


def test_completion_overflow_saturates_and_stops(seed):
    program = [SignalCmd(sem=3, count=0xFFFF), tvp(signal=3), FenceCmd(), ttu(), HaltCmd()]
    dut = make()
    with pytest.raises(ValueError, match="overflow"):
        run_model(program, **P)
    world = run_world(dut, [program], seed=seed)
    t = world.traces[0]
    assert STATE_NAMES[t.status["state"]] == "ERROR"
    assert t.status["error"] == ErrorCode.SEMAPHORE_OVERFLOW
    assert SOURCE_NAMES[t.status["source"]] == "COMPLETION"
    assert t.semaphores[3] == 0xFFFF and len(t.arrivals[TTU]) == 0


def test_restart_while_draining_discards_old_completions(seed):
    """Restart while slow commands are in flight: their completions signal nothing in the new
    program (which would otherwise get past its WAIT)."""
    old = [ttu(signal=0), tvp(signal=0), WaitCmd(sem=0, count=3)]
    new = [WaitCmd(sem=0, count=1), dma(0)]
    dut = make()
    world = run_world(dut, [old, new], seed=seed, latency=(20, 60), early_restart=True)
    exps = check(dut, world, [old, new], final=False)
    assert exps[1].blocked == "WAIT" and world.traces[1].semaphores[0] == 0


# --------------------------------------------------------------------------------------------
# Fault twins: the checks catch each deliberate bug
# --------------------------------------------------------------------------------------------

def test_drop_wait_is_caught(seed):
    """A dropped WAIT lets the tile op reach the TTU before the DMA it waits for completed."""
    program = [dma(0, signal=0), WaitCmd(sem=0), ttu(), FenceCmd(), HaltCmd()]
    kw = {"seed": seed, "latency": {0: (40, 60), 1: (1, 5), TTU: (1, 5), TVP: (1, 5)},
              "stall": 0.1}
    good = make()
    check(good, run_world(good, [program], **kw), [program])
    bad = make(faults={"drop_wait"})
    with pytest.raises(AssertionError, match="reached its engine"):
        check(bad, run_world(bad, [program], **kw), [program])


def test_fence_ignores_tvp_is_caught(seed):
    program = [tvp(), FenceCmd(), dma(0), HaltCmd()]
    kw = {"seed": seed, "latency": {0: (1, 5), 1: (1, 5), TTU: (1, 5), TVP: (40, 60)}}
    bad = make(faults={"fence_ignores_tvp"})
    with pytest.raises(AssertionError, match="reached its engine"):
        check(bad, run_world(bad, [program], **kw), [program])


def test_event_collision_is_caught(seed):
    """Three engines signal one semaphore with the same latency, so their events coincide."""
    program = [dma(0, signal=1), ttu(signal=1), tvp(signal=1), FenceCmd(), HaltCmd()]
    kw = {"seed": seed, "latency": {0: (12, 12), 1: (12, 12), TTU: (11, 11), TVP: (10, 10)},
              "gap": 0.0, "stall": 0.0}
    good = make()
    check(good, run_world(good, [program], **kw), [program])
    bad = make(faults={"event_collision"})
    with pytest.raises(AssertionError, match="semaphores"):
        check(bad, run_world(bad, [program], **kw), [program])


def test_every_fault_has_a_test():
    """``sem_wraps`` is caught by the formal twin ``tcp_sem_no_wrap_sem_wraps``
    (verif/tests/test_formal_tcp.py): random programs rarely reach the maximum."""
    assert set(FAULTS) == {"drop_wait", "fence_ignores_tvp", "event_collision", "sem_wraps"}


# --------------------------------------------------------------------------------------------
# cocotb + Verilator
# --------------------------------------------------------------------------------------------

BENCH = "openmaia.benches.tcp"


def cocotb_run(testcase, *, faults=frozenset(), check=True, **extra):
    dut = make(faults=faults, outstanding=4)
    params = {**P, "outstanding": 4, "event_queue_bits": len(dut.dma_event.payload.queue),
              **extra}
    return simulate(dut, bench=BENCH, name="tcp", testcase=testcase, params=params,
                    check=check)


@pytest.mark.sim
def test_cocotb_random_programs():
    cocotb_run("random_programs", programs=8, length=60)


@pytest.mark.sim
@pytest.mark.slow
def test_cocotb_drop_wait_is_caught():
    result = cocotb_run("random_programs", faults={"drop_wait"}, programs=8, length=60,
                        check=False)
    assert not result.passed
    assert "not after" in result.log_file.read_text()      # an ordering check failed


@pytest.mark.sim
@pytest.mark.slow
def test_cocotb_random_programs_long():
    cocotb_run("random_programs", programs=100, length=200)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("fault", sorted(set(FAULTS) - {"drop_wait", "sem_wraps"}))
def test_cocotb_faults_are_caught(fault):
    result = cocotb_run("random_programs", faults={fault}, programs=30, length=100,
                        check=False)
    assert not result.passed


# --------------------------------------------------------------------------------------------
# Interfaces and odd inputs
# --------------------------------------------------------------------------------------------

def test_connects_to_the_engines():
    """The command and event streams connect as they are to TileDma and TileTensorEngine."""
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from openmaia.tile.dma import TileDma
    from openmaia.tile.ttu_engine import TileTensorEngine
    cfg = PRESETS["small"]
    dma = TileDma.from_config(cfg)
    engine = TileTensorEngine.from_config(cfg)
    tcp = TileControlProcessor(semaphores=4, dma_queues=cfg.dma_queues,
                               hbm_addr_bits=cfg.axi_addr_bits, outstanding=4)
    m = Module()
    for q in range(cfg.dma_queues):
        wiring.connect(m, tcp.dma[q], dma.desc[q])
    wiring.connect(m, dma.event, tcp.dma_event)
    wiring.connect(m, tcp.ttu, engine.cmd)
    wiring.connect(m, engine.event, tcp.ttu_event)
    with warnings.catch_warnings():      # the parts are never elaborated here
        warnings.simplefilter("ignore", UnusedElaboratable)
        del dma, engine, tcp, m
        gc.collect()


def test_unexpected_events_are_counted_and_ignored():
    """Events with no incomplete command (any engine, a DMA queue number past the queues) are
    counted and change nothing; a real completion after them still signals."""
    dut = make(dma_queues=3)
    seen = {}

    async def bench(ctx):
        for port, payload in ((dut.ttu_event, 0), (dut.tvp_event, 0),
                              (dut.dma_event, 3), (dut.dma_event, 1)):
            ctx.set(port.valid, 1)
            ctx.set(Value.cast(port.payload), payload)
            await ctx.tick()
            ctx.set(port.valid, 0)
        await ctx.tick()
        seen["unexpected"] = ctx.get(dut.counters.unexpected_events)
        seen["sems"] = ctx.get(Value.cast(dut.semaphores))
        seen["state"] = ctx.get(dut.status.state)
        # now a TTU op signalling semaphore 2, and its event
        ctx.set(dut.cmd.valid, 1)
        ctx.set(Value.cast(dut.cmd.payload), encode(ttu(signal=2)))
        await ctx.tick().until(dut.cmd.ready)
        ctx.set(dut.cmd.valid, 0)
        ctx.set(dut.ttu.ready, 1)
        await ctx.tick().until(dut.ttu.valid)
        ctx.set(dut.ttu_event.valid, 1)
        await ctx.tick()
        ctx.set(dut.ttu_event.valid, 0)
        await ctx.tick()
        seen["after"] = ctx.get(dut.semaphores[2])
        seen["unexpected_after"] = ctx.get(dut.counters.unexpected_events)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == {"unexpected": 4, "sems": 0, "state": TcpState.RUNNING, "after": 1,
                    "unexpected_after": 4}
