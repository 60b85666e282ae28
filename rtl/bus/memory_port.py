"""The word-addressed memory port of the tile SRAM, written once for every block that uses it.

A requester (the DMA, the Tile Tensor Unit, the vector unit) sends requests on ``req`` and, for
each read, receives exactly one response on ``rsp``, in request order. Writes have no response.
Both are :mod:`amaranth.lib.stream` interfaces, so either side may stall.

``req`` payload (:meth:`MemoryRequest.of`): ``addr`` (word address), ``write``, ``data`` (the
word to write), ``strb`` (one bit a byte of ``data``; bytes with a clear bit keep their old
value). ``rsp`` payload (:meth:`MemoryResponse.of`): ``data``, ``status`` (:class:`EccStatus` of
the word read).
"""

import enum

from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["EccStatus", "MemoryRequest", "MemoryResponse", "MemoryPortSignature"]


class EccStatus(enum.IntEnum):
    """What the SECDED check found in a word read (``OK`` without ECC)."""
    OK = 0
    CORRECTED = 1        # one bit flipped: corrected in the returned data
    UNCORRECTABLE = 2    # two bits flipped: the returned data is not trustworthy


def _check(name, value, minimum=1):
    if not isinstance(value, int) or value < minimum:
        raise TypeError(f"{name} must be an integer >= {minimum}, not {value!r}")


class MemoryRequest(data.Struct):
    """A memory request; :meth:`of` gives the layout for an address and data width."""

    @staticmethod
    def of(addr_width: int, data_width: int) -> data.StructLayout:
        _check("addr_width", addr_width)
        _check("data_width", data_width, 8)
        if data_width % 8:
            raise ValueError(f"data_width must be a multiple of 8, not {data_width}")
        return data.StructLayout({"addr": addr_width, "write": 1, "data": data_width,
                                  "strb": data_width // 8})


class MemoryResponse(data.Struct):
    """A read response; :meth:`of` gives the layout for a data width."""

    @staticmethod
    def of(data_width: int) -> data.StructLayout:
        _check("data_width", data_width, 8)
        return data.StructLayout({"data": data_width, "status": 2})


class MemoryPortSignature(wiring.Signature):
    """A requester's memory port: ``req`` out, ``rsp`` in (flip it for the memory's side).

    Parameters
    ----------
    addr_width : int
        Word-address bits.
    data_width : int
        Bits a word, a multiple of 8.
    """

    def __init__(self, *, addr_width, data_width):
        self._addr_width = addr_width
        self._data_width = data_width
        super().__init__({
            "req": Out(stream.Signature(MemoryRequest.of(addr_width, data_width))),
            "rsp": In(stream.Signature(MemoryResponse.of(data_width))),
        })

    @property
    def addr_width(self):
        return self._addr_width

    @property
    def data_width(self):
        return self._data_width

    def __eq__(self, other):
        return (type(other) is type(self) and self.addr_width == other.addr_width
                and self.data_width == other.data_width)

    def __hash__(self):
        return hash((type(self), self.addr_width, self.data_width))

    def __repr__(self):
        return (f"MemoryPortSignature(addr_width={self.addr_width}, "
                f"data_width={self.data_width})")
