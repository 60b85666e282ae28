"""cocotb bench of :class:`openmaia.tile.ttu.TileTensorUnit`, bit-exact against ``mx_matmul``.

Random tile operations (shapes that are not multiples of the array, K of one block and of many,
every format pair the configuration builds in, NaN / Inf / zero / extreme-scale blocks,
chains of ``keep`` / ``accumulate`` operations on resident outputs, and illegal commands) go
through the elaborated design with random gaps on the command, A and B streams and random
backpressure on C and the event stream. A scoreboard checks every C row and every event, in
order, bit for bit, and that nothing is left over. Functional coverage: shape class x format
pair.

Parameters (:func:`openmaia.harness.bench_params`): ``rows``, ``cols``, ``lanes``, ``slots``,
``panel_blocks``, ``formats``, ``fp4_double_rate`` (the design's), ``ops`` (operations),
``gap``, ``stall`` (probabilities), ``max_tiles`` (largest M and N in tiles), ``coverage``
(require every bin hit).

The operand generator, the golden sequence (:class:`Workload`) and the shape classes are shared
with the Amaranth-simulator tests (verif/tests/test_ttu.py) and scripts/ttu_bench.py.
"""

import random
from dataclasses import dataclass, field

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge

from openmaia.errors import ErrorCode
from openmaia.harness import bench_params
from openmaia.harness.coverage import Coverage, export
from openmaia.harness.streams import StreamSink, StreamSource, random_pauses, unpack
from openmaia.numerics.formats import BLOCK_SIZE, Format
from openmaia.numerics.mx import MXTensor
from openmaia.tile.ttu import TtuCounters
from openmaia.tile.ttu_stream import (CRow, OperandBeat, TtuCommand, TtuEvent, TtuOp, a_beats,
                                      b_beats, expected_rows, tensor_unit_op)

from .dot_engine import all_pairs, pair_name, pools

SHAPE_CLASSES = ("single_tile", "ragged", "multi_tile", "k1", "resident")


def random_block_codes(rng: np.random.Generator, fmt: Format, special: float) -> np.ndarray:
    """32 codes of one block: random finite codes, sometimes a special pattern."""
    p = pools(fmt)
    codes = rng.choice(p.finite, BLOCK_SIZE)
    if rng.random() < special:
        kind = rng.integers(6)
        if kind == 0:
            codes[:] = p.neg_zero if p.neg_zero is not None else 0
        elif kind == 1 and len(p.nan):
            codes[rng.integers(BLOCK_SIZE)] = rng.choice(p.nan)
        elif kind == 2 and p.inf_pos is not None:
            codes[rng.integers(BLOCK_SIZE)] = rng.choice([p.inf_pos, p.inf_neg])
        elif kind == 3:
            codes[:] = rng.choice(p.top2, BLOCK_SIZE)
        elif kind == 4:
            codes[:] = rng.choice(p.small, BLOCK_SIZE)
        else:
            codes[:] = 0
    return codes.astype(np.uint8)


def random_scale(rng: np.random.Generator, special: float) -> int:
    if rng.random() < special:
        return int(rng.choice([0, 1, 254, 255, 127 + 60, 127 - 60]))
    return int(rng.integers(127 - 12, 127 + 12))


def random_operand(rng, fmt: Format, rows: int, k: int, special: float) -> tuple:
    """``rows`` K-contiguous rows of ``k`` blocks: (codes rows x 32k, scales rows x k)."""
    codes = np.stack([np.concatenate([random_block_codes(rng, fmt, special) for _ in range(k)])
                      for _ in range(rows)])
    scales = np.array([[random_scale(rng, special) for _ in range(k)] for _ in range(rows)],
                      np.uint8)
    return codes, scales


@dataclass
class Step:
    """One command of a workload and everything the bench feeds and expects for it."""
    op: TtuOp
    command: dict
    status: int
    a_beats: list = field(default_factory=list)
    b_beats: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    shape_class: str = ""
    pair: str = ""
    macs: int = 0


class Workload:
    """A random sequence of TTU commands for one TTU geometry, with the golden results."""

    def __init__(self, *, rows, cols, lanes, slots, panel_blocks, formats, fp4_double_rate=True):
        self.rows, self.cols, self.lanes, self.slots = rows, cols, lanes, slots
        self.panel_blocks = panel_blocks
        self.formats = frozenset(Format.of(f) for f in formats)
        self.fp4 = fp4_double_rate and Format.E2M1 in self.formats
        self.steps: list[Step] = []

    def _kw(self):
        return dict(rows=self.rows, lanes=self.lanes, fp4_double_rate=self.fp4)

    def add(self, op: TtuOp, rng, *, special=0.1, resident=None, shape_class=""):
        """Append ``op`` with fresh random operands; returns the resident accumulators after
        it (for ``keep`` chains)."""
        status = self.check(op)
        step = Step(op=op, command=op.command(), status=status, shape_class=shape_class,
                    pair=pair_name(op.fmt_a, op.fmt_b))
        if status == ErrorCode.OK:
            a_codes, a_scales = random_operand(rng, op.fmt_a, op.m, op.k, special)
            bt_codes, bt_scales = random_operand(rng, op.fmt_b, op.n, op.k, special)
            a = MXTensor(a_codes, a_scales, op.fmt_a, 1, a_codes.shape)
            b = MXTensor(np.ascontiguousarray(bt_codes.T), np.ascontiguousarray(bt_scales.T),
                         op.fmt_b, 0, bt_codes.T.shape)
            c, resident = tensor_unit_op(op, a, b, resident)
            step.a_beats = a_beats(op, a, **self._kw())
            step.b_beats = b_beats(op, b, cols=self.cols, **self._kw())
            step.rows = expected_rows(op, c, rows=self.rows, cols=self.cols)
            step.macs = op.m * op.n * op.k * BLOCK_SIZE
        self.steps.append(step)
        return resident

    def check(self, op: TtuOp) -> int:
        """The status the TTU must answer for ``op`` (docs/ttu.md, errors)."""
        tiles = -(-op.m // self.rows) * -(-op.n // self.cols)
        if not (op.m and op.n and op.k) or op.k > self.panel_blocks:
            return ErrorCode.ILLEGAL_SHAPE
        if op.fmt_a not in self.formats or op.fmt_b not in self.formats:
            return ErrorCode.FORMAT_NOT_BUILT
        if (op.accumulate or op.keep) and tiles > self.slots:
            return ErrorCode.ILLEGAL_SHAPE
        return ErrorCode.OK

    def random(self, rng: np.random.Generator, count: int, *, max_tiles=3, special=0.1,
               illegal=0.05):
        """``count`` random commands (and chains); the first ``shape classes x pairs`` of them
        cover every shape class with every format pair once, in a random order."""
        pairs = all_pairs(self.formats)
        cross = [(cls, pair) for cls in SHAPE_CLASSES for pair in pairs]
        order = list(rng.permutation(len(cross)))
        for i in range(count):
            cls, (fa, fb) = cross[order[i] if i < len(cross) else rng.integers(len(cross))]
            self.add_class(rng, cls, fa, fb, max_tiles=max_tiles, special=special)
            if rng.random() < illegal:
                self.add_illegal(rng)

    def add_class(self, rng, cls, fa, fb, *, max_tiles=3, special=0.1, tag=None):
        R, C = self.rows, self.cols
        tag = int(rng.integers(256)) if tag is None else tag
        kmax = self.panel_blocks
        if cls == "single_tile":
            m, n, k = R, C, int(rng.integers(1, kmax + 1))
        elif cls == "ragged":
            m = int(rng.integers(1, max_tiles * R + 1))
            n = int(rng.integers(1, max_tiles * C + 1))
            if m % R == 0 and n % C == 0:
                m = max(1, m - 1)
            k = int(rng.integers(1, kmax + 1))
        elif cls == "multi_tile":
            m, n = R * int(rng.integers(2, max_tiles + 1)), C * int(rng.integers(2, max_tiles + 1))
            k = int(rng.integers(2, kmax + 1))
        elif cls == "k1":
            m, n, k = int(rng.integers(1, 2 * R + 1)), int(rng.integers(1, 2 * C + 1)), 1
        else:  # resident: keep, accumulate + keep, accumulate (store)
            tiles_ok = [(mt, nt) for mt in (1, 2) for nt in (1, 2) if mt * nt <= self.slots]
            mt, nt = tiles_ok[rng.integers(len(tiles_ok))]
            m = int(rng.integers((mt - 1) * R + 1, mt * R + 1))
            n = int(rng.integers((nt - 1) * C + 1, nt * C + 1))
            resident = None
            links = int(rng.integers(2, 4))
            for j in range(links):
                op = TtuOp(m=m, n=n, k=int(rng.integers(1, kmax + 1)), fmt_a=fa, fmt_b=fb,
                           accumulate=j > 0, keep=j < links - 1, tag=(tag + j) % 256)
                resident = self.add(op, rng, special=special, resident=resident,
                                    shape_class="resident")
            return
        self.add(TtuOp(m=m, n=n, k=k, fmt_a=fa, fmt_b=fb, tag=tag), rng, special=special,
                 shape_class=cls)

    def add_illegal(self, rng):
        fmts = sorted(self.formats, key=lambda f: f.spec.hw_code)
        missing = [f for f in Format if f not in self.formats]
        kind = int(rng.integers(4))
        fa = fb = fmts[0]
        m, n, k, keep = self.rows, self.cols, 1, False
        if kind == 0:
            m = 0
        elif kind == 1:
            k = self.panel_blocks + 1
        elif kind == 2:
            m, n, keep = self.rows * (self.slots + 1), self.cols, True
        elif missing:
            fb = missing[0]
        else:
            k = 0
        op = TtuOp(m=m, n=n, k=k, fmt_a=fa, fmt_b=fb, keep=keep, tag=int(rng.integers(256)))
        self.add(op, rng, shape_class="illegal")

    # the streams the DUT takes and gives, in order
    def commands(self):
        return [s.command for s in self.steps]

    def all_a_beats(self):
        return [beat for s in self.steps for beat in s.a_beats]

    def all_b_beats(self):
        return [beat for s in self.steps for beat in s.b_beats]

    def all_rows(self):
        return [row for s in self.steps for row in s.rows]

    def events(self):
        return [{"tag": s.op.tag, "status": int(s.status)} for s in self.steps]

    def macs(self):
        return sum(s.macs for s in self.steps)


def compare(kind, index, got, want):
    if got != want:
        raise AssertionError(f"{kind} {index}: got {got}, expected {want}")


@cocotb.test()
async def random_ops(dut):
    """Random commands through the TTU, scoreboarded bit-exact in order."""
    params = bench_params()
    seed = cocotb.RANDOM_SEED
    rng = np.random.default_rng(seed)
    prng = random.Random(seed)
    rows, cols, lanes = params["rows"], params["cols"], params["lanes"]
    wl = Workload(rows=rows, cols=cols, lanes=lanes, slots=params["slots"],
                  panel_blocks=params["panel_blocks"], formats=params["formats"],
                  fp4_double_rate=params["fp4_double_rate"])
    wl.random(rng, params["ops"], max_tiles=params.get("max_tiles", 3),
              special=params.get("special", 0.1), illegal=params.get("illegal", 0.05))
    gap, stall = params.get("gap", 0.3), params.get("stall", 0.3)

    pairs = [pair_name(fa, fb) for fa, fb in all_pairs(wl.formats)]
    cov = Coverage("ttu", shape=list(SHAPE_CLASSES), pair=pairs)
    for s in wl.steps:
        if s.shape_class in SHAPE_CLASSES:
            cov.sample(shape=s.shape_class, pair=s.pair)

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    cmd = StreamSource(dut, "cmd", dut.clk, shape=TtuCommand,
                       pauses=random_pauses(prng, gap))
    a = StreamSource(dut, "a", dut.clk, shape=OperandBeat.of(rows, lanes),
                     pauses=random_pauses(prng, gap))
    b = StreamSource(dut, "b", dut.clk, shape=OperandBeat.of(cols, lanes),
                     pauses=random_pauses(prng, gap))
    c = StreamSink(dut, "c", dut.clk, pauses=random_pauses(prng, stall))
    ev = StreamSink(dut, "event", dut.clk, pauses=random_pauses(prng, stall))
    want_rows, want_events = wl.all_rows(), wl.events()
    dut._log.info("seed %d: %d commands, %d A beats, %d B beats, %d C rows", seed,
                  len(wl.steps), len(wl.all_a_beats()), len(wl.all_b_beats()), len(want_rows))
    for source, items in ((cmd, wl.commands()), (a, wl.all_a_beats()), (b, wl.all_b_beats())):
        for item in items:
            source.send_nowait(item)
        cocotb.start_soon(source.run())
    cocotb.start_soon(c.run())
    cocotb.start_soon(ev.run())

    budget = 200 + 4 * (len(wl.all_b_beats()) + len(want_rows) + 8 * len(wl.steps)) \
        / ((1 - gap) * (1 - stall))
    cycles = 0
    while len(ev.items) < len(want_events) or len(c.items) < len(want_rows):
        await ClockCycles(dut.clk, 50)
        cycles += 50
        assert cycles < budget, (f"timeout: {len(c.items)}/{len(want_rows)} rows, "
                                 f"{len(ev.items)}/{len(want_events)} events")
    await ClockCycles(dut.clk, 50)
    c_layout, ev_layout = CRow.of(cols), TtuEvent
    for i, (bits, want) in enumerate(zip(c.items, want_rows, strict=True)):
        compare("C row", i, unpack(c_layout, bits), want)
    for i, (bits, want) in enumerate(zip(ev.items, want_events, strict=True)):
        compare("event", i, unpack(ev_layout, bits), want)
    compare("commands taken", 0, cmd.sent, len(wl.steps))
    compare("A beats taken", 0, a.sent, len(wl.all_a_beats()))
    compare("B beats taken", 0, b.sent, len(wl.all_b_beats()))
    counters = unpack(TtuCounters, dut.counters.value.to_unsigned())
    compare("MAC counter", 0, counters["macs"], wl.macs())
    compare("beat counter", 0, counters["beats"], len(wl.all_b_beats()))
    compare("ops counter", 0, counters["ops"], sum(s.status == 0 for s in wl.steps))
    compare("rejected counter", 0, counters["rejected"], sum(s.status != 0 for s in wl.steps))
    dut._log.info("counters: %s", counters)
    export()
    if params.get("coverage", False):
        cov.report().assert_complete()


@cocotb.test()
async def throughput(dut):
    """Back-to-back operations with operands always available and C always taken: per format
    pair, the cycles and counters of ``ops`` operations of ``m`` x ``n`` x ``k`` blocks.

    Reports (in ``throughput.json`` in the run folder) the end-to-end utilization (MACs over peak
    MACs a cycle x cycles from the first command to the last event) and the steady-state one
    (over the cycles from the first to the last beat issued), and the wall-clock rate."""
    import json
    import os
    import time
    from pathlib import Path
    params = bench_params()
    rows, cols, lanes = params["rows"], params["cols"], params["lanes"]
    wl_args = dict(rows=rows, cols=cols, lanes=lanes, slots=params["slots"],
                   panel_blocks=params["panel_blocks"], formats=params["formats"],
                   fp4_double_rate=params["fp4_double_rate"])
    rng = np.random.default_rng(cocotb.RANDOM_SEED)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    cmd = StreamSource(dut, "cmd", dut.clk, shape=TtuCommand)
    a = StreamSource(dut, "a", dut.clk, shape=OperandBeat.of(rows, lanes))
    b = StreamSource(dut, "b", dut.clk, shape=OperandBeat.of(cols, lanes))
    c = StreamSink(dut, "c", dut.clk)
    ev = StreamSink(dut, "event", dut.clk)
    for x in (cmd, a, b, c, ev):
        cocotb.start_soon(x.run())
    results = []
    for fa, fb in (tuple(Format(f) for f in p) for p in params["pairs"]):
        wl = Workload(**wl_args)
        for i in range(params["ops"]):
            wl.add(TtuOp(m=params["m"], n=params["n"], k=params["k"], fmt_a=fa, fmt_b=fb,
                         tag=i), rng, special=0.0)
        before = unpack(TtuCounters, dut.counters.value.to_unsigned())
        c.items.clear()
        ev.items.clear()
        want_rows = wl.all_rows()
        for source, items in ((cmd, wl.commands()), (a, wl.all_a_beats()),
                              (b, wl.all_b_beats())):
            for item in items:
                source.send_nowait(item)
        start, wall = c.cycles, time.perf_counter()
        first_beat = last_beat = None
        sent0, total_beats = b.sent, len(wl.all_b_beats())
        while len(ev.items) < len(wl.steps):
            await FallingEdge(dut.clk)
            if first_beat is None and b.sent > sent0:
                first_beat = c.cycles
            if last_beat is None and b.sent - sent0 == total_beats:
                last_beat = c.cycles
        cycles, wall = c.cycles - start, time.perf_counter() - wall
        after = unpack(TtuCounters, dut.counters.value.to_unsigned())
        d = {k: after[k] - before[k] for k in after}
        for i, (bits, want) in enumerate(zip(c.items, want_rows, strict=True)):
            compare("C row", i, unpack(CRow.of(cols), bits), want)
        peak = rows * cols * lanes * (2 if fa is fb is Format.E2M1
                                      and params["fp4_double_rate"] else 1)
        steady = last_beat - first_beat + 1
        results.append({"pair": pair_name(fa, fb), "macs": d["macs"], "cycles": cycles,
                        "steady_cycles": steady, "peak_macs_per_cycle": peak,
                        "utilization": d["macs"] / (peak * cycles),
                        "steady_utilization": d["macs"] / (peak * steady),
                        "macs_per_cycle": d["macs"] / steady,
                        "stall_input": d["stall_input"], "stall_output": d["stall_output"],
                        "busy": d["busy"], "wall_seconds": wall, "cycles_per_second":
                        cycles / wall})
        dut._log.info("%s", results[-1])
    Path(os.environ.get("OPENMAIA_RUN_DIR", "."), "throughput.json").write_text(
        json.dumps(results, indent=1))
