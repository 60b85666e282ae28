"""Golden model of the Tile Control Processor's ordering rules, and a simulator-independent test
world (engines as random-latency responders, a command feeder, an interrupt handler) that the
Amaranth-simulator tests and the cocotb bench both drive.

* :func:`run_model` executes a program (command bits or :mod:`.isa` objects) functionally: what
  each engine (each DMA queue) receives, in order, the interrupt codes, where the stream ends
  (HALT, a command error, a WAIT that can never be satisfied, or the end of the program) and the
  semaphores once every issued command has completed. Completions are applied lazily (when a
  WAIT or FENCE needs them, and at the end); a program whose SIGNAL or completion overflow
  depends on completion timing is refused (:class:`TimingDependent`).
* :func:`check_trace` checks a simulation trace against it: every engine gets exactly its
  commands in order (nothing lost, duplicated, reordered or altered), no engine command and no
  interrupt comes before a WAIT ahead of it in the program could be satisfied (the completion
  events that satisfy it happened in an earlier cycle), or before the completion events of every
  engine command ahead of a FENCE, or before an earlier INTERRUPT was raised; the final status,
  semaphores and counters.
"""

from collections import deque
from dataclasses import dataclass, field

from amaranth.lib import data

from ..errors import ErrorCode
from .dma_descriptor import DmaDescriptor, DmaDescriptorLayout
from .isa import (
    BODY_WIDTH,
    DESC_HBM_ADDR_BITS,
    HEADER_BITS,
    SEM_BITS,
    SEM_MAX,
    Opcode,
    TvpCommand,
    check_command,
    encode,
)
from .tcp import TcpCounters, TcpStatus
from .ttu_stream import TtuCommand

__all__ = [
    "SOURCE_NAMES",
    "STATE_NAMES",
    "Expected",
    "TcpWorld",
    "TimingDependent",
    "check_trace",
    "engine_target",
    "run_model",
]

STATE_NAMES = ("RUNNING", "HALTED", "ERROR", "DRAINING")
SOURCE_NAMES = ("NONE", "COMMAND", "DMA", "TTU", "TVP", "COMPLETION")


class TimingDependent(ValueError):
    """The program's outcome depends on when engines complete (a semaphore may overflow)."""


@dataclass
class Expected:
    """What the TCP does with a program (see :func:`run_model`). Targets: DMA queues
    ``0 .. dma_queues - 1``, then the TTU, then the TVP."""
    issued: list                 # per target: [payload bits] in order
    items: list                  # per retired command: (opcode, target or None, index, info)
    interrupts: list
    state: str                   # RUNNING (end of program or blocked), HALTED or ERROR
    error: ErrorCode
    position: int
    blocked: str | None          # "WAIT" / "FENCE" / None
    semaphores: list


def _as_bits(cmd):
    return cmd if isinstance(cmd, int) else encode(cmd)


def engine_target(bits, *, dma_queues, hbm_addr_bits):
    """``(target, payload bits, signal semaphore or None)`` of an engine command's bits, as the
    TCP puts it on its output stream."""
    opcode = Opcode(bits & 0xFF)
    signal = (bits >> 16 & 0xFF) if bits >> 8 & 1 else None
    body = bits >> HEADER_BITS
    if opcode is Opcode.DMA:
        desc = DmaDescriptor.decode(body >> 8 & ((1 << (BODY_WIDTH[opcode] - 8)) - 1),
                                    DESC_HBM_ADDR_BITS)
        return body & 0xFF, desc.encode(hbm_addr_bits), signal
    width = BODY_WIDTH[opcode]
    target = dma_queues if opcode is Opcode.TILE_OP else dma_queues + 1
    return target, body & ((1 << width) - 1), signal


def run_model(program, *, semaphores, dma_queues, hbm_addr_bits, limit=None,
              vector_unit=True) -> Expected:
    """Execute ``program`` (at most ``limit`` commands retired) as the TCP does, with engines
    that always complete (module docstring). ``vector_unit=False``: a tile without the TVP (a
    TVP command is the error ``ENGINE_NOT_BUILT``; the TVP target gets nothing)."""
    targets = dma_queues + 2
    sems = [0] * semaphores
    pending = deque()        # (signal sem) of incomplete commands, in program order
    issued = [[] for _ in range(targets)]
    items, interrupts = [], []
    state, error, blocked = "RUNNING", ErrorCode.OK, None

    def complete_all():
        while pending:
            s = pending.popleft()
            if s is not None:
                sems[s] += 1
                if sems[s] > SEM_MAX:
                    raise TimingDependent(f"completion signals overflow semaphore {s}")

    def eager(s):
        return sems[s] + sum(1 for p in pending if p == s)

    for bits in map(_as_bits, program):
        if limit is not None and len(items) >= limit:
            break
        status = check_command(bits, semaphores=semaphores, dma_queues=dma_queues,
                               hbm_addr_bits=hbm_addr_bits, vector_unit=vector_unit)
        if status is ErrorCode.OK and (bits & 0xFF) == Opcode.SIGNAL.value:
            s, count = bits >> 32 & 0xFF, bits >> 40 & 0xFFFF
            if sems[s] + count > SEM_MAX:
                status = ErrorCode.SEMAPHORE_OVERFLOW
            elif eager(s) + count > SEM_MAX:
                raise TimingDependent(f"SIGNAL {count} to semaphore {s} overflows only if "
                                      f"completions come first")
        if status is not ErrorCode.OK:
            state, error = "ERROR", status
            break
        opcode = Opcode(bits & 0xFF)
        if opcode in (Opcode.DMA, Opcode.TILE_OP, Opcode.TVP):
            target, payload, signal = engine_target(bits, dma_queues=dma_queues,
                                                    hbm_addr_bits=hbm_addr_bits)
            items.append((opcode, target, len(issued[target]), signal))
            issued[target].append(payload)
            pending.append(signal)
            if signal is not None and eager(signal) > SEM_MAX:
                raise TimingDependent(f"completion signals may overflow semaphore {signal}")
        elif opcode is Opcode.WAIT:
            s, count = bits >> 32 & 0xFF, bits >> 40 & 0xFFFF
            if sems[s] < count:
                complete_all()
            if sems[s] < count:
                blocked = "WAIT"
                break
            sems[s] -= count
            items.append((opcode, None, s, count))
        elif opcode is Opcode.SIGNAL:
            s, count = bits >> 32 & 0xFF, bits >> 40 & 0xFFFF
            sems[s] += count
            items.append((opcode, None, s, count))
        elif opcode is Opcode.FENCE:
            complete_all()
            items.append((opcode, None, None, None))
        elif opcode is Opcode.INTERRUPT:
            interrupts.append(bits >> 32 & 0xFFFF)
            items.append((opcode, None, len(interrupts) - 1, interrupts[-1]))
        elif opcode is Opcode.HALT:
            items.append((opcode, None, None, None))
            state = "HALTED"
            break
    complete_all()
    return Expected(issued=issued, items=items, interrupts=interrupts, state=state, error=error,
                    position=len(items), blocked=blocked, semaphores=sems)


def check_trace(program, trace, *, semaphores, dma_queues, hbm_addr_bits, final=True,
                vector_unit=True):
    """Check one program's ``trace`` (a :class:`Trace` of :class:`TcpWorld`). Returns the
    :class:`Expected` it was checked against; raises ``AssertionError`` naming the first
    violation. ``final``: the trace ran to quiescence (check semaphores and completions)."""
    status = trace.status
    position = status["position"]
    first_fail = trace.first_failure()
    full = run_model(program, semaphores=semaphores, dma_queues=dma_queues,
                     hbm_addr_bits=hbm_addr_bits, vector_unit=vector_unit)
    if first_fail is None:
        exp = full
        assert position == exp.position, f"position {position}, model {exp.position}"
        assert STATE_NAMES[status["state"]] == exp.state, (
            f"state {STATE_NAMES[status['state']]}, model {exp.state}")
        assert status["error"] == exp.error, f"error {status['error']:#x}, model {exp.error!r}"
        if exp.error != ErrorCode.OK:
            assert SOURCE_NAMES[status["source"]] == "COMMAND"
            assert status["error_position"] == exp.position
    else:
        exp = run_model(program, semaphores=semaphores, dma_queues=dma_queues,
                        hbm_addr_bits=hbm_addr_bits, limit=position, vector_unit=vector_unit)
        fail_target, fail_index, fail_code, _ = first_fail
        fail_item = next(i for i, it in enumerate(full.items)
                         if it[1] == fail_target and it[2] == fail_index)
        assert position > fail_item, "stopped before the failing command was issued"
        assert exp.position == position, f"position {position} past the model's {exp.position}"
        assert STATE_NAMES[status["state"]] == "ERROR", "an engine error did not stop the stream"
        assert status["error"] == fail_code and status["engine_error"] == fail_code
        assert SOURCE_NAMES[status["source"]] == trace.source_of(fail_target)
        assert status["engine_errors"] == trace.failures()
    # every engine gets exactly its commands, in order
    for k in range(dma_queues + 2):
        got = [p for _, p in trace.arrivals[k]]
        want = exp.issued[k]
        for j, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"target {k} command {j}: payload {g:#x}, expected {w:#x}"
        assert len(got) == len(want), (f"target {k}: {len(got)} commands arrived, "
                                       f"expected {len(want)}")
    assert trace.irq_codes() == exp.interrupts, (
        f"interrupts {trace.irq_codes()}, expected {exp.interrupts}")
    # ordering: WAIT, FENCE, INTERRUPT bounds on everything later in the program
    signal_events = {}   # sem -> [(cycle, program index)]
    signalled = {}       # sem -> units from SIGNALs so far
    demand = {}          # sem -> cumulative WAIT counts so far
    bound, bound_why = -1, "start"
    for i, item in enumerate(exp.items):
        opcode, target, index, info = item
        if opcode in (Opcode.DMA, Opcode.TILE_OP, Opcode.TVP):
            cycle = trace.arrivals[target][index][0]
            assert cycle > bound, (f"command {i} ({opcode.name}) reached its engine in cycle "
                                   f"{cycle}, not after cycle {bound} ({bound_why})")
            if info is not None and index < len(trace.events[target]):
                signal_events.setdefault(info, []).append(trace.events[target][index][0])
        elif opcode is Opcode.WAIT:
            s, count = index, info
            demand[s] = demand.get(s, 0) + count
            need = demand[s] - signalled.get(s, 0)
            cycles = sorted(signal_events.get(s, []))
            if need > 0:
                assert len(cycles) >= need, (f"WAIT {i} (semaphore {s}, count {count}) retired "
                                             f"with {len(cycles)} of {need} completions")
                t = cycles[need - 1]
                if t > bound:
                    bound, bound_why = t, f"completion satisfying WAIT {i}"
        elif opcode is Opcode.SIGNAL:
            signalled[index] = signalled.get(index, 0) + info
        elif opcode is Opcode.FENCE:
            for j, (op2, t2, x2, _) in enumerate(exp.items[:i]):
                if t2 is None:
                    continue
                assert x2 < len(trace.events[t2]), f"FENCE {i} retired before command {j} completed"
                t = trace.events[t2][x2][0]
                if t > bound:
                    bound, bound_why = t, f"completion of command {j} before FENCE {i}"
        elif opcode is Opcode.INTERRUPT:
            cycle = trace.irqs[index][0]
            assert cycle > bound, (f"INTERRUPT {i} raised in cycle {cycle}, not after {bound} "
                                   f"({bound_why})")
            bound, bound_why = cycle, f"INTERRUPT {i}"
    if final:
        for k in range(dma_queues + 2):
            assert len(trace.events[k]) == len(exp.issued[k]), f"target {k}: missing events"
        assert status["outstanding"] == 0
        assert trace.semaphores == exp.semaphores, (
            f"semaphores {trace.semaphores}, model {exp.semaphores}")
    return exp


# ------------------------------------------------------------------------------------------------
# The test world: feeder, engines, interrupt handler
# ------------------------------------------------------------------------------------------------

@dataclass
class Trace:
    """What one program did: per target the (cycle, payload) of every command that reached the
    engine and the (cycle, status) of every completion event; (cycle, code) of every interrupt
    raised; the final status fields and semaphores."""
    targets: int
    dma_queues: int
    arrivals: list = None
    events: list = None
    irqs: list = field(default_factory=list)
    status: dict = field(default_factory=dict)
    semaphores: list = field(default_factory=list)
    counters: dict = field(default_factory=dict)

    def __post_init__(self):
        self.arrivals = [[] for _ in range(self.targets)]
        self.events = [[] for _ in range(self.targets)]

    def irq_codes(self):
        return [code for _, code in self.irqs]

    def source_of(self, target):
        return "DMA" if target < self.dma_queues else ("TTU" if target == self.dma_queues
                                                       else "TVP")

    def failures(self):
        return sum(1 for evs in self.events for _, s in evs if s)

    def first_failure(self):
        """(target, index, status, cycle) of the first failing event (same cycle: DMA, TTU, TVP,
        as the TCP records them), or None."""
        fails = [(c, 0 if k < self.dma_queues else k - self.dma_queues + 1, k, j, s)
                 for k, evs in enumerate(self.events) for j, (c, s) in enumerate(evs) if s]
        if not fails:
            return None
        c, _, k, j, s = min(fails)
        return k, j, s, c


class TcpWorld:
    """Everything around the TCP, one clock cycle at a time, for any simulator.

    Each cycle the adapter calls :meth:`drive` (input port values for this cycle, by flattened
    port name, e.g. ``"dma__0__ready"``) and then :meth:`observe` with the values of
    :meth:`sampled_ports` at the clock edge. Engines take commands with random backpressure
    (``stall``), complete each after a random ``latency`` (inclusive range; per target), in
    order, and send events with random gaps; ``fail``: ``{(target, index): status}`` events to
    fail. The feeder sends ``programs`` one after another with random gaps (``gap``); after a
    program ends (HALT or ERROR seen, or its commands all taken), it waits until the TCP is
    quiet, snapshots status, pulses ``restart`` (when ``restart`` and not the last program) and
    starts the next. Interrupts are acknowledged after a random ``ack_delay``.
    ``vector_unit=False``: the TCP has no TVP ports (the TVP target exists and stays empty).
    """

    def __init__(self, programs, *, semaphores, dma_queues, event_queue_bits, rng, gap=0.3,
                 stall=0.3, latency=(1, 20), ack_delay=(0, 6), fail=None, quiet_cycles=30,
                 early_restart=False, vector_unit=True):
        self.n_sems = semaphores
        self.programs = [[_as_bits(c) for c in p] for p in programs]
        self.nq = dma_queues
        self.targets = dma_queues + 2
        self.vector_unit = vector_unit
        self._driven_targets = self.targets if vector_unit else self.targets - 1
        self._event_ports = ("dma_event", "ttu_event", "tvp_event")[:3 if vector_unit else 2]
        self.qbits = event_queue_bits
        self.rng = rng
        self.gap, self.stall = gap, stall
        self.latency = latency if isinstance(latency, dict) else {k: latency
                                                                 for k in range(self.targets)}
        self.ack_delay = ack_delay
        self.fail = [dict(f) for f in (fail or [{} for _ in programs])]
        self.quiet_cycles = quiet_cycles
        self.early_restart = early_restart
        self.traces = []
        self.cycle = 0
        self.completions = [deque() for _ in range(self.targets)]   # (cycle, status, tag, trace)
        self._ev_present = [None] * 3        # per event port: (target, status, tag, trace)
        self._last_done = [0] * self.targets
        self._start_program(0)
        self.arrival_trace = self.trace
        self._ready = [False] * self.targets
        self._done = False
        self._irq_prev = 0
        self._ack_at = None
        self._restart = False
        self._quiet = 0
        self._wait_running = False

    # -- bookkeeping
    def _start_program(self, n):
        self.program = n
        self.feed = deque(self.programs[n])
        self.presenting = False
        self.trace = Trace(targets=self.targets, dma_queues=self.nq)
        self.traces.append(self.trace)
        self._last_position = None

    @property
    def done(self):
        return self._done

    def check_counters(self):
        """Counter identities over the whole run (docs/tcp.md, counters): every cycle is an
        input stall, busy or stopped; busy = retired + waits + fence + output stalls + command
        errors; per-engine issue counts = commands that reached the engines."""
        c, c0 = self.counters, self.counters0
        d = {k: c[k] - c0[k] for k in c}
        total = d["input_stall_cycles"] + d["busy_cycles"] + d["stopped_cycles"]
        assert total == self.cycle - 1, f"{total} cycles accounted, {self.cycle - 1} ran"
        errors = sum(t.status["error"] != 0 and SOURCE_NAMES[t.status["source"]] == "COMMAND"
                     for t in self.traces)
        assert d["busy_cycles"] == (d["retired"] + d["wait_cycles"] + d["fence_cycles"]
                                    + d["output_stall_cycles"] + errors), d
        assert d["retired"] == sum(t.status["position"] for t in self.traces)
        nq = self.nq
        for name, ks in (("issued_dma", range(nq)), ("issued_ttu", [nq]),
                         ("issued_tvp", [nq + 1])):
            assert d[name] == sum(len(t.arrivals[k]) for t in self.traces for k in ks), name
        assert d["unexpected_events"] == 0
        return d

    def port_names(self):
        names = ["cmd__valid", "cmd__payload", "restart", "irq_ack"]
        names += [f"{self._out_name(k)}__ready" for k in range(self._driven_targets)]
        names += [f"{e}__{x}" for e in self._event_ports for x in ("valid", "payload")]
        return names

    def sampled_ports(self):
        names = ["cmd__ready", "irq", "irq_code", "status", "semaphores", "counters"]
        names += [f"{self._out_name(k)}__{x}" for k in range(self._driven_targets)
                  for x in ("valid", "payload")]
        names += [f"{e}__ready" for e in self._event_ports]
        return names

    def _out_name(self, k):
        return f"dma__{k}" if k < self.nq else ("ttu" if k == self.nq else "tvp")

    # -- one cycle
    def drive(self):
        v = {}
        if not self.presenting and self.feed and self.rng.random() >= self.gap:
            self.presenting = True
        v["cmd__valid"] = int(self.presenting)
        v["cmd__payload"] = self.feed[0] if self.presenting else 0
        for k in range(self._driven_targets):
            self._ready[k] = self.rng.random() >= self.stall
            v[f"{self._out_name(k)}__ready"] = int(self._ready[k])
        # events: DMA (one port for every queue), TTU, TVP
        for port in range(len(self._event_ports)):
            if self._ev_present[port] is None:
                cands = ([k for k in range(self.nq)] if port == 0 else [self.nq + port - 1])
                ready = [k for k in cands if self.completions[k]
                         and self.completions[k][0][0] <= self.cycle]
                if ready and self.rng.random() >= self.gap:
                    k = min(ready, key=lambda k: self.completions[k][0][0])
                    self._ev_present[port] = (k, *self.completions[k][0][1:])
            name = ("dma_event", "ttu_event", "tvp_event")[port]
            p = self._ev_present[port]
            v[f"{name}__valid"] = int(p is not None)
            if p is None:
                v[f"{name}__payload"] = 0
            elif port == 0:
                v[f"{name}__payload"] = p[0] | p[2] << self.qbits | p[1] << (self.qbits + 8)
            else:
                v[f"{name}__payload"] = p[2] | p[1] << 8
        v["irq_ack"] = int(self._ack_at is not None and self.cycle >= self._ack_at)
        v["restart"] = int(self._restart)
        self._driven = v
        return v

    def observe(self, s):
        v = self._driven
        if v["cmd__valid"] and s["cmd__ready"]:
            self.feed.popleft()
            self.presenting = False
        for k in range(self._driven_targets):
            name = self._out_name(k)
            if self._ready[k] and s[f"{name}__valid"]:
                payload = s[f"{name}__payload"]
                trace = self.arrival_trace
                index = len(trace.arrivals[k])
                trace.arrivals[k].append((self.cycle, payload))
                lo, hi = self.latency[k]
                at = max(self._last_done[k], self.cycle + self.rng.randint(lo, hi))
                self._last_done[k] = at
                status = self.fail[self.traces.index(trace)].get((k, index), 0)
                tag = _tag_of(k, payload, self.nq)
                self.completions[k].append((at, status, tag, trace))
        for port, name in enumerate(self._event_ports):
            p = self._ev_present[port]
            if p is not None and s[f"{name}__ready"]:
                k = p[0]
                self.completions[k].popleft()
                p[3].events[k].append((self.cycle, p[1]))
                self._ev_present[port] = None
        irq = s["irq"]
        if irq and not self._irq_prev:
            self.trace.irqs.append((self.cycle, s["irq_code"]))
            lo, hi = self.ack_delay
            self._ack_at = self.cycle + self.rng.randint(lo, hi)
        if v["irq_ack"]:
            self._ack_at = None
        self._irq_prev = irq if not v["irq_ack"] else 0
        self.status = _unpack(TcpStatus, s["status"])
        self.sems = [s["semaphores"] >> SEM_BITS * i & SEM_MAX for i in range(self.n_sems)]
        self.counters = _unpack(TcpCounters, s["counters"])
        if self.cycle == 0:
            self.counters0 = dict(self.counters)
        self._advance_program(s)
        self.cycle += 1

    def _advance_program(self, s):
        if self._restart:
            self._restart = False
            self._wait_running = True
            return
        state = self.status["state"]
        if self._wait_running:
            if state == 0:
                self._wait_running = False
                self.arrival_trace = self.trace
            return
        outputs_idle = not any(s[f"{self._out_name(k)}__valid"]
                               for k in range(self._driven_targets))
        engines_idle = (not any(self.completions) and all(p is None for p in self._ev_present)
                        and outputs_idle)
        stopped = state in (1, 2)
        still = self.status["position"] == self._last_position
        self._last_position = self.status["position"]
        idle = engines_idle or (self.early_restart and outputs_idle)
        if (stopped or still) and idle and self._ack_at is None and not s["irq"]:
            self._quiet += 1
        else:
            self._quiet = 0
        if self._quiet < self.quiet_cycles:
            return
        self._quiet = 0
        self.trace.status = dict(self.status)
        self.trace.semaphores = list(self.sems)
        self.trace.counters = dict(self.counters)
        if self.program + 1 < len(self.programs):
            self._start_program(self.program + 1)
            self._restart = True
        else:
            self._done = True


def _unpack(layout, bits):
    """The top-level fields of ``bits`` under ``layout`` as ints."""
    return {name: bits >> f.offset & ((1 << f.width) - 1)
            for name, f in data.Layout.cast(layout)}


_TAG_OFFSETS = (data.Layout.cast(DmaDescriptorLayout.of(1))["tag"].offset,
                data.Layout.cast(TtuCommand)["tag"].offset,
                data.Layout.cast(TvpCommand)["tag"].offset)


def _tag_of(target, payload, nq):
    """The tag an engine echoes: the DMA descriptor's, the tile op's, the TVP command's."""
    which = 0 if target < nq else (1 if target == nq else 2)
    return payload >> _TAG_OFFSETS[which] & 0xFF


# ------------------------------------------------------------------------------------------------
# Programs
# ------------------------------------------------------------------------------------------------

def random_engine_command(rng, *, kind, dma_queues, hbm_addr_bits, semaphores, signal=0.5):
    """A random engine command object of ``kind`` ("dma", "ttu", "tvp"); random field values
    (the TCP passes them through), a completion semaphore with probability ``signal``."""
    from ..numerics.formats import Format
    from .isa import DmaCmd, TileOpCmd, TvpCmd, TvpOp
    from .tile_op import OperandPlace, ResultPlace, TileOp
    from .ttu_stream import TtuOp
    sig = rng.randrange(semaphores) if rng.random() < signal else None
    r32 = lambda: rng.randrange(1 << 32)
    if kind == "dma":
        hb = lambda: rng.randrange(1 << hbm_addr_bits)
        desc = DmaDescriptor(direction=rng.randrange(2), hbm_addr=hb(), tsram_addr=r32(),
                             count0=rng.randrange(1 << 16), count1=rng.randrange(1 << 16),
                             count2=rng.randrange(1 << 16), hbm_stride1=hb(),
                             hbm_stride2=hb(), tsram_stride1=r32(), tsram_stride2=r32(),
                             elem_size=rng.randrange(8), tag=rng.randrange(256))
        return DmaCmd(queue=rng.randrange(dma_queues), desc=desc, signal=sig)
    if kind == "ttu":
        fmts = list(Format)
        op = TtuOp(m=rng.randrange(1 << 16), n=rng.randrange(1 << 16), k=rng.randrange(1 << 16),
                   fmt_a=rng.choice(fmts), fmt_b=rng.choice(fmts),
                   accumulate=rng.random() < 0.5, keep=rng.random() < 0.5,
                   tag=rng.randrange(256))
        place = lambda: OperandPlace(r32(), r32(), r32(), r32())
        return TileOpCmd(TileOp(op=op, a=place(), b=place(), c=ResultPlace(r32(), r32())),
                         signal=sig)
    return TvpCmd(op=rng.choice(list(TvpOp)), rows=rng.randrange(1 << 16),
                  cols=rng.randrange(1 << 16), a=r32(), a_stride=r32(), b=r32(),
                  b_stride=r32(), d=r32(), d_stride=r32(), d_scales=r32(),
                  d_scales_stride=r32(), scalar=r32(), fmt=rng.randrange(8),
                  tag=rng.randrange(256), signal=sig)


def random_program(rng, *, length, semaphores, dma_queues, hbm_addr_bits, halt=True,
                   weights=None):
    """A random legal program of about ``length`` commands that never deadlocks: a WAIT asks
    for at most what SIGNALs and completion signals before it provide; counts stay small, so
    no semaphore overflows. Ends with FENCE, HALT when ``halt``."""
    from .isa import FenceCmd, HaltCmd, InterruptCmd, SignalCmd, WaitCmd
    weights = weights or {"dma": 4, "ttu": 3, "tvp": 3, "wait": 4, "signal": 1, "fence": 1,
                          "interrupt": 1}
    kinds, w = zip(*weights.items())
    avail = [0] * semaphores
    program = []
    for _ in range(length):
        kind = rng.choices(kinds, w)[0]
        if kind in ("dma", "ttu", "tvp"):
            cmd = random_engine_command(rng, kind=kind, dma_queues=dma_queues,
                                        hbm_addr_bits=hbm_addr_bits, semaphores=semaphores)
            if cmd.signal is not None:
                avail[cmd.signal] += 1
        elif kind == "wait":
            ready = [s for s in range(semaphores) if avail[s]]
            if not ready:
                continue
            s = rng.choice(ready)
            cmd = WaitCmd(sem=s, count=rng.randint(0 if rng.random() < 0.05 else 1,
                                                   min(3, avail[s])))
            avail[s] -= cmd.count
        elif kind == "signal":
            s = rng.randrange(semaphores)
            cmd = SignalCmd(sem=s, count=rng.randint(0, 3))
            avail[s] += cmd.count
        elif kind == "fence":
            cmd = FenceCmd()
        else:
            cmd = InterruptCmd(code=rng.randrange(1 << 16))
        program.append(cmd)
    if halt:
        program += [FenceCmd(), HaltCmd()]
    return program
