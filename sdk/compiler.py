"""Lower GEMMs and layer sequences to tile command programs (docs/sdk.md).

``C (M x N, FP32) = A (M x K) x B (K x N)`` of any shape, operands MX-quantized along K and laid
out in HBM as docs/layout.md says (:class:`~openmaia.layout.MxOperandLayout`, B stored as its
transpose; C an :class:`~openmaia.layout.Fp32MatrixLayout`). Everything the tiling depends on
comes from the :class:`~openmaia.config.Config`: the TSRAM size, the TTU array shape
(``array_rows`` x ``array_cols``), its resident accumulators (``acc_depth``), the panel length
(``ttu_panel_blocks``), the operand port (``ttu_port_words`` x ``tsram_bank_bytes``), the DMA
queues and the semaphores.

Tiling (:class:`GemmPlan`):

* K is cut into ``chain`` pieces of at most ``ttu_panel_blocks`` blocks; with more than one,
  each output sub-chunk is a *keep / accumulate chain* of tile ops (the first ``keep``, the
  middle ones ``accumulate`` + ``keep``, the last ``accumulate``), whose sub-chunk holds at most
  ``acc_depth`` array tiles (rule 3 of docs/ttu.md);
* an output *chunk* (``mc`` x ``nc``) is the C buffer in TSRAM; it is computed by one tile op
  (single-piece K) or by one chain per sub-chunk (``sm`` x ``sn``);
* the chunk sizes are the ones, among the candidates, that fit the TSRAM with every buffer
  doubled and move the fewest HBM bytes (ties: fewer, larger chunks).

Buffers (:class:`TsramMap`): two slots each for the A tile, the B tile, the C chunk and, in a
layer, the bias slice and the re-quantized output; code planes start on a port-aligned address
and have row strides that are multiples of 8 bytes (docs/ttu.md rule 4). A tile already in a slot
is not loaded again (A stays while the N chunks stream when K is one piece).

Ordering: every engine command signals the semaphore of its in-order completion stream (one per
DMA queue used, one for the TTU, one for the TVP). The emitter keeps a byte-range scoreboard of
the accesses not yet known complete and, before a command that conflicts with one of them, emits
``WAIT sem, n`` so that the command it depends on is known complete (a stream completes in order,
so the n-th completion is that command's). Per step the order is: tile op ``s``; the epilogue
(TVP ops and store) of a chunk finished by op ``s - 1``; the loads of step ``s + 1`` into the
slots op ``s - 1`` used. So op ``s`` is queued in the TTU while op ``s - 1`` runs, and the next
tiles' DMA overlaps op ``s``. The program ends by waiting for every command, then HALT.

Prologue: nothing overlaps the first chunk's loads, so with one K piece the first chunk is
computed by up to :data:`PROLOGUE_PIECES` tile ops, each over a slice of rows of the operand
with the larger tile (whole array tiles a slice), and that operand's tile is loaded slice by
slice after the other operand's tile: the first op waits for the smaller tile and one slice, and
each later slice loads while the op before it runs.
"""

import dataclasses
import itertools
from dataclasses import dataclass, field

from ..config import Config
from ..layout import Fp32MatrixLayout, MxOperandLayout, k_blocks, packed_row_bytes
from ..numerics.formats import BLOCK_SIZE, Format
from ..tile.dma_descriptor import COUNT_BITS, ELEM_SIZES, DmaDescriptor, DmaDirection
from ..tile.isa import DmaCmd, HaltCmd, TileOpCmd, TvpCmd, TvpOp, WaitCmd
from ..tile.tile_op import CODE_ALIGN, OperandPlace, ResultPlace, TileOp, block_bytes
from ..tile.ttu_stream import DIM_BITS, TtuOp
from .assembler import Program
from .protocol import footprint, target_of

__all__ = [
    "ACTIVATIONS",
    "HBM_ALIGN",
    "Compiled",
    "GemmPlan",
    "Layer",
    "compile_gemm",
    "compile_layers",
    "plan_gemm",
]

#: HBM bases of operands and results are multiples of this many bytes.
HBM_ALIGN = 64
#: Activations a layer may have (TVP ops).
ACTIVATIONS = {None: None, "relu": TvpOp.RELU, "gelu": TvpOp.GELU}
_MAX_DIM = (1 << DIM_BITS) - 1
#: The first output chunk is computed in this many pieces (module docstring, "Prologue").
PROLOGUE_PIECES = 4
_MAX_COUNT = (1 << COUNT_BITS) - 1


def _up(x, a):
    return -(-x // a) * a


def _cdiv(a, b):
    return -(-a // b)


@dataclass(frozen=True)
class Layer:
    """One layer: ``Y = X W (+ bias) -> activation -> (MX re-quantization)``. ``n``: output
    features; ``fmt_w``: the weights' MX format; ``bias``: add a bias row; ``activation``: None,
    ``"relu"`` or ``"gelu"``; ``out_fmt``: quantize the output to this MX format (the next
    layer's input), or None for FP32 output (the last layer)."""
    n: int
    fmt_w: Format
    bias: bool = True
    activation: str | None = "relu"
    out_fmt: Format | None = None

    def __post_init__(self):
        object.__setattr__(self, "fmt_w", Format.of(self.fmt_w))
        if self.out_fmt is not None:
            object.__setattr__(self, "out_fmt", Format.of(self.out_fmt))
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, "
                             f"not {self.activation!r}")
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n must be a positive integer, not {self.n!r}")


@dataclass(frozen=True)
class GemmPlan:
    """The tiling of one GEMM (module docstring)."""
    m: int
    n: int
    k: int
    fmt_a: Format
    fmt_b: Format
    k_chunks: tuple         # (first block, blocks) per tile op of a chain
    mc: int                 # output chunk rows
    nc: int                 # output chunk columns
    sm: int                 # sub-chunk rows (= mc when the chain is one op)
    sn: int
    a_rows: int             # rows of an A tile (mc or sm)
    b_rows: int
    hbm_bytes: int          # estimated HBM traffic
    tsram_bytes: int        # TSRAM the buffers take
    a_full_k: bool = False  # an A tile holds every K piece (loaded once per M chunk)

    @property
    def chain(self) -> int:
        return len(self.k_chunks)

    @property
    def kc(self) -> int:
        return max(b for _, b in self.k_chunks)

    @property
    def a_blocks(self) -> int:
        """K blocks an A tile holds (all of K when ``a_full_k``, else one piece)."""
        return k_blocks(self.k) if self.a_full_k else self.kc


@dataclass
class TsramMap:
    """TSRAM slots of one layer: name -> [(base, size)] x 2, plus the strides."""
    slots: dict
    a_stride: int
    b_stride: int
    c_stride: int
    q_stride: int
    q_scales_stride: int
    kc: int
    a_kb: int


def _slot_sizes(config, plan, *, bias, quant_fmt):
    bpb_a, bpb_b = block_bytes(plan.fmt_a), block_bytes(plan.fmt_b)
    a_stride = _up(plan.a_blocks * bpb_a, CODE_ALIGN)
    b_stride = _up(plan.kc * bpb_b, CODE_ALIGN)
    sizes = {
        "a_codes": plan.a_rows * a_stride, "a_scales": plan.a_rows * plan.a_blocks,
        "b_codes": plan.b_rows * b_stride, "b_scales": plan.b_rows * plan.kc,
        "c": plan.mc * 4 * plan.nc,
    }
    q_stride = q_sc = 0
    if quant_fmt is not None:
        q_stride = packed_row_bytes(plan.nc, quant_fmt)
        q_sc = k_blocks(plan.nc)
        sizes["q_codes"] = plan.mc * q_stride
        sizes["q_scales"] = plan.mc * q_sc
    if bias:
        sizes["bias"] = 4 * plan.nc
    return sizes, a_stride, b_stride, q_stride, q_sc


def _port_bytes(config):
    return max(CODE_ALIGN, config.ttu_port_words * config.tsram_bank_bytes)


def _layout_tsram(config, plan, *, bias, quant_fmt) -> TsramMap:
    sizes, a_stride, b_stride, q_stride, q_sc = _slot_sizes(config, plan, bias=bias,
                                                            quant_fmt=quant_fmt)
    align = _port_bytes(config)
    addr, slots = 0, {}
    for name, size in sizes.items():
        slots[name] = []
        for _ in range(2):
            addr = _up(addr, align)
            slots[name].append((addr, size))
            addr += size
    if addr > config.tsram_bytes:
        raise ValueError(f"buffers need {addr} bytes, TSRAM has {config.tsram_bytes}")
    return TsramMap(slots, a_stride, b_stride, 4 * plan.nc, q_stride, q_sc, plan.kc,
                    plan.a_blocks)


def _tsram_need(config, plan, *, bias, quant_fmt):
    sizes = _slot_sizes(config, plan, bias=bias, quant_fmt=quant_fmt)[0]
    align = _port_bytes(config)
    return sum(2 * (_up(s, align)) for s in sizes.values())


def _candidates(limit, unit):
    vals = {limit}
    v = unit
    while v < limit:
        vals.add(v)
        v *= 2
    return sorted(vals)


def plan_gemm(config: Config, *, m, n, k, fmt_a, fmt_b, bias=False, quant_fmt=None) -> GemmPlan:
    """The tiling of a GEMM on ``config`` (module docstring); ``bias`` / ``quant_fmt``: the
    layer epilogue's buffers also have to fit."""
    fmt_a, fmt_b = Format.of(fmt_a), Format.of(fmt_b)
    for fmt in (fmt_a, fmt_b) + ((Format.of(quant_fmt),) if quant_fmt else ()):
        if fmt not in config.formats:
            raise ValueError(f"format {fmt} is not built into configuration {config.name!r}")
    for name, v in (("m", m), ("n", n), ("k", k)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, not {v!r}")
    kb = k_blocks(k)
    chain = _cdiv(kb, config.ttu_panel_blocks)
    kc = _cdiv(kb, chain)
    chunks = tuple((b, min(kc, kb - b)) for b in range(0, kb, kc))
    rows, cols, slots = config.array_rows, config.array_cols, config.acc_depth
    n_unit = BLOCK_SIZE if quant_fmt is not None else cols
    # resident sub-chunk shapes: tm x tn array tiles, tm * tn <= slots
    subs = [(tm, slots // tm) for tm in (2 ** i for i in range(slots.bit_length()))
            if tm <= slots]
    size_a = m * packed_row_bytes(k, fmt_a)
    size_b = n * packed_row_bytes(k, fmt_b)
    best = None
    for mc in _candidates(min(m, _MAX_DIM), rows):
        for nc in _candidates(min(n, _MAX_DIM), n_unit):
            if quant_fmt is not None and nc % BLOCK_SIZE and nc != n:
                continue
            shapes = [(mc, nc)] if chain == 1 else \
                {(min(mc, tm * rows), min(nc, tn * cols)) for tm, tn in subs}
            for (sm, sn), a_full in itertools.product(shapes, (False, True) if chain > 1
                                                      else (False,)):
                a_rows, b_rows = (mc, nc) if chain == 1 or a_full else (sm, sn)
                if chain > 1 and a_full:
                    b_rows = sn
                if max(a_rows, b_rows) > _MAX_COUNT:
                    continue
                plan = GemmPlan(m, n, k, fmt_a, fmt_b, chunks, mc, nc, sm, sn, a_rows, b_rows,
                                0, 0, a_full)
                need = _tsram_need(config, plan, bias=bias, quant_fmt=quant_fmt)
                if need > config.tsram_bytes:
                    continue
                if chain == 1:
                    traffic = size_a + size_b * _cdiv(m, mc) if _cdiv(n, nc) > 1 else \
                        size_a + size_b
                elif a_full:
                    traffic = size_a + size_b * _cdiv(m, mc) * _cdiv(mc, sm)
                else:
                    traffic = (size_a * _cdiv(n, nc) * _cdiv(nc, sn)
                               + size_b * _cdiv(m, mc) * _cdiv(mc, sm))
                steps = _cdiv(m, mc) * _cdiv(n, nc) * _cdiv(mc, sm) * _cdiv(nc, sn)
                key = (traffic, steps, -mc * nc)
                if best is None or key < best[0]:
                    best = (key, plan, need, traffic)
    if best is None:
        raise ValueError(f"no tiling of {m} x {n} x {k} ({fmt_a} x {fmt_b}) fits "
                         f"{config.tsram_bytes} bytes of TSRAM")
    _, plan, need, traffic = best
    return GemmPlan(**{**plan.__dict__, "hbm_bytes": traffic + 4 * m * n, "tsram_bytes": need})


# ------------------------------------------------------------------------------------------------
# Emitter: scoreboard + semaphores
# ------------------------------------------------------------------------------------------------

class _Emitter:
    def __init__(self, config, *, faults):
        self.config = config
        self.program = Program()
        self.queues = {"load": 0, "store": min(1, config.dma_queues - 1)}
        targets = (["ttu"] + (["tvp"] if config.vector_unit else [])
                   + sorted({("dma", q) for q in self.queues.values()}))
        if len(targets) > config.tcp_semaphores:
            raise ValueError(f"the compiler needs {len(targets)} semaphores, the configuration "
                             f"has {config.tcp_semaphores}")
        self.sem = {t: i for i, t in enumerate(targets)}
        self.issued = {t: 0 for t in targets}
        self.known = {t: 0 for t in targets}
        self.live = []           # (target, position, accesses)
        self.waits = 0
        self.faults = dict(faults)
        unknown = set(self.faults) - {"drop_wait"}
        if unknown:
            raise ValueError(f"unknown fault(s): {', '.join(sorted(unknown))}")

    def _wait_for(self, target, pos):
        if self.known[target] > pos:
            return
        count = pos + 1 - self.known[target]
        self.known[target] = pos + 1
        index = self.waits
        self.waits += 1
        if self.faults.get("drop_wait") == index:
            return
        name = target if isinstance(target, str) else f"dma{target[1]}"
        self.program.append(WaitCmd(self.sem[target], count),
                            f"{name} #{pos} complete")

    def issue(self, cmd, comment=None):
        target = target_of(cmd, self.config.dma_queues)
        acc = footprint(cmd)
        self.live = [e for e in self.live if self.known[e[0]] <= e[1]]
        need = {}
        for t, pos, acc2 in self.live:
            if any(a.conflicts(b) for a in acc for b in acc2):
                need[t] = max(need.get(t, -1), pos)
        for t, pos in need.items():
            self._wait_for(t, pos)
        cmd = dataclasses.replace(cmd, signal=self.sem[target])
        self.program.append(cmd, comment)
        self.live.append((target, self.issued[target], acc))
        self.issued[target] += 1

    def finish(self):
        for t, n in self.issued.items():
            if n:
                self._wait_for(t, n - 1)
        self.program.append(HaltCmd(), "done")


def _copy(direction, hbm, tsram, row_bytes, rows, hbm_stride, tsram_stride):
    elem = next((e for e in reversed(ELEM_SIZES) if row_bytes % e == 0
                 and row_bytes // e <= _MAX_COUNT), None)
    if elem is None or rows > _MAX_COUNT:
        raise ValueError(f"a copy of {rows} rows of {row_bytes} bytes does not fit one "
                         f"descriptor")
    return DmaDescriptor(direction=direction, hbm_addr=hbm, tsram_addr=tsram,
                         count0=row_bytes // elem, count1=rows, hbm_stride1=hbm_stride,
                         tsram_stride1=tsram_stride, elem_size=elem)


# ------------------------------------------------------------------------------------------------
# Programs
# ------------------------------------------------------------------------------------------------

@dataclass
class Compiled:
    """A compiled workload: the program, where its tensors live in HBM (name -> layout), the
    plans, and the HBM bytes the program spans."""
    program: Program
    inputs: dict
    outputs: dict
    plans: list
    hbm_bytes: int
    info: dict = field(default_factory=dict)


class _HbmAllocator:
    def __init__(self, base):
        self.addr = base
        self.regions = {}

    def take(self, name, size):
        self.addr = _up(self.addr, HBM_ALIGN)
        base = self.addr
        self.addr += size
        self.regions[name] = (base, size)
        return base

    def operand(self, name, rows, k, fmt):
        rb = packed_row_bytes(k, fmt)
        codes = self.take(name + ".codes", rows * rb)
        scales = self.take(name + ".scales", rows * k_blocks(k))
        return MxOperandLayout(rows=rows, k=k, fmt=fmt, codes_base=codes, codes_row_stride=rb,
                               scales_base=scales, scales_row_stride=k_blocks(k))

    def fp32(self, name, rows, cols):
        return Fp32MatrixLayout(rows=rows, cols=cols, base=self.take(name, 4 * rows * cols),
                                row_stride=4 * cols)


def _emit_gemm(em: _Emitter, config, plan: GemmPlan, ts: TsramMap, *, a_hbm, b_hbm, out_hbm,
               bias_hbm, activation, quant_fmt, layer_id):
    """Append one (layer) GEMM's commands to ``em``."""
    rows_blocks = plan.k_chunks
    bpb_a, bpb_b = block_bytes(plan.fmt_a), block_bytes(plan.fmt_b)
    slot_key = {name: [None, None] for name in ("a", "b", "bias")}
    slot_use = {name: [-1, -1] for name in ("a", "b", "bias")}

    # steps: (chunk index, chunk (m0, mc, n0, nc), sub (ms, sm, ns, sn), chain index)
    chunks = [(m0, min(plan.mc, plan.m - m0), n0, min(plan.nc, plan.n - n0))
              for m0 in range(0, plan.m, plan.mc) for n0 in range(0, plan.n, plan.nc)]
    steps = []
    for ci, (m0, mc, n0, nc) in enumerate(chunks):
        for ms in range(0, mc, plan.sm):
            for ns in range(0, nc, plan.sn):
                sub = (ms, min(plan.sm, mc - ms), ns, min(plan.sn, nc - ns))
                for li in range(len(rows_blocks)):
                    steps.append((ci, sub, li))

    # Prologue (module docstring): the first chunk in slices of the larger operand tile.
    split_kind, slices = None, []
    if plan.chain == 1:
        _, mc, _, nc = chunks[0]
        a_bytes = mc * packed_row_bytes(plan.k, plan.fmt_a)
        b_bytes = nc * packed_row_bytes(plan.k, plan.fmt_b)
        split_kind, extent, unit = ("a", mc, config.array_rows) if a_bytes >= b_bytes \
            else ("b", nc, config.array_cols)
        size = _up(_cdiv(extent, PROLOGUE_PIECES), unit)
        slices = [(o, min(size, extent - o)) for o in range(0, extent, size)]
        if len(slices) > 1:
            steps[:1] = [(0, (o, n, 0, nc) if split_kind == "a" else (0, mc, o, n), 0)
                         for o, n in slices]
        else:
            split_kind, slices = None, []

    def tile_keys(step):
        ci, (ms, sm, ns, sn), li = step
        m0, mc, n0, nc = chunks[ci]
        if plan.chain == 1:
            a = (m0, mc, li)
            b = (n0, nc, li)
        elif plan.a_full_k:
            a = (m0, mc, None)
            b = (n0 + ns, sn, li)
        else:
            a = (m0 + ms, sm, li)
            b = (n0 + ns, sn, li)
        return {"a": a, "b": b, "bias": (n0, nc) if bias_hbm is not None else None}

    def acquire(kind, key, s):
        keys = slot_key[kind]
        if key in keys:
            i = keys.index(key)
            slot_use[kind][i] = s
            return i, False
        i = min((0, 1), key=lambda j: slot_use[kind][j])
        keys[i] = key
        slot_use[kind][i] = s
        return i, True

    placed = {}   # step -> {"a": slot, "b": slot, "bias": slot}

    def load(s):
        keys = tile_keys(steps[s])
        where = {}
        order = ("b", "a", "bias") if split_kind == "a" else ("a", "b", "bias")
        for kind in order:
            key = keys[kind]
            if key is None:
                continue
            i, fresh = acquire(kind, key, s)
            where[kind] = i
            if not fresh:
                continue
            if kind == "bias":
                n0, nc = key
                base = ts.slots["bias"][i][0]
                em.issue(DmaCmd(em.queues["load"], _copy(
                    DmaDirection.HBM_TO_TSRAM, bias_hbm.base + 4 * n0, base, 4 * nc, 1, 0, 0)),
                    f"L{layer_id} load bias[{n0}:{n0 + nc}]")
                continue
            r0, nr, li = key
            kb0, kbn = rows_blocks[li] if li is not None else (0, ts.a_kb)
            hbm = a_hbm if kind == "a" else b_hbm
            bpb = bpb_a if kind == "a" else bpb_b
            stride = ts.a_stride if kind == "a" else ts.b_stride
            cbase = ts.slots[f"{kind}_codes"][i][0]
            sbase = ts.slots[f"{kind}_scales"][i][0]
            sstride = ts.a_kb if kind == "a" else ts.kc
            for o, n in slices if s == 0 and kind == split_kind else [(0, nr)]:
                em.issue(DmaCmd(em.queues["load"], _copy(
                    DmaDirection.HBM_TO_TSRAM,
                    hbm.codes_base + (r0 + o) * hbm.codes_row_stride + kb0 * bpb,
                    cbase + o * stride, kbn * bpb, n, hbm.codes_row_stride, stride)),
                    f"L{layer_id} load {kind.upper()} rows {r0 + o}+{n} blocks {kb0}+{kbn} "
                    f"codes")
                em.issue(DmaCmd(em.queues["load"], _copy(
                    DmaDirection.HBM_TO_TSRAM,
                    hbm.scales_base + (r0 + o) * hbm.scales_row_stride + kb0,
                    sbase + o * sstride, kbn, n, hbm.scales_row_stride, sstride)),
                    f"L{layer_id} load {kind.upper()} scales")
        placed[s] = where

    def tile_op(s):
        ci, (ms, sm, ns, sn), li = steps[s]
        m0, _, n0, _ = chunks[ci]
        ka, kbn = rows_blocks[li]
        keys = tile_keys(steps[s])
        w = placed[s]
        a_off = (m0 + ms) - keys["a"][0]
        a_kb0 = ka if keys["a"][2] is None else 0     # piece offset inside a full-K A tile
        b_off = (n0 + ns) - keys["b"][0]
        ac, asc = ts.slots["a_codes"][w["a"]][0], ts.slots["a_scales"][w["a"]][0]
        bc, bsc = ts.slots["b_codes"][w["b"]][0], ts.slots["b_scales"][w["b"]][0]
        cbase = ts.slots["c"][ci % 2][0]
        last = li == plan.chain - 1
        op = TtuOp(m=sm, n=sn, k=kbn, fmt_a=plan.fmt_a, fmt_b=plan.fmt_b,
                   accumulate=li > 0, keep=not last, tag=s % 256)
        t = TileOp(op=op,
                   a=OperandPlace(ac + a_off * ts.a_stride + a_kb0 * bpb_a, ts.a_stride,
                                  asc + a_off * ts.a_kb + a_kb0, ts.a_kb),
                   b=OperandPlace(bc + b_off * ts.b_stride, ts.b_stride, bsc + b_off * ts.kc,
                                  ts.kc),
                   c=ResultPlace(cbase + ms * ts.c_stride + 4 * ns if last else 0,
                                 ts.c_stride if last else 0))
        em.issue(TileOpCmd(t), f"L{layer_id} C[{m0 + ms}+{sm}, {n0 + ns}+{sn}] "
                               f"K blocks {ka}+{kbn}" + (" keep" if not last else ""))

    def epilogue(ci, s_last):
        m0, mc, n0, nc = chunks[ci]
        cbase = ts.slots["c"][ci % 2][0]
        cs = ts.c_stride
        if bias_hbm is not None:
            bslot = ts.slots["bias"][placed[s_last]["bias"]][0]
            em.issue(TvpCmd(TvpOp.BIAS_ADD, rows=mc, cols=nc, a=cbase, a_stride=cs, b=bslot,
                            d=cbase, d_stride=cs), f"L{layer_id} bias")
        if activation is not None:
            em.issue(TvpCmd(ACTIVATIONS[activation], rows=mc, cols=nc, a=cbase, a_stride=cs,
                            d=cbase, d_stride=cs), f"L{layer_id} {activation}")
        store = em.queues["store"]
        if quant_fmt is None:
            em.issue(DmaCmd(store, _copy(
                DmaDirection.TSRAM_TO_HBM, out_hbm.base + m0 * out_hbm.row_stride + 4 * n0,
                cbase, 4 * nc, mc, out_hbm.row_stride, cs)),
                f"L{layer_id} store C[{m0}+{mc}, {n0}+{nc}]")
            return
        qc, qs = ts.slots["q_codes"][ci % 2][0], ts.slots["q_scales"][ci % 2][0]
        em.issue(TvpCmd(TvpOp.QUANT_MX, rows=mc, cols=nc, a=cbase, a_stride=cs, d=qc,
                        d_stride=ts.q_stride, d_scales=qs, d_scales_stride=ts.q_scales_stride,
                        fmt=quant_fmt), f"L{layer_id} quantize to {quant_fmt.name}")
        bpb = block_bytes(quant_fmt)
        nb0 = n0 // BLOCK_SIZE
        em.issue(DmaCmd(store, _copy(
            DmaDirection.TSRAM_TO_HBM,
            out_hbm.codes_base + m0 * out_hbm.codes_row_stride + nb0 * bpb, qc,
            packed_row_bytes(nc, quant_fmt), mc, out_hbm.codes_row_stride, ts.q_stride)),
            f"L{layer_id} store X[{m0}+{mc}, {n0}+{nc}] codes")
        em.issue(DmaCmd(store, _copy(
            DmaDirection.TSRAM_TO_HBM,
            out_hbm.scales_base + m0 * out_hbm.scales_row_stride + nb0, qs, k_blocks(nc), mc,
            out_hbm.scales_row_stride, ts.q_scales_stride)), f"L{layer_id} store X scales")

    def chunk_done(s):
        return s == len(steps) - 1 or steps[s + 1][0] != steps[s][0]

    load(0)
    pending = None
    for s in range(len(steps)):
        tile_op(s)
        if pending is not None:
            epilogue(*pending)
            pending = None
        if chunk_done(s):
            pending = (steps[s][0], s)
        if s + 1 < len(steps):
            load(s + 1)
    if pending is not None:
        epilogue(*pending)


def compile_layers(config: Config, *, m: int, k: int, fmt_in, layers, hbm_base: int = 0,
                   faults=()) -> Compiled:
    """A program for ``layers`` applied to an input X (``m`` x ``k``, MX ``fmt_in`` along K):
    inputs ``X``, ``W{i}`` (K_i x N_i, stored transposed), ``bias{i}`` (1 x N_i FP32); output
    ``Y`` (the last layer's). Intermediate activations go through HBM (``X{i}``), written by one
    layer's stores and read by the next one's loads (the scoreboard orders them).
    ``faults``: ``{"drop_wait": i}`` drops the i-th WAIT the compiler would emit (fault twin of
    the protocol checker)."""
    layers = list(layers)
    if not layers:
        raise ValueError("at least one layer")
    for i, layer in enumerate(layers[:-1]):
        if layer.out_fmt is None:
            raise ValueError(f"layer {i} feeds another layer: it needs out_fmt")
    if not config.vector_unit:
        for i, layer in enumerate(layers):
            needs = [what for what, used in (("bias", layer.bias),
                                             (f"activation {layer.activation!r}",
                                              layer.activation is not None),
                                             ("MX re-quantization (out_fmt)",
                                              layer.out_fmt is not None)) if used]
            if needs:
                raise ValueError(f"layer {i} needs the vector unit (TVP) for its "
                                 f"{', '.join(needs)}, and configuration {config.name!r} has "
                                 f"none (tvp_lanes=0): only plain GEMMs (compile_gemm, or "
                                 f"layers with bias=False, activation=None, out_fmt=None) run "
                                 f"on it")
    hbm = _HbmAllocator(hbm_base)
    x = hbm.operand("X", m, k, Format.of(fmt_in))
    inputs, outputs, plans = {"X": x}, {}, []
    weights = []
    kin = k
    for i, layer in enumerate(layers):
        w = hbm.operand(f"W{i}", layer.n, kin, layer.fmt_w)
        inputs[f"W{i}"] = w
        bias = hbm.fp32(f"bias{i}", 1, layer.n) if layer.bias else None
        if bias is not None:
            inputs[f"bias{i}"] = bias
        weights.append((w, bias))
        kin = layer.n
    em = _Emitter(config, faults=dict(faults))
    a_hbm, fmt_a, kin = x, Format.of(fmt_in), k
    for i, layer in enumerate(layers):
        w, bias = weights[i]
        last = i == len(layers) - 1
        if layer.out_fmt is not None:
            out = hbm.operand("Y" if last else f"X{i + 1}", m, layer.n, layer.out_fmt)
        else:
            out = hbm.fp32("Y", m, layer.n)
        plan = plan_gemm(config, m=m, n=layer.n, k=kin, fmt_a=fmt_a, fmt_b=layer.fmt_w,
                         bias=layer.bias, quant_fmt=layer.out_fmt)
        ts = _layout_tsram(config, plan, bias=layer.bias, quant_fmt=layer.out_fmt)
        _emit_gemm(em, config, plan, ts, a_hbm=a_hbm, b_hbm=w, out_hbm=out, bias_hbm=bias,
                   activation=layer.activation, quant_fmt=layer.out_fmt, layer_id=i)
        plans.append(plan)
        if last:
            outputs["Y"] = out
        else:
            inputs_next = out
            a_hbm, fmt_a, kin = inputs_next, layer.out_fmt, layer.n
    _check_hbm(config, hbm)
    em.finish()
    em.program.regions = dict(hbm.regions)
    return Compiled(program=em.program, inputs=inputs, outputs=outputs, plans=plans,
                    hbm_bytes=_up(hbm.addr, HBM_ALIGN), info={"waits": em.waits})


def _check_hbm(config, hbm):
    if hbm.addr > 1 << config.axi_addr_bits:
        raise ValueError(f"the tensors need HBM up to {hbm.addr:#x}, beyond the "
                         f"{config.axi_addr_bits}-bit address space")


def compile_gemm(config: Config, *, m: int, n: int, k: int, fmt_a, fmt_b, hbm_base: int = 0,
                 faults=()) -> Compiled:
    """A program for ``C = A x B`` (inputs ``A`` (M x K), ``B`` (K x N, stored as its transpose),
    output ``C`` (M x N FP32)); see the module docstring."""
    hbm = _HbmAllocator(hbm_base)
    fmt_a, fmt_b = Format.of(fmt_a), Format.of(fmt_b)
    a = hbm.operand("A", m, k, fmt_a)
    b = hbm.operand("B", n, k, fmt_b)
    c = hbm.fp32("C", m, n)
    _check_hbm(config, hbm)
    plan = plan_gemm(config, m=m, n=n, k=k, fmt_a=fmt_a, fmt_b=fmt_b)
    ts = _layout_tsram(config, plan, bias=False, quant_fmt=None)
    em = _Emitter(config, faults=dict(faults))
    _emit_gemm(em, config, plan, ts, a_hbm=a, b_hbm=b, out_hbm=c, bias_hbm=None,
               activation=None, quant_fmt=None, layer_id=0)
    em.finish()
    em.program.regions = dict(hbm.regions)
    return Compiled(program=em.program, inputs={"A": a, "B": b}, outputs={"C": c}, plans=[plan],
                    hbm_bytes=_up(hbm.addr, HBM_ALIGN), info={"waits": em.waits})



def plan_table(config: Config, shapes, pairs) -> str:
    """A markdown table of the plans of ``shapes`` ((M, N, K)) x ``pairs`` ((fmt_a, fmt_b)):
    chunk, sub-chunk, K pieces, TSRAM and estimated HBM bytes, MACs per HBM byte."""
    header = ("| M x N x K | formats | chunk | sub-chunk | K pieces | A tile | TSRAM bytes | "
              "HBM bytes (est.) | MAC / HBM byte |")
    out = [header, "|---|---|---|---|---:|---|---:|---:|---:|"]
    for (m, n, k), (fa, fb) in itertools.product(shapes, pairs):
        p = plan_gemm(config, m=m, n=n, k=k, fmt_a=fa, fmt_b=fb)
        macs = m * n * BLOCK_SIZE * k_blocks(k)
        out.append(f"| {m} x {n} x {k} | {p.fmt_a.name} x {p.fmt_b.name} | {p.mc} x {p.nc} | "
                   f"{p.sm} x {p.sn} | {p.chain} | {'all K' if p.a_full_k else 'one piece'} | "
                   f"{p.tsram_bytes:,} | {p.hbm_bytes:,} | {macs / p.hbm_bytes:.1f} |")
    return "\n".join(out)


if __name__ == "__main__":
    import argparse

    from ..config import get_config, preset_names
    parser = argparse.ArgumentParser(description="print the compiler's GEMM plans")
    parser.add_argument("--config", default="default", choices=preset_names())
    args = parser.parse_args()
    print(plan_table(get_config(args.config),
                     [(1024, 1024, 1024), (1, 4096, 4096), (4096, 4096, 4096),
                      (128, 128, 8192)],
                     [("e4m3", "e4m3"), ("e4m3", "e2m1"), ("e2m1", "e2m1")]))
