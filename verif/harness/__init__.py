"""One way to elaborate, simulate, lint, cover and measure any OpenMaia block.

``elaborate`` / ``lint`` turn a component into checked Verilog; ``simulate`` runs a cocotb bench
on it under Verilator or Icarus with cached builds; ``streams`` has the cocotb models of
``lib.stream`` ports; ``coverage`` the functional-coverage facility; ``prove`` runs a formal
proof (SymbiYosys with z3).
"""

from .toolchain import VERILATOR_WAIVERS, setup_environment
from .elaborate import LintError, elaborate, lint
from .sim import SimResult, SimulationFailed, bench_params, simulate
from .formal import FormalResult, prove

__all__ = ["VERILATOR_WAIVERS", "setup_environment", "LintError", "elaborate", "lint",
           "SimResult", "SimulationFailed", "bench_params", "simulate", "FormalResult", "prove"]
