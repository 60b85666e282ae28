#!/usr/bin/env python3
"""FPGA cost of the MX dot-product engine: LUTs, DSPs and flip-flops per FP8 MAC lane.

Synthesizes ``MxDotEngine`` with YoWASP Yosys (``synth_ecp5`` / ``synth_ice40``, no place and
route) for each lane count V, for the all-format engine (all six element formats) and the
{E4M3, E2M1} subset engine, each with ``fp4_double_rate`` on and off, and prints:

* total LUTs, FFs and DSPs, and the same divided by V. Per-lane figures are total engine resources
  divided by V (the FP8 MAC lanes): the per-engine back end (block-sum rounding, FP32
  accumulator adder, slots, control) is amortized over the lanes, not left out;
* the FP4 double-rate overhead: LUTs with ``fp4_double_rate`` over LUTs without, same formats,
  family and V;
* PASS / MISS against the ECP5 targets: at most 350 LUTs per all-format lane, at most 150 per
  subset lane, FP4 double rate at most 20 % extra LUTs;
* a least-squares fit ``LUTs = fixed + V * marginal`` over the lane counts run, which splits the
  per-engine back end (``fixed``) from the per-lane cost (``marginal``);
* with ``--breakdown``, a hierarchical (``-noflatten``) ECP5 run of the largest V showing which
  submodule takes the area (cross-module optimisation is lost there, so totals differ a little
  from the flat run).

Counting rule: see :mod:`openmaia.synth` (ECP5 LUTs = LUT4 + 2 x CCU2C). Results are cached in
``build/synth/`` (``$OPENMAIA_SYNTH_DIR``), so a rerun is instant. Until ``MxDotEngine`` exists
(or with ``--decoder``) the element decoder stands in for it, to prove the flow.

    .venv/bin/python scripts/dot_engine_cost.py                     # V = 4 8 16, ECP5 and iCE40
    .venv/bin/python scripts/dot_engine_cost.py --lanes 4 --family ecp5 --json
"""

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from openmaia.numerics.formats import Format
from openmaia.synth import COUNTING_RULE, FAMILIES, SynthError, synthesize_verilog

#: The ECP5 targets of the issue.
TARGET_LUTS_PER_LANE = {"all": 350, "subset": 150}
TARGET_FP4_OVERHEAD = 0.20
#: The naive prototype, for comparison.
NAIVE_E4M3_LANE = "about 360 LUTs and 1 DSP per E4M3-only lane"

FORMAT_SETS = {
    "all": frozenset(Format),
    "subset": frozenset({Format.E4M3, Format.E2M1}),
}
FORMAT_LABELS = {"all": "all six", "subset": "E4M3+E2M1"}


@dataclass(frozen=True)
class Job:
    formats: str          # key of FORMAT_SETS
    lanes: int
    fp4: bool
    family: str
    flatten: bool = True

    @property
    def module(self) -> str:
        return f"dot_{self.formats}_v{self.lanes}_{'fp4' if self.fp4 else 'nofp4'}"


def engine_class():
    """``MxDotEngine`` if it can be imported, else None."""
    try:
        from openmaia.compute.dot_engine import MxDotEngine
    except ImportError:
        return None
    return MxDotEngine


def build(job: Job, *, decoder: bool):
    formats = FORMAT_SETS[job.formats]
    if decoder:
        from openmaia.compute.element_decoder import ElementDecoder
        return ElementDecoder(formats=formats, lanes=job.lanes)
    return engine_class()(formats=formats, lanes=job.lanes, fp4_double_rate=job.fp4)


class _Piece:
    """A combinational function of the engine wrapped as a component for synthesis: ports in,
    the function's outputs registered (so nothing is optimized away and FFs count once)."""

    @staticmethod
    def make(inputs: dict, build):
        from amaranth.hdl import Cat, Module, Value
        from amaranth.lib import wiring
        from amaranth.lib.wiring import In, Out

        class Piece(wiring.Component):
            def __init__(self):
                m = Module()
                m._MustUse__silence = True          # a throwaway module, only to size `o`
                probe = {name: _shape_of(shape) for name, shape in inputs.items()}
                self._width = len(Cat(*(Value.cast(v) for v in build(m, probe))))
                super().__init__({**{name: In(shape) for name, shape in inputs.items()},
                                  "o": Out(self._width)})

            def elaborate(self, platform):
                m = Module()
                args = {name: getattr(self, name) for name in inputs}
                m.d.sync += self.o.eq(Cat(*(Value.cast(v) for v in build(m, args))))
                return m

        return Piece()


def _shape_of(shape):
    from amaranth.hdl import Signal
    return Signal(shape)


def pieces(formats_key: str, lanes: int):
    """``{label: (component, per_lane)}``: the engine's parts, each synthesizable on its own.

    ``per_lane`` pieces are one lane's worth (multiply by V for the engine); the others are
    per engine. Built from the engine's own building blocks (openmaia.compute.dot_lanes, fp32),
    so they track the engine's code.
    """
    from amaranth.hdl import signed
    from openmaia.compute import dot_lanes
    from openmaia.compute.element_decoder import decode_element
    from openmaia.compute.fp32 import Fp32Add, Fp32Round

    formats = FORMAT_SETS[formats_key]
    double = Format.E2M1 in formats
    widths = dot_lanes.lane_widths(formats, double)
    lane_in = {"a": 8, "b": 8, "fmt_a": 3, "fmt_b": 3, "fp4": 1}
    out = {}

    decode = getattr(dot_lanes, "lane_decode", decode_element)   # the lanes' own decoder

    def decoders(m, p):
        da = decode(m, p["a"], p["fmt_a"], formats=formats, name="da")
        db = decode(m, p["b"], p["fmt_b"], formats=formats, name="db")
        return [da, db]
    out["lane: 2 element decoders alone (all fields registered)"] = (
        _Piece.make(lane_in, decoders), True)

    def stage0(m, p):
        lo, hi, flags = dot_lanes.lane_product(m, p["a"], p["b"], p["fmt_a"], p["fmt_b"],
                                               p["fp4"], formats=formats, widths=widths)
        return [lo, flags] + ([hi] if hi is not None else [])
    out["lane: stage 0 (decoders, products, flags)"] = (_Piece.make(lane_in, stage0), True)

    lo_layout = dot_lanes.product_layout(widths.product, widths.shift)

    def shifter(m, p):
        term, neg = dot_lanes.aligned_term(m, p["p"], widths.stages, name="t")
        return [term, neg]
    out["lane: stage 1 aligner (main product)"] = (_Piece.make({"p": lo_layout}, shifter), True)
    if widths.hi_term:
        hi_layout = dot_lanes.product_layout(widths.hi_product, widths.hi_shift)

        def hi_shifter(m, p):
            term, neg = dot_lanes.aligned_term(m, p["p"], widths.hi_stages, name="h")
            return [term, neg]
        out["lane: stage 1 aligner (FP4 high product)"] = (
            _Piece.make({"p": hi_layout}, hi_shifter), True)

    term_in = {f"t{j}": signed(widths.term + 1) for j in range(lanes)}
    term_in.update({f"n{j}": 1 for j in range(lanes)})
    if widths.hi_term:
        term_in.update({f"h{j}": signed(widths.hi_term + 1) for j in range(lanes)})
        term_in.update({f"g{j}": 1 for j in range(lanes)})
    term_in.update({"base": signed(widths.sum), "c": 1})

    def tree(m, p):
        carries = [p[f"n{j}"] for j in range(lanes)] + \
                  ([p[f"g{j}"] for j in range(lanes)] if widths.hi_term else []) + [p["c"]]
        total, carries = dot_lanes.sum_terms([p[f"t{j}"] for j in range(lanes)], carries,
                                             widths.sum)
        if widths.hi_term:
            high, carries = dot_lanes.sum_terms([p[f"h{j}"] for j in range(lanes)], carries,
                                                widths.sum)
            total = dot_lanes.add_carry(total, high, carries.pop())
        return [dot_lanes.add_carry(p["base"], total, carries.pop())[:widths.sum]]
    out[f"engine: adder tree of V={lanes} lanes + block accumulate"] = (
        _Piece.make(term_in, tree), False)
    out["engine: Fp32Round (block sum to FP32)"] = (
        Fp32Round(sum_width=widths.sum, exp_width=widths.block_exp, stages=2), False)
    out["engine: Fp32Add (accumulator adder)"] = (Fp32Add(stages=2), False)
    return out


def run_pieces(args, log) -> list:
    from openmaia.harness.elaborate import elaborate
    lanes = max(args.lanes)
    jobs = []
    for fs in args.formats:
        for label, (component, per_lane) in pieces(fs, lanes).items():
            jobs.append((fs, label, per_lane, elaborate(component, name="piece")))

    def synth(job):
        fs, label, per_lane, verilog = job
        r = synthesize_verilog(verilog, name="piece", family="ecp5",
                               dsp=_dsp(args, "ecp5"), timeout=args.timeout,
                               cache=not args.no_cache)
        log(f"piece {FORMAT_LABELS[fs]} {label}: {r.luts} LUTs")
        return {"formats": fs, "piece": label, "per_lane": per_lane, "lanes": lanes,
                "luts": r.luts, "ffs": r.ffs, "dsps": r.dsps,
                "engine_luts": r.luts * (lanes if per_lane else 1)}

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        return list(pool.map(synth, jobs))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lanes", type=int, nargs="+", default=[4, 8, 16],
                        help="lane counts V to synthesize (default: 4 8 16)")
    parser.add_argument("--family", nargs="+", choices=list(FAMILIES), default=list(FAMILIES),
                        help="FPGA families (default: ecp5 ice40)")
    parser.add_argument("--formats", nargs="+", choices=list(FORMAT_SETS),
                        default=list(FORMAT_SETS), help="format sets (default: all subset)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="Yosys processes to run at once (default: 2)")
    parser.add_argument("--dsp", choices=("auto", "on", "off"), default="auto",
                        help="DSP inference: auto = on for ECP5 (synth_ecp5's default), off for "
                             "iCE40 (synth_ice40's default)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also run ECP5 hierarchically (-noflatten) at the largest V and "
                             "show LUTs per submodule")
    parser.add_argument("--pieces", action="store_true",
                        help="also synthesize the engine's pieces on their own (ECP5, FP4 2x on, "
                             "the largest V): one lane's decoders, multiplier and shifter, the "
                             "V-lane adder tree, FP32 rounding and adder")
    parser.add_argument("--decoder", action="store_true",
                        help="synthesize the element decoder instead of the engine (flow check)")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds per Yosys run (default: 3600)")
    parser.add_argument("--no-cache", action="store_true", help="rerun Yosys even if cached")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    for lanes in args.lanes:
        if lanes not in (1, 2, 4, 8, 16):
            parser.error(f"lanes must be 1, 2, 4, 8 or 16, not {lanes}")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    return args


def _dsp(args, family):
    return {"auto": None, "on": True, "off": False}[args.dsp]


def run(args, log) -> dict:
    start = time.monotonic()
    decoder = args.decoder or engine_class() is None
    if decoder and not args.decoder:
        log("openmaia.compute.dot_engine.MxDotEngine is not there yet: the element decoder "
            "stands in (fp4 on/off build the same design)")
    jobs = [Job(fs, lanes, fp4, family)
            for family in args.family for fs in args.formats
            for lanes in sorted(set(args.lanes)) for fp4 in (True, False)]
    if args.breakdown:
        jobs += [Job(fs, max(args.lanes), True, "ecp5", flatten=False) for fs in args.formats]

    # Elaborate in this thread (Amaranth), then run Yosys processes in parallel.
    from openmaia.harness.elaborate import elaborate
    verilog = {}
    for job in jobs:
        key = (job.formats, job.lanes, job.fp4)
        if key not in verilog:
            t0 = time.monotonic()
            verilog[key] = elaborate(build(job, decoder=decoder), name="dot")
            log(f"elaborated {FORMAT_LABELS[job.formats]} V={job.lanes} "
                f"fp4={'on' if job.fp4 else 'off'} in {time.monotonic() - t0:.1f} s")
    elab_seconds = time.monotonic() - start

    def synth(job):
        result = synthesize_verilog(verilog[(job.formats, job.lanes, job.fp4)], name="dot",
                                    family=job.family, dsp=_dsp(args, job.family),
                                    flatten=job.flatten, timeout=args.timeout,
                                    cache=not args.no_cache)
        log(f"{job.family} {FORMAT_LABELS[job.formats]} V={job.lanes} "
            f"fp4={'on' if job.fp4 else 'off'}{'' if job.flatten else ' (hierarchical)'}: "
            f"{result.luts} LUTs, {result.ffs} FFs, {result.dsps} DSPs "
            f"({'cached' if result.cached else f'{result.seconds:.0f} s'})")
        return result

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = dict(zip(jobs, pool.map(synth, jobs)))

    rows = []
    for job, r in results.items():
        if not job.flatten:
            continue
        other = results.get(Job(job.formats, job.lanes, not job.fp4, job.family))
        row = {
            "design": "ElementDecoder" if decoder else "MxDotEngine",
            "formats": job.formats, "formats_label": FORMAT_LABELS[job.formats],
            "fp4_double_rate": job.fp4, "family": job.family, "lanes": job.lanes,
            "luts": r.luts, "ffs": r.ffs, "dsps": r.dsps, "brams": r.brams,
            "carries": r.carries, "lutrams": r.lutrams,
            "luts_per_lane": r.luts / job.lanes, "ffs_per_lane": r.ffs / job.lanes,
            "dsps_per_lane": r.dsps / job.lanes,
            "fp4_overhead": (r.luts / other.luts - 1) if job.fp4 and other and other.luts
                            else None,
            "yosys_seconds": r.seconds, "cached": r.cached, "cells": r.cells,
        }
        if job.family == "ecp5":
            row["target_luts_per_lane"] = TARGET_LUTS_PER_LANE[job.formats]
            row["lanes_pass"] = row["luts_per_lane"] <= TARGET_LUTS_PER_LANE[job.formats]
            if row["fp4_overhead"] is not None:
                row["fp4_pass"] = row["fp4_overhead"] <= TARGET_FP4_OVERHEAD
        rows.append(row)
    rows.sort(key=lambda row: (list(FAMILIES).index(row["family"]),
                               list(FORMAT_SETS).index(row["formats"]),
                               not row["fp4_double_rate"], row["lanes"]))

    fits = []
    for family in args.family:
        for fs in args.formats:
            for fp4 in (True, False):
                points = [(row["lanes"], row["luts"]) for row in rows
                          if (row["family"], row["formats"], row["fp4_double_rate"])
                          == (family, fs, fp4)]
                fit = _fit(points)
                if fit:
                    fixed, marginal = fit
                    largest = max(points)
                    fits.append({"family": family, "formats": fs, "fp4_double_rate": fp4,
                                 "fixed_luts": fixed, "marginal_luts_per_lane": marginal,
                                 "fixed_share_at_max_lanes": fixed / largest[1] if largest[1]
                                 else None, "max_lanes": largest[0]})

    breakdown = []
    for job, r in results.items():
        if job.flatten:
            continue
        top_total = r.luts or 1
        mods = []
        for mod, info in r.modules.items():
            mods.append({"module": mod, "instances": info["instances"],
                         "own_luts": info["own"]["luts"], "total_luts": info["total"]["luts"],
                         "own_ffs": info["own"]["ffs"], "total_ffs": info["total"]["ffs"],
                         "own_dsps": info["own"]["dsps"],
                         "all_instances_luts": info["instances"] * info["total"]["luts"],
                         "share": info["instances"] * info["total"]["luts"] / top_total})
        mods.sort(key=lambda m: -m["all_instances_luts"])
        breakdown.append({"formats": job.formats, "lanes": job.lanes, "family": job.family,
                          "fp4_double_rate": job.fp4, "luts": r.luts, "ffs": r.ffs,
                          "dsps": r.dsps, "cells": r.cells, "modules": mods})

    piece_rows = []
    if args.pieces and not decoder:
        try:
            piece_rows = run_pieces(args, log)
        except (ImportError, AttributeError, TypeError) as error:   # the engine's API moved
            log(f"--pieces skipped: the engine's building blocks changed ({error!r})")

    return {"design": "ElementDecoder" if decoder else "MxDotEngine",
            "pieces": piece_rows,
            "counting_rule": COUNTING_RULE, "dsp": args.dsp, "rows": rows, "fits": fits,
            "breakdown": breakdown, "elaborate_seconds": round(elab_seconds, 1),
            "seconds": round(time.monotonic() - start, 1),
            "targets": {"ecp5_luts_per_lane": TARGET_LUTS_PER_LANE,
                        "fp4_overhead": TARGET_FP4_OVERHEAD, "naive": NAIVE_E4M3_LANE}}


def _fit(points):
    """Least-squares (intercept, slope) of LUTs over V; None with fewer than two V."""
    if len({v for v, _ in points}) < 2:
        return None
    n = len(points)
    mx = sum(v for v, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((v - mx) ** 2 for v, _ in points)
    slope = sum((v - mx) * (y - my) for v, y in points) / sxx
    return my - slope * mx, slope


def _verdict(ok):
    return "[green]PASS[/green]" if ok else "[red]MISS[/red]"


def print_tables(report):
    from rich.console import Console
    from rich.table import Table
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)
    title = (f"{report['design']} cost per FP8 MAC lane (total / V; the per-engine back end is "
             f"amortized over the V lanes)")
    table = Table(title=title)
    for column in ("family", "formats", "FP4 2x", "V", "LUTs", "FFs", "DSPs", "LUTs/lane",
                   "FFs/lane", "DSPs/lane", "FP4 ovh", "ECP5 target"):
        table.add_column(column, justify="left" if column in ("family", "formats") else "right")
    for row in report["rows"]:
        verdicts = []
        if "lanes_pass" in row:
            verdicts.append(f"≤{row['target_luts_per_lane']} {_verdict(row['lanes_pass'])}")
        if "fp4_pass" in row:
            verdicts.append(f"ovh≤{TARGET_FP4_OVERHEAD:.0%} {_verdict(row['fp4_pass'])}")
        ovh = row["fp4_overhead"]
        table.add_row(row["family"], row["formats_label"],
                      "on" if row["fp4_double_rate"] else "off", str(row["lanes"]),
                      str(row["luts"]), str(row["ffs"]), str(row["dsps"]),
                      f"{row['luts_per_lane']:.1f}", f"{row['ffs_per_lane']:.1f}",
                      f"{row['dsps_per_lane']:.2f}",
                      "" if ovh is None else f"{ovh:+.1%}", "  ".join(verdicts))
    console.print(table)

    if report["fits"]:
        fits = Table(title="LUTs = fixed (per-engine back end) + V x marginal (least squares "
                           "over the V run)")
        for column in ("family", "formats", "FP4 2x", "fixed LUTs", "marginal LUTs/lane",
                       "fixed share at max V"):
            fits.add_column(column, justify="left" if column in ("family", "formats")
                            else "right")
        for fit in report["fits"]:
            share = fit["fixed_share_at_max_lanes"]
            fits.add_row(fit["family"], FORMAT_LABELS[fit["formats"]],
                         "on" if fit["fp4_double_rate"] else "off", f"{fit['fixed_luts']:.0f}",
                         f"{fit['marginal_luts_per_lane']:.1f}",
                         "" if share is None else f"{share:.0%} (V={fit['max_lanes']})")
        console.print(fits)

    for bd in report["breakdown"]:
        table = Table(title=f"ECP5 hierarchical run, {FORMAT_LABELS[bd['formats']]} "
                            f"V={bd['lanes']} FP4 2x on: {bd['luts']} LUTs, {bd['ffs']} FFs, "
                            f"{bd['dsps']} DSPs (-noflatten)")
        for column in ("module", "instances", "own LUTs", "LUTs/instance (with submodules)",
                       "LUTs all instances", "share", "own FFs", "own DSPs"):
            table.add_column(column, justify="left" if column == "module" else "right")
        for mod in bd["modules"]:
            table.add_row(mod["module"], str(mod["instances"]), str(mod["own_luts"]),
                          str(mod["total_luts"]), str(mod["all_instances_luts"]),
                          f"{mod['share']:.0%}", str(mod["own_ffs"]), str(mod["own_dsps"]))
        console.print(table)

    for fs in FORMAT_SETS:
        rows = [p for p in report.get("pieces", []) if p["formats"] == fs]
        if not rows:
            continue
        lanes = rows[0]["lanes"]
        table = Table(title=f"ECP5 pieces synthesized alone, {FORMAT_LABELS[fs]}, FP4 2x on "
                            f"(outputs registered; per-lane pieces x V={lanes})")
        for column in ("piece", "LUTs", "FFs", "DSPs", f"LUTs in a V={lanes} engine"):
            table.add_column(column, justify="left" if column == "piece" else "right")
        for p in rows:
            table.add_row(p["piece"], str(p["luts"]), str(p["ffs"]), str(p["dsps"]),
                          str(p["engine_luts"]))
        console.print(table)

    console.print(f"Counting rule: ECP5 {report['counting_rule']['ecp5']}; iCE40 "
                  f"{report['counting_rule']['ice40']}. DSP inference: {report['dsp']}. "
                  f"Naive prototype: {NAIVE_E4M3_LANE}.")
    console.print(f"Run time {report['seconds']:.0f} s (elaboration "
                  f"{report['elaborate_seconds']:.0f} s).")


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    try:
        report = run(args, log)
    except SynthError as error:
        print(f"synthesis failed: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_tables(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
