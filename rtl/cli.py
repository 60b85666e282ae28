"""The ``openmaia`` command line."""

import argparse
import json
import sys
import time
from pathlib import Path

from .config import get_config, preset_names

__all__ = ["main"]


def _console():
    from rich.console import Console
    return Console()


def _cmd_config(args) -> int:
    config = get_config(args.name)
    summary = config.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    from rich.table import Table
    table = Table(title=f"configuration {config.name!r}")
    table.add_column("field")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key, ", ".join(value) if isinstance(value, list) else str(value))
    _console().print(table)
    return 0


def _cmd_elaborate(args) -> int:
    from .harness import elaborate, lint
    from .tops import get_top
    top = get_top(args.top)
    config = get_config(args.config)
    text = elaborate(top.build(config), name=top.module_name)
    if args.lint:
        lint(text, name=top.module_name)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}: module {top.module_name}, {len(text.splitlines())} lines, "
              f"configuration {config.name}" + (", lint clean" if args.lint else ""),
              file=sys.stderr)
    return 0


def _cmd_lint(args) -> int:
    from .harness import LintError, lint
    from .tops import TOPS, get_top
    config = get_config(args.config)
    failed = 0
    for name in args.tops or list(TOPS):
        top = get_top(name)
        if not top.builds_for(config):
            print(f"{name}: not built in {config.name} (no vector unit)")
            continue
        try:
            lint(top.build(config), name=top.module_name)
            print(f"{name}: lint clean ({config.name})")
        except LintError as error:
            failed += 1
            print(error, file=sys.stderr)
    return 1 if failed else 0


def _cmd_selfcheck(args) -> int:
    """Elaborate every registered top of a configuration, lint it and run its bench."""
    from .harness import LintError, elaborate, lint, simulate
    from .tops import TOPS
    config = get_config(args.config)
    rows, ok = [], True
    console = _console()
    unknown = set(args.top or ()) - set(TOPS)
    if unknown:
        raise SystemExit(f"unknown top(s) {', '.join(sorted(unknown))}; tops: {', '.join(TOPS)}")
    for top in TOPS.values():
        if args.top and top.name not in args.top or not top.builds_for(config):
            continue
        with console.status(f"{top.name}: elaborate, lint, build and simulate ({config.name})"):
            start = time.monotonic()
            component = top.build(config)
            text = elaborate(component, name=top.module_name)
            try:
                lint(text, name=top.module_name)
                lint_ok = True
            except LintError as error:
                console.print(str(error))
                lint_ok = False
            result = simulate(component, bench=top.bench, name=top.module_name,
                              params=top.bench_params(config, component), testcase=top.testcase,
                              seed=args.seed, check=False, verilog=text)
        passed = lint_ok and result.passed
        ok &= passed
        rows.append({"top": top.name, "config": config.name,
                     "lines": len(text.splitlines()),
                     "lint": "clean" if lint_ok else "FAILED", "tests": result.tests,
                     "failed": result.failed, "seed": result.seed,
                     "build_s": round(result.build_seconds, 1),
                     "run_s": round(result.run_seconds, 1),
                     "total_s": round(time.monotonic() - start, 1),
                     "result": "PASS" if passed else "FAIL"})
        if not result.passed:
            console.print(result.log_tail())
    if args.json:
        print(json.dumps({"config": config.summary(), "tops": rows, "passed": ok}, indent=2))
    else:
        from rich.table import Table
        table = Table(title=f"OpenMaia self-check, configuration {config.name!r} "
                            f"({config.fp8_macs_per_cycle} FP8 / {config.fp4_macs_per_cycle} FP4 "
                            f"MAC lanes)")
        for column in rows[0]:
            table.add_column(column)
        for row in rows:
            table.add_row(*(str(v) for v in row.values()))
        console.print(table)
        console.print("[bold green]self-check passed" if ok else "[bold red]self-check FAILED")
    return 0 if ok else 1


def _cmd_hbm_bench(args) -> int:
    """Replay a DRAMsim3-format trace on the HBM controller model under Verilator."""
    from .hbm.bench import run_bench
    result = run_bench(args.trace, mapping=args.mapping, queue_depth=args.queue_depth,
                       preset=args.preset, seed=args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"trace {result['trace']}: {result['requests']} requests "
              f"({result['reads']} reads, {result['writes']} writes), {result['preset']}, "
              f"mapping {result['mapping']}, queue depth {result['queue_depth']}")
        print(f"  bandwidth      {result['bandwidth']:.3f} of peak (16 B a cycle) over "
              f"{result['cycles']} cycles")
        print(f"  latency        avg {result['latency_avg']}  p50 {result['latency_p50']}  "
              f"p99 {result['latency_p99']} memory cycles")
        print(f"  row-hit rate   {result['row_hit_rate']:.3f} ({result['row_hits']} hits, "
              f"{result['row_misses']} misses, {result['row_conflicts']} conflicts)")
        print(f"  activates      {result['activates']}  precharges {result['precharges']}  "
              f"refreshes {result['refreshes']}")
        print(f"  timing checker {result['violations']} violations; simulated "
              f"{result['cycles_per_second']} cycles/s")
    return 0 if result["passed"] and result["violations"] == 0 else 1


def _cmd_run_gemm(args) -> int:
    """Quantize, compile, run and check one GEMM (openmaia.sdk.run.run_gemm)."""
    import numpy as np

    from .sdk.run import run_gemm
    a = np.load(args.a) if args.a else None
    b = np.load(args.b) if args.b else None
    from rich.console import Console
    bar, update = _progress(Console(stderr=True), "run")
    with bar:
        report, c = run_gemm(args.config, m=args.m, n=args.n, k=args.k, a_fmt=args.a_fmt,
                             b_fmt=args.b_fmt, a=a, b=b, seed=args.seed, backend=args.backend,
                             progress=lambda retired, total: update(retired, total,
                                                                    "commands retired"))
    if args.out:
        np.save(args.out, c)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        verdict = "bit-exact" if report["passed"] else "MISMATCH"
        print(f"gemm {args.m} x {args.n} x {args.k} {report['a_fmt']} x {report['b_fmt']} on "
              f"{report['backend']} ({report['config']}): {report['state']}, {verdict} "
              f"against mx_matmul")
        print(f"  commands       {report['commands']}")
        print(f"  MACs           {report['macs']}")
        print(f"  bytes moved    {report['bytes_in']} in, {report['bytes_out']} out "
              f"(intensity {report['arithmetic_intensity']:.2f} MAC/byte)")
        if report["cycles"] is None:
            print("  cycles         - (the golden backend has no time)")
        else:
            print(f"  cycles         {report['cycles']}  MAC utilization "
                  f"{report['mac_utilization']:.3f}")
    return 0 if report["passed"] else 1


def _progress(console, total_label):
    """A rich progress bar on stderr and its ``progress(done, total, text)`` callback."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=console, transient=True)
    task = bar.add_task(total_label, total=None)

    def update(done, total, text):
        bar.update(task, completed=done, total=total, description=text)
    return bar, update


def _cmd_run_mlp(args) -> int:
    """Train, quantize, compile and run the digits MLP (openmaia.sdk.mlp.run_mlp)."""
    from rich.console import Console

    from .sdk.mlp import RECIPES
    from .sdk.run import run_mlp
    recipes = list(RECIPES) if args.recipe == "all" else [args.recipe]
    err = Console(stderr=True)
    bar, update = _progress(err, "train and compile")
    with bar:
        report = run_mlp(args.config, backend=args.backend, recipes=recipes,
                         samples=args.samples, seed=args.seed, batch=args.batch,
                         progress=update)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if report["passed"] else 1
    from rich.table import Table
    console = _console()
    table = Table(title=f"mlp-digits {'-'.join(map(str, report['network']))} on "
                        f"{report['backend']} ({report['config']}), {report['samples']} test "
                        f"samples, seed {report['seed']}")
    table.add_column("")
    table.add_column("FP32", justify="right")
    for r in report["runs"]:
        table.add_column(f"{r['recipe']}\n{r['a_fmt']} x {r['b_fmt']}", justify="right")
    runs = report["runs"]

    def opt(value, spec):
        return "-" if value is None else spec.format(value)
    table.add_row("accuracy", f"{report['fp32']['accuracy']:.2%}",
                  *(f"{r['accuracy']:.2%}" for r in runs))
    table.add_row("vs FP32", "", *(f"{r['accuracy_vs_fp32']:+.2%}" for r in runs))
    table.add_row("logits vs numpy chain", "",
                  *("bit-exact" if r["bit_exact"] else "MISMATCH" for r in runs))
    table.add_row("state", "", *(r["state"] for r in runs))
    table.add_row("MACs", "", *(f"{r['macs']:,}" for r in runs))
    table.add_row("HBM bytes in", "", *(f"{r['bytes_in']:,}" for r in runs))
    table.add_row("HBM bytes out", "", *(f"{r['bytes_out']:,}" for r in runs))
    table.add_row("MAC / HBM byte", "", *(opt(r["arithmetic_intensity"], "{:.2f}") for r in runs))
    table.add_row("cycles", "", *(opt(r["cycles"], "{:,}") for r in runs))
    table.add_row("MAC utilization", "", *(opt(r["mac_utilization"], "{:.2%}") for r in runs))
    console.print(table)
    for r in report["runs"]:
        counters = ", ".join(f"{k} {v}" for k, v in r["counters"].items())
        console.print(f"{r['recipe']} counters: {counters}")
    if all(r["cycles"] is None for r in report["runs"]):
        console.print(f"cycles: - (the {report['backend']} backend has no time)")
    console.print(f"trained in {report['train']['seconds']} s ({report['train']['epochs']} "
                  f"epochs, train accuracy {report['train']['accuracy']:.2%}); run "
                  f"{report['run_seconds']} s")
    console.print("[bold green]passed" if report["passed"] else "[bold red]FAILED")
    return 0 if report["passed"] else 1


def _cmd_report(args) -> int:
    """Utilization breakdown and roofline of a run's JSON (openmaia.sdk.report)."""
    from .sdk.report import render_text, report
    items = report(Path(args.run), png=args.png)
    if args.json:
        print(json.dumps(items, indent=2))
    else:
        render_text(items, console=_console())
        if args.png:
            _console().print(f"wrote {args.png}")
    return 0


def _cmd_fpga_build(args) -> int:
    """Synthesize, place and route and pack a board build (openmaia.fpga.build)."""
    from rich.console import Console

    from .fpga.build import BuildError, build
    err = Console(stderr=True)
    start = time.monotonic()
    with err.status(f"{args.board}: elaborate") as status:
        def progress(step, line):
            status.update(f"{args.board} {step} ({time.monotonic() - start:.0f} s): "
                          f"{line[:90]}")
        try:
            result = build(args.board, args.config, hbm_bytes=args.hbm_bytes, baud=args.baud,
                           pnr=not args.no_pnr, root=args.build_root, seed=args.seed,
                           self_test=args.self_test, progress=progress)
        except BuildError as error:
            if error.result is not None:
                _print_fpga_result(error.result, args.json)
            else:
                err.print(f"[bold red]build failed[/]: {error}")
            return 1
    return _print_fpga_result(result, args.json)


def _print_fpga_result(result, as_json) -> int:
    from .fpga.build import render
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        render(result, _console())
    return 0 if all(result.fits.values()) and not result.error else 1


def _cmd_fpga_report(args) -> int:
    """Print the table of a finished build again (its result.json)."""
    from .fpga.build import load_result, reparse
    try:
        if args.reparse:
            board, _, config = Path(args.build_dir).resolve().name.partition("-")
            config = config.removesuffix("-selftest")
            result = reparse(args.build_dir, board=board, config=config)
        else:
            result = load_result(args.build_dir)
    except FileNotFoundError as error:
        raise ValueError(str(error)) from None
    return _print_fpga_result(result, args.json)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="openmaia", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("config", help="show a configuration preset")
    p.add_argument("name", nargs="?", default="default", choices=preset_names())
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_config)

    p = sub.add_parser("elaborate", help="write the Verilog of a registered top")
    p.add_argument("top")
    p.add_argument("--config", default="default", choices=preset_names())
    p.add_argument("-o", "--output", required=True, help="output file, or - for stdout")
    p.add_argument("--lint", action="store_true", help="also run verilator --lint-only -Wall")
    p.set_defaults(func=_cmd_elaborate)

    p = sub.add_parser("lint", help="verilator --lint-only -Wall on registered tops")
    p.add_argument("tops", nargs="*")
    p.add_argument("--config", default="default", choices=preset_names())
    p.set_defaults(func=_cmd_lint)

    p = sub.add_parser("selfcheck", help="elaborate, lint and simulate every registered top")
    p.add_argument("--config", default="default", choices=preset_names())
    p.add_argument("--top", action="append", metavar="TOP",
                   help="only this top (repeatable; default: every registered top)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_selfcheck)

    p = sub.add_parser("hbm-bench", help="replay a DRAMsim3 trace on the HBM model (Verilator)")
    p.add_argument("--trace", required=True, help="trace file: '0x<addr> READ|WRITE <cycle>'")
    p.add_argument("--mapping", default="MOP4CLXOR", choices=("RoBaRaCoCh", "MOP4CLXOR"))
    p.add_argument("--queue-depth", type=int, default=32)
    p.add_argument("--preset", default="HBM3_6400", choices=("HBM3_6400", "HBM3E_9600"))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_hbm_bench)

    p = sub.add_parser("run", help="run a workload through the SDK on a backend")
    run_sub = p.add_subparsers(dest="workload", required=True)
    g = run_sub.add_parser("gemm", help="C = A x B, MX-quantized along K, checked bit-exact")
    g.add_argument("--m", type=int, required=True)
    g.add_argument("--n", type=int, required=True)
    g.add_argument("--k", type=int, required=True)
    g.add_argument("--a", help="A (M x K) as a float32 .npy (default: random normal)")
    g.add_argument("--b", help="B (K x N) as a float32 .npy (default: random normal)")
    g.add_argument("--a-fmt", default="e4m3")
    g.add_argument("--b-fmt", default="e4m3")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--backend", default="golden", choices=("golden", "rtl", "fpga"))
    g.add_argument("--config", default="small", choices=preset_names())
    g.add_argument("--out", help="write C (float32) to this .npy")
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=_cmd_run_gemm)
    g = run_sub.add_parser("mlp-digits", help="the digits MLP, MX-quantized, on a backend; "
                                              "logits checked bit-exact, accuracy vs FP32")
    g.add_argument("--config", default="small", choices=preset_names())
    g.add_argument("--backend", default="golden", choices=("golden", "rtl", "fpga"))
    g.add_argument("--recipe", default="all", choices=("fp8", "fp8xfp4", "all"))
    g.add_argument("--samples", type=int, default=None,
                   help="first N test samples (default: all 450)")
    g.add_argument("--batch", type=int, default=None,
                   help="samples per program (default: all in one)")
    g.add_argument("--seed", type=int, default=0, help="training seed (the split is fixed)")
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=_cmd_run_mlp)

    p = sub.add_parser("report", help="utilization breakdown and roofline of a run's JSON")
    p.add_argument("run", help="the JSON of openmaia run gemm / mlp-digits --json")
    p.add_argument("--png", help="write the roofline plot to this PNG")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("fpga", help="FPGA board builds (YoWASP Yosys / nextpnr)")
    fpga_sub = p.add_subparsers(dest="fpga_command", required=True)
    g = fpga_sub.add_parser("build", help="synthesize, place and route, pack; print resources, "
                                          "Fmax, MAC lanes and peak GFLOPS")
    g.add_argument("--board", required=True, choices=("icebreaker", "ulx3s"))
    g.add_argument("--config", default=None, choices=preset_names(),
                   help="configuration preset (default: ice40 on icebreaker, ulx3s-fit on ulx3s; "
                        "ulx3s is the target-size tile, which does not fit)")
    g.add_argument("--hbm-bytes", type=int, default=None,
                   help="the tile's on-chip memory in bytes (default: the board's)")
    g.add_argument("--baud", type=int, default=115_200, help="UART rate (default 115200)")
    g.add_argument("--no-pnr", action="store_true",
                   help="Yosys only: counts against the device (exit 1 if it does not fit)")
    g.add_argument("--seed", type=int, default=None, help="nextpnr placement seed")
    g.add_argument("--self-test", action="store_true",
                   help="build the power-up self-test in (LEDs show pass / fail); build "
                        "directory <board>-<config>-selftest")
    g.add_argument("--build-root", default="build/fpga",
                   help="builds go to <root>/<board>-<config>/ (default build/fpga)")
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=_cmd_fpga_build)
    g = fpga_sub.add_parser("report", help="the table of a finished build (its result.json)")
    g.add_argument("build_dir", help="e.g. build/fpga/icebreaker-ice40")
    g.add_argument("--reparse", action="store_true",
                   help="rebuild result.json from the tool outputs (board and config from "
                        "the directory name)")
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=_cmd_fpga_report)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, NotImplementedError) as error:
        parser.error(str(error))


if __name__ == "__main__":
    sys.exit(main())
