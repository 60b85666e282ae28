#!/usr/bin/env python3
"""TTU with its memory side (TileTensorEngine on a real TileSram) on Verilator: MAC utilization
per format pair on back-to-back tile ops whose operands and results live in the tile SRAM.

    .venv/bin/python scripts/ttu_engine_bench.py --config small
    .venv/bin/python scripts/ttu_engine_bench.py --config default --pairs e4m3*e4m3 e2m1*e2m1

Unlike scripts/ttu_bench.py (operands always available), every operand byte here is read from
the TSRAM by the operand fetchers and every C row written back by the result writer, through
the SRAM's banks and arbitration. "steady" counts the MACs done between the first op's event and the last
op's (the first panel load and the last drain excluded); "end to end" from the first
command to the last event. Figures go to docs/ttu.md.
"""

import argparse
import json
import sys
import time

from rich.console import Console
from rich.table import Table

from openmaia.benches.dot_engine import all_pairs
from openmaia.benches.ttu_engine import EngineWithTileSram
from openmaia.config import get_config, preset_names
from openmaia.harness.sim import simulate
from openmaia.numerics.formats import Format


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="small", choices=preset_names())
    p.add_argument("--m", type=int, help="rows of each op (default: array rows)")
    p.add_argument("--n", type=int, help="columns of each op (default 4 x array cols)")
    p.add_argument("--k", type=int, help="K in blocks (default: the preset's panel, at most 16)")
    p.add_argument("--ops", type=int, default=4, help="back-to-back ops per pair")
    p.add_argument("--pairs", nargs="*", help="format pairs like e4m3*e2m1 (default: all)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    config = get_config(args.config)
    top = EngineWithTileSram(config)
    m = args.m or config.array_rows
    n = args.n or 4 * config.array_cols
    k = args.k or min(16, config.ttu_panel_blocks)
    pairs = ([tuple(Format(x) for x in s.split("*")) for s in args.pairs] if args.pairs
             else all_pairs(config.formats))
    params = dict(rows=config.array_rows, cols=config.array_cols, lanes=config.lanes,
                  slots=config.acc_depth, panel_blocks=config.ttu_panel_blocks,
                  formats=list(config.format_names), tsram_bytes=config.tsram_bytes,
                  host_bytes=top.host_bytes, host_addr_bits=top.host.signature.addr_width,
                  m=m, n=n, k=k, ops=args.ops, pairs=[[a.value, b.value] for a, b in pairs])
    t0 = time.perf_counter()
    result = simulate(top, bench="openmaia.benches.ttu_engine", name=f"ttu_engine_{config.name}",
                      params=params, testcase="throughput", seed=args.seed)
    total = time.perf_counter() - t0
    rows = json.loads((result.run_dir / "throughput.json").read_text())
    cycles = sum(r["cycles"] for r in rows)
    wall = sum(r["wall_seconds"] for r in rows)
    summary = {"config": config.name, "m": m, "n": n, "k_blocks": k, "ops": args.ops,
               "port_bytes": top.host_bytes, "pairs": rows,
               "sim_cycles_per_second": cycles / wall, "build_seconds": result.build_seconds,
               "build_cached": result.build_cached, "total_seconds": total}
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    con = Console(width=130)
    t = Table(title=f"TTU + fetchers + TSRAM ({config.name}, {config.array_rows}x"
                    f"{config.array_cols}x{config.lanes}, {top.host_bytes}-byte operand ports): "
                    f"{args.ops} back-to-back ops of M={m} N={n} K={k} blocks")
    for col in ("pair", "peak MAC/cyc", "steady util", "end-to-end util", "TTU stall in",
                "A fetch stall", "B fetch stall"):
        t.add_column(col, justify="right")
    for r in rows:
        steady = r["steady_utilization"]
        t.add_row(r["pair"], str(r["peak_macs_per_cycle"]),
                  "-" if steady is None else f"{100 * steady:.2f} %",
                  f"{100 * r['utilization']:.2f} %", str(r["ttu_stall_input"]),
                  str(r["a_stall_input"]), str(r["b_stall_input"]))
    con.print(t)
    con.print(f"Verilator speed: {cycles / wall:,.0f} cycles/s; build {result.build_seconds:.0f} s"
              f"{' (cached)' if result.build_cached else ''}, total {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
