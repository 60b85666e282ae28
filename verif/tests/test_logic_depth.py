"""scripts/logic_depth.py: the deepest register-to-register path of a netlist and the blocks it
crosses, on small hand-built ECP5 netlists whose answers are known."""

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def depth(load_script):
    return load_script("logic_depth")


def _netlist(cells):
    """``cells``: name -> (type, {port: (direction, [bits])})."""
    return {"modules": {"top": {"netnames": {}, "cells": {
        name: {"type": kind,
               "port_directions": {p: d for p, (d, _) in ports.items()},
               "connections": {p: bits for p, (_, bits) in ports.items()}}
        for name, (kind, ports) in cells.items()}}}}


def _ff(d, q):
    return ("TRELLIS_FF", {"CLK": ("input", [1]), "DI": ("input", [d]), "Q": ("output", [q])})


def _lut(a, z, b=None):
    ports = {"A": ("input", [a]), "Z": ("output", [z])}
    if b is not None:
        ports["B"] = ("input", [b])
    return ("LUT4", ports)


def _chain_netlist():
    # tile.tile.dma: ff_a -> 3 LUTs -> tile.tile.tcp: 2 LUTs -> ff_b (5 levels, dma then tcp);
    # a short path ff_a -> 1 LUT -> ff_c; a multiplier path ff_a -> DSP -> LUT -> ff_d (7).
    return _netlist({
        "tile.tile.dma.src_TRELLIS_FF_Q": _ff(10, 11),
        "tile.tile.dma.walk_LUT4_Z": _lut(11, 12),
        "tile.tile.dma.walk_LUT4_Z_1": _lut(12, 13),
        "tile.tile.dma.check.ok_LUT4_Z": _lut(13, 14),
        "tile.tile.tcp.status_LUT4_Z": _lut(14, 15, b=11),
        "tile.tile.tcp.status_LUT4_Z_1": _lut(15, 16),
        "tile.tile.tcp.status_TRELLIS_FF_Q": _ff(16, 17),
        "tile.tile.ttu.x_LUT4_Z": _lut(11, 20),
        "tile.tile.ttu.x_TRELLIS_FF_Q": _ff(20, 21),
        "tile.tile.tvp.mul_MULT18X18D_P": ("MULT18X18D", {"A0": ("input", [11]),
                                                         "P0": ("output", [30])}),
        "tile.tile.tvp.round_LUT4_Z": _lut(30, 31),
        "tile.tile.tvp.round_TRELLIS_FF_Q": _ff(31, 32),
    })


def test_block_names(depth):
    assert depth.block_of("tile.tile.tvp.qbuf.storage.0.2_DO_LUT4_B_Z") == "tvp.qbuf"
    assert depth.block_of("tile.tile.tvp.piece_sent_LUT4_A_Z_PFUMX_BLUT_Z") == "tvp.piece_sent"
    assert depth.block_of("tile.tile.dma.tsram_stall_cycles$217_TRELLIS_FF_Q_DI") == \
        "dma.tsram_stall_cycles"
    assert depth.block_of("tile.tile.ttu.fetch_b.tags.r_rdy_LUT4_B_Z", depth=3) == \
        "ttu.fetch_b.tags"
    assert depth.block_of("tile.bridge.state_LUT4_Z") == "tile.bridge"


def test_deepest_paths_and_their_blocks(depth):
    rows = depth.report(_chain_netlist(), top_n=10)
    assert [(r["levels"], r["end_block"]) for r in rows] == \
        [(7.0, "tvp.round"), (5.0, "tcp.status"), (1.0, "ttu.x")]
    assert rows[1]["blocks"] == [["dma.walk", 2.0], ["dma.check", 1.0], ["tcp.status", 2.0]]
    assert [name for _, name in rows[0]["cells"]] == ["tile.tile.tvp.mul_MULT18X18D_P",
                                                      "tile.tile.tvp.round_LUT4_Z"]


def test_top_module_of_a_synthesis_netlist(depth):
    # an openmaia.synth netlist: the top is the module Yosys marked, among its submodules
    netlist = _chain_netlist()
    marked = {"attributes": {"top": f"{1:032b}"}}
    top = netlist["modules"].pop("top") | marked
    netlist["modules"].update(tsram_new=top, helper={"cells": {}, "attributes": {}})
    assert depth.top_module(netlist) == "tsram_new"
    assert [r["levels"] for r in depth.report(netlist)] == [7.0, 5.0, 1.0]
    del netlist["modules"]["tsram_new"]["attributes"]
    with pytest.raises(ValueError, match="no single top module"):
        depth.top_module(netlist)


def test_carry_chains_are_walked_without_recursion(depth):
    # 5,000 LUTs in a row: deeper than Python's recursion limit
    cells = {"tile.tile.a.src_TRELLIS_FF_Q": _ff(2, 3)}
    for n in range(5000):
        cells[f"tile.tile.a.chain_LUT4_Z_{n}"] = _lut(3 + n, 4 + n)
    cells["tile.tile.a.dst_TRELLIS_FF_Q"] = _ff(5003, 9999)
    (row,) = depth.report(_netlist(cells), top_n=1)
    assert row["levels"] == 5000.0 and row["end_block"] == "a.dst"


def test_combinational_loop_terminates(depth):
    cells = {"tile.tile.a.src_TRELLIS_FF_Q": _ff(2, 3),
             "tile.tile.a.l0_LUT4_Z": _lut(3, 4, b=5),
             "tile.tile.a.l1_LUT4_Z": _lut(4, 5),
             "tile.tile.a.dst_TRELLIS_FF_Q": _ff(5, 6)}
    rows = depth.report(_netlist(cells), top_n=5)
    assert rows and rows[0]["levels"] >= 2.0


def test_cli(depth, tmp_path, capsys):
    (tmp_path / "top.json").write_text(json.dumps(_chain_netlist()))
    assert depth.main(["--from-build", str(tmp_path), "--top", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["levels"] for r in rows] == [7.0, 5.0]
    assert depth.main([str(tmp_path / "top.json"), "--top", "1", "--cells"]) == 0
    out = capsys.readouterr().out
    assert "7.0 levels into tvp.round" in out and "MULT18X18D" in out


def test_ice40_cells(depth):
    # SB_DFFE -> SB_LUT4 -> SB_CARRY -> SB_LUT4 -> SB_DFFE: 2.25 levels; the enable input ends a
    # path as well as D
    cells = {
        "tile.tile.dma.a_SB_DFFE_Q": ("SB_DFFE", {"C": ("input", [1]), "E": ("input", [7]),
                                                  "D": ("input", [2]), "Q": ("output", [3])}),
        "tile.tile.dma.x_SB_LUT4_O": ("SB_LUT4", {"I0": ("input", [3]), "O": ("output", [4])}),
        "tile.tile.dma.c_SB_CARRY_CO": ("SB_CARRY", {"CI": ("input", [4]),
                                                     "CO": ("output", [5])}),
        "tile.tile.tcp.y_SB_LUT4_O": ("SB_LUT4", {"I0": ("input", [5]), "O": ("output", [6])}),
        "tile.tile.tcp.b_SB_DFFE_Q": ("SB_DFFE", {"C": ("input", [1]), "E": ("input", [3]),
                                                  "D": ("input", [6]), "Q": ("output", [8])}),
    }
    rows = depth.report(_netlist(cells), top_n=5)
    assert rows[0]["levels"] == 2.25 and rows[0]["end_block"] == "tcp.b"
    assert rows[0]["blocks"] == [["dma.x", 1.0], ["dma.c", 0.25], ["tcp.y", 1.0]]


def test_rtl_mode_names_source_lines(depth, tmp_path):
    """``--rtl``: a real Amaranth design through Yosys ``proc; flatten``; the deepest path is
    the two adders of one line, charged to that line."""
    from amaranth.back import rtlil
    from amaranth.hdl import Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import Out

    class Chain(wiring.Component):
        c: Out(16)

        def elaborate(self, platform):
            m = Module()
            a, b = Signal(16), Signal(16)
            m.d.sync += a.eq(a + 1)
            m.d.sync += b.eq(a + a + a)                    # the deepest: two adders
            m.d.sync += self.c.eq(b ^ 1)
            return m

    (tmp_path / "top.il").write_text(rtlil.convert(Chain(), name="top"))
    netlist = depth.rtl_netlist(tmp_path / "top.il")
    rows = depth.report(netlist, top_n=3, rtl=True)
    lines = Path(__file__).read_text().splitlines()
    adders = next(n for n, text in enumerate(lines, 1) if "the deepest: two adders" in text)
    register = next(n for n, text in enumerate(lines, 1) if "a, b = Signal(16)" in text)
    here = Path(__file__)
    # two adders of 2 levels and the reset mux of the synchronous domain, into b's register
    assert rows[0]["levels"] == 5.0 and rows[0]["end_block"] == f"{here}:{register}"
    assert rows[0]["cells"] == [["$add", f"{here}:{adders}"], ["$add", f"{here}:{adders}"],
                                ["$mux", "?"]]
    assert rows[0]["blocks"] == [[str(here), 5.0]]
