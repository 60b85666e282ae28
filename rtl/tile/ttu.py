"""The Tile Tensor Unit: a ``rows`` x ``cols`` array of MX dot-product engines.

:class:`TileTensorUnit` computes ``C (FP32) = A (MX) x B (MX) (+ resident C)`` tile by tile,
bit-exact to :func:`openmaia.numerics.dot.mx_matmul`. The contract (ports, operand order,
double buffering, residency, counters, errors) is docs/ttu.md; the payloads and the operand order
are defined in :mod:`.ttu_stream`.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..compute.dot_engine import FAULTS as ENGINE_FAULTS
from ..compute.dot_engine import MxDotEngine
from ..errors import ErrorCode
from ..numerics.dot import FP32_NEG_ZERO
from ..numerics.formats import BLOCK_SIZE, Format
from .ttu_stream import DIM_BITS, TAG_BITS, CRow, OperandBeat, TtuCommand, TtuEvent, queue

__all__ = ["TileTensorUnit", "TtuCounters", "COUNTER_BITS"]

#: Width of every performance counter.
COUNTER_BITS = 48


class TtuCounters(data.Struct):
    """Performance counters (count up from reset or ``counters_clear``; at 48 bits they never
    wrap in practice).

    ``macs``: useful multiply-accumulates (rows < M, columns < N); ``beats``: B beats issued to
    the array; ``busy``: cycles with any operation in the unit; ``stall_input``: busy cycles in
    which the array could take a beat but the A panel or the B beat is missing;
    ``stall_output``: busy cycles in which a beat is ready but the array or the result path
    holds it (C backpressure); ``ops``: operations completed; ``rejected``: operations refused.
    """
    macs:         COUNTER_BITS
    beats:        COUNTER_BITS
    busy:         COUNTER_BITS
    stall_input:  COUNTER_BITS
    stall_output: COUNTER_BITS
    ops:          32
    rejected:     32


def _pick(pair, index):
    """Bit ``index`` (a 1-bit signal) of the 2-bit value ``pair``."""
    return Mux(index, pair[1], pair[0])


def tiles_exceed(m_tiles, n_tiles, slots: int):
    """Whether ``m_tiles x n_tiles`` (unsigned values) exceeds ``slots``, without a full
    multiplier: each factor saturates at ``slots + 1``, which changes no verdict."""
    width = (slots + 1).bit_length()

    def sat(x):
        return Mux(x > slots, slots + 1, x[:width])
    return sat(m_tiles) * sat(n_tiles) > slots


def _log2(n):
    return n.bit_length() - 1


def _is_pow2(n):
    return isinstance(n, int) and n > 0 and n & (n - 1) == 0


# The operation as the two sequencers see it: the command plus what validation derived.
_OP = data.StructLayout({
    "cmd": TtuCommand, "status": 8, "fp4": 1, "m_tiles": DIM_BITS, "n_tiles": DIM_BITS,
})


class TileTensorUnit(wiring.Component):
    """An array of :class:`MxDotEngine` computing MX GEMM tiles (docs/ttu.md).

    Parameters
    ----------
    formats : iterable of Format
        Element formats built in (every engine).
    rows, cols : int
        Array shape (powers of two): an output tile is ``rows`` x ``cols``.
    lanes : int
        Element lanes per engine (FP8 MACs a cycle; twice that for FP4 x FP4).
    slots : int
        FP32 accumulators per engine (at least 2): resident output tiles.
    panel_blocks : int
        Longest K (in blocks) of one operation; each half of the A panel buffer holds
        ``panel_blocks`` blocks of ``rows`` rows.
    fp4_double_rate : bool
        Build the engines' second FP4 product per lane.
    queue_depth : int
        Commands the load and compute queues hold (``Config.ttu_queue_depth``).
    engine_faults : frozenset of str
        Deliberate engine bugs (``MxDotEngine`` faults), for mutation tests.

    Ports
    -----
    cmd : In(stream of TtuCommand)
    a : In(stream of OperandBeat.of(rows, lanes))   the stationary operand, panel by panel
    b : In(stream of OperandBeat.of(cols, lanes))   the streaming operand, schedule order
    c : Out(stream of CRow.of(cols))                 result rows
    event : Out(stream of TtuEvent)                  one per command, in command order
    counters : Out(TtuCounters), counters_clear : In(1)
    """

    def __init__(self, *, formats, rows, cols, lanes, slots, panel_blocks,
                 fp4_double_rate=True, queue_depth=4, engine_faults=frozenset()):
        formats = frozenset(Format.of(f) for f in formats)
        if not isinstance(queue_depth, int) or isinstance(queue_depth, bool) or queue_depth < 2:
            raise ValueError(f"queue_depth must be an integer >= 2, not {queue_depth!r}")
        self._queue_depth = queue_depth
        for name, value in (("rows", rows), ("cols", cols)):
            if not _is_pow2(value):
                raise ValueError(f"{name} must be a power of two, not {value!r}")
        if not isinstance(slots, int) or slots < 2 or not _is_pow2(slots):
            raise ValueError(f"slots must be a power of two >= 2 (two outputs interleave), "
                             f"not {slots!r}")
        if not isinstance(panel_blocks, int) or not 1 <= panel_blocks < 2 ** DIM_BITS:
            raise ValueError(f"panel_blocks must be in 1..{2 ** DIM_BITS - 1}, "
                             f"not {panel_blocks!r}")
        engine_faults = frozenset(engine_faults)
        if not engine_faults <= set(ENGINE_FAULTS):
            raise ValueError(f"unknown engine faults {sorted(engine_faults - set(ENGINE_FAULTS))}")
        self._formats = formats
        self._rows, self._cols, self._lanes = rows, cols, lanes
        self._slots, self._panel_blocks = slots, panel_blocks
        self._double_rate = fp4_double_rate and Format.E2M1 in formats
        self._engine_faults = engine_faults
        # Validates formats and lanes with the engine's own checks.
        self._engine_args = dict(formats=formats, lanes=lanes, slots=slots,
                                 fp4_double_rate=fp4_double_rate)
        self._probe = MxDotEngine(**self._engine_args)
        self._probe._MustUse__silence = True
        super().__init__({
            "cmd": In(stream.Signature(TtuCommand)),
            "a": In(stream.Signature(OperandBeat.of(rows, lanes))),
            "b": In(stream.Signature(OperandBeat.of(cols, lanes))),
            "c": Out(stream.Signature(CRow.of(cols))),
            "event": Out(stream.Signature(TtuEvent)),
            "counters": Out(TtuCounters), "counters_clear": In(1),
        })

    @classmethod
    def from_config(cls, config, **kwargs):
        """The TTU of a :class:`~openmaia.config.Config`."""
        return cls(formats=config.formats, rows=config.array_rows, cols=config.array_cols,
                   lanes=config.lanes, slots=config.acc_depth,
                   panel_blocks=config.ttu_panel_blocks, queue_depth=config.ttu_queue_depth,
                   **kwargs)

    formats = property(lambda self: self._formats)
    rows = property(lambda self: self._rows)
    cols = property(lambda self: self._cols)
    lanes = property(lambda self: self._lanes)
    slots = property(lambda self: self._slots)
    panel_blocks = property(lambda self: self._panel_blocks)
    double_rate = property(lambda self: self._double_rate)
    engine_faults = property(lambda self: self._engine_faults)

    @property
    def engine_latency(self) -> int:
        """Cycles from the beat that completes an output to its engine result (see
        docs/dot-engine.md)."""
        return self._probe.latency

    @property
    def panel_beats(self) -> int:
        """Entries of one half of the A panel buffer (the FP8 beats of ``panel_blocks``)."""
        return self._panel_blocks * BLOCK_SIZE // self._lanes

    def peak_macs_per_cycle(self, fmt_a, fmt_b) -> int:
        fp4 = Format.of(fmt_a) is Format.E2M1 and Format.of(fmt_b) is Format.E2M1
        return self._rows * self._cols * self._lanes * (2 if fp4 and self._double_rate else 1)

    def elaborate(self, platform):
        m = Module()
        rows, cols, lanes, slots = self._rows, self._cols, self._lanes, self._slots
        bpb_shift = _log2(BLOCK_SIZE // lanes)              # log2 of FP8 beats per block
        panel_beats = self.panel_beats

        # ---- command intake and validation -------------------------------------------------
        op_w = _OP.size
        m.submodules.load_q = load_q = queue(width=op_w, depth=self._queue_depth)
        m.submodules.comp_q = comp_q = queue(width=op_w, depth=self._queue_depth)
        cmd = self.cmd.payload
        fmt_ok_a, fmt_ok_b = Signal(), Signal()
        for fmt_sel, ok in ((cmd.fmt_a, fmt_ok_a), (cmd.fmt_b, fmt_ok_b)):
            with m.Switch(fmt_sel):
                for f in sorted(self._formats, key=lambda f: f.spec.hw_code):
                    with m.Case(f.spec.hw_code):
                        m.d.comb += ok.eq(1)
                with m.Default():
                    m.d.comb += ok.eq(0)
        # (separate signals, not fields of `new`: Verilator sees a struct feeding itself as a
        # combinational loop)
        m_tiles, n_tiles, status = Signal(DIM_BITS), Signal(DIM_BITS), Signal(8)
        too_many_tiles = Signal()
        m.d.comb += [m_tiles.eq((cmd.m + rows - 1) >> _log2(rows)),
                     n_tiles.eq((cmd.n + cols - 1) >> _log2(cols)),
                     too_many_tiles.eq(tiles_exceed(m_tiles, n_tiles, slots))]
        with m.If((cmd.m == 0) | (cmd.n == 0) | (cmd.k == 0) | (cmd.k > self._panel_blocks)):
            m.d.comb += status.eq(ErrorCode.ILLEGAL_SHAPE)
        with m.Elif(~fmt_ok_a | ~fmt_ok_b):
            m.d.comb += status.eq(ErrorCode.FORMAT_NOT_BUILT)
        with m.Elif((cmd.accumulate | cmd.keep) & too_many_tiles):
            m.d.comb += status.eq(ErrorCode.ILLEGAL_SHAPE)
        op_new = Signal(_OP)
        m.d.comb += [
            op_new.cmd.eq(cmd), op_new.m_tiles.eq(m_tiles), op_new.n_tiles.eq(n_tiles),
            op_new.status.eq(status),
            op_new.fp4.eq(Const(self._double_rate) & (cmd.fmt_a == Format.E2M1.spec.hw_code)
                       & (cmd.fmt_b == Format.E2M1.spec.hw_code)),
        ]
        good = Signal()
        m.d.comb += good.eq(status == ErrorCode.OK)
        m.d.comb += [
            self.cmd.ready.eq(comp_q.w_rdy & (load_q.w_rdy | ~good)),
            comp_q.w_data.eq(op_new), load_q.w_data.eq(op_new),
            comp_q.w_en.eq(self.cmd.valid & self.cmd.ready),
            load_q.w_en.eq(self.cmd.valid & self.cmd.ready & good),
        ]

        # ---- A panel buffer (two halves) ---------------------------------------------------
        a_layout = OperandBeat.of(rows, lanes)
        m.submodules.panel = panel = Memory(shape=a_layout, depth=2 * panel_beats, init=[])
        pw = panel.write_port()
        pr = panel.read_port(domain="sync")
        full = Signal(2)

        # ---- loader: A stream -> panel half `wbuf` -----------------------------------------
        lop = data.View(_OP, load_q.r_data)
        l_idx = Signal(range(panel_beats))
        l_mt = Signal(DIM_BITS)
        wbuf = Signal()
        l_beats = Signal(DIM_BITS + bpb_shift)       # beats in one panel of this op
        m.d.comb += l_beats.eq((lop.cmd.k << bpb_shift) >> lop.fp4)
        a_fire = Signal()
        m.d.comb += [
            self.a.ready.eq(load_q.r_rdy & ~_pick(full, wbuf)),
            a_fire.eq(self.a.valid & self.a.ready),
            pw.addr.eq(Mux(wbuf, panel_beats, 0) + l_idx),
            pw.data.eq(self.a.payload),
            pw.en.eq(a_fire),
        ]
        set_full, clr_full = Signal(2), Signal(2)
        with m.If(a_fire):
            m.d.sync += l_idx.eq(l_idx + 1)
            with m.If(l_idx == l_beats - 1):
                m.d.sync += [l_idx.eq(0), wbuf.eq(~wbuf), l_mt.eq(l_mt + 1)]
                m.d.comb += set_full.eq(Mux(wbuf, 0b10, 0b01))
                with m.If(l_mt == lop.m_tiles - 1):
                    m.d.sync += l_mt.eq(0)
                    m.d.comb += load_q.r_en.eq(1)

        # ---- issue sequencer: panel half `rbuf` x B stream -> X stage ----------------------
        cop = data.View(_OP, comp_q.r_data)
        c_bpb = Signal(range(BLOCK_SIZE + 1))
        m.d.comb += c_bpb.eq((1 << bpb_shift) >> cop.fp4)
        rbuf = Signal()
        c_mt, c_pair, c_kb = Signal(DIM_BITS), Signal(DIM_BITS), Signal(DIM_BITS)
        c_g, c_beat = Signal(), Signal(range(BLOCK_SIZE))
        c_blockbase = Signal(range(panel_beats + 1))     # kb * bpb within the panel half
        t_base = Signal(2 * DIM_BITS)  # mt * n_tiles

        pair_size = Signal(2)
        m.d.comb += pair_size.eq(Mux(c_pair * 2 + 1 < cop.n_tiles, 2, 1))
        end_beat = c_beat == c_bpb - 1
        end_g = c_g == pair_size - 1
        end_kb = c_kb == cop.cmd.k - 1
        end_pair = c_pair * 2 + pair_size >= cop.n_tiles
        end_mt = c_mt == cop.m_tiles - 1
        end_panel = Signal()
        end_op = Signal()
        m.d.comb += [end_panel.eq(end_beat & end_g & end_kb & end_pair),
                     end_op.eq(end_panel & end_mt)]

        # X stage: one entry = a beat for the array, or a marker (event without results).
        x_valid = Signal()
        x = Signal(data.StructLayout({
            "beat": 1, "marker": 1, "status": 8, "first": 1, "last": 1, "slot": range(slots),
            "fmt_a": 3, "fmt_b": 3, "push": 1, "fp4": 1,
            "info": _INFO,
        }))
        x_take = Signal()            # the X entry leaves this cycle
        load_x = Signal()
        m.d.comb += load_x.eq(comp_q.r_rdy & (~x_valid | x_take)
                              & ((cop.status != 0) | _pick(full, rbuf)))

        nt = Signal(DIM_BITS)
        m.d.comb += nt.eq(Cat(c_g, c_pair))
        m_here = Signal(DIM_BITS)        # M - mt * rows: rows left from this M tile on
        n_here = Signal(DIM_BITS)        # N - nt * cols: columns left from this N tile on
        m.d.comb += [m_here.eq(cop.cmd.m - (c_mt << _log2(rows))),
                     n_here.eq(cop.cmd.n - (nt << _log2(cols)))]
        rows_valid = Signal(range(rows + 1))
        cols_valid = Signal(range(cols + 1))
        m.d.comb += [rows_valid.eq(Mux(m_here >= rows, rows, m_here)),
                     cols_valid.eq(Mux(n_here >= cols, cols, n_here))]
        resident = cop.cmd.accumulate | cop.cmd.keep

        with m.If(load_x):
            m.d.sync += x_valid.eq(1)
            with m.If(cop.status != 0):
                m.d.sync += [x.beat.eq(0), x.marker.eq(1), x.status.eq(cop.status), x.push.eq(1),
                             x.info.tag.eq(cop.cmd.tag), x.info.op_end.eq(1)]
                m.d.comb += comp_q.r_en.eq(1)
            with m.Else():
                m.d.sync += [
                    x.beat.eq(1), x.marker.eq(cop.cmd.keep), x.status.eq(0),
                    x.first.eq((c_kb == 0) & ~cop.cmd.accumulate),
                    x.last.eq(end_kb & ~cop.cmd.keep),
                    x.slot.eq(Mux(resident, t_base + nt, c_g)),
                    x.fmt_a.eq(cop.cmd.fmt_a), x.fmt_b.eq(cop.cmd.fmt_b), x.fp4.eq(cop.fp4),
                    x.push.eq(end_beat & end_kb & (~cop.cmd.keep | end_op)),
                    x.info.tag.eq(cop.cmd.tag), x.info.op_end.eq(end_op),
                    x.info.row.eq(c_mt << _log2(rows)), x.info.col.eq(nt << _log2(cols)),
                    x.info.rows_valid.eq(rows_valid), x.info.cols_valid.eq(cols_valid),
                ]
                # step the counters: beat, tile of the pair, block, pair, M tile
                m.d.sync += c_beat.eq(c_beat + 1)
                with m.If(end_beat):
                    m.d.sync += [c_beat.eq(0), c_g.eq(c_g + 1)]
                    with m.If(end_g):
                        m.d.sync += [c_g.eq(0), c_kb.eq(c_kb + 1),
                                     c_blockbase.eq(c_blockbase + c_bpb)]
                        with m.If(end_kb):
                            m.d.sync += [c_kb.eq(0), c_blockbase.eq(0), c_pair.eq(c_pair + 1)]
                            with m.If(end_pair):
                                m.d.sync += [c_pair.eq(0), c_mt.eq(c_mt + 1),
                                             t_base.eq(t_base + cop.n_tiles), rbuf.eq(~rbuf)]
                                m.d.comb += clr_full.eq(Mux(rbuf, 0b10, 0b01))
                                with m.If(end_mt):
                                    m.d.sync += [c_mt.eq(0), t_base.eq(0)]
                                    m.d.comb += comp_q.r_en.eq(1)
        with m.Elif(x_take):
            m.d.sync += x_valid.eq(0)
        m.d.comb += pr.addr.eq(Mux(rbuf, panel_beats, 0) + c_blockbase + c_beat)
        m.d.comb += pr.en.eq(load_x)

        m.d.sync += full.eq((full | set_full) & ~clr_full)

        # ---- the engine array --------------------------------------------------------------
        engines = [[MxDotEngine(**self._engine_args, faults=(
            self._engine_faults if (i, j) == (0, 0) else frozenset()))
            for j in range(cols)] for i in range(rows)]
        for i in range(rows):
            for j in range(cols):
                m.submodules[f"engine_{i}_{j}"] = engines[i][j]
        arr_ready = Signal()
        m.d.comb += arr_ready.eq(Cat(*(e.i.ready for row in engines for e in row)).all())

        m.submodules.info_q = info_q = SyncFIFOBuffered(
            width=_INFO.size + 9, depth=max(8, 2 * self.engine_latency + 4))
        beat_entry = x_valid & x.beat
        can_push = ~x.push | info_q.w_rdy
        fire = Signal()
        m.d.comb += [
            self.b.ready.eq(beat_entry & arr_ready & can_push),
            fire.eq(self.b.ready & self.b.valid),
            x_take.eq(fire | (x_valid & ~x.beat & info_q.w_rdy)),
            info_q.w_en.eq(x_take & x.push),
            info_q.w_data.eq(Cat(x.info, x.marker, x.status)),
        ]
        a_data = data.View(a_layout, pr.data)
        for i in range(rows):
            for j in range(cols):
                ep = engines[i][j].i.payload
                m.d.comb += [
                    engines[i][j].i.valid.eq(fire),
                    ep.a.eq(a_data.data[i]), ep.b.eq(self.b.payload.data[j]),
                    ep.scale_a.eq(a_data.scale[i]), ep.scale_b.eq(self.b.payload.scale[j]),
                    ep.fmt_a.eq(x.fmt_a), ep.fmt_b.eq(x.fmt_b),
                    ep.first.eq(x.first), ep.last.eq(x.last), ep.slot.eq(x.slot),
                    ep.acc.eq(FP32_NEG_ZERO),
                ]

        # ---- collector: engine results -> two C tile buffers -> C rows ---------------------
        head = data.View(data.StructLayout({"info": _INFO, "marker": 1, "status": 8}),
                         info_q.r_data)
        buf_full = Signal(2)
        buf_info = [Signal(_INFO, name=f"buf_info{n}") for n in range(2)]
        buf_vals = [[[Signal(32, name=f"c{n}_{i}_{j}") for j in range(cols)]
                     for i in range(rows)] for n in range(2)]
        cw, cr = Signal(), Signal()
        ev_pending = Signal()
        ev = Signal(TtuEvent)
        take_results = Signal()
        results_valid = Signal()    # the engines run in lockstep: all valid or none
        m.d.comb += results_valid.eq(Cat(*(e.o.valid for row in engines for e in row)).all())
        m.d.comb += take_results.eq(results_valid & info_q.r_rdy & ~head.marker
                                    & ~_pick(buf_full, cw))
        for row in engines:
            for e in row:
                m.d.comb += e.o.ready.eq(take_results)
        set_buf, clr_buf = Signal(2), Signal(2)
        with m.If(take_results):
            m.d.comb += [info_q.r_en.eq(1), set_buf.eq(Mux(cw, 0b10, 0b01))]
            m.d.sync += cw.eq(~cw)
            for n in range(2):
                with m.If(cw == n):
                    m.d.sync += buf_info[n].eq(head.info)
                    m.d.sync += [buf_vals[n][i][j].eq(engines[i][j].o.payload.value)
                                 for i in range(rows) for j in range(cols)]
        # A new event is only set while none is pending (marker_go, d_hold), never as one leaves.
        with m.If(self.event.valid & self.event.ready):
            m.d.sync += ev_pending.eq(0)
        marker_go = Signal()
        m.d.comb += marker_go.eq(info_q.r_rdy & head.marker & (buf_full == 0) & ~ev_pending)
        with m.If(marker_go):
            m.d.comb += info_q.r_en.eq(1)
            m.d.sync += [ev_pending.eq(1), ev.tag.eq(head.info.tag), ev.status.eq(head.status)]

        # drain buffer `cr` row by row
        d_row = Signal(range(max(rows, 2)))
        dinfo = Signal(_INFO)
        m.d.comb += dinfo.eq(Mux(cr, buf_info[1], buf_info[0]))
        d_last_row = d_row == dinfo.rows_valid - 1
        d_hold = d_last_row & dinfo.op_end & ev_pending    # one event pending at a time
        cp = self.c.payload
        row_vals = [Signal(32, name=f"drain_{j}") for j in range(cols)]
        for j in range(cols):
            vals = Array(Mux(cr, buf_vals[1][i][j], buf_vals[0][i][j]) for i in range(rows))
            m.d.comb += row_vals[j].eq(vals[d_row] if rows > 1 else vals[0])
        m.d.comb += [
            self.c.valid.eq(_pick(buf_full, cr) & ~d_hold),
            cp.row.eq(dinfo.row + d_row), cp.col.eq(dinfo.col), cp.tag.eq(dinfo.tag),
            cp.mask.eq((Const(1, cols + 1) << dinfo.cols_valid) - 1),
            cp.last.eq(d_last_row & dinfo.op_end),
        ]
        for j in range(cols):
            m.d.comb += cp.values[j].eq(Mux(j < dinfo.cols_valid, row_vals[j], 0))
        with m.If(self.c.valid & self.c.ready):
            m.d.sync += d_row.eq(d_row + 1)
            with m.If(d_last_row):
                m.d.sync += [d_row.eq(0), cr.eq(~cr)]
                m.d.comb += clr_buf.eq(Mux(cr, 0b10, 0b01))
                with m.If(dinfo.op_end):
                    m.d.sync += [ev_pending.eq(1), ev.tag.eq(dinfo.tag), ev.status.eq(0)]
        m.d.sync += buf_full.eq((buf_full | set_buf) & ~clr_buf)
        m.d.comb += [self.event.valid.eq(ev_pending), self.event.payload.eq(ev)]

        # ---- counters ----------------------------------------------------------------------
        cnt = self.counters
        busy = Signal()
        m.d.comb += busy.eq(comp_q.r_rdy | load_q.r_rdy | x_valid | info_q.r_rdy
                            | (buf_full != 0) | ev_pending)
        area = Signal(range(rows * cols + 1))
        m.d.comb += area.eq(x.info.rows_valid * x.info.cols_valid)
        with m.If(fire):
            m.d.sync += [cnt.beats.eq(cnt.beats + 1),
                         cnt.macs.eq(cnt.macs + (area << (_log2(lanes) + x.fp4)))]
        with m.If(busy):
            m.d.sync += cnt.busy.eq(cnt.busy + 1)
            with m.If(beat_entry & self.b.valid & ~(arr_ready & can_push)):
                m.d.sync += cnt.stall_output.eq(cnt.stall_output + 1)
            with m.Elif(~fire & ~(x_valid & ~x.beat)
                        & ((comp_q.r_rdy & (cop.status == 0)) | beat_entry)):
                m.d.sync += cnt.stall_input.eq(cnt.stall_input + 1)
        with m.If(self.event.valid & self.event.ready):
            with m.If(self.event.payload.status == 0):
                m.d.sync += cnt.ops.eq(cnt.ops + 1)
            with m.Else():
                m.d.sync += cnt.rejected.eq(cnt.rejected + 1)
        with m.If(self.counters_clear):
            m.d.sync += self.counters.eq(0)
        return m


# What the collector needs to know about each expected engine result (or marker).
_INFO = data.StructLayout({
    "tag": TAG_BITS, "op_end": 1, "row": DIM_BITS, "col": DIM_BITS,
    "rows_valid": 8, "cols_valid": 8,
})
