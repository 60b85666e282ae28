"""Memory footprints of tile commands and the semaphore-protocol checker.

:func:`footprint` gives the bytes an engine command reads and writes (TSRAM and HBM), from the
command alone. :func:`check_protocol` proves a program race-free under *any* engine timing the
Tile Control Processor allows (docs/tcp.md): engine commands complete in order per engine (per
DMA queue), at any time after their issue; the issue stream is in order and a WAIT passes as soon
as its semaphore holds the count. From the WAITs and FENCEs alone it derives, for each issue
point, which engine commands are *guaranteed* complete, and reports:

* a **hazard**: a command issued while an earlier, not provably complete command touches a byte
  it touches, one of the two writing (RAW, WAR, WAW); same-engine order is *not* taken as memory
  order (the TTU's operand reads may run ahead of an earlier op's C writes; docs/ttu.md);
* a **deadlock**: a WAIT that no completion can satisfy;
* an **unfinished** command: an engine command not provably complete when the program ends
  (HALT or end of stream), so the host could read before it lands.

The semaphores' signal order assumption is only the TCP's: a completion adds 1 to the command's
``signal`` semaphore; SIGNAL adds its count.
"""

from dataclasses import dataclass

from ..layout import merge_ranges, packed_row_bytes, ranges_overlap
from ..numerics.formats import Format
from ..tile.dma_descriptor import DmaDirection
from ..tile.isa import (
    DmaCmd,
    FenceCmd,
    HaltCmd,
    SignalCmd,
    TileOpCmd,
    TvpCmd,
    TvpOp,
    WaitCmd,
)
from ..tile.tile_op import block_bytes

__all__ = ["Access", "ProtocolError", "check_protocol", "footprint", "target_of"]


class ProtocolError(AssertionError):
    """A program breaks the semaphore protocol (the message lists every violation)."""


@dataclass(frozen=True)
class Access:
    """Bytes of one memory (``space`` "tsram" or "hbm") a command reads or writes."""
    space: str
    ranges: tuple        # merged half-open (start, stop) ranges
    write: bool

    @property
    def lo(self):
        return self.ranges[0][0] if self.ranges else 0

    @property
    def hi(self):
        return self.ranges[-1][1] if self.ranges else 0

    def conflicts(self, other: "Access") -> bool:
        if self.space != other.space or not (self.write or other.write):
            return False
        if self.hi <= other.lo or other.hi <= self.lo:
            return False
        return ranges_overlap(self.ranges, other.ranges)


def _rows(base, stride, row_bytes, rows, count2=1, stride2=0):
    return tuple(merge_ranges((base + i2 * stride2 + r * stride,
                               base + i2 * stride2 + r * stride + row_bytes)
                              for i2 in range(count2) for r in range(rows)))


def target_of(cmd, dma_queues: int):
    """The in-order completion stream of an engine command: ``("dma", q)``, ``"ttu"``,
    ``"tvp"``; None for the others."""
    if isinstance(cmd, DmaCmd):
        return ("dma", cmd.queue)
    if isinstance(cmd, TileOpCmd):
        return "ttu"
    if isinstance(cmd, TvpCmd):
        return "tvp"
    return None


def footprint(cmd) -> list[Access]:
    """The :class:`Access` list of an engine command (empty for the others)."""
    if isinstance(cmd, DmaCmd):
        d = cmd.desc
        n = d.row_bytes
        hbm = _rows(d.hbm_addr, d.hbm_stride1, n, d.count1, d.count2, d.hbm_stride2)
        ts = _rows(d.tsram_addr, d.tsram_stride1, n, d.count1, d.count2, d.tsram_stride2)
        load = d.direction == DmaDirection.HBM_TO_TSRAM
        return [Access("hbm", hbm, not load), Access("tsram", ts, load)]
    if isinstance(cmd, TileOpCmd):
        t = cmd.op
        op = t.op
        out = []
        for place, fmt, rows in ((t.a, op.fmt_a, op.m), (t.b, op.fmt_b, op.n)):
            out.append(Access("tsram", _rows(place.codes, place.codes_stride,
                                             op.k * block_bytes(fmt), rows), False))
            out.append(Access("tsram", _rows(place.scales, place.scales_stride, op.k, rows),
                              False))
        if not op.keep:
            out.append(Access("tsram", _rows(t.c.base, t.c.stride, 4 * op.n, op.m), True))
        return out
    if isinstance(cmd, TvpCmd):
        return tvp_footprint(cmd)
    return []


def tvp_footprint(c: TvpCmd) -> list[Access]:
    """Reads and writes of a TVP command (docs/isa.md, TVP command)."""
    row = 4 * c.cols
    out = [Access("tsram", _rows(c.a, c.a_stride, row, c.rows), False)]
    if c.op in (TvpOp.ADD, TvpOp.MUL, TvpOp.MAX):
        out.append(Access("tsram", _rows(c.b, c.b_stride, row, c.rows), False))
    elif c.op is TvpOp.BIAS_ADD:
        out.append(Access("tsram", _rows(c.b, 0, row, 1), False))
    if c.op is TvpOp.QUANT_MX:
        fmt = Format.from_hw_code(c.fmt)
        nb = -(-c.cols // 32)
        out.append(Access("tsram", _rows(c.d, c.d_stride, packed_row_bytes(c.cols, fmt), c.rows),
                          True))
        out.append(Access("tsram", _rows(c.d_scales, c.d_scales_stride, nb, c.rows), True))
    elif c.op is TvpOp.CVT_BF16:
        out.append(Access("tsram", _rows(c.d, c.d_stride, 2 * c.cols, c.rows), True))
    else:
        out.append(Access("tsram", _rows(c.d, c.d_stride, row, c.rows), True))
    return out


def check_protocol(program, *, dma_queues: int, raise_on_error: bool = True) -> list[str]:
    """The protocol violations of ``program`` (a Program or list of commands), module docstring.
    Raises :class:`ProtocolError` listing them unless ``raise_on_error`` is False."""
    commands = list(program)
    issued = {}          # target -> [(index, signal sem, accesses)]
    done = {}            # target -> commands known complete (a prefix)
    signals = {}         # sem -> SIGNAL counts so far
    consumed = {}        # sem -> WAIT counts so far
    live = []            # (index, target, position, accesses) not known complete
    problems = []

    def known(target, pos):
        return pos < done.get(target, 0)

    def complete_prefix(target, count):
        done[target] = max(done.get(target, 0), count)

    for i, cmd in enumerate(commands):
        target = target_of(cmd, dma_queues)
        if target is not None:
            acc = footprint(cmd)
            live[:] = [e for e in live if not known(e[1], e[2])]
            for j, t2, _, acc2 in live:
                for a in acc:
                    hit = next((b for b in acc2 if a.conflicts(b)), None)
                    if hit is not None:
                        kind = ("RAW" if not a.write else "WAW" if hit.write else "WAR")
                        problems.append(f"{kind} hazard: command {i} ({cmd.opcode.name}) may "
                                        f"run before command {j} ({commands[j].opcode.name}) "
                                        f"completes ({a.space} {a.lo:#x}..{a.hi:#x})")
                        break
            lst = issued.setdefault(target, [])
            lst.append((i, getattr(cmd, "signal", None)))
            live.append((i, target, len(lst) - 1, acc))
        elif isinstance(cmd, WaitCmd):
            s = cmd.sem
            need = consumed.get(s, 0) + cmd.count - signals.get(s, 0)
            total = sum(1 for lst in issued.values() for _, sig in lst if sig == s)
            if need > total:
                problems.append(f"deadlock: WAIT {i} on semaphore {s} needs {need} completions, "
                                f"at most {total} can come")
                break
            for target, lst in issued.items():
                others = total - sum(1 for _, sig in lst if sig == s)
                k = need - others          # signallers on this target that must have completed
                if k > 0:
                    pos = [p for p, (_, sig) in enumerate(lst) if sig == s][k - 1]
                    complete_prefix(target, pos + 1)
            consumed[s] = consumed.get(s, 0) + cmd.count
        elif isinstance(cmd, SignalCmd):
            signals[cmd.sem] = signals.get(cmd.sem, 0) + cmd.count
        elif isinstance(cmd, FenceCmd):
            for target, lst in issued.items():
                complete_prefix(target, len(lst))
        if isinstance(cmd, HaltCmd):
            break
    for target, lst in issued.items():
        for pos in range(done.get(target, 0), len(lst)):
            problems.append(f"unfinished: command {lst[pos][0]} "
                            f"({commands[lst[pos][0]].opcode.name}) may not have completed "
                            f"when the program ends")
    if problems and raise_on_error:
        raise ProtocolError(f"{len(problems)} protocol violation(s):\n" + "\n".join(problems))
    return problems
