"""Board tops: a :class:`~openmaia.fpga.board_tile.BoardTile` on an amaranth-boards platform.

```text
 oscillator --> PLL (config.clock_mhz) --> sync domain, reset held until lock + settle time
 uart.rx ----> BoardTile.rx        BoardTile.tx ----> uart.tx
 LEDs <-- self-test result (pass / fail / blink while running), heartbeat, irq
```

Two boards (:data:`BOARDS`): ``icebreaker`` (iCE40UP5K-SG48, 12 MHz oscillator, ``SB_PLL40_PAD``)
and ``ulx3s`` (ECP5 LFE5U-85F, 25 MHz oscillator, ``EHXPLLL``). The PLL dividers are computed
here by the search ``icepll`` / ``ecppll`` do (:func:`ice40_pll`, :func:`ecp5_pll`); a target
no divider setting reaches within :data:`PLL_TOLERANCE` is refused with
:class:`PllError`. The sync domain's clock constraint (what nextpnr checks timing against) is
``config.clock_mhz``. docs/fpga.md, "Board builds", is the contract.
"""

import math
from dataclasses import dataclass

from amaranth.hdl import (
    ClockDomain,
    ClockSignal,
    DomainRenamer,
    Instance,
    Module,
    Mux,
    ResetSignal,
    Signal,
)
from amaranth.lib import io, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from ..config import Config
from .board_tile import BoardTile
from .uart import uart_divisor

__all__ = ["BOARDS", "PLL_TOLERANCE", "Board", "BoardTop", "Ecp5Pll", "Ice40Pll", "PllError",
           "ResetSequencer", "StatusLeds", "board_names", "ecp5_pll", "get_board", "ice40_pll"]

#: Largest relative difference between the PLL's output and the requested clock.
PLL_TOLERANCE = 0.005


class PllError(ValueError):
    """No PLL setting gives the requested clock (within :data:`PLL_TOLERANCE`)."""


@dataclass(frozen=True)
class Ice40Pll:
    """``SB_PLL40_*`` settings in SIMPLE feedback mode (``icepll``'s search and ranges)."""
    f_in_mhz: float
    f_out_mhz: float
    divr: int
    divf: int
    divq: int
    filter_range: int

    @property
    def f_pfd_mhz(self) -> float:
        return self.f_in_mhz / (self.divr + 1)

    @property
    def f_vco_mhz(self) -> float:
        return self.f_pfd_mhz * (self.divf + 1)


@dataclass(frozen=True)
class Ecp5Pll:
    """``EHXPLLL`` settings with CLKOP as feedback (``ecppll``'s search and ranges)."""
    f_in_mhz: float
    f_out_mhz: float
    clki_div: int
    clkfb_div: int
    clkop_div: int

    @property
    def f_pfd_mhz(self) -> float:
        return self.f_in_mhz / self.clki_div

    @property
    def f_vco_mhz(self) -> float:
        return self.f_out_mhz * self.clkop_div

    @property
    def clkop_cphase(self) -> int:
        return self.clkop_div // 2


def _check_pll(kind, f_in, f_target, best, f_out):
    if best is None or abs(f_out - f_target) > PLL_TOLERANCE * f_target:
        got = "no setting in range" if best is None else f"closest {f_out:.4f} MHz"
        raise PllError(f"{kind}: {f_target:g} MHz cannot be made from {f_in:g} MHz ({got}; "
                       f"tolerance {PLL_TOLERANCE:.1%})")


def ice40_pll(f_in_mhz: float, f_out_mhz: float) -> Ice40Pll:
    """Dividers for an iCE40 PLL: PFD 10-133 MHz, VCO 533-1066 MHz, output 16-275 MHz,
    DIVR 0-15, DIVF 0-127, DIVQ 1-6; the closest output wins (ties: the first found), as in
    ``icepll``. Raises :class:`PllError` if the closest is more than :data:`PLL_TOLERANCE` off.
    """
    if not 10 <= f_in_mhz <= 133:
        raise PllError(f"iCE40 PLL: input {f_in_mhz:g} MHz is outside 10-133 MHz")
    if not 16 <= f_out_mhz <= 275:
        raise PllError(f"iCE40 PLL: output {f_out_mhz:g} MHz is outside 16-275 MHz")
    best, best_out = None, None
    for divr in range(16):
        f_pfd = f_in_mhz / (divr + 1)
        if not 10 <= f_pfd <= 133:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533 <= f_vco <= 1066:
                continue
            for divq in range(1, 7):
                f_out = f_vco / 2 ** divq
                if best is None or abs(f_out - f_out_mhz) < abs(best_out - f_out_mhz):
                    best, best_out = (divr, divf, divq, f_pfd), f_out
    _check_pll("iCE40 PLL", f_in_mhz, f_out_mhz, best, best_out)
    divr, divf, divq, f_pfd = best
    filter_range = next(i for i, limit in enumerate((17, 26, 44, 66, 101, float("inf")), 1)
                        if f_pfd < limit)
    return Ice40Pll(f_in_mhz=f_in_mhz, f_out_mhz=best_out, divr=divr, divf=divf, divq=divq,
                    filter_range=filter_range)


def ecp5_pll(f_in_mhz: float, f_out_mhz: float) -> Ecp5Pll:
    """Dividers for an ECP5 PLL: input 8-400 MHz, PFD 3.125-400 MHz, VCO 400-800 MHz, output
    3.125-400 MHz, CLKI_DIV 1-128, CLKFB_DIV 1-80, CLKOP_DIV 1-128; the closest output wins,
    ties go to the VCO nearest 600 MHz, as in ``ecppll``. Raises :class:`PllError` if the
    closest is more than :data:`PLL_TOLERANCE` off.
    """
    if not 8 <= f_in_mhz <= 400:
        raise PllError(f"ECP5 PLL: input {f_in_mhz:g} MHz is outside 8-400 MHz")
    if not 3.125 <= f_out_mhz <= 400:
        raise PllError(f"ECP5 PLL: output {f_out_mhz:g} MHz is outside 3.125-400 MHz")
    best, best_key = None, None
    for clki_div in range(1, 129):
        f_pfd = f_in_mhz / clki_div
        if not 3.125 <= f_pfd <= 400:
            continue
        for clkfb_div in range(1, 81):
            f_out = f_pfd * clkfb_div
            for clkop_div in range(1, 129):
                f_vco = f_out * clkop_div
                if not 400 <= f_vco <= 800:
                    continue
                key = (abs(f_out - f_out_mhz), abs(f_vco - 600))
                if best is None or key < best_key:
                    best, best_key = (clki_div, clkfb_div, clkop_div, f_out), key
    f_out = None if best is None else best[3]
    _check_pll("ECP5 PLL", f_in_mhz, f_out_mhz, best, f_out)
    clki_div, clkfb_div, clkop_div, f_out = best
    return Ecp5Pll(f_in_mhz=f_in_mhz, f_out_mhz=f_out, clki_div=clki_div, clkfb_div=clkfb_div,
                   clkop_div=clkop_div)


@dataclass(frozen=True)
class Board:
    """One supported board: its platform, FPGA family, oscillator, default memory and config."""
    name: str
    family: str                 # "ice40" or "ecp5" (openmaia.synth's family names)
    device: str
    osc_mhz: float
    default_config: str
    default_hbm_bytes: int
    #: resource totals of the device, for the fit check of a Yosys-only run
    capacity: dict

    def platform(self):
        """A fresh amaranth-boards platform object (with the iCEBreaker's break-off LEDs)."""
        if self.name == "icebreaker":
            from amaranth_boards.icebreaker import ICEBreakerPlatform
            platform = ICEBreakerPlatform()
            platform.add_resources(platform.break_off_pmod)
            return platform
        from amaranth_boards.ulx3s import ULX3S_85F_Platform
        return ULX3S_85F_Platform()

    def pll(self, f_out_mhz: float):
        return (ice40_pll if self.family == "ice40" else ecp5_pll)(self.osc_mhz, f_out_mhz)


#: The boards ``openmaia fpga build`` targets. Memory defaults leave block RAM for the rest of
#: the tile: UP5K 30 x 4 Kbit EBR (15 KiB; the TSRAM goes to SPRAM), so 4 KiB of on-chip
#: memory (8 EBR); ECP5-85F 208 x 18 Kbit DP16KD, so 64 KiB (32 DP16KD at 64-bit words).
BOARDS = {
    "icebreaker": Board(name="icebreaker", family="ice40", device="iCE40UP5K-SG48",
                        osc_mhz=12.0, default_config="ice40", default_hbm_bytes=4096,
                        capacity={"luts": 5280, "ffs": 5280, "dsps": 8, "brams": 30,
                                  "sprams": 4}),
    "ulx3s": Board(name="ulx3s", family="ecp5", device="LFE5U-85F-6BG381C",
                   osc_mhz=25.0, default_config="ulx3s-fit", default_hbm_bytes=64 * 1024,
                   capacity={"luts": 83640, "ffs": 83640, "dsps": 156, "brams": 208}),
}


def board_names() -> tuple[str, ...]:
    return tuple(BOARDS)


def get_board(name: "str | Board") -> Board:
    if isinstance(name, Board):
        return name
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"unknown board {name!r}; boards: {', '.join(BOARDS)}") from None


def _blink_bit(clock_hz: float, hz: float) -> int:
    """The bit of a free-running counter whose period (``2 ** (bit + 1)`` cycles) is nearest
    to ``1 / hz`` seconds."""
    return max(0, round(math.log2(clock_hz / hz)) - 1)


class BoardTop(wiring.Component):
    """A board's top level: PLL, power-on reset, UART pins, LEDs and a :class:`BoardTile`.

    Parameters (keyword-only)
    ----------
    board : str or Board
        ``icebreaker`` or ``ulx3s``.
    config : Config
        The tile configuration; its ``clock_mhz`` is the PLL target and the timing constraint.
    hbm_bytes : int or None
        The tile's on-chip memory (default: the board's ``default_hbm_bytes``).
    baud : int
        The UART rate the divisor is built for (``uart_divisor`` refuses more than 2 % error).
    settle_us : float
        Reset held this long after the PLL locks (iCE40 block RAM reads zero for ~3 us after
        configuration; the default gives 5 x margin).
    tile_kwargs : dict
        Further keyword arguments for :class:`BoardTile` (``hbm_init``, say).
    self_test : bool
        Build the power-up self-test into the tile (:class:`~openmaia.fpga.self_test.
        SelfTestImage` ``.for_config(config, hbm_bytes=...)``): its result drives the pass /
        fail LEDs. Without it ``self_test_done`` stays 0 and the pass LED keeps blinking.
    tile : wiring.Component or None
        Put this component, with :class:`BoardTile`'s ports (``rx``, ``tx``, ``irq``,
        ``self_test_done``, ``self_test_pass``), in the tile's place instead of building one:
        for quick tests of the board wiring. ``hbm_bytes`` and ``tile_kwargs`` are then unused.

    The top has no ports (everything goes to platform pins); ``tile`` is the
    :class:`BoardTile`, ``pll`` the computed PLL settings, ``divisor`` the UART divisor.

    LEDs. iCEBreaker: green ``led_g 0`` lit = self-test passed, red ``led_r 0`` lit = failed,
    green blinking at ~2 Hz = running; on the break-off PMOD ``led_g 1`` = heartbeat (~1 Hz),
    ``led_g 2`` = irq. ULX3S: ``led 0`` pass (blinking while running), ``led 1`` fail,
    ``led 6`` irq, ``led 7`` heartbeat.
    """

    def __init__(self, *, board, config, hbm_bytes=None, baud=115_200, settle_us=15.0,
                 tile_kwargs=None, self_test=False, tile=None):
        self.board = get_board(board)
        if not isinstance(config, Config):
            raise TypeError(f"config must be a Config, not {type(config).__name__}")
        if hbm_bytes is None:
            hbm_bytes = self.board.default_hbm_bytes
        if not (isinstance(baud, int) and baud > 0):
            raise ValueError(f"baud must be a positive integer, not {baud!r}")
        if not settle_us > 0:
            raise ValueError(f"settle_us must be positive, not {settle_us!r}")
        self.config, self.hbm_bytes, self.baud = config, hbm_bytes, baud
        self.pll = self.board.pll(config.clock_mhz)
        self.clock_hz = config.clock_mhz * 1e6
        self.divisor = uart_divisor(self.pll.f_out_mhz * 1e6, baud)
        self.settle_cycles = max(1, round(settle_us * self.pll.f_out_mhz))
        self.self_test = bool(self_test)
        if tile is None:
            tile_kwargs = dict(tile_kwargs or {})
            if self_test:
                from .self_test import SelfTestImage
                tile_kwargs["self_test"] = SelfTestImage.for_config(config, hbm_bytes=hbm_bytes)
            tile = BoardTile(config, hbm_bytes=hbm_bytes, divisor=self.divisor, **tile_kwargs)
        elif self_test:
            raise ValueError("self_test needs the real tile (tile=None)")
        else:
            ports = {"rx", "tx", "irq", "self_test_done", "self_test_pass"}
            missing = ports - set(getattr(getattr(tile, "signature", None), "members", {}))
            if not isinstance(tile, wiring.Component) or missing:
                raise TypeError(f"tile must be a wiring.Component with the ports "
                                f"{sorted(ports)}; missing {sorted(missing)}")
        self.tile = tile
        super().__init__({})

    def _pll_instance(self, m, platform, clk_out, lock):
        pll = self.pll
        if self.board.family == "ice40":
            osc = platform.request("clk12", 0, dir="-")
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE", p_DIVR=pll.divr, p_DIVF=pll.divf, p_DIVQ=pll.divq,
                p_FILTER_RANGE=pll.filter_range,
                i_PACKAGEPIN=osc.io, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=clk_out, o_LOCK=lock)
            return
        osc = platform.request("clk25", 0, dir="-")
        m.submodules.osc_buf = osc_buf = io.Buffer("i", osc)
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{pll.f_in_mhz:g}", a_FREQUENCY_PIN_CLKOP=f"{pll.f_out_mhz:g}",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
            p_CLKI_DIV=pll.clki_div, p_CLKFB_DIV=pll.clkfb_div, p_CLKOP_DIV=pll.clkop_div,
            p_CLKOP_CPHASE=pll.clkop_cphase, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            i_CLKI=osc_buf.i, i_CLKFB=clk_out, i_RST=0, i_STDBY=0, i_PHASESEL0=0,
            i_PHASESEL1=0, i_PHASEDIR=0, i_PHASESTEP=0, i_PHASELOADREG=0, i_PLLWAKESYNC=0,
            i_ENCLKOP=0, o_CLKOP=clk_out, o_LOCK=lock)

    def _leds(self, m, platform):
        def led(name, number):
            buffer = io.Buffer("o", platform.request(name, number, dir="-"))
            m.submodules[f"{name}_{number}"] = buffer
            return buffer.o
        if self.board.name == "icebreaker":
            return {"pass": led("led_g", 0), "fail": led("led_r", 0),
                    "heartbeat": led("led_g", 1), "irq": led("led_g", 2)}
        return {"pass": led("led", 0), "fail": led("led", 1), "irq": led("led", 6),
                "heartbeat": led("led", 7)}

    def elaborate(self, platform):
        m = Module()
        pll_clk = Signal(name="pll_clk", attrs={"keep": 1})    # the constraint names this net
        pll_lock = Signal(name="pll_lock")
        self._pll_instance(m, platform, pll_clk, pll_lock)
        platform.add_clock_constraint(pll_clk, self.clock_hz)

        m.domains.por = ClockDomain("por", reset_less=True, local=True)
        m.domains.sync = ClockDomain("sync")
        m.d.comb += [ClockSignal("por").eq(pll_clk), ClockSignal("sync").eq(pll_clk)]
        m.submodules.reset = reset = DomainRenamer("por")(
            ResetSequencer(settle_cycles=self.settle_cycles))
        m.d.comb += [reset.lock.eq(pll_lock), ResetSignal("sync").eq(~reset.ready)]

        m.submodules.tile = tile = self.tile
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = uart_rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = uart_tx = io.Buffer("o", uart.tx)
        m.d.comb += [tile.rx.eq(uart_rx.i), uart_tx.o.eq(tile.tx)]

        leds = self._leds(m, platform)
        m.submodules.status = status = StatusLeds(
            heartbeat_bit=_blink_bit(self.clock_hz, 1.0), blink_bit=_blink_bit(self.clock_hz, 2.0))
        m.d.comb += [
            status.done.eq(tile.self_test_done), status.passed.eq(tile.self_test_pass),
            status.irq.eq(tile.irq),
            leds["pass"].eq(status.pass_led), leds["fail"].eq(status.fail_led),
            leds["heartbeat"].eq(status.heartbeat), leds["irq"].eq(status.irq_led),
        ]
        return m


class ResetSequencer(wiring.Component):
    """Holds ``ready`` low until ``lock`` (asynchronous, e.g. a PLL's LOCK) has been high,
    through a two-flip-flop synchroniser, for ``settle_cycles`` cycles; ``ready`` drops two
    cycles after ``lock`` does. Runs in ``sync`` (rename it to a reset-less domain on the
    PLL's clock: the domain it releases cannot reset it)."""

    def __init__(self, *, settle_cycles):
        if not (isinstance(settle_cycles, int) and settle_cycles >= 1):
            raise ValueError(f"settle_cycles must be a positive integer, not {settle_cycles!r}")
        self.settle_cycles = settle_cycles
        super().__init__({"lock": In(1), "ready": Out(1)})

    def elaborate(self, platform):
        m = Module()
        locked = Signal()
        m.submodules.lock_sync = FFSynchronizer(self.lock, locked)
        settle = Signal(range(self.settle_cycles + 1))
        with m.If(~locked):
            m.d.sync += [settle.eq(0), self.ready.eq(0)]
        with m.Elif(settle == self.settle_cycles):
            m.d.sync += self.ready.eq(1)
        with m.Else():
            m.d.sync += settle.eq(settle + 1)
        return m


class StatusLeds(wiring.Component):
    """The board LEDs from the self-test result and the tile's interrupt.

    ``pass_led``: ``passed`` once ``done``, before that the blink (bit ``blink_bit`` of a
    free-running counter); ``fail_led``: ``done & ~passed``; ``heartbeat``: counter bit
    ``heartbeat_bit`` (the counter's top bit); ``irq_led``: ``irq``. The counter is in ``sync``
    and restarts with its reset.
    """

    def __init__(self, *, heartbeat_bit, blink_bit):
        if not (isinstance(heartbeat_bit, int) and isinstance(blink_bit, int)
                and 0 <= blink_bit <= heartbeat_bit):
            raise ValueError(f"need 0 <= blink_bit <= heartbeat_bit, not {blink_bit!r} / "
                             f"{heartbeat_bit!r}")
        self.heartbeat_bit, self.blink_bit = heartbeat_bit, blink_bit
        super().__init__({"done": In(1), "passed": In(1), "irq": In(1), "pass_led": Out(1),
                          "fail_led": Out(1), "heartbeat": Out(1), "irq_led": Out(1)})

    def elaborate(self, platform):
        m = Module()
        ticks = Signal(self.heartbeat_bit + 1)
        m.d.sync += ticks.eq(ticks + 1)
        m.d.comb += [
            self.pass_led.eq(Mux(self.done, self.passed, ticks[self.blink_bit])),
            self.fail_led.eq(self.done & ~self.passed),
            self.heartbeat.eq(ticks[self.heartbeat_bit]),
            self.irq_led.eq(self.irq),
        ]
        return m
