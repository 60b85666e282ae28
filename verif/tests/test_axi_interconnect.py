"""AxiArbiter (rtl/bus/axi_arbiter.py) and HbmInterleaver (rtl/hbm/interleaver.py): the address
map, Amaranth-simulator unit tests (splits, order, full rate, fault twins), lint, and cocotb +
Verilator benches (verif/benches/axi_arbiter.py, verif/benches/hbm_interleaver.py) with
cocotbext-axi models and random pauses on every channel. Contract: docs/interconnect.md.
"""


import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from openmaia.bus.axi import AxiBurst, AxiResp
from openmaia.bus.axi_arbiter import ARBITER_FAULTS, AxiArbiter
from openmaia.config import PRESETS
from openmaia.harness import simulate
from openmaia.harness.elaborate import lint
from openmaia.hbm.interleaver import (
    DEFAULT_GRANULE_BYTES,
    INTERLEAVER_FAULTS,
    HbmInterleaver,
    InterleaveMap,
)

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

ARB_BENCH = "openmaia.benches.axi_arbiter"
IL_BENCH = "openmaia.benches.hbm_interleaver"


# ---------------------------------------------------------------------------------------------
# The address map.

@pytest.mark.parametrize("channels", [1, 2, 4])
@pytest.mark.parametrize("fold", [False, True])
def test_map_inverse_and_bijection(channels, fold, rng):
    mp = InterleaveMap(channels=channels, granule_bytes=64, addr_width=14, fold=fold)
    seen = set()
    for a in range(1 << 14):
        ch, ca = mp.map(a)
        assert 0 <= ch < channels and 0 <= ca < (1 << 14) // channels
        assert mp.unmap(ch, ca) == a
        seen.add((ch, ca))
    assert len(seen) == 1 << 14
    big = InterleaveMap(channels=channels, addr_width=32, fold=fold)
    for _ in range(2000):
        a = rng.getrandbits(32)
        assert big.unmap(*big.map(a)) == a


@pytest.mark.parametrize("channels", [2, 4])
def test_map_granules_and_strides(channels):
    g = DEFAULT_GRANULE_BYTES
    mp = InterleaveMap(channels=channels, addr_width=32)
    # A granule stays in one channel, consecutive granules of an aligned group use every one.
    for base in range(0, 1 << 16, g * channels):
        chans = [mp.map(base + k * g)[0] for k in range(channels)]
        assert sorted(chans) == list(range(channels))
        for k in range(channels):
            assert len({mp.map(base + k * g + b)[0] for b in (0, 1, g // 2, g - 1)}) == 1
    # Power-of-two strides (tile rows of a wide matrix) spread over the channels with the fold,
    # and land in one channel without it.
    plain = InterleaveMap(channels=channels, addr_width=32, fold=False)
    for stride in (4096, 8192, 1 << 16):
        rows = [r * stride for r in range(16)]
        assert len({mp.map(a)[0] for a in rows}) == channels
        assert len({plain.map(a)[0] for a in rows}) == 1


def test_map_from_config_and_checks():
    mp = InterleaveMap.from_config(PRESETS["default"])
    assert (mp.channels, mp.granule_bytes, mp.addr_width) == (2, 256, 32)
    for bad in ({"channels": 3}, {"channels": 0}, {"channels": 2, "granule_bytes": 96},
                {"channels": 2, "granule_bytes": 8192}, {"channels": 2, "addr_width": 8}):
        with pytest.raises(ValueError):
            InterleaveMap(**bad)
    with pytest.raises(ValueError, match="data beat"):
        HbmInterleaver(channels=2, addr_width=32, data_width=256, id_width=2, granule_bytes=16)
    with pytest.raises(ValueError, match="order_depth"):
        HbmInterleaver(channels=2, addr_width=32, data_width=128, id_width=2, order_depth=1)
    with pytest.raises(ValueError, match="unknown faults"):
        HbmInterleaver(channels=2, addr_width=32, data_width=128, id_width=2, faults={"x"})
    for bad in ({"managers": 0}, {"managers": 2, "id_width": 0}, {"w_order_depth": 0},
                {"faults": {"x"}}):
        kw = {"managers": 2, "addr_width": 32, "data_width": 64, "id_width": 2} | bad
        with pytest.raises(ValueError):
            AxiArbiter(**kw)


class _MapRtl(wiring.Component):
    def __init__(self, mp):
        self.mp = mp
        super().__init__({"addr": In(mp.addr_width), "ch": Out(max(mp.channel_bits, 1)),
                          "ch_addr": Out(mp.addr_width)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.ch.eq(self.mp.channel_rtl(self.addr)),
                     self.ch_addr.eq(self.mp.channel_addr_rtl(self.addr))]
        return m


@pytest.mark.parametrize("channels,fold", [(2, True), (4, True), (4, False)])
def test_map_rtl_matches_python(channels, fold, rng):
    mp = InterleaveMap(channels=channels, granule_bytes=64, addr_width=24, fold=fold)
    dut = _MapRtl(mp)
    addrs = [rng.getrandbits(24) for _ in range(300)] + [1 << b for b in range(24)]

    async def tb(ctx):
        for a in addrs:
            ctx.set(dut.addr, a)
            assert (ctx.get(dut.ch), ctx.get(dut.ch_addr)) == mp.map(a), hex(a)

    sim = Simulator(dut)
    sim.add_testbench(tb)
    sim.run()


# ---------------------------------------------------------------------------------------------
# Amaranth-simulator unit tests: directed traffic, cycle by cycle.

def _run(dut, step, cycles):
    """Call ``step(ctx, cycle)`` every cycle (inputs set, outputs read after settling)."""
    async def tb(ctx):
        for cycle in range(cycles):
            step(ctx, cycle)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def _fire(ctx, bus, ch):
    return ctx.get(getattr(bus, ch + "valid")) and ctx.get(getattr(bus, ch + "ready"))


LATE_AW = {0: {"aw": 0, "w": 4}, 1: {"aw": 8, "w": 0}}


def _arbiter_w_order(faults=(), start=LATE_AW):
    """By default manager 1 offers W beats from cycle 0 but its AW only at cycle 8; manager 0
    sends AW at cycle 0 and W from cycle 4. Returns the (cycle, manager tag) of the W beats on
    m_axi and the manager order of the AW grants."""
    dut = AxiArbiter(managers=2, addr_width=16, data_width=32, id_width=1, faults=faults)
    w_tags, aw_tags = [], []
    sent = {0: {"aw": False, "w": 0}, 1: {"aw": False, "w": 0}}

    def step(ctx, cycle):
        for i, s in enumerate(dut.s_axi):
            ctx.set(s.awvalid, cycle >= start[i]["aw"] and not sent[i]["aw"])
            ctx.set(s.awlen, 3)
            k = sent[i]["w"]
            ctx.set(s.wvalid, cycle >= start[i]["w"] and k < 4)
            ctx.set(s.wdata, (i << 8) | k)
            ctx.set(s.wstrb, 0xF)
            ctx.set(s.wlast, k == 3)
        ctx.set(dut.m_axi.awready, 1)
        ctx.set(dut.m_axi.wready, 1)
        for i, s in enumerate(dut.s_axi):
            if _fire(ctx, s, "aw"):
                sent[i]["aw"] = True
            if _fire(ctx, s, "w"):
                sent[i]["w"] += 1
        if _fire(ctx, dut.m_axi, "aw"):
            aw_tags.append(ctx.get(dut.m_axi.awid) >> 1)
        if _fire(ctx, dut.m_axi, "w"):
            w_tags.append((cycle, ctx.get(dut.m_axi.wdata) >> 8))

    _run(dut, step, 40)
    return w_tags, aw_tags


def test_arbiter_w_follows_aw_order():
    w_tags, aw_tags = _arbiter_w_order()
    assert aw_tags == [0, 1]
    assert [t for _, t in w_tags] == [0] * 4 + [1] * 4


def test_arbiter_w_full_rate():
    """Both AWs and all W beats offered from cycle 0: the 8 W beats leave back to back, in
    the AW grant order (round-robin from manager 1 after reset)."""
    w_tags, aw_tags = _arbiter_w_order(start={0: {"aw": 0, "w": 0}, 1: {"aw": 0, "w": 0}})
    assert [t for _, t in w_tags] == [aw_tags[0]] * 4 + [aw_tags[1]] * 4
    cycles = [c for c, _ in w_tags]
    assert cycles == list(range(cycles[0], cycles[0] + 8)), f"W not back to back: {cycles}"
    assert cycles[0] <= 3, f"first W beat at cycle {cycles[0]}"


def test_arbiter_fault_w_ignores_order_is_caught():
    w_tags, _ = _arbiter_w_order(faults={"w_ignores_order"})
    assert [t for _, t in w_tags] != [0] * 4 + [1] * 4


@pytest.mark.parametrize("managers", [1, 3])
def test_arbiter_r_full_rate_and_routing(managers):
    """R beats for every manager (by the ID's top bits) arrive one a cycle and each reaches
    its manager with the low ID bits; AR requests from all managers are granted round-robin,
    one a cycle."""
    dut = AxiArbiter(managers=managers, addr_width=16, data_width=32, id_width=2)
    sb = dut.select_bits
    beats = [(k % managers, k % 4, 1000 + k) for k in range(24)]
    got, r_cycles, grants = [], [], []
    state = {"r": 0, "ar": [0] * managers}

    def step(ctx, cycle):
        k = state["r"]
        if k < len(beats):
            i, idl, d = beats[k]
            ctx.set(dut.m_axi.rvalid, 1)
            ctx.set(dut.m_axi.rid, (i << 2) | idl)
            ctx.set(dut.m_axi.rdata, d)
            ctx.set(dut.m_axi.rlast, 1)
        else:
            ctx.set(dut.m_axi.rvalid, 0)
        for i, s in enumerate(dut.s_axi):
            ctx.set(s.rready, 1)
            ctx.set(s.arvalid, state["ar"][i] < 4)
            ctx.set(s.araddr, i)
        ctx.set(dut.m_axi.arready, 1)
        if _fire(ctx, dut.m_axi, "r"):
            state["r"] += 1
        for i, s in enumerate(dut.s_axi):
            if _fire(ctx, s, "r"):
                got.append((i, ctx.get(s.rid), ctx.get(s.rdata)))
                r_cycles.append(cycle)
            if _fire(ctx, s, "ar"):
                state["ar"][i] += 1
        if _fire(ctx, dut.m_axi, "ar"):
            grants.append((cycle, ctx.get(dut.m_axi.arid) >> 2 if sb else 0,
                           ctx.get(dut.m_axi.araddr)))

    _run(dut, step, 40)
    assert got == beats
    assert r_cycles == list(range(r_cycles[0], r_cycles[0] + len(beats)))
    # Requests and beats are offered from cycle 0: AR latency 2 cycles, R 1 cycle.
    assert (grants[0][0], r_cycles[0]) == (2, 1)
    assert [g[1] for g in grants] == [g[2] for g in grants]
    assert sorted(g[1] for g in grants) == sorted(list(range(managers)) * 4)
    assert [g[0] for g in grants] == list(range(grants[0][0], grants[0][0] + len(grants)))
    if managers > 1:  # round-robin: each window of `managers` grants names every manager
        order = [g[1] for g in grants]
        for k in range(0, len(order), managers):
            assert sorted(order[k:k + managers]) == list(range(managers))


def _interleaver_burst(faults=(), channels=2, write=False, bad_channel=None):
    """One 16-beat INCR burst at 0x30 (16-byte beats, 64 B granules) through the interleaver,
    each channel an always-ready memory-less responder that answers in order (R data = channel
    address, B SLVERR from ``bad_channel``). Returns the sub-requests per channel, the beats
    on s_axi R (data, last), the cycles of those beats, the W beats per channel, the Bs and
    the cycles of the first address handshake in and out and of the first R beat in."""
    dut = HbmInterleaver(channels=channels, addr_width=16, data_width=128, id_width=2,
                         granule_bytes=64, faults=faults)
    subs = [[] for _ in range(channels)]
    pending = [[] for _ in range(channels)]
    wbeats = [[] for _ in range(channels)]
    rbeats, rcycles, bs = [], [], []
    st = {"a": False, "w": 0}
    lat = {"a": None, "sub": None, "r_in": None}

    def step(ctx, cycle):
        s = dut.s_axi
        ch = "aw" if write else "ar"
        ctx.set(getattr(s, ch + "valid"), not st["a"])
        ctx.set(getattr(s, ch + "addr"), 0x30)
        ctx.set(getattr(s, ch + "len"), 15)
        ctx.set(getattr(s, ch + "size"), 4)
        ctx.set(getattr(s, ch + "burst"), AxiBurst.INCR)
        ctx.set(getattr(s, ch + "id"), 2)
        ctx.set(s.wvalid, write and st["w"] < 16)
        ctx.set(s.wdata, st["w"])
        ctx.set(s.wstrb, 0xFFFF)
        ctx.set(s.rready, 1)
        ctx.set(s.bready, 1)
        for c, mc in enumerate(dut.m_axi):
            ctx.set(mc.arready, 1)
            ctx.set(mc.awready, 1)
            ctx.set(mc.wready, 1)
            head = pending[c][0] if pending[c] else None
            ctx.set(mc.rvalid, head is not None and not write)
            ctx.set(mc.bvalid, head is not None and write and head[2] == "done")
            if head is not None:
                ctx.set(mc.rid, head[0])
                ctx.set(mc.rdata, head[1])
                ctx.set(mc.rlast, head[3] == 0)
                ctx.set(mc.bid, head[0])
                ctx.set(mc.bresp, AxiResp.SLVERR if c == bad_channel else AxiResp.OKAY)
        if _fire(ctx, s, ch):
            st["a"] = True
            lat["a"] = cycle
        if _fire(ctx, s, "w"):
            st["w"] += 1
        if _fire(ctx, s, "r"):
            rbeats.append((ctx.get(s.rdata), ctx.get(s.rlast), ctx.get(s.rid)))
            rcycles.append(cycle)
        if _fire(ctx, s, "b"):
            bs.append((ctx.get(s.bid), ctx.get(s.bresp)))
        for c, mc in enumerate(dut.m_axi):
            if _fire(ctx, mc, ch):
                lat["sub"] = cycle if lat["sub"] is None else lat["sub"]
                a, n = ctx.get(getattr(mc, ch + "addr")), ctx.get(getattr(mc, ch + "len"))
                subs[c].append((a, n + 1))
                pending[c].append([ctx.get(getattr(mc, ch + "id")), a, "data", n])
            if _fire(ctx, mc, "w"):
                wbeats[c].append((ctx.get(mc.wdata), ctx.get(mc.wlast)))
                if ctx.get(mc.wlast):
                    next(p for p in pending[c] if p[2] == "data")[2] = "done"
            if _fire(ctx, mc, "r"):
                lat["r_in"] = cycle if lat["r_in"] is None else lat["r_in"]
                head = pending[c][0]
                head[1] += 16
                head[3] -= 1
                if head[3] < 0:
                    pending[c].pop(0)
            if _fire(ctx, mc, "b"):
                pending[c].pop(0)

    _run(dut, step, 60)
    return dut.map, subs, rbeats, rcycles, wbeats, bs, lat


def _expected_subs(mp, addr=0x30, beats=16, size=16):
    subs = [[] for _ in range(mp.channels)]
    a, left = addr, beats
    while left:
        n = min(left, (mp.granule_bytes - a % mp.granule_bytes) // size)
        ch, ca = mp.map(a)
        subs[ch].append((ca, n))
        a, left = a - a % size + n * size, left - n
    return subs


@pytest.mark.parametrize("channels", [2, 4])
def test_interleaver_read_split_order_full_rate(channels):
    mp, subs, rbeats, rcycles, _, _, lat = _interleaver_burst(channels=channels)
    assert subs == _expected_subs(mp)
    # R data is the channel address of each beat: back in flat order, RLAST once, ID kept.
    want = []
    for k in range(16):
        _, ca = mp.map(0x30 + 16 * k)
        want.append((ca, int(k == 15), 2))
    assert rbeats == want
    assert rcycles == list(range(rcycles[0], rcycles[0] + 16)), f"R not full rate: {rcycles}"
    # The contract's latencies: AR -> first sub-AR 2 cycles, R 1 cycle.
    assert lat["sub"] - lat["a"] == 2 and rcycles[0] - lat["r_in"] == 1, lat


def test_interleaver_write_split_and_worst_b():
    mp, subs, _, _, wbeats, bs, _ = _interleaver_burst(write=True, bad_channel=1)
    assert subs == _expected_subs(mp)
    got = {}
    for c in range(2):
        lens = [n for _, n in subs[c]]
        assert [last for _, last in wbeats[c]] == [int(k == n - 1) for n in lens
                                                   for k in range(n)]
        for (a, n), k0 in zip(subs[c], [sum(lens[:j]) for j in range(len(lens))]):
            for k in range(n):
                got[mp.unmap(c, a - a % 16 + 16 * k)] = wbeats[c][k0 + k][0]
    assert [got[0x30 - 0x30 % 16 + 16 * k] for k in range(16)] == list(range(16))
    assert bs == [(2, AxiResp.SLVERR)]


def test_interleaver_fault_no_split_is_caught():
    mp, subs, *_ = _interleaver_burst(faults={"no_split"})
    assert subs != _expected_subs(mp)


def test_interleaver_fault_rlast_each_sub_burst_is_caught():
    _, _, rbeats, *_ = _interleaver_burst(faults={"rlast_each_sub_burst"})
    assert sum(last for _, last, _ in rbeats) > 1


# ---------------------------------------------------------------------------------------------
# Lint.

@pytest.mark.parametrize("managers", [1, 3])
def test_lint_arbiter(managers):
    lint(AxiArbiter(managers=managers, addr_width=32, data_width=128, id_width=2),
         name=f"axi_arbiter_{managers}")


def test_lint_arbiter_default():
    cfg = PRESETS["default"]
    lint(AxiArbiter(managers=3, addr_width=cfg.axi_addr_bits, data_width=cfg.axi_data_bits,
                    id_width=cfg.axi_id_bits), name="axi_arbiter_default")


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_lint_interleaver(channels):
    lint(HbmInterleaver(channels=channels, addr_width=20, data_width=128, id_width=2,
                        granule_bytes=64), name=f"hbm_interleaver_{channels}")


def test_lint_interleaver_default():
    lint(HbmInterleaver.from_config(PRESETS["default"]), name="hbm_interleaver_default")


# ---------------------------------------------------------------------------------------------
# cocotb + Verilator.

def arbiter_params(managers=3, id_width=2, data_bytes=8, **extra):
    return {"managers": managers, "id_width": id_width, "data_bytes": data_bytes,
            "region": 4096, "workers": 2, "ops": 30, "max_bytes": 600, "pause": 0.3} | extra


def _arbiter(managers=3, faults=()):
    return AxiArbiter(managers=managers, addr_width=20, data_width=64, id_width=2,
                      faults=faults)


@pytest.mark.sim
def test_arbiter_cocotb_random_traffic():
    simulate(_arbiter(), bench=ARB_BENCH, name="axi_arbiter", params=arbiter_params())


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("managers", [1, 2, 4])
def test_arbiter_cocotb_slow(managers):
    simulate(_arbiter(managers), bench=ARB_BENCH, name="axi_arbiter",
             params=arbiter_params(managers, ops=150, workers=3))


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("fault", sorted(ARBITER_FAULTS))
def test_arbiter_cocotb_catches_fault(fault):
    result = simulate(_arbiter(faults={fault}), bench=ARB_BENCH, name="axi_arbiter",
                      params=arbiter_params(), check=False)
    assert result.tests and result.failed, f"{fault} was not caught (seed {result.seed})"


def interleaver_params(channels, *, granule_bytes=64, fold=True, data_bytes=16, **extra):
    return {"channels": channels, "granule_bytes": granule_bytes, "fold": fold,
            "addr_width": 20, "data_bytes": data_bytes, "flat_bytes": 1 << 15, "workers": 3,
            "max_beats": 32, "extra": 20, "narrow": 0.15, "pause": 0.3} | extra


def _interleaver(channels, granule_bytes=64, fold=True, data_width=128, faults=()):
    return HbmInterleaver(channels=channels, addr_width=20, data_width=data_width, id_width=2,
                          granule_bytes=granule_bytes, fold=fold, faults=faults)


@pytest.mark.sim
@pytest.mark.parametrize("channels", [pytest.param(1, marks=pytest.mark.slow), 2, 4])
def test_interleaver_cocotb_random_bursts(channels):
    simulate(_interleaver(channels), bench=IL_BENCH, name="hbm_interleaver",
             params=interleaver_params(channels))


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("channels,granule,fold,data_bits", [
    (2, 256, True, 256), (2, 32, False, 256), (4, 256, True, 128), (2, 4096, True, 64)])
def test_interleaver_cocotb_slow(channels, granule, fold, data_bits):
    simulate(_interleaver(channels, granule, fold, data_bits), bench=IL_BENCH,
             name="hbm_interleaver",
             params=interleaver_params(channels, granule_bytes=granule, fold=fold,
                                       data_bytes=data_bits // 8, max_beats=256, extra=100,
                                       flat_bytes=1 << 17))


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("fault", sorted(INTERLEAVER_FAULTS))
def test_interleaver_cocotb_catches_fault(fault):
    result = simulate(_interleaver(2, faults={fault}), bench=IL_BENCH, name="hbm_interleaver",
                      params=interleaver_params(2), check=False)
    # Both functional tests (random_bursts, errors) must fail; throughput is skipped.
    assert result.failed == 2, f"{fault} was not caught by both tests (seed {result.seed})"
