"""cocotb bus models for ``amaranth.lib.stream`` ports of elaborated designs.

An Amaranth stream port ``i`` appears in Verilog as ``i__valid``, ``i__ready`` and ``i__payload``
(the payload flattened to bits). :class:`StreamSource` drives such a port, :class:`StreamSink`
accepts from one; both take a pause generator (an iterator of booleans, true = idle this cycle)
in the style of cocotbext-axi's ``set_pause_generator``, so every stream can be stalled at random.

Both drive on the falling clock edge and sample in the read-only phase after it, so a transfer
is recorded for exactly the rising edge at which ``valid & ready`` holds, on every simulator.
"""

import itertools
import random
from collections import deque

from amaranth.hdl import ShapeCastable
from amaranth.lib import data
from cocotb.triggers import Event, FallingEdge, ReadOnly

__all__ = [
    "StreamSink",
    "StreamSource",
    "drain",
    "memory_port_read",
    "memory_port_write",
    "pack",
    "random_pauses",
    "unpack",
]


def random_pauses(rng: random.Random, probability: float):
    """An endless pause generator: each cycle idle with the given probability."""
    if not 0 <= probability < 1:
        raise ValueError(f"pause probability must be in [0, 1), not {probability}")
    while True:
        yield rng.random() < probability


def pack(layout, value) -> int:
    """The bits of ``value`` under an Amaranth data layout, each field at its offset.

    ``value`` is a dict for a struct, a list for an array, or an int (a leaf, or an aggregate
    already packed); ints may stand at any level.
    """
    if isinstance(value, int):
        return value
    layout = data.Layout.cast(layout)
    bits = 0
    for key, field in layout:
        bits |= (pack(field.shape, value[key]) & ((1 << field.width) - 1)) << field.offset
    return bits


def unpack(layout, bits: int):
    """The fields of ``bits`` under an Amaranth data layout: a dict for a struct, a list for an
    array, an int for a leaf."""
    layout = data.Layout.cast(layout)
    fields = {key: (bits >> field.offset) & ((1 << field.width) - 1) for key, field in layout}
    values = {key: (unpack(field.shape, fields[key])
                    if isinstance(field.shape, ShapeCastable) else fields[key])
              for key, field in layout}
    return list(values.values()) if isinstance(layout, data.ArrayLayout) else values


class StreamSource:
    """Drives items (ints, or values packed with ``shape``) into a stream port of the DUT."""

    def __init__(self, dut, prefix: str, clock, *, shape=None, pauses=None):
        self._valid = getattr(dut, f"{prefix}__valid")
        self._ready = getattr(dut, f"{prefix}__ready")
        self._payload = getattr(dut, f"{prefix}__payload")
        self._clock = clock
        self._shape = shape
        self._pauses = pauses if pauses is not None else itertools.repeat(False)
        self._queue = deque()
        self._idle = Event()
        self.sent = 0
        self._valid.value = 0

    def set_pause_generator(self, pauses):
        self._pauses = pauses if pauses is not None else itertools.repeat(False)

    def send_nowait(self, item):
        self._queue.append(item if self._shape is None else pack(self._shape, item))
        self._idle.clear()

    async def wait_idle(self):
        """Return when every queued item has been accepted by the DUT."""
        if self._queue:
            await self._idle.wait()

    async def run(self):
        """The driver coroutine: start it with ``cocotb.start_soon(source.run())``."""
        presenting = False
        while True:
            await FallingEdge(self._clock)
            if not presenting and self._queue and not next(self._pauses):
                self._payload.value = self._queue[0]
                presenting = True
            self._valid.value = int(presenting)
            await ReadOnly()
            if presenting and int(self._ready.value):
                self._queue.popleft()
                self.sent += 1
                presenting = False
                if not self._queue:
                    self._idle.set()


class StreamSink:
    """Accepts items from a stream port of the DUT into :attr:`items` (ints, in order)."""

    def __init__(self, dut, prefix: str, clock, *, pauses=None, callback=None):
        self._valid = getattr(dut, f"{prefix}__valid")
        self._ready = getattr(dut, f"{prefix}__ready")
        self._payload = getattr(dut, f"{prefix}__payload")
        self._clock = clock
        self._pauses = pauses if pauses is not None else itertools.repeat(False)
        self._callback = callback
        self.items = []
        self.cycles = 0
        self._ready.value = 0

    def set_pause_generator(self, pauses):
        self._pauses = pauses if pauses is not None else itertools.repeat(False)

    async def run(self):
        """The monitor coroutine: start it with ``cocotb.start_soon(sink.run())``."""
        while True:
            await FallingEdge(self._clock)
            ready = not next(self._pauses)
            self._ready.value = int(ready)
            await ReadOnly()
            self.cycles += 1
            if ready and int(self._valid.value):
                item = self._payload.value.to_unsigned()
                self.items.append(item)
                if self._callback is not None:
                    self._callback(item)


async def drain(source, task, clk):
    """Wait until ``source`` has sent everything, then stop its driver ``task`` (valid low).
    (:meth:`StreamSource.run` never returns.)"""
    from cocotb.triggers import ClockCycles
    await source.wait_idle()
    await ClockCycles(clk, 2)
    task.cancel()


async def memory_port_write(dut, port, clk, memory, word_bytes, layout, *, zeros=True):
    """Write ``memory`` (a 1-D uint8 array) through the memory port ``port`` (a
    ``MemoryPortSignature`` requester's name in the Verilog, e.g. ``"host"``), one full-strobe
    word a request from address 0; all-zero words too unless ``zeros`` is false."""
    import cocotb
    from cocotb.triggers import ClockCycles
    src = StreamSource(dut, f"{port}__req", clk, shape=layout)
    for addr in range(len(memory) // word_bytes):
        word = memory[addr * word_bytes:(addr + 1) * word_bytes]
        if zeros or word.any():
            src.send_nowait({"addr": addr, "write": 1,
                             "data": int.from_bytes(word.tobytes(), "little"),
                             "strb": (1 << word_bytes) - 1})
    await drain(src, cocotb.start_soon(src.run()), clk)
    await ClockCycles(clk, 4)


async def memory_port_read(dut, port, clk, nbytes, word_bytes, layout):
    """Read ``nbytes`` from address 0 through the memory port ``port``: a uint8 array."""
    import cocotb
    import numpy as np
    from cocotb.triggers import ClockCycles
    src = StreamSource(dut, f"{port}__req", clk, shape=layout)
    sink = StreamSink(dut, f"{port}__rsp", clk)
    words = nbytes // word_bytes
    for addr in range(words):
        src.send_nowait({"addr": addr, "write": 0, "data": 0, "strb": 0})
    sink_task = cocotb.start_soon(sink.run())
    await drain(src, cocotb.start_soon(src.run()), clk)
    for _ in range(words + 1000):
        if len(sink.items) >= words:
            break
        await ClockCycles(clk, 10)
    assert len(sink.items) == words, f"{port} read: {len(sink.items)} of {words} words came back"
    sink_task.cancel()
    getattr(dut, f"{port}__rsp__ready").value = 1
    out = np.zeros(nbytes, np.uint8)
    for addr, bits in enumerate(sink.items):
        data = bits & ((1 << 8 * word_bytes) - 1)
        out[addr * word_bytes:(addr + 1) * word_bytes] = np.frombuffer(
            data.to_bytes(word_bytes, "little"), np.uint8)
    return out
