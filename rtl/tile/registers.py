"""The tile's host registers: an AXI4-Lite subordinate with the register map declared once, here.

Declaration (in the manner of amaranth-soc's ``csr.reg``; amaranth-soc itself is only a
placeholder on PyPI): a :class:`Register` subclass lists its :class:`Field` s (width, access
mode, reset value, description) as class attributes, in bit order from bit 0; a
:class:`RegisterMap` collects registers and assigns their byte addresses. The counter window is
generated from the engines' counter layouts (:func:`counter_leaves`), so a counter added to a
layout adds a register. docs/registers.md and ``openmaia.sdk.registers`` are generated from the
map of :meth:`HostRegisters.from_config` (``python -m openmaia.tile.registers --write``).

Access modes (:class:`Access`): ``RO`` (writes ignored), ``RW``, ``W1C`` (hardware sets, a 1
written clears; a set in the same cycle wins), ``W1P`` (reads 0, a 1 written gives a one-cycle
pulse on the output). A write to a register with ``write_pulse`` also pulses that output.

Bus contract (``HostRegisters``): 32-bit data, byte addresses, ``addr[1:0]`` ignored; one read
and one write in flight; ``wstrb`` masks writable bits by byte. A read or a write of an address
no register holds answers ``DECERR`` (and a write changes nothing); a write to a read-only
register answers ``OKAY`` and changes nothing. Counters wider than 32 bits are a ``_LO`` / ``_HI``
pair: reading ``_LO`` snapshots the high part, and ``_HI`` returns that snapshot (one snapshot
register per counter), so reading ``_LO`` then ``_HI`` gives one consistent value.
"""

import argparse
import enum as py_enum
import re
import sys
import zlib
from collections.abc import Iterable
from pathlib import Path

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..bus.axi import AxiLiteSignature, AxiResp
from . import dma as _dma
from .isa import IRQ_CODE_BITS, SEM_BITS
from .tcp import TcpCounters, TcpState, TcpStatus
from .ttu_engine import EngineCounters

__all__ = [
    "FAULTS",
    "Access",
    "DmaCounters",
    "Field",
    "HostRegisters",
    "Register",
    "RegisterMap",
    "TileCounters",
    "counter_leaves",
    "markdown",
    "python_module",
]

#: Deliberate bugs for the mutation checks.
FAULTS = {
    "w1c_clears_all": "a write to a W1C register clears all its bits, not only the 1s written",
    "no_snapshot": "a _HI counter register returns the live high part, not the _LO snapshot",
    "strobe_ignored": "wstrb is ignored: every byte of a write lands",
}

DATA_BITS = 32
MAGIC = 0x4D41          # "MA"
MAP_VERSION = 1

#: The DMA's counters (:data:`openmaia.tile.dma.COUNTERS`) as a struct.
DmaCounters = data.StructLayout({name: _dma.COUNTER_BITS for name in _dma.COUNTERS})


class Access(py_enum.Enum):
    RO = "RO"
    RW = "RW"
    W1C = "W1C"
    W1P = "W1P"


ACCESS_DOC = {
    Access.RO: "read-only; writes are ignored",
    Access.RW: "read / write",
    Access.W1C: "set by hardware; writing 1 clears the bit (a set in the same cycle wins)",
    Access.W1P: "reads 0; writing 1 gives a one-cycle pulse",
}


class Field:
    """One field: ``width`` bits, ``access`` mode, reset value ``init``, description ``doc``."""

    def __init__(self, width, access, *, init=0, doc=""):
        if not isinstance(width, int) or not 1 <= width <= DATA_BITS:
            raise ValueError(f"field width must be an integer in 1..{DATA_BITS}, not {width!r}")
        if not isinstance(access, Access):
            raise TypeError(f"access must be an Access, not {access!r}")
        if not isinstance(init, int) or not 0 <= init < 1 << width:
            raise ValueError(f"init must fit {width} bits, not {init!r}")
        self.width, self.access, self.init, self.doc = width, access, init, doc
        self.name = None
        self.offset = None

    def copy(self):
        return Field(self.width, self.access, init=self.init, doc=self.doc)


def _snake(name):
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


class Register:
    """A 32-bit register. Subclasses declare :class:`Field` class attributes (bit order = order
    of declaration, from bit 0) and a docstring; or pass ``name``, ``fields`` (a dict of name to
    Field) and ``doc``. ``write_pulse``: an output pulsed by every write to the register.
    ``snapshot``: for the ``_LO`` / ``_HI`` pair of a wide counter, ``("lo", hi_name)`` or
    ``("hi", lo_name)``. ``source``: for counters, the dotted name of the counter."""

    write_pulse = None

    def __init__(self, name=None, *, fields=None, doc=None, write_pulse=None, snapshot=None,
                 source=None):
        if fields is None:
            fields = {k: v for k, v in vars(type(self)).items() if isinstance(v, Field)}
        if not fields:
            raise ValueError("a register needs at least one field")
        self.name = name or _snake(type(self).__name__)
        self.doc = " ".join((doc or type(self).__doc__ or "").split())
        self.write_pulse = write_pulse or type(self).write_pulse
        self.snapshot, self.source = snapshot, source
        self.fields = {}
        offset = 0
        for fname, f in fields.items():
            f = f.copy()
            f.name, f.offset = fname, offset
            offset += f.width
            self.fields[fname] = f
        if offset > DATA_BITS:
            raise ValueError(f"register {self.name}: fields take {offset} bits > {DATA_BITS}")
        self.address = None

    @property
    def init(self):
        return sum(f.init << f.offset for f in self.fields.values() if f.access != Access.W1P)

    @property
    def access(self):
        return "/".join(sorted({f.access.value for f in self.fields.values()}))


class RegisterMap:
    """Collects registers and gives each a 4-byte-aligned byte address, in order of
    :meth:`add` (or at ``at``, at least the next free address); :meth:`align` skips to a
    boundary."""

    def __init__(self, *, addr_width):
        self.addr_width = addr_width
        self.registers = {}
        self._next = 0

    def align(self, boundary):
        self._next = -(-self._next // boundary) * boundary

    def add(self, register, *, at=None):
        if register.name in self.registers:
            raise ValueError(f"register {register.name} declared twice")
        address = self._next if at is None else at
        if address % 4 or address < self._next:
            raise ValueError(f"register {register.name}: address {address:#x} is unaligned or "
                             f"overlaps (next free {self._next:#x})")
        if address + 4 > 1 << self.addr_width:
            raise ValueError(f"register {register.name} at {address:#x} does not fit "
                             f"{self.addr_width} address bits")
        register.address = address
        self._next = address + 4
        self.registers[register.name] = register
        return register

    def __getitem__(self, name):
        return self.registers[name]

    def __iter__(self):
        return iter(self.registers.values())

    def describe(self):
        """A text naming every register and field (address, name, bits, access, reset)."""
        lines = []
        for r in self:
            lines.append(f"{r.address:#x} {r.name}")
            for f in r.fields.values():
                init = 0 if r.name == "MAP_ID" else f.init
                lines.append(f"  {f.name} {f.offset} {f.width} {f.access.value} {init}")
        return "\n".join(lines)

    @property
    def map_id(self):
        """CRC-32 of :meth:`describe` (the ``MAP_ID`` register's value, left out of the
        description), for the SDK to check."""
        return zlib.crc32(self.describe().encode())


def counter_leaves(layout, prefix=()):
    """The counters of ``layout`` (a struct / array layout or a ``data.Struct`` class): a list
    of ``(path, offset, width)``, ``path`` a tuple of names (array elements by index)."""
    layout = data.Layout.cast(layout)
    out = []
    if isinstance(layout, data.ArrayLayout):
        elem = data.Layout.cast(layout.elem_shape) if _is_layout(layout.elem_shape) else None
        step = Shape.cast(layout.elem_shape).width
        for i in range(layout.length):
            if elem is not None:
                out += [(p, o + i * step, w) for p, o, w in counter_leaves(elem, prefix + (i,))]
            else:
                out.append((prefix + (i,), i * step, step))
        return out
    for name, field in layout:
        if _is_layout(field.shape):
            out += [(p, o + field.offset, w)
                    for p, o, w in counter_leaves(field.shape, prefix + (name,))]
        else:
            out.append((prefix + (name,), field.offset, Shape.cast(field.shape).width))
    return out


def _is_layout(shape):
    try:
        data.Layout.cast(shape)
    except TypeError:
        return False
    return True


# ---- the fixed registers ------------------------------------------------------------------------

class Id(Register):
    """Identification (constant)."""
    magic = Field(16, Access.RO, init=MAGIC, doc="0x4D41 ('MA')")
    version = Field(8, Access.RO, init=MAP_VERSION, doc="register map version")


class MapId(Register):
    """CRC-32 of the register map (names, addresses, fields); the SDK compares it with its
    generated constants."""
    crc = Field(32, Access.RO, doc="CRC-32 of the map description")


class Control(Register):
    """Tile control."""
    run = Field(1, Access.RW, doc="command fetcher enable (output `run`)")
    restart = Field(1, Access.W1P, doc="restart the command stream (TCP `restart`)")
    counters_clear = Field(1, Access.W1P, doc="soft reset of the counters (output "
                           "`counters_clear`)")
    tsram_err_clear = Field(1, Access.W1P, doc="clear the tile SRAM's sticky error")
    flush = Field(1, Access.W1P, doc="drop the queued commands: the command fetcher empties "
                  "its buffer, then CQ_HEAD = CQ_DOORBELL (output `flush`; with `restart` it "
                  "abandons the rest of a program)")


class Status(Register):
    """TCP and tile status."""
    state = Field(2, Access.RO, doc="TCP state: 0 RUNNING, 1 HALTED, 2 ERROR, 3 DRAINING")
    source = Field(3, Access.RO, doc="what stopped the stream: 0 NONE, 1 COMMAND, 2 DMA, 3 TTU, "
                   "4 TVP, 5 COMPLETION")
    outstanding = Field(1, Access.RO, doc="an issued engine command is incomplete")
    irq_pending = Field(1, Access.RO, doc="the TCP's interrupt is raised (not yet acknowledged)")
    tsram_error = Field(1, Access.RO, doc="the tile SRAM's sticky error")
    cq_error = Field(1, Access.RO, doc="the command queue is unusable and nothing is fetched: "
                     "CQ_SIZE is 0 or too large, or CQ_DOORBELL >= CQ_SIZE (input `cq_error`)")


class Error(Register):
    """Error codes (`openmaia.errors.ErrorCode`)."""
    error = Field(8, Access.RO, doc="the code that stopped the stream")
    engine_error = Field(8, Access.RO, doc="the first engine event error")


class ErrorPosition(Register):
    """Commands retired when the stream stopped on an error."""
    position = Field(32, Access.RO, doc="a command error: that command's index")


class Position(Register):
    """Commands retired since the last restart."""
    position = Field(32, Access.RO, doc="commands retired")


class EngineErrors(Register):
    """Engine events with an error since the last restart."""
    count = Field(32, Access.RO, doc="events with a non-zero status")


_IRQ_DOCS = {
    "command": "an INTERRUPT command raised the TCP interrupt (clearing acknowledges it)",
    "halted": "the TCP entered HALTED",
    "error": "the TCP entered ERROR",
    "tsram_error": "the tile SRAM reported an error (sticky error rose)",
}


class IrqStatus(Register):
    """Interrupt causes; the `irq` output is high while a cause is set and enabled."""
    command = Field(1, Access.W1C, doc=_IRQ_DOCS["command"])
    halted = Field(1, Access.W1C, doc=_IRQ_DOCS["halted"])
    error = Field(1, Access.W1C, doc=_IRQ_DOCS["error"])
    tsram_error = Field(1, Access.W1C, doc=_IRQ_DOCS["tsram_error"])


class IrqEnable(Register):
    """Interrupt enables, one per cause of IRQ_STATUS."""
    command = Field(1, Access.RW, doc="enable IRQ_STATUS.command")
    halted = Field(1, Access.RW, doc="enable IRQ_STATUS.halted")
    error = Field(1, Access.RW, doc="enable IRQ_STATUS.error")
    tsram_error = Field(1, Access.RW, doc="enable IRQ_STATUS.tsram_error")


class IrqCode(Register):
    """The code of the INTERRUPT command that raised the TCP interrupt."""
    code = Field(IRQ_CODE_BITS, Access.RO, doc="INTERRUPT code")


class CqBaseLo(Register):
    """Command queue base byte address in HBM, bits 31:0."""
    addr = Field(32, Access.RW, doc="base address bits 31:0 (output `cq_base`)")


class CqBaseHi(Register):
    """Command queue base byte address in HBM, bits 63:32."""
    addr = Field(32, Access.RW, doc="base address bits 63:32")


class CqSize(Register):
    """Command queue size in commands (64-byte entries)."""
    entries = Field(32, Access.RW, doc="entries (output `cq_size`)")


class CqDoorbell(Register):
    """Command queue doorbell: the producer index; every write pulses the output `doorbell`."""
    write_pulse = "doorbell"
    tail = Field(32, Access.RW, doc="producer index (output `cq_tail`)")


class CqHead(Register):
    """Command queue consumer index, from the command fetcher."""
    head = Field(32, Access.RO, doc="consumer index (input `cq_head`)")


class HbmPause(Register):
    """Test aid: random pauses on every AXI channel between the interleaver and each HBM
    pseudo-channel (legal AXI: a channel is held back only before it offers a transfer)."""
    probability = Field(8, Access.RW, doc="each channel pauses a cycle with probability "
                        "value / 256; 0 (reset): no pause (output `hbm_pause`)")


FIXED = (Id, MapId, Control, Status, Error, ErrorPosition, Position, EngineErrors, IrqStatus,
         IrqEnable, IrqCode, CqBaseLo, CqBaseHi, CqSize, CqDoorbell, CqHead)
DMA_WINDOW_BASE = 0x040
SEMAPHORE_BASE = 0x100
COUNTER_BASE = 0x200
#: DMA queues whose window registers fit between DMA_WINDOW_BASE and SEMAPHORE_BASE.
MAX_DMA_QUEUES = (SEMAPHORE_BASE - DMA_WINDOW_BASE - 4) // 16     # HBM_PAUSE after them


def build_map(*, semaphores, counters, dma_queues=2, addr_width=12):
    """The register map: :data:`FIXED` from 0, the DMA windows (four registers a queue) from
    :data:`DMA_WINDOW_BASE`, the semaphores (two a register) from :data:`SEMAPHORE_BASE`, the
    counters of ``counters`` (a dict of group name to layout) from :data:`COUNTER_BASE`."""
    rmap = RegisterMap(addr_width=addr_width)
    for cls in FIXED:
        rmap.add(cls())
    rmap.align(DMA_WINDOW_BASE)
    for q in range(dma_queues):
        for end, init in (("BASE", 0), ("LIMIT", 0xFFFF_FFFF)):
            for half, bits in (("LO", "31:0"), ("HI", "63:32")):
                rmap.add(Register(
                    f"DMA_WINDOW{q}_{end}_{half}",
                    fields={"addr": Field(32, Access.RW, init=init,
                                          doc=f"bits {bits} (output `dma_window_{end.lower()}`"
                                          f"[{q}], cut to the HBM address width)")},
                    doc=f"DMA queue {q}: the {'lowest' if end == 'BASE' else 'highest'} HBM "
                    f"byte address its descriptors may touch (inclusive), bits {bits}; the reset "
                    f"window is the whole address space."))
    rmap.add(HbmPause())
    rmap.align(SEMAPHORE_BASE)
    for i in range(0, semaphores, 2):
        fields = {f"sem{j}": Field(SEM_BITS, Access.RO, doc=f"semaphore {j}")
                  for j in range(i, min(i + 2, semaphores))}
        rmap.add(Register(f"SEMAPHORES_{i // 2}", fields=fields,
                          doc="TCP semaphore values (read-only view)."))
    rmap.align(COUNTER_BASE)
    for group, layout in counters.items():
        for path, _, width in counter_leaves(layout):
            dotted = ".".join(str(p) for p in (group,) + path)
            base = "CNT_" + "_".join(str(p) for p in (group,) + path).upper()
            if width <= DATA_BITS:
                rmap.add(Register(base, fields={"value": Field(width, Access.RO)},
                                  doc=f"Counter `{dotted}` ({width} bits).", source=dotted))
            elif width <= 2 * DATA_BITS:
                rmap.add(Register(base + "_LO", fields={"value": Field(32, Access.RO)},
                                  doc=f"Counter `{dotted}` ({width} bits), bits 31:0; reading "
                                  f"it snapshots {base}_HI.", snapshot=("lo", base + "_HI"),
                                  source=dotted))
                rmap.add(Register(base + "_HI", fields={"value": Field(width - 32, Access.RO)},
                                  doc=f"Counter `{dotted}` bits {width - 1}:32, as snapshot by "
                                  f"the last read of {base}_LO.", snapshot=("hi", base + "_LO"),
                                  source=dotted))
            else:
                raise ValueError(f"counter {dotted} is {width} bits; at most 64 supported")
    rmap["MAP_ID"].fields["crc"].init = rmap.map_id
    return rmap


class TileCounters(data.Struct):
    """Counters the tile top keeps itself (group ``tile``), zeroed by CONTROL.counters_clear:
    ``cycles``; ``dma_read_bytes`` / ``dma_write_bytes``: HBM bus traffic of the DMA's AXI
    port (R / W beats x bus bytes: what the DMA takes of the HBM bandwidth)."""
    cycles: 48
    dma_read_bytes: 48
    dma_write_bytes: 48


class HostRegisters(wiring.Component):
    """The tile's host registers behind an AXI4-Lite subordinate port (module docstring).

    Parameters
    ----------
    semaphores : int
        The TCP's semaphores (1 .. 256).
    tsram_counters : layout
        The tile SRAM's ``counters_layout``.
    dma_queues, hbm_addr_bits : int
        The DMA's queues (a window register set each) and HBM address width.
    extra_counters : dict of str to layout
        More counter groups, after the four fixed ones: each adds an input ``<group>_counters``
        and its registers (``from_config``: ``tile``, ``fetch``, ``tvp``).
    addr_width : int
        Byte-address bits of ``axi`` (the map must fit; 12 = 4 KiB).
    faults : collection of str
        Deliberate bugs from :data:`FAULTS`; empty for the real design.

    Ports
    -----
    axi : In(AxiLiteSignature(addr_width=addr_width, data_width=32))
    tcp_status : In(TcpStatus), tcp_semaphores : In(array of semaphores x 16 bits)
    tcp_irq : In(1), tcp_irq_code : In(16), tcp_irq_ack : Out(1) (pulse)
    tcp_counters : In(TcpCounters), dma_counters : In(DmaCounters),
    ttu_counters : In(EngineCounters), tsram_counters : In(tsram_counters)
    tsram_err_sticky : In(1), tsram_err_clear : Out(1) (pulse)
    cq_head : In(32), cq_error : In(1)
    run, restart (pulse), counters_clear (pulse), flush (pulse) : Out(1)
    cq_base : Out(64), cq_size : Out(32), cq_tail : Out(32), doorbell : Out(1) (pulse)
    dma_window_base, dma_window_limit : Out(array of dma_queues x hbm_addr_bits)
    hbm_pause : Out(8)
    irq : Out(1)
    <group>_counters : In(layout), one per ``extra_counters`` group
    """

    def __init__(self, *, semaphores, tsram_counters, dma_queues=2, hbm_addr_bits=32,
                 extra_counters=None, addr_width=12, faults=frozenset()):
        if not isinstance(semaphores, int) or isinstance(semaphores, bool) \
                or not 1 <= semaphores <= 256:
            raise ValueError(f"semaphores must be an integer in 1..256, not {semaphores!r}")
        if not isinstance(dma_queues, int) or not 1 <= dma_queues <= MAX_DMA_QUEUES:
            raise ValueError(f"dma_queues must be an integer in 1..{MAX_DMA_QUEUES}, "
                             f"not {dma_queues!r}")
        if not isinstance(hbm_addr_bits, int) or not 1 <= hbm_addr_bits <= 64:
            raise ValueError(f"hbm_addr_bits must be an integer in 1..64, not {hbm_addr_bits!r}")
        if not isinstance(addr_width, int) or not 8 <= addr_width <= 32:
            raise ValueError(f"addr_width must be an integer in 8..32, not {addr_width!r}")
        if isinstance(faults, str) or not isinstance(faults, Iterable):
            raise TypeError(f"faults must be a collection of fault names, not {faults!r}")
        faults = frozenset(faults)
        if faults - FAULTS.keys():
            raise ValueError(f"unknown faults {sorted(faults - FAULTS.keys())}; "
                             f"known: {', '.join(FAULTS)}")
        self.n_semaphores, self.addr_width, self.faults = semaphores, addr_width, faults
        self.dma_queues, self.hbm_addr_bits = dma_queues, hbm_addr_bits
        self.tsram_layout = data.Layout.cast(tsram_counters)
        self.counter_groups = {"tcp": data.Layout.cast(TcpCounters), "dma": DmaCounters,
                               "ttu": data.Layout.cast(EngineCounters),
                               "tsram": self.tsram_layout}
        extra = dict(extra_counters or {})
        for group, layout in extra.items():
            if group in self.counter_groups or not group.isidentifier():
                raise ValueError(f"extra counter group name {group!r} is taken or invalid")
            self.counter_groups[group] = data.Layout.cast(layout)
        self.map = build_map(semaphores=semaphores, counters=self.counter_groups,
                             dma_queues=dma_queues, addr_width=addr_width)
        super().__init__({
            "axi": In(AxiLiteSignature(addr_width=addr_width, data_width=DATA_BITS)),
            "tcp_status": In(TcpStatus),
            "tcp_semaphores": In(data.ArrayLayout(SEM_BITS, semaphores)),
            "tcp_irq": In(1), "tcp_irq_code": In(IRQ_CODE_BITS), "tcp_irq_ack": Out(1),
            "tcp_counters": In(TcpCounters), "dma_counters": In(DmaCounters),
            "ttu_counters": In(EngineCounters), "tsram_counters": In(self.tsram_layout),
            "tsram_err_sticky": In(1), "tsram_err_clear": Out(1),
            "cq_head": In(32), "cq_error": In(1),
            "run": Out(1), "restart": Out(1), "counters_clear": Out(1), "flush": Out(1),
            "cq_base": Out(64), "cq_size": Out(32), "cq_tail": Out(32), "doorbell": Out(1),
            "dma_window_base": Out(data.ArrayLayout(hbm_addr_bits, dma_queues)),
            "dma_window_limit": Out(data.ArrayLayout(hbm_addr_bits, dma_queues)),
            "hbm_pause": Out(8),
            "irq": Out(1),
            **{f"{group}_counters": In(layout) for group, layout in extra.items()},
        })

    @classmethod
    def from_config(cls, config, **kwargs):
        """The registers of the tile of a :class:`~openmaia.config.Config` (its TSRAM has the
        tile's ports, as the ``tsram`` top)."""
        from .command_fetcher import FetchCounters
        from .tsram import TILE_PORT_NAMES, TileSram, tile_ports
        from .tvp import TvpCounters
        # Every tile port has its counters in the map, also a port this tile does not build
        # (they read 0), so one register map serves every configuration.
        ports = tile_ports(config)
        sram = TileSram.from_config(config, ports={n: ports.get(n, 1) for n in TILE_PORT_NAMES})
        sram._MustUse__silence = True      # only its counter layout is wanted
        kwargs.setdefault("extra_counters", {"tile": TileCounters, "fetch": FetchCounters,
                                             "tvp": TvpCounters})
        return cls(semaphores=config.tcp_semaphores, tsram_counters=sram.counters_layout,
                   dma_queues=config.dma_queues, hbm_addr_bits=config.axi_addr_bits, **kwargs)

    def _ro_sources(self):
        s = self.tcp_status
        src = {
            ("ID", "magic"): Const(MAGIC, 16), ("ID", "version"): Const(MAP_VERSION, 8),
            ("MAP_ID", "crc"): Const(self.map["MAP_ID"].fields["crc"].init, 32),
            ("STATUS", "state"): s.state.as_value(), ("STATUS", "source"): s.source.as_value(),
            ("STATUS", "outstanding"): s.outstanding, ("STATUS", "irq_pending"): self.tcp_irq,
            ("STATUS", "tsram_error"): self.tsram_err_sticky,
            ("ERROR", "error"): s.error, ("ERROR", "engine_error"): s.engine_error,
            ("ERROR_POSITION", "position"): s.error_position,
            ("POSITION", "position"): s.position,
            ("ENGINE_ERRORS", "count"): s.engine_errors,
            ("IRQ_CODE", "code"): self.tcp_irq_code,
            ("CQ_HEAD", "head"): self.cq_head,
            ("STATUS", "cq_error"): self.cq_error,
        }
        for i in range(self.n_semaphores):
            src[(f"SEMAPHORES_{i // 2}", f"sem{i}")] = self.tcp_semaphores[i]
        return src

    def _counter_values(self):
        values = {}
        for group, layout in self.counter_groups.items():
            raw = getattr(self, f"{group}_counters").as_value()
            for path, offset, width in counter_leaves(layout):
                values[".".join(str(p) for p in (group,) + path)] = raw[offset:offset + width]
        return values

    def elaborate(self, platform):
        m = Module()
        bus = self.axi
        rmap = self.map
        faults = self.faults

        # ---- per-field values ------------------------------------------------------------------
        ro = self._ro_sources()
        counters = self._counter_values()
        value = {}                  # (reg, field) -> Value read / driven
        stored = {}                 # (reg, field) -> Signal (RW, W1C)
        pulses = {}                 # (reg, field) -> Signal (W1P)
        clears = {}                 # (reg, field) -> comb Signal (W1C)
        shadows = {}                # hi register name -> Signal
        for r in rmap:
            for f in r.fields.values():
                key = (r.name, f.name)
                sig_name = f"{r.name.lower()}__{f.name}"
                if f.access == Access.RO:
                    if r.source is not None:
                        live = counters[r.source]
                        if r.snapshot is None:
                            value[key] = live
                        elif r.snapshot[0] == "lo":
                            value[key] = live[:32]
                        else:
                            shadow = Signal(f.width, name=f"{sig_name}_shadow")
                            shadows[r.name] = (shadow, live[32:])
                            value[key] = live[32:] if "no_snapshot" in faults else shadow
                    elif key in ro:
                        value[key] = ro[key]
                    else:
                        raise ValueError(f"read-only field {r.name}.{f.name} has no source")
                elif f.access in (Access.RW, Access.W1C):
                    stored[key] = value[key] = Signal(f.width, init=f.init, name=sig_name)
                    if f.access == Access.W1C:
                        clears[key] = Signal(f.width, name=f"{sig_name}_clear")
                else:
                    pulses[key] = Signal(f.width, name=sig_name)
                    value[key] = Const(0, f.width)
        reg_pulses = {r.name: Signal(name=f"{r.name.lower()}__written")
                      for r in rmap if r.write_pulse}

        def read_value(r):
            parts, pos = [], 0
            for f in r.fields.values():
                parts.append(value[(r.name, f.name)])
                pos += f.width
            if pos < DATA_BITS:
                parts.append(Const(0, DATA_BITS - pos))
            return Cat(*parts)

        # ---- write channel ---------------------------------------------------------------------
        aw_full, w_full = Signal(), Signal()
        aw_addr = Signal(self.addr_width - 2)
        w_data, w_strb = Signal(DATA_BITS), Signal(DATA_BITS // 8)
        m.d.comb += [bus.awready.eq(~aw_full), bus.wready.eq(~w_full)]
        with m.If(bus.awvalid & ~aw_full):
            m.d.sync += [aw_full.eq(1), aw_addr.eq(bus.awaddr[2:])]
        with m.If(bus.wvalid & ~w_full):
            m.d.sync += [w_full.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]
        do_write = Signal()
        m.d.comb += do_write.eq(aw_full & w_full & ~bus.bvalid)
        with m.If(do_write):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), bus.bvalid.eq(1)]
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        mask = Signal(DATA_BITS)
        if "strobe_ignored" in faults:
            m.d.comb += mask.eq(Const(-1, DATA_BITS))
        else:
            m.d.comb += mask.eq(Cat(*(w_strb[i].replicate(8) for i in range(DATA_BITS // 8))))

        hits = []
        for r in rmap:
            hit = Signal(name=f"{r.name.lower()}__write")
            m.d.comb += hit.eq(do_write & (aw_addr == r.address >> 2))
            hits.append(hit)
            if r.name in reg_pulses:
                m.d.sync += reg_pulses[r.name].eq(hit)
            for f in r.fields.values():
                key = (r.name, f.name)
                bits = slice(f.offset, f.offset + f.width)
                wd, wm = w_data[bits], mask[bits]
                if f.access == Access.RW:
                    with m.If(hit):
                        m.d.sync += stored[key].eq((stored[key] & ~wm) | (wd & wm))
                elif f.access == Access.W1C:
                    every = Const(-1, f.width) if "w1c_clears_all" in faults else wd & wm
                    m.d.comb += clears[key].eq(every & hit.replicate(f.width))
                elif f.access == Access.W1P:
                    m.d.sync += pulses[key].eq((wd & wm) & hit.replicate(f.width))
        with m.If(do_write):
            m.d.sync += bus.bresp.eq(Mux(Cat(*hits).any(), AxiResp.OKAY, AxiResp.DECERR))

        # ---- read channel ----------------------------------------------------------------------
        rd = Signal(DATA_BITS)
        rresp = Signal(2)
        ar_addr = Signal(self.addr_width - 2)
        m.d.comb += [ar_addr.eq(bus.araddr[2:]), bus.arready.eq(~bus.rvalid)]
        with m.Switch(ar_addr):
            for r in rmap:
                with m.Case(r.address >> 2):
                    m.d.comb += [rd.eq(read_value(r)), rresp.eq(AxiResp.OKAY)]
            with m.Default():
                m.d.comb += [rd.eq(0), rresp.eq(AxiResp.DECERR)]
        with m.If(bus.arvalid & ~bus.rvalid):
            m.d.sync += [bus.rvalid.eq(1), bus.rdata.eq(rd), bus.rresp.eq(rresp)]
            for hi_name, (shadow, live_hi) in shadows.items():
                lo = rmap[rmap[hi_name].snapshot[1]]
                with m.If(ar_addr == lo.address >> 2):
                    m.d.sync += shadow.eq(live_hi)
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)

        # ---- hardware side ---------------------------------------------------------------------
        state = self.tcp_status.state
        prev_state = Signal(TcpState)
        prev_irq, prev_err = Signal(), Signal()
        m.d.sync += [prev_state.eq(state), prev_irq.eq(self.tcp_irq),
                     prev_err.eq(self.tsram_err_sticky)]
        sets = {
            "command": self.tcp_irq & ~prev_irq,
            "halted": (state == TcpState.HALTED) & (prev_state != TcpState.HALTED),
            "error": (state == TcpState.ERROR) & (prev_state != TcpState.ERROR),
            "tsram_error": self.tsram_err_sticky & ~prev_err,
        }
        pending = []
        for name, set_now in sets.items():
            key = ("IRQ_STATUS", name)
            m.d.sync += stored[key].eq((stored[key] & ~clears[key]) | set_now)
            pending.append(stored[key] & stored[("IRQ_ENABLE", name)])
        m.d.comb += [
            self.irq.eq(Cat(*pending).any()),
            self.tcp_irq_ack.eq(clears[("IRQ_STATUS", "command")]),
            self.run.eq(stored[("CONTROL", "run")]),
            self.restart.eq(pulses[("CONTROL", "restart")]),
            self.counters_clear.eq(pulses[("CONTROL", "counters_clear")]),
            self.tsram_err_clear.eq(pulses[("CONTROL", "tsram_err_clear")]),
            self.cq_base.eq(Cat(stored[("CQ_BASE_LO", "addr")], stored[("CQ_BASE_HI", "addr")])),
            self.cq_size.eq(stored[("CQ_SIZE", "entries")]),
            self.cq_tail.eq(stored[("CQ_DOORBELL", "tail")]),
            self.doorbell.eq(reg_pulses["CQ_DOORBELL"]),
            self.flush.eq(pulses[("CONTROL", "flush")]),
            self.hbm_pause.eq(stored[("HBM_PAUSE", "probability")]),
        ]
        for q in range(self.dma_queues):
            for end in ("base", "limit"):
                full = Cat(stored[(f"DMA_WINDOW{q}_{end.upper()}_LO", "addr")],
                           stored[(f"DMA_WINDOW{q}_{end.upper()}_HI", "addr")])
                m.d.comb += getattr(self, f"dma_window_{end}")[q].eq(full[:self.hbm_addr_bits])
        return m


# ---- generators ---------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
DOC_PATH = ROOT / "docs" / "registers.md"
SDK_PATH = ROOT / "sdk" / "registers.py"
GENERATOR = "python -m openmaia.tile.registers --write"


def default_map():
    """The map the docs and the SDK describe: the ``default`` preset's (docs/registers.md says
    which parameters change it)."""
    from ..config import get_config
    return HostRegisters.from_config(get_config("default")).map


def _bits(f):
    return f"{f.offset}" if f.width == 1 else f"{f.offset + f.width - 1}:{f.offset}"


_INTRO = """\
`openmaia.tile.registers.HostRegisters` (rtl/tile/registers.py): the tile's registers behind an
AXI4-Lite subordinate port (32-bit data). The map is declared once in that module; this page and
`openmaia.sdk.registers` are generated from it (a test fails when either is stale).

Bus rules: byte addresses, `addr[1:0]` ignored; one read and one write in flight; `wstrb` masks
writable bits by byte. Reads and writes of an address no register holds answer **DECERR** (a
write there changes nothing); writes to read-only registers answer OKAY and change nothing.
Counters wider than 32 bits are a `_LO` / `_HI` pair: reading `_LO` snapshots the high part
(one snapshot per counter) and `_HI` returns the snapshot: read `_LO`, then `_HI`.

The map below is the `default` preset's (`MAP_ID` = `{map_id:#010x}`). It depends on
`tcp_semaphores` (the SEMAPHORES_n registers) and on the tile SRAM's port count (the `tsram`
counters); the other presets have the same map. Address bits: {addr_width}.

Access modes:
"""


def markdown(rmap=None):
    """docs/registers.md."""
    rmap = rmap or default_map()
    out = [
        "# Host registers",
        "",
        f"<!-- generated by `{GENERATOR}` from rtl/tile/registers.py; do not edit -->",
        "",
        *_INTRO.format(map_id=rmap.map_id, addr_width=rmap.addr_width).splitlines(),
        *(f"- **{a.value}**: {d}." for a, d in ACCESS_DOC.items()),
        "",
        "## Summary",
        "",
        "| address | name | access | reset | description |",
        "|---|---|---|---|---|",
    ]
    for r in rmap:
        out.append(f"| `{r.address:#05x}` | {r.name} | {r.access} | `{r.init:#x}` | {r.doc} |")
    out += ["", "## Registers", ""]
    for r in rmap:
        out += [f"### {r.name} (`{r.address:#05x}`)", "", r.doc, "",
                "| field | bits | access | reset | description |", "|---|---|---|---|---|"]
        for f in r.fields.values():
            init = "-" if f.access == Access.W1P else f"`{f.init:#x}`"
            out.append(f"| {f.name} | {_bits(f)} | {f.access.value} | {init} | "
                       f"{f.doc or '-'} |")
        out.append("")
    out += _VERIFICATION.splitlines()
    return "\n".join(out) + "\n"


_VERIFICATION = """\
## Verification

verif/tests/test_registers.py (default tier about 1.5 minutes on one core with the Verilator
build, 10 s once it is cached): the generated files are current, the SDK constants match the map,
every preset has this map, the counter window follows the layouts, lint; Amaranth-simulator runs
against `openmaia.benches.registers.RegisterModel` (every register read under random inputs, RW
round trips with random `wstrb`, RO writes ignored, W1C one bit at a time with the TCP
acknowledge, W1P and doorbell pulses, DECERR reads and writes changing nothing, the `_LO` /
`_HI` snapshot of a counter counting by about 2**28 a cycle); the faults `w1c_clears_all`,
`strobe_ignored`, `no_snapshot` each fail those checks. cocotb + Verilator
(`openmaia.benches.registers`, cocotbext-axi `AxiLiteMaster`, random pauses on AW, W, B, AR, R):
`full_map`, `random_ops` (a read and a write in flight together), `snapshot`. Slow tier
(`-m slow`): longer random runs, and each fault caught by the cocotb bench."""


_SDK_DOC = """\
``ADDRESS``: register name -> byte address; ``FIELDS``: register name -> {field: (offset, width,
access)}; ``COUNTERS``: counter name -> (LO address, HI address or None, width); and one constant
per register (its address) and per field (``<REG>_<FIELD>_SHIFT`` / ``_MASK``).\"\"\""""


def python_module(rmap=None):
    """sdk/registers.py."""
    rmap = rmap or default_map()
    out = [
        f'"""Host register map of the tile (generated by `{GENERATOR}` from',
        'rtl/tile/registers.py; do not edit). Contract: docs/registers.md.',
        "",
        *_SDK_DOC.splitlines(),
        "",
        f"MAP_DIGEST = {rmap.map_id:#010x}   # the value of the MAP_ID register",
        f"MAGIC = {MAGIC:#06x}",
        f"MAP_VERSION = {MAP_VERSION}",
        f"ADDR_BITS = {rmap.addr_width}",
        "",
    ]
    for r in rmap:
        out.append(f"{r.name} = {r.address:#05x}")
        for f in r.fields.values():
            prefix = f"{r.name}_{f.name.upper()}"
            out.append(f"{prefix}_SHIFT = {f.offset}")
            out.append(f"{prefix}_MASK = {((1 << f.width) - 1) << f.offset:#x}")
    out += ["", "ADDRESS = {"]
    out += [f"    {r.name!r}: {r.address:#05x}," for r in rmap]
    out += ["}", "", "FIELDS = {"]
    for r in rmap:
        fields = [f"{f.name!r}: ({f.offset}, {f.width}, {f.access.value!r})"
                  for f in r.fields.values()]
        line = f"    {r.name!r}: {{{', '.join(fields)}}},"
        if len(line) <= 100:
            out.append(line)
        else:
            out += [f"    {r.name!r}: {{", *(f"        {f}," for f in fields), "    },"]
    out += ["}", "", "COUNTERS = {"]
    for r in rmap:
        if r.source is None or (r.snapshot and r.snapshot[0] == "hi"):
            continue
        if r.snapshot:
            hi = rmap[r.snapshot[1]]
            width = 32 + hi.fields["value"].width
            out.append(f"    {r.source!r}: ({r.address:#05x}, {hi.address:#05x}, {width}),")
        else:
            out.append(f"    {r.source!r}: ({r.address:#05x}, None, "
                       f"{r.fields['value'].width}),")
    out += ["}", ""]
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Generate docs/registers.md and "
                                     "sdk/registers.py from the register map.")
    parser.add_argument("--write", action="store_true", help="write the files (else: check)")
    args = parser.parse_args(argv)
    rmap = default_map()
    stale = []
    for path, text in ((DOC_PATH, markdown(rmap)), (SDK_PATH, python_module(rmap))):
        if args.write:
            path.write_text(text)
            print(f"wrote {path}")
        elif not path.exists() or path.read_text() != text:
            stale.append(str(path))
    if stale:
        print(f"stale: {', '.join(stale)} (run {GENERATOR})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
