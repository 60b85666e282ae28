"""The Tile Vector Processor: workloads, the golden expectation, a test top with a real tile SRAM,
and the cocotb bench.

:class:`TvpWorkload` builds random TVP commands (every op, FP32 rows at any 4-byte aligned
address, in place or not, BF16 and MX results at any byte address) and illegal ones (every rule)
over a random SRAM image; :meth:`TvpWorkload.expected` runs them through the golden model
(:func:`openmaia.sdk.golden.execute_tvp`). The Amaranth-simulator tests (verif/tests/test_tvp.py)
and the cocotb bench below (``random_commands``: :class:`TvpWithTileSram`, random stalls on the
command and event streams, the whole SRAM compared after the run) both use it.
"""

import random

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
from openmaia.numerics.formats import Format
from openmaia.sdk.golden import execute_tvp
from openmaia.tile.isa import TvpCmd, TvpCommand, TvpEvent, TvpOp
from openmaia.tile.tsram import TileSram
from openmaia.tile.tvp import TileVectorProcessor, TvpCounters, tvp_planes, tvp_status

__all__ = ["FIELDS", "ILLEGAL_KINDS", "TvpWithTileSram", "TvpWorkload"]

FIELDS = ("op", "rows", "cols", "a", "a_stride", "b", "b_stride", "d", "d_stride", "d_scales",
          "d_scales_stride", "scalar", "fmt", "tag")
ILLEGAL_KINDS = ("bad_op", "bad_fmt", "fmt_not_built", "rows_zero", "cols_zero",
                 "a_misaligned", "b_stride_misaligned", "d_stride_small", "scales_stride_small",
                 "overlap", "scales_overlap", "out_of_range")


def _fp32(x) -> int:
    return int(np.float32(x).view(np.uint32))


class TvpWorkload:
    """Random TVP commands over a random SRAM image of ``tsram_bytes``.

    ``lanes`` sets the column counts (around a few beats); ``formats`` the built formats
    (QUANT_MX targets them); ``max_rows`` / ``max_cols`` bound the shapes.
    """

    def __init__(self, *, lanes, formats, tsram_bytes, seed, max_rows=4, max_cols=None):
        self.lanes, self.tsram_bytes = lanes, tsram_bytes
        self.formats = sorted((Format.of(f) for f in formats), key=lambda f: f.spec.hw_code)
        self.rng = random.Random(seed)
        self.max_rows = max_rows
        self.max_cols = max_cols or max(3 * lanes + 3, 40)
        nrng = np.random.default_rng(seed)
        words = tsram_bytes // 4
        values = (nrng.standard_normal(words) * 10.0 ** nrng.integers(-3, 4, words))
        bits = values.astype(np.float32).view(np.uint32)
        special = nrng.random(words) < 0.03
        bits[special] = nrng.choice(np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000,
                                              0x00000001, 0x807FFFFF, 0x7F7FFFFF], np.uint32),
                                    int(special.sum()))
        raw = nrng.random(words) < 0.02
        bits[raw] = nrng.integers(0, 1 << 32, int(raw.sum()), dtype=np.uint64).astype(np.uint32)
        self.memory = bits.astype("<u4").view(np.uint8).copy()
        self.commands, self.kinds = [], []

    # -- building ------------------------------------------------------------------------
    def status(self, c) -> ErrorCode:
        return tvp_status(c, formats=self.formats, tsram_bytes=self.tsram_bytes)

    def _place(self, row_bytes, rows, align):
        """(base, stride) of a random plane of ``rows`` rows inside the SRAM."""
        rng = self.rng
        gap = rng.choice([0, 0, align, 4 * align, rng.randrange(0, 64, align)])
        stride = row_bytes + gap
        stride = -(-stride // align) * align
        span = (rows - 1) * stride + row_bytes
        base = rng.randrange(0, max(1, self.tsram_bytes - span - align), align)
        return base, stride

    def random_command(self, op=None, *, tries=200):
        """A legal command (op random unless given); appended; returns its fields."""
        rng = self.rng
        op = TvpOp(op if op is not None else rng.choice(list(TvpOp)))
        for _ in range(tries):
            rows = rng.randint(1, self.max_rows)
            cols = rng.choice([rng.randint(1, self.max_cols), self.lanes * rng.randint(1, 3)])
            c = {f: 0 for f in FIELDS}
            c.update(op=op.value, rows=rows, cols=cols, tag=rng.randrange(256),
                     scalar=_fp32(rng.choice([2.5, -0.75, 1e-30, 3e38, 0.0]))
                     if rng.random() < 0.9 else rng.getrandbits(32))
            if op is TvpOp.QUANT_MX:
                c["fmt"] = rng.choice(self.formats).spec.hw_code
            c["a"], c["a_stride"] = self._place(4 * cols, rows, 4)
            if op in (TvpOp.ADD, TvpOp.MUL, TvpOp.MAX, TvpOp.BIAS_ADD):
                c["b"], c["b_stride"] = self._place(4 * cols, rows, 4)
                if op is TvpOp.BIAS_ADD:
                    c["b_stride"] = rng.randrange(0, 1 << 16, 4)     # ignored
            planes = tvp_planes(c)
            d_align = 4 if op not in (TvpOp.CVT_BF16, TvpOp.QUANT_MX) else rng.choice([1, 2, 8])
            c["d"], c["d_stride"] = self._place(planes["d"][3], rows, d_align)
            if op is TvpOp.QUANT_MX:
                c["d_scales"], c["d_scales_stride"] = self._place(planes["s"][3], rows, 1)
            if op not in (TvpOp.QUANT_MX, TvpOp.CVT_BF16) and rng.random() < 0.3:
                c["d"], c["d_stride"] = c["a"], c["a_stride"]            # in place
            if self.status(c) == ErrorCode.OK:
                return self._append(c, op.name)
        raise RuntimeError(f"no legal {op.name} command found")

    def _append(self, c, kind):
        self.commands.append(c)
        self.kinds.append(kind)
        return c

    def illegal(self, kind):
        """A copy of a legal command broken by one rule (None if the configuration cannot)."""
        rng = self.rng
        op = {"bad_fmt": TvpOp.QUANT_MX, "fmt_not_built": TvpOp.QUANT_MX,
              "scales_stride_small": TvpOp.QUANT_MX, "scales_overlap": TvpOp.QUANT_MX,
              "b_stride_misaligned": TvpOp.ADD}.get(kind)
        c = dict(self.random_command(op))
        self.commands.pop(), self.kinds.pop()
        if kind == "bad_op":
            c["op"] = rng.randint(9, 15)
        elif kind == "bad_fmt":
            c["fmt"] = rng.choice([6, 7])
        elif kind == "fmt_not_built":
            missing = [f for f in Format if f not in self.formats]
            if not missing:
                return None
            c["fmt"] = missing[0].spec.hw_code
        elif kind == "rows_zero":
            c["rows"] = 0
        elif kind == "cols_zero":
            c["cols"] = 0
        elif kind == "a_misaligned":
            c["a"] += rng.choice([1, 2, 3])
        elif kind == "b_stride_misaligned":
            c["rows"] = max(2, c["rows"])
            c["b_stride"] += 2
        elif kind in ("d_stride_small", "scales_stride_small"):
            c["rows"] = max(2, c["rows"])
            key = "d_stride" if kind == "d_stride_small" else "d_scales_stride"
            c[key] = tvp_planes(c)["d" if key == "d_stride" else "s"][3] - 1
        elif kind == "overlap":     # D starts inside A's first row: never exactly in place
            c["d"] = c["a"] + rng.randint(1, 4 * c["cols"] - 1)
            c["d_stride"] = c["a_stride"]
        elif kind == "scales_overlap":
            c["d_scales"] = c["d"]
        elif kind == "out_of_range":
            c["d"] = self.tsram_bytes - tvp_planes(c)["d"][3] + 4 * rng.randint(1, 4)
        status = self.status(c)
        assert status != ErrorCode.OK, (kind, c)
        return self._append(c, kind)

    def random(self, count, *, illegal=0.15, ops=None):
        """``count`` random legal commands (of ``ops``, default all) with one of each illegal
        kind (and, with probability ``illegal`` after each, another), shuffled."""
        ops = [TvpOp[o] if isinstance(o, str) else TvpOp(o) for o in (ops or list(TvpOp))]
        plan = ["op"] * count + list(ILLEGAL_KINDS)
        self.rng.shuffle(plan)
        for item in plan:
            if item == "op":
                self.random_command(self.rng.choice(ops))
            else:
                self.illegal(item)
            if self.rng.random() < illegal:
                self.illegal(self.rng.choice(ILLEGAL_KINDS))
        return self

    # -- expectations --------------------------------------------------------------------
    def expected(self, memory=None):
        """(events, final memory): the golden model over the commands in order."""
        memory = (self.memory if memory is None else memory).copy()
        events = []
        for c in self.commands:
            status = self.status(c)
            if status == ErrorCode.OK:
                status = execute_tvp(memory, TvpCmd(**c), formats=self.formats)
            events.append({"tag": c["tag"], "status": int(status)})
        return events, memory

    def read_words(self, c, word_bytes):
        """The port words command ``c`` reads (empty for a refused command)."""
        if self.status(c) != ErrorCode.OK:
            return set()
        words = set()
        for name in ("a", "b"):
            plane = tvp_planes(c).get(name)
            if plane is None:
                continue
            base, stride, rows, row_bytes = plane
            rows = c["rows"]                # BIAS_ADD's B row is read once a row
            for r in range(rows):
                start = base + r * stride
                words |= set(range(start // word_bytes, (start + row_bytes - 1) // word_bytes + 1))
        return words

    def elements(self):
        return sum(c["rows"] * c["cols"] for c in self.commands if self.status(c) == ErrorCode.OK)


# --------------------------------------------------------------------------------------------
# Test top and cocotb bench

class TvpWithTileSram(wiring.Component):
    """Test top: a :class:`TileVectorProcessor` on a real :class:`TileSram` (ports ``host``,
    ``tvp_rd``, ``tvp_wr``); ``host`` (``tvp_port_words`` words) loads and reads back the SRAM.
    Ports: ``cmd``, ``event``, ``counters``, ``counters_clear`` (the TVP's), ``host``."""

    def __init__(self, config, **tvp_kw):
        self.tvp = TileVectorProcessor.from_config(config, **tvp_kw)
        words = config.tvp_port_words
        self.sram = TileSram.from_config(config, ports={"host": words, "tvp_rd": words,
                                                        "tvp_wr": words})
        self.host_bytes = words * config.tsram_bank_bytes
        super().__init__({
            "cmd": In(self.tvp.cmd.signature.flip()),
            "event": Out(self.tvp.event.signature),
            "counters": Out(TvpCounters),
            "counters_clear": In(1),
            "host": In(MemoryPortSignature(
                addr_width=(config.tsram_bytes // self.host_bytes - 1).bit_length(),
                data_width=8 * self.host_bytes)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.tvp = tvp = self.tvp
        m.submodules.sram = sram = self.sram
        wiring.connect(m, tvp.mem_rd, sram.tvp_rd)
        wiring.connect(m, tvp.mem_wr, sram.tvp_wr)
        wiring.connect(m, wiring.flipped(self.host), sram.host)
        wiring.connect(m, wiring.flipped(self.cmd), tvp.cmd)
        wiring.connect(m, wiring.flipped(self.event), tvp.event)
        m.d.comb += [self.counters.eq(tvp.counters), tvp.counters_clear.eq(self.counters_clear),
                     sram.inject.valid.eq(0), sram.err_clear.eq(0)]
        return m


@cocotb.test()
async def random_commands(dut):
    """Random TVP commands (every op, every illegal kind) on the TVP and a real TSRAM, random
    gaps on ``cmd`` and stalls on ``event``: the events in order and the whole SRAM afterwards,
    byte for byte, against the golden model; the counters. ``rounds`` workloads, the SRAM
    rewritten between them."""
    params = bench_params()
    gap, stall = params.get("gap", 0.3), params.get("stall", 0.3)
    word_bytes = params["host_bytes"]
    layout = MemoryRequest.of(params["host_addr_bits"], 8 * word_bytes)
    clk = dut.clk
    cocotb.start_soon(Clock(clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.counters_clear.value = 0
    await ClockCycles(clk, 3)
    dut.rst.value = 0
    dut.host__rsp__ready.value = 1
    for round_ in range(params.get("rounds", 1)):
        seed = cocotb.RANDOM_SEED + round_
        wl = TvpWorkload(lanes=params["lanes"], formats=params["formats"],
                         tsram_bytes=params["tsram_bytes"], seed=seed)
        wl.random(params["commands"], ops=params.get("ops"))
        want_events, want_memory = wl.expected()
        prng = random.Random(seed)
        await memory_port_write(dut, "host", clk, wl.memory, word_bytes, layout)
        dut.counters_clear.value = 1
        await ClockCycles(clk, 1)
        dut.counters_clear.value = 0
        dut._log.info("round %d, seed %d: %d commands (%d refused), %d elements", round_, seed,
                      len(wl.commands), sum(e["status"] != 0 for e in want_events),
                      wl.elements())
        cmd = StreamSource(dut, "cmd", clk, shape=TvpCommand, pauses=random_pauses(prng, gap))
        ev = StreamSink(dut, "event", clk, pauses=random_pauses(prng, stall))
        for c in wl.commands:
            cmd.send_nowait(c)
        cmd_task = cocotb.start_soon(cmd.run())
        ev_task = cocotb.start_soon(ev.run())
        budget = 2_000 + 20 * wl.elements() + 200 * len(wl.commands)
        cycles = 0
        while len(ev.items) < len(want_events):
            await ClockCycles(clk, 20)
            cycles += 20
            assert cycles < budget, f"timeout: {len(ev.items)}/{len(want_events)} events"
        await ClockCycles(clk, 20)
        cmd_task.cancel()
        ev_task.cancel()
        dut.event__ready.value = 0
        assert len(ev.items) == len(want_events), "extra events"
        for i, (bits, want) in enumerate(zip(ev.items, want_events, strict=True)):
            got = unpack(TvpEvent, bits)
            assert got == want, f"event {i}: got {got}, expected {want} ({wl.kinds[i]}: " \
                                f"{wl.commands[i]})"
        counters = unpack(TvpCounters, dut.counters.value.to_unsigned())
        memory = await memory_port_read(dut, "host", clk, params["tsram_bytes"], word_bytes, layout)
        diff = np.flatnonzero(memory != want_memory)
        assert diff.size == 0, (f"{diff.size} SRAM bytes differ, first at {diff[0]:#x}: "
                                f"got {memory[diff[0]]:#x}, expected {want_memory[diff[0]]:#x}")
        assert counters["ops"] == sum(e["status"] == 0 for e in want_events)
        assert counters["rejected"] == sum(e["status"] != 0 for e in want_events)
        assert counters["elements"] == wl.elements()
        dut._log.info("round %d done in %d cycles; counters %s", round_, cycles, counters)
