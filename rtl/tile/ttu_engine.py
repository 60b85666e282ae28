"""The Tile Tensor Unit with its memory side: tile ops addressed in tile SRAM.

:class:`TileTensorEngine` runs :class:`~.tile_op.TileOpCommand` s: it checks each (the rules of
:mod:`.tile_op`; a failing op gets its error event in order, touches no memory, and the next op
runs), turns a good one into a :class:`~.ttu_stream.TtuCommand` for the
:class:`~.ttu.TileTensorUnit`, fetch jobs for two :class:`~.operand_fetch.OperandFetcher` s
(A: one job an M tile; B: one job a pair of N tiles for every M tile) and a place for the
:class:`~.result_writer.ResultWriter`, and gives one event per op, in op order, once the TTU
has finished it, both fetchers have reported on it and its C rows are written. The event's
status is the TTU's, else an operand fetch's (``ECC_UNCORRECTABLE``), else OK.

Ports ``mem_a``, ``mem_b`` (``ttu_port_words`` SRAM words) and ``mem_c`` (one C row wide) are
requester ports for three ports of :class:`~.tsram.TileSram`. The fetchers run up to a few jobs
ahead of the array, so the next op's operands stream while this one computes.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out, connect

from ..compute.serial_multiplier import SerialMultiplier
from ..errors import ErrorCode
from ..numerics.formats import Format
from .operand_fetch import FetchCounters, OperandFetcher, _times_block_bytes
from .result_writer import ResultWriter, WriterCounters
from .tile_op import ADDR_BITS, C_ALIGN, CODE_ALIGN, ResultAddress, TileOpCommand
from .ttu import TileTensorUnit, TtuCounters, tiles_exceed
from .ttu_stream import DIM_BITS, TAG_BITS, TtuEvent, queue

__all__ = ["TileTensorEngine", "EngineCounters", "CHECK_FAULTS"]

#: Deliberate bugs of the check stage (mutation-testing hooks).
CHECK_FAULTS = {
    "dispatch_before_verdict": "with serial checks, an op leaves the check stage before its "
                               "range verdicts are in",
}


class EngineCounters(data.Struct):
    """The TTU's counters, each fetcher's, the writer's, and ops the engine refused."""
    ttu:      TtuCounters
    a:        FetchCounters
    b:        FetchCounters
    c:        WriterCounters
    ops:      32
    rejected: 32


def _log2(n):
    return n.bit_length() - 1


class TileTensorEngine(wiring.Component):
    """Tile ops from tile SRAM through the TTU back to tile SRAM (module docstring).

    Parameters
    ----------
    formats, rows, cols, lanes, slots, panel_blocks, fp4_double_rate, queue_depth
        As :class:`TileTensorUnit`; ``queue_depth`` also sizes the fetchers' job queues and
        the engine's own (the order queue: twice that).
    tsram_bytes : int
        Size of the tile SRAM (ops reaching past it are refused).
    port_bytes : int
        Bytes an operand read moves.
    bank_bytes : int
        Bytes a tile SRAM word.
    serial_checks : bool
        Compute the range checks' row x stride products with one
        :class:`~openmaia.compute.serial_multiplier.SerialMultiplier` (an op waits about
        ``5 x (DIM_BITS + 2)`` cycles in the check stage) instead of combinational multipliers
        (``Config.serial_checks``). The verdicts are the same.
    engine_faults, fetch_faults, writer_faults, check_faults : collections of str
        Deliberate bugs (of the dot engines, both fetchers, the writer, the check stage:
        :data:`CHECK_FAULTS`) for mutation tests.

    Ports
    -----
    cmd : In(stream of TileOpCommand)
    event : Out(stream of TtuEvent)
    mem_a, mem_b : Out(MemoryPortSignature)  operand reads (``port_bytes``)
    mem_c : Out(MemoryPortSignature)         result writes (:attr:`result_bytes`)
    counters : Out(EngineCounters), counters_clear : In(1)
    """

    def __init__(self, *, formats, rows, cols, lanes, slots, panel_blocks, tsram_bytes,
                 port_bytes, bank_bytes, fp4_double_rate=True, queue_depth=4, serial_checks=False,
                 engine_faults=frozenset(), fetch_faults=frozenset(), writer_faults=frozenset(),
                 check_faults=frozenset()):
        if not isinstance(serial_checks, bool):
            raise TypeError(f"serial_checks must be a bool, not {serial_checks!r}")
        self._serial_checks = serial_checks
        self._check_faults = frozenset(check_faults)
        if not self._check_faults <= set(CHECK_FAULTS):
            raise ValueError(f"unknown check faults "
                             f"{sorted(self._check_faults - set(CHECK_FAULTS))}")
        self.ttu = TileTensorUnit(formats=formats, rows=rows, cols=cols, lanes=lanes,
                                  slots=slots, panel_blocks=panel_blocks,
                                  fp4_double_rate=fp4_double_rate, queue_depth=queue_depth,
                                  engine_faults=engine_faults)
        if not isinstance(tsram_bytes, int) or tsram_bytes < 1 or tsram_bytes & (tsram_bytes - 1):
            raise ValueError(f"tsram_bytes must be a power of two, not {tsram_bytes!r}")
        if tsram_bytes > 2 ** (ADDR_BITS - 1):
            raise ValueError(f"tsram_bytes must be at most 2**{ADDR_BITS - 1}")
        self._formats = self.ttu.formats
        self._rows, self._cols, self._slots = rows, cols, slots
        self._panel_blocks = panel_blocks
        self._queue_depth = queue_depth
        self._tsram_bytes = tsram_bytes
        self._pair = self.ttu.double_rate
        self.result_bytes = max(bank_bytes, 4 * cols)     # = Config.ttu_result_words words
        fetch = dict(lanes=lanes, formats=self._formats, fp4_double_rate=self._pair,
                     word_bytes=port_bytes, scale_bytes=bank_bytes,
                     addr_width=max(1, _log2(tsram_bytes // port_bytes)),
                     panel_blocks=panel_blocks, job_depth=queue_depth, faults=fetch_faults)
        self.fetch_a = OperandFetcher(count=rows, tiles=1, **fetch)
        self.fetch_b = OperandFetcher(count=cols, tiles=2, **fetch)
        self.writer = ResultWriter(cols=cols, word_bytes=self.result_bytes,
                                   addr_width=max(1, _log2(tsram_bytes // self.result_bytes)),
                                   faults=writer_faults)
        super().__init__({
            "cmd": In(stream.Signature(TileOpCommand)),
            "event": Out(stream.Signature(TtuEvent)),
            "mem_a": Out(self.fetch_a.mem.signature),
            "mem_b": Out(self.fetch_b.mem.signature),
            "mem_c": Out(self.writer.mem.signature),
            "counters": Out(EngineCounters), "counters_clear": In(1),
        })

    @classmethod
    def from_config(cls, config, **kwargs):
        """The engine of a :class:`~openmaia.config.Config`."""
        kwargs.setdefault("serial_checks", config.serial_checks)
        return cls(formats=config.formats, rows=config.array_rows, cols=config.array_cols,
                   lanes=config.lanes, slots=config.acc_depth,
                   panel_blocks=config.ttu_panel_blocks, tsram_bytes=config.tsram_bytes,
                   port_bytes=config.ttu_port_words * config.tsram_bank_bytes,
                   bank_bytes=config.tsram_bank_bytes, queue_depth=config.ttu_queue_depth,
                   **kwargs)

    rows = property(lambda self: self._rows)
    cols = property(lambda self: self._cols)
    tsram_bytes = property(lambda self: self._tsram_bytes)
    serial_checks = property(lambda self: self._serial_checks)

    def elaborate(self, platform):
        m = Module()
        R, C = self._rows, self._cols
        m.submodules.ttu = ttu = self.ttu
        m.submodules.fetch_a = fa = self.fetch_a
        m.submodules.fetch_b = fb = self.fetch_b
        m.submodules.writer = wr = self.writer
        connect(m, fa.beats, ttu.a)
        connect(m, fb.beats, ttu.b)
        connect(m, ttu.c, wr.rows)
        connect(m, wiring.flipped(self.mem_a), fa.mem)
        connect(m, wiring.flipped(self.mem_b), fb.mem)
        connect(m, wiring.flipped(self.mem_c), wr.mem)
        formats = sorted(self._formats, key=lambda f: f.spec.hw_code)

        # ---- check stage -------------------------------------------------------------------
        held = Signal()
        cmd = Signal(TileOpCommand)
        dispatch = Signal()
        m.d.comb += self.cmd.ready.eq(~held | dispatch)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [held.eq(1), cmd.eq(self.cmd.payload)]
        with m.Elif(dispatch):
            m.d.sync += held.eq(0)
        op = cmd.op

        def built(code):
            ok = Const(0)
            for f in formats:
                ok = ok | (code == f.spec.hw_code)
            return ok

        m_tiles, n_tiles = Signal(DIM_BITS), Signal(DIM_BITS)
        m.d.comb += [m_tiles.eq((op.m + R - 1) >> _log2(R)), n_tiles.eq((op.n + C - 1) >> _log2(C))]
        too_many_tiles = Signal()
        m.d.comb += too_many_tiles.eq(tiles_exceed(m_tiles, n_tiles, self._slots))

        # A plane is out of range when base + (rows - 1) x stride + row bytes > tsram_bytes
        # (= 2 ** T). A base or stride of 2 ** T or more saturates to 2 ** T: the verdict only
        # matters for an op with no earlier error, whose row bytes are >= 1, so it is unchanged.
        # The products are therefore (DIM_BITS) x (T + 1) bits.
        T = _log2(self._tsram_bytes)

        def sat(x):
            return Mux(x[T:].any(), 1 << T, x[:T])

        bad_field, out_of_range = Signal(), Signal()
        field_checks, planes = [], []
        for place, fmt, nrows in ((cmd.a, op.fmt_a, op.m), (cmd.b, op.fmt_b, op.n)):
            kbytes = Signal(DIM_BITS + 6)
            m.d.comb += kbytes.eq(_times_block_bytes(op.k, fmt, formats))
            field_checks += [place.codes[:_log2(CODE_ALIGN)] != 0,
                             place.codes_stride[:_log2(CODE_ALIGN)] != 0,
                             place.codes_stride < kbytes, place.scales_stride < op.k]
            planes += [(place.codes, place.codes_stride, nrows, kbytes),
                       (place.scales, place.scales_stride, nrows, op.k)]
        planes.append((cmd.c.base, cmd.c.stride, op.m, 4 * op.n))     # C: last
        c_bad_field = ((cmd.c.base[:_log2(C_ALIGN)] != 0) | (cmd.c.stride[:_log2(C_ALIGN)] != 0)
                       | (cmd.c.stride < 4 * op.n))
        end_bits = T + DIM_BITS + 8

        def past_end(base, row_bytes, product):
            end = Signal(end_bits)
            m.d.comb += end.eq(sat(base) + product + row_bytes)
            return end > self._tsram_bytes

        def rows_less_one(nrows):
            value = Signal(DIM_BITS)
            m.d.comb += value.eq(nrows - 1)
            return value

        accept = Signal()
        m.d.comb += accept.eq(self.cmd.valid & self.cmd.ready)
        checked = Signal()            # the range verdicts of the held op are in
        if self._serial_checks:
            m.submodules.check_mul = mul = SerialMultiplier(a_width=DIM_BITS, b_width=T + 1)
            step = Signal(range(len(planes)))
            base_sel, row_bytes_sel = Signal(T + 1), Signal(DIM_BITS + 6)

            def at_step(values):
                value = values[-1]
                for n in reversed(range(len(values) - 1)):
                    value = Mux(step == n, values[n], value)
                return value
            m.d.comb += [
                mul.a.eq(at_step([rows_less_one(nrows) for _, _, nrows, _ in planes])),
                mul.b.eq(at_step([sat(stride) for _, stride, _, _ in planes])),
                base_sel.eq(at_step([sat(base) for base, _, _, _ in planes])),
                row_bytes_sel.eq(at_step([row_bytes for _, _, _, row_bytes in planes])),
            ]
            verdict = Signal()
            m.d.comb += verdict.eq(past_end(base_sel, row_bytes_sel, mul.product))
            ab_out, c_out = Signal(), Signal()
            start_next = Signal()     # the multiplier takes the current step's operands now
            multiplying = Signal()    # the current step's product is being formed
            m.d.comb += [mul.start.eq(start_next), checked.eq(~start_next & ~multiplying)]
            with m.If(accept):
                m.d.sync += [step.eq(0), ab_out.eq(0), c_out.eq(0), start_next.eq(1)]
            with m.Elif(start_next):
                m.d.sync += [start_next.eq(0), multiplying.eq(1)]
            with m.Elif(multiplying & ~mul.busy):
                m.d.sync += multiplying.eq(0)
                with m.If(step == len(planes) - 1):
                    m.d.sync += c_out.eq(verdict)
                with m.Else():
                    m.d.sync += [ab_out.eq(ab_out | verdict), step.eq(step + 1),
                                 start_next.eq(1)]
            range_bad, c_out_of_range = ab_out, c_out
        else:
            verdicts = [past_end(base, row_bytes, rows_less_one(nrows) * sat(stride))
                        for base, stride, nrows, row_bytes in planes]
            range_bad = Cat(*verdicts[:-1]).any()
            c_out_of_range = verdicts[-1]
            m.d.comb += checked.eq(1)
        fields_bad = field_checks[0]
        for x in field_checks[1:]:
            fields_bad = fields_bad | x
        m.d.comb += [bad_field.eq(fields_bad | (~op.keep & c_bad_field)),
                     out_of_range.eq(range_bad | (~op.keep & c_out_of_range))]
        status = Signal(8)
        with m.If((op.m == 0) | (op.n == 0) | (op.k == 0) | (op.k > self._panel_blocks)):
            m.d.comb += status.eq(ErrorCode.ILLEGAL_SHAPE)
        with m.Elif(~built(op.fmt_a) | ~built(op.fmt_b)):
            m.d.comb += status.eq(ErrorCode.FORMAT_NOT_BUILT)
        with m.Elif((op.accumulate | op.keep) & too_many_tiles):
            m.d.comb += status.eq(ErrorCode.ILLEGAL_SHAPE)
        with m.Elif(bad_field):
            m.d.comb += status.eq(ErrorCode.ILLEGAL_FIELD)
        with m.Elif(out_of_range):
            m.d.comb += status.eq(ErrorCode.TSRAM_OUT_OF_RANGE)
        good = Signal()
        m.d.comb += good.eq(status == ErrorCode.OK)
        pair = Signal()
        if self._pair:
            code = Format.E2M1.spec.hw_code
            m.d.comb += pair.eq((op.fmt_a == code) & (op.fmt_b == code))

        # ---- dispatch ----------------------------------------------------------------------
        # A checked op's addresses are below tsram_bytes: T bits each (a stride that is not
        # matters only for one row, and is never used).
        place_t = data.StructLayout({"codes": T, "codes_stride": T, "scales": T,
                                     "scales_stride": T})
        GEN = data.StructLayout({"place": place_t, "m": DIM_BITS, "n": DIM_BITS,
                                 "k": DIM_BITS, "fmt": 3, "pair": 1})
        ORDER = data.StructLayout({"tag": TAG_BITS, "status": 8, "keep": 1})
        m.submodules.a_q = a_q = queue(width=GEN.size, depth=self._queue_depth)
        m.submodules.b_q = b_q = queue(width=GEN.size, depth=self._queue_depth)
        m.submodules.c_q = c_q = queue(width=ResultAddress.as_shape().size,
                                       depth=self._queue_depth)
        m.submodules.order_q = order_q = SyncFIFOBuffered(width=ORDER.size,
                                                         depth=2 * self._queue_depth)
        room = Signal()
        m.d.comb += room.eq(order_q.w_rdy & (~good | (ttu.cmd.ready & a_q.w_rdy & b_q.w_rdy
                                                      & (op.keep | c_q.w_rdy))))
        if "dispatch_before_verdict" in self._check_faults:
            checked = Const(1)
        m.d.comb += dispatch.eq(held & room & checked)
        a_gen, b_gen, order = Signal(GEN), Signal(GEN), Signal(ORDER)
        m.d.comb += [
            a_gen.place.codes.eq(cmd.a.codes),
            a_gen.place.codes_stride.eq(cmd.a.codes_stride),
            a_gen.place.scales.eq(cmd.a.scales),
            a_gen.place.scales_stride.eq(cmd.a.scales_stride),
            a_gen.m.eq(op.m), a_gen.n.eq(op.n), a_gen.k.eq(op.k),
            a_gen.fmt.eq(op.fmt_a), a_gen.pair.eq(pair),
            b_gen.place.codes.eq(cmd.b.codes),
            b_gen.place.codes_stride.eq(cmd.b.codes_stride),
            b_gen.place.scales.eq(cmd.b.scales),
            b_gen.place.scales_stride.eq(cmd.b.scales_stride),
            b_gen.m.eq(op.m), b_gen.n.eq(op.n), b_gen.k.eq(op.k),
            b_gen.fmt.eq(op.fmt_b), b_gen.pair.eq(pair),
            order.tag.eq(op.tag), order.status.eq(status), order.keep.eq(op.keep),
            ttu.cmd.valid.eq(dispatch & good), ttu.cmd.payload.eq(op),
            a_q.w_en.eq(dispatch & good), a_q.w_data.eq(a_gen),
            b_q.w_en.eq(dispatch & good), b_q.w_data.eq(b_gen),
            c_q.w_en.eq(dispatch & good & ~op.keep), c_q.w_data.eq(cmd.c),
            order_q.w_en.eq(dispatch), order_q.w_data.eq(order),
        ]
        m.d.comb += [wr.place.valid.eq(c_q.r_rdy), wr.place.payload.eq(c_q.r_data),
                     c_q.r_en.eq(wr.place.ready)]

        # ---- job generators ----------------------------------------------------------------
        def generator(q, fetcher, group_rows, name):
            """One job per ``group_rows`` rows of this side, all of them once per M tile of the
            op (B) or once (A)."""
            g = data.View(GEN, q.r_data)
            side_rows = g.m if name == "a" else g.n
            left = Signal(DIM_BITS + 1, name=f"{name}_left")       # rows of this pass to go
            offset_c = Signal(T, name=f"{name}_off_c")
            offset_s = Signal(T, name=f"{name}_off_s")
            started = Signal(name=f"{name}_started")
            m_left = Signal(DIM_BITS + 1, name=f"{name}_m_left")   # B: M rows still to pass
            here = Signal(DIM_BITS + 1, name=f"{name}_here")
            mh = Signal(DIM_BITS + 1, name=f"{name}_mh")
            m.d.comb += [here.eq(Mux(started, left, side_rows)),
                         mh.eq(Mux(started, m_left, g.m))]
            job = fetcher.job.payload
            last_pass = Const(1) if name == "a" else (mh <= R)
            end_pass = here <= group_rows
            m.d.comb += [
                job.codes.eq(g.place.codes + offset_c),
                job.codes_stride.eq(g.place.codes_stride),
                job.scales.eq(g.place.scales + offset_s),
                job.scales_stride.eq(g.place.scales_stride),
                job.rows.eq(Mux(end_pass, here, group_rows)),
                job.k.eq(g.k), job.fmt.eq(g.fmt), job.pair.eq(g.pair),
                job.last.eq(end_pass & last_pass),
                fetcher.job.valid.eq(q.r_rdy),
            ]
            with m.If(fetcher.job.valid & fetcher.job.ready):
                m.d.sync += [started.eq(1), left.eq(here - group_rows),
                             offset_c.eq(offset_c + (g.place.codes_stride
                                                     << _log2(group_rows))),
                             offset_s.eq(offset_s + (g.place.scales_stride
                                                     << _log2(group_rows))),
                             m_left.eq(mh)]
                with m.If(end_pass):
                    m.d.sync += [offset_c.eq(0), offset_s.eq(0), left.eq(g.n),
                                 m_left.eq(mh - R)]
                    with m.If(last_pass):
                        m.d.sync += started.eq(0)
                        m.d.comb += q.r_en.eq(1)

        generator(a_q, fa, R, "a")
        generator(b_q, fb, 2 * C, "b")

        # ---- events in op order ------------------------------------------------------------
        head = data.View(ORDER, order_q.r_data)
        ev_valid = Signal()
        ev = Signal(TtuEvent)
        free = ~ev_valid | self.event.ready
        from_ttu = head.status == 0
        ready_all = ttu.event.valid & fa.status.valid & fb.status.valid & (head.keep
                                                                             | wr.done.valid)
        finish = Signal()
        m.d.comb += finish.eq(order_q.r_rdy & free & (~from_ttu | ready_all))
        final_status = Signal(8)
        m.d.comb += final_status.eq(Mux(ttu.event.payload.status != 0, ttu.event.payload.status,
                                        Mux(fa.status.payload != 0, fa.status.payload,
                                            fb.status.payload)))
        m.d.comb += [
            order_q.r_en.eq(finish),
            ttu.event.ready.eq(finish & from_ttu),
            fa.status.ready.eq(finish & from_ttu),
            fb.status.ready.eq(finish & from_ttu),
            wr.done.ready.eq(finish & from_ttu & ~head.keep),
            self.event.valid.eq(ev_valid), self.event.payload.eq(ev),
        ]
        with m.If(finish):
            m.d.sync += [ev_valid.eq(1), ev.tag.eq(head.tag),
                         ev.status.eq(Mux(from_ttu, final_status, head.status))]
        with m.Elif(self.event.ready):
            m.d.sync += ev_valid.eq(0)

        cnt = self.counters
        ops, rejected = Signal(32), Signal(32)
        m.d.comb += [cnt.ttu.eq(ttu.counters), cnt.a.eq(fa.counters), cnt.b.eq(fb.counters),
                     cnt.c.eq(wr.counters), cnt.ops.eq(ops), cnt.rejected.eq(rejected)]
        with m.If(finish):
            with m.If(from_ttu):
                m.d.sync += ops.eq(ops + 1)
            with m.Else():
                m.d.sync += rejected.eq(rejected + 1)
        m.d.comb += [unit.counters_clear.eq(self.counters_clear) for unit in (ttu, fa, fb, wr)]
        with m.If(self.counters_clear):
            m.d.sync += [ops.eq(0), rejected.eq(0)]
        return m
