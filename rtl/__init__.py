"""OpenMaia: an open MX (FP8 / FP6 / FP4) LLM-inference accelerator in Amaranth.

Subpackages mirror the chip hierarchy: ``openmaia.compute`` (Tile Tensor Unit and its engines),
``openmaia.numerics`` (the golden model of the arithmetic), ``openmaia.harness`` (elaborate,
simulate, lint, measure) and ``openmaia.benches`` (cocotb testbenches).
"""

__version__ = "0.1.0"
