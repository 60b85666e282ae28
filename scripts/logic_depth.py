#!/usr/bin/env python3
"""The deepest register-to-register paths of a board build, in weighted logic levels, by block.

Reads the flat ECP5 or iCE40 netlist ``top.json`` that Yosys wrote in an ``openmaia fpga build``
directory (no tool run; about a minute for a 90 MB netlist) and walks every combinational cone
back from each flip-flop or block-RAM input. A path's depth is the sum of its cells' weights
(:data:`WEIGHTS`: a LUT4 is one level, the slice muxes that widen LUTs and a carry cell a
fraction, a DSP multiplier several), so it ranks paths the way their delay does before any
placement, without routing: which blocks a path crosses is what to fix first. nextpnr's timing
report after routing names the same paths with real delays, but needs the whole place and route.

Each path is printed as the chain of blocks it crosses (the cell names' hierarchy, ``tvp.qbuf``
for ``tile.tile.tvp.qbuf...``) with the levels spent in each, deepest first, one line per
distinct chain::

    .venv/bin/python scripts/logic_depth.py --from-build build/fpga/ulx3s-ulx3s --top 10
    .venv/bin/python scripts/logic_depth.py path/to/top.json --cells --json
"""

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

#: Levels a cell of each type adds to a path (other combinational types: 1). ECP5 and iCE40.
WEIGHTS = {"LUT4": 1.0, "PFUMX": 0.3, "L6MUX21": 0.3, "CCU2C": 0.25, "MULT18X18D": 6.0,
           "ALU54B": 6.0, "TRELLIS_DPR16X4": 1.5,
           "SB_LUT4": 1.0, "SB_CARRY": 0.25, "SB_MAC16": 6.0}
#: Cell types whose outputs start a path and whose inputs end one.
SEQUENTIAL = frozenset({"TRELLIS_FF", "DP16KD", "EHXPLLL", "TRELLIS_IO", "DCCA",
                        "SB_RAM40_4K", "SB_SPRAM256KA", "SB_IO", "SB_GB", "SB_PLL40_CORE",
                        "SB_PLL40_PAD"})
_SEQUENTIAL_PREFIXES = ("SB_DFF",)
#: Inputs of sequential cells that end a path (all inputs but the clock).
_CLOCK_PORTS = frozenset({"CLK", "CLKA", "CLKB", "C", "RCLK", "WCLK", "CLOCK"})
#: LUT-RAM inputs that are written on the clock edge, not read through.
_RAM_WRITE_PORTS = ("DI", "WAD", "WRE", "WCK")
_CELL_SUFFIX = re.compile(r"(_(TRELLIS_|LUT4|CCU2C|PFUMX|L6MUX21|MULT18X18D|DP16KD|SB_)|\$).*")


def _sequential(kind: str) -> bool:
    return kind in SEQUENTIAL or kind.startswith(_SEQUENTIAL_PREFIXES)


def block_of(cell_name: str, depth: int = 2) -> str:
    """The block a mapped cell belongs to, from the net name Yosys gave it:
    ``tile.tile.tvp.qbuf.storage...`` -> ``tvp.qbuf`` (``depth`` components below the tile)."""
    name = cell_name[len("tile.tile."):] if cell_name.startswith("tile.tile.") else cell_name
    parts = []
    for part in name.split(".")[:depth]:
        stem = _CELL_SUFFIX.sub("", part)
        if stem:
            parts.append(stem)
        if stem != part:          # the rest is the mapped cell's own name
            break
    return ".".join(parts) or "(top)"


def longest_paths(netlist: dict, *, top: str = "top") -> list:
    """``[(levels, end_cell, end_port, [cells from start to end])]`` for every path end,
    deepest first."""
    module = netlist["modules"][top]
    cells = module["cells"]
    driver, inputs = {}, defaultdict(list)
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            direction = cell["port_directions"].get(port)
            for bit in bits:
                if not isinstance(bit, int):
                    continue
                if direction == "output":
                    driver[bit] = name
                elif direction == "input" and not (cell["type"] == "TRELLIS_DPR16X4"
                                                   and port.startswith(_RAM_WRITE_PORTS)):
                    inputs[name].append(bit)

    depth = {}                       # cell -> (levels, the input cell on its deepest path)

    def visit(root):
        """Fill ``depth`` for ``root``'s cone, iteratively (carry chains are thousands deep)."""
        open_ = {root}
        stack = [root]
        while stack:
            name = stack[-1]
            sources = [src for bit in inputs[name] if (src := driver.get(bit)) is not None
                       and not _sequential(cells[src]["type"])]
            pending = [src for src in sources if src not in depth and src not in open_]
            if pending:
                open_.update(pending)
                stack.extend(pending)
                continue
            best, via = 0.0, None
            for src in sources:                 # a source still open closes a loop: it adds 0
                if src in depth and depth[src][0] > best:
                    best, via = depth[src][0], src
            depth[name] = (best + WEIGHTS.get(cells[name]["type"], 1.0), via)
            open_.discard(name)
            stack.pop()

    ends = []
    for name, cell in cells.items():
        if not _sequential(cell["type"]):
            continue
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) != "input" or port in _CLOCK_PORTS:
                continue
            for bit in bits:
                src = driver.get(bit) if isinstance(bit, int) else None
                if src is None or _sequential(cells[src]["type"]):
                    continue
                if src not in depth:
                    visit(src)
                ends.append((depth[src][0], name, port, src))
    ends.sort(key=lambda e: -e[0])
    result = []
    for levels, name, port, src in ends:
        chain = []
        while src is not None:
            chain.append(src)
            src = depth[src][1]
        result.append((levels, name, port, chain[::-1]))
    return result


def by_block(cells: dict, chain: list, depth: int = 2) -> list:
    """``[[block, levels], ...]`` along ``chain``, consecutive cells of one block merged."""
    out = []
    for name in chain:
        block = block_of(name, depth)
        if not out or out[-1][0] != block:
            out.append([block, 0.0])
        out[-1][1] += WEIGHTS.get(cells[name]["type"], 1.0)
    return out


def report(netlist: dict, *, top_n: int = 10, depth: int = 2) -> list:
    """The ``top_n`` deepest paths whose block chains differ, as plain data."""
    cells = netlist["modules"]["top"]["cells"]
    rows, seen = [], set()
    for levels, end, port, chain in longest_paths(netlist):
        blocks = by_block(cells, chain, depth)
        key = tuple(b for b, _ in blocks) + (block_of(end, depth),)
        if key in seen:
            continue
        seen.add(key)
        rows.append({"levels": round(levels, 2), "end": end, "end_port": port,
                     "end_block": block_of(end, depth),
                     "blocks": [[b, round(w, 2)] for b, w in blocks],
                     "cells": [[cells[c]["type"], c] for c in chain]})
        if len(rows) == top_n:
            break
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("netlist", nargs="?", help="a flat Yosys JSON netlist (ECP5 or iCE40)")
    parser.add_argument("--from-build", metavar="DIR", help="an openmaia fpga build directory")
    parser.add_argument("--top", type=int, default=10, help="paths to show (distinct chains)")
    parser.add_argument("--depth", type=int, default=2, help="hierarchy levels a block name keeps")
    parser.add_argument("--cells", action="store_true", help="list every cell of each path")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    path = Path(args.from_build) / "top.json" if args.from_build else args.netlist
    if path is None:
        parser.error("give a netlist or --from-build DIR")
    rows = report(json.loads(Path(path).read_text()), top_n=args.top, depth=args.depth)
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
        return 0
    for row in rows:
        chain = " > ".join(f"{b} {w:g}" for b, w in row["blocks"])
        print(f"{row['levels']:6.1f} levels into {row['end_block']} ({row['end']}.{row['end_port']})")
        print(f"       {chain}")
        if args.cells:
            for kind, name in row["cells"]:
                print(f"         {kind:12s} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
