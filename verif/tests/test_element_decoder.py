"""Element decoder: Amaranth-simulator unit tests, lint, and the cocotb bench on Verilator.

The unit tests check every code under every format selector two ways: against the contract
``decode(code) == (-1) ** sign * sig * 2 ** (exp + lsb_exp)`` with the golden model's value, and
field by field against the bench's reference :func:`expected_element`. The cocotb runs repeat the
exhaustive check on the Verilog under random gaps and backpressure, and must fail for every
deliberate fault of :data:`FAULTS`.
"""

import random
from fractions import Fraction

import numpy as np
import pytest
from amaranth.hdl import Module, Signal

from openmaia.benches.element_decoder import expected_element
from openmaia.harness.amaranth_sim import run_stream
from openmaia.harness.streams import unpack
from openmaia.compute.element_decoder import (FAULTS, DecodedElement, ElementDecoder,
                                              decode_element, element_widths)
from openmaia.config import PRESETS
from openmaia.numerics import decode
from openmaia.numerics.formats import Format

SMALL = PRESETS["small"].formats
ICE40 = frozenset({Format.E4M3, Format.E2M1})
BENCH = "openmaia.benches.element_decoder"
# A constructor that raises leaves an Elaboratable behind, which warns when it is collected
# (possibly during a later test).
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def every_code(lanes):
    """All (fmt_sel, codes) transactions covering every code under every selector, in order."""
    return [(fmt_sel, list(range(n, n + lanes)))
            for fmt_sel in range(8) for n in range(0, 256, lanes)]


def run_transactions(dut, transactions, *, gap=0.0, stall=0.0, seed=0):
    """Push ``(fmt_sel, codes)`` transactions through ``dut`` in the Amaranth simulator.

    Returns ``(outputs, in_cycles, out_cycles)`` (see :func:`run_stream`).
    """
    in_layout = ElementDecoder.input_layout(dut.lanes)
    payloads = [in_layout.const({"codes": codes, "fmt": fmt_sel}).as_bits()
                for fmt_sel, codes in transactions]
    return run_stream(dut, payloads, count=len(transactions), gap=gap, stall=stall, seed=seed,
                      budget=20 + 4 * len(transactions) / ((1 - gap) * (1 - stall)))


def contract_errors(fields, code, fmt_sel, formats):
    """How ``fields`` break the decoder's contract for ``code`` (an empty list if they don't)."""
    try:
        fmt = Format.from_hw_code(fmt_sel)
    except ValueError:
        fmt = None
    if fmt not in formats:
        illegal = dict(sign=0, exp=0, sig=0, is_nan=1, is_inf=0, is_zero=0, illegal=1)
        return [] if fields == illegal else [f"not decoded as illegal: {fields}"]
    spec = fmt.spec
    value = decode(np.array([code & (spec.codes - 1)], np.uint8), fmt)[0]
    errors = []
    if fields["illegal"]:
        errors.append("illegal set")
    if fields["is_nan"] != np.isnan(value) or fields["is_inf"] != np.isinf(value):
        errors.append(f"NaN / Inf flags {fields['is_nan']}, {fields['is_inf']} for {value}")
    if np.isnan(value):
        return errors
    if fields["sign"] != np.signbit(value):
        errors.append(f"sign {fields['sign']} for {value}")
    if np.isinf(value):
        return errors
    sign, exp, sig = fields["sign"], fields["exp"], fields["sig"]
    decoded = (-1) ** sign * sig * Fraction(2) ** (exp + spec.lsb_exp)
    if decoded != Fraction(float(value)):
        errors.append(f"(-1)**{sign} * {sig} * 2**({exp} + {spec.lsb_exp}) != {value}")
    if fields["is_zero"] != (value == 0):
        errors.append(f"is_zero {fields['is_zero']} for {value}")
    if fmt.is_float and not (sig >> (spec.mbits + 1) == 0 and (exp == 0 or sig >> spec.mbits)):
        errors.append(f"not canonical: sig {sig}, exp {exp}")
    if not fmt.is_float and exp != 0:
        errors.append(f"INT8 exp {exp}")
    return errors


def decode_all(formats, *, lanes=4, faults=frozenset()):
    """Every code under every selector through the decoder: ``{(fmt_sel, code): fields}``."""
    dut = ElementDecoder(formats=formats, lanes=lanes, faults=faults)
    transactions = every_code(lanes)
    outputs, in_cycles, out_cycles = run_transactions(dut, transactions)
    assert out_cycles == [cycle + 1 for cycle in in_cycles], "latency is not 1 cycle"
    assert out_cycles == list(range(1, len(transactions) + 1)), "not one transfer a cycle"
    shape = dut.o.payload.shape()
    return {(fmt_sel, code): fields
            for (fmt_sel, codes), bits in zip(transactions, outputs)
            for code, fields in zip(codes, unpack(shape, bits))}


def mismatches(decoded, formats):
    """The (fmt_sel, code) pairs whose fields break the contract or differ from the reference."""
    bad = set()
    for (fmt_sel, code), fields in decoded.items():
        errors = contract_errors(fields, code, fmt_sel, formats)
        if errors or fields != expected_element(code, fmt_sel, formats):
            bad.add((fmt_sel, code))
    return bad


# Layout


@pytest.mark.parametrize("formats, widths", [
    (SMALL, (5, 8)),
    (ICE40, (4, 4)),
    ({Format.E3M2, Format.E2M3}, (3, 4)),
    ({Format.E2M1}, (2, 2)),
    ({Format.INT8}, (1, 8)),
    ({Format.E2M1, Format.INT8}, (2, 8)),
])
def test_widths(formats, widths):
    assert element_widths(formats) == widths
    layout = DecodedElement.of(formats).as_shape()
    assert [name for name, _ in layout] == ["sign", "exp", "sig", "is_nan", "is_inf",
                                            "is_zero", "illegal"]
    assert (layout["exp"].width, layout["sig"].width) == widths
    assert DecodedElement.of([f.value for f in formats]) is DecodedElement.of(formats)
    assert issubclass(DecodedElement.of(formats), DecodedElement)


# Every code, Amaranth simulator


@pytest.mark.parametrize("formats", [SMALL, ICE40], ids=["small", "e4m3+e2m1"])
def test_every_code(formats):
    decoded = decode_all(formats)
    assert len(decoded) == 8 * 256
    assert mismatches(decoded, formats) == set()


def test_reference_matches_contract():
    for fmt_sel in range(8):
        for code in range(256):
            fields = expected_element(code, fmt_sel, SMALL)
            assert contract_errors(fields, code, fmt_sel, SMALL) == []


def test_special_codes():
    decoded = decode_all(SMALL)
    e4m3, e5m2, int8 = (fmt.spec.hw_code for fmt in (Format.E4M3, Format.E5M2, Format.INT8))
    assert decoded[e5m2, 0xFC] == dict(sign=1, exp=30, sig=4, is_nan=0, is_inf=1, is_zero=0,
                                       illegal=0)
    assert decoded[e4m3, 0x7F]["is_nan"] and not decoded[e4m3, 0x7E]["is_nan"]
    assert decoded[e4m3, 0x80] == dict(sign=1, exp=0, sig=0, is_nan=0, is_inf=0, is_zero=1,
                                       illegal=0)
    assert decoded[int8, 0x80] == dict(sign=1, exp=0, sig=128, is_nan=0, is_inf=0, is_zero=0,
                                       illegal=0)
    assert decoded[6, 0x12]["illegal"] and decoded[6, 0x12]["is_nan"]


@pytest.mark.parametrize("gap, stall", [(0.4, 0.5), (0.0, 0.7), (0.7, 0.0)])
def test_backpressure(gap, stall, seed):
    rng = random.Random(seed)
    lanes = 4
    dut = ElementDecoder(formats=SMALL, lanes=lanes)
    transactions = [(rng.randrange(8), [rng.randrange(256) for _ in range(lanes)])
                    for _ in range(300)]
    outputs, _, _ = run_transactions(dut, transactions, gap=gap, stall=stall, seed=seed)
    shape = dut.o.payload.shape()
    got = [unpack(shape, bits) for bits in outputs]
    want = [[expected_element(code, fmt_sel, SMALL) for code in codes]
            for fmt_sel, codes in transactions]
    assert len(got) == len(want)
    for n, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"transfer {n} of {len(want)}"


# Faults: each one changes exactly the codes it should, and the exhaustive check sees it


def _fault_codes(fault):
    if fault == "e5m2_inf_as_nan":
        return {(Format.E5M2.spec.hw_code, code) for code in (0x7C, 0xFC)}
    if fault == "int8_min":
        return {(Format.INT8.spec.hw_code, 0x80)}
    assert fault == "subnormal_hidden_bit"
    return {(fmt.spec.hw_code, code) for fmt in SMALL if fmt.is_float for code in range(256)
            if (code >> fmt.spec.mbits) & ((1 << fmt.spec.ebits) - 1) == 0}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_caught(fault):
    assert mismatches(decode_all(SMALL, faults={fault}), SMALL) == _fault_codes(fault)


# Parameters


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(formats=[]), ValueError, "at least one"),
    (dict(formats="e4m3"), TypeError, "collection of element formats"),
    (dict(formats=[Format.E4M3, "e9m9"]), ValueError, "unknown element format"),
    (dict(formats=SMALL, lanes=0), ValueError, "lanes must be a positive integer"),
    (dict(formats=SMALL, lanes="4"), ValueError, "lanes must be a positive integer"),
    (dict(formats=SMALL, lanes=True), ValueError, "lanes must be a positive integer"),
    (dict(formats=SMALL, faults={"nope"}), ValueError, "unknown fault 'nope'"),
    (dict(formats=SMALL, faults="int8_min"), TypeError, "collection of fault names"),
    (dict(formats=ICE40, faults={"int8_min"}), ValueError, "needs format int8"),
    (dict(formats=ICE40, faults={"e5m2_inf_as_nan"}), ValueError, "needs format e5m2"),
    (dict(formats={Format.INT8}, faults={"subnormal_hidden_bit"}), ValueError,
     "floating-point"),
])
def test_parameter_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        ElementDecoder(**kwargs)


def test_positional_parameters_rejected():
    with pytest.raises(TypeError):
        ElementDecoder(SMALL)


def test_decode_element_widths():
    m = Module()
    with pytest.raises(ValueError, match="code must be 8 bits"):
        decode_element(m, Signal(6), Signal(3), formats=SMALL)
    with pytest.raises(ValueError, match="fmt_sel must be 3 bits"):
        decode_element(m, Signal(8), Signal(2), formats=SMALL)
    out = decode_element(m, Signal(8), Signal(3), formats=ICE40)
    assert isinstance(out, DecodedElement.of(ICE40))


# Verilog: lint, and the cocotb bench under Verilator


def _formats_param(formats):
    return [fmt.value for fmt in Format if fmt in formats]


@pytest.mark.parametrize("formats", [SMALL, ICE40, {Format.INT8}, {Format.E2M1}],
                         ids=["small", "e4m3+e2m1", "int8", "e2m1"])
def test_lint(formats):
    from openmaia.harness import lint
    lint(ElementDecoder(formats=formats, lanes=4), name="element_decoder")


@pytest.mark.sim
@pytest.mark.parametrize("formats", [SMALL, ICE40], ids=["small", "e4m3+e2m1"])
def test_cocotb(formats):
    from openmaia.harness import simulate
    lanes = PRESETS["small"].lanes
    result = simulate(ElementDecoder(formats=formats, lanes=lanes), bench=BENCH,
                      name="element_decoder",
                      params={"formats": _formats_param(formats), "lanes": lanes})
    assert result.tests == 2


#: The cocotb bench's own fault runs cost about 50 s each; the default tier runs one (every
#: fault is caught in the default tier by the simulator test ``test_fault_caught``).
COCOTB_QUICK_FAULT = "subnormal_hidden_bit"


@pytest.mark.sim
@pytest.mark.parametrize("fault", [pytest.param(f, marks=() if f == COCOTB_QUICK_FAULT
                                                else pytest.mark.slow)
                                   for f in sorted(FAULTS)])
def test_cocotb_catches_fault(fault):
    from openmaia.harness import simulate
    lanes = PRESETS["small"].lanes
    result = simulate(ElementDecoder(formats=SMALL, lanes=lanes, faults={fault}), bench=BENCH,
                      name="element_decoder", testcase="exhaustive_codes", check=False,
                      params={"formats": _formats_param(SMALL), "lanes": lanes})
    assert result.tests == 1 and result.failed == 1, result.log_tail()
    assert not result.passed
