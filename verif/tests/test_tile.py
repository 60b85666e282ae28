"""The tile top (rtl/tile/tile.py) through the SDK's ``rtl`` backend (sdk/rtl.py): programs the
SDK compiles, run on the elaborated tile under Verilator, bit-exact against ``mx_matmul`` and the
``golden`` backend; command errors and DMA protection errors followed by good runs; a dropped
WAIT caught. One simulation (one Verilator build, shared with the ``tile`` top's self-check)
serves every run of a test, with random pauses on the host's AXI channels."""

import numpy as np
import pytest
from openmaia.config import get_config
from openmaia.errors import ErrorCode
from openmaia.numerics import mx_matmul, quantize_mx
from openmaia.sdk.assembler import Program
from openmaia.sdk.backend import run_compiled
from openmaia.sdk.compiler import Layer, compile_gemm, compile_layers
from openmaia.sdk.golden import GoldenBackend
from openmaia.sdk.protocol import check_protocol
from openmaia.sdk.rtl import RtlBackend, tile_hbm_bytes
from openmaia.tile.isa import InterruptCmd, WaitCmd, encode

pytestmark = pytest.mark.sim

SMALL = get_config("small")


def _gemm_case(rng, config, m, n, k, fa, fb, **kw):
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    qa, qb = quantize_mx(a, fa, axis=1), quantize_mx(b, fb, axis=0)
    return compile_gemm(config, m=m, n=n, k=k, fmt_a=fa, fmt_b=fb, **kw), qa, qb


def _same_as_golden(config, compiled, tensors, out):
    golden = GoldenBackend(config, hbm_bytes=compiled.hbm_bytes)
    result, want = run_compiled(golden, compiled, tensors)
    assert result.ok
    for name, value in want.items():
        got = out[name]
        if isinstance(value, tuple):
            for g, w in zip(got, value):
                assert np.array_equal(np.asarray(g), np.asarray(w)), name
        else:
            assert np.array_equal(got.view(np.uint32), value.view(np.uint32)), name


@pytest.mark.parametrize("config_name", ["small"])
def test_sdk_programs_on_the_tile(seed, config_name):
    """Random GEMMs (every built format in A and B), a two-layer network (GEMM + bias + ReLU /
    GELU + re-quantization on the TVP), an illegal command, a DMA window violation, each error
    followed by a good run; the counters add up. Random pauses on every AXI channel at the host
    side (the bench's AxiMasters) and at the HBM side (HBM_PAUSE: 30 % a channel a cycle)."""
    config = get_config(config_name)
    rng = np.random.default_rng(seed)
    fmts = sorted(config.format_names)
    with RtlBackend(config, pause=0.2, seed=seed) as tile:
        tile.poke("HBM_PAUSE", 77)
        assert tile.peek("HBM_PAUSE") == 77
        for i in range(2):                 # two random GEMMs (CI budget, docs/ci-budget.md)
            m = int(rng.integers(1, 3 * config.array_rows + 1))
            n = int(rng.integers(1, 3 * config.array_cols + 1))
            k = int(rng.integers(1, 100))
            fa, fb = fmts[int(rng.integers(len(fmts)))], fmts[int(rng.integers(len(fmts)))]
            compiled, qa, qb = _gemm_case(rng, config, m, n, k, fa, fb)
            result, out = run_compiled(tile, compiled, {"A": qa, "B": qb})
            assert result.ok, (i, result)
            assert np.array_equal(out["C"].view(np.uint32), mx_matmul(qa, qb).view(np.uint32)), \
                f"GEMM {m} x {n} x {k} {fa} x {fb}"
            c = result.counters
            assert c["macs"] == m * n * 32 * -(-k // 32)
            assert 0 < c["ttu_busy"] <= c["cycles"] and c["dma_busy"] <= c["cycles"]
            assert c["tcp.retired"] == len(compiled.program.commands)

        # a network: layers of GEMM + bias + activation (+ MX re-quantization between them)
        m, k = 6, 40
        layers = [Layer(n=40, fmt_w="e4m3", activation="relu", out_fmt="e4m3"),
                  Layer(n=9, fmt_w="e2m1", activation="gelu")]
        compiled = compile_layers(config, m=m, k=k, fmt_in="e4m3", layers=layers)
        tensors = {"X": quantize_mx(rng.standard_normal((m, k)).astype(np.float32), "e4m3",
                                     axis=1)}
        kin = k
        for i, layer in enumerate(layers):
            w = rng.standard_normal((kin, layer.n)).astype(np.float32)
            tensors[f"W{i}"] = quantize_mx(w, layer.fmt_w, axis=0)
            tensors[f"bias{i}"] = rng.standard_normal((1, layer.n)).astype(np.float32)
            kin = layer.n
        result, out = run_compiled(tile, compiled, tensors)
        assert result.ok, result
        assert result.counters["tvp.ops"] > 0
        _same_as_golden(config, compiled, tensors, out)

        # an illegal command stops the stream with its code and position; the next run works
        good = Program.parse("SIGNAL sem=0 count=1\nWAIT sem=0 count=1\nHALT").to_bytes()
        illegal = bytearray(encode(InterruptCmd(code=5)).to_bytes(64, "little"))
        illegal[1] |= 0x02                                      # reserved header bit 9
        result = tile.run(good[:128] + bytes(illegal) + good[128:])
        assert (result.state, result.error, result.source, result.error_position) == \
            ("ERROR", ErrorCode.ILLEGAL_FIELD, "COMMAND", 2), result

        # a DMA outside its queue's window: DESC_OUT_OF_WINDOW, nothing written; then a good run
        compiled, qa, qb = _gemm_case(rng, config, 4, 4, 64, fmts[0], fmts[0])
        hbm_before = tile.read(0, compiled.hbm_bytes)
        tile.set_window(0, 0, 15)
        result = tile.run(compiled.program)
        assert (result.state, result.error, result.source) == \
            ("ERROR", ErrorCode.DESC_OUT_OF_WINDOW, "DMA"), result
        assert tile.read(0, compiled.hbm_bytes) == hbm_before
        ring = tile_hbm_bytes(tile.hbm_bytes, tile.ring_entries) - 64 * tile.ring_entries
        tile.set_window(0, 0, ring - 1)
        result, out = run_compiled(tile, compiled, {"A": qa, "B": qb})
        assert result.ok
        assert np.array_equal(out["C"].view(np.uint32), mx_matmul(qa, qb).view(np.uint32))

        # CONTROL.counters_clear zeroes every group: with the tile idle, events stay at zero and
        # no counter exceeds the cycles since the clear
        events = ("tcp.issued_dma", "tcp.issued_ttu", "tcp.issued_tvp", "tcp.retired",
                  "dma.bytes_read", "dma.bytes_written", "dma.descs_done",
                  "dma.descs_rejected", "ttu.ttu.macs", "ttu.ttu.ops", "ttu.a.reads",
                  "ttu.c.writes", "ttu.ops", "tsram.accepted.0", "tsram.accepted.2",
                  "tsram.bank_cycles", "tile.dma_read_bytes", "fetch.commands", "tvp.ops")
        before = tile.read_counters()
        assert all(before[name] > 0 for name in events), \
            {name: before[name] for name in events if not before[name]}
        tile.poke("CONTROL", 1 << 2)
        after = tile.read_counters()
        assert {name: after[name] for name in events} == dict.fromkeys(events, 0)
        assert max(after.values()) <= after["tile.cycles"] < before["tile.cycles"], after


def test_dropped_wait_is_caught(seed):
    """The tile runs engines concurrently, so a program missing one of its WAITs computes or
    stores the wrong bytes: for at least one WAIT of a double-buffered GEMM the check against
    ``mx_matmul`` catches it on the tile, and the protocol checker flags every such program."""
    config = SMALL
    rng = np.random.default_rng(seed)
    m, n, k = 4, 12, 64
    compiled, qa, qb = _gemm_case(rng, config, m, n, k, "e4m3", "e4m3")
    waits = sum(1 for c in compiled.program.commands if isinstance(c, WaitCmd))
    want = mx_matmul(qa, qb).view(np.uint32)
    wrong = []
    programs = [compile_gemm(config, m=m, n=n, k=k, fmt_a="e4m3", fmt_b="e4m3",
                             faults={"drop_wait": i}) for i in range(min(waits, 6))]
    for i, broken in enumerate(programs):
        assert check_protocol(broken.program, dma_queues=config.dma_queues,
                              raise_on_error=False), f"WAIT {i} dropped, protocol clean"
    with RtlBackend(config, seed=seed) as tile:
        for i, broken in enumerate(programs):         # until one is caught (CI budget)
            tile.load(0, bytes(broken.hbm_bytes))             # stale outputs would hide it
            result, out = run_compiled(tile, broken, {"A": qa, "B": qb})
            if not (result.ok and np.array_equal(out["C"].view(np.uint32), want)):
                wrong.append(i)
                break
    assert wrong, f"no dropped WAIT (of {len(programs)}) changed the result"


def test_hbm_init_reaches_every_byte_through_the_interleaver():
    """``Tile(hbm_init=...)``: each channel's contents put every image byte at the flat address
    the interleaver maps it to, on 1 and 4 pseudo-channels; only ONCHIP presets take an image."""
    from openmaia.hbm.interleaver import InterleaveMap
    from openmaia.tile.tile import Tile, split_hbm_image
    image = np.random.default_rng(5).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    for channels in (1, 4):
        imap = InterleaveMap(channels=channels, addr_width=16)
        parts = split_hbm_image(image, channel_bytes=1 << 12, interleave_map=imap)
        assert len(parts) == channels and all(len(p) == 1 << 12 for p in parts)
        assert bytes(parts[c][a] for c, a in map(imap.map, range(len(image)))) == image
        assert sum(map(len, parts)) - sum(p.count(0) for p in parts) <= len(image)
    Tile(get_config("ice40"), hbm_bytes=4096, hbm_init=image)
    with pytest.raises(ValueError, match="more than hbm_bytes"):
        Tile(get_config("ice40"), hbm_bytes=4096, hbm_init=bytes(4097))
    with pytest.raises(ValueError, match="ONCHIP"):
        Tile(get_config("small"), hbm_bytes=4096, hbm_init=image)
