#!/usr/bin/env python3
"""Cycle-level Python model of the Tile SRAM's bank arbitration (no data, no ECC, no RMW).

A quick way to try arbitration ideas before touching the RTL (docs/tsram.md, "Timing, conflicts,
fairness"). Every port presents a request every cycle, as in the ``throughput`` bench of
scripts/tsram_bench.py, with the same ports and scenarios (``stream``, ``in_phase``, ``random``,
``dma_read``). Two arbiters:

* ``current``: the RTL's rule: the head, then the non-deferrable requests (reads; wider first),
  then the writes; a write whose banks are taken by reads or busy from the previous cycle is
  deferred (accepted, written the next cycle) unless a same-cycle write or a next-cycle claim
  holds one of its banks; the waiting head reserves its banks for the next cycle;
* ``old``: the arbiter before deferral (commit 5a93d63): circular order from the head, the head
  reserving its banks in the current cycle, no deferral.

The head moves to the first loser from the head after a cycle with losers. The ``current`` model
reproduces the RTL's accepted requests cycle for cycle on the ``ulx3s`` stream (checked in the
Amaranth simulator); ``old`` reproduces the old measured ``in_phase`` figures. Printed: sustained
and per-port bytes a cycle, deferred requests, the longest conflict wait.

Usage: ``scripts/tsram_arb_model.py [--arbiter current|old] [--configs ...] [--scenarios ...]
[--cycles N] [--operand-words W] [--dma-words W]``.
"""

import argparse
import random

from openmaia.config import get_config


def simulate(banks, depth, ports, scenario, *, cycles=4000, arbiter="current", seed=1):
    """``ports``: ``{name: (width, "read" | "write")}``. Returns per-port accepted, conflict,
    deferred counts and the longest run of conflict cycles."""
    names = list(ports)
    n = len(names)
    words = banks * depth
    rng = random.Random(seed)
    addr, bank = {}, 0
    for k, (name, (w, _)) in enumerate(ports.items()):
        addr[name] = k * (words // 4) // w
        if scenario in ("stream", "dma_read"):
            addr[name] += bank // w
            bank += w
        if scenario == "random":
            addr[name] = rng.randrange(words // w)
    acc, conf, dfr, run, longest = ({nm: 0 for nm in names} for _ in range(5))
    head, landing = 0, set()
    for _ in range(cycles):
        taken, written, claimed, deferred, losers = set(landing), set(), set(), set(), []
        circ = [(head + s) % n for s in range(n)]
        if arbiter == "current":
            reads = sorted((p for p in circ[1:] if ports[names[p]][1] == "read"),
                           key=lambda p: -ports[names[p]][0])
            order = [circ[0]] + reads + [p for p in circ[1:] if ports[names[p]][1] == "write"]
        else:
            order = circ
        for step, p in enumerate(order):
            name = names[p]
            w, op = ports[name]
            group = addr[name] % (banks // w)
            mask = {group * w + lane for lane in range(w)}
            clash = mask & taken
            if not clash:
                ok = True
                taken |= mask
                if op == "write":
                    written |= mask
            elif (arbiter == "current" and op == "write" and not mask & written
                  and not mask & claimed):
                ok = True
                dfr[name] += 1
                taken |= mask
                written |= mask
                claimed |= mask
                deferred |= mask
            else:
                ok = False
                losers.append(p)
                if step == 0:
                    if arbiter == "current":
                        claimed |= mask          # reserved for the next cycle
                    else:
                        taken |= mask            # reserved in this cycle
            if ok:
                acc[name] += 1
                run[name] = 0
                addr[name] = (rng.randrange(words // w) if scenario == "random"
                              else (addr[name] + 1) % (words // w))
            else:
                conf[name] += 1
                run[name] += 1
                longest[name] = max(longest[name], run[name])
        if losers:
            head = min(losers, key=lambda p: (p - head) % n)
        landing = deferred
    return acc, conf, dfr, longest


CONFIGS = ("small", "default", "ulx3s")
SCENARIOS = ("stream", "in_phase", "random", "dma_read")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arbiter", choices=("current", "old"), default="current")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--cycles", type=int, default=4000)
    parser.add_argument("--operand-words", type=int, default=None)
    parser.add_argument("--dma-words", type=int, default=1)
    args = parser.parse_args(argv)
    for config in args.configs.split(","):
        cfg = get_config(config)
        banks, bb = cfg.tsram_banks, cfg.tsram_bank_bytes
        w = args.operand_words or max(1, banks // 4)
        for scenario in args.scenarios.split(","):
            if scenario not in SCENARIOS:
                parser.error(f"unknown scenario {scenario!r}")
            ports = {"dma": (args.dma_words, "read" if scenario == "dma_read" else "write"),
                     "ttu_a": (w, "read"), "ttu_b": (w, "read"), "ttu_c": (1, "write")}
            acc, _, dfr, longest = simulate(banks, cfg.tsram_bank_depth, ports, scenario,
                                            cycles=args.cycles, arbiter=args.arbiter)
            rate = {nm: acc[nm] * ports[nm][0] * bb / args.cycles for nm in ports}
            demand = sum(width for width, _ in ports.values()) * bb
            print(f"{config:8} {scenario:9} demand {demand:4} sustained "
                  f"{sum(rate.values()):7.2f}  "
                  + ", ".join(f"{nm} {rate[nm]:.2f} (deferred {dfr[nm]}, longest wait "
                              f"{longest[nm]})" for nm in ports))


if __name__ == "__main__":
    main()
