"""HBM3 controller model: mappings, lint, cocotb benches under Verilator, the timing checker.

Default tier (small builds, queue depth 8): mapping functions (Python table vs RTL, inverse,
bijection), presets, the checker on hand-made streams (each rule fires; a clean stream passes),
lint of the elaborated controller, random AXI traffic with pauses on every channel (reads return
writes; DECERR and SLVERR cases), trace replay of adversarial and random traces under the
independent timing checker for both mappings, the starvation cap, and a few broken twins
(``faults=``) that the checker catches. Slow tier: every timing fault, deeper queues, HBM3E.
"""

import pytest
from amaranth.sim import Simulator

from openmaia.benches.hbm_timing_checker import BRIEF_HBM3_6400, HbmTimingChecker
from openmaia.config import PRESETS
from openmaia.harness import lint, simulate
from openmaia.hbm import traces
from openmaia.hbm.controller import TIMING_FAULTS, HbmChannel, HbmController, histogram_bin
from openmaia.hbm.mapping import MAPPINGS, map_address, map_address_rtl, unmap_address
from openmaia.hbm.timing import HBM3_6400, HBM3E_9600, ORGANISATION

BENCH = "openmaia.benches.hbm"
pytestmark = [pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")]


def _params(ctrl, **extra):
    return {"timing": ctrl.timing.values(), "preset": ctrl.timing.name,
            "mapping": ctrl.mapping, "capacity": ctrl.capacity_bytes,
            "data_bytes": ctrl.axi.data_bytes, "row_hit_cap": ctrl.row_hit_cap} | extra


def _functional(mapping="MOP4CLXOR", **kw):
    return HbmController(mapping=mapping, queue_depth=8, capacity_bytes=1 << 16, **kw)


def _timing_only(mapping="MOP4CLXOR", **kw):
    return HbmController(mapping=mapping, queue_depth=8, capacity_bytes=ORGANISATION.bytes,
                         timing_only=True, **kw)


def _run(ctrl, testcase, seed=None, check=True, **extra):
    result = simulate(ctrl, bench=BENCH, name="hbm", testcase=testcase,
                      params=_params(ctrl, **extra), seed=seed, check=check, array=True)
    print(f"{testcase}: build {result.build_seconds:.1f} s (cached {result.build_cached}), "
          f"run {result.run_seconds:.1f} s, log {result.log_file}")
    return result


# ------------------------------------------------------------------ mapping and presets

@pytest.mark.parametrize("mapping", sorted(MAPPINGS))
def test_mapping_inverse_and_bijection(mapping, rng):
    seen = set()
    for _ in range(2000):
        addr = rng.randrange(ORGANISATION.bytes) & ~31
        f = map_address(mapping, addr)
        assert unmap_address(mapping, **f) == addr
        assert f["col"] < ORGANISATION.columns and f["row"] < ORGANISATION.rows
        seen.add(tuple(f.values()))
    assert len(seen) == len({a for a in seen})
    # a 64 B line stays in one row: both halves share bank and row
    for _ in range(200):
        line = rng.randrange(ORGANISATION.bytes // 64) * 64
        a, b = map_address(mapping, line), map_address(mapping, line + 32)
        assert (a["sid"], a["bg"], a["ba"], a["row"]) == (b["sid"], b["bg"], b["ba"], b["row"])
        assert b["col"] == a["col"] + 1


@pytest.mark.parametrize("mapping", sorted(MAPPINGS))
def test_mapping_rtl_matches_python(mapping, rng):
    from amaranth.hdl import Module, Signal
    addr = Signal(ORGANISATION.address_bits)
    fields = map_address_rtl(mapping, addr)
    m = Module()
    outs = {k: Signal(len(v), name=k) for k, v in fields.items()}
    m.d.comb += [outs[k].eq(v) for k, v in fields.items()]
    sim = Simulator(m)
    samples = [rng.randrange(ORGANISATION.bytes) for _ in range(500)]
    samples += [1 << k for k in range(ORGANISATION.address_bits)]

    async def bench(ctx):
        for a in samples:
            ctx.set(addr, a)
            want = map_address(mapping, a)
            got = {k: ctx.get(s) for k, s in outs.items()}
            assert got == want, f"0x{a:x}: rtl {got} python {want}"
    sim.add_testbench(bench)
    sim.run()


def test_presets():
    assert {k: v for k, v in HBM3_6400.values().items() if k in BRIEF_HBM3_6400} \
        == BRIEF_HBM3_6400
    assert HBM3E_9600.tRCD_RD == 47 and HBM3E_9600.tCCD_S == 2 and HBM3E_9600.tREFI == 9360
    assert HBM3E_9600.tck_ns == pytest.approx(0.625 / 1.5)


def test_histogram_bins():
    assert [histogram_bin(x) for x in (0, 15, 16, 31, 32, 1 << 17, 1 << 18, 1 << 30)] == \
        [0, 0, 1, 1, 2, 14, 15, 15]


def test_bad_parameters():
    with pytest.raises(ValueError, match="queue_depth"):
        HbmChannel(queue_depth=1)
    with pytest.raises(ValueError, match="capacity_bytes"):
        HbmChannel(capacity_bytes=3000)
    with pytest.raises(ValueError, match="mapping"):
        HbmChannel(mapping="RoCoBa")
    with pytest.raises(ValueError, match="faults"):
        HbmChannel(faults={"nope"})
    with pytest.raises(ValueError, match="ONCHIP"):
        HbmController.from_config(PRESETS["ice40"])


def test_trace_format_roundtrip(tmp_path):
    reqs = traces.random_lines(50, write_fraction=0.5, seed=3)
    reqs = [traces.Request(r.addr, r.write, i * 7) for i, r in enumerate(reqs)]
    path = traces.write_trace(tmp_path / "t.trace", reqs)
    assert traces.read_trace(path) == reqs
    assert traces.parse_line("0x1234 read 5") == traces.Request(0x1200, False, 5)
    with pytest.raises(ValueError):
        traces.parse_line("0x10 FETCH 0")


# ------------------------------------------------------------------ the checker itself

def _clean_stream(t):
    """A hand-made legal stream: ACT, RD, RD (other bank group), PRE, ACT, WR, RD, PRE, REF."""
    return [(0, "ACT", 0, 0, 0, 5), (t["tRRD_L"] + 1, "ACT", 0, 1, 0, 6),
            (t["tRCD_RD"] + 10, "RD", 0, 0, 0, 5), (t["tRCD_RD"] + 12, "RD", 0, 1, 0, 6),
            (200, "PRE", 0, 0, 0, None), (200 + t["tRP"], "ACT", 0, 0, 0, 7),
            (400, "WR", 0, 0, 0, 7), (400 + t["CWL"] + 2 + t["tWTR_L"], "RD", 0, 0, 0, 7),
            (600, "PRE", 0, 0, 0, None), (601, "PRE", 0, 1, 0, None),
            (601 + t["tRP"], "REF", 0, 0, 0, None)]


def test_checker_accepts_clean_stream():
    c = HbmTimingChecker(BRIEF_HBM3_6400, preset="HBM3_6400")
    for cyc, cmd, s, g, b, row in _clean_stream(BRIEF_HBM3_6400):
        c.command(cyc, cmd, s, g, b, row)
    c.finish(1000)
    assert c.passed, c.report()


@pytest.mark.parametrize("rule", ["tRCD", "tRP", "tRAS", "tRC", "tCCD_L", "tCCD_S", "tCCD_R",
                                  "tRRD_S", "tRRD_L", "tFAW", "tWTR_L", "tWTR_S", "tRTP", "tRTW",
                                  "tWR", "tRFC", "refresh"])
def test_checker_catches_each_rule(rule):
    t = BRIEF_HBM3_6400
    c = HbmTimingChecker(t)
    s = {
        "tRCD": [(0, "ACT", 0, 0, 0, 1), (t["tRCD_RD"] - 1, "RD", 0, 0, 0, 1)],
        "tRP": [(0, "ACT", 0, 0, 0, 1), (100, "PRE", 0, 0, 0, None),
                (99 + t["tRP"], "ACT", 0, 0, 0, 2)],
        "tRAS": [(0, "ACT", 0, 0, 0, 1), (t["tRAS"] - 1, "PRE", 0, 0, 0, None)],
        "tRC": [(0, "ACT", 0, 0, 0, 1), (t["tRAS"], "PRE", 0, 0, 0, None),
                (t["tRC"] - 1, "ACT", 0, 0, 0, 2)],
        "tCCD_L": [(0, "ACT", 0, 0, 0, 1), (0 + t["tRRD_L"], "ACT", 0, 0, 1, 1),
                   (50, "RD", 0, 0, 0, 1), (50 + t["tCCD_L"] - 1, "RD", 0, 0, 1, 1)],
        "tCCD_S": [(0, "ACT", 0, 0, 0, 1), (10, "ACT", 0, 1, 0, 1),
                   (50, "RD", 0, 0, 0, 1), (50 + t["tCCD_S"] - 1, "RD", 0, 1, 0, 1)],
        "tCCD_R": [(0, "ACT", 0, 0, 0, 1), (10, "ACT", 1, 0, 0, 1),
                   (50, "RD", 0, 0, 0, 1), (50 + t["tCCD_R"] - 1, "RD", 1, 0, 0, 1)],
        "tRRD_S": [(0, "ACT", 0, 0, 0, 1), (t["tRRD_S"] - 1, "ACT", 0, 1, 0, 1)],
        "tRRD_L": [(0, "ACT", 0, 0, 0, 1), (t["tRRD_L"] - 1, "ACT", 0, 0, 1, 1)],
        "tFAW": [(4 * k, "ACT", 0, k, 0, 1) for k in range(4)]
        + [(t["tFAW"] - 1, "ACT", 1, 0, 0, 1)],
        "tWTR_L": [(0, "ACT", 0, 0, 0, 1), (50, "WR", 0, 0, 0, 1),
                   (50 + t["CWL"] + 2 + t["tWTR_L"] - 1, "RD", 0, 0, 0, 1)],
        "tWTR_S": [(0, "ACT", 0, 0, 0, 1), (10, "ACT", 0, 1, 0, 1), (50, "WR", 0, 0, 0, 1),
                   (50 + t["CWL"] + 2 + t["tWTR_S"] - 1, "RD", 0, 1, 0, 1)],
        "tRTP": [(0, "ACT", 0, 0, 0, 1), (60, "RD", 0, 0, 0, 1),
                 (60 + t["tRTP"] - 1, "PRE", 0, 0, 0, None)],
        "tRTW": [(0, "ACT", 0, 0, 0, 1), (50, "RD", 0, 0, 0, 1),
                 (50 + t["tRTW"] - 1, "WR", 0, 0, 0, 1)],
        "tWR": [(0, "ACT", 0, 0, 0, 1), (50, "WR", 0, 0, 0, 1),
                (50 + t["CWL"] + 2 + t["tWR"] - 1, "PRE", 0, 0, 0, None)],
        "tRFC": [(0, "REF", 0, 0, 0, None), (t["tRFC"] - 1, "ACT", 0, 0, 0, 1)],
        "refresh": [(0, "ACT", 0, 0, 0, 1), (3 * t["tREFI"], "PRE", 0, 0, 0, None)],
    }[rule]
    for cyc, cmd, sid, g, b, row in s:
        c.command(cyc, cmd, sid, g, b, row)
    c.finish(s[-1][0] + 1)
    assert not c.passed, f"{rule} not caught"
    want = {"tRCD": "tRCD", "refresh": "missed refresh"}.get(rule, rule)
    assert any(want in v for v in c.violations), c.report()


# ------------------------------------------------------------------ RTL

def test_lint_controller():
    lint(HbmController.from_config(PRESETS["small"].replace(hbm_queue_depth=8)), name="hbm")


# One Verilator build of the controller takes minutes: the default tier simulates the default
# mapping (MOP4CLXOR); RoBaRaCoCh runs the same tests in the slow tier.
_SIM_MAPPINGS = [pytest.param(m, marks=[] if m == "MOP4CLXOR" else [pytest.mark.slow])
                 for m in sorted(MAPPINGS)]


@pytest.mark.sim
@pytest.mark.parametrize("mapping", _SIM_MAPPINGS)
def test_random_axi_reads_return_writes(mapping, seed):
    _run(_functional(mapping), "random_axi", seed=seed, ops=160, pause=True)


def _adversarial_trace(mapping, seed, path, capacity=1 << 16):
    rows = capacity // (ORGANISATION.total_banks * ORGANISATION.row_bytes)
    reqs = traces.adversarial(mapping, seed=seed, repeats=2, rows=rows)
    reqs += traces.random_lines(300, span=capacity, write_fraction=0.3, seed=seed)
    return traces.write_trace(path, reqs)


@pytest.mark.sim
@pytest.mark.parametrize("mapping", _SIM_MAPPINGS)
def test_checker_passes_adversarial_and_random(mapping, seed, tmp_path):
    path = _adversarial_trace(mapping, seed, tmp_path / "adv.trace")
    _run(_functional(mapping), "replay", seed=seed, trace=str(path), pause=True)


@pytest.mark.sim
@pytest.mark.parametrize("mapping", _SIM_MAPPINGS)
def test_starvation_cap(mapping, seed):
    _run(_functional(mapping), "starvation", seed=seed)


QUICK_FAULTS = ["tfaw_short"]


def _fault_run(fault, seed, tmp_path, mapping="MOP4CLXOR"):
    path = _adversarial_trace(mapping, seed, tmp_path / "adv.trace")
    return _run(_functional(mapping, faults={fault}), "replay", seed=seed, trace=str(path),
                check=False)


@pytest.mark.sim
@pytest.mark.slow   # one more controller build; the timer faults are killed quickly in the
                    # Amaranth simulator (test_timers_fault_shortens_its_limit)
@pytest.mark.parametrize("fault", QUICK_FAULTS)
def test_checker_catches_fault(fault, seed, tmp_path):
    result = _fault_run(fault, seed, tmp_path)
    assert result.tests == 1 and result.failed == 1, f"{fault} not caught"
    assert "violations" in result.log_file.read_text(errors="replace")


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("fault",
                         sorted(set(TIMING_FAULTS) - set(QUICK_FAULTS)) + ["no_refresh"])
def test_checker_catches_fault_slow(fault, seed, tmp_path):
    result = _fault_run(fault, seed, tmp_path)
    assert result.tests == 1 and result.failed == 1, f"{fault} not caught"


@pytest.mark.sim
@pytest.mark.slow
def test_no_hit_cap_fault_is_caught(seed):
    # Cap 4: responses leave in order, so with 8 buffer tags at most 7 younger reads (14
    # bursts) can pass a waiting read even uncapped; a cap of 16 would look like none.
    ctrl = _functional("RoBaRaCoCh", faults={"no_hit_cap"}, row_hit_cap=4)
    _run(ctrl, "starvation", seed=seed, expect_cap=False)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("timing,depth,width", [("HBM3E_9600", 8, 128), ("HBM3_6400", 32, 128),
                                                ("HBM3_6400", 8, 256), ("HBM3_6400", 8, 64)])
def test_other_builds(timing, depth, width, seed, tmp_path):
    """HBM3E preset, a deeper queue, other AXI widths: data, and the checker on adversarial +
    random traffic."""
    ctrl = HbmController(timing=timing, queue_depth=depth, capacity_bytes=1 << 16,
                         data_width=width)
    _run(ctrl, "random_axi", seed=seed, ops=400, pause=True)
    path = _adversarial_trace(ctrl.mapping, seed, tmp_path / "adv.trace")
    _run(ctrl, "replay", seed=seed, trace=str(path), pause=True)


# ------------------------------------------------------------------ HbmTimers (Amaranth sim)

def _bank(sid=0, bg=0, ba=0):
    return (sid * ORGANISATION.bank_groups + bg) * ORGANISATION.banks + ba


T = HBM3_6400
# name: (commands [(cycle, "ACT"|"PRE"|"REF"|"RD"|"WR", bank)], probe (output, bank),
#        reference cycle, expected gap, the fault that shortens it)
TIMER_CASES = {
    "tRCD_RD": ([(0, "ACT", 0)], ("rd_ok", 0), 0, T.tRCD_RD, "trcd_short"),
    "tRCD_WR": ([(0, "ACT", 0)], ("wr_ok", 0), 0, T.tRCD_WR, "trcd_short"),
    "tRAS": ([(0, "ACT", 0)], ("pre_ok", 0), 0, T.tRAS, "tras_short"),
    "tRC": ([(0, "ACT", 0), (T.tRAS, "PRE", 0)], ("act_ok", 0), 0, T.tRC, "trc_short"),
    "tRP": ([(0, "ACT", 0), (20, "WR", 0), (20 + T.write_to_precharge, "PRE", 0)],
            ("act_ok", 0), 20 + T.write_to_precharge, T.tRP, "trp_short"),
    "tRTP": ([(0, "ACT", 0), (40, "RD", 0)], ("pre_ok", 0), 40, T.tRTP, "trtp_short"),
    "tWR": ([(0, "ACT", 0), (20, "WR", 0)], ("pre_ok", 0), 20, T.write_to_precharge,
            "twr_short"),
    "tRRD_S": ([(0, "ACT", 0)], ("act_ok", _bank(bg=1)), 0, T.tRRD_S, "trrd_s_short"),
    "tRRD_L": ([(0, "ACT", 0)], ("act_ok", _bank(ba=1)), 0, T.tRRD_L, "trrd_l_short"),
    "tFAW": ([(0, "ACT", _bank(bg=0)), (T.tRRD_S, "ACT", _bank(bg=1)),
              (2 * T.tRRD_S, "ACT", _bank(bg=2)), (3 * T.tRRD_S, "ACT", _bank(bg=3))],
             ("act_ok", _bank(sid=1)), 0, T.tFAW, "tfaw_short"),
    "tCCD_S": ([(0, "RD", 0)], ("rd_ok", _bank(bg=1)), 0, T.tCCD_S, "tccd_s_short"),
    "tCCD_L": ([(0, "RD", 0)], ("rd_ok", _bank(ba=1)), 0, T.tCCD_L, "tccd_l_short"),
    "tCCD_R": ([(0, "RD", 0)], ("rd_ok", _bank(sid=1)), 0, T.tCCD_R, "tccd_r_short"),
    "tWTR_S": ([(0, "WR", 0)], ("rd_ok", _bank(bg=1)), 0, T.write_to_read_s, "twtr_s_short"),
    "tWTR_L": ([(0, "WR", 0)], ("rd_ok", _bank(ba=1)), 0, T.write_to_read_l, "twtr_l_short"),
    "tRTW": ([(0, "RD", 0)], ("wr_ok", _bank(bg=1)), 0, T.tRTW, "trtw_short"),
    "tRFC": ([(0, "REF", 0)], ("act_ok", 0), 0, T.tRFC, "trfc_short"),
}


def _timer_gaps(cases, faults=()):
    """Run each (commands, probe, reference cycle) case in turn on one HbmTimers, with idle
    time in between for every counter to drain; return the measured gaps."""
    from openmaia.hbm.controller import ColCmd, HbmTimers, RowCmd
    dut = HbmTimers(timing=T, faults=faults)
    gaps = []

    async def bench(ctx):
        for commands, probe, ref in cases:
            by_cycle = {c: (kind, bank) for c, kind, bank in commands}
            last = max(by_cycle)
            found = None
            for cycle in range(last + T.tRFC + 8):
                if cycle > last and (ctx.get(getattr(dut, probe[0])) >> probe[1]) & 1:
                    found = cycle - ref
                    break
                kind, bank = by_cycle.get(cycle, (None, 0))
                ctx.set(dut.row_valid, kind in ("ACT", "PRE", "REF"))
                ctx.set(dut.col_valid, kind in ("RD", "WR"))
                if kind in ("ACT", "PRE", "REF"):
                    ctx.set(dut.row_cmd, RowCmd[kind])
                    ctx.set(dut.row_bank, bank)
                if kind in ("RD", "WR"):
                    ctx.set(dut.col_cmd, ColCmd[kind])
                    ctx.set(dut.col_bank, bank)
                await ctx.tick()
            gaps.append(found)
            ctx.set(dut.row_valid, 0)
            ctx.set(dut.col_valid, 0)
            await ctx.tick().repeat(T.tRFC + T.tRC)
    sim = Simulator(dut)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    return gaps


def test_timers_gaps():
    """Every limit of HbmTimers is exactly the table's value (one simulation, all cases)."""
    names = sorted(TIMER_CASES)
    gaps = _timer_gaps([TIMER_CASES[n][:3] for n in names])
    assert dict(zip(names, gaps)) == {n: TIMER_CASES[n][3] for n in names}


@pytest.mark.parametrize("case", sorted(TIMER_CASES))
def test_timers_fault_shortens_its_limit(case):
    """Mutation check at the timer level: each ``*_short`` fault is one cycle short."""
    commands, probe, ref, gap, fault = TIMER_CASES[case]
    assert _timer_gaps([(commands, probe, ref)], faults={fault}) == [gap - 1]


# ------------------------------------------------------------------ read-data path (Amaranth sim)

def _sequential_read_beats(queue_depth, cycles):
    """Cycles with an R handshake while a manager keeps AR busy with sequential 64 B reads
    (4 beats of 16 B) and holds RREADY high."""
    dut = HbmChannel(queue_depth=queue_depth, timing_only=True, capacity_bytes=1 << 20)
    beats = []

    async def bench(ctx):
        a = dut.s_axi
        ctx.set(a.rready, 1)
        ctx.set(a.arvalid, 1)
        ctx.set(a.arlen, 64 // dut.axi.data_bytes - 1)
        ctx.set(a.arsize, dut.axi.size_code)
        ctx.set(a.arburst, 1)
        addr = 0
        for cycle in range(cycles):
            ctx.set(a.araddr, addr)
            _, _, ar_hs, r_hs = await ctx.tick().sample(a.arready, a.rvalid)
            addr += 64 if ar_hs else 0
            if r_hs:
                beats.append(cycle)
    sim = Simulator(dut)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    return beats


def test_read_drain_sustains_one_beat_a_cycle():
    """The R drain (read buffer -> output FIFO -> R) keeps up with the data bus: 16 B a cycle.
    With a credit one short of the output FIFO's round trip it gave 3 beats in 4 cycles
    (0.75 of peak here, and at most 3 consecutive beats)."""
    cycles = 1200
    beats = _sequential_read_beats(16, cycles)
    longest = run = 0
    for k, cycle in enumerate(beats):
        run = run + 1 if k and beats[k - 1] == cycle - 1 else 1
        longest = max(longest, run)
    steady = sum(1 for c in beats if c >= cycles // 3) / (cycles - cycles // 3)
    assert longest >= 32, f"longest run of back-to-back R beats {longest}"
    assert steady >= 0.9, f"R beats a cycle after warm-up {steady:.3f}"


def _cap_scenario(faults=()):
    """Queue 8, row_hit_cap 4, MOP4CLXOR: 6 reads of row 0 of bank 0, then one of row 1 of
    that bank (the victim), then 8 more of row 0. Returns the DRAM commands of bank 0 as
    (cycle, command, row)."""
    from openmaia.hbm.controller import ColCmd, RowCmd
    from openmaia.hbm.mapping import unmap_address
    dut = HbmChannel(queue_depth=8, row_hit_cap=4, timing_only=True, capacity_bytes=1 << 20,
                     mapping="MOP4CLXOR", faults=faults)
    line = [unmap_address("MOP4CLXOR", row=0, col=2 * k) for k in range(16)]
    addrs = line[:6] + [unmap_address("MOP4CLXOR", row=1)] + line[6:14]
    log = []

    async def bench(ctx):
        a = dut.s_axi
        ctx.set(a.rready, 1)
        ctx.set(a.arlen, 64 // dut.axi.data_bytes - 1)
        ctx.set(a.arsize, dut.axi.size_code)
        ctx.set(a.arburst, 1)
        pending = list(addrs)
        for _ in range(600):
            ctx.set(a.arvalid, bool(pending))
            ctx.set(a.araddr, pending[0] if pending else 0)
            _, _, ar_hs, tr = await ctx.tick().sample(a.arready, dut.trace)
            if ar_hs and pending:
                pending.pop(0)
            bank0 = tr.row_sid == 0 and tr.row_bg == 0 and tr.row_ba == 0
            if tr.row_valid and tr.row_cmd != RowCmd.REF and bank0:
                log.append((tr.cycle, RowCmd(tr.row_cmd).name, tr.row_row))
            if tr.col_valid and (tr.col_sid, tr.col_bg, tr.col_ba) == (0, 0, 0):
                log.append((tr.cycle, ColCmd(tr.col_cmd).name, tr.col_row))
    sim = Simulator(dut)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    return log


def _cap_counts(log):
    victim_act = next(c for c, cmd, row in log if cmd == "ACT" and row == 1)
    row0_acts = sum(1 for c, cmd, row in log if cmd == "ACT" and row == 0 and c < victim_act)
    bursts = sum(1 for c, cmd, row in log if cmd == "RD" and row == 0 and c < victim_act)
    return row0_acts, bursts - 2 * 6   # hit bursts of the 8 younger reads that passed the victim


def test_row_hit_cap_counts_reordering_only():
    """Hits older than the waiting request are served first and the row stays open for them
    (one ACT of row 0); then at most ``row_hit_cap`` younger hit bursts pass the waiting
    request before its row is opened. The broken twin without the cap lets all of them pass."""
    row0_acts, passed = _cap_counts(_cap_scenario())
    assert row0_acts == 1, f"row 0 activated {row0_acts} times before the waiting request's row"
    assert passed == 4, f"{passed} younger hit bursts passed the waiting request (cap 4)"
    _, passed = _cap_counts(_cap_scenario(faults={"no_hit_cap"}))
    assert passed > 4, f"without the cap only {passed} younger hit bursts passed"


def _age_scenario(age_cap, faults=(), extra=100):
    """The oldest-request starvation scenario (docs/hbm.md, "Scheduling", age cap): one read of
    bank (0, 0, 0), then a stream of single-line writes, row hits to two banks of bank group 1
    (16 lines, round robin), every WR reloading the channel-wide tWTR counter. HBM3_6400, queue
    8, RoBaRaCoCh, 256-bit port. Returns (the read's AR handshake cycle, the cycle of its last
    RD burst or None within ``age_cap`` + T + ``extra`` cycles, the WR bursts issued)."""
    from openmaia.hbm.controller import ColCmd, oldest_wait_bound
    from openmaia.hbm.mapping import unmap_address
    dut = HbmChannel(queue_depth=8, age_cap=age_cap, timing_only=True, capacity_bytes=1 << 20,
                     mapping="RoBaRaCoCh", data_width=256, faults=faults)
    cycles = age_cap + oldest_wait_bound(dut.timing) + extra
    read = unmap_address("RoBaRaCoCh", row=0, col=0)
    lines = [unmap_address("RoBaRaCoCh", bg=1, ba=k % 2, sid=k % 2, row=0, col=2 * (k // 2))
             for k in range(16)]
    out = {"ar": None, "last_rd": None, "wr": 0}

    async def bench(ctx):
        a = dut.s_axi
        for sig, value in ((a.rready, 1), (a.bready, 1), (a.arlen, 1), (a.awlen, 1),
                           (a.arsize, dut.axi.size_code), (a.awsize, dut.axi.size_code),
                           (a.arburst, 1), (a.awburst, 1), (a.wstrb, (1 << 32) - 1),
                           (a.araddr, read), (a.arvalid, 1)):
            ctx.set(sig, value)
        sent = w_beats = 0
        rd_bursts = 0
        for cycle in range(cycles):
            if cycle == 2:
                ctx.set(a.awvalid, 1)
            ctx.set(a.awaddr, lines[sent % len(lines)])
            ctx.set(a.wvalid, 1)
            ctx.set(a.wlast, w_beats % 2)
            _, _, ar_hs, aw_hs, w_hs, tr = await ctx.tick().sample(
                a.arvalid & a.arready, a.awvalid & a.awready, a.wvalid & a.wready, dut.trace)
            if ar_hs:
                out["ar"] = cycle
                ctx.set(a.arvalid, 0)
            sent += aw_hs
            w_beats += w_hs
            if tr.col_valid and tr.col_cmd == ColCmd.RD:
                rd_bursts += 1
                if rd_bursts == 2:
                    out["last_rd"] = tr.cycle
            if tr.col_valid and tr.col_cmd == ColCmd.WR:
                out["wr"] += 1
    sim = Simulator(dut)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    return out["ar"], out["last_rd"], out["wr"], oldest_wait_bound(dut.timing)


def test_age_cap_bounds_the_oldest_request():
    """A read older than a stream of row-hit writes to other banks issues within ``age_cap``
    + T cycles of becoming the oldest (T: ``oldest_wait_bound``, 1047 cycles for HBM3_6400;
    2 cycles from the AR handshake to the queue). Without the cap (``no_age_cap``) the writes,
    every one reloading tWTR, hold it back past that bound (the broken twin fails it)."""
    age_cap = 16
    ar, last_rd, wr, t = _age_scenario(age_cap)
    assert last_rd is not None, "the read never issued"
    waited = last_rd - ar - 2
    print(f"age cap {age_cap}: read done {waited} cycles after entering the queue, {wr} WR")
    assert waited <= age_cap + t, f"read waited {waited} > {age_cap} + {t}"
    assert wr > 100, f"only {wr} WR bursts: the write stream did not run"
    ar, last_rd, wr, t = _age_scenario(age_cap, faults={"no_age_cap"})
    print(f"no_age_cap: read done at {last_rd} (AR at {ar}), {wr} WR")
    assert last_rd is None or last_rd - ar - 2 > age_cap + t, \
        f"without the cap the read still issued within the bound ({last_rd - ar - 2})"
