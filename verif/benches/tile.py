"""cocotb bench of the tile top (:class:`openmaia.tile.tile.Tile`, docs/tile.md), and the
simulator side of the SDK's ``rtl`` backend (:mod:`openmaia.sdk.rtl`).

:class:`TileHost` is the host's view of one tile, written the way a driver would be:
cocotbext-axi's ``AxiLiteMaster`` on the register port ``s_axil`` and ``AxiMaster`` on the
memory port ``host_axi`` (random pauses on every channel with ``pause`` > 0), a command ring at
the top of HBM fed through the doorbell, STATUS polled until the stream stops, and the
counters read before and after each run (the report is the difference, so no counter has to be
cleared).

Testcase ``serve``: connects to the ``socket`` parameter (a ``multiprocessing.connection``
listener of :class:`~openmaia.sdk.rtl.RtlBackend`) and executes its requests until ``close``:
``("reg_read", address)``, ``("reg_write", address, value)`` (the AxiLiteMaster),
``("load", addr, bytes)``, ``("read", addr, n)`` (the AxiMaster), ``("wait", cycles)``.
Replies are ``("ok", value)`` or ``("error", text)``. The ring, the doorbell and the polling
are the SDK's :class:`~openmaia.sdk.tile_host.TileDriver` on the backend's side;
:class:`TileHost` keeps its own for the standalone ``smoke`` test.

Parameters (:func:`openmaia.harness.bench_params`): ``config`` (the Config's fields),
``hbm_bytes``, ``ring_entries``, ``pause`` (probability a channel pauses a cycle),
``socket``.
"""

from __future__ import annotations

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiMaster
from openmaia.harness import bench_params
from openmaia.harness.streams import random_pauses
from openmaia.sdk.rtl import (
    COUNTER_ALIASES,
    RING_BYTES_PER_ENTRY,
    config_from_params,
    ring_base,
)
from openmaia.tile.tile import Tile

CLOCK_NS = 10
STATES = ("RUNNING", "HALTED", "ERROR", "DRAINING")
SOURCES = ("NONE", "COMMAND", "DMA", "TTU", "TVP", "COMPLETION")


class TileHost:
    """Registers, HBM and the command ring of one tile (module docstring)."""

    def __init__(self, dut, *, config, hbm_bytes, ring_entries, pause=0.0, seed=0,
                 poll_cycles=64):
        self.dut, self.config = dut, config
        self.map = Tile(config, hbm_bytes=hbm_bytes).register_map
        self.ring_entries = ring_entries
        self.ring_base = ring_base(hbm_bytes, ring_entries)
        self.tail = 0
        self.pause, self.rng = pause, random.Random(seed)
        self.poll_cycles = poll_cycles
        self.regs = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
        self.mem = AxiMaster(AxiBus.from_prefix(dut, "host_axi_"), dut.clk, dut.rst)
        if pause:
            for ch in (self.regs.write_if.aw_channel, self.regs.write_if.w_channel,
                       self.regs.write_if.b_channel, self.regs.read_if.ar_channel,
                       self.regs.read_if.r_channel, self.mem.write_if.aw_channel,
                       self.mem.write_if.w_channel, self.mem.write_if.b_channel,
                       self.mem.read_if.ar_channel, self.mem.read_if.r_channel):
                ch.set_pause_generator(random_pauses(random.Random(self.rng.random()), pause))

    async def reset(self):
        """Start the clock and reset the tile."""
        cocotb.start_soon(Clock(self.dut.clk, CLOCK_NS, unit="ns").start())
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 5)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 5)

    async def start(self):
        await self.reset()
        ident = await self.peek("ID")
        assert ident & 0xFFFF == 0x4D41, f"ID register reads {ident:#x}"
        await self.poke("CQ_BASE_LO", self.ring_base & 0xFFFF_FFFF)
        await self.poke("CQ_BASE_HI", self.ring_base >> 32)
        await self.poke("CQ_SIZE", self.ring_entries)
        for q in range(self.config.dma_queues):      # programs cannot touch the ring
            await self.set_window(q, 0, self.ring_base - 1)
        await self.poke("CONTROL", 1)                # run

    # -- registers and memory -------------------------------------------------------------

    async def reg_read(self, address):
        return int.from_bytes((await self.regs.read(address, 4)).data, "little")

    async def reg_write(self, address, value):
        await self.regs.write(address, int(value).to_bytes(4, "little"))

    async def peek(self, name):
        return await self.reg_read(self.map[name].address)

    async def poke(self, name, value):
        await self.reg_write(self.map[name].address, value)

    async def set_window(self, queue, base, limit):
        for end, value in (("BASE", base), ("LIMIT", limit)):
            await self.poke(f"DMA_WINDOW{queue}_{end}_LO", value & 0xFFFF_FFFF)
            await self.poke(f"DMA_WINDOW{queue}_{end}_HI", value >> 32)

    async def load(self, addr, data):
        if data:
            await self.mem.write(addr, bytes(data))

    async def read(self, addr, nbytes):
        if not nbytes:
            return b""
        return bytes((await self.mem.read(addr, nbytes)).data)

    async def counters(self, *, cycles_first=False):
        """Every counter register by its dotted name (a ``_LO`` / ``_HI`` pair read in order);
        ``tile.cycles`` last, or first with ``cycles_first`` (so that a run's cycle count
        excludes the reading of the other counters)."""
        values = {}
        regs = [r for r in self.map if r.source is not None
                and not (r.snapshot and r.snapshot[0] == "hi")]
        regs.sort(key=lambda r: (r.source == "tile.cycles") != cycles_first)
        for r in regs:
            value = await self.peek(r.name)
            if r.snapshot:
                value |= await self.peek(r.snapshot[1]) << 32
            values[r.source] = value
        return values

    def _widths(self):
        return {r.source: sum(f.width for f in r.fields.values())
                + (sum(f.width for f in self.map[r.snapshot[1]].fields.values())
                   if r.snapshot else 0)
                for r in self.map if r.source is not None
                and not (r.snapshot and r.snapshot[0] == "hi")}

    async def status(self):
        s = await self.peek("STATUS")
        error = await self.peek("ERROR")
        return {"state": STATES[s & 3], "source": SOURCES[(s >> 2) & 7],
                "outstanding": bool(s >> 5 & 1), "cq_error": bool(s >> 8 & 1),
                "error": error & 0xFF, "engine_error": error >> 8 & 0xFF,
                "position": await self.peek("POSITION"),
                "error_position": await self.peek("ERROR_POSITION")}

    # -- running a program ----------------------------------------------------------------

    async def _restart(self):
        """Restart the TCP and flush the fetcher (the previous program is abandoned)."""
        await self.poke("CONTROL", 0b10011)
        for _ in range(100_000):
            await ClockCycles(self.dut.clk, 8)
            s = await self.peek("STATUS")
            if s & 3 == 0 and await self.peek("CQ_HEAD") == self.tail:
                return
        raise AssertionError("the tile did not leave DRAINING / flushing after a restart")

    async def _write_commands(self, words, first, *, doorbell=True):
        """Commands ``words[first:]`` into the ring's free slots (then the doorbell, unless
        ``doorbell`` is false); returns how many went."""
        head = await self.peek("CQ_HEAD")
        free = (head - self.tail - 1) % self.ring_entries
        n = min(free, len(words) - first)
        done = 0
        while done < n:
            run = min(n - done, self.ring_entries - self.tail)
            blob = b"".join(words[first + done:first + done + run])
            await self.load(self.ring_base + RING_BYTES_PER_ENTRY * self.tail, blob)
            self.tail = (self.tail + run) % self.ring_entries
            done += run
        if n and doorbell:
            await self.poke("CQ_DOORBELL", self.tail)
        return n

    async def run(self, program, *, max_cycles=10_000_000, progress=None, idle_limit=4096):
        """Run ``program`` (bytes of 64-byte commands) until it stops; return its status, the
        counter differences and ``cycles``. ``state`` BLOCKED: the stream sits on a command
        with nothing outstanding for ``idle_limit`` cycles (a WAIT nothing can satisfy);
        RUNNING: every command retired without a HALT."""
        await self._restart()
        words = [program[i:i + RING_BYTES_PER_ENTRY]
                 for i in range(0, len(program), RING_BYTES_PER_ENTRY)]
        widths = self._widths()
        fed = await self._write_commands(words, 0, doorbell=False)
        before = await self.counters()
        await self.poke("CQ_DOORBELL", self.tail)
        cycles, last_position, idle = 0, -1, 0
        while True:
            if fed < len(words):
                fed += await self._write_commands(words, fed)
            await ClockCycles(self.dut.clk, self.poll_cycles)
            cycles += self.poll_cycles
            st = await self.status()
            if progress is not None:
                progress(st["position"], len(words))
            if st["state"] in ("HALTED", "ERROR") and not st["outstanding"]:
                break
            if st["position"] == last_position and not st["outstanding"]:
                idle += self.poll_cycles
                if idle >= idle_limit:
                    st["state"] = "RUNNING" if st["position"] >= len(words) else "BLOCKED"
                    break
            else:
                idle = 0
            last_position = st["position"]
            if cycles > max_cycles:
                st["state"] = "TIMEOUT"
                break
        after = await self.counters(cycles_first=True)
        deltas = {k: (after[k] - before[k]) % (1 << widths[k]) for k in after}
        for alias, source in COUNTER_ALIASES.items():
            if source in deltas:
                deltas[alias] = deltas[source]
        st["counters"] = deltas
        return st


async def _started_host(dut, params):
    """A started :class:`TileHost` from the bench parameters."""
    host = TileHost(dut, config=config_from_params(params["config"]),
                    hbm_bytes=params["hbm_bytes"], ring_entries=params["ring_entries"],
                    pause=params.get("pause", 0.0), seed=cocotb.RANDOM_SEED)
    await host.start()
    return host


@cocotb.test()
async def serve(dut):
    """The rtl backend's server (module docstring)."""
    from multiprocessing.connection import Client

    from openmaia.benches.board_tile import serve_requests
    params = bench_params()
    host = TileHost(dut, config=config_from_params(params["config"]),
                    hbm_bytes=params["hbm_bytes"], ring_entries=params["ring_entries"],
                    pause=params.get("pause", 0.0), seed=cocotb.RANDOM_SEED)
    await host.reset()
    conn = Client(params["socket"], family="AF_UNIX")

    async def wait(cycles):
        await ClockCycles(dut.clk, cycles)
    try:
        await serve_requests(conn, {
            "reg_read": host.reg_read, "reg_write": host.reg_write, "load": host.load,
            "read": host.read, "wait": wait})
    finally:
        conn.close()


@cocotb.test()
async def smoke(dut):
    """Standalone check (``openmaia selfcheck``): ``count`` random GEMMs compiled by the SDK, each
    bit-exact against ``mx_matmul``; an illegal command stopping the stream with its code and
    position, then a good run."""
    import numpy as np
    from openmaia.errors import ErrorCode
    from openmaia.numerics import mx_matmul, quantize_mx
    from openmaia.sdk.assembler import Program
    from openmaia.sdk.backend import read_output, write_inputs
    from openmaia.sdk.compiler import compile_gemm

    params = bench_params()
    host = await _started_host(dut, params)
    rng = np.random.default_rng(cocotb.RANDOM_SEED)
    usable = host.ring_base

    class Device:           # the SDK's write_inputs / read_output over this bench's host
        def __init__(self):
            self.pending = []

        def load(self, addr, data):
            self.pending.append(("load", addr, bytes(data)))

        def read(self, addr, nbytes):
            return self.image[addr:addr + nbytes]

    config = host.config
    fmts = sorted(config.format_names)
    for i in range(params.get("count", 2)):
        m, n, k = (int(rng.integers(1, 3 * s + 1)) for s in
                   (config.array_rows, config.array_cols, 32))
        fa, fb = fmts[int(rng.integers(len(fmts)))], fmts[int(rng.integers(len(fmts)))]
        compiled = compile_gemm(config, m=m, n=n, k=k, fmt_a=fa, fmt_b=fb)
        assert compiled.hbm_bytes <= usable
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        qa, qb = quantize_mx(a, fa, axis=1), quantize_mx(b, fb, axis=0)
        dev = Device()
        dev.image = await host.read(0, compiled.hbm_bytes)
        write_inputs(dev, compiled, {"A": qa, "B": qb})
        for _, addr, blob in dev.pending:
            await host.load(addr, blob)
        st = await host.run(compiled.program.to_bytes())
        assert st["state"] == "HALTED" and st["error"] == 0, st
        dev.image = await host.read(0, compiled.hbm_bytes)
        c = read_output(dev, compiled.outputs["C"])
        want = mx_matmul(qa, qb)
        assert np.array_equal(c.view(np.uint32), want.view(np.uint32)), \
            f"GEMM {i} ({m} x {n} x {k}, {fa} x {fb}) differs from mx_matmul"
        dut._log.info(f"GEMM {i}: {m} x {n} x {k} {fa} x {fb} exact in "
                      f"{st['counters']['cycles']} cycles")
    bad = Program.parse("SIGNAL sem=0 count=1\nFENCE\n" + "HALT").to_bytes()
    bad = bad[:64] + b"\x00" * 64 + bad[64:]          # an all-zero command: ILLEGAL_OPCODE
    st = await host.run(bad)
    assert (st["state"], st["error"], st["source"], st["error_position"]) == \
        ("ERROR", ErrorCode.ILLEGAL_OPCODE, "COMMAND", 1), st
    st = await host.run(Program.parse("SIGNAL sem=1 count=2\nWAIT sem=1 count=2\nHALT")
                        .to_bytes())
    assert st["state"] == "HALTED" and st["error"] == 0 and st["position"] == 3, st
