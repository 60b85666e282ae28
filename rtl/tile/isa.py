"""The tile command encoding, defined once: bit layouts for the RTL, Python encode / decode for the
SDK and the tests, and the static legality rules. docs/isa.md is generated from this module
(:func:`markdown`; ``python -m openmaia.tile.isa`` prints it).

A command is :data:`COMMAND_BYTES` (64) bytes, little-endian: a 32-bit header (opcode, the
optional completion signal) and a 480-bit body whose meaning depends on the opcode. A command
queue in memory is an array of them. 64 bytes is the smallest power of two that holds the largest
body (a :class:`~.tile_op.TileOpCommand`, 384 bits, and the DMA descriptor in its 64-bit-address
form, 356 bits with its queue number) plus the header: a command is one aligned 64-byte piece of
an AXI burst (2 beats of 256 bits, 4 of 128), never straddles a 4 KiB page, and the fetcher
indexes the queue with a shift. 128 bytes would halve the commands a fetched burst brings and
leave 60 % of every command unused.

Rules (checked in this order by :func:`check_command` and by the Tile Control Processor before
it issues anything; the first that fails is the command's error and the command does nothing):

1. ``ILLEGAL_OPCODE``: the opcode is not one of :class:`Opcode` (0 is illegal, so zeroed memory
   traps). ``ENGINE_NOT_BUILT``: a TVP command on a tile built without the vector unit
   (``Config.tvp_lanes == 0``), whatever its fields.
2. ``ILLEGAL_FIELD``: a bit outside the opcode's fields is set (reserved bits are zero); the
   header's ``signal`` / ``sem`` on a command that is not an engine command, or ``sem`` non-zero
   with ``signal`` clear; a DMA queue number >= the number of queues; a DMA HBM address or stride
   with bits at or above the configuration's HBM address width; a TVP op that is not a
   :class:`TvpOp`.
3. ``SEMAPHORE_INDEX``: a semaphore index (WAIT, SIGNAL, or an engine command's completion
   semaphore) >= the number of semaphores.
4. ``SEMAPHORE_OVERFLOW`` (dynamic, the TCP's): a SIGNAL that would take its semaphore past
   :data:`SEM_MAX`.

Fields the engines check themselves (a DMA descriptor's counts and window, a tile op's shape and
formats, a TVP op's shape and format) come back as the engine's event status.
"""

import dataclasses
import enum as py_enum
import struct
from dataclasses import dataclass

from amaranth.lib import data, enum

from ..errors import ErrorCode
from ..numerics.formats import Format
from .dma_descriptor import DmaDescriptor, DmaDescriptorLayout
from .tile_op import OperandPlace, ResultPlace, TileOp, TileOpCommand
from .ttu_stream import TAG_BITS, TtuOp

__all__ = [
    "BODY_BITS",
    "BODY_FIELD",
    "BODY_WIDTH",
    "COMMAND_BITS",
    "COMMAND_BYTES",
    "COUNT_BITS",
    "DESC_HBM_ADDR_BITS",
    "ENGINE_OPCODES",
    "HEADER_BITS",
    "IRQ_CODE_BITS",
    "SEM_BITS",
    "SEM_MAX",
    "Command",
    "CommandBody",
    "CommandHeader",
    "DmaBody",
    "DmaCmd",
    "FenceCmd",
    "HaltCmd",
    "InterruptBody",
    "InterruptCmd",
    "Opcode",
    "SemaphoreBody",
    "SignalCmd",
    "TileOpCmd",
    "TvpCmd",
    "TvpCommand",
    "TvpEvent",
    "TvpOp",
    "WaitCmd",
    "assemble",
    "check_command",
    "decode",
    "disassemble",
    "encode",
    "fp32_bits",
    "markdown",
    "raw",
]

COMMAND_BYTES = 64
COMMAND_BITS = 8 * COMMAND_BYTES
HEADER_BITS = 32
BODY_BITS = COMMAND_BITS - HEADER_BITS
#: The DMA descriptor in a command always has 64-bit HBM addresses and strides, so the encoding
#: does not depend on the configuration; the TCP narrows it to the DMA's address width.
DESC_HBM_ADDR_BITS = 64
#: Width of a semaphore counter, and of the WAIT / SIGNAL count.
SEM_BITS = 16
SEM_MAX = (1 << SEM_BITS) - 1
COUNT_BITS = SEM_BITS
IRQ_CODE_BITS = 16


class Opcode(enum.Enum, shape=8):
    """The command opcodes (header bits 0-7)."""
    DMA = 0x01
    TILE_OP = 0x02
    TVP = 0x03
    WAIT = 0x04
    SIGNAL = 0x05
    FENCE = 0x06
    INTERRUPT = 0x07
    HALT = 0x08


#: The opcodes that issue work to an engine (and may signal a semaphore on completion).
ENGINE_OPCODES = (Opcode.DMA, Opcode.TILE_OP, Opcode.TVP)


class TvpOp(enum.Enum, shape=4):
    """Tile Vector Processor operations (element-wise over ``rows`` x ``cols`` FP32 values).

    ``ADD``: D = A + B; ``MUL``: D = A * B; ``BIAS_ADD``: D[r, c] = A[r, c] + B[c] (B one row);
    ``SCALE``: D = A * scalar; ``MAX``: D = max(A, B); ``RELU``: D = max(A, 0); ``GELU``:
    D = gelu(A); ``CVT_BF16``: D (BF16) = A rounded to BF16; ``QUANT_MX``: each row of A, in
    32-element blocks, quantized to MX format ``fmt`` (``quantize_mx``): codes to D (packed,
    row stride ``d_stride``), E8M0 scales to ``d_scales`` (row stride ``d_scales_stride``).
    The TVP's own contract (arithmetic, rounding, its checks) is the TVP's documentation.
    """
    ADD = 0
    MUL = 1
    BIAS_ADD = 2
    SCALE = 3
    MAX = 4
    RELU = 5
    GELU = 6
    CVT_BF16 = 7
    QUANT_MX = 8


class CommandHeader(data.Struct):
    """Bits 0-31 of every command. ``signal``: on completion of this engine command, add 1 to
    semaphore ``sem`` (engine commands only; otherwise both zero)."""
    opcode:    Opcode
    signal:    1
    reserved0: 7
    sem:       8
    reserved1: 8


class DmaBody(data.Struct):
    """A DMA command: the descriptor (64-bit HBM addresses) for DMA queue ``queue``."""
    queue: 8
    desc:  DmaDescriptorLayout.of(DESC_HBM_ADDR_BITS)


class SemaphoreBody(data.Struct):
    """WAIT / SIGNAL: semaphore index and count."""
    sem:   8
    count: COUNT_BITS


class InterruptBody(data.Struct):
    """INTERRUPT: the code the interrupt reports."""
    code: IRQ_CODE_BITS


class TvpCommand(data.Struct):
    """A Tile Vector Processor command (:class:`TvpOp`); byte addresses and row strides in tile
    SRAM. ``a``, ``b``: sources; ``d``: destination (codes for ``QUANT_MX``); ``d_scales``:
    scale plane of ``QUANT_MX``; ``scalar``: FP32 bits (``SCALE``); ``fmt``: MX target format
    (``Format.spec.hw_code``, ``QUANT_MX``); ``tag``: echoed in the event."""
    a:               32
    a_stride:        32
    b:               32
    b_stride:        32
    d:               32
    d_stride:        32
    d_scales:        32
    d_scales_stride: 32
    scalar:          32
    rows:            16
    cols:            16
    tag:             TAG_BITS
    op:              TvpOp
    fmt:             3


class TvpEvent(data.Struct):
    """Completion of one TVP command (the shape of :class:`~.ttu_stream.TtuEvent`)."""
    tag:    TAG_BITS
    status: 8


class CommandBody(data.Union):
    """Bits 32-511: the body, by opcode (``raw`` gives the whole width)."""
    raw:       BODY_BITS
    dma:       DmaBody
    tile_op:   TileOpCommand
    tvp:       TvpCommand
    semaphore: SemaphoreBody
    interrupt: InterruptBody


class Command(data.Struct):
    """One 64-byte command."""
    header: CommandHeader
    body:   CommandBody


assert Command.as_shape().size == COMMAND_BITS

#: The body member each opcode uses (None: no body).
BODY_FIELD = {Opcode.DMA: "dma", Opcode.TILE_OP: "tile_op", Opcode.TVP: "tvp",
              Opcode.WAIT: "semaphore", Opcode.SIGNAL: "semaphore", Opcode.FENCE: None,
              Opcode.INTERRUPT: "interrupt", Opcode.HALT: None}


def _body_width(name):
    return data.Layout.cast(data.Layout.cast(CommandBody)[name].shape).size


BODY_WIDTH = {op: 0 if name is None else _body_width(name) for op, name in BODY_FIELD.items()}


def fp32_bits(value) -> int:
    """The FP32 bits of a float (or the int, if already bits)."""
    if isinstance(value, int):
        if not 0 <= value < 1 << 32:
            raise ValueError(f"FP32 bits must fit 32 bits, not {value:#x}")
        return value
    return struct.unpack("<I", struct.pack("<f", float(value)))[0]


# ------------------------------------------------------------------------------------------------
# Python form
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DmaCmd:
    """DMA: ``desc`` into DMA queue ``queue``; ``signal``: completion semaphore or None."""
    queue: int
    desc: DmaDescriptor
    signal: int | None = None
    opcode = Opcode.DMA

    def body(self):
        return {"dma": {"queue": self.queue, "desc": self.desc.encode(DESC_HBM_ADDR_BITS)}}


@dataclass(frozen=True)
class TileOpCmd:
    """TTU tile op ``op`` (:class:`~.tile_op.TileOp`)."""
    op: TileOp
    signal: int | None = None
    opcode = Opcode.TILE_OP

    def body(self):
        return {"tile_op": self.op.command()}


@dataclass(frozen=True)
class TvpCmd:
    """TVP command (fields of :class:`TvpCommand`; ``op`` a :class:`TvpOp`, ``fmt`` a
    :class:`~openmaia.numerics.formats.Format` or its hardware code, ``scalar`` a float or FP32
    bits, kept as bits)."""
    op: TvpOp
    rows: int
    cols: int
    a: int = 0
    a_stride: int = 0
    b: int = 0
    b_stride: int = 0
    d: int = 0
    d_stride: int = 0
    d_scales: int = 0
    d_scales_stride: int = 0
    scalar: int = 0
    fmt: int = 0
    tag: int = 0
    signal: int | None = None
    opcode = Opcode.TVP

    def __post_init__(self):
        object.__setattr__(self, "op", TvpOp(self.op))
        object.__setattr__(self, "scalar", fp32_bits(self.scalar))
        if isinstance(self.fmt, (Format, str)):
            object.__setattr__(self, "fmt", Format.of(self.fmt).spec.hw_code)

    def command(self) -> dict:
        """The :class:`TvpCommand` fields."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "signal"}

    def body(self):
        return {"tvp": self.command()}


@dataclass(frozen=True)
class WaitCmd:
    """WAIT: block the issue stream until semaphore ``sem`` >= ``count``, then subtract it."""
    sem: int
    count: int = 1
    opcode = Opcode.WAIT

    def body(self):
        return {"semaphore": {"sem": self.sem, "count": self.count}}


@dataclass(frozen=True)
class SignalCmd:
    """SIGNAL: add ``count`` to semaphore ``sem``."""
    sem: int
    count: int = 1
    opcode = Opcode.SIGNAL

    def body(self):
        return {"semaphore": {"sem": self.sem, "count": self.count}}


@dataclass(frozen=True)
class FenceCmd:
    """FENCE: block the issue stream until every issued engine command has completed."""
    opcode = Opcode.FENCE

    def body(self):
        return {}


@dataclass(frozen=True)
class InterruptCmd:
    """INTERRUPT: raise the interrupt line with ``code`` (waits while one is pending)."""
    code: int
    opcode = Opcode.INTERRUPT

    def body(self):
        return {"interrupt": {"code": self.code}}


@dataclass(frozen=True)
class HaltCmd:
    """HALT: stop the issue stream (until a restart)."""
    opcode = Opcode.HALT

    def body(self):
        return {}


_CLASSES = {cls.opcode: cls for cls in (DmaCmd, TileOpCmd, TvpCmd, WaitCmd, SignalCmd,
                                        FenceCmd, InterruptCmd, HaltCmd)}


def _pack(layout, value, where) -> int:
    """The bits of ``value`` (a dict tree of ints / enum members; ints may stand for a whole
    struct) under ``layout``; fields left out are zero. Raises if a value does not fit."""
    if isinstance(value, py_enum.Enum):
        value = value.value
    if isinstance(value, int):
        return value
    layout = data.Layout.cast(layout)
    bits = 0
    for key, v in value.items():
        field = layout[key]
        v = _pack(field.shape, v, f"{where}.{key}")
        if not 0 <= v < 1 << field.width:
            raise ValueError(f"{where}.{key}={v} does not fit {field.width} bits")
        bits |= v << field.offset
    return bits


def encode(cmd) -> int:
    """The 512 bits of a command object (raises ``ValueError`` if a field does not fit)."""
    signal = getattr(cmd, "signal", None)
    header = {"opcode": cmd.opcode, "signal": int(signal is not None), "sem": signal or 0}
    return _pack(Command, {"header": header, "body": cmd.body()}, "command")


def raw(*, opcode: int, signal: int = 0, sem: int = 0, body: int = 0, reserved: int = 0) -> int:
    """Command bits from raw field values (for building illegal commands)."""
    return (opcode | signal << 8 | reserved << 9 | sem << 16) | body << HEADER_BITS


def _field(bits, layout, *path):
    view = data.Const(data.Layout.cast(layout), bits)
    for p in path:
        view = view[p]
    return view


def decode(bits: int):
    """The command object of 512 bits (raises ``ValueError`` for an illegal opcode)."""
    try:
        opcode = Opcode(bits & 0xFF)
    except ValueError:
        raise ValueError(f"illegal opcode {bits & 0xFF:#x}") from None
    c = data.Const(Command, bits)
    signal = int(c.header.sem) if c.header.signal else None
    if opcode is Opcode.DMA:
        d = c.body.dma
        desc = DmaDescriptor.decode(int(d.desc.as_value().value), DESC_HBM_ADDR_BITS)
        return DmaCmd(queue=int(d.queue), desc=desc, signal=signal)
    if opcode is Opcode.TILE_OP:
        t = c.body.tile_op
        o = t.op
        op = TtuOp(m=int(o.m), n=int(o.n), k=int(o.k),
                   fmt_a=Format.from_hw_code(int(o.fmt_a)),
                   fmt_b=Format.from_hw_code(int(o.fmt_b)), accumulate=bool(o.accumulate),
                   keep=bool(o.keep), tag=int(o.tag))

        def place(p):
            return OperandPlace(int(p.codes), int(p.codes_stride), int(p.scales),
                                int(p.scales_stride))
        return TileOpCmd(TileOp(op=op, a=place(t.a), b=place(t.b),
                                c=ResultPlace(int(t.c.base), int(t.c.stride))), signal=signal)
    if opcode is Opcode.TVP:
        t = c.body.tvp
        fields = {name: (bits >> HEADER_BITS + f.offset) & ((1 << f.width) - 1)
                  for name, f in data.Layout.cast(TvpCommand)}
        del t
        return TvpCmd(**fields, signal=signal)
    if opcode in (Opcode.WAIT, Opcode.SIGNAL):
        s = c.body.semaphore
        return _CLASSES[opcode](sem=int(s.sem), count=int(s.count))
    if opcode is Opcode.INTERRUPT:
        return InterruptCmd(code=int(c.body.interrupt.code))
    return _CLASSES[opcode]()


def assemble(program) -> bytes:
    """The bytes of a command queue: each command (object or 512-bit int) as 64 bytes."""
    return b"".join((cmd if isinstance(cmd, int) else encode(cmd)).to_bytes(COMMAND_BYTES,
                                                                             "little")
                    for cmd in program)


def disassemble(blob: bytes) -> list:
    """The commands of a command queue's bytes (whole commands only)."""
    if len(blob) % COMMAND_BYTES:
        raise ValueError(f"{len(blob)} bytes is not a whole number of {COMMAND_BYTES}-byte "
                         f"commands")
    return [decode(int.from_bytes(blob[i:i + COMMAND_BYTES], "little"))
            for i in range(0, len(blob), COMMAND_BYTES)]


_HBM_FIELDS = ("hbm_addr", "hbm_stride1", "hbm_stride2")
_TVP_OP = data.Layout.cast(TvpCommand)["op"]
_TVP_OPS = frozenset(op.value for op in TvpOp)


def check_command(bits: int, *, semaphores: int, dma_queues: int,
                  hbm_addr_bits: int, vector_unit: bool = True) -> ErrorCode:
    """The static status of a command's bits (module docstring, rules 1-3); ``vector_unit``:
    the tile builds the TVP (``Config.tvp_lanes > 0``)."""
    if not 0 <= bits < 1 << COMMAND_BITS:
        raise ValueError("a command is 512 bits")
    try:
        opcode = Opcode(bits & 0xFF)
    except ValueError:
        return ErrorCode.ILLEGAL_OPCODE
    if opcode is Opcode.TVP and not vector_unit:
        return ErrorCode.ENGINE_NOT_BUILT
    signal, reserved0 = bits >> 8 & 1, bits >> 9 & 0x7F
    sem, reserved1 = bits >> 16 & 0xFF, bits >> 24 & 0xFF
    body = bits >> HEADER_BITS
    engine = opcode in ENGINE_OPCODES
    if reserved0 or reserved1 or body >> BODY_WIDTH[opcode]:
        return ErrorCode.ILLEGAL_FIELD
    if (not engine and (signal or sem)) or (engine and not signal and sem):
        return ErrorCode.ILLEGAL_FIELD
    c = data.Const(Command, bits)
    if opcode is Opcode.DMA:
        if int(c.body.dma.queue) >= dma_queues:
            return ErrorCode.ILLEGAL_FIELD
        if any(int(c.body.dma.desc[f]) >> hbm_addr_bits for f in _HBM_FIELDS):
            return ErrorCode.ILLEGAL_FIELD
    if opcode is Opcode.TVP and ((body >> _TVP_OP.offset) & 0xF) not in _TVP_OPS:
        return ErrorCode.ILLEGAL_FIELD
    if engine and signal and sem >= semaphores:
        return ErrorCode.SEMAPHORE_INDEX
    if opcode in (Opcode.WAIT, Opcode.SIGNAL) and int(c.body.semaphore.sem) >= semaphores:
        return ErrorCode.SEMAPHORE_INDEX
    return ErrorCode.OK


# ------------------------------------------------------------------------------------------------
# Documentation
# ------------------------------------------------------------------------------------------------

def _field_rows(layout, base, prefix=""):
    rows = []
    for name, field in data.Layout.cast(layout):
        shape = field.shape
        if isinstance(shape, type) and issubclass(shape, data.Struct) or \
                isinstance(shape, data.StructLayout):
            rows += _field_rows(shape, base + field.offset, f"{prefix}{name}.")
        else:
            rows.append((f"{prefix}{name}", base + field.offset, field.width))
    return rows


_OPCODE_TEXT = {
    Opcode.DMA: "DMA descriptor into a DMA queue",
    Opcode.TILE_OP: "TTU tile op (C = A x B in tile SRAM)",
    Opcode.TVP: "Tile Vector Processor op",
    Opcode.WAIT: "block issue until semaphore >= count, subtract count",
    Opcode.SIGNAL: "add count to a semaphore",
    Opcode.FENCE: "block issue until every engine command has completed",
    Opcode.INTERRUPT: "raise the interrupt line with a code",
    Opcode.HALT: "stop issuing until the host restarts the stream",
}


def markdown() -> str:
    """The field tables of docs/isa.md, generated from the layouts above."""
    out = ["| opcode | value | body | body bits | meaning |", "|---|---:|---|---:|---|"]
    for op in Opcode:
        out.append(f"| `{op.name}` | `{op.value:#04x}` | {BODY_FIELD[op] or '-'} | "
                   f"{BODY_WIDTH[op]} | {_OPCODE_TEXT[op]} |")
    out.append("")
    sections = [("Header (bits 0-31, every command)", CommandHeader, 0)]
    for name in ("dma", "tile_op", "tvp", "semaphore", "interrupt"):
        users = ", ".join(o.name for o, n in BODY_FIELD.items() if n == name)
        sections.append((f"Body `{name}` ({users})", data.Layout.cast(CommandBody)[name].shape,
                         HEADER_BITS))
    for title, layout, base in sections:
        out += [f"### {title}", "", "| field | bits | width |", "|---|---|---:|"]
        for name, offset, width in _field_rows(layout, base):
            span = f"{offset}" if width == 1 else f"{offset}-{offset + width - 1}"
            out.append(f"| `{name}` | {span} | {width} |")
        out.append("")
    out += ["### TVP ops (`tvp.op`)", "", "| op | value |", "|---|---:|"]
    out += [f"| `{op.name}` | {op.value} |" for op in TvpOp]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
