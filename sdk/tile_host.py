"""The host driver of one tile, written once, in plain Python, against a register / memory port.

:class:`TileDriver` is the host's view of a tile the way a device driver has it: the register
map (docs/registers.md), a command ring at the top of the tile's memory fed through the
doorbell, STATUS polled until the stream stops, the counters read before and after a run (the
report is the difference, so no counter has to be cleared). It does not know how registers and
memory are reached: a :class:`TilePort` does that (the SDK's ``fpga`` backend: the UART host
link of :mod:`openmaia.fpga.link`; the ``rtl`` backend could use it with a port over its cocotb
bench's AXI masters). Time is the tile's own ``tile.cycles`` counter, so a limit in cycles
means the same on every port.
"""

from abc import ABC, abstractmethod

from ..errors import ErrorCode
from .backend import Backend, RunResult

__all__ = [
    "COUNTER_ALIASES",
    "RING_BYTES_PER_ENTRY",
    "SOURCES",
    "STATES",
    "DriverBackend",
    "TileDriver",
    "TilePort",
    "ring_base",
    "run_result",
]

RING_BYTES_PER_ENTRY = 64
#: Short names of the counters :mod:`.report` reads (docs/sdk.md), from the register map's.
COUNTER_ALIASES = {
    "cycles": "tile.cycles", "macs": "ttu.ttu.macs",
    "ttu_busy": "ttu.ttu.busy", "ttu_stall_input": "ttu.ttu.stall_input",
    "ttu_stall_output": "ttu.ttu.stall_output",
    "dma_busy": "dma.busy_cycles", "dma_axi_stall": "dma.axi_stall_cycles",
    "dma_tsram_stall": "dma.tsram_stall_cycles", "dma_bytes_read": "tile.dma_read_bytes",
    "dma_bytes_written": "tile.dma_write_bytes",
    "tvp_busy": "tvp.busy", "tvp_stall_input": "tvp.stall_input",
    "tvp_stall_output": "tvp.stall_output",
    "tcp_busy": "tcp.busy_cycles", "tcp_wait_cycles": "tcp.wait_cycles",
    "tcp_input_stall": "tcp.input_stall_cycles",
}

STATES = ("RUNNING", "HALTED", "ERROR", "DRAINING")
SOURCES = ("NONE", "COMMAND", "DMA", "TTU", "TVP", "COMPLETION")
ID_MAGIC = 0x4D41
CYCLES = "tile.cycles"


class TilePort(ABC):
    """How a host reaches one tile: 32-bit registers by byte address, memory bytes by byte
    address. A failed access raises."""

    @abstractmethod
    def peek(self, address: int) -> int: ...

    @abstractmethod
    def poke(self, address: int, value: int) -> None: ...

    @abstractmethod
    def load(self, addr: int, data: bytes) -> None: ...

    @abstractmethod
    def read(self, addr: int, nbytes: int) -> bytes: ...

    def wait(self, cycles: int) -> None:
        """Let the tile run about ``cycles`` clock cycles before the next access (a port whose
        every access takes that long anyway may do nothing)."""


def ring_base(memory_bytes: int, ring_entries: int) -> int:
    """The command ring's base address: the top of the tile's memory."""
    return memory_bytes - ring_entries * RING_BYTES_PER_ENTRY


def _field(register, name, value):
    f = register.fields[name]
    return value >> f.offset & ((1 << f.width) - 1)


class TileDriver:
    """Registers, memory and the command ring of one tile through ``port`` (module docstring).

    ``register_map``: the tile's (``Tile.register_map``); ``memory_bytes``: the tile's memory;
    ``ring_entries``: commands in the ring at its top (every DMA queue's window ends below it,
    so no program can overwrite its own commands); ``dma_queues``: the tile's;
    ``counter_bits``: the tile's ``Config.counter_bits`` (counter differences wrap at
    ``2 ** counter_bits``, ``tile.cycles`` excepted); ``poll_cycles``:
    :meth:`TilePort.wait` between two STATUS polls; ``idle_limit``: cycles with the stream on
    one command and nothing outstanding after which a run is reported BLOCKED (a WAIT nothing
    can satisfy) or, every command retired without HALT, RUNNING."""

    def __init__(self, port, register_map, *, memory_bytes, ring_entries, dma_queues,
                 counter_bits=None, poll_cycles=0, idle_limit=4096):
        if not isinstance(port, TilePort):
            raise TypeError(f"port must be a TilePort, not {type(port).__name__}")
        if not isinstance(ring_entries, int) or not 2 <= ring_entries <= 4096:
            raise ValueError(f"ring_entries must be an integer in 2..4096, not {ring_entries!r}")
        if not isinstance(memory_bytes, int) or memory_bytes <= ring_entries * RING_BYTES_PER_ENTRY:
            raise ValueError(f"memory_bytes must be an integer above the ring's "
                             f"{ring_entries * RING_BYTES_PER_ENTRY} bytes, not {memory_bytes!r}")
        self.port, self.map = port, register_map
        self.ring_entries, self.dma_queues = ring_entries, dma_queues
        self.ring_base = ring_base(memory_bytes, ring_entries)
        self.poll_cycles, self.idle_limit = poll_cycles, idle_limit
        self.tail = 0
        self._counter_regs = [r for r in register_map if r.source is not None
                              and not (r.snapshot and r.snapshot[0] == "hi")]
        self._widths = {r.source: sum(f.width for f in r.fields.values())
                        + (sum(f.width for f in register_map[r.snapshot[1]].fields.values())
                           if r.snapshot else 0) for r in self._counter_regs}
        if counter_bits is not None:
            if not isinstance(counter_bits, int) or not 1 <= counter_bits <= 64:
                raise ValueError(f"counter_bits must be None or an integer in 1..64, "
                                 f"not {counter_bits!r}")
            self._widths = {k: w if k == CYCLES else min(w, counter_bits)
                            for k, w in self._widths.items()}
        self._cycles_lo = next(r for r in self._counter_regs if r.source == CYCLES)

    # -- registers and memory -------------------------------------------------------------

    def peek(self, name):
        return self.port.peek(self.map[name].address)

    def poke(self, name, value):
        self.port.poke(self.map[name].address, int(value))

    def load(self, addr, data):
        if data:
            self.port.load(addr, bytes(data))

    def read(self, addr, nbytes):
        return self.port.read(addr, nbytes) if nbytes else b""

    def set_window(self, queue, base, limit):
        for end, value in (("BASE", base), ("LIMIT", limit)):
            self.poke(f"DMA_WINDOW{queue}_{end}_LO", value & 0xFFFF_FFFF)
            self.poke(f"DMA_WINDOW{queue}_{end}_HI", value >> 32)

    def start(self):
        """Check the tile answers with the expected map, set up the ring and the windows, run."""
        ident = self.peek("ID")
        if _field(self.map["ID"], "magic", ident) != ID_MAGIC:
            raise RuntimeError(f"the ID register reads {ident:#x}: no OpenMaia tile")
        map_id, want = self.peek("MAP_ID"), self.map.map_id
        if map_id != want:
            raise RuntimeError(f"MAP_ID {map_id:#010x}, the SDK expects {want:#010x}: the "
                               f"device was built from another configuration or version")
        self.poke("CQ_BASE_LO", self.ring_base & 0xFFFF_FFFF)
        self.poke("CQ_BASE_HI", self.ring_base >> 32)
        self.poke("CQ_SIZE", self.ring_entries)
        for q in range(self.dma_queues):
            self.set_window(q, 0, self.ring_base - 1)
        self.tail = self.peek("CQ_HEAD")
        self.poke("CQ_DOORBELL", self.tail)
        self.poke("CONTROL", 1)

    def cycles(self):
        """The low 32 bits of ``tile.cycles``."""
        return self.port.peek(self._cycles_lo.address)

    def counters(self, *, cycles_first=False):
        """Every counter by its dotted name (a ``_LO`` / ``_HI`` pair read in order);
        ``tile.cycles`` last, or first with ``cycles_first``."""
        values = {}
        regs = sorted(self._counter_regs, key=lambda r: (r.source == CYCLES) != cycles_first)
        for r in regs:
            value = self.port.peek(r.address)
            if r.snapshot:
                value |= self.peek(r.snapshot[1]) << 32
            values[r.source] = value
        return values

    def differences(self, before, after):
        """``after - before`` of every counter (two :meth:`counters` readings), modulo the
        counter's width: a counter that wrapped once in between gives its true increase."""
        return {k: (after[k] - before[k]) % (1 << self._widths[k]) for k in after}

    def status(self):
        reg = self.map["STATUS"]
        s, error = self.peek("STATUS"), self.peek("ERROR")
        return {"state": STATES[_field(reg, "state", s)],
                "source": SOURCES[_field(reg, "source", s)],
                "outstanding": bool(_field(reg, "outstanding", s)),
                "cq_error": bool(_field(reg, "cq_error", s)),
                "error": _field(self.map["ERROR"], "error", error),
                "engine_error": _field(self.map["ERROR"], "engine_error", error),
                "position": self.peek("POSITION"),
                "error_position": self.peek("ERROR_POSITION")}

    # -- running a program ----------------------------------------------------------------

    def restart(self, *, limit_cycles=1 << 20):
        """Restart the TCP and flush the fetcher (the previous program is abandoned)."""
        self.poke("CONTROL", 0b10011)
        start = self.cycles()
        state_reg = self.map["STATUS"]
        while (self.cycles() - start) % (1 << 32) < limit_cycles:
            self.port.wait(8)
            if (_field(state_reg, "state", self.peek("STATUS")) == 0
                    and self.peek("CQ_HEAD") == self.tail):
                return
        raise RuntimeError("the tile did not leave DRAINING / flushing after a restart")

    def write_commands(self, words, first, *, doorbell=True):
        """Commands ``words[first:]`` into the ring's free slots (then the doorbell, unless
        ``doorbell`` is false); returns how many went."""
        head = self.peek("CQ_HEAD")
        n = min((head - self.tail - 1) % self.ring_entries, len(words) - first)
        done = 0
        while done < n:
            run = min(n - done, self.ring_entries - self.tail)
            self.load(self.ring_base + RING_BYTES_PER_ENTRY * self.tail,
                      b"".join(words[first + done:first + done + run]))
            self.tail = (self.tail + run) % self.ring_entries
            done += run
        if n and doorbell:
            self.poke("CQ_DOORBELL", self.tail)
        return n

    def run(self, program, *, max_cycles=10_000_000, progress=None):
        """Run ``program`` (bytes of 64-byte commands) until it stops; return its status (as
        :meth:`status`), ``counters`` (the differences, with the short names of
        :data:`COUNTER_ALIASES`). ``state`` BLOCKED / RUNNING: see the class;
        TIMEOUT: ``max_cycles`` passed."""
        self.restart()
        program = bytes(program)
        words = [program[i:i + RING_BYTES_PER_ENTRY]
                 for i in range(0, len(program), RING_BYTES_PER_ENTRY)]
        fed = self.write_commands(words, 0, doorbell=False)
        before = self.counters()
        self.poke("CQ_DOORBELL", self.tail)
        state_reg = self.map["STATUS"]
        start = last_time = before[CYCLES] & 0xFFFF_FFFF
        last_position, idle = -1, 0
        while True:
            if fed < len(words):
                fed += self.write_commands(words, fed)
            if self.poll_cycles:
                self.port.wait(self.poll_cycles)
            s = self.peek("STATUS")
            position = self.peek("POSITION")
            now = self.cycles()
            state, outstanding = _field(state_reg, "state", s), _field(state_reg, "outstanding", s)
            if progress is not None:
                progress(position, len(words))
            if STATES[state] in ("HALTED", "ERROR") and not outstanding:
                final = None
                break
            if position == last_position and not outstanding:
                idle += (now - last_time) % (1 << 32)
                if idle >= self.idle_limit:
                    final = "RUNNING" if position >= len(words) else "BLOCKED"
                    break
            else:
                idle = 0
            last_position, last_time = position, now
            if (now - start) % (1 << 32) > max_cycles:
                final = "TIMEOUT"
                break
        st = self.status()
        if final is not None:
            st["state"] = final
        after = self.counters(cycles_first=True)
        deltas = self.differences(before, after)
        for alias, source in COUNTER_ALIASES.items():
            if source in deltas:
                deltas[alias] = deltas[source]
        st["counters"] = deltas
        return st


def run_result(st) -> RunResult:
    """A :class:`RunResult` from :meth:`TileDriver.run`'s status."""
    stopped = st["state"] == "ERROR"
    return RunResult(state=st["state"], error=ErrorCode(st["error"]) if stopped else ErrorCode.OK,
                     source=st["source"] if stopped else None, position=st["position"],
                     error_position=st["error_position"] if stopped else None,
                     counters=dict(st["counters"]))


class DriverBackend(Backend):
    """The :class:`~openmaia.sdk.backend.Backend` calls of a tile reached through a
    :class:`TileDriver` (the ``rtl`` and ``fpga`` backends): a subclass provides ``driver`` (the
    connected driver, made on first use), ``_driver`` (None until then), ``hbm_bytes`` (the
    memory the caller uses), ``max_cycles``, ``progress`` and ``_last_counters``."""

    def _check_range(self, addr, nbytes):
        if addr < 0 or addr + nbytes > self.hbm_bytes:
            raise ValueError(f"memory access {addr:#x}+{nbytes} outside the {self.hbm_bytes} "
                             f"bytes in use")

    def load(self, addr, data):
        data = bytes(data)
        self._check_range(addr, len(data))
        self.driver.load(addr, data)

    def read(self, addr, nbytes):
        self._check_range(addr, nbytes)
        return self.driver.read(addr, nbytes)

    def run(self, program) -> RunResult:
        blob = program.to_bytes() if hasattr(program, "to_bytes") else bytes(program)
        st = self.driver.run(blob, max_cycles=self.max_cycles, progress=self.progress)
        self._last_counters = dict(st["counters"])
        return run_result(st)

    def counters(self):
        return dict(self._last_counters)

    def reset(self):
        """Restart the stream (semaphores cleared) and drop queued commands. The tile SRAM is
        not cleared (the host has no port into it); memory is kept."""
        if self._driver is not None:
            self._driver.restart()
        self._last_counters = {}

    def set_window(self, queue, base, limit):
        """Restrict DMA queue ``queue`` to memory bytes ``[base, limit]`` (inclusive)."""
        self.driver.set_window(queue, base, limit)

    def read_counters(self):
        """Every counter's present value by its dotted name (``tile.cycles`` read last), as
        opposed to :meth:`counters`, the last run's differences."""
        return self.driver.counters()

    def peek(self, register):
        """Read a host register by name (docs/registers.md)."""
        return self.driver.peek(register)

    def poke(self, register, value):
        """Write a host register by name, e.g. ``poke("HBM_PAUSE", 77)`` on the ``rtl`` backend:
        random pauses on the HBM side of the tile with probability 77 / 256 a cycle per
        channel."""
        self.driver.poke(register, value)
