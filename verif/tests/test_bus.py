"""The shared bus signatures: AMBA member names and directions, Verilog port names that bind to
cocotbext-axi, the memory port."""

import pytest
from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from openmaia.bus.axi import Axi4Signature, AxiLiteSignature
from openmaia.bus.memory_port import MemoryPortSignature
from openmaia.harness.elaborate import elaborate

# What cocotbext-axi's AxiBus / AxiLiteBus look for (required and optional signals).
AXI4_NAMES = {
    "awid", "awaddr", "awlen", "awsize", "awburst", "awlock", "awcache", "awprot", "awqos",
    "awvalid", "awready", "wdata", "wstrb", "wlast", "wvalid", "wready", "bid", "bresp",
    "bvalid", "bready", "arid", "araddr", "arlen", "arsize", "arburst", "arlock", "arcache",
    "arprot", "arqos", "arvalid", "arready", "rid", "rdata", "rresp", "rlast", "rvalid",
    "rready"}
AXIL_NAMES = {
    "awaddr", "awprot", "awvalid", "awready", "wdata", "wstrb", "wvalid", "wready", "bresp",
    "bvalid", "bready", "araddr", "arprot", "arvalid", "arready", "rdata", "rresp", "rvalid",
    "rready"}
SUBORDINATE_DRIVES = {"awready", "wready", "bid", "bresp", "bvalid", "arready", "rid", "rdata",
                      "rresp", "rlast", "rvalid"}


def test_axi4_members():
    sig = Axi4Signature(addr_width=32, data_width=256, id_width=4)
    assert set(sig.members) == AXI4_NAMES
    for name, member in sig.members.items():
        assert member.flow == (In if name in SUBORDINATE_DRIVES else Out), name
    assert sig.members["wstrb"].shape == 32
    assert sig.members["rid"].shape == 4
    assert sig.size_code == 5 and sig.data_bytes == 32
    assert sig == Axi4Signature(addr_width=32, data_width=256, id_width=4)
    assert sig != Axi4Signature(addr_width=32, data_width=128, id_width=4)


def test_axi_lite_members():
    sig = AxiLiteSignature(addr_width=12)
    assert set(sig.members) == AXIL_NAMES
    assert sig.members["rdata"].flow == In and sig.members["araddr"].flow == Out


@pytest.mark.parametrize("kwargs", [dict(addr_width=0, data_width=32),
                                    dict(addr_width=32, data_width=48),
                                    dict(addr_width=32, data_width=32, id_width=0)])
def test_axi4_bad_parameters(kwargs):
    with pytest.raises((TypeError, ValueError)):
        Axi4Signature(**kwargs)


class _Loopback(wiring.Component):
    """A manager port wired straight to a subordinate port (for the port-name check)."""

    def __init__(self):
        super().__init__({"m_axi": Out(Axi4Signature(addr_width=16, data_width=32)),
                          "s_axi": In(Axi4Signature(addr_width=16, data_width=32)),
                          "mem": Out(MemoryPortSignature(addr_width=10, data_width=64))})

    def elaborate(self, platform):
        m = Module()
        wiring.connect(m, wiring.flipped(self.s_axi), wiring.flipped(self.m_axi))
        m.d.comb += self.mem.rsp.ready.eq(1)
        return m


def test_verilog_port_names_bind_with_prefix():
    verilog = elaborate(_Loopback(), name="loopback")
    for name in AXI4_NAMES:
        # cocotbext-axi: AxiBus.from_prefix(dut, "m_axi_") looks up f"m_axi_{'_'}{name}"
        assert f"m_axi__{name}" in verilog and f"s_axi__{name}" in verilog
    assert "mem__req__payload" in verilog and "mem__rsp__ready" in verilog


def test_memory_port_layouts():
    sig = MemoryPortSignature(addr_width=10, data_width=64)
    req = sig.members["req"].signature.members["payload"].shape
    assert {k for k, _ in data.Layout.cast(req)} == {"addr", "write", "data", "strb"}
    assert data.Layout.cast(req)["strb"].shape == 8
    assert sig.members["rsp"].flow == In
