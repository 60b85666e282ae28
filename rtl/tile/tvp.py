"""The Tile Vector Processor: TVP commands over FP32 rows in the tile SRAM.

:class:`TileVectorProcessor` executes :class:`~.isa.TvpCommand` s one at a time: it checks the
command (:func:`tvp_status`, the rules below; a refused command touches no memory and gets its
event at once), streams the rows of A (and B) from the tile SRAM through its read port,
realigns them to beats of ``lanes`` elements, runs the beats through the lane ALU
(:class:`~openmaia.compute.vector_lane.VectorAlu`) or, for ``QUANT_MX``, the block quantiser
(:class:`~openmaia.compute.mx_quantizer.MxQuantizer`), and writes the results through its write
port with byte strobes, coalescing the partial words of consecutive pieces. One event per
command, in order, after its last write has been accepted (so every later read sees it). The
contract (memory forms, rules, statuses, rate, counters) is docs/tvp.md, "TileVectorProcessor".

Rules, checked in this order (the first that fails is the status; :func:`tvp_status` is the
reference the golden model :func:`openmaia.sdk.golden.execute_tvp` uses):

1. ``ILLEGAL_FIELD``: ``op`` is no :class:`~.isa.TvpOp`; ``QUANT_MX`` whose ``fmt`` is no
   format.
2. ``FORMAT_NOT_BUILT``: ``QUANT_MX`` to a format the configuration leaves out.
3. ``ILLEGAL_SHAPE``: ``rows`` or ``cols`` zero.
4. ``ILLEGAL_FIELD``: a source base or row stride not a multiple of 4 (A; B of ADD / MUL / MAX;
   the base of BIAS_ADD's B row); with ``rows`` > 1 a destination row stride smaller than its
   row (``d_stride``, and ``d_scales_stride`` for ``QUANT_MX``); a destination plane's span
   overlapping a source plane's span, unless in place (an FP32 result with ``d``, ``d_stride``
   equal to A's or, for ADD / MUL / MAX, B's), or the other destination plane's span.
5. ``TSRAM_OUT_OF_RANGE``: a plane's span reaching past the SRAM.

A plane's span is ``[base, base + (rows - 1) * stride + row_bytes)`` (BIAS_ADD's B: one row).
"""

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..bus.memory_port import EccStatus, MemoryPortSignature
from ..bus.stream_register import StreamRegister
from ..compute.mx_quantizer import LANES as QUANT_LANES
from ..compute.mx_quantizer import MxQuantizer
from ..compute.vector_lane import VectorAlu
from ..errors import ErrorCode
from ..numerics.formats import BLOCK_SIZE, Format
from ..numerics.vector import VectorOp
from .isa import TvpCommand, TvpEvent, TvpOp

__all__ = ["TileVectorProcessor", "TvpCounters", "FAULTS", "tvp_status", "tvp_planes",
           "FP32_OPS", "BINARY_OPS", "ALU_OP"]

#: Deliberate bugs for mutation tests.
FAULTS = {
    "no_pad_mask":  "lanes past the row's last element are not zeroed (QUANT_MX pads with the "
                    "next row's data)",
    "drop_flush":   "the partial word left at a command's end is never written",
    "bias_strided": "BIAS_ADD's B row advances by b_stride like ADD's B",
}

COUNTER_BITS = 48
#: Ops with a second source of ``rows`` rows.
BINARY_OPS = (TvpOp.ADD, TvpOp.MUL, TvpOp.MAX)
#: Ops whose result is FP32 rows.
FP32_OPS = (TvpOp.ADD, TvpOp.MUL, TvpOp.MAX, TvpOp.BIAS_ADD, TvpOp.SCALE, TvpOp.RELU,
            TvpOp.GELU)
#: The lane ALU op of each element-wise TVP op.
ALU_OP = {TvpOp.ADD: VectorOp.ADD, TvpOp.MUL: VectorOp.MUL, TvpOp.MAX: VectorOp.MAX,
          TvpOp.BIAS_ADD: VectorOp.ADD, TvpOp.SCALE: VectorOp.MUL, TvpOp.RELU: VectorOp.RELU,
          TvpOp.GELU: VectorOp.GELU, TvpOp.CVT_BF16: VectorOp.TO_BF16}
_FIFO_DEPTH = 8


# ------------------------------------------------------------------------------------------------
# Reference rules (Python)
# ------------------------------------------------------------------------------------------------

def _field(c, name):
    return c[name] if isinstance(c, dict) else getattr(c, name)


def _k_blocks(cols):
    return -(-cols // BLOCK_SIZE)


def tvp_planes(c) -> dict:
    """The planes a legal-op command uses: name -> ``(base, stride, rows, row_bytes)``
    (``a``, ``b``, ``d``, and ``s`` the scale plane of ``QUANT_MX``). ``c`` is a
    :class:`~.isa.TvpCmd` or a dict of :class:`~.isa.TvpCommand` fields with a valid op."""
    op = TvpOp(_field(c, "op"))
    rows, cols = _field(c, "rows"), _field(c, "cols")
    planes = {"a": (_field(c, "a"), _field(c, "a_stride"), rows, 4 * cols)}
    if op in BINARY_OPS:
        planes["b"] = (_field(c, "b"), _field(c, "b_stride"), rows, 4 * cols)
    elif op is TvpOp.BIAS_ADD:
        planes["b"] = (_field(c, "b"), 0, 1, 4 * cols)
    if op is TvpOp.QUANT_MX:
        fmt = Format.from_hw_code(_field(c, "fmt"))
        kb = _k_blocks(cols)
        planes["d"] = (_field(c, "d"), _field(c, "d_stride"), rows,
                       kb * BLOCK_SIZE * fmt.spec.bits // 8)
        planes["s"] = (_field(c, "d_scales"), _field(c, "d_scales_stride"), rows, kb)
    else:
        planes["d"] = (_field(c, "d"), _field(c, "d_stride"), rows,
                       (2 if op is TvpOp.CVT_BF16 else 4) * cols)
    return planes


def _span(plane):
    base, stride, rows, row_bytes = plane
    return base, base + (rows - 1) * stride + row_bytes


def _overlap(p, q):
    (p0, p1), (q0, q1) = _span(p), _span(q)
    return p0 < q1 and q0 < p1


def tvp_status(c, *, formats, tsram_bytes) -> ErrorCode:
    """The status the TVP gives command ``c`` before running it (module docstring, rules 1-5);
    ``OK`` for a command it runs. ``c``: a :class:`~.isa.TvpCmd` or a dict of
    :class:`~.isa.TvpCommand` fields (``op`` may then be any 4-bit value)."""
    op = _field(c, "op")
    try:
        op = TvpOp(op if isinstance(op, TvpOp) else int(op))
    except ValueError:
        return ErrorCode.ILLEGAL_FIELD
    if op is TvpOp.QUANT_MX:
        try:
            fmt = Format.from_hw_code(_field(c, "fmt"))
        except (ValueError, KeyError):
            return ErrorCode.ILLEGAL_FIELD
        if fmt not in frozenset(Format.of(f) for f in formats):
            return ErrorCode.FORMAT_NOT_BUILT
    rows, cols = _field(c, "rows"), _field(c, "cols")
    if rows == 0 or cols == 0:
        return ErrorCode.ILLEGAL_SHAPE
    planes = tvp_planes(c)
    for name in ("a", "b"):
        if name in planes and (planes[name][0] % 4 or planes[name][1] % 4):
            return ErrorCode.ILLEGAL_FIELD
    if rows > 1:
        for name in ("d", "s"):
            if name in planes and planes[name][1] < planes[name][3]:
                return ErrorCode.ILLEGAL_FIELD
    d = planes["d"]
    for name in ("a", "b"):
        if name not in planes:
            continue
        src = planes[name]
        in_place = (op in FP32_OPS and (name == "a" or op in BINARY_OPS)
                    and src[0] == d[0] and src[1] == d[1])
        if _overlap(src, d) and not in_place:
            return ErrorCode.ILLEGAL_FIELD
        if "s" in planes and _overlap(src, planes["s"]):
            return ErrorCode.ILLEGAL_FIELD
    if "s" in planes and _overlap(d, planes["s"]):
        return ErrorCode.ILLEGAL_FIELD
    if any(_span(p)[1] > tsram_bytes for p in planes.values()):
        return ErrorCode.TSRAM_OUT_OF_RANGE
    return ErrorCode.OK


# ------------------------------------------------------------------------------------------------
# Hardware
# ------------------------------------------------------------------------------------------------

class TvpCounters(data.Struct):
    """Performance counters (count up from reset, zeroed by ``counters_clear``). ``busy``:
    cycles with a command taken and its event not yet given; ``stall_input``: running cycles
    in which the ALU / quantiser could take a beat but a source's SRAM data is not there;
    ``stall_output``: cycles a write waits for the SRAM or the event for its consumer; ``ops``:
    commands run (status OK or ECC_UNCORRECTABLE); ``rejected``: commands refused by the rules;
    ``elements``: ``rows x cols`` of the commands run; ``reads``, ``writes``: SRAM requests."""
    busy:         COUNTER_BITS
    stall_input:  COUNTER_BITS
    stall_output: COUNTER_BITS
    ops:          32
    rejected:     32
    elements:     COUNTER_BITS
    reads:        COUNTER_BITS
    writes:       COUNTER_BITS


def _log2(n):
    return n.bit_length() - 1


def _is_pow2(n):
    return isinstance(n, int) and not isinstance(n, bool) and n > 0 and n & (n - 1) == 0


class _BytePacker(wiring.Component):
    """Pieces of up to ``word_bytes`` bytes at any byte address -> word writes with strobes.

    A piece ``{addr, data, mask, flush}`` carries ``mask``-selected bytes (a prefix of ``data``)
    for byte address ``addr``. The packer keeps one partial word: a piece landing in it is
    merged (later bytes win); a word is written once a piece reaches its end, or when a piece
    goes to another word, or on a ``flush`` piece (no bytes; taken once the partial word, if
    any, is written). Writes go out in piece order.
    """

    def __init__(self, *, word_bytes, addr_bits, faults=frozenset()):
        self._p, self._abits, self._faults = word_bytes, addr_bits, faults
        lp = _log2(word_bytes)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "addr": addr_bits, "data": 8 * word_bytes, "mask": word_bytes, "flush": 1}))),
            "o": Out(stream.Signature(data.StructLayout({
                "addr": max(1, addr_bits - lp), "data": 8 * word_bytes,
                "strb": word_bytes}))),
        })

    def elaborate(self, platform):
        m = Module()
        P, lp = self._p, _log2(self._p)
        piece = self.i.payload
        word = Signal(max(1, self._abits - lp))
        m.d.comb += word.eq(piece.addr[lp:] if self._abits > lp else 0)
        wide_d = Signal(16 * P)
        wide_m = Signal(2 * P)
        if P == 1:
            m.d.comb += [wide_d.eq(piece.data), wide_m.eq(piece.mask)]
        else:
            off = piece.addr[:lp]
            opts_d = [Cat(Const(0, 8 * o), piece.data, Const(0, 8 * (P - o))) for o in range(P)]
            opts_m = [Cat(Const(0, o), piece.mask, Const(0, P - o)) for o in range(P)]
            m.d.comb += [wide_d.eq(Array(opts_d)[off]), wide_m.eq(Array(opts_m)[off])]
        lo_d, hi_d = wide_d[:8 * P], wide_d[8 * P:]
        lo_m, hi_m = wide_m[:P], wide_m[P:]

        pend_v = Signal()
        pend_w = Signal.like(word)
        pend_d = Signal(8 * P)
        pend_m = Signal(P)
        same = Signal()
        m.d.comb += same.eq(pend_v & (pend_w == word))
        merged_d = Signal(8 * P)
        merged_m = Signal(P)
        m.d.comb += [
            merged_d.eq(Cat(*(Mux(lo_m[b], lo_d[8 * b:8 * b + 8],
                                  pend_d[8 * b:8 * b + 8]) for b in range(P)))),
            merged_m.eq(lo_m | Mux(same, pend_m, 0)),
        ]
        complete = Signal()
        m.d.comb += complete.eq(hi_m.any() | lo_m[P - 1])
        o = self.o.payload
        flush = piece.flush
        with m.If(self.i.valid & (flush | (pend_v & ~same))):
            # the partial word goes out first
            m.d.comb += [o.addr.eq(pend_w), o.data.eq(pend_d), o.strb.eq(pend_m),
                         self.o.valid.eq(pend_v & ("drop_flush" not in self._faults
                                                   or ~flush))]
            with m.If(~self.o.valid | self.o.ready):
                m.d.sync += pend_v.eq(0)
                m.d.comb += self.i.ready.eq(flush)
        with m.Elif(self.i.valid):
            m.d.comb += [o.addr.eq(word), o.data.eq(merged_d), o.strb.eq(merged_m),
                         self.o.valid.eq(complete)]
            with m.If(~complete | self.o.ready):
                m.d.comb += self.i.ready.eq(1)
                with m.If(complete):
                    m.d.sync += [pend_v.eq(hi_m.any()), pend_w.eq(word + 1), pend_d.eq(hi_d),
                                 pend_m.eq(hi_m)]
                with m.Else():
                    m.d.sync += [pend_v.eq(1), pend_w.eq(word), pend_d.eq(merged_d),
                                 pend_m.eq(merged_m)]
        return m


class _State(enum.Enum, shape=3):
    IDLE = 0
    SPANS = 1
    DECIDE = 2
    RUN = 3
    EVENT = 4


class TileVectorProcessor(wiring.Component):
    """TVP commands on rows in the tile SRAM (module docstring; docs/tvp.md).

    Parameters
    ----------
    lanes : int
        FP32 elements a beat (a power of two, 1 to 32; ``Config.tvp_lanes``).
    formats : collection of Format or names
        MX formats ``QUANT_MX`` may target (``Config.formats``).
    tsram_bytes : int
        Size of the tile SRAM (a power of two; planes past it are refused).
    bank_bytes : int
        Bytes a tile SRAM word.
    port_words : int
        Tile SRAM words of each port; ``port_words x bank_bytes`` must be ``4 x lanes``.
    faults : collection of str
        Deliberate bugs from :data:`FAULTS`; empty for the real design.

    Members
    -------
    cmd : In(stream of TvpCommand)
    event : Out(stream of TvpEvent)
    mem_rd, mem_wr : Out(MemoryPortSignature)      ``port_words`` SRAM words wide
    counters : Out(TvpCounters)
    counters_clear : In(1)
    """

    def __init__(self, *, lanes, formats, tsram_bytes, bank_bytes, port_words,
                 faults=frozenset()):
        if not _is_pow2(lanes) or lanes > BLOCK_SIZE or lanes not in QUANT_LANES:
            raise ValueError(f"lanes must be a power of two from 1 to {BLOCK_SIZE} (a beat is "
                             f"at most one MX block), not {lanes!r}")
        if not _is_pow2(bank_bytes):
            raise ValueError(f"bank_bytes must be a power of two, not {bank_bytes!r}")
        if not _is_pow2(port_words) or port_words * bank_bytes != 4 * lanes:
            raise ValueError(f"port_words must be a power of two with port_words x bank_bytes "
                             f"= 4 x lanes ({4 * lanes}), not {port_words!r}")
        if not _is_pow2(tsram_bytes) or not 4 * lanes <= tsram_bytes <= 1 << 31:
            raise ValueError(f"tsram_bytes must be a power of two from {4 * lanes} to 2**31, "
                             f"not {tsram_bytes!r}")
        self._formats = frozenset(Format.of(f) for f in formats)
        if not self._formats:
            raise ValueError("formats must not be empty")
        faults = frozenset(faults)
        if not faults <= set(FAULTS):
            raise ValueError(f"unknown faults {sorted(faults - set(FAULTS))}; "
                             f"known: {sorted(FAULTS)}")
        self._faults = faults
        self._lanes, self._tsram_bytes = lanes, tsram_bytes
        self._word_bytes = 4 * lanes
        self._addr_bits = _log2(tsram_bytes)
        port = MemoryPortSignature(addr_width=max(1, _log2(tsram_bytes // self._word_bytes)),
                                   data_width=8 * self._word_bytes)
        super().__init__({
            "cmd": In(stream.Signature(TvpCommand)),
            "event": Out(stream.Signature(TvpEvent)),
            "mem_rd": Out(port),
            "mem_wr": Out(port),
            "counters": Out(TvpCounters),
            "counters_clear": In(1),
        })

    @classmethod
    def from_config(cls, config, **kwargs):
        """The TVP of a :class:`~openmaia.config.Config`."""
        return cls(lanes=config.tvp_lanes, formats=config.formats,
                   tsram_bytes=config.tsram_bytes, bank_bytes=config.tsram_bank_bytes,
                   port_words=config.tvp_port_words, **kwargs)

    lanes = property(lambda self: self._lanes)
    formats = property(lambda self: self._formats)
    tsram_bytes = property(lambda self: self._tsram_bytes)
    word_bytes = property(lambda self: self._word_bytes)
    faults = property(lambda self: self._faults)

    # ------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        L, P = self._lanes, self._word_bytes
        lp, ll = _log2(P), _log2(L)
        AB = self._addr_bits
        faults = self._faults
        formats = sorted(self._formats, key=lambda f: f.spec.hw_code)
        m.submodules.alu = alu = VectorAlu(lanes=L)
        # Register slices on the ALU's results and on the write requests: the SRAM's grant, the
        # packers' merge and the ALU's pipeline enable (which reaches every ALU register) would
        # otherwise form one combinational chain from the SRAM arbiter to the operand FIFOs.
        m.submodules.alu_out = alu_out = StreamRegister(alu.o.payload.shape())
        wiring.connect(m, alu.o, alu_out.i)
        m.submodules.quant = quant = MxQuantizer(formats=self._formats, lanes=L)
        m.submodules.main_pk = main_pk = _BytePacker(word_bytes=P, addr_bits=AB, faults=faults)
        m.submodules.scale_pk = scale_pk = _BytePacker(word_bytes=P, addr_bits=AB)

        state = Signal(_State)
        cmd = Signal(TvpCommand)
        op = cmd.op.as_value()

        def is_op(*ops):
            return Cat(*(op == o.value for o in ops)).any()

        # ---- check: spans (registered), then the status --------------------------------
        quant_op, binary, bias, bf16, fp32 = (Signal(name=n) for n in
                                              ("quant_op", "binary", "bias", "bf16", "fp32"))
        m.d.comb += [quant_op.eq(is_op(TvpOp.QUANT_MX)), binary.eq(is_op(*BINARY_OPS)),
                     bias.eq(is_op(TvpOp.BIAS_ADD)), bf16.eq(is_op(TvpOp.CVT_BF16)),
                     fp32.eq(is_op(*FP32_OPS))]
        fmt_valid = Signal()
        fmt_built = Signal()
        m.d.comb += [fmt_valid.eq(Cat(*(cmd.fmt == f.spec.hw_code for f in Format)).any()),
                     fmt_built.eq(Cat(*(cmd.fmt == f.spec.hw_code for f in formats)).any())]
        kb = Signal(range((1 << 16) // BLOCK_SIZE + 2))
        m.d.comb += kb.eq((cmd.cols + BLOCK_SIZE - 1) >> _log2(BLOCK_SIZE))
        block_bytes = Signal(6)
        m.d.comb += block_bytes.eq(32)
        for f in formats:
            if f.spec.bits != 8:
                with m.If(cmd.fmt == f.spec.hw_code):
                    m.d.comb += block_bytes.eq(BLOCK_SIZE * f.spec.bits // 8)
        row_a = Signal(18)
        row_d = Signal(22)
        m.d.comb += [row_a.eq(cmd.cols << 2),
                     row_d.eq(Mux(quant_op, kb * block_bytes,
                                  Mux(bf16, cmd.cols << 1, cmd.cols << 2)))]
        b_stride = Signal(32)
        m.d.comb += b_stride.eq(Mux(bias, 0, cmd.b_stride))
        b_rows = Signal(16)
        m.d.comb += b_rows.eq(Mux(bias, 1, cmd.rows))
        END_BITS = 50
        span_layout = data.StructLayout({"a": END_BITS, "b": END_BITS, "d": END_BITS,
                                         "s": END_BITS})
        ends = Signal(span_layout)
        with m.If(state == _State.SPANS):
            m.d.sync += [
                ends.a.eq(cmd.a + (cmd.rows - 1) * cmd.a_stride + row_a),
                ends.b.eq(cmd.b + (b_rows - 1) * b_stride + row_a),
                ends.d.eq(cmd.d + (cmd.rows - 1) * cmd.d_stride + row_d),
                ends.s.eq(cmd.d_scales + (cmd.rows - 1) * cmd.d_scales_stride + kb),
            ]

        def overlap(p0, p1, q0, q1):
            return (p0 < q1) & (q0 < p1)

        uses_b = binary | bias
        align_bad = ((cmd.a[:2] != 0) | (cmd.a_stride[:2] != 0)
                     | (uses_b & (cmd.b[:2] != 0)) | (binary & (cmd.b_stride[:2] != 0)))
        stride_bad = (cmd.rows > 1) & ((cmd.d_stride < row_d)
                                       | (quant_op & (cmd.d_scales_stride < kb)))
        in_place_a = fp32 & (cmd.a == cmd.d) & (cmd.a_stride == cmd.d_stride)
        in_place_b = binary & (cmd.b == cmd.d) & (cmd.b_stride == cmd.d_stride)
        ov_ad = overlap(cmd.a, ends.a, cmd.d, ends.d) & ~in_place_a
        ov_bd = uses_b & overlap(cmd.b, ends.b, cmd.d, ends.d) & ~in_place_b
        ov_s = quant_op & (overlap(cmd.a, ends.a, cmd.d_scales, ends.s)
                           | overlap(cmd.d, ends.d, cmd.d_scales, ends.s))
        out_of_range = ((ends.a > self._tsram_bytes) | (ends.d > self._tsram_bytes)
                        | (uses_b & (ends.b > self._tsram_bytes))
                        | (quant_op & (ends.s > self._tsram_bytes)))
        status = Signal(8)
        with m.If(op > max(o.value for o in TvpOp)):
            m.d.comb += status.eq(ErrorCode.ILLEGAL_FIELD)
        with m.Elif(quant_op & ~fmt_valid):
            m.d.comb += status.eq(ErrorCode.ILLEGAL_FIELD)
        with m.Elif(quant_op & ~fmt_built):
            m.d.comb += status.eq(ErrorCode.FORMAT_NOT_BUILT)
        with m.Elif((cmd.rows == 0) | (cmd.cols == 0)):
            m.d.comb += status.eq(ErrorCode.ILLEGAL_SHAPE)
        with m.Elif(align_bad | stride_bad | ov_ad | ov_bd | ov_s):
            m.d.comb += status.eq(ErrorCode.ILLEGAL_FIELD)
        with m.Elif(out_of_range):
            m.d.comb += status.eq(ErrorCode.TSRAM_OUT_OF_RANGE)
        ev_status = Signal(8)
        poisoned = Signal()
        start = Signal()
        m.d.comb += start.eq((state == _State.DECIDE) & (status == ErrorCode.OK))

        # ---- per-command constants -------------------------------------------------------
        beats_row = Signal(17)                       # beats a row (QUANT_MX: whole blocks)
        with m.If(state == _State.DECIDE):
            m.d.sync += beats_row.eq(Mux(quant_op, kb << (_log2(BLOCK_SIZE) - ll),
                                         (cmd.cols + L - 1) >> ll))

        def row_words(addr):
            """Port words a source row starting at byte ``addr`` covers."""
            return ((addr[:lp] + row_a + P - 1) >> lp)[:16 + 3]

        def elem_off(addr):
            return addr[2:lp] if L > 1 else Const(0, 1)

        # ---- read side: per source a requester and an aligner ----------------------------
        req = self.mem_rd.req
        rsp = self.mem_rd.rsp
        m.submodules.tags = tags = SyncFIFO(width=1, depth=2 * _FIFO_DEPTH)
        m.d.comb += [req.payload.write.eq(0), req.payload.data.eq(0), req.payload.strb.eq(0),
                     rsp.ready.eq(1)]
        sources = []
        WB = max(1, AB - lp)
        for idx, name in enumerate(("a", "b")):
            base = cmd.a if name == "a" else cmd.b
            if name == "a":
                stride = cmd.a_stride
            elif "bias_strided" in faults:
                stride = cmd.b_stride
            else:
                stride = b_stride
            used = Const(1) if name == "a" else binary | bias
            fifo = SyncFIFOBuffered(width=8 * P, depth=_FIFO_DEPTH)
            m.submodules[f"{name}_fifo"] = fifo
            # requester
            r_active = Signal(name=f"{name}_r_active")
            r_word = Signal(WB, name=f"{name}_r_word")
            r_end = Signal(WB, name=f"{name}_r_end")
            r_next = Signal(AB, name=f"{name}_r_next")
            r_rows = Signal(16, name=f"{name}_r_rows")
            credit = Signal(range(_FIFO_DEPTH + 1), name=f"{name}_credit")
            elig = Signal(name=f"{name}_elig")
            grant = Signal(name=f"{name}_grant")
            m.d.comb += elig.eq(r_active & (credit < _FIFO_DEPTH))

            def word_of(addr):
                return addr[lp:AB] if AB > lp else Const(0, 1)

            def end_of(addr):
                end = Signal(AB + 1)
                m.d.comb += end.eq(addr + row_a - 1)
                return end[lp:AB] if AB > lp else Const(0, 1)

            with m.If(start):
                m.d.sync += [r_active.eq(used), r_word.eq(word_of(base[:AB])),
                             r_end.eq(end_of(base[:AB])), r_next.eq(base[:AB] + stride[:AB]),
                             r_rows.eq(cmd.rows - 1)]
            with m.If(grant):
                with m.If(r_word == r_end):
                    with m.If(r_rows == 0):
                        m.d.sync += r_active.eq(0)
                    with m.Else():
                        m.d.sync += [r_word.eq(word_of(r_next)), r_end.eq(end_of(r_next)),
                                     r_next.eq(r_next + stride[:AB]), r_rows.eq(r_rows - 1)]
                with m.Else():
                    m.d.sync += r_word.eq(r_word + 1)
            consume = Signal(name=f"{name}_consume")
            m.d.sync += credit.eq(credit + grant - consume)
            m.d.comb += fifo.r_en.eq(consume)
            # aligner
            g_active = Signal(name=f"{name}_g_active")
            g_next = Signal(AB, name=f"{name}_g_next")
            g_rows = Signal(16, name=f"{name}_g_rows")
            g_off = Signal(max(1, ll), name=f"{name}_g_off")
            g_words = Signal(19, name=f"{name}_g_words")
            g_beats = Signal(17, name=f"{name}_g_beats")
            g_elems = Signal(17, name=f"{name}_g_elems")
            g_first = Signal(name=f"{name}_g_first")
            g_prev = Signal(8 * P, name=f"{name}_g_prev")

            def row_start(addr, beats, g_off=g_off, g_words=g_words, g_beats=g_beats,
                          g_elems=g_elems, g_first=g_first):
                off = elem_off(addr)
                return [g_off.eq(off), g_words.eq(row_words(addr)), g_beats.eq(beats),
                        g_elems.eq(cmd.cols), g_first.eq(off != 0)]

            first_beats = Mux(quant_op, kb << (_log2(BLOCK_SIZE) - ll), (cmd.cols + L - 1) >> ll)
            with m.If(start):
                m.d.sync += [g_active.eq(used), g_next.eq(base[:AB] + stride[:AB]),
                             g_rows.eq(cmd.rows - 1)]
                m.d.sync += row_start(base[:AB], first_beats)
            need = Signal(name=f"{name}_need")
            m.d.comb += need.eq(g_words != 0)
            cur = Signal(8 * P, name=f"{name}_cur")
            m.d.comb += cur.eq(Mux(need, fifo.r_data, 0))
            window = Cat(g_prev, cur)
            shift = Mux(g_off == 0, L, g_off)
            options = [window[32 * k:32 * (k + L)] for k in range(1, L + 1)]
            beat_raw = Signal(8 * P, name=f"{name}_beat_raw")
            m.d.comb += beat_raw.eq(options[0] if L == 1 else Array(options)[(shift - 1)[:ll]])
            beat = Signal(data.ArrayLayout(32, L), name=f"{name}_beat")
            for n in range(L):
                keep = Const(1) if "no_pad_mask" in faults else (g_elems > n)
                m.d.comb += beat[n].eq(Mux(keep, beat_raw[32 * n:32 * n + 32], 0))
            valid = Signal(name=f"{name}_valid")
            m.d.comb += valid.eq(g_active & ~g_first & (~need | fifo.r_rdy))
            take = Signal(name=f"{name}_take")
            with m.If(g_active & g_first & fifo.r_rdy):
                m.d.comb += consume.eq(1)
                m.d.sync += [g_prev.eq(fifo.r_data), g_words.eq(g_words - 1), g_first.eq(0)]
            with m.If(take):
                m.d.comb += consume.eq(need)
                m.d.sync += [g_prev.eq(cur), g_words.eq(g_words - need),
                             g_beats.eq(g_beats - 1),
                             g_elems.eq(Mux(g_elems > L, g_elems - L, 0))]
                with m.If(g_beats == 1):
                    with m.If(g_rows == 0):
                        m.d.sync += g_active.eq(0)
                    with m.Else():
                        m.d.sync += [g_next.eq(g_next + stride[:AB]), g_rows.eq(g_rows - 1)]
                        m.d.sync += row_start(g_next, beats_row)
            sources.append(SimpleNamespace(elig=elig, grant=grant, word=r_word, fifo=fifo, valid=valid,
                                take=take, beat=beat, active=g_active, used=used))

        sa, sb = sources
        last_b = Signal()           # the last read went to B: A first next time
        sel_a, sel_b = Signal(), Signal()
        m.d.comb += [
            sel_a.eq(tags.w_rdy & sa.elig & (~sb.elig | last_b)),
            sel_b.eq(tags.w_rdy & sb.elig & ~sel_a),
            req.valid.eq(sel_a | sel_b),
            req.payload.addr.eq(Mux(sel_b, sb.word, sa.word)),
            sa.grant.eq(sel_a & req.ready), sb.grant.eq(sel_b & req.ready),
            tags.w_en.eq(req.valid & req.ready), tags.w_data.eq(sel_b),
        ]
        with m.If(req.valid & req.ready):
            m.d.sync += last_b.eq(sel_b)
        m.d.comb += [
            tags.r_en.eq(rsp.valid),
            sa.fifo.w_en.eq(rsp.valid & ~tags.r_data), sb.fifo.w_en.eq(rsp.valid & tags.r_data),
            sa.fifo.w_data.eq(rsp.payload.data), sb.fifo.w_data.eq(rsp.payload.data),
        ]
        with m.If(rsp.valid & (rsp.payload.status == EccStatus.UNCORRECTABLE)):
            m.d.sync += poisoned.eq(1)
        with m.If(start):
            m.d.sync += poisoned.eq(0)

        # ---- beats into the ALU or the quantiser ---------------------------------------
        scalar = Signal(32)
        m.d.comb += scalar.eq(cmd.scalar)
        sources_ok = Signal()
        m.d.comb += sources_ok.eq(sa.valid & (~binary & ~bias | sb.valid))
        alu_op = Signal(3)
        for t_op, v_op in ALU_OP.items():
            with m.If(op == t_op.value):
                m.d.comb += alu_op.eq(v_op)
        m.d.comb += [
            alu.i.payload.op.eq(alu_op), alu.i.payload.a.eq(sa.beat),
            quant.i.payload.values.eq(sa.beat), quant.i.payload.fmt.eq(cmd.fmt),
            alu.i.valid.eq(sources_ok & ~quant_op), quant.i.valid.eq(sources_ok & quant_op),
        ]
        for n in range(L):
            m.d.comb += alu.i.payload.b[n].eq(Mux(is_op(TvpOp.SCALE), scalar, sb.beat[n]))
        fire = Signal()
        m.d.comb += fire.eq(Mux(quant_op, quant.i.valid & quant.i.ready,
                                alu.i.valid & alu.i.ready))
        m.d.comb += [sa.take.eq(fire), sb.take.eq(fire & (binary | bias))]

        # ---- write side ------------------------------------------------------------------
        w_rows = Signal(16)
        w_row = Signal(AB)              # the current D row's start
        w_addr = Signal(AB)             # the next piece's byte address (D)
        w_elems = Signal(17)
        s_row = Signal(AB)
        s_addr = Signal(AB)
        w_blocks = Signal(range((1 << 16) // BLOCK_SIZE + 2))
        w_flush = Signal()              # every piece sent: flush the packers
        w_done_main = Signal()
        w_done_scale = Signal()
        with m.If(start):
            m.d.sync += [w_rows.eq(cmd.rows - 1), w_row.eq(cmd.d[:AB]), w_addr.eq(cmd.d[:AB]),
                         w_elems.eq(cmd.cols), s_row.eq(cmd.d_scales[:AB]),
                         s_addr.eq(cmd.d_scales[:AB]), w_blocks.eq(kb), w_flush.eq(0),
                         w_done_main.eq(0), w_done_scale.eq(~quant_op)]
        mp, sp = main_pk.i.payload, scale_pk.i.payload

        def next_row():
            with m.If(w_rows == 0):
                m.d.sync += w_flush.eq(1)
            with m.Else():
                m.d.sync += [w_rows.eq(w_rows - 1), w_row.eq(w_row + cmd.d_stride[:AB]),
                             w_addr.eq(w_row + cmd.d_stride[:AB]),
                             s_row.eq(s_row + cmd.d_scales_stride[:AB]),
                             s_addr.eq(s_row + cmd.d_scales_stride[:AB]),
                             w_elems.eq(cmd.cols), w_blocks.eq(kb)]

        # element-wise results
        val = alu_out.o.payload.value
        fp32_data = Cat(*(val[n] for n in range(L)))
        bf16_data = Cat(*(val[n][:16] for n in range(L)))
        elem_mask = Cat(*(w_elems > n for n in range(L)))
        fp32_mask = Cat(*(Mux(elem_mask[n], 0b1111, 0) for n in range(L)))
        bf16_mask = Cat(*(Mux(elem_mask[n], 0b11, 0) for n in range(L)))
        # quantised blocks: the codes packed as docs/layout.md, in pieces of P bytes
        # a block's pieces may take several cycles: a buffer keeps the quantiser running (a plain
        # SyncFIFO: a buffered one of depth 2 has a 1-deep memory, whose zero-width address
        # Verilator refuses in the build)
        qlayout = data.StructLayout({"scale": 8, "codes": data.ArrayLayout(8, BLOCK_SIZE)})
        m.submodules.qbuf = qbuf = SyncFIFO(width=qlayout.size, depth=2)
        qo = data.View(qlayout, qbuf.r_data)
        qo_valid, qo_ready = qbuf.r_rdy, qbuf.r_en
        m.d.comb += [qbuf.w_en.eq(quant.o.valid), quant.o.ready.eq(qbuf.w_rdy),
                     qbuf.w_data.eq(Cat(quant.o.payload.scale, quant.o.payload.codes))]
        codes = qo.codes
        packed = Signal(256)
        m.d.comb += packed.eq(Cat(*(codes[i] for i in range(BLOCK_SIZE))))
        for f in formats:
            if f.spec.bits != 8:
                bits = f.spec.bits
                with m.If(cmd.fmt == f.spec.hw_code):
                    m.d.comb += packed.eq(Cat(*(codes[i][:bits] for i in range(BLOCK_SIZE))))
        pieces = max(1, 32 // P)
        piece = Signal(range(max(2, pieces)))
        piece_sent = Signal()
        scale_sent = Signal()
        piece_bytes = Signal(7)
        m.d.comb += piece_bytes.eq(block_bytes - (piece << lp) if pieces > 1 else block_bytes)
        piece_data = Signal(8 * P)
        if pieces > 1:
            m.d.comb += piece_data.eq(Array(packed[8 * P * i:8 * P * (i + 1)]
                                            for i in range(pieces))[piece])
        else:
            m.d.comb += piece_data.eq(packed)
        piece_mask = Cat(*(piece_bytes > b for b in range(min(P, BLOCK_SIZE))))
        last_piece = Signal()
        m.d.comb += last_piece.eq((piece_bytes <= P) if pieces > 1 else 1)

        running = state == _State.RUN
        with m.If(running & w_flush):
            m.d.comb += [mp.flush.eq(1), main_pk.i.valid.eq(~w_done_main),
                         sp.flush.eq(1), scale_pk.i.valid.eq(~w_done_scale)]
            with m.If(main_pk.i.ready):
                m.d.sync += w_done_main.eq(1)
            with m.If(scale_pk.i.ready):
                m.d.sync += w_done_scale.eq(1)
        with m.Elif(running & quant_op):
            m.d.comb += [
                mp.addr.eq(w_addr), mp.data.eq(piece_data), mp.mask.eq(piece_mask),
                main_pk.i.valid.eq(qo_valid & ~piece_sent),
                sp.addr.eq(s_addr), sp.data.eq(qo.scale), sp.mask.eq(1),
                scale_pk.i.valid.eq(qo_valid & ~scale_sent),
            ]
            code_done = piece_sent | (main_pk.i.ready & last_piece)
            scale_done = scale_sent | scale_pk.i.ready
            m.d.comb += qo_ready.eq(qo_valid & code_done & scale_done)
            with m.If(main_pk.i.valid & main_pk.i.ready):
                m.d.sync += w_addr.eq(w_addr + Mux(last_piece, piece_bytes, P))
                with m.If(last_piece):
                    m.d.sync += [piece_sent.eq(1), piece.eq(0)]
                with m.Else():
                    m.d.sync += piece.eq(piece + 1)
            with m.If(scale_pk.i.valid & scale_pk.i.ready):
                m.d.sync += [scale_sent.eq(1), s_addr.eq(s_addr + 1)]
            with m.If(qo_valid & qo_ready):
                m.d.sync += [piece_sent.eq(0), scale_sent.eq(0), w_blocks.eq(w_blocks - 1)]
                with m.If(w_blocks == 1):
                    next_row()
        with m.Elif(running):
            m.d.comb += [
                mp.addr.eq(w_addr), mp.data.eq(Mux(bf16, bf16_data, fp32_data)),
                mp.mask.eq(Mux(bf16, bf16_mask, fp32_mask)),
                main_pk.i.valid.eq(alu_out.o.valid), alu_out.o.ready.eq(main_pk.i.ready),
            ]
            with m.If(alu_out.o.valid & alu_out.o.ready):
                m.d.sync += [w_addr.eq(w_addr + Mux(bf16, 2 * L, 4 * L)),
                             w_elems.eq(w_elems - L)]
                with m.If(w_elems <= L):
                    next_row()

        m.submodules.wr_out = wr_out = StreamRegister(self.mem_wr.req.payload.shape())
        wiring.connect(m, wr_out.o, wiring.flipped(self.mem_wr.req))
        wr = wr_out.i
        m.d.comb += self.mem_wr.rsp.ready.eq(1)
        with m.If(main_pk.o.valid):
            m.d.comb += [wr.payload.addr.eq(main_pk.o.payload.addr),
                         wr.payload.data.eq(main_pk.o.payload.data),
                         wr.payload.strb.eq(main_pk.o.payload.strb),
                         main_pk.o.ready.eq(wr.ready)]
        with m.Else():
            m.d.comb += [wr.payload.addr.eq(scale_pk.o.payload.addr),
                         wr.payload.data.eq(scale_pk.o.payload.data),
                         wr.payload.strb.eq(scale_pk.o.payload.strb),
                         scale_pk.o.ready.eq(wr.ready)]
        m.d.comb += [wr.valid.eq(main_pk.o.valid | scale_pk.o.valid), wr.payload.write.eq(1)]
        finished = Signal()
        # Every write taken by the SRAM, and (always true of the real units, whose last result
        # needs the last beat; stated so that no unit can end a command with reads in flight)
        # every source beat taken.
        m.d.comb += finished.eq(running & w_done_main & w_done_scale & wr_out.empty
                                & ~sa.active & ~sb.active)

        # ---- command FSM and the event -------------------------------------------------
        elements = Signal(32)
        m.d.comb += self.cmd.ready.eq(state == _State.IDLE)
        m.d.comb += [self.event.valid.eq(state == _State.EVENT),
                     self.event.payload.tag.eq(cmd.tag), self.event.payload.status.eq(ev_status)]
        with m.If(state == _State.IDLE):
            with m.If(self.cmd.valid):
                m.d.sync += [cmd.eq(self.cmd.payload), state.eq(_State.SPANS)]
        with m.Elif(state == _State.SPANS):
            m.d.sync += state.eq(_State.DECIDE)
        with m.Elif(state == _State.DECIDE):
            m.d.sync += [ev_status.eq(status), elements.eq(cmd.rows * cmd.cols),
                         state.eq(Mux(status == ErrorCode.OK, _State.RUN, _State.EVENT))]
        with m.Elif(state == _State.RUN):
            with m.If(finished):
                m.d.sync += [state.eq(_State.EVENT),
                             ev_status.eq(Mux(poisoned, ErrorCode.ECC_UNCORRECTABLE,
                                              ErrorCode.OK))]
        with m.Elif(self.event.ready):   # EVENT
            m.d.sync += state.eq(_State.IDLE)

        # ---- counters --------------------------------------------------------------------
        cnt = self.counters
        with m.If(state != _State.IDLE):
            m.d.sync += cnt.busy.eq(cnt.busy + 1)
        sink_ready = Mux(quant_op, quant.i.ready, alu.i.ready)
        with m.If(running & sa.active & sink_ready & ~sources_ok):
            m.d.sync += cnt.stall_input.eq(cnt.stall_input + 1)
        port_wr = self.mem_wr.req
        with m.If((port_wr.valid & ~port_wr.ready) | (self.event.valid & ~self.event.ready)):
            m.d.sync += cnt.stall_output.eq(cnt.stall_output + 1)
        with m.If(finished):
            m.d.sync += [cnt.ops.eq(cnt.ops + 1), cnt.elements.eq(cnt.elements + elements)]
        with m.If((state == _State.DECIDE) & (status != ErrorCode.OK)):
            m.d.sync += cnt.rejected.eq(cnt.rejected + 1)
        with m.If(req.valid & req.ready):
            m.d.sync += cnt.reads.eq(cnt.reads + 1)
        with m.If(port_wr.valid & port_wr.ready):
            m.d.sync += cnt.writes.eq(cnt.writes + 1)
        with m.If(self.counters_clear):
            m.d.sync += cnt.eq(0)
        return m
