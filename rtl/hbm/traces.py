"""Memory traces for the HBM model: the DRAMsim3 text format and trace generators.

Format (DRAMsim3's ``.trace`` text): one request a line, ``0x<hex address> READ|WRITE <cycle>``;
each request is one 64 B line (the address is rounded down to 64 B). ``cycle`` 0 means "as soon
as the model accepts it"; otherwise it is the earliest cycle the request may be issued (requests
are still issued in file order). Blank lines and lines starting with ``#`` are ignored.

Generators return lists of :class:`Request`: :func:`sequential`, :func:`random_lines` (uniformly
random 64 B lines), :func:`tile_2d` (2D tiles of a row-major matrix), and adversarial patterns
for the timing checker (:func:`adversarial`): same-bank row conflicts, bank-group ping-pong,
activate storms (tFAW), read/write turnarounds, late hits before a conflict (tRTP), and spans
longer than tREFI (refresh).
"""

import random as _random
from dataclasses import dataclass
from pathlib import Path

from .mapping import unmap_address
from .timing import ORGANISATION

__all__ = ["Request", "read_trace", "write_trace", "parse_line", "sequential", "random_lines",
           "tile_2d", "adversarial", "PATTERNS", "generate"]

LINE = 64


@dataclass(frozen=True)
class Request:
    addr: int
    write: bool = False
    cycle: int = 0

    def line(self) -> str:
        return f"0x{self.addr:x} {'WRITE' if self.write else 'READ'} {self.cycle}"


def parse_line(text: str, lineno: int = 0) -> "Request | None":
    text = text.strip()
    if not text or text.startswith("#"):
        return None
    parts = text.split()
    if len(parts) != 3:
        raise ValueError(f"trace line {lineno}: expected '0x<addr> READ|WRITE <cycle>', "
                         f"got {text!r}")
    addr_s, kind, cycle_s = parts
    try:
        addr = int(addr_s, 16)
        cycle = int(cycle_s)
    except ValueError:
        raise ValueError(f"trace line {lineno}: bad address or cycle in {text!r}") from None
    kind = kind.upper()
    if kind not in ("READ", "WRITE"):
        raise ValueError(f"trace line {lineno}: command must be READ or WRITE, not {kind!r}")
    if addr < 0 or cycle < 0:
        raise ValueError(f"trace line {lineno}: negative address or cycle")
    return Request(addr & ~(LINE - 1), kind == "WRITE", cycle)


def read_trace(path) -> list:
    out = []
    with open(path) as f:
        for lineno, text in enumerate(f, 1):
            req = parse_line(text, lineno)
            if req is not None:
                out.append(req)
    return out


def write_trace(path, requests) -> Path:
    path = Path(path)
    path.write_text("".join(r.line() + "\n" for r in requests))
    return path


def sequential(count, *, start=0, write_fraction=0.0, seed=0):
    rng = _random.Random(seed)
    return [Request(start + LINE * i, rng.random() < write_fraction) for i in range(count)]


def random_lines(count, *, span=ORGANISATION.bytes, write_fraction=0.0, seed=0):
    """Uniformly random 64 B lines in ``[0, span)``."""
    rng = _random.Random(seed)
    return [Request(rng.randrange(span // LINE) * LINE, rng.random() < write_fraction)
            for _ in range(count)]


def tile_2d(count, *, pitch=16384, tile_bytes=256, tile_rows=16, write_fraction=0.0, seed=0):
    """Tiles of ``tile_bytes`` x ``tile_rows`` of a row-major matrix ``pitch`` bytes wide, read
    tile by tile (row segments of a tile in order, tiles left to right, then down)."""
    rng = _random.Random(seed)
    out = []
    tiles_across = pitch // tile_bytes
    tile = 0
    while len(out) < count:
        ty, tx = divmod(tile, tiles_across)
        for r in range(tile_rows):
            base = (ty * tile_rows + r) * pitch + tx * tile_bytes
            for k in range(tile_bytes // LINE):
                out.append(Request(base + k * LINE, rng.random() < write_fraction))
        tile += 1
    return out[:count]


def adversarial(mapping, *, seed=0, repeats=4, refresh_span=True, rows=None):
    """Patterns that put each timing limit on the critical path, for ``mapping``.

    ``rows`` (optional) folds every row number into ``0 .. rows - 1``, for a model with a small
    backing store (two rows are enough for every conflict pattern)."""
    rng = _random.Random(seed)

    def a(row=0, **f):
        return unmap_address(mapping, row=row % rows if rows else row, **f)
    reqs = []
    for rep in range(repeats):
        base_row = 8 * rep
        # same-bank row conflicts, reads (tRC, tRAS) and writes (tWR, tRP)
        for k in range(6):
            reqs.append(Request(a(row=base_row + k % 3, col=2 * k), k % 2 == 1))
        # bank-group ping-pong: two bank groups in one stack ID, then two stack IDs
        for k in range(16):
            reqs.append(Request(a(bg=k % 2, row=base_row, col=2 * (k // 2))))
        for k in range(16):
            reqs.append(Request(a(sid=k % 2, bg=1, row=base_row + 1, col=2 * (k // 2))))
        # same bank group, consecutive columns (tCCD_L), reads then writes
        for k in range(8):
            reqs.append(Request(a(bg=2, ba=1, row=base_row + 2, col=2 * k), k >= 4))
        # activate storm: 16 banks, new rows (tRRD_S, tRRD_L, tFAW)
        for k in range(16):
            reqs.append(Request(a(sid=k % 2, bg=(k // 2) % 4, ba=k // 8, row=base_row + 3)))
        for k in range(8):
            reqs.append(Request(a(bg=3, ba=k % 4, row=base_row + 4 + k // 4)))
        # read/write turnarounds in one bank group and across bank groups (tRTW, tWTR_L/S)
        for k in range(12):
            reqs.append(Request(a(bg=k % 2 if k >= 6 else 0, ba=2, row=base_row + 5, col=2 * k),
                                k % 2 == 0))
        # a late hit then a conflict to the same bank (tRTP), and the write variant (tWR)
        reqs.append(Request(a(sid=1, bg=3, ba=3, row=base_row + 6, col=0)))
        reqs.append(Request(a(sid=1, bg=3, ba=3, row=base_row + 6, col=4), False, 0))
        reqs.append(Request(a(sid=1, bg=3, ba=3, row=base_row + 7, col=0)))
        reqs.append(Request(a(sid=1, bg=2, ba=3, row=base_row + 6, col=0), True))
        reqs.append(Request(a(sid=1, bg=2, ba=3, row=base_row + 7, col=0)))
        # random lines to shuffle the state
        for _ in range(24):
            reqs.append(Request(a(sid=rng.randrange(2), bg=rng.randrange(4),
                                  ba=rng.randrange(4), row=rng.randrange(16),
                                  col=2 * rng.randrange(16)), rng.random() < 0.3))
    # timed pieces: requests released at given cycles (late hits, idle gaps)
    out, cycle = [], 0
    for i, r in enumerate(reqs):
        if i % 40 == 39:
            cycle += 150
            out.append(Request(r.addr, r.write, cycle))
        else:
            out.append(r)
    if refresh_span:
        # a steady trickle past two refresh intervals: refresh with traffic pending
        for k in range(64):
            cycle += 230
            for j in range(3):
                out.append(Request(a(sid=k % 2, bg=j, ba=k % 4, row=k % 5, col=2 * (k % 16)),
                                   j == 2, cycle))
    return out


PATTERNS = ("sequential", "random", "tile")


def generate(pattern, count, *, seed=0, span=ORGANISATION.bytes, write_fraction=0.0):
    if pattern == "sequential":
        return sequential(count, write_fraction=write_fraction, seed=seed)
    if pattern == "random":
        return random_lines(count, span=span, write_fraction=write_fraction, seed=seed)
    if pattern == "tile":
        return tile_2d(count, write_fraction=write_fraction, seed=seed)
    raise ValueError(f"unknown pattern {pattern!r}; known: {', '.join(PATTERNS)}")
