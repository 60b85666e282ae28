"""OnChipMemory (rtl/hbm/onchip.py), the FPGA presets' on-chip stand-in for the HBM model:
parameter checks, Amaranth-simulator unit tests (sparse strobes, R backpressure, SLVERR and
recovery, counters; each fault twin caught), lint at the ice40 and ulx3s port sizes, and the
cocotb + Verilator bench verif/benches/onchip.py (cocotbext-axi AxiMaster, random pauses on
every channel). Contract: docs/hbm.md, "On-chip memory (FPGA presets)".
"""

import random

import pytest
from amaranth.sim import Simulator

from openmaia.bus.axi import AxiBurst, AxiResp
from openmaia.config import PRESETS
from openmaia.harness import simulate
from openmaia.harness.elaborate import lint
from openmaia.hbm.onchip import ONCHIP_FAULTS, OnChipMemory

BENCH = "openmaia.benches.onchip"
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def test_bad_parameters():
    good = {"capacity_bytes": 1024, "addr_width": 12, "data_width": 32, "id_width": 2}
    OnChipMemory(**good)
    for change in ({"capacity_bytes": 1000}, {"capacity_bytes": 32}, {"capacity_bytes": 8192},
                   {"data_width": 16}, {"data_width": 1024}, {"data_width": 48},
                   {"addr_width": 0}, {"id_width": 0}, {"faults": {"nonsense"}},
                   {"init": bytes(1025)}):
        with pytest.raises(ValueError):
            OnChipMemory(**{**good, **change})
    with pytest.raises(TypeError):
        OnChipMemory(1024, 12, 32, 2)
    mem = OnChipMemory.from_config(PRESETS["ulx3s"], capacity_bytes=1 << 16)
    assert (mem.axi.addr_width, mem.axi.data_width, mem.axi.id_width) == (28, 64, 4)
    assert mem.depth == 8192


# ---------------------------------------------------------------------------------------------
# Amaranth simulator: a directed sequence, driven by hand, checked against a byte model.

class _Port:
    """Drives ``s_axi`` of the memory from an Amaranth async testbench, one burst at a time."""

    def __init__(self, ctx, dut):
        self.ctx, self.axi = ctx, dut.s_axi
        self.db = dut.axi.data_bytes

    async def _handshake(self, valid, ready):
        ctx = self.ctx
        ctx.set(valid, 1)
        while True:
            taken = ctx.get(ready)
            await ctx.tick()
            if taken:
                break
        ctx.set(valid, 0)

    async def _address(self, ch, addr, length, ident, burst, size):
        a, ctx = self.axi, self.ctx
        for name, value in (("id", ident), ("addr", addr), ("len", length - 1),
                            ("size", size), ("burst", burst)):
            ctx.set(getattr(a, ch + name), value)
        await self._handshake(getattr(a, ch + "valid"), getattr(a, ch + "ready"))

    async def write(self, addr, beats, ident=1, burst=AxiBurst.INCR, size=None):
        """``beats``: (data bytes, strobe) a beat. Returns (bid, bresp)."""
        a, ctx = self.axi, self.ctx
        size = self.db.bit_length() - 1 if size is None else size
        await self._address("aw", addr, len(beats), ident, burst, size)
        await ctx.tick()    # one cycle without a W beat: stall_in counts it
        for k, (value, strb) in enumerate(beats):
            ctx.set(a.wdata, int.from_bytes(value, "little"))
            ctx.set(a.wstrb, strb)
            ctx.set(a.wlast, k == len(beats) - 1)
            await self._handshake(a.wvalid, a.wready)
        ctx.set(a.bready, 1)
        while not ctx.get(a.bvalid):
            await ctx.tick()
        result = (ctx.get(a.bid), ctx.get(a.bresp))
        await ctx.tick()
        ctx.set(a.bready, 0)
        return result

    async def read(self, addr, length, ident=2, burst=AxiBurst.INCR, size=None,
                   ready=(1,)):
        """Beats as (data bytes, rid, rresp, rlast); RREADY follows the ``ready`` pattern."""
        a, ctx = self.axi, self.ctx
        size = self.db.bit_length() - 1 if size is None else size
        await self._address("ar", addr, length, ident, burst, size)
        beats, cycle = [], 0
        while len(beats) < length and cycle < 50 * length + 50:
            ctx.set(a.rready, ready[cycle % len(ready)])
            if ctx.get(a.rvalid) and ready[cycle % len(ready)]:
                beats.append((ctx.get(a.rdata).to_bytes(self.db, "little"), ctx.get(a.rid),
                              ctx.get(a.rresp), ctx.get(a.rlast)))
            await ctx.tick()
            cycle += 1
        ctx.set(a.rready, 0)
        return beats


def _directed(dut, seed):
    """Runs the directed sequence on ``dut``; returns the list of mismatches (empty: pass)."""
    rng = random.Random(seed)
    db, cap = dut.axi.data_bytes, dut.capacity_bytes
    model = bytearray(dut.init or bytes(cap))
    model += bytes(cap - len(model))
    errors, stats = [], {}

    def expect(what, got, want):
        if got != want:
            errors.append(f"{what}: got {got!r}, expected {want!r}")

    async def bench(ctx):
        port = _Port(ctx, dut)
        # 1. a 6-beat write with random sparse strobes, from an unaligned address
        addr = 3 * db + 1
        beats = [(rng.randbytes(db), rng.getrandbits(db)) for _ in range(6)]
        expect("write bresp", await port.write(addr, beats, ident=3), (3, AxiResp.OKAY))
        for k, (value, strb) in enumerate(beats):
            for lane in range(db):
                if strb >> lane & 1:
                    model[3 * db + k * db + lane] = value[lane]
        # 2. read it back (and a word either side) under a stalling RREADY pattern
        for ready in ((1,), (0, 1), (1, 0, 0), (1, 1, 0)):
            got = await port.read(2 * db + db // 2 + 1, 8, ident=2, ready=ready)
            expect(f"read beats (ready {ready})", len(got), 8)
            for k, (value, rid, resp, last) in enumerate(got):
                expect(f"beat {k} (ready {ready})", (value, rid, resp, last),
                       (bytes(model[(2 + k) * db:(3 + k) * db]), 2, AxiResp.OKAY, k == 7))
        # 3. bad bursts answer SLVERR on every beat and write nothing; the next is good
        got = await port.read(0, 3, ident=1, burst=AxiBurst.FIXED)
        expect("FIXED read resps", [(b[1], b[2], b[3]) for b in got],
               [(1, AxiResp.SLVERR, k == 2) for k in range(3)])
        bad = [(bytes([0x5A]) * db, (1 << db) - 1)] * 2
        expect("FIXED write", await port.write(3 * db, bad, ident=2, burst=AxiBurst.FIXED),
               (2, AxiResp.SLVERR))
        expect("narrow write", await port.write(3 * db, bad[:1], size=0), (1, AxiResp.SLVERR))
        expect("WRAP write", await port.write(4 * db, bad, burst=AxiBurst.WRAP),
               (1, AxiResp.SLVERR))
        got = await port.read(3 * db, 2, ident=0)
        expect("read after bad bursts", [(b[0], b[2]) for b in got],
               [(bytes(model[k * db:(k + 1) * db]), AxiResp.OKAY) for k in (3, 4)])
        # 4. beyond the capacity: DECERR on those beats only (addresses do not alias)
        if cap < 1 << dut.axi.addr_width:
            got = await port.read(cap - db, 2)
            expect("straddling read resps", [b[2] for b in got],
                   [AxiResp.OKAY, AxiResp.DECERR])
            expect("straddling read data", got[0][0] if got else None, bytes(model[-db:]))
            expect("write beyond", await port.write(cap, bad[:1]), (1, AxiResp.DECERR))
            got = await port.read(0, 1)
            expect("no aliasing", got[0][0] if got else None, bytes(model[:db]))
        for _ in range(3):
            await ctx.tick()
        stats.update({name: ctx.get(getattr(dut.stats, name)) for name, _ in dut.stats.shape()})

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    if not errors:
        beyond = cap < 1 << dut.axi.addr_width
        want = {"reads": 6 + 2 * beyond, "writes": 4 + beyond, "stall_in": 4 + beyond,
                "read_beats": 37 + 3 * beyond, "write_beats": 11 + beyond,
                "errors": 4 + 2 * beyond}
        for name, value in want.items():
            expect(f"stats.{name}", stats[name], value)
        if not stats["stall_r"] or not stats["busy"]:
            errors.append(f"stall / busy counters did not count: {stats}")
    return errors


def _small(**kw):
    return OnChipMemory(capacity_bytes=512, addr_width=12, data_width=32, id_width=2, **kw)


@pytest.mark.parametrize("data_width", [32, 64, 128])
def test_directed_amaranth_sim(data_width, seed):
    mem = OnChipMemory(capacity_bytes=1024, addr_width=12, data_width=data_width, id_width=2,
                       init=random.Random(seed).randbytes(1000))
    errors = _directed(mem, seed)
    assert not errors, "\n".join(errors)


def test_directed_full_address_space(seed):
    mem = OnChipMemory(capacity_bytes=256, addr_width=8, data_width=32, id_width=2)
    errors = _directed(mem, seed)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("fault", sorted(ONCHIP_FAULTS))
def test_directed_catches_fault(fault, seed):
    assert _directed(_small(faults={fault}), seed), f"{fault} went unnoticed"


# ---------------------------------------------------------------------------------------------
# Lint at the FPGA presets' port sizes.

@pytest.mark.parametrize("preset,capacity", [("ice40", 8192), ("ulx3s", 1 << 16)])
def test_lint(preset, capacity):
    lint(OnChipMemory.from_config(PRESETS[preset], capacity_bytes=capacity), name="onchip")


# ---------------------------------------------------------------------------------------------
# cocotb + Verilator.

def _bench_mem(faults=frozenset()):
    # 64-bit port, 2 KiB in a 4 KiB address space (DECERR beyond), preloaded contents
    return OnChipMemory(capacity_bytes=2048, addr_width=12, data_width=64, id_width=3,
                        init=random.Random(7).randbytes(2048), faults=faults)


def _run(mem, testcase, seed, check=True, **extra):
    params = {"capacity": mem.capacity_bytes, "data_bytes": mem.axi.data_bytes,
              "addr_width": mem.axi.addr_width, "id_width": mem.axi.id_width,
              "init_seed": 7, **extra}
    result = simulate(mem, bench=BENCH, name="onchip", testcase=testcase, params=params,
                      seed=seed, check=check, array=True)
    print(f"{testcase}: build {result.build_seconds:.1f} s (cached {result.build_cached}), "
          f"run {result.run_seconds:.1f} s, log {result.log_file}")
    return result


@pytest.mark.sim
def test_random_traffic(seed):
    _run(_bench_mem(), "random_traffic", seed, ops=400, max_beats=24)


@pytest.mark.sim
def test_full_rate(seed):
    _run(_bench_mem(), "full_rate", seed)


# Each fault twin is one more Verilator build (about 30 s of CPU): the slow tier. The default
# tier shows every fault caught by the Amaranth-simulator test above.
@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("fault", sorted(ONCHIP_FAULTS))
def test_random_traffic_catches_fault(fault, seed):
    result = _run(_bench_mem(faults={fault}), "random_traffic", seed, check=False, ops=400,
                  max_beats=24)
    assert result.tests and not result.passed, f"{fault} went unnoticed by the bench"


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("preset", ["ice40", "ulx3s"])
def test_random_traffic_presets(preset, seed):
    """The presets' port sizes, 8 KiB, zero contents (the parameters of the registered top)."""
    mem = OnChipMemory.from_config(PRESETS[preset], capacity_bytes=8192)
    params = {"capacity": mem.capacity_bytes, "data_bytes": mem.axi.data_bytes,
              "addr_width": mem.axi.addr_width, "id_width": mem.axi.id_width, "ops": 200,
              "max_beats": 16}
    result = simulate(mem, bench=BENCH, name="onchip", testcase="random_traffic",
                      params=params, seed=seed, array=True)
    print(f"{preset}: build {result.build_seconds:.1f} s, run {result.run_seconds:.1f} s")
