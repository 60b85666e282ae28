"""The lanes of the MX dot engine: exact element products and their fixed-point sum.

A lane multiplies one element of A by one of B exactly. With both elements decoded by
:func:`~openmaia.compute.element_decoder.decode_element` to ``(-1) ** sign * sig * 2 ** (exp +
lsb)``, the product is ``(-1) ** (sign_a ^ sign_b) * (sig_a * sig_b) << (exp_a + exp_b)`` in units
of ``2 ** (lsb_a + lsb_b)``, the unit of the block's exact sum. The engine splits this in two
pipeline stages:

* :func:`lane_product` (stage 0): decode, the narrow significand product, the shift amount, the
  sign and the lane's special-value flags;
* :func:`aligned_term` and :func:`sum_terms` (stage 1): the product shifted into place as a
  ones' complement term, and an adder tree whose carry inputs add the ``+1`` of every negative
  term, so negation costs no adder of its own.

Every width comes from the built-in formats (:func:`lane_widths`): the shifter is as wide, stage
by stage, as the largest finite product any built-in pair can reach at that point, and the sum is
``max(block_sum_bits)`` over the built-in pairs. Inf / NaN codes may overflow these widths; their
block result is decided by the flags alone, so the truncated garbage they leave in the sum never
matters.
"""

import functools
from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, signed
from amaranth.lib import data

from ..numerics.elements import codes_table
from ..numerics.formats import Format, block_sum_bits
from .element_decoder import DecodedElement

__all__ = ["LaneWidths", "lane_widths", "product_layout", "FLAGS_LAYOUT", "lane_decode",
           "lane_product", "aligned_term", "sum_terms", "add_carry", "fmt_is"]

#: Flags of one product, or of a beat's products: ``nan`` (a NaN operand, an illegal format
#: selector, or Inf x 0), ``inf_pos`` / ``inf_neg`` (an Inf product of that sign) and
#: ``neg_zero`` (every product is a negative zero: a zero operand and differing signs).
FLAGS_LAYOUT = data.StructLayout({"nan": 1, "inf_pos": 1, "inf_neg": 1, "neg_zero": 1})


@dataclass(frozen=True)
class LaneWidths:
    """Datapath widths of one built-in format set (see :func:`lane_widths`).

    ``product``: bits of ``sig_a * sig_b``; ``shift``: bits of ``exp_a + exp_b``; ``stages``:
    ``(k, width)`` for each stage of the logarithmic shifter, least significant first (stage
    ``k`` shifts by ``2 ** k``; ``width``: magnitude bits of its output), the last width being
    ``term``, the magnitude bits of an aligned product; ``sum``: signed bits of the exact block
    sum; ``block_exp``: signed bits of the block exponent ``lsb_a + lsb_b + sa + sb - 254``.
    ``hi_*``: the same for the FP4 high-nibble path (E2M1 x E2M1), all 0 when the build has no
    double-rate FP4.
    """
    product: int
    shift: int
    stages: tuple
    term: int
    sum: int
    block_exp: int
    hi_product: int = 0
    hi_shift: int = 0
    hi_stages: tuple = ()
    hi_term: int = 0


@functools.cache
def _finite_range(fmt: Format) -> tuple[int, int]:
    """Largest decoded ``(sig, exp)`` over the finite codes of ``fmt``."""
    spec, table = fmt.spec, codes_table(fmt)
    if not fmt.is_float:
        return 1 << (spec.bits - 1), 0
    sig_max = exp_max = 0
    for code in range(spec.codes):
        if table.nan[code] or table.inf[code]:
            continue
        e = (code >> spec.mbits) & ((1 << spec.ebits) - 1)
        man = code & ((1 << spec.mbits) - 1)
        sig_max = max(sig_max, (1 << spec.mbits) | man if e else man)
        exp_max = max(exp_max, e - 1 if e else 0)
    return sig_max, exp_max


def _shifter_widths(pairs) -> tuple[int, int, tuple]:
    """``(product, shift, stages)`` widths for products of the ``(fmt_a, fmt_b)`` pairs.

    ``stages``: ``(k, width)`` per shifter stage, least significant first: stage ``k`` shifts by
    ``2 ** k`` when bit ``k`` of the shift is set, and its output is as wide as the largest finite
    product any pair reaches there (a partial shift of at most ``min(shift, 2 ** (k + 1) - 1)``).
    """
    bounds = []
    for fa, fb in pairs:
        (sig_a, exp_a), (sig_b, exp_b) = _finite_range(fa), _finite_range(fb)
        bounds.append((sig_a * sig_b, exp_a + exp_b))
    shift_max = max(s for _, s in bounds)
    stages = tuple((k, max(p << min(s, (2 << k) - 1) for p, s in bounds).bit_length())
                   for k in range(shift_max.bit_length()))
    # At least one shift bit: a zero-width field would become a `[-1:0]` vector in Verilog.
    return max(p for p, _ in bounds).bit_length(), max(1, shift_max.bit_length()), stages


@functools.cache
def lane_widths(formats: frozenset, double_rate: bool) -> LaneWidths:
    """The datapath widths for the built-in ``formats`` (a frozenset of :class:`Format`)."""
    pairs = [(fa, fb) for fa in formats for fb in formats]
    product, shift, stages = _shifter_widths(pairs)
    lsbs = [fmt.spec.lsb_exp for fmt in formats]
    exp_range = range(2 * min(lsbs) - 254, 2 * max(lsbs) + 2 * 255 - 254 + 1)
    widths = dict(
        product=product, shift=shift, stages=stages,
        term=stages[-1][1] if stages else product,
        sum=max(block_sum_bits(fa, fb) for fa, fb in pairs),
        block_exp=Shape.cast(exp_range).width,
    )
    if double_rate:
        hi_product, hi_shift, hi_stages = _shifter_widths([(Format.E2M1, Format.E2M1)])
        widths.update(hi_product=hi_product, hi_shift=hi_shift, hi_stages=hi_stages,
                      hi_term=hi_stages[-1][1])
    return LaneWidths(**widths)


def product_layout(product: int, shift: int) -> data.StructLayout:
    """One lane's product as stage 0 registers it: ``sign * mag << shift``."""
    return data.StructLayout({"mag": product, "shift": shift, "sign": 1})



def fmt_is(fmt_sel: Value, fmt: Format) -> Value:
    """``fmt_sel`` selects ``fmt`` (written so that Yosys never emits ``!x`` on a vector)."""
    return ~(Value.cast(fmt_sel) ^ fmt.spec.hw_code).any()


def _any_of(values) -> Value:
    values = [Value.cast(v) for v in values]
    return Cat(*values).any() if values else Const(0)


def lane_decode(m: Module, code, fmt_sel, *, formats, name="decoded"):
    """The lanes' element decoder: :class:`~openmaia.compute.element_decoder.DecodedElement`
    fields of ``code`` (8 bits, FP6 / FP4 codes in the low bits) in format ``fmt_sel``.

    The same values as :func:`~openmaia.compute.element_decoder.decode_element` for every code
    of a built-in format, but built from shared fields instead of one full decode per format
    AND-OR selected: the raw exponent and mantissa fields are selected first (by bit position),
    then one ``E != 0`` test, one decrement ``E - normal`` and one hidden bit serve every float
    format. For an illegal selector only ``is_nan`` and ``illegal`` are defined (the engine's
    result is then NaN whatever the other fields hold).
    """
    code, fmt_sel = Value.cast(code), Value.cast(fmt_sel)
    element = DecodedElement.of(formats)
    out = Signal(element, name=name)
    floats = [fmt for fmt in Format if fmt in formats and fmt.is_float]
    sel = {fmt: Signal(name=f"{name}_is_{fmt.value}") for fmt in Format if fmt in formats}
    for fmt, signal in sel.items():
        m.d.comb += signal.eq(fmt_is(fmt_sel, fmt))
    exp_bits = max([fmt.spec.ebits for fmt in floats], default=1)
    man_bits = max([fmt.spec.mbits for fmt in floats], default=1)
    e_raw = Signal(exp_bits, name=f"{name}_e")
    man = Signal(man_bits, name=f"{name}_m")
    normal = Signal(name=f"{name}_normal")
    e_bits = [[] for _ in range(exp_bits)]
    m_bits = [[] for _ in range(man_bits)]
    hidden = [[] for _ in range(man_bits + 1)]
    signs = []
    for fmt in floats:
        spec = fmt.spec
        for k in range(spec.ebits):
            e_bits[k].append(sel[fmt] & code[spec.mbits + k])
        for k in range(spec.mbits):
            m_bits[k].append(sel[fmt] & code[k])
        hidden[spec.mbits].append(sel[fmt])
        signs.append(sel[fmt] & code[spec.bits - 1])
    m.d.comb += [
        e_raw.eq(Cat(_any_of(bits) for bits in e_bits)),
        man.eq(Cat(_any_of(bits) for bits in m_bits)),
        normal.eq(e_raw.any()),
    ]
    sig = Cat(man, Const(0, 1)) | Cat(normal & _any_of(h) for h in hidden)
    zero = ~normal & ~man.any()
    nan, inf = [], []
    for fmt in floats:
        spec = fmt.spec
        e_all = code[spec.mbits:spec.mbits + spec.ebits].all()
        m_any = code[:spec.mbits].any()
        if spec.has_inf:
            inf.append(sel[fmt] & e_all & ~m_any)
            nan.append(sel[fmt] & e_all & m_any)
        elif spec.has_nan:
            nan.append(sel[fmt] & e_all & code[:spec.mbits].all())
    if Format.INT8 in formats:
        int8 = sel[Format.INT8]
        mag = Signal(8, name=f"{name}_int8")
        m.d.comb += mag.eq(Mux(code[7], (~code + 1)[:8], code))
        sig = sig | Mux(int8, mag, 0)
        zero = zero & ~(int8 & code.any())
        signs.append(int8 & code[7])
    illegal = ~Cat(sel.values()).any()
    m.d.comb += [
        out.sign.eq(_any_of(signs)),
        out.exp.eq((e_raw - normal)[:len(out.exp)]),
        out.sig.eq(sig[:len(out.sig)]),
        out.is_nan.eq(_any_of(nan) | illegal),
        out.is_inf.eq(_any_of(inf)),
        out.is_zero.eq(zero),
        out.illegal.eq(illegal),
    ]
    return out


def _multiply(a: Value, b: Value, width: int) -> Value:
    """``a * b`` truncated to ``width`` bits; narrow operands as plain logic (no DSP block)."""
    a, b = Value.cast(a), Value.cast(b)
    if min(len(a), len(b)) > 4:
        return (a * b)[:width]
    if len(b) > len(a):
        a, b = b, a
    partials = [Mux(b[k], a << k, 0) for k in range(len(b))]
    while len(partials) > 1:
        partials = [partials[k] + partials[k + 1] if k + 1 < len(partials) else partials[k]
                    for k in range(0, len(partials), 2)]
    return Value.cast(partials[0])[:width]


def _product(m, da, db, layout, *, name, zero=False):
    out = Signal(layout, name=name)
    mag = Const(0, layout.size) if zero else _multiply(da.sig, db.sig, len(out.mag))
    m.d.comb += [
        out.mag.eq(mag),
        out.shift.eq((da.exp + db.exp)[:len(out.shift)]),
        out.sign.eq(da.sign ^ db.sign),
    ]
    return out


def _flags(m, da, db, *, name):
    flags = Signal(FLAGS_LAYOUT, name=name)
    inf = da.is_inf | db.is_inf
    sign = da.sign ^ db.sign
    m.d.comb += [
        flags.nan.eq(da.is_nan | db.is_nan | (da.is_inf & db.is_zero) | (da.is_zero & db.is_inf)),
        flags.inf_pos.eq(inf & ~sign),
        flags.inf_neg.eq(inf & sign),
        flags.neg_zero.eq((da.is_zero | db.is_zero) & sign),
    ]
    return flags


def lane_product(m: Module, a, b, fmt_a, fmt_b, fp4, *, formats, widths: LaneWidths,
                 swap_a=False, stuck=False, name="lane"):
    """Stage 0 of one lane: ``(lo, hi, flags)``, combinational, added to ``m``.

    ``a``, ``b``: 8-bit element codes; ``fmt_a``, ``fmt_b``: 3-bit format selectors; ``fp4``:
    FP4 x FP4 double-rate mode (both formats E2M1), in which the lane also multiplies the high
    nibbles. ``lo``: the product of the codes (of their low nibbles in FP4 mode), ``hi``: the
    product of the high nibbles (zero outside FP4 mode; ``None`` without double rate), both
    :func:`product_layout` values; ``flags``: :data:`FLAGS_LAYOUT` over both products.

    Deliberate bugs: ``swap_a`` reads A's nibbles in the wrong order in FP4 mode, ``stuck`` makes
    both products zero.
    """
    a, b, fp4 = Value.cast(a), Value.cast(b), Value.cast(fp4)
    a_lo = Mux(fp4, Cat(a[4:8], Const(0, 4)), a) if swap_a else a
    da = lane_decode(m, a_lo, fmt_a, formats=formats, name=f"{name}_a")
    db = lane_decode(m, b, fmt_b, formats=formats, name=f"{name}_b")
    lo = _product(m, da, db, product_layout(widths.product, widths.shift), name=f"{name}_lo",
                  zero=stuck)
    flags = _flags(m, da, db, name=f"{name}_flags")
    if not widths.hi_term:
        return lo, None, flags
    e2m1 = Const(Format.E2M1.spec.hw_code, 3)
    a_hi = a[:4] if swap_a else a[4:8]
    # Outside FP4 mode the high product must be zero: gating A's magnitude bits is enough (a
    # zero magnitude of either sign adds nothing: ones' complement ~0 plus its carry).
    ha = lane_decode(m, Cat(Mux(fp4, a_hi[:3], 0), a_hi[3], Const(0, 4)), e2m1,
                     formats={Format.E2M1}, name=f"{name}_ha")
    hb = lane_decode(m, Cat(b[4:8], Const(0, 4)), e2m1, formats={Format.E2M1},
                     name=f"{name}_hb")
    hi = _product(m, ha, hb, product_layout(widths.hi_product, widths.hi_shift),
                  name=f"{name}_hi", zero=stuck)
    both = Signal(FLAGS_LAYOUT, name=f"{name}_flags2")
    m.d.comb += [
        both.nan.eq(flags.nan),
        both.inf_pos.eq(flags.inf_pos),
        both.inf_neg.eq(flags.inf_neg),
        both.neg_zero.eq(flags.neg_zero & (~fp4 | ((ha.is_zero | hb.is_zero) & hi.sign))),
    ]
    return lo, hi, both


def aligned_term(m: Module, product, stages, *, name="term") -> tuple[Value, Value]:
    """Stage 1 of one lane: ``(term, negative)``, combinational, added to ``m``.

    ``term`` is ``product.mag << product.shift`` in ones' complement (``~x`` for a negative
    product, one bit wider than ``stages[-1]``, signed), so the true product is
    ``term + negative``. ``stages``: the shifter's widths (:attr:`LaneWidths.stages`).
    """
    x = Value.cast(product.mag)
    for k, width in stages:
        stage = Signal(width, name=f"{name}_s{k}")
        m.d.comb += stage.eq(Mux(product.shift[k], x << (1 << k), x)[:width])
        x = stage
    sign = Value.cast(product.sign)
    term = Signal(signed(len(x) + 1), name=name)
    m.d.comb += term.eq(Cat(x ^ sign.replicate(len(x)), sign))
    return term, sign


def add_carry(x: Value, y: Value, carry: Value) -> Value:
    """``x + y + carry`` (signed ``x``, ``y``; 1-bit ``carry``) as one adder."""
    x, y = Value.cast(x).as_signed(), Value.cast(y).as_signed()
    total = Cat(carry, x).as_signed() + Cat(Const(1, 1), y).as_signed()
    return total[1:].as_signed()


def sum_terms(terms, carries, width: int) -> tuple[Value, list]:
    """A balanced adder tree over signed ``terms`` that also adds one of ``carries`` (1-bit) in
    each adder. Returns ``(sum, unused carries)``; sums are truncated to ``width`` bits (the sum
    is exact modulo ``2 ** width``)."""
    terms, carries = list(terms), list(carries)
    while len(terms) > 1:
        level = []
        for k in range(0, len(terms) - 1, 2):
            total = add_carry(terms[k], terms[k + 1], carries.pop())
            level.append(total[:width].as_signed() if len(total) > width else total)
        if len(terms) % 2:
            level.append(terms[-1])
        terms = level
    return terms[0], carries
