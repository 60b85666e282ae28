"""Generic ``lib.stream`` handshake proofs for any ``wiring.Component`` (issue 8).

:func:`stream_ports` walks a component's signature, recursing into sub-signatures (e.g. the
``req`` / ``rsp`` streams of a :class:`~openmaia.bus.memory_port.MemoryPortSignature`, and
arrays of streams), and returns every ``stream.Signature`` member with the block's role on it:
*producer* (the block drives ``valid`` / ``payload``) or *consumer*.

:class:`StreamRules` wraps one block for :func:`openmaia.harness.formal.prove`. Every ``In``
port of the block (at any depth) becomes a free top-level input of the same name (path joined by
``__``), unless ``ties`` gives it a value. On each stream:

* consumer (``In`` stream of the block): ``valid`` / ``payload`` are free, and the producer rules
  are ASSUMED: after a cycle with ``valid & ~ready``, ``valid`` is still high and ``payload``
  unchanged (Amaranth's stream rules, docs of ``amaranth.lib.stream``);
* producer (``Out`` stream): ``ready`` is free, and the same rules are ASSERTED of the block.

Reset is assumed low (the rules do not hold across a reset). Optional :class:`Conserve` terms add
an ins-minus-outs counter between two streams: it never goes below zero (no output without an
input, nothing duplicated), never above ``capacity``, and, with ``held``, equals what the block
holds (nothing dropped; also an induction invariant).

:class:`ValidReadyMiter` is the two-copy miter: both copies get the same free inputs except the
``ready`` of the producer stream under test (one free input per copy). While every earlier
cycle gave both copies the same ``ready``, the ``valid`` of the stream under test (and, with
``all_valids``, of every producer stream of the block) must agree in both copies: ``valid`` has
no combinational path from that ``ready``. With ``state_equal`` the miter also asserts that every
register of the two copies (every signal a clocked statement assigns, paired by fragment path,
name and order) is equal while the readies were equal: that makes the property k-inductive for
blocks without memories (a ``lib.memory`` array's contents are not compared, see
:attr:`ValidReadyMiter.has_memory`), so ``mode="prove"`` can close; else run it bounded.
"""

from collections.abc import Callable
from dataclasses import dataclass

from amaranth.hdl import (
    Assert,
    Assume,
    Cat,
    Const,
    Fragment,
    Module,
    ResetSignal,
    Signal,
    Value,
)
from amaranth.hdl._mem import MemoryInstance
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import Flow, In

__all__ = [
    "Conserve",
    "FlatChannel",
    "StreamPort",
    "StreamRules",
    "ValidReadyMiter",
    "assume_one_response_per_read",
    "find_register",
    "free_inputs",
    "registers_of",
    "requester_pairs",
    "stream_ports",
    "tie_low",
]


def _join(path) -> str:
    return "__".join(str(p) for p in path)


@dataclass(frozen=True)
class StreamPort:
    """One ``lib.stream`` member of a block: its ``path`` in the signature (names and array
    indices), whether the block is its ``producer``, and the interface object (``valid``,
    ``ready``, ``payload``)."""
    path: tuple
    producer: bool
    interface: object

    @property
    def name(self) -> str:
        return _join(self.path)

    @property
    def valid(self):
        return self.interface.valid

    @property
    def ready(self):
        return self.interface.ready

    @property
    def payload(self) -> Value:
        return Value.cast(self.interface.payload)


def _unflipped(signature):
    return signature.flip() if isinstance(signature, wiring.FlippedSignature) else signature


class FlatChannel:
    """A valid / ready handshake spelled as flat members of a signature (the AMBA channels of
    :class:`~openmaia.bus.axi.Axi4Signature` / ``AxiLiteSignature``: ``<x>valid``, ``<x>ready``
    and the payload members ``<x>...``), with the attributes of a stream interface."""

    def __init__(self, valid, ready, payload):
        self.valid, self.ready, self.payload = valid, ready, payload

    def __repr__(self):
        return f"FlatChannel(valid={self.valid!r}, ready={self.ready!r})"


def _flat_channels(obj, signature, path, found):
    names = [name for name, member in signature.members.items()
             if member.is_port and not member.dimensions]
    for name in names:
        if not name.endswith("valid"):
            continue
        prefix = name[:-len("valid")]
        if not prefix or f"{prefix}ready" not in names:
            continue
        fields = [n for n in names if n.startswith(prefix)
                  and n not in (name, f"{prefix}ready")
                  and not any(n.startswith(other) and len(other) > len(prefix)
                              for other in (p[:-len("valid")] for p in names
                                            if p.endswith("valid")))]
        payload = Cat(*(getattr(obj, n) for n in fields))
        found.append(((*path, prefix), FlatChannel(getattr(obj, name),
                                                   getattr(obj, f"{prefix}ready"), payload),
                      (*path, f"{prefix}ready")))


def _walk(obj, signature, path, found, flat):
    if flat:
        _flat_channels(obj, signature, path, found)
    for name, member in signature.members.items():
        if not member.is_signature:
            continue
        values = [((), getattr(obj, name))]
        for size in member.dimensions:
            values = [(index + (i,), value[i]) for index, value in values for i in range(size)]
        sub = member.signature
        for index, value in values:
            if isinstance(_unflipped(sub), stream.Signature):
                full = (*path, name, *index)
                found.append((full, value, (*full, "ready")))
            else:
                _walk(value, sub, (*path, name, *index), found, flat)


def stream_ports(component: wiring.Component, *, flat_channels=False) -> list[StreamPort]:
    """Every ``stream.Signature`` member of ``component`` (at any depth), in signature order;
    with ``flat_channels``, also every flat valid / ready channel (:class:`FlatChannel`, e.g.
    the five AXI4 channels, path ending in the channel prefix such as ``("m_axi", "ar")``)."""
    flows = {path: member.flow
             for path, member, _ in component.signature.flatten(component)}
    found = []
    _walk(component, component.signature, (), found, flat_channels)
    return [StreamPort(path=path, producer=flows[ready_path] == Flow.In, interface=interface)
            for path, interface, ready_path in found]


def requester_pairs(ports) -> list[tuple]:
    """``(req, rsp)`` port pairs of every memory port (a ``req`` / ``rsp`` pair of streams, as in
    :class:`~openmaia.bus.memory_port.MemoryPortSignature`) on which the block is the
    requester (it produces ``req``)."""
    by_name = {port.name: port for port in ports}
    pairs = []
    for port in ports:
        if port.path[-1] == "req" and port.producer:
            rsp = by_name.get(_join((*port.path[:-1], "rsp")))
            if rsp is not None and not rsp.producer:
                pairs.append((port, rsp))
    return pairs


def assume_one_response_per_read(m: Module, req: StreamPort, rsp: StreamPort, *, bits=6):
    """The memory side's contract on a requester's port: a response comes only for a read
    accepted before it and not yet answered (one response per read, in order; writes get none).
    Adds the count of outstanding reads and the assumption."""
    outstanding = Signal(bits, name=f"{rsp.name}__outstanding")
    read = req.valid & req.ready & ~req.interface.payload.write
    answer = rsp.valid & rsp.ready
    m.d.sync += outstanding.eq(outstanding + read - answer)
    m.d.comb += [Assume(~rsp.valid | (outstanding != 0)),
                 Assume(~read | (outstanding != (1 << bits) - 1))]


def free_inputs(component: wiring.Component) -> list[tuple]:
    """``(path, signal)`` of every ``In`` port of ``component`` that is a signal (the
    ``ready`` of an ``always_ready`` stream is a constant and is left out)."""
    return [(path, value) for path, member, value in component.signature.flatten(component)
            if member.flow == Flow.In and isinstance(Value.cast(value), Signal)]


@dataclass(frozen=True)
class Conserve:
    """An ins-minus-outs counter between the transfers on stream ``ins`` and on stream ``outs``
    (paths as in :func:`stream_ports`), at most ``capacity`` (``None``: a block with no
    documented capacity; only "no output without an input" is asserted, and the counter is
    assumed to stay below 63). ``count_in`` / ``count_out`` (payload -> 1-bit value) select
    which transfers count (e.g. only reads); ``held``, when given, is the number of transfers
    the block holds (``held(m, rules) -> Value``, ``rules`` the
    :class:`StreamRules`: ``rules.dut``, ``rules.fragment``), asserted equal to the counter."""
    ins: tuple
    outs: tuple
    capacity: int | None
    count_in: Callable | None = None
    count_out: Callable | None = None
    held: Callable | None = None


class StreamRules(wiring.Component):
    """The stream rules on every stream of the block ``dut`` (see the module docstring).

    Parameters
    ----------
    dut : wiring.Component
        The block, in its reduced configuration.
    ties : dict, optional
        ``{path: value}`` for ``In`` ports that are not free (path as a tuple or its ``__``
        joined name); the contract the tie stands for belongs in the proof's ``config``.
    conserve : iterable of :class:`Conserve`
        Ins-minus-outs counters.
    memory_contract : bool
        On every memory port the block drives (``req`` / ``rsp``, :func:`requester_pairs`),
        assume the memory's contract: a response only for an outstanding read
        (:func:`assume_one_response_per_read`).
    invariants : iterable of callables
        ``invariant(m, rules) -> Value``: further assertions on the block's state (induction
        strengthening, e.g. that two internal counts agree); state them with the proof.
    flat_channels : bool
        Also apply the rules to flat valid / ready channels (AXI4 / AXI4-Lite, whose
        specification has the same rules: A3.2.1 of AMBA AXI4), see :func:`stream_ports`.
    environment : callable, optional
        ``environment(m, rules)`` adds further assumptions (``rules.port(path)``,
        ``rules.transfer(path)``, ``rules.fragment`` are available).
    withdraw : dict, optional
        ``{path: condition(m, rules) -> Value}``: a producer stream the block may withdraw by
        contract (e.g. a flush abandoning a queued command); its rule is not asserted in a cycle
        where the condition is high, and holds in every other cycle.
    """

    def __init__(self, dut: wiring.Component, *, ties=None, conserve=(), invariants=(),
                 environment=None, flat_channels=False, memory_contract=True, withdraw=None):
        if not isinstance(dut, wiring.Component):
            raise TypeError(f"dut must be a wiring.Component, not {dut!r}")
        self.dut = dut
        self.ports = stream_ports(dut, flat_channels=flat_channels)
        if not self.ports:
            raise ValueError(f"{type(dut).__name__} has no lib.stream member")
        ties = {(_join(k) if isinstance(k, tuple) else k): v for k, v in (ties or {}).items()}
        self.inputs = free_inputs(dut)
        names = {_join(path) for path, _ in self.inputs}
        unknown = set(ties) - names
        if unknown:
            raise ValueError(f"ties name no In port of the block: {sorted(unknown)}")
        self.ties = ties
        self.conserve = tuple(conserve)
        for term in self.conserve:
            self.port(term.ins), self.port(term.outs)
        self.invariants = tuple(invariants)
        self.memory_contract = memory_contract
        self.environment = environment
        self.withdraw = {(_join(k) if isinstance(k, tuple) else k): v
                         for k, v in (withdraw or {}).items()}
        for name in self.withdraw:
            self.port(name)
        self.fragment = None
        super().__init__({_join(path): In(len(Value.cast(value)))
                          for path, value in self.inputs if _join(path) not in ties})

    def port(self, path) -> StreamPort:
        """The :class:`StreamPort` at ``path`` (a tuple or its ``__`` joined name)."""
        name = _join(path) if isinstance(path, tuple) else path
        for port in self.ports:
            if port.name == name:
                return port
        raise LookupError(f"no stream {name!r} in {type(self.dut).__name__}; streams: "
                          f"{[p.name for p in self.ports]}")

    def transfer(self, path) -> Value:
        port = self.port(path)
        return port.valid & port.ready

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.fragment = Fragment.get(self.dut, platform)
        for path, value in self.inputs:
            name = _join(path)
            source = self.ties[name] if name in self.ties else getattr(self, name)
            m.d.comb += Value.cast(value).eq(source)
        m.d.comb += Assume(~ResetSignal())
        started = Signal()
        m.d.sync += started.eq(1)
        for port in self.ports:
            withdrawn = (self.withdraw[port.name](m, self) if port.name in self.withdraw
                         else Const(0))
            hold_rule(m, port.interface, Assert if port.producer else Assume, started=started,
                      name=port.name, exempt=withdrawn)
        for k, term in enumerate(self.conserve):
            ins, outs = self.port(term.ins), self.port(term.outs)
            take_in = ins.valid & ins.ready
            take_out = outs.valid & outs.ready
            if term.count_in is not None:
                take_in = take_in & term.count_in(ins.interface.payload)
            if term.count_out is not None:
                take_out = take_out & term.count_out(outs.interface.payload)
            limit = term.capacity if term.capacity is not None else 62
            count = in_minus_out(m, take_in, take_out, limit + 1, name=f"conserve{k}_count")
            m.d.comb += Assert(~take_out | take_in | (count != 0))
            if term.capacity is not None:
                m.d.comb += Assert(count <= term.capacity)
            else:
                m.d.comb += Assume(count <= limit)
            if term.held is not None:
                m.d.comb += Assert(count == term.held(m, self))
        if self.memory_contract:
            for req, rsp in requester_pairs(self.ports):
                assume_one_response_per_read(m, req, rsp)
        for invariant in self.invariants:
            m.d.comb += Assert(invariant(m, self))
        if self.environment is not None:
            self.environment(m, self)
        return m


def hold_rule(m: Module, interface, check, *, started: Value, name: str, exempt=Const(0)):
    """Amaranth's stream rule on ``interface`` (``valid``, ``ready``, ``payload``) as ``check``
    (``Assert`` for a stream under test, ``Assume`` for its environment): after a cycle with
    ``valid`` high and ``ready`` low, ``valid`` is still high and ``payload`` unchanged, except
    in a cycle with ``exempt`` high. ``started`` is low in the first cycle (no cycle before)."""
    payload = Value.cast(interface.payload)
    prev_valid = Signal(name=f"{name}__prev_valid")
    prev_ready = Signal(name=f"{name}__prev_ready")
    prev_payload = Signal(len(payload), name=f"{name}__prev_payload")
    m.d.sync += [prev_valid.eq(interface.valid), prev_ready.eq(interface.ready),
                 prev_payload.eq(payload)]
    with m.If(started & prev_valid & ~prev_ready & ~exempt):
        m.d.comb += [check(interface.valid), check(payload == prev_payload)]


def in_minus_out(m: Module, take_in: Value, take_out: Value, limit: int, *, name: str) -> Signal:
    """A counter of transfers ``take_in`` minus transfers ``take_out`` (0 to ``limit``)."""
    count = Signal(range(limit + 1), name=name)
    with m.If(take_in & ~take_out):
        m.d.sync += count.eq(count + 1)
    with m.Elif(take_out & ~take_in):
        m.d.sync += count.eq(count - 1)
    return count


def registers_of(fragment: Fragment, path=()) -> tuple[list, bool]:
    """``([(key, signal), ...], has_memory)``: every signal a clocked statement of ``fragment``
    or its subfragments assigns, keyed by (fragment path, name, occurrence), and whether a
    ``lib.memory`` array (state not among the signals) is inside."""
    found, has_memory, seen = [], False, set()
    for domain, statements in fragment.statements.items():
        if domain == "comb":
            continue
        for statement in statements:
            for signal in statement._lhs_signals():
                if id(signal) not in seen:
                    seen.add(id(signal))
                    found.append(signal)
    counts = {}
    keyed = []
    for signal in sorted(found, key=lambda s: (s.name, len(s))):
        occurrence = counts.get(signal.name, 0)
        counts[signal.name] = occurrence + 1
        keyed.append(((*path, signal.name, occurrence), signal))
    for k, (sub, name, _) in enumerate(fragment.subfragments):
        if isinstance(sub, MemoryInstance):
            has_memory = True
            continue
        sub_regs, sub_mem = registers_of(sub, (*path, name if name is not None else f"#{k}"))
        keyed += sub_regs
        has_memory |= sub_mem
    return keyed, has_memory


def memories_of(fragment: Fragment) -> list:
    """Every ``MemoryInstance`` inside ``fragment``, in elaboration order (the same order in two
    copies of one block)."""
    found = []
    for sub, _, _ in fragment.subfragments:
        if isinstance(sub, MemoryInstance):
            found.append(sub)
        else:
            found += memories_of(sub)
    return found


def assume_same_memory_reads(m: Module, frag_a: Fragment, frag_b: Fragment):
    """Assume what two copies of one block in the same state read from their memories is the
    same: a synchronous read port's data register equal, an asynchronous port's data equal
    whenever its address is (so a read address that differs, e.g. through a combinational path
    from an input, is still free to read different data)."""
    mems_a, mems_b = memories_of(frag_a), memories_of(frag_b)
    if len(mems_a) != len(mems_b):
        raise RuntimeError("the two copies elaborated to different memories")
    for mem_a, mem_b in zip(mems_a, mems_b):
        for port_a, port_b in zip(mem_a._read_ports, mem_b._read_ports):
            if port_a._domain == "comb":
                m.d.comb += Assume((port_a._addr != port_b._addr)
                                   | (port_a._data == port_b._data))
            else:
                m.d.comb += Assume(port_a._data == port_b._data)


def find_register(fragment: Fragment, name: str) -> Signal:
    """The one register called ``name`` in ``fragment`` or its subfragments (a proof's read-only
    view of a block's state, e.g. for :attr:`Conserve.held`); ``name`` may be qualified by the
    submodule path, ``"a_rsp_fifo/level"``."""
    *where, name = name.split("/")
    where = tuple(where)
    found = [signal for (*path, reg_name, _), signal in registers_of(fragment)[0]
             if reg_name == name and tuple(path[len(path) - len(where):]) == where]
    if len(found) != 1:
        raise LookupError(f"expected one register {'/'.join((*where, name))!r}, found "
                          f"{len(found)}")
    return found[0]


class ValidReadyMiter(wiring.Component):
    """Two copies of the block ``build()`` makes (see the module docstring).

    ``under_test``: the path of the producer stream whose ``ready`` differs between the copies,
    a list of such paths, or ``"all"``: the ``ready`` of every producer stream differs (one free
    input per stream and copy: ``<stream>__ready_a``, ``<stream>__ready_b``). ``all_valids``:
    assert the ``valid`` of every producer stream (not only those under test); ``valids``, a
    list of paths, names the asserted ones instead. ``state_equal``: ``"assert"``: also assert
    the copies' registers equal while the readies were (the induction strengthening);
    ``"assume"``: assume them equal in every cycle and assert the valids equal in every cycle
    (the check then covers every state, reachable or not, in one step: no next-state datapath
    to compare, so it finishes where ``"assert"`` does not; a ``lib.memory``'s contents are
    state too: the copies' reads are assumed equal, :func:`assume_same_memory_reads`);
    ``None``: no state comparison (bounded use only). ``ties``, ``flat_channels``,
    ``memory_contract``: as for :class:`StreamRules`, for both copies.
    """

    def __init__(self, build: Callable[[], wiring.Component], *, under_test="all",
                 all_valids=True, valids=None, state_equal="assert", ties=None,
                 flat_channels=False, memory_contract=True):
        if state_equal not in ("assert", "assume", None):
            raise ValueError(f"state_equal must be 'assert', 'assume' or None, not "
                             f"{state_equal!r}")
        self.a, self.b = build(), build()
        self.ports_a = stream_ports(self.a, flat_channels=flat_channels)
        self.ports_b = stream_ports(self.b, flat_channels=flat_channels)
        producers = [p.name for p in self.ports_a if p.producer]
        def names(paths):
            found = [_join(p) if isinstance(p, tuple) else p for p in paths]
            for name in found:
                if name not in producers:
                    raise ValueError(f"{name!r} is no producer stream of "
                                     f"{type(self.a).__name__}: {producers}")
            return found

        if under_test == "all":
            tested = producers
        else:
            tested = names(under_test if isinstance(under_test, list) else [under_test])
        if not tested:
            raise ValueError(f"{type(self.a).__name__} produces no stream")
        self.under_test = tuple(tested)
        self.valids = (tuple(names(valids)) if valids is not None
                       else tuple(producers) if all_valids else self.under_test)
        self.all_valids, self.state_equal = all_valids, state_equal
        self.memory_contract = memory_contract
        self.ties = {(_join(k) if isinstance(k, tuple) else k): v
                     for k, v in (ties or {}).items()}
        self.inputs_a, self.inputs_b = free_inputs(self.a), free_inputs(self.b)
        self.readies = {f"{name}__ready": name for name in tested}
        members = {_join(path): In(len(Value.cast(value))) for path, value in self.inputs_a
                   if _join(path) not in self.ties and _join(path) not in self.readies}
        for ready in self.readies:
            members.update({f"{ready}_a": In(1), f"{ready}_b": In(1)})
        self.has_memory = None
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        frag_a, frag_b = Fragment.get(self.a, platform), Fragment.get(self.b, platform)
        m.submodules.a, m.submodules.b = frag_a, frag_b
        for inputs, copy in ((self.inputs_a, "a"), (self.inputs_b, "b")):
            for path, value in inputs:
                name = _join(path)
                if name in self.readies:
                    source = getattr(self, f"{name}_{copy}")
                elif name in self.ties:
                    source = self.ties[name]
                else:
                    source = getattr(self, name)
                m.d.comb += Value.cast(value).eq(source)
        m.d.comb += Assume(~ResetSignal())
        if self.memory_contract:
            for ports in (self.ports_a, self.ports_b):
                for req, rsp in requester_pairs(ports):
                    assume_one_response_per_read(m, req, rsp)
        same = Cat(getattr(self, f"{r}_a") == getattr(self, f"{r}_b") for r in self.readies)
        same_so_far = Signal(init=1)
        m.d.sync += same_so_far.eq(same_so_far & same.all())
        with m.If(same_so_far | (self.state_equal == "assume")):
            for pa, pb in zip(self.ports_a, self.ports_b):
                if pa.producer and pa.name in self.valids:
                    m.d.comb += Assert(pa.valid == pb.valid)
        if self.state_equal is not None:
            regs_a, mem_a = registers_of(frag_a)
            regs_b, _ = registers_of(frag_b)
            self.has_memory = mem_a
            keys_a, keys_b = [k for k, _ in regs_a], [k for k, _ in regs_b]
            if keys_a != keys_b:
                raise RuntimeError("the two copies elaborated to different registers")
            if self.state_equal == "assert":
                with m.If(same_so_far):
                    m.d.comb += [Assert(sa == sb) for (_, sa), (_, sb) in zip(regs_a, regs_b)]
            else:
                m.d.comb += [Assume(sa == sb) for (_, sa), (_, sb) in zip(regs_a, regs_b)]
                assume_same_memory_reads(m, frag_a, frag_b)
        return m


def tie_low(*paths) -> dict:
    """``{path: Const(0, 1)}`` for the 1-bit ``In`` ports ``paths`` (e.g. ``counters_clear``)."""
    return {path: Const(0, 1) for path in paths}
