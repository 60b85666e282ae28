#!/usr/bin/env python3
"""Which blocks of a board build take the area.

``--from-build DIR`` (no tool run, seconds): reads the flat netlist ``top.json`` that Yosys wrote
in an ``openmaia fpga build`` directory and charges each LUT4 (ECP5: LUT4, CCU2C as two),
flip-flop, carry, DSP and block RAM to the tile block in its cell name (Yosys names a mapped
cell after the net it drives: ``tile.tile.ttu...`` is the TTU, ``tile.bridge...`` the host
bridge; top-level signals of the tile such as ``counters`` are their own rows), or, for a cell
whose name carries no hierarchy, to the block of the source file in its ``src`` attribute. The
totals equal the build's Yosys counts exactly; the split is by name, so logic Yosys merged
across blocks goes to one of them.

Otherwise: synthesizes the :class:`~openmaia.fpga.board_tile.BoardTile` of ``openmaia fpga build``
(the board's preset, memory size and UART divisor) with :func:`openmaia.synth.synthesize`,
``flatten=False`` (``-noflatten``: cross-module optimisation is lost, so totals are a little
above the flat run of the build), with :mod:`openmaia.synth`'s defaults (DSPs inferred on ECP5,
not on iCE40) or, with ``--as-build``, the build's options (iCE40: ``-dsp -spram``), and prints per module: instances, LUTs / FFs / DSPs / block RAMs of one instance including its
submodules, and LUTs of all its instances as a share of the whole. Modules deeper than
``--depth`` are folded into their parents. Counting rule: :mod:`openmaia.synth`. Cached in
build/synth.

    .venv/bin/python scripts/fpga_area.py --from-build build/fpga/icebreaker-ice40
    .venv/bin/python scripts/fpga_area.py --board icebreaker
    .venv/bin/python scripts/fpga_area.py --board ulx3s --depth 3 --json
"""

import argparse
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

from openmaia.config import get_config
from openmaia.fpga.board import BoardTop, get_board
from openmaia.synth import synthesize


def breakdown(board_name, config_name=None, hbm_bytes=None, depth=2, as_build=False):
    board = get_board(board_name)
    config = get_config(config_name or board.default_config)
    top = BoardTop(board=board, config=config, hbm_bytes=hbm_bytes)   # for the PLL / divisor
    ice40_build = as_build and board.family == "ice40"
    result = synthesize(top.tile, name="board_tile", family=board.family,
                        dsp=True if ice40_build else None, flatten=False,
                        extra="-spram" if ice40_build else "")
    whole = result.modules["board_tile"]["total"]["luts"] or 1
    rows = []
    for name, data in result.modules.items():
        level = name.count(".")
        if not data["instances"] or level > depth:
            continue
        total = data["total"]
        rows.append({"module": name, "instances": data["instances"], **{
            k: total[k] for k in ("luts", "ffs", "dsps", "brams", "carries")},
            "luts_all_instances": total["luts"] * data["instances"],
            "share": round(total["luts"] * data["instances"] / whole, 4)})
    rows.sort(key=lambda r: (-r["luts_all_instances"], r["module"]))
    return {"board": board.name, "config": config.name, "family": board.family,
            "hbm_bytes": top.hbm_bytes, "divisor": top.divisor, "yosys_seconds": result.seconds,
            "flat_counts_of_this_run": {k: getattr(result, k)
                                        for k in ("luts", "ffs", "dsps", "brams", "carries")},
            "modules": rows}


#: Source file (stem) -> tile block, for cells whose name has no hierarchy.
FILE_BLOCK = {"operand_fetch": "ttu", "ttu_engine": "ttu", "ttu": "ttu", "result_writer": "ttu",
              "dot_lanes": "ttu", "dot_engine": "ttu", "fp32": "ttu", "dma": "dma",
              "tcp": "tcp", "tsram": "tsram", "command_fetcher": "fetcher",
              "registers": "registers", "host_bridge": "bridge", "uart": "bridge",
              "onchip": "mem0", "axi_arbiter": "arbiter", "axi_staller": "arbiter",
              "board": "board top"}
_KINDS = {"SB_LUT4": ("luts", 1), "SB_CARRY": ("carries", 1), "SB_MAC16": ("dsps", 1),
          "LUT4": ("luts", 1), "CCU2C": ("luts", 2), "TRELLIS_FF": ("ffs", 1),
          "MULT18X18D": ("dsps", 1), "DP16KD": ("brams", 1), "PDPW16KD": ("brams", 1),
          "SB_SPRAM256KA": ("sprams", 1)}


def _block(name, src, within=None):
    parts = name.split(".")
    if within:
        prefix = ["tile", "tile", *within.split(".")]
        if parts[:len(prefix)] == prefix and len(parts) > len(prefix):
            return re.sub(r"[_$\[].*", "", parts[len(prefix)]) or parts[len(prefix)]
        return "(elsewhere)"
    if parts[:2] == ["tile", "tile"] and len(parts) > 2:
        return re.sub(r"[_$\[].*", "", parts[2]) or parts[2]
    if parts[:2] == ["tile", "bridge"]:
        return "bridge"
    files = re.findall(r"[\w/]+/(\w+)\.py", src)
    return FILE_BLOCK.get(files[0], files[0]) if files else "(no name)"


def flat_breakdown(build_dir, within=None):
    """Per-block counts of a build's flat netlist (see the module docstring); ``within``
    (``"ttu"``, say): the parts of that tile block by their cell names, the rest of the design
    as ``(elsewhere)``."""
    netlist = json.loads((Path(build_dir) / "top.json").read_text())
    blocks = defaultdict(Counter)
    for name, cell in netlist["modules"]["top"]["cells"].items():
        kind = _KINDS.get(cell["type"])
        if cell["type"].startswith(("SB_DFF", "FD1")):
            kind = ("ffs", 1)
        elif cell["type"].startswith("SB_RAM40"):
            kind = ("brams", 1)
        if kind is None:
            continue
        src = cell.get("attributes", {}).get("src", "")
        blocks[_block(name, src, within)][kind[0]] += kind[1]
    total = Counter()
    for counts in blocks.values():
        total.update(counts)
    rows = [{"block": block, **{k: counts[k] for k in ("luts", "ffs", "carries", "dsps",
                                                         "brams", "sprams")},
             "share": round(counts["luts"] / max(1, total["luts"]), 4)}
            for block, counts in blocks.items()]
    rows.sort(key=lambda r: (-r["luts"], r["block"]))
    return {"build_dir": str(build_dir), "total": dict(total), "blocks": rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", choices=("icebreaker", "ulx3s"))
    parser.add_argument("--from-build", metavar="DIR",
                        help="split a finished build's flat netlist instead (no tool run)")
    parser.add_argument("--within", metavar="BLOCK",
                        help="with --from-build: split this tile block (e.g. ttu) further")
    parser.add_argument("--config", default=None)
    parser.add_argument("--hbm-bytes", type=int, default=None)
    parser.add_argument("--depth", type=int, default=2, help="module levels shown (dots)")
    parser.add_argument("--as-build", action="store_true",
                        help="the build's Yosys options (iCE40: -dsp -spram)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.from_build:
        data = flat_breakdown(args.from_build, args.within)
        if args.json:
            print(json.dumps(data, indent=2))
            return
        t = data["total"]
        print("| block | LUTs | FFs | carries | DSPs | block RAMs | share of LUTs |")
        print("|---|---|---|---|---|---|---|")
        for r in data["blocks"]:
            print(f"| {r['block']} | {r['luts']:,} | {r['ffs']:,} | {r['carries']:,} | "
                  f"{r['dsps']} | {r['brams']} | {100 * r['share']:.1f} % |")
        print(f"| total | {t.get('luts', 0):,} | {t.get('ffs', 0):,} | {t.get('carries', 0):,} "
              f"| {t.get('dsps', 0)} | {t.get('brams', 0)} | |")
        return
    if not args.board:
        parser.error("--board or --from-build is required")
    data = breakdown(args.board, args.config, args.hbm_bytes, args.depth, args.as_build)
    if args.json:
        print(json.dumps(data, indent=2))
        return
    print(f"{data['board']} / {data['config']} ({data['family']}), hierarchical Yosys run, "
          f"{data['yosys_seconds']} s; whole tile: {data['flat_counts_of_this_run']}")
    print("| module | instances | LUTs | FFs | DSPs | BRAMs | LUTs, all instances | share |")
    print("|---|---|---|---|---|---|---|---|")
    for r in data["modules"]:
        print(f"| {r['module']} | {r['instances']} | {r['luts']:,} | {r['ffs']:,} | {r['dsps']} "
              f"| {r['brams']} | {r['luts_all_instances']:,} | {100 * r['share']:.1f} % |")


if __name__ == "__main__":
    main()
