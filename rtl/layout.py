"""The frozen memory layout of MX operands and FP32 results (specification: docs/layout.md).

Everything that puts a tensor into memory or takes one out (the SDK, the DMA engines' tests, the
cocotb benches, the golden-model checkers) goes through this module, so there is one definition of
where every bit lives.

Summary of the layout:

* Both GEMM operands are *K-contiguous*: A (M x K) is stored row by row along K; B (K x N) is
  stored as its transpose, N rows of K elements. A row of K elements holds ``ceil(K / 32)`` whole
  MX blocks; codes past K in the last block are zero.
* Element codes, per block of 32: FP8 (E4M3, E5M2) and INT8 one code a byte (32 bytes); FP6 (E3M2,
  E2M3) 24 bytes; FP4 (E2M1) 16 bytes. In every format, code ``i`` of a block occupies bits
  ``[bits * i, bits * (i + 1))`` of the little-endian integer formed by the block's bytes.
* Scales live in a separate plane, one E8M0 byte a block: the scale of row ``r``, block ``kb`` is at
  ``scales_base + r * scales_row_stride + kb``.
* C is FP32 (IEEE 754 binary32 bits, little-endian), row-major M x N, with its own base and row
  stride.

Addresses are byte addresses into one flat memory (a ``bytearray`` or a 1-D ``numpy.uint8``
array). The layout imposes no alignment beyond the above; a DMA engine may impose its own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from .numerics.formats import BLOCK_SIZE, Format

__all__ = [
    "k_blocks", "packed_row_bytes", "pack_codes", "unpack_codes",
    "MxOperandLayout", "Fp32MatrixLayout",
    "operand_arrays", "merge_ranges", "ranges_overlap", "check_disjoint",
]

Range = tuple[int, int]


# --------------------------------------------------------------------------------------------
# Small checks


def _int_param(name: str, value: Any, *, minimum: int) -> int:
    """``value`` as a Python int ``>= minimum``; ValueError otherwise (bools are not integers)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value}")
    return value


def _as_memory(memory: Any, *, writable: bool) -> np.ndarray:
    """A 1-D uint8 numpy view of ``memory`` sharing its storage (no copy)."""
    if isinstance(memory, np.ndarray):
        if memory.dtype != np.uint8 or memory.ndim != 1:
            raise ValueError(f"memory must be a 1-D uint8 array, not {memory.dtype} with shape "
                             f"{memory.shape}")
        view = memory
    elif isinstance(memory, (bytearray, memoryview, bytes)):
        view = np.frombuffer(memory, dtype=np.uint8)
    else:
        raise TypeError(f"memory must be a bytearray, memoryview or 1-D uint8 numpy array, "
                        f"not {type(memory).__name__}")
    if writable and not view.flags.writeable:
        raise ValueError("memory is read-only")
    return view


def _rows_view(mem: np.ndarray, base: int, stride: int, rows: int, width: int) -> np.ndarray:
    """A (rows, width) view of ``mem`` whose row r starts at ``base + r * stride``.

    The caller has checked that the last byte is inside ``mem`` and that rows do not overlap
    (``stride >= width``), so writing through the view is safe.
    """
    step = mem.strides[0]
    return np.lib.stride_tricks.as_strided(mem[base:], shape=(rows, width),
                                           strides=(stride * step, step),
                                           writeable=bool(mem.flags.writeable))


def merge_ranges(ranges: Iterable[Range]) -> list[Range]:
    """Sort half-open byte ranges ``[start, stop)`` and merge those that overlap or touch.

    Empty ranges are dropped.
    """
    out: list[list[int]] = []
    for start, stop in sorted((int(a), int(b)) for a, b in ranges if b > a):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], stop)
        else:
            out.append([start, stop])
    return [(a, b) for a, b in out]


def ranges_overlap(a: Iterable[Range], b: Iterable[Range]) -> bool:
    """True if some byte lies in a range of ``a`` and in a range of ``b`` (touching is fine)."""
    a = merge_ranges(a)
    b = merge_ranges(b)
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i][0] < b[j][1] and b[j][0] < a[i][1]:
            return True
        if a[i][1] <= b[j][1]:
            i += 1
        else:
            j += 1
    return False


def check_disjoint(*layouts: "MxOperandLayout | Fp32MatrixLayout") -> None:
    """Raise ValueError if the footprints of any two of ``layouts`` share a byte.

    Use it on the A, B and C layouts of one GEMM before handing them to the hardware.
    """
    prints = [lay.footprint() for lay in layouts]
    for i in range(len(layouts)):
        for j in range(i + 1, len(layouts)):
            if ranges_overlap(prints[i], prints[j]):
                raise ValueError(f"layouts {i} and {j} overlap in memory: {layouts[i]!r} and "
                                 f"{layouts[j]!r}")


# --------------------------------------------------------------------------------------------
# Packing of element codes


def k_blocks(k: int) -> int:
    """Blocks a row of ``k`` elements occupies: ``ceil(k / 32)``."""
    k = _int_param("k", k, minimum=0)
    return -(-k // BLOCK_SIZE)


def packed_row_bytes(k: int, fmt: "Format | str") -> int:
    """Bytes of packed codes of one row of ``k`` elements: ``ceil(k / 32) * bytes_per_block``."""
    return k_blocks(k) * Format.of(fmt).spec.bytes_per_block


def _check_codes(codes: Any, fmt: Format, what: str = "codes") -> np.ndarray:
    arr = np.asarray(codes)
    if arr.ndim < 1:
        raise ValueError(f"{what} must have at least one dimension (the K axis last)")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{what} must be an integer array, not {arr.dtype}")
    bits = fmt.spec.bits
    if arr.size and (arr.min() < 0 or arr.max() >= 1 << bits):
        raise ValueError(f"{what} must be {bits}-bit codes of {fmt} (0..{(1 << bits) - 1}); "
                         f"found values in {arr.min()}..{arr.max()}")
    return arr.astype(np.uint8, copy=False)


def pack_codes(codes: np.ndarray, fmt: "Format | str") -> np.ndarray:
    """Pack element codes into their memory bytes.

    ``codes``: integer array of shape ``(..., K)`` (K is the last, contiguous axis) holding codes
    of ``fmt``, each in ``0 .. 2**bits - 1`` (ValueError otherwise). Returns a new uint8 array of
    shape ``(..., ceil(K / 32) * bytes_per_block)``: each row is padded with zero codes to whole
    blocks and packed so that code ``i`` of a block occupies bits ``[bits*i, bits*(i+1))`` of the
    little-endian integer formed by the block's bytes (FP6: 4 codes in 3 bytes; FP4: the lower-K
    code in bits 3:0 of a byte, the next in bits 7:4).
    """
    fmt = Format.of(fmt)
    c = _check_codes(codes, fmt)
    lead, k = c.shape[:-1], c.shape[-1]
    nb = k_blocks(k)
    padded = np.zeros(lead + (nb * BLOCK_SIZE,), dtype=np.uint8)
    padded[..., :k] = c
    bits = fmt.spec.bits
    if bits == 8:
        return padded
    if bits == 4:
        return padded[..., 0::2] | (padded[..., 1::2] << np.uint8(4))
    assert bits == 6
    g = padded.reshape(lead + (nb * BLOCK_SIZE // 4, 4)).astype(np.uint32)
    v = g[..., 0] | (g[..., 1] << 6) | (g[..., 2] << 12) | (g[..., 3] << 18)
    out = np.stack([v & 0xFF, (v >> 8) & 0xFF, v >> 16], axis=-1).astype(np.uint8)
    return out.reshape(lead + (nb * fmt.spec.bytes_per_block,))


def unpack_codes(packed: np.ndarray, fmt: "Format | str", k: int, *,
                 check_padding: bool = False) -> np.ndarray:
    """Inverse of :func:`pack_codes`: the first ``k`` codes of every packed row.

    ``packed``: uint8 array of shape ``(..., ceil(k / 32) * bytes_per_block)`` (ValueError on any
    other last dimension or dtype). Returns a new uint8 array of shape ``(..., k)``. The padding
    codes past ``k`` are ignored unless ``check_padding``, which raises ValueError if any is
    not zero.
    """
    fmt = Format.of(fmt)
    k = _int_param("k", k, minimum=0)
    p = np.asarray(packed)
    if p.dtype != np.uint8:
        raise ValueError(f"packed must be a uint8 array, not {p.dtype}")
    if p.ndim < 1:
        raise ValueError("packed must have at least one dimension (the byte axis last)")
    want = packed_row_bytes(k, fmt)
    if p.shape[-1] != want:
        raise ValueError(f"a packed row of {k} {fmt} elements is {want} bytes, "
                         f"not {p.shape[-1]}")
    lead, n = p.shape[:-1], p.shape[-1]
    bits = fmt.spec.bits
    if bits == 8:
        full = p
    elif bits == 4:
        full = np.stack([p & np.uint8(0x0F), p >> np.uint8(4)], axis=-1).reshape(lead + (2 * n,))
    else:
        assert bits == 6
        g = p.reshape(lead + (n // 3, 3)).astype(np.uint32)
        v = g[..., 0] | (g[..., 1] << 8) | (g[..., 2] << 16)
        full = np.stack([(v >> (6 * j)) & 0x3F for j in range(4)], axis=-1)
        full = full.astype(np.uint8).reshape(lead + (n // 3 * 4,))
    if check_padding and np.any(full[..., k:]):
        raise ValueError(f"padding codes past k={k} are not zero")
    return np.array(full[..., :k], dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# MX operands


def operand_arrays(tensor: Any) -> tuple[np.ndarray, np.ndarray, Format]:
    """The K-contiguous ``(codes, scales, fmt)`` of an MXTensor-like 2-D object.

    Duck-typed on ``.codes`` (integer array, 2-D), ``.scales`` (E8M0 codes), ``.fmt`` (a
    :class:`Format` or its name) and ``.axis`` (the blocked axis, the K axis). With the blocked
    axis last (an A operand, M x K) the arrays are returned as they are; with the blocked axis
    first (a B operand, K x N) they are transposed, so that B is stored as its transpose (N x K).
    ``scales`` must have ``ceil(K / 32)`` entries along the blocked axis and match ``codes`` along
    the other. Returns codes of shape (rows, K) and scales of shape (rows, ceil(K / 32)).
    """
    codes = np.asarray(tensor.codes)
    scales = np.asarray(tensor.scales)
    fmt = Format.of(tensor.fmt)
    if codes.ndim != 2:
        raise ValueError(f"only 2-D tensors have an operand layout; codes have shape "
                         f"{codes.shape}")
    axis = _int_param("axis", tensor.axis, minimum=-2)
    if axis > 1:
        raise ValueError(f"axis must be 0, 1, -1 or -2 for a 2-D tensor, not {axis}")
    if axis % 2 == 0:
        codes, scales = codes.T, scales.T
    rows, k = codes.shape
    if scales.shape != (rows, k_blocks(k)):
        raise ValueError(f"scales of a tensor with {rows} rows of {k} elements along the blocked "
                         f"axis must have shape {(rows, k_blocks(k))} (K-contiguous), not "
                         f"{scales.shape}")
    return codes, scales, fmt


@dataclass(frozen=True, kw_only=True)
class MxOperandLayout:
    """Where one MX operand of ``rows`` rows of ``k`` elements of ``fmt`` lives in memory.

    Row ``r`` (an M row of A, an N row of B) holds ``k_blocks = ceil(k / 32)`` whole blocks of
    packed codes (:func:`pack_codes`), ``row_bytes`` bytes from ``codes_base + r *
    codes_row_stride``, and ``k_blocks`` E8M0 scale bytes from ``scales_base + r *
    scales_row_stride``. The gaps between rows (stride minus payload) are never read or written.

    The constructor checks the parameters (ValueError): ``rows``, ``k`` >= 1; bases >= 0;
    ``codes_row_stride >= row_bytes``; ``scales_row_stride >= k_blocks``; and no byte of the
    code plane is a byte of the scale plane (interleaving scales into the gaps of the code rows
    is allowed). :meth:`default` builds the tight layout.
    """
    rows: int
    k: int
    fmt: Format
    codes_base: int
    codes_row_stride: int
    scales_base: int
    scales_row_stride: int

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "fmt", Format.of(self.fmt))
        set_(self, "rows", _int_param("rows", self.rows, minimum=1))
        set_(self, "k", _int_param("k", self.k, minimum=1))
        for name in ("codes_base", "scales_base"):
            set_(self, name, _int_param(name, getattr(self, name), minimum=0))
        set_(self, "codes_row_stride", _int_param("codes_row_stride", self.codes_row_stride,
                                                  minimum=self.row_bytes))
        set_(self, "scales_row_stride", _int_param("scales_row_stride", self.scales_row_stride,
                                                   minimum=self.k_blocks))
        if ranges_overlap(self.code_ranges(), self.scale_ranges()):
            raise ValueError(f"the code plane ({self.codes_base:#x}..{self.codes_end:#x}) and "
                             f"the scale plane ({self.scales_base:#x}..{self.scales_end:#x}) "
                             f"share bytes")

    @classmethod
    def default(cls, *, rows: int, k: int, fmt: "Format | str", codes_base: int = 0,
                scales_base: int | None = None) -> "MxOperandLayout":
        """The tight layout: rows back to back (stride ``row_bytes``), scales back to back
        (stride ``k_blocks``). ``scales_base`` defaults to the first byte after the code plane."""
        fmt = Format.of(fmt)
        row_bytes = packed_row_bytes(_int_param("k", k, minimum=1), fmt)
        rows = _int_param("rows", rows, minimum=1)
        codes_base = _int_param("codes_base", codes_base, minimum=0)
        if scales_base is None:
            scales_base = codes_base + rows * row_bytes
        return cls(rows=rows, k=k, fmt=fmt, codes_base=codes_base, codes_row_stride=row_bytes,
                   scales_base=scales_base, scales_row_stride=k_blocks(k))

    @classmethod
    def for_tensor(cls, tensor: Any, *, codes_base: int = 0, scales_base: int | None = None,
                   codes_row_stride: int | None = None,
                   scales_row_stride: int | None = None) -> "MxOperandLayout":
        """A layout for an MXTensor-like object (see :func:`operand_arrays`); strides default to
        tight, ``scales_base`` to the first byte after the code plane."""
        codes, _, fmt = operand_arrays(tensor)
        rows, k = codes.shape
        tight = cls.default(rows=rows, k=k, fmt=fmt, codes_base=codes_base)
        if codes_row_stride is None:
            codes_row_stride = tight.codes_row_stride
        if scales_row_stride is None:
            scales_row_stride = tight.scales_row_stride
        if scales_base is None:
            scales_base = tight.codes_base + (rows - 1) * codes_row_stride + tight.row_bytes
        return cls(rows=rows, k=k, fmt=fmt, codes_base=codes_base,
                   codes_row_stride=codes_row_stride, scales_base=scales_base,
                   scales_row_stride=scales_row_stride)

    def replace(self, **changes: Any) -> "MxOperandLayout":
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)

    # Derived sizes

    @property
    def bits(self) -> int:
        """Bits of one element code."""
        return self.fmt.spec.bits

    @property
    def bytes_per_block(self) -> int:
        """Bytes of packed codes of one 32-element block."""
        return self.fmt.spec.bytes_per_block

    @property
    def k_blocks(self) -> int:
        """Blocks per row: ``ceil(k / 32)``."""
        return k_blocks(self.k)

    @property
    def k_padded(self) -> int:
        """Elements per row including the zero padding: ``32 * k_blocks``."""
        return self.k_blocks * BLOCK_SIZE

    @property
    def row_bytes(self) -> int:
        """Bytes of packed codes per row: ``k_blocks * bytes_per_block``."""
        return self.k_blocks * self.bytes_per_block

    @property
    def codes_bytes(self) -> int:
        """Bytes holding codes (padding included, gaps excluded): ``rows * row_bytes``."""
        return self.rows * self.row_bytes

    @property
    def scales_bytes(self) -> int:
        """Bytes holding scales (gaps excluded): ``rows * k_blocks``."""
        return self.rows * self.k_blocks

    @property
    def codes_span(self) -> int:
        """Bytes from ``codes_base`` to one past the last code byte (gaps included)."""
        return (self.rows - 1) * self.codes_row_stride + self.row_bytes

    @property
    def scales_span(self) -> int:
        """Bytes from ``scales_base`` to one past the last scale byte (gaps included)."""
        return (self.rows - 1) * self.scales_row_stride + self.k_blocks

    @property
    def codes_end(self) -> int:
        """One past the last byte of the code plane."""
        return self.codes_base + self.codes_span

    @property
    def scales_end(self) -> int:
        """One past the last byte of the scale plane."""
        return self.scales_base + self.scales_span

    @property
    def start(self) -> int:
        """The lowest address the layout uses."""
        return min(self.codes_base, self.scales_base)

    @property
    def end(self) -> int:
        """One past the highest address the layout uses: the smallest memory size that holds it."""
        return max(self.codes_end, self.scales_end)

    # Addresses

    def _check_index(self, row: int, kb: int) -> None:
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} outside 0..{self.rows - 1}")
        if not 0 <= kb < self.k_blocks:
            raise IndexError(f"block {kb} outside 0..{self.k_blocks - 1}")

    def address_of_row(self, row: int) -> int:
        """Address of the first code byte of ``row``."""
        self._check_index(row, 0)
        return self.codes_base + row * self.codes_row_stride

    def address_of_block(self, row: int, kb: int) -> int:
        """Address of the first of the ``bytes_per_block`` code bytes of block ``kb`` of ``row``:
        ``codes_base + row * codes_row_stride + kb * bytes_per_block``."""
        self._check_index(row, kb)
        return self.codes_base + row * self.codes_row_stride + kb * self.bytes_per_block

    def address_of_scale(self, row: int, kb: int) -> int:
        """Address of the E8M0 scale of block ``kb`` of ``row``:
        ``scales_base + row * scales_row_stride + kb``."""
        self._check_index(row, kb)
        return self.scales_base + row * self.scales_row_stride + kb

    def address_of_element(self, row: int, k: int) -> tuple[int, int]:
        """``(byte address, bit offset)`` of the least significant bit of element ``k`` of
        ``row``. The code occupies ``bits`` consecutive bits from there, little-endian; an FP6
        code with bit offset 4 or 6 continues into the next byte."""
        if not 0 <= k < self.k:
            raise IndexError(f"element {k} outside 0..{self.k - 1}")
        kb, i = divmod(k, BLOCK_SIZE)
        byte, bit = divmod(i * self.bits, 8)
        return self.address_of_block(row, kb) + byte, bit

    # Footprint

    def code_ranges(self) -> list[Range]:
        """Half-open byte ranges ``[start, stop)`` of the code rows, one per row."""
        return [(a, a + self.row_bytes)
                for a in range(self.codes_base, self.codes_end, self.codes_row_stride)]

    def scale_ranges(self) -> list[Range]:
        """Half-open byte ranges ``[start, stop)`` of the scale rows, one per row."""
        return [(a, a + self.k_blocks)
                for a in range(self.scales_base, self.scales_end, self.scales_row_stride)]

    def footprint(self) -> list[Range]:
        """Every byte :meth:`write` writes and :meth:`read` reads, as sorted, merged half-open
        ranges; no other byte is touched."""
        return merge_ranges(self.code_ranges() + self.scale_ranges())

    def footprint_mask(self, size: int) -> np.ndarray:
        """Boolean array of ``size`` (>= :attr:`end`) bytes, True where the layout owns the byte."""
        size = _int_param("size", size, minimum=self.end)
        mask = np.zeros(size, dtype=bool)
        _rows_view(mask, self.codes_base, self.codes_row_stride, self.rows, self.row_bytes)[:] = 1
        _rows_view(mask, self.scales_base, self.scales_row_stride, self.rows, self.k_blocks)[:] = 1
        return mask

    # Access

    def _memory(self, memory: Any, *, writable: bool) -> np.ndarray:
        mem = _as_memory(memory, writable=writable)
        if mem.shape[0] < self.end:
            raise ValueError(f"memory of {mem.shape[0]} bytes is too small for a layout ending at "
                             f"{self.end:#x}")
        return mem

    def _codes_view(self, mem: np.ndarray) -> np.ndarray:
        return _rows_view(mem, self.codes_base, self.codes_row_stride, self.rows, self.row_bytes)

    def _scales_view(self, mem: np.ndarray) -> np.ndarray:
        return _rows_view(mem, self.scales_base, self.scales_row_stride, self.rows, self.k_blocks)

    def write(self, memory: Any, codes: np.ndarray, scales: np.ndarray) -> None:
        """Store ``codes`` (integer array ``(rows, k)`` of ``fmt`` codes) and ``scales``
        (integer array ``(rows, k_blocks)`` of E8M0 codes 0..255) into ``memory`` in place.

        ``memory`` is a bytearray, writable memoryview or 1-D uint8 array of at least
        :attr:`end` bytes. Exactly the bytes of :meth:`footprint` are written, padding codes as
        zero; everything is checked before the first byte is written (ValueError).
        """
        mem = self._memory(memory, writable=True)
        codes = np.asarray(codes)
        if codes.shape != (self.rows, self.k):
            raise ValueError(f"codes must have shape {(self.rows, self.k)}, not {codes.shape}")
        packed = pack_codes(codes, self.fmt)
        scales = np.asarray(scales)
        if scales.shape != (self.rows, self.k_blocks):
            raise ValueError(f"scales must have shape {(self.rows, self.k_blocks)}, not "
                             f"{scales.shape}")
        if scales.dtype.kind not in "iu":
            raise ValueError(f"scales must be an integer array of E8M0 codes, not {scales.dtype}")
        if scales.size and (scales.min() < 0 or scales.max() > 0xFF):
            raise ValueError("scales must be E8M0 codes in 0..255")
        self._codes_view(mem)[:] = packed
        self._scales_view(mem)[:] = scales.astype(np.uint8)

    def read(self, memory: Any, *, check_padding: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Load ``(codes, scales)`` (new uint8 arrays of shapes ``(rows, k)`` and
        ``(rows, k_blocks)``) from ``memory`` (bytes-like or 1-D uint8 array of at least
        :attr:`end` bytes). Padding codes are ignored unless ``check_padding`` (ValueError if one
        is not zero)."""
        mem = self._memory(memory, writable=False)
        codes = unpack_codes(self._codes_view(mem), self.fmt, self.k, check_padding=check_padding)
        return codes, np.array(self._scales_view(mem), dtype=np.uint8)

    def write_tensor(self, memory: Any, tensor: Any) -> None:
        """:meth:`write` an MXTensor-like object (see :func:`operand_arrays`; B is transposed)."""
        codes, scales, fmt = operand_arrays(tensor)
        if fmt is not self.fmt:
            raise ValueError(f"tensor format {fmt} is not the layout's format {self.fmt}")
        self.write(memory, codes, scales)


# --------------------------------------------------------------------------------------------
# FP32 results


@dataclass(frozen=True, kw_only=True)
class Fp32MatrixLayout:
    """Where an FP32 matrix (the GEMM result C, M x N) lives in memory.

    Element ``(r, c)`` is the 4 bytes of its IEEE 754 binary32 bit pattern, little-endian, at
    ``base + r * row_stride + 4 * c``. The constructor checks (ValueError): ``rows``, ``cols``
    >= 1; ``base`` >= 0; ``row_stride >= 4 * cols``. :meth:`default` builds the tight layout.
    """
    rows: int
    cols: int
    base: int
    row_stride: int

    #: Bytes per element.
    ELEMENT_BYTES = 4

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "rows", _int_param("rows", self.rows, minimum=1))
        set_(self, "cols", _int_param("cols", self.cols, minimum=1))
        set_(self, "base", _int_param("base", self.base, minimum=0))
        set_(self, "row_stride", _int_param("row_stride", self.row_stride,
                                            minimum=self.row_bytes))

    @classmethod
    def default(cls, *, rows: int, cols: int, base: int = 0) -> "Fp32MatrixLayout":
        """The tight layout: ``row_stride = 4 * cols``."""
        cols = _int_param("cols", cols, minimum=1)
        return cls(rows=rows, cols=cols, base=base, row_stride=4 * cols)

    def replace(self, **changes: Any) -> "Fp32MatrixLayout":
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)

    @property
    def row_bytes(self) -> int:
        """Bytes of data per row: ``4 * cols``."""
        return self.ELEMENT_BYTES * self.cols

    @property
    def span(self) -> int:
        """Bytes from ``base`` to one past the last byte (gaps included)."""
        return (self.rows - 1) * self.row_stride + self.row_bytes

    @property
    def start(self) -> int:
        """The lowest address the layout uses."""
        return self.base

    @property
    def end(self) -> int:
        """One past the highest address the layout uses."""
        return self.base + self.span

    def address_of(self, row: int, col: int) -> int:
        """Address of the lowest byte of element ``(row, col)``."""
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} outside 0..{self.rows - 1}")
        if not 0 <= col < self.cols:
            raise IndexError(f"column {col} outside 0..{self.cols - 1}")
        return self.base + row * self.row_stride + self.ELEMENT_BYTES * col

    def footprint(self) -> list[Range]:
        """The bytes :meth:`write` writes, as sorted, merged half-open ranges."""
        return merge_ranges((a, a + self.row_bytes)
                            for a in range(self.base, self.end, self.row_stride))

    def footprint_mask(self, size: int) -> np.ndarray:
        """Boolean array of ``size`` (>= :attr:`end`) bytes, True where the layout owns the byte."""
        size = _int_param("size", size, minimum=self.end)
        mask = np.zeros(size, dtype=bool)
        _rows_view(mask, self.base, self.row_stride, self.rows, self.row_bytes)[:] = 1
        return mask

    def _view(self, memory: Any, *, writable: bool) -> np.ndarray:
        mem = _as_memory(memory, writable=writable)
        if mem.shape[0] < self.end:
            raise ValueError(f"memory of {mem.shape[0]} bytes is too small for a layout ending at "
                             f"{self.end:#x}")
        return _rows_view(mem, self.base, self.row_stride, self.rows, self.row_bytes)

    def write_bits(self, memory: Any, bits: np.ndarray) -> None:
        """Store a ``(rows, cols)`` array of binary32 bit patterns (integers 0..2**32-1)."""
        bits = np.asarray(bits)
        if bits.shape != (self.rows, self.cols):
            raise ValueError(f"values must have shape {(self.rows, self.cols)}, not {bits.shape}")
        if bits.dtype.kind not in "iu":
            raise ValueError(f"bit patterns must be an integer array, not {bits.dtype}")
        if bits.size and (bits.min() < 0 or bits.max() > 0xFFFF_FFFF):
            raise ValueError("bit patterns must be in 0..2**32-1")
        view = self._view(memory, writable=True)
        le = np.ascontiguousarray(bits.astype(np.uint64).astype("<u4"))
        view[:] = le.view(np.uint8).reshape(self.rows, self.row_bytes)

    def read_bits(self, memory: Any) -> np.ndarray:
        """Load the ``(rows, cols)`` binary32 bit patterns as a new uint32 array."""
        view = np.ascontiguousarray(self._view(memory, writable=False))
        return view.view("<u4").reshape(self.rows, self.cols).astype(np.uint32)

    def write(self, memory: Any, values: np.ndarray) -> None:
        """Store a ``(rows, cols)`` float32 array bit-exactly (NaN payloads and -0 kept).

        Only float32 is accepted (ValueError otherwise): converting wider floats is the caller's
        explicit choice. Exactly the bytes of :meth:`footprint` are written.
        """
        values = np.asarray(values)
        if values.dtype != np.float32:
            raise ValueError(f"values must be float32, not {values.dtype}; convert explicitly")
        self.write_bits(memory, np.ascontiguousarray(values).view(np.uint32))

    def read(self, memory: Any) -> np.ndarray:
        """Load the matrix as a new ``(rows, cols)`` float32 array, bit-exactly."""
        return self.read_bits(memory).view(np.float32)
