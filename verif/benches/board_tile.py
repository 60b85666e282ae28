"""cocotb bench of the board top (:class:`openmaia.fpga.board_tile.BoardTile`): the simulator
side of :class:`openmaia.sdk.fpga.SimulatedBoard`, so that the SDK's ``fpga`` backend runs its
unchanged host code (link requests, command ring, doorbell, STATUS polling) against the
simulated board.

The host's line is the bit-level :class:`~openmaia.benches.uart_model.UartDriver` on ``rx``
(random idle bit times before a byte with ``gap`` > 0) and
:class:`~openmaia.benches.uart_model.UartMonitor` on ``tx`` (every start and stop bit checked;
a framing error fails the test when it ends).

Testcase ``serve``: connects to the ``socket`` parameter (a ``multiprocessing.connection``
listener) and executes requests until ``close``: ``("write", bytes)`` (queued for the driver;
returns at once), ``("read", n, timeout_bytes)`` (simulates until ``n`` bytes came from ``tx``
or ``timeout_bytes`` byte times passed with the driver idle; returns the bytes),
``("break",)`` (after the queued bytes, the line low for ``BREAK_BITS`` bit times, then idle a
byte time), ``("discard",)`` (the received bytes not yet read), ``("cycles",)`` (clock cycles
so far). Replies are ``("ok", value)`` or ``("error", text)``. Simulated time does not pass
between requests.

Parameters (:func:`openmaia.harness.bench_params`): ``divisor``, ``gap``, ``socket``.
"""

import random
import traceback

import cocotb
from cocotb.clock import Clock
from cocotb.queue import Queue
from cocotb.triggers import ClockCycles, Timer
from cocotb.utils import get_sim_time
from openmaia.benches.uart_model import UartDriver, UartMonitor
from openmaia.harness import bench_params

CLOCK_NS = 10


class Line:
    """The host's end of the serial line: a send queue drained by one driver task (bytes leave
    in order, back to back), and the monitor's receive queue."""

    def __init__(self, dut, *, divisor, gap, seed):
        self.driver = UartDriver(dut.rx, clock_ns=CLOCK_NS, divisor=divisor,
                                 rng=random.Random(seed), gap_probability=gap)
        self.monitor = UartMonitor(dut.tx, clock_ns=CLOCK_NS, divisor=divisor).start()
        self.outbox = Queue()
        self.pending = 0
        cocotb.start_soon(self._send())

    async def _send(self):
        while True:
            item = await self.outbox.get()
            if item is None:
                await self.driver.send_break()
            else:
                await self.driver.send(item)
            self.pending -= 1

    def write(self, data):
        self.pending += 1
        self.outbox.put_nowait(bytes(data))

    async def send_break(self):
        self.pending += 1
        self.outbox.put_nowait(None)
        while self.pending:
            await Timer(self.driver.bit_ns, unit="ns")

    async def read(self, n, timeout_bytes):
        """Up to ``n`` bytes; the timeout counts only while nothing is left to send (a request
        being sent is never cut short by the time its own bytes take)."""
        out = bytearray()
        waited = 0.0
        limit = timeout_bytes * self.monitor.byte_ns()
        step = self.driver.bit_ns
        while True:
            while len(out) < n and not self.monitor.queue.empty():
                out.append(self.monitor.queue.get_nowait())
                waited = 0.0
            if len(out) == n or waited >= limit:
                break
            await Timer(step, unit="ns")
            if not self.pending:
                waited += step
        return bytes(out)


async def serve_requests(conn, handlers):
    """Answer the requests arriving on ``conn`` (a ``multiprocessing.connection``) until
    ``("close",)``: ``handlers[kind](*args)`` (awaited when it returns an awaitable), replied
    as ``("ok", value)``, or ``("error", traceback)`` when it raises (the client raises it)."""
    import inspect
    while True:
        kind, *args = conn.recv()
        if kind == "close":
            conn.send(("ok", None))
            return
        try:
            if kind not in handlers:
                raise ValueError(f"unknown request {kind!r}")
            value = handlers[kind](*args)
            if inspect.isawaitable(value):
                value = await value
            conn.send(("ok", value))
        except Exception:  # noqa: BLE001 - the client raises it on its side
            conn.send(("error", traceback.format_exc()))


@cocotb.test()
async def serve(dut):
    """The SimulatedBoard's server (module docstring)."""
    from multiprocessing.connection import Client
    params = bench_params()
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 5)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 5)
    line = Line(dut, divisor=params["divisor"], gap=params.get("gap", 0.0),
                seed=cocotb.RANDOM_SEED)
    conn = Client(params["socket"], family="AF_UNIX")
    try:
        await serve_requests(conn, {
            "write": line.write, "read": line.read, "break": line.send_break,
            "discard": line.monitor.drain,
            "cycles": lambda: int(get_sim_time("ns") // CLOCK_NS)})
    finally:
        conn.close()
    line.monitor.check()
