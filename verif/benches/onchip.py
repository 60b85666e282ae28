"""cocotb bench of :class:`openmaia.hbm.onchip.OnChipMemory` (rtl/hbm/onchip.py).

Bus model: cocotbext-axi's ``AxiMaster`` on ``s_axi_``, with a random pause generator on each of
the five channels (AW, W, B, AR, R; per-channel probabilities drawn from the seed) when
``pause`` is set. A monitor samples the port every cycle (falling edge) and counts handshakes and
stalls, which the ``stats`` counters must equal at the end. Tests:

* :func:`random_traffic`: workers on disjoint regions issue random bursts (1..``max_beats``
  beats, unaligned starts and ends, so partial strobes on the first and last beats, random IDs,
  bursts crossing 4 KiB split by the master); every read is compared with a Python byte model
  of the memory (``init`` contents included). In between, on the reserved region 0: a FIXED
  read and write, a WRAP read, a narrow write (SLVERR, nothing written) and, when the address
  space is larger than the memory, reads and writes beyond ``capacity`` (DECERR), each followed
  by a good write and read-back there.
* :func:`full_rate`: no pauses: a 64-beat write moves one W beat a cycle, four back-to-back
  16-beat reads one R beat a cycle with no bubble between bursts, first R beat 2 cycles after
  the AR handshake; a read and a write issued together overlap (about half the cycles).

Parameters (:func:`openmaia.harness.bench_params`): ``capacity``, ``data_bytes``,
``addr_width``, ``id_width``, ``init_seed`` (the init bytes are ``random.Random(init_seed)
.randbytes(capacity)``, or zero if absent), ``ops``, ``max_beats``, ``pause``.
"""

import logging
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge
from cocotbext.axi import AxiBurstType, AxiBus, AxiMaster, AxiResp

from openmaia.harness import bench_params
from openmaia.hbm.onchip import ONCHIP_STAT_NAMES

CLOCK_NS = 10
PREFIX = "s_axi_"


def init_bytes(params) -> bytes:
    if params.get("init_seed") is None:
        return bytes(params["capacity"])
    return random.Random(params["init_seed"]).randbytes(params["capacity"])


class PortMonitor:
    """Counts, each cycle, what the ``stats`` counters count (from the port alone)."""

    def __init__(self, dut):
        self.dut = dut
        self.cycle = 0
        self.count = {name: 0 for name in ONCHIP_STAT_NAMES if name not in ("busy", "stall_in")}
        self.r_beats, self.w_beats, self.ar_shakes = [], [], []   # cycles of the handshakes
        self.r_valid_cycles = []
        self._r_err = False
        self.running = True

    def _v(self, name):
        return int(getattr(self.dut, PREFIX + "_" + name).value)

    async def run(self):
        c = self.count
        while self.running:
            await FallingEdge(self.dut.clk)
            self.cycle += 1
            v = self._v
            if v("arvalid") and v("arready"):
                c["reads"] += 1
                self.ar_shakes.append(self.cycle)
            if v("awvalid") and v("awready"):
                c["writes"] += 1
            if v("rvalid"):
                self.r_valid_cycles.append(self.cycle)
                if v("rready"):
                    c["read_beats"] += 1
                    self.r_beats.append(self.cycle)
                    err = self._r_err or v("rresp") != 0
                    if v("rlast"):
                        c["errors"] += err
                        err = False
                    self._r_err = err
                else:
                    c["stall_r"] += 1
            if v("wvalid") and v("wready"):
                c["write_beats"] += 1
                self.w_beats.append(self.cycle)
            if v("bvalid"):
                if v("bready"):
                    c["errors"] += v("bresp") != 0
                else:
                    c["stall_b"] += 1


def stats_values(dut):
    v = dut.stats.value.to_unsigned()
    return {name: (v >> (32 * k)) & 0xFFFFFFFF for k, name in enumerate(ONCHIP_STAT_NAMES)}


async def setup(dut, params, rng):
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    master = AxiMaster(AxiBus.from_prefix(dut, PREFIX), dut.clk, dut.rst)
    master.write_if.log.setLevel(logging.WARNING)
    master.read_if.log.setLevel(logging.WARNING)
    if params.get("pause", True):
        def gen(p):
            while True:
                yield rng.random() < p
        for ch in (master.write_if.aw_channel, master.write_if.w_channel,
                   master.write_if.b_channel, master.read_if.ar_channel,
                   master.read_if.r_channel):
            ch.set_pause_generator(gen(rng.choice((0.1, 0.3, 0.6))))
    dut.rst.value = 1
    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    monitor = PortMonitor(dut)
    cocotb.start_soon(monitor.run())
    return master, monitor


async def _settle(dut, master, limit=100_000):
    for _ in range(limit):
        if master.idle():
            break
        await RisingEdge(dut.clk)
    else:
        raise AssertionError(f"requests still in flight after {limit} cycles (lost or stuck)")
    for _ in range(4):
        await RisingEdge(dut.clk)


def _check_stats(dut, monitor, errors):
    stats = stats_values(dut)
    for name, want in monitor.count.items():
        if stats[name] != want:
            errors.append(f"stats.{name} = {stats[name]}, the port shows {want}")
    dut._log.info("cycles %d, stats %s", monitor.cycle, stats)
    return stats


@cocotb.test()
async def random_traffic(dut):
    params = bench_params()
    rng = random.Random(cocotb.RANDOM_SEED)
    master, monitor = await setup(dut, params, rng)
    cap, db = params["capacity"], params["data_bytes"]
    ids = 1 << params["id_width"]
    ops = params.get("ops", 200)
    max_beats = params.get("max_beats", 16)
    ref = bytearray(init_bytes(params))
    errors = []
    slots = 4
    region = cap // slots
    max_len = min(max_beats * db, region - 1)

    def compare(what, addr, got, want):
        if got != want:
            bad = [i for i in range(len(want)) if got[i] != want[i]]
            i = bad[0]
            errors.append(f"{what} 0x{addr:x}+{len(want)}: byte 0x{addr + i:x} is "
                          f"{got[i]:#04x}, expected {want[i]:#04x} ({len(bad)} bad bytes)")

    async def write_read(lrng, addr, length, what):
        data = lrng.randbytes(length)
        resp = await master.write(addr, data, awid=lrng.randrange(ids))
        if resp.resp != AxiResp.OKAY:
            errors.append(f"{what}: write 0x{addr:x}+{length}: resp {resp.resp!r}")
        ref[addr:addr + length] = data
        resp = await master.read(addr, length, arid=lrng.randrange(ids))
        if resp.resp != AxiResp.OKAY:
            errors.append(f"{what}: read 0x{addr:x}+{length}: resp {resp.resp!r}")
        compare(what + ": read-back", addr, resp.data, bytes(ref[addr:addr + length]))

    async def worker(slot):
        base = slot * region
        lrng = random.Random(rng.randrange(1 << 30))
        for _ in range(ops // slots):
            length = lrng.randrange(1, max_len + 1)
            addr = base + lrng.randrange(0, region - length + 1)
            if lrng.random() < 0.5:
                data = lrng.randbytes(length)
                resp = await master.write(addr, data, awid=lrng.randrange(ids))
                if resp.resp != AxiResp.OKAY:
                    errors.append(f"write 0x{addr:x}+{length}: resp {resp.resp!r}")
                ref[addr:addr + length] = data
            else:
                resp = await master.read(addr, length, arid=lrng.randrange(ids))
                if resp.resp != AxiResp.OKAY:
                    errors.append(f"read 0x{addr:x}+{length}: resp {resp.resp!r}")
                compare("read", addr, resp.data, bytes(ref[addr:addr + length]))

    async def error_worker():
        """Bad bursts on region 0, each followed by a good write and read-back there."""
        lrng = random.Random(rng.randrange(1 << 30))
        beyond = cap < 1 << params["addr_width"]
        cases = ["fixed_read", "fixed_write", "wrap_read", "narrow_write"]
        if beyond:
            cases += ["beyond_read", "beyond_write", "straddle_read"]
        for k in range(max(len(cases), ops // 20)):
            case = cases[k % len(cases)]
            addr = lrng.randrange(0, region - 2 * db)
            addr -= addr % db
            want = AxiResp.SLVERR
            if case == "fixed_read":
                resp = await master.read(addr, 2 * db, burst=AxiBurstType.FIXED)
            elif case == "fixed_write":
                resp = await master.write(addr, lrng.randbytes(2 * db),
                                          burst=AxiBurstType.FIXED)
            elif case == "wrap_read":
                resp = await master.read(addr, 2 * db, burst=AxiBurstType.WRAP)
            elif case == "narrow_write":
                resp = await master.write(addr, lrng.randbytes(db // 2),
                                          size=(db // 2).bit_length() - 1)
            elif case == "beyond_read":
                resp = await master.read(cap + addr, 2 * db)
                want = AxiResp.DECERR
            elif case == "beyond_write":
                resp = await master.write(cap + addr, lrng.randbytes(2 * db))
                want = AxiResp.DECERR
            else:  # a burst from the last word of the memory into the space beyond it
                want = AxiResp.DECERR
                if cap % 4096:
                    resp = await master.read(cap - db, 2 * db)
                else:   # the master splits at 4 KiB: the in-range part answers OKAY
                    resp = await master.read(cap, db)
            if resp.resp != want:
                errors.append(f"{case} at 0x{addr:x}: resp {resp.resp!r}, expected {want!r}")
            length = lrng.randrange(1, 2 * db)
            await write_read(lrng, addr + lrng.randrange(db), length, f"after {case}")

    tasks = [cocotb.start_soon(worker(s)) for s in range(1, slots)]
    tasks.append(cocotb.start_soon(error_worker()))
    for t in tasks:
        await t
    # a final sweep: every byte of regions 1.. read back in long bursts
    step = min(region, 256 * db)
    for addr in range(region, cap, step):
        resp = await master.read(addr, step, arid=rng.randrange(ids))
        compare("sweep", addr, resp.data, bytes(ref[addr:addr + step]))
    await _settle(dut, master)
    monitor.running = False
    stats = _check_stats(dut, monitor, errors)
    if stats["errors"] == 0:
        errors.append("no burst was counted as an error")
    assert not errors, "\n".join(errors[:20])


@cocotb.test()
async def full_rate(dut):
    params = bench_params()
    rng = random.Random(cocotb.RANDOM_SEED)
    master, monitor = await setup(dut, {**params, "pause": False}, rng)
    db = params["data_bytes"]
    errors = []
    beats = min(64, params["capacity"] // db, 4096 // db)
    data = rng.randbytes(beats * db)
    resp = await master.write(0, data)
    assert resp.resp == AxiResp.OKAY, resp.resp
    w = monitor.w_beats
    if w[-1] - w[0] + 1 != beats:
        errors.append(f"{beats} W beats took {w[-1] - w[0] + 1} cycles")
    reads = 4
    per = max(1, beats // reads)
    events = [master.init_read(k * per * db, per * db, arid=k) for k in range(reads)]
    for e in events:
        await e.wait()
    got = b"".join(e.data.data for e in events)
    if got != data[:reads * per * db]:
        errors.append("read data differs from the written data")
    r = monitor.r_beats[-reads * per:]
    if r[-1] - r[0] + 1 != reads * per:
        errors.append(f"{reads} bursts of {per} beats back to back took {r[-1] - r[0] + 1} "
                      f"cycles, not {reads * per}")
    first_ar = monitor.ar_shakes[-reads]
    latency = r[0] - first_ar
    dut._log.info("W %d beats in %d cycles; R %d beats in %d cycles; AR -> first R %d cycles",
                  beats, w[-1] - w[0] + 1, reads * per, r[-1] - r[0] + 1, latency)
    if latency != 2:
        errors.append(f"AR handshake to first R beat: {latency} cycles, not 2")
    # a read and a write of as many beats, issued together, overlap (two memory ports)
    half = beats // 2
    wdata = rng.randbytes(half * db)
    w_event = master.init_write(half * db, wdata)
    r_event = master.init_read(0, half * db)
    await w_event.wait()
    await r_event.wait()
    if r_event.data.data != data[:half * db]:
        errors.append("concurrent read: data differs from the written data")
    first = min(monitor.w_beats[-half], monitor.r_beats[-half])
    last = max(monitor.w_beats[-1], monitor.r_beats[-1])
    dut._log.info("a %d-beat read and a %d-beat write together: %d cycles", half, half,
                  last - first + 1)
    if last - first + 1 > half + 4:
        errors.append(f"a {half}-beat read and write together took {last - first + 1} cycles: "
                      f"not concurrent")
    resp = await master.read(half * db, half * db)
    if resp.data != wdata:
        errors.append("concurrent write: read-back differs")
    await _settle(dut, master)
    monitor.running = False
    _check_stats(dut, monitor, errors)
    assert not errors, "\n".join(errors)
