"""openmaia.sdk: GEMMs and layer sequences compiled and run on the golden backend, bit-exact
against mx_matmul / the vector golden; every command legal for its engine; the semaphore
protocol checked, with a compiler fault twin (a dropped WAIT) that the checker catches."""

import itertools

import numpy as np
import pytest
from openmaia.config import get_config
from openmaia.errors import ErrorCode
from openmaia.numerics import Format, mx_matmul, quantize_mx, vector
from openmaia.sdk.backend import run_compiled
from openmaia.sdk.compiler import (
    PROLOGUE_PIECES,
    Layer,
    compile_gemm,
    compile_layers,
    plan_gemm,
)
from openmaia.sdk.golden import GoldenBackend
from openmaia.sdk.protocol import ProtocolError, check_protocol
from openmaia.tile.dma_descriptor import check_descriptor
from openmaia.tile.isa import DmaCmd, TileOpCmd, TvpCmd
from openmaia.tile.tcp_model import run_model
from openmaia.tile.tile_op import CODE_ALIGN, tile_op_status

SMALL = get_config("small")
FORMATS = list(Format)


def _operands(nrng, m, n, k, fa, fb, scale=1.0):
    a = quantize_mx((scale * nrng.standard_normal((m, k))).astype(np.float32), fa, axis=1)
    b = quantize_mx((scale * nrng.standard_normal((k, n))).astype(np.float32), fb, axis=0)
    return a, b


def _check_commands(config, compiled, *, tcp_model=False):
    """Every tile op passes tile_op_status, every descriptor check_descriptor, code planes
    8-byte aligned; the program passes the protocol checker; ``tcp_model``: the TCP's golden
    ordering model (slow: Amaranth layouts per command) runs it to HALT with every semaphore
    back at 0."""
    window = (0, compiled.hbm_bytes - 1)
    for cmd in compiled.program:
        if isinstance(cmd, TileOpCmd):
            assert tile_op_status(cmd.op, formats=config.formats, rows=config.array_rows,
                                  cols=config.array_cols, slots=config.acc_depth,
                                  panel_blocks=config.ttu_panel_blocks,
                                  tsram_bytes=config.tsram_bytes) == ErrorCode.OK, cmd
            assert cmd.op.a.codes % CODE_ALIGN == 0 and cmd.op.b.codes % CODE_ALIGN == 0
        elif isinstance(cmd, DmaCmd):
            assert check_descriptor(cmd.desc, hbm_addr_bits=config.axi_addr_bits, window=window,
                                    tsram_bytes=config.tsram_bytes) == ErrorCode.OK, cmd
    check_protocol(compiled.program, dma_queues=config.dma_queues)
    if not tcp_model:
        return
    exp = run_model(compiled.program.commands, semaphores=config.tcp_semaphores,
                    dma_queues=config.dma_queues, hbm_addr_bits=config.axi_addr_bits,
                    vector_unit=config.vector_unit)
    assert exp.state == "HALTED" and exp.error == ErrorCode.OK
    assert exp.semaphores == [0] * config.tcp_semaphores      # every signal consumed


def _run_gemm(config, m, n, k, fa, fb, nrng, timing="eager", seed=0):
    compiled = compile_gemm(config, m=m, n=n, k=k, fmt_a=fa, fmt_b=fb)
    a, b = _operands(nrng, m, n, k, fa, fb)
    backend = GoldenBackend(config, hbm_bytes=compiled.hbm_bytes, timing=timing, seed=seed)
    result, out = run_compiled(backend, compiled, {"A": a, "B": b})
    assert result.ok, result
    want = mx_matmul(a, b).view(np.uint32)
    np.testing.assert_array_equal(out["C"].view(np.uint32), want)
    assert result.counters["macs"] == m * n * 32 * -(-k // 32)
    return compiled, result


def test_gemm_every_format_pair(seed):
    """All 36 format pairs, a random ragged shape each (K within one panel and beyond)."""
    nrng = np.random.default_rng(seed)
    for fa, fb in itertools.product(FORMATS, FORMATS):
        m, n = (int(x) for x in nrng.integers(1, 12, 2))
        k = int(nrng.integers(1, 330))
        compiled, _ = _run_gemm(SMALL, m, n, k, fa, fb, nrng)
        _check_commands(SMALL, compiled)


@pytest.mark.parametrize("timing", ["eager", "lazy", "random"])
def test_gemm_random_shapes_timings(seed, timing):
    """Random shapes, M and N beyond one chunk, under each completion timing."""
    nrng = np.random.default_rng(seed)
    for _ in range(3):
        m, n = (int(x) for x in nrng.integers(1, 70, 2))
        k = int(nrng.integers(1, 200))
        fa, fb = (FORMATS[int(i)] for i in nrng.integers(0, len(FORMATS), 2))
        compiled, _ = _run_gemm(SMALL, m, n, k, fa, fb, nrng, timing=timing, seed=seed)
        _check_commands(SMALL, compiled)


@pytest.mark.parametrize("m, n, k, a_full_k", [(9, 7, 3 * SMALL.ttu_max_k + 17, True),
                                               (6, 5, 2600, False)])
def test_gemm_long_k_keep_accumulate_chain(seed, m, n, k, a_full_k):
    """K of several panels: keep / accumulate chains over sub-chunks within the accumulators;
    A tiles holding all of K (loaded once per M chunk) or one K piece (loaded per op)."""
    nrng = np.random.default_rng(seed)
    compiled, _ = _run_gemm(SMALL, m, n, k, "e4m3", "e2m1", nrng, timing="lazy", seed=seed)
    plan = compiled.plans[0]
    chain = -(-k // SMALL.ttu_max_k)
    assert plan.chain == chain and plan.kc <= SMALL.ttu_panel_blocks
    assert plan.a_full_k == a_full_k
    ops = [c.op.op for c in compiled.program if isinstance(c, TileOpCmd)]
    assert sum(op.keep for op in ops) == (chain - 1) * sum(not op.keep for op in ops)
    assert all(op.accumulate == (i % chain != 0) for i, op in enumerate(ops))
    assert all(-(-op.m // SMALL.array_rows) * -(-op.n // SMALL.array_cols) <= SMALL.acc_depth
               for op in ops)
    _check_commands(SMALL, compiled, tcp_model=a_full_k)


def test_gemm_default_config_plan():
    """The default tile: plans fit its TSRAM, use its panel, and the small program runs."""
    cfg = get_config("default")
    plan = plan_gemm(cfg, m=1000, n=700, k=5000, fmt_a="e4m3", fmt_b="e2m1")
    assert plan.chain == -(-157 // 64) and plan.tsram_bytes <= cfg.tsram_bytes
    assert -(-plan.sm // cfg.array_rows) * -(-plan.sn // cfg.array_cols) <= cfg.acc_depth
    one = plan_gemm(cfg, m=256, n=256, k=1024, fmt_a="e4m3", fmt_b="e4m3")
    assert one.chain == 1 and one.tsram_bytes <= cfg.tsram_bytes
    compiled, _ = _run_gemm(cfg, 70, 90, 2100, "e2m1", "e2m1", np.random.default_rng(0))
    _check_commands(cfg, compiled)


def test_gemm_tiling_overlaps_dma_and_compute():
    """Double buffering: some tile op is issued while the loads of the next step are still
    in flight (no WAIT between them), and an A tile is reused across N chunks."""
    compiled = compile_gemm(SMALL, m=24, n=256, k=256, fmt_a="e4m3", fmt_b="e4m3")
    plan = compiled.plans[0]
    assert plan.chain == 1 and -(-256 // plan.nc) > 1
    cmds = compiled.program.commands
    a_code_rows = sum(c.desc.count1 for c in cmds if isinstance(c, DmaCmd)
                      and c.desc.direction == 0
                      and c.desc.hbm_addr < compiled.inputs["A"].scales_base)
    assert a_code_rows == 24                               # each A row loaded once
    ops = [i for i, c in enumerate(cmds) if isinstance(c, TileOpCmd)]
    overlapped = any(any(isinstance(c, DmaCmd) and c.desc.direction == 0 for c in cmds[i:j])
                     for i, j in itertools.pairwise(ops))
    assert overlapped
    _check_commands(SMALL, compiled)


@pytest.mark.parametrize("m, n", [(64, 8), (8, 64), (1, 128)])
def test_gemm_prologue_in_slices(m, n):
    """The first chunk is computed in slices of the larger operand tile, loaded slice by slice
    after the other tile: the first tile op waits for fewer loads than precede it, the first
    chunk's ops cover it exactly, and the result is bit-exact."""
    compiled, _ = _run_gemm(SMALL, m, n, 256, "e4m3", "e2m1", np.random.default_rng(m + n))
    plan = compiled.plans[0]
    cmds = compiled.program.commands
    first = next(i for i, c in enumerate(cmds) if isinstance(c, TileOpCmd))
    loads = sum(isinstance(c, DmaCmd) for c in cmds[:first])
    assert type(cmds[first - 1]).__name__ == "WaitCmd" and cmds[first - 1].count < loads
    mc0, nc0 = min(plan.mc, m), min(plan.nc, n)
    ops = [c.op.op for c in cmds if isinstance(c, TileOpCmd)]
    covered = [count for count in range(2, PROLOGUE_PIECES + 1)
               if (all(op.n == nc0 for op in ops[:count])
                   and sum(op.m for op in ops[:count]) == mc0)
               or (all(op.m == mc0 for op in ops[:count])
                   and sum(op.n for op in ops[:count]) == nc0)]
    assert covered, [(op.m, op.n) for op in ops[:PROLOGUE_PIECES]]
    _check_commands(SMALL, compiled)


def test_plan_rejects_what_does_not_fit():
    with pytest.raises(ValueError, match="not built"):
        plan_gemm(get_config("ice40"), m=4, n=4, k=32, fmt_a="e5m2", fmt_b="e4m3")
    with pytest.raises(ValueError, match="positive"):
        plan_gemm(SMALL, m=0, n=4, k=32, fmt_a="e4m3", fmt_b="e4m3")
    with pytest.raises(ValueError, match="address space"):
        compile_gemm(get_config("ice40"), m=4096, n=64, k=4096, fmt_a="e4m3", fmt_b="e4m3")
    tiny = SMALL.replace(tsram_bank_depth=4)
    with pytest.raises(ValueError, match="no tiling"):
        plan_gemm(tiny, m=64, n=64, k=256, fmt_a="e4m3", fmt_b="e4m3")


# ------------------------------------------------------------------------------------------------
# Layers
# ------------------------------------------------------------------------------------------------

def _mlp_reference(x, tensors, layers):
    a = x
    for i, layer in enumerate(layers):
        c = mx_matmul(a, tensors[f"W{i}"]).view(np.uint32)
        if layer.bias:
            c = vector.bias_add(c, tensors[f"bias{i}"].view(np.uint32))
        if layer.activation == "relu":
            c = vector.relu(c)
        elif layer.activation == "gelu":
            c = vector.gelu(c)
        if layer.out_fmt is not None:
            a = quantize_mx(c.view(np.float32), layer.out_fmt, axis=1)
    return c if layers[-1].out_fmt is None else a


def _mlp_tensors(nrng, m, k, fmt_in, layers):
    x = quantize_mx(nrng.standard_normal((m, k)).astype(np.float32), fmt_in, axis=1)
    tensors, kin = {"X": x}, k
    for i, layer in enumerate(layers):
        tensors[f"W{i}"] = quantize_mx(nrng.standard_normal((kin, layer.n)).astype(np.float32),
                                       layer.fmt_w, axis=0)
        if layer.bias:
            tensors[f"bias{i}"] = nrng.standard_normal((1, layer.n)).astype(np.float32)
        kin = layer.n
    return x, tensors


MLP = [Layer(n=48, fmt_w="e4m3", out_fmt="e4m3"),
       Layer(n=40, fmt_w="e2m1", activation="gelu", out_fmt="e2m1"),
       Layer(n=10, fmt_w="e4m3", activation=None)]


@pytest.mark.parametrize("timing", ["eager", "lazy", "random"])
def test_layers_bias_activation_requantize(seed, timing):
    """GEMM + bias + ReLU / GELU + MX re-quantization on the TVP, layer after layer; K of the
    first layer beyond one panel; output bit-exact to the chain of golden functions."""
    nrng = np.random.default_rng(seed)
    m, k = int(nrng.integers(1, 20)), SMALL.ttu_max_k + int(nrng.integers(1, 60))
    compiled = compile_layers(SMALL, m=m, k=k, fmt_in="e4m3", layers=MLP)
    _check_commands(SMALL, compiled)
    x, tensors = _mlp_tensors(nrng, m, k, "e4m3", MLP)
    backend = GoldenBackend(SMALL, hbm_bytes=compiled.hbm_bytes, timing=timing, seed=seed)
    result, out = run_compiled(backend, compiled, tensors)
    assert result.ok, result
    np.testing.assert_array_equal(out["Y"].view(np.uint32), _mlp_reference(x, tensors, MLP))


def test_layers_without_vector_unit_refused_early_plain_ones_run(seed):
    """On a configuration without the TVP (ice40): a layer that needs it (bias, activation,
    re-quantization) is refused by the compiler with a clear message; a plain GEMM layer
    compiles without any TVP command, passes the TCP model of that tile and runs bit-exact."""
    ice = get_config("ice40")
    assert not ice.vector_unit
    for layer, what in ((Layer(n=8, fmt_w="e4m3", activation=None), "bias"),
                        (Layer(n=8, fmt_w="e4m3", bias=False), "activation 'relu'"),
                        (Layer(n=8, fmt_w="e2m1", bias=False, activation=None,
                               out_fmt="e4m3"), "re-quantization")):
        with pytest.raises(ValueError, match=f"vector unit.*{what}.*'ice40'"):
            compile_layers(ice, m=4, k=64, fmt_in="e4m3", layers=[layer])
    nrng = np.random.default_rng(seed)
    plain = [Layer(n=12, fmt_w="e2m1", bias=False, activation=None)]
    m, k = int(nrng.integers(1, 9)), int(nrng.integers(1, 100))
    compiled = compile_layers(ice, m=m, k=k, fmt_in="e4m3", layers=plain)
    assert not any(isinstance(c, TvpCmd) for c in compiled.program)
    _check_commands(ice, compiled, tcp_model=True)
    x, tensors = _mlp_tensors(nrng, m, k, "e4m3", plain)
    backend = GoldenBackend(ice, hbm_bytes=compiled.hbm_bytes, timing="random", seed=seed)
    result, out = run_compiled(backend, compiled, tensors)
    assert result.ok, result
    np.testing.assert_array_equal(out["Y"].view(np.uint32), _mlp_reference(x, tensors, plain))


def test_layers_requantize_across_n_chunks(seed):
    """A layer wider than its chunk: each chunk's QUANT_MX output lands at its block offset
    of the next layer's input rows (chunks a multiple of 32 columns)."""
    layers = [Layer(n=150, fmt_w="e4m3", out_fmt="e2m1"), Layer(n=10, fmt_w="e4m3",
                                                                 activation=None)]
    nrng = np.random.default_rng(seed)
    compiled = compile_layers(SMALL, m=12, k=70, fmt_in="e4m3", layers=layers)
    plan = compiled.plans[0]
    assert plan.nc % 32 == 0 and plan.nc < 150
    _check_commands(SMALL, compiled)
    x, tensors = _mlp_tensors(nrng, 12, 70, "e4m3", layers)
    result, out = run_compiled(GoldenBackend(SMALL, hbm_bytes=compiled.hbm_bytes,
                                             timing="random", seed=seed), compiled, tensors)
    assert result.ok
    np.testing.assert_array_equal(out["Y"].view(np.uint32), _mlp_reference(x, tensors, layers))


def test_layers_quantized_output():
    """A last layer with out_fmt leaves MX codes and scales in HBM (layout of docs/layout.md)."""
    layers = [Layer(n=70, fmt_w="e3m2", out_fmt="e2m3")]
    nrng = np.random.default_rng(3)
    compiled = compile_layers(SMALL, m=5, k=33, fmt_in="e5m2", layers=layers)
    _check_commands(SMALL, compiled, tcp_model=True)
    x, tensors = _mlp_tensors(nrng, 5, 33, "e5m2", layers)
    result, out = run_compiled(GoldenBackend(SMALL, hbm_bytes=compiled.hbm_bytes), compiled,
                               tensors)
    assert result.ok
    want = _mlp_reference(x, tensors, layers)
    np.testing.assert_array_equal(out["Y"][0], want.codes)
    np.testing.assert_array_equal(out["Y"][1], want.scales)


# ------------------------------------------------------------------------------------------------
# Semaphore protocol: the fault twin
# ------------------------------------------------------------------------------------------------

def test_every_wait_is_needed_and_a_dropped_one_is_caught():
    """Dropping any one WAIT the compiler emits (fault twin ``drop_wait``) is caught by the
    protocol checker: every WAIT guards a hazard or the end of the program."""
    kwargs = {"m": 4, "k": SMALL.ttu_max_k + 8, "fmt_in": "e4m3",
              "layers": [Layer(n=36, fmt_w="e4m3", out_fmt="e4m3"),
                         Layer(n=6, fmt_w="e2m1", activation=None)]}
    good = compile_layers(SMALL, **kwargs)
    check_protocol(good.program, dma_queues=SMALL.dma_queues)
    waits = good.info["waits"]
    assert waits > 10
    for i in range(waits):
        bad = compile_layers(SMALL, **kwargs, faults={"drop_wait": i})
        assert len(bad.program) == len(good.program) - 1
        with pytest.raises(ProtocolError):
            check_protocol(bad.program, dma_queues=SMALL.dma_queues)


def test_dropped_wait_corrupts_result_under_lazy_timing():
    """The race the checker reports is real: with a WAIT guarding a buffer reload dropped, the
    golden backend's lazy timing (completions only when needed) computes a wrong C."""
    m, n, k = 8, 64, 64
    nrng = np.random.default_rng(7)
    a, b = _operands(nrng, m, n, k, "e4m3", "e4m3")
    good = compile_gemm(SMALL, m=m, n=n, k=k, fmt_a="e4m3", fmt_b="e4m3")
    wrong = 0
    for i in range(good.info["waits"]):
        bad = compile_gemm(SMALL, m=m, n=n, k=k, fmt_a="e4m3", fmt_b="e4m3",
                           faults={"drop_wait": i})
        _, out = run_compiled(GoldenBackend(SMALL, hbm_bytes=bad.hbm_bytes, timing="lazy"),
                              bad, {"A": a, "B": b})
        if not np.array_equal(out["C"].view(np.uint32), mx_matmul(a, b).view(np.uint32)):
            wrong += 1
            with pytest.raises(ProtocolError):
                check_protocol(bad.program, dma_queues=SMALL.dma_queues)
    assert wrong >= 1


def test_checker_reports_deadlock_and_unfinished():
    from openmaia.sdk.assembler import Program
    from openmaia.tile.isa import HaltCmd, WaitCmd
    compiled = compile_gemm(SMALL, m=2, n=2, k=32, fmt_a="e4m3", fmt_b="e4m3")
    cmds = compiled.program.commands
    stuck = Program(commands=cmds[:-1] + [WaitCmd(0, 50), HaltCmd()])
    assert any("deadlock" in p for p in check_protocol(stuck, dma_queues=2,
                                                       raise_on_error=False))
    early = Program(commands=[c for c in cmds if not isinstance(c, WaitCmd)][:-1] + [HaltCmd()])
    problems = check_protocol(early, dma_queues=2, raise_on_error=False)
    assert any("unfinished" in p for p in problems) and any("RAW" in p for p in problems)


@pytest.mark.parametrize("preset", ["ice40", "ulx3s", "default"])
def test_gemm_other_presets(seed, preset):
    """The tiling follows each configuration (array, accumulators, panel, TSRAM, formats)."""
    cfg = get_config(preset)
    nrng = np.random.default_rng(seed)
    formats = sorted(cfg.formats, key=lambda f: f.value)
    m, n = (int(x) for x in nrng.integers(1, 12, 2))
    k = int(nrng.integers(1, 3 * cfg.ttu_max_k))
    fa, fb = (formats[int(i)] for i in nrng.integers(0, len(formats), 2))
    compiled, _ = _run_gemm(cfg, m, n, k, fa, fb, nrng, timing="random", seed=seed)
    _check_commands(cfg, compiled)


def test_run_gemm_report():
    from openmaia.sdk.run import make_backend, run_gemm
    report, c = run_gemm("small", m=9, n=5, k=100, a_fmt="e4m3", b_fmt="e2m1", seed=1)
    assert report["passed"] and report["state"] == "HALTED" and c.shape == (9, 5)
    assert report["macs"] == 9 * 5 * 128 and report["bytes_out"] == 4 * 9 * 5
    assert report["cycles"] is None and report["mac_utilization"] is None
    from openmaia.sdk.fpga import FpgaBackend
    device = make_backend("fpga", get_config("ice40"), hbm_bytes=64)   # nothing starts yet
    assert isinstance(device, FpgaBackend)
    device.close()
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("cloud", SMALL, hbm_bytes=64)


def test_program_stays_in_its_hbm_region_and_runs_from_bits():
    """With hbm_base and DMA windows around the program's regions only, the program runs (no
    descriptor leaves its window); the same program fed as 512-bit words runs the same."""
    nrng = np.random.default_rng(11)
    base = 0x10000
    compiled = compile_gemm(SMALL, m=7, n=5, k=70, fmt_a="e2m3", fmt_b="e5m2", hbm_base=base)
    assert min(b for b, _ in compiled.program.regions.values()) >= base
    a, b = _operands(nrng, 7, 5, 70, "e2m3", "e5m2")
    window = (base, compiled.hbm_bytes - 1)
    want = mx_matmul(a, b).view(np.uint32)
    for program in (compiled.program, compiled.program.words()):
        backend = GoldenBackend(SMALL, hbm_bytes=compiled.hbm_bytes, windows=[window] * 2,
                                timing="random", seed=5)
        from openmaia.sdk.backend import read_output, write_inputs
        write_inputs(backend, compiled, {"A": a, "B": b})
        assert backend.run(program).ok
        np.testing.assert_array_equal(read_output(backend, compiled.outputs["C"])
                                      .view(np.uint32), want)
    with pytest.raises(ValueError, match="unknown fault"):
        compile_gemm(SMALL, m=1, n=1, k=1, fmt_a="e4m3", fmt_b="e4m3", faults={"drop": 1})


@pytest.mark.slow
def test_gemm_sweep_slow(seed):
    """Slow tier: 40 random GEMMs over every preset, shapes up to 3 chunks and 5 panels."""
    nrng = np.random.default_rng(seed)
    presets = ["small", "ice40", "ulx3s", "default"]
    for i in range(40):
        cfg = get_config(presets[i % 4])
        formats = sorted(cfg.formats, key=lambda f: f.value)
        m, n = (int(x) for x in nrng.integers(1, 48, 2))
        k = int(nrng.integers(1, 5 * cfg.ttu_max_k))
        fa, fb = (formats[int(j)] for j in nrng.integers(0, len(formats), 2))
        compiled, _ = _run_gemm(cfg, m, n, k, fa, fb, nrng, timing="random", seed=seed + i)
        _check_commands(cfg, compiled)
