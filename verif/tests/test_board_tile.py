"""The board top (rtl/fpga/board_tile.py) driven end to end through the SDK's ``fpga`` backend
(sdk/fpga.py) over the simulated UART (verif/benches/board_tile.py): GEMMs compiled by the SDK,
bit-exact against ``mx_matmul``; command, DMA and link errors each followed by good work; lint;
the link layer against a Python model of the line; a bridge fault caught (slow).
Contract: docs/fpga.md, "Board top and the ``fpga`` backend"."""

import numpy as np
import pytest
from openmaia.config import get_config
from openmaia.errors import ErrorCode
from openmaia.fpga import link
from openmaia.fpga.board_tile import BoardTile
from openmaia.harness.elaborate import lint
from openmaia.numerics import mx_matmul, quantize_mx
from openmaia.sdk.assembler import Program
from openmaia.sdk.backend import run_compiled
from openmaia.sdk.compiler import compile_gemm
from openmaia.sdk.fpga import (
    FpgaBackend,
    LinkPort,
    LinkStatusError,
    Transport,
    make_fpga_backend,
)
from openmaia.sdk.tile_host import TileDriver, TilePort
from openmaia.tile.isa import InterruptCmd, encode
from openmaia.tile.tile import Tile

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

ICE40 = get_config("ice40")
#: The smallest on-chip memory a tile takes; 16 ring entries leave 3 KiB for the GEMMs below.
MEMORY = 4096
DIVISOR = 4


def _gemm_exact(backend, rng, config, m, n, k):
    """A random GEMM of random formats through ``backend``: ``(result, exact)``."""
    fmts = sorted(config.format_names)
    fa, fb = fmts[int(rng.integers(len(fmts)))], fmts[int(rng.integers(len(fmts)))]
    compiled = compile_gemm(config, m=m, n=n, k=k, fmt_a=fa, fmt_b=fb)
    assert compiled.hbm_bytes <= backend.hbm_bytes
    qa = quantize_mx(rng.standard_normal((m, k)).astype(np.float32), fa, axis=1)
    qb = quantize_mx(rng.standard_normal((k, n)).astype(np.float32), fb, axis=0)
    result, out = run_compiled(backend, compiled, {"A": qa, "B": qb})
    exact = result.ok and np.array_equal(out["C"].view(np.uint32),
                                         mx_matmul(qa, qb).view(np.uint32))
    return result, exact, compiled


# ---------------------------------------------------------------------------------------------
# The board top.

def test_board_tile_parameters():
    with pytest.raises(TypeError, match="Config"):
        BoardTile("ice40", hbm_bytes=MEMORY, divisor=DIVISOR)
    with pytest.raises(ValueError, match="divisor"):
        BoardTile(ICE40, hbm_bytes=MEMORY, divisor=1)
    with pytest.raises(ValueError, match="hbm_bytes"):
        BoardTile(ICE40, hbm_bytes=3000, divisor=DIVISOR)
    with pytest.raises(ValueError, match="unknown faults"):
        BoardTile(ICE40, hbm_bytes=MEMORY, divisor=DIVISOR, faults={"nope"})
    with pytest.raises(TypeError):
        BoardTile(ICE40, MEMORY, DIVISOR)                       # keyword-only
    board = BoardTile(ICE40, hbm_bytes=MEMORY, divisor=DIVISOR)
    assert board.bridge.reg_sig.addr_width == board.tile.s_axil.signature.addr_width
    assert board.bridge.m_axi.signature == board.tile.host_axi.signature.flip()
    assert sorted(board.signature.members) == ["irq", "rx", "self_test_done",
                                                "self_test_pass", "tx"]


@pytest.mark.sim
@pytest.mark.slow          # CI budget: the bridge and the tile are linted on their own
def test_lint():
    lint(BoardTile(ICE40, hbm_bytes=MEMORY, divisor=DIVISOR), name="board_tile")


# ---------------------------------------------------------------------------------------------
# The link layer and the driver against a Python model of the line (no simulator).

class _ModelLine(Transport):
    """The bridge's protocol over a bytearray memory and a dict of registers, as a transport.
    ``mangle``: responses (by count) whose sync byte is wrong; ``silent``: never answers."""

    def __init__(self, *, mem_bytes=4096, mangle=(), silent=False):
        self.mem = bytearray(mem_bytes)
        self.regs = {}
        self.inbox = bytearray()
        self.mangle, self.silent = set(mangle), silent
        self.responses = self.breaks = 0

    def write(self, data):
        if self.silent:
            return
        op, fields = link.decode_request(bytes(data))
        status, payload = ErrorCode.OK, b""
        if op == link.Opcode.PING:
            payload = (link.LINK_MAGIC | link.LINK_VERSION << 16 | 4 << 24).to_bytes(4, "little")
        elif op == link.Opcode.REG_READ:
            if fields["addr"] == 0xFFC:
                status = ErrorCode.AXI_DECERR
            payload = self.regs.get(fields["addr"], 0).to_bytes(4, "little")
        elif op == link.Opcode.REG_WRITE:
            self.regs[fields["addr"]] = fields["value"]
        elif op == link.Opcode.MEM_WRITE:
            self.mem[fields["addr"]:fields["addr"] + fields["length"]] = fields["data"]
        else:
            payload = bytes(self.mem[fields["addr"]:fields["addr"] + fields["length"]])
        frame = bytearray(link.encode_response(op, payload, status))
        if self.responses in self.mangle:
            frame[0] ^= 0xFF
        self.responses += 1
        self.inbox += frame

    def read(self, n, *, timeout_bytes):
        out, self.inbox = bytes(self.inbox[:n]), self.inbox[n:]
        return out

    def send_break(self):
        self.breaks += 1

    def discard_input(self):
        out, self.inbox = bytes(self.inbox), bytearray()
        return out


def test_link_port_model(seed):
    rng = np.random.default_rng(seed)
    line = _ModelLine()
    port = LinkPort(line, chunk=7)
    data = rng.integers(0, 256, 100, dtype=np.uint8).tobytes()
    port.load(13, data)
    assert bytes(line.mem[13:113]) == data and port.read(13, 100) == data
    assert port.requests == 2 * 15                                # 100 bytes in 7-byte requests
    port.poke(0x40, 0xDEADBEEF)
    assert port.peek(0x40) == 0xDEADBEEF
    with pytest.raises(LinkStatusError, match="AXI_DECERR"):
        port.peek(0xFFC)
    assert port.ping() == (link.LINK_MAGIC, link.LINK_VERSION, 4)

    line = _ModelLine(mangle={1})                                 # the second response
    port = LinkPort(line)
    port.poke(0x8, 1)
    with pytest.raises(link.LinkError):
        port.peek(0x8)
    assert line.breaks == 1                                       # resynchronised
    assert port.peek(0x8) == 1

    port = LinkPort(_ModelLine(silent=True))
    with pytest.raises(RuntimeError, match="PING"):
        port.peek(0)
    with pytest.raises(TypeError):
        LinkPort(object())
    with pytest.raises(ValueError, match="chunk"):
        LinkPort(_ModelLine(), chunk=link.MAX_LENGTH + 1)


def test_backend_parameters():
    with pytest.raises(ValueError, match="exactly one"):
        FpgaBackend(ICE40, memory_bytes=MEMORY)
    with pytest.raises(ValueError, match="baudrate"):
        FpgaBackend(ICE40, memory_bytes=MEMORY, port="/dev/null")
    with pytest.raises(ValueError, match="memory_bytes"):
        FpgaBackend(ICE40, memory_bytes=5000, transport=_ModelLine())
    with pytest.raises(ValueError, match="hbm_bytes"):
        FpgaBackend(ICE40, memory_bytes=MEMORY, transport=_ModelLine(), hbm_bytes=MEMORY)
    be = FpgaBackend(ICE40, memory_bytes=MEMORY, transport=_ModelLine())
    assert be.hbm_bytes == MEMORY - 16 * 64
    with pytest.raises(ValueError, match="outside"):
        be.load(be.hbm_bytes - 1, b"ab")
    with pytest.raises(RuntimeError, match="ID register"):       # the model is no tile
        be.peek("ID")

    sim = make_fpga_backend(ICE40, hbm_bytes=3072, environ={})
    assert (sim.memory_bytes, sim.hbm_bytes, sim.transport.divisor) == (4096, 3072, 4)
    assert make_fpga_backend(ICE40, hbm_bytes=3073, environ={}).memory_bytes == 8192
    with pytest.raises(ValueError, match="OPENMAIA_FPGA_BAUD"):
        make_fpga_backend(ICE40, hbm_bytes=3000, environ={"OPENMAIA_FPGA_PORT": "/dev/null"})

    class NotAPort:
        pass
    with pytest.raises(TypeError, match="TilePort"):
        TileDriver(NotAPort(), None, memory_bytes=MEMORY, ring_entries=16, dma_queues=2)
    assert issubclass(LinkPort, TilePort)


def test_driver_differences_wrap_at_counter_bits():
    """``ice40`` keeps 16-bit counters (``tile.cycles`` whole): a run's counter differences
    wrap at 2 ** 16, ``tile.cycles`` at its full width; a config without ``counter_bits`` at the
    register widths."""
    assert ICE40.counter_bits == 16
    tile = Tile(ICE40, hbm_bytes=MEMORY)
    tile._MustUse__used = tile.registers._MustUse__used = True
    rmap = tile.register_map

    class NoPort(TilePort):
        peek = poke = load = read = None

    kwargs = dict(memory_bytes=MEMORY, ring_entries=16, dma_queues=ICE40.dma_queues)
    narrow = TileDriver(NoPort(), rmap, counter_bits=ICE40.counter_bits, **kwargs)
    full = TileDriver(NoPort(), rmap, **kwargs)
    before = {"tile.cycles": 0xFFFF_FFF0, "ttu.ttu.macs": 0xFFF0, "tcp.retired": 0xFFFE}
    after = {"tile.cycles": 0x1_0000_0010, "ttu.ttu.macs": 0x0010, "tcp.retired": 0x0003}
    assert narrow.differences(before, after) == \
        {"tile.cycles": 0x20, "ttu.ttu.macs": 0x20, "tcp.retired": 5}
    assert full.differences(before, after) == \
        {"tile.cycles": 0x20, "ttu.ttu.macs": (1 << 48) - 0xFFE0, "tcp.retired": (1 << 32) - 0xFFFB}
    with pytest.raises(ValueError, match="counter_bits"):
        TileDriver(NoPort(), rmap, counter_bits=0, **kwargs)


# ---------------------------------------------------------------------------------------------
# End to end: the SDK over the simulated UART into the simulated board.

def _end_to_end(config, seed, *, gemms):
    rng = np.random.default_rng(seed)
    backend = FpgaBackend.simulated(config, memory_bytes=MEMORY * config.hbm_pseudo_channels,
                                    divisor=DIVISOR, gap=0.1, seed=seed)
    try:
        for i in range(gemms):
            m = int(rng.integers(1, 2 * config.array_rows + 3))
            n = int(rng.integers(1, 2 * config.array_cols + 3))
            k = int(rng.integers(1, 65))
            result, exact, compiled = _gemm_exact(backend, rng, config, m, n, k)
            assert result.ok, (i, result)
            assert exact, f"GEMM {m} x {n} x {k} differs from mx_matmul"
            c = result.counters
            assert c["macs"] == m * n * 32 * -(-k // 32)
            assert c["tcp.retired"] == len(compiled.program.commands)
            assert 0 < c["ttu_busy"] <= c["cycles"]

        # an illegal command stops the stream with its code and position; the next run works
        good = Program.parse("SIGNAL sem=0 count=1\nWAIT sem=0 count=1\nHALT").to_bytes()
        illegal = bytearray(encode(InterruptCmd(code=5)).to_bytes(64, "little"))
        illegal[1] |= 0x02                                      # reserved header bit 9
        result = backend.run(good[:128] + bytes(illegal) + good[128:])
        assert (result.state, result.error, result.source, result.error_position) == \
            ("ERROR", ErrorCode.ILLEGAL_FIELD, "COMMAND", 2), result
        result, exact, _ = _gemm_exact(backend, rng, config, 2, 3, 40)
        assert exact, result

        # a DMA outside its queue's window: DESC_OUT_OF_WINDOW, memory unchanged; then good
        before = backend.read(0, 1024)
        backend.set_window(0, 0, 15)
        compiled = compile_gemm(config, m=2, n=2, k=32, fmt_a="e4m3", fmt_b="e4m3")
        result = backend.run(compiled.program)
        assert (result.state, result.error, result.source) == \
            ("ERROR", ErrorCode.DESC_OUT_OF_WINDOW, "DMA"), result
        assert backend.read(0, 1024) == before
        backend.set_window(0, 0, backend.driver.ring_base - 1)
        result, exact, _ = _gemm_exact(backend, rng, config, 3, 2, 64)
        assert exact, result

        # link-level errors: a register no one holds (DECERR), an undefined opcode; then good
        with pytest.raises(LinkStatusError, match="AXI_DECERR"):
            backend.link.peek(0xFFC)
        response = backend.link.transact(bytes((link.REQ_SYNC, 0x77)))
        assert (response.opcode, response.payload, response.status) == \
            (0x77, b"", ErrorCode.ILLEGAL_OPCODE)
        backend.poke("IRQ_ENABLE", 0b0101)
        assert backend.peek("IRQ_ENABLE") == 0b0101
        backend.reset()
        assert backend.counters() == {}
        result, exact, _ = _gemm_exact(backend, rng, config, 1, 1, 1)
        assert exact, result
    finally:
        sim = backend.close()
    assert sim is not None and sim.failed == 0, sim             # no framing error on tx


@pytest.mark.sim
def test_gemm_over_uart(seed):
    """ice40: GEMMs bit-exact through FpgaBackend over the simulated UART (divisor 4, random
    idle gaps on the host's line), errors each followed by good work."""
    _end_to_end(ICE40, seed, gemms=2)


@pytest.mark.sim
@pytest.mark.slow
def test_gemm_over_uart_small(seed):
    _end_to_end(get_config("small"), seed, gemms=2)


@pytest.mark.sim
@pytest.mark.slow
def test_bridge_fault_caught(seed):
    """The end-to-end check is not blind: a bridge that drops the last byte of every memory
    write (``drop_last_byte``) fails it."""
    rng = np.random.default_rng(seed)
    backend = FpgaBackend.simulated(ICE40, memory_bytes=MEMORY, divisor=DIVISOR, seed=seed,
                                    faults={"drop_last_byte"})
    try:
        _, exact, _ = _gemm_exact(backend, rng, ICE40, 4, 4, 64)
        assert not exact
    finally:
        backend.close()
