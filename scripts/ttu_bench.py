#!/usr/bin/env python3
"""Tile Tensor Unit performance figures on Verilator: MAC utilization per format pair on
back-to-back tile operations, the FP4 : FP8 throughput ratio, and simulation speed.

    .venv/bin/python scripts/ttu_bench.py                          # default preset, all pairs
    .venv/bin/python scripts/ttu_bench.py --config ulx3s --json
    .venv/bin/python scripts/ttu_bench.py --m 16 --n 32 --k 16 --ops 4 --pairs e4m3*e4m3 e2m1*e2m1

Operands are always available and C is always taken (the TTU alone, not the memory system).
Utilization = MACs done / (peak MACs a cycle of the pair x cycles); "steady" counts the cycles
from the first to the last beat issued, "end to end" from the first command to the last event
(it includes loading the first A panel and draining the last results). Figures go to
docs/ttu.md.
"""

import argparse
import json
import sys
import time

from rich.console import Console
from rich.table import Table

from openmaia.benches.dot_engine import all_pairs, pair_name
from openmaia.config import get_config, preset_names
from openmaia.harness.sim import simulate
from openmaia.numerics.formats import Format
from openmaia.tile.ttu import TileTensorUnit


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="default", choices=preset_names())
    p.add_argument("--m", type=int, help="rows of each operation (default 2 x array rows)")
    p.add_argument("--n", type=int, help="columns of each operation (default 4 x array cols)")
    p.add_argument("--k", type=int, default=16, help="K in blocks (default 16)")
    p.add_argument("--ops", type=int, default=4, help="back-to-back operations per pair")
    p.add_argument("--pairs", nargs="*", help="format pairs like e4m3*e2m1 (default: all)")
    p.add_argument("--panel-blocks", type=int,
                   help="override the preset's ttu_panel_blocks (the longest K the TTU takes)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--verilog", help="reuse this Verilog of the TTU (top module ttu, "
                   "e.g. from `openmaia elaborate ttu --config NAME`) instead of elaborating")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    config = get_config(args.config)
    if args.panel_blocks:
        config = config.replace(ttu_panel_blocks=args.panel_blocks)
    ttu = TileTensorUnit.from_config(config)
    m = args.m or 2 * ttu.rows
    n = args.n or 4 * ttu.cols
    if args.pairs:
        pairs = [tuple(Format(x) for x in s.split("*")) for s in args.pairs]
    else:
        pairs = all_pairs(config.formats)
    params = dict(rows=ttu.rows, cols=ttu.cols, lanes=ttu.lanes, slots=ttu.slots,
                  panel_blocks=ttu.panel_blocks, formats=list(config.format_names),
                  fp4_double_rate=ttu.double_rate, m=m, n=n, k=args.k, ops=args.ops,
                  pairs=[[a.value, b.value] for a, b in pairs])
    t0 = time.perf_counter()
    result = simulate(ttu, bench="openmaia.benches.ttu", name="ttu",
                      params=params, testcase="throughput", seed=args.seed,
                      verilog=open(args.verilog).read() if args.verilog else None)
    total = time.perf_counter() - t0
    rows = json.loads((result.run_dir / "throughput.json").read_text())
    by_pair = {r["pair"]: r for r in rows}
    fp8, fp4 = pair_name(Format.E4M3, Format.E4M3), pair_name(Format.E2M1, Format.E2M1)
    ratio = (by_pair[fp4]["macs_per_cycle"] / by_pair[fp8]["macs_per_cycle"]
             if fp8 in by_pair and fp4 in by_pair else None)
    cycles = sum(r["cycles"] for r in rows)
    wall = sum(r["wall_seconds"] for r in rows)
    summary = {"config": config.name, "array": f"{ttu.rows}x{ttu.cols}x{ttu.lanes}",
               "m": m, "n": n, "k_blocks": args.k, "ops": args.ops, "pairs": rows,
               "fp4_fp8_ratio": ratio, "sim_cycles_per_second": cycles / wall,
               "build_seconds": result.build_seconds, "build_cached": result.build_cached,
               "total_seconds": total}
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    con = Console()
    t = Table(title=f"TTU {summary['array']} ({config.name}): {args.ops} back-to-back ops of "
                    f"M={m} N={n} K={args.k} blocks")
    for col in ("pair", "peak MAC/cyc", "MAC/cyc", "steady util", "end-to-end util",
                "stall in", "stall out"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(r["pair"], str(r["peak_macs_per_cycle"]), f"{r['macs_per_cycle']:.1f}",
                  f"{100 * r['steady_utilization']:.2f} %", f"{100 * r['utilization']:.2f} %",
                  str(r["stall_input"]), str(r["stall_output"]))
    con.print(t)
    if ratio is not None:
        con.print(f"FP4 x FP4 : FP8 x FP8 throughput ratio: {ratio:.3f}")
    con.print(f"Verilator speed (cocotb driving every stream): {cycles / wall:,.0f} cycles/s; "
              f"build {result.build_seconds:.0f} s{' (cached)' if result.build_cached else ''}, "
              f"total {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
