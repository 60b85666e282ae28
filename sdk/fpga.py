"""The ``fpga`` runtime backend: a tile on a board (:class:`openmaia.fpga.board_tile.BoardTile`)
reached over its serial line with the host link protocol of :mod:`openmaia.fpga.link`.

Layers, each defined once:

* a byte :class:`Transport`: :class:`SerialTransport` (a board's USB serial port through
  pyserial) or :class:`SimulatedBoard` (the board top under Verilator, its ``rx`` / ``tx`` pins
  driven by the bit-level UART models of the cocotb bench :mod:`openmaia.benches.board_tile`,
  reached over a Unix socket);
* :class:`LinkPort`: requests and responses of the link (encoded and decoded by
  :mod:`openmaia.fpga.link`) as a :class:`~openmaia.sdk.tile_host.TilePort`;
* :class:`~openmaia.sdk.tile_host.TileDriver`: the command ring, doorbell and STATUS polling;
* :class:`FpgaBackend`: the runtime :class:`~openmaia.sdk.backend.Backend` on top, with the
  interface and behaviour of the ``rtl`` backend (:class:`~openmaia.sdk.rtl.RtlBackend`).

docs/fpga.md ("Board top and the ``fpga`` backend") describes how each call maps to requests.
"""

import os
import time
from abc import ABC, abstractmethod

from ..config import Config
from ..errors import ErrorCode
from ..fpga import link
from .rtl import RING_BYTES_PER_ENTRY, config_to_params
from .simulation import SimulationSession, serve_simulation
from .tile_host import DriverBackend, TileDriver, TilePort

__all__ = [
    "BOARD_MODULE",
    "SIM_DIVISOR",
    "FpgaBackend",
    "LinkPort",
    "LinkStatusError",
    "SerialTransport",
    "SimulatedBoard",
    "Transport",
    "make_fpga_backend",
]

#: The Verilog module name of the simulated board top.
BOARD_MODULE = "board_tile"
#: Clock cycles a bit of the simulated board's UART (:func:`make_fpga_backend`).
SIM_DIVISOR = 4


class LinkStatusError(RuntimeError):
    """A link response whose status is not OK."""

    def __init__(self, request, response):
        self.request, self.response = request, response
        super().__init__(f"{link.Opcode(request[1]).name} answered "
                         f"{ErrorCode(response.status).name}")


class Transport(ABC):
    """A serial line to a board: bytes out, bytes in, a break. Times are in byte times of the
    line (10 bit times, 8N1), so one timeout rule fits every line speed."""

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def read(self, n: int, *, timeout_bytes: float) -> bytes:
        """Up to ``n`` bytes; fewer when ``timeout_bytes`` byte times pass first."""

    @abstractmethod
    def send_break(self) -> None:
        """Hold the line low at least ``link.BREAK_BITS`` bit times, then idle."""

    @abstractmethod
    def discard_input(self) -> bytes:
        """Drop (and return) what has arrived and not been read."""

    def close(self) -> None:
        pass


class SerialTransport(Transport):
    """A board's USB serial port via pyserial: ``port`` a device (``/dev/ttyUSB1``) or a pyserial
    URL (``socket://host:port``, ``rfc2217://...``); ``latency``: seconds added to every
    timeout for the USB round trip."""

    def __init__(self, port, *, baudrate, latency=0.1):
        import serial
        if not isinstance(baudrate, int) or baudrate <= 0:
            raise ValueError(f"baudrate must be a positive integer, not {baudrate!r}")
        self.baudrate, self.latency = baudrate, latency
        self.serial = serial.serial_for_url(port, baudrate=baudrate, timeout=latency)

    def byte_seconds(self):
        return link.BITS_PER_BYTE / self.baudrate

    def write(self, data):
        self.serial.write(bytes(data))

    def read(self, n, *, timeout_bytes):
        self.serial.timeout = timeout_bytes * self.byte_seconds() + self.latency
        return bytes(self.serial.read(n))

    def send_break(self):
        self.serial.flush()
        self.serial.send_break(max(2 * link.BREAK_BITS / self.baudrate, 0.001))
        time.sleep(link.BITS_PER_BYTE / self.baudrate)

    def discard_input(self):
        data = self.serial.read(self.serial.in_waiting) if self.serial.in_waiting else b""
        self.serial.reset_input_buffer()
        return bytes(data)

    def close(self):
        self.serial.close()


class SimulatedBoard(Transport):
    """The board top (:class:`~openmaia.fpga.board_tile.BoardTile` of ``config``,
    ``hbm_bytes`` of on-chip memory, ``divisor`` clock cycles a bit) under Verilator: the
    bench :mod:`openmaia.benches.board_tile` puts the bytes written here on the ``rx`` pin with
    its bit-level UART driver and returns what its monitor decodes from ``tx``. Simulated time
    passes only while :meth:`read` or :meth:`send_break` wait (a host
    that takes no time). ``gap``: probability of 1..4 idle bit times before a byte the host
    sends; ``seed``: the bench's; ``faults``: the bridge's, for the mutation tests."""

    def __init__(self, config, *, hbm_bytes, divisor, gap=0.0, seed=0, faults=()):
        self.config, self.hbm_bytes, self.divisor = config, hbm_bytes, divisor
        self.gap, self.seed, self.faults = gap, seed, tuple(sorted(faults))
        self._sim = SimulationSession(self._start, label="board")

    def _start(self):
        from ..fpga.board_tile import BoardTile
        board = BoardTile(self.config, hbm_bytes=self.hbm_bytes, divisor=self.divisor,
                          faults=self.faults)
        params = {"config": config_to_params(self.config), "hbm_bytes": self.hbm_bytes,
                  "divisor": self.divisor, "gap": self.gap}
        return serve_simulation(board, bench="openmaia.benches.board_tile", name=BOARD_MODULE,
                                params=params, seed=self.seed)

    def _call(self, *request):
        return self._sim.call(*request)

    def write(self, data):
        self._call("write", bytes(data))

    def read(self, n, *, timeout_bytes):
        return self._call("read", n, timeout_bytes)

    def send_break(self):
        self._call("break")

    def discard_input(self):
        return self._call("discard")

    def cycles(self):
        """Clock cycles simulated so far."""
        return self._call("cycles")

    def close(self):
        """End the simulation (its cocotb test passes when it ends this way and the bench saw
        no framing error on ``tx``); returns the simulation's result."""
        return self._sim.close()


class LinkPort(TilePort):
    """The tile's registers and memory through the link protocol on ``transport``: one request
    at a time, each response read whole (four header bytes, ``length`` payload bytes, the
    status) and decoded by :func:`openmaia.fpga.link.decode_response`. A status other than OK
    raises :class:`LinkStatusError`; a response that does not come, or comes malformed, makes
    the port resynchronise (break, quiet, PING) and raise. Memory transfers are split into
    requests of at most ``chunk`` bytes. ``slack_bytes``: byte times allowed beyond the
    response's own (the bus accesses behind a request)."""

    def __init__(self, transport, *, chunk=4096, slack_bytes=256):
        if not isinstance(transport, Transport):
            raise TypeError(f"transport must be a Transport, not {type(transport).__name__}")
        if not isinstance(chunk, int) or not 1 <= chunk <= link.MAX_LENGTH:
            raise ValueError(f"chunk must be an integer in 1..{link.MAX_LENGTH}, not {chunk!r}")
        self.transport, self.chunk, self.slack_bytes = transport, chunk, slack_bytes
        self.requests = 0
        self.bytes_sent = self.bytes_received = 0

    def _read(self, n, request):
        data = self.transport.read(n, timeout_bytes=len(request) + 2 * n + self.slack_bytes)
        if len(data) != n:
            self.resync()
            raise TimeoutError(f"{link.Opcode(request[1]).name}: {len(data)} of {n} response "
                               f"bytes came")
        return data

    def transact(self, request: bytes) -> link.Response:
        self.transport.write(request)
        header = self._read(link.RSP_HEADER_BYTES, request)
        try:
            total = link.response_bytes(header)
            frame = header + self._read(total - len(header), request)
            response = link.decode_response(frame)
            if response.opcode != request[1]:
                raise link.LinkError(f"response to opcode {response.opcode:#04x}, "
                                     f"{request[1]:#04x} expected")
        except link.LinkError:
            self.resync()
            raise
        self.requests += 1
        self.bytes_sent += len(request)
        self.bytes_received += len(frame)
        return response

    def _ok(self, request):
        response = self.transact(request)
        if not response.ok:
            raise LinkStatusError(request, response)
        return response

    def resync(self):
        """Break, wait ``RESYNC_QUIET_BYTES`` byte times, discard what came, PING until the
        PING answer comes; returns its payload."""
        for _ in range(4):
            self.transport.send_break()
            self.transport.read(1 << 20, timeout_bytes=link.RESYNC_QUIET_BYTES)
            self.transport.discard_input()
            ping = link.encode_ping()
            self.transport.write(ping)
            want = link.RSP_HEADER_BYTES + link.PING_PAYLOAD_BYTES + 1
            frame = self.transport.read(want, timeout_bytes=2 * want + self.slack_bytes)
            try:
                response = link.decode_response(frame)
            except link.LinkError:
                continue
            if response.opcode == link.Opcode.PING and response.ok:
                return response.payload
        raise RuntimeError("the board does not answer PING after a break")

    def ping(self):
        """``(magic, version, bytes a memory beat)`` of the PING answer."""
        payload = self._ok(link.encode_ping()).payload
        return (int.from_bytes(payload[:2], "little"), payload[2], payload[3])

    def peek(self, address):
        return int.from_bytes(self._ok(link.encode_reg_read(address)).payload, "little")

    def poke(self, address, value):
        self._ok(link.encode_reg_write(address, value))

    def load(self, addr, data):
        data = bytes(data)
        for at in range(0, len(data), self.chunk):
            self._ok(link.encode_mem_write(addr + at, data[at:at + self.chunk]))

    def read(self, addr, nbytes):
        return b"".join(self._ok(link.encode_mem_read(addr + at, min(self.chunk, nbytes - at)))
                        .payload for at in range(0, nbytes, self.chunk))

    def wait(self, cycles):
        """Nothing: every request takes tens of bit times of the line."""


class FpgaBackend(DriverBackend):
    """A tile on a board over its serial line (module docstring), with the interface and
    behaviour of :class:`~openmaia.sdk.rtl.RtlBackend`: ``load`` / ``read`` (memory below the
    command ring), ``run``, ``counters`` (the last run's differences), ``reset``,
    ``set_window``, ``peek`` / ``poke`` (registers by name), ``read_counters``.

    Exactly one of ``port`` (a serial device or pyserial URL; ``baudrate`` its rate, as the
    board's bitstream was built for) and ``transport`` (a :class:`Transport`, e.g.
    :class:`SimulatedBoard`; see :meth:`simulated`). ``memory_bytes``: the tile's memory as the
    board was built (a power of two); ``ring_entries``: the command ring at its top;
    ``hbm_bytes``: the part the caller uses (default: all below the ring); ``max_cycles``: a
    run's limit; ``progress``: ``f(retired, total)`` during runs; ``chunk``: the longest memory
    request. The connection is opened on first use and checked: PING (link version, the
    memory beat of ``config``), the tile's ID and MAP_ID (the register map of ``config``)."""
    name = "fpga"

    def __init__(self, config, *, memory_bytes, port=None, baudrate=None, transport=None,
                 ring_entries=16, hbm_bytes=None, max_cycles=20_000_000, progress=None,
                 chunk=4096):
        if not isinstance(config, Config):
            raise TypeError(f"config must be a Config, not {type(config).__name__}")
        if (port is None) == (transport is None):
            raise ValueError("give exactly one of port= (a serial device) and transport=")
        if port is not None and baudrate is None:
            raise ValueError("a serial port needs baudrate= (the board build's)")
        if (not isinstance(memory_bytes, int) or memory_bytes < 4096
                or memory_bytes & (memory_bytes - 1)):
            raise ValueError(f"memory_bytes must be a power of two of at least 4096, not "
                             f"{memory_bytes!r}")
        if not isinstance(ring_entries, int) or not 2 <= ring_entries <= 4096:
            raise ValueError(f"ring_entries must be an integer in 2..4096, not {ring_entries!r}")
        below_ring = memory_bytes - ring_entries * RING_BYTES_PER_ENTRY
        if hbm_bytes is None:
            hbm_bytes = below_ring
        if not isinstance(hbm_bytes, int) or not 0 < hbm_bytes <= below_ring:
            raise ValueError(f"hbm_bytes must be an integer in 1..{below_ring} (the memory "
                             f"below the command ring), not {hbm_bytes!r}")
        self.config, self.memory_bytes, self.hbm_bytes = config, memory_bytes, hbm_bytes
        self.ring_entries, self.max_cycles, self.progress = ring_entries, max_cycles, progress
        self._serial = (port, baudrate) if port is not None else None
        self.transport = transport
        self.chunk = chunk
        self.link = None
        self._driver = None
        self._last_counters = {}

    @classmethod
    def simulated(cls, config, *, memory_bytes, divisor=4, gap=0.0, seed=0, faults=(), **kw):
        """The backend over a :class:`SimulatedBoard` of ``config`` (the same code as a board)."""
        return cls(config, memory_bytes=memory_bytes, transport=SimulatedBoard(
            config, hbm_bytes=memory_bytes, divisor=divisor, gap=gap, seed=seed, faults=faults),
            **kw)

    @property
    def driver(self) -> TileDriver:
        """The connected :class:`TileDriver` (the connection opens on first use)."""
        if self._driver is None:
            from ..tile.tile import Tile
            if self.transport is None:
                self.transport = SerialTransport(self._serial[0], baudrate=self._serial[1])
            self.link = LinkPort(self.transport, chunk=self.chunk)
            self.link.resync()
            magic, version, beat = self.link.ping()
            if (magic, version) != (link.LINK_MAGIC, link.LINK_VERSION):
                raise RuntimeError(f"PING answered magic {magic:#06x} version {version}: not "
                                   f"an OpenMaia host link version {link.LINK_VERSION}")
            if beat != self.config.axi_data_bits // 8:
                raise RuntimeError(f"the board's memory beat is {beat} bytes; config "
                                   f"{self.config.name!r} has {self.config.axi_data_bits // 8}")
            tile = Tile(self.config, hbm_bytes=self.memory_bytes)
            tile._MustUse__used = tile.registers._MustUse__used = True   # map only, no netlist
            register_map = tile.register_map
            driver = TileDriver(self.link, register_map, memory_bytes=self.memory_bytes,
                                ring_entries=self.ring_entries,
                                dma_queues=self.config.dma_queues,
                                counter_bits=self.config.counter_bits)
            driver.start()
            self._driver = driver
        return self._driver

    def close(self):
        """Close the line (for a :class:`SimulatedBoard`: end the simulation); returns what the
        transport's close returns."""
        self._driver = None
        if self.transport is not None:
            return self.transport.close()
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def make_fpga_backend(config, *, hbm_bytes, seed=0, progress=None, environ=None):
    """The ``fpga`` backend for a workload of ``hbm_bytes`` (what ``make_backend("fpga", ...)``
    returns). A board when ``OPENMAIA_FPGA_PORT`` is set (with ``OPENMAIA_FPGA_BAUD`` and
    ``OPENMAIA_FPGA_MEMORY``, the board build's baud rate and memory bytes), otherwise a
    :class:`SimulatedBoard` with the smallest memory holding ``hbm_bytes`` and a 16-entry ring
    (divisor :data:`SIM_DIVISOR`)."""
    env = os.environ if environ is None else environ
    ring = 16
    if env.get("OPENMAIA_FPGA_PORT"):
        missing = [v for v in ("OPENMAIA_FPGA_BAUD", "OPENMAIA_FPGA_MEMORY") if not env.get(v)]
        if missing:
            raise ValueError(f"OPENMAIA_FPGA_PORT is set; {' and '.join(missing)} must be too")
        return FpgaBackend(config, port=env["OPENMAIA_FPGA_PORT"],
                           baudrate=int(env["OPENMAIA_FPGA_BAUD"]),
                           memory_bytes=int(env["OPENMAIA_FPGA_MEMORY"], 0),
                           ring_entries=ring, hbm_bytes=hbm_bytes, progress=progress)
    channels = config.hbm_pseudo_channels
    memory = max(4096 * channels, 1 << (hbm_bytes + ring * RING_BYTES_PER_ENTRY - 1).bit_length())
    return FpgaBackend.simulated(config, memory_bytes=memory, divisor=SIM_DIVISOR, seed=seed,
                                 ring_entries=ring, hbm_bytes=hbm_bytes, progress=progress)
