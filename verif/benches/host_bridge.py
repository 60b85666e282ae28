"""cocotb bench of :class:`openmaia.fpga.host_bridge.HostBridge` (contract: docs/fpga.md, "Host
link"; protocol: :mod:`openmaia.fpga.link`).

Models: the host is :class:`~openmaia.benches.uart_model.LinkHost` on a bit-level
``UartDriver`` (``rx`` pin, random idle gaps between bytes) and ``UartMonitor`` (``tx`` pin,
checks start / stop bits); the subordinates are cocotbext-axi ``AxiLiteRam`` (``m_axil_``) and
``AxiRam`` (``m_axi_``) with random pause generators on all their channels. Both RAMs answer
through a :class:`BusMap`: the memory RAM holds a window of ``mem_bytes`` at the top of the
address space, with an SLVERR block inside it; every address below the window answers DECERR;
the register RAM has an SLVERR and a DECERR block at the top of its space. A port monitor checks
every AW / AR the bridge issues is a single full-width INCR beat at a beat-aligned address.

Test ``random_ops``: directed cases first (every error kind, each followed by a good access:
illegal opcode, bad register addresses, zero length, a range past the address space, SLVERR /
DECERR blocks hit by the first beats of a longer access, garbage between frames, a break in the
middle of a MEM_WRITE and of a MEM_READ response), then ``ops`` random requests (PING,
REG_READ / REG_WRITE, MEM_WRITE / MEM_READ of random length 1..``max_len`` at random
alignment, some of them reaching into an error block). Each response is checked against a
Python reference of both memories (payload and status, computed beat by beat as the bridge
must); at the end the whole memory window and register space are compared byte for byte (a
misplaced or clobbered byte anywhere fails), and the ``stats`` counters against what the bench
sent and saw.

Parameters (:func:`openmaia.harness.bench_params`): ``divisor``, ``reg_addr_bits``,
``mem_addr_bits``, ``data_bytes``, ``mem_bytes``, ``ops``, ``max_len``, ``pause``, ``gap``,
``counter_bits``, ``ident``.
"""

import json
import logging
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiBus, AxiLiteBus, AxiResp
from cocotbext.axi.axi_ram import AxiRamRead, AxiRamWrite
from cocotbext.axi.axil_ram import AxiLiteRamRead, AxiLiteRamWrite
from cocotbext.axi.memory import Memory

from openmaia.benches.uart_model import LinkHost, UartDriver, UartMonitor
from openmaia.errors import ErrorCode
from openmaia.fpga import link
from openmaia.fpga.host_bridge import HOST_BRIDGE_STAT_NAMES
from openmaia.harness import bench_params
from openmaia.harness.streams import random_pauses

CLOCK_NS = 10
SLVERR_BLOCK = 256          # bytes of the SLVERR block in the memory window


class BusError(Exception):
    pass


class BusMap:
    """Which byte addresses a RAM holds (``base .. base + size``) and which answer an error:
    ``slverr`` / ``decerr`` are lists of half-open ranges; anything outside the window is
    DECERR."""

    def __init__(self, base, size, *, slverr=(), decerr=()):
        self.base, self.size = base, size
        self.slverr, self.decerr = list(slverr), list(decerr)

    def kind(self, addr, length=1):
        for lo, hi in self.decerr:
            if addr < hi and addr + length > lo:
                return ErrorCode.AXI_DECERR
        if addr < self.base or addr + length > self.base + self.size:
            return ErrorCode.AXI_DECERR
        for lo, hi in self.slverr:
            if addr < hi and addr + length > lo:
                return ErrorCode.AXI_SLVERR
        return ErrorCode.OK


class _Mapped:
    """Mixin for the cocotbext-axi RAM interfaces: accesses go through a :class:`BusMap`; an
    error raises (the model answers SLVERR) and, for DECERR, the response sent next is
    rewritten to DECERR (cocotbext-axi has no other way to answer DECERR)."""

    def _map_setup(self, bus_map, channel, field):
        self.bus_map = bus_map
        self._decerr = False
        ch = getattr(self, channel)
        send = ch.send

        async def send_mapped(obj):
            if self._decerr and int(getattr(obj, field)) == AxiResp.SLVERR:
                setattr(obj, field, AxiResp.DECERR)
            self._decerr = False
            await send(obj)

        ch.send = send_mapped

    def _offset(self, address, length):
        kind = self.bus_map.kind(address, length)
        if kind != ErrorCode.OK:
            self._decerr = kind == ErrorCode.AXI_DECERR
            raise BusError(kind.name)
        return address - self.bus_map.base


def _mapped_classes(write_base, read_base):
    class Write(_Mapped, write_base):
        def __init__(self, bus, clock, reset, bus_map, mem):
            super().__init__(bus, clock, reset, mem=mem)
            self._map_setup(bus_map, "b_channel", "bresp")

        async def _write(self, address, data):
            self.write(self._offset(address, len(data)), data)

    class Read(_Mapped, read_base):
        def __init__(self, bus, clock, reset, bus_map, mem):
            super().__init__(bus, clock, reset, mem=mem)
            self._map_setup(bus_map, "r_channel", "rresp")

        async def _read(self, address, length):
            return self.read(self._offset(address, length), length)

    return Write, Read


class MappedRam(Memory):
    """An ``AxiRam`` (``lite=False``) or ``AxiLiteRam`` (``lite=True``) answering through a
    :class:`BusMap`."""

    def __init__(self, bus, clock, reset, bus_map, *, lite):
        super().__init__(bus_map.size)
        write_cls, read_cls = _mapped_classes(*((AxiLiteRamWrite, AxiLiteRamRead) if lite
                                                else (AxiRamWrite, AxiRamRead)))
        self.write_if = write_cls(bus.write, clock, reset, bus_map, self.mem)
        self.read_if = read_cls(bus.read, clock, reset, bus_map, self.mem)
        self.bus_map = bus_map

    def channels(self):
        return [getattr(side, name) for side in (self.write_if, self.read_if)
                for name in ("aw_channel", "w_channel", "b_channel", "ar_channel", "r_channel")
                if hasattr(side, name)]


class Reference:
    """What the bridge must answer, beat by beat, and the memories it must leave."""

    def __init__(self, mem_map, mem, reg_map, regs, *, data_bytes, mem_addr_bits,
                 reg_addr_bits, ident):
        self.mem_map, self.mem = mem_map, mem            # bytearray of the window
        self.reg_map, self.regs = reg_map, regs          # bytearray of the register space
        self.D = data_bytes
        self.mem_addr_bits, self.reg_addr_bits = mem_addr_bits, reg_addr_bits
        self.ident = ident

    def _beats(self, addr, length):
        end = addr + length
        while addr < end:
            stop = min(end, (addr // self.D + 1) * self.D)
            yield addr, stop - addr
            addr = stop

    def _first_error(self, codes):
        return next((c for c in codes if c != ErrorCode.OK), ErrorCode.OK)

    def mem_ok(self, addr, length):
        return 1 <= length <= link.MAX_LENGTH and addr + length <= 1 << self.mem_addr_bits

    def mem_write(self, addr, data):
        if not self.mem_ok(addr, len(data)):
            return link.Response(link.Opcode.MEM_WRITE, b"", ErrorCode.ILLEGAL_FIELD)
        codes = []
        for a, n in self._beats(addr, len(data)):
            code = self.mem_map.kind(a - a % self.D, self.D)
            if code == ErrorCode.OK:
                o = a - self.mem_map.base
                self.mem[o:o + n] = data[a - addr:a - addr + n]
            codes.append(code)
        return link.Response(link.Opcode.MEM_WRITE, b"", self._first_error(codes))

    def mem_read(self, addr, length):
        """The expected response, and a mask of the payload bytes that must match (bytes of a
        failed beat are the model's zeros and are not compared)."""
        if not self.mem_ok(addr, length):
            return link.Response(link.Opcode.MEM_READ, b"", ErrorCode.ILLEGAL_FIELD), b""
        codes, data, mask = [], bytearray(), bytearray()
        for a, n in self._beats(addr, length):
            code = self.mem_map.kind(a - a % self.D, self.D)
            o = a - self.mem_map.base
            data += self.mem[o:o + n] if code == ErrorCode.OK else bytes(n)
            mask += bytes([code == ErrorCode.OK]) * n
            codes.append(code)
        return link.Response(link.Opcode.MEM_READ, bytes(data), self._first_error(codes)), mask

    def reg_ok(self, addr):
        return addr % 4 == 0 and addr < 1 << self.reg_addr_bits

    def reg_write(self, addr, value):
        if not self.reg_ok(addr):
            return link.Response(link.Opcode.REG_WRITE, b"", ErrorCode.ILLEGAL_FIELD)
        code = self.reg_map.kind(addr, 4)
        if code == ErrorCode.OK:
            self.regs[addr:addr + 4] = value.to_bytes(4, "little")
        return link.Response(link.Opcode.REG_WRITE, b"", code)

    def reg_read(self, addr):
        if not self.reg_ok(addr):
            return link.Response(link.Opcode.REG_READ, b"", ErrorCode.ILLEGAL_FIELD), b""
        code = self.reg_map.kind(addr, 4)
        value = bytes(self.regs[addr:addr + 4]) if code == ErrorCode.OK else bytes(4)
        return link.Response(link.Opcode.REG_READ, value, code), bytes([code == 0]) * 4

    def ping(self):
        return link.Response(link.Opcode.PING, self.ident.to_bytes(4, "little"), ErrorCode.OK)


class PortMonitor:
    """Every AW / AR on ``m_axi``: one beat, full width, INCR, beat-aligned."""

    def __init__(self, dut, size_code, data_bytes):
        self.dut, self.size_code, self.D = dut, size_code, data_bytes
        self.count = {"aw": 0, "ar": 0}
        self.bad = []

    async def run(self):
        dut = self.dut
        while True:
            await FallingEdge(dut.clk)
            for ch in ("aw", "ar"):
                if int(getattr(dut, f"m_axi__{ch}valid").value) and int(
                        getattr(dut, f"m_axi__{ch}ready").value):
                    self.count[ch] += 1
                    addr = getattr(dut, f"m_axi__{ch}addr").value.to_unsigned()
                    fields = (getattr(dut, f"m_axi__{ch}len").value.to_unsigned(),
                              getattr(dut, f"m_axi__{ch}size").value.to_unsigned(),
                              getattr(dut, f"m_axi__{ch}burst").value.to_unsigned())
                    if fields != (0, self.size_code, 1) or addr % self.D:
                        self.bad.append((ch, hex(addr), fields))


def bench_params_for(bridge, **overrides) -> dict:
    """The bench's parameters for a :class:`~openmaia.fpga.host_bridge.HostBridge` (its ports,
    divisor, PING word), with the stimulus defaults of the default test tier; ``overrides``
    change any of them."""
    return {"divisor": bridge.divisor, "reg_addr_bits": bridge.reg_sig.addr_width,
            "mem_addr_bits": bridge.mem_sig.addr_width, "data_bytes": bridge.mem_sig.data_bytes,
            "mem_bytes": 8192, "ops": 30, "max_len": 4 * bridge.mem_sig.data_bytes + 7,
            "pause": 0.3, "gap": 0.1, "counter_bits": bridge.counter_bits,
            "ident": bridge.ident} | overrides


def stats(dut, counter_bits):
    v = dut.stats.value.to_unsigned()
    mask = (1 << counter_bits) - 1
    return {name: (v >> (counter_bits * k)) & mask for k, name in enumerate(HOST_BRIDGE_STAT_NAMES)}


class Bench:
    def __init__(self, dut, prm, rng):
        self.dut, self.prm, self.rng = dut, prm, rng
        self.D = prm["data_bytes"]
        aw, size = prm["mem_addr_bits"], prm["mem_bytes"]
        base = (1 << aw) - size
        self.base = base
        slv_lo = base + size // 2
        self.slverr = (slv_lo, slv_lo + SLVERR_BLOCK)
        self.mem_map = BusMap(base, size, slverr=[self.slverr])
        reg_size = 1 << prm["reg_addr_bits"]
        self.reg_slverr = (reg_size - 64, reg_size - 32)
        self.reg_decerr = (reg_size - 32, reg_size)
        self.reg_map = BusMap(0, reg_size, slverr=[self.reg_slverr], decerr=[self.reg_decerr])
        self.ram = MappedRam(AxiBus.from_prefix(dut, "m_axi_"), dut.clk, dut.rst,
                             self.mem_map, lite=False)
        self.regs = MappedRam(AxiLiteBus.from_prefix(dut, "m_axil_"), dut.clk, dut.rst,
                              self.reg_map, lite=True)
        for itf in (self.ram, self.regs):
            for side in (itf.write_if, itf.read_if):
                side.log.setLevel(logging.ERROR)
            for ch in itf.channels():
                ch.set_pause_generator(random_pauses(random.Random(rng.random()), prm["pause"]))
        init_mem = rng.randbytes(size)
        init_regs = rng.randbytes(reg_size)
        self.ram.write(0, init_mem)
        self.regs.write(0, init_regs)
        self.ref = Reference(self.mem_map, bytearray(init_mem), self.reg_map,
                             bytearray(init_regs), data_bytes=self.D, mem_addr_bits=aw,
                             reg_addr_bits=prm["reg_addr_bits"], ident=prm["ident"])
        divisor = prm["divisor"]
        self.driver = UartDriver(dut.rx, clock_ns=CLOCK_NS, divisor=divisor,
                                 rng=random.Random(rng.random()), gap_probability=prm["gap"])
        self.monitor = UartMonitor(dut.tx, clock_ns=CLOCK_NS, divisor=divisor)
        self.host = LinkHost(self.driver, self.monitor, slack_ns=CLOCK_NS * 4000)
        self.ports = PortMonitor(dut, (self.D - 1).bit_length(), self.D)
        self.expect = {"frames": 0, "errors": 0, "dropped": 0, "aborts": 0,
                       "framing_errors": 0}
        self.ops = {}

    async def start(self):
        dut = self.dut
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        dut.rst.value = 1
        await ClockCycles(dut.clk, 5)
        dut.rst.value = 0
        await ClockCycles(dut.clk, 5)
        self.monitor.start()
        cocotb.start_soon(self.ports.run())

    def _tally(self, name, got, want):
        self.expect["frames"] += 1
        self.expect["errors"] += want.status != ErrorCode.OK
        key = f"{name.split()[0]}:{want.status.name}"
        self.ops[key] = self.ops.get(key, 0) + 1
        assert got.opcode == want.opcode, f"{name}: opcode {got.opcode:#x} != {want.opcode:#x}"
        assert got.status == want.status, f"{name}: status {got.status!r}, want {want.status!r}"

    async def ping(self):
        got = await self.host.ping()
        want = self.ref.ping()
        self._tally("ping", got, want)
        assert got.payload == want.payload, f"ping {got.payload.hex()} != {want.payload.hex()}"

    async def mem_write(self, addr, data):
        got = await self.host.mem_write(addr, data)
        self._tally(f"mem_write {addr:#x}+{len(data)}", got, self.ref.mem_write(addr, data))
        assert got.payload == b""

    async def mem_read(self, addr, length):
        got = await self.host.mem_read(addr, length)
        want, mask = self.ref.mem_read(addr, length)
        name = f"mem_read {addr:#x}+{length}"
        self._tally(name, got, want)
        assert len(got.payload) == len(want.payload), f"{name}: {len(got.payload)} bytes"
        bad = [i for i, m in enumerate(mask) if m and got.payload[i] != want.payload[i]]
        assert not bad, (f"{name}: {len(bad)} bytes differ, first +{bad[0]}: "
                         f"{got.payload[bad[0]]:#04x} != {want.payload[bad[0]]:#04x}")

    async def reg_write(self, addr, value):
        got = await self.host.reg_write(addr, value)
        self._tally(f"reg_write {addr:#x}", got, self.ref.reg_write(addr, value))

    async def reg_read(self, addr):
        got = await self.host.reg_read(addr)
        want, mask = self.ref.reg_read(addr)
        self._tally(f"reg_read {addr:#x}", got, want)
        assert len(got.payload) == len(want.payload)
        for i, m in enumerate(mask):
            assert not m or got.payload[i] == want.payload[i], (
                f"reg_read {addr:#x}: {got.payload.hex()} != {want.payload.hex()}")

    async def illegal_opcode(self, op):
        got = await self.host.transact(bytes((link.REQ_SYNC, op)))
        self._tally(f"opcode {op:#x}", got, link.Response(op, b"", ErrorCode.ILLEGAL_OPCODE))

    async def garbage(self, n):
        junk = bytes(self.rng.choice([b for b in range(256) if b != link.REQ_SYNC])
                     for _ in range(n))
        await self.driver.send(junk)
        self.expect["dropped"] += n

    async def break_during(self, request, keep_bytes):
        """Send ``request[:keep_bytes]``, then a break, then resynchronise with PING. A
        MEM_WRITE cut in its data has written the beats whose last byte arrived, and nothing
        of the beat it was collecting."""
        await self.driver.send(request[:keep_bytes])
        op, fields = link.decode_request(request)
        header = 2 + link.REQUEST_FIELD_BYTES[op]
        if op == link.Opcode.MEM_WRITE and keep_bytes > header:
            addr, end = fields["addr"], fields["addr"] + keep_bytes - header
            done = end - end % self.D
            if done > addr:
                self.ref.mem_write(addr, fields["data"][:done - addr])
        reply = await self.host.resync()
        self.expect["aborts"] += 1
        self.expect["framing_errors"] += 1
        self.expect["frames"] += 1
        assert reply.opcode == link.Opcode.PING and reply.ok, f"after a break: {reply}"

    async def break_in_response(self, addr, length, after_bytes):
        """A MEM_READ whose response is cut by a break after ``after_bytes`` bytes arrived."""
        await self.driver.send(link.encode_mem_read(addr, length))
        await self.monitor.recv(after_bytes, timeout_ns=self.monitor.byte_ns() * 100
                                + self.host.slack_ns)
        reply = await self.host.resync()
        self.expect["aborts"] += 1
        self.expect["framing_errors"] += 1
        self.expect["frames"] += 1
        assert reply.opcode == link.Opcode.PING and reply.ok, f"after a break: {reply}"

    # -- stimulus -----------------------------------------------------------------------------

    def good_addr(self, length):
        """A random range of ``length`` bytes in the window, clear of the SLVERR block."""
        while True:
            a = self.base + self.rng.randrange(self.mem_map.size - length + 1)
            if a + length <= self.slverr[0] or a >= self.slverr[1]:
                return a

    def good_reg(self):
        return 4 * self.rng.randrange(self.reg_slverr[0] // 4)

    async def directed(self):
        D, rng = self.D, self.rng
        await self.ping()
        await self.illegal_opcode(0xEE)
        await self.illegal_opcode(len(link.Opcode))
        await self.ping()
        await self.garbage(5)
        await self.reg_read(2)                                    # unaligned
        await self.reg_write(self.reg_decerr[1] + 4 if self.reg_decerr[1] < 1 << 16 else 1,
                             1)                                   # beyond the register space
        await self.reg_write(self.good_reg(), rng.getrandbits(32))
        await self.reg_read(self.reg_slverr[0])
        await self.reg_write(self.reg_slverr[0] + 4, 5)
        await self.reg_read(self.reg_decerr[0] + 8)
        await self.reg_write(self.reg_decerr[0], 7)
        await self.reg_read(self.good_reg())
        # zero length and ranges past the address space: no bus access, data discarded
        top = 1 << self.prm["mem_addr_bits"]
        got = await self.host.transact(bytes((link.REQ_SYNC, link.Opcode.MEM_WRITE))
                                       + (self.base).to_bytes(8, "little") + bytes(2))
        self._tally("mem_write len 0", got, link.Response(link.Opcode.MEM_WRITE, b"",
                                                          ErrorCode.ILLEGAL_FIELD))
        got = await self.host.transact(bytes((link.REQ_SYNC, link.Opcode.MEM_READ))
                                       + (self.base).to_bytes(8, "little") + bytes(2))
        self._tally("mem_read len 0", got, link.Response(link.Opcode.MEM_READ, b"",
                                                         ErrorCode.ILLEGAL_FIELD))
        await self.mem_write(top - 3, rng.randbytes(5))
        await self.mem_read(top - 2, 3)
        await self.mem_write(1 << 63, rng.randbytes(2))
        # SLVERR / DECERR on the first beats, good beats after them: status = first error
        lo, hi = self.slverr
        await self.mem_write(hi - 2 * D + 1, rng.randbytes(4 * D))
        await self.mem_read(hi - D - 3, 3 * D + 1)
        await self.mem_write(self.base - D, rng.randbytes(3 * D + 2))
        await self.mem_read(self.base - 2 * D + 5, 3 * D)
        await self.mem_write(top - 2 * D, rng.randbytes(2 * D))       # the window's last bytes
        await self.mem_read(top - 2 * D - 1, 2 * D + 1)
        # partial first / last words around a good range
        a = self.good_addr(3 * D)
        await self.mem_write(a + 1, rng.randbytes(1))
        await self.mem_write(a + D - 1, rng.randbytes(D + 2))
        await self.mem_read(a, 3 * D)
        # breaks: inside a MEM_WRITE's data, inside its header, inside a MEM_READ response
        a = self.good_addr(40)
        await self.break_during(link.encode_mem_write(a, rng.randbytes(40)), 12 + 17)
        await self.break_during(link.encode_mem_write(a, rng.randbytes(40)), 5)
        await self.break_in_response(a, 40, 9)
        await self.mem_read(a, 40)

    async def random_ops(self, n):
        rng, prm = self.rng, self.prm
        for _ in range(n):
            kind = rng.choices(["ping", "reg_r", "reg_w", "mem_w", "mem_r", "err"],
                               [1, 3, 3, 8, 8, 2])[0]
            length = rng.choice([1, 2, 3, self.D, rng.randint(1, prm["max_len"])])
            if kind == "ping":
                await self.ping()
            elif kind == "reg_r":
                await self.reg_read(self.good_reg())
            elif kind == "reg_w":
                await self.reg_write(self.good_reg(), rng.getrandbits(32))
            elif kind == "mem_w":
                await self.mem_write(self.good_addr(length), rng.randbytes(length))
            elif kind == "mem_r":
                await self.mem_read(self.good_addr(length), length)
            else:
                a = rng.randint(self.slverr[0] - length, self.slverr[1])
                if rng.random() < 0.5:
                    await self.mem_write(a, rng.randbytes(length))
                else:
                    await self.mem_read(a, length)

    async def finish(self):
        dut, prm = self.dut, self.prm
        await ClockCycles(dut.clk, 20)
        self.monitor.check()
        assert not self.ports.bad, f"illegal AXI requests: {self.ports.bad[:5]}"
        got = self.ram.read(0, self.mem_map.size)
        bad = [i for i in range(len(got)) if got[i] != self.ref.mem[i]]
        assert not bad, (f"{len(bad)} memory bytes differ from the reference, first at "
                         f"{self.base + bad[0]:#x}: {got[bad[0]]:#04x} != "
                         f"{self.ref.mem[bad[0]]:#04x}")
        got = self.regs.read(0, self.reg_map.size)
        assert got == bytes(self.ref.regs), "register space differs from the reference"
        s = stats(dut, prm["counter_bits"])
        for name, value in self.expect.items():
            assert s[name] == value, f"stats.{name} = {s[name]}, expected {value}"
        assert s["rx_bytes"] == self.driver.bytes_sent, (s["rx_bytes"], self.driver.bytes_sent)
        assert s["tx_bytes"] == self.monitor.bytes_received, (
            s["tx_bytes"], self.monitor.bytes_received)
        assert s["overruns"] == 0, f"{s['overruns']} bytes lost to receive FIFO overruns"
        assert s["busy"] >= s["stall_in"] + s["stall_out"] + s["stall_axi"] > 0, s
        want = {"ping:OK", "opcode:ILLEGAL_OPCODE"} | {
            f"{op}:{code}" for op in ("reg_read", "reg_write", "mem_read", "mem_write")
            for code in ("OK", "ILLEGAL_FIELD", "AXI_SLVERR", "AXI_DECERR")}
        assert want <= set(self.ops), f"never answered: {sorted(want - set(self.ops))}"
        dut._log.info("host bridge: %d requests, %d AW, %d AR, ops %s", self.host.requests,
                      self.ports.count["aw"], self.ports.count["ar"],
                      dict(sorted(self.ops.items())))
        dut._log.info("stats: %s", s)


@cocotb.test()
async def timing(dut):
    """No pauses, no gaps: for each kind of request, the cycles from the first start bit of the
    request to the end of the response's last stop bit, against the bytes' own line time
    (``10 x divisor`` cycles a byte). The difference (the bridge's turnaround, AXI accesses
    included) must stay within 16 cycles; every figure is logged and, with
    the ``timing_out`` parameter, written as JSON for scripts/host_link_bench.py."""
    prm = bench_params() | {"pause": 0.0, "gap": 0.0}
    bench = Bench(dut, prm, random.Random(cocotb.RANDOM_SEED))
    await bench.start()
    D, host = bench.D, bench.host
    byte_cycles = link.BITS_PER_BYTE * prm["divisor"]
    a = bench.good_addr(1024)
    a -= a % 64
    cases = [("PING", link.encode_ping()), ("REG_READ", link.encode_reg_read(0)),
             ("REG_WRITE", link.encode_reg_write(4, 0x1234))]
    for n in sorted({1, D, 64, 256}):
        data = bench.rng.randbytes(n)
        cases += [(f"MEM_WRITE {n}", link.encode_mem_write(a, data)),
                  (f"MEM_WRITE {n} +1", link.encode_mem_write(a + 1, data)),
                  (f"MEM_READ {n}", link.encode_mem_read(a, n)),
                  (f"MEM_READ {n} +1", link.encode_mem_read(a + 1, n))]
    rows = []
    for name, request in cases:
        await RisingEdge(dut.clk)
        start = get_sim_time("ns")
        reply = await host.transact(request)
        assert reply.ok, f"{name}: {reply}"
        cycles = round((bench.monitor.last_stop_ns - start) / CLOCK_NS)
        wire = len(request) + link.RSP_HEADER_BYTES + len(reply.payload) + 1
        rows.append({"op": name, "request_bytes": len(request),
                     "response_bytes": wire - len(request), "cycles": cycles,
                     "line_cycles": wire * byte_cycles, "overhead": cycles - wire * byte_cycles})
        dut._log.info("%-16s %5d + %5d bytes  %8d cycles  (line %8d, overhead %+d)", name,
                      len(request), wire - len(request), cycles, wire * byte_cycles,
                      cycles - wire * byte_cycles)
    for row in rows:
        assert row["overhead"] <= 16, f"{row['op']}: overhead {row['overhead']} cycles"
    if prm.get("timing_out"):
        with open(prm["timing_out"], "w") as f:
            json.dump({"divisor": prm["divisor"], "data_bytes": D, "rows": rows}, f, indent=1)


@cocotb.test()
async def random_ops(dut):
    prm = bench_params()
    rng = random.Random(cocotb.RANDOM_SEED)
    bench = Bench(dut, prm, rng)
    await bench.start()
    await bench.directed()
    await bench.random_ops(prm["ops"])
    await bench.finish()
