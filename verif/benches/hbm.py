"""cocotb bench of :class:`openmaia.hbm.controller.HbmController` (one pseudo-channel, port 0).

Bus model: cocotbext-axi's ``AxiMaster`` on ``s_axi__0_``, with a random pause generator on each
of the five channels (AW, W, B, AR, R) when ``pause`` is set. A monitor samples the ``trace__0``
port every cycle, feeds every DRAM command to the independent
:class:`~openmaia.benches.hbm_timing_checker.HbmTimingChecker` and collects the latencies of
finished bursts. Tests:

* :func:`replay`: replays a DRAMsim3-format trace (``trace`` file; cycle 0 = as soon as
  accepted, else the earliest issue cycle; issued in file order, at most ``outstanding`` in
  flight), writes ``result.json`` (latencies, counters, command counts, checker verdict) into
  the run folder. Fails on any timing violation, or if a request is lost.
* :func:`random_axi`: random bursts (lengths 1..``max_beats``, unaligned starts, random IDs),
  writes and reads of random regions checked against a byte-array reference, several in flight
  on disjoint regions; out-of-capacity lines (DECERR) and unsupported bursts (SLVERR) in
  between; the device keeps answering. The checker watches the whole run.
* :func:`starvation`: a bank kept busy with row hits while one request for another row of that
  bank waits: at most ``row_hit_cap`` column bursts of younger requests go to the open row before
  the waiting request's row is opened (``expect_cap`` false inverts the check, for the no-cap
  fault).

Parameters (:func:`openmaia.harness.bench_params`): ``timing`` (dict), ``preset``, ``mapping``,
``capacity``, ``data_bytes``, ``row_hit_cap`` and per test ``trace``, ``outstanding``, ``pause``,
``ops``, ``max_beats``, ``expect_cap``.
"""

import json
import logging
import os
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, Timer
from cocotbext.axi import AxiBurstType, AxiBus, AxiMaster, AxiResp

from openmaia.benches.hbm_timing_checker import HbmTimingChecker
from openmaia.harness import bench_params
from openmaia.hbm.controller import ColCmd, RowCmd, trace_layout
from openmaia.hbm.traces import read_trace

CLOCK_NS = 10


def _fields():
    layout = trace_layout()
    return {name: (f.offset, f.width) for name, f in layout}


class TraceMonitor:
    """Samples ``trace__0`` every cycle: commands to the checker, latencies to lists."""

    def __init__(self, dut, checker):
        self.dut, self.checker = dut, checker
        self.f = _fields()
        self.rlat, self.wlat = [], []
        self.commands = {k: 0 for k in ("ACT", "PRE", "REF", "RD", "WR")}
        self.log = []          # (cycle, cmd, sid, bg, ba, row, col)
        self.keep_log = False
        self.first_cmd = None
        self.last_data_end = 0
        self.cycle = 0
        self.running = True

    def _get(self, v, name):
        off, width = self.f[name]
        return (v >> off) & ((1 << width) - 1)

    async def run(self):
        sig = self.dut.trace__0
        g = self._get
        p = self.checker.t
        while self.running:
            await FallingEdge(self.dut.clk)
            v = sig.value.to_unsigned()
            cyc = self.cycle = v & 0xFFFFFFFF
            if not v >> 32:
                continue
            if g(v, "row_valid"):
                cmd = RowCmd(g(v, "row_cmd")).name
                args = (g(v, "row_sid"), g(v, "row_bg"), g(v, "row_ba"), g(v, "row_row"), None)
                self._cmd(cyc, cmd, args)
            if g(v, "col_valid"):
                cmd = ColCmd(g(v, "col_cmd")).name
                args = (g(v, "col_sid"), g(v, "col_bg"), g(v, "col_ba"), g(v, "col_row"),
                        g(v, "col_col"))
                self._cmd(cyc, cmd, args)
                self.last_data_end = cyc + (p["CL"] if cmd == "RD" else p["CWL"]) + p["tBURST"]
            if g(v, "rlat_valid"):
                self.rlat.append(g(v, "rlat"))
            if g(v, "wlat_valid"):
                self.wlat.append(g(v, "wlat"))

    def _cmd(self, cycle, cmd, args):
        sid, bg, ba, row, col = args
        if self.first_cmd is None:
            self.first_cmd = cycle
        self.commands[cmd] += 1
        if self.keep_log:
            self.log.append((cycle, cmd, sid, bg, ba, row, col))
        self.checker.command(cycle, cmd, sid, bg, ba, None if cmd == "PRE" else row, col)


async def setup(dut, params, pause=False, seed_rng=None):
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    master = AxiMaster(AxiBus.from_prefix(dut, "s_axi__0_"), dut.clk, dut.rst)
    master.write_if.log.setLevel(logging.WARNING)
    master.read_if.log.setLevel(logging.WARNING)
    if pause:
        rng = seed_rng or random.Random(cocotb.RANDOM_SEED)

        def gen(p):
            while True:
                yield rng.random() < p
        for ch, p in ((master.write_if.aw_channel, 0.3), (master.write_if.w_channel, 0.3),
                      (master.write_if.b_channel, 0.3), (master.read_if.ar_channel, 0.3),
                      (master.read_if.r_channel, 0.3)):
            ch.set_pause_generator(gen(p))
    checker = HbmTimingChecker(params["timing"], preset=params.get("preset"))
    monitor = TraceMonitor(dut, checker)
    dut.rst.value = 1
    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    cocotb.start_soon(monitor.run())
    return master, checker, monitor


def stats_values(dut):
    from openmaia.hbm.controller import STAT_NAMES, HIST_BINS
    v = dut.stats__0.value.to_unsigned()
    out = {}
    for k, name in enumerate(STAT_NAMES):
        out[name] = (v >> (32 * k)) & 0xFFFFFFFF
    base = 32 * len(STAT_NAMES)
    out["hist"] = [(v >> (base + 32 * k)) & 0xFFFFFFFF for k in range(HIST_BINS)]
    return out


async def _drain(dut, master, monitor, limit=200_000, events=()):
    """Wait until every request in ``events`` was answered and the master is idle."""
    events = list(events)
    for _ in range(limit):
        events = [e for e in events if not e.is_set()]
        if not events and master.idle():
            break
        await RisingEdge(dut.clk)
    for _ in range(8):
        await RisingEdge(dut.clk)
    if events or not master.idle():
        state = {}
        state["commands"] = dict(monitor.commands)
        for _ in range(100):
            await RisingEdge(dut.clk)
        state["commands_100_later"] = dict(monitor.commands)
        state["stats"] = {k: v for k, v in stats_values(dut).items() if k != "hist"}
        # internal state: only in builds where every signal is public (not top-public-only)
        for name in ("count", "used", "done", "bank_open", "col_cand", "row_cand"):
            try:
                state[name] = hex(getattr(dut.pc0, name).value.to_unsigned())
            except Exception as error:  # noqa: BLE001 - best-effort debug dump
                state[name] = repr(error)[:40]
        raise AssertionError(f"requests still in flight after {limit} cycles (lost or stuck): "
                             f"{state}")


async def _replay_one(dut, params, master, checker, monitor, path):
    reqs = read_trace(path)
    outstanding = params.get("outstanding", 1024)
    pending, every = [], []
    cycle0 = monitor.cycle
    for req in reqs:
        while len(pending) >= outstanding:
            pending = [e for e in pending if not e.is_set()]
            if len(pending) >= outstanding:
                await RisingEdge(dut.clk)
        if req.cycle:
            while monitor.cycle - cycle0 < req.cycle:
                await RisingEdge(dut.clk)
        event = (master.init_write(req.addr, bytes(64)) if req.write
                 else master.init_read(req.addr, 64))
        pending.append(event)
        every.append(event)
    await _drain(dut, master, monitor, limit=50 * len(reqs) + 100_000, events=every)
    checker.finish(monitor.cycle)
    monitor.running = False
    result = {
        "trace": str(path), "requests": len(reqs), "reads": sum(not r.write for r in reqs),
        "writes": sum(r.write for r in reqs), "rlat": monitor.rlat, "wlat": monitor.wlat,
        "first_cmd": monitor.first_cmd, "last_data_end": monitor.last_data_end,
        "end_cycle": monitor.cycle, "commands": monitor.commands, "stats": stats_values(dut),
        "checker": {"passed": checker.passed, "count": checker.count,
                    "violations": checker.violations, "refreshes": checker.refreshes},
    }
    dut._log.info("%s: checker: %s", path, checker.report())
    return result


@cocotb.test()
async def replay(dut):
    """Replay ``trace`` (or each of ``traces`` in turn, resetting the model in between)."""
    params = bench_params()
    paths = params.get("traces") or [params["trace"]]
    master, checker, monitor = await setup(dut, params, pause=params.get("pause", False))
    results = []
    for k, path in enumerate(paths):
        if k:
            for _ in range(2):
                await RisingEdge(dut.clk)
            dut.rst.value = 1
            for _ in range(4):
                await RisingEdge(dut.clk)
            dut.rst.value = 0
            await RisingEdge(dut.clk)
            checker = HbmTimingChecker(params["timing"], preset=params.get("preset"))
            monitor = TraceMonitor(dut, checker)
            cocotb.start_soon(monitor.run())
        results.append(await _replay_one(dut, params, master, checker, monitor, path))
    run_dir = Path(os.environ.get("OPENMAIA_RUN_DIR", "."))
    (run_dir / "result.json").write_text(json.dumps(results))
    for r in results:
        assert len(r["rlat"]) == r["reads"], (
            f"{r['trace']}: {r['reads']} reads issued, {len(r['rlat'])} answered")
        assert len(r["wlat"]) == r["writes"], (
            f"{r['trace']}: {r['writes']} writes issued, {len(r['wlat'])} answered")
        assert r["checker"]["passed"], "\n".join([f"{r['trace']}: {r['checker']['count']} "
                                                  f"timing violations"]
                                                 + r["checker"]["violations"])


@cocotb.test()
async def random_axi(dut):
    params = bench_params()
    rng = random.Random(cocotb.RANDOM_SEED)
    master, checker, monitor = await setup(dut, params, pause=params.get("pause", True),
                                           seed_rng=rng)
    cap = params["capacity"]
    db = params["data_bytes"]
    ops = params.get("ops", 200)
    max_beats = params.get("max_beats", 16)
    ref = bytearray(cap)
    written = bytearray(cap)
    # slots: disjoint regions so that concurrent operations never overlap
    slots = 8
    region = cap // slots
    errors = []

    async def worker(slot):
        base = slot * region
        lrng = random.Random(rng.randrange(1 << 30))
        for _ in range(ops // slots):
            length = lrng.randrange(1, max_beats * db + 1)
            offset = lrng.randrange(0, region - length)
            addr = base + offset
            if lrng.random() < 0.5:
                data = bytes(lrng.randrange(256) for _ in range(length))
                resp = await master.write(addr, data, awid=lrng.randrange(16))
                if resp.resp != AxiResp.OKAY:
                    errors.append(f"write 0x{addr:x}+{length}: resp {resp.resp}")
                ref[addr:addr + length] = data
                written[addr:addr + length] = b"\x01" * length
            else:
                resp = await master.read(addr, length, arid=lrng.randrange(16))
                if resp.resp != AxiResp.OKAY:
                    errors.append(f"read 0x{addr:x}+{length}: resp {resp.resp}")
                got = resp.data
                want = bytes(ref[addr:addr + length])
                mask = written[addr:addr + length]
                bad = [i for i in range(length) if mask[i] and got[i] != want[i]]
                if bad:
                    i = bad[0]
                    errors.append(f"read 0x{addr:x}+{length}: byte 0x{addr + i:x} is "
                                  f"{got[i]:#04x}, wrote {want[i]:#04x} ({len(bad)} bad)")

    async def errors_worker():
        lrng = random.Random(rng.randrange(1 << 30))
        for k in range(max(2, ops // 40)):
            await Timer(lrng.randrange(50, 400) * CLOCK_NS, unit="ns")
            kind = k % 4
            if kind == 0:
                resp = await master.read(cap + 64 * lrng.randrange(64), 64)
                want = AxiResp.DECERR
            elif kind == 1:
                resp = await master.write(cap + 64 * lrng.randrange(64), bytes(64))
                want = AxiResp.DECERR
            elif kind == 2:
                resp = await master.read(0, 2 * db, burst=AxiBurstType.FIXED)
                want = AxiResp.SLVERR
            else:
                resp = await master.write(0, bytes(db // 2), size=(db // 2).bit_length() - 1)
                want = AxiResp.SLVERR
            if resp.resp != want:
                errors.append(f"error case {kind}: resp {resp.resp}, want {want}")

    # slot 0 is reserved for the error cases' address 0 (narrow/FIXED never write there)
    tasks = [cocotb.start_soon(worker(s)) for s in range(1, slots)]
    tasks.append(cocotb.start_soon(errors_worker()))
    for t in tasks:
        await t
    await _drain(dut, master, monitor)
    checker.finish(monitor.cycle)
    monitor.running = False
    stats = stats_values(dut)
    dut._log.info("cycles %d, commands %s, stats %s", monitor.cycle, monitor.commands,
                  {k: v for k, v in stats.items() if k != "hist"})
    assert not errors, "\n".join(errors[:20])
    assert checker.passed, checker.report()
    assert stats["errors"] > 0


@cocotb.test()
async def starvation(dut):
    params = bench_params()
    master, checker, monitor = await setup(dut, params)
    monitor.keep_log = True
    mapping = params["mapping"]
    cap = params["row_hit_cap"]
    from openmaia.hbm.mapping import unmap_address
    hot = [unmap_address(mapping, sid=0, bg=0, ba=0, row=0, col=2 * (k % 16))
           for k in range(64)]
    victim = unmap_address(mapping, sid=0, bg=0, ba=0, row=1, col=0)
    older = 8
    events = [master.init_read(a, 64) for a in hot[:older]]
    for _ in range(60):
        await RisingEdge(dut.clk)
    events.append(master.init_read(victim, 64))
    events += [master.init_read(a, 64) for a in hot[older:]]
    await _drain(dut, master, monitor, events=events)
    checker.finish(monitor.cycle)
    monitor.running = False
    act_victim = [c for c in monitor.log if c[1] == "ACT" and c[5] == 1]
    assert act_victim, "the waiting request's row was never opened"
    t_act = act_victim[0][0]
    # Row hits of one bank issue oldest first: the first 2 x `older` bursts to row 0 are the
    # older requests'; every later one before the victim's ACT passed the waiting victim.
    hits = [c for c in monitor.log if c[1] == "RD" and c[5] == 0
            and (c[2], c[3], c[4]) == (0, 0, 0) and c[0] < t_act]
    passed = max(0, len(hits) - 2 * older)
    dut._log.info("victim's ACT at %d: %d row-hit bursts of younger requests passed it (cap %d)",
                  t_act, passed, cap)
    if params.get("expect_cap", True):
        assert passed <= cap, f"{passed} row-hit bursts passed the waiting request (cap {cap})"
    else:
        assert passed > cap, "the cap held although it was disabled"
    assert checker.passed, checker.report()
