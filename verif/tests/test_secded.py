"""SECDED code of the tile SRAM: the Python reference and the Amaranth encoder/decoder.

Small widths: every single and every double flip of every codeword position (reference), and
every possible input word of the RTL decoder (8 data bits: all 8,192 13-bit words) against the
reference. The real widths (128 and 256 bits): random words, every single flip position, random
double flips, in the reference and in the RTL. Both decoder faults are shown to be caught.
"""

import itertools
import random

import pytest
from amaranth.sim import Simulator

from openmaia.bus.memory_port import EccStatus
from openmaia.harness.elaborate import lint
from openmaia.tile.secded import SecdedCode, SecdedDecoder, SecdedEncoder, check_bits_for

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

OK, CORRECTED, UNCORRECTABLE = EccStatus.OK, EccStatus.CORRECTED, EccStatus.UNCORRECTABLE


def _all_flips(code, data, spec):
    """Check every single and double flip of one codeword against the SECDED promise."""
    n = spec.code_width
    assert spec.decode(code) == (data, OK)
    for i in range(n):
        assert spec.decode(code ^ 1 << i) == (data, CORRECTED), f"single flip {i}"
    for i, j in itertools.combinations(range(n), 2):
        assert spec.decode(code ^ 1 << i ^ 1 << j)[1] == UNCORRECTABLE, f"double flip {i},{j}"


@pytest.mark.parametrize("width,check", [(1, 2), (4, 3), (8, 4), (11, 4), (12, 5), (26, 5),
                                         (32, 6), (57, 6), (64, 7), (128, 8), (256, 9)])
def test_check_bits(width, check):
    assert check_bits_for(width) == check
    spec = SecdedCode(width)
    assert spec.code_width == width + check + 1
    assert sorted(spec.data_positions) == [p for p in range(1, width + check + 1) if p & (p - 1)]


@pytest.mark.parametrize("width", [1, 2, 3, 4, 5, 8, 11, 16])
def test_reference_exhaustive_small(width):
    """Every data word (up to 2**11, then a sample), every single and double flip."""
    spec = SecdedCode(width)
    words = range(1 << width) if width <= 11 else random.Random(width).sample(
        range(1 << width), 64)
    for data in words:
        code = spec.encode(data)
        assert code & ((1 << width) - 1) == data and code.bit_count() % 2 == 0
        _all_flips(code, data, spec)


@pytest.mark.parametrize("width", [128, 256])
def test_reference_real_width(width, rng):
    spec = SecdedCode(width)
    for data in [0, (1 << width) - 1] + [rng.getrandbits(width) for _ in range(20)]:
        code = spec.encode(data)
        assert spec.decode(code) == (data, OK)
        for i in range(spec.code_width):
            assert spec.decode(code ^ 1 << i) == (data, CORRECTED), f"flip {i}"
        for _ in range(300):
            i, j = rng.sample(range(spec.code_width), 2)
            assert spec.decode(code ^ 1 << i ^ 1 << j)[1] == UNCORRECTABLE, (i, j)


def test_reference_bad_input():
    spec = SecdedCode(8)
    with pytest.raises(ValueError):
        spec.encode(256)
    with pytest.raises(ValueError):
        spec.decode(1 << 13)
    with pytest.raises(ValueError):
        SecdedCode(0)


def _run_comb(dut, body):
    """Run ``body(ctx)`` as an Amaranth-simulator testbench of a combinational component."""
    sim = Simulator(dut)
    sim.add_testbench(body)
    sim.run()


def _decoder_mismatches(width, codes, faults=()):
    """Codewords on which the RTL decoder differs from the reference (at most 5)."""
    spec = SecdedCode(width)
    dut = SecdedDecoder(data_width=width, faults=faults)
    bad = []

    async def bench(ctx):
        for code in codes:
            ctx.set(dut.code, code)
            got = (ctx.get(dut.data), ctx.get(dut.status))
            want = spec.decode(code)
            if got != (want[0], int(want[1])):
                bad.append((code, got, want))
                if len(bad) >= 5:
                    return
    _run_comb(dut, bench)
    return bad


def test_rtl_encoder_exhaustive_8():
    spec = SecdedCode(8)
    dut = SecdedEncoder(data_width=8)

    async def bench(ctx):
        for data in range(256):
            ctx.set(dut.data, data)
            assert ctx.get(dut.code) == spec.encode(data), data
    _run_comb(dut, bench)


def test_rtl_decoder_exhaustive_8():
    """All 8,192 13-bit words (codewords, single, double and more flips) match the reference."""
    assert _decoder_mismatches(8, range(1 << 13)) == []


def _flip_codes(width, rng, words=3, doubles=150):
    spec = SecdedCode(width)
    codes = []
    for data in [rng.getrandbits(width) for _ in range(words)]:
        code = spec.encode(data)
        codes.append(code)
        codes += [code ^ 1 << i for i in range(spec.code_width)]
        for _ in range(doubles):
            i, j = rng.sample(range(spec.code_width), 2)
            codes.append(code ^ 1 << i ^ 1 << j)
    return codes


@pytest.mark.parametrize("width", [128, 256])
def test_rtl_real_width(width, rng):
    """Random words: encoder matches, every single flip and random double flips decode right."""
    spec = SecdedCode(width)
    enc = SecdedEncoder(data_width=width)
    words = [rng.getrandbits(width) for _ in range(20)]

    async def bench(ctx):
        for data in words:
            ctx.set(enc.data, data)
            assert ctx.get(enc.code) == spec.encode(data)
    _run_comb(enc, bench)
    assert _decoder_mismatches(width, _flip_codes(width, rng)) == []


@pytest.mark.parametrize("fault", ["no_correct", "no_double_detect"])
@pytest.mark.parametrize("width", [8, 256])
def test_decoder_faults_caught(fault, width):
    """The checks above fail on each deliberately broken decoder."""
    codes = range(1 << 13) if width == 8 else _flip_codes(width, random.Random(1), words=1)
    assert _decoder_mismatches(width, codes, faults={fault}), fault


def test_decoder_bad_fault_name():
    with pytest.raises(ValueError):
        SecdedDecoder(data_width=8, faults={"nope"})
    with pytest.raises(TypeError):
        SecdedDecoder(data_width=8, faults="no_correct")


@pytest.mark.parametrize("width", [32, 256])
def test_lint(width):
    lint(SecdedEncoder(data_width=width), name="secded_encoder")
    lint(SecdedDecoder(data_width=width), name="secded_decoder")
