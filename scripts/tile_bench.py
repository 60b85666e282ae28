"""End-to-end figures of the tile (issue 6): GEMMs compiled by the SDK and run on the tile top
under Verilator (the ``rtl`` backend), operands starting and results ending in HBM.

Prints per workload: cycles, MAC utilization (MACs / (cycles x peak MACs a cycle of the pair)),
the engines' busy shares, HBM bytes moved by the DMA and the bandwidth they took of the HBM
peak, the arithmetic intensity against the tile's balance, and the simulator's speed (cycles per
wall second of the run, build excluded). Every result is checked bit-exact against
``mx_matmul``.

Usage: .venv/bin/python scripts/tile_bench.py [--config small] [--suite gemm|gemv|all|target]
       [--shapes N] [--kind gemm|gemv] [--hbm-mib MIB] [--json OUT.json]

``--suite target`` (not part of ``all``) is the end-to-end 90 % target of issue 6 on a tile whose
balance B is large (``default``): one GEMM of 64 x 64 array tiles and K = 1,024 (512 x 512 x 1024
on ``default``), whose intensity is at least 2B for every pair, and a GEMV whose weights (2 MiB
of FP8 on ``default``) make its fixed costs small beside the streaming; on ``default`` it needs
``--hbm-mib 4`` (a tile built with 4 MiB of modelled HBM: about 13 minutes of elaboration and
15 of Verilator build on the 2-core machine, both cached afterwards).
"""

import argparse
import json
import sys
import time

import numpy as np
from openmaia.config import get_config
from openmaia.numerics import mx_matmul, quantize_mx
from openmaia.sdk.backend import run_compiled
from openmaia.sdk.compiler import compile_gemm
from openmaia.sdk.report import peak_hbm_bytes_per_cycle
from openmaia.sdk.rtl import RING_BYTES_PER_ENTRY, RtlBackend

PAIRS = (("e4m3", "e4m3"), ("e4m3", "e2m1"), ("e2m1", "e2m1"))
RING_ENTRIES = 256


def suites(config):
    """(name, m, n, k) per suite, sized from the array: GEMMs of 16 to 32 array tiles a side
    with K = 8 blocks (intensity >= 2B on ``small``, not on ``default``, whose 256 KiB of
    modelled HBM holds nothing bigger: docs/tile.md); a GEMV (batch 1), N = 64 array widths."""
    r, c = config.array_rows, config.array_cols
    gemm = [("gemm", 16 * r, 16 * c, 8 * 32), ("gemm", 32 * r, 16 * c, 8 * 32),
            ("gemm", 32 * r, 32 * c, 8 * 32)]
    gemv = [("gemv", 1, 64 * c, 8 * 32)]
    target = [("gemm", 64 * r, 64 * c, 32 * 32), ("gemv", 1, 256 * c, 32 * 32)]
    return {"gemm": gemm, "gemv": gemv, "target": target}


def run_one(tile, config, kind, m, n, k, fa, fb, rng):
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    qa, qb = quantize_mx(a, fa, axis=1), quantize_mx(b, fb, axis=0)
    compiled = compile_gemm(config, m=m, n=n, k=k, fmt_a=fa, fmt_b=fb)
    start = time.monotonic()
    result, out = run_compiled(tile, compiled, {"A": qa, "B": qb})
    wall = time.monotonic() - start
    exact = result.ok and np.array_equal(out["C"].view(np.uint32),
                                         mx_matmul(qa, qb).view(np.uint32))
    c = result.counters
    cycles = c["cycles"]
    peak = config.macs_per_cycle(fa, fb)
    hbm_bytes = c["dma_bytes_read"] + c["dma_bytes_written"]
    hbm_peak = peak_hbm_bytes_per_cycle(config)
    return {
        "kind": kind, "m": m, "n": n, "k": k, "pair": f"{fa} x {fb}", "exact": bool(exact),
        "state": result.state, "cycles": cycles, "macs": c["macs"],
        "mac_utilization": c["macs"] / (cycles * peak),
        "ttu_busy": c["ttu_busy"] / cycles, "dma_busy": c["dma_busy"] / cycles,
        "tvp_busy": c["tvp_busy"] / cycles, "tcp_wait": c["tcp_wait_cycles"] / cycles,
        "hbm_bytes": hbm_bytes, "hbm_fraction": hbm_bytes / (cycles * hbm_peak),
        "intensity": c["macs"] / hbm_bytes, "balance": peak / hbm_peak,
        "commands": len(compiled.program.commands), "sim_cycles_per_s": cycles / wall,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small")
    parser.add_argument("--suite", choices=("gemm", "gemv", "all", "target"), default="all")
    parser.add_argument("--hbm-mib", type=float, default=None,
                        help="modelled HBM of the tile in MiB (default: the backend's)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shapes", type=int, default=None,
                        help="run only the first N shapes of each suite")
    parser.add_argument("--kind", choices=("gemm", "gemv"), default=None,
                        help="run only this kind of workload of the chosen suite")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    config = get_config(args.config)
    rng = np.random.default_rng(args.seed)
    chosen = suites(config)
    shapes = [s for name, rows in chosen.items()
              if args.suite == name or (args.suite == "all" and name != "target")
              for s in rows[:args.shapes] if args.kind in (None, s[0])]
    rows = []
    # --hbm-mib is the tile's modelled HBM; the command ring takes its top.
    hbm_bytes = None if args.hbm_mib is None else \
        int(args.hbm_mib * (1 << 20)) - RING_ENTRIES * RING_BYTES_PER_ENTRY
    with RtlBackend(config, seed=args.seed, hbm_bytes=hbm_bytes,
                    ring_entries=RING_ENTRIES) as tile:
        tile.read(0, 64)                     # start (and build) the simulation before timing
        for kind, m, n, k in shapes:
            for fa, fb in PAIRS:
                if not {fa, fb} <= set(config.format_names):
                    continue
                row = run_one(tile, config, kind, m, n, k, fa, fb, rng)
                rows.append(row)
                print(f"{kind} {m} x {n} x {k} {row['pair']}: {row['cycles']} cycles, MAC util "
                      f"{100 * row['mac_utilization']:.1f} %, TTU busy "
                      f"{100 * row['ttu_busy']:.1f} %, DMA busy {100 * row['dma_busy']:.1f} %, "
                      f"HBM {row['hbm_bytes']} B = {100 * row['hbm_fraction']:.1f} % of peak, "
                      f"intensity {row['intensity']:.2f} MAC/B (B = {row['balance']:.0f}), "
                      f"{row['sim_cycles_per_s']:.0f} cycles/s, exact {row['exact']}",
                      flush=True)
    for shape in sorted({(r["m"], r["n"], r["k"]) for r in rows if r["kind"] == "gemv"}):
        gemv = {r["pair"]: r for r in rows if r["kind"] == "gemv"
                and (r["m"], r["n"], r["k"]) == shape}
        if "e4m3 x e4m3" in gemv and "e4m3 x e2m1" in gemv:
            fp8, fp4 = gemv["e4m3 x e4m3"], gemv["e4m3 x e2m1"]
            print(f"GEMV {' x '.join(map(str, shape))}: speed-up of MXFP4 weights over MXFP8 "
                  f"{fp8['cycles'] / fp4['cycles']:.2f} (ratio of HBM bytes moved "
                  f"{fp8['hbm_bytes'] / fp4['hbm_bytes']:.2f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": config.name, "rows": rows}, f, indent=2)
    return 0 if all(r["exact"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
