#!/usr/bin/env python3
"""Logic depth and size of a configuration's tile SRAM alone, between registers, on ECP5.

The TSRAM with its tile ports (``tile_ports(config)``) goes into a wrapper that registers every
input and every output, so each path starts and ends at a flip-flop; ``openmaia.synth`` maps it
for ECP5 (Yosys, a few minutes, cached) and writes the netlist, and ``logic_depth.py`` ranks its
register-to-register paths in mapped LUT levels. ``--reference`` builds the TSRAM with the
bank-vector form of the arbitration instead (``BankVectorArbiter``, the proof's reference in
verif/tests/test_tsram_arbiter.py, as the TSRAM computed it before 2026-11-28), for the
comparison in docs/tsram.md, "Arbitration logic"::

    .venv/bin/python scripts/tsram_depth.py --config ulx3s-fit
    .venv/bin/python scripts/tsram_depth.py --config ulx3s-fit --reference
"""

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from amaranth.hdl import Module
from amaranth.lib import wiring
from openmaia.config import get_config, preset_names
from openmaia.synth import synthesize
from openmaia.tile import tsram as tsram_module
from openmaia.tile.tsram import TileSram, tile_ports

ROOT = Path(__file__).resolve().parent.parent


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Registered(wiring.Component):
    """``inner`` with a register on every input and every output (same members)."""

    def __init__(self, inner: wiring.Component):
        self.inner = inner
        super().__init__(inner.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self.inner
        for (_, member, outer), (_, _, value) in zip(self.signature.flatten(self),
                                                      inner.signature.flatten(inner)):
            if member.flow == wiring.In:
                m.d.sync += value.eq(outer)
            else:
                m.d.sync += outer.eq(value)
        return m


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="ulx3s-fit", choices=preset_names())
    parser.add_argument("--reference", action="store_true",
                        help="the bank-vector arbitration (the proof's reference)")
    parser.add_argument("--top", type=int, default=3, help="paths to show")
    args = parser.parse_args(argv)
    config = get_config(args.config)
    if args.reference:
        sys.path.insert(0, str(ROOT / "verif" / "tests"))
        reference = _load(ROOT / "verif/tests/test_tsram_arbiter.py", "test_tsram_arbiter")
        tsram_module.TsramArbiter = reference.BankVectorArbiter
    kind = "reference" if args.reference else "arbiter"
    sram = TileSram.from_config(config, ports=tile_ports(config),
                                counter_width=config.counter_bits or 32)
    name = f"tsram_{kind}_{args.config.replace('-', '_')}"
    result = synthesize(Registered(sram), name=name, family="ecp5", extra="-json top.json")
    depth = _load(ROOT / "scripts/logic_depth.py", "logic_depth")
    netlist = json.loads((Path(result.run_dir) / "top.json").read_text())
    rows = depth.report(netlist, top_n=args.top)
    print(f"{args.config} TSRAM ({kind}), ports {tile_ports(config)}, {config.tsram_banks} banks: "
          f"{result.luts:,} LUTs, {result.ffs:,} FFs")
    for row in rows:
        print(f"  {row['levels']:5.1f} mapped levels into {row['end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
