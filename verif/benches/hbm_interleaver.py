"""cocotb bench of :class:`openmaia.hbm.interleaver.HbmInterleaver` (docs/interconnect.md).

Bus models: a cocotbext-axi ``AxiMaster`` on ``s_axi_``, one ``AxiRam`` per channel on
``m_axi__<c>_``, random pause generators on all five channels of each.

Test ``random_bursts``: ``workers`` concurrent coroutines, each owning a disjoint slice of the
flat space, run bursts of every length 1..``max_beats`` beats (once as a write, once as a read)
and ``extra`` random ones, at random offsets (unaligned first / last bytes, crossing granule
boundaries, never 4 KiB), a share of them with a narrow AxSIZE. Writes go to a flat byte-array
model; reads must equal it. At the end each channel RAM must equal the flat model through
:class:`~openmaia.hbm.interleaver.InterleaveMap` (every byte where the map says, nothing else
written); the per-channel ``sub_reads`` / ``sub_writes`` counters must equal the AR / AW
handshakes seen on each ``m_axi`` port, and their totals the number of granules touched by
the bursts seen on ``s_axi`` (the split the contract requires). cocotbext-axi's master itself checks RLAST (on the
last beat of each burst only) and the IDs of R and B.

Test ``errors``: a range of channel 1's RAM (or channel 0 with one channel) fails every access
(AxiRam answers SLVERR): writes and reads whose bursts touch it must answer SLVERR (one B per
burst, the worst of its sub-bursts), the others OKAY, and the traffic goes on.

Parameters (:func:`openmaia.harness.bench_params`): ``channels``, ``granule_bytes``, ``fold``,
``addr_width``, ``data_bytes``, ``flat_bytes``, ``workers``, ``max_beats``, ``extra``,
``narrow`` (share of narrow bursts), ``pause``.
"""

import json
import os
import random
from pathlib import Path

import cocotb
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from cocotb.triggers import FallingEdge, RisingEdge
from cocotbext.axi import AxiBus, AxiMaster, AxiRam
from openmaia.benches.axi_arbiter import counter, reset, set_pauses
from openmaia.harness import bench_params
from openmaia.hbm.interleaver import InterleaveMap

PAGE = 4096


def interleave_map(prm):
    return InterleaveMap(channels=prm["channels"], granule_bytes=prm["granule_bytes"],
                         addr_width=prm["addr_width"], fold=prm["fold"])


def granules(addr, length, granule, size_bytes):
    """Granules a burst touches: ``length`` bytes of beats of ``size_bytes`` from ``addr``
    aligned down to the beat size (the sub-bursts the interleaver must make of it)."""
    first = addr - addr % size_bytes
    last = first + length - 1
    return last // granule - first // granule + 1


class Poisoned(bytearray):
    """Channel memory whose range ``bad`` fails every access (AxiRam then answers SLVERR)."""

    bad = None

    def _check(self, key):
        if self.bad and isinstance(key, slice):
            lo, hi, _ = key.indices(len(self))
            if lo < self.bad[1] and self.bad[0] < hi:
                raise OSError(f"poisoned {lo:#x}..{hi:#x}")

    def __getitem__(self, key):
        self._check(key)
        return super().__getitem__(key)

    def __setitem__(self, key, value):
        self._check(key)
        super().__setitem__(key, value)


async def setup(dut, prm, rng, mems=None):
    await reset(dut)
    return await setup_rams(dut, prm, rng, mems)


async def setup_rams(dut, prm, rng, mems=None):
    p = prm["channels"]
    chan_bytes = prm["flat_bytes"] // p
    rams = [AxiRam(AxiBus.from_prefix(dut, f"m_axi__{c}_"), dut.clk, dut.rst, size=chan_bytes,
                   **({"mem": mems[c]} if mems else {})) for c in range(p)]
    master = AxiMaster(AxiBus.from_prefix(dut, "s_axi_"), dut.clk, dut.rst)
    set_pauses(rng, prm["pause"], master, *rams)
    return master, rams


def burst(rng, base, span, beats, data_bytes, size_bytes):
    """(addr, length) of a burst of ``beats`` beats of ``size_bytes`` inside ``[base, base +
    span)``, random unaligned ends, not crossing 4 KiB."""
    total = beats * size_bytes
    if total > PAGE or total > span:
        raise ValueError(f"a burst of {total} bytes cannot fit in {span} bytes without "
                         f"crossing 4 KiB")
    while True:
        lead = rng.randrange(size_bytes)
        trail = rng.randrange(size_bytes) if total - lead > 1 else 0
        length = max(1, total - lead - trail)
        start = base + rng.randrange(0, span - total, size_bytes) + lead
        if start // PAGE == (start + length - 1) // PAGE:
            return start, length


@cocotb.test()
async def random_bursts(dut):
    prm = bench_params()
    rng = random.Random(cocotb.RANDOM_SEED)
    mp = interleave_map(prm)
    p, db, flat = prm["channels"], prm["data_bytes"], prm["flat_bytes"]
    master, rams = await setup(dut, prm, rng)
    model = bytearray(rng.getrandbits(8) for _ in range(flat))
    for c, ram in enumerate(rams):
        chan = bytearray(flat // p)
        for a in range(flat):
            ch, ca = mp.map(a)
            if ch == c:
                chan[ca] = model[a]
        ram.write(0, bytes(chan))

    handshakes = {"ar": [0] * p, "aw": [0] * p}
    running = [True]

    parents = {"ar": [], "aw": []}

    async def monitor():
        while running[0]:
            await RisingEdge(dut.clk)
            for ch in ("ar", "aw"):
                if (int(getattr(dut, f"s_axi__{ch}valid").value)
                        and int(getattr(dut, f"s_axi__{ch}ready").value)):
                    parents[ch].append((int(getattr(dut, f"s_axi__{ch}addr").value),
                                        int(getattr(dut, f"s_axi__{ch}len").value) + 1,
                                        1 << int(getattr(dut, f"s_axi__{ch}size").value)))
                for c in range(p):
                    if (int(getattr(dut, f"m_axi__{c}__{ch}valid").value)
                            and int(getattr(dut, f"m_axi__{c}__{ch}ready").value)):
                        handshakes[ch][c] += 1

    cocotb.start_soon(monitor())
    jobs = [(kind, beats) for beats in range(1, prm["max_beats"] + 1) for kind in ("w", "r")]
    jobs += [(rng.choice("wr"), rng.randint(1, prm["max_beats"])) for _ in range(prm["extra"])]
    rng.shuffle(jobs)
    span = flat // prm["workers"]
    full = db.bit_length() - 1

    async def worker(k, wrng):
        base = k * span
        while jobs:
            kind, beats = jobs.pop()
            size = wrng.randrange(full) if full and wrng.random() < prm["narrow"] else full
            beats = min(beats, PAGE >> size, span >> size)
            addr, length = burst(wrng, base, min(span, PAGE * 2), beats, db, 1 << size)
            if kind == "w":
                payload = bytes(wrng.getrandbits(8) for _ in range(length))
                resp = await master.write(addr, payload, size=size)
                assert int(resp.resp) == 0, f"write {addr:#x}+{length}: {resp.resp}"
                model[addr:addr + length] = payload
            else:
                resp = await master.read(addr, length, size=size)
                assert int(resp.resp) == 0, f"read {addr:#x}+{length}: {resp.resp}"
                want = bytes(model[addr:addr + length])
                assert resp.data == want, (f"read {addr:#x}+{length} (size {1 << size}): got "
                                           f"{resp.data.hex()} want {want.hex()}")

    tasks = [cocotb.start_soon(worker(k, random.Random(rng.getrandbits(32))))
             for k in range(prm["workers"])]
    for t in tasks:
        await t
    for _ in range(10):
        await RisingEdge(dut.clk)
    running[0] = False
    await FallingEdge(dut.clk)
    chans = [ram.read(0, flat // p) for ram in rams]
    bad = []
    for a in range(flat):
        ch, ca = mp.map(a)
        if chans[ch][ca] != model[a]:
            bad.append((a, ch, ca))
    assert not bad, (f"{len(bad)} bytes differ from the flat model through the map; first: "
                     f"flat {bad[0][0]:#x} -> channel {bad[0][1]} address {bad[0][2]:#x}")
    # stats: busy, stall_in, stall_out, sub_reads[p], sub_writes[p]
    for j, ch in enumerate(("ar", "aw")):
        counts = [counter(dut, 32 * (3 + j * p + c)) for c in range(p)]
        assert counts == handshakes[ch], f"{ch} sub-burst counters {counts} != {handshakes[ch]}"
        expected = sum(granules(a, n * size, prm["granule_bytes"], size) if p > 1 else 1
                       for a, n, size in parents[ch])
        assert sum(counts) == expected, (f"{ch}: {sum(counts)} sub-bursts for "
                                         f"{len(parents[ch])} bursts touching {expected} "
                                         f"granules")
    dut._log.info("interleaver: %d jobs, sub-bursts AR %s AW %s, busy %d stall_in %d "
                  "stall_out %d", 2 * prm["max_beats"] + prm["extra"], handshakes["ar"],
                  handshakes["aw"], counter(dut, 0), counter(dut, 32), counter(dut, 64))


@cocotb.test()
async def errors(dut):
    prm = bench_params()
    rng = random.Random(cocotb.RANDOM_SEED)
    mp = interleave_map(prm)
    p, db, flat = prm["channels"], prm["data_bytes"], prm["flat_bytes"]
    mems = [Poisoned(flat // p) for _ in range(p)]
    bad_ch = 1 if p > 1 else 0
    g = prm["granule_bytes"]
    mems[bad_ch].bad = (4 * g, 6 * g)
    master, _ = await setup(dut, prm, rng, mems)

    def touches_bad(addr, length):
        first = addr - addr % db
        return any(mp.map(a)[0] == bad_ch and mems[bad_ch].bad[0] <= mp.map(a)[1]
                   < mems[bad_ch].bad[1] for a in range(first, addr + length, min(g, db)))

    hits = {True: 0, False: 0}
    for _ in range(prm.get("error_ops", 60)):
        beats = rng.randint(1, min(prm["max_beats"], PAGE // db))
        addr, length = burst(rng, 0, min(flat, 32 * g + 2 * beats * db), beats, db, db)
        expect_err = touches_bad(addr, length)
        hits[expect_err] += 1
        if rng.random() < 0.5:
            resp = await master.write(addr, bytes(length))
        else:
            resp = await master.read(addr, length)
        want = 2 if expect_err else 0
        assert int(resp.resp) == want, (f"burst {addr:#x}+{length}: response {resp.resp}, "
                                        f"want {want}")
    assert hits[True] and hits[False], f"bursts with / without the bad range: {hits}"


class InterleavedHbm(wiring.Component):
    """Bench top: :class:`~openmaia.hbm.interleaver.HbmInterleaver` in front of an
    :class:`~openmaia.hbm.controller.HbmController` with as many pseudo-channels; ports
    ``s_axi`` and the interleaver's ``stats``."""

    def __init__(self, interleaver, controller):
        if interleaver.channels != controller.pseudo_channels:
            raise ValueError("the interleaver and the controller disagree on the channels")
        self.interleaver, self.controller = interleaver, controller
        super().__init__({"s_axi": In(interleaver.sig),
                          "stats": Out(interleaver.signature.members["stats"].shape)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.interleaver = il = self.interleaver
        m.submodules.hbm = hbm = self.controller
        wiring.connect(m, wiring.flipped(self.s_axi), il.s_axi)
        for c in range(il.channels):
            wiring.connect(m, il.m_axi[c], hbm.s_axi[c])
        m.d.comb += self.stats.eq(il.stats)
        return m


@cocotb.test(skip="ops" not in bench_params())
async def throughput(dut):
    """Sequential transfers, no pauses: ``ops`` = [[kind, bytes, count], ...] run one after
    another (each group: ``count`` transfers of ``bytes`` at consecutive addresses, all queued
    at once so the master keeps issuing); the bytes a cycle of each group (first address
    handshake to the last R beat / B) go to ``throughput.json`` in the run folder."""
    prm = bench_params()
    rng = random.Random(cocotb.RANDOM_SEED)
    await reset(dut)
    if prm.get("rams", True):
        prm["pause"] = 0
        master, _ = await setup_rams(dut, prm, rng)
    else:
        master = AxiMaster(AxiBus.from_prefix(dut, "s_axi_"), dut.clk, dut.rst)
        set_pauses(rng, 0, master)
    cycle = [0]

    async def clock():
        while True:
            await RisingEdge(dut.clk)
            cycle[0] += 1

    cocotb.start_soon(clock())
    results = []
    addr = prm.get("base", 0)
    for kind, nbytes, count in prm["ops"]:
        first = [None]

        async def watch(kind=kind, first=first):
            ch = "ar" if kind == "r" else "aw"
            while first[0] is None:
                await RisingEdge(dut.clk)
                if (int(getattr(dut, f"s_axi__{ch}valid").value)
                        and int(getattr(dut, f"s_axi__{ch}ready").value)):
                    first[0] = cycle[0]

        watcher = cocotb.start_soon(watch())
        if kind == "w":
            tasks = [cocotb.start_soon(master.write(addr + k * nbytes, bytes(nbytes)))
                     for k in range(count)]
        else:
            tasks = [cocotb.start_soon(master.read(addr + k * nbytes, nbytes))
                     for k in range(count)]
        for t in tasks:
            resp = await t
            assert int(resp.resp) == 0, f"{kind} response {resp.resp}"
        end = cycle[0]
        watcher.cancel()
        total = nbytes * count
        results.append({"kind": kind, "bytes": total, "cycles": end - first[0],
                        "bytes_per_cycle": round(total / (end - first[0]), 3)})
        dut._log.info("%s %d x %d B: %d cycles, %.2f B/cycle", kind, count, nbytes,
                      end - first[0], total / (end - first[0]))
        addr += total
        for _ in range(20):
            await RisingEdge(dut.clk)
    run_dir = Path(os.environ.get("OPENMAIA_RUN_DIR", "."))
    (run_dir / "throughput.json").write_text(json.dumps(results))
