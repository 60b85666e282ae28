"""Host link figures: cycles per request of the UART host bridge, and bytes a second at real
baud rates.

    .venv/bin/python scripts/host_link_bench.py [--preset ice40] [--divisor 8] [--seed N]
        [--json FILE]

Runs the ``timing`` test of verif/benches/host_bridge.py (cocotb + Verilator, no AXI pauses,
no gaps between the host's bytes) on ``HostBridge.from_config(preset)``: for each kind of
request, the cycles from the request's first start bit to the end of the response's last stop
bit, and the part of them that is not line time (the bridge's turnaround). Then, from the
protocol's byte counts (``openmaia.fpga.link``) and the measured turnaround at the preset's
``clock_mhz``, the payload bytes a second at 115,200 baud and 3 Mbaud. Prints markdown tables.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from openmaia.benches.host_bridge import bench_params_for
from openmaia.config import PRESETS
from openmaia.fpga import link
from openmaia.fpga.host_bridge import HostBridge
from openmaia.harness import simulate

BAUDS = (115_200, 3_000_000)


def measure(preset, divisor, seed):
    hb = HostBridge.from_config(PRESETS[preset], divisor=divisor)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "timing.json"
        params = bench_params_for(hb, ops=0, pause=0.0, gap=0.0, timing_out=str(out))
        simulate(hb, bench="openmaia.benches.host_bridge", name="host_bridge",
                 testcase="timing", params=params, seed=seed, array=True)
        return json.loads(out.read_text())


def rates(rows, clock_hz):
    table = []
    for length in (4, 256, 4096, link.MAX_LENGTH):
        for op in (link.Opcode.MEM_WRITE, link.Opcode.MEM_READ):
            turnaround = max(r["overhead"] for r in rows if r["op"].startswith(op.name))
            entry = {"op": op.name, "length": length}
            for baud in BAUDS:
                line = link.bytes_per_second(baud, op, length)
                seconds = length / line + turnaround / clock_hz
                entry[f"bytes_per_s_{baud}"] = length / seconds
            table.append(entry)
    for op in (link.Opcode.REG_READ, link.Opcode.REG_WRITE):
        turnaround = max(r["overhead"] for r in rows if r["op"] == op.name)
        entry = {"op": op.name, "length": 4}
        for baud in BAUDS:
            seconds = 4 / link.bytes_per_second(baud, op, 4) + turnaround / clock_hz
            entry[f"bytes_per_s_{baud}"] = 4 / seconds
            entry[f"ops_per_s_{baud}"] = 1 / seconds
        table.append(entry)
    return table


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="ice40", choices=sorted(PRESETS))
    ap.add_argument("--divisor", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    cfg = PRESETS[args.preset]
    timing = measure(args.preset, args.divisor, args.seed)
    print(f"## {args.preset}: {timing['data_bytes']}-byte AXI beats, {args.divisor} cycles a "
          f"bit ({link.BITS_PER_BYTE * args.divisor} a byte)\n")
    print("| request | bytes in + out | cycles | line cycles | turnaround |")
    print("|---|---|---|---|---|")
    for r in timing["rows"]:
        print(f"| {r['op']} | {r['request_bytes']} + {r['response_bytes']} | {r['cycles']:,} | "
              f"{r['line_cycles']:,} | {r['overhead']:+d} |")
    table = rates(timing["rows"], cfg.clock_mhz * 1e6)
    print(f"\n## payload bytes a second at {cfg.clock_mhz:g} MHz\n")
    print("| request | length | " + " | ".join(f"{b:,} baud" for b in BAUDS) + " |")
    print("|---|---|" + "---|" * len(BAUDS))
    for e in table:
        print(f"| {e['op']} | {e['length']:,} | "
              + " | ".join(f"{e[f'bytes_per_s_{b}']:,.0f}" for b in BAUDS) + " |")
    if args.json:
        args.json.write_text(json.dumps({"preset": args.preset, "timing": timing,
                                         "rates": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
