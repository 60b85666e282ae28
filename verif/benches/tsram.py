"""cocotb bench of :class:`openmaia.tile.tsram.TileSram` (contract: docs/tsram.md).

Simulator-agnostic pieces (also used by the Amaranth-simulator tests and scripts/tsram_bench.py):
:class:`TsramModel` (the golden memory: a dict of bank words, updated when a request is accepted),
:func:`random_request` (the random traffic mix) and :func:`build_dut` (the :class:`TileSram` a
parameter dict describes).

cocotb tests:

* :func:`random_traffic`: every port sends ``count`` random requests (reads, full writes, partial
  writes, out-of-range addresses where a port's address range exceeds the SRAM), concentrated on a
  few hot rows so that ports collide, with random pauses on every ``req`` and bursts of pauses on
  every ``rsp``. One coroutine drives and samples all ports each cycle; the scoreboard checks
  every response against the model (in order per port: nothing lost, duplicated or reordered),
  that no response comes before ``latency`` cycles, that conflict waits are bounded (fairness: at
  most ``2 x ports - 1`` conflict cycles in a row), and the counters against what the
  bench saw. Coverage: port x kind (read, write, partial write,
  conflicted, held by response backpressure).
* :func:`fault_injection`: single flips at random codeword positions (data, check and parity bits)
  of random words are corrected on read and counted; double flips are reported UNCORRECTABLE,
  counted, raise ``err`` (code, port, address, lane) and ``err_sticky``; a partial write over a
  single flip scrubs the word; a partial write over a double flip leaves it bad.
* :func:`throughput`: fixed streams (``streams`` parameter), each presenting a request every
  cycle for ``cycles`` cycles with always-ready responses; the counters over the window are
  written for scripts/tsram_bench.py.

Parameters (:func:`openmaia.harness.bench_params`): ``banks``, ``bank_bytes``, ``depth``,
``ecc``, ``rsp_depth``, ``ports`` (``{name: [width, addr_width]}``), and per test ``count``,
``req_pause``, ``rsp_pause``, ``hot_rows`` (random_traffic); ``singles``, ``doubles``
(fault_injection); ``streams``, ``cycles`` (throughput).
"""

from __future__ import annotations

import itertools
import json
import random
from collections import deque

from openmaia.bus.memory_port import EccStatus, MemoryRequest, MemoryResponse
from openmaia.harness.streams import pack, random_pauses, unpack
from openmaia.errors import ErrorCode

__all__ = ["TsramModel", "random_request", "burst_pauses", "build_dut", "dut_params"]


def build_dut(params: dict, faults=frozenset()):
    """The :class:`TileSram` described by bench ``params``."""
    from openmaia.tile.tsram import PortSpec, TileSram
    return TileSram(banks=params["banks"], bank_bytes=params["bank_bytes"], depth=params["depth"],
                    ecc=params["ecc"], rsp_depth=params.get("rsp_depth", 4),
                    ports={n: PortSpec(w, a) for n, (w, a) in params["ports"].items()},
                    faults=faults)


def dut_params(dut) -> dict:
    """Bench parameters describing ``dut``."""
    return {"banks": dut.banks, "bank_bytes": dut.bank_bytes, "depth": dut.depth,
            "ecc": dut.ecc, "rsp_depth": dut.rsp_depth,
            "ports": {n: [s.width, s.addr_width] for n, s in dut.ports.items()}}


class TsramModel:
    """The golden TSRAM: bank words by global address, updated at acceptance; within one
    cycle the reads come before the writes (docs/tsram.md, "Timing, conflicts, fairness")."""

    def __init__(self, params: dict):
        self.banks, self.bank_bytes = params["banks"], params["bank_bytes"]
        self.words = params["banks"] * params["depth"]
        self.bits = 8 * self.bank_bytes
        self.ecc = params["ecc"]
        self.ports = {n: tuple(v) for n, v in params["ports"].items()}
        self.mem = {}

    def in_range(self, name, addr) -> bool:
        return (addr + 1) * self.ports[name][0] <= self.words

    def is_partial(self, name, write, strb) -> bool:
        """Does this write need a read-modify-write (ECC and a partly strobed bank word)?"""
        if not (self.ecc and write):
            return False
        full = (1 << self.bank_bytes) - 1
        width = self.ports[name][0]
        return any((strb >> (lane * self.bank_bytes) & full) not in (0, full)
                   for lane in range(width))

    def access(self, name, addr, write, data=0, strb=0):
        """Apply one accepted request; a read returns its expected ``(data, status)``."""
        width = self.ports[name][0]
        if not self.in_range(name, addr):
            return None if write else (0, EccStatus.UNCORRECTABLE)
        if not write:
            value = 0
            for lane in range(width):
                value |= self.mem.get(addr * width + lane, 0) << (lane * self.bits)
            return value, EccStatus.OK
        for lane in range(width):
            g = addr * width + lane
            old = self.mem.get(g, 0)
            new = data >> (lane * self.bits) & ((1 << self.bits) - 1)
            for i in range(self.bank_bytes):
                if strb >> (lane * self.bank_bytes + i) & 1:
                    old = old & ~(0xFF << 8 * i) | (new >> 8 * i & 0xFF) << 8 * i
            self.mem[g] = old
        return None


def random_request(rng: random.Random, model: TsramModel, name: str, hot_rows: int) -> dict:
    """A random request for port ``name``: hot rows mostly, anywhere (out of range too) else."""
    width, addr_width = model.ports[name]
    port_words = model.words // width
    per_row = model.banks // width
    roll = rng.random()
    if roll < 0.75:
        addr = rng.randrange(min(port_words, hot_rows * per_row))
    elif roll < 0.9 or addr_width == (port_words - 1).bit_length():
        addr = rng.randrange(port_words)
    else:
        addr = rng.randrange(port_words, 1 << addr_width)
    write = rng.random() < 0.5
    nbytes = width * model.bank_bytes
    kind = rng.random()
    if kind < 0.5:
        strb = (1 << nbytes) - 1
    elif kind < 0.9:
        strb = rng.getrandbits(nbytes)
    else:
        strb = 0
    return {"addr": addr, "write": int(write), "data": rng.getrandbits(8 * nbytes),
            "strb": strb if write else 0}


def burst_pauses(rng: random.Random, probability: float, longest: int = 12):
    """A pause generator idle about ``probability`` of the cycles, in bursts of 1..``longest``
    cycles (long enough for a port to fill its response buffer)."""
    if not 0 <= probability < 1:
        raise ValueError(f"pause probability must be in [0, 1), not {probability}")
    mean = (1 + longest) / 2
    start = probability / (mean * (1 - probability) + probability)
    while True:
        if rng.random() < start:
            for _ in range(rng.randint(1, longest)):
                yield True
        else:
            yield False


# ---------------------------------------------------------------------------------------------
# cocotb
# ---------------------------------------------------------------------------------------------

class _Port:
    """One port's driver and monitor state in the one-coroutine loop."""

    def __init__(self, dut, name, model, rng, req_pause, rsp_pause):
        self.name = name
        width, addr_width = model.ports[name]
        dw = width * model.bits
        self.req_layout = MemoryRequest.of(addr_width, dw)
        self.rsp_layout = MemoryResponse.of(dw)
        self.valid = getattr(dut, f"{name}__req__valid")
        self.ready = getattr(dut, f"{name}__req__ready")
        self.payload = getattr(dut, f"{name}__req__payload")
        self.rsp_valid = getattr(dut, f"{name}__rsp__valid")
        self.rsp_ready = getattr(dut, f"{name}__rsp__ready")
        self.rsp_payload = getattr(dut, f"{name}__rsp__payload")
        self.req_pauses = random_pauses(rng, req_pause) if req_pause else None
        self.rsp_pauses = burst_pauses(rng, rsp_pause) if rsp_pause else None
        self.queue = deque()
        self.expected = deque()  # (data, status, accept cycle)
        self.presenting = None
        self.wait = 0
        self.max_wait = 0
        self.stalled = 0
        self.sent = 0
        self.received = 0
        self.valid.value = 0
        self.rsp_ready.value = 0

    def drive(self):
        if self.presenting is None and self.queue and not (
                self.req_pauses and next(self.req_pauses)):
            self.presenting = self.queue.popleft()
            self.payload.value = pack(self.req_layout, self.presenting)
            self.wait = 0
        self.valid.value = int(self.presenting is not None)
        ready = not (self.rsp_pauses and next(self.rsp_pauses))
        self.rsp_ready.value = int(ready)
        return ready


async def _loop(dut, ports, model, *, cycles_limit, on_accept=None, on_response=None,
                errors=None):
    """Drive and monitor every port until all queues drain and all responses are in."""
    import cocotb
    from cocotb.triggers import FallingEdge, ReadOnly
    cycle = 0
    failures = errors if errors is not None else []
    while True:
        await FallingEdge(dut.clk)
        rsp_ready = {p.name: p.drive() for p in ports}
        await ReadOnly()
        cycle += 1
        # Accepted requests update the model reads first, then writes (a write deferred behind
        # a read of its bank in the same cycle lands after that read).
        for p in sorted(ports, key=lambda p: p.presenting is not None
                        and bool(p.presenting["write"])):
            if p.presenting is not None:
                if int(p.ready.value):
                    req = p.presenting
                    want = model.access(p.name, req["addr"], req["write"], req["data"],
                                        req["strb"])
                    if want is not None:
                        p.expected.append((*want, cycle))
                    if on_accept:
                        on_accept(p, req, cycle)
                    p.presenting = None
                    p.sent += 1
                    p.max_wait = max(p.max_wait, p.wait)
                else:
                    p.stalled += 1
                    p.wait += 1
            if rsp_ready[p.name] and int(p.rsp_valid.value):
                got = unpack(p.rsp_layout, p.rsp_payload.value.to_unsigned())
                p.received += 1
                if not p.expected:
                    failures.append(f"{p.name}: unexpected response {got} at cycle {cycle}")
                    continue
                data, status, at = p.expected.popleft()
                if cycle - at < model_latency():
                    failures.append(f"{p.name}: response after {cycle - at} cycles")
                if (got["data"], got["status"]) != (data, int(status)):
                    failures.append(f"{p.name}: response {len(p.expected)} at cycle {cycle}: "
                                    f"got data {got['data']:#x} status {got['status']}, "
                                    f"want {data:#x} status {int(status)}")
                if on_response:
                    on_response(p, got, cycle)
        if len(failures) > 10:
            break
        if all(not p.queue and p.presenting is None and not p.expected for p in ports):
            break
        if cycle >= cycles_limit:
            failures.append(f"timeout after {cycle} cycles: "
                            + ", ".join(f"{p.name} {len(p.queue)} queued, "
                                        f"{len(p.expected)} responses missing" for p in ports))
            break
    # Nothing more may come out.
    for _ in range(8):
        await FallingEdge(dut.clk)
        for p in ports:
            p.valid.value = 0
            p.rsp_ready.value = 1
        await ReadOnly()
        for p in ports:
            if int(p.rsp_valid.value):
                failures.append(f"{p.name}: extra response after the end")
    cocotb.log.info("loop: %d cycles", cycle)
    return cycle


def model_latency():
    from openmaia.tile.tsram import LATENCY
    return LATENCY


async def _reset(dut):
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, FallingEdge
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.inject__valid.value = 0
    dut.err_clear.value = 0
    await ClockCycles(dut.clk, 2)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


def _counters(dut, layout):
    return unpack(layout, dut.counters.value.to_unsigned())


def _setup():
    import cocotb
    from openmaia.harness import bench_params
    params = bench_params()
    rng = random.Random(cocotb.RANDOM_SEED)
    return params, rng, build_dut(params)


try:
    import cocotb
except ImportError:  # the model and generator work without cocotb
    cocotb = None

if cocotb is not None:

    @cocotb.test()
    async def random_traffic(dut):
        from openmaia.harness.coverage import Coverage, export
        params, rng, spec_dut = _setup()
        await _reset(dut)
        model = TsramModel(params)
        count = params.get("count", 300)
        hot_rows = params.get("hot_rows", 2)
        ports = [_Port(dut, n, model, rng, params.get("req_pause", 0.3),
                       params.get("rsp_pause", 0.3)) for n in model.ports]
        nports = len(ports)
        kinds = ["read", "write", "partial", "conflicted", "backpressured"]
        if not model.ecc:
            kinds.remove("partial")
        cov = Coverage("tsram", port=list(model.ports), kind=kinds)
        expect = {"rmw": 0, "out_of_range": 0}
        for p in ports:
            for _ in range(count):
                req = random_request(rng, model, p.name, hot_rows)
                p.queue.append(req)
                if not model.in_range(p.name, req["addr"]):
                    expect["out_of_range"] += 1
                elif model.is_partial(p.name, req["write"], req["strb"]):
                    expect["rmw"] += 1
        conflict_bound = 2 * nports - 1   # docs/tsram.md, "Timing, conflicts, fairness"
        failures = []

        def on_accept(p, req, cycle):
            kind = ("partial" if model.is_partial(p.name, req["write"], req["strb"])
                    else "write" if req["write"] else "read")
            cov.sample(port=p.name, kind=kind)

        # Conflict streaks: consecutive cycles a port's conflict counter rises (a request that
        # keeps losing arbitration); the rotating head bounds them by 2 x ports - 1.
        import cocotb as _cocotb
        from cocotb.triggers import FallingEdge, ReadOnly
        layout = spec_dut.counters_layout
        names = list(model.ports)
        run = [True]
        streak = {n: 0 for n in names}
        max_streak = {n: 0 for n in names}

        async def watch():
            last = _counters(dut, layout)
            while run[0]:
                await FallingEdge(dut.clk)
                await ReadOnly()
                now = _counters(dut, layout)
                for i, n in enumerate(names):
                    if now["conflict"][i] != last["conflict"][i]:
                        streak[n] += 1
                        max_streak[n] = max(max_streak[n], streak[n])
                        cov.sample(port=n, kind="conflicted")
                    else:
                        streak[n] = 0
                    if now["rsp_stall"][i] != last["rsp_stall"][i]:
                        cov.sample(port=n, kind="backpressured")
                last = now
        _cocotb.start_soon(watch())
        cycles = await _loop(dut, ports, model, cycles_limit=200 * count * nports,
                             on_accept=on_accept, errors=failures)
        run[0] = False
        got = _counters(dut, layout)
        for i, p in enumerate(ports):
            if p.sent != count:
                failures.append(f"{p.name}: {p.sent} of {count} requests accepted")
            if got["accepted"][i] != p.sent:
                failures.append(f"{p.name}: accepted counter {got['accepted'][i]}, bench "
                                f"{p.sent}")
            if got["conflict"][i] + got["rsp_stall"][i] != p.stalled:
                failures.append(f"{p.name}: conflict {got['conflict'][i]} + rsp_stall "
                                f"{got['rsp_stall'][i]} != {p.stalled} refused cycles")
            if max_streak[p.name] > conflict_bound:
                failures.append(f"{p.name}: waited {max_streak[p.name]} conflict cycles in a "
                                f"row (bound {conflict_bound})")
        for key, value in expect.items():
            if got[key] != value:
                failures.append(f"counter {key} = {got[key]}, want {value}")
        for key in ("corrected", "uncorrectable"):
            if got[key]:
                failures.append(f"counter {key} = {got[key]} without injected faults")
        if expect["out_of_range"] and not int(dut.err_sticky.value):
            failures.append("out-of-range requests did not set err_sticky")
        dut._log.info("random_traffic: %d cycles, counters %s, max conflict streaks %s",
                      cycles, got, max_streak)
        export()
        assert not failures, "\n".join(failures[:20])

    async def _transact(dut, model, name, req, err_layout, window=8):
        """Send one request on port ``name`` alone; return ``(responses, err events)`` seen
        from its presentation to ``window`` cycles after its acceptance."""
        from cocotb.triggers import FallingEdge, ReadOnly
        width, addr_width = model.ports[name]
        dw = width * model.bits
        valid = getattr(dut, f"{name}__req__valid")
        ready = getattr(dut, f"{name}__req__ready")
        rsp_valid = getattr(dut, f"{name}__rsp__valid")
        rsp_payload = getattr(dut, f"{name}__rsp__payload")
        await FallingEdge(dut.clk)
        getattr(dut, f"{name}__req__payload").value = pack(MemoryRequest.of(addr_width, dw), req)
        getattr(dut, f"{name}__rsp__ready").value = 1
        valid.value = 1
        responses, events, accepted, cycles = [], [], False, 0
        while cycles < window:
            await ReadOnly()
            if accepted:
                cycles += 1
            elif int(ready.value):
                accepted = True
            if int(rsp_valid.value):
                responses.append(unpack(MemoryResponse.of(dw), rsp_payload.value.to_unsigned()))
            e = unpack(err_layout, dut.err.value.to_unsigned())
            if e["valid"]:
                events.append(e)
            await FallingEdge(dut.clk)
            valid.value = int(not accepted)
        return responses, events

    @cocotb.test()
    async def fault_injection(dut):
        from cocotb.triggers import FallingEdge, ReadOnly
        params, rng, spec_dut = _setup()
        assert params["ecc"], "fault_injection needs ecc"
        await _reset(dut)
        model = TsramModel(params)
        names = list(model.ports)
        layout, err_layout = spec_dut.counters_layout, spec_dut.err_layout
        code_width, bits, nb = spec_dut.code_width, model.bits, model.bank_bytes
        failures = []
        for name in names:
            getattr(dut, f"{name}__req__valid").value = 0
            getattr(dut, f"{name}__rsp__ready").value = 1

        async def inject(g, mask):
            await FallingEdge(dut.clk)
            dut.inject__payload.value = pack(spec_dut.inject_layout, {"addr": g, "mask": mask})
            dut.inject__valid.value = 1
            while True:
                await ReadOnly()
                done = int(dut.inject__ready.value)
                await FallingEdge(dut.clk)
                if done:
                    break
            dut.inject__valid.value = 0

        async def write(name, addr, data, strb):
            model.access(name, addr, 1, data, strb)
            return await _transact(dut, model, name, {"addr": addr, "write": 1, "data": data,
                                                     "strb": strb}, err_layout)

        async def read(name, addr):
            return await _transact(dut, model, name, {"addr": addr, "write": 0, "data": 0,
                                                     "strb": 0}, err_layout)

        async def clear_sticky():
            await FallingEdge(dut.clk)
            dut.err_clear.value = 1
            await FallingEdge(dut.clk)
            dut.err_clear.value = 0
            await ReadOnly()
            if int(dut.err_sticky.value):
                failures.append("err_clear did not clear err_sticky")

        def expect_counts(where, corrected, uncorrectable):
            got = _counters(dut, layout)
            if (got["corrected"], got["uncorrectable"]) != (corrected, uncorrectable):
                failures.append(f"{where}: counters corrected {got['corrected']} uncorrectable "
                                f"{got['uncorrectable']}, want {corrected} {uncorrectable}")

        width_of = {n: model.ports[n][0] for n in names}
        reader = max(names, key=lambda n: width_of[n])     # a wide port reads
        writer = min(names, key=lambda n: width_of[n])     # a narrow port writes
        rw, ww = width_of[reader], width_of[writer]
        full_strb = (1 << (ww * nb)) - 1
        corrected = uncorrectable = 0
        singles, doubles = params.get("singles", 24), params.get("doubles", 12)
        positions = list(range(code_width))
        rng.shuffle(positions)
        for k in range(singles + doubles):
            raddr, lane = rng.randrange(model.words // rw), rng.randrange(rw)
            g = raddr * rw + lane
            word = rng.getrandbits(ww * bits)
            await write(writer, g // ww, word, full_strb)
            want = model.access(reader, raddr, 0)
            if k < singles:  # positions spread over data, check and parity bits
                await inject(g, 1 << positions[k % code_width])
                responses, events = await read(reader, raddr)
                corrected += 1
                if [(r["data"], r["status"]) for r in responses] != [
                        (want[0], EccStatus.CORRECTED)]:
                    failures.append(f"single flip {positions[k % code_width]} at word {g}: "
                                    f"responses {responses}, want data {want[0]:#x} CORRECTED")
                if events:
                    failures.append(f"single flip at word {g}: err events {events}")
            else:
                i, j = rng.sample(range(code_width), 2)
                await inject(g, 1 << i | 1 << j)
                responses, events = await read(reader, raddr)
                uncorrectable += 1
                if [r["status"] for r in responses] != [EccStatus.UNCORRECTABLE]:
                    failures.append(f"double flip {i},{j} at word {g}: responses {responses}")
                want_event = {"valid": 1, "code": int(ErrorCode.ECC_UNCORRECTABLE),
                              "port": names.index(reader), "addr": raddr, "lane": lane}
                if events != [want_event]:
                    failures.append(f"double flip at word {g}: err events {events}, want "
                                    f"[{want_event}]")
                if not int(dut.err_sticky.value):
                    failures.append("err_sticky not set by an uncorrectable read")
                await clear_sticky()
                # Reads do not repair: still uncorrectable.
                responses, _ = await read(reader, raddr)
                uncorrectable += 1
                if [r["status"] for r in responses] != [EccStatus.UNCORRECTABLE]:
                    failures.append(f"double flip at word {g}, second read: {responses}")
                await clear_sticky()
            await write(writer, g // ww, word, full_strb)  # repair: reads do not scrub
            expect_counts(f"after flip {k}", corrected, uncorrectable)
            if len(failures) > 10:
                break

        # A partial write over a single flip: corrected, merged, written back clean.
        g = rng.randrange(model.words)
        waddr, wlane = g // ww, g % ww
        await write(writer, waddr, rng.getrandbits(ww * bits), full_strb)
        await inject(g, 1 << rng.randrange(bits))
        _, events = await write(writer, waddr, rng.getrandbits(ww * bits), 1 << (wlane * nb))
        corrected += 1
        want = model.access(writer, waddr, 0)
        responses, _ = await read(writer, waddr)
        if [(r["data"], r["status"]) for r in responses] != [(want[0], EccStatus.OK)]:
            failures.append(f"partial write over a single flip: read {responses}, want "
                            f"{want[0]:#x} OK (scrubbed)")
        expect_counts("partial write over a single flip", corrected, uncorrectable)
        # A partial write over a double flip: reported, not written back, still bad.
        g2 = (g + model.banks) % model.words
        waddr2, wlane2 = g2 // ww, g2 % ww
        await write(writer, waddr2, rng.getrandbits(ww * bits), full_strb)
        await inject(g2, 0b11)
        _, events = await write(writer, waddr2, rng.getrandbits(ww * bits), 1 << (wlane2 * nb))
        uncorrectable += 1
        want_event = {"valid": 1, "code": int(ErrorCode.ECC_UNCORRECTABLE),
                      "port": names.index(writer), "addr": waddr2, "lane": wlane2}
        if events != [want_event]:
            failures.append(f"partial write over a double flip: err events {events}")
        responses, _ = await read(writer, waddr2)
        uncorrectable += 1
        if [r["status"] for r in responses] != [EccStatus.UNCORRECTABLE]:
            failures.append(f"word under a double flip after a partial write: {responses}")
        expect_counts("partial write over a double flip", corrected, uncorrectable)
        dut._log.info("fault_injection: %d corrected, %d uncorrectable", corrected,
                      uncorrectable)
        assert not failures, "\n".join(failures[:20])

    @cocotb.test()
    async def throughput(dut):
        """Every stream of ``streams`` presents a request every cycle for ``cycles`` cycles
        (responses always taken); the counters over that window are printed as a JSON line and
        written to ``tsram_figures.json`` for scripts/tsram_bench.py.

        ``streams``: ``{port: {"op": "read" | "write", "pattern": "seq" | "random",
        "start": port address}}``; ``seq`` walks the port's addresses from ``start``."""
        from cocotb.triggers import FallingEdge, ReadOnly
        params, rng, spec_dut = _setup()
        await _reset(dut)
        model = TsramModel(params)
        cycles = params.get("cycles", 2000)
        streams = params["streams"]
        ports = [_Port(dut, n, model, rng, 0, 0) for n in streams]
        nexts = {}
        for p in ports:
            s = streams[p.name]
            width = model.ports[p.name][0]
            span = model.words // width
            nbytes = width * model.bank_bytes
            seq = itertools.count(s.get("start", 0))   # bound now, not when first drawn
            nexts[p.name] = (lambda s=s, span=span, nbytes=nbytes, seq=seq: {
                "addr": (rng.randrange(span) if s.get("pattern") == "random" else next(seq)
                         % span),
                "write": int(s["op"] == "write"), "data": rng.getrandbits(8 * nbytes),
                "strb": (1 << nbytes) - 1})
            p.rsp_ready.value = 1
        start = _counters(dut, spec_dut.counters_layout)
        for _ in range(cycles):
            await FallingEdge(dut.clk)
            for p in ports:
                if p.presenting is None:
                    p.presenting = nexts[p.name]()
                    p.payload.value = pack(p.req_layout, p.presenting)
                p.valid.value = 1
            await ReadOnly()
            for p in ports:
                if int(p.ready.value):
                    p.presenting = None
        await FallingEdge(dut.clk)
        for p in ports:
            p.valid.value = 0
        await ReadOnly()
        end = _counters(dut, spec_dut.counters_layout)
        names = list(model.ports)
        delta = {k: ([b - a for a, b in zip(start[k], end[k])] if isinstance(end[k], list)
                     else end[k] - start[k]) for k in end}
        figures = {"cycles": cycles, "bank_bytes": model.bank_bytes, "banks": model.banks,
                   "counters": delta,
                   "ports": {n: {"width": model.ports[n][0],
                                 "accepted": delta["accepted"][names.index(n)],
                                 "conflict": delta["conflict"][names.index(n)],
                                 "rsp_stall": delta["rsp_stall"][names.index(n)],
                                 "deferred": delta["deferred"][names.index(n)]}
                             for n in streams}}
        print("TSRAM_FIGURES " + json.dumps(figures))
        with open("tsram_figures.json", "w") as f:
            json.dump(figures, f)
        assert delta["cycles"] == cycles + 1
