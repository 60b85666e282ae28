"""cocotb bench of :class:`openmaia.bus.axi_arbiter.AxiArbiter` (contract: docs/interconnect.md).

Bus models: one cocotbext-axi ``AxiMaster`` per ``s_axi__<i>_`` port, one ``AxiRam`` on
``m_axi_``, random pause generators on all five channels of every one of them.

Test ``random_traffic``: every manager runs ``workers`` concurrent coroutines, each owning a
disjoint slice of the memory, doing random writes and reads (random length 1..``max_bytes``,
random offset, so unaligned first and last beats and bursts up to 256 beats). Every write is
applied to a byte-array model; every read must return the model's bytes and OKAY. At the end
the whole AxiRam must equal the model (nothing lost, duplicated or misplaced: a W beat sent
to the wrong burst lands at the wrong address). A monitor counts the AR / AW handshakes on each
``s_axi`` port and the bench checks the ``stats`` grant counters against them.

Parameters (:func:`openmaia.harness.bench_params`): ``managers``, ``id_width``,
``data_bytes``, ``region`` (bytes a worker owns), ``workers``, ``ops`` (a worker),
``max_bytes``, ``pause`` (probability, every channel).
"""

import logging
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge
from cocotbext.axi import AxiBus, AxiMaster, AxiRam
from openmaia.harness import bench_params

CLOCK_NS = 10


def pauses(rng, p):
    while True:
        yield rng.random() < p


def set_pauses(rng, p, *interfaces):
    """A random pause generator on every channel of AxiMaster / AxiRam ``interfaces``."""
    for itf in interfaces:
        for side in (itf.write_if, itf.read_if):
            side.log.setLevel(logging.WARNING)
            for name in ("aw_channel", "w_channel", "b_channel", "ar_channel", "r_channel"):
                ch = getattr(side, name, None)
                if ch is not None and p:
                    ch.set_pause_generator(pauses(rng, p))


async def reset(dut):
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    dut.rst.value = 1
    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def counter(dut, offset):
    return (dut.stats.value.to_unsigned() >> offset) & 0xFFFFFFFF


@cocotb.test()
async def random_traffic(dut):
    prm = bench_params()
    rng = random.Random(cocotb.RANDOM_SEED)
    n, region, workers = prm["managers"], prm["region"], prm["workers"]
    size = n * workers * region
    await reset(dut)
    ram = AxiRam(AxiBus.from_prefix(dut, "m_axi_"), dut.clk, dut.rst, size=size)
    masters = [AxiMaster(AxiBus.from_prefix(dut, f"s_axi__{i}_"), dut.clk, dut.rst)
               for i in range(n)]
    set_pauses(rng, prm["pause"], ram, *masters)
    model = bytearray(size)
    ram.write(0, bytes(size))
    handshakes = {"ar": [0] * n, "aw": [0] * n}
    running = [True]

    async def monitor():
        while running[0]:
            await RisingEdge(dut.clk)
            for i in range(n):
                for ch in ("ar", "aw"):
                    if (int(getattr(dut, f"s_axi__{i}__{ch}valid").value)
                            and int(getattr(dut, f"s_axi__{i}__{ch}ready").value)):
                        handshakes[ch][i] += 1

    cocotb.start_soon(monitor())
    stats = {"reads": 0, "writes": 0, "bytes": 0}

    async def worker(i, k, wrng):
        base = (i * workers + k) * region
        for _ in range(prm["ops"]):
            length = wrng.randint(1, min(prm["max_bytes"], region))
            addr = base + wrng.randrange(region - length + 1)
            if wrng.random() < 0.5:
                payload = bytes(wrng.getrandbits(8) for _ in range(length))
                resp = await masters[i].write(addr, payload)
                assert int(resp.resp) == 0, f"manager {i} write {addr:#x}: {resp.resp}"
                model[addr:addr + length] = payload
                stats["writes"] += 1
            else:
                resp = await masters[i].read(addr, length)
                assert int(resp.resp) == 0, f"manager {i} read {addr:#x}: {resp.resp}"
                want = bytes(model[addr:addr + length])
                assert resp.data == want, (f"manager {i} worker {k} read {addr:#x}+{length}: "
                                           f"got {resp.data.hex()} want {want.hex()}")
                stats["reads"] += 1
            stats["bytes"] += length

    tasks = [cocotb.start_soon(worker(i, k, random.Random(rng.getrandbits(32))))
             for i in range(n) for k in range(workers)]
    for t in tasks:
        await t
    for _ in range(10):
        await RisingEdge(dut.clk)
    running[0] = False
    await FallingEdge(dut.clk)
    got = ram.read(0, size)
    bad = [a for a in range(size) if got[a] != model[a]]
    assert not bad, (f"{len(bad)} bytes differ from the model, first at {bad[0]:#x}: "
                     f"{got[bad[0]]:#04x} != {model[bad[0]]:#04x}")
    # stats layout: busy, stall_out, w_wait, then ar_grants[n], aw_grants[n], ...
    for j, ch in enumerate(("ar", "aw")):
        for i in range(n):
            value = counter(dut, 32 * (3 + j * n + i))
            assert value == handshakes[ch][i], (f"{ch}_grants[{i}] = {value}, "
                                                f"{handshakes[ch][i]} handshakes seen")
    dut._log.info("arbiter: %d reads, %d writes, %d bytes, AR %s AW %s, busy %d cycles",
                  stats["reads"], stats["writes"], stats["bytes"], handshakes["ar"],
                  handshakes["aw"], counter(dut, 0))
