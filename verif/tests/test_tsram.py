"""Tile SRAM: Amaranth-simulator unit tests, cocotb + Verilator benches, lint.

Amaranth simulator (quick): random multi-port traffic against :class:`TsramModel` with random
gaps and backpressure (ECC and not), latency and full rate, conflicts counted, round-robin
fairness, read-modify-write of partial writes, out-of-range answers, response backpressure,
ECC fault injection; every deliberate fault of :data:`openmaia.tile.tsram.FAULTS` is shown to be
caught by one of these checks.

cocotb + Verilator (openmaia.benches.tsram): random traffic with stalls on every stream and a
scoreboard, fault injection. Default tier on a tiny ECC configuration; the slow tier adds the
``small`` preset, a configuration without ECC and the fault kills on the Verilog.
"""

import random

import pytest
from amaranth.sim import Simulator

from openmaia.benches.tsram import TsramModel, dut_params, random_request
from openmaia.bus.memory_port import EccStatus, MemoryPortSignature
from openmaia.config import get_config
from openmaia.errors import ErrorCode
from openmaia.harness import simulate
from openmaia.harness.elaborate import lint
from openmaia.tile.secded import SecdedCode
from openmaia.tile.tsram import FAULTS, LATENCY, PortSpec, TileSram

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

BENCH = "openmaia.benches.tsram"
#: A tiny configuration: 4 banks of 16 x 32-bit words, four ports of widths 1, 4, 2, 1; the
#: DMA port's address is wider than the SRAM (out-of-range requests possible).
TINY = dict(banks=4, bank_bytes=4, depth=16,
            ports={"dma": PortSpec(1, 8), "ttu_a": 4, "ttu_b": 2, "res": 1})


def tiny(ecc=True, faults=frozenset(), **kw):
    return TileSram(**(TINY | kw), ecc=ecc, faults=faults)


# ---------------------------------------------------------------------------------------------
# An Amaranth-simulator driver for every port at once
# ---------------------------------------------------------------------------------------------

class Traffic:
    """Drives queued requests into every port of a :class:`TileSram` in Amaranth's simulator,
    with random request gaps and response stalls; records accepts, responses, err events and
    the final counters. ``injects`` are ``(cycle, global address, mask)`` injections; a request
    with an ``at`` key is not presented before that cycle."""

    def __init__(self, dut, requests, *, gap=0.0, stall=0.0, seed=0, injects=(), cycles=None,
                 err_clear_at=()):
        self.dut, self.requests = dut, {n: list(r) for n, r in requests.items()}
        self.names = list(dut.ports)
        self.accepts = {n: [] for n in self.names}      # (cycle, request)
        self.responses = {n: [] for n in self.names}    # (cycle, data, status)
        self.events = []                                # (cycle, err fields)
        self.sticky = []
        self.waits = {n: [] for n in self.names}        # refused cycles of each request
        rng = random.Random(seed)
        total = sum(len(r) for r in self.requests.values())
        self.cycles = cycles or 200 + 30 * total
        sim = Simulator(dut)
        sim.add_clock(1e-6)

        async def bench(ctx):
            queues = {n: list(self.requests.get(n, [])) for n in self.names}
            presenting = {n: None for n in self.names}
            wait = {n: 0 for n in self.names}
            pending_inject = list(injects)
            for cycle in range(self.cycles):
                for n in self.names:
                    port = getattr(dut, n)
                    if (presenting[n] is None and queues[n] and rng.random() >= gap
                            and queues[n][0].get("at", 0) <= cycle):
                        presenting[n] = queues[n].pop(0)
                        req = presenting[n]
                        ctx.set(port.req.payload.addr, req["addr"])
                        ctx.set(port.req.payload.write, req["write"])
                        ctx.set(port.req.payload.data, req["data"])
                        ctx.set(port.req.payload.strb, req["strb"])
                    ctx.set(port.req.valid, presenting[n] is not None)
                    ctx.set(port.rsp.ready, rng.random() >= stall)
                inj = [i for i in pending_inject if i[0] <= cycle]
                if inj:
                    ctx.set(dut.inject.payload.as_value(),
                            inj[0][1] | inj[0][2] << len(dut.inject.payload.addr))
                ctx.set(dut.inject.valid, bool(inj))
                ctx.set(dut.err_clear, cycle in err_clear_at)
                probes = []
                for n in self.names:
                    port = getattr(dut, n)
                    probes += [port.req.ready, port.rsp.valid, port.rsp.ready,
                               port.rsp.payload.data, port.rsp.payload.status]
                probes += [dut.inject.ready, dut.err.as_value(), dut.err_sticky]
                values = (await ctx.tick().sample(*probes))[2:]
                for i, n in enumerate(self.names):
                    ready, rvalid, rready, rdata, rstatus = values[5 * i:5 * i + 5]
                    if presenting[n] is not None:
                        if ready:
                            self.accepts[n].append((cycle, presenting[n]))
                            self.waits[n].append(wait[n])
                            presenting[n], wait[n] = None, 0
                        else:
                            wait[n] += 1
                    if rvalid and rready:
                        self.responses[n].append((cycle, rdata, rstatus))
                inj_ready, err_bits, sticky = values[-3:]
                if inj and inj_ready:
                    pending_inject.remove(inj[0])
                err = dut.err_layout
                fields = {name: err_bits >> f.offset & ((1 << f.width) - 1) for name, f in err}
                if fields["valid"]:
                    self.events.append((cycle, fields))
                self.sticky.append(sticky)
            self.counters = {}
            for name, f in dut.counters_layout:
                view = getattr(dut.counters, name)
                if name in ("accepted", "conflict", "rsp_stall", "deferred"):
                    self.counters[name] = [ctx.get(view[i]) for i in range(len(self.names))]
                else:
                    self.counters[name] = ctx.get(view)

        sim.add_testbench(bench)
        sim.run()

    def check_against_model(self, params=None):
        """Replay the accepts (in cycle order, reads before writes within a cycle) on
        :class:`TsramModel`; compare responses.
        Returns a list of mismatches (empty when all is well)."""
        model = TsramModel(params or dut_params(self.dut))
        expected = {n: [] for n in self.names}
        order = sorted((c, r["write"], i, n, r) for i, n in enumerate(self.names)
                       for c, r in self.accepts[n])
        for cycle, _, _, n, r in order:
            want = model.access(n, r["addr"], r["write"], r["data"], r["strb"])
            if want is not None:
                expected[n].append((cycle, *want))
        bad = []
        for n in self.names:
            if len(self.accepts[n]) != len(self.requests.get(n, [])):
                bad.append(f"{n}: {len(self.accepts[n])} of {len(self.requests.get(n, []))} "
                           f"requests accepted")
            got, want = self.responses[n], expected[n]
            if len(got) != len(want):
                bad.append(f"{n}: {len(got)} responses, want {len(want)}")
            for k, ((gc, gd, gs), (wc, wd, ws)) in enumerate(zip(got, want)):
                if (gd, gs) != (wd, int(ws)):
                    bad.append(f"{n} response {k}: got {gd:#x}/{gs}, want {wd:#x}/{int(ws)}")
                if gc - wc < LATENCY:
                    bad.append(f"{n} response {k}: {gc - wc} cycles after its request")
        return bad


def _random_requests(dut, count, seed, hot_rows=2):
    rng = random.Random(seed)
    model = TsramModel(dut_params(dut))
    return {n: [random_request(rng, model, n, hot_rows) for _ in range(count)]
            for n in dut.ports}


def _read(addr):
    return {"addr": addr, "write": 0, "data": 0, "strb": 0}


def _write(addr, data, strb):
    return {"addr": addr, "write": 1, "data": data, "strb": strb}


# ---------------------------------------------------------------------------------------------
# Parameters and signature
# ---------------------------------------------------------------------------------------------

def test_signature_and_from_config():
    cfg = get_config("small")
    dut = TileSram.from_config(cfg, ports={"dma": 1, "ttu": 4})
    words = cfg.tsram_banks * cfg.tsram_bank_depth
    assert dut.signature.members["dma"].signature == MemoryPortSignature(
        addr_width=(words - 1).bit_length(), data_width=cfg.tsram_bank_bytes * 8).flip()
    assert dut.ttu.signature == MemoryPortSignature(
        addr_width=(words // 4 - 1).bit_length(), data_width=4 * cfg.tsram_bank_bytes * 8).flip()
    assert dut.code_width == SecdedCode(cfg.tsram_bank_bytes * 8).code_width
    assert dut.bytes_per_cycle == cfg.tsram_banks * cfg.tsram_bank_bytes
    assert dut.latency == LATENCY == 2


@pytest.mark.parametrize("kwargs", [
    dict(banks=3), dict(bank_bytes=2), dict(depth=1), dict(ports={}), dict(ports={"a": 8}),
    dict(ports={"a": 3}), dict(ports={"inject": 1}), dict(ports={"a b": 1}),
    dict(ports={"a": PortSpec(1, 3)}), dict(rsp_depth=0), dict(faults={"nope"}),
    dict(faults="no_correct"), dict(ecc=1), dict(single_port=1)])
def test_bad_parameters(kwargs):
    with pytest.raises((TypeError, ValueError)):
        TileSram(**(dict(TINY, ecc=True) | kwargs))


# ---------------------------------------------------------------------------------------------
# Traffic against the model
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("single_port", [False, True])
@pytest.mark.parametrize("ecc", [True, False])
def test_random_traffic(ecc, single_port, seed):
    """Reads return the writes (full, partial, zero strobes), in order, on every port (also
    with single-ported banks: one address for the read and the write)."""
    dut = tiny(ecc, single_port=single_port)
    t = Traffic(dut, _random_requests(dut, 40, seed), gap=0.3, stall=0.4, seed=seed)
    assert t.check_against_model() == []
    assert t.counters["accepted"] == [40] * 4
    assert t.counters["corrected"] == t.counters["uncorrectable"] == 0
    model = TsramModel(dut_params(dut))
    reqs = {n: [r for _, r in t.accepts[n]] for n in t.names}
    rmw = sum(model.in_range(n, r["addr"]) and model.is_partial(n, r["write"], r["strb"])
              for n in t.names for r in reqs[n])
    oor = sum(not model.in_range(n, r["addr"]) for n in t.names for r in reqs[n])
    assert t.counters["rmw"] == rmw and (rmw > 0) == ecc
    assert t.counters["out_of_range"] == oor
    refused = [sum(w) for w in t.waits.values()]
    assert [c + s for c, s in zip(t.counters["conflict"], t.counters["rsp_stall"])] == refused


def test_latency_and_full_rate():
    """A read's response is offered two cycles after acceptance; one port reads every cycle."""
    dut = tiny()
    t = Traffic(dut, {"ttu_a": [_read(a % 16) for a in range(20)]})
    accepts = [c for c, _ in t.accepts["ttu_a"]]
    assert accepts == list(range(accepts[0], accepts[0] + 20))
    assert [c for c, *_ in t.responses["ttu_a"]] == [c + LATENCY for c in accepts]
    assert t.counters["bank_cycles"] == 20 * 4


def test_conflicts_counted():
    """Two ports on one bank in the same cycle: one waits a cycle and it is counted; different
    banks: both go together."""
    dut = tiny()
    t = Traffic(dut, {"res": [_read(0)], "dma": [_read(4)]}, cycles=10)
    (c_res, _), (c_dma, _) = t.accepts["res"][0], t.accepts["dma"][0]
    assert abs(c_res - c_dma) == 1 and sorted(t.counters["conflict"]) == [0, 0, 0, 1]
    t = Traffic(dut, {"res": [_read(0)], "dma": [_read(5)], "ttu_b": [_read(1)]}, cycles=10)
    assert t.accepts["res"][0][0] == t.accepts["dma"][0][0] == t.accepts["ttu_b"][0][0]
    assert t.counters["conflict"] == [0, 0, 0, 0] and t.counters["bank_cycles"] == 4


def _fairness(dut, n=40):
    """Three ports hammer bank 0 with reads; returns (accepted counts after 3n cycles, the
    longest wait of any request)."""
    reqs = {name: [_read(0)] * n for name in ("dma", "ttu_a", "res")}
    t = Traffic(dut, reqs, cycles=n)
    return [len(t.accepts[name]) for name in ("dma", "ttu_a", "res")], max(
        max(w, default=0) for w in t.waits.values())


def test_round_robin_fairness():
    dut = tiny()
    counts, longest = _fairness(dut)
    assert max(counts) - min(counts) <= 1 and sum(counts) >= 38
    assert longest <= len(dut.ports) - 1


#: Longest run of conflict cycles of one request (docs/tsram.md): the head moves one port
#: nearer at least every second cycle it waits, and the head waits at most one cycle.
def wait_bound(nports):
    return 2 * nports - 1


def _hot_no_stall(dut, seed, count=60):
    """Random requests on one hot row, no gaps, responses always taken (every refusal is a
    conflict)."""
    t = Traffic(dut, _random_requests(dut, count, seed, hot_rows=1), seed=seed,
                cycles=6 * count)
    return t, max(max(w, default=0) for w in t.waits.values())


def test_bounded_wait(seed):
    """Hot-row random traffic with reads, full, partial (read-modify-write) and deferred writes:
    no request waits more than ``2 x ports - 1`` conflict cycles; the fixed-priority fault
    does."""
    for k in range(3):
        dut = tiny()
        t, longest = _hot_no_stall(dut, seed + k)
        assert t.check_against_model() == []
        assert sum(t.counters["rsp_stall"]) == 0
        assert t.counters["rmw"] > 0 and sum(t.counters["deferred"]) > 0
        assert longest <= wait_bound(len(dut.ports)), f"seed {seed + k}: waited {longest}"
    _, longest = _hot_no_stall(tiny(faults={"fixed_priority"}), seed)
    assert longest > wait_bound(len(dut.ports))    # the check catches a starving arbiter


def _streams(banks, widths, staggered, length):
    """Sequential streams of ``length`` requests each, one per port (writes on the 1-word
    ports, reads on the others), in separate quarters of a ``banks`` x 16-row TSRAM."""
    words, bank = banks * 16, 0
    reqs = {}
    for k, (name, w) in enumerate(widths.items()):
        start = k * (words // 4) // w
        if staggered:
            start, bank = start + bank // w, bank + w
        span = words // w
        reqs[name] = [(_write((start + i) % span, i, (1 << 4 * w) - 1) if w == 1
                       else _read((start + i) % span)) for i in range(length)]
    return reqs


@pytest.mark.parametrize("banks,widths", [
    (8, {"dma": 1, "ttu_a": 2, "ttu_b": 2, "ttu_c": 1}),
    (16, {"dma": 1, "ttu_a": 4, "ttu_b": 4, "ttu_c": 1})])
@pytest.mark.parametrize("staggered", [True, False])
def test_mixed_width_streams_full_rate(banks, widths, staggered, load_script):
    """Sequential operand reads (wide) next to DMA and result writes (1 word) with demand below
    the banks: after at most a few cycles of settling every port is served every cycle (the
    narrow writes pass the wide reads by deferral)."""
    dut = TileSram(banks=banks, bank_bytes=4, depth=16, ports=widths)
    n = 64
    t = Traffic(dut, _streams(banks, widths, staggered, n), cycles=n + 10)
    assert t.check_against_model() == []
    for name in widths:
        cycles = [c for c, _ in t.accepts[name]]
        assert len(cycles) == n and cycles[-1] <= n + 3, (name, cycles[-1])
    assert sum(t.counters["conflict"]) <= 2 * len(widths) and sum(t.counters["deferred"]) > 0
    # scripts/tsram_arb_model.py (the arbitration model used for exploring) agrees per port.
    model = load_script("tsram_arb_model")
    ops = {name: "write" if w == 1 else "read" for name, w in widths.items()}
    acc, *_ = model.simulate(banks, 16, {n: (w, ops[n]) for n, w in widths.items()},
                             "stream" if staggered else "in_phase", cycles=n)
    assert acc == {name: sum(c < n for c, _ in t.accepts[name]) for name in widths}


def test_fixed_priority_fault_caught():
    counts, longest = _fairness(tiny(faults={"fixed_priority"}))
    assert min(counts) == 0 or max(counts) - min(counts) > 1


def _write_at(at, addr, data, strb):
    return _write(addr, data, strb) | {"at": at}


def _read_at(at, addr):
    return _read(addr) | {"at": at}


@pytest.mark.parametrize("single_port", [False, True])
def test_deferred_write(single_port):
    """A full write whose bank a read takes is accepted anyway and lands the next cycle: the
    read of that cycle sees the old word, a read the next cycle waits one cycle (the bank is
    busy with the landing write) and sees the new one. Not deferred: behind a write of the same
    cycle, or a partial write (read-modify-write). Single-ported banks: the same cycles."""
    dut = tiny(single_port=single_port)
    a, b = 0x11111111, 0x22222222
    reqs = {"dma": [_write_at(0, 1, a, 0xF), _read_at(4, 1)],
            "ttu_a": [_read_at(3, 0), _read_at(12, 0), _read_at(16, 0)],
            "ttu_b": [_write_at(8, 0, 0x3333333344444444, 0xFF)],
            "res": [_write_at(3, 1, b, 0xF), _write_at(8, 1, 0x55, 0xF),
                    _write_at(12, 3, 0x66, 0xF), _write_at(16, 2, 0x77, 0b0011)]}
    t = Traffic(dut, reqs, cycles=24)
    assert t.check_against_model() == []
    assert [c for c, _ in t.accepts["res"]] == [3, 9, 12, 17]
    assert [c for c, _ in t.accepts["dma"]] == [0, 5]
    assert t.responses["ttu_a"][0][1] >> 32 & 0xFFFFFFFF == a
    assert t.responses["dma"][0][1] == b
    # res head after cycle 8 wins cycle 12 outright (ttu_a waits); ttu_a head at 16.
    assert [c for c, _ in t.accepts["ttu_a"]] == [3, 13, 16]
    assert t.counters["deferred"] == [0, 0, 0, 1]
    assert t.counters["conflict"] == [1, 1, 0, 2]


@pytest.mark.parametrize("single_port", [False, True])
def test_partial_write_rmw(single_port):
    """A partial write keeps the other bytes (ECC: read-modify-write, the bank is busy the next
    cycle: a read there waits one cycle)."""
    dut = tiny(single_port=single_port)
    reqs = {"dma": [_write(4, 0x11223344, 0xF), _write(4, 0xAABBCCDD, 0b0101), _read(4)],
            "ttu_b": [_write(0, 0x5555666677778888, 0xFF)] + [_read(0)]}
    t = Traffic(dut, reqs, cycles=20)
    assert t.check_against_model() == []
    assert t.responses["dma"][0][1:] == (0x11BB33DD, EccStatus.OK)
    assert t.counters["rmw"] == 1


def test_rmw_blocks_bank_next_cycle():
    """A read of the bank a read-modify-write used, the next cycle: refused once (counted as a
    conflict), then served with the merged word."""
    dut = tiny()
    reqs = {"dma": [_write(0, 0xAB, 0b0001), _read(4)]}
    t = Traffic(dut, reqs, cycles=10)
    assert [c for c, _ in t.accepts["dma"]] == [0, 2]
    assert t.counters["conflict"][0] == 1


@pytest.mark.parametrize("fault", ["rmw_no_merge", "no_correct", "no_double_detect",
                                   "no_credit", "fixed_priority"])
def test_faults_caught(fault, seed):
    """Each deliberate fault fails at least one of the checks of this file."""
    dut = tiny(faults={fault})
    if fault == "rmw_no_merge":
        t = Traffic(dut, _random_requests(dut, 30, seed), gap=0.3, stall=0.3, seed=seed)
        assert t.check_against_model() != []
    elif fault in ("no_correct", "no_double_detect"):
        assert _injection_failures(dut) != []
    elif fault == "no_credit":
        assert _backpressure_failures(dut) != []
    else:
        counts, _ = _fairness(dut)
        assert max(counts) - min(counts) > 1
    assert set(FAULTS) == {"rmw_no_merge", "no_correct", "no_double_detect", "no_credit",
                           "fixed_priority", "shared_addr_s0"}


def test_ice40_like_banks_short_response_fifo(seed):
    """The ice40 shape in small: single-ported banks, no ECC, 2 responses a port
    (``tsram_rsp_depth=2``): random traffic against the model, and the response credit."""
    dut = tiny(False, single_port=True, rsp_depth=2)
    t = Traffic(dut, _random_requests(dut, 30, seed), gap=0.3, stall=0.4, seed=seed)
    assert t.check_against_model() == []
    assert _backpressure_failures(tiny(False, single_port=True, rsp_depth=2)) == []


def test_single_port_fault_caught(seed):
    """The single-port twin: a shared bank address that ignores a write landing a cycle late
    (a deferred write) corrupts memory, and the traffic check sees it."""
    dut = tiny(False, single_port=True, faults={"shared_addr_s0"})
    t = Traffic(dut, _random_requests(dut, 40, seed), gap=0.3, stall=0.4, seed=seed)
    assert t.check_against_model() != []


# ---------------------------------------------------------------------------------------------
# Response backpressure
# ---------------------------------------------------------------------------------------------

def _backpressure_failures(dut):
    """Responses held back for 30 cycles: exactly rsp_depth reads are accepted, the rest wait
    (counted as rsp_stall); then everything comes out in order."""
    reqs = {"ttu_b": [_write(a, 0x1000 + a, 0xFF) for a in range(8)]
            + [_read(a) for a in range(8)]}
    fails = []
    hold = 30
    t = _Held(dut, reqs, hold=hold)
    reads_before = sum(1 for c, r in t.accepts["ttu_b"] if not r["write"] and c < hold)
    if reads_before != dut.rsp_depth:
        fails.append(f"{reads_before} reads accepted with responses held, want "
                     f"{dut.rsp_depth}")
    fails += t.check_against_model()
    # ttu_b waits from its (rsp_depth + 1)-th read (cycle 8 + rsp_depth) to the release.
    want_stall = hold - 8 - dut.rsp_depth
    if t.counters["rsp_stall"][2] < want_stall:
        fails.append(f"rsp_stall {t.counters['rsp_stall']}, want >= {want_stall} for ttu_b")
    return fails


class _Held(Traffic):
    """:class:`Traffic` without gaps, with every ``rsp.ready`` low for the first ``hold``
    cycles."""

    def __init__(self, dut, requests, *, hold):
        self.dut, self.requests = dut, {n: list(r) for n, r in requests.items()}
        self.names = list(dut.ports)
        self.accepts = {n: [] for n in self.names}
        self.responses = {n: [] for n in self.names}
        sim = Simulator(dut)
        sim.add_clock(1e-6)

        async def bench(ctx):
            queues = {n: list(self.requests.get(n, [])) for n in self.names}
            for cycle in range(hold + 100):
                for n in self.names:
                    port = getattr(dut, n)
                    if queues[n]:
                        req = queues[n][0]
                        ctx.set(port.req.payload.addr, req["addr"])
                        ctx.set(port.req.payload.write, req["write"])
                        ctx.set(port.req.payload.data, req["data"])
                        ctx.set(port.req.payload.strb, req["strb"])
                    ctx.set(port.req.valid, bool(queues[n]))
                    ctx.set(port.rsp.ready, cycle >= hold)
                probes = []
                for n in self.names:
                    port = getattr(dut, n)
                    probes += [port.req.ready, port.rsp.valid, port.rsp.payload.data,
                               port.rsp.payload.status]
                values = (await ctx.tick().sample(*probes))[2:]
                for i, n in enumerate(self.names):
                    ready, rvalid, rdata, rstatus = values[4 * i:4 * i + 4]
                    if queues[n] and ready:
                        self.accepts[n].append((cycle, queues[n].pop(0)))
                    if rvalid and cycle >= hold:
                        self.responses[n].append((cycle, rdata, rstatus))
            self.counters = {"rsp_stall": [ctx.get(dut.counters.rsp_stall[i])
                                           for i in range(len(self.names))]}

        sim.add_testbench(bench)
        sim.run()


def test_response_backpressure():
    assert _backpressure_failures(tiny()) == []


# ---------------------------------------------------------------------------------------------
# Out of range, errors, fault injection
# ---------------------------------------------------------------------------------------------

def test_out_of_range():
    """dma's 8-bit address reaches past the 64 words: an out-of-range write is dropped, a read
    answers zero / UNCORRECTABLE; both raise err (TSRAM_OUT_OF_RANGE, port, address)."""
    dut = tiny()
    reqs = {"dma": [_write(3, 0x12345678, 0xF), _write(64 + 3, 0xDEAD, 0xF), _read(64 + 3),
                    _read(3)]}
    t = Traffic(dut, reqs, cycles=20, err_clear_at={15})
    assert t.check_against_model() == []
    assert [r[1:] for r in t.responses["dma"]] == [(0, EccStatus.UNCORRECTABLE),
                                                   (0x12345678, EccStatus.OK)]
    assert [(e["code"], e["port"], e["addr"]) for _, e in t.events] == [
        (ErrorCode.TSRAM_OUT_OF_RANGE, 0, 67)] * 2
    assert t.counters["out_of_range"] == 2
    first = t.events[0][0]
    assert not any(t.sticky[:first]) and all(t.sticky[first:15]) and not t.sticky[16]


def _injection_failures(dut):
    """Single and double flips injected into words read by the 4-wide port; returns what went
    wrong (empty when every single flip is corrected and counted and every double flip is
    reported UNCORRECTABLE, counted and raised on err)."""
    rng = random.Random(5)
    fails = []
    words = [rng.getrandbits(32) for _ in range(4)]
    writes = [_write(a, words[a], 0xF) for a in range(4)]   # global words 0..3 (row 0)
    positions = [0, 13, 31, 32, 37, 38]                      # data, check and parity bits
    cycle = 10
    injects = []
    for k, pos in enumerate(positions):
        injects.append((cycle, k % 4, 1 << pos))
        cycle += 12
    doubles = [(1, 0b11 << 5), (2, 1 << 3 | 1 << 36)]
    for g, mask in doubles:
        injects.append((cycle, g, mask))
        cycle += 12
    t = _Scripted(dut, writes, injects, read_at=[c + 4 for c, *_ in injects])
    want_data = sum(w << 32 * i for i, w in enumerate(words))
    for k, pos in enumerate(positions):
        got = t.responses[k]
        if got[1:] != (want_data, EccStatus.CORRECTED):
            fails.append(f"single flip {pos} in word {k % 4}: got {got[1]:#x}/{got[2]}")
    for j, (g, mask) in enumerate(doubles):
        got = t.responses[len(positions) + j]
        if got[2] != EccStatus.UNCORRECTABLE:
            fails.append(f"double flip {mask:#x} in word {g}: status {got[2]}")
    want_events = [(ErrorCode.ECC_UNCORRECTABLE, 1, 0, g) for g, _ in doubles]
    got_events = [(e["code"], e["port"], e["addr"], e["lane"]) for _, e in t.events]
    if got_events != want_events:
        fails.append(f"err events {got_events}, want {want_events}")
    if (t.counters["corrected"], t.counters["uncorrectable"]) != (len(positions), len(doubles)):
        fails.append(f"counters {t.counters}")
    return fails


class _Scripted:
    """Writes ``writes`` through dma, then at each ``(cycle, g, mask)`` injects, reads row 0
    through ttu_a at the matching ``read_at`` cycle and rewrites the word (repair)."""

    def __init__(self, dut, writes, injects, read_at):
        self.responses, self.events = [], []
        sim = Simulator(dut)
        sim.add_clock(1e-6)
        total = read_at[-1] + 12

        async def bench(ctx):
            dma, ttu = dut.dma, dut.ttu_a
            ctx.set(ttu.rsp.ready, 1)
            ctx.set(dma.rsp.ready, 1)
            plan_dma = {i: w for i, w in enumerate(writes)}
            for (c, g, mask), r in zip(injects, read_at):
                plan_dma[r + 2] = writes[g]          # repair after the read
            for cycle in range(total):
                inj = [(g, mask) for c, g, mask in injects if c == cycle]
                ctx.set(dut.inject.valid, bool(inj))
                if inj:
                    ctx.set(dut.inject.payload.addr, inj[0][0])
                    ctx.set(dut.inject.payload.mask, inj[0][1])
                w = plan_dma.get(cycle)
                ctx.set(dma.req.valid, w is not None)
                if w is not None:
                    ctx.set(dma.req.payload.addr, w["addr"])
                    ctx.set(dma.req.payload.write, 1)
                    ctx.set(dma.req.payload.data, w["data"])
                    ctx.set(dma.req.payload.strb, w["strb"])
                ctx.set(ttu.req.valid, cycle in read_at)
                ctx.set(ttu.req.payload.addr, 0)
                ctx.set(ttu.req.payload.write, 0)
                (_, _, dma_ready, inj_ready, rvalid, rdata, rstatus, err_bits) = \
                    await ctx.tick().sample(dma.req.ready, dut.inject.ready, ttu.rsp.valid,
                                            ttu.rsp.payload.data, ttu.rsp.payload.status,
                                            dut.err.as_value())
                assert w is None or dma_ready, f"cycle {cycle}: dma write refused"
                assert not inj or inj_ready, f"cycle {cycle}: injection refused"
                if rvalid:
                    self.responses.append((cycle, rdata, rstatus))
                fields = {n: err_bits >> f.offset & ((1 << f.width) - 1)
                          for n, f in dut.err_layout}
                if fields["valid"]:
                    self.events.append((cycle, fields))
            self.counters = {"corrected": ctx.get(dut.counters.corrected),
                             "uncorrectable": ctx.get(dut.counters.uncorrectable)}

        sim.add_testbench(bench)
        sim.run()


@pytest.mark.parametrize("single_port", [False, True])
def test_fault_injection(single_port):
    assert _injection_failures(tiny(single_port=single_port)) == []


def test_no_ecc_status_always_ok():
    """Without ECC an injected flip comes back as is, with status OK, and nothing is counted."""
    dut = tiny(ecc=False)
    t = _Scripted(dut, [_write(a, 0x100 + a, 0xF) for a in range(4)], [(10, 2, 1 << 7)],
                  read_at=[14])
    want = sum((0x100 + a) << 32 * a for a in range(4)) ^ (1 << 7) << 64
    assert [r[1:] for r in t.responses] == [(want, EccStatus.OK)]
    assert t.counters == {"corrected": 0, "uncorrectable": 0} and t.events == []


# ---------------------------------------------------------------------------------------------
# Lint
# ---------------------------------------------------------------------------------------------

PORTS = {"dma": 1, "ttu_a": 4, "ttu_b": 4, "ttu_c": 1}


def test_lint_small():
    lint(TileSram.from_config(get_config("small"), ports=PORTS), name="tsram")
    lint(TileSram.from_config(get_config("small").replace(tsram_ecc=False), ports=PORTS),
         name="tsram")
    lint(TileSram.from_config(get_config("small").replace(tsram_single_port=True), ports=PORTS),
         name="tsram")


def test_lint_default_like():
    """The default preset's geometry (16 banks of 32-byte words) with fewer rows and TTU ports
    of 8 words (the full depth only adds memory rows, not logic)."""
    cfg = get_config("default").replace(tsram_bank_depth=64)
    lint(TileSram.from_config(cfg, ports={"dma": 1, "ttu_a": 8, "ttu_b": 8, "ttu_c": 4}),
         name="tsram")


# ---------------------------------------------------------------------------------------------
# cocotb + Verilator
# ---------------------------------------------------------------------------------------------

def _sim(dut, testcase, check=True, **params):
    result = simulate(dut, bench=BENCH, name="tsram", testcase=testcase,
                      params=dut_params(dut) | params, check=check)
    print(f"{testcase}: build {result.build_seconds:.1f} s (cached {result.build_cached}), "
          f"run {result.run_seconds:.1f} s, log {result.log_file}")
    return result


@pytest.mark.sim
def test_cocotb_random_traffic():
    result = _sim(tiny(), "random_traffic", count=400, req_pause=0.3, rsp_pause=0.5)
    result.coverage.assert_complete()


@pytest.mark.sim
def test_cocotb_fault_injection():
    _sim(tiny(), "fault_injection", singles=39, doubles=20)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("ecc", [True, False])
def test_cocotb_small_preset(ecc):
    dut = TileSram.from_config(get_config("small").replace(tsram_ecc=ecc),
                               ports=PORTS | {"dma": PortSpec(1, 12)})
    result = _sim(dut, "random_traffic", count=2000, req_pause=0.3, rsp_pause=0.5)
    result.coverage.assert_complete()
    if ecc:
        _sim(dut, "fault_injection", singles=137, doubles=60)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("fault,testcase", [("rmw_no_merge", "random_traffic"),
                                            ("no_credit", "random_traffic"),
                                            ("fixed_priority", "random_traffic"),
                                            ("no_correct", "fault_injection"),
                                            ("no_double_detect", "fault_injection")])
def test_cocotb_faults_caught(fault, testcase):
    result = _sim(tiny(faults={fault}), testcase, check=False, count=400, req_pause=0.1,
                  rsp_pause=0.6, hot_rows=1)
    assert result.tests == 1 and result.failed == 1, f"{fault} not caught by {testcase}"
