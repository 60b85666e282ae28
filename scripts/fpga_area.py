#!/usr/bin/env python3
"""Which blocks of a board build take the area: a hierarchical Yosys run of the board's tile.

Synthesizes the :class:`~openmaia.fpga.board_tile.BoardTile` of ``openmaia fpga build``
(the board's preset, memory size and UART divisor) with :func:`openmaia.synth.synthesize`,
``flatten=False`` (``-noflatten``: cross-module optimisation is lost, so totals are a little
above the flat run of the build), with :mod:`openmaia.synth`'s defaults (DSPs inferred on ECP5,
not on iCE40) or, with ``--as-build``, the build's options (iCE40: ``-dsp -spram``), and prints per module: instances, LUTs / FFs / DSPs / block RAMs of one instance including its
submodules, and LUTs of all its instances as a share of the whole. Modules deeper than
``--depth`` are folded into their parents. Counting rule: :mod:`openmaia.synth`. Cached in
build/synth.

    .venv/bin/python scripts/fpga_area.py --board icebreaker
    .venv/bin/python scripts/fpga_area.py --board ulx3s --depth 3 --json
"""

import argparse
import json

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", required=True, choices=("icebreaker", "ulx3s"))
    parser.add_argument("--config", default=None)
    parser.add_argument("--hbm-bytes", type=int, default=None)
    parser.add_argument("--depth", type=int, default=2, help="module levels shown (dots)")
    parser.add_argument("--as-build", action="store_true",
                        help="the build's Yosys options (iCE40: -dsp -spram)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
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
