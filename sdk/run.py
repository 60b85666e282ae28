"""Run a workload end to end on a backend: what ``openmaia run gemm`` does (docs/sdk.md); the
MLP demo (``openmaia run mlp-digits``) is :func:`openmaia.sdk.mlp.run_mlp`.

:func:`run_gemm` quantizes FP32 inputs with ``quantize_mx`` along K, compiles the GEMM for the
configuration, runs it on a backend, checks C bit-exact against ``mx_matmul`` on the quantized
inputs, and returns a report (plain data, JSON-ready, with the backend's ``counters``; what
``openmaia report`` reads, :mod:`.report`). Figures that need time (cycles, MAC utilization)
are present only when the backend has time; the ``golden`` backend has none and reports them as
None.
"""

import numpy as np

from ..config import Config, get_config
from ..numerics import Format, mx_matmul, quantize_mx
from ..tile.dma_descriptor import DmaDirection
from ..tile.isa import DmaCmd
from .backend import run_compiled
from .compiler import compile_gemm
from .golden import GoldenBackend
from .mlp import run_mlp
from .report import dma_bytes

__all__ = ["BACKENDS", "close_backend", "make_backend", "program_dma_bytes", "run_gemm",
           "run_mlp"]

#: Backend names the runtime knows.
BACKENDS = ("golden", "rtl", "fpga")


def make_backend(name: str, config: Config, *, hbm_bytes: int, seed: int = 0, progress=None):
    """A backend by name. ``progress``: ``f(retired, total)`` during a run, for backends that
    take time (the golden one runs at once and ignores it). ``rtl`` is the tile top under
    Verilator (:class:`~.rtl.RtlBackend`; close it after use, :func:`close_backend`); ``fpga``
    a board over its serial line, or the simulated board top (:func:`~.fpga.make_fpga_backend`,
    docs/fpga.md; close it after use)."""
    if name == "golden":
        return GoldenBackend(config, hbm_bytes=hbm_bytes, seed=seed)
    if name == "rtl":
        from .rtl import RtlBackend
        return RtlBackend(config, hbm_bytes=hbm_bytes, seed=seed, progress=progress)
    if name == "fpga":
        from .fpga import make_fpga_backend
        return make_fpga_backend(config, hbm_bytes=hbm_bytes, seed=seed, progress=progress)
    raise ValueError(f"unknown backend {name!r}; one of {', '.join(BACKENDS)}")


def program_dma_bytes(program) -> dict:
    """HBM bytes the program's DMA commands move, from the descriptors (no backend):
    ``{"read": HBM -> TSRAM, "written": TSRAM -> HBM}``. A run that completes every command
    moves exactly these; :mod:`.report` checks the counters against them."""
    moved = {"read": 0, "written": 0}
    for cmd in program:
        if isinstance(cmd, DmaCmd):
            load = cmd.desc.direction == DmaDirection.HBM_TO_TSRAM
            moved["read" if load else "written"] += cmd.desc.total_bytes
    return moved


def close_backend(device) -> None:
    """Stop a backend that holds a process (``close()``, as the rtl one's simulator)."""
    close = getattr(device, "close", None)
    if close is not None:
        close()


def run_gemm(config, *, m: int, n: int, k: int, a_fmt, b_fmt, a=None, b=None, seed: int = 0,
             backend: str = "golden", progress=None) -> tuple[dict, np.ndarray]:
    """Run ``C = A x B`` (module docstring). ``a`` (M x K) / ``b`` (K x N): FP32 inputs, random
    normal from ``seed`` when None; ``progress``: ``f(retired, total)`` passed to the backend.
    Returns ``(report, C)``."""
    config = get_config(config)
    a_fmt, b_fmt = Format.of(a_fmt), Format.of(b_fmt)
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(np.float32) if a is None else np.asarray(a, np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32) if b is None else np.asarray(b, np.float32)
    if a.shape != (m, k) or b.shape != (k, n):
        raise ValueError(f"A must be {m} x {k} and B {k} x {n}, not {a.shape} and {b.shape}")
    qa, qb = quantize_mx(a, a_fmt, axis=1), quantize_mx(b, b_fmt, axis=0)
    compiled = compile_gemm(config, m=m, n=n, k=k, fmt_a=a_fmt, fmt_b=b_fmt)
    device = make_backend(backend, config, hbm_bytes=compiled.hbm_bytes, seed=seed,
                          progress=progress)
    try:
        result, out = run_compiled(device, compiled, {"A": qa, "B": qb})
    finally:
        close_backend(device)
    c = out["C"]
    want = mx_matmul(qa, qb)
    exact = bool(result.ok and np.array_equal(c.view(np.uint32), want.view(np.uint32)))
    counters = result.counters
    plan = compiled.plans[0]
    bytes_in, bytes_out = dma_bytes(counters)
    moved = bytes_in + bytes_out
    cycles = counters.get("cycles")
    peak = config.macs_per_cycle(a_fmt, b_fmt)
    report = {
        "config": config.name, "backend": backend, "m": m, "n": n, "k": k,
        "a_fmt": a_fmt.name, "b_fmt": b_fmt.name, "seed": seed,
        "passed": exact, "state": result.state, "error": result.error.name,
        "commands": compiled.program.counts(),
        "macs": counters.get("macs", 0),
        "bytes_in": bytes_in, "bytes_out": bytes_out,
        "arithmetic_intensity": counters.get("macs", 0) / moved if moved else None,
        "plan": {"chunk": [plan.mc, plan.nc], "sub_chunk": [plan.sm, plan.sn],
                 "k_pieces": plan.chain, "a_full_k": plan.a_full_k,
                 "tsram_bytes": plan.tsram_bytes},
        "program_bytes": program_dma_bytes(compiled.program),
        "cycles": cycles,
        "mac_utilization": counters["macs"] / (peak * cycles) if cycles else None,
        "counters": counters,
    }
    return report, c
