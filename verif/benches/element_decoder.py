"""cocotb bench of :class:`openmaia.compute.element_decoder.ElementDecoder`, bit-exact.

Every code (0..255) under every format selector (0..7: the built-in formats and the illegal ones)
goes through the elaborated design in a random order, with random gaps on the input and random
backpressure on the output; a scoreboard compares each output lane with the golden model.

Parameters (:func:`openmaia.harness.bench_params`): ``formats`` (list of format names) and
``lanes``, as given to the design; ``gap`` and ``stall``, the probabilities that the input is
idle and the output not ready in a cycle (default 0.3 each).

The reference for one element, :func:`expected_element`, is derived from the golden model's
value of the code, and is also used by the Amaranth-simulator tests.
"""

import random
from collections import deque
from fractions import Fraction
from functools import cache

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge

from openmaia.compute.element_decoder import DecodedElement, ElementDecoder
from openmaia.harness import bench_params
from openmaia.harness.coverage import Coverage, export
from openmaia.harness.streams import StreamSink, StreamSource, pack, random_pauses, unpack
from openmaia.numerics import decode
from openmaia.numerics.formats import Format

FMT_SELECTORS = range(8)
CODES = range(256)


def _format_of(fmt_sel: int, formats) -> Format | None:
    try:
        fmt = Format.from_hw_code(fmt_sel)
    except ValueError:
        return None
    return fmt if fmt in formats else None


def expected_element(code: int, fmt_sel: int, formats) -> dict:
    """The :class:`DecodedElement` fields the design must produce, as a dict of ints.

    Finite codes: from the golden value ``v = decode(code, fmt)``, the unique ``sig`` and ``exp``
    with ``|v| = sig * 2 ** (exp + lsb_exp)`` and either ``exp == 0`` or a hidden bit in ``sig``;
    the sign is ``v``'s sign bit. NaN / Inf codes: the flag, with the fields of the normal rule.
    Illegal selectors: ``illegal`` and ``is_nan``, everything else 0.
    """
    fmt = _format_of(fmt_sel, formats)
    out = dict(sign=0, exp=0, sig=0, is_nan=0, is_inf=0, is_zero=0, illegal=0)
    if fmt is None:
        return out | dict(illegal=1, is_nan=1)
    spec = fmt.spec
    code &= spec.codes - 1
    value = decode(np.array([code], np.uint8), fmt)[0]
    if np.isnan(value) or np.isinf(value):
        man = code & ((1 << spec.mbits) - 1)
        return out | dict(sign=code >> (spec.bits - 1), exp=(1 << spec.ebits) - 2,
                          sig=(1 << spec.mbits) | man, is_nan=int(np.isnan(value)),
                          is_inf=int(np.isinf(value)))
    mag = Fraction(abs(float(value))) / Fraction(2) ** spec.lsb_exp
    assert mag.denominator == 1, f"{fmt} code {code:#04x}: value not a multiple of 2**lsb_exp"
    mag = int(mag)
    exp = max(0, mag.bit_length() - (spec.mbits + 1)) if fmt.is_float else 0
    return out | dict(sign=int(np.signbit(value)), exp=exp, sig=mag >> exp,
                      is_zero=int(mag == 0))


@cache
def _expected_table(formats: frozenset, fmt_sel: int) -> tuple:
    element = DecodedElement.of(formats)
    return tuple(pack(element, expected_element(code, fmt_sel, formats))
                 for code in CODES)


def expected_lane_bits(code: int, fmt_sel: int, formats) -> int:
    """:func:`expected_element` packed into the bits of one output lane."""
    return _expected_table(frozenset(formats), fmt_sel)[code]


def element_class(code: int, fmt_sel: int, formats) -> str:
    """The coverage bin of one element: ``"<format>:<kind>"``, or ``"illegal"``."""
    fmt = _format_of(fmt_sel, formats)
    if fmt is None:
        return "illegal"
    e = expected_element(code, fmt_sel, formats)
    kind = ("nan" if e["is_nan"] else "inf" if e["is_inf"] else "zero" if e["is_zero"]
            else "subnormal" if fmt.is_float and e["exp"] == 0 else "normal")
    return f"{fmt.value}:{kind}"


def coverage_model(formats) -> Coverage:
    """Element classes (format x zero / subnormal / normal / inf / nan, and illegal selectors)
    that the built-in formats can produce; every one must be seen."""
    bins = sorted({element_class(code, sel, formats) for sel in FMT_SELECTORS for code in CODES})
    return Coverage("element_decoder", element=bins)


class Scoreboard:
    """Compares each output transfer with the next expected one, in order."""

    def __init__(self, dut_model: ElementDecoder, log):
        self._model = dut_model
        self._log = log
        self._coverage = coverage_model(dut_model.formats)
        self.expected = deque()
        self.errors = []
        self.compared = 0

    def expect(self, transaction, bits: int):
        self.expected.append((transaction, bits))

    def compare(self, bits: int):
        if not self.expected:
            self.errors.append(f"unexpected output transfer {bits:#x}")
            return
        (fmt_sel, codes), want = self.expected.popleft()
        self.compared += 1
        if bits == want:
            for code in codes:
                self._coverage.sample(element=element_class(code, fmt_sel, self._model.formats))
            return
        element = self._model.element
        got_lanes = unpack(self._model.o.payload.shape(), bits)
        want_lanes = unpack(self._model.o.payload.shape(), want)
        for lane, (code, got, exp) in enumerate(zip(codes, got_lanes, want_lanes)):
            if got != exp:
                diff = {k: (got[k], exp[k]) for k in exp if got[k] != exp[k]}
                self.errors.append(f"transfer {self.compared - 1} lane {lane}: fmt_sel "
                                   f"{fmt_sel} code {code:#04x}: (got, expected) {diff}")
                self._log.error("%s: %s", element.__name__, self.errors[-1])

    def report(self, limit: int = 10) -> str:
        return "\n".join(self.errors[:limit] + [f"... {len(self.errors)} mismatches in all"])


class InputDriver:
    """Sends ``(fmt_sel, codes)`` transactions and tells the scoreboard what to expect."""

    def __init__(self, dut, dut_model: ElementDecoder, scoreboard: Scoreboard, pauses):
        self._model = dut_model
        self._scoreboard = scoreboard
        self._layout = ElementDecoder.input_layout(dut_model.lanes)
        self.source = StreamSource(dut, "i", dut.clk, pauses=pauses)
        cocotb.start_soon(self.source.run())

    def send(self, fmt_sel: int, codes):
        formats = self._model.formats
        lanes = [expected_lane_bits(code, fmt_sel, formats) for code in codes]
        self._scoreboard.expect((fmt_sel, codes),
                                pack(self._model.o.payload.shape(), lanes))
        self.source.send_nowait(pack(self._layout, {"codes": codes, "fmt": fmt_sel}))


class OutputMonitor:
    """Accepts output transfers under backpressure and hands each to the scoreboard."""

    def __init__(self, dut, scoreboard: Scoreboard, pauses):
        self._scoreboard = scoreboard
        self.arrivals = []
        self.sink = StreamSink(dut, "o", dut.clk, pauses=pauses, callback=self._accept)
        cocotb.start_soon(self.sink.run())

    def _accept(self, bits: int):
        self.arrivals.append(self.sink.cycles)
        self._scoreboard.compare(bits)


def _dut_model(params) -> ElementDecoder:
    return ElementDecoder(formats=params["formats"], lanes=params["lanes"])


async def _reset(dut):
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


def _transactions(rng: random.Random, lanes: int):
    """Every (selector, code) pair once, ``lanes`` to a transaction, in a random order.

    The last transaction of each selector is padded with random codes.
    """
    transactions = []
    for fmt_sel in FMT_SELECTORS:
        codes = list(CODES)
        rng.shuffle(codes)
        codes += [rng.randrange(256) for _ in range(-len(codes) % lanes)]
        transactions += [(fmt_sel, codes[n:n + lanes]) for n in range(0, len(codes), lanes)]
    rng.shuffle(transactions)
    return transactions


async def _run(dut, transactions, *, gap: float, stall: float, rng: random.Random):
    model = _dut_model(bench_params())
    scoreboard = Scoreboard(model, dut._log)
    driver = InputDriver(dut, model, scoreboard, random_pauses(rng, gap))
    monitor = OutputMonitor(dut, scoreboard, random_pauses(rng, stall))
    await _reset(dut)
    for fmt_sel, codes in transactions:
        driver.send(fmt_sel, codes)
    budget = 20 + 4 * len(transactions) / ((1 - gap) * (1 - stall))
    for _ in range(int(budget)):
        await FallingEdge(dut.clk)
        if scoreboard.compared >= len(transactions):
            break
    await ClockCycles(dut.clk, 4)
    assert not scoreboard.errors, scoreboard.report()
    assert not scoreboard.expected, (f"{len(scoreboard.expected)} of {len(transactions)} "
                                     f"transfers never came out")
    return monitor


@cocotb.test()
async def exhaustive_codes(dut):
    """Every code under every selector, with random input gaps and output backpressure."""
    params = bench_params()
    rng = random.Random(cocotb.RANDOM_SEED)
    dut._log.info("params %s, seed %d", params, cocotb.RANDOM_SEED)
    transactions = _transactions(rng, params["lanes"])
    await _run(dut, transactions, gap=params.get("gap", 0.3), stall=params.get("stall", 0.3),
               rng=rng)
    export()


@cocotb.test()
async def full_rate(dut):
    """Without gaps or backpressure a transfer moves every cycle (latency 1)."""
    params = bench_params()
    rng = random.Random(cocotb.RANDOM_SEED)
    transactions = _transactions(rng, params["lanes"])[:64]
    monitor = await _run(dut, transactions, gap=0, stall=0, rng=rng)
    span = monitor.arrivals[-1] - monitor.arrivals[0] + 1
    assert span == len(transactions), f"{len(transactions)} transfers took {span} cycles"
