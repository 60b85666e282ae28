"""Workloads for the TileTensorEngine (TTU + operand fetchers + result writer) and its cocotb
bench.

:class:`EngineWorkload` places random tile ops in a memory image (operands at random legal
addresses and strides, every op's C in its own region), adds illegal ops (each rule of
``tile_op``), keep / accumulate chains, and runs the golden tile-command layer
(``execute_tile_op``) over a copy of the image: the expected events, in order, and the expected
final memory (every C row written where its op says, nothing else touched).

The cocotb bench (``random_ops``) drives the engine inside a test top with a real
:class:`~openmaia.tile.tsram.TileSram` (``EngineWithTileSram`` in verif/tests/test_ttu_engine.py):
it loads the image through the ``host`` port, sends the commands with random gaps, takes events
with random backpressure, reads the whole SRAM back through ``host`` and compares it byte for
byte, and the events in order.
"""

import json
import os
import random
import time
from pathlib import Path

import cocotb
import numpy as np
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles
from openmaia.bus.memory_port import MemoryPortSignature, MemoryRequest
from openmaia.errors import ErrorCode
from openmaia.harness import bench_params
from openmaia.harness.streams import (
    StreamSink,
    StreamSource,
    memory_port_read,
    memory_port_write,
    random_pauses,
    unpack,
)
from openmaia.layout import packed_row_bytes
from openmaia.numerics.formats import BLOCK_SIZE, Format
from openmaia.tile.tile_op import (
    C_ALIGN,
    CODE_ALIGN,
    OperandPlace,
    ResultPlace,
    TileOp,
    TileOpCommand,
    block_bytes,
    execute_tile_op,
    tile_op_status,
)
from openmaia.tile.tsram import TileSram
from openmaia.tile.ttu_engine import EngineCounters, TileTensorEngine
from openmaia.tile.ttu_stream import TtuEvent, TtuOp

from .ttu import random_operand

__all__ = ["ILLEGAL_KINDS", "EngineWithTileSram", "EngineWorkload"]

ILLEGAL_KINDS = ("k_zero", "k_too_big", "format", "resident_tiles", "codes_misaligned",
                 "codes_stride_small", "scales_stride_small", "c_misaligned", "c_stride_small",
                 "out_of_range")


class EngineWorkload:
    """Ops in a memory image of ``tsram_bytes`` with their expected events and final memory."""

    def __init__(self, *, rows, cols, slots, panel_blocks, formats, tsram_bytes, seed):
        self.geom = dict(formats=frozenset(Format.of(f) for f in formats), rows=rows, cols=cols,
                         slots=slots, panel_blocks=panel_blocks, tsram_bytes=tsram_bytes)
        self.rows, self.cols, self.slots, self.panel_blocks = rows, cols, slots, panel_blocks
        self.formats = sorted(self.geom["formats"], key=lambda f: f.value)
        self.tsram_bytes = tsram_bytes
        self.rng = random.Random(seed)
        self.nprng = np.random.default_rng(seed)
        self.memory = np.zeros(tsram_bytes, np.uint8)
        self.cursor = 0
        self.ops: list[TileOp] = []
        self.kinds: list[str] = []

    # -- placement ------------------------------------------------------------------------
    def _take(self, nbytes, align):
        base = self.cursor + self.rng.randrange(0, 40)
        base = -(-base // align) * align
        if base + nbytes > self.tsram_bytes:
            raise MemoryError("workload does not fit the SRAM")
        self.cursor = base + nbytes
        return base

    def _operand(self, fmt, nrows, k):
        codes, scales = random_operand(self.nprng, fmt, nrows, k, 0.1)
        row_bytes = packed_row_bytes(k * BLOCK_SIZE, fmt)
        cstride = row_bytes + 8 * self.rng.choice([0, 0, 1, 3])
        sstride = k + self.rng.choice([0, 0, 1, 7])
        cbase = self._take((nrows - 1) * cstride + row_bytes, 8)
        sbase = self._take((nrows - 1) * sstride + k, 1)
        place = OperandPlace(cbase, cstride, sbase, sstride)
        place.layout(rows=nrows, k_blocks=k, fmt=fmt).write(self.memory, codes, scales)
        return place

    def _result(self, m, n, phase=None):
        stride = 4 * n + 4 * self.rng.choice([0, 0, 1, 5])
        size = (m - 1) * stride + 4 * n
        if phase is None:
            return ResultPlace(self._take(size, 4), stride)
        modulus, residue = phase
        return ResultPlace(self._take(size + residue, modulus) + residue, stride)

    def fits(self, m, n, k):
        worst = 2 * (m + n) * (k * 32 + k + 16) + m * (4 * n + 24) + 256
        return self.cursor + worst <= self.tsram_bytes

    # -- ops ------------------------------------------------------------------------------
    def add(self, *, m, n, k, fmt_a, fmt_b, accumulate=False, keep=False, kind="random",
            places=None, c_phase=None):
        """Append one op; random operand and result places unless ``places`` gives them.

        ``c_phase=(modulus, residue)`` puts the result's base at ``residue`` modulo ``modulus``.
        """
        op = TtuOp(m=m, n=n, k=k, fmt_a=fmt_a, fmt_b=fmt_b, accumulate=accumulate, keep=keep,
                   tag=len(self.ops) & 0xFF)
        if places is None:
            places = (self._operand(op.fmt_a, m, k), self._operand(op.fmt_b, n, k),
                      self._result(m, n, c_phase))
        t = TileOp(op, *places)
        self.ops.append(t)
        self.kinds.append(kind)
        return t

    def random_op(self, *, max_m_tiles=3, max_n_tiles=4, max_k=None, kind="random"):
        rng = self.rng
        m = rng.randint(1, max_m_tiles * self.rows)
        n = rng.randint(1, max_n_tiles * self.cols)
        top = min(max_k or self.panel_blocks, self.panel_blocks)
        k = rng.choice([1, min(2, top), top, rng.randint(1, top)])
        if not self.fits(m, n, k):
            return None
        return self.add(m=m, n=n, k=k, fmt_a=rng.choice(self.formats),
                        fmt_b=rng.choice(self.formats), kind=kind)

    def resident_chain(self):
        """keep, accumulate + keep, accumulate (streams C): one output that fits the slots."""
        rng = self.rng
        m = rng.randint(1, self.rows)
        n = rng.randint(1, self.cols * max(1, self.slots // 2))
        if not self.fits(3 * m, 3 * n, 2):
            return
        for accumulate, keep in ((False, True), (True, True), (True, False)):
            self.add(m=m, n=n, k=rng.randint(1, min(2, self.panel_blocks)),
                     fmt_a=rng.choice(self.formats), fmt_b=rng.choice(self.formats),
                     accumulate=accumulate, keep=keep, kind="resident")

    def illegal(self, kind):
        """A copy of a small legal op broken by one rule."""
        rng, f = self.rng, self.formats[0]
        if not self.fits(self.rows, self.cols, 1):
            return None
        base = self.add(m=self.rows, n=self.cols, k=1, fmt_a=f, fmt_b=f, kind="template")
        self.ops.pop(), self.kinds.pop()
        op, a, b, c = base.op, base.a, base.b, base.c
        fields = dict(m=op.m, n=op.n, k=op.k, fmt_a=op.fmt_a, fmt_b=op.fmt_b)
        if kind == "k_zero":
            fields["k"] = 0
        elif kind == "k_too_big":
            fields["k"] = self.panel_blocks + 1
        elif kind == "format":
            missing = [x for x in Format if x not in self.geom["formats"]]
            if not missing:
                return None
            fields["fmt_b"] = missing[0]
        elif kind == "resident_tiles":
            fields.update(n=self.cols * (self.slots + 1), keep=True)
        elif kind == "codes_misaligned":
            a = OperandPlace(a.codes + 4, a.codes_stride, a.scales, a.scales_stride)
        elif kind == "codes_stride_small":
            b = OperandPlace(b.codes, op.k * block_bytes(op.fmt_b) - 8, b.scales, b.scales_stride)
        elif kind == "scales_stride_small":
            a = OperandPlace(a.codes, a.codes_stride, a.scales, 0)
        elif kind == "c_misaligned":
            c = ResultPlace(c.base + 2, c.stride)
        elif kind == "c_stride_small":
            c = ResultPlace(c.base, 4 * op.n - 4)
        elif kind == "out_of_range":
            which = rng.randrange(3)
            if which == 0:
                a = OperandPlace(self.tsram_bytes - 8, a.codes_stride, a.scales, a.scales_stride)
            elif which == 1:
                # one byte past the end even for one row of one block (k scale bytes)
                b = OperandPlace(b.codes, b.codes_stride, self.tsram_bytes - op.k + 1,
                                 b.scales_stride)
            else:
                c = ResultPlace(self.tsram_bytes - 4 * op.n + 4, c.stride)
        t = self.add(places=(a, b, c), kind=kind, **fields)
        assert tile_op_status(t, **self.geom) != ErrorCode.OK, kind
        return t

    def range_edges(self):
        """Ops whose planes end exactly at the top of the SRAM (legal) and one alignment step
        past it, with the largest aligned stride (out of range over two rows, legal over one)
        and a base past the SRAM, one plane at a time. Returns the statuses the rules give."""
        top = (1 << 32) - CODE_ALIGN
        f = self.formats[0]
        m, n, k = self.rows + 1, self.cols + 1, 1
        if not self.fits(m, n, k):
            raise MemoryError("workload does not fit the SRAM")
        template = self.add(m=m, n=n, k=k, fmt_a=f, fmt_b=f, kind="template")
        self.ops.pop(), self.kinds.pop()
        statuses = []

        def add(a, b, c, m=m, n=n):
            t = self.add(m=m, n=n, k=k, fmt_a=f, fmt_b=f, places=(a, b, c), kind="range_edge")
            statuses.append(tile_op_status(t, **self.geom))

        kb = k * block_bytes(f)
        for side, nrows in (("a", m), ("b", n)):
            place = getattr(template, side)
            for field, stride, row_bytes, align in (
                    ("codes", place.codes_stride, kb, CODE_ALIGN),
                    ("scales", place.scales_stride, k, 1)):
                end_base = self.tsram_bytes - (nrows - 1) * stride - row_bytes
                variants = [dict(base=end_base), dict(base=end_base + align), dict(base=top),
                            dict(stride=top)]
                for change in variants:
                    fields = dict(codes=place.codes, codes_stride=place.codes_stride,
                                  scales=place.scales, scales_stride=place.scales_stride)
                    fields[field] = change.get("base", fields[field])
                    fields[f"{field}_stride"] = change.get("stride", fields[f"{field}_stride"])
                    new = OperandPlace(**fields)
                    a, b = (new, template.b) if side == "a" else (template.a, new)
                    add(a, b, template.c)
                    if "stride" in change:          # the same stride over one row is legal
                        add(a, b, template.c, **{"m" if side == "a" else "n": 1})
        c = template.c
        end_base = self.tsram_bytes - (m - 1) * c.stride - 4 * n
        for place in (ResultPlace(end_base, c.stride), ResultPlace(end_base + C_ALIGN, c.stride),
                      ResultPlace(top + 4, c.stride), ResultPlace(c.base, top + 4)):
            add(template.a, template.b, place)
        add(template.a, template.b, ResultPlace(c.base, top + 4), m=1)
        return statuses

    def random(self, count, *, illegal=0.15, chains=2):
        """``count`` random ops, ``chains`` resident chains and one of each illegal kind (with
        probability ``illegal`` more), in a random order of groups."""
        kinds = list(ILLEGAL_KINDS)
        plan = ["op"] * count + ["chain"] * chains + kinds
        self.rng.shuffle(plan)
        for item in plan:
            if item == "op":
                self.random_op()
            elif item == "chain":
                self.resident_chain()
            else:
                self.illegal(item)
            if self.rng.random() < illegal:
                self.illegal(self.rng.choice(kinds))
        return self

    # -- expectations ---------------------------------------------------------------------
    def expected(self):
        """(events, final memory): the golden tile-command layer over the ops in order."""
        memory = self.memory.copy()
        resident, events = None, []
        for t in self.ops:
            status, _, kept = execute_tile_op(memory, t, resident, **self.geom)
            if status == ErrorCode.OK:
                resident = kept
            events.append({"tag": t.op.tag, "status": int(status)})
        return events, memory

    def commands(self):
        return [t.command() for t in self.ops]

    def macs(self):
        return sum(t.op.m * t.op.n * t.op.k * BLOCK_SIZE for t in self.ops
                   if tile_op_status(t, **self.geom) == ErrorCode.OK)


# --------------------------------------------------------------------------------------------
# Test top and cocotb bench

class EngineWithTileSram(wiring.Component):
    """Test top: a :class:`TileTensorEngine` on a real :class:`TileSram` (ports ``host``,
    ``ttu_a``, ``ttu_b``, ``ttu_c``); ``host`` (``ttu_port_words`` words) loads and reads back
    the SRAM. Ports: ``cmd``, ``event``, ``counters`` (the engine's), ``host``."""

    def __init__(self, config, **engine_kw):
        self.engine = TileTensorEngine.from_config(config, **engine_kw)
        words = config.ttu_port_words
        self.sram = TileSram.from_config(config, ports={
            "host": words, "ttu_a": words, "ttu_b": words,
            "ttu_c": config.ttu_result_words})
        self.host_bytes = words * config.tsram_bank_bytes
        super().__init__({
            "cmd": In(self.engine.cmd.signature.flip()),
            "event": Out(self.engine.event.signature),
            "counters": Out(EngineCounters),
            "host": In(MemoryPortSignature(
                addr_width=(config.tsram_bytes // self.host_bytes - 1).bit_length(),
                data_width=8 * self.host_bytes)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self.engine
        m.submodules.sram = sram = self.sram
        wiring.connect(m, engine.mem_a, sram.ttu_a)
        wiring.connect(m, engine.mem_b, sram.ttu_b)
        wiring.connect(m, engine.mem_c, sram.ttu_c)
        wiring.connect(m, wiring.flipped(self.host), sram.host)
        wiring.connect(m, wiring.flipped(self.cmd), engine.cmd)
        wiring.connect(m, wiring.flipped(self.event), engine.event)
        m.d.comb += [self.counters.eq(engine.counters), sram.inject.valid.eq(0),
                     sram.err_clear.eq(0)]
        return m


@cocotb.test()
async def random_ops(dut):
    """Random tile ops (with illegal ones and resident chains) on the engine and a real TSRAM:
    events in order and the whole SRAM afterwards, byte for byte, against the golden layer.
    ``rounds`` workloads (each filling the SRAM with ``ops`` ops at most) run one after the
    other, the SRAM rewritten in full between them."""
    params = bench_params()
    gap, stall = params.get("gap", 0.3), params.get("stall", 0.3)
    word_bytes = params["host_bytes"]
    layout = MemoryRequest.of(params["host_addr_bits"], 8 * word_bytes)
    clk = dut.clk
    cocotb.start_soon(Clock(clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(clk, 3)
    dut.rst.value = 0
    dut.host__rsp__ready.value = 1
    for round_ in range(params.get("rounds", 1)):
        seed = cocotb.RANDOM_SEED + round_
        wl = EngineWorkload(rows=params["rows"], cols=params["cols"], slots=params["slots"],
                            panel_blocks=params["panel_blocks"], formats=params["formats"],
                            tsram_bytes=params["tsram_bytes"], seed=seed)
        wl.random(params["ops"], chains=params.get("chains", 2))
        want_events, want_memory = wl.expected()
        prng = random.Random(seed)
        await memory_port_write(dut, "host", clk, wl.memory, word_bytes, layout,
                                zeros=round_ > 0)
        before = unpack(EngineCounters, dut.counters.value.to_unsigned())
        dut._log.info("round %d, seed %d: %d ops (%d illegal), %d MACs", round_, seed,
                      len(wl.ops), sum(e["status"] != 0 for e in want_events), wl.macs())
        cmd = StreamSource(dut, "cmd", clk, shape=TileOpCommand,
                           pauses=random_pauses(prng, gap))
        ev = StreamSink(dut, "event", clk, pauses=random_pauses(prng, stall))
        for c in wl.commands():
            cmd.send_nowait(c)
        cmd_task = cocotb.start_soon(cmd.run())
        ev_task = cocotb.start_soon(ev.run())
        lanes_total = params["rows"] * params["cols"] * params["lanes"]
        budget = 2_000 + 8 * wl.macs() // lanes_total + 200 * len(wl.ops)
        cycles = 0
        while len(ev.items) < len(want_events):
            await ClockCycles(clk, 50)
            cycles += 50
            assert cycles < budget, f"timeout: {len(ev.items)}/{len(want_events)} events"
        await ClockCycles(clk, 20)
        cmd_task.cancel()
        ev_task.cancel()
        dut.event__ready.value = 0
        assert len(ev.items) == len(want_events), "extra events"
        for i, (bits, want) in enumerate(zip(ev.items, want_events, strict=True)):
            got = unpack(TtuEvent, bits)
            assert got == want, f"event {i}: got {got}, expected {want} ({wl.kinds[i]})"
        memory = await memory_port_read(dut, "host", clk, params["tsram_bytes"], word_bytes, layout)
        diff = np.flatnonzero(memory != want_memory)
        assert diff.size == 0, (f"{diff.size} SRAM bytes differ, first at {diff[0]:#x}: "
                                f"got {memory[diff[0]]:#x}, expected {want_memory[diff[0]]:#x}")
        after = unpack(EngineCounters, dut.counters.value.to_unsigned())
        assert after["ttu"]["macs"] - before["ttu"]["macs"] == wl.macs()
        assert after["ops"] - before["ops"] == sum(e["status"] == 0 for e in want_events)
        assert (after["rejected"] - before["rejected"]
                == sum(e["status"] != 0 for e in want_events))
        dut._log.info("round %d done in %d cycles; counters %s", round_, cycles, after)


@cocotb.test()
async def throughput(dut):
    """Back-to-back ops of one shape per format pair, operands and results in the TSRAM.

    Writes ``throughput.json`` in the run folder (read by scripts/ttu_engine_bench.py): per pair
    the cycles from the first command to the last event ("end to end") and from the first op's
    event to the last one's ("steady": the MACs the TTU's counter shows done in that window, so
    the first panel load and the last drain are excluded), the MACs in each, the counters'
    stall figures, and the wall time.
    """
    params = bench_params()
    seed = cocotb.RANDOM_SEED
    m_, n_, k_, ops = params["m"], params["n"], params["k"], params["ops"]
    word_bytes = params["host_bytes"]
    layout = MemoryRequest.of(params["host_addr_bits"], 8 * word_bytes)
    clk = dut.clk
    cocotb.start_soon(Clock(clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(clk, 3)
    dut.rst.value = 0
    dut.host__rsp__ready.value = 1
    results = []
    for fa, fb in params["pairs"]:
        wl = EngineWorkload(rows=params["rows"], cols=params["cols"], slots=params["slots"],
                            panel_blocks=params["panel_blocks"], formats=params["formats"],
                            tsram_bytes=params["tsram_bytes"], seed=seed)
        first = wl.add(m=m_, n=n_, k=k_, fmt_a=fa, fmt_b=fb)
        for _ in range(ops - 1):
            wl.add(m=m_, n=n_, k=k_, fmt_a=fa, fmt_b=fb, places=(first.a, first.b, first.c))
        want_events, want_memory = wl.expected()
        await memory_port_write(dut, "host", clk, wl.memory, word_bytes, layout,
                                zeros=True)
        before = unpack(EngineCounters, dut.counters.value.to_unsigned())
        cmd = StreamSource(dut, "cmd", clk, shape=TileOpCommand)
        ev = StreamSink(dut, "event", clk)
        for c in wl.commands():
            cmd.send_nowait(c)
        ev_task = cocotb.start_soon(ev.run())
        cmd_task = cocotb.start_soon(cmd.run())
        cycles, event_cycles, event_macs, wall = 0, [], [], time.perf_counter()
        while len(ev.items) < ops:
            await ClockCycles(clk, 1)
            cycles += 1
            if len(event_cycles) < len(ev.items):
                now = unpack(EngineCounters, dut.counters.value.to_unsigned())
                while len(event_cycles) < len(ev.items):
                    event_cycles.append(cycles)
                    event_macs.append(now["ttu"]["macs"])
            assert cycles < 100_000 + 50 * wl.macs() // params["lanes"], "timeout"
        wall = time.perf_counter() - wall
        ev_task.cancel()
        cmd_task.cancel()
        for i, (bits, want) in enumerate(zip(ev.items, want_events, strict=True)):
            assert unpack(TtuEvent, bits) == want, f"event {i}"
        after = unpack(EngineCounters, dut.counters.value.to_unsigned())
        memory = await memory_port_read(dut, "host", clk, params["tsram_bytes"], word_bytes, layout)
        assert (memory == want_memory).all(), "C differs"
        fp4 = Format.of(fa) is Format.E2M1 and Format.of(fb) is Format.E2M1
        peak = params["rows"] * params["cols"] * params["lanes"] * (2 if fp4 else 1)
        macs_op = m_ * n_ * k_ * BLOCK_SIZE
        steady = event_cycles[-1] - event_cycles[0]

        def delta(unit, name):
            return after[unit][name] - before[unit][name]

        results.append({
            "pair": f"{fa}*{fb}", "peak_macs_per_cycle": peak, "ops": ops, "cycles": cycles,
            "macs": ops * macs_op, "utilization": ops * macs_op / (peak * cycles),
            "steady_cycles": steady,
            "steady_utilization": ((event_macs[-1] - event_macs[0]) / (peak * steady)
                                   if steady else None),
            "ttu_stall_input": delta("ttu", "stall_input"),
            "a_stall_input": delta("a", "stall_input"), "b_stall_input": delta("b", "stall_input"),
            "a_reads": delta("a", "reads"), "b_reads": delta("b", "reads"),
            "c_writes": delta("c", "writes"), "wall_seconds": wall,
        })
        dut._log.info("%s", results[-1])
    Path(os.environ.get("OPENMAIA_RUN_DIR", "."), "throughput.json").write_text(
        json.dumps(results, indent=1))
