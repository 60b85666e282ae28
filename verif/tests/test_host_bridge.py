"""The FPGA host link: the protocol (rtl/fpga/link.py), the UART (rtl/fpga/uart.py) in the
Amaranth simulator, and the UART host bridge (rtl/fpga/host_bridge.py) under cocotb + Verilator
(verif/benches/host_bridge.py), with lint and fault twins. Contract: docs/fpga.md ("Host link").
"""

import random
from pathlib import Path

import pytest
from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from openmaia.benches.host_bridge import bench_params_for
from openmaia.config import PRESETS
from openmaia.errors import ErrorCode
from openmaia.fpga import link
from openmaia.fpga.host_bridge import HOST_BRIDGE_FAULTS, HostBridge
from openmaia.fpga.uart import UartRx, UartTx, uart_divisor
from openmaia.harness import simulate
from openmaia.harness.amaranth_sim import run_stream
from openmaia.harness.elaborate import lint

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

BENCH = "openmaia.benches.host_bridge"


# ---------------------------------------------------------------------------------------------
# The protocol.

def test_link_round_trips(rng):
    for _ in range(200):
        addr, n = rng.getrandbits(64), rng.randint(1, 300)
        data = rng.randbytes(n)
        assert link.decode_request(link.encode_mem_write(addr, data)) == (
            link.Opcode.MEM_WRITE, {"addr": addr, "length": n, "data": data})
        assert link.decode_request(link.encode_mem_read(addr, n)) == (
            link.Opcode.MEM_READ, {"addr": addr, "length": n})
        reg, value = rng.getrandbits(16), rng.getrandbits(32)
        assert link.decode_request(link.encode_reg_write(reg, value)) == (
            link.Opcode.REG_WRITE, {"addr": reg, "value": value})
        assert link.decode_request(link.encode_reg_read(reg)) == (
            link.Opcode.REG_READ, {"addr": reg})
        status = rng.choice(list(ErrorCode))
        frame = link.encode_response(3, data, status)
        assert link.response_bytes(frame[:4]) == len(frame)
        assert link.decode_response(frame) == link.Response(3, data, status)
    assert link.decode_request(link.encode_ping()) == (link.Opcode.PING, {})


def test_link_rejects_malformed():
    for bad in (b"", b"\x00\x00", bytes((link.REQ_SYNC, 0x77)),
                link.encode_reg_write(4, 1)[:-1], link.encode_mem_write(0, b"ab") + b"c"):
        with pytest.raises(link.LinkError):
            link.decode_request(bad)
    with pytest.raises(link.LinkError):
        link.decode_response(link.encode_response(1, b"abcd", ErrorCode.OK)[:-1])
    with pytest.raises(link.LinkError):
        link.decode_response(bytes((link.RSP_SYNC, 1, 0, 0, 0xFE)))
    for n in (0, link.MAX_LENGTH + 1):
        with pytest.raises(ValueError):
            link.encode_mem_read(0, n)


def test_link_table_in_docs():
    """docs/fpga.md carries the table :func:`link.protocol_table` writes from link.py."""
    docs = (Path(__file__).parents[2] / "docs" / "fpga.md").read_text()
    assert link.protocol_table() in docs


def test_link_rates():
    # 8N1 at 115200 baud is 11,520 bytes/s on the wire; a 4 KiB MEM_WRITE moves 4,096 of
    # 4,108 + 5 bytes.
    rate = link.bytes_per_second(115200, link.Opcode.MEM_WRITE, 4096)
    assert rate == pytest.approx(11520 * 4096 / 4113)
    assert link.bytes_per_second(3e6, link.Opcode.MEM_READ, 4096) == pytest.approx(
        300000 * 4096 / (12 + 4101))
    assert link.bytes_per_second(115200, link.Opcode.REG_READ, 4) == pytest.approx(
        11520 * 4 / (4 + 9))


# ---------------------------------------------------------------------------------------------
# UART in the Amaranth simulator.

def test_uart_parameters():
    for bad in (3, 0, 4.0, None, 1 << 25):
        with pytest.raises(ValueError, match="divisor"):
            UartRx(divisor=bad)
        with pytest.raises(ValueError, match="divisor"):
            UartTx(divisor=bad)
    with pytest.raises(TypeError):
        UartTx(8)
    with pytest.raises(ValueError, match="counter_bits"):
        UartRx(divisor=8, counter_bits=4)
    assert uart_divisor(12e6, 3e6) == 4
    assert uart_divisor(24e6, 115200) == 208
    with pytest.raises(ValueError, match="off"):
        uart_divisor(20e6, 3e6)


class _Loopback(wiring.Component):
    """UartTx -> wire -> UartRx (byte payloads as a one-field struct, as ``run_stream``
    wants)."""

    def __init__(self, divisor):
        self.divisor = divisor
        byte = data.StructLayout({"byte": 8})
        super().__init__({"i": In(stream.Signature(byte)), "o": Out(stream.Signature(byte))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx = tx = UartTx(divisor=self.divisor)
        m.submodules.rx = rx = UartRx(divisor=self.divisor)
        m.d.comb += [tx.i.valid.eq(self.i.valid), tx.i.payload.eq(self.i.payload.byte),
                     self.i.ready.eq(tx.i.ready), rx.rx.eq(tx.tx),
                     self.o.valid.eq(rx.o.valid), self.o.payload.byte.eq(rx.o.payload),
                     rx.o.ready.eq(self.o.ready)]
        return m


@pytest.mark.parametrize("divisor", [4, 7])
def test_uart_loopback(divisor, seed):
    rng = random.Random(seed)
    payloads = [0x00, 0xFF, 0x55, 0xAA] + [rng.getrandbits(8) for _ in range(60)]
    outputs, in_cycles, _ = run_stream(_Loopback(divisor), payloads, count=len(payloads),
                                       gap=0.3, stall=0.3, seed=seed,
                                       budget=12 * divisor * len(payloads) + 200)
    assert outputs == payloads
    full, in_cycles, _ = run_stream(_Loopback(divisor), payloads[:20], count=20, seed=seed,
                                    budget=10 * divisor * 20 + 50)
    assert full == payloads[:20]
    assert {b - a for a, b in zip(in_cycles, in_cycles[1:])} == {10 * divisor}


def _run(dut, bench, cycles_limit=100_000):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run_until(cycles_limit * 1e-6)


def test_uart_tx_bit_timing():
    """Every bit exactly ``divisor`` cycles, start / data LSB first / stop, no gap between
    bytes offered back to back: 10 x divisor cycles a byte."""
    divisor, data = 5, [0x35, 0xC0, 0xFF]
    dut = UartTx(divisor=divisor)
    levels = []

    async def bench(ctx):
        sent = 0
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, data[0])
        while len(levels) < 10 * divisor * len(data) + 2 * divisor:
            _, _, ready, tx = await ctx.tick().sample(dut.i.ready, dut.tx)
            levels.append(tx)
            if ready and sent < len(data):
                sent += 1
                ctx.set(dut.i.valid, sent < len(data))
                ctx.set(dut.i.payload, data[sent] if sent < len(data) else 0)
        assert ctx.get(dut.stats.bytes) == len(data)

    _run(dut, bench)
    start = levels.index(0)
    want = []
    for byte in data:
        want += [b for bit in (0, *((byte >> i) & 1 for i in range(8)), 1)
                 for b in [bit] * divisor]
    got = levels[start:start + len(want)]
    assert got == want, f"tx waveform {got} != {want}"
    assert all(levels[start + len(want):])


def _drive_rx(dut, frames, *, divisor, settle=30):
    """Drive ``dut.rx`` with (level, cycles) pairs; returns the bytes received, the cycles of
    the framing-error pulses and the final counters."""
    got, errors = [], []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        cycle = 0
        for level, cycles in frames + [(1, settle)]:
            ctx.set(dut.rx, level)
            for _ in range(cycles):
                _, _, valid, payload, ferr = await ctx.tick().sample(
                    dut.o.valid, dut.o.payload, dut.framing_error)
                if valid:
                    got.append(payload)
                if ferr:
                    errors.append(cycle)
                cycle += 1
        stats = {name: ctx.get(getattr(dut.stats, name))
                 for name in ("bytes", "framing_errors", "overruns")}
        got.append(stats)

    _run(dut, bench)
    return got[:-1], errors, got[-1]


def _frame(byte, bit_cycles, stop=1):
    return [(0, bit_cycles)] + [((byte >> i) & 1, bit_cycles) for i in range(8)] + [
        (stop, bit_cycles)]


@pytest.mark.parametrize("divisor", [4, 8])
def test_uart_rx_framing_break_glitch(divisor):
    d = divisor
    frames = (_frame(0xA7, d) + [(1, d)]
              + _frame(0x3C, d, stop=0) + [(1, 2 * d)]          # bad stop bit
              + [(0, 25 * d), (1, 3 * d)]                       # a break: one framing error
              + [(0, 1), (1, 3 * d)]                            # a glitch shorter than d / 2
              + _frame(0x00, d) + _frame(0xFF, d) + [(1, d)])
    got, errors, stats = _drive_rx(UartRx(divisor=d), frames, divisor=d)
    assert got == [0xA7, 0x00, 0xFF]
    assert len(errors) == 2
    assert stats == {"bytes": 3, "framing_errors": 2, "overruns": 0}


@pytest.mark.parametrize("skew", [-0.04, 0.04])
def test_uart_rx_tolerates_rate_error(skew, rng):
    """A host 4 % fast or slow (at 16 cycles a bit) is still read correctly."""
    d = 16
    data = [rng.getrandbits(8) for _ in range(12)]
    frames = []
    t = 0.0
    for byte in data:
        for level, _ in _frame(byte, 1):
            start, t = round(t), t + d * (1 + skew)
            frames.append((level, round(t) - start))
    got, errors, _ = _drive_rx(UartRx(divisor=d), frames, divisor=d)
    assert got == data and not errors


def test_uart_rx_overrun_counted():
    d = 4
    dut = UartRx(divisor=d)
    frames = _frame(0x11, d) + _frame(0x22, d) + _frame(0x33, d) + [(1, 10)]

    async def bench(ctx):
        ctx.set(dut.o.ready, 0)
        for level, cycles in frames:
            ctx.set(dut.rx, level)
            await ctx.tick().repeat(cycles)
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 0x11
        assert ctx.get(dut.stats.overruns) == 2 and ctx.get(dut.stats.bytes) == 1
        assert ctx.get(dut.stats.stall_out) > 0

    _run(dut, bench)


# ---------------------------------------------------------------------------------------------
# The bridge: parameters, lint, the cocotb bench.

def test_bridge_parameters():
    cfg = PRESETS["small"]
    for bad in ({"reg_addr_bits": 17}, {"rx_fifo_depth": 2}, {"faults": {"nonsense"}},
                {"divisor": 2}, {"counter_bits": 100}):
        with pytest.raises(ValueError):
            HostBridge.from_config(cfg, **({"divisor": 8} | bad))
    with pytest.raises(TypeError):
        HostBridge(8, mem_addr_bits=32, mem_data_bits=64)
    hb = HostBridge.from_config(cfg, divisor=8)
    assert hb.mem_sig.addr_width == cfg.axi_addr_bits
    assert hb.mem_sig.data_width == cfg.axi_data_bits
    assert hb.mem_sig.id_width == cfg.axi_id_bits
    assert hb.ident.to_bytes(4, "little") == bytes((0x4F, 0x4D, link.LINK_VERSION, 16))


# The bridge itself is linted for every preset as the registered top `host-bridge`
# (test_harness.py::test_every_registered_top_is_lint_clean).


@pytest.mark.parametrize("cls", [UartRx, UartTx])
def test_lint_uart(cls):
    lint(cls(divisor=104), name=cls.__name__.lower())


def _bench(preset, seed, *, faults=frozenset(), check=True, divisor=4, testcase="random_ops",
           **overrides):
    hb = HostBridge.from_config(PRESETS[preset], divisor=divisor, faults=faults)
    params = bench_params_for(hb, **overrides)
    result = simulate(hb, bench=BENCH, name="host_bridge", testcase=testcase,
                      params=params, seed=seed, check=check, array=True)
    print(f"{preset} {sorted(faults)}: build {result.build_seconds:.1f} s "
          f"(cached {result.build_cached}), run {result.run_seconds:.1f} s, log {result.log_file}")
    return result


@pytest.mark.sim
@pytest.mark.parametrize("preset", ["ice40", pytest.param("small", marks=pytest.mark.slow)])
def test_bridge_random_ops(preset, seed):
    """The boards' shape in the default tier; the 128-bit ``small`` shape (one more Verilator
    build) in the slow tier, next to the long ulx3s run."""
    _bench(preset, seed)


@pytest.mark.sim
def test_bridge_timing(seed):
    """Line-rate streaming and a bounded turnaround (the ``timing`` bench) on the ice40
    shape (its build is shared with test_bridge_random_ops[ice40])."""
    _bench("ice40", seed, testcase="timing")


@pytest.mark.sim
@pytest.mark.slow
def test_bridge_random_ops_long(seed):
    """The ulx3s shape (64-bit beats, 28-bit addresses), 400 random requests, 50 % pauses."""
    _bench("ulx3s", seed, ops=400, pause=0.5, divisor=5)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("fault", sorted(HOST_BRIDGE_FAULTS))
def test_bridge_catches_fault(fault, seed):
    result = _bench("ice40", seed, faults={fault}, check=False)
    assert result.tests and not result.passed, f"{fault} went unnoticed by the bench"
