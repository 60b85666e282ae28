"""Board top figures: a GEMM compiled by the SDK, run through the ``fpga`` backend over the
simulated UART into the simulated board (rtl/fpga/board_tile.py, sdk/fpga.py), and memory
transfers through the same path.

    .venv/bin/python scripts/board_tile_bench.py [--preset ice40] [--divisor 4] [--seed N]
        [--m 4 --n 4 --k 64] [--json FILE]

For each phase (connect: resynchronise, PING, ID / MAP_ID check, ring and window set-up;
``load`` / ``read`` of the memory below the ring (the ring holds the whole program, so that no command
is written while the run is timed); ``run_compiled``: inputs written (with their
read-back), program into the ring, doorbell, STATUS polling, counters before and after,
outputs read): simulated clock cycles, link requests, bytes each way on the line, and the wall
seconds of the simulation on this machine. The GEMM's own ``cycles`` counter (from the counter
reads around the run) and ``tcp.busy_cycles`` show how much of the time the tile computes.
Then, from the measured bytes and cycles, the time each phase takes at the preset's clock and
a real baud rate: the line time of the bytes plus the measured non-line cycles (the host's USB
latency per request comes on top and is not modelled). Prints markdown tables.
"""

import argparse
import json
import sys
import time
import warnings

import numpy as np
from openmaia.config import PRESETS
from openmaia.fpga import link
from openmaia.numerics import mx_matmul, quantize_mx
from openmaia.sdk.backend import run_compiled
from openmaia.sdk.compiler import compile_gemm
from openmaia.sdk.fpga import FpgaBackend

BAUDS = (115_200, 3_000_000)


def measure(preset, divisor, seed, m, n, k):
    config = PRESETS[preset]
    rng = np.random.default_rng(seed)
    fa, fb = min(config.format_names), max(config.format_names)
    compiled = compile_gemm(config, m=m, n=n, k=k, fmt_a=fa, fmt_b=fb)
    ring = max(16, len(compiled.program.commands) + 1)     # the program goes in at once
    memory = 1 << max(12, (compiled.hbm_bytes + ring * 64 - 1).bit_length())
    memory *= config.hbm_pseudo_channels
    qa = quantize_mx(rng.standard_normal((m, k)).astype(np.float32), fa, axis=1)
    qb = quantize_mx(rng.standard_normal((k, n)).astype(np.float32), fb, axis=0)
    backend = FpgaBackend.simulated(config, memory_bytes=memory, divisor=divisor, seed=seed,
                                    ring_entries=ring)
    rows = []

    def phase(name, fn):
        port = backend.link
        c0 = backend.transport.cycles()
        r0, s0, b0 = ((port.requests, port.bytes_sent, port.bytes_received) if port
                      else (0, 0, 0))
        t0 = time.perf_counter()
        value = fn()
        wall = time.perf_counter() - t0
        port = backend.link
        rows.append({"phase": name, "cycles": backend.transport.cycles() - c0,
                     "requests": port.requests - r0, "sent": port.bytes_sent - s0,
                     "received": port.bytes_received - b0, "wall_s": round(wall, 2)})
        return value

    try:
        backend.transport.cycles()                      # the build, not timed
        phase("connect", lambda: backend.driver)
        blob = rng.integers(0, 256, backend.hbm_bytes, dtype=np.uint8).tobytes()
        phase(f"load {len(blob)} bytes", lambda: backend.load(0, blob))
        back = phase(f"read {len(blob)} bytes", lambda: backend.read(0, len(blob)))
        assert back == blob
        result, out = phase(f"run_compiled GEMM {m} x {n} x {k} {fa} x {fb}",
                            lambda: run_compiled(backend, compiled, {"A": qa, "B": qb}))
        assert result.ok and np.array_equal(out["C"].view(np.uint32),
                                            mx_matmul(qa, qb).view(np.uint32))
    finally:
        backend.close()
    return config, rows, result.counters


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="ice40", choices=sorted(PRESETS))
    ap.add_argument("--divisor", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--m", type=int, default=4)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", module="amaranth")
    config, rows, counters = measure(args.preset, args.divisor, args.seed,
                                     args.m, args.n, args.k)
    line_cycles = link.BITS_PER_BYTE * args.divisor
    clock_hz = config.clock_mhz * 1e6
    print(f"preset {args.preset}, divisor {args.divisor} ({line_cycles} cycles a byte), "
          f"seed {args.seed}\n")
    print("| phase | cycles | requests | bytes out + in | line cycles | other cycles | "
          "wall s (simulation) | " + " | ".join(f"s at {b:,} baud" for b in BAUDS) + " |")
    print("|---|---|---|---|---|---|---|" + "---|" * len(BAUDS))
    for r in rows:
        line = (r["sent"] + r["received"]) * line_cycles
        r["line_cycles"], r["other_cycles"] = line, r["cycles"] - line
        r["seconds"] = {b: (r["sent"] + r["received"]) * link.BITS_PER_BYTE / b
                        + r["other_cycles"] / clock_hz for b in BAUDS}
        print(f"| {r['phase']} | {r['cycles']:,} | {r['requests']:,} | {r['sent']:,} + "
              f"{r['received']:,} | {line:,} | {r['other_cycles']:,} | {r['wall_s']} | "
              + " | ".join(f"{r['seconds'][b]:.3f}" for b in BAUDS) + " |")
    print(f"\nthe GEMM run: cycles {counters['cycles']:,} (counter reads around it), "
          f"tcp.busy_cycles {counters['tcp_busy']:,}, macs {counters['macs']:,}")
    for r in rows[1:3]:
        n = int(r["phase"].split()[1])
        print(f"{r['phase']}: {n / r['cycles']:.4f} bytes a cycle = "
              + ", ".join(f"{n / r['seconds'][b]:,.0f} bytes/s at {b:,} baud" for b in BAUDS))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"preset": args.preset, "divisor": args.divisor, "rows": rows,
                       "counters": {k: counters[k] for k in ("cycles", "tcp_busy", "macs")}},
                      f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
