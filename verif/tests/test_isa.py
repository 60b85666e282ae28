"""The tile command encoding (openmaia.tile.isa): layout sizes, encode / decode round trips, the
static rules in Python, the RTL check (:class:`~openmaia.tile.tcp.CommandCheck`) equal to them on
random and directed bits, and docs/isa.md generated from the layouts."""

from pathlib import Path

import pytest
from amaranth.lib import data
from amaranth.sim import Simulator
from openmaia.errors import ErrorCode
from openmaia.tile.dma_descriptor import DmaDescriptor
from openmaia.tile.isa import (
    BODY_WIDTH,
    COMMAND_BITS,
    COMMAND_BYTES,
    HEADER_BITS,
    Command,
    CommandBody,
    DmaCmd,
    FenceCmd,
    HaltCmd,
    InterruptCmd,
    Opcode,
    SignalCmd,
    TvpCmd,
    TvpCommand,
    TvpOp,
    WaitCmd,
    assemble,
    check_command,
    decode,
    disassemble,
    encode,
    markdown,
    raw,
)
from openmaia.tile.tcp import CommandCheck
from openmaia.tile.tcp_model import random_engine_command

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

P = {"semaphores": 4, "dma_queues": 2, "hbm_addr_bits": 32}
DOC = Path(__file__).resolve().parents[2] / "docs" / "isa.md"


def random_command(rng):
    kind = rng.choice(["dma", "ttu", "tvp", "wait", "signal", "fence", "interrupt", "halt"])
    if kind in ("dma", "ttu", "tvp"):
        return random_engine_command(rng, kind=kind, **P)
    if kind in ("wait", "signal"):
        cls = WaitCmd if kind == "wait" else SignalCmd
        return cls(sem=rng.randrange(4), count=rng.randrange(1 << 16))
    if kind == "interrupt":
        return InterruptCmd(code=rng.randrange(1 << 16))
    return FenceCmd() if kind == "fence" else HaltCmd()


def test_sizes():
    assert COMMAND_BYTES == 64 and Command.as_shape().size == COMMAND_BITS == 512
    assert data.Layout.cast(CommandBody).size == COMMAND_BITS - HEADER_BITS
    assert max(BODY_WIDTH.values()) <= COMMAND_BITS - HEADER_BITS
    assert BODY_WIDTH[Opcode.TILE_OP] == 384 and BODY_WIDTH[Opcode.DMA] == 8 + 348
    # 32-bit TVP fields sit on 32-bit boundaries of the command
    layout = data.Layout.cast(TvpCommand)
    for name in ("a", "a_stride", "b", "b_stride", "d", "d_stride", "d_scales",
                 "d_scales_stride", "scalar"):
        assert (HEADER_BITS + layout[name].offset) % 32 == 0, name


def test_round_trip(rng):
    program = [random_command(rng) for _ in range(300)]
    for cmd in program:
        bits = encode(cmd)
        assert 0 <= bits < 1 << COMMAND_BITS
        assert decode(bits) == cmd
        assert check_command(bits, **P) == ErrorCode.OK
    blob = assemble(program)
    assert len(blob) == 64 * len(program)
    assert disassemble(blob) == program
    with pytest.raises(ValueError, match="whole number"):
        disassemble(blob[:-1])


def test_encode_rejects_fields_that_do_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        encode(WaitCmd(sem=256))
    with pytest.raises(ValueError, match="does not fit"):
        encode(InterruptCmd(code=1 << 16))
    with pytest.raises(ValueError, match="does not fit"):
        encode(TvpCmd(op=TvpOp.ADD, rows=1 << 16, cols=1))
    with pytest.raises(ValueError, match="illegal opcode"):
        decode(raw(opcode=0x42))


def test_fixed_fields():
    assert encode(HaltCmd()) == 0x08
    assert encode(WaitCmd(sem=3, count=0x1234)) == 0x04 | 3 << 32 | 0x1234 << 40
    assert encode(TvpCmd(op=TvpOp.SCALE, rows=1, cols=1, scalar=1.0, signal=2)) \
        >> (HEADER_BITS + data.Layout.cast(TvpCommand)["scalar"].offset) & 0xFFFFFFFF \
        == 0x3F800000
    dma = encode(DmaCmd(queue=1, desc=DmaDescriptor.contiguous(0, 0x40, 0x80, 16), signal=2))
    assert dma & 0xFFFFFFFF == 0x01 | 1 << 8 | 2 << 16 and dma >> 32 & 0xFF == 1


def mutations(rng, n):
    """Random command bits near legal ones: legal commands with random bits flipped in the
    header and in / just past the body, random opcodes, random semaphore indices."""
    out = []
    for _ in range(n):
        bits = encode(random_command(rng))
        for _ in range(rng.choice([0, 1, 1, 2])):
            where = rng.choice(["header", "body", "past", "any"])
            width = BODY_WIDTH.get(next((o for o in Opcode if o.value == bits & 0xFF), None), 0)
            if where == "header":
                bit = rng.randrange(32)
            elif where == "body":
                bit = HEADER_BITS + rng.randrange(max(1, width))
            elif where == "past":
                bit = HEADER_BITS + width + rng.randrange(4)
            else:
                bit = rng.randrange(COMMAND_BITS)
            bits ^= 1 << bit
        out.append(bits)
    return out


def run_check(bits_list, **params):
    dut = CommandCheck(**params)
    got = []

    async def bench(ctx):
        for bits in bits_list:
            ctx.set(dut.command.as_value(), bits)
            got.append(ctx.get(dut.status))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("params", [P, {"semaphores": 16, "dma_queues": 1, "hbm_addr_bits": 64},
                                    {"semaphores": 3, "dma_queues": 3, "hbm_addr_bits": 20},
                                    P | {"vector_unit": False}])
def test_rtl_check_equals_python(rng, params):
    bits_list = mutations(rng, 1500)
    got = run_check(bits_list, **params)
    statuses = set()
    for bits, status in zip(bits_list, got, strict=True):
        want = check_command(bits, **params)
        statuses.add(want)
        assert status == want, f"{bits:#x}: RTL {status:#x}, Python {want!r}"
    assert statuses == {ErrorCode.OK, ErrorCode.ILLEGAL_OPCODE, ErrorCode.ILLEGAL_FIELD,
                        ErrorCode.SEMAPHORE_INDEX} | (
        set() if params.get("vector_unit", True) else {ErrorCode.ENGINE_NOT_BUILT})


def test_directed_rules():
    good_wait = encode(WaitCmd(sem=1))
    tvp = encode(TvpCmd(op=TvpOp.GELU, rows=1, cols=32))
    op_shift = HEADER_BITS + data.Layout.cast(TvpCommand)["op"].offset
    dma = encode(DmaCmd(queue=0, desc=DmaDescriptor.contiguous(0, 1 << 31, 0, 64)))
    cases = [
        (raw(opcode=0), ErrorCode.ILLEGAL_OPCODE),
        (raw(opcode=0x09, reserved=5), ErrorCode.ILLEGAL_OPCODE),
        (good_wait | 1 << 9, ErrorCode.ILLEGAL_FIELD),
        (good_wait | 1 << 31, ErrorCode.ILLEGAL_FIELD),
        (good_wait | 1 << (HEADER_BITS + 24), ErrorCode.ILLEGAL_FIELD),
        (raw(opcode=Opcode.HALT.value, body=1), ErrorCode.ILLEGAL_FIELD),
        (raw(opcode=Opcode.FENCE.value, sem=1), ErrorCode.ILLEGAL_FIELD),
        (tvp | 1 << 16, ErrorCode.ILLEGAL_FIELD),
        (tvp | 1 << 8 | 3 << 16, ErrorCode.OK),
        (tvp | 1 << 8 | 4 << 16, ErrorCode.SEMAPHORE_INDEX),
        (tvp & ~(0xF << op_shift) | 9 << op_shift, ErrorCode.ILLEGAL_FIELD),
        (tvp & ~(0xF << op_shift) | 8 << op_shift, ErrorCode.OK),
        (dma, ErrorCode.OK),
        (dma | 1 << 32, ErrorCode.OK),                       # queue 1 of 2
        (dma | 2 << 32, ErrorCode.ILLEGAL_FIELD),            # queue 2 of 2
        (encode(DmaCmd(queue=0, desc=DmaDescriptor.contiguous(0, 1 << 32, 0, 64))),
         ErrorCode.ILLEGAL_FIELD),                           # HBM address past 32 bits
        (encode(DmaCmd(queue=0, desc=DmaDescriptor(0, 0, 0, 1, hbm_stride2=1 << 40))),
         ErrorCode.ILLEGAL_FIELD),
        (encode(SignalCmd(sem=4)), ErrorCode.SEMAPHORE_INDEX),
        (encode(WaitCmd(sem=3, count=0xFFFF)), ErrorCode.OK),
        (raw(opcode=0) | 1 << 300, ErrorCode.ILLEGAL_OPCODE),   # opcode first
    ]
    got = run_check([b for b, _ in cases], **P)
    for (bits, want), status in zip(cases, got, strict=True):
        assert check_command(bits, **P) == want, hex(bits)
        assert status == want, hex(bits)


def test_docs_isa_is_generated_from_the_layouts():
    text = DOC.read_text()
    assert markdown() in text, "docs/isa.md is stale: python -m openmaia.tile.isa"
