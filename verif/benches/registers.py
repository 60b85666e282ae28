"""cocotb bench of :class:`openmaia.tile.registers.HostRegisters` (contract: docs/registers.md).

Bus model: cocotbext-axi's ``AxiLiteMaster`` on ``axi``, with random pauses on all five channels
(AW, W, B, AR, R). The register block's inputs (TCP status, semaphores, every counter struct) are
driven with random values; :class:`RegisterModel` (also used by the Amaranth-simulator tests)
holds the expected contents: RW / W1C state, the snapshot of every wide counter, and the read
value of every address (``DECERR`` and zero where no register is).

Tests (each prints its seed through the harness; a failing seed reruns exactly):

* ``full_map``: every register read back against the model under random inputs; every
  writable register written with random data and random ``wstrb`` (partial writes through byte
  writes at unaligned addresses too) and read back; read-only registers written with random
  data and unchanged; W1C interrupt causes set by input edges, cleared one bit at a time (and
  the TCP acknowledge pulse seen); random unmapped addresses read and written (``DECERR``, and a
  whole-map read shows nothing changed).
* ``random_ops``: ``count`` random reads and writes over the whole address space, a read and a
  write in flight at once (to different registers), inputs re-randomised between batches.
* ``snapshot``: a 48-bit counter input counting by ``2**28 + k`` every cycle (its high part
  changes every ~16 cycles); ``pairs`` reads of ``_LO`` then ``_HI`` with random pauses between
  give values the counter held while ``_LO`` was read.

Parameters (:func:`openmaia.harness.bench_params`): ``config`` (preset name), ``faults``,
``pause`` (probability, every channel), ``count``, ``pairs``.
"""

from __future__ import annotations

import random

from amaranth.hdl import Shape
from amaranth.lib import data
from openmaia.bus.axi import AxiResp
from openmaia.tile.registers import Access, HostRegisters, counter_leaves
from openmaia.tile.tcp import TcpStatus

#: The inputs the bench drives (port name -> kind), all plain vectors in the Verilog.
INPUTS = ("tcp_status", "tcp_semaphores", "tcp_irq", "tcp_irq_code", "tcp_counters",
          "dma_counters", "ttu_counters", "tsram_counters", "tsram_err_sticky", "cq_head",
          "cq_error", "tile_counters", "fetch_counters", "tvp_counters")


def port_width(regs, name):
    return Shape.cast(regs.signature.members[name].shape).width


def registers_from_params(params) -> HostRegisters:
    from openmaia.config import get_config
    return HostRegisters.from_config(get_config(params.get("config", "small")),
                                     faults=frozenset(params.get("faults", ())))


class RegisterModel:
    """Expected register contents of ``regs`` (a :class:`HostRegisters`), from the inputs
    (``inputs[port]`` = raw integer) and the writes and reads so far."""

    def __init__(self, regs):
        self.regs = regs
        self.map = regs.map
        self.addr_mask = (1 << regs.addr_width) - 1
        self.by_word = {r.address >> 2: r for r in self.map}
        self.inputs = {name: 0 for name in INPUTS}
        self.stored = {(r.name, f.name): f.init for r in self.map for f in r.fields.values()
                       if f.access in (Access.RW, Access.W1C)}
        self.shadow = {r.name: 0 for r in self.map if r.snapshot and r.snapshot[0] == "hi"}
        self.pulses = []        # (reg, field, bits) of every W1P write, in order
        st = data.Layout.cast(TcpStatus)
        src = {
            ("STATUS", "state"): ("tcp_status", st["state"].offset, 2),
            ("STATUS", "source"): ("tcp_status", st["source"].offset, 3),
            ("STATUS", "outstanding"): ("tcp_status", st["outstanding"].offset, 1),
            ("STATUS", "irq_pending"): ("tcp_irq", 0, 1),
            ("STATUS", "tsram_error"): ("tsram_err_sticky", 0, 1),
            ("ERROR", "error"): ("tcp_status", st["error"].offset, 8),
            ("ERROR", "engine_error"): ("tcp_status", st["engine_error"].offset, 8),
            ("ERROR_POSITION", "position"): ("tcp_status", st["error_position"].offset, 32),
            ("POSITION", "position"): ("tcp_status", st["position"].offset, 32),
            ("ENGINE_ERRORS", "count"): ("tcp_status", st["engine_errors"].offset, 32),
            ("IRQ_CODE", "code"): ("tcp_irq_code", 0, 16),
            ("CQ_HEAD", "head"): ("cq_head", 0, 32),
            ("STATUS", "cq_error"): ("cq_error", 0, 1),
        }
        for i in range(regs.n_semaphores):
            src[(f"SEMAPHORES_{i // 2}", f"sem{i}")] = ("tcp_semaphores", 16 * i, 16)
        self.sources = src
        self.counters = {}
        for group, layout in regs.counter_groups.items():
            for path, offset, width in counter_leaves(layout):
                dotted = ".".join(str(p) for p in (group,) + path)
                self.counters[dotted] = (f"{group}_counters", offset, width)

    def _input(self, port, offset, width):
        return (self.inputs[port] >> offset) & ((1 << width) - 1)

    def counter(self, dotted):
        return self._input(*self.counters[dotted])

    def field_value(self, r, f):
        key = (r.name, f.name)
        if f.access in (Access.RW, Access.W1C):
            return self.stored[key]
        if f.access == Access.W1P:
            return 0
        if r.source is not None:
            live = self.counter(r.source)
            if r.snapshot is None:
                return live
            return live & 0xFFFF_FFFF if r.snapshot[0] == "lo" else self.shadow[r.name]
        if key in self.sources:
            return self._input(*self.sources[key])
        return f.init

    def register(self, address):
        return self.by_word.get((address & self.addr_mask) >> 2)

    def peek(self, address):
        """The read value of ``address`` with no side effect: (data, resp)."""
        r = self.register(address)
        if r is None:
            return 0, AxiResp.DECERR
        return sum(self.field_value(r, f) << f.offset for f in r.fields.values()), AxiResp.OKAY

    def read(self, address):
        value = self.peek(address)
        r = self.register(address)
        if r is not None and r.snapshot and r.snapshot[0] == "lo":
            self.shadow[r.snapshot[1]] = self.counter(r.source) >> 32
        return value

    def write(self, address, value, strb=0xF):
        r = self.register(address)
        if r is None:
            return AxiResp.DECERR
        mask = sum(0xFF << 8 * i for i in range(4) if strb >> i & 1)
        for f in r.fields.values():
            fm = (1 << f.width) - 1
            wd, wm = (value >> f.offset) & fm, (mask >> f.offset) & fm
            key = (r.name, f.name)
            if f.access == Access.RW:
                self.stored[key] = (self.stored[key] & ~wm) | (wd & wm)
            elif f.access == Access.W1C:
                self.stored[key] &= ~(wd & wm)
            elif f.access == Access.W1P and wd & wm:
                self.pulses.append((r.name, f.name, wd & wm))
        return AxiResp.OKAY

    def irq(self):
        return any(self.stored[("IRQ_STATUS", f)] and self.stored[("IRQ_ENABLE", f)]
                   for f in self.map["IRQ_STATUS"].fields)

    def set_inputs(self, new):
        """New input values (a dict of port -> raw int), held from now on: the IRQ_STATUS causes
        their edges set."""
        st = data.Layout.cast(TcpStatus)["state"].offset

        def state(inputs):
            return (inputs["tcp_status"] >> st) & 3

        old = dict(self.inputs)
        self.inputs.update(new)
        new = self.inputs
        rises = {"command": new["tcp_irq"] and not old["tcp_irq"],
                 "halted": state(new) == 1 and state(old) != 1,
                 "error": state(new) == 2 and state(old) != 2,
                 "tsram_error": new["tsram_err_sticky"] and not old["tsram_err_sticky"]}
        for name, rise in rises.items():
            if rise:
                self.stored[("IRQ_STATUS", name)] = 1

    def random_inputs(self, rng):
        self.set_inputs({name: rng.getrandbits(port_width(self.regs, name)) for name in INPUTS})

    def writable(self):
        return [r for r in self.map
                if any(f.access in (Access.RW,) for f in r.fields.values())]

    def unmapped(self, rng):
        while True:
            address = rng.randrange(0, 1 << self.regs.addr_width) & ~3
            if self.register(address) is None:
                return address


# ---- cocotb ---------------------------------------------------------------------------------

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
    from cocotbext.axi import AxiLiteBus, AxiLiteMaster
except ImportError:             # the model alone, outside a simulator
    cocotb = None

if cocotb is not None:
    from openmaia.harness import bench_params
    from openmaia.harness.streams import random_pauses

    CLOCK_NS = 10

    class Bench:
        def __init__(self, dut):
            self.dut = dut
            self.params = bench_params()
            self.rng = random.Random(cocotb.RANDOM_SEED)
            self.regs = registers_from_params(self.params)
            self.model = RegisterModel(self.regs)
            self.cycle = 0
            self.ack_pulses = 0

        async def start(self):
            dut = self.dut
            Clock(dut.clk, CLOCK_NS, unit="ns").start()
            for name in INPUTS:
                getattr(dut, name).value = 0
            dut.rst.value = 1
            self.master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "axi_"), dut.clk, dut.rst)
            pause = self.params.get("pause", 0.3)
            for channel in (self.master.write_if.aw_channel, self.master.write_if.w_channel,
                            self.master.write_if.b_channel, self.master.read_if.ar_channel,
                            self.master.read_if.r_channel):
                channel.set_pause_generator(random_pauses(random.Random(self.rng.random()),
                                                          pause))
            await ClockCycles(dut.clk, 3)
            dut.rst.value = 0
            cocotb.start_soon(self._watch())
            await ClockCycles(dut.clk, 2)

        async def _watch(self):
            while True:
                await RisingEdge(self.dut.clk)
                await ReadOnly()
                self.cycle += 1
                self.ack_pulses += int(self.dut.tcp_irq_ack.value)

        async def apply_inputs(self):
            for name in INPUTS:
                getattr(self.dut, name).value = self.model.inputs[name]
            await ClockCycles(self.dut.clk, 3)
            self.check_irq()

        def check_irq(self):
            """At a quiet point (no write in flight)."""
            got = int(self.dut.irq.value)
            assert got == self.model.irq(), f"irq {got}, expected {int(self.model.irq())}"

        async def read(self, address):
            expected = self.model.read(address)
            rsp = await self.master.read(address, 4)
            got = int.from_bytes(rsp.data, "little"), AxiResp(int(rsp.resp))
            r = self.model.register(address)
            assert got == expected, (f"read {address:#05x} ({r.name if r else 'unmapped'}): "
                                     f"{got[0]:#x} {got[1].name}, expected {expected[0]:#x} "
                                     f"{expected[1].name}")
            return got[0]

        async def write(self, address, value, strb=0xF):
            """A write of the bytes of ``value`` selected by ``strb`` (contiguous), through an
            unaligned byte address when ``strb`` does not start at byte 0."""
            first = (strb & -strb).bit_length() - 1
            nbytes = strb.bit_count()
            payload = (value >> 8 * first).to_bytes(4, "little")[:nbytes]
            expected = self.model.write(address, value, strb)
            rsp = await self.master.write(address + first, payload)
            assert AxiResp(int(rsp.resp)) == expected, \
                f"write {address:#05x}: {AxiResp(int(rsp.resp)).name}, expected {expected.name}"

        async def read_all(self):
            for r in self.model.map:
                await self.read(r.address)

    def _random_strb(rng):
        first = rng.randrange(4)
        last = rng.randrange(first, 4)
        return sum(1 << i for i in range(first, last + 1))

    @cocotb.test()
    async def full_map(dut):
        b = Bench(dut)
        await b.start()
        m, rng = b.model, b.rng
        m.random_inputs(rng)
        await b.apply_inputs()
        await b.read_all()
        for r in m.writable():
            for _ in range(3):
                await b.write(r.address, rng.getrandbits(32), _random_strb(rng))
                await b.read(r.address)
        before = {r.name: m.peek(r.address) for r in m.map}
        for r in m.map:
            if all(f.access == Access.RO for f in r.fields.values()):
                await b.write(r.address, rng.getrandbits(32))
                await b.read(r.address)
        assert {r.name: m.peek(r.address) for r in m.map} == before
        # W1C: every cause set by its input edge, then cleared one bit at a time.
        await b.write(m.map["IRQ_ENABLE"].address, 0xF)
        await b.write(m.map["IRQ_STATUS"].address, 0xF)
        m.set_inputs({"tcp_irq": 0, "tsram_err_sticky": 0})
        await b.apply_inputs()
        st = data.Layout.cast(TcpStatus)["state"].offset
        for value in (0, 1, 2):
            m.set_inputs({"tcp_status": (m.inputs["tcp_status"] & ~(3 << st)) | value << st})
            await b.apply_inputs()
        m.set_inputs({"tcp_irq": 1, "tsram_err_sticky": 1})
        await b.apply_inputs()
        assert int(dut.irq.value) == 1
        status = m.map["IRQ_STATUS"]
        assert await b.read(status.address) == 0xF
        acks = b.ack_pulses
        for name in rng.sample(list(status.fields), len(status.fields)):
            await b.write(status.address, 1 << status.fields[name].offset)
            await b.read(status.address)
            b.check_irq()
        assert b.ack_pulses == acks + 1, "clearing IRQ_STATUS.command must pulse tcp_irq_ack"
        assert int(dut.irq.value) == 0
        # Unmapped addresses: DECERR, and nothing changes.
        before = {r.name: m.peek(r.address) for r in m.map}
        for _ in range(40):
            address = m.unmapped(rng)
            await b.write(address, rng.getrandbits(32), _random_strb(rng))
            await b.read(address)
        assert {r.name: m.peek(r.address) for r in m.map} == before
        await b.read_all()
        dut._log.info(f"full_map: {len(m.map.registers)} registers, {b.cycle} cycles")

    @cocotb.test()
    async def random_ops(dut):
        b = Bench(dut)
        await b.start()
        m, rng = b.model, b.rng
        addresses = [r.address for r in m.map]
        count = b.params.get("count", 300)
        done = 0
        while done < count:
            m.random_inputs(rng)
            await b.apply_inputs()
            for _ in range(20):
                ra = rng.choice(addresses) if rng.random() < 0.9 else m.unmapped(rng)
                wa = rng.choice([r.address for r in m.writable()]) if rng.random() < 0.7 \
                    else rng.choice(addresses) if rng.random() < 0.8 else m.unmapped(rng)
                if rng.random() < 0.5 and ra != wa and m.register(wa) is not None:
                    task = cocotb.start_soon(b.write(wa, rng.getrandbits(32), _random_strb(rng)))
                    await b.read(ra)
                    await task
                elif rng.random() < 0.5:
                    await b.read(ra)
                else:
                    await b.write(wa, rng.getrandbits(32), _random_strb(rng))
                done += 1
            b.check_irq()
        await b.read_all()
        dut._log.info(f"random_ops: {done} operations, {b.cycle} cycles")

    @cocotb.test()
    async def snapshot(dut):
        b = Bench(dut)
        await b.start()
        m, rng = b.model, b.rng
        wide = [r for r in m.map if r.snapshot and r.snapshot[0] == "lo"]
        history = {}
        step = (1 << 28) + rng.randrange(1, 1 << 16)

        async def count(r):
            port, offset, width = m.counters[r.source]
            value = rng.getrandbits(width)
            other = m.inputs[port] & ~(((1 << width) - 1) << offset)
            while True:
                getattr(dut, port).value = other | value << offset
                history[b.cycle] = value
                await RisingEdge(dut.clk)
                value = (value + step) % (1 << width)

        checked = 0
        for r in rng.sample(wide, min(len(wide), 3)):
            hi = m.map[r.snapshot[1]]
            task = cocotb.start_soon(count(r))
            await ClockCycles(dut.clk, 2)
            for _ in range(b.params.get("pairs", 20)):
                c0 = b.cycle
                rsp = await b.master.read(r.address, 4)
                c1 = b.cycle
                await ClockCycles(dut.clk, rng.randrange(16, 48))
                rsp_hi = await b.master.read(hi.address, 4)
                lo = int.from_bytes(rsp.data, "little")
                value = int.from_bytes(rsp_hi.data, "little") << 32 | lo
                held = {history[c] for c in range(c0 - 1, c1 + 2) if c in history}
                assert value in held, (f"{r.source}: read {value:#x}, the counter held "
                                       f"{sorted(hex(v) for v in held)} during the _LO read")
                checked += 1
            task.cancel()
        dut._log.info(f"snapshot: {checked} pairs consistent")
