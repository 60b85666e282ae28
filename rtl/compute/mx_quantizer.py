"""MX quantisation on chip: a block of 32 FP32 values to an E8M0 scale and 32 element codes.

:class:`MxQuantizer` is bit-exact to :func:`openmaia.numerics.quantize_mx` on one block
(``saturate=True``): the scale from the FP32 exponent field of the block's largest magnitude,
code 255 and all codes 0 for a block holding an Inf or NaN, each element rounded once to nearest
even and saturated to +-max. The contract is docs/tvp.md.

A block is buffered whole (its scale needs its amax), then read back a beat a cycle through
``lanes`` encoders, while the next block fills the other half of the buffer. The encoders'
parameters (mantissa bits, smallest step, largest code) are chosen per block by the format
selector, so they serve all built-in formats. With
``M`` the element's FP32 significand (the hidden bit included) and ``E_s`` the exponent of its
last place after division by the scale, the encoder shifts ``M`` right by
``sh = max(bitlen(M) - 1 - m, lsb - E_s)`` bits (INT8: ``lsb - E_s``), rounds to nearest even
(``n``) and forms the code magnitude ``((E_s + sh - lsb) << m) + n`` (INT8: ``n``): for an MX
float format that sum is exactly the biased exponent and mantissa fields, a rounding carry into
the next binade included.
"""


from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..errors import ERROR_CODE_BITS, ErrorCode
from ..numerics.elements import max_code
from ..numerics.formats import BLOCK_SIZE, E8M0_NAN, Format
from .element_decoder import _check_formats
from .fp32 import check_faults

__all__ = ["MxQuantizer", "QuantizerCounters", "FAULTS", "LANES", "COUNTER_BITS"]

#: Deliberate bugs :class:`MxQuantizer` can build in (mutation-testing hooks).
FAULTS = {
    "round_half_away":     "ties round away from zero instead of to even",
    "no_saturate":         "a rounded magnitude above the format's max is not saturated",
    "subnormal_as_normal": "FP32 subnormal inputs get a hidden bit",
    "amax_last_beat":      "the block's amax is taken from its last beat only",
}

#: Values a beat can carry (divisors of the block).
LANES = (1, 2, 4, 8, 16, 32)
COUNTER_BITS = 48


class QuantizerCounters(data.Struct):
    """Performance counters (count up from reset). ``beats``: input transfers; ``blocks``:
    results given; ``busy``: cycles with a block being assembled or in the pipeline;
    ``stall_input``: busy cycles without an input beat while one could be taken;
    ``stall_output``: cycles a result waits for ``o.ready``; ``illegal``: blocks answered
    ``FORMAT_NOT_BUILT``."""
    beats:        COUNTER_BITS
    blocks:       COUNTER_BITS
    busy:         COUNTER_BITS
    stall_input:  COUNTER_BITS
    stall_output: COUNTER_BITS
    illegal:      32


def _check_faults(faults) -> frozenset:
    return check_faults(faults, FAULTS)


def _bit_length(m: Module, x, name: str) -> Signal:
    """Bit length of ``x`` (0 for 0): a priority encoder."""
    width = len(x)
    out = Signal(range(width + 1), name=name)
    value = Const(0, len(out))
    for bit in range(width):
        value = Mux(x[bit], bit + 1, value)
    m.d.comb += out.eq(value)
    return out


class MxQuantizer(wiring.Component):
    """FP32 blocks to MX blocks, one block every ``32 / lanes`` cycles (module docstring).

    A block arrives as ``32 / lanes`` beats of ``lanes`` FP32 values (beat ``j`` lane ``n`` is
    element ``j * lanes + n``); ``fmt`` (the format's 3-bit ``hw_code``) is taken from the
    block's first beat. The result on ``o`` is the block's E8M0 ``scale``, its 32 ``codes`` (one
    a byte, FP6 / FP4 in the low bits) and ``status`` ``OK``, exactly as
    ``quantize_mx(block, fmt)`` (``saturate=True``). A format selector naming no built-in
    format gives ``status = FORMAT_NOT_BUILT``, scale 255 and codes 0; the next block is
    unaffected.

    Fully pipelined: a beat a cycle in, a block every ``32 / lanes`` cycles out, in order;
    :attr:`latency` cycles from accepting a block's last beat to its result (no stalls). All
    registers advance when ``o.valid`` is low or ``o.ready`` high, which is ``i.ready``.

    Parameters
    ----------
    formats : collection of :class:`~openmaia.numerics.formats.Format` or names
        The formats the selector may name.
    lanes : :class:`int`
        FP32 values a beat: 1, 2, 4, 8, 16 or 32.
    faults : collection of :class:`str`
        Deliberate bugs to build in, from :data:`FAULTS`. Empty for the real design.

    Members
    -------
    i : :py:`In(stream.Signature(MxQuantizer.input_layout(lanes)))`
    o : :py:`Out(stream.Signature(MxQuantizer.output_layout()))`
    counters : :py:`Out(QuantizerCounters)`
    """

    def __init__(self, *, formats, lanes=BLOCK_SIZE, faults=frozenset()):
        self._formats = _check_formats(formats)
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes not in LANES:
            raise ValueError(f"lanes must be one of {', '.join(map(str, LANES))}, not {lanes!r}")
        self._lanes = lanes
        self._faults = _check_faults(faults)
        super().__init__({
            "i": In(stream.Signature(self.input_layout(lanes))),
            "o": Out(stream.Signature(self.output_layout())),
            "counters": Out(QuantizerCounters),
        })

    @staticmethod
    def input_layout(lanes: int) -> data.StructLayout:
        """``values`` (``ArrayLayout(32, lanes)``, FP32 bits), ``fmt`` (3)."""
        return data.StructLayout({"values": data.ArrayLayout(32, lanes), "fmt": 3})

    @staticmethod
    def output_layout() -> data.StructLayout:
        """``scale`` (8, E8M0), ``codes`` (``ArrayLayout(8, 32)``), ``status`` (8)."""
        return data.StructLayout({"scale": 8, "codes": data.ArrayLayout(8, BLOCK_SIZE),
                                  "status": ERROR_CODE_BITS})

    @property
    def formats(self) -> frozenset:
        return self._formats

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def beats(self) -> int:
        """Beats a block."""
        return BLOCK_SIZE // self._lanes

    @property
    def faults(self) -> frozenset:
        return self._faults

    @property
    def latency(self) -> int:
        """Cycles from accepting a block's last beat to its result being valid (no stalls):
        the block's :attr:`beats` pass the encoders one a cycle behind a buffer read, then two
        pipeline stages."""
        return self.beats + 3

    def elaborate(self, platform):
        m = Module()
        lanes, beats, faults = self._lanes, self.beats, self._faults
        en, accept = Signal(), Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en),
                     accept.eq(self.i.valid & en)]
        beat_in = self.i.payload

        # Assembly: the block's beats go into one half of a two-block buffer while the encoders
        # read the other half; the running amax, special flag and format travel beside.
        beat = Signal(range(max(beats, 2)))   # 1 bit at least: Verilog has no empty vector
        first, last = Signal(), Signal()
        m.d.comb += [first.eq(beat == 0), last.eq(beat == beats - 1)]
        amax_q, special_q, fmt_q = Signal(31), Signal(), Signal(3)
        beat_amax_w = self._max_tree(m, [beat_in.values[n][:31] for n in range(lanes)])
        beat_special = Cat(beat_in.values[n][23:31].all() for n in range(lanes)).any()
        if "amax_last_beat" in faults:
            run_amax = beat_amax_w
        else:
            run_amax = Mux(first | (beat_amax_w > amax_q), beat_amax_w, amax_q)
        run_special = beat_special | (special_q & ~first)
        fmt_now = Mux(first, beat_in.fmt, fmt_q)
        block_amax = Signal(31, name="block_amax")
        m.d.comb += block_amax.eq(run_amax)
        fill = Signal()                       # the buffer half the arriving block fills
        with m.If(accept):
            m.d.sync += [beat.eq(Mux(last, 0, beat + 1)), amax_q.eq(run_amax),
                         special_q.eq(run_special), fmt_q.eq(fmt_now)]
            with m.If(last):
                m.d.sync += fill.eq(~fill)

        m.submodules.buffer = buffer = Memory(shape=data.ArrayLayout(32, lanes),
                                              depth=2 * beats, init=[])
        wr, rd = buffer.write_port(), buffer.read_port()

        def address(half, index):
            return half if beats == 1 else Cat(index, half)

        m.d.comb += [wr.addr.eq(address(fill, beat)), wr.data.eq(beat_in.values),
                     wr.en.eq(accept)]

        # Encode sequencer: a block's beats, one a cycle from the cycle after its last beat.
        # The next block's last beat comes `beats` accepted cycles later at the earliest, when
        # the sequencer issues this block's last read, so one block is encoded at a time.
        block = Signal(data.StructLayout({"amax": 31, "special": 1, "fmt": 3}))
        reading, read_half = Signal(), Signal()
        index = Signal(range(max(beats, 2)))
        read_last = Signal()
        m.d.comb += [read_last.eq(index == beats - 1), rd.addr.eq(address(read_half, index)),
                     rd.en.eq(en)]
        with m.If(en):
            with m.If(reading):
                m.d.sync += index.eq(Mux(read_last, 0, index + 1))
                with m.If(read_last):
                    m.d.sync += reading.eq(0)
            with m.If(accept & last):
                m.d.sync += [reading.eq(1), index.eq(0), read_half.eq(fill),
                             block.amax.eq(block_amax), block.special.eq(run_special),
                             block.fmt.eq(fmt_now)]

        # Block parameters (scale, format), carried beside the beats through the pipeline.
        params = self._format_params(m, block.fmt)
        e_amax = block.amax[23:31]
        scale_raw = Signal(signed(10), name="scale_raw")
        m.d.comb += scale_raw.eq(e_amax - params["emax"])
        block_layout = data.StructLayout({
            "valid": 1, "last": 1, "scale": 8, "nan": 1, "illegal": 1, "mbits": 3, "is_int": 1,
            "lsb": signed(6), "max_mag": 8, "sign_pos": 3})
        s1 = Signal(block_layout)
        with m.If(en):
            m.d.sync += [
                s1.valid.eq(reading), s1.last.eq(read_last),
                s1.scale.eq(Mux(scale_raw[-1], 0, scale_raw[:8])),
                s1.nan.eq(block.special | params["illegal"]), s1.illegal.eq(params["illegal"]),
                s1.mbits.eq(params["mbits"]), s1.is_int.eq(params["is_int"]),
                s1.lsb.eq(params["lsb"]), s1.max_mag.eq(params["max_mag"]),
                s1.sign_pos.eq(params["sign_pos"]),
            ]

        # Stage 1 -> 2: each element's shift and exponent, from the beat read out of the buffer.
        elem = data.StructLayout({"sig": 24, "sign": 1, "sh": 5, "qe": signed(11)})
        s2 = Signal(data.StructLayout({"block": block_layout,
                                       "elems": data.ArrayLayout(elem, lanes)}))
        with m.If(en):
            m.d.sync += s2.block.eq(s1)
        for k in range(lanes):
            x = rd.data[k]
            exp = x[23:31]
            normal = exp.any()
            hidden = Const(1) if "subnormal_as_normal" in faults else normal
            sig = Cat(x[:23], hidden)
            length = Mux(normal, 24, _bit_length(m, x[:23], f"len{k}"))
            # E_s = max(E, 1) - 150 - (scale - 127): the exponent of sig's last place.
            e_s = Signal(signed(11), name=f"e_s{k}")
            m.d.comb += e_s.eq(Cat(exp[0] | ~normal, exp[1:]) - 23 - s1.scale)
            by_len = Signal(signed(11), name=f"by_len{k}")
            by_lsb = Signal(signed(11), name=f"by_lsb{k}")
            m.d.comb += [by_len.eq(length - 1 - s1.mbits), by_lsb.eq(s1.lsb - e_s)]
            sh = Signal(signed(11), name=f"sh{k}")
            m.d.comb += sh.eq(Mux(s1.is_int | (by_lsb > by_len), by_lsb, by_len))
            sh_c = Mux(sh[-1], 0, Mux(sh > 31, 31, sh[:5]))
            with m.If(en):
                m.d.sync += [s2.elems[k].sig.eq(sig), s2.elems[k].sign.eq(x[31]),
                             s2.elems[k].sh.eq(sh_c),
                             s2.elems[k].qe.eq(e_s + sh_c - s1.lsb)]

        # Stage 2 -> output: shift, round, assemble, saturate; a beat's codes shift in at the
        # top of the output register, so after the block's last beat code k sits at place k.
        b2 = s2.block
        codes = Signal(8 * BLOCK_SIZE)
        step = []
        for k in range(lanes):
            e = s2.elems[k]
            wide = Cat(Const(0, 2), e.sig)                    # two bits below for guard / sticky
            shifted = Signal(26, name=f"shifted{k}")
            m.d.comb += shifted.eq(wide >> e.sh)
            lost = Signal(name=f"lost{k}")
            m.d.comb += lost.eq((wide & ~(Const(-1, 26) << e.sh)).any())
            n_trunc = shifted[2:]
            guard = shifted[1]
            sticky = shifted[0] | lost
            if "round_half_away" in faults:
                up = guard
            else:
                up = guard & (sticky | n_trunc[0])
            n = Signal(10, name=f"n{k}")
            m.d.comb += n.eq(n_trunc[:9] + up)
            mag = Signal(12, name=f"mag{k}")
            expo = Mux(e.qe[-1], 0, e.qe[:8])
            m.d.comb += mag.eq(Mux(b2.is_int, n, (expo << b2.mbits) + n))
            if "no_saturate" in faults:
                sat = mag[:8]
            else:
                sat = Mux(mag > b2.max_mag, b2.max_mag, mag[:8])
            sat_w = Signal(8, name=f"sat{k}")
            m.d.comb += sat_w.eq(sat)
            signed_code = Signal(8, name=f"code{k}")
            m.d.comb += signed_code.eq(
                Mux(b2.is_int, Mux(e.sign, -sat_w, sat_w),
                    sat_w | (e.sign << b2.sign_pos)[:8]))
            step.append(Mux(b2.nan, 0, signed_code))
        out_valid = Signal()
        scale_out, status_out = Signal(8), Signal(ERROR_CODE_BITS)
        with m.If(en):
            m.d.sync += out_valid.eq(b2.valid & b2.last)
            with m.If(b2.valid):
                m.d.sync += codes.eq(Cat(codes[8 * lanes:], *step))
            with m.If(b2.valid & b2.last):
                m.d.sync += [scale_out.eq(Mux(b2.nan, E8M0_NAN, b2.scale)),
                             status_out.eq(Mux(b2.illegal, ErrorCode.FORMAT_NOT_BUILT,
                                               ErrorCode.OK))]
        m.d.comb += [self.o.valid.eq(out_valid), self.o.payload.scale.eq(scale_out),
                     self.o.payload.codes.eq(codes), self.o.payload.status.eq(status_out)]

        # Counters.
        cnt = self.counters
        in_flight = Signal(range(8))
        busy = Signal()
        m.d.sync += in_flight.eq(in_flight + (accept & last) - (self.o.valid & self.o.ready))
        m.d.comb += busy.eq(in_flight.any() | (beat != 0))
        with m.If(accept):
            m.d.sync += cnt.beats.eq(cnt.beats + 1)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += cnt.blocks.eq(cnt.blocks + 1)
            with m.If(self.o.payload.status != ErrorCode.OK):
                m.d.sync += cnt.illegal.eq(cnt.illegal + 1)
        with m.If(busy):
            m.d.sync += cnt.busy.eq(cnt.busy + 1)
        with m.If(busy & en & ~self.i.valid):
            m.d.sync += cnt.stall_input.eq(cnt.stall_input + 1)
        with m.If(self.o.valid & ~self.o.ready):
            m.d.sync += cnt.stall_output.eq(cnt.stall_output + 1)
        return m

    @staticmethod
    def _max_tree(m: Module, values: list, name: str = "amax") -> Signal:
        """The largest of ``values`` (unsigned), a balanced tree of named comparators."""
        level = 0
        while len(values) > 1:
            nxt = []
            for n in range(0, len(values) - 1, 2):
                a, b = values[n], values[n + 1]
                w = Signal(31, name=f"{name}_{level}_{n // 2}")
                m.d.comb += w.eq(Mux(a > b, a, b))
                nxt.append(w)
            if len(values) % 2:
                nxt.append(values[-1])
            values, level = nxt, level + 1
        out = Signal(31, name=f"beat_{name}")
        m.d.comb += out.eq(values[0])
        return out

    def _format_params(self, m: Module, fmt):
        """Per-block encoder parameters selected by ``fmt`` (named comb signals)."""
        p = {
            "emax": Signal(5, name="p_emax"), "mbits": Signal(3, name="p_mbits"),
            "lsb": Signal(signed(6), name="p_lsb"), "max_mag": Signal(8, name="p_max_mag"),
            "is_int": Signal(name="p_is_int"), "sign_pos": Signal(3, name="p_sign_pos"),
            "illegal": Signal(name="p_illegal"),
        }
        with m.Switch(fmt):
            for f in sorted(self._formats, key=lambda f: f.spec.hw_code):
                spec = f.spec
                with m.Case(spec.hw_code):
                    m.d.comb += [
                        p["emax"].eq(spec.emax), p["mbits"].eq(spec.mbits),
                        p["lsb"].eq(spec.lsb_exp), p["max_mag"].eq(max_code(f)),
                        p["is_int"].eq(f is Format.INT8), p["sign_pos"].eq(spec.bits - 1),
                        p["illegal"].eq(0),
                    ]
            with m.Default():
                m.d.comb += [p["emax"].eq(0), p["mbits"].eq(0), p["lsb"].eq(0),
                             p["max_mag"].eq(0), p["is_int"].eq(0), p["sign_pos"].eq(0),
                             p["illegal"].eq(1)]
        return p
