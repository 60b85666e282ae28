"""The ``rtl`` runtime backend: the elaborated tile top (:class:`openmaia.tile.tile.Tile`) under
Verilator, driven through cocotb as a host driver would drive the chip (docs/sdk.md, docs/tile.md).

:class:`RtlBackend` starts one simulation on first use (in a thread; the simulator is a child
process) whose cocotb test (:mod:`openmaia.benches.tile`, testcase ``serve``) connects back over
a Unix socket and executes ``load`` / ``read`` (AXI4 bursts on the tile's host memory port),
register reads and writes, and ``wait`` (the simulation runs a number of cycles); the command
ring, the doorbell and the STATUS polling are :class:`~.tile_host.TileDriver` on this side, the
code the ``fpga`` backend runs over the UART. The simulation, and so the tile's state, lives
until :meth:`RtlBackend.close` (or the end of a ``with`` block).

HBM: the tile models :data:`TILE_HBM_BYTES` (256 KiB; more, the next power of two, when the
caller's ``hbm_bytes`` plus the ring need it), so that every run of a configuration shares one
Verilator build with the ``tile`` top of :mod:`openmaia.tops`. The ring sits at the top; every
DMA queue's window is ``[0, ring base)``, so no program can overwrite its own commands.
"""

import dataclasses
import hashlib
import os
from pathlib import Path

from ..config import Config
from .simulation import SimulationSession, serve_simulation
from .tile_host import (
    COUNTER_ALIASES,
    RING_BYTES_PER_ENTRY,
    DriverBackend,
    TileDriver,
    TilePort,
    ring_base,
)

__all__ = [
    "COUNTER_ALIASES",
    "RING_BYTES_PER_ENTRY",
    "TILE_HBM_BYTES",
    "TILE_MODULE",
    "RtlBackend",
    "config_from_params",
    "config_to_params",
    "ring_base",
    "tile_hbm_bytes",
]

#: The HBM the tile models unless a caller needs more (the ``tile`` top's size too).
TILE_HBM_BYTES = 1 << 18

def config_to_params(config: Config) -> dict:
    """A :class:`Config` as JSON-ready data (for the bench)."""
    data = dataclasses.asdict(config)
    data["formats"] = list(config.format_names)
    return data


def config_from_params(data: dict) -> Config:
    return Config(**data)


#: The Verilog module name of the tile (as the ``tile`` top's, so builds are shared).
TILE_MODULE = "tile"


def tile_hbm_bytes(hbm_bytes: int, ring_entries: int, pseudo_channels: int = 1) -> int:
    """The HBM the tile models: :data:`TILE_HBM_BYTES`, or the power of two holding
    ``hbm_bytes`` and the ring when that is more."""
    need = max(hbm_bytes + ring_entries * RING_BYTES_PER_ENTRY, 4096 * pseudo_channels)
    return max(TILE_HBM_BYTES, 1 << (need - 1).bit_length())


def _rtl_digest() -> str:
    """A digest of the design's sources, to reuse an elaborated Verilog text safely. The board
    level (rtl/fpga: host link, board tops) is left out: it builds on the tile, never the other
    way round."""
    root = Path(__file__).resolve().parents[1] / "rtl"
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*.py") if p.relative_to(root).parts[0] != "fpga"):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _verilog(tile, name: str, key: str) -> str:
    """The tile's Verilog, cached under the build folder by design digest and parameters."""
    from ..harness.elaborate import elaborate
    from ..harness.sim import build_root
    cache = build_root() / "verilog-cache"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{name}-{key}-{_rtl_digest()}.v"
    if path.exists():
        return path.read_text()
    text = elaborate(tile, name=name)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return text


class _BenchPort(TilePort):
    """The tile's registers and memory through the bench's AXI masters (requests over the
    socket); ``wait`` lets the simulation run."""

    def __init__(self, call):
        self._call = call

    def peek(self, address):
        return self._call("reg_read", address)

    def poke(self, address, value):
        self._call("reg_write", address, value)

    def load(self, addr, data):
        self._call("load", addr, data)

    def read(self, addr, nbytes):
        return self._call("read", addr, nbytes)

    def wait(self, cycles):
        self._call("wait", cycles)


class RtlBackend(DriverBackend):
    """The tile top under Verilator (module docstring). ``hbm_bytes``: the HBM the caller uses
    (addresses ``[0, hbm_bytes)``; default: all of :data:`TILE_HBM_BYTES` below the ring); ``ring_entries``: the command ring; ``pause``: probability
    that a host-side AXI channel pauses a cycle (backpressure tests); ``seed``: the bench's;
    ``max_cycles``: a run's limit; ``progress``: ``f(retired, total)`` during runs."""
    name = "rtl"

    def __init__(self, config: Config, *, hbm_bytes: int | None = None,
                 ring_entries: int = 256,
                 pause: float = 0.0, seed: int = 0, max_cycles: int = 20_000_000,
                 progress=None):
        if hbm_bytes is None:
            hbm_bytes = TILE_HBM_BYTES - ring_entries * RING_BYTES_PER_ENTRY
        if not isinstance(hbm_bytes, int) or hbm_bytes <= 0:
            raise ValueError(f"hbm_bytes must be a positive integer, not {hbm_bytes!r}")
        if not isinstance(ring_entries, int) or not 2 <= ring_entries <= 4096:
            raise ValueError(f"ring_entries must be an integer in 2..4096, not {ring_entries!r}")
        self.config, self.hbm_bytes, self.ring_entries = config, hbm_bytes, ring_entries
        self.tile_hbm = tile_hbm_bytes(hbm_bytes, ring_entries, config.hbm_pseudo_channels)
        self.pause, self.seed, self.max_cycles = pause, seed, max_cycles
        self.progress = progress
        self._sim = SimulationSession(self._serve, label="tile")
        self._driver = None
        self._last_counters = {}

    # -- the simulation ---------------------------------------------------------------------

    def _serve(self):
        from ..tile.tile import Tile
        self._tile = tile = Tile(self.config, hbm_bytes=self.tile_hbm)
        params_key = hashlib.sha256(repr((config_to_params(self.config),
                                          self.tile_hbm)).encode()).hexdigest()[:12]
        params = {"config": config_to_params(self.config), "hbm_bytes": self.tile_hbm,
                  "ring_entries": self.ring_entries, "pause": self.pause}
        return serve_simulation(tile, bench="openmaia.benches.tile", name=TILE_MODULE,
                                params=params, seed=self.seed,
                                verilog=_verilog(tile, TILE_MODULE, params_key))

    @property
    def driver(self) -> TileDriver:
        """The connected :class:`~.tile_host.TileDriver` (the simulation starts on first use)."""
        if self._driver is None:
            self._sim.start()
            self._driver = TileDriver(_BenchPort(self._sim.call), self._tile.register_map,
                                      memory_bytes=self.tile_hbm,
                                      ring_entries=self.ring_entries,
                                      dma_queues=self.config.dma_queues,
                                      counter_bits=self.config.counter_bits, poll_cycles=64)
            self._driver.start()
        return self._driver

    def _call(self, *request):
        return self._sim.call(*request)

    def close(self):
        """End the simulation (its cocotb test passes when it ends this way)."""
        self._driver = None
        self._sim.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - nothing to report to at interpreter exit
            pass

