"""The tile DMA descriptor: its bit layout, its Python form, and the reference semantics.

Defined once here; the DMA engine (:mod:`openmaia.tile.dma`), the command processor and the SDK
import it. docs/dma.md states the contract in prose.

A descriptor copies ``count2 x count1`` rows of ``count0`` elements of ``elem_size`` bytes
between HBM (through the AXI4 port) and the tile SRAM (TSRAM). Each row is contiguous on both
sides; row ``(i2, i1)`` starts at ``addr + i2 * stride2 + i1 * stride1`` on each side, with the
side's own base address and (byte, non-negative) strides. The bytes move in row order, ``i2``
outermost; where destination rows overlap, the later row's bytes are the ones that stay.

Packed FP4 / FP6 data moves as whole blocks: describe it in bytes (``elem_size`` 1, ``count0`` a
whole number of block bytes); the engine never splits or reorders bytes.

Rejections (checked in this order, before any bus transaction; :func:`check_descriptor`):

1. ``DESC_BAD_ELEMENT``: ``elem_size`` not 1, 2 or 4.
2. ``DESC_ZERO_COUNT``: ``count0``, ``count1`` or ``count2`` is zero.
3. ``DESC_STRIDE_OVERFLOW``: the last byte of the pattern on the HBM side does not fit the AXI
   address width, or on the TSRAM side does not fit the descriptor's TSRAM address field.
4. ``DESC_OUT_OF_WINDOW``: the HBM extent ``[hbm_addr, hbm_last]`` is not inside the queue's
   window ``[base, limit]`` (both inclusive).
5. ``TSRAM_OUT_OF_RANGE``: the TSRAM extent reaches past the end of the SRAM.
"""

import enum
from dataclasses import dataclass, fields

from amaranth.lib import data

from ..errors import ErrorCode

__all__ = [
    "COUNT_BITS",
    "ELEM_SIZES",
    "ELEM_SIZE_BITS",
    "TAG_BITS",
    "TSRAM_ADDR_BITS",
    "DmaDescriptor",
    "DmaDescriptorLayout",
    "DmaDirection",
    "DmaEventLayout",
    "check_descriptor",
    "descriptor_extent",
    "dma_reference",
]

#: Width of each of ``count0``, ``count1``, ``count2``.
COUNT_BITS = 16
#: Width of the TSRAM byte address and TSRAM strides in a descriptor.
TSRAM_ADDR_BITS = 32
ELEM_SIZE_BITS = 3
TAG_BITS = 8
#: The legal element sizes in bytes.
ELEM_SIZES = (1, 2, 4)


class DmaDirection(enum.IntEnum):
    HBM_TO_TSRAM = 0
    TSRAM_TO_HBM = 1


class DmaDescriptorLayout(data.Struct):
    """The descriptor's bit layout; :meth:`of` gives it for an HBM (AXI) address width."""

    @staticmethod
    def of(hbm_addr_bits: int) -> data.StructLayout:
        if not isinstance(hbm_addr_bits, int) or hbm_addr_bits < 1:
            raise TypeError(f"hbm_addr_bits must be a positive integer, not {hbm_addr_bits!r}")
        return data.StructLayout({
            "direction": 1,
            "elem_size": ELEM_SIZE_BITS,
            "tag": TAG_BITS,
            "count0": COUNT_BITS,
            "count1": COUNT_BITS,
            "count2": COUNT_BITS,
            "hbm_addr": hbm_addr_bits,
            "hbm_stride1": hbm_addr_bits,
            "hbm_stride2": hbm_addr_bits,
            "tsram_addr": TSRAM_ADDR_BITS,
            "tsram_stride1": TSRAM_ADDR_BITS,
            "tsram_stride2": TSRAM_ADDR_BITS,
        })


class DmaEventLayout(data.Struct):
    """A completion event: one per descriptor, done or rejected."""

    @staticmethod
    def of(queue_bits: int) -> data.StructLayout:
        return data.StructLayout({"queue": max(1, queue_bits), "tag": TAG_BITS, "status": 8})


@dataclass(frozen=True)
class DmaDescriptor:
    """A descriptor in Python. Fields as in :class:`DmaDescriptorLayout` (strides in bytes)."""
    direction: int
    hbm_addr: int
    tsram_addr: int
    count0: int
    count1: int = 1
    count2: int = 1
    hbm_stride1: int = 0
    hbm_stride2: int = 0
    tsram_stride1: int = 0
    tsram_stride2: int = 0
    elem_size: int = 1
    tag: int = 0

    @classmethod
    def contiguous(cls, direction, hbm_addr, tsram_addr, nbytes, tag=0):
        """A 1D copy of ``nbytes`` bytes (in 2- or 4-byte elements where ``count0`` needs it)."""
        elem = next((e for e in ELEM_SIZES if nbytes % e == 0 and nbytes // e < 1 << COUNT_BITS),
                    None)
        if elem is None:
            raise ValueError(f"{nbytes} bytes do not fit one row; use two dimensions")
        return cls(direction=direction, hbm_addr=hbm_addr, tsram_addr=tsram_addr,
                   count0=nbytes // elem, elem_size=elem, tag=tag)

    @property
    def row_bytes(self) -> int:
        return self.count0 * self.elem_size

    @property
    def total_bytes(self) -> int:
        return self.row_bytes * self.count1 * self.count2

    def rows(self, side: str):
        """Start addresses of the rows on ``side`` (``"hbm"`` or ``"tsram"``), in copy order."""
        base = getattr(self, f"{side}_addr")
        s1, s2 = getattr(self, f"{side}_stride1"), getattr(self, f"{side}_stride2")
        for i2 in range(self.count2):
            for i1 in range(self.count1):
                yield base + i2 * s2 + i1 * s1

    def encode(self, hbm_addr_bits: int) -> int:
        """The descriptor's bits (raises if a field does not fit)."""
        layout = DmaDescriptorLayout.of(hbm_addr_bits)
        bits = 0
        for name, field in layout:
            value = getattr(self, name)
            if not 0 <= value < (1 << field.width):
                raise ValueError(f"descriptor field {name}={value} does not fit "
                                 f"{field.width} bits")
            bits |= value << field.offset
        return bits

    @classmethod
    def decode(cls, bits: int, hbm_addr_bits: int) -> "DmaDescriptor":
        layout = DmaDescriptorLayout.of(hbm_addr_bits)
        names = {f.name for f in fields(cls)}
        return cls(**{name: (bits >> field.offset) & ((1 << field.width) - 1)
                      for name, field in layout if name in names})


def descriptor_extent(desc: DmaDescriptor, side: str) -> tuple[int, int]:
    """First and last byte address the pattern touches on ``side`` (non-negative strides)."""
    first = getattr(desc, f"{side}_addr")
    last = (first + (desc.count2 - 1) * getattr(desc, f"{side}_stride2")
            + (desc.count1 - 1) * getattr(desc, f"{side}_stride1") + desc.row_bytes - 1)
    return first, last


def check_descriptor(desc: DmaDescriptor, *, hbm_addr_bits: int, window: tuple[int, int],
                     tsram_bytes: int) -> ErrorCode:
    """The status the engine gives ``desc`` before moving anything (``OK`` = it runs)."""
    if desc.elem_size not in ELEM_SIZES:
        return ErrorCode.DESC_BAD_ELEMENT
    if 0 in (desc.count0, desc.count1, desc.count2):
        return ErrorCode.DESC_ZERO_COUNT
    hbm_first, hbm_last = descriptor_extent(desc, "hbm")
    _, ts_last = descriptor_extent(desc, "tsram")
    if hbm_last >= 1 << hbm_addr_bits or ts_last >= 1 << TSRAM_ADDR_BITS:
        return ErrorCode.DESC_STRIDE_OVERFLOW
    base, limit = window
    if hbm_first < base or hbm_last > limit:
        return ErrorCode.DESC_OUT_OF_WINDOW
    if ts_last >= tsram_bytes:
        return ErrorCode.TSRAM_OUT_OF_RANGE
    return ErrorCode.OK


def dma_reference(desc: DmaDescriptor, src_mem, dst_mem, *, hbm_addr_bits: int,
                  window: tuple[int, int], tsram_bytes: int) -> ErrorCode:
    """Apply ``desc`` to the memories (``bytearray``-like; ``src_mem`` is HBM for
    ``HBM_TO_TSRAM``, TSRAM otherwise) as the engine does; return its status code.

    A rejected descriptor changes nothing. Rows are copied in order.
    """
    status = check_descriptor(desc, hbm_addr_bits=hbm_addr_bits, window=window,
                              tsram_bytes=tsram_bytes)
    if status is not ErrorCode.OK:
        return status
    src_side, dst_side = (("hbm", "tsram") if desc.direction == DmaDirection.HBM_TO_TSRAM
                          else ("tsram", "hbm"))
    n = desc.row_bytes
    for src, dst in zip(desc.rows(src_side), desc.rows(dst_side)):
        dst_mem[dst:dst + n] = bytes(src_mem[src:src + n])
    return status
