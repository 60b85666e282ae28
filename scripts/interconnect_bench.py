"""Interleaver throughput: sequential 4 KiB reads and writes through HbmInterleaver, bytes a cycle.

    .venv/bin/python scripts/interconnect_bench.py [--granules 64 256] [--count 64]
        [--no-hbm] [--no-rams] [--seed N] [--json FILE]

Targets (the `default` preset's 256-bit AXI, 32 B a cycle at most on the manager side):

* ``rams``: 2 pseudo-channels, each a cocotbext-axi AxiRam (one beat a cycle each, no
  pauses): the interleaver's own overhead;
* ``hbm``: 2 pseudo-channels of the real HbmController (`default` preset: HBM3_6400,
  MOP4CLXOR, queue 32, timing-only store), 16 B a cycle peak each, so only both channels
  streaming at once can fill the 32 B bus;
* ``hbm-1ch``: the same controller with one pseudo-channel and no interleaver (the baseline).

Each run: ``count`` sequential 4 KiB writes, then ``count`` 4 KiB reads (all queued at once);
bytes a cycle from the first address handshake to the last B / R beat. Prints a markdown table.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from openmaia.benches.hbm_interleaver import InterleavedHbm
from openmaia.config import PRESETS
from openmaia.harness import simulate
from openmaia.hbm.controller import HbmController
from openmaia.hbm.interleaver import HbmInterleaver

BENCH = "openmaia.benches.hbm_interleaver"


def run(target, granule, count, seed, w_buffer=None):
    cfg = PRESETS["default"]
    ops = [["w", 4096, count], ["r", 4096, count]]
    prm = {"channels": 2, "granule_bytes": granule, "fold": True,
           "addr_width": cfg.axi_addr_bits, "data_bytes": cfg.axi_data_bytes,
           "flat_bytes": 2 * count * 4096 * 2, "ops": ops, "rams": target == "rams"}
    if target == "rams":
        dut = HbmInterleaver.from_config(cfg, granule_bytes=granule, w_buffer_beats=w_buffer)
    elif target == "hbm":
        hbm = HbmController.from_config(cfg, capacity_bytes=1 << 24, timing_only=True)
        dut = InterleavedHbm(HbmInterleaver.from_config(cfg, granule_bytes=granule,
                                                        w_buffer_beats=w_buffer), hbm)
    else:
        one = cfg.replace(hbm_pseudo_channels=1)
        hbm = HbmController.from_config(one, capacity_bytes=1 << 24, timing_only=True)
        dut = InterleavedHbm(HbmInterleaver.from_config(one, granule_bytes=granule), hbm)
        prm["channels"] = 1
    start = time.monotonic()
    result = simulate(dut, bench=BENCH, name=f"interconnect_{target.replace('-', '_')}",
                      params=prm, testcase="throughput", seed=seed, array=target != "rams")
    rows = json.loads((result.run_dir / "throughput.json").read_text())
    for r in rows:
        r.update(target=target, granule=granule if target != "hbm-1ch" else None,
                 w_buffer=(dut.interleaver if target != "rams" else dut).w_buffer_beats
                 if target != "hbm-1ch" else None,
                 peak=32 if target != "hbm-1ch" else 16)
    print(f"# {target} granule {granule}: {time.monotonic() - start:.0f} s (build "
          f"{result.build_seconds:.0f} s, run {result.run_seconds:.0f} s)", file=sys.stderr,
          flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--granules", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--count", type=int, default=64, help="4 KiB transfers a direction")
    ap.add_argument("--no-hbm", action="store_true")
    ap.add_argument("--no-rams", action="store_true")
    ap.add_argument("--w-buffers", type=int, nargs="+", default=[None],
                    help="W beats buffered per channel (default: the interleaver's default)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = []
    targets = ([] if args.no_rams else ["rams"]) + ([] if args.no_hbm else ["hbm"])
    for target in targets:
        for granule in args.granules:
            for w_buffer in args.w_buffers:
                rows += run(target, granule, args.count, args.seed, w_buffer)
    if not args.no_hbm:
        rows += run("hbm-1ch", args.granules[0], args.count, args.seed)
    print("| target | granule | W buffer | direction | bytes | cycles | bytes / cycle "
          "| of peak |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['target']} | {r['granule'] or '-'} | {r['w_buffer'] or '-'} | "
              f"{'write' if r['kind'] == 'w' else 'read'} | {r['bytes']} | {r['cycles']} | "
              f"{r['bytes_per_cycle']:.2f} | {r['bytes_per_cycle'] / r['peak']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
