"""The Tile Control Processor (TCP): issues a stream of tile commands (:mod:`.isa`) to the tile's
three engines, in order, and orders them with counting semaphores.

Contract (docs/tcp.md):

* Commands arrive on ``cmd`` (a stream of :class:`~.isa.Command`; the host-fed queue). They are
  *retired* one at a time in stream order; an engine command retires when it is *issued*:
  written, whole, into that engine's one-entry output register (the ``dma[q]``, ``ttu``,
  ``tvp`` streams). Engines run concurrently; each engine (each DMA queue) gets its commands in
  stream order. An engine command is issued only while fewer than ``outstanding`` commands of
  that engine (DMA queue) are incomplete.
* Completion: every engine reports one event per command, in its command order (the DMA: in
  order per queue, by the event's ``queue``). An event completes the oldest incomplete command
  of its engine; if that command has ``signal`` set, its semaphore gets 1. An event with no
  incomplete command is counted (``unexpected_events``) and otherwise ignored.
* WAIT blocks the issue stream (only) until its semaphore holds at least ``count``, then
  subtracts ``count``; SIGNAL adds; FENCE blocks until no engine command is incomplete;
  INTERRUPT waits while an interrupt is pending (``irq``), then raises ``irq`` with its code
  until ``irq_ack``; HALT stops the stream (state ``HALTED``, no command held).
* Errors: a command breaking a rule of :mod:`.isa` is not executed; the stream stops (state
  ``ERROR``, ``error`` = its code, source ``COMMAND``, ``error_position`` = its index).
  An engine event with a non-zero status is recorded (first code ``engine_error``, count
  ``engine_errors``) and also stops the stream: commands already issued complete, nothing more
  is issued (a blocked WAIT or FENCE is abandoned). A completion signal that would take a
  semaphore past its maximum saturates it and stops the stream (``SEMAPHORE_OVERFLOW``, source
  ``COMPLETION``). While stopped, ``cmd.ready`` is low.
* Without the vector unit (``vector_unit=False``: no ``tvp`` / ``tvp_event`` ports), every TVP
  command is a command error ``ENGINE_NOT_BUILT`` (rule 1 of :mod:`.isa`); ``issued_tvp`` stays 0.
* ``restart`` (one cycle, any state): drops the command held (if any), clears the semaphores,
  the interrupt, the error status and the position, and waits (state ``DRAINING``) until every
  issued engine command has completed (their events signal nothing); then ``RUNNING``.
"""

from collections.abc import Iterable

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..errors import ERROR_CODE_BITS, ErrorCode
from .dma_descriptor import DmaDescriptorLayout, DmaEventLayout
from .isa import (
    BODY_WIDTH,
    IRQ_CODE_BITS,
    SEM_BITS,
    SEM_MAX,
    Command,
    Opcode,
    TvpCommand,
    TvpEvent,
    TvpOp,
)
from .tile_op import TileOpCommand
from .ttu_stream import TtuEvent

__all__ = [
    "COUNTERS",
    "FAULTS",
    "CommandCheck",
    "ErrorSource",
    "TcpCounters",
    "TcpState",
    "TcpStatus",
    "TileControlProcessor",
]

#: Deliberate bugs for the mutation checks (docs/tcp.md).
FAULTS = {
    "drop_wait": "WAIT retires at once and subtracts nothing",
    "fence_ignores_tvp": "FENCE does not wait for incomplete TVP commands",
    "event_collision": "completion signals to one semaphore in one cycle add 1 in total",
    "sem_wraps": "a semaphore taken past its maximum wraps around instead of saturating",
}

COUNTER_BITS = 32
POSITION_BITS = 32


class TcpState(enum.Enum, shape=2):
    RUNNING = 0
    HALTED = 1
    ERROR = 2
    DRAINING = 3


class ErrorSource(enum.Enum, shape=3):
    """What stopped the stream."""
    NONE = 0
    COMMAND = 1
    DMA = 2
    TTU = 3
    TVP = 4
    COMPLETION = 5


class TcpStatus(data.Struct):
    """``position``: commands retired since the last restart; ``error_position``: the position
    when the stream stopped on an error (a command error: that command's index);
    ``outstanding``: some issued engine command is incomplete."""
    state:          TcpState
    source:         ErrorSource
    error:          ERROR_CODE_BITS
    engine_error:   ERROR_CODE_BITS
    engine_errors:  COUNTER_BITS
    position:       POSITION_BITS
    error_position: POSITION_BITS
    outstanding:    1


#: The counters (32 bits each, from reset or ``counters_clear``; a restart does not clear them).
#: Every cycle is exactly one of ``input_stall`` (running, no command held), ``busy`` (running,
#: a command held) or ``stopped`` (halted, error, draining); a busy cycle retires a command, or
#: waits on a semaphore, a fence, an engine (``output_stall``: engine register / outstanding
#: limit, or a pending interrupt), or finds the held command illegal.
COUNTERS = ("issued_dma", "issued_ttu", "issued_tvp", "retired", "wait_cycles", "fence_cycles",
            "output_stall_cycles", "input_stall_cycles", "busy_cycles", "stopped_cycles",
            "unexpected_events")


class TcpCounters(data.Struct):
    issued_dma:          COUNTER_BITS
    issued_ttu:          COUNTER_BITS
    issued_tvp:          COUNTER_BITS
    retired:             COUNTER_BITS
    wait_cycles:         COUNTER_BITS
    fence_cycles:        COUNTER_BITS
    output_stall_cycles: COUNTER_BITS
    input_stall_cycles:  COUNTER_BITS
    busy_cycles:         COUNTER_BITS
    stopped_cycles:      COUNTER_BITS
    unexpected_events:   COUNTER_BITS


def _bits_for(n):
    return max(1, (n - 1).bit_length())


class CommandCheck(wiring.Component):
    """The static rules of :mod:`.isa` (1-3; :func:`~.isa.check_command`): combinational.

    Ports: ``command`` (:class:`~.isa.Command`), ``status`` (``ErrorCode``; ``OK`` = legal).
    """

    def __init__(self, *, semaphores, dma_queues, hbm_addr_bits, vector_unit=True):
        self.n_semaphores = semaphores
        self.dma_queues = dma_queues
        self.hbm_addr_bits = hbm_addr_bits
        self.vector_unit = vector_unit
        super().__init__({"command": In(Command), "status": Out(ERROR_CODE_BITS)})

    def elaborate(self, platform):
        m = Module()
        c = self.command
        op = Signal(8)
        m.d.comb += op.eq(c.header.as_value()[:8])
        is_op = {o: Signal(name=f"in_is_{o.name.lower()}") for o in Opcode}
        for o, sig in is_op.items():
            m.d.comb += sig.eq(op == o.value)
        legal = Signal()
        engine = Signal()
        m.d.comb += [legal.eq(Cat(*is_op.values()).any()),
                     engine.eq(is_op[Opcode.DMA] | is_op[Opcode.TILE_OP] | is_op[Opcode.TVP])]
        raw = c.body.raw
        reserved = Signal()
        for o, sig in is_op.items():
            width = BODY_WIDTH[o]
            with m.If(sig):
                m.d.comb += reserved.eq(raw[width:].any())
        h = c.header
        bad_header = Signal()
        m.d.comb += bad_header.eq(h.reserved0.any() | h.reserved1.any()
                                  | (~engine & (h.signal | h.sem.any()))
                                  | (engine & ~h.signal & h.sem.any()))
        dma_bad = Signal()
        desc = c.body.dma.desc
        wide = [desc[f][self.hbm_addr_bits:].any()
                for f in ("hbm_addr", "hbm_stride1", "hbm_stride2")
                if self.hbm_addr_bits < len(desc[f])]
        m.d.comb += dma_bad.eq(is_op[Opcode.DMA] & ((c.body.dma.queue >= self.dma_queues)
                                                    | Cat(*wide, Const(0, 1)).any()))
        tvp_bad = Signal()
        m.d.comb += tvp_bad.eq(is_op[Opcode.TVP]
                               & (c.body.tvp.op.as_value() > max(o.value for o in TvpOp)))
        sem_bad = Signal()
        semcmd = is_op[Opcode.WAIT] | is_op[Opcode.SIGNAL]
        m.d.comb += sem_bad.eq((engine & h.signal & (h.sem >= self.n_semaphores))
                               | (semcmd & (c.body.semaphore.sem >= self.n_semaphores)))
        code = Signal(ERROR_CODE_BITS)
        with m.If(~legal):
            m.d.comb += code.eq(ErrorCode.ILLEGAL_OPCODE)
        with m.Elif(is_op[Opcode.TVP] & (not self.vector_unit)):
            m.d.comb += code.eq(ErrorCode.ENGINE_NOT_BUILT)
        with m.Elif(reserved | bad_header | dma_bad | tvp_bad):
            m.d.comb += code.eq(ErrorCode.ILLEGAL_FIELD)
        with m.Elif(sem_bad):
            m.d.comb += code.eq(ErrorCode.SEMAPHORE_INDEX)
        with m.Else():
            m.d.comb += code.eq(ErrorCode.OK)
        m.d.comb += self.status.eq(code)
        return m



class TileControlProcessor(wiring.Component):
    """The Tile Control Processor (module docstring).

    Parameters
    ----------
    semaphores : int
        Counting semaphores (1 .. 256), each :data:`~.isa.SEM_BITS` bits.
    dma_queues : int
        DMA descriptor queues (1 .. 256), as :class:`~.dma.TileDma` ``queues``.
    hbm_addr_bits : int
        The DMA's HBM (AXI) address width (1 .. 64); commands whose descriptor needs more are
        illegal.
    outstanding : int
        Incomplete commands allowed per engine (per DMA queue), >= 1.
    vector_unit : bool
        The tile has a TVP; without it there are no ``tvp`` / ``tvp_event`` ports and TVP
        commands are refused (``ENGINE_NOT_BUILT``).
    faults : collection of str
        Deliberate bugs from :data:`FAULTS`; empty for the real design.

    Ports
    -----
    cmd : In(stream of :class:`~.isa.Command`)
    dma : Out(stream of ``DmaDescriptorLayout.of(hbm_addr_bits)``) x ``dma_queues``
    dma_event : In(stream of ``DmaEventLayout``)
    ttu : Out(stream of :class:`~.tile_op.TileOpCommand`), ttu_event : In(stream of TtuEvent)
    tvp : Out(stream of :class:`~.isa.TvpCommand`), tvp_event : In(stream of TvpEvent)
        (only with ``vector_unit``)
    restart, irq_ack : In(1)
    irq : Out(1), irq_code : Out(16)
    semaphores : Out(array of ``semaphores`` x 16 bits)
    status : Out(:class:`TcpStatus`), counters : Out(:class:`TcpCounters`),
    counters_clear : In(1) (zeroes every counter)
    """

    def __init__(self, *, semaphores, dma_queues, hbm_addr_bits, outstanding, vector_unit=True,
                 faults=frozenset()):
        for name, value, hi in (("semaphores", semaphores, 256), ("dma_queues", dma_queues, 256),
                                ("hbm_addr_bits", hbm_addr_bits, 64),
                                ("outstanding", outstanding, 1 << 16)):
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= hi:
                raise ValueError(f"{name} must be an integer in 1..{hi}, not {value!r}")
        if not isinstance(vector_unit, bool):
            raise TypeError(f"vector_unit must be a bool, not {vector_unit!r}")
        if isinstance(faults, str) or not isinstance(faults, Iterable):
            raise TypeError(f"faults must be a collection of fault names, not {faults!r}")
        faults = frozenset(faults)
        if faults - FAULTS.keys():
            raise ValueError(f"unknown faults {sorted(faults - FAULTS.keys())}; "
                             f"known: {', '.join(FAULTS)}")
        self.n_semaphores = semaphores
        self.dma_queues = dma_queues
        self.hbm_addr_bits = hbm_addr_bits
        self.outstanding = outstanding
        self.vector_unit = vector_unit
        self.faults = faults
        self.desc_layout = DmaDescriptorLayout.of(hbm_addr_bits)
        self.event_layout = DmaEventLayout.of(_bits_for(dma_queues))
        tvp_members = {"tvp": Out(stream.Signature(TvpCommand)),
                       "tvp_event": In(stream.Signature(TvpEvent))} if vector_unit else {}
        super().__init__({
            "cmd": In(stream.Signature(Command)),
            "dma": Out(stream.Signature(self.desc_layout)).array(dma_queues),
            "dma_event": In(stream.Signature(self.event_layout)),
            "ttu": Out(stream.Signature(TileOpCommand)),
            "ttu_event": In(stream.Signature(TtuEvent)),
            **tvp_members,
            "restart": In(1),
            "irq": Out(1),
            "irq_code": Out(IRQ_CODE_BITS),
            "irq_ack": In(1),
            "semaphores": Out(data.ArrayLayout(SEM_BITS, semaphores)),
            "status": Out(TcpStatus),
            "counters": Out(TcpCounters), "counters_clear": In(1),
        })

    @classmethod
    def from_config(cls, config, **kwargs):
        """The TCP of a :class:`~openmaia.config.Config`."""
        return cls(semaphores=config.tcp_semaphores, dma_queues=config.dma_queues,
                   hbm_addr_bits=config.axi_addr_bits, outstanding=config.tcp_outstanding,
                   vector_unit=config.vector_unit, **kwargs)

    def elaborate(self, platform):
        m = Module()
        nq, S = self.dma_queues, self.n_semaphores
        sbits = _bits_for(S)
        TTU, TVP = nq, nq + 1
        targets = nq + 2 if self.vector_unit else nq + 1
        outs = [self.dma[q] for q in range(nq)] + [self.ttu]
        if self.vector_unit:
            outs.append(self.tvp)
        status = self.status
        cnt = self.counters

        state = Signal(TcpState)
        running = Signal()
        draining = Signal()
        m.d.comb += [running.eq(state == TcpState.RUNNING),
                     draining.eq(state == TcpState.DRAINING),
                     status.state.eq(state)]

        # ---- stage 1: the held command and its static check ------------------------------------
        m.submodules.check = check = CommandCheck(semaphores=S, dma_queues=nq,
                                                  hbm_addr_bits=self.hbm_addr_bits,
                                                  vector_unit=self.vector_unit)
        fault_in = check.status
        m.d.comb += check.command.eq(self.cmd.payload)
        cur = Signal(Command)
        cur_valid = Signal()
        cur_fault = Signal(ERROR_CODE_BITS)
        retire = Signal()
        cmd_error = Signal()
        op = cur.header.opcode
        is_op = {o: Signal(name=f"is_{o.name.lower()}") for o in Opcode}
        for o, sig in is_op.items():
            m.d.comb += sig.eq(op == o)
        is_engine = Signal()
        m.d.comb += [
            is_engine.eq(is_op[Opcode.DMA] | is_op[Opcode.TILE_OP] | is_op[Opcode.TVP]),
            self.cmd.ready.eq(running & ~self.restart
                              & (~cur_valid | (retire & ~is_op[Opcode.HALT]))),
        ]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [cur.eq(self.cmd.payload), cur_fault.eq(fault_in), cur_valid.eq(1)]
        with m.Elif(retire | cmd_error):
            m.d.sync += cur_valid.eq(0)

        # ---- incomplete commands (one queue per target) and output registers -------------------
        sem_entry = data.StructLayout({"signal": 1, "sem": sbits})
        pend = []
        for k in range(targets):
            fifo = SyncFIFO(width=sem_entry.size, depth=self.outstanding)
            m.submodules[f"pending{k}"] = fifo
            pend.append(fifo)
        room = [Signal(name=f"room{k}") for k in range(targets)]
        issue = [Signal(name=f"issue{k}") for k in range(targets)]
        full = [Signal(name=f"full{k}") for k in range(targets)]
        for k in range(targets):
            # an empty slot only (not one emptying now): the engine's `ready`, which can come
            # from deep command checks, does not reach the issue logic (docs/tcp.md, "Latencies")
            m.d.comb += [room[k].eq(~full[k] & pend[k].w_rdy),
                         outs[k].valid.eq(full[k]),
                         pend[k].w_en.eq(issue[k]),
                         pend[k].w_data.eq(Cat(cur.header.signal, cur.header.sem[:sbits]))]
            with m.If(issue[k]):
                m.d.sync += full[k].eq(1)
            with m.Elif(outs[k].ready):
                m.d.sync += full[k].eq(0)
        desc = cur.body.dma.desc
        for q in range(nq):
            with m.If(issue[q]):
                m.d.sync += [self.dma[q].payload[name].eq(desc[name])
                             for name, _ in self.desc_layout]
        with m.If(issue[TTU]):
            m.d.sync += self.ttu.payload.eq(cur.body.tile_op)
        if self.vector_unit:
            with m.If(issue[TVP]):
                m.d.sync += self.tvp.payload.eq(cur.body.tvp)

        # ---- stage 2: retire or block ----------------------------------------------------------
        active = Signal()
        m.d.comb += active.eq(running & cur_valid)
        sems = Signal(data.ArrayLayout(SEM_BITS, S))
        m.d.comb += self.semaphores.eq(sems)
        idx = cur.body.semaphore.sem
        count = cur.body.semaphore.count
        sem_sel = Signal(SEM_BITS)
        for i in range(S):
            with m.If(idx == i):
                m.d.comb += sem_sel.eq(sems[i])
        dma_queue = Signal(_bits_for(nq))
        m.d.comb += dma_queue.eq(cur.body.dma.queue)
        dma_room = Signal()
        for q in range(nq):
            with m.If(dma_queue == q):
                m.d.comb += dma_room.eq(room[q])
        can_issue = Signal()
        m.d.comb += can_issue.eq((is_op[Opcode.DMA] & dma_room)
                                 | (is_op[Opcode.TILE_OP] & room[TTU])
                                 | (is_op[Opcode.TVP] & room[TVP] if self.vector_unit else 0))
        wait_ok = Signal()
        m.d.comb += wait_ok.eq(1 if "drop_wait" in self.faults else sem_sel >= count)
        fence_ok = Signal()
        fenced = [k for k in range(targets) if not (k == TVP and "fence_ignores_tvp"
                                                     in self.faults)]
        m.d.comb += fence_ok.eq(~Cat(*(pend[k].r_rdy for k in fenced)).any())
        irq_pending = Signal()
        sig_over = Signal()
        m.d.comb += sig_over.eq(sem_sel + count > SEM_MAX)
        fault = Signal(ERROR_CODE_BITS)
        with m.If(cur_fault != ErrorCode.OK):
            m.d.comb += fault.eq(cur_fault)
        with m.Elif(is_op[Opcode.SIGNAL] & sig_over):
            m.d.comb += fault.eq(ErrorCode.SEMAPHORE_OVERFLOW)
        ready = Signal()
        with m.If(is_engine):
            m.d.comb += ready.eq(can_issue)
        with m.Elif(is_op[Opcode.WAIT]):
            m.d.comb += ready.eq(wait_ok)
        with m.Elif(is_op[Opcode.FENCE]):
            m.d.comb += ready.eq(fence_ok)
        with m.Elif(is_op[Opcode.INTERRUPT]):
            m.d.comb += ready.eq(~irq_pending)
        with m.Else():
            m.d.comb += ready.eq(1)
        ok = Signal()
        m.d.comb += [ok.eq(active & (fault == ErrorCode.OK)),
                     cmd_error.eq(active & (fault != ErrorCode.OK)),
                     retire.eq(ok & ready)]
        for q in range(nq):
            m.d.comb += issue[q].eq(retire & is_op[Opcode.DMA] & (dma_queue == q))
        m.d.comb += issue[TTU].eq(retire & is_op[Opcode.TILE_OP])
        if self.vector_unit:
            m.d.comb += issue[TVP].eq(retire & is_op[Opcode.TVP])

        # ---- completion events -----------------------------------------------------------------
        sources = [(self.dma_event, range(nq)), (self.ttu_event, [TTU])]
        if self.vector_unit:
            sources.append((self.tvp_event, [TVP]))
        # Events are registered on the way in (docs/tcp.md, "Latencies"): an engine's event logic
        # and the semaphore / status update behind it are then two paths, not one.
        events = []
        for e, (ev, ks) in enumerate(sources):
            valid = Signal(name=f"ev{e}_valid")
            payload = Signal(ev.payload.shape(), name=f"ev{e}_payload")
            m.d.comb += ev.ready.eq(1)
            m.d.sync += [valid.eq(ev.valid), payload.eq(ev.payload)]
            events.append((valid, payload, ks))
        ev_q = events[0][1].queue
        hits, signals, fails, codes = [], [], [], []
        unexpected = []
        for e, (valid, payload, ks) in enumerate(events):
            present = Signal(name=f"ev{e}_present")
            head = Signal(sem_entry, name=f"ev{e}_head")
            for k in ks:
                with m.If((ev_q == k) if e == 0 else Const(1, 1)):
                    m.d.comb += [present.eq(pend[k].r_rdy), head.eq(pend[k].r_data),
                                 pend[k].r_en.eq(valid)]
            hit, sig, fail = (Signal(name=f"ev{e}_{n}") for n in ("hit", "signal", "fail"))
            m.d.comb += [hit.eq(valid & present),
                         sig.eq(hit & head.signal & ~draining),
                         fail.eq(hit & (payload.status != 0) & ~draining)]
            hits.append(hit)
            signals.append((sig, head.sem))
            fails.append(fail)
            codes.append(payload.status)
            unexpected.append(valid & ~present)

        # ---- semaphores ------------------------------------------------------------------------
        add_sig = Signal()
        sub_wait = Signal()
        m.d.comb += [add_sig.eq(retire & is_op[Opcode.SIGNAL]),
                     sub_wait.eq(retire & is_op[Opcode.WAIT] & ("drop_wait" not in self.faults))]
        overflow = Signal()
        over = []
        for i in range(S):
            hit_i = [sig & (sem == i) for sig, sem in signals]
            inc = Signal(2, name=f"sem{i}_inc")
            if "event_collision" in self.faults:
                m.d.comb += inc.eq(Cat(*hit_i).any())
            else:
                m.d.comb += inc.eq(sum(hit_i))
            total = Signal(SEM_BITS + 2, name=f"sem{i}_next")
            m.d.comb += total.eq(sems[i] + inc + Mux(add_sig & (idx == i), count, 0)
                                 - Mux(sub_wait & (idx == i), count, 0))
            over_i = Signal(name=f"sem{i}_over")
            m.d.comb += over_i.eq(total > SEM_MAX)
            over.append(over_i)
            if "sem_wraps" in self.faults:
                m.d.sync += sems[i].eq(total[:SEM_BITS])
            else:
                m.d.sync += sems[i].eq(Mux(over_i, SEM_MAX, total))
        m.d.comb += overflow.eq(Cat(*over).any())

        # ---- state, errors, interrupt ----------------------------------------------------------
        position = status.position
        with m.If(retire):
            m.d.sync += position.eq(position + 1)
        with m.If(retire & is_op[Opcode.HALT]):
            m.d.sync += state.eq(TcpState.HALTED)
        with m.If(retire & is_op[Opcode.INTERRUPT]):
            m.d.sync += [irq_pending.eq(1), self.irq_code.eq(cur.body.interrupt.code)]
        with m.Elif(self.irq_ack):
            m.d.sync += irq_pending.eq(0)
        m.d.comb += self.irq.eq(irq_pending)

        any_fail = Signal()
        first_code = Signal(ERROR_CODE_BITS)
        first_source = Signal(ErrorSource)
        m.d.comb += any_fail.eq(Cat(*fails).any())
        with m.If(fails[0]):
            m.d.comb += [first_code.eq(codes[0]), first_source.eq(ErrorSource.DMA)]
        with m.Elif(fails[1]):
            m.d.comb += [first_code.eq(codes[1]), first_source.eq(ErrorSource.TTU)]
        if self.vector_unit:
            with m.Elif(fails[2]):
                m.d.comb += [first_code.eq(codes[2]), first_source.eq(ErrorSource.TVP)]
        with m.If(any_fail):
            m.d.sync += status.engine_errors.eq(status.engine_errors + sum(fails))
            with m.If(status.engine_error == 0):
                m.d.sync += status.engine_error.eq(first_code)
        stop = Signal()
        stop_code = Signal(ERROR_CODE_BITS)
        stop_source = Signal(ErrorSource)
        m.d.comb += stop.eq(cmd_error | any_fail | (overflow & ~draining))
        with m.If(cmd_error):
            m.d.comb += [stop_code.eq(fault), stop_source.eq(ErrorSource.COMMAND)]
        with m.Elif(any_fail):
            m.d.comb += [stop_code.eq(first_code), stop_source.eq(first_source)]
        with m.Else():
            m.d.comb += [stop_code.eq(ErrorCode.SEMAPHORE_OVERFLOW),
                         stop_source.eq(ErrorSource.COMPLETION)]
        with m.If(stop & ~draining):
            m.d.sync += state.eq(TcpState.ERROR)
            with m.If(status.error == ErrorCode.OK):
                m.d.sync += [status.error.eq(stop_code), status.source.eq(stop_source),
                             status.error_position.eq(position)]

        outstanding = Signal()
        m.d.comb += [outstanding.eq(Cat(*(p.r_rdy for p in pend)).any()),
                     status.outstanding.eq(outstanding)]
        with m.If(draining & ~outstanding):
            m.d.sync += state.eq(TcpState.RUNNING)
        with m.If(self.restart):
            m.d.sync += [state.eq(TcpState.DRAINING), cur_valid.eq(0), irq_pending.eq(0),
                         sems.eq(0), position.eq(0), status.error.eq(0),
                         status.source.eq(ErrorSource.NONE), status.error_position.eq(0),
                         status.engine_error.eq(0), status.engine_errors.eq(0)]

        # ---- counters --------------------------------------------------------------------------
        blocked = Signal()
        m.d.comb += blocked.eq(ok & ~ready)
        increments = {
            "issued_dma": Cat(*issue[:nq]).any(),
            "issued_ttu": issue[TTU],
            "issued_tvp": issue[TVP] if self.vector_unit else 0,
            "retired": retire,
            "wait_cycles": blocked & is_op[Opcode.WAIT],
            "fence_cycles": blocked & is_op[Opcode.FENCE],
            "output_stall_cycles": blocked & (is_engine | is_op[Opcode.INTERRUPT]),
            "input_stall_cycles": running & ~cur_valid,
            "busy_cycles": active,
            "stopped_cycles": ~running,
        }
        for name, inc in increments.items():
            if isinstance(inc, int):
                continue
            with m.If(inc):
                m.d.sync += cnt[name].eq(cnt[name] + 1)
        m.d.sync += cnt.unexpected_events.eq(cnt.unexpected_events + sum(unexpected))
        with m.If(self.counters_clear):
            m.d.sync += self.counters.eq(0)
        return m
