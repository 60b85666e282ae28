"""The power-up self-test (rtl/fpga/self_test.py) and its place in the board top
(rtl/fpga/board_tile.py): the build-time image against the golden backend, the CRC unit against
zlib, the ``ice40`` board top passing in simulation with a host request held off until the
self-test is done, a flipped operand bit failing, and fault twins of the checker caught.
Contract: docs/fpga.md, "Self-test"."""

import dataclasses
import random
import zlib

import numpy as np
import pytest
from amaranth.sim import Simulator
from openmaia.benches.self_test import simulate_board
from openmaia.config import get_config
from openmaia.fpga import link
from openmaia.fpga.board_tile import BoardTile
from openmaia.fpga.self_test import (
    Crc32,
    SelfTest,
    SelfTestFail,
    SelfTestImage,
)
from openmaia.harness.elaborate import lint
from openmaia.harness.sim import simulate
from openmaia.numerics import mx_matmul
from openmaia.sdk.golden import GoldenBackend

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

ICE40 = get_config("ice40")
MEMORY = 4096
DIVISOR = 4


def golden_result(image, memory=None):
    """The result region after the golden backend ran the image's program on ``memory``
    (default: the image's own), with the DMA windows the driver sets."""
    cfg = image.config
    gold = GoldenBackend(cfg, hbm_bytes=image.memory_bytes,
                         windows=[(0, image.ring_base - 1)] * cfg.dma_queues)
    gold.load(0, image.memory if memory is None else memory)
    result = gold.run(image.compiled.program)
    assert result.ok, result
    return gold.read(image.result_base, image.result_bytes)


def golden_checksum(image, memory=None):
    """CRC-32 of :func:`golden_result`."""
    return zlib.crc32(golden_result(image, memory))


# ---------------------------------------------------------------------------------------------
# Build time.

@pytest.mark.parametrize("name, memory", [("ice40", MEMORY), ("ulx3s", 1 << 14)])
def test_image_checksum_is_golden_run(name, memory):
    """The stored checksum equals the CRC of the golden backend's run of the stored program on
    the stored memory (ring included), and the C matrix in it is ``mx_matmul``'s."""
    config = get_config(name)
    image = SelfTestImage.for_config(config, hbm_bytes=memory)
    assert image.checksum == zlib.crc32(image.expected) == golden_checksum(image)
    m, n, _, fa, fb = image.gemm
    assert (fa.name, fb.name) == ("E4M3", "E2M1")
    assert image.compiled.plans[0].chain == 2                 # a keep / accumulate chain
    assert (m, n) == (2 * config.array_rows, 2 * config.array_cols)
    c = image.compiled.outputs["C"]
    region = np.frombuffer(image.expected, np.uint8)
    full = np.zeros(image.memory_bytes, np.uint8)
    full[image.result_base:image.result_base + image.result_bytes] = region
    assert np.array_equal(c.read(full).view(np.uint32),
                          mx_matmul(image.tensors["A"], image.tensors["B"]).view(np.uint32))
    beat = config.axi_data_bits // 8
    assert image.result_base % beat == 0 and image.result_bytes % beat == 0
    # the ring holds every command, in the top of memory, and the writes end with the doorbell
    assert image.ring_base + image.ring_entries * 64 == image.memory_bytes
    blob = image.compiled.program.to_bytes()
    assert image.memory[image.ring_base:image.ring_base + len(blob)] == blob
    rmap = BoardTile(config, hbm_bytes=memory, divisor=DIVISOR).register_map
    assert image.writes[-1] == (rmap["CQ_DOORBELL"].address, image.commands)
    assert (rmap["CONTROL"].address, 1) in image.writes
    control, doorbell = rmap["CONTROL"].address, rmap["CQ_DOORBELL"].address
    assert image.cleanup == ((control, 0), (doorbell, 0), (control, 0b10010))
    assert image.status_address == rmap["STATUS"].address


def test_image_flip_and_parameters(seed):
    image = SelfTestImage.for_config(ICE40, hbm_bytes=MEMORY)
    bit = random.Random(seed).randrange(8 * len(image.operand_bytes))
    flipped = SelfTestImage.for_config(ICE40, hbm_bytes=MEMORY, flip_bit=bit)
    addr, b = flipped.flip
    diff = [i for i in range(MEMORY) if image.memory[i] != flipped.memory[i]]
    assert diff == [addr] and image.memory[addr] ^ flipped.memory[addr] == 1 << b
    assert addr in image.operand_bytes and flipped.checksum == image.checksum
    with pytest.raises(ValueError, match="flip_bit"):
        SelfTestImage.for_config(ICE40, hbm_bytes=MEMORY, flip_bit=8 * len(image.operand_bytes))
    with pytest.raises(ValueError, match="hbm_bytes"):
        SelfTestImage.for_config(ICE40, hbm_bytes=1024)
    with pytest.raises(ValueError, match="ONCHIP"):
        SelfTestImage.for_config(get_config("small"), hbm_bytes=MEMORY)
    with pytest.raises(TypeError):
        SelfTestImage.for_config("ice40", hbm_bytes=MEMORY)
    with pytest.raises(ValueError, match="max_cycles"):
        SelfTestImage.for_config(ICE40, hbm_bytes=MEMORY, max_cycles=0)
    with pytest.raises(TypeError, match="SelfTestImage"):
        SelfTest("image")
    with pytest.raises(ValueError, match="crc_bits"):
        SelfTest(image, crc_bits=3)
    with pytest.raises(ValueError, match="unknown faults"):
        SelfTest(image, faults={"nope"})
    with pytest.raises(TypeError):
        SelfTest(image, 8)                                       # keyword-only
    with pytest.raises(ValueError, match="made for"):
        BoardTile(ICE40, hbm_bytes=2 * MEMORY, divisor=DIVISOR, self_test=image)
    with pytest.raises(ValueError, match="hbm_init"):
        BoardTile(ICE40, hbm_bytes=MEMORY, divisor=DIVISOR, self_test=image, hbm_init=b"\0")
    with pytest.raises(ValueError, match="self_test_faults"):
        BoardTile(ICE40, hbm_bytes=MEMORY, divisor=DIVISOR, self_test_faults={"skip_compare"})
    board = BoardTile(ICE40, hbm_bytes=MEMORY, divisor=DIVISOR, self_test=image)
    assert board.tile.hbm_init == image.memory


@pytest.mark.parametrize("data_bits", [1, 8, 32])
def test_crc32_matches_zlib(data_bits, seed):
    """:class:`Crc32` against :func:`zlib.crc32` (Amaranth simulator): two sequences with a
    ``clear`` between them and idle cycles inside."""
    rng = random.Random(seed)
    dut = Crc32(data_bits=data_bits)
    got = []
    seqs = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 24)) for _ in range(4))
            for _ in range(2)]

    async def bench(ctx):
        for seq in seqs:
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            word = int.from_bytes(seq, "little")
            for i in range(len(seq) * 8 // data_bits):
                while rng.random() < 0.3:
                    ctx.set(dut.valid, 0)
                    await ctx.tick()
                ctx.set(dut.valid, 1)
                ctx.set(dut.data, word >> (i * data_bits) & ((1 << data_bits) - 1))
                await ctx.tick()
            ctx.set(dut.valid, 0)
            got.append(ctx.get(dut.value))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == [zlib.crc32(s) for s in seqs]
    with pytest.raises(ValueError, match="data_bits"):
        Crc32(data_bits=3)


# ---------------------------------------------------------------------------------------------
# The board top (Amaranth simulator: about 20 s a run, start included).

def _run(image, **kwargs):
    r = simulate_board(image, divisor=DIVISOR, **kwargs)
    print({k: v for k, v in r.items() if k != "response"}, r["response"])
    return r


def test_board_self_test_passes():
    """The ``ice40`` board top passes its self-test; a REG_READ of CQ_HEAD the host sent at
    reset is held until the self-test has released the ports (after its cleanup writes) and
    then answered: 0, the empty queue the host driver expects."""
    image = SelfTestImage.for_config(ICE40, hbm_bytes=MEMORY)
    rmap = BoardTile(ICE40, hbm_bytes=MEMORY, divisor=DIVISOR).register_map
    r = _run(image, host_frame=link.encode_reg_read(rmap["CQ_HEAD"].address))
    assert r["done_cycle"] is not None and r["passed"] and r["fail"] == SelfTestFail.NONE
    assert r["checksum"] == image.checksum
    assert r["done_cycle"] < r["released_cycle"] < r["done_cycle"] + 40    # the cleanup
    assert r["stats"]["busy"] == r["released_cycle"] + 1
    assert r["stats"]["polls"] >= 1
    resp = r["response"]
    assert resp is not None and resp.ok and resp.payload == bytes(4)
    assert r["response_cycle"] >= r["released_cycle"]


def test_board_flipped_bit_fails(seed):
    """One flipped bit in the stored operands: the self-test fails with MISMATCH, and the CRC
    the hardware computed is the golden run's on the flipped memory."""
    bit = _changing_flip(seed)
    image = SelfTestImage.for_config(ICE40, hbm_bytes=MEMORY, flip_bit=bit)
    r = _run(image)
    assert r["done_cycle"] is not None and not r["passed"]
    assert r["fail"] == SelfTestFail.MISMATCH
    assert r["checksum"] == golden_checksum(image) != image.checksum


def _changing_flip(seed):
    """An operand bit (drawn with ``seed``) whose flip changes the golden result."""
    image = SelfTestImage.for_config(ICE40, hbm_bytes=MEMORY)
    rng = random.Random(seed)
    for _ in range(100):
        bit = rng.randrange(8 * len(image.operand_bytes))
        memory = bytearray(image.memory)
        memory[image.operand_bytes[bit // 8]] ^= 1 << bit % 8
        if golden_checksum(image, bytes(memory)) != image.checksum:
            return bit
    raise AssertionError("no operand bit changes the result")


def test_skip_compare_twin_caught(seed):
    """The fault twin ``skip_compare`` passes the flipped image: the check above fails on it."""
    image = SelfTestImage.for_config(ICE40, hbm_bytes=MEMORY, flip_bit=_changing_flip(seed))
    r = _run(image, faults={"skip_compare"})
    assert r["passed"], "skip_compare should pass a flipped image"
    assert r["checksum"] != image.checksum


@pytest.mark.slow
def test_board_timeout_fails():
    """A budget shorter than the run: done with TIMEOUT at the budget, never passed, and the
    ports are handed to the host after the transaction in flight."""
    image = SelfTestImage.for_config(ICE40, hbm_bytes=MEMORY, max_cycles=200)
    r = _run(image, host_frame=link.encode_reg_read(image.status_address))
    assert r["done_cycle"] + 1 == image.max_cycles
    assert not r["passed"] and r["fail"] == SelfTestFail.TIMEOUT
    assert r["released_cycle"] - r["done_cycle"] < 40
    assert r["response"] is not None and r["response"].ok


def _tile_error_image():
    """The image with the first command in the ring corrupted (an undefined opcode)."""
    image = SelfTestImage.for_config(ICE40, hbm_bytes=MEMORY)
    memory = bytearray(image.memory)
    memory[image.ring_base] ^= 0xFF
    return dataclasses.replace(image, memory=bytes(memory))


@pytest.mark.slow
def test_board_tile_error_fails():
    """The tile stops in ERROR: the self-test fails with TILE_ERROR."""
    r = _run(_tile_error_image())
    assert r["done_cycle"] is not None and not r["passed"]
    assert r["fail"] == SelfTestFail.TILE_ERROR


@pytest.mark.slow
def test_ignore_error_twin_caught():
    """The twin ``ignore_error`` reads and compares the result of a stream stopped in ERROR:
    it reports MISMATCH, not TILE_ERROR, so the check above fails on it."""
    r = _run(_tile_error_image(), faults={"ignore_error"})
    assert not r["passed"] and r["fail"] == SelfTestFail.MISMATCH


@pytest.mark.sim
@pytest.mark.slow          # one Verilator build of the ice40 board top each (about 2 min)
@pytest.mark.parametrize("variant", ["pass", "flipped"])
def test_board_self_test_verilator(variant, seed):
    """The same board top under cocotb + Verilator (verif/benches/self_test_board.py): the LED
    outputs, the held host request, the result region as the tile left it, then the host owns
    both ports."""
    flip = _changing_flip(seed) if variant == "flipped" else None
    image = SelfTestImage.for_config(ICE40, hbm_bytes=MEMORY, flip_bit=flip)
    board = BoardTile(ICE40, hbm_bytes=MEMORY, divisor=DIVISOR, self_test=image)
    rmap = board.register_map
    params = {"divisor": DIVISOR, "limit": image.max_cycles, "expect_pass": flip is None,
              "status_address": image.status_address, "result_base": image.result_base,
              "cq_head_address": rmap["CQ_HEAD"].address,
              "result": golden_result(image).hex(), "scratch": image.compiled.hbm_bytes,
              "id_address": rmap["ID"].address, "magic": 0x4D41}
    simulate(board, bench="openmaia.benches.self_test_board", name="board_tile_self_test",
             params=params, seed=seed)


@pytest.mark.sim
@pytest.mark.slow          # a Verilator lint of the whole board top
def test_lint():
    image = SelfTestImage.for_config(ICE40, hbm_bytes=MEMORY)
    lint(BoardTile(ICE40, hbm_bytes=MEMORY, divisor=DIVISOR, self_test=image),
         name="board_tile_self_test")
