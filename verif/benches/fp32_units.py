"""cocotb bench of the FP32 units :class:`~openmaia.compute.fp32.Fp32Round` and
:class:`~openmaia.compute.fp32.Fp32Add`, bit-exact against the golden model.

The unit is the top level itself (ports ``clk``, ``en``, ``o`` and ``i`` or ``a`` / ``b``). Every
cycle the bench drives a vector: the next one of the test where ``en`` is high, a random one
(which must be ignored) where it is low; it checks ``o`` after every clock edge against the result
of the input accepted ``stages`` enabled edges earlier, so latency, ordering and holding while
``en`` is low are checked together with the values.

Parameters (:func:`openmaia.harness.bench_params`): ``unit`` (``"round"`` or ``"add"``),
``stages``; for ``round`` also ``sum_width`` and ``exp_width``, as given to the design; ``count``
(random vectors of :func:`random_gaps`, default 20,000) and ``gap`` (probability that ``en`` is
low in a cycle, default 0.3).

The vector generators and references are also used by the Amaranth-simulator tests
(verif/tests/test_fp32_units.py). A round vector is a dict of the input fields (``sum``, ``exp``,
``nan``, ``inf``, ``inf_neg``, ``zero_neg``); an add vector is a pair ``(a, b)`` of FP32 bits.
"""

import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from openmaia.harness import bench_params
from openmaia.numerics.dot import (CANONICAL_NAN, FP32_NEG_INF, FP32_NEG_ZERO, FP32_POS_INF,
                                   fp32_add, round_to_fp32)

__all__ = ["expected_round", "expected_add", "round_directed", "round_random", "add_directed",
           "add_random", "pack_round", "fit_value", "check_stream"]

FP32_MAX = 0x7F7FFFFF
_ROUND_FIELDS = ("sum", "exp", "nan", "inf", "inf_neg", "zero_neg")


# References


def expected_round(v: dict) -> int:
    """FP32 bits :class:`Fp32Round` must give for the input fields ``v``."""
    if v["nan"]:
        return CANONICAL_NAN
    if v["inf"]:
        return FP32_NEG_INF if v["inf_neg"] else FP32_POS_INF
    if v["sum"] == 0:
        return FP32_NEG_ZERO if v["zero_neg"] else 0
    return int(round_to_fp32(v["sum"], v["exp"]))


def expected_add(vectors) -> list[int]:
    """FP32 bits :class:`Fp32Add` must give for each ``(a, b)`` of ``vectors``."""
    if not vectors:
        return []
    a = np.array([x for x, _ in vectors], dtype=np.uint32)
    b = np.array([y for _, y in vectors], dtype=np.uint32)
    return [int(z) for z in fp32_add(a, b)]


def pack_round(v: dict, sum_width: int, exp_width: int) -> int:
    """The bits of the input port ``i`` of :class:`Fp32Round` for the fields ``v``."""
    bits, offset = 0, 0
    for name, width in zip(_ROUND_FIELDS, (sum_width, exp_width, 1, 1, 1, 1)):
        bits |= (v[name] & ((1 << width) - 1)) << offset
        offset += width
    return bits


# Round vectors


def _round_vector(n, e, **flags):
    return {"sum": n, "exp": e, "nan": 0, "inf": 0, "inf_neg": 0, "zero_neg": 0} | flags


def fit_value(n: int, e: int, sum_width: int, exp_width: int, rng: random.Random, *,
              widest: bool = False):
    """``(sum, exp)`` with ``sum * 2**exp == n * 2**e`` in the given signed widths, or None.

    Among the representations that fit, one at random (the widest ``sum`` with ``widest``).
    """
    emin, emax = -(1 << (exp_width - 1)), (1 << (exp_width - 1)) - 1
    if n == 0:
        return 0, min(max(e, emin), emax)
    mag = abs(n)
    tz = (mag & -mag).bit_length() - 1
    room = sum_width - 1 - mag.bit_length()
    if n < 0 and mag == 1 << tz:
        room += 1
    lo, hi = max(-tz, e - emax), min(room, e - emin)
    if lo > hi:
        return None
    k = hi if widest else rng.choice([lo, hi, rng.randint(lo, hi)])
    return (n << k if k >= 0 else n >> -k), e - k


def _values_directed(sum_width: int, rng: random.Random):
    """(n, e) pairs of the directed classes, positive (negatives are added by the caller)."""
    finest = max(1, sum_width - 28)  # extra low bits for one-ulp neighbours of a tie
    values = []
    # Exact powers of two, every FP32 exponent and beyond both ends.
    values += [(1, p) for p in range(-153, 131)]
    # Ties between two normal neighbours (even and odd lower neighbour) and one unit of the
    # finest available precision either side of them.
    exps = [-149, -148, -126, -125, -1, 0, 1, 50, 103, 104] + \
        [rng.randrange(-149, 105) for _ in range(6)]
    for q in exps:
        for odd in (0, 1):
            mant = (1 << 23) | (rng.getrandbits(23) & ~1) | odd
            tie = 2 * mant + 1
            values.append((tie, q - 1))
            for g in sorted({1, 3, finest}):
                values += [((tie << g) - 1, q - 1 - g), ((tie << g) + 1, q - 1 - g)]
    # Subnormal ties, and their neighbours.
    for frac in (0, 1, 2, 3, (1 << 23) - 2, (1 << 23) - 1,
                 rng.getrandbits(23) & ~1, rng.getrandbits(23) | 1):
        tie = 2 * frac + 1
        values.append((tie, -150))
        for g in sorted({1, finest}):
            values += [((tie << g) - 1, -150 - g), ((tie << g) + 1, -150 - g)]
    # The normal / subnormal boundary: the largest subnormal, the smallest normal, the largest
    # subnormal's tie (rounds up to the smallest normal) and values just either side of it.
    values += [((1 << 23) - 1, -149), (1 << 23, -149), ((1 << 24) - 1, -150),
               ((1 << 24) + 1, -150), ((1 << 24) - 3, -150)]
    for g in sorted({1, 4, finest}):
        values += [(((1 << 24) - 1 << g) - 1, -150 - g), (((1 << 24) - 1 << g) + 1, -150 - g),
                   ((1 << 24 + g) - 1, -150 - g)]
    # The smallest subnormal, half of it (rounds to 0), and just either side of the half.
    values += [(1, -149), (1, -150), (3, -151), (1, -151), (1, -200)]
    for g in sorted({1, 5, finest}):
        values += [((1 << g) + 1, -150 - g), ((1 << g) - 1, -150 - g)]
    # Overflow: the largest float, its tie with 2**128 (rounds to even: Inf), just below it.
    values += [((1 << 24) - 1, 104), ((1 << 25) - 1, 103), ((1 << 25) - 3, 103), (1, 128),
               (3, 127), (1, 127), ((1 << 24) - 1, 105)]
    for g in sorted({1, 6, finest}):
        values += [(((1 << 25) - 1 << g) - 1, 103 - g), (((1 << 25) - 1 << g) + 1, 103 - g)]
    return values


def round_directed(sum_width: int, exp_width: int, rng: random.Random) -> list[dict]:
    """The directed classes for :class:`Fp32Round` that fit the widths, both signs.

    Zeros with both ``zero_neg``; exact powers of two; ties with even and odd lower neighbours
    and values one unit either side of them; subnormal ties; the normal / subnormal boundary
    (the largest subnormal rounding up to the smallest normal); the smallest subnormal and half
    of it; the overflow boundary; sums of the full width; the ``nan`` / ``inf`` flags.
    """
    emin, emax = -(1 << (exp_width - 1)), (1 << (exp_width - 1)) - 1
    vectors = []
    for n, e in _values_directed(sum_width, rng):
        for sign in (1, -1):
            for widest in (False, True):
                fit = fit_value(sign * n, e, sum_width, exp_width, rng, widest=widest)
                if fit is not None:
                    vectors.append(_round_vector(*fit, zero_neg=rng.getrandbits(1)))
    # Zeros.
    for e in (emin, 0, emax, rng.randint(emin, emax)):
        vectors += [_round_vector(0, e, zero_neg=zn) for zn in (0, 1)]
    # Sums of the full width, at exponents giving normal, subnormal and overflowing results.
    top = sum_width - 1
    full = [-(1 << top), (1 << top) - 1, -(1 << top) + 1, (1 << top) - 2,
            (1 << top - 1) | rng.getrandbits(top - 1), -((1 << top - 1) | rng.getrandbits(top - 1))]
    for n in full:
        for lead in (-160, -150, -149, -127, -126, 0, 126, 127, 128, 200):
            e = lead - (abs(n).bit_length() - 1)
            if emin <= e <= emax:
                vectors.append(_round_vector(n, e))
    vectors += [_round_vector(n, emin) for n in full] + [_round_vector(n, emax) for n in full]
    # Flags: NaN has priority over Inf, both over any sum.
    for _ in range(6):
        n = rng.randint(-(1 << top), (1 << top) - 1)
        e = rng.randint(emin, emax)
        vectors += [
            _round_vector(n, e, nan=1, inf=rng.getrandbits(1), inf_neg=rng.getrandbits(1),
                          zero_neg=rng.getrandbits(1)),
            _round_vector(n, e, inf=1, inf_neg=0, zero_neg=rng.getrandbits(1)),
            _round_vector(n, e, inf=1, inf_neg=1, zero_neg=rng.getrandbits(1)),
        ]
    vectors += [_round_vector(0, 0, nan=1), _round_vector(0, 0, inf=1),
                _round_vector(0, 0, inf=1, inf_neg=1, zero_neg=1)]
    return vectors


def round_random(sum_width: int, exp_width: int, rng: random.Random, count: int) -> list[dict]:
    """``count`` random :class:`Fp32Round` inputs: sums of every bit length, exponents mostly
    placing the result near the FP32 range, a fifth with ties or near-ties below the result's
    last place, a few zeros and flags."""
    emin, emax = -(1 << (exp_width - 1)), (1 << (exp_width - 1)) - 1
    top = sum_width - 1
    vectors = []
    for _ in range(count):
        length = rng.randint(1, top)
        mag = (1 << length - 1) | rng.getrandbits(length - 1)
        if rng.random() < 0.2 and length > 25:
            low = length - 24
            tie = 1 << low - 1
            mag = (mag >> low << low) | rng.choice([tie, tie - 1, tie + 1])
        r = rng.random()
        if r < 0.02:
            mag = 0
        n = -mag if rng.getrandbits(1) else mag
        if rng.random() < 0.1:
            e = rng.randint(emin, emax)
        else:
            e = min(max(rng.randint(-160, 135) - (length - 1), emin), emax)
        flags = {"zero_neg": rng.getrandbits(1)}
        if r > 0.98:
            flags |= {"nan": int(r > 0.99), "inf": rng.getrandbits(1),
                      "inf_neg": rng.getrandbits(1)}
        vectors.append(_round_vector(n, e, **flags))
    return vectors


# Add vectors


def _bits(sign, exp, frac):
    return (sign << 31) | (exp << 23) | frac


def add_directed(rng: random.Random) -> list[tuple[int, int]]:
    """The directed classes for :class:`Fp32Add`.

    Zeros of both signs in every combination and every pair of special and boundary values
    (Inf, NaNs, the smallest and largest subnormal, the smallest normal, 1, the largest float);
    ``x + (-x)``; subnormal + subnormal; massive and one-bit cancellation; carries into a new
    exponent; overflow; ties (even and odd) and one unit either side of them; far alignment.
    """
    specials = [0, FP32_NEG_ZERO, FP32_POS_INF, FP32_NEG_INF, CANONICAL_NAN, 0xFFC00000,
                0x7F800001, 0xFFFFFFFF, 0x7FBFFFFF, 0x00000001, 0x80000001, 0x007FFFFF,
                0x807FFFFF, 0x00800000, 0x80800000, 0x3F800000, 0xBF800000, FP32_MAX,
                FP32_MAX | 1 << 31]
    pairs = [(a, b) for a in specials for b in specials]

    def rand_normal(lo=1, hi=254):
        return _bits(rng.getrandbits(1), rng.randint(lo, hi), rng.getrandbits(23))

    def rand_sub():
        return _bits(rng.getrandbits(1), 0, rng.getrandbits(23))

    for x in [rand_normal() for _ in range(12)] + [rand_sub() for _ in range(6)] + [FP32_MAX]:
        pairs += [(x, x ^ 1 << 31), (x ^ 1 << 31, x)]
    # Subnormal + subnormal, also summing to a normal.
    pairs += [(rand_sub(), rand_sub()) for _ in range(30)]
    pairs += [(0x00400000, 0x00400000), (0x007FFFFF, 0x00000001), (0x807FFFFF, 0x80000001),
              (0x00800000, 0x80000001), (0x00800001, 0x807FFFFF), (0x00FFFFFF, 0x80800000)]
    # Massive cancellation: neighbours of opposite signs.
    for _ in range(15):
        x = rand_normal()
        for k in (1, 2, 3):
            y = x + k if (x & 0x7FFFFFFF) + k <= FP32_MAX else x - k
            pairs += [(x, y ^ 1 << 31), (y ^ 1 << 31, x)]
    pairs += [(0x00800001, 0x80800000), (0x00800000, 0x807FFFFF), (0x01000000, 0x80FFFFFF)]
    # One-bit cancellation: exponents one apart, opposite signs.
    for _ in range(20):
        e = rng.randint(2, 254)
        s = rng.getrandbits(1)
        pairs.append((_bits(s, e, rng.getrandbits(23)), _bits(1 - s, e - 1, rng.getrandbits(23))))
    pairs += [(0x3F800000, 0xBF7FFFFF), (0x3F800000, 0xBF000001)]
    # Carries into a new exponent.
    for _ in range(15):
        e = rng.randint(1, 253)
        s = rng.getrandbits(1)
        f = rng.getrandbits(23) | 1 << 22
        pairs.append((_bits(s, e, f), _bits(s, e - rng.randint(0, 1), rng.getrandbits(23) | f)))
    pairs += [(0x3FFFFFFF, 0x3FFFFFFF), (0x3F800000, 0x3F800000), (0x3FFFFFFF, 0x34000000),
              (0x3FFFFFFF, 0x33800000), (0x3FFFFFFF, 0x33800001)]
    # Overflow: max + max, max + half an ulp (a tie, rounds to even: Inf), just below.
    for s in (0, 1):
        m = FP32_MAX | s << 31
        pairs += [(m, m), (m, 0x73000000 | s << 31), (m, 0x72FFFFFF | s << 31),
                  (m, 0x73000001 | s << 31), (0x7F000000 | s << 31, 0x7F000000 | s << 31),
                  (m, 0x74000000 | s << 31), (m, 0x73000000 | (1 - s) << 31)]
    # Ties: y is half an ulp of x (x's significand even or odd), and one unit either side.
    for _ in range(20):
        e = rng.randint(25, 254)
        s = rng.getrandbits(1)
        x = _bits(s, e, rng.getrandbits(23))
        half = _bits(s ^ rng.getrandbits(1), e - 24, 0)
        pairs += [(x, half), (x, half + 1), (half - 1, x)]
    pairs += [(0x3F800000, 0x33800000), (0x3F800001, 0x33800000), (0x3F800000, 0xB3000000),
              (0x3F800001, 0xB3800000), (0x3F800000, 0xB3800000), (0x3F800003, 0xB3800000)]
    # Far alignment: everything below the sticky position.
    for d in (24, 25, 26, 27, 28, 31, 32, 60, 200, 253):
        e = rng.randint(d + 1, 254) if d < 254 else 254
        x = _bits(rng.getrandbits(1), e, rng.getrandbits(23))
        y = _bits(rng.getrandbits(1), e - d, rng.getrandbits(23))
        pairs += [(x, y), (y, x), (x, y ^ 1 << 31)]
    return pairs


def add_random(rng: random.Random, count: int) -> list[tuple[int, int]]:
    """``count`` random :class:`Fp32Add` operand pairs: uniform bit patterns, close exponents
    (cancellation and ties), near-negations, subnormals and a few specials."""
    specials = [0, FP32_NEG_ZERO, FP32_POS_INF, FP32_NEG_INF, CANONICAL_NAN, 0x7F800001]
    pairs = []
    for _ in range(count):
        a = rng.getrandbits(32)
        r = rng.random()
        if r < 0.25:
            b = rng.getrandbits(32)
        elif r < 0.6:
            e = min(max(((a >> 23) & 0xFF) + rng.randint(-3, 3), 0), 254)
            b = _bits(rng.getrandbits(1), e, rng.getrandbits(23))
        elif r < 0.75:
            e = min(max(((a >> 23) & 0xFF) - rng.randint(0, 30), 0), 254)
            b = _bits(rng.getrandbits(1), e, rng.getrandbits(23))
        elif r < 0.85:
            b = (a ^ 1 << 31) + rng.randint(-4, 4) & 0xFFFFFFFF
        elif r < 0.95:
            a = _bits(rng.getrandbits(1), rng.randint(0, 1), rng.getrandbits(23))
            b = _bits(rng.getrandbits(1), rng.randint(0, 2), rng.getrandbits(23))
        else:
            b = rng.choice(specials)
        pairs.append((a, b) if rng.getrandbits(1) else (b, a))
    return pairs


# Checking a stream of results


def check_stream(outputs: list, expected: list, stages: int, enables: list) -> list[str]:
    """Mismatches of a run: ``outputs[t]`` is ``o`` after clock edge ``t``, ``enables[t]`` the
    ``en`` of that edge, ``expected`` the results of the accepted inputs in order. After the
    ``n``-th enabled edge (``n >= stages``), ``o`` must be ``expected[n - stages]``."""
    errors, accepted = [], 0
    for t, (got, en) in enumerate(zip(outputs, enables)):
        accepted += en
        k = accepted - stages
        if k < 0:
            continue
        if k >= len(expected):
            break
        if got != expected[k]:
            errors.append(f"edge {t}: result {k}: got {got:#010x}, expected {expected[k]:#010x}")
    if accepted - stages < len(expected) - 1:
        errors.append(f"only {max(accepted - stages + 1, 0)} of {len(expected)} results seen")
    return errors


# The cocotb bench


def _design_params(params):
    unit = params["unit"]
    if unit not in ("round", "add"):
        raise ValueError(f"unit must be 'round' or 'add', not {unit!r}")
    return unit, params.get("stages", 2)


def _vectors(params, rng, count):
    """The directed and ``count`` random vectors, shuffled: (port values, expected results)."""
    unit, _ = _design_params(params)
    if unit == "round":
        sw, ew = params["sum_width"], params["exp_width"]
        vectors = round_directed(sw, ew, rng) + round_random(sw, ew, rng, count)
        rng.shuffle(vectors)
        return ([pack_round(v, sw, ew) for v in vectors], [expected_round(v) for v in vectors])
    pairs = add_directed(rng) + add_random(rng, count)
    rng.shuffle(pairs)
    return [(a, b) for a, b in pairs], expected_add(pairs)


async def _run(dut, *, count: int, gap: float):
    params = bench_params()
    unit, stages = _design_params(params)
    rng = random.Random(cocotb.RANDOM_SEED)
    dut._log.info("params %s, seed %d", params, cocotb.RANDOM_SEED)
    inputs, expected = _vectors(params, rng, count)
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 0
    dut.en.value = 0

    if unit == "round":
        port = dut.i

        def drive(bits):
            port.value = bits
    else:
        port_a, port_b = dut.a, dut.b

        def drive(pair):
            port_a.value, port_b.value = pair

    o = dut.o
    outputs, enables = [], []
    fed = 0
    await FallingEdge(dut.clk)
    while fed < len(inputs) + stages:
        en = fed >= len(inputs) or rng.random() >= gap
        drive(inputs[fed] if en and fed < len(inputs) else rng.choice(inputs))
        fed += en
        dut.en.value = int(en)
        enables.append(int(en))
        await FallingEdge(dut.clk)
        outputs.append(o.value.to_unsigned())
    errors = check_stream(outputs, expected, stages, enables)
    for error in errors[:10]:
        dut._log.error("%s", error)
    assert not errors, f"{len(errors)} mismatches of {len(expected)} results; first: {errors[0]}"
    dut._log.info("%d vectors checked in %d cycles", len(expected), len(outputs))


@cocotb.test()
async def full_rate(dut):
    """The directed vectors and 2,000 random ones with ``en`` always high."""
    await _run(dut, count=2000, gap=0.0)


@cocotb.test()
async def random_gaps(dut):
    """The directed vectors and ``count`` random ones, ``en`` low with probability ``gap``."""
    params = bench_params()
    await _run(dut, count=params.get("count", 20000), gap=params.get("gap", 0.3))
