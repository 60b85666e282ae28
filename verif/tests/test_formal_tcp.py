"""Formal proofs of the Tile Control Processor's semaphores (issue 8): counters never wrap, and a
WAIT never passes before the signals it waits for.

The proofs use the table and runner of verif/tests/test_formal.py (:class:`Proof`, the same
tiering: ``test_formal_tcp`` is marked ``formal``, ``test_formal_tcp_quick`` runs the quick ones
in the default tier). Each property has a broken twin (a ``faults=`` variant of the TCP) that
must fail with a counterexample.

The properties are stated on the TCP's ports; the induction invariants also read a few of its
registers, found in its elaborated fragment by :func:`registers` / :func:`submodule` (they use
Amaranth's ``Fragment`` internals: ``statements``, ``_lhs_signals``, ``subfragments``,
``origins``).
"""

import pytest
from amaranth.hdl import (
    Assert,
    Assume,
    Cat,
    Fragment,
    Module,
    Mux,
    ResetSignal,
    Signal,
    signed,
)
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In
from openmaia.tile.isa import SEM_BITS, SEM_MAX, Command, Opcode, TvpEvent
from openmaia.tile.tcp import CommandCheck, TcpState, TileControlProcessor
from openmaia.tile.ttu_stream import TtuEvent
from test_formal import Proof, _run

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

#: The reduced configuration of every TCP proof.
TCP_PARAMS = {"semaphores": 2, "dma_queues": 1, "hbm_addr_bits": 8, "outstanding": 1,
              "vector_unit": False}
CONFIG = ("2 semaphores, 1 DMA queue, hbm_addr_bits 8, outstanding 1, no vector unit; "
          "commands, engine readies, events, restart and irq_ack free")
#: A bigger one: every engine, two DMA queues (``outstanding`` 1 for the model check).
WIDE_PARAMS = {"semaphores": 4, "dma_queues": 2, "hbm_addr_bits": 8, "outstanding": 4,
               "vector_unit": True}
WIDE = "4 semaphores, 2 DMA queues, hbm_addr_bits 8, outstanding 4, vector unit"


def registers(fragment: Fragment, *names: str):
    """The signals called ``names`` that ``fragment``'s own statements assign (not its
    submodules'), one each: a proof wrapper's read-only view of a block's registers, for
    induction invariants."""
    found = {}
    for statements in fragment.statements.values():
        for statement in statements:
            for signal in statement._lhs_signals():
                if signal.name in names:
                    found.setdefault(signal.name, {})[id(signal)] = signal
    for name in names:
        if len(found.get(name, ())) != 1:
            raise LookupError(f"expected one signal {name!r} in the fragment, found "
                              f"{len(found.get(name, ()))}")
    return [next(iter(found[name].values())) for name in names]


def submodule(fragment: Fragment, name: str):
    """The elaboratable (e.g. a ``SyncFIFO``, with its port signals) that ``fragment`` holds as
    submodule ``name``."""
    for sub, sub_name, _ in fragment.subfragments:
        if sub_name == name:
            return sub.origins[0]
    raise LookupError(f"no submodule {name!r} in the fragment")


class SemaphoreProof(wiring.Component):
    """The semaphore rules of a :class:`TileControlProcessor`, stated on its ports.

    Free inputs (the solver chooses them every cycle): the command stream (``cmd``; no rule
    assumed of the producer: the TCP's own register holds the command it took), the engines'
    ``ready``, the completion event streams (any events, also ones no command is waiting for:
    the contract counts and ignores those), ``restart`` and ``irq_ack``. Tied: reset low,
    ``counters_clear`` low (it only zeroes the counters, and the proof reads ``retired``).

    The wrapper keeps the command the TCP took (``cmd.valid & cmd.ready``), the TCP's ``cur``;
    a cycle retires it when ``counters.retired`` has grown by the next cycle. With ``E`` the
    number of completion events the TCP acts on in a cycle (its registered copies of the event
    inputs, one cycle late: docs/tcp.md, "Latencies") and, for semaphore ``i``, ``c`` the ``count`` of a
    WAIT (or SIGNAL) on ``i`` retiring in it, the next cycle's value must be:

    * ``check="no_wrap"``: 0 after a restart; else at least ``sem - c`` for a retiring WAIT and
      at least ``sem`` otherwise (never decreases, so never wraps from the maximum to a small
      value), and at most ``min(max, sem - c_wait + c_signal + E)`` (no jump up);
    * ``check="wait"``: a WAIT retires only in a cycle where its semaphore holds at least
      ``count``, and (no restart in that cycle) the semaphore is then exactly ``sem - count``
      plus at most ``E`` completions of that cycle (exactly ``sem - count`` without events);
    * ``check="model"``: the semaphore follows a reference model (the ghost count of signals
      minus passed waits): 0 after a restart, else ``min(max, sem + completions + c_signal -
      c_wait)``, where the completions are counted from the wrapper's own copy of each engine's
      incomplete commands (pushed when an engine command retires, popped by its engine's event,
      signalling its semaphore unless ``DRAINING``); the copy is asserted equal to the TCP's
      ``pending`` queues and never to overflow ``outstanding`` (1).

    Induction invariant (also asserted): while the TCP holds a command (its ``cur_valid``), its
    ``cur`` register equals the wrapper's copy and its ``cur_fault`` register the static check
    (:class:`CommandCheck`) of that copy (and, for ``"model"``, the incomplete-command
    queues equal the wrapper's); these are the only internals read.
    """

    def __init__(self, *, check: str, faults=(), params=TCP_PARAMS):
        if check not in ("no_wrap", "wait", "model"):
            raise ValueError(f"check must be 'no_wrap', 'wait' or 'model', not {check!r}")
        if check == "model" and params["outstanding"] != 1:
            raise ValueError("the model check mirrors one incomplete command per engine: "
                             "it needs outstanding=1")
        self.check = check
        self.dut = TileControlProcessor(**params, faults=faults)
        tvp = {"tvp_ready": In(1), "tvp_event": In(stream.Signature(TvpEvent))} \
            if self.dut.vector_unit else {}
        super().__init__({
            "cmd": In(stream.Signature(Command)),
            "dma_ready": In(self.dut.dma_queues),
            "dma_event": In(stream.Signature(self.dut.event_layout)),
            "ttu_ready": In(1),
            "ttu_event": In(stream.Signature(TtuEvent)),
            **tvp,
            "restart": In(1),
            "irq_ack": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        dut = self.dut
        m.submodules.dut = fragment = Fragment.get(dut, platform)
        cur, cur_valid, cur_fault = registers(fragment, "cur", "cur_valid", "cur_fault")
        wiring.connect(m, wiring.flipped(self.cmd), dut.cmd)
        wiring.connect(m, wiring.flipped(self.dma_event), dut.dma_event)
        wiring.connect(m, wiring.flipped(self.ttu_event), dut.ttu_event)
        event_streams = [dut.dma_event, dut.ttu_event]
        if dut.vector_unit:
            wiring.connect(m, wiring.flipped(self.tvp_event), dut.tvp_event)
            m.d.comb += dut.tvp.ready.eq(self.tvp_ready)
            event_streams.append(dut.tvp_event)
        m.d.comb += [dut.dma[q].ready.eq(self.dma_ready[q]) for q in range(dut.dma_queues)]
        m.d.comb += [dut.ttu.ready.eq(self.ttu_ready),
                     dut.restart.eq(self.restart), dut.irq_ack.eq(self.irq_ack),
                     dut.counters_clear.eq(0), Assume(~ResetSignal())]

        held = Signal(Command)
        with m.If(dut.cmd.valid & dut.cmd.ready):
            m.d.sync += held.eq(dut.cmd.payload)
        m.submodules.check = check = CommandCheck(semaphores=dut.n_semaphores,
                                                  dma_queues=dut.dma_queues,
                                                  hbm_addr_bits=dut.hbm_addr_bits,
                                                  vector_unit=dut.vector_unit)
        m.d.comb += [check.command.eq(held),
                     Assert(~cur_valid | ((held.as_value() == cur)
                                          & (cur_fault == check.status)))]
        # The TCP registers its event inputs (docs/tcp.md, "Latencies"): the rules are stated on
        # the registered events, which are as free as the inputs they copy.
        names = [f"ev{e}_valid" for e in range(len(event_streams))]
        ev_valid = registers(fragment, *names)
        dma_event = data.View(dut.dma_event.payload.shape(),
                              *registers(fragment, "ev0_payload"))
        events = Signal(2)
        m.d.comb += events.eq(sum(ev_valid))

        started = Signal()
        p_held = Signal(Command)
        p_retired = Signal.like(dut.counters.retired)
        p_restart = Signal()
        p_events = Signal(2)
        m.d.sync += [started.eq(1), p_held.eq(held), p_retired.eq(dut.counters.retired),
                     p_restart.eq(dut.restart), p_events.eq(events)]
        retired = Signal()
        m.d.comb += retired.eq(started & (dut.counters.retired != p_retired))
        op = p_held.header.opcode
        sem_index = p_held.body.semaphore.sem
        count = p_held.body.semaphore.count

        completions = [0] * self.dut.n_semaphores
        if self.check == "model":
            p_draining = Signal()
            m.d.sync += p_draining.eq(dut.status.state == TcpState.DRAINING)
            queue = p_held.body.dma.queue
            pops = [ev_valid[0] & (dma_event.queue == q)
                    for q in range(dut.dma_queues)] + [ev_valid[1]]
            pushes = [retired & (op == Opcode.DMA) & (queue == q)
                      for q in range(dut.dma_queues)] + [retired & (op == Opcode.TILE_OP)]
            if dut.vector_unit:
                pops.append(ev_valid[2])
                pushes.append(retired & (op == Opcode.TVP))
            for k, (pop, push) in enumerate(zip(pops, pushes)):
                fifo = submodule(fragment, f"pending{k}")
                sbits = len(fifo.r_data) - 1
                entry_in = Cat(p_held.header.signal, p_held.header.sem[:sbits])
                g_valid, now_valid = Signal(name=f"ghost{k}_valid"), Signal(name=f"now{k}_valid")
                g_entry, now_entry = Signal(sbits + 1, name=f"ghost{k}"), Signal(sbits + 1,
                                                                                 name=f"now{k}")
                p_pop, popped = Signal(name=f"p_pop{k}"), Signal(name=f"popped{k}")
                m.d.comb += [popped.eq(started & p_pop & g_valid),
                             now_valid.eq((g_valid & ~popped) | push),
                             now_entry.eq(Mux(push, entry_in, g_entry)),
                             Assert(~(push & g_valid & ~popped)),
                             Assert(now_valid == fifo.r_rdy),
                             Assert(~now_valid | (now_entry == fifo.r_data))]
                m.d.sync += [p_pop.eq(pop), g_valid.eq(now_valid), g_entry.eq(now_entry)]
                for i in range(self.dut.n_semaphores):
                    completions[i] = completions[i] + (popped & g_entry[0] & ~p_draining
                                                       & (g_entry[1:] == i))

        for i in range(self.dut.n_semaphores):
            sem = dut.semaphores[i]
            p_sem = Signal(SEM_BITS, name=f"p_sem{i}")
            m.d.sync += p_sem.eq(sem)
            waits, signals = Signal(name=f"wait{i}"), Signal(name=f"signal{i}")
            m.d.comb += [waits.eq(retired & (op == Opcode.WAIT) & (sem_index == i)),
                         signals.eq(retired & (op == Opcode.SIGNAL) & (sem_index == i))]
            lower = Signal(signed(SEM_BITS + 2), name=f"lower{i}")
            upper = Signal(signed(SEM_BITS + 3), name=f"upper{i}")
            m.d.comb += [lower.eq(p_sem - Mux(waits, count, 0)),
                         upper.eq(lower + Mux(signals, count, 0) + p_events)]
            if self.check == "no_wrap":
                with m.If(started & p_restart):
                    m.d.comb += Assert(sem == 0)
                with m.Elif(started):
                    m.d.comb += [Assert(sem >= lower),
                                 Assert(sem <= Mux(upper > SEM_MAX, SEM_MAX, upper))]
            elif self.check == "model":
                total = Signal(signed(SEM_BITS + 3), name=f"model{i}")
                m.d.comb += total.eq(p_sem + completions[i] + Mux(signals, count, 0)
                                     - Mux(waits, count, 0))
                with m.If(started & p_restart):
                    m.d.comb += Assert(sem == 0)
                with m.Elif(started):
                    m.d.comb += Assert(sem == Mux(total > SEM_MAX, SEM_MAX, total))
            else:
                with m.If(waits):
                    m.d.comb += Assert(p_sem >= count)
                    with m.If(~p_restart):
                        m.d.comb += [Assert(sem >= lower), Assert(sem <= lower + p_events)]
        return m


PROOFS = [
    Proof("tcp_sem_no_wrap", lambda: SemaphoreProof(check="no_wrap"), "prove", 1, True, True,
          CONFIG + ": a semaphore never decreases except by a WAIT's count or a restart"),
    Proof("tcp_sem_no_wrap_sem_wraps",
          lambda: SemaphoreProof(check="no_wrap", faults={"sem_wraps"}), "bmc", 5, False, True,
          "broken twin: TCP fault sem_wraps (a semaphore past its maximum wraps)"),
    Proof("tcp_wait_after_signal", lambda: SemaphoreProof(check="wait"), "prove", 1, True, True,
          CONFIG + ": a WAIT retires only when its semaphore holds its count, which it "
          "subtracts"),
    Proof("tcp_sem_model", lambda: SemaphoreProof(check="model"), "prove", 1, True, True,
          CONFIG + ": each semaphore equals the reference count of signals minus passed waits"),
    Proof("tcp_sem_model_event_collision",
          lambda: SemaphoreProof(check="model", faults={"event_collision"}), "bmc", 5, False,
          True, "broken twin: TCP fault event_collision (simultaneous completions add 1)"),
    Proof("tcp_sem_no_wrap_wide", lambda: SemaphoreProof(check="no_wrap", params=WIDE_PARAMS),
          "prove", 1, True, False, WIDE + ": no wrap"),
    Proof("tcp_wait_after_signal_wide",
          lambda: SemaphoreProof(check="wait", params=WIDE_PARAMS), "prove", 1, True, False,
          WIDE + ": WAIT only when the semaphore holds its count"),
    Proof("tcp_sem_model_wide",
          lambda: SemaphoreProof(check="model", params=WIDE_PARAMS | {"outstanding": 1}),
          "prove", 1, True, False, WIDE + " (outstanding 1): reference model"),
    Proof("tcp_wait_drop_wait", lambda: SemaphoreProof(check="wait", faults={"drop_wait"}),
          "bmc", 5, False, True, "broken twin: TCP fault drop_wait (WAIT retires at once)"),
]


@pytest.mark.formal
@pytest.mark.parametrize("proof", PROOFS, ids=[p.name for p in PROOFS])
def test_formal_tcp(proof):
    _run(proof)


QUICK = [p for p in PROOFS if p.quick]


@pytest.mark.parametrize("proof", QUICK, ids=[p.name for p in QUICK])
def test_formal_tcp_quick(proof):
    _run(proof)


def test_semaphore_proof_checks_its_arguments():
    with pytest.raises(ValueError, match="check"):
        SemaphoreProof(check="wrap")
    with pytest.raises(ValueError, match="outstanding=1"):
        SemaphoreProof(check="model", params=TCP_PARAMS | {"outstanding": 2})
    fragment = Fragment.get(TileControlProcessor(**TCP_PARAMS), None)
    assert len(registers(fragment, "cur_valid")[0]) == 1
    with pytest.raises(LookupError, match="nope"):
        registers(fragment, "nope")
    assert hasattr(submodule(fragment, "pending0"), "r_rdy")
    with pytest.raises(LookupError, match="nope"):
        submodule(fragment, "nope")
