"""Elaborate Amaranth components to Verilog, and lint the result with Verilator."""

import hashlib
import subprocess
import tempfile
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from .toolchain import setup_environment, verilator_executable, write_waiver_file

__all__ = ["elaborate", "lint", "LintError", "verilog_digest"]


class LintError(Exception):
    """``verilator --lint-only -Wall`` reported a warning that is not a generated-code waiver."""


def elaborate(component: wiring.Component, *, name: str) -> str:
    """Verilog text of ``component`` as a module called ``name`` (ports from its signature)."""
    if not isinstance(component, wiring.Component):
        raise TypeError(f"expected a wiring.Component, not {component!r}")
    if not name.isidentifier():
        raise ValueError(f"module name must be a Verilog identifier, not {name!r}")
    setup_environment()
    return verilog.convert(component, name=name, emit_src=False)


def verilog_digest(*parts: str) -> str:
    """A short content hash used to key caches of builds derived from Verilog text."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def lint(source: "wiring.Component | str", *, name: str) -> str:
    """Run ``verilator --lint-only -Wall`` with only the waivers of :mod:`.toolchain`.

    ``source`` is a component (elaborated here) or Verilog text whose top module is ``name``.
    Returns Verilator's output; raises :class:`LintError` on any warning or error.
    """
    text = source if isinstance(source, str) else elaborate(source, name=name)
    with tempfile.TemporaryDirectory(prefix="openmaia-lint-") as tmp:
        path = Path(tmp, f"{name}.v")
        path.write_text(text)
        waivers = write_waiver_file(Path(tmp))
        proc = subprocess.run([verilator_executable(), "--lint-only", "-Wall", "--top-module",
                               name, str(waivers), str(path)],
                              capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 or "%Warning" in output or "%Error" in output:
        raise LintError(f"verilator lint of {name} failed:\n{output}")
    return output
