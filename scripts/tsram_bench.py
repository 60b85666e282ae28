#!/usr/bin/env python3
"""Measure the Tile SRAM's sustained bandwidth and conflict rate under Verilator.

For each configuration (default: small, default, ulx3s) the TSRAM is built with four ports,
``dma`` (1 bank word), ``ttu_a`` and ``ttu_b`` (operand reads, ``banks // 4`` words each, at least
1, or ``--operand-words``) and ``ttu_c`` (result writes, 1 word), and the cocotb ``throughput``
test of openmaia.benches.tsram drives every port with a request every cycle for ``--cycles`` cycles
(responses always taken). Scenarios (one Verilator build per configuration):

* ``stream``: TTU operand streams read sequentially from separate regions, the DMA and the result
  port write sequentially, the streams' starting banks staggered (the intended use: interleaving
  lets them run together);
* ``in_phase``: the same, every stream starting at bank 0;
* ``random``: the same ports at uniformly random addresses;
* ``dma_read`` (only when asked for): ``stream`` with the DMA reading (draining results) instead
  of writing.

Printed per scenario: peak bytes/cycle (``banks x bank_bytes``), demanded and sustained bytes a
cycle, and the conflict rate (conflict cycles / (accepted requests + conflict cycles)) per port and
overall, and per port the fraction of its accepted requests that were deferred writes. Usage:
``scripts/tsram_bench.py [--configs small,default,ulx3s] [--scenarios ...] [--cycles N]
[--operand-words W] [--json]``.
"""

import argparse
import json
import sys

from openmaia.config import get_config
from openmaia.harness import simulate
from openmaia.tile.tsram import TileSram


SCENARIOS = ("stream", "in_phase", "random")
#: Further scenarios, run only when named in ``--scenarios``.
EXTRA_SCENARIOS = ("dma_read",)


def _ports(cfg, operand_words=None):
    w = operand_words or max(1, cfg.tsram_banks // 4)
    return {"dma": 1, "ttu_a": w, "ttu_b": w, "ttu_c": 1}


def _streams(cfg, scenario, ports):
    """Each stream starts in its own quarter of the SRAM; ``stream`` also staggers the starting
    banks (stream k starts k bank groups of its width further), ``in_phase`` starts every
    stream at bank 0."""
    words = cfg.tsram_banks * cfg.tsram_bank_depth
    pattern = "random" if scenario == "random" else "seq"
    streams, bank = {}, 0
    for k, (name, width) in enumerate(ports.items()):
        op = "write" if name == "ttu_c" or (name == "dma" and scenario != "dma_read") else "read"
        start = k * (words // 4) // width
        if scenario in ("stream", "dma_read"):
            start += bank // width
            bank += width
        streams[name] = {"op": op, "pattern": pattern, "start": start}
    return streams


def measure(config_name, scenario, cycles, operand_words=None):
    cfg = get_config(config_name)
    ports = _ports(cfg, operand_words)
    dut = TileSram.from_config(cfg, ports=ports)
    params = {"banks": dut.banks, "bank_bytes": dut.bank_bytes, "depth": dut.depth,
              "ecc": dut.ecc, "rsp_depth": dut.rsp_depth,
              "ports": {n: [s.width, s.addr_width] for n, s in dut.ports.items()},
              "streams": _streams(cfg, scenario, ports), "cycles": cycles}
    suffix = f"_w{operand_words}" if operand_words else ""
    result = simulate(dut, bench="openmaia.benches.tsram", name=f"tsram_{config_name}{suffix}",
                      testcase="throughput", params=params, seed=1)
    fig = json.loads((result.run_dir / "tsram_figures.json").read_text())
    bb = fig["bank_bytes"]
    accepted = sum(p["accepted"] for p in fig["ports"].values())
    conflicts = sum(p["conflict"] for p in fig["ports"].values())
    moved = sum(p["accepted"] * p["width"] * bb for p in fig["ports"].values())
    return {
        "config": config_name, "scenario": scenario, "cycles": cycles, "ecc": cfg.tsram_ecc,
        "peak_bytes_per_cycle": dut.bytes_per_cycle,
        "demand_bytes_per_cycle": sum(w * bb for w in ports.values()),
        "sustained_bytes_per_cycle": round(moved / cycles, 2),
        "bank_utilisation": round(fig["counters"]["bank_cycles"] / (cycles * dut.banks), 3),
        "conflict_rate": round(conflicts / max(1, accepted + conflicts), 3),
        "ports": {n: {"width": p["width"], "accepted": p["accepted"],
                      "bytes_per_cycle": round(p["accepted"] * p["width"] * bb / cycles, 2),
                      "conflict_rate": round(p["conflict"] / max(1, p["accepted"]
                                                                + p["conflict"]), 3),
                      "deferred_rate": round(p["deferred"] / max(1, p["accepted"]), 3)}
                  for n, p in fig["ports"].items()},
        "build_seconds": round(result.build_seconds, 1),
        "run_seconds": round(result.run_seconds, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="small,default,ulx3s")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--cycles", type=int, default=4000)
    parser.add_argument("--operand-words", type=int, default=None,
                        help="width of ttu_a and ttu_b in bank words (default banks / 4)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    for s in args.scenarios.split(","):
        if s not in SCENARIOS + EXTRA_SCENARIOS:
            parser.error(f"unknown scenario {s!r}; expected one of "
                         f"{', '.join(SCENARIOS + EXTRA_SCENARIOS)}")
    rows = [measure(c, s, args.cycles, args.operand_words) for c in args.configs.split(",")
            for s in args.scenarios.split(",")]
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
        return
    print(f"{'config':8} {'scenario':9} {'peak B/c':>8} {'demand':>7} {'sustained':>9} "
          f"{'banks used':>10} {'conflicts':>9}  per port (B/c, conflict rate, deferred)")
    for r in rows:
        per_port = ", ".join(f"{n}x{p['width']} {p['bytes_per_cycle']} ({p['conflict_rate']}, "
                             f"{p['deferred_rate']})"
                             for n, p in r["ports"].items())
        print(f"{r['config']:8} {r['scenario']:9} {r['peak_bytes_per_cycle']:8} "
              f"{r['demand_bytes_per_cycle']:7} {r['sustained_bytes_per_cycle']:9} "
              f"{r['bank_utilisation']:10} {r['conflict_rate']:9}  {per_port}")


if __name__ == "__main__":
    main()
