#!/usr/bin/env python3
"""Bytes per cycle each link of a tile's data path must carry for the TTU to run at its peak
(docs/architecture.md), per format pair, from the configuration.

    .venv/bin/python scripts/dataflow_table.py [--config default] [--k 16] [--n-tiles 1]

Memory bytes count the packed layout (docs/layout.md): FP8 / INT8 1 byte an element, FP6 0.75,
FP4 0.5, plus one E8M0 scale byte per 32-element block row. A is the stationary operand: its
panel is read once per M tile and reused over ``--n-tiles`` N tiles. C: one FP32 per output
once per ``k`` blocks.
"""

import argparse

from openmaia.benches.dot_engine import all_pairs, pair_name
from openmaia.config import get_config, preset_names
from openmaia.numerics.formats import BLOCK_SIZE, Format


def link_bytes(config, fa, fb, *, k_blocks, n_tiles):
    rows, cols, lanes = config.array_rows, config.array_cols, config.lanes
    fp4 = fa is Format.E2M1 and fb is Format.E2M1
    elems = lanes * (2 if fp4 else 1)               # elements of K a cycle per row / column
    b = cols * elems * (fb.spec.bits / 8) + cols * elems / BLOCK_SIZE
    a = (rows * elems * (fa.spec.bits / 8) + rows * elems / BLOCK_SIZE) / n_tiles
    cycles_per_tile = k_blocks * BLOCK_SIZE / elems
    c = rows * cols * 4 / cycles_per_tile
    return {"pair": pair_name(fa, fb), "macs": rows * cols * elems, "a": a, "b": b, "c": c,
            "total": a + b + c}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="default", choices=preset_names())
    p.add_argument("--k", type=int, default=16, help="K in blocks")
    p.add_argument("--n-tiles", type=int, default=1, help="N tiles sharing one A panel")
    args = p.parse_args()
    config = get_config(args.config)
    print(f"{config.name}: TTU {config.array_rows}x{config.array_cols}x{config.lanes}, "
          f"TSRAM {config.tsram_banks} banks x {config.tsram_bank_bytes} B = "
          f"{config.tsram_banks * config.tsram_bank_bytes} B/cycle, K = {args.k} blocks, "
          f"{args.n_tiles} N tile(s) per A panel")
    print("| pair | MACs/cycle | A B/cycle | B B/cycle | C B/cycle | TTU total B/cycle |")
    print("|---|---:|---:|---:|---:|---:|")
    for fa, fb in all_pairs(config.formats):
        r = link_bytes(config, fa, fb, k_blocks=args.k, n_tiles=args.n_tiles)
        print(f"| {r['pair']} | {r['macs']:,} | {r['a']:.1f} | {r['b']:.1f} | {r['c']:.1f} | "
              f"{r['total']:.1f} |")


if __name__ == "__main__":
    main()
