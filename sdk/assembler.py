"""Command programs: a container for a list of tile commands and a readable listing that
round-trips.

The command objects and their 64-byte encoding are :mod:`openmaia.tile.isa`'s (``DmaCmd``,
``TileOpCmd``, ``TvpCmd``, ``WaitCmd``, ``SignalCmd``, ``FenceCmd``, ``InterruptCmd``,
``HaltCmd``, ``assemble``, ``disassemble``); this module adds only :class:`Program` (commands,
per-command comments and named HBM regions) and the listing format:

* one command a line: the opcode name, then ``field=value`` pairs (nested fields dotted, e.g.
  ``desc.hbm_addr`` or ``op.fmt_a``), then optionally ``; comment``;
* integers in decimal or ``0x`` hex, formats, TVP ops and DMA directions by name, booleans as
  0 / 1; an engine command's completion semaphore as ``signal=S`` (absent: no signal);
* blank lines and lines starting with ``;`` are ignored; ``.region NAME BASE SIZE`` lines declare
  the program's named HBM regions.

``Program.parse(p.listing())`` equals ``p`` (commands, comments and regions).
"""

import dataclasses
import enum as py_enum
from dataclasses import dataclass, field

from ..numerics.formats import Format
from ..tile.dma_descriptor import DmaDirection
from ..tile.isa import (
    COMMAND_BYTES,
    DmaCmd,
    FenceCmd,
    HaltCmd,
    InterruptCmd,
    Opcode,
    SignalCmd,
    TileOpCmd,
    TvpCmd,
    TvpOp,
    WaitCmd,
    assemble,
    check_command,
    disassemble,
    encode,
)

__all__ = ["COMMAND_CLASSES", "Program", "format_command", "parse_command"]

#: Command class by opcode name (the first word of a listing line).
COMMAND_CLASSES = {cls.opcode.name: cls for cls in (DmaCmd, TileOpCmd, TvpCmd, WaitCmd, SignalCmd,
                                                    FenceCmd, InterruptCmd, HaltCmd)}
_HEX_LEAVES = ("codes", "scales", "a", "b", "d", "d_scales", "scalar")


def _flatten(obj, prefix=""):
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        name = prefix + f.name
        if f.name == "signal" and not prefix:
            continue
        if dataclasses.is_dataclass(value):
            out += _flatten(value, name + ".")
        else:
            out.append((name, value))
    return out


def _text(name, value) -> str:
    if isinstance(value, Format):
        return value.name
    if isinstance(value, py_enum.Enum):
        return value.name
    if isinstance(value, bool):
        return str(int(value))
    leaf = name.rsplit(".", 1)[-1]
    if leaf in _HEX_LEAVES or any(h in leaf for h in ("addr", "base", "stride")):
        return hex(value)
    return str(value)


def format_command(cmd) -> str:
    """One listing line (without comment) for a command object."""
    parts = [cmd.opcode.name] + [f"{n}={_text(n, v)}" for n, v in _flatten(cmd)]
    signal = getattr(cmd, "signal", None)
    if signal is not None:
        parts.append(f"signal={signal}")
    return " ".join(parts)


def _build(cls, values: dict, where: str):
    kwargs = {}
    nested = {}
    for key, text in values.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = text
        else:
            kwargs[head] = text
    for f in dataclasses.fields(cls):
        if f.name in nested:
            kwargs[f.name] = _build(f.type, nested.pop(f.name), f"{where}.{f.name}")
        elif f.name in kwargs:
            kwargs[f.name] = _value(f.type, kwargs[f.name], f"{where}.{f.name}")
    unknown = set(nested) | (set(kwargs) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    return cls(**kwargs)


def _value(kind, text: str, where: str):
    try:
        if kind is Format or kind == "Format":
            return Format[text]
        if kind is TvpOp:
            return TvpOp[text]
        if kind is bool:
            return bool(int(text, 0))
        if text in DmaDirection.__members__:
            return DmaDirection[text]
        return int(text, 0)
    except (KeyError, ValueError):
        raise ValueError(f"{where}: bad value {text!r}") from None


def parse_command(line: str):
    """The command object of one listing line (comment allowed)."""
    text = line.split(";", 1)[0].split()
    if not text:
        raise ValueError("empty command line")
    name, *pairs = text
    if name not in COMMAND_CLASSES:
        raise ValueError(f"unknown opcode {name!r}")
    cls = COMMAND_CLASSES[name]
    values = {}
    for pair in pairs:
        key, sep, val = pair.partition("=")
        if not sep:
            raise ValueError(f"{name}: expected field=value, not {pair!r}")
        values[key] = val
    signal = values.pop("signal", None)
    cmd = _build(cls, values, name)
    if signal is not None:
        if not hasattr(cmd, "signal"):
            raise ValueError(f"{name} is not an engine command: no signal")
        cmd = dataclasses.replace(cmd, signal=int(signal, 0))
    return cmd


@dataclass
class Program:
    """A command program: ``commands`` (isa command objects, in stream order), ``comments``
    (command index -> text, for the listing) and ``regions`` (name -> (HBM base, bytes): where
    the program expects its inputs and leaves its outputs)."""
    commands: list = field(default_factory=list)
    comments: dict = field(default_factory=dict)
    regions: dict = field(default_factory=dict)

    def append(self, cmd, comment: str | None = None) -> int:
        """Add a command (and its comment); return its index."""
        self.commands.append(cmd)
        if comment:
            self.comments[len(self.commands) - 1] = comment
        return len(self.commands) - 1

    def __len__(self):
        return len(self.commands)

    def __iter__(self):
        return iter(self.commands)

    def to_bytes(self) -> bytes:
        """The command queue bytes (64 a command)."""
        return assemble(self.commands)

    @classmethod
    def from_bytes(cls, blob: bytes) -> "Program":
        return cls(commands=disassemble(blob))

    def words(self) -> list[int]:
        """The commands' 512-bit encodings."""
        return [encode(c) for c in self.commands]

    def check(self, *, semaphores: int, dma_queues: int, hbm_addr_bits: int,
              vector_unit: bool = True) -> list:
        """``(index, ErrorCode)`` of every command breaking the static rules of docs/isa.md
        (``vector_unit=False``: a tile without the TVP)."""
        out = []
        for i, bits in enumerate(self.words()):
            status = check_command(bits, semaphores=semaphores, dma_queues=dma_queues,
                                   hbm_addr_bits=hbm_addr_bits, vector_unit=vector_unit)
            if status != 0:
                out.append((i, status))
        return out

    def counts(self) -> dict:
        """Commands per opcode name."""
        out = {}
        for c in self.commands:
            out[c.opcode.name] = out.get(c.opcode.name, 0) + 1
        return out

    def listing(self) -> str:
        """The readable listing (module docstring); :meth:`parse` reads it back."""
        lines = [f".region {name} {base:#x} {size:#x}"
                 for name, (base, size) in self.regions.items()]
        for i, cmd in enumerate(self.commands):
            line = format_command(cmd)
            if i in self.comments:
                line += f" ; {self.comments[i]}"
            lines.append(line)
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> "Program":
        prog = cls()
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith(";"):
                continue
            try:
                if line.startswith(".region"):
                    _, name, base, size = line.split()
                    prog.regions[name] = (int(base, 0), int(size, 0))
                    continue
                body, _, comment = line.partition(";")
                prog.append(parse_command(body), comment.strip() or None)
            except ValueError as e:
                raise ValueError(f"line {number}: {e}") from None
        return prog

    def __eq__(self, other):
        return (isinstance(other, Program) and self.commands == other.commands
                and self.comments == other.comments and self.regions == other.regions)


assert COMMAND_BYTES == 64
assert set(COMMAND_CLASSES) == {op.name for op in Opcode}
