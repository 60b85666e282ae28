"""HBM3 controller model figures: every mapping x queue depth x pattern, next to the limits.

    .venv/bin/python scripts/hbm_bench.py [--requests N] [--depths 32 256]
        [--mappings RoBaRaCoCh MOP4CLXOR] [--patterns sequential random tile] [--json FILE]

Reads only (the brief's analytic limits are for reads). One Verilator build per mapping x queue
depth (timing-only model, 512 MiB address range); the three traces run on it one after another
with a reset in between. Prints a markdown table (the one in docs/hbm.md) and optionally JSON.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from openmaia.hbm import traces
from openmaia.hbm.bench import ANALYTIC_LIMITS, run_benches

LIMIT = {"sequential": ANALYTIC_LIMITS["sequential"], "random": ANALYTIC_LIMITS["random"],
         "tile": ANALYTIC_LIMITS["sequential"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=8000,
                    help="requests a trace (the sequential trace gets twice as many, so that "
                         "its window spans many refresh intervals)")
    ap.add_argument("--depths", type=int, nargs="+", default=[32, 256])
    ap.add_argument("--mappings", nargs="+", default=["RoBaRaCoCh", "MOP4CLXOR"])
    ap.add_argument("--patterns", nargs="+", default=list(traces.PATTERNS))
    ap.add_argument("--preset", default="HBM3_6400")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="hbm-bench-"))
    paths = []
    for pattern in args.patterns:
        path = tmp / f"{pattern}.trace"
        count = 2 * args.requests if pattern == "sequential" else args.requests
        traces.write_trace(path, traces.generate(pattern, count, seed=args.seed))
        paths.append(path)
    rows = []
    for mapping in args.mappings:
        for depth in args.depths:
            start = time.monotonic()
            results = run_benches(paths, mapping=mapping, queue_depth=depth,
                                  preset=args.preset, seed=args.seed)
            for pattern, r in zip(args.patterns, results):
                r["pattern"] = pattern
                r["limit"] = LIMIT[pattern]
                rows.append(r)
            print(f"# {mapping} q{depth}: {time.monotonic() - start:.0f} s (build "
                  f"{results[0]['build_seconds']} s, simulation {results[0]['sim_seconds']} s, "
                  f"{results[0]['cycles_per_second']} cycles/s)", file=sys.stderr, flush=True)
    header = ("| mapping | queue | pattern | bandwidth | limit | latency avg | p50 | p99 "
              "| row-hit rate | activates | refreshes | cycles | violations |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in rows:
        print(f"| {r['mapping']} | {r['queue_depth']} | {r['pattern']} | {r['bandwidth']:.3f} "
              f"| {r['limit']:.2f} | {r['latency_avg']} | {r['latency_p50']} "
              f"| {r['latency_p99']} | {r['row_hit_rate']:.3f} | {r['activates']} "
              f"| {r['refreshes']} | {r['cycles']} | {r['violations']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    bad = [r for r in rows if r["bandwidth"] > r["limit"] or r["violations"] or not r["passed"]]
    for r in bad:
        print(f"FAIL: {r['mapping']} q{r['queue_depth']} {r['pattern']}: bandwidth "
              f"{r['bandwidth']} (limit {r['limit']}), {r['violations']} violations, "
              f"passed {r['passed']}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
