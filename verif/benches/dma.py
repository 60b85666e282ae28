"""cocotb bench of :class:`openmaia.tile.dma.TileDma` (contract: docs/dma.md).

Bus models: cocotbext-axi's ``AxiRam`` is the HBM behind ``m_axi`` (random pauses on all five
channels; :class:`HbmRam` adds DECERR for unmapped ranges to its SLVERR for failed accesses);
:class:`TsramModel` is the tile SRAM behind ``tsram`` (a bytearray, random stalls on ``req`` and
``rsp``, a random read latency). Descriptors go in through one
:class:`~openmaia.harness.streams.StreamSource` per queue, events come out through a
:class:`~openmaia.harness.streams.StreamSink` with random backpressure.

Checkers:

* :class:`BusMonitor` records every AR / AW handshake and W beat with the number of descriptors
  finished so far, which attributes each one to the descriptor in flight (the engine runs one
  descriptor at a time, and the next one's first AR or AW comes a cycle after the event of the
  last one at the earliest). Every burst must be a legal INCR burst (full-size beats, at most
  256 beats, not crossing 4 KiB), lie inside the descriptor's HBM extent and the queue's window
  (to the bus word for reads), and W beats must match their bursts (count, ``wlast``). A
  rejected descriptor must have no AR, AW or W at all.
* :class:`Scoreboard`: one event per descriptor, with the status of
  :func:`~openmaia.tile.dma_descriptor.dma_reference`; after each batch the whole HBM and the
  whole TSRAM equal the reference memories, to which the same descriptors were applied in the
  engine's order (so every byte landed where the descriptor says, and nothing else was written).
* :meth:`Bench.check_visibility` (on the TSRAM model): an OK HBM -> TSRAM event is offered only
  once the descriptor's rows are in the TSRAM.

Tests: ``contiguous`` (a sweep of lengths x offsets, both directions), ``strided`` (2D / 3D
patterns, the 64 x 64 tile of a 4096-wide matrix), ``protection`` (every rejection, each
followed by a descriptor that must still run), ``random_mix`` (random valid and invalid
descriptors on every queue), ``errors`` (SLVERR from AxiRam on poisoned HBM words, DECERR from
:class:`HbmRam` on unmapped ones, uncorrectable ECC from the TSRAM model: reported in the event,
the transfer and the next ones complete),
``roundtrip`` (patterns into the TSRAM and back out, checked through HBM alone, so it also runs
on a top with the real TileSram), ``throughput`` (no pauses; writes cycle counts to
``throughput.json`` in the run folder for scripts/dma_bench.py).

Parameters (:func:`openmaia.harness.bench_params`): ``axi_addr_bits``, ``word_bytes``,
``tsram_bytes``, ``tsram_bank_bytes``, ``queues``, ``hbm_bytes``, ``pause`` (probability, every
channel), ``tsram_model`` (default true; false when the top has its own TSRAM), and per test:
``lengths``, ``offsets``, ``count``, ``cases`` or ``cases_file`` (throughput: the cases, or a JSON
file holding them).
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections import deque
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, Timer
from cocotbext.axi import AxiBus, AxiRam, AxiResp
from openmaia.errors import ErrorCode
from openmaia.harness import bench_params
from openmaia.harness.streams import StreamSink, StreamSource, random_pauses, unpack
from openmaia.tile.dma_descriptor import (
    DmaDescriptor,
    DmaDescriptorLayout,
    DmaDirection,
    DmaEventLayout,
    check_descriptor,
    descriptor_extent,
    dma_reference,
)

CLOCK_NS = 10
REJECTIONS = {ErrorCode.DESC_BAD_ELEMENT, ErrorCode.DESC_ZERO_COUNT,
              ErrorCode.DESC_STRIDE_OVERFLOW, ErrorCode.DESC_OUT_OF_WINDOW,
              ErrorCode.TSRAM_OUT_OF_RANGE}
H2T = DmaDirection.HBM_TO_TSRAM
T2H = DmaDirection.TSRAM_TO_HBM


def _never():
    while True:
        yield False


class HbmMemory(bytearray):
    """HBM contents for AxiRam with two kinds of faulty ranges (each a ``(first, end)`` pair,
    bus-word aligned): a slice touching a range in :attr:`poison` or :attr:`unmapped` raises,
    which AxiRam answers the way it answers any failed access: SLVERR, a read beat returns zeros,
    the write of that beat's bytes is dropped. :class:`HbmRam` turns the response of an access
    that touched :attr:`unmapped` into DECERR (nothing answers at that address)."""

    poison: tuple = ()
    unmapped: tuple = ()

    def __init__(self, size):
        super().__init__(size)
        self.decode_error = {"read": False, "write": False}

    @staticmethod
    def _hits(key, ranges, size):
        if not isinstance(key, slice) or not ranges:
            return False
        lo, hi, _ = key.indices(size)
        return any(lo < b and a < hi for a, b in ranges)

    def _check(self, key, side):
        if self._hits(key, self.unmapped, len(self)):
            self.decode_error[side] = True
            raise OSError(f"HBM {side} {key}: no subordinate at that address")
        if self._hits(key, self.poison, len(self)):
            raise OSError(f"poisoned HBM {side} {key}")

    def take_decode_error(self, side):
        """Whether an access of ``side`` failed on an unmapped range since the last call."""
        hit, self.decode_error[side] = self.decode_error[side], False
        return hit

    def __getitem__(self, key):
        self._check(key, "read")
        return super().__getitem__(key)

    def __setitem__(self, key, value):
        self._check(key, "write")
        super().__setitem__(key, value)


class HbmRam(AxiRam):
    """cocotbext-axi ``AxiRam`` on an :class:`HbmMemory`, answering DECERR where it is unmapped.

    AxiRam answers a failed memory access with SLVERR (read: per beat; write: for the burst, when
    any beat failed). Each R beat and each B response of a burst in which an access hit an
    unmapped range is relabelled DECERR on its way into the channel; the read and write
    processes of AxiRam handle one beat (R) or burst (B) at a time, so the flag set by the
    memory belongs to the response being sent."""

    def __init__(self, bus, clock, reset, *, size):
        super().__init__(bus, clock, reset, size=size, mem=HbmMemory(size))
        self._relabel(self.read_if.r_channel, "rresp", "read")
        self._relabel(self.write_if.b_channel, "bresp", "write")

    def _relabel(self, channel, field, side):
        send = channel.send

        async def send_relabelled(tr):
            if self.mem.take_decode_error(side) and int(getattr(tr, field)) == AxiResp.SLVERR:
                setattr(tr, field, AxiResp.DECERR)
            await send(tr)
        channel.send = send_relabelled


class TsramModel:
    """The tile SRAM behind a memory port: ``bank_bytes`` words, byte strobes, in-order reads
    with a latency of ``latency`` cycles or more, random stalls on ``req`` and ``rsp``. Checks
    that a stalled request stays valid and unchanged."""

    def __init__(self, dut, clock, *, size, bank_bytes, rng, pause=0.0, latency=(1, 3)):
        self.mem = bytearray(size)
        self.bank_bytes = bank_bytes
        self.clock = clock
        self.rng = rng
        self.pause = pause
        self.latency = latency
        self.req_valid = dut.tsram__req__valid
        self.req_ready = dut.tsram__req__ready
        self.req_payload = dut.tsram__req__payload
        self.rsp_valid = dut.tsram__rsp__valid
        self.rsp_ready = dut.tsram__rsp__ready
        self.rsp_payload = dut.tsram__rsp__payload
        self.req_ready.value = 0
        self.rsp_valid.value = 0
        self.ecc_bad = set()      # word addresses read back with EccStatus.UNCORRECTABLE
        self.reads = 0
        self.writes = 0

    def _layout(self):
        wbits = 8 * self.bank_bytes
        total = len(self.req_payload)
        abits = total - 1 - wbits - self.bank_bytes
        return abits, wbits

    async def run(self):
        abits, wbits = self._layout()
        bb = self.bank_bytes
        pending = deque()
        presenting = None
        waiting = None
        cycle = 0
        rng, pause = self.rng, self.pause
        while True:
            await FallingEdge(self.clock)
            ready = not (pause and rng.random() < pause)
            self.req_ready.value = int(ready)
            if (presenting is None and pending and pending[0][0] <= cycle
                    and not (pause and rng.random() < pause)):
                presenting = pending.popleft()[1]
                self.rsp_payload.value = presenting
            self.rsp_valid.value = int(presenting is not None)
            await ReadOnly()
            if presenting is not None and int(self.rsp_ready.value):
                presenting = None
            valid = int(self.req_valid.value)
            if waiting is not None and (not valid or int(self.req_payload.value) != waiting):
                raise AssertionError(f"TSRAM req: valid dropped or payload changed while "
                                     f"waiting for ready (cycle {cycle})")
            waiting = int(self.req_payload.value) if valid and not ready else None
            if ready and valid:
                bits = self.req_payload.value.to_unsigned()
                addr = bits & ((1 << abits) - 1)
                write = (bits >> abits) & 1
                wdata = (bits >> (abits + 1)) & ((1 << wbits) - 1)
                strb = bits >> (abits + 1 + wbits)
                base = addr * bb
                if base + bb > len(self.mem):
                    raise AssertionError(f"TSRAM access at word {addr} past the SRAM")
                if write:
                    self.writes += 1
                    raw = wdata.to_bytes(bb, "little")
                    for k in range(bb):
                        if strb >> k & 1:
                            self.mem[base + k] = raw[k]
                else:
                    self.reads += 1
                    word = int.from_bytes(self.mem[base:base + bb], "little")
                    status = 2 if addr in self.ecc_bad else 0
                    pending.append((cycle + rng.randint(*self.latency), word | status << wbits))
            cycle += 1


class BusMonitor:
    """Records AR / AW handshakes and W beats, each with the number of descriptors the engine
    has finished so far (its ``descs_done + descs_rejected`` counters, which count when an
    event is produced, in event order)."""

    def __init__(self, dut, clock):
        self.dut = dut
        self.clock = clock
        self.done = dut.descs_done
        self.rejected = dut.descs_rejected
        self.ar, self.aw, self.w = [], [], []
        self.cycle = 0
        names = ("arvalid", "arready", "araddr", "arlen", "arsize", "arburst",
                 "awvalid", "awready", "awaddr", "awlen", "awsize", "awburst",
                 "wvalid", "wready", "wlast", "wstrb", "wdata")
        self.sig = {n: getattr(dut, f"m_axi__{n}") for n in names}
        self.channels = {"AR": ("arvalid", "arready", ("araddr", "arlen", "arsize", "arburst")),
                         "AW": ("awvalid", "awready", ("awaddr", "awlen", "awsize", "awburst")),
                         "W": ("wvalid", "wready", ("wdata", "wstrb", "wlast"))}

    async def run(self):
        """Record handshakes; check that a valid without ready stays, with the same payload."""
        s = self.sig
        held = {}
        while True:
            await FallingEdge(self.clock)
            await ReadOnly()
            self.cycle += 1
            for ch, (valid, ready, fields) in self.channels.items():
                v = int(s[valid].value)
                if ch in held:
                    now = tuple(int(s[f].value) for f in fields)
                    if not v or now != held[ch]:
                        raise AssertionError(f"AXI {ch}: valid dropped or payload changed "
                                             f"while waiting for ready (cycle {self.cycle})")
                    del held[ch]
                if v and not int(s[ready].value):
                    held[ch] = tuple(int(s[f].value) for f in fields)
            k = int(self.done.value) + int(self.rejected.value)
            if int(s["arvalid"].value) and int(s["arready"].value):
                self.ar.append((k, int(s["araddr"].value), int(s["arlen"].value),
                                int(s["arsize"].value), int(s["arburst"].value)))
            if int(s["awvalid"].value) and int(s["awready"].value):
                self.aw.append((k, int(s["awaddr"].value), int(s["awlen"].value),
                                int(s["awsize"].value), int(s["awburst"].value)))
            if int(s["wvalid"].value) and int(s["wready"].value):
                self.w.append((k, int(s["wlast"].value), int(s["wstrb"].value)))


class Bench:
    """The DUT with its bus models, drivers, monitors and reference memories."""

    def __init__(self, dut, params):
        self.dut = dut
        self.p = params
        self.rng = random.Random(cocotb.RANDOM_SEED)
        self.addr_bits = params["axi_addr_bits"]
        self.wb = params["word_bytes"]
        self.tsram_bytes = params["tsram_bytes"]
        self.bank_bytes = params["tsram_bank_bytes"]
        self.queues = params["queues"]
        self.hbm_bytes = params["hbm_bytes"]
        self.pause = params.get("pause", 0.0)
        self.layout = DmaDescriptorLayout.of(self.addr_bits)
        self.event_layout = DmaEventLayout.of(max(1, (self.queues - 1).bit_length()))
        self.windows = [(0, self.hbm_bytes - 1)] * self.queues
        self.ref_hbm = bytearray(self.hbm_bytes)
        self.ref_tsram = bytearray(self.tsram_bytes)
        self.submitted = {}       # (queue, tag) -> (descriptor, window)
        self.order = []           # (queue, tag, status) in event order, checked
        self.events_checked = 0
        self.bytes_moved = 0
        self.bursts_used = {"ar": 0, "aw": 0}   # AR / AW handshakes matched to descriptors
        self.early_descs = 0      # descriptors that issued bursts before the previous event

    async def start(self):
        dut = self.dut
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        dut.rst.value = 1
        self.set_windows(self.windows)
        self.ram = HbmRam(AxiBus.from_prefix(dut, "m_axi_"), dut.clk, dut.rst,
                          size=self.hbm_bytes)
        for log in (self.ram.write_if.log, self.ram.read_if.log):
            log.setLevel(logging.WARNING)
        self.tsram = None
        if self.p.get("tsram_model", True):
            self.tsram = TsramModel(dut, dut.clk, size=self.tsram_bytes,
                                    bank_bytes=self.bank_bytes,
                                    rng=random.Random(self.rng.random()), pause=self.pause)
        self.sources = [StreamSource(dut, f"desc__{q}", dut.clk) for q in range(self.queues)]
        self.sink = StreamSink(dut, "event", dut.clk)
        self.monitor = BusMonitor(dut, dut.clk)
        self.set_pauses(self.pause)
        await ClockCycles(dut.clk, 3)
        await FallingEdge(dut.clk)
        dut.rst.value = 0
        for task in ([self.sink.run(), self.monitor.run()] + [s.run() for s in self.sources]
                     + ([self.tsram.run(), self.check_visibility()] if self.tsram else [])):
            cocotb.start_soon(task)
        self.fill(self.rng)

    async def check_visibility(self):
        """An HBM -> TSRAM descriptor's event means its data is in the TSRAM (docs/dma.md: every
        later TSRAM read sees it): in the cycle after the one in which an OK event is first
        offered, the TSRAM model must hold the descriptor's rows (the next descriptor's TSRAM
        writes come a cycle later at the earliest)."""
        dut = self.dut
        offered_before = taken_before = False
        await FallingEdge(dut.clk)
        while True:
            await ReadOnly()
            valid, ready = int(dut.event__valid.value), int(dut.event__ready.value)
            new = valid and (not offered_before or taken_before)
            offered_before, taken_before = bool(valid), bool(valid and ready)
            bits = dut.event__payload.value.to_unsigned() if new else 0
            await FallingEdge(dut.clk)
            if not new:
                continue
            ev = unpack(self.event_layout, bits)
            entry = self.submitted.get((ev["queue"], ev["tag"]))
            if entry is None or ev["status"] != ErrorCode.OK or entry[0].direction != H2T:
                continue
            desc = entry[0]
            n = desc.row_bytes
            want = {}
            for h, t in zip(desc.rows("hbm"), desc.rows("tsram")):
                for k, byte in enumerate(self.ram.mem[h:h + n]):
                    want[t + k] = byte
            bad = [a for a, byte in want.items() if self.tsram.mem[a] != byte]
            if bad:
                raise AssertionError(f"event of {desc} offered before its TSRAM writes: "
                                     f"{len(bad)} bytes not written yet, first at {bad[0]}")

    def set_pauses(self, probability):
        self.pause = probability
        if self.tsram:
            self.tsram.pause = probability

        def gen():
            return random_pauses(random.Random(self.rng.random()), probability) \
                if probability else None
        for ch in (self.ram.write_if.aw_channel, self.ram.write_if.w_channel,
                   self.ram.write_if.b_channel, self.ram.read_if.ar_channel,
                   self.ram.read_if.r_channel):
            ch.set_pause_generator(gen())
        for s in self.sources:
            s.set_pause_generator(gen())
        self.sink.set_pause_generator(gen())

    def set_windows(self, windows):
        self.windows = list(windows)
        base = limit = 0
        for q, (b, lim) in enumerate(self.windows):
            base |= b << (q * self.addr_bits)
            limit |= lim << (q * self.addr_bits)
        self.dut.window_base.value = base
        self.dut.window_limit.value = limit

    def fill(self, rng):
        """Random contents in both memories (and the reference copies)."""
        hbm = rng.randbytes(self.hbm_bytes)
        ts = rng.randbytes(self.tsram_bytes)
        self.ram.mem.poison = self.ram.mem.unmapped = ()
        self.ram.mem[:] = hbm
        self.ref_hbm[:] = hbm
        if self.tsram:
            self.tsram.mem[:] = ts
            self.ref_tsram[:] = ts

    def submit(self, queue, desc):
        key = (queue, desc.tag)
        if key in self.submitted:
            raise ValueError(f"tag {desc.tag} of queue {queue} still in flight")
        self.submitted[key] = (desc, self.windows[queue])
        self.sources[queue].send_nowait(desc.encode(self.addr_bits))

    def expected_status(self, desc, window):
        return check_descriptor(desc, hbm_addr_bits=self.addr_bits, window=window,
                                tsram_bytes=self.tsram_bytes)

    async def drain(self, timeout_cycles=None):
        """Wait until every submitted descriptor has its event, then check everything."""
        want = self.events_checked + len(self.submitted)
        if timeout_cycles is None:
            total = sum(d.total_bytes if self.expected_status(d, w) is ErrorCode.OK else 0
                        for d, w in self.submitted.values())
            rows = sum(d.count1 * d.count2 for d, _ in self.submitted.values())
            slow = 1 / (1 - self.pause) ** 3
            timeout_cycles = int(2000 + slow * (4 * total / self.wb + 30 * rows
                                                + 40 * len(self.submitted)))
        waited = 0
        while len(self.sink.items) < want:
            await ClockCycles(self.dut.clk, 50)
            waited += 50
            if waited > timeout_cycles:
                raise AssertionError(f"{want - len(self.sink.items)} of "
                                     f"{len(self.submitted)} descriptors gave no event within "
                                     f"{timeout_cycles} cycles")
        await ClockCycles(self.dut.clk, 20)
        if len(self.sink.items) != want:
            raise AssertionError(f"{len(self.sink.items) - want} events too many")
        self.check_events(range(self.events_checked, want))
        self.events_checked = want
        for side in ("ar", "aw"):
            extra = len(getattr(self.monitor, side)) - self.bursts_used[side]
            if extra:
                raise AssertionError(f"{extra} {side.upper()} bursts belong to no descriptor "
                                     f"(a rejected descriptor made traffic, or bursts repeat)")
        self.check_memories()
        self.check_counters()

    def check_counters(self):
        rejected = sum(1 for _, _, s in self.order if s in REJECTIONS)
        moved = self.bytes_moved % (1 << 32)
        got = self.counters()
        want = {"descs_done": len(self.order) - rejected, "descs_rejected": rejected,
                "bytes_read": moved, "bytes_written": moved}
        bad = {k: (got[k], v) for k, v in want.items() if got[k] != v}
        if bad:
            raise AssertionError(f"counters (got, want): {bad}")

    def check_events(self, indices):
        for k in indices:
            ev = unpack(self.event_layout, self.sink.items[k])
            key = (ev["queue"], ev["tag"])
            if key not in self.submitted:
                raise AssertionError(f"event {k}: {ev} names no descriptor in flight "
                                     f"(duplicate or corrupt)")
            desc, window = self.submitted.pop(key)
            status = self.reference(desc, window)
            if ev["status"] != status:
                raise AssertionError(f"event {k}: status {ev['status']:#x}, expected "
                                     f"{status.name} ({status:#x}) for {desc} window {window}")
            self.order.append((ev["queue"], ev["tag"], status))
            if status not in REJECTIONS:
                self.bytes_moved += desc.total_bytes
            self.check_bus(k, desc, window, status)

    def reference(self, desc, window):
        """Apply ``desc`` to the reference memories; its expected status. Poisoned (SLVERR) and
        unmapped (DECERR) HBM bus words read as zeros and are not written; ECC-flagged TSRAM words
        move as they are (ECC_UNCORRECTABLE). The benches give a descriptor one error source at
        most (which of two would come first is a matter of timing)."""
        faults = ([(a, b, ErrorCode.AXI_SLVERR) for a, b in self.ram.mem.poison]
                  + [(a, b, ErrorCode.AXI_DECERR) for a, b in self.ram.mem.unmapped])
        h2t = desc.direction == H2T
        src, dst = (self.ref_hbm, self.ref_tsram) if h2t else (self.ref_tsram, self.ref_hbm)
        if h2t and faults:
            src = bytearray(src)
            for a, b, _ in faults:
                src[a:b] = bytes(b - a)
        kept = [(a, bytes(self.ref_hbm[a:b])) for a, b, _ in faults]
        status = dma_reference(desc, src, dst, hbm_addr_bits=self.addr_bits, window=window,
                               tsram_bytes=self.tsram_bytes)
        if status is not ErrorCode.OK:
            return status
        for a, old in kept:
            self.ref_hbm[a:a + len(old)] = old
        n = desc.row_bytes
        errors = {code for r in desc.rows("hbm") for a, b, code in faults if r < b and a < r + n}
        bb = self.bank_bytes
        if not h2t and self.tsram and self.tsram.ecc_bad and any(
                w in self.tsram.ecc_bad for r in desc.rows("tsram")
                for w in range(r // bb, (r + n - 1) // bb + 1)):
            errors.add(ErrorCode.ECC_UNCORRECTABLE)
        if len(errors) > 1:
            raise ValueError(f"bench error: {desc} meets several error sources {errors}")
        return errors.pop() if errors else status

    def expected_bursts(self, desc):
        """The AXI bursts (address, len) of ``desc`` (docs/dma.md): the HBM runs (the rows of a
        plane are one run when ``hbm_stride1`` = row bytes or there is one row a plane; all
        planes are one run when, besides, ``hbm_stride2`` = the plane's length or there is one
        plane), each cut at aligned boundaries of the smaller of 4 KiB and 256 beats."""
        wb = self.wb
        split = min(4096, 256 * wb)
        n, c1, c2 = desc.row_bytes, desc.count1, desc.count2
        plane = (c1 - 1) * desc.hbm_stride1 + n
        rows_joined = desc.hbm_stride1 == n or c1 == 1
        if rows_joined and (desc.hbm_stride2 == plane or c2 == 1):
            runs = [(desc.hbm_addr, c2 * plane)]
        elif rows_joined:
            runs = [(desc.hbm_addr + i2 * desc.hbm_stride2, plane) for i2 in range(c2)]
        else:
            runs = [(row, n) for row in desc.rows("hbm")]
        bursts = []
        for row, run in runs:
            addr, left = row, run
            while left:
                piece = min(left, split - addr % split)
                bursts.append((addr, (addr % wb + piece - 1) // wb))
                addr += piece
                left -= piece
        return bursts

    def check_bus(self, k, desc, window, status):
        """Bus traffic of event ``k``'s descriptor. Bursts are matched in order against the
        expected list: a read descriptor may issue its ARs before the read ahead of it has its
        event (docs/dma.md), so AR and AW handshakes are taken from a cursor, not by event
        count; W beats (writes run alone) are attributed by event count."""
        ws = [b for b in self.monitor.w if b[0] == k]
        if status in REJECTIONS:
            if ws:
                raise AssertionError(f"rejected descriptor ({status.name}) {desc} made bus "
                                     f"traffic: {len(ws)} W")
            return
        first, last = descriptor_extent(desc, "hbm")
        wb = self.wb
        size_code = wb.bit_length() - 1
        h2t = desc.direction == H2T
        side = "ar" if h2t else "aw"
        log = getattr(self.monitor, side)
        want = self.expected_bursts(desc)
        bursts = log[self.bursts_used[side]:self.bursts_used[side] + len(want)]
        self.bursts_used[side] += len(want)
        got = [(addr, alen) for _, addr, alen, _, _ in bursts]
        if bursts and bursts[0][0] < k:
            self.early_descs += 1      # its first burst went out before the previous event
        if got != want:
            raise AssertionError(f"{desc}: {side.upper()} bursts {got[:8]} (of {len(got)}), "
                                 f"expected {want[:8]} (of {len(want)})")
        if h2t and ws:
            raise AssertionError(f"{desc}: traffic on the other direction's channels")
        covered = 0
        for _, addr, alen, size, burst in bursts:
            beats = alen + 1
            end = (addr // wb + beats) * wb      # one past the last byte of the last beat
            if size != size_code or burst != 1:
                raise AssertionError(f"burst at {addr:#x}: size {size}, burst {burst}")
            if addr // 4096 != (end - 1) // 4096:
                raise AssertionError(f"burst at {addr:#x}, {beats} beats crosses 4 KiB")
            if addr < first or addr > last or addr < window[0]:
                raise AssertionError(f"burst at {addr:#x} outside the descriptor extent "
                                     f"[{first:#x}, {last:#x}] / window {window}")
            if end - 1 > (last // wb + 1) * wb - 1 or end - 1 > (window[1] // wb + 1) * wb - 1:
                raise AssertionError(f"burst at {addr:#x}, {beats} beats ends past the extent "
                                     f"[{first:#x}, {last:#x}] / window {window}")
            covered += end - addr
        if covered < desc.total_bytes:
            raise AssertionError(f"{desc}: bursts cover {covered} bytes, fewer than "
                                 f"{desc.total_bytes}")
        if desc.direction == T2H:
            lasts = [wl for _, wl, _ in ws]
            expect = []
            for _, _, alen, _, _ in bursts:
                expect += [0] * alen + [1]
            if lasts != expect:
                raise AssertionError(f"{desc}: W beats / wlast {lasts[:40]} do not match "
                                     f"the bursts' lengths {[b[2] + 1 for b in aws][:20]}")

    def check_memories(self):
        pairs = [("HBM", self.ram.mem, self.ref_hbm)]
        if self.tsram:
            pairs.append(("TSRAM", self.tsram.mem, self.ref_tsram))
        for name, got, want in pairs:
            if bytes(got) != bytes(want):
                diff = [i for i in range(len(want)) if got[i] != want[i]]
                raise AssertionError(f"{name}: {len(diff)} bytes differ from the reference, "
                                     f"first at {diff[0]:#x} (got {got[diff[0]]:#04x}, "
                                     f"want {want[diff[0]]:#04x}); last at {diff[-1]:#x}")

    def counters(self):
        names = ("busy_cycles", "axi_stall_cycles", "tsram_stall_cycles", "bytes_read",
                 "bytes_written", "descs_done", "descs_rejected")
        return {n: int(getattr(self.dut, n).value) for n in names}


def _tags():
    tag = 0
    while True:
        yield tag
        tag = (tag + 1) % 256


async def _setup(dut):
    bench = Bench(dut, bench_params())
    await bench.start()
    return bench


def _contiguous(bench, direction, length, hbm_off, ts_off, tag):
    hbm = bench.rng.randrange(0, bench.hbm_bytes - length - 64) // 64 * 64 + hbm_off
    ts = bench.rng.randrange(0, bench.tsram_bytes - length - 64 + 1) // 64 * 64 + ts_off
    return DmaDescriptor.contiguous(direction, hbm, ts, length, tag=tag)


@cocotb.test()
async def contiguous(dut):
    """Lengths x HBM offsets (TSRAM offsets random), both directions, random pauses."""
    bench = await _setup(dut)
    p = bench.p
    tags = _tags()
    batch = 0
    for direction in (H2T, T2H):
        for length in p["lengths"]:
            for off in p["offsets"]:
                ts_off = bench.rng.randrange(64)
                bench.submit(bench.rng.randrange(bench.queues),
                             _contiguous(bench, direction, length, off, ts_off, next(tags)))
                batch += 1
                if batch == 16:
                    await bench.drain()
                    batch = 0
    await bench.drain()
    dut._log.info("contiguous: %d descriptors, counters %s", len(bench.order), bench.counters())


def strided_cases(bench):
    """2D and 3D patterns, both directions, including the 64 x 64 tile of a 4096-wide matrix."""
    rng = bench.rng
    cases = []
    tile_rows = min(64, (bench.hbm_bytes - 64) // 4096)
    for direction in (H2T, T2H):
        cases.append(DmaDescriptor(direction=direction, hbm_addr=4096 * 0 + 128,
                                   tsram_addr=0, count0=64, count1=tile_rows,
                                   hbm_stride1=4096, tsram_stride1=64))
        for _ in range(6):
            es = rng.choice((1, 2, 4))
            c0 = rng.randint(1, 48)
            c1 = rng.randint(1, 9)
            c2 = rng.randint(1, 4)
            row = c0 * es
            hs1 = row + rng.randrange(0, 200)
            hs2 = hs1 * c1 + rng.randrange(0, 300)
            ts1 = row + rng.randrange(0, 40)
            ts2 = ts1 * c1 + rng.randrange(0, 60)
            if rng.random() < 0.3:
                ts1 = row          # packed on the TSRAM side
                ts2 = row * c1
            span_h = (c2 - 1) * hs2 + (c1 - 1) * hs1 + row
            span_t = (c2 - 1) * ts2 + (c1 - 1) * ts1 + row
            if span_t > bench.tsram_bytes or span_h > bench.hbm_bytes:
                continue
            cases.append(DmaDescriptor(
                direction=direction, elem_size=es, count0=c0, count1=c1, count2=c2,
                hbm_addr=rng.randrange(bench.hbm_bytes - span_h + 1), hbm_stride1=hs1,
                hbm_stride2=hs2, tsram_addr=rng.randrange(bench.tsram_bytes - span_t + 1),
                tsram_stride1=ts1, tsram_stride2=ts2))
        # A row crossing a 4 KiB boundary in every row, rows overlapping on the HBM side.
        cases.append(DmaDescriptor(direction=direction, hbm_addr=4096 - 40, tsram_addr=3,
                                   count0=100, count1=3, count2=2, hbm_stride1=4096,
                                   hbm_stride2=8192 + 17, tsram_stride1=101,
                                   tsram_stride2=333))
        cases.append(DmaDescriptor(direction=direction, hbm_addr=1000, tsram_addr=500,
                                   count0=30, count1=5, hbm_stride1=7, tsram_stride1=30))
        # HBM rows without gaps, walked as one run (docs/dma.md): the rows of each plane; all
        # planes, across a 4 KiB boundary; one row a plane; scattered on the TSRAM side.
        cases.append(DmaDescriptor(direction=direction, hbm_addr=2 * 4096 + 3, tsram_addr=11,
                                   count0=8, count1=40, count2=3, hbm_stride1=8,
                                   hbm_stride2=1000, tsram_stride1=24, tsram_stride2=1001))
        cases.append(DmaDescriptor(direction=direction, hbm_addr=3 * 4096 - 500,
                                   tsram_addr=1, elem_size=4, count0=2, count1=200, count2=3,
                                   hbm_stride1=8, hbm_stride2=1600, tsram_stride1=13,
                                   tsram_stride2=3000))
        cases.append(DmaDescriptor(direction=direction, hbm_addr=5 * 4096 - 7, tsram_addr=64,
                                   count0=33, count1=1, count2=10, hbm_stride1=5,
                                   hbm_stride2=33, tsram_stride2=40))
    return cases


@cocotb.test()
async def strided(dut):
    bench = await _setup(dut)
    tags = _tags()
    for desc in strided_cases(bench):
        desc = DmaDescriptor(**{**desc.__dict__, "tag": next(tags)})
        bench.submit(bench.rng.randrange(bench.queues), desc)
        await bench.drain()
    dut._log.info("strided: %d descriptors, counters %s", len(bench.order), bench.counters())


def protection_cases(bench):
    """(descriptor, window) pairs: each rejection, each edge just inside and just outside."""
    wb = bench.wb
    base, limit = 8192 + 3 * wb, 8192 + 40 * wb - 1     # bus-word aligned window
    win = (base, limit)
    n = limit - base + 1
    D = DmaDescriptor
    h2t = H2T
    a = bench.addr_bits
    cases = [
        (D.contiguous(h2t, base, 0, n), win),                       # exactly the window: OK
        (D.contiguous(T2H, base, 0, n), win),
        (D.contiguous(h2t, base - 1, 0, n), win),                   # one byte below
        (D.contiguous(T2H, base, 0, n + 1), win),                   # one byte above
        (D.contiguous(T2H, limit, 0, 1), win),                      # last byte: OK
        (D.contiguous(T2H, limit + 1, 0, 1), win),                  # first byte past
        (D(direction=T2H, hbm_addr=base, tsram_addr=0, count0=16, count1=4,
           hbm_stride1=(n - 16) // 3 + 1), win),                    # last row one past
        (D(direction=T2H, hbm_addr=base, tsram_addr=0, count0=16, count1=4,
           hbm_stride1=(n - 16) // 3), win),                        # fits
        (D(direction=T2H, hbm_addr=base, tsram_addr=0, count0=4, count1=2, count2=2,
           hbm_stride1=8, hbm_stride2=n - 11), win),                # 3D: last byte one past
        (D.contiguous(T2H, base, 0, 0), win),                       # zero count0
        (D(direction=h2t, hbm_addr=base, tsram_addr=0, count0=4, count1=0), win),
        (D(direction=T2H, hbm_addr=base, tsram_addr=0, count0=4, count2=0), win),
        (D(direction=T2H, hbm_addr=base, tsram_addr=0, count0=4, elem_size=3), win),
        (D(direction=T2H, hbm_addr=base, tsram_addr=0, count0=4, elem_size=0), win),
        (D(direction=h2t, hbm_addr=base, tsram_addr=0, count0=4, elem_size=7), win),
        (D(direction=T2H, hbm_addr=base, tsram_addr=0, count0=4, count1=3,
           hbm_stride1=(1 << a) - 1), win),                         # HBM address overflow
        (D(direction=T2H, hbm_addr=(1 << a) - 2, tsram_addr=0, count0=4),
         (0, (1 << a) - 1)),                                        # wraps past the top
        (D(direction=h2t, hbm_addr=base, tsram_addr=0, count0=4, count1=2,
           tsram_stride1=(1 << 32) - 2), win),                      # TSRAM field overflow
        (D.contiguous(h2t, base, bench.tsram_bytes - 4, 5), win),   # TSRAM one past
        (D.contiguous(T2H, base, bench.tsram_bytes - 4, 4), win),   # TSRAM last bytes: OK
        (D(direction=h2t, hbm_addr=base, tsram_addr=0, count0=8, count1=2, count2=3,
           tsram_stride1=16, tsram_stride2=bench.tsram_bytes // 2), win),   # TSRAM 3D past
        (D(direction=T2H, hbm_addr=base + 5, tsram_addr=7, count0=3, elem_size=4,
           count1=3, hbm_stride1=40), win),                         # elem 4: OK
    ]
    return cases


@cocotb.test()
async def protection(dut):
    """Each rejection code; no bus traffic for it; the next descriptor still runs."""
    bench = await _setup(dut)
    tags = _tags()
    seen = set()
    for queue, (desc, window) in enumerate(protection_cases(bench), start=1):
        q = (queue - 1) % bench.queues
        windows = list(bench.windows)
        windows[q] = window
        bench.set_windows(windows)
        desc = DmaDescriptor(**{**desc.__dict__, "tag": next(tags)})
        bench.submit(q, desc)
        seen.add(bench.expected_status(desc, window))
        follow = _contiguous(bench, T2H if queue % 2 else H2T, 37, 5, 9, next(tags))
        follow = DmaDescriptor(**{**follow.__dict__,
                                  "hbm_addr": window[0] + 1 if window[1] - window[0] > 64
                                  else follow.hbm_addr})
        bench.submit(q, follow)
        await bench.drain()
    want = {ErrorCode.OK, ErrorCode.DESC_ZERO_COUNT, ErrorCode.DESC_STRIDE_OVERFLOW,
            ErrorCode.DESC_OUT_OF_WINDOW, ErrorCode.DESC_BAD_ELEMENT,
            ErrorCode.TSRAM_OUT_OF_RANGE}
    assert seen == want, f"cases cover {sorted(seen)}, not {sorted(want)}"
    counters = bench.counters()
    rejected = sum(1 for _, _, s in bench.order if s is not ErrorCode.OK)
    assert counters["descs_rejected"] == rejected, (counters, rejected)
    assert counters["descs_done"] == len(bench.order) - rejected, (counters, rejected)
    dut._log.info("protection: %d descriptors (%d rejected), counters %s", len(bench.order),
                  rejected, counters)


def random_descriptor(bench, rng, window, tag):
    es = rng.choice((1, 1, 2, 4))
    dims = rng.choice((1, 1, 2, 3))
    c0 = rng.choice((1, 2, 3, rng.randint(1, 16), rng.randint(1, 300) // es + 1))
    c1 = rng.randint(1, 6) if dims >= 2 else 1
    c2 = rng.randint(1, 4) if dims == 3 else 1
    row = c0 * es
    hs1 = row + rng.randrange(0, 100) if dims >= 2 else rng.randrange(0, 1000)
    hs2 = hs1 * c1 + rng.randrange(0, 100) if dims == 3 else rng.randrange(0, 1000)
    ts1 = row + rng.choice((0, 0, rng.randrange(0, 40)))
    ts2 = ts1 * c1 + rng.choice((0, rng.randrange(0, 40)))
    span_h = (c2 - 1) * hs2 + (c1 - 1) * hs1 + row
    span_t = (c2 - 1) * ts2 + (c1 - 1) * ts1 + row
    lo, hi = window
    r = rng.random()
    if r < 0.15:          # ends on the window's last byte, or one past it
        hbm = max(0, hi - span_h + 1 + rng.randint(0, 1))
    elif r < 0.25:        # starts on the window's first byte, or one before it
        hbm = max(0, lo - rng.randint(0, 1))
    else:
        hbm = rng.randint(max(0, lo - 8), max(lo, hi - span_h + 9))
    if rng.random() < 0.1:   # ends on the last TSRAM byte, or one past it
        ts = max(0, bench.tsram_bytes - span_t + rng.randint(0, 1))
    else:
        ts = rng.randrange(max(1, bench.tsram_bytes - span_t + 4))
    desc = DmaDescriptor(direction=rng.choice((H2T, T2H)), elem_size=es, count0=c0, count1=c1,
                         count2=c2, hbm_addr=hbm, hbm_stride1=hs1, hbm_stride2=hs2,
                         tsram_addr=ts, tsram_stride1=ts1, tsram_stride2=ts2, tag=tag)
    r = rng.random()
    if r < 0.04:
        desc = DmaDescriptor(**{**desc.__dict__, "elem_size": rng.choice((0, 3, 5, 6, 7))})
    elif r < 0.08:
        desc = DmaDescriptor(**{**desc.__dict__, rng.choice(("count0", "count1", "count2")): 0})
    elif r < 0.11:
        desc = DmaDescriptor(**{**desc.__dict__,
                                "hbm_stride2": (1 << bench.addr_bits) - rng.randint(1, 99),
                                "count2": 2})
    return desc


@cocotb.test()
async def random_mix(dut):
    """Random valid and invalid descriptors on every queue, random windows, random pauses."""
    bench = await _setup(dut)
    rng = bench.rng
    tags = _tags()
    count = bench.p.get("count", 60)
    wb = bench.wb
    done = 0
    while done < count:
        windows = []
        for _ in range(bench.queues):
            lo = rng.randrange(0, bench.hbm_bytes // 2) // wb * wb
            hi = (rng.randrange(lo + 64, bench.hbm_bytes) // wb + 1) * wb - 1
            windows.append((lo, min(hi, bench.hbm_bytes - 1)))
        bench.set_windows(windows)
        for _ in range(min(12, count - done)):
            q = rng.randrange(bench.queues)
            bench.submit(q, random_descriptor(bench, rng, windows[q], next(tags)))
            done += 1
        await bench.drain()
    statuses = {s.name for _, _, s in bench.order}
    dut._log.info("random_mix: %d descriptors, statuses %s, counters %s", len(bench.order),
                  sorted(statuses), bench.counters())
    if count >= 300:      # every code is then all but certain to come up
        want = {"OK", "DESC_OUT_OF_WINDOW", "DESC_ZERO_COUNT", "DESC_BAD_ELEMENT",
                "TSRAM_OUT_OF_RANGE"}
        assert want <= statuses, f"random mix hit only {sorted(statuses)}"


@cocotb.test()
async def roundtrip(dut):
    """Random patterns into the TSRAM, then random patterns out of it into HBM: checks the
    TSRAM through HBM alone, so it also runs against the real TileSram (``tsram_model`` false;
    its contents start as zeros)."""
    bench = await _setup(dut)
    rng = bench.rng
    tags = _tags()
    span = min(bench.tsram_bytes, 4096)
    for _ in range(bench.p.get("count", 6)):
        for direction in (H2T, T2H):
            for _ in range(3):
                c0, c1 = rng.randint(1, 100), rng.randint(1, 8)
                ts1 = c0 + rng.randrange(0, 30)
                while (c1 - 1) * ts1 + c0 > span:
                    c1 -= 1
                hs1 = c0 + rng.randrange(0, 300)
                desc = DmaDescriptor(direction=direction, count0=c0, count1=c1,
                                     tsram_addr=rng.randrange(span - (c1 - 1) * ts1 - c0 + 1),
                                     tsram_stride1=ts1,
                                     hbm_addr=rng.randrange(bench.hbm_bytes - c1 * hs1),
                                     hbm_stride1=hs1, tag=next(tags))
                bench.submit(rng.randrange(bench.queues), desc)
            await bench.drain()
    dut._log.info("roundtrip: %d descriptors, counters %s", len(bench.order), bench.counters())


@cocotb.test()
async def errors(dut):
    """SLVERR (poisoned HBM words in AxiRam) and DECERR (an unmapped HBM page) on reads and
    writes, and uncorrectable ECC on TSRAM reads: the descriptor completes with that status, its
    other bytes move, and the next descriptors run normally."""
    bench = await _setup(dut)
    rng = bench.rng
    tags = _tags()
    wb = bench.wb
    poison = [(0x4000, 0x4040), (0x9000 + 3 * wb, 0x9000 + 4 * wb)]
    bench.ram.mem.poison = tuple(poison)
    bench.ram.mem.unmapped = ((0xC000, 0xD000), (0xE000 + 5 * wb, 0xE000 + 6 * wb))
    bad_words = {0x7F0 // bench.bank_bytes, 0x1008 // bench.bank_bytes}
    bench.tsram.ecc_bad = bad_words
    direction_of = {}
    for _ in range(3):
        for direction in (H2T, T2H):
            # One error source a descriptor: which of two comes first is a matter of timing.
            # Each faulty one is followed by a clean one (same queue), which must run normally.
            clean_ts, clean_hbm = 0x2000 + rng.randrange(100), 0x3000 + rng.randrange(64)
            for hbm, ts in ((0x4000 - 50, clean_ts), (0x4020, clean_ts), (0x9000, clean_ts),
                            (clean_hbm, 0x800 - 20), (clean_hbm, 0x1000 + 5),
                            (0xC000 + rng.randrange(64), clean_ts),       # inside the page
                            (0xD000 - 24, clean_ts),      # first row ends on it, the rest not
                            (0xE000 + rng.randrange(2 * wb), clean_ts)):  # one unmapped word
                q = rng.randrange(bench.queues)
                for h in (hbm, clean_hbm):
                    desc = DmaDescriptor(direction=direction, hbm_addr=h, tsram_addr=ts,
                                         count0=rng.randint(8, 40), count1=rng.randint(1, 3),
                                         hbm_stride1=64, tsram_stride1=48, tag=next(tags))
                    direction_of[desc.tag] = direction
                    bench.submit(q, desc)
                    ts = clean_ts
            await bench.drain()
    statuses = {s for _, _, s in bench.order}
    want = {ErrorCode.OK, ErrorCode.AXI_SLVERR, ErrorCode.AXI_DECERR,
            ErrorCode.ECC_UNCORRECTABLE}
    assert statuses == want, f"statuses {sorted(statuses)}, expected {sorted(want)}"
    decerr = {direction_of[tag] for _, tag, s in bench.order if s is ErrorCode.AXI_DECERR}
    assert decerr == {H2T, T2H}, f"DECERR seen only for {sorted(decerr)}"
    dut._log.info("errors: %d descriptors, statuses %s", len(bench.order),
                  sorted(s.name for s in statuses))


@cocotb.test()
async def overlap(dut):
    """Read descriptors back to back, so each issues its ARs while the read ahead of it lands
    (docs/dma.md), with a slow TSRAM so the landing read trails: pairs of a clean read and a read
    with one poisoned (SLVERR) or unmapped (DECERR) word, in both orders, the faulty word at the
    start, middle or end. Each event must carry its own descriptor's status; most descriptors
    must have overlapped."""
    bench = await _setup(dut)
    rng = bench.rng
    tags = _tags()
    wb = bench.wb
    bench.ram.mem.poison = ((0x8000, 0x8000 + wb),)
    bench.ram.mem.unmapped = ((0xA000, 0xA000 + wb),)
    bench.tsram.pause = 0.6
    reads = 0
    for _ in range(6):
        for _ in range(8):
            bad = rng.choice((0x8000, 0xA000))
            count0 = rng.choice((wb, 3 * wb, 8 * wb))
            faulty = DmaDescriptor(direction=H2T, count0=count0,
                                   hbm_addr=bad - rng.choice((0, count0 // 2, count0 - wb)),
                                   tsram_addr=rng.randrange(0, 0x800), tag=next(tags))
            clean = DmaDescriptor(direction=H2T, count0=rng.randint(1, 512),
                                  hbm_addr=0x2000 + rng.randrange(0x1000),
                                  tsram_addr=0x1000 + rng.randrange(0x800), tag=next(tags))
            for desc in ((clean, faulty) if rng.random() < 0.5 else (faulty, clean)):
                bench.submit(0, desc)
                reads += 1
        await bench.drain()
    statuses = {s for _, _, s in bench.order}
    assert statuses == {ErrorCode.OK, ErrorCode.AXI_SLVERR, ErrorCode.AXI_DECERR}, statuses
    assert bench.early_descs >= reads // 2, \
        f"only {bench.early_descs} of {reads} reads issued ARs before the previous event"
    dut._log.info("overlap: %d reads, %d issued ahead of the previous event", reads,
                  bench.early_descs)


@cocotb.test()
async def throughput(dut):
    """No pauses: cycles from submitting a descriptor (or ``repeat`` copies of it, back to back
    through queue 0) to its (their last) event."""
    bench = await _setup(dut)
    bench.set_pauses(0.0)
    bench.tsram.latency = (1, 1)
    results = []
    tags = _tags()
    cases = bench.p.get("cases")
    if cases is None:
        cases = json.loads(Path(bench.p["cases_file"]).read_text())
    for case in cases:
        repeat = case.get("repeat", 1)
        start_cycle = bench.monitor.cycle
        before = len(bench.sink.items)
        for _ in range(repeat):
            desc = DmaDescriptor(**{**case["desc"], "tag": next(tags)})
            bench.submit(0, desc)
        while len(bench.sink.items) < before + repeat:
            await FallingEdge(dut.clk)
        cycles = bench.monitor.cycle - start_cycle
        await bench.drain()
        results.append({**case, "cycles": cycles, "bytes": desc.total_bytes * repeat})
    path = Path(os.environ.get("OPENMAIA_RUN_DIR", ".")) / "throughput.json"
    path.write_text(json.dumps(results))
    await Timer(1, unit="ns")
