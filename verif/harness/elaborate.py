"""Elaborate Amaranth components to Verilog, and lint the result with Verilator."""

import hashlib
import re
import subprocess
import tempfile
from pathlib import Path

from amaranth.back import rtlil, verilog
from amaranth.hdl import _ast, _ir
from amaranth.lib import wiring

from .toolchain import setup_environment, verilator_executable, write_waiver_file

__all__ = ["elaborate", "lint", "LintError", "verilog_digest", "deduplicate_rtlil"]


class LintError(Exception):
    """``verilator --lint-only -Wall`` reported a warning that is not a generated-code waiver."""


def elaborate(component: wiring.Component, *, name: str) -> str:
    """Verilog text of ``component`` as a module called ``name`` (ports from its signature)."""
    if not isinstance(component, wiring.Component):
        raise TypeError(f"expected a wiring.Component, not {component!r}")
    if not name.isidentifier():
        raise ValueError(f"module name must be a Verilog identifier, not {name!r}")
    setup_environment()
    # What amaranth.back.verilog.convert does, with identical modules merged before Yosys runs.
    ports = {}
    for path, member, value in component.signature.flatten(component):
        if isinstance(value, _ast.ValueCastable):
            value = value.as_value()
        if isinstance(value, _ast.Value):
            direction = (_ir.PortDirection.Input if member.flow == wiring.In
                         else _ir.PortDirection.Output)
            ports["__".join(map(str, path))] = (value, direction)
    fragment = _ir.Fragment.get(component, None)
    rtlil_text, _ = rtlil.convert_fragment(fragment, ports, name, emit_src=False)
    return verilog._convert_rtlil_text(deduplicate_rtlil(rtlil_text))


_RTLIL_MODULE = re.compile(r"^(?:attribute [^\n]*\n)*module (\S+)\n.*?^end\n", re.M | re.S)


def deduplicate_rtlil(text: str) -> str:
    """RTLIL ``text`` with identical modules merged.

    Amaranth writes one module for every submodule instance (``\\top.engine_0_0``,
    ``\\top.engine_0_1``, ... each with its own children), so an array of engines is converted,
    linted and compiled once per instance. Here, from the top of the hierarchy down, a module
    whose text equals an earlier one's (up to its own name and its children's name prefix) is
    dropped with all its descendants, and every instance of it refers to the earlier module.
    The logic is unchanged; Yosys and Verilator then see each distinct module once.
    """
    modules = {m.group(1): m.group(0) for m in _RTLIL_MODULE.finditer(text)}
    if len(modules) < 2:
        return text
    names = list(modules)
    dropped, replacement, seen = set(), {}, {}
    for name in sorted(names, key=lambda n: n.count(".")):
        if name in dropped:
            continue
        body = modules[name]
        key = body.replace(f"module {name}\n", "module @\n", 1).replace(f"{name}.", "@.")
        if key not in seen:
            seen[key] = name
            continue
        keep = seen[key]
        replacement[name] = keep
        dropped.add(name)
        dropped.update(n for n in names if n.startswith(f"{name}."))
    if not replacement:
        return text
    cell = re.compile(r"^(\s*cell )(\S+)( )", re.M)

    def retarget(match):
        target = match.group(2)
        # an instance of a dropped module, or of a descendant of one, names the kept copy
        for old, new in replacement.items():
            if target == old:
                return f"{match.group(1)}{new}{match.group(3)}"
            if target.startswith(f"{old}."):
                return f"{match.group(1)}{new}{target[len(old):]}{match.group(3)}"
        return match.group(0)

    head = text[:_RTLIL_MODULE.search(text).start()]
    return head + "\n".join(cell.sub(retarget, modules[n]) for n in names if n not in dropped)


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
