"""Stream handshake proofs on every block with ``lib.stream`` interfaces (issue 8).

The checker is generic (:mod:`openmaia.harness.formal_streams`): :class:`StreamRules` walks a
block's signature (sub-signatures such as ``MemoryPortSignature``'s ``req`` / ``rsp`` and arrays
of streams included), makes every ``In`` port a free input, ASSUMES Amaranth's stream rules of
every producer feeding the block (``valid`` held until ``ready``, ``payload`` stable meanwhile)
and ASSERTS them of every stream the block produces; reset is held low. :class:`Conserve` adds an
ins-minus-outs counter between two streams of a block that passes transfers one for one.
:class:`ValidReadyMiter` is the two-copy miter: inputs equal except the ``ready`` of the output
under test; the ``valid`` of every output stream must agree (so no output's ``valid`` depends
combinationally on that ``ready``). Its ``state_equal="assume"`` form assumes the copies'
registers equal in every cycle and checks every state in one step (the k-induction at k = 1
covers every reachable state); ``"assert"`` is the true miter (registers asserted equal while the
readies were), inductive on blocks without wide datapaths.

Tables and runner are those of verif/tests/test_formal.py (:class:`Proof`, :func:`_run`):
``test_formal_streams`` (marked ``formal``) runs every proof, ``test_formal_streams_quick`` the
quick ones in the default tier. Every property has a broken twin that must fail.

The block configurations are the smallest legal ones (below, :data:`BLOCKS`); each proof's
``config`` string states them and the ties.
"""

import pytest
from amaranth.hdl import Assume, Cat, Const, Cover, Fragment, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from openmaia.bus.stream_register import StreamRegister
from openmaia.compute.dot_engine import MxDotEngine
from openmaia.compute.element_decoder import ElementDecoder
from openmaia.compute.mx_quantizer import MxQuantizer
from openmaia.compute.vector_lane import VectorAlu
from openmaia.fpga.host_bridge import HostBridge
from openmaia.fpga.uart import UartRx
from openmaia.harness.formal_streams import (
    Conserve,
    StreamRules,
    ValidReadyMiter,
    find_register,
    hold_rule,
    in_minus_out,
    registers_of,
    requester_pairs,
    stream_ports,
)
from openmaia.hbm.onchip import OnChipMemory
from openmaia.numerics.formats import Format
from openmaia.tile.command_fetcher import CommandFetcher
from openmaia.tile.dma import TileDma
from openmaia.tile.operand_fetch import OperandFetcher
from openmaia.tile.result_writer import ResultWriter
from openmaia.tile.tcp import TileControlProcessor
from openmaia.tile.tsram import TileSram
from openmaia.tile.ttu import TileTensorUnit
from openmaia.tile.ttu_engine import TileTensorEngine
from openmaia.tile.tvp import TileVectorProcessor
from test_formal import DroppingStage, Proof, ReadyDependentStage, _run

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


class TableStage(wiring.Component):
    """A test block for the miter's memory assumption: ``o.valid`` is read combinationally from
    a 4-entry table (a ``lib.memory.Memory``) at a register ``slot`` that steps on each transfer,
    so ``valid`` depends on state held in a memory, not on ``o.ready``: the ``"assume"`` miter
    must pass. ``ready_in_address`` (the broken twin) reads the table at ``slot`` with ``o.ready``
    as the top address bit, a path from ready to valid through the memory: it must fail."""

    def __init__(self, *, ready_in_address: bool = False):
        self._ready_in_address = ready_in_address
        super().__init__({"o": Out(stream.Signature(2)), "w": In(stream.Signature(2))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.table = table = Memory(shape=1, depth=4, init=[1, 0, 0, 1])
        slot = Signal(1)
        read = table.read_port(domain="comb")
        write = table.write_port()
        address = Cat(slot, self.o.ready if self._ready_in_address else Const(0, 1))
        m.d.comb += [read.addr.eq(address), self.o.valid.eq(read.data),
                     self.o.payload.eq(slot), self.w.ready.eq(1),
                     write.addr.eq(self.w.payload), write.data.eq(~read.data),
                     write.en.eq(self.w.valid)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += slot.eq(slot + 1)
        return m

E2M1 = frozenset({Format.E2M1})

def _lanes_text(lanes):
    return "1 lane" if lanes == 1 else f"{lanes} lanes (a block in {32 // lanes} beats)"


def _operand_fetcher(lanes):
    return (lambda faults=(): OperandFetcher(
        count=1, tiles=1, lanes=lanes, formats=E2M1, fp4_double_rate=False, word_bytes=8,
        scale_bytes=4, addr_width=4, panel_blocks=1, faults=faults),
        f"OperandFetcher, 1 row, 1 tile, {_lanes_text(lanes)}, E2M1, single rate, 8-byte "
        "words, 4-byte scales, 4 address bits, panel_blocks 1")


def _ttu_engine(lanes):
    return (lambda faults=(): TileTensorEngine(
        formats=E2M1, rows=1, cols=1, lanes=lanes, slots=2, panel_blocks=1, tsram_bytes=64,
        port_bytes=8, bank_bytes=4, fp4_double_rate=False),
        f"TileTensorEngine, E2M1, 1 x 1 engines of {_lanes_text(lanes)}, 2 slots, "
        "panel_blocks 1, 64-byte TSRAM, 8-byte operand port, 4-byte banks, single rate")


#: name -> (build, configuration): the smallest legal configuration of each block.
BLOCKS = {
    "stream_register": (lambda faults=(): StreamRegister(8), "StreamRegister, 8-bit payload"),
    "element_decoder": (lambda faults=(): ElementDecoder(formats={"e2m1"}, lanes=1,
                                                         faults=faults),
                        "ElementDecoder, E2M1 only, 1 lane"),
    "dot_engine": (lambda faults=(): MxDotEngine(formats={"e2m1"}, lanes=1, slots=1,
                                                 fp4_double_rate=False, faults=faults),
                   "MxDotEngine, E2M1 only, 1 lane, 1 slot, single rate"),
    "mx_quantizer": (lambda faults=(): MxQuantizer(formats={"e2m1"}, lanes=32, faults=faults),
                     "MxQuantizer, E2M1 only, 32 lanes (a block a beat)"),
    "mx_quantizer_1": (lambda faults=(): MxQuantizer(formats={"e2m1"}, lanes=1, faults=faults),
                       "MxQuantizer, E2M1 only, 1 lane (a block in 32 beats: the TVP's)"),
    "vector_lane": (lambda faults=(): VectorAlu(lanes=1, faults=faults), "VectorAlu, 1 lane"),
    "result_writer": (lambda faults=(): ResultWriter(cols=1, word_bytes=4, addr_width=4,
                                                     faults=faults),
                      "ResultWriter, 1 column, 4-byte words, 4 address bits"),
    "operand_fetch": _operand_fetcher(1),
    "ttu": (lambda faults=(): TileTensorUnit(formats=E2M1, rows=1, cols=1, lanes=1, slots=2,
                                             panel_blocks=1, fp4_double_rate=False,
                                             engine_faults=faults),
            ("TileTensorUnit, E2M1, 1 x 1 engines of 1 lane, 2 slots, panel_blocks 1, "
             "single rate")),
    "ttu_engine": _ttu_engine(1),
    "operand_fetch_16": _operand_fetcher(16),
    "ttu_engine_16": _ttu_engine(16),
    "tsram": (lambda faults=(): TileSram(banks=1, bank_bytes=4, depth=2, ports={"a": 1},
                                         ecc=False, rsp_depth=1, counter_width=8,
                                         faults=faults),
              ("TileSram, 1 bank of 2 x 4-byte words, one port `a` of width 1, no ECC, "
               "rsp_depth 1")),
    "tsram_ecc": (lambda faults=(): TileSram(banks=2, bank_bytes=4, depth=2,
                                             ports={"a": 1, "b": 2}, ecc=True, rsp_depth=2,
                                             counter_width=8, faults=faults),
                  ("TileSram, 2 banks of 2 x 4-byte words with SECDED, ports `a` (width 1) and "
                   "`b` (width 2), rsp_depth 2")),
    "dma": (lambda faults=(): TileDma(axi_addr_bits=10, axi_data_bits=16, axi_id_bits=1,
                                      tsram_bank_bytes=2, tsram_bytes=32, queues=1,
                                      queue_depth=1, outstanding_reads=1, tsram_reads=1,
                                      faults=faults),
            ("TileDma, 10-bit AXI addresses, 16-bit bus, 1 queue of depth 1, 1 outstanding "
             "read, 1 TSRAM read, 32-byte TSRAM of 2-byte banks")),
    "dma_slice": (lambda faults=(): TileDma(axi_addr_bits=10, axi_data_bits=16, axi_id_bits=1,
                                            tsram_bank_bytes=2, tsram_bytes=32, queues=1,
                                            queue_depth=1, outstanding_reads=1, tsram_reads=1,
                                            request_slice=True, faults=faults),
                  ("TileDma as above with its TSRAM request slice (Config.dma_request_slice)")),
    "tcp": (lambda faults=(): TileControlProcessor(semaphores=2, dma_queues=1, hbm_addr_bits=8,
                                                   outstanding=1, vector_unit=True,
                                                   faults=faults),
            ("TileControlProcessor, 2 semaphores, 1 DMA queue, hbm_addr_bits 8, outstanding 1, "
             "vector unit")),
    "command_fetcher": (lambda faults=(): CommandFetcher(addr_width=16, data_width=512,
                                                         id_width=1, depth=1, index_bits=4,
                                                         faults=faults),
                        ("CommandFetcher, 16-bit addresses, 512-bit bus (a command a beat), "
                         "depth 1, 4-bit ring indices")),
    "tvp": (lambda faults=(): TileVectorProcessor(lanes=1, formats=E2M1, tsram_bytes=64,
                                                  bank_bytes=4, port_words=1, faults=faults),
            "TileVectorProcessor, 1 lane, E2M1, 64-byte TSRAM, 4-byte banks, 1-word ports"),
    "uart_rx": (lambda faults=(): UartRx(divisor=4, counter_bits=8),
                "UartRx, divisor 4, 8-bit counters"),
    "host_bridge": (lambda faults=(): HostBridge(divisor=4, reg_addr_bits=4, mem_addr_bits=12,
                                                 mem_data_bits=32, rx_fifo_depth=4,
                                                 counter_bits=8, faults=faults),
                    ("HostBridge, divisor 4, 4-bit register addresses, 12-bit / 32-bit memory "
                     "AXI4, 4-byte rx FIFO, 8-bit counters")),
    "onchip": (lambda faults=(): OnChipMemory(capacity_bytes=64, addr_width=6, data_width=32,
                                              id_width=1, init=bytes(range(1, 65)),
                                              faults=faults),
               "OnChipMemory, 64 bytes (init 1..64), 6-bit addresses, 32-bit data, 1-bit IDs"),
}

_AXI_FREE = "AXI responses, readies and data free every cycle (no AXI rule assumed)"


def block(name, **kwargs):
    build, _ = BLOCKS[name]
    return lambda: build(**kwargs)


def rules_proof(name, *, mode="prove", depth=3, quick=False, ties=None, conserve=(),
                invariants=(), timeout=600, faults=(), expect=True, note="", suffix="",
                solver="z3", flat_channels=False, script=(), environment=None, withdraw=None):
    build, config = BLOCKS[name]
    tied = f"; tied: {', '.join(f'{k} = {v.value}' for k, v in ties.items())}" if ties else ""
    twin = f"broken twin (faults {sorted(faults)}): " if faults else ""
    return Proof(f"streams_{name}{suffix}",
                 lambda: StreamRules(build(faults=faults), ties=ties, conserve=conserve,
                                     invariants=invariants, flat_channels=flat_channels,
                                     environment=environment, withdraw=withdraw),
                 mode, depth, expect, quick, f"{twin}{config}{tied}{note}", timeout, solver,
                 tuple(script))


def miter_proof(name, *, mode="prove", depth=1, quick=False, ties=None, state_equal="assume",
                timeout=600, note="", flat_channels=False, solver="z3", under_test="all",
                valids=None, suffix=""):
    build, config = BLOCKS[name]
    tied = f"; tied: {', '.join(f'{k} = {v.value}' for k, v in ties.items())}" if ties else ""
    channels = "; AXI channels included" if flat_channels else ""
    readies = "every output's ready" if under_test == "all" else f"the ready of {under_test}"
    checked = "every output's valid" if valids is None else f"the valid of {valids}"
    return Proof(f"miter_{name}{suffix}",
                 lambda: ValidReadyMiter(build, under_test=under_test, valids=valids, ties=ties,
                                         state_equal=state_equal, flat_channels=flat_channels),
                 mode, depth, True, quick,
                 f"{config}: {checked} vs {readies}, registers "
                 f"{state_equal or 'not compared'}{tied}{channels}{note}", timeout, solver)


def _tie(*names, value=0):
    return {name: Const(value, 1) for name in names}


def _pending(port):
    """The TSRAM's count of reads accepted on ``port`` and not yet answered (its ``<port>_pending``
    register, found in the elaborated fragment)."""
    return lambda m, rules: find_register(rules.fragment, f"{port}_pending")


def _tsram_holds(port):
    """Reads the TSRAM port holds: one in its stage-1 register (``<port>_s1_read``) plus the
    responses in its response FIFO (``<port>_rsp_fifo/level``)."""
    return lambda m, rules: (find_register(rules.fragment, f"{port}_s1_read")
                             + find_register(rules.fragment, f"{port}_rsp_fifo/level"))


def _is_read(payload):
    return ~payload.write


def _legal_jobs(m, rules):
    """The TTU's contract with its operand fetcher (docs/ttu.md): a job has 1 or more rows, 1 to
    ``panel_blocks`` blocks, a built-in format, and FP4 pairing only when built."""
    job = rules.port(("job",))
    payload, dut = job.interface.payload, rules.dut
    with m.If(job.valid):
        m.d.comb += [Assume(payload.rows >= 1), Assume(payload.k >= 1),
                     Assume(payload.k <= dut.panel_blocks),
                     Assume(payload.fmt == Format.E2M1.spec.hw_code), Assume(~payload.pair)]


def _submodule(rules, name):
    """The component elaborated as submodule ``name`` of the block under proof."""
    found = [sub for sub, sub_name, _ in rules.fragment.subfragments if sub_name == name]
    if len(found) != 1:
        raise LookupError(f"no submodule {name!r}")
    return found[0].origins[0]


def _assume_unit_contract(m, rules, name, *, no_output_without_input):
    """Assume of submodule ``name``, whose logic the proof's script cuts away (``cutpoint``),
    only what its own proofs establish: the producer rules on its ``o`` (valid held, payload
    stable) and, if ``no_output_without_input``, never more outputs than inputs."""
    unit = _submodule(rules, name)
    started = Signal(name=f"{name}_started")
    m.d.sync += started.eq(1)
    hold_rule(m, unit.o, Assume, started=started, name=f"{name}__o")
    if no_output_without_input:
        take_in, take_out = unit.i.valid & unit.i.ready, unit.o.valid & unit.o.ready
        held = in_minus_out(m, take_in, take_out, 63, name=f"{name}_held")
        m.d.comb += [Assume(~take_out | take_in | (held != 0)), Assume(held <= 62)]


def _tvp_unit_contracts(m, rules):
    """The TVP's ALU and quantiser replaced by their proved contracts (``streams_vector_lane``:
    rules and ins - outs = what it holds, so never more outputs than inputs;
    ``streams_mx_quantizer_1``: rules)."""
    _assume_unit_contract(m, rules, "alu", no_output_without_input=True)
    _assume_unit_contract(m, rules, "quant", no_output_without_input=False)


#: The TVP with its ALU and quantiser cut away (their outputs free under
#: :func:`_tvp_unit_contracts`) and its span-check multipliers free.
CUT_TVP_UNITS = ("cutpoint top.dut.alu top.dut.quant", "cutpoint top.dut/t:$mul")


def _alu_stages(m, rules):
    """Transfers the ALU holds: the valid bits of its tag pipeline (``tag_d0`` ... the last,
    which is ``o.valid``), one per accepted beat until it is taken."""
    latency = rules.dut.latency
    return sum(find_register(rules.fragment, f"tag_d{n}")[0] for n in range(latency))


def _quantizer_stages(m, rules):
    """Blocks the quantiser holds: the valid bits of its stages ``s1``, ``s2`` and ``out_valid``
    (``o.valid``)."""
    return sum(find_register(rules.fragment, name)[0] for name in ("s1", "s2", "out_valid"))


_ARITHMETIC = ("$mul", "$add", "$sub", "$neg", "$shl", "$shr", "$sshr", "$shift", "$shiftx",
               "$lt", "$le", "$gt", "$ge", "$eq", "$ne")


def cut_arithmetic(*modules, min_width: int = 1) -> tuple:
    """Yosys commands (``cutpoint``) that make the result of every arithmetic cell in
    ``modules`` with operands of at least ``min_width`` bits a free value each cycle (for the
    datapath of a block whose control counters are narrower); registers and enables stay, so
    a held pipeline still holds. The handshake and conservation properties never read a
    datapath value, so a pass with free values holds for the real units too (an
    over-approximation), and the solver skips the multipliers and shifters."""
    return tuple("cutpoint " + " ".join(f"{module}/t:{cell} {module}/r:A_WIDTH>={min_width} %i"
                                        for cell in _ARITHMETIC)
                 for module in modules)


CUT_TTE_DATAPATH = (*cut_arithmetic("top.dut.ttu.engine_0_0.add",
                                    "top.dut.ttu.engine_0_0.round"),
                    *cut_arithmetic("top.dut.ttu.engine_0_0", min_width=8))
CUT_TVP_DATAPATH = (*cut_arithmetic("top.dut.alu.l0_*"),
                    *cut_arithmetic("top.dut.quant", min_width=8),
                    "cutpoint top.dut/t:$mul")


TVP_ABSTRACT_DEPTH = 14


class _Reach(StreamRules):
    """:class:`StreamRules` plus a cover of ``target(dut)`` (by default an ``event`` with status
    0, a command done): the reach check behind a bounded proof's "latency + 4" depth. Run with
    depth s + 1, it passes when the target can be reached by step s."""

    def __init__(self, dut, *, target=None, **kwargs):
        super().__init__(dut, **kwargs)
        self.target = target or (lambda dut: dut.event.valid & (dut.event.payload.status == 0))

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += Cover(self.target(self.dut))
        return m


def reach_proof(name, step, *, what="a command's OK event", target=None, suffix="",
                script=(), **kwargs):
    """The cover that a block's first output (``target``) can come by ``step``."""
    build, config = BLOCKS[name]
    return Proof(f"reach_{name}{suffix}",
                 lambda: _Reach(build(), target=target, **kwargs), "cover", step + 1, True,
                 False, f"cover on {config}: {what} by step {step} (the latency behind the "
                 "depth of its bounded proof, which is that step + 4)", 900, "yices",
                 tuple(script))


_PASS_THROUGH = Conserve(("i",), ("o",), capacity=1, held=lambda m, rules: rules.dut.o.valid)
_CLEAR = _tie("counters_clear")


def twin_rules(name, build, *, conserve=(), depth=3, note=""):
    return Proof(name, lambda: StreamRules(build(), conserve=conserve), "prove", depth, False,
                 True, note)


PROOFS = [
    # --- handshake rules on every stream of the block (+ conservation where one for one) -------
    rules_proof("stream_register", quick=True,
                conserve=[Conserve(("i",), ("o",), capacity=2,
                                   held=lambda m, rules: rules.dut.o.valid
                                   + find_register(rules.fragment, "skid_valid"))],
                note="; conservation i -> o: ins - outs = o.valid + skid_valid (<= 2)"),
    rules_proof("element_decoder", quick=True, conserve=[_PASS_THROUGH],
                note="; conservation i -> o: ins - outs = o.valid (<= 1)"),
    rules_proof("dot_engine"),
    rules_proof("mx_quantizer",
                conserve=[Conserve(("i",), ("o",), capacity=3, held=_quantizer_stages)],
                invariants=[lambda m, rules: find_register(rules.fragment, "beat") == 0],
                note="; conservation i -> o: blocks in - blocks out = the valid bits of stages "
                     "s1, s2 and the output register (<= 3); invariant: the beat counter stays "
                     "0 (a block a beat)"),
    rules_proof("vector_lane", conserve=[Conserve(("i",), ("o",), capacity=24,
                                                  held=_alu_stages)],
                note="; conservation i -> o: ins - outs = the valid bits of the 23-stage tag "
                     "pipeline (one per beat held, the last is o.valid)"),
    rules_proof("uart_rx", note="; rx pin free"),
    rules_proof("tsram", quick=True, depth=6, ties=_tie("counters_clear", "err_clear"),
                conserve=[Conserve(("a", "req"), ("a", "rsp"), capacity=1, count_in=_is_read,
                                   held=_tsram_holds("a"))],
                invariants=[lambda m, rules: _pending("a")(m, rules)
                            == _tsram_holds("a")(m, rules)],
                note="; conservation: reads accepted on a.req - responses on a.rsp = reads held "
                     "(stage 1 + response FIFO level) <= rsp_depth = 1 (one response per read, "
                     "none dropped); invariant: the port's credit count a_pending = reads held"),
    rules_proof("tsram", suffix="_no_credit", faults={"no_credit"}, expect=False, mode="bmc",
                depth=6, quick=True, ties=_tie("counters_clear", "err_clear"),
                conserve=[Conserve(("a", "req"), ("a", "rsp"), capacity=1, count_in=_is_read)],
                note="; conservation reads - responses <= rsp_depth must fail"),
    rules_proof("result_writer", conserve=[Conserve(("place",), ("done",), capacity=None)],
                mode="bmc", depth=10, solver="yices",
                note="; done tokens never outnumber places (one per op; capacity not "
                     "documented)"),
    rules_proof("result_writer", suffix="_induction"),
    rules_proof("tcp", note="; restart, irq_ack, counters_clear free"),
    rules_proof("ttu", conserve=[Conserve(("cmd",), ("event",), capacity=None)], mode="bmc",
                depth=10, solver="yices",
                note="; events never outnumber commands (one per command; capacity not "
                     "documented)"),
    rules_proof("ttu", suffix="_induction"),
    rules_proof("command_fetcher", flat_channels=True,
                withdraw={"cmd": lambda m, rules: rules.dut.flushing},
                note="; AXI4 channels checked too (AR / AW / W asserted, R / B assumed: AMBA "
                     "A3.2.1); flush free: cmd's rule holds in every cycle without `flushing` "
                     "(a flush abandons the queued commands by contract)"),
    rules_proof("command_fetcher", suffix="_flush_not_exempt", flat_channels=True, mode="bmc",
                depth=8, expect=False, quick=True,
                note="; flush free and no exemption: must fail (a flush withdraws cmd.valid), "
                     "so the exemption above is what lets flush pass"),
    rules_proof("host_bridge", flat_channels=True,
                note="; no lib.stream port: its AXI4 and AXI4-Lite channels (AR / AW / W "
                     "asserted, R / B assumed), rx pin free"),
    rules_proof("onchip", flat_channels=True, mode="bmc", depth=8,
                note="; AXI4 subordinate: R / B asserted, AR / AW / W assumed"),
    rules_proof("onchip", suffix="_r_data_not_held", faults={"r_data_not_held"}, expect=False,
                mode="bmc", depth=6, quick=True, flat_channels=True,
                note="; R payload stability must fail"),
    rules_proof("tsram_ecc", mode="bmc", depth=10, solver="yices",
                ties=_tie("counters_clear", "err_clear"),
                conserve=[Conserve((port, "req"), (port, "rsp"), capacity=2, count_in=_is_read,
                                   held=_tsram_holds(port)) for port in ("a", "b")],
                invariants=[lambda m, rules, port=port: _pending(port)(m, rules)
                            == _tsram_holds(port)(m, rules) for port in ("a", "b")],
                note="; per port: reads accepted - responses = reads held <= rsp_depth = 2, "
                     "credit count = reads held; inject stream free"),
    rules_proof("operand_fetch", mode="bmc", depth=10, solver="yices",
                conserve=[Conserve(("job",), ("status",), capacity=None)],
                note="; memory port: a response only for an outstanding read; status tokens "
                     "never outnumber jobs (capacity not documented)"),
    rules_proof("operand_fetch_16", mode="bmc", depth=16, solver="yices",
                environment=_legal_jobs,
                note="; jobs legal (rows >= 1, k in 1..panel_blocks, E2M1, no pairing); memory "
                     "port: a response only for an outstanding read"),
    rules_proof("operand_fetch_16", suffix="_regrant_while_stalled", mode="bmc", depth=16,
                solver="yices", environment=_legal_jobs, faults={"regrant_while_stalled"},
                expect=False, quick=True,
                note="; the memory request's payload stability must fail"),
    rules_proof("ttu_engine", mode="bmc", depth=12, solver="yices", timeout=900,
                conserve=[Conserve(("cmd",), ("event",), capacity=None)],
                note="; memory ports: a response only for an outstanding read; events never "
                     "outnumber commands"),
    # 16 lanes: a command's first event can come at step 18 (cover), so 22 = latency + 4; the
    # 1-lane engine needs 32 beats a block, so its first event comes far later.
    rules_proof("ttu_engine_16", mode="bmc", depth=22, solver="yices", timeout=3600,
                conserve=[Conserve(("cmd",), ("event",), capacity=None)],
                script=CUT_TTE_DATAPATH,
                note="; datapath cut points (the dot engine's adder and rounding, its wide "
                     "cells); memory ports: a response only for an outstanding read; events "
                     "never outnumber commands"),
    rules_proof("mx_quantizer_1", solver="yices"),
    # The TVP with its ALU and quantiser replaced by their proved contracts: its first OK event
    # then comes at step 10 (cover), so 14 = latency + 4; every ALU / quantiser latency is in.
    rules_proof("tvp", suffix="_units_abstracted", mode="bmc", depth=TVP_ABSTRACT_DEPTH,
                solver="yices", timeout=3600, script=CUT_TVP_UNITS,
                environment=_tvp_unit_contracts,
                conserve=[Conserve(("cmd",), ("event",), capacity=None)],
                note="; ALU and quantiser cut away, their outputs free under their proved "
                     "contracts (producer rules; the ALU never outputs more than it took), span "
                     "multipliers free; events never outnumber commands"),
    reach_proof("tvp", TVP_ABSTRACT_DEPTH - 4, suffix="_units_abstracted",
                script=CUT_TVP_UNITS, environment=_tvp_unit_contracts),
    # Until the TVP's event waited for its sources' last beats (2026-11-28), this variant failed
    # at step 10: an ALU emitting results it never took ended a command with a read stalled, and
    # the next command changed that read's address. The TVP no longer relies on the contract.
    rules_proof("tvp", suffix="_units_abstracted_no_alu_count", mode="bmc",
                depth=TVP_ABSTRACT_DEPTH, solver="yices", timeout=3600, script=CUT_TVP_UNITS,
                environment=lambda m, rules: [_assume_unit_contract(
                    m, rules, unit, no_output_without_input=False) for unit in ("alu", "quant")],
                note="; as above without the ALU's no-output-without-input contract: the units' "
                     "outputs constrained by the producer rules alone"),
    rules_proof("tvp", mode="bmc", depth=12, solver="yices", timeout=900,
                conserve=[Conserve(("cmd",), ("event",), capacity=None)],
                note="; memory ports: a response only for an outstanding read; events never "
                     "outnumber commands"),
    rules_proof("dma", mode="bmc", depth=8, solver="yices", flat_channels=True, timeout=900,
                conserve=[Conserve(("desc", 0), ("event",), capacity=None)],
                note="; AXI4 channels too (AR / AW / W asserted, R / B assumed), windows free; "
                     "TSRAM port: a response only for an outstanding read; events never "
                     "outnumber descriptors (capacity not documented)"),
    rules_proof("dma_slice", mode="bmc", depth=8, solver="yices", flat_channels=True,
                timeout=900, conserve=[Conserve(("desc", 0), ("event",), capacity=None)],
                note="; as streams_dma"),
    rules_proof("dma", suffix="_unstable_wdata", faults={"unstable_wdata"}, expect=False,
                mode="bmc", depth=6, solver="yices", flat_channels=True, timeout=900,
                note="; W / TSRAM write payload stability must fail"),
    # --- the latencies behind the bounded depths (covers of a first output) ---------------------
    reach_proof("operand_fetch_16", 9, what="a job's status", environment=_legal_jobs,
                target=lambda dut: dut.status.valid),
    reach_proof("ttu_engine_16", 18, script=CUT_TTE_DATAPATH),
    reach_proof("tvp", 33, script=CUT_TVP_DATAPATH),
    reach_proof("dma", 2, flat_channels=True),
    reach_proof("dma_slice", 4, flat_channels=True),
    reach_proof("tsram_ecc", 2, what="a read response", target=lambda dut: dut.a.rsp.valid,
                ties=_tie("counters_clear", "err_clear")),
    reach_proof("onchip", 2, what="an R beat", flat_channels=True,
                target=lambda dut: dut.s_axi.rvalid),
    reach_proof("onchip", 2, what="a B", flat_channels=True, suffix="_b",
                target=lambda dut: dut.s_axi.bvalid),
    # --- twins of the checkers ------------------------------------------------------------------
    twin_rules("streams_dropping_stage", DroppingStage, conserve=[_PASS_THROUGH],
               note="broken twin: a stage that ignores o.ready"),
    # --- two-copy valid / ready miters: every output's ready differs between the copies -------
    miter_proof("stream_register", quick=True),
    miter_proof("element_decoder", quick=True),
    miter_proof("dot_engine"),
    miter_proof("mx_quantizer"),
    miter_proof("vector_lane"),
    miter_proof("uart_rx"),
    miter_proof("tsram"),
    miter_proof("result_writer"),
    miter_proof("ttu"),
    miter_proof("tcp"),
    miter_proof("command_fetcher", flat_channels=True),
    miter_proof("host_bridge", flat_channels=True),
    miter_proof("onchip", flat_channels=True),
    miter_proof("tvp", timeout=300),
    miter_proof("ttu_engine", solver="yices"),
    # TileDma: `event.valid` follows `tsram.req.ready` in the same cycle by design (a write
    # descriptor's event is offered in the cycle its last TSRAM write is taken, docs/dma.md),
    # so the ready of `tsram.req` is tested against every valid but the event's.
    miter_proof("dma", flat_channels=True, solver="yices", timeout=3600,
                under_test=["m_axi__aw", "m_axi__w", "m_axi__ar", "event"]),
    # With the request slice no valid follows any ready: one miter over every ready.
    miter_proof("dma_slice", flat_channels=True, solver="yices", timeout=3600),
    miter_proof("dma", suffix="_tsram_req", flat_channels=True, solver="yices",
                under_test=["tsram__req"], valids=["m_axi__aw", "m_axi__w", "m_axi__ar",
                                                   "tsram__req"]),
    # Failed (bounded, registers not compared) at step 6 until the fetcher waited for its tag
    # FIFO before taking a response (a memory answering the cycle after the request:
    # test_memory_answering_the_next_cycle).
    miter_proof("operand_fetch", solver="yices", quick=True),
    Proof("miter_ready_dependent_stage",
          lambda: ValidReadyMiter(ReadyDependentStage, state_equal="assume"),
          "prove", 2, False, True, "broken twin: a stage whose o.valid is gated by o.ready"),
    Proof("miter_table_stage", lambda: ValidReadyMiter(TableStage, state_equal="assume"),
          "prove", 1, True, True, "TableStage: o.valid read from a memory at a register "
          "address (the copies' memory reads assumed equal)"),
    Proof("miter_table_stage_ready_in_address",
          lambda: ValidReadyMiter(lambda: TableStage(ready_in_address=True),
                                  state_equal="assume"),
          "prove", 1, False, True, "broken twin: TableStage reading its table at an address "
          "that o.ready steers"),
]


@pytest.mark.formal
@pytest.mark.parametrize("proof", PROOFS, ids=[p.name for p in PROOFS])
def test_formal_streams(proof):
    _run(proof)


QUICK = [p for p in PROOFS if p.quick]


@pytest.mark.parametrize("proof", QUICK, ids=[p.name for p in QUICK])
def test_formal_streams_quick(proof):
    _run(proof)


def test_stream_ports_walks_sub_signatures():
    """MemoryPortSignature's req / rsp, arrays of streams and (with ``flat_channels``) the AXI4
    channels are found, each with the block's role."""
    dma = BLOCKS["dma"][0]()
    roles = {p.name: p.producer for p in stream_ports(dma)}
    assert roles == {"tsram__req": True, "tsram__rsp": False, "desc__0": False, "event": True}
    flat = {p.name: (p.producer, len(p.payload)) for p in stream_ports(dma, flat_channels=True)}
    assert flat["m_axi__ar"] == (True, 10 + 1 + 8 + 3 + 2 + 1 + 4 + 3 + 4)
    assert flat["m_axi__r"][0] is False and flat["m_axi__b"][0] is False
    sram = BLOCKS["tsram"][0]()
    assert {p.name: p.producer for p in stream_ports(sram)} == {
        "a__req": False, "a__rsp": True, "inject": False}
    assert [(req.name, rsp.name) for req, rsp in requester_pairs(stream_ports(dma))] == [
        ("tsram__req", "tsram__rsp")]
    assert requester_pairs(stream_ports(sram)) == []


def test_checkers_check_their_arguments():
    with pytest.raises(ValueError, match="no lib.stream member"):
        StreamRules(HostBridge(divisor=4, mem_addr_bits=12, mem_data_bits=32))
    with pytest.raises(ValueError, match="ties name no In port"):
        StreamRules(DroppingStage(), ties={"nope": Const(0, 1)})
    with pytest.raises(LookupError, match="no stream"):
        StreamRules(DroppingStage()).port("nope")
    with pytest.raises(ValueError, match="no producer stream"):
        ValidReadyMiter(DroppingStage, under_test="i")
    with pytest.raises(ValueError, match="state_equal"):
        ValidReadyMiter(DroppingStage, state_equal="maybe")
    with pytest.raises(TypeError, match="wiring.Component"):
        StreamRules(object())


def test_find_register():
    fragment = Fragment.get(BLOCKS["tsram"][0](), None)
    assert len(find_register(fragment, "a_pending")) == 1
    assert len(find_register(fragment, "a_rsp_fifo/level")) == 1
    with pytest.raises(LookupError, match="expected one register"):
        find_register(fragment, "nope")
    _, has_memory = registers_of(fragment)
    assert has_memory
