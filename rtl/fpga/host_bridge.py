"""The UART host bridge: the link protocol of :mod:`openmaia.fpga.link` on the board's serial
pins, turned into AXI4-Lite register accesses and AXI4 memory accesses.

docs/fpga.md ("Host link") is the contract; :class:`HostBridge` states it in brief.
"""

import enum

from amaranth.hdl import Module, Mux, ResetInserter, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..bus.axi import Axi4Signature, AxiBurst, AxiLiteSignature, AxiResp
from ..errors import ErrorCode
from . import link
from .link import Opcode
from .uart import UartRx, UartTx, _check_counter_bits, _check_divisor

__all__ = ["HostBridge", "HOST_BRIDGE_FAULTS", "HOST_BRIDGE_STAT_NAMES", "host_bridge_stats_layout"]

#: Deliberate bugs for the mutation tests: ``full_strobes`` writes every byte lane of a memory
#: beat (a partial first or last word overwrites its neighbours); ``drop_last_byte`` leaves the
#: strobe of a MEM_WRITE's last byte clear (an off-by-one at the end of the range);
#: ``last_status_wins`` reports the response of the last beat instead of the first failed one.
HOST_BRIDGE_FAULTS = frozenset({"full_strobes", "drop_last_byte", "last_status_wins"})

#: ``stats`` counters: ``frames`` answered, ``errors`` (answers whose status is not OK),
#: ``dropped`` (bytes between frames that were not ``REQ_SYNC``), ``aborts`` (frames abandoned
#: on a break), ``busy`` (cycles inside a frame), ``stall_in`` (inside a frame, waiting for a
#: byte from the host), ``stall_out`` (a byte for the host not taken by the transmitter),
#: ``stall_axi`` (waiting for an AXI handshake or response); from the UARTs: ``rx_bytes``,
#: ``tx_bytes``, ``framing_errors`` (breaks included), ``overruns`` (bytes lost because the
#: receive FIFO was full).
HOST_BRIDGE_STAT_NAMES = ("frames", "errors", "dropped", "aborts", "busy", "stall_in",
                          "stall_out", "stall_axi", "rx_bytes", "tx_bytes", "framing_errors",
                          "overruns")


class _State(enum.IntEnum):
    IDLE = 0
    OPCODE = 1
    FIELDS = 2
    DISPATCH = 3
    REG_AR = 4
    REG_R = 5
    REG_AW_W = 6
    REG_B = 7
    MEM_COLLECT = 8
    MEM_AW_W = 9
    MEM_B = 10
    DISCARD = 11
    RSP_HEADER = 12
    RSP_WORD = 13
    MEM_AR = 14
    MEM_R = 15
    MEM_SEND = 16
    STATUS = 17


def host_bridge_stats_layout(counter_bits=32) -> data.StructLayout:
    return data.StructLayout({name: counter_bits for name in HOST_BRIDGE_STAT_NAMES})


def _byte_of(m, value, index, name):
    """Byte ``index`` of ``value`` as a named comb signal (a full case, no shifter)."""
    out = Signal(8, name=name)
    count = len(value) // 8
    with m.Switch(index):
        for k in range(count):
            with (m.Case(k) if k < count - 1 else m.Default()):
                m.d.comb += out.eq(value[8 * k:8 * k + 8])
    return out


def _check_int(name, value, low, high):
    if not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, not {value!r}")


class HostBridge(wiring.Component):
    """Serial pins ``rx`` / ``tx`` (8N1 at ``divisor`` cycles a bit) to an AXI4-Lite register
    manager ``m_axil`` and an AXI4 memory manager ``m_axi``.

    Parameters
    ----------
    divisor : int
        Clock cycles a UART bit (:func:`openmaia.fpga.uart.uart_divisor`).
    reg_addr_bits : int
        Address bits of ``m_axil`` (2..16; the tile's register port has 12).
    mem_addr_bits, mem_data_bits, mem_id_bits : int
        ``m_axi`` (the tile's ``host_axi``): address 12..64 bits, data 8..1024 bits.
    rx_fifo_depth : int
        Bytes the receive FIFO holds (4..4096): how many byte times an AXI access may take
        before a byte from the host is lost (counted in ``overruns``).
    counter_bits : int
        Width of each counter in ``stats``.
    faults : set of str
        Deliberate bugs (:data:`HOST_BRIDGE_FAULTS`), for mutation tests only.

    Members: ``rx`` (``In(1)``, idle high), ``tx`` (``Out(1)``, idle high),
    ``m_axil`` (``Out(AxiLiteSignature(addr_width=reg_addr_bits, data_width=32))``),
    ``m_axi`` (``Out(Axi4Signature(...))``), ``stats`` (``Out(host_bridge_stats_layout())``).

    Behaviour: one request at a time, as :mod:`openmaia.fpga.link` defines. Register requests
    are one AXI4-Lite read or write. Memory requests move one AXI4 beat a transaction (``AxLEN``
    0, full-width ``AxSIZE``, INCR, ID 0, the beat-aligned address, ``WSTRB`` set for the bytes
    of the request in that beat), so no burst crosses 4 KiB and the bridge never holds a W or R
    channel of a shared interconnect while it waits for the UART (a byte takes ``10 *
    divisor`` cycles, a beat a few). The write beat is issued when its last byte (or the
    request's last byte) arrives; a read beat is fetched when the previous one has been sent.
    A break (the receiver's framing error) abandons the current frame: an AXI transaction in
    flight finishes, the receive FIFO is emptied, a response stops after at most two more
    bytes (the one on the wire and the one already offered to the transmitter).
    """

    def __init__(self, *, divisor, reg_addr_bits=12, mem_addr_bits, mem_data_bits,
                 mem_id_bits=1, rx_fifo_depth=32, counter_bits=32, faults=frozenset()):
        _check_int("reg_addr_bits", reg_addr_bits, 2, 16)
        _check_int("mem_addr_bits", mem_addr_bits, 12, 64)
        _check_int("rx_fifo_depth", rx_fifo_depth, 4, 4096)
        _check_counter_bits(counter_bits)
        faults = frozenset(faults)
        if faults - HOST_BRIDGE_FAULTS:
            raise ValueError(f"unknown faults {sorted(faults - HOST_BRIDGE_FAULTS)}; known: "
                             f"{sorted(HOST_BRIDGE_FAULTS)}")
        _check_divisor(divisor)
        self.divisor = divisor
        self.reg_sig = AxiLiteSignature(addr_width=reg_addr_bits, data_width=32)
        self.mem_sig = Axi4Signature(addr_width=mem_addr_bits, data_width=mem_data_bits,
                                     id_width=mem_id_bits)
        self.rx_fifo_depth = rx_fifo_depth
        self.counter_bits = counter_bits
        self.faults = faults
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "m_axil": Out(self.reg_sig),
            "m_axi": Out(self.mem_sig),
            "stats": Out(host_bridge_stats_layout(counter_bits)),
        })

    @classmethod
    def from_config(cls, config, *, divisor, reg_addr_bits=12, **kwargs):
        """The bridge for a tile of ``config`` (its ``host_axi`` and ``s_axil`` ports)."""
        return cls(divisor=divisor, reg_addr_bits=reg_addr_bits,
                   mem_addr_bits=config.axi_addr_bits, mem_data_bits=config.axi_data_bits,
                   mem_id_bits=config.axi_id_bits, **kwargs)

    @property
    def ident(self) -> int:
        """The 4 payload bytes of a PING response, as a little-endian word."""
        return link.LINK_MAGIC | link.LINK_VERSION << 16 | self.mem_sig.data_bytes << 24

    def elaborate(self, platform):
        m = Module()
        D = self.mem_sig.data_bytes
        lane_bits = (D - 1).bit_length()
        aw = self.mem_sig.addr_width
        ra = self.reg_sig.addr_width
        faults = self.faults

        m.submodules.rx_uart = rx_uart = UartRx(divisor=self.divisor,
                                                counter_bits=self.counter_bits)
        m.submodules.tx_uart = tx_uart = UartTx(divisor=self.divisor,
                                                counter_bits=self.counter_bits)
        fifo = SyncFIFOBuffered(width=8, depth=self.rx_fifo_depth)
        m.submodules.rx_fifo = ResetInserter({"sync": rx_uart.framing_error})(fifo)
        m.d.comb += [rx_uart.rx.eq(self.rx), self.tx.eq(tx_uart.tx),
                     fifo.w_data.eq(rx_uart.o.payload), fifo.w_en.eq(rx_uart.o.valid),
                     rx_uart.o.ready.eq(fifo.w_rdy)]
        rx_byte, rx_valid, rx_take = fifo.r_data, fifo.r_rdy, fifo.r_en
        tx = tx_uart.i

        op = Signal(8)
        fields = Signal(8 * max(link.REQUEST_FIELD_BYTES.values()))
        nfields = Signal(range(len(fields) // 8 + 1))
        idx = Signal(range(len(fields) // 8 + 1))
        status = Signal(8)
        rsp_len = Signal(16)
        word = Signal(32)
        cur = Signal(aw)
        remaining = Signal(16)
        beat_addr = Signal(aw)
        wdata = Signal(8 * D)
        wstrb = Signal(D)
        rdata = Signal(8 * D)
        aw_pending = Signal()
        w_pending = Signal()
        abandon = Signal()
        S = _State
        state = Signal(S)

        def goto(target):
            m.d.sync += state.eq(target)

        # Named decodes of the fields (each used in several places).
        reg_addr = Signal(16)
        reg_ok = Signal()
        mem_addr = Signal(64)
        mem_len = Signal(16)
        mem_last = Signal(65)
        mem_ok = Signal()
        lane = Signal(range(D))
        lane_end = Signal()
        last_byte = Signal()
        aligned = Signal(aw)
        m.d.comb += [
            reg_addr.eq(fields[0:16]),
            reg_ok.eq((reg_addr[0:2] == 0) & ((reg_addr >> ra) == 0)),
            mem_addr.eq(fields[0:64]),
            mem_len.eq(fields[64:80]),
            mem_last.eq(mem_addr + mem_len - 1),
            mem_ok.eq((mem_len != 0) & ((mem_last >> aw) == 0)),
            lane.eq(cur[:lane_bits] if lane_bits else 0),
            lane_end.eq(lane == D - 1),
            last_byte.eq(remaining == 1),
            aligned.eq(cur >> lane_bits << lane_bits),
        ]

        def axi_status(resp):
            code = Mux(resp == AxiResp.SLVERR, ErrorCode.AXI_SLVERR,
                       Mux(resp == AxiResp.DECERR, ErrorCode.AXI_DECERR, ErrorCode.OK))
            if "last_status_wins" in faults:
                return status.eq(code)
            return status.eq(Mux(status == ErrorCode.OK, code, status))

        def reject(code):
            return [status.eq(code), rsp_len.eq(0)]

        ax = self.m_axi
        axl = self.m_axil
        m.d.comb += [ax.awlen.eq(0), ax.awsize.eq(self.mem_sig.size_code),
                     ax.awburst.eq(AxiBurst.INCR), ax.awaddr.eq(beat_addr),
                     ax.wdata.eq(wdata), ax.wlast.eq(1),
                     ax.wstrb.eq((1 << D) - 1 if "full_strobes" in faults else wstrb),
                     ax.arlen.eq(0), ax.arsize.eq(self.mem_sig.size_code),
                     ax.arburst.eq(AxiBurst.INCR), ax.araddr.eq(aligned),
                     axl.awaddr.eq(reg_addr), axl.araddr.eq(reg_addr),
                     axl.wdata.eq(word), axl.wstrb.eq(0xF)]

        inside = Signal()        # inside a frame
        want_in = Signal()       # a state that consumes bytes
        want_out = Signal()      # a state that offers a byte
        axi_wait = Signal()
        end_frame = Signal()
        aborted = Signal()
        dropped = Signal()

        got = Signal()           # a byte taken in an input state
        m.d.comb += got.eq(rx_valid & ~abandon)

        def input_state():
            m.d.comb += [want_in.eq(1), rx_take.eq(~abandon)]
            with m.If(abandon):
                m.d.comb += aborted.eq(1)
                goto(S.IDLE)

        def output_state(byte):
            m.d.comb += [want_out.eq(1), tx.valid.eq(1), tx.payload.eq(byte)]

        def after_output():
            with m.If(abandon & tx.ready):
                m.d.comb += aborted.eq(1)
                goto(S.IDLE)

        def issue_write_beat():
            m.d.sync += [beat_addr.eq(aligned), aw_pending.eq(1), w_pending.eq(1)]

        def send_handshakes(bus):
            m.d.comb += [bus.awvalid.eq(aw_pending), bus.wvalid.eq(w_pending),
                         axi_wait.eq(1)]
            aw_done = ~aw_pending | bus.awready
            w_done = ~w_pending | bus.wready
            with m.If(bus.awready):
                m.d.sync += aw_pending.eq(0)
            with m.If(bus.wready):
                m.d.sync += w_pending.eq(0)
            return aw_done & w_done

        with m.If(state == S.IDLE):
            m.d.comb += rx_take.eq(1)
            m.d.sync += [abandon.eq(0), wstrb.eq(0), idx.eq(0), status.eq(ErrorCode.OK)]
            with m.If(rx_valid):
                with m.If(rx_byte == link.REQ_SYNC):
                    goto(S.OPCODE)
                with m.Else():
                    m.d.comb += dropped.eq(1)
        with m.Elif(state == S.OPCODE):
            m.d.comb += inside.eq(1)
            with m.If(got):
                m.d.sync += op.eq(rx_byte)
                m.d.sync += reject(ErrorCode.ILLEGAL_OPCODE)
                goto(S.RSP_HEADER)
                for code in Opcode:
                    with m.If(rx_byte == code):
                        m.d.sync += [status.eq(ErrorCode.OK),
                                     nfields.eq(link.REQUEST_FIELD_BYTES[code])]
                        goto(S.FIELDS if link.REQUEST_FIELD_BYTES[code] else S.DISPATCH)
            input_state()
        with m.Elif(state == S.FIELDS):
            m.d.comb += inside.eq(1)
            with m.If(got):
                m.d.sync += idx.eq(idx + 1)
                for k in range(len(fields) // 8):
                    with m.If(idx == k):
                        m.d.sync += fields[8 * k:8 * k + 8].eq(rx_byte)
                with m.If(idx == nfields - 1):
                    goto(S.DISPATCH)
            input_state()
        with m.Elif(state == S.DISPATCH):
            m.d.comb += inside.eq(1)
            m.d.sync += [rsp_len.eq(0), idx.eq(0), cur.eq(mem_addr),
                         remaining.eq(mem_len), word.eq(fields[16:48])]
            with m.If(op == Opcode.PING):
                m.d.sync += [rsp_len.eq(4), word.eq(self.ident)]
                goto(S.RSP_HEADER)
            with m.Elif(op == Opcode.REG_READ):
                goto(S.REG_AR)
            with m.Elif(op == Opcode.REG_WRITE):
                m.d.sync += [aw_pending.eq(1), w_pending.eq(1)]
                goto(S.REG_AW_W)
            with m.Elif(op == Opcode.MEM_WRITE):
                goto(S.MEM_COLLECT)
                with m.If(~mem_ok):
                    m.d.sync += reject(ErrorCode.ILLEGAL_FIELD)
                    goto(S.DISCARD)
                    with m.If(mem_len == 0):
                        goto(S.RSP_HEADER)
            with m.Elif(op == Opcode.MEM_READ):
                m.d.sync += rsp_len.eq(mem_len)
                goto(S.RSP_HEADER)
                with m.If(~mem_ok):
                    m.d.sync += reject(ErrorCode.ILLEGAL_FIELD)
            with m.If(op.matches(Opcode.REG_READ, Opcode.REG_WRITE) & ~reg_ok):
                m.d.sync += [*reject(ErrorCode.ILLEGAL_FIELD), aw_pending.eq(0),
                             w_pending.eq(0)]
                goto(S.RSP_HEADER)
            with m.If(abandon):
                m.d.comb += aborted.eq(1)
                m.d.sync += [aw_pending.eq(0), w_pending.eq(0)]
                goto(S.IDLE)

        # -- registers ------------------------------------------------------------------
        with m.Elif(state == S.REG_AR):
            m.d.comb += [inside.eq(1), axl.arvalid.eq(1), axi_wait.eq(1)]
            with m.If(axl.arready):
                goto(S.REG_R)
        with m.Elif(state == S.REG_R):
            m.d.comb += [inside.eq(1), axl.rready.eq(1), axi_wait.eq(~axl.rvalid)]
            with m.If(axl.rvalid):
                m.d.sync += [word.eq(axl.rdata), axi_status(axl.rresp), rsp_len.eq(4)]
                goto(S.RSP_HEADER)
        with m.Elif(state == S.REG_AW_W):
            m.d.comb += inside.eq(1)
            with m.If(send_handshakes(axl)):
                goto(S.REG_B)
        with m.Elif(state == S.REG_B):
            m.d.comb += [inside.eq(1), axl.bready.eq(1), axi_wait.eq(~axl.bvalid)]
            with m.If(axl.bvalid):
                m.d.sync += axi_status(axl.bresp)
                goto(S.RSP_HEADER)

        # -- memory writes ---------------------------------------------------------------
        with m.Elif(state == S.MEM_COLLECT):
            m.d.comb += inside.eq(1)
            with m.If(got):
                m.d.sync += [wdata.word_select(lane, 8).eq(rx_byte),
                             cur.eq(cur + 1), remaining.eq(remaining - 1)]
                if "drop_last_byte" in faults:
                    m.d.sync += wstrb.bit_select(lane, 1).eq(~last_byte)
                else:
                    m.d.sync += wstrb.bit_select(lane, 1).eq(1)
                with m.If(lane_end | last_byte):
                    issue_write_beat()
                    goto(S.MEM_AW_W)
            input_state()
        with m.Elif(state == S.MEM_AW_W):
            m.d.comb += inside.eq(1)
            with m.If(send_handshakes(ax)):
                goto(S.MEM_B)
        with m.Elif(state == S.MEM_B):
            m.d.comb += [inside.eq(1), ax.bready.eq(1), axi_wait.eq(~ax.bvalid)]
            with m.If(ax.bvalid):
                m.d.sync += [axi_status(ax.bresp), wstrb.eq(0)]
                goto(S.MEM_COLLECT)
                with m.If(remaining == 0):
                    goto(S.RSP_HEADER)
        with m.Elif(state == S.DISCARD):
            m.d.comb += inside.eq(1)
            with m.If(got):
                m.d.sync += remaining.eq(remaining - 1)
                with m.If(last_byte):
                    goto(S.RSP_HEADER)
            input_state()

        # -- responses and memory reads ----------------------------------------------------
        with m.Elif(state == S.RSP_HEADER):
            m.d.comb += inside.eq(1)
            header = Signal(8)
            with m.Switch(idx[:2]):
                with m.Case(0):
                    m.d.comb += header.eq(link.RSP_SYNC)
                with m.Case(1):
                    m.d.comb += header.eq(op)
                with m.Case(2):
                    m.d.comb += header.eq(rsp_len[0:8])
                with m.Case(3):
                    m.d.comb += header.eq(rsp_len[8:16])
            output_state(header)
            with m.If(tx.ready):
                m.d.sync += idx.eq(idx + 1)
                with m.If(idx == link.RSP_HEADER_BYTES - 1):
                    m.d.sync += idx.eq(0)
                    with m.If(rsp_len == 0):
                        goto(S.STATUS)
                    with m.Elif(op == Opcode.MEM_READ):
                        goto(S.MEM_AR)
                    with m.Else():
                        goto(S.RSP_WORD)
            after_output()
        with m.Elif(state == S.RSP_WORD):
            m.d.comb += inside.eq(1)
            output_state(_byte_of(m, word, idx[:2], "word_byte"))
            with m.If(tx.ready):
                m.d.sync += idx.eq(idx + 1)
                with m.If(idx == link.REG_VALUE_BYTES - 1):
                    goto(S.STATUS)
            after_output()
        with m.Elif(state == S.MEM_AR):
            m.d.comb += [inside.eq(1), ax.arvalid.eq(1), axi_wait.eq(1)]
            with m.If(ax.arready):
                goto(S.MEM_R)
        with m.Elif(state == S.MEM_R):
            m.d.comb += [inside.eq(1), ax.rready.eq(1), axi_wait.eq(~ax.rvalid)]
            with m.If(ax.rvalid):
                m.d.sync += [rdata.eq(ax.rdata), axi_status(ax.rresp)]
                goto(S.MEM_SEND)
        with m.Elif(state == S.MEM_SEND):
            m.d.comb += inside.eq(1)
            output_state(_byte_of(m, rdata, lane, "read_byte"))
            with m.If(tx.ready):
                m.d.sync += [cur.eq(cur + 1), remaining.eq(remaining - 1)]
                with m.If(last_byte):
                    goto(S.STATUS)
                with m.Elif(lane_end):
                    goto(S.MEM_AR)
            after_output()
        with m.Else():                                  # STATUS
            m.d.comb += inside.eq(1)
            output_state(status)
            with m.If(tx.ready):
                m.d.comb += end_frame.eq(1)
                goto(S.IDLE)
            after_output()

        with m.If(rx_uart.framing_error & inside):
            m.d.sync += abandon.eq(1)

        rx_stats = rx_uart.stats
        m.d.comb += [self.stats.rx_bytes.eq(rx_stats.bytes),
                     self.stats.framing_errors.eq(rx_stats.framing_errors),
                     self.stats.overruns.eq(rx_stats.overruns),
                     self.stats.tx_bytes.eq(tx_uart.stats.bytes)]
        events = {
            "frames": end_frame, "errors": end_frame & (status != ErrorCode.OK),
            "dropped": dropped, "aborts": aborted, "busy": inside,
            "stall_in": want_in & ~rx_valid, "stall_out": want_out & ~tx.ready,
            "stall_axi": axi_wait,
        }
        for name, event in events.items():
            counter = getattr(self.stats, name)
            m.d.sync += counter.eq(counter + event)
        return m
