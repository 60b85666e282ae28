"""The Tile SRAM (TSRAM): multi-banked, multi-ported, SECDED-protected word memory.

:class:`TileSram` holds ``banks`` x ``depth`` bank words of ``bank_bytes`` bytes on
``amaranth.lib.memory``. Global bank-word address ``G`` lives in bank ``G % banks``, row
``G // banks`` (low-order interleaving). The contract (ports, latency, conflicts, ECC, errors,
counters, costs) is docs/tsram.md; in short:

* Ports are named in ``ports``; each has a width ``w`` in bank words (a power of two <= banks)
  and is an ``In(MemoryPortSignature(addr_width=, data_width=w * bank_bytes * 8))`` member:
  address ``a`` (in the port's own ``w``-word units) moves bank words ``a*w .. a*w + w - 1``,
  which sit in ``w`` distinct banks of one row.
* Each port takes at most one request a cycle. A bank serves one access a cycle; a request is
  granted only with all its banks. Priority order: the head, then the requests that cannot be
  deferred (reads, read-modify-writes; wider ports first), then the full writes, in circular
  port order from the head (computed by :class:`~.tsram_arbiter.TsramArbiter`). A full write
  whose banks are taken by reads (or still busy from the previous cycle) is *deferred*: accepted
  now, written the next cycle, when its banks are held for it; so narrow write streams pass
  wide read streams without losing a cycle. After a cycle with a loser, the first loser from
  the head (circularly) becomes the head; a waiting head reserves its banks against next-cycle
  claims. A request waits at most ``2 * len(ports) - 1``
  conflict cycles.
* A read's response comes out of ``rsp`` two cycles after the request is accepted (latency 2)
  at the earliest, in order per port; a port holds at most ``rsp_depth`` reads between
  acceptance and response, and stops accepting reads (``req.ready`` low) beyond that.
* With ``ecc``, every bank word carries SECDED check bits (:mod:`.secded`). A write with a
  partial strobe becomes a read-modify-write that holds its banks for two cycles.
* Errors (out-of-range address, uncorrectable word) give a defined answer and an ``err`` event.
* ``inject`` XORs a mask into a stored codeword (fault-injection hook for tests).
* Each bank does at most one access a cycle (a read, a write, or the read or the write half of
  a read-modify-write / injection). With ``single_port`` every bank memory is used through one
  shared address (a read port enabled only for reads, a write port), so Yosys maps it onto a
  single-ported RAM (the iCE40 UP5K's ``SB_SPRAM256KA`` with ``synth_ice40 -spram``); the
  behaviour at the ports is the same as without.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..bus.memory_port import EccStatus, MemoryPortSignature
from ..errors import ERROR_CODE_BITS, ErrorCode
from .secded import DECODER_FAULTS, SecdedCode, SecdedDecoder, SecdedEncoder
from .tsram_arbiter import TsramArbiter

__all__ = ["TileSram", "PortSpec", "FAULTS", "LATENCY", "RESERVED_NAMES", "TILE_PORT_NAMES",
           "tile_ports"]

#: Deliberate bugs :class:`TileSram` can build in (mutation-testing hooks).
FAULTS = {
    "fixed_priority": "the arbiter never rotates: the first-listed port always wins a conflict",
    "rmw_no_merge": "a partial write with ECC clears the bytes it does not write",
    "no_credit": "a port accepts reads with no room left for their responses",
    "shared_addr_s0": "single_port: the shared bank address is always the new request's row "
                      "(a write landing a cycle late goes to the wrong row)",
    **DECODER_FAULTS,
}

#: Cycles from a read's acceptance to its response being offered at the earliest.
LATENCY = 2

#: Member names a port cannot take.
RESERVED_NAMES = frozenset({"inject", "err", "err_sticky", "err_clear", "counters",
                            "counters_clear"})


#: Every port a tile's SRAM can have, in port order (a tile without the vector unit leaves out
#: the last two; the others keep their index).
TILE_PORT_NAMES = ("dma", "ttu_a", "ttu_b", "ttu_c", "tvp_rd", "tvp_wr")


def tile_ports(config) -> dict:
    """The ports of a tile's SRAM (name -> width in words), in port order: the DMA, the TTU's
    two operand fetchers (``ttu_port_words``) and its result writer (``ttu_result_words``), the
    TVP's read and write ports (``tvp_port_words``; none when ``config.vector_unit`` is
    False)."""
    ports = {"dma": 1, "ttu_a": config.ttu_port_words, "ttu_b": config.ttu_port_words,
             "ttu_c": config.ttu_result_words}
    if config.vector_unit:
        ports.update(tvp_rd=config.tvp_port_words, tvp_wr=config.tvp_port_words)
    return ports


@dataclass(frozen=True)
class PortSpec:
    """One port: ``width`` bank words a request; ``addr_width`` (default: exactly the SRAM)."""
    width: int = 1
    addr_width: int | None = None


class _Op(enum.Enum, shape=3):
    NONE = 0
    READ = 1
    WRITE = 2
    RMW = 3
    INJECT = 4


def _log2(n: int) -> int:
    return n.bit_length() - 1


def _is_pow2(n) -> bool:
    return isinstance(n, int) and n > 0 and n & (n - 1) == 0


def _popcount(bits: list):
    total = Const(0, 1)
    for bit in bits:
        total = total + bit
    return total


def _select(values: list, index):
    return values[0] if len(values) == 1 else Array(values)[index]


class TileSram(wiring.Component):
    """The Tile SRAM (contract: docs/tsram.md).

    Parameters
    ----------
    banks : int
        Banks, a power of two.
    bank_bytes : int
        Bytes a bank word, a power of two >= 4 (the ECC granule).
    depth : int
        Words a bank, a power of two >= 2.
    ports : mapping of str to int or :class:`PortSpec`
        Port name (a Verilog identifier, not in :data:`RESERVED_NAMES`) to its width in bank words
        or its :class:`PortSpec`. Order sets the port index (in ``err.port`` and ``counters``).
    ecc : bool
        SECDED per bank word.
    single_port : bool
        One address per bank memory for its read and its write (module docstring).
    rsp_depth : int
        Read responses a port can hold (>= 1; 3 or more for one read a cycle per port).
    counter_width : int
        Bits of every counter (they wrap).
    faults : collection of str
        Deliberate bugs from :data:`FAULTS`; empty for the real design.

    Members
    -------
    <port name> : ``In(MemoryPortSignature(...))``, one per port.
    inject : ``In(stream.Signature({"addr", "mask"}))``
        ``addr``: global bank-word address; ``mask``: bits XORed into that stored codeword
        (``code_width`` bits). Takes the bank ahead of every port for two cycles; ``ready`` is low
        while the bank finishes a read-modify-write or an earlier injection.
    err : ``Out({"valid", "code", "port", "addr", "lane"})``
        One cycle per error event, one cycle after it is found: ``code`` (:class:`ErrorCode`),
        ``port`` index, ``addr`` (the request's address in the port's units), ``lane`` (the bank
        word within the request). Several in one cycle: the first ECC one by port index wins; all
        are counted.
    err_sticky : ``Out(1)``
        Set by any error event, cleared by ``err_clear`` (In(1)).
    counters : ``Out(...)``, zeroed by ``counters_clear`` (In(1))
        Per port (arrays by port index): ``accepted`` requests, ``conflict`` cycles (valid,
        eligible, but a bank was taken), ``rsp_stall`` cycles (a read waiting for response room),
        ``deferred`` writes (accepted while a bank was taken, written the next cycle);
        totals: ``rmw`` read-modify-writes, ``corrected`` and ``uncorrectable`` bank words read
        (reads and read-modify-writes), ``out_of_range`` requests, ``bank_cycles`` (bank-cycles
        in use), ``busy`` (cycles with any bank in use), ``cycles``.
    """

    def __init__(self, *, banks, bank_bytes, depth, ports, ecc=True, single_port=False,
                 rsp_depth=4, counter_width=32, faults=frozenset()):
        if not _is_pow2(banks):
            raise ValueError(f"banks must be a power of two, not {banks!r}")
        if not _is_pow2(bank_bytes) or bank_bytes < 4:
            raise ValueError(f"bank_bytes must be a power of two >= 4, not {bank_bytes!r}")
        if not _is_pow2(depth) or depth < 2:
            raise ValueError(f"depth must be a power of two >= 2, not {depth!r}")
        if not isinstance(ecc, bool):
            raise TypeError(f"ecc must be a bool, not {ecc!r}")
        if not isinstance(single_port, bool):
            raise TypeError(f"single_port must be a bool, not {single_port!r}")
        if not isinstance(rsp_depth, int) or rsp_depth < 1:
            raise ValueError(f"rsp_depth must be a positive integer, not {rsp_depth!r}")
        if not isinstance(counter_width, int) or not 1 <= counter_width <= 64:
            raise ValueError(f"counter_width must be an integer in 1..64, not {counter_width!r}")
        if isinstance(faults, str) or not isinstance(faults, Iterable):
            raise TypeError(f"faults must be a collection of fault names, not {faults!r}")
        faults = frozenset(faults)
        for fault in sorted(faults, key=str):
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
        self.banks, self.bank_bytes, self.depth, self.ecc = banks, bank_bytes, depth, ecc
        self.single_port = single_port
        self.rsp_depth, self.counter_width, self.faults = rsp_depth, counter_width, faults
        self.bank_bits = 8 * bank_bytes
        self.code_width = SecdedCode(self.bank_bits).code_width if ecc else self.bank_bits
        self.words = banks * depth
        self.ports = self._check_ports(ports)

        nports = len(self.ports)
        cw = counter_width
        self.err_layout = data.StructLayout({
            "valid": 1, "code": ERROR_CODE_BITS, "port": max(1, (nports - 1).bit_length()),
            "addr": max(spec.addr_width for spec in self.ports.values()),
            "lane": max(1, _log2(max(spec.width for spec in self.ports.values())))})
        self.counters_layout = data.StructLayout({
            "accepted": data.ArrayLayout(cw, nports), "conflict": data.ArrayLayout(cw, nports),
            "rsp_stall": data.ArrayLayout(cw, nports), "deferred": data.ArrayLayout(cw, nports),
            "rmw": cw, "corrected": cw,
            "uncorrectable": cw, "out_of_range": cw, "bank_cycles": cw, "busy": cw,
            "cycles": cw})
        self.inject_layout = data.StructLayout({"addr": _log2(self.words),
                                                "mask": self.code_width})
        members = {name: In(self.port_signature(name)) for name in self.ports}
        members.update({
            "inject": In(stream.Signature(self.inject_layout)),
            "err": Out(self.err_layout), "err_sticky": Out(1), "err_clear": In(1),
            "counters": Out(self.counters_layout), "counters_clear": In(1)})
        super().__init__(members)

    def _check_ports(self, ports) -> dict:
        if not isinstance(ports, Mapping) or not ports:
            raise TypeError(f"ports must be a non-empty mapping of name to width or PortSpec, "
                            f"not {ports!r}")
        checked = {}
        for name, spec in ports.items():
            if not isinstance(name, str) or not name.isidentifier() or name in RESERVED_NAMES:
                raise ValueError(f"port name {name!r} must be an identifier not in "
                                 f"{sorted(RESERVED_NAMES)}")
            if isinstance(spec, int):
                spec = PortSpec(width=spec)
            if not isinstance(spec, PortSpec):
                raise TypeError(f"port {name!r}: expected a width or a PortSpec, not {spec!r}")
            if not _is_pow2(spec.width) or spec.width > self.banks:
                raise ValueError(f"port {name!r}: width must be a power of two <= banks "
                                 f"({self.banks}), not {spec.width!r}")
            exact = max(1, _log2(self.words // spec.width))
            addr_width = exact if spec.addr_width is None else spec.addr_width
            if not isinstance(addr_width, int) or addr_width < exact:
                raise ValueError(f"port {name!r}: addr_width must be an integer >= {exact} "
                                 f"(the SRAM's {self.words // spec.width} port words), "
                                 f"not {spec.addr_width!r}")
            checked[name] = PortSpec(width=spec.width, addr_width=addr_width)
        return checked

    @classmethod
    def from_config(cls, config, *, ports, **kwargs) -> "TileSram":
        """The TSRAM of a :class:`~openmaia.config.Config` (``tsram_*`` fields)."""
        return cls(banks=config.tsram_banks, bank_bytes=config.tsram_bank_bytes,
                   depth=config.tsram_bank_depth, ecc=config.tsram_ecc,
                   single_port=config.tsram_single_port,
                   rsp_depth=config.tsram_rsp_depth, ports=ports, **kwargs)

    def port_signature(self, name) -> MemoryPortSignature:
        """The requester-side signature of port ``name``."""
        spec = self.ports[name]
        return MemoryPortSignature(addr_width=spec.addr_width,
                                   data_width=spec.width * self.bank_bits)

    @property
    def latency(self) -> int:
        return LATENCY

    @property
    def bytes_per_cycle(self) -> int:
        """Peak bandwidth: every bank moves one word a cycle."""
        return self.banks * self.bank_bytes

    def elaborate(self, platform):
        m = Module()
        banks, depth, bits, ecc = self.banks, self.depth, self.bank_bits, self.ecc
        nbytes = self.bank_bytes
        bank_bits_sel, row_bits = _log2(banks), _log2(depth)
        names = list(self.ports)
        nports = len(names)
        faults = self.faults
        dec_faults = faults & DECODER_FAULTS.keys()
        code_all_ones = (1 << (1 if ecc else nbytes)) - 1

        rd, wr = [], []
        for b in range(banks):
            mem = Memory(shape=self.code_width, depth=depth, init=[])
            m.submodules[f"bank{b}"] = mem
            rd.append(mem.read_port())
            wr.append(mem.write_port(granularity=None if ecc else 8))

        # --- S0: requests, bank masks, eligibility --------------------------------------------
        ports = [getattr(self, name) for name in names]
        widths = [self.ports[name].width for name in names]
        pending = [Signal(range(self.rsp_depth + 1), name=f"{n}_pending") for n in names]
        group, row, oor, mask, rmw, elig, is_read, dfrable = [], [], [], [], [], [], [], []
        for p, (name, port) in enumerate(zip(names, ports)):
            w, spec = widths[p], self.ports[name]
            req = port.req.payload
            grp_bits, exact = _log2(banks // w), _log2(self.words // w)
            g = Signal(max(1, grp_bits), name=f"{name}_group")
            r = Signal(row_bits, name=f"{name}_row")
            o = Signal(name=f"{name}_oor")
            k = Signal(banks, name=f"{name}_banks")
            x = Signal(name=f"{name}_rmw")
            e = Signal(name=f"{name}_eligible")
            rd_req = Signal(name=f"{name}_read")
            d = Signal(name=f"{name}_deferrable")
            if grp_bits:
                m.d.comb += g.eq(req.addr[:grp_bits])
            m.d.comb += [r.eq(req.addr[grp_bits:grp_bits + row_bits]),
                         rd_req.eq(~req.write)]
            if spec.addr_width > exact:
                m.d.comb += o.eq(req.addr[exact:].any())
            for b in range(banks):
                m.d.comb += k[b].eq(g == b // w)
            if ecc:
                partial = []
                for lane in range(w):
                    s = req.strb[lane * nbytes:(lane + 1) * nbytes]
                    partial.append(s.any() & ~s.all())
                m.d.comb += x.eq(req.write & Cat(*partial).any())
            credit = Const(1) if "no_credit" in faults else pending[p] < self.rsp_depth
            m.d.comb += [e.eq(port.req.valid & (req.write | credit)),
                         d.eq(req.write & ~x & ~o)]
            group.append(g); row.append(r); oor.append(o); mask.append(k); rmw.append(x)
            elig.append(e); is_read.append(rd_req); dfrable.append(d)

        s1_op = [Signal(_Op, name=f"bank{b}_s1_op") for b in range(banks)]
        s1_row = [Signal(row_bits, name=f"bank{b}_s1_row") for b in range(banks)]
        s1_dfr = Signal(banks)     # a deferred write lands in the bank this cycle
        busy_s1 = Signal(banks)
        for b in range(banks):
            m.d.comb += busy_s1[b].eq((s1_op[b] == _Op.RMW) | (s1_op[b] == _Op.INJECT)
                                      | s1_dfr[b])

        inj = self.inject
        inj_bank = inj.payload.addr[:bank_bits_sel]
        inj_row = inj.payload.addr[bank_bits_sel:]
        inj_fire = Signal()
        inj_sel = Signal(banks)
        inj_mask = Signal(banks)
        for b in range(banks):
            m.d.comb += inj_sel[b].eq(inj_bank == b)
        m.d.comb += [inj.ready.eq(~(busy_s1 & inj_sel).any()),
                     inj_fire.eq(inj.valid & inj.ready),
                     inj_mask.eq(Mux(inj_fire, inj_sel, 0))]
        pretaken = Signal(banks)
        m.d.comb += pretaken.eq(busy_s1 | inj_mask)

        # --- Arbitration (docs/tsram.md, "Timing, conflicts, fairness") -----------------------
        m.submodules.arbiter = arb = TsramArbiter(widths=widths, banks=banks)
        ptr = Signal(range(max(2, nports)))
        m.d.comb += [arb.eligible.eq(Cat(*elig)), arb.out_of_range.eq(Cat(*oor)),
                     arb.rmw.eq(Cat(*rmw)), arb.deferrable.eq(Cat(*dfrable)),
                     arb.read.eq(Cat(*is_read)), arb.pretaken.eq(pretaken),
                     arb.claimed.eq(inj_mask), arb.head.eq(ptr)]
        for p in range(nports):
            m.d.comb += arb.banks[p].eq(mask[p])
        grant, lose, defer = arb.grant, arb.lose, arb.defer
        if "fixed_priority" in faults:
            m.d.comb += ptr.eq(0)  # the head never moves (ptr is then a constant)
        elif nports > 1:
            # the head moves to the first loser in circular order from the head
            with m.Switch(ptr):
                for head in range(nports):
                    with (m.Case(head) if head < nports - 1 else m.Default()):
                        for step in reversed(range(nports)):
                            p = (head + step) % nports
                            with m.If(lose[p]):
                                m.d.sync += ptr.eq(p)

        accept = Signal(nports)
        accept_read = Signal(nports)
        for p, port in enumerate(ports):
            m.d.comb += [port.req.ready.eq(grant[p]), accept[p].eq(port.req.valid & grant[p]),
                         accept_read[p].eq(accept[p] & is_read[p])]
        now = Signal(nports)       # accepted and using its banks in this cycle
        m.d.comb += now.eq(accept & ~defer)

        # --- S0 per bank: who uses it -----------------------------------------------------------
        s0_op = [Signal(_Op, name=f"bank{b}_s0_op") for b in range(banks)]
        s0_row = [Signal(row_bits, name=f"bank{b}_s0_row") for b in range(banks)]
        s0_wdata = [Signal(bits, name=f"bank{b}_s0_wdata") for b in range(banks)]
        s0_wstrb = [Signal(nbytes, name=f"bank{b}_s0_wstrb") for b in range(banks)]
        for b in range(banks):
            with m.If(inj_mask[b]):
                m.d.comb += [s0_op[b].eq(_Op.INJECT), s0_row[b].eq(inj_row)]
            for p, port in enumerate(ports):
                lane = b % widths[p]
                req = port.req.payload
                with m.Elif(now[p] & ~oor[p] & mask[p][b]):
                    m.d.comb += [
                        s0_row[b].eq(row[p]),
                        s0_wdata[b].eq(req.data[lane * bits:(lane + 1) * bits]),
                        s0_wstrb[b].eq(req.strb[lane * nbytes:(lane + 1) * nbytes]),
                        s0_op[b].eq(Mux(req.write, Mux(rmw[p], _Op.RMW, _Op.WRITE), _Op.READ))]
            if not self.single_port:
                m.d.comb += rd[b].addr.eq(s0_row[b])
                m.d.comb += rd[b].en.eq(s0_op[b] != _Op.NONE)

        # --- Deferred writes: accepted now, written next cycle (the bank is then pretaken) ------
        dfr_in = Signal(banks)
        dfr_row = [Signal(row_bits, name=f"bank{b}_dfr_row") for b in range(banks)]
        dfr_wdata = [Signal(bits, name=f"bank{b}_dfr_wdata") for b in range(banks)]
        dfr_wstrb = [Signal(nbytes, name=f"bank{b}_dfr_wstrb") for b in range(banks)]
        for b in range(banks):
            for p, port in enumerate(ports):
                lane = b % widths[p]
                req = port.req.payload
                with (m.If if p == 0 else m.Elif)(defer[p] & mask[p][b]):
                    m.d.comb += [
                        dfr_in[b].eq(1), dfr_row[b].eq(row[p]),
                        dfr_wdata[b].eq(req.data[lane * bits:(lane + 1) * bits]),
                        dfr_wstrb[b].eq(req.strb[lane * nbytes:(lane + 1) * nbytes])]

        # --- S1 per bank: read data, decode, read-modify-write / injection write-back ----------
        s1_wdata = [Signal(bits, name=f"bank{b}_s1_wdata") for b in range(banks)]
        s1_wstrb = [Signal(nbytes, name=f"bank{b}_s1_wstrb") for b in range(banks)]
        inj_s1_mask = Signal(self.code_width)
        with m.If(inj_fire):
            m.d.sync += inj_s1_mask.eq(inj.payload.mask)
        bank_data, bank_status = [], []
        corrected, uncorrectable = Signal(banks), Signal(banks)
        for b in range(banks):
            m.d.sync += [s1_op[b].eq(Mux(s0_op[b] == _Op.WRITE, _Op.NONE, s0_op[b])),
                         s1_dfr[b].eq(dfr_in[b]),
                         s1_row[b].eq(Mux(dfr_in[b], dfr_row[b], s0_row[b])),
                         s1_wdata[b].eq(Mux(dfr_in[b], dfr_wdata[b], s0_wdata[b])),
                         s1_wstrb[b].eq(Mux(dfr_in[b], dfr_wstrb[b], s0_wstrb[b]))]
            if ecc:
                dec = SecdedDecoder(data_width=bits, faults=dec_faults)
                m.submodules[f"bank{b}_decoder"] = dec
                m.d.comb += dec.code.eq(rd[b].data)
                bdata, bstatus = dec.data, dec.status
            else:
                bdata, bstatus = rd[b].data, Const(EccStatus.OK, 2)
            bank_data.append(bdata)
            bank_status.append(bstatus)
            reading = (s1_op[b] == _Op.READ) | (s1_op[b] == _Op.RMW)
            m.d.comb += [corrected[b].eq(reading & (bstatus == EccStatus.CORRECTED)),
                         uncorrectable[b].eq(reading & (bstatus == EccStatus.UNCORRECTABLE))]

            if ecc:
                merged = Signal(bits, name=f"bank{b}_merged")
                for i in range(nbytes):
                    old = 0 if "rmw_no_merge" in faults else bdata[8 * i:8 * i + 8]
                    m.d.comb += merged[8 * i:8 * i + 8].eq(
                        Mux(s1_wstrb[b][i], s1_wdata[b][8 * i:8 * i + 8], old))
                enc = SecdedEncoder(data_width=bits)
                m.submodules[f"bank{b}_encoder"] = enc
                m.d.comb += enc.data.eq(Mux(s1_op[b] == _Op.RMW, merged,
                                            Mux(s1_dfr[b], s1_wdata[b], s0_wdata[b])))
                s0_code, s0_en = enc.code, s0_wstrb[b].all()
                dfr_code, dfr_en = enc.code, s1_wstrb[b].all()
            else:
                s0_code, s0_en = s0_wdata[b], s0_wstrb[b]
                dfr_code, dfr_en = s1_wdata[b], s1_wstrb[b]
            if self.single_port:
                # One access a bank a cycle (the arbiter never grants a bank whose write lands
                # late, busy_s1), so one address serves the read and the write.
                addr = Signal(row_bits, name=f"bank{b}_addr")
                late = Const(0) if "shared_addr_s0" in faults else busy_s1[b]
                m.d.comb += [addr.eq(Mux(late, s1_row[b], s0_row[b])),
                             rd[b].addr.eq(addr), wr[b].addr.eq(addr),
                             rd[b].en.eq((s0_op[b] == _Op.READ) | (s0_op[b] == _Op.RMW)
                                         | (s0_op[b] == _Op.INJECT))]
            wr_addr = [] if self.single_port else [wr[b].addr.eq(s1_row[b])]
            with m.If(s1_op[b] == _Op.RMW):
                m.d.comb += [*wr_addr, wr[b].data.eq(s0_code),
                             wr[b].en.eq(Mux(uncorrectable[b], 0, code_all_ones))]
            with m.Elif(s1_op[b] == _Op.INJECT):
                m.d.comb += [*wr_addr, wr[b].data.eq(rd[b].data ^ inj_s1_mask),
                             wr[b].en.eq(code_all_ones)]
            with m.Elif(s1_dfr[b]):
                m.d.comb += [*wr_addr, wr[b].data.eq(dfr_code), wr[b].en.eq(dfr_en)]
            with m.Elif(s0_op[b] == _Op.WRITE):
                m.d.comb += [*([] if self.single_port else [wr[b].addr.eq(s0_row[b])]),
                             wr[b].data.eq(s0_code), wr[b].en.eq(s0_en)]

        # --- S1 per port: responses, error events ----------------------------------------------
        events = []  # (condition, code, port, addr, lane) in priority order
        oor_events = []
        for p, (name, port) in enumerate(zip(names, ports)):
            w, spec = widths[p], self.ports[name]
            s1_read = Signal(name=f"{name}_s1_read")
            s1_rmw = Signal(name=f"{name}_s1_rmw")
            s1_oor = Signal(name=f"{name}_s1_oor")
            s1_group = Signal(len(group[p]), name=f"{name}_s1_group")
            s1_addr = Signal(spec.addr_width, name=f"{name}_s1_addr")
            m.d.sync += [s1_read.eq(accept_read[p]), s1_rmw.eq(accept[p] & rmw[p] & ~oor[p]),
                         s1_oor.eq(accept[p] & oor[p]), s1_group.eq(group[p]),
                         s1_addr.eq(port.req.payload.addr)]
            lane_data, lane_corr, lane_unc = [], [], []
            for lane in range(w):
                choices = range(lane, banks, w)
                lane_data.append(_select([bank_data[b] for b in choices], s1_group))
                lane_corr.append(_select([corrected[b] for b in choices], s1_group))
                lane_unc.append(_select([uncorrectable[b] for b in choices], s1_group))
            unc = Signal(w, name=f"{name}_s1_unc")
            corr = Signal(w, name=f"{name}_s1_corr")
            m.d.comb += [unc.eq(Cat(*lane_unc)), corr.eq(Cat(*lane_corr))]
            status = Signal(2, name=f"{name}_s1_status")
            with m.If(s1_oor | unc.any()):
                m.d.comb += status.eq(EccStatus.UNCORRECTABLE)
            with m.Elif(corr.any()):
                m.d.comb += status.eq(EccStatus.CORRECTED)
            with m.Else():
                m.d.comb += status.eq(EccStatus.OK)

            fifo = SyncFIFO(width=w * bits + 2, depth=self.rsp_depth)
            m.submodules[f"{name}_rsp_fifo"] = fifo
            m.d.comb += [fifo.w_data.eq(Cat(Mux(s1_oor, 0, Cat(*lane_data)), status)),
                         fifo.w_en.eq(s1_read),
                         port.rsp.valid.eq(fifo.r_rdy),
                         port.rsp.payload.data.eq(fifo.r_data[:w * bits]),
                         port.rsp.payload.status.eq(fifo.r_data[w * bits:]),
                         fifo.r_en.eq(port.rsp.ready)]
            popped = port.rsp.valid & port.rsp.ready
            m.d.sync += pending[p].eq(pending[p] + accept_read[p] - popped)

            first_lane = Signal(range(max(2, w)), name=f"{name}_s1_bad_lane")
            for lane in reversed(range(w)):
                with m.If(unc[lane]):
                    m.d.comb += first_lane.eq(lane)
            events.append(((s1_read | s1_rmw) & ~s1_oor & unc.any(),
                           ErrorCode.ECC_UNCORRECTABLE, p, s1_addr, first_lane))
            oor_events.append((accept[p] & oor[p], ErrorCode.TSRAM_OUT_OF_RANGE, p,
                               port.req.payload.addr, 0))
        events += oor_events

        err = self.err
        m.d.sync += err.valid.eq(0)
        for cond, code, p, addr, lane in reversed(events):
            with m.If(cond):
                m.d.sync += [err.valid.eq(1), err.code.eq(code), err.port.eq(p),
                             err.addr.eq(addr), err.lane.eq(lane)]
        any_event = Signal()
        m.d.comb += any_event.eq(Cat(*(cond for cond, *_ in events)).any())
        with m.If(any_event):
            m.d.sync += self.err_sticky.eq(1)
        with m.Elif(self.err_clear):
            m.d.sync += self.err_sticky.eq(0)

        # --- Counters ---------------------------------------------------------------------------
        cnt = self.counters
        in_use = Signal(banks)
        for b in range(banks):
            m.d.comb += in_use[b].eq((s0_op[b] != _Op.NONE) | busy_s1[b])
        for p, port in enumerate(ports):
            m.d.sync += [
                cnt.accepted[p].eq(cnt.accepted[p] + accept[p]),
                cnt.conflict[p].eq(cnt.conflict[p] + lose[p]),
                cnt.deferred[p].eq(cnt.deferred[p] + defer[p]),
                cnt.rsp_stall[p].eq(cnt.rsp_stall[p] + (port.req.valid & ~port.req.payload.write
                                                        & (pending[p] >= self.rsp_depth)))]
        oor_accepts = [accept[p] & oor[p] for p in range(nports)]
        rmw_accepts = [accept[p] & rmw[p] & ~oor[p] for p in range(nports)]
        m.d.sync += [
            cnt.rmw.eq(cnt.rmw + _popcount(rmw_accepts)),
            cnt.corrected.eq(cnt.corrected + _popcount(list(corrected))),
            cnt.uncorrectable.eq(cnt.uncorrectable + _popcount(list(uncorrectable))),
            cnt.out_of_range.eq(cnt.out_of_range + _popcount(oor_accepts)),
            cnt.bank_cycles.eq(cnt.bank_cycles + _popcount(list(in_use))),
            cnt.busy.eq(cnt.busy + in_use.any()),
            cnt.cycles.eq(cnt.cycles + 1)]
        with m.If(self.counters_clear):
            m.d.sync += self.counters.eq(0)
        return m
