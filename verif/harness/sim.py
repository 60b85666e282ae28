"""Run a cocotb testbench on an elaborated Amaranth component, from pytest or a script.

:func:`simulate` elaborates the component, builds it with Verilator (or Icarus) through
``cocotb_tools.runner``, runs the bench module and returns a :class:`SimResult`. Builds are cached
under a hash of the Verilog text and every build flag, and a file lock lets parallel pytest
workers share one build without racing. Every run prints its seed; passing that seed back
(``seed=`` here, ``--seed`` to pytest, ``OPENMAIA_SEED`` in the environment) reruns it exactly.

Defaults come from the environment, which the pytest options set (verif/tests/conftest.py):
``OPENMAIA_SIM`` (``verilator`` | ``icarus``), ``OPENMAIA_WAVES`` (``vcd`` | ``fst``),
``OPENMAIA_SEED`` and ``OPENMAIA_BUILD_DIR`` (default ``./build/sim``).
"""

import contextlib
import importlib.metadata
import json
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.lib import wiring
from filelock import FileLock

from .coverage import COVERAGE_FILE, CoverageReport
from .elaborate import elaborate, verilog_digest
from .toolchain import (fst_missing_reason, have_icarus, setup_environment,
                        waiver_config_text, write_waiver_file)

__all__ = ["simulate", "SimResult", "SimulationFailed", "bench_params", "build_root",
           "SIMULATORS"]

SIMULATORS = ("verilator", "icarus")
_PARAMS_ENV = "OPENMAIA_BENCH_PARAMS"
_run_counter = 0


class SimulationFailed(AssertionError):
    """A cocotb bench reported failing tests, or the simulator did not finish."""


@dataclass(frozen=True)
class SimResult:
    """What one :func:`simulate` call did."""
    name: str
    simulator: str
    seed: int
    tests: int
    failed: int
    run_dir: Path
    log_file: Path
    waves_file: Path | None
    build_seconds: float
    run_seconds: float
    build_cached: bool

    @property
    def passed(self) -> bool:
        return self.tests > 0 and self.failed == 0

    @property
    def coverage(self) -> "CoverageReport | None":
        """The coverage the bench exported with :func:`openmaia.harness.coverage.export`."""
        path = self.run_dir / COVERAGE_FILE
        return CoverageReport.load(path) if path.exists() else None

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no simulator log)"

    def check(self) -> "SimResult":
        """Raise :class:`SimulationFailed` unless every test of the bench passed."""
        if not self.passed:
            raise SimulationFailed(
                f"{self.name} on {self.simulator}: {self.failed} of {self.tests} cocotb tests "
                f"failed (seed {self.seed}; log {self.log_file})\n{self.log_tail()}")
        return self


def build_root() -> Path:
    return Path(os.environ.get("OPENMAIA_BUILD_DIR", Path.cwd() / "build" / "sim")).resolve()


def bench_params() -> dict:
    """Inside a cocotb bench: the ``params`` its :func:`simulate` call passed."""
    return json.loads(os.environ.get(_PARAMS_ENV, "{}"))


def _choose(value, env, default):
    if value is not None:
        return value
    return os.environ.get(env) or default


def _tool_versions() -> str:
    return ";".join(f"{pkg}={importlib.metadata.version(pkg)}"
                    for pkg in ("cocotb", "verilator", "amaranth"))


def _repeated_modules(verilog_text: str) -> bool:
    """Whether some module is instantiated 4 or more times (an array of engines)."""
    counts = {}
    for match in re.finditer(r"^  (\\?\S+) +\S+ \($", verilog_text, re.M):
        counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    return max(counts.values(), default=0) >= 4


def _array_build(verilog_text: str) -> bool:
    """Build as an array: Verilator inlines submodules by default, and 64 inlined engines made
    350 MB of C++ that took over an hour to compile. With ``-fno-inline`` one engine's code
    serves every instance, and only the top module is public for cocotb (cocotb's runner asks
    for every signal of every instance, ``--public-flat-rw``, which defeats the optimizer)."""
    return _repeated_modules(verilog_text)


def _build(runner, *, simulator, verilog_path, name, build_dir, waves, array=False):
    from cocotb_tools.runner import VerilatorControlFile
    sources, build_args, extra = [verilog_path], [], {}
    if simulator == "verilator":
        sources.insert(0, VerilatorControlFile(write_waiver_file(build_dir)))
        if array:
            build_args.append("-fno-inline")
            public = build_dir / "openmaia_public.vlt"
            public.write_text(f'`verilator_config\npublic_flat_rw -module "{name}" -var "*"\n')
            sources.insert(0, VerilatorControlFile(public))
            command = runner._build_command

            def without_public_flat():
                cmds = command()
                cmds[0] = [arg for arg in cmds[0] if arg != "--public-flat-rw"]
                return cmds
            runner._build_command = without_public_flat
        if waves == "fst":
            build_args.append("--trace-fst")
    else:
        extra["timescale"] = ("1ns", "1ps")
    runner.build(sources=sources, hdl_toplevel=name, build_dir=build_dir,
                 build_args=build_args, waves=bool(waves), log_file=build_dir / "build.log",
                 **extra)


def simulate(component: wiring.Component, *, bench: str, name: str, params: dict | None = None,
             testcase: str | None = None, seed: int | None = None, simulator: str | None = None,
             waves: str | bool | None = None, check: bool = True,
             verilog: str | None = None, array: bool | None = None) -> SimResult:
    """Elaborate ``component`` as module ``name`` and run the cocotb module ``bench`` on it.

    ``params`` (JSON-serialisable) reaches the bench through :func:`bench_params`. ``waves`` is
    ``"vcd"``, ``"fst"`` or false; the dump lands in the run folder named in the result. With
    ``check`` (the default) a failing bench raises :class:`SimulationFailed`; with
    ``check=False`` the result is returned either way, for tests that expect a failure.
    ``verilog``: the component's Verilog as :func:`~.elaborate.elaborate` gave it, when the caller
    has it already (big arrays take minutes to elaborate). ``array``: build as an array
    (Verilator ``-fno-inline``, only the top module public: much faster to compile, internal
    signals not visible to the bench); default: chosen from the Verilog's structure.
    """
    global _run_counter
    setup_environment()
    simulator = _choose(simulator, "OPENMAIA_SIM", "verilator")
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    if simulator == "icarus" and not have_icarus():
        raise RuntimeError("Icarus Verilog is not installed (Debian package iverilog)")
    waves = _choose(waves, "OPENMAIA_WAVES", "")
    if waves is True:
        waves = "vcd"
    if waves not in ("", False, "0", "vcd", "fst"):
        raise ValueError(f"waves must be 'vcd', 'fst' or off, not {waves!r}")
    waves = waves if waves in ("vcd", "fst") else ""
    if waves == "fst" and simulator == "verilator" and fst_missing_reason():
        raise RuntimeError(fst_missing_reason())
    if simulator == "icarus" and waves == "vcd":
        waves = "fst"  # cocotb's Icarus flow dumps FST only
    if seed is None:
        env_seed = os.environ.get("OPENMAIA_SEED")
        seed = int(env_seed) if env_seed else secrets.randbits(31)
    print(f"openmaia.harness: {name} [{bench}] on {simulator}, seed {seed} "
          f"(rerun with --seed {seed})", file=sys.stderr)

    from cocotb_tools.runner import get_runner
    from cocotb_tools.check_results import get_results

    verilog_text = verilog if verilog is not None else elaborate(component, name=name)
    array = simulator == "verilator" and (_array_build(verilog_text) if array is None else array)
    key = verilog_digest(verilog_text, name, simulator, str(waves), waiver_config_text(),
                         _tool_versions(), *(["array"] if array else []))
    build_dir = build_root() / f"{name}-{simulator}-{key}"
    build_dir.mkdir(parents=True, exist_ok=True)
    runner = get_runner(simulator)
    start = time.monotonic()
    with FileLock(str(build_dir) + ".lock"):
        done_marker = build_dir / "build.done"
        cached = done_marker.exists()
        verilog_path = build_dir / f"{name}.v"
        if not cached:
            verilog_path.write_text(verilog_text)
        if not cached or simulator == "icarus":
            _build(runner, simulator=simulator, verilog_path=verilog_path, name=name,
                   build_dir=build_dir, waves=waves, array=array)
            done_marker.write_text(key)
    build_seconds = time.monotonic() - start

    _run_counter += 1
    run_dir = build_dir / "runs" / f"{os.getpid()}-{_run_counter}-{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    results_xml = run_dir / "results.xml"
    log_file = run_dir / "sim.log"
    env = {_PARAMS_ENV: json.dumps(params or {}), "OPENMAIA_RUN_DIR": str(run_dir)}
    start = time.monotonic()
    with contextlib.suppress(SystemExit, RuntimeError):
        runner.test(test_module=bench, hdl_toplevel=name, hdl_toplevel_lang="verilog",
                    build_dir=build_dir, test_dir=run_dir, results_xml=str(results_xml),
                    testcase=testcase, seed=seed, waves=bool(waves), extra_env=env,
                    log_file=log_file, **({"timescale": ("1ns", "1ps")}
                                          if simulator == "icarus" else {}))
    run_seconds = time.monotonic() - start
    try:
        tests, failed = get_results(results_xml)
    except (RuntimeError, OSError):
        tests, failed = 0, 0
    waves_file = None
    if waves:
        found = sorted(run_dir.glob("*.vcd")) + sorted(run_dir.glob("*.fst"))
        waves_file = found[0] if found else None
    result = SimResult(name=name, simulator=simulator, seed=seed, tests=tests, failed=failed,
                       run_dir=run_dir, log_file=log_file, waves_file=waves_file,
                       build_seconds=build_seconds, run_seconds=run_seconds, build_cached=cached)
    return result.check() if check else result
