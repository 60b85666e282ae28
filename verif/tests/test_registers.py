"""Host registers (rtl/tile/registers.py, docs/registers.md): the declaration, the generated docs
and SDK constants, the Amaranth-simulator checks against :class:`RegisterModel` (every register,
RW round trips with strobes, RO writes ignored, W1C, W1P pulses, DECERR, the lo/hi snapshot of a
counting counter), each fault variant caught, lint, and the cocotb + Verilator bench
(``openmaia.benches.registers``: cocotbext-axi ``AxiLiteMaster`` with random pauses on all five
channels)."""

import random

import pytest
from amaranth.sim import Simulator
from openmaia.benches.registers import INPUTS, RegisterModel
from openmaia.bus.axi import AxiResp
from openmaia.config import PRESETS, get_config
from openmaia.harness import simulate
from openmaia.harness.elaborate import lint
from openmaia.sdk import registers as sdk
from openmaia.tile import registers as regs_mod
from openmaia.tile.registers import (
    FAULTS,
    Access,
    Field,
    HostRegisters,
    Register,
    RegisterMap,
    counter_leaves,
)
from openmaia.tile.ttu_engine import EngineCounters

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

BENCH = "openmaia.benches.registers"


def _regs(faults=frozenset(), config="small"):
    return HostRegisters.from_config(get_config(config), faults=faults)


# ---- declaration and generators -----------------------------------------------------------------

def test_generated_files_are_current():
    assert regs_mod.DOC_PATH.read_text() == regs_mod.markdown(), \
        f"docs/registers.md is stale: {regs_mod.GENERATOR}"
    assert regs_mod.SDK_PATH.read_text() == regs_mod.python_module(), \
        f"sdk/registers.py is stale: {regs_mod.GENERATOR}"


def test_sdk_constants_match_the_map():
    rmap = regs_mod.default_map()
    assert sdk.MAP_DIGEST == rmap.map_id == rmap["MAP_ID"].fields["crc"].init
    assert sdk.ADDRESS == {r.name: r.address for r in rmap}
    assert sdk.CONTROL_RESTART_MASK == 1 << rmap["CONTROL"].fields["restart"].offset
    lo, hi, width = sdk.COUNTERS["ttu.ttu.macs"]
    assert (lo, hi, width) == (rmap["CNT_TTU_TTU_MACS_LO"].address,
                               rmap["CNT_TTU_TTU_MACS_HI"].address, 48)


def test_every_preset_has_the_documented_map():
    ids = {name: HostRegisters.from_config(cfg).map.map_id for name, cfg in PRESETS.items()}
    assert set(ids.values()) == {sdk.MAP_DIGEST}, ids


def test_counter_window_follows_the_layouts():
    rmap = _regs().map
    leaves = counter_leaves(EngineCounters)
    assert len([p for p in leaves if p[2] > 32]) == 5 + 5 + 5 + 4
    for path, _, width in leaves:
        base = "CNT_TTU_" + "_".join(path).upper()
        if width > 32:
            assert rmap[base + "_LO"].snapshot == ("lo", base + "_HI")
            assert rmap[base + "_HI"].fields["value"].width == width - 32
        else:
            assert rmap[base].fields["value"].width == width
    sources = {r.source for r in rmap if r.source}
    assert {"tcp.retired", "dma.bytes_read", "ttu.c.rows", "tsram.accepted.3",
            "tsram.cycles"} <= sources


def test_declaration_rules():
    class Two(Register):
        """Two fields."""
        a = Field(3, Access.RW, init=5)
        b = Field(8, Access.W1C)
    r = Two()
    assert r.name == "TWO" and r.fields["b"].offset == 3 and r.init == 5
    with pytest.raises(ValueError, match="33 bits"):
        Register("X", fields={"a": Field(32, Access.RO), "b": Field(1, Access.RO)})
    with pytest.raises(ValueError, match="fit"):
        Field(2, Access.RW, init=4)
    rmap = RegisterMap(addr_width=4)
    rmap.add(Two())
    with pytest.raises(ValueError, match="twice"):
        rmap.add(Two())
    with pytest.raises(ValueError, match="overlaps"):
        rmap.add(Register("Y", fields={"a": Field(1, Access.RO)}), at=0)
    with pytest.raises(ValueError, match="semaphores"):
        HostRegisters(semaphores=0, tsram_counters={"a": 32})
    with pytest.raises(ValueError, match="unknown faults"):
        _regs(faults={"nope"})
    with pytest.raises(ValueError, match="does not fit"):
        HostRegisters(semaphores=16, tsram_counters=_regs().tsram_layout, addr_width=8)


def test_lint():
    lint(_regs(), name="host_registers")


# ---- Amaranth simulator -------------------------------------------------------------------------

class Axil:
    """A minimal AXI4-Lite manager for Amaranth testbenches (one transaction at a time, random
    gaps on valid and ready)."""

    def __init__(self, ctx, bus, rng):
        self.ctx, self.bus, self.rng = ctx, bus, rng

    async def _gap(self):
        while self.rng.random() < 0.3:
            await self.ctx.tick()

    async def write(self, address, value, strb=0xF):
        ctx, bus = self.ctx, self.bus
        await self._gap()
        ctx.set(bus.awaddr, address)
        ctx.set(bus.awvalid, 1)
        ctx.set(bus.wdata, value)
        ctx.set(bus.wstrb, strb)
        ctx.set(bus.wvalid, 1)
        aw = w = False
        while not (aw and w):
            aw_hs = ctx.get(bus.awvalid) and ctx.get(bus.awready)
            w_hs = ctx.get(bus.wvalid) and ctx.get(bus.wready)
            await ctx.tick()
            if aw_hs:
                aw = True
                ctx.set(bus.awvalid, 0)
            if w_hs:
                w = True
                ctx.set(bus.wvalid, 0)
        await self._gap()
        ctx.set(bus.bready, 1)
        while not ctx.get(bus.bvalid):
            await ctx.tick()
        resp = ctx.get(bus.bresp)
        await ctx.tick()
        ctx.set(bus.bready, 0)
        return AxiResp(resp)

    async def read(self, address):
        ctx, bus = self.ctx, self.bus
        await self._gap()
        ctx.set(bus.araddr, address)
        ctx.set(bus.arvalid, 1)
        while not ctx.get(bus.arready):
            await ctx.tick()
        await ctx.tick()
        ctx.set(bus.arvalid, 0)
        await self._gap()
        ctx.set(bus.rready, 1)
        while not ctx.get(bus.rvalid):
            await ctx.tick()
        got = ctx.get(bus.rdata), AxiResp(ctx.get(bus.rresp))
        await ctx.tick()
        ctx.set(bus.rready, 0)
        return got


def _run(dut, bench, *background):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    for other in background:
        sim.add_testbench(other, background=True)
    sim.run()


def _set_inputs(ctx, dut, model):
    for name in INPUTS:
        port = getattr(dut, name)
        ctx.set(port.as_value() if hasattr(port, "as_value") else port, model.inputs[name])


async def _check_read(bus, model, address):
    expected = model.read(address)
    got = await bus.read(address)
    r = model.register(address)
    assert got == expected, (f"{r.name if r else 'unmapped'} @ {address:#x}: "
                             f"{got[0]:#x} {got[1].name}, expected {expected[0]:#x} "
                             f"{expected[1].name}")
    return got[0]


async def _check_write(bus, model, address, value, strb=0xF):
    assert await bus.write(address, value, strb) == model.write(address, value, strb)


def check_map(dut, rng):
    """Every register against the model; RW round trips with random strobes; RO writes ignored;
    W1C one bit at a time; W1P and doorbell pulses; DECERR reads and writes, changing nothing."""
    model = RegisterModel(dut)
    pulses = []

    async def watch(ctx):
        async for _, _, restart, clear, doorbell, ack, flush in ctx.tick().sample(
                dut.restart, dut.counters_clear, dut.doorbell, dut.tcp_irq_ack, dut.flush):
            pulses.extend(n for n, v in (("restart", restart), ("counters_clear", clear),
                                         ("doorbell", doorbell), ("ack", ack),
                                         ("flush", flush)) if v)

    async def bench(ctx):
        bus = Axil(ctx, dut.axi, rng)
        model.random_inputs(rng)
        _set_inputs(ctx, dut, model)
        await ctx.tick().repeat(3)
        for r in model.map:
            await _check_read(bus, model, r.address)
        for r in model.writable():
            for _ in range(4):
                await _check_write(bus, model, r.address, rng.getrandbits(32),
                                   rng.randrange(16))
                await _check_read(bus, model, r.address)
        assert ctx.get(dut.cq_base) == (model.stored[("CQ_BASE_HI", "addr")] << 32
                                        | model.stored[("CQ_BASE_LO", "addr")])
        assert ctx.get(dut.run) == model.stored[("CONTROL", "run")]
        for q in range(dut.dma_queues):
            for end in ("base", "limit"):
                full = (model.stored[(f"DMA_WINDOW{q}_{end.upper()}_HI", "addr")] << 32
                        | model.stored[(f"DMA_WINDOW{q}_{end.upper()}_LO", "addr")])
                assert ctx.get(getattr(dut, f"dma_window_{end}")[q]) == \
                    full & ((1 << dut.hbm_addr_bits) - 1), (q, end)
        before = {r.name: model.peek(r.address) for r in model.map}
        for r in model.map:
            if all(f.access == Access.RO for f in r.fields.values()):
                await _check_write(bus, model, r.address, rng.getrandbits(32))
        assert before == {r.name: model.peek(r.address) for r in model.map}
        for _ in range(30):
            address = model.unmapped(rng)
            await _check_write(bus, model, address, rng.getrandbits(32), rng.randrange(16))
            await _check_read(bus, model, address)
        for r in model.map:
            await _check_read(bus, model, r.address)
        # W1P pulses and the doorbell
        pulses.clear()
        control = model.map["CONTROL"]
        await _check_write(bus, model, control.address, 0b0110 | model.stored[("CONTROL",
                                                                               "run")])
        await _check_write(bus, model, model.map["CQ_DOORBELL"].address, 7)
        await _check_write(bus, model, control.address, 0b0010, strb=0b0010)  # no byte 0
        await _check_write(bus, model, control.address, 0b10000 | model.stored[("CONTROL",
                                                                                 "run")])
        await ctx.tick().repeat(2)
        assert pulses == ["restart", "counters_clear", "doorbell", "flush"], pulses
        # W1C: all causes set (edges), then cleared one at a time
        status = model.map["IRQ_STATUS"]
        await _check_write(bus, model, model.map["IRQ_ENABLE"].address, 0xF)
        await _check_write(bus, model, status.address, 0xF)
        for change in ({"tcp_irq": 0, "tsram_err_sticky": 0, "tcp_status": 0},
                       {"tcp_status": 1}, {"tcp_status": 2},
                       {"tcp_irq": 1, "tsram_err_sticky": 1}):
            model.set_inputs(change)
            _set_inputs(ctx, dut, model)
            await ctx.tick().repeat(3)
        assert await _check_read(bus, model, status.address) == 0xF
        assert ctx.get(dut.irq) == 1
        pulses.clear()
        for name in rng.sample(list(status.fields), 4):
            await _check_write(bus, model, status.address, 1 << status.fields[name].offset)
            await _check_read(bus, model, status.address)
            assert ctx.get(dut.irq) == model.irq()
        assert pulses == ["ack"], pulses

    _run(dut, bench, watch)


def check_snapshot(dut, rng, pairs=12):
    """A 48-bit counter counting by about 2**28 a cycle; every _LO, _HI pair read with a gap of
    16..48 cycles gives a value the counter held during the _LO read."""
    model = RegisterModel(dut)
    r = model.map["CNT_TTU_TTU_MACS_LO"]
    hi = model.map[r.snapshot[1]]
    _, offset, width = model.counters[r.source]
    step = (1 << 28) + rng.randrange(1, 1 << 16)
    history = []
    done = []

    async def counter(ctx):
        value = rng.getrandbits(width)
        while True:
            ctx.set(dut.ttu_counters.as_value(), value << offset)
            history.append(value)
            await ctx.tick()
            value = (value + step) % (1 << width)

    async def bench(ctx):
        bus = Axil(ctx, dut.axi, rng)
        await ctx.tick().repeat(2)
        for _ in range(pairs):
            c0 = len(history)
            lo, resp = await bus.read(r.address)
            c1 = len(history)
            assert resp == AxiResp.OKAY
            await ctx.tick().repeat(rng.randrange(16, 48))
            value = (await bus.read(hi.address))[0] << 32 | lo
            held = history[max(0, c0 - 1):c1 + 1]
            assert value in held, f"read {value:#x}, held {[hex(v) for v in held]}"
        done.append(True)

    _run(dut, bench, counter)
    assert done


def test_map_amaranth(seed):
    print(f"seed {seed}")
    check_map(_regs(), random.Random(seed))


def test_snapshot_amaranth(seed):
    print(f"seed {seed}")
    check_snapshot(_regs(), random.Random(seed))


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_is_caught(fault, seed):
    check = check_snapshot if fault == "no_snapshot" else check_map
    with pytest.raises(AssertionError):
        check(_regs(faults={fault}), random.Random(seed))


# ---- cocotb + Verilator -------------------------------------------------------------------------

def _cocotb(testcase, *, faults=(), check=True, **params):
    dut = _regs(faults=frozenset(faults))
    name = "host_registers" + "".join(f"_{f}" for f in sorted(faults))
    result = simulate(dut, bench=BENCH, name=name, testcase=testcase, check=check,
                      params={"config": "small", "faults": sorted(faults), "pause": 0.3}
                      | params)
    print(f"{testcase}: build {result.build_seconds:.1f} s (cached {result.build_cached}), "
          f"run {result.run_seconds:.1f} s, log {result.log_file}")
    return result


@pytest.mark.sim
def test_cocotb_bench():
    _cocotb("full_map,random_ops,snapshot", count=300, pairs=12)


@pytest.mark.sim
@pytest.mark.slow
def test_cocotb_long():
    _cocotb("random_ops,snapshot", count=5000, pairs=100)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("fault,testcase", [("w1c_clears_all", "full_map"),
                                            ("no_snapshot", "snapshot"),
                                            ("strobe_ignored", "full_map")])
def test_cocotb_fault_is_caught(fault, testcase):
    result = _cocotb(testcase, faults=(fault,), check=False, pairs=6)
    assert not result.passed, f"the bench missed fault {fault}"
