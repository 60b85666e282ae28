"""The runtime backend interface, shared by ``golden`` (:mod:`.golden`), ``rtl`` (Verilator tile
top, to come) and ``fpga`` (a board, to come), and the helpers that put a compiled workload's
tensors into a backend's HBM and take its results out.

A backend holds one tile: HBM (byte-addressed, ``hbm_bytes``), the tile SRAM and the engines.

* ``load(addr, data)``: write bytes into HBM (the host's DMA into device memory);
* ``read(addr, nbytes) -> bytes``: read HBM;
* ``run(program) -> RunResult``: feed the command stream to the Tile Control Processor and return
  when it stops (HALT, an error, or a WAIT nothing can satisfy);
* ``counters() -> dict``: the counters of the last run (names in docs/sdk.md; a backend reports
  the ones it has, ``cycles`` only where time exists);
* ``reset()``: clear the TSRAM, the semaphores and the counters (HBM is kept).
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from ..errors import ErrorCode
from ..layout import Fp32MatrixLayout, MxOperandLayout

__all__ = ["Backend", "RunResult", "read_output", "run_compiled", "write_inputs"]


@dataclass
class RunResult:
    """How a run ended: ``state`` ("HALTED", "ERROR", "BLOCKED" (a WAIT nothing can satisfy) or
    "RUNNING" (the stream ran out without HALT)); ``error`` and ``source`` ("COMMAND", "DMA",
    "TTU", "TVP" or None) of the first error; ``position``: commands retired; ``counters``."""
    state: str
    error: ErrorCode = ErrorCode.OK
    source: str | None = None
    position: int = 0
    error_position: int | None = None
    counters: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state == "HALTED" and self.error == ErrorCode.OK


class Backend(ABC):
    """One tile behind the runtime interface (module docstring)."""
    name: str = "abstract"

    @abstractmethod
    def load(self, addr: int, data) -> None: ...

    @abstractmethod
    def read(self, addr: int, nbytes: int) -> bytes: ...

    @abstractmethod
    def run(self, program) -> RunResult: ...

    @abstractmethod
    def counters(self) -> dict: ...

    @abstractmethod
    def reset(self) -> None: ...


def write_inputs(backend: Backend, compiled, tensors: dict) -> None:
    """Write ``tensors`` (name -> MXTensor for MX operands (A M x K, B / W K x N), float32 array
    for FP32 ones) at the places ``compiled.inputs`` gives them."""
    missing = set(compiled.inputs) - set(tensors)
    if missing:
        raise ValueError(f"missing input(s): {', '.join(sorted(missing))}")
    for name, layout in compiled.inputs.items():
        value = tensors[name]
        image = np.zeros(layout.end - layout.start, np.uint8)
        shifted = layout.replace(**({"codes_base": layout.codes_base - layout.start,
                                     "scales_base": layout.scales_base - layout.start}
                                    if isinstance(layout, MxOperandLayout)
                                    else {"base": layout.base - layout.start}))
        if isinstance(layout, MxOperandLayout):
            shifted.write_tensor(image, value)
        else:
            shifted.write(image, np.asarray(value, np.float32).reshape(layout.rows, layout.cols))
        # write only the footprint: read back the gaps so they stay as they are
        mask = shifted.footprint_mask(len(image))
        old = np.frombuffer(backend.read(layout.start, len(image)), np.uint8)
        backend.load(layout.start, np.where(mask, image, old).astype(np.uint8).tobytes())


def read_output(backend: Backend, layout):
    """An output: float32 array (Fp32MatrixLayout) or ``(codes, scales)`` (MxOperandLayout)."""
    raw = np.frombuffer(backend.read(layout.start, layout.end - layout.start), np.uint8)
    if isinstance(layout, Fp32MatrixLayout):
        return layout.replace(base=layout.base - layout.start).read(raw)
    shifted = layout.replace(codes_base=layout.codes_base - layout.start,
                             scales_base=layout.scales_base - layout.start)
    return shifted.read(raw)


def run_compiled(backend: Backend, compiled, tensors: dict) -> tuple[RunResult, dict]:
    """Write the inputs, run the program, read every output: ``(result, {name: value})``."""
    write_inputs(backend, compiled, tensors)
    result = backend.run(compiled.program)
    return result, {name: read_output(backend, lay) for name, lay in compiled.outputs.items()}
