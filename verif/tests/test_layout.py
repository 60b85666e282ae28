"""Tests of the frozen MX memory layout (openmaia.layout, docs/layout.md)."""

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openmaia.layout import (Fp32MatrixLayout, MxOperandLayout, check_disjoint, k_blocks,
                             merge_ranges, operand_arrays, pack_codes, packed_row_bytes,
                             ranges_overlap, unpack_codes)
from openmaia.numerics.formats import BLOCK_SIZE, Format

SENTINEL = 0xA5
FORMATS = list(Format)
fast = settings(max_examples=100, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def random_codes(rng, fmt, shape):
    return rng.integers(0, 1 << fmt.spec.bits, size=shape, dtype=np.uint8)


def block_integer_reference(codes, fmt):
    """The definition, one block at a time with Python integers: code i of a block occupies bits
    [bits*i, bits*(i+1)) of the little-endian integer formed by the block's bytes."""
    bits, bpb = fmt.spec.bits, fmt.spec.bytes_per_block
    out = bytearray()
    for kb in range(k_blocks(len(codes))):
        block = [int(c) for c in codes[kb * BLOCK_SIZE:(kb + 1) * BLOCK_SIZE]]
        value = sum(c << (bits * i) for i, c in enumerate(block))
        out += value.to_bytes(bpb, "little")
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# pack_codes / unpack_codes


def test_bytes_per_block():
    assert {f: f.spec.bytes_per_block for f in Format} == {
        Format.E4M3: 32, Format.E5M2: 32, Format.INT8: 32,
        Format.E3M2: 24, Format.E2M3: 24, Format.E2M1: 16}
    assert packed_row_bytes(1, "e2m1") == 16
    assert packed_row_bytes(33, "e3m2") == 48
    assert packed_row_bytes(64, "e4m3") == 64
    assert k_blocks(0) == 0 and k_blocks(32) == 1 and k_blocks(33) == 2


@fast
@given(fmt=st.sampled_from(FORMATS), k=st.integers(1, 200), lead=st.integers(1, 4),
       seed=st.integers(0, 2**32 - 1))
def test_pack_unpack_round_trip(fmt, k, lead, seed):
    rng = np.random.default_rng(seed)
    codes = random_codes(rng, fmt, (lead, k))
    packed = pack_codes(codes, fmt)
    assert packed.dtype == np.uint8
    assert packed.shape == (lead, k_blocks(k) * fmt.spec.bytes_per_block)
    back = unpack_codes(packed, fmt, k, check_padding=True)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, codes)
    for row in range(lead):
        assert packed[row].tobytes() == block_integer_reference(codes[row], fmt)


@fast
@given(fmt=st.sampled_from(FORMATS), k=st.integers(0, 100), seed=st.integers(0, 2**32 - 1))
def test_pack_any_leading_shape(fmt, k, seed):
    rng = np.random.default_rng(seed)
    codes = random_codes(rng, fmt, (2, 3, k))
    packed = pack_codes(codes.astype(np.int64), fmt)
    assert packed.shape == (2, 3, packed_row_bytes(k, fmt))
    np.testing.assert_array_equal(unpack_codes(packed, fmt, k), codes)
    one = pack_codes(codes[1, 2], fmt)
    np.testing.assert_array_equal(one, packed[1, 2])


def test_fp6_bit_positions_by_hand():
    # Codes 0..31: group g of 4 codes is the 24-bit value c0 | c1<<6 | c2<<12 | c3<<18, stored
    # little-endian in bytes 3g..3g+2. Group 0: 0 | 1<<6 | 2<<12 | 3<<18 = 0x0C2040.
    # Group 1: 4 | 5<<6 | 6<<12 | 7<<18 = 0x1C6144.
    # Group 7: 28 | 29<<6 | 30<<12 | 31<<18 = 0x7DE75C.
    codes = np.arange(32, dtype=np.uint8)
    expected = bytes.fromhex("40200c" "44611c" "48a22c" "4ce33c" "50244d" "54655d" "58a66d"
                             "5ce77d")
    for fmt in (Format.E3M2, Format.E2M3):
        assert pack_codes(codes, fmt).tobytes() == expected
        np.testing.assert_array_equal(unpack_codes(np.frombuffer(expected, np.uint8), fmt, 32),
                                      codes)
    # Single codes: 0x3F at position 1 is bits 6..11 -> byte 0 = 0xC0, byte 1 = 0x0F.
    one = np.zeros(32, np.uint8)
    one[1] = 0x3F
    assert pack_codes(one, "e3m2").tobytes() == bytes([0xC0, 0x0F]) + bytes(22)
    # 0b000101 at position 3 is bits 18..23 -> byte 2 = 0b00010100.
    one[:] = 0
    one[3] = 0b000101
    assert pack_codes(one, "e2m3").tobytes() == bytes([0, 0, 0x14]) + bytes(21)
    # 0x3F at position 31 is bits 186..191 -> byte 23 = 0xFC.
    one[:] = 0
    one[31] = 0x3F
    assert pack_codes(one, "e3m2").tobytes() == bytes(23) + bytes([0xFC])
    # 0b101101 at position 5 is bits 30..35: byte 3 bits 7:6 = 01, byte 4 bits 3:0 = 1011.
    one[:] = 0
    one[5] = 0b101101
    assert pack_codes(one, "e3m2").tobytes() == bytes(3) + bytes([0x40, 0x0B]) + bytes(19)


def test_fp4_bit_positions_by_hand():
    # The lower-K element in bits 3:0, the next in bits 7:4.
    assert pack_codes(np.array([0x1, 0xF, 0x8, 0x3], np.uint8), "e2m1").tobytes() == \
        bytes([0xF1, 0x38]) + bytes(14)
    # K = 3: the fourth nibble and the rest of the block are padding zeros.
    assert pack_codes(np.array([0xA, 0xB, 0xC], np.uint8), "e2m1").tobytes() == \
        bytes([0xBA, 0x0C]) + bytes(14)
    np.testing.assert_array_equal(
        unpack_codes(np.frombuffer(bytes([0xBA, 0x0C]) + bytes(14), np.uint8), "e2m1", 3),
        [0xA, 0xB, 0xC])


def test_fp8_int8_one_code_per_byte():
    codes = np.array([0x00, 0x7F, 0x80, 0xFF, 0x12], np.uint8)
    for fmt in (Format.E4M3, Format.E5M2, Format.INT8):
        assert pack_codes(codes, fmt).tobytes() == codes.tobytes() + bytes(27)


@pytest.mark.parametrize("fmt", FORMATS)
def test_padding_is_zero(fmt):
    k = 33
    codes = np.full(k, (1 << fmt.spec.bits) - 1, np.uint8)
    packed = pack_codes(codes, fmt)
    assert packed.shape == (2 * fmt.spec.bytes_per_block,)
    second = packed[fmt.spec.bytes_per_block:]
    # Only element 32 (block 1, position 0: the low `bits` bits of the block) is non-zero.
    assert int.from_bytes(second.tobytes(), "little") == (1 << fmt.spec.bits) - 1
    bad = packed.copy()
    bad[-1] = 0x80
    np.testing.assert_array_equal(unpack_codes(bad, fmt, k), codes)  # padding ignored
    with pytest.raises(ValueError, match="padding"):
        unpack_codes(bad, fmt, k, check_padding=True)


@pytest.mark.parametrize("fmt,value", [("e2m1", 16), ("e3m2", 64), ("e2m3", 255), ("e4m3", 256),
                                       ("int8", -1), ("e5m2", 300)])
def test_pack_rejects_codes_outside_width(fmt, value):
    codes = np.zeros(5, np.int32)
    codes[2] = value
    with pytest.raises(ValueError, match="codes"):
        pack_codes(codes, fmt)


def test_pack_unpack_reject_bad_arrays():
    with pytest.raises(ValueError, match="integer"):
        pack_codes(np.zeros(4, np.float32), "e4m3")
    with pytest.raises(ValueError, match="integer"):
        pack_codes(np.zeros(4, bool), "e4m3")
    with pytest.raises(ValueError, match="dimension"):
        pack_codes(np.uint8(3), "e4m3")
    with pytest.raises(ValueError, match="unknown element format"):
        pack_codes(np.zeros(4, np.uint8), "e4m4")
    with pytest.raises(ValueError, match="bytes"):
        unpack_codes(np.zeros(31, np.uint8), "e4m3", 32)
    with pytest.raises(ValueError, match="bytes"):
        unpack_codes(np.zeros(24, np.uint8), "e3m2", 33)
    with pytest.raises(ValueError, match="uint8"):
        unpack_codes(np.zeros(16, np.int16), "e2m1", 32)
    with pytest.raises(ValueError, match="k must be"):
        unpack_codes(np.zeros(16, np.uint8), "e2m1", -1)


# ---------------------------------------------------------------------------------------------
# MxOperandLayout


def test_default_layout_sizes_and_addresses():
    lay = MxOperandLayout.default(rows=3, k=70, fmt="e2m3", codes_base=0x100)
    assert lay.fmt is Format.E2M3
    assert (lay.k_blocks, lay.k_padded, lay.bytes_per_block, lay.row_bytes) == (3, 96, 24, 72)
    assert lay.codes_row_stride == 72 and lay.scales_row_stride == 3
    assert lay.codes_bytes == lay.codes_span == 216
    assert lay.scales_base == 0x100 + 216 and lay.scales_bytes == 9
    assert lay.end == 0x100 + 216 + 9 and lay.start == 0x100
    assert lay.address_of_block(2, 1) == 0x100 + 2 * 72 + 24
    assert lay.address_of_scale(2, 1) == 0x100 + 216 + 2 * 3 + 1
    assert lay.address_of_row(1) == 0x100 + 72
    # Element 69 is block 2, position 5: bit 30 of the block = byte 3, bit 6.
    assert lay.address_of_element(2, 69) == (0x100 + 2 * 72 + 2 * 24 + 3, 6)
    assert lay.footprint() == [(0x100, 0x100 + 225)]
    with pytest.raises(IndexError):
        lay.address_of_block(3, 0)
    with pytest.raises(IndexError):
        lay.address_of_scale(0, 3)
    with pytest.raises(IndexError):
        lay.address_of_element(0, 70)


def test_address_of_element_every_format():
    for fmt in Format:
        lay = MxOperandLayout.default(rows=2, k=64, fmt=fmt)
        for k in (0, 1, 5, 31, 32, 33, 63):
            byte, bit = lay.address_of_element(1, k)
            absolute_bit = 8 * (lay.codes_row_stride + (k // 32) * lay.bytes_per_block) \
                + fmt.spec.bits * (k % 32)
            assert 8 * byte + bit == absolute_bit


def write_and_check(lay, rng, size):
    """Write random operands into a sentinel-filled memory, check every byte and read back."""
    codes = random_codes(rng, lay.fmt, (lay.rows, lay.k))
    scales = rng.integers(0, 256, size=(lay.rows, lay.k_blocks), dtype=np.uint8)
    mem = bytearray([SENTINEL]) * size
    lay.write(mem, codes, scales)
    arr = np.frombuffer(mem, np.uint8)
    mask = lay.footprint_mask(size)
    assert mask.sum() == lay.codes_bytes + lay.scales_bytes
    assert (arr[~mask] == SENTINEL).all(), "a byte outside the footprint was written"
    merged = np.zeros(size, bool)
    for a, b in lay.footprint():
        merged[a:b] = True
    np.testing.assert_array_equal(merged, mask)
    # Every row's bytes are the packed codes; every scale is at its address.
    packed = pack_codes(codes, lay.fmt)
    for r in range(lay.rows):
        a = lay.address_of_row(r)
        assert mem[a:a + lay.row_bytes] == packed[r].tobytes()
        for kb in range(lay.k_blocks):
            assert mem[lay.address_of_scale(r, kb)] == scales[r, kb]
            blk = lay.address_of_block(r, kb)
            assert mem[blk:blk + lay.bytes_per_block] == \
                packed[r, kb * lay.bytes_per_block:(kb + 1) * lay.bytes_per_block].tobytes()
    back_codes, back_scales = lay.read(bytes(mem), check_padding=True)
    np.testing.assert_array_equal(back_codes, codes)
    np.testing.assert_array_equal(back_scales, scales)
    return codes, scales


@fast
@given(fmt=st.sampled_from(FORMATS), rows=st.integers(1, 6), k=st.integers(1, 200),
       codes_gap=st.integers(0, 40), scales_gap=st.integers(0, 9), codes_base=st.integers(0, 50),
       seed=st.integers(0, 2**32 - 1))
def test_strided_write_read(fmt, rows, k, codes_gap, scales_gap, codes_base, seed):
    rng = np.random.default_rng(seed)
    row_bytes = packed_row_bytes(k, fmt)
    codes_stride = row_bytes + codes_gap
    scales_base = codes_base + rows * codes_stride + 3
    lay = MxOperandLayout(rows=rows, k=k, fmt=fmt, codes_base=codes_base,
                          codes_row_stride=codes_stride, scales_base=scales_base,
                          scales_row_stride=k_blocks(k) + scales_gap)
    write_and_check(lay, rng, lay.end + 7)


@fast
@given(fmt=st.sampled_from(FORMATS), rows=st.integers(1, 5), k=st.integers(1, 200),
       seed=st.integers(0, 2**32 - 1))
def test_scales_below_codes_and_numpy_memory(fmt, rows, k, seed):
    rng = np.random.default_rng(seed)
    tight = MxOperandLayout.default(rows=rows, k=k, fmt=fmt, codes_base=rows * k_blocks(k) + 5,
                                    scales_base=2)
    codes = random_codes(rng, fmt, (rows, k))
    scales = rng.integers(0, 256, size=(rows, k_blocks(k)), dtype=np.uint8)
    mem = np.full(tight.end + 3, SENTINEL, np.uint8)
    tight.write(mem, codes, scales)
    assert (mem[~tight.footprint_mask(mem.size)] == SENTINEL).all()
    back = tight.read(mem)
    np.testing.assert_array_equal(back[0], codes)
    np.testing.assert_array_equal(back[1], scales)


def test_scales_interleaved_into_code_gaps():
    # Each row: 48 code bytes then its 2 scale bytes, stride 50 for both planes.
    lay = MxOperandLayout(rows=4, k=50, fmt="e3m2", codes_base=0, codes_row_stride=50,
                          scales_base=48, scales_row_stride=50)
    assert lay.footprint() == [(0, 200)]
    write_and_check(lay, np.random.default_rng(1), 200)


def test_write_pads_in_memory_with_zero():
    lay = MxOperandLayout.default(rows=2, k=3, fmt="e2m1")
    mem = bytearray([SENTINEL]) * lay.end
    lay.write(mem, np.full((2, 3), 0xF, np.uint8), np.zeros((2, 1), np.uint8))
    assert mem[:16] == bytes([0xFF, 0x0F]) + bytes(14)
    assert mem[16:32] == bytes([0xFF, 0x0F]) + bytes(14)


@pytest.mark.parametrize("kwargs,match", [
    (dict(rows=0), "rows must be >= 1"),
    (dict(rows=True), "rows must be an integer"),
    (dict(rows=2.0), "rows must be an integer"),
    (dict(k=0), "k must be >= 1"),
    (dict(fmt="fp8"), "unknown element format"),
    (dict(codes_base=-1), "codes_base must be >= 0"),
    (dict(scales_base=-4), "scales_base must be >= 0"),
    (dict(codes_row_stride=47), "codes_row_stride must be >= 48"),
    (dict(scales_row_stride=1), "scales_row_stride must be >= 2"),
    # Overlaps between the planes.
    (dict(scales_base=0), "share bytes"),
    (dict(scales_base=4 * 48 - 1), "share bytes"),
    (dict(codes_row_stride=60, scales_base=47, scales_row_stride=60), "share bytes"),
    (dict(codes_base=100, scales_base=98, scales_row_stride=2), "share bytes"),
])
def test_invalid_parameters_rejected(kwargs, match):
    params = dict(rows=4, k=40, fmt="e2m3", codes_base=0, codes_row_stride=48,
                  scales_base=4 * 48, scales_row_stride=2)
    MxOperandLayout(**params)  # the base case is valid
    params.update(kwargs)
    with pytest.raises(ValueError, match=match):
        MxOperandLayout(**params)


def test_layout_is_frozen_and_keyword_only():
    lay = MxOperandLayout.default(rows=1, k=32, fmt="e4m3")
    with pytest.raises(AttributeError):
        lay.rows = 2
    with pytest.raises(TypeError):
        MxOperandLayout(1, 32, "e4m3", 0, 32, 32, 1)
    with pytest.raises(ValueError, match="share bytes"):
        lay.replace(scales_base=31)
    assert lay.replace(scales_base=32).scales_base == 32


def test_write_read_reject_bad_arguments():
    lay = MxOperandLayout.default(rows=2, k=40, fmt="e2m1")
    ok_codes = np.zeros((2, 40), np.uint8)
    ok_scales = np.zeros((2, 2), np.uint8)
    mem = bytearray(lay.end)
    with pytest.raises(ValueError, match="too small"):
        lay.write(bytearray(lay.end - 1), ok_codes, ok_scales)
    with pytest.raises(ValueError, match="too small"):
        lay.read(bytes(lay.end - 1))
    with pytest.raises(ValueError, match="shape"):
        lay.write(mem, np.zeros((2, 39), np.uint8), ok_scales)
    with pytest.raises(ValueError, match="shape"):
        lay.write(mem, ok_codes, np.zeros((2, 1), np.uint8))
    with pytest.raises(ValueError, match="codes"):
        lay.write(mem, np.full((2, 40), 16), ok_scales)
    with pytest.raises(ValueError, match="0..255"):
        lay.write(mem, ok_codes, np.full((2, 2), 256))
    with pytest.raises(ValueError, match="read-only"):
        lay.write(bytes(lay.end), ok_codes, ok_scales)
    with pytest.raises(ValueError, match="1-D uint8"):
        lay.write(np.zeros(lay.end, np.int16), ok_codes, ok_scales)
    with pytest.raises(TypeError):
        lay.write([0] * lay.end, ok_codes, ok_scales)
    # Nothing was written by the failed calls.
    assert mem == bytearray(lay.end)


def test_tensor_helpers_transpose_b():
    rng = np.random.default_rng(7)
    k, m, n = 45, 3, 5
    a = SimpleNamespace(codes=random_codes(rng, Format.E2M1, (m, k)),
                        scales=rng.integers(0, 256, (m, 2), dtype=np.uint8), fmt="e2m1", axis=1)
    b = SimpleNamespace(codes=random_codes(rng, Format.E3M2, (k, n)),
                        scales=rng.integers(0, 256, (2, n), dtype=np.uint8), fmt=Format.E3M2,
                        axis=0)
    la = MxOperandLayout.for_tensor(a, codes_base=0)
    lb = MxOperandLayout.for_tensor(b, codes_base=la.end)
    assert (la.rows, la.k, lb.rows, lb.k) == (m, k, n, k)
    check_disjoint(la, lb)
    mem = bytearray(lb.end)
    la.write_tensor(mem, a)
    lb.write_tensor(mem, b)
    codes_b, scales_b = lb.read(mem)
    np.testing.assert_array_equal(codes_b, b.codes.T)
    np.testing.assert_array_equal(scales_b, b.scales.T)
    np.testing.assert_array_equal(la.read(mem)[0], a.codes)
    with pytest.raises(ValueError, match="format"):
        la.write_tensor(mem, SimpleNamespace(**{**vars(a), "fmt": "e4m3"}))
    with pytest.raises(ValueError, match="scales"):
        operand_arrays(SimpleNamespace(**{**vars(b), "axis": 1}))


def test_ranges_and_disjointness():
    assert merge_ranges([(5, 8), (0, 2), (2, 3), (7, 9), (4, 4)]) == [(0, 3), (5, 9)]
    assert not ranges_overlap([(0, 4)], [(4, 8)])
    assert ranges_overlap([(0, 4), (10, 12)], [(11, 20)])
    a = MxOperandLayout.default(rows=4, k=64, fmt="e4m3", codes_base=0)
    c = Fp32MatrixLayout.default(rows=4, cols=4, base=a.end)
    check_disjoint(a, c)
    with pytest.raises(ValueError, match="overlap"):
        check_disjoint(a, c.replace(base=a.end - 1))


# ---------------------------------------------------------------------------------------------
# Fp32MatrixLayout


SPECIAL_BITS = [0x0000_0000, 0x8000_0000, 0x3F80_0000, 0x7F80_0000, 0xFF80_0000, 0x7FC0_0000,
                0x7F80_0001, 0xFFFF_FFFF, 0x0000_0001, 0x807F_FFFF, 0x7F7F_FFFF, 0x1234_5678]


def test_fp32_little_endian_bytes():
    lay = Fp32MatrixLayout.default(rows=1, cols=2, base=3)
    mem = bytearray(12)
    lay.write(mem, np.array([[1.0, -0.0]], np.float32))
    assert mem == bytes(3) + bytes([0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0x80]) + bytes(1)
    assert lay.address_of(0, 1) == 7


@fast
@given(rows=st.integers(1, 6), cols=st.integers(1, 12), gap=st.integers(0, 9),
       base=st.integers(0, 20), seed=st.integers(0, 2**32 - 1))
def test_fp32_round_trip_bit_exact(rows, cols, gap, base, seed):
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**32, size=(rows, cols), dtype=np.uint64).astype(np.uint32)
    flat = bits.reshape(-1)
    flat[:min(flat.size, len(SPECIAL_BITS))] = SPECIAL_BITS[:flat.size]
    values = bits.view(np.float32)
    lay = Fp32MatrixLayout(rows=rows, cols=cols, base=base, row_stride=4 * cols + gap)
    mem = bytearray([SENTINEL]) * (lay.end + 5)
    lay.write(mem, values)
    arr = np.frombuffer(mem, np.uint8)
    mask = lay.footprint_mask(len(mem))
    assert mask.sum() == 4 * rows * cols
    assert (arr[~mask] == SENTINEL).all()
    for r in range(rows):
        for c in range(cols):
            a = lay.address_of(r, c)
            assert int.from_bytes(mem[a:a + 4], "little") == bits[r, c]
    back = lay.read(bytes(mem))
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back.view(np.uint32), bits)
    np.testing.assert_array_equal(lay.read_bits(mem), bits)
    mem2 = bytearray([SENTINEL]) * len(mem)
    lay.write_bits(mem2, bits)
    assert mem2 == mem


def test_fp32_invalid():
    with pytest.raises(ValueError, match="row_stride must be >= 16"):
        Fp32MatrixLayout(rows=2, cols=4, base=0, row_stride=15)
    with pytest.raises(ValueError, match="cols must be >= 1"):
        Fp32MatrixLayout.default(rows=2, cols=0)
    with pytest.raises(ValueError, match="rows must be >= 1"):
        Fp32MatrixLayout.default(rows=0, cols=1)
    with pytest.raises(ValueError, match="base must be >= 0"):
        Fp32MatrixLayout.default(rows=1, cols=1, base=-1)
    lay = Fp32MatrixLayout.default(rows=2, cols=2)
    with pytest.raises(ValueError, match="float32"):
        lay.write(bytearray(16), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="shape"):
        lay.write(bytearray(16), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="too small"):
        lay.write(bytearray(15), np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="2\\*\\*32"):
        lay.write_bits(bytearray(16), np.full((2, 2), 2**32, np.int64))
    with pytest.raises(IndexError):
        lay.address_of(0, 2)


# ---------------------------------------------------------------------------------------------
# The worked examples of docs/layout.md


def test_docs_worked_examples():
    # Section 3.4: an E3M2 block.
    codes = np.zeros(32, np.uint8)
    codes[:4] = [0x0C, 0x31, 0x1F, 0x01]
    codes[31] = 0x0C
    assert pack_codes(codes, "e3m2").tobytes() == bytes.fromhex(
        "4C FC 05 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 30")
    # Section 3.3: E2M1 1.0 then -6.0.
    assert pack_codes(np.array([0x2, 0xF], np.uint8), "e2m1")[0] == 0xF2
    # Section 6: A, 4 x 100, MXFP4, tight at 0x1000, then strided.
    lay = MxOperandLayout.default(rows=4, k=100, fmt="e2m1", codes_base=0x1000)
    assert (lay.k_blocks, lay.row_bytes, lay.scales_base) == (4, 64, 0x1100)
    assert lay.address_of_block(2, 3) == 0x10B0
    assert lay.address_of_scale(2, 3) == 0x110B
    assert lay.end == 0x1110
    assert lay.address_of_element(2, 99) == (0x10B1, 4)
    wide = lay.replace(codes_row_stride=128, scales_base=0x1200, scales_row_stride=8)
    assert wide.address_of_block(2, 3) == 0x1130
    assert wide.address_of_scale(2, 3) == 0x1213
    # Section 7: FP32 bytes.
    c = Fp32MatrixLayout.default(rows=1, cols=3)
    mem = bytearray(12)
    c.write_bits(mem, np.array([[0x3F80_0000, 0x8000_0000, 0x7FC0_0000]], np.uint32))
    assert mem == bytes.fromhex("0000803F 00000080 0000C07F")
