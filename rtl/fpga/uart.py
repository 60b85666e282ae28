"""8N1 UART receiver and transmitter with ``lib.stream`` byte ports (the boards' USB serial).

Both count time in clock cycles: ``divisor`` cycles a bit (:func:`uart_divisor` rounds
``clock_hz / baud`` and refuses a rate more than 2 % off). The receiver finds a start edge to
within one cycle, so its tolerance of a host's rate error grows with the divisor: about 2 %
(host fast) / 5 % (host slow) at 4 cycles a bit, 4 % both ways tested at 16. docs/fpga.md
("Host link") has the contract.
"""

import enum

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx", "UartTx", "uart_divisor", "MIN_DIVISOR", "MAX_DIVISOR",
           "UART_RX_STAT_NAMES", "UART_TX_STAT_NAMES"]

MIN_DIVISOR = 4
MAX_DIVISOR = 1 << 24
UART_RX_STAT_NAMES = ("bytes", "framing_errors", "overruns", "busy", "stall_out")
UART_TX_STAT_NAMES = ("bytes", "busy", "stall_in")


class _RxState(enum.IntEnum):
    IDLE = 0
    FRAME = 1
    BREAK = 2


def _check_divisor(divisor):
    if not isinstance(divisor, int) or not MIN_DIVISOR <= divisor <= MAX_DIVISOR:
        raise ValueError(f"divisor (clock cycles a bit) must be an integer in "
                         f"{MIN_DIVISOR}..{MAX_DIVISOR}, not {divisor!r}")


def _check_counter_bits(counter_bits):
    if not isinstance(counter_bits, int) or not 8 <= counter_bits <= 64:
        raise ValueError(f"counter_bits must be an integer in 8..64, not {counter_bits!r}")


def uart_divisor(clock_hz: float, baud: float) -> int:
    """The divisor for ``baud`` at ``clock_hz``; raises if the rate error exceeds 2 %."""
    divisor = round(clock_hz / baud)
    _check_divisor(divisor)
    error = abs(clock_hz / divisor - baud) / baud
    if error > 0.02:
        raise ValueError(f"{clock_hz / 1e6:g} MHz / {divisor} is {clock_hz / divisor:.0f} baud, "
                         f"{100 * error:.1f} % off {baud:g} (more than 2 %)")
    return divisor


def _count(m, counters, events):
    for name, event in events.items():
        counter = getattr(counters, name)
        m.d.sync += counter.eq(counter + event)


class UartRx(wiring.Component):
    """8N1 receiver: the ``rx`` pin in, received bytes out on the stream ``o``.

    Parameters
    ----------
    divisor : int
        Clock cycles a bit, ``MIN_DIVISOR``..``MAX_DIVISOR``.
    counter_bits : int
        Width of each counter in ``stats``.

    Members: ``rx`` (``In(1)``, idle high; synchronised by two flip-flops inside),
    ``o`` (``Out(stream.Signature(8))``), ``framing_error`` (``Out(1)``: a one-cycle pulse when
    a frame's stop bit is low, e.g. on a break), ``stats`` (``Out(StructLayout)`` of
    :data:`UART_RX_STAT_NAMES`).

    A low level on the (synchronised) line starts a frame; the start bit is sampled again
    ``divisor // 2`` cycles later (a shorter low pulse is a glitch and ignored), each data bit
    (LSB first) and the stop bit ``divisor`` cycles after the previous sample, i.e. in the middle
    of the bit. A good stop bit puts the byte into the one-byte output register (``o.valid``);
    if that register is still full the new byte is dropped and counted in ``overruns``. A low
    stop bit drops the byte, pulses ``framing_error`` and waits until the line is high before
    looking for the next start bit, so a break of any length is one framing error. Counters:
    ``bytes`` delivered, ``framing_errors``, ``overruns``, ``busy`` (cycles inside a frame),
    ``stall_out`` (cycles with ``o.valid`` and not ``o.ready``).
    """

    def __init__(self, *, divisor, counter_bits=32):
        _check_divisor(divisor)
        _check_counter_bits(counter_bits)
        self.divisor = divisor
        self.counter_bits = counter_bits
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "framing_error": Out(1),
            "stats": Out(data.StructLayout({n: counter_bits for n in UART_RX_STAT_NAMES})),
        })

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)
        timer = Signal(range(self.divisor))
        sample = Signal(range(10))      # 0: start bit, 1..8: data bits, 9: stop bit
        shift = Signal(8)
        state = Signal(_RxState)
        delivered = Signal()
        overrun = Signal()
        busy = Signal()

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(state == _RxState.IDLE):
            with m.If(~line):
                m.d.sync += [timer.eq(self.divisor // 2 - 1), sample.eq(0),
                             state.eq(_RxState.FRAME)]
        with m.Elif(state == _RxState.FRAME):
            m.d.comb += busy.eq(1)
            m.d.sync += timer.eq(timer - 1)
            with m.If(timer == 0):
                m.d.sync += [timer.eq(self.divisor - 1), sample.eq(sample + 1)]
                with m.If(sample == 0):
                    with m.If(line):                    # a glitch, not a start bit
                        m.d.sync += state.eq(_RxState.IDLE)
                with m.Elif(sample <= 8):
                    m.d.sync += shift.eq(Cat(shift[1:], line))
                with m.Elif(line):
                    m.d.comb += [delivered.eq(~self.o.valid | self.o.ready),
                                 overrun.eq(self.o.valid & ~self.o.ready)]
                    with m.If(delivered):
                        m.d.sync += [self.o.payload.eq(shift), self.o.valid.eq(1)]
                    m.d.sync += state.eq(_RxState.IDLE)
                with m.Else():
                    m.d.comb += self.framing_error.eq(1)
                    m.d.sync += state.eq(_RxState.BREAK)
        with m.Else():                                  # BREAK: wait for the idle level
            with m.If(line):
                m.d.sync += state.eq(_RxState.IDLE)
        _count(m, self.stats, {
            "bytes": delivered, "framing_errors": self.framing_error, "overruns": overrun,
            "busy": busy, "stall_out": self.o.valid & ~self.o.ready})
        return m


class UartTx(wiring.Component):
    """8N1 transmitter: bytes in on the stream ``i``, the ``tx`` pin out.

    Parameters
    ----------
    divisor : int
        Clock cycles a bit, ``MIN_DIVISOR``..``MAX_DIVISOR``.
    counter_bits : int
        Width of each counter in ``stats``.

    Members: ``i`` (``In(stream.Signature(8))``), ``tx`` (``Out(1)``, a register, idle high),
    ``stats`` (:data:`UART_TX_STAT_NAMES`: ``bytes`` sent, ``busy`` cycles on the wire,
    ``stall_in`` idle cycles).

    Each bit lasts exactly ``divisor`` cycles: start bit (low), 8 data bits LSB first, one stop
    bit (high). ``i.ready`` is high while the line is idle and in the last cycle of a stop bit,
    so bytes offered back to back leave with no gap: ``10 * divisor`` cycles a byte.
    """

    def __init__(self, *, divisor, counter_bits=32):
        _check_divisor(divisor)
        _check_counter_bits(counter_bits)
        self.divisor = divisor
        self.counter_bits = counter_bits
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
            "stats": Out(data.StructLayout({n: counter_bits for n in UART_TX_STAT_NAMES})),
        })

    def elaborate(self, platform):
        m = Module()
        shift = Signal(10, init=(1 << 10) - 1)
        bits = Signal(range(11))
        timer = Signal(range(self.divisor))
        last_cycle = Signal()
        m.d.comb += [last_cycle.eq(timer == 0),
                     self.i.ready.eq((bits == 0) | ((bits == 1) & last_cycle)),
                     self.tx.eq(shift[0])]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [shift.eq(Cat(Const(0, 1), self.i.payload, Const(1, 1))),
                         bits.eq(10), timer.eq(self.divisor - 1)]
        with m.Elif(bits != 0):
            m.d.sync += timer.eq(timer - 1)
            with m.If(last_cycle):
                m.d.sync += [shift.eq(Cat(shift[1:], Const(1, 1))), bits.eq(bits - 1),
                             timer.eq(self.divisor - 1)]
        _count(m, self.stats, {"bytes": self.i.valid & self.i.ready, "busy": bits != 0,
                               "stall_in": (bits == 0) & ~self.i.valid})
        return m
