"""The ``golden`` runtime backend: a bit-exact functional model of one tile executing a command
program (HBM bytes, TSRAM bytes, semaphores, the TTU's resident accumulators).

Each command does what docs/isa.md and docs/tcp.md say, through the golden model of its engine:

* ``DMA``: :func:`openmaia.tile.dma_descriptor.dma_reference` (the queue's HBM window,
  ``config.axi_addr_bits``, the TSRAM size);
* ``TILE_OP``: :func:`openmaia.tile.tile_op.execute_tile_op` (the configuration's formats, array,
  ``acc_depth`` accumulators, panel, TSRAM);
* ``TVP``: :func:`execute_tvp`, the golden model of the Tile Vector Processor
  (:class:`openmaia.tile.tvp.TileVectorProcessor`, docs/tvp.md "TileVectorProcessor"): its
  checks are :func:`openmaia.tile.tvp.tvp_status` (``ILLEGAL_FIELD``, ``FORMAT_NOT_BUILT``,
  ``ILLEGAL_SHAPE``, ``ILLEGAL_FIELD`` for alignment / strides / overlapping planes,
  ``TSRAM_OUT_OF_RANGE``, in that order; a refused command writes nothing); then the lane
  functions of :mod:`openmaia.numerics.vector` over ``rows`` x ``cols`` FP32 values (all of A
  and B read before D is written), ``CVT_BF16`` written as packed little-endian BF16 rows (2
  bytes an element, row stride ``d_stride``), and :func:`openmaia.numerics.quantize_mx`
  (blocked along each row, a partial last block padded with zeros) for ``QUANT_MX``, codes and
  scales written in the layout of docs/layout.md;
* ``WAIT`` / ``SIGNAL`` / ``FENCE`` / ``INTERRUPT`` / ``HALT`` and the error rules: as the TCP
  (the static checks are :func:`~openmaia.tile.isa.check_command`; an engine error stops the
  stream after the commands already issued complete).

Timing: an engine command's memory effect happens when it *completes*. ``timing="eager"``
completes every command at its issue; ``"lazy"`` completes commands only when a WAIT or FENCE
needs them, or at the end; ``"random"`` (with ``seed``) completes queued commands at random
points. Completion is in order per engine (per DMA queue), as on the chip. A race-free program
(see :func:`~.protocol.check_protocol`) gives the same memory under every timing.
"""

import random
from collections import deque

import numpy as np

from ..config import Config
from ..errors import ErrorCode
from ..layout import MxOperandLayout, k_blocks, packed_row_bytes
from ..numerics import vector
from ..numerics.formats import Format
from ..numerics.mx import quantize_mx
from ..tile.dma_descriptor import DmaDirection, dma_reference
from ..tile.isa import (
    SEM_MAX,
    DmaCmd,
    FenceCmd,
    HaltCmd,
    InterruptCmd,
    SignalCmd,
    TileOpCmd,
    TvpCmd,
    TvpOp,
    WaitCmd,
    check_command,
    decode,
    encode,
)
from ..tile.tile_op import execute_tile_op
from ..tile.tvp import tvp_status
from .backend import Backend, RunResult
from .protocol import target_of

__all__ = ["TVP_GOLDEN", "GoldenBackend", "execute_tvp", "static_status"]

_LANE = {
    TvpOp.ADD: lambda a, b, c: vector.fp32_add(a, b),
    TvpOp.MUL: lambda a, b, c: vector.fp32_mul(a, b),
    TvpOp.MAX: lambda a, b, c: vector.fp32_max(a, b),
    TvpOp.BIAS_ADD: lambda a, b, c: vector.bias_add(a, b),
    TvpOp.SCALE: lambda a, b, c: vector.scale(a, np.uint32(c.scalar)),
    TvpOp.RELU: lambda a, b, c: vector.relu(a),
    TvpOp.GELU: lambda a, b, c: vector.gelu(a),
    TvpOp.CVT_BF16: lambda a, b, c: vector.fp32_to_bf16(a),
}
#: TVP ops the golden model executes (all of them).
TVP_GOLDEN = frozenset(_LANE) | {TvpOp.QUANT_MX}


def _fp32_rows(mem, base, stride, rows, cols):
    """``rows`` x ``cols`` FP32 bit patterns, row ``r`` at ``base + r * stride``."""
    return np.stack([mem[base + r * stride:base + r * stride + 4 * cols].view("<u4")
                     for r in range(rows)]).astype(np.uint32)


def _write_fp32_rows(mem, base, stride, values, dtype="<u4"):
    """Store ``values`` (rows x cols) as little-endian ``dtype`` rows at ``base + r * stride``,
    in row order (a later row wins where rows overlap)."""
    rows = values.shape[0]
    le = np.ascontiguousarray(values.astype(dtype)).view(np.uint8).reshape(rows, -1)
    for r in range(rows):
        mem[base + r * stride: base + r * stride + le.shape[1]] = le[r]


def execute_tvp(mem: np.ndarray, c: TvpCmd, *, formats) -> ErrorCode:
    """Run one TVP command on TSRAM ``mem`` (1-D uint8 of the SRAM's size, in place); return
    its status (module docstring; the rules are :func:`openmaia.tile.tvp.tvp_status`)."""
    status = tvp_status(c, formats=formats, tsram_bytes=len(mem))
    if status != ErrorCode.OK:
        return status
    op = TvpOp(c.op)
    a = _fp32_rows(mem, c.a, c.a_stride, c.rows, c.cols)
    b = None
    if op in (TvpOp.ADD, TvpOp.MUL, TvpOp.MAX):
        b = _fp32_rows(mem, c.b, c.b_stride, c.rows, c.cols)
    elif op is TvpOp.BIAS_ADD:
        b = _fp32_rows(mem, c.b, 0, 1, c.cols)
    if op is TvpOp.QUANT_MX:
        fmt = Format.from_hw_code(c.fmt)
        t = quantize_mx(a.view(np.float32), fmt, axis=1)
        row_bytes = packed_row_bytes(c.cols, fmt)
        lay = MxOperandLayout(rows=c.rows, k=c.cols, fmt=fmt, codes_base=c.d,
                              codes_row_stride=max(c.d_stride, row_bytes),
                              scales_base=c.d_scales,
                              scales_row_stride=max(c.d_scales_stride, k_blocks(c.cols)))
        lay.write(mem, t.codes, t.scales)
        return ErrorCode.OK
    out = np.asarray(_LANE[op](a, b, c), np.uint32).reshape(c.rows, c.cols)
    _write_fp32_rows(mem, c.d, c.d_stride, out, "<u2" if op is TvpOp.CVT_BF16 else "<u4")
    return ErrorCode.OK


def static_status(cmd, *, semaphores, dma_queues, hbm_addr_bits,
                  vector_unit=True) -> ErrorCode:
    """:func:`~openmaia.tile.isa.check_command` on a command *object* whose fields fit their
    widths (rules 1-3 that such an object can break), without building its bits: a TVP command
    without the vector unit, a DMA queue or HBM address / stride out of range, a semaphore
    index out of range. A test checks it equals ``check_command(encode(cmd))``."""
    if isinstance(cmd, TvpCmd) and not vector_unit:
        return ErrorCode.ENGINE_NOT_BUILT
    if isinstance(cmd, DmaCmd):
        d = cmd.desc
        if cmd.queue >= dma_queues or any(v >> hbm_addr_bits for v in
                                          (d.hbm_addr, d.hbm_stride1, d.hbm_stride2)):
            return ErrorCode.ILLEGAL_FIELD
    signal = getattr(cmd, "signal", None)
    if signal is not None and signal >= semaphores:
        return ErrorCode.SEMAPHORE_INDEX
    if isinstance(cmd, (WaitCmd, SignalCmd)) and cmd.sem >= semaphores:
        return ErrorCode.SEMAPHORE_INDEX
    return ErrorCode.OK


class GoldenBackend(Backend):
    """The functional tile (module docstring). ``hbm_bytes``: size of the HBM model;
    ``windows``: per DMA queue ``(base, limit)`` (inclusive; default the whole HBM);
    ``timing``: "eager", "lazy" or "random" (with ``seed``); ``check``: "full" checks every
    command's bits with ``check_command`` (slow: Amaranth layouts), "fast" the object form
    (:func:`static_status`, equal on encodable objects)."""
    name = "golden"

    def __init__(self, config: Config, *, hbm_bytes: int = 1 << 22, windows=None,
                 timing: str = "eager", seed: int = 0, check: str = "fast"):
        if check not in ("fast", "full"):
            raise ValueError(f"check must be fast or full, not {check!r}")
        self.check = check
        if timing not in ("eager", "lazy", "random"):
            raise ValueError(f"timing must be eager, lazy or random, not {timing!r}")
        if not isinstance(hbm_bytes, int) or not 0 < hbm_bytes <= 1 << config.axi_addr_bits:
            raise ValueError(f"hbm_bytes must be in 1 .. 2**{config.axi_addr_bits}")
        self.config = config
        self.hbm = np.zeros(hbm_bytes, np.uint8)
        self.windows = list(windows) if windows is not None else \
            [(0, hbm_bytes - 1)] * config.dma_queues
        if len(self.windows) != config.dma_queues:
            raise ValueError(f"windows: one per DMA queue ({config.dma_queues})")
        self.timing = timing
        self.rng = random.Random(seed)
        self.reset()

    # -- interface -------------------------------------------------------------------------

    def load(self, addr, data):
        data = np.frombuffer(bytes(data), np.uint8)
        if addr < 0 or addr + len(data) > len(self.hbm):
            raise ValueError(f"HBM write {addr:#x}+{len(data)} outside {len(self.hbm)} bytes")
        self.hbm[addr:addr + len(data)] = data

    def read(self, addr, nbytes):
        if addr < 0 or addr + nbytes > len(self.hbm):
            raise ValueError(f"HBM read {addr:#x}+{nbytes} outside {len(self.hbm)} bytes")
        return self.hbm[addr:addr + nbytes].tobytes()

    def reset(self):
        self.tsram = np.zeros(self.config.tsram_bytes, np.uint8)
        self.semaphores = [0] * self.config.tcp_semaphores
        self.resident = None
        self._counters = {}

    def counters(self):
        return dict(self._counters)

    # -- execution -------------------------------------------------------------------------

    def _count(self, name, n=1):
        self._counters[name] = self._counters.get(name, 0) + n

    def _execute(self, cmd) -> ErrorCode:
        cfg = self.config
        if isinstance(cmd, DmaCmd):
            d = cmd.desc
            load = d.direction == DmaDirection.HBM_TO_TSRAM
            hbm, ts = memoryview(self.hbm), memoryview(self.tsram)
            src, dst = (hbm, ts) if load else (ts, hbm)
            status = dma_reference(d, src, dst, hbm_addr_bits=cfg.axi_addr_bits,
                                   window=self.windows[cmd.queue], tsram_bytes=cfg.tsram_bytes)
            if status == ErrorCode.OK:
                self._count("dma_bytes_in" if load else "dma_bytes_out", d.total_bytes)
            return status
        if isinstance(cmd, TileOpCmd):
            status, _, self.resident = execute_tile_op(
                self.tsram, cmd.op, self.resident, formats=cfg.formats, rows=cfg.array_rows,
                cols=cfg.array_cols, slots=cfg.acc_depth, panel_blocks=cfg.ttu_panel_blocks,
                tsram_bytes=cfg.tsram_bytes)
            if status == ErrorCode.OK:
                op = cmd.op.op
                self._count("macs", op.m * op.n * 32 * op.k)
            return status
        status = execute_tvp(self.tsram, cmd, formats=cfg.formats)
        if status == ErrorCode.OK:
            self._count("tvp_elements", cmd.rows * cmd.cols)
        return status

    def _static_status(self, cmd) -> ErrorCode:
        cfg = self.config
        if self.check == "full" or isinstance(cmd, int):
            bits = cmd if isinstance(cmd, int) else encode(cmd)
            return check_command(bits, semaphores=cfg.tcp_semaphores,
                                 dma_queues=cfg.dma_queues, hbm_addr_bits=cfg.axi_addr_bits,
                                 vector_unit=cfg.vector_unit)
        return static_status(cmd, semaphores=cfg.tcp_semaphores, dma_queues=cfg.dma_queues,
                             hbm_addr_bits=cfg.axi_addr_bits, vector_unit=cfg.vector_unit)

    def run(self, program) -> RunResult:
        cfg = self.config
        commands = list(program)
        pending = {}                  # target -> deque of (cmd, signal)
        first_error = [None]          # (code, source, position)
        position = 0

        def source_of(cmd):
            return {DmaCmd: "DMA", TileOpCmd: "TTU", TvpCmd: "TVP"}[type(cmd)]

        def complete(target):
            cmd, signal = pending[target].popleft()
            status = self._execute(cmd)
            self._count(f"completed_{source_of(cmd).lower()}")
            if status != ErrorCode.OK:
                self._count("engine_errors")
                if first_error[0] is None:
                    first_error[0] = (status, source_of(cmd), position)
            if signal is not None:
                if self.semaphores[signal] == SEM_MAX:
                    if first_error[0] is None:
                        first_error[0] = (ErrorCode.SEMAPHORE_OVERFLOW, "COMPLETION", position)
                else:
                    self.semaphores[signal] += 1

        def busy_targets():
            return [t for t, q in pending.items() if q]

        def complete_one(sem=None):
            targets = busy_targets()
            if sem is not None:    # only streams that can signal ``sem``: the fewest completions
                targets = [t for t in targets if any(s == sem for _, s in pending[t])] or targets
            complete(self.rng.choice(targets) if self.timing == "random" else targets[0])

        def drain():
            while busy_targets():
                complete_one()

        state = "RUNNING"
        for cmd in commands:
            if first_error[0] is not None:
                state = "ERROR"
                break
            status = self._static_status(cmd)
            if status == ErrorCode.OK and isinstance(cmd, int):
                cmd = decode(cmd)
            if status == ErrorCode.OK and isinstance(cmd, SignalCmd) and \
                    self.semaphores[cmd.sem] + cmd.count > SEM_MAX:
                status = ErrorCode.SEMAPHORE_OVERFLOW
            if status != ErrorCode.OK:
                first_error[0] = (status, "COMMAND", position)
                state = "ERROR"
                break
            target = target_of(cmd, cfg.dma_queues)
            if target is not None:
                pending.setdefault(target, deque()).append((cmd, getattr(cmd, "signal", None)))
                self._count(f"issued_{source_of(cmd).lower()}")
                if self.timing == "eager":
                    complete(target)
                elif self.timing == "random":
                    while busy_targets() and self.rng.random() < 0.5:
                        complete_one()
            elif isinstance(cmd, WaitCmd):
                while self.semaphores[cmd.sem] < cmd.count and busy_targets() and \
                        first_error[0] is None:
                    complete_one(cmd.sem)
                if first_error[0] is not None:
                    state = "ERROR"
                    break
                if self.semaphores[cmd.sem] < cmd.count:
                    state = "BLOCKED"
                    break
                self.semaphores[cmd.sem] -= cmd.count
                self._count("waits")
            elif isinstance(cmd, SignalCmd):
                self.semaphores[cmd.sem] += cmd.count
            elif isinstance(cmd, FenceCmd):
                drain()
            elif isinstance(cmd, InterruptCmd):
                self._counters.setdefault("interrupts", []).append(cmd.code)
            position += 1
            if isinstance(cmd, HaltCmd):
                state = "HALTED"
                break
        drain()
        if first_error[0] is not None:
            state = "ERROR"
        self._counters["retired"] = position
        error, source, err_pos = first_error[0] or (ErrorCode.OK, None, None)
        return RunResult(state=state, error=error, source=source, position=position,
                         error_position=err_pos, counters=self.counters())
