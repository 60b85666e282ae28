"""openmaia.sdk: the program container and listing (round trip), and the golden backend's
engine models and error rules."""

import dataclasses
import random

import numpy as np
import pytest
from openmaia.config import get_config
from openmaia.errors import ErrorCode
from openmaia.numerics import Format, quantize_mx, vector
from openmaia.sdk.assembler import Program, format_command, parse_command
from openmaia.sdk.compiler import Layer, compile_gemm, compile_layers
from openmaia.sdk.golden import GoldenBackend, execute_tvp, static_status
from openmaia.tile.dma_descriptor import DmaDescriptor, DmaDirection
from openmaia.tile.isa import (
    DmaCmd,
    FenceCmd,
    HaltCmd,
    InterruptCmd,
    SignalCmd,
    TileOpCmd,
    TvpCmd,
    TvpOp,
    WaitCmd,
    check_command,
    encode,
)
from openmaia.tile.tile_op import OperandPlace, ResultPlace, TileOp
from openmaia.tile.ttu_stream import TtuOp

SMALL = get_config("small")


def _every_kind():
    desc = DmaDescriptor(direction=1, hbm_addr=0x1234, tsram_addr=64, count0=5, count1=3,
                         count2=2, hbm_stride1=100, hbm_stride2=1000, tsram_stride1=8,
                         tsram_stride2=40, elem_size=2, tag=9)
    op = TileOp(TtuOp(m=3, n=5, k=2, fmt_a="e3m2", fmt_b="int8", accumulate=True, tag=4),
                OperandPlace(0, 48, 200, 2), OperandPlace(256, 64, 600, 3), ResultPlace(800, 20))
    return [DmaCmd(1, desc, signal=3), TileOpCmd(op), TileOpCmd(op, signal=0),
            TvpCmd(TvpOp.QUANT_MX, rows=2, cols=40, a=8, a_stride=160, d=400, d_stride=32,
                   d_scales=500, d_scales_stride=2, fmt="e2m1", tag=7, signal=2),
            TvpCmd(TvpOp.SCALE, rows=1, cols=4, scalar=-2.5), WaitCmd(1, 3), SignalCmd(2, 7),
            FenceCmd(), InterruptCmd(0xBEEF), HaltCmd()]


def test_listing_round_trip_every_kind():
    prog = Program()
    for i, cmd in enumerate(_every_kind()):
        prog.append(cmd, f"comment {i}" if i % 2 else None)
    prog.regions["A"] = (0x40, 0x100)
    text = prog.listing()
    assert Program.parse(text) == prog
    assert Program.from_bytes(prog.to_bytes()).commands == prog.commands
    assert "TVP op=QUANT_MX" in text and "fmt_a=E3M2" in text


def test_listing_round_trip_compiled_program():
    compiled = compile_layers(SMALL, m=5, k=70, fmt_in="e4m3",
                              layers=[Layer(n=33, fmt_w="e2m1", out_fmt="e4m3"),
                                      Layer(n=4, fmt_w="e4m3", activation=None)])
    prog = compiled.program
    assert Program.parse(prog.listing()) == prog
    assert Program.from_bytes(prog.to_bytes()).commands == prog.commands
    assert prog.check(semaphores=SMALL.tcp_semaphores, dma_queues=SMALL.dma_queues,
                      hbm_addr_bits=SMALL.axi_addr_bits) == []


def test_listing_errors():
    with pytest.raises(ValueError, match="unknown opcode"):
        parse_command("NOP")
    with pytest.raises(ValueError, match="unknown field"):
        parse_command("WAIT sem=1 cnt=2")
    with pytest.raises(ValueError, match="not an engine command"):
        parse_command("WAIT sem=1 count=2 signal=3")
    with pytest.raises(ValueError, match="line 2"):
        Program.parse("HALT\nTVP op=NOPE rows=1 cols=1\n")
    assert format_command(WaitCmd(2, 5)) == "WAIT sem=2 count=5"


def test_static_status_equals_check_command(seed):
    """The golden backend's fast check equals check_command on the bits, on legal commands and
    on each kind of out-of-range index / address."""
    rng = random.Random(seed)
    cfg = SMALL
    cmds = list(compile_gemm(cfg, m=3, n=4, k=40, fmt_a="e4m3", fmt_b="e4m3").program)
    cmds += _every_kind()
    dma = next(c for c in cmds if isinstance(c, DmaCmd))
    cmds += [dataclasses.replace(dma, queue=cfg.dma_queues),
             dataclasses.replace(dma, signal=cfg.tcp_semaphores),
             dataclasses.replace(dma, desc=dataclasses.replace(
                 dma.desc, hbm_stride2=1 << cfg.axi_addr_bits)),
             WaitCmd(cfg.tcp_semaphores, 1), SignalCmd(255, 1),
             TvpCmd(TvpOp.RELU, rows=1, cols=1, signal=200)]
    rng.shuffle(cmds)
    for cmd in cmds:
        want = check_command(encode(cmd), semaphores=cfg.tcp_semaphores,
                             dma_queues=cfg.dma_queues, hbm_addr_bits=cfg.axi_addr_bits)
        assert static_status(cmd, semaphores=cfg.tcp_semaphores, dma_queues=cfg.dma_queues,
                             hbm_addr_bits=cfg.axi_addr_bits) == want, cmd


# ------------------------------------------------------------------------------------------------
# TVP
# ------------------------------------------------------------------------------------------------

def _fp32_image(values, stride_words, base=0, size=4096):
    mem = np.zeros(size, np.uint8)
    rows, cols = values.shape
    for r in range(rows):
        at = base + 4 * r * stride_words
        mem[at:at + 4 * cols] = np.asarray(values[r], "<u4").view(np.uint8)
    return mem


def _read_fp32(mem, base, stride_words, rows, cols):
    return np.stack([mem[base + 4 * r * stride_words:][:4 * cols].view("<u4")
                     for r in range(rows)]).astype(np.uint32)


@pytest.mark.parametrize("op", [TvpOp.ADD, TvpOp.MUL, TvpOp.MAX, TvpOp.BIAS_ADD, TvpOp.SCALE,
                                TvpOp.RELU, TvpOp.GELU])
def test_tvp_lane_ops_match_vector_golden(seed, op):
    nrng = np.random.default_rng(seed)
    rows, cols = 3, 7
    a = nrng.integers(0, 1 << 32, (rows, cols), dtype=np.uint64).astype(np.uint32)
    a[0, :3] = [0x80000000, 0x7FC00001, 0xFF800000]
    b = nrng.integers(0, 1 << 32, (rows, cols), dtype=np.uint64).astype(np.uint32)
    mem = _fp32_image(a, 8)
    mem[1024:1024 + 4 * rows * cols] = b.astype("<u4").view(np.uint8).ravel()
    scalar = 0x40200000
    cmd = TvpCmd(op, rows=rows, cols=cols, a=0, a_stride=32, b=1024, b_stride=4 * cols,
                 d=2048, d_stride=36, scalar=scalar)
    before = mem.copy()
    assert execute_tvp(mem, cmd, formats=SMALL.formats) == ErrorCode.OK
    want = {TvpOp.ADD: lambda: vector.fp32_add(a, b), TvpOp.MUL: lambda: vector.fp32_mul(a, b),
            TvpOp.MAX: lambda: vector.fp32_max(a, b),
            TvpOp.BIAS_ADD: lambda: vector.bias_add(a, b[0]),
            TvpOp.SCALE: lambda: vector.scale(a, scalar), TvpOp.RELU: lambda: vector.relu(a),
            TvpOp.GELU: lambda: vector.gelu(a)}[op]()
    np.testing.assert_array_equal(_read_fp32(mem, 2048, 9, rows, cols), want)
    touched = np.flatnonzero(mem != before)
    assert touched.size == 0 or (touched.min() >= 2048 and touched.max() < 2048 + 36 * 3)


def test_tvp_quant_mx_matches_quantize_mx(seed):
    nrng = np.random.default_rng(seed)
    for fmt in Format:
        rows, cols = 3, int(nrng.integers(1, 100))
        x = (nrng.standard_normal((rows, cols)) * 10.0 ** nrng.integers(-3, 3)).astype(np.float32)
        mem = _fp32_image(x.view(np.uint32), 100)
        cmd = TvpCmd(TvpOp.QUANT_MX, rows=rows, cols=cols, a=0, a_stride=400, d=1600,
                     d_stride=136, d_scales=2400, d_scales_stride=5, fmt=fmt)
        assert execute_tvp(mem, cmd, formats=SMALL.formats) == ErrorCode.OK
        want = quantize_mx(x, fmt, axis=1)
        from openmaia.layout import MxOperandLayout
        codes, scales = MxOperandLayout(rows=rows, k=cols, fmt=fmt, codes_base=1600,
                                        codes_row_stride=136, scales_base=2400,
                                        scales_row_stride=5).read(mem, check_padding=True)
        np.testing.assert_array_equal(codes, want.codes)
        np.testing.assert_array_equal(scales, want.scales)


def test_tvp_statuses_and_bf16():
    mem = np.zeros(256, np.uint8)
    assert execute_tvp(mem, TvpCmd(TvpOp.RELU, rows=0, cols=4), formats=SMALL.formats) == \
        ErrorCode.ILLEGAL_SHAPE
    assert execute_tvp(mem, TvpCmd(TvpOp.RELU, rows=2, cols=4, a=0, a_stride=16, d=240,
                                   d_stride=16), formats=SMALL.formats) == \
        ErrorCode.TSRAM_OUT_OF_RANGE
    ice = get_config("ice40")
    assert execute_tvp(mem, TvpCmd(TvpOp.QUANT_MX, rows=1, cols=4, d=64, d_stride=32,
                                   d_scales=128, d_scales_stride=1, fmt="e5m2"),
                       formats=ice.formats) == ErrorCode.FORMAT_NOT_BUILT
    assert execute_tvp(mem, TvpCmd(TvpOp.QUANT_MX, rows=1, cols=4, d=64, d_stride=32,
                                   d_scales=128, d_scales_stride=1, fmt=7),
                       formats=SMALL.formats) == ErrorCode.ILLEGAL_FIELD
    assert execute_tvp(mem, TvpCmd(TvpOp.QUANT_MX, rows=2, cols=4, d=64, d_stride=32,
                                   d_scales=64, d_scales_stride=1, fmt="e4m3"),
                       formats=SMALL.formats) == ErrorCode.ILLEGAL_FIELD      # planes overlap
    mem[:8] = np.array([0x3F800001, 0xFFC00001], "<u4").view(np.uint8)
    assert execute_tvp(mem, TvpCmd(TvpOp.CVT_BF16, rows=1, cols=2, d=16),
                       formats=SMALL.formats) == ErrorCode.OK
    assert mem[16:20].view("<u2").tolist() == [0x3F80, 0x7FC0]        # packed BF16


# ------------------------------------------------------------------------------------------------
# Stream rules
# ------------------------------------------------------------------------------------------------

def _load(tsram, hbm, n, signal=None, queue=0):
    return DmaCmd(queue, DmaDescriptor(direction=DmaDirection.HBM_TO_TSRAM, hbm_addr=hbm,
                                       tsram_addr=tsram, count0=n), signal=signal)


def test_engine_error_stops_the_stream_then_next_run_works():
    be = GoldenBackend(SMALL, hbm_bytes=4096, windows=[(0, 1023), (0, 4095)])
    be.load(2000, b"\x11" * 8)
    prog = [_load(0, 2000, 8, signal=1), WaitCmd(1, 1), _load(64, 0, 8), HaltCmd()]
    result = be.run(prog)
    assert result.state == "ERROR" and result.error == ErrorCode.DESC_OUT_OF_WINDOW
    assert result.source == "DMA" and be.counters().get("issued_dma") == 1
    ok = be.run([_load(0, 2000, 8, signal=1, queue=1), WaitCmd(1, 1), HaltCmd()])
    assert ok.ok and bytes(be.tsram[:8]) == b"\x11" * 8


def test_tvp_command_without_vector_unit_is_refused_then_next_run_works():
    """ice40 has no TVP: a TVP command (any fields) is the command error ENGINE_NOT_BUILT at
    its position, after the commands before it completed; the next run works. The fast
    object check equals check_command on the bits there."""
    ice = get_config("ice40")
    be = GoldenBackend(ice, hbm_bytes=4096)
    be.load(2000, b"\x22" * 8)
    tvp = TvpCmd(TvpOp.RELU, rows=1, cols=4, signal=1)
    r = be.run([_load(0, 2000, 8, signal=0), WaitCmd(0, 1), tvp, _load(64, 2000, 8), HaltCmd()])
    assert (r.state, r.error, r.source, r.position) == ("ERROR", ErrorCode.ENGINE_NOT_BUILT,
                                                        "COMMAND", 2)
    assert bytes(be.tsram[:8]) == b"\x22" * 8 and bytes(be.tsram[64:72]) == bytes(8)
    assert "issued_tvp" not in be.counters()
    ok = be.run([_load(64, 2000, 8, signal=0), WaitCmd(0, 1), HaltCmd()])
    assert ok.ok and bytes(be.tsram[64:72]) == b"\x22" * 8
    for cmd in (tvp, TvpCmd(TvpOp.QUANT_MX, rows=0, cols=1, fmt=7), _load(0, 0, 4)):
        for check in ("fast", "full"):
            want = check_command(encode(cmd), semaphores=ice.tcp_semaphores,
                                 dma_queues=ice.dma_queues, hbm_addr_bits=ice.axi_addr_bits,
                                 vector_unit=False)
            assert GoldenBackend(ice, hbm_bytes=64, check=check)._static_status(cmd) == want
        assert (want == ErrorCode.ENGINE_NOT_BUILT) == isinstance(cmd, TvpCmd)


def test_command_errors_and_blocked_wait():
    be = GoldenBackend(SMALL, hbm_bytes=4096)
    r = be.run([SignalCmd(1, 2), WaitCmd(SMALL.tcp_semaphores, 1), HaltCmd()])
    assert r.state == "ERROR" and r.error == ErrorCode.SEMAPHORE_INDEX and r.position == 1
    be.reset()
    r = be.run([SignalCmd(1, 0xFFFF), SignalCmd(1, 1)])
    assert r.error == ErrorCode.SEMAPHORE_OVERFLOW and r.source == "COMMAND"
    be.reset()
    r = be.run([_load(0, 0, 4, signal=2), WaitCmd(2, 2), HaltCmd()])
    assert r.state == "BLOCKED" and r.position == 1
    be.reset()
    r = be.run([InterruptCmd(5), FenceCmd(), HaltCmd(), SignalCmd(0, 1)])
    assert r.ok and r.counters["interrupts"] == [5] and be.semaphores[0] == 0


def test_backend_parameter_checks():
    with pytest.raises(ValueError, match="timing"):
        GoldenBackend(SMALL, timing="soon")
    with pytest.raises(ValueError, match="windows"):
        GoldenBackend(SMALL, hbm_bytes=64, windows=[(0, 63)])
    be = GoldenBackend(SMALL, hbm_bytes=64)
    with pytest.raises(ValueError, match="outside"):
        be.load(60, b"12345")
