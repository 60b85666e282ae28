"""The power-up self-test of a board: a stored GEMM run by the tile after reset, its result
checked against a checksum computed at build time, pass / fail on two outputs (the board's LEDs).

Two halves:

* :class:`SelfTestImage` (plain Python, build time): a small MX GEMM compiled by the SDK
  (:func:`openmaia.sdk.compiler.compile_gemm`), its operands, scales and command ring laid out
  in the tile's on-chip memory exactly as the SDK's host driver (:class:`TileDriver`) lays them
  out, the register writes the driver makes to start it (recorded from the driver itself), the
  result region, and the CRC-32 (:func:`zlib.crc32`) of the result bytes
  :func:`openmaia.numerics.mx_matmul` gives.
* :class:`SelfTest` (hardware): after reset it replays the register writes on the tile's register
  port (AXI4-Lite manager), polls STATUS until the stream stops, reads the result region on the
  tile's memory port (AXI4 manager), computes the CRC-32 with :class:`Crc32` and raises ``done``
  and, when everything matched, ``passed``.

:class:`~openmaia.fpga.board_tile.BoardTile` (``self_test=image``) initialises the memory with
the image and gives the self-test the tile's two ports until it is done. docs/fpga.md,
"Self-test", is the contract.
"""

import enum
import functools
import operator
import zlib
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..bus.axi import Axi4Signature, AxiBurst, AxiLiteSignature, AxiResp
from ..config import Config
from ..numerics import mx_matmul, quantize_mx
from ..numerics.formats import BLOCK_SIZE, Format
from ..sdk.backend import write_inputs
from ..sdk.compiler import compile_gemm
from ..sdk.golden import GoldenBackend
from ..sdk.tile_host import RING_BYTES_PER_ENTRY, TileDriver, TilePort
from ..tile.registers import HostRegisters

__all__ = [
    "CRC32_POLY",
    "SELF_TEST_FAULTS",
    "Crc32",
    "SelfTest",
    "SelfTestFail",
    "SelfTestImage",
    "crc32_matrix",
    "self_test_stats_layout",
]

#: The reflected CRC-32 polynomial (IEEE 802.3; :func:`zlib.crc32`).
CRC32_POLY = 0xEDB88320
#: Fault twins of the checker (mutation tests only): ``skip_compare`` passes whatever the
#: checksum; ``ignore_error`` treats a tile stopped in ERROR as halted (compares anyway).
SELF_TEST_FAULTS = frozenset({"skip_compare", "ignore_error"})

class _State(enum.IntEnum):
    WRITE = 0           # a register write: AW and W
    WRITE_RESP = 1      # its B
    POLL = 2            # AR of STATUS
    POLL_RESP = 3       # its R
    READ = 4            # AR of a result beat
    READ_RESP = 5       # its R
    CRC = 6             # the beat through the CRC, crc_bits a cycle
    CHECK = 7           # the CRC against the stored checksum
    DONE = 8            # stopped; the ports belong to the host


# TCP states in STATUS.state (openmaia.tile.tcp.TcpState; the driver's STATES).
_RUNNING, _HALTED, _ERROR = 0, 1, 2


class SelfTestFail(enum.IntEnum):
    """Why a finished self-test failed (``SelfTest.fail``); NONE while running or on pass."""
    NONE = 0
    TIMEOUT = 1         # the cycle budget ran out
    BUS_ERROR = 2       # a register or memory access answered SLVERR / DECERR
    TILE_ERROR = 3      # the tile's stream stopped in ERROR
    MISMATCH = 4        # the result's checksum differs from the stored one


# ------------------------------------------------------------------------------------------------
# Build time: the image.

class _RecordingPort(TilePort):
    """A :class:`TilePort` that records what the host driver writes: register writes in order,
    memory writes into ``memory``. Reads answer a tile fresh out of reset: a register's reset
    value (``Register.init``), the memory's contents."""

    def __init__(self, register_map, memory):
        self.map, self.memory = register_map, memory
        self.by_address = {r.address: r for r in register_map}
        self.writes = []

    def peek(self, address):
        return self.by_address[address].init

    def poke(self, address, value):
        self.writes.append((address, value & 0xFFFF_FFFF))

    def load(self, addr, data):
        self.memory[addr:addr + len(data)] = np.frombuffer(bytes(data), np.uint8)

    def read(self, addr, nbytes):
        return self.memory[addr:addr + nbytes].tobytes()


@dataclass(frozen=True)
class SelfTestImage:
    """Everything the self-test hardware stores, computed at build time (module docstring).

    ``memory``: the on-chip memory's initial contents (``memory_bytes``, operands from address
    0, the ring at the top); ``writes``: ``(register address, value)`` in order; ``cleanup``:
    the writes made after the check, whatever its outcome (a bus error aside), so that the host
    finds the command queue empty at head 0, the fetcher stopped and the TCP restarted
    (CONTROL = 0, CQ_DOORBELL = 0, CONTROL = restart + flush); ``commands``:
    commands in the ring; ``result_base`` / ``result_bytes``: the region read back (the C
    matrix rounded out to whole memory beats); ``expected``: those bytes as they must be after
    the run; ``checksum``: ``zlib.crc32(expected)``; ``max_cycles``: the budget from reset to
    done; ``status_address`` and the STATUS field positions; ``gemm``: ``(m, n, k, fmt_a,
    fmt_b)``; ``flip``: the bit flipped in the stored operands (``(byte address, bit)``) or
    None; ``compiled``: the SDK's :class:`~openmaia.sdk.compiler.Compiled`; ``tensors``: the
    operands (``{"A": MXTensor, "B": MXTensor}``)."""
    config: Config
    memory_bytes: int
    memory: bytes
    writes: tuple
    cleanup: tuple
    commands: int
    ring_base: int
    ring_entries: int
    result_base: int
    result_bytes: int
    expected: bytes
    checksum: int
    max_cycles: int
    status_address: int
    cq_head_address: int
    state_field: tuple
    outstanding_bit: int
    register_addr_bits: int
    gemm: tuple
    seed: int
    flip: tuple | None
    compiled: object
    tensors: dict

    @classmethod
    def for_config(cls, config, *, hbm_bytes, seed=1, m=None, n=None, k=None,
                   fmt_a=Format.E4M3, fmt_b=None, max_cycles=1 << 16, flip_bit=None,
                   register_addr_bits=12):
        """The self-test of ``config`` with a ``hbm_bytes`` on-chip memory (the tile's).

        ``m`` x ``n`` x ``k``: the GEMM (operands from a normal distribution drawn with
        ``seed``, MX-quantized along K; default: two array tiles each way, ``2 * array_rows`` x
        ``2 * array_cols``, and one block more than a TTU panel along K, ``32 *
        (ttu_panel_blocks + 1)``, so that each output tile is a keep / accumulate chain of
        two tile ops); ``fmt_a`` / ``fmt_b``: their formats (``fmt_b``
        default: E2M1 when the configuration has it, so that both element decoders run, else
        ``fmt_a``); ``max_cycles``: the budget from reset to done, after which the self-test
        fails; ``flip_bit``: an index into the stored operand bits (codes and scales of A and
        B, bit ``i % 8`` of the ``i // 8``-th operand byte) to flip in the memory image after
        the checksum is computed (the variant that must fail); ``register_addr_bits``: the
        tile's register port."""
        if not isinstance(config, Config):
            raise TypeError(f"config must be a Config, not {type(config).__name__}")
        if config.hbm_preset != "ONCHIP":
            raise ValueError(f"the self-test needs an ONCHIP memory preset (initialised at "
                             f"configuration time), not {config.hbm_preset!r}")
        m = 2 * config.array_rows if m is None else m
        n = 2 * config.array_cols if n is None else n
        k = BLOCK_SIZE * (config.ttu_panel_blocks + 1) if k is None else k
        fmt_a = Format.of(fmt_a)
        if fmt_b is None:
            fmt_b = Format.E2M1 if Format.E2M1 in config.formats else fmt_a
        fmt_b = Format.of(fmt_b)
        if not isinstance(max_cycles, int) or max_cycles < 1:
            raise ValueError(f"max_cycles must be a positive integer, not {max_cycles!r}")
        if not isinstance(seed, int):
            raise TypeError(f"seed must be an integer, not {seed!r}")
        compiled = compile_gemm(config, m=m, n=n, k=k, fmt_a=fmt_a, fmt_b=fmt_b)
        program = compiled.program.to_bytes()
        commands = len(program) // RING_BYTES_PER_ENTRY
        ring_entries = commands + 1              # a full ring holds entries - 1 commands
        ring_base = hbm_bytes - ring_entries * RING_BYTES_PER_ENTRY
        if (not isinstance(hbm_bytes, int) or hbm_bytes & (hbm_bytes - 1)
                or compiled.hbm_bytes > ring_base):
            raise ValueError(f"hbm_bytes must be a power of two holding the GEMM's "
                             f"{compiled.hbm_bytes} bytes and the ring's "
                             f"{ring_entries * RING_BYTES_PER_ENTRY}, not {hbm_bytes!r}")

        rng = np.random.default_rng(seed)
        tensors = {
            "A": quantize_mx(rng.standard_normal((m, k)).astype(np.float32), fmt_a, axis=1),
            "B": quantize_mx(rng.standard_normal((k, n)).astype(np.float32), fmt_b, axis=0),
        }
        store = GoldenBackend(config, hbm_bytes=hbm_bytes)
        write_inputs(store, compiled, tensors)
        rmap = _register_map(config, register_addr_bits)
        port = _RecordingPort(rmap, store.hbm)
        driver = TileDriver(port, rmap, memory_bytes=hbm_bytes, ring_entries=ring_entries,
                            dma_queues=config.dma_queues, counter_bits=config.counter_bits)
        driver.start()
        words = [program[i:i + RING_BYTES_PER_ENTRY] for i in range(0, len(program),
                                                                      RING_BYTES_PER_ENTRY)]
        if driver.write_commands(words, 0) != commands:
            raise AssertionError("the ring did not take every command")

        c = compiled.outputs["C"]
        beat = config.axi_data_bits // 8
        result_base = c.start // beat * beat
        result_end = -(-c.end // beat) * beat
        after = store.hbm.copy()
        c.write(after, mx_matmul(tensors["A"], tensors["B"]))
        expected = after[result_base:result_end].tobytes()

        flip = None
        if flip_bit is not None:
            operand_bytes = _operand_bytes(compiled)
            if not isinstance(flip_bit, int) or not 0 <= flip_bit < 8 * len(operand_bytes):
                raise ValueError(f"flip_bit must be in 0 .. {8 * len(operand_bytes) - 1} (the "
                                 f"operand bits), not {flip_bit!r}")
            flip = (operand_bytes[flip_bit // 8], flip_bit % 8)
            store.hbm[flip[0]] ^= 1 << flip[1]

        control = rmap["CONTROL"].fields
        stop = 1 << control["restart"].offset | 1 << control["flush"].offset
        cleanup = ((rmap["CONTROL"].address, 0), (rmap["CQ_DOORBELL"].address, 0),
                   (rmap["CONTROL"].address, stop))
        status = rmap["STATUS"]
        return cls(cleanup=cleanup,config=config, memory_bytes=hbm_bytes, memory=store.hbm.tobytes(),
                   writes=tuple(port.writes), commands=commands, ring_base=ring_base,
                   ring_entries=ring_entries, result_base=result_base,
                   result_bytes=result_end - result_base, expected=expected,
                   checksum=zlib.crc32(expected), max_cycles=max_cycles,
                   status_address=status.address, cq_head_address=rmap["CQ_HEAD"].address,
                   state_field=(status.fields["state"].offset, status.fields["state"].width),
                   outstanding_bit=status.fields["outstanding"].offset,
                   register_addr_bits=register_addr_bits, gemm=(m, n, k, fmt_a, fmt_b),
                   seed=seed, flip=flip, compiled=compiled, tensors=tensors)

    @property
    def operand_bytes(self):
        """The memory addresses of the stored operand bytes (codes and scales of A and B)."""
        return _operand_bytes(self.compiled)

    def summary(self):
        m, n, k, fa, fb = self.gemm
        return {"gemm": f"{m} x {n} x {k} {fa.name} x {fb.name}", "commands": self.commands,
                "register_writes": len(self.writes), "cleanup_writes": len(self.cleanup),
                "result_base": self.result_base,
                "result_bytes": self.result_bytes, "checksum": f"{self.checksum:#010x}",
                "max_cycles": self.max_cycles, "memory_bytes": self.memory_bytes,
                "flip": self.flip}


def _register_map(config, addr_width):
    """The tile's register map (as :class:`~openmaia.tile.tile.Tile` builds it)."""
    regs = HostRegisters.from_config(config, addr_width=addr_width)
    regs._MustUse__silence = True           # only its map is wanted
    return regs.map


def _operand_bytes(compiled):
    out = []
    for layout in compiled.inputs.values():
        mask = np.asarray(layout.footprint_mask(layout.end), bool)
        out.extend(int(a) for a in np.flatnonzero(mask))
    return sorted(set(out))


# ------------------------------------------------------------------------------------------------
# The checksum unit.

def crc32_matrix(data_bits):
    """The CRC-32 step over ``data_bits`` bits as XOR taps: for each bit ``j`` of the next
    register, ``(register bits, data bits)`` whose XOR it is. Data bits enter LSB first (the
    reflected CRC of :func:`zlib.crc32`; a little-endian word is its bytes in order)."""
    state = [({i}, set()) for i in range(32)]
    for d in range(data_bits):
        fb = (state[0][0], state[0][1] ^ {d})        # register bit 0 xor the data bit
        shifted = state[1:] + [(set(), set())]
        state = [(s ^ fb[0], t ^ fb[1]) if CRC32_POLY >> j & 1 else (s, t)
                 for j, (s, t) in enumerate(shifted)]
    return [(sorted(s), sorted(t)) for s, t in state]


class Crc32(wiring.Component):
    """CRC-32 of :func:`zlib.crc32` over a bit sequence fed ``data_bits`` bits a cycle.

    ``clear`` (a cycle) starts a new sequence; while ``valid`` the ``data_bits`` of ``data``
    enter, bit 0 first; ``value`` is ``zlib.crc32`` of everything entered since ``clear`` (one
    cycle after the last ``valid``). ``data_bits``: 1 (bit-serial, the fewest gates), 2, 4, 8,
    16, 32 or 64. The next-state logic is the XOR matrix of :func:`crc32_matrix`, one XOR of
    register and data bits per register bit."""

    def __init__(self, *, data_bits=8):
        if data_bits not in (1, 2, 4, 8, 16, 32, 64):
            raise ValueError(f"data_bits must be 1, 2, 4, 8, 16, 32 or 64, not {data_bits!r}")
        self.data_bits = data_bits
        super().__init__({"clear": In(1), "valid": In(1), "data": In(data_bits),
                          "value": Out(32)})

    def elaborate(self, platform):
        m = Module()
        reg = Signal(32, init=0xFFFF_FFFF)
        nxt = Signal(32)
        for j, (s_taps, d_taps) in enumerate(crc32_matrix(self.data_bits)):
            terms = [reg[i] for i in s_taps] + [self.data[i] for i in d_taps]
            m.d.comb += nxt[j].eq(functools.reduce(operator.xor, terms, Const(0, 1)))
        with m.If(self.clear):
            m.d.sync += reg.eq(0xFFFF_FFFF)
        with m.Elif(self.valid):
            m.d.sync += reg.eq(nxt)
        m.d.comb += self.value.eq(~reg)
        return m


# ------------------------------------------------------------------------------------------------
# The self-test controller.

def self_test_stats_layout(counter_bits):
    """Counters of :class:`SelfTest` (``counter_bits`` each, wrapping)."""
    return data.StructLayout({
        "busy": counter_bits,            # cycles from reset until the ports are released
        "stall_request": counter_bits,   # an AW / W / AR valid waiting for ready (both ports)
        "stall_response": counter_bits,  # waiting for a B or R (both ports)
        "polls": counter_bits,           # STATUS reads
    })


class SelfTest(wiring.Component):
    """Runs a :class:`SelfTestImage` on a tile after reset (module docstring).

    Sequence: the image's register writes in order on ``m_axil`` (one at a time, AW and W
    together, a B waited for each); STATUS read on ``m_axil`` until ``state`` is HALTED with
    ``outstanding`` clear (``state`` ERROR: fail TILE_ERROR); the result region read on
    ``m_axi``, one single-beat INCR read a beat (ID 0, full width); each beat through
    :class:`Crc32`, ``crc_bits`` a cycle; ``passed`` when the CRC equals ``image.checksum``,
    else fail MISMATCH. ``done`` rises with the verdict; then the image's ``cleanup`` writes
    (whatever the verdict, a bus error aside), STATUS polled until RUNNING (the restart has
    drained) and CQ_HEAD until 0 (the flush is done), then the ports are released. Any
    response other than OKAY: fail BUS_ERROR (unless a verdict came first), ports released at
    once. The cycle budget ``image.max_cycles`` counts from reset to the release: when it runs
    out before a verdict, ``done`` rises with fail TIMEOUT at once, and the controller goes to
    the cleanup at the end of the transaction in flight (an AXI valid once raised is held
    until its handshake); the cleanup's polls stop at the first answer after the budget. The
    first verdict stays.

    Ports: ``m_axil`` (``Out(AxiLiteSignature(image.register_addr_bits, 32))``), ``m_axi``
    (``Out(Axi4Signature)`` of the config's memory port; reads only), ``active`` (the
    controller owns both ports: from reset until it stopped; no transaction of it is in
    flight once it falls), ``done``, ``passed`` (``Out(1)`` each; ``passed`` implies
    ``done``; both hold until reset), ``fail`` (``Out(SelfTestFail)``), ``checksum``
    (``Out(32)``: the CRC computed), ``stats`` (:func:`self_test_stats_layout`). ``faults``:
    :data:`SELF_TEST_FAULTS`
    (mutation tests only)."""

    def __init__(self, image, *, crc_bits=1, counter_bits=32, faults=frozenset()):
        if not isinstance(image, SelfTestImage):
            raise TypeError(f"image must be a SelfTestImage, not {type(image).__name__}")
        cfg = image.config
        if crc_bits not in (1, 2, 4, 8, 16, 32, 64) or crc_bits > cfg.axi_data_bits:
            raise ValueError(f"crc_bits must be a power of two from 1 to the memory beat's "
                             f"{cfg.axi_data_bits} bits, not {crc_bits!r}")
        if not isinstance(counter_bits, int) or not 1 <= counter_bits <= 64:
            raise ValueError(f"counter_bits must be an integer in 1..64, not {counter_bits!r}")
        if isinstance(faults, str):
            raise TypeError(f"faults must be a collection of fault names, not {faults!r}")
        faults = frozenset(faults)
        if faults - SELF_TEST_FAULTS:
            raise ValueError(f"unknown faults {sorted(faults - SELF_TEST_FAULTS)}; known: "
                             f"{sorted(SELF_TEST_FAULTS)}")
        self.image, self.crc_bits, self.faults = image, crc_bits, faults
        self.mem_sig = Axi4Signature(addr_width=cfg.axi_addr_bits, data_width=cfg.axi_data_bits,
                                     id_width=cfg.axi_id_bits)
        super().__init__({
            "m_axil": Out(AxiLiteSignature(addr_width=image.register_addr_bits, data_width=32)),
            "m_axi": Out(self.mem_sig),
            "active": Out(1),
            "done": Out(1),
            "passed": Out(1),
            "fail": Out(SelfTestFail),
            "checksum": Out(32),
            "stats": Out(self_test_stats_layout(counter_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        img, reg, mem = self.image, self.m_axil, self.m_axi
        beat_bits = self.mem_sig.data_width
        beat_bytes = beat_bits // 8
        addr_bits = img.register_addr_bits

        m.submodules.crc = crc = Crc32(data_bits=self.crc_bits)
        writes = img.writes + img.cleanup
        m.submodules.rom = rom = Memory(
            shape=addr_bits + 32, depth=len(writes),
            init=[a | v << addr_bits for a, v in writes])
        rd = rom.read_port(domain="comb")
        index = Signal(range(len(writes)))
        cleaning = Signal()
        poll_head = Signal()
        m.d.comb += rd.addr.eq(index)

        timer = Signal(range(img.max_cycles + 1))
        expired = Signal()
        fail = Signal(SelfTestFail)
        passed = Signal()
        aw_done, w_done = Signal(), Signal()
        beats = img.result_bytes // beat_bytes
        beat = Signal(range(beats))
        raddr = Signal(self.mem_sig.addr_width, init=img.result_base)
        shift = Signal(beat_bits)
        steps = beat_bits // self.crc_bits
        step = Signal(range(steps))

        state_lo, state_w = img.state_field
        st_state = Signal(state_w)
        st_outstanding = Signal()
        m.d.comb += [st_state.eq(reg.rdata[state_lo:state_lo + state_w]),
                     st_outstanding.eq(reg.rdata[img.outstanding_bit])]
        halted = Signal()
        errored = Signal()
        m.d.comb += [
            halted.eq((st_state == _HALTED) | (("ignore_error" in self.faults)
                                               & (st_state == _ERROR))),
            errored.eq((st_state == _ERROR) & ("ignore_error" not in self.faults)),
        ]

        m.d.comb += [
            reg.awaddr.eq(rd.data[:addr_bits]), reg.wdata.eq(rd.data[addr_bits:]),
            reg.wstrb.eq(0xF),
            reg.araddr.eq(Mux(poll_head, img.cq_head_address, img.status_address)),
            mem.araddr.eq(raddr), mem.arlen.eq(0), mem.arsize.eq(self.mem_sig.size_code),
            mem.arburst.eq(AxiBurst.INCR), mem.arid.eq(0),
            crc.data.eq(shift[:self.crc_bits]),
        ]

        state = Signal(_State)
        verdict = Signal()
        m.d.comb += verdict.eq(passed | (fail != SelfTestFail.NONE))

        def set_fail(code):
            with m.If(~verdict):
                m.d.sync += fail.eq(code)

        def cleanup():
            m.d.sync += [index.eq(len(img.writes)), cleaning.eq(1), state.eq(_State.WRITE)]

        def end_of_transaction(next_state):
            with m.If(expired & ~cleaning):
                cleanup()
            with m.Else():
                m.d.sync += state.eq(next_state)

        def bus_error():
            set_fail(SelfTestFail.BUS_ERROR)
            m.d.sync += state.eq(_State.DONE)

        with m.If(state == _State.WRITE):
            aw_ok = aw_done | reg.awready
            w_ok = w_done | reg.wready
            with m.If(aw_ok & w_ok):
                m.d.sync += [aw_done.eq(0), w_done.eq(0)]
                m.d.sync += state.eq(_State.WRITE_RESP)
            with m.Else():
                m.d.sync += [aw_done.eq(aw_ok), w_done.eq(w_ok)]
        with m.Elif(state == _State.WRITE_RESP), m.If(reg.bvalid):
            with m.If(reg.bresp != AxiResp.OKAY):
                bus_error()
            with m.Elif(index == len(writes) - 1):
                m.d.sync += state.eq(_State.POLL)
            with m.Elif(index == len(img.writes) - 1):
                end_of_transaction(_State.POLL)
            with m.Else():
                m.d.sync += index.eq(index + 1)
                end_of_transaction(_State.WRITE)
        with m.Elif(state == _State.POLL), m.If(reg.arready):
            m.d.sync += state.eq(_State.POLL_RESP)
        with m.Elif(state == _State.POLL_RESP), m.If(reg.rvalid):
            with m.If(reg.rresp != AxiResp.OKAY):
                bus_error()
            with m.Elif(cleaning):
                # after the cleanup: STATUS until RUNNING (restart drained), then CQ_HEAD until
                # 0 (flush done); given up when the budget has run out
                with m.If(expired | (poll_head & (reg.rdata == 0))):
                    m.d.sync += state.eq(_State.DONE)
                with m.Else():
                    with m.If(st_state == _RUNNING):
                        m.d.sync += poll_head.eq(1)
                    m.d.sync += state.eq(_State.POLL)
            with m.Elif(errored):
                set_fail(SelfTestFail.TILE_ERROR)
                cleanup()
            with m.Elif(halted & ~st_outstanding):
                end_of_transaction(_State.READ)
            with m.Else():
                end_of_transaction(_State.POLL)
        with m.Elif(state == _State.READ), m.If(mem.arready):
            m.d.sync += state.eq(_State.READ_RESP)
        with m.Elif(state == _State.READ_RESP), m.If(mem.rvalid):
            m.d.sync += [shift.eq(mem.rdata), step.eq(0)]
            with m.If(mem.rresp != AxiResp.OKAY):
                bus_error()
            with m.Else():
                end_of_transaction(_State.CRC)
        with m.Elif(state == _State.CRC):
            m.d.sync += [shift.eq(shift >> self.crc_bits), step.eq(step + 1)]
            with m.If(step == steps - 1):
                with m.If(beat == beats - 1):
                    m.d.sync += state.eq(_State.CHECK)
                with m.Else():
                    m.d.sync += [beat.eq(beat + 1), raddr.eq(raddr + beat_bytes)]
                    end_of_transaction(_State.READ)
        with m.Elif(state == _State.CHECK):
            with m.If(~verdict):
                with m.If((crc.value == img.checksum) | ("skip_compare" in self.faults)):
                    m.d.sync += passed.eq(1)
                with m.Else():
                    m.d.sync += fail.eq(SelfTestFail.MISMATCH)
            cleanup()

        finished = Signal()
        m.d.comb += [
            finished.eq(state == _State.DONE), self.active.eq(~finished),
            reg.awvalid.eq((state == _State.WRITE) & ~aw_done),
            reg.wvalid.eq((state == _State.WRITE) & ~w_done),
            reg.bready.eq(state == _State.WRITE_RESP),
            reg.arvalid.eq(state == _State.POLL), reg.rready.eq(state == _State.POLL_RESP),
            mem.arvalid.eq(state == _State.READ), mem.rready.eq(state == _State.READ_RESP),
            crc.clear.eq((state == _State.POLL_RESP) & ~cleaning),
            crc.valid.eq(state == _State.CRC),
        ]
        with m.If(~finished & ~expired):
            with m.If(timer == img.max_cycles - 1):
                m.d.sync += expired.eq(1)
                set_fail(SelfTestFail.TIMEOUT)
            m.d.sync += timer.eq(timer + 1)
        m.d.comb += [
            self.done.eq(verdict),
            self.passed.eq(passed),
            self.fail.eq(fail),
            self.checksum.eq(crc.value),
        ]

        s = self.stats
        running = Signal()
        m.d.comb += running.eq(self.active)
        req_stall = ((reg.awvalid & ~reg.awready) | (reg.wvalid & ~reg.wready)
                     | (reg.arvalid & ~reg.arready) | (mem.arvalid & ~mem.arready))
        rsp_wait = ((reg.bready & ~reg.bvalid) | (reg.rready & ~reg.rvalid)
                    | (mem.rready & ~mem.rvalid))
        with m.If(running):
            m.d.sync += s.busy.eq(s.busy + 1)
        with m.If(req_stall):
            m.d.sync += s.stall_request.eq(s.stall_request + 1)
        with m.If(rsp_wait):
            m.d.sync += s.stall_response.eq(s.stall_response + 1)
        with m.If(reg.arvalid & reg.arready):
            m.d.sync += s.polls.eq(s.polls + 1)
        return m
