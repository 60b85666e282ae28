"""AXI4 and AXI4-Lite bus signatures, written once for every block that speaks AXI.

Members carry the AMBA names (``awaddr``, ``wdata``, ``rready``, ...) flat, not grouped by
channel, so a port called ``m_axi`` elaborates to Verilog ports ``m_axi__awaddr``, ... and binds
to cocotbext-axi with ``AxiBus.from_prefix(dut, "m_axi_")`` (cocotbext-axi adds one more ``_``).

The signatures are written from the manager's side: ``Out`` members are driven by the manager.
A subordinate uses ``Axi4Signature(...).flip()`` (``In(Axi4Signature(...))`` in its own
signature).
"""

import enum

from amaranth.hdl import unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AxiBurst", "AxiResp", "AXI_BOUNDARY_BYTES", "AXI4_MAX_BEATS",
           "Axi4Signature", "AxiLiteSignature"]

#: An AXI burst must not cross a 4 KiB address boundary.
AXI_BOUNDARY_BYTES = 4096
#: Longest INCR burst in AXI4 (``AxLEN`` = 255).
AXI4_MAX_BEATS = 256


class AxiBurst(enum.IntEnum):
    """``AxBURST`` encodings."""
    FIXED = 0
    INCR = 1
    WRAP = 2


class AxiResp(enum.IntEnum):
    """``xRESP`` encodings."""
    OKAY = 0
    EXOKAY = 1
    SLVERR = 2
    DECERR = 3


def _check(name, value, allowed=None, minimum=1):
    if not isinstance(value, int) or value < minimum:
        raise TypeError(f"{name} must be an integer >= {minimum}, not {value!r}")
    if allowed is not None and value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}, not {value}")


_DATA_WIDTHS = (8, 16, 32, 64, 128, 256, 512, 1024)


class Axi4Signature(wiring.Signature):
    """An AXI4 manager port: five channels, INCR/FIXED/WRAP bursts of up to 256 beats.

    Parameters
    ----------
    addr_width : int
        Byte-address bits.
    data_width : int
        Data bits a beat: 8, 16, ..., 1024.
    id_width : int
        Transaction ID bits (``awid``, ``bid``, ``arid``, ``rid``), at least 1.
    """

    def __init__(self, *, addr_width, data_width, id_width=1):
        _check("addr_width", addr_width)
        _check("data_width", data_width, _DATA_WIDTHS)
        _check("id_width", id_width)
        self._addr_width = addr_width
        self._data_width = data_width
        self._id_width = id_width
        super().__init__({
            "awid": Out(id_width), "awaddr": Out(addr_width), "awlen": Out(8),
            "awsize": Out(3), "awburst": Out(2), "awlock": Out(1), "awcache": Out(4),
            "awprot": Out(3), "awqos": Out(4), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
            "wvalid": Out(1), "wready": In(1),
            "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "arid": Out(id_width), "araddr": Out(addr_width), "arlen": Out(8),
            "arsize": Out(3), "arburst": Out(2), "arlock": Out(1), "arcache": Out(4),
            "arprot": Out(3), "arqos": Out(4), "arvalid": Out(1), "arready": In(1),
            "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
            "rvalid": In(1), "rready": Out(1),
        })

    @property
    def addr_width(self):
        return self._addr_width

    @property
    def data_width(self):
        return self._data_width

    @property
    def id_width(self):
        return self._id_width

    @property
    def data_bytes(self):
        """Bytes a beat (the width of ``wstrb``)."""
        return self._data_width // 8

    @property
    def size_code(self):
        """The ``AxSIZE`` of a full-width beat (log2 of :attr:`data_bytes`)."""
        return (self.data_bytes).bit_length() - 1

    def __eq__(self, other):
        return (type(other) is type(self) and self.addr_width == other.addr_width
                and self.data_width == other.data_width and self.id_width == other.id_width)

    def __hash__(self):
        return hash((type(self), self.addr_width, self.data_width, self.id_width))

    def __repr__(self):
        return (f"Axi4Signature(addr_width={self.addr_width}, data_width={self.data_width}, "
                f"id_width={self.id_width})")


class AxiLiteSignature(wiring.Signature):
    """An AXI4-Lite manager port: single-beat reads and writes, no IDs or bursts.

    Parameters
    ----------
    addr_width : int
        Byte-address bits.
    data_width : int
        32 or 64.
    """

    def __init__(self, *, addr_width, data_width=32):
        _check("addr_width", addr_width)
        _check("data_width", data_width, (32, 64))
        self._addr_width = addr_width
        self._data_width = data_width
        super().__init__({
            "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    @property
    def addr_width(self):
        return self._addr_width

    @property
    def data_width(self):
        return self._data_width

    @property
    def data_bytes(self):
        return self._data_width // 8

    def __eq__(self, other):
        return (type(other) is type(self) and self.addr_width == other.addr_width
                and self.data_width == other.data_width)

    def __hash__(self):
        return hash((type(self), self.addr_width, self.data_width))

    def __repr__(self):
        return f"AxiLiteSignature(addr_width={self.addr_width}, data_width={self.data_width})"
