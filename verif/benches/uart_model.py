"""Bit-level cocotb models of a UART line (8N1) and the host side of the link protocol.

For any bench whose design has serial pins: :class:`UartDriver` drives a design's ``rx`` pin,
:class:`UartMonitor` decodes its ``tx`` pin, :class:`LinkHost` speaks
:mod:`openmaia.fpga.link` through the two (request, then the whole response, parsed).

Timing is in simulation time (``Timer``), not clock edges: the driver's bit edges fall wherever
``divisor * clock_ns`` puts them, as an asynchronous host's would. The monitor waits for the
falling edge of a start bit and samples each bit in its middle; it checks the start bit is still
low there and the stop bit high (a violation is recorded in ``framing_errors`` and fails
:meth:`UartMonitor.check`).
"""

import random

import cocotb
from cocotb.queue import Queue
from cocotb.triggers import FallingEdge, Timer, with_timeout
from cocotb.utils import get_sim_time

from openmaia.fpga import link

__all__ = ["UartDriver", "UartMonitor", "LinkHost"]


class UartDriver:
    """Drives ``pin`` (idle high) with 8N1 bytes at ``divisor`` clock periods of ``clock_ns``
    a bit. With ``gap_probability``, a byte is preceded by 1..``max_gap_bits`` idle bit times
    at random (``rng``)."""

    def __init__(self, pin, *, clock_ns, divisor, rng=None, gap_probability=0.0,
                 max_gap_bits=4):
        self.pin = pin
        self.bit_ns = clock_ns * divisor
        self.rng = rng or random.Random(0)
        self.gap_probability = gap_probability
        self.max_gap_bits = max_gap_bits
        self.bytes_sent = 0
        self.breaks = 0
        pin.value = 1

    async def send(self, data: bytes):
        for byte in bytes(data):
            if self.gap_probability and self.rng.random() < self.gap_probability:
                await Timer(self.bit_ns * self.rng.randint(1, self.max_gap_bits), unit="ns")
            for bit in (0, *((byte >> i) & 1 for i in range(8)), 1):
                self.pin.value = bit
                await Timer(self.bit_ns, unit="ns")
            self.bytes_sent += 1

    async def send_break(self, bits: int = link.BREAK_BITS):
        """The line low for ``bits`` bit times, then idle for one byte time."""
        self.pin.value = 0
        await Timer(self.bit_ns * bits, unit="ns")
        self.pin.value = 1
        await Timer(self.bit_ns * link.BITS_PER_BYTE, unit="ns")
        self.breaks += 1


class UartMonitor:
    """Decodes 8N1 bytes from ``pin`` into a queue (started by :meth:`start`)."""

    def __init__(self, pin, *, clock_ns, divisor):
        self.pin = pin
        self.bit_ns = clock_ns * divisor
        self.queue = Queue()
        self.framing_errors = []
        self.bytes_received = 0
        self.last_stop_ns = None        # when the last byte's stop bit ended
        self._task = None

    def start(self):
        self._task = cocotb.start_soon(self._run())
        return self

    async def _run(self):
        while True:
            await FallingEdge(self.pin)
            await Timer(self.bit_ns / 2, unit="ns")
            if int(self.pin.value):
                self.framing_errors.append(("glitch", self.bytes_received))
                continue
            byte = 0
            for i in range(8):
                await Timer(self.bit_ns, unit="ns")
                byte |= int(self.pin.value) << i
            await Timer(self.bit_ns, unit="ns")
            if not int(self.pin.value):
                self.framing_errors.append(("stop bit low", self.bytes_received))
            self.bytes_received += 1
            self.last_stop_ns = get_sim_time("ns") + self.bit_ns / 2
            self.queue.put_nowait(byte)

    def byte_ns(self):
        return self.bit_ns * link.BITS_PER_BYTE

    async def recv(self, n: int, *, timeout_ns: float) -> bytes:
        out = bytearray()
        for _ in range(n):
            out.append(await with_timeout(self.queue.get(), timeout_ns, "ns"))
        return bytes(out)

    def drain(self) -> bytes:
        out = bytearray()
        while not self.queue.empty():
            out.append(self.queue.get_nowait())
        return bytes(out)

    def check(self):
        assert not self.framing_errors, f"framing errors on the tx line: {self.framing_errors}"


class LinkHost:
    """The host side of :mod:`openmaia.fpga.link` over a :class:`UartDriver` /
    :class:`UartMonitor` pair. Every call sends one request and returns the parsed
    :class:`~openmaia.fpga.link.Response`; ``slack_ns`` is the time allowed beyond the bytes'
    own line time (bus accesses, gaps)."""

    def __init__(self, driver: UartDriver, monitor: UartMonitor, *, slack_ns: float):
        self.driver, self.monitor = driver, monitor
        self.slack_ns = slack_ns
        self.requests = 0

    async def transact(self, request: bytes) -> link.Response:
        send = cocotb.start_soon(self.driver.send(request))
        first_timeout = self.monitor.byte_ns() * (len(request) + 8) * 2 + self.slack_ns
        header = await self.monitor.recv(link.RSP_HEADER_BYTES, timeout_ns=first_timeout)
        total = link.response_bytes(header)
        rest = await self.monitor.recv(
            total - len(header),
            timeout_ns=self.monitor.byte_ns() * (total + 2) * 2 + self.slack_ns)
        await send
        self.requests += 1
        return link.decode_response(header + rest)

    async def ping(self):
        return await self.transact(link.encode_ping())

    async def reg_read(self, addr):
        return await self.transact(link.encode_reg_read(addr))

    async def reg_write(self, addr, value):
        return await self.transact(link.encode_reg_write(addr, value))

    async def mem_write(self, addr, data):
        return await self.transact(link.encode_mem_write(addr, data))

    async def mem_read(self, addr, length):
        return await self.transact(link.encode_mem_read(addr, length))

    async def resync(self):
        """Break, wait, discard what arrived, then PING until the answer is a PING response."""
        await self.driver.send_break()
        await Timer(self.monitor.byte_ns() * link.RESYNC_QUIET_BYTES + self.slack_ns, unit="ns")
        self.monitor.drain()
        return await self.ping()
