"""The TTU's operand fetcher: MX operand rows in tile SRAM -> a stream of operand beats.

:class:`OperandFetcher` takes *jobs* (a group of up to ``tiles x count`` operand rows with their
code and scale planes, K blocks, a format) and produces the beats of
:class:`~.ttu_stream.OperandBeat` in the order :func:`~.ttu_stream.schedule` defines: block by
block, and within a block tile by tile (``tiles`` = 2 for B, whose N tiles go in pairs; 1 for
A), ``beats_per_block`` beats each, ``count`` rows a beat, rows past the group's end zero.

Reads go out on one :class:`~..bus.memory_port.MemoryPortSignature` port of ``word_bytes``
bytes (``ttu_port_words`` tile SRAM words); every group row has a small buffer of ``slots``
port words into which its code words are written at ``virtual word number mod slots`` (no
realignment on the way in), and a buffer of two ``scale_bytes`` words for its scale plane. A
round-robin requester asks for the next word of any row whose buffer has room; the reader takes
a block (16, 24 or 32 bytes, from any 8-byte offset) out of the buffers of every row of a tile
once all are there, unpacks it to one code a byte (FP8 / INT8 as is, FP6 and FP4 widened; in FP4
x FP4 double-rate mode the packed bytes as they are) and emits its beats. Words read with an
uncorrectable ECC error poison the beats made from them: the op's status (one per job marked
``last``, in job order) is then ``ECC_UNCORRECTABLE``; the data still flows.

Jobs must be legal (the engine checks the op first): code addresses multiples of 8 bytes,
``rows`` >= 1, ``k`` >= 1, everything inside the SRAM.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..bus.memory_port import EccStatus, MemoryPortSignature
from ..errors import ErrorCode
from ..numerics.formats import BLOCK_SIZE, Format
from .tile_op import ADDR_BITS
from .ttu_stream import DIM_BITS, OperandBeat, queue

__all__ = ["FetchJob", "FetchCounters", "OperandFetcher", "FAULTS"]

#: Deliberate bugs for mutation tests: ``no_room_check`` (a row's next word is requested
#: without waiting for room in its buffer, overwriting words not yet read), ``fp6_msb_first``
#: (FP6 codes taken from the top of each 6-bit field's byte group, i.e. the wrong bit order),
#: ``regrant_while_stalled`` (the memory request re-arbitrated while stalled, so its address can
#: change before the transfer: the stream-rule bug the handshake proof found).
FAULTS = ("no_room_check", "fp6_msb_first", "regrant_while_stalled")

COUNTER_BITS = 48
_QW = 8   # bytes of the buffers' unit: every block is a whole number of them


def _log2(n):
    return n.bit_length() - 1


def _is_pow2(n):
    return isinstance(n, int) and n > 0 and n & (n - 1) == 0


class FetchJob(data.Struct):
    """One group of operand rows (:meth:`of` gives the layout for ``tiles x count`` rows).

    ``codes``, ``codes_stride``, ``scales``, ``scales_stride``: byte address of the group's
    first row in each plane and the row strides (``addr_bits`` bits: the SRAM's byte address
    bits; a legal job's addresses fit, and a stride that does not matters only for a single
    row, whose stride is never used); ``rows``: rows in the group (1 ..
    ``tiles x count``); ``k``: blocks; ``fmt``: element format (``hw_code``); ``pair``: FP4 x
    FP4 double-rate mode (packed beats of ``2 x lanes`` codes); ``last``: the op's last job.
    """

    @staticmethod
    def of(group_rows: int, addr_bits: int = ADDR_BITS) -> data.StructLayout:
        return data.StructLayout({
            "codes": addr_bits, "codes_stride": addr_bits,
            "scales": addr_bits, "scales_stride": addr_bits,
            "rows": range(group_rows + 1), "k": DIM_BITS, "fmt": 3, "pair": 1, "last": 1,
        })


class FetchCounters(data.Struct):
    """``busy``: cycles with a job in the fetcher; ``stall_input``: cycles the reader waits for
    SRAM data with room to emit; ``stall_output``: cycles a beat waits for the TTU; ``beats``;
    ``reads``: read requests; ``poisoned``: beats made from uncorrectable words."""
    busy:         COUNTER_BITS
    stall_input:  COUNTER_BITS
    stall_output: COUNTER_BITS
    beats:        COUNTER_BITS
    reads:        COUNTER_BITS
    poisoned:     32


def _sel(values, index):
    return values[0] if len(values) == 1 else Array(values)[index]


def _block_bytes(fmt_code, formats):
    """Bytes a block of the format ``fmt_code`` (a signal) packs into."""
    value = Const(32, 6)
    for f in formats:
        if f.spec.bits != 8:
            value = Mux(fmt_code == f.spec.hw_code, BLOCK_SIZE * f.spec.bits // 8, value)
    return value


def _times_const(x, n: int):
    """``x * n`` for a constant ``n >= 1`` as shifts and adds (never a DSP block)."""
    terms = [x << i for i in range(n.bit_length()) if n >> i & 1]
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def _times_block_bytes(k, fmt_code, formats):
    """``k`` x the bytes a block of the format ``fmt_code`` packs into, as shifts and adds of
    ``k`` selected by format (a multiplier by a variable would cost an array or a DSP)."""
    value = _times_const(k, BLOCK_SIZE)
    for f in formats:
        if f.spec.bits != 8:
            value = Mux(fmt_code == f.spec.hw_code,
                        _times_const(k, BLOCK_SIZE * f.spec.bits // 8), value)
    return value


class OperandFetcher(wiring.Component):
    """Operand rows in tile SRAM -> :class:`OperandBeat` stream (module docstring).

    Parameters
    ----------
    count : int
        Rows a beat (array rows for A, columns for B).
    tiles : int
        1 (A: one tile a group) or 2 (B: a pair of N tiles interleaved block by block).
    lanes : int
        Bytes of a row in a beat.
    formats : iterable of Format
        Formats that can occur (the others are not built).
    fp4_double_rate : bool
        Whether FP4 x FP4 jobs (``pair``) are packed two codes a byte.
    word_bytes : int
        Bytes a read moves (a power of two >= 8).
    scale_bytes : int
        Bytes of the tile SRAM word (scale reads take this part of a read).
    addr_width : int
        Address bits of the port (in ``word_bytes`` units).
    panel_blocks : int
        Largest ``k`` of a job.
    job_depth : int
        Jobs the fetcher holds (requested ahead of the reader).
    faults : collection of str
        Deliberate bugs from :data:`FAULTS`; empty for the real design.

    Ports
    -----
    job : In(stream of FetchJob.of(tiles * count, job_addr_bits))
    mem : Out(MemoryPortSignature(addr_width=addr_width, data_width=8 * word_bytes))
    beats : Out(stream of OperandBeat.of(count, lanes))
    status : Out(stream of 8)         one ``ErrorCode`` per job with ``last``, in order
    counters : Out(FetchCounters), counters_clear : In(1)
    """

    def __init__(self, *, count, tiles, lanes, formats, fp4_double_rate, word_bytes,
                 scale_bytes, addr_width, panel_blocks, job_depth=4, faults=frozenset()):
        formats = frozenset(Format.of(f) for f in formats)
        faults = frozenset(faults)
        if not faults <= set(FAULTS):
            raise ValueError(f"unknown faults {sorted(faults - set(FAULTS))}")
        self._faults = faults
        if not _is_pow2(count):
            raise ValueError(f"count must be a power of two, not {count!r}")
        if tiles not in (1, 2):
            raise ValueError(f"tiles must be 1 or 2, not {tiles!r}")
        if lanes not in (1, 2, 4, 8, 16):
            raise ValueError(f"lanes must be 1, 2, 4, 8 or 16, not {lanes!r}")
        if not _is_pow2(word_bytes) or word_bytes < _QW:
            raise ValueError(f"word_bytes must be a power of two >= {_QW}, not {word_bytes!r}")
        if not _is_pow2(scale_bytes) or scale_bytes > word_bytes:
            raise ValueError(f"scale_bytes must be a power of two <= word_bytes, "
                             f"not {scale_bytes!r}")
        if not isinstance(panel_blocks, int) or not 1 <= panel_blocks < 2 ** DIM_BITS:
            raise ValueError(f"panel_blocks must be in 1..{2 ** DIM_BITS - 1}")
        if not isinstance(addr_width, int) or not 1 <= addr_width <= ADDR_BITS:
            raise ValueError(f"addr_width must be in 1..{ADDR_BITS}, not {addr_width!r}")
        if not formats:
            raise ValueError("formats must not be empty")
        self._count, self._tiles, self._lanes = count, tiles, lanes
        self._formats = formats
        self._pair = fp4_double_rate and Format.E2M1 in formats
        self._word_bytes, self._scale_bytes = word_bytes, scale_bytes
        self._addr_width, self._panel_blocks = addr_width, panel_blocks
        if not isinstance(job_depth, int) or isinstance(job_depth, bool) or job_depth < 2:
            raise ValueError(f"job_depth must be an integer >= 2, not {job_depth!r}")
        self._job_depth = job_depth
        self._job_addr_bits = min(ADDR_BITS, addr_width + _log2(word_bytes))
        # A block spans at most ceil(32 / word) + 1 words; two more let the next word arrive
        # while a row's block is read (a 64-byte word or wider holds a block most of the time).
        span = -(-BLOCK_SIZE // word_bytes) + 1
        self._slots = 2 if word_bytes >= 64 else 1 << (span + 2 - 1).bit_length()
        self._scale_slots = 2
        super().__init__({
            "job": In(stream.Signature(FetchJob.of(tiles * count, self._job_addr_bits))),
            "mem": Out(MemoryPortSignature(addr_width=addr_width, data_width=8 * word_bytes)),
            "beats": Out(stream.Signature(OperandBeat.of(count, lanes))),
            "status": Out(stream.Signature(8)),
            "counters": Out(FetchCounters), "counters_clear": In(1),
        })

    count = property(lambda self: self._count)
    tiles = property(lambda self: self._tiles)
    lanes = property(lambda self: self._lanes)
    word_bytes = property(lambda self: self._word_bytes)
    panel_blocks = property(lambda self: self._panel_blocks)
    job_addr_bits = property(lambda self: self._job_addr_bits)
    slots = property(lambda self: self._slots)

    def elaborate(self, platform):
        m = Module()
        R, T, lanes = self._count, self._tiles, self._lanes
        G = T * R                                   # rows of a group
        W, S = self._word_bytes, self._scale_bytes
        A = self._job_addr_bits                     # byte address bits (mod 2 ** A)
        SL, SSL = self._slots, self._scale_slots
        QPW = W // _QW                              # qwords a word
        Q = SL * QPW                                # qwords a row buffer
        max_words = -(-(W - _QW + self._panel_blocks * BLOCK_SIZE) // W)
        max_swords = -(-(S - 1 + self._panel_blocks) // S)
        VB = (max(max_words, max_swords) + max(SL, SSL)).bit_length() + 2
        WORDS = range(max_words + 1)
        SWORDS = range(max_swords + 1)
        formats = sorted(self._formats, key=lambda f: f.spec.hw_code)

        # ---- job expansion: per-row offsets and word counts -------------------------------
        def expand(job):
            """(code word addr, code byte offset, code words, scale word addr, scale offset,
            scale words) of every row of ``job`` (rows past ``job.rows``: zero words)."""
            kbytes = Signal(DIM_BITS + 6)
            m.d.comb += kbytes.eq(_times_block_bytes(job.k, job.fmt, formats))
            out = []
            for i in range(G):
                caddr = Signal(A, name=f"x_caddr{i}")
                saddr = Signal(A, name=f"x_saddr{i}")
                nw = Signal(WORDS, name=f"x_nw{i}")
                ns = Signal(SWORDS, name=f"x_ns{i}")
                m.d.comb += [caddr.eq(job.codes + job.codes_stride * i),
                             saddr.eq(job.scales + job.scales_stride * i)]
                active = i < job.rows
                m.d.comb += [
                    nw.eq(Mux(active, (caddr[:_log2(W)] + kbytes + W - 1) >> _log2(W), 0)),
                    ns.eq(Mux(active, (saddr[:_log2(S)] + job.k + S - 1) >> _log2(S), 0)),
                ]
                out.append((caddr, nw, saddr, ns))
            return out

        # ---- requester ---------------------------------------------------------------------
        RJOB = data.StructLayout({
            "job": FetchJob.of(G, A),
            "rows": data.ArrayLayout(data.StructLayout({
                "coff": range(W), "nw": WORDS, "soff": range(S), "ns": SWORDS}), G),
        })
        m.submodules.rjobs = rjobs = queue(width=RJOB.size, depth=self._job_depth)
        busy_req = Signal()
        job_in = self.job.payload
        x = expand(job_in)
        rj = Signal(RJOB)
        m.d.comb += rj.job.eq(job_in)
        for i, (caddr, nw, saddr, ns) in enumerate(x):
            m.d.comb += [rj.rows[i].coff.eq(caddr[:_log2(W)]), rj.rows[i].nw.eq(nw),
                         rj.rows[i].soff.eq(saddr[:_log2(S)]), rj.rows[i].ns.eq(ns)]
        load_job = Signal()
        m.d.comb += [
            self.job.ready.eq(~busy_req & rjobs.w_rdy),
            load_job.eq(self.job.valid & self.job.ready),
            rjobs.w_en.eq(load_job), rjobs.w_data.eq(rj),
        ]

        c_next = [Signal(A - _log2(W), name=f"c_next{i}") for i in range(G)]
        c_left = [Signal(WORDS, name=f"c_left{i}") for i in range(G)]
        c_req_v = [Signal(VB, name=f"c_req_v{i}") for i in range(G)]
        s_next = [Signal(A - _log2(S), name=f"s_next{i}") for i in range(G)]
        s_left = [Signal(SWORDS, name=f"s_left{i}") for i in range(G)]
        s_req_v = [Signal(VB, name=f"s_req_v{i}") for i in range(G)]
        c_rd_v = [Signal(VB, name=f"c_rd_v{i}") for i in range(G)]    # from the reader
        s_rd_v = [Signal(VB, name=f"s_rd_v{i}") for i in range(G)]

        with m.If(load_job):
            m.d.sync += busy_req.eq(1)
            for i, (caddr, nw, saddr, ns) in enumerate(x):
                m.d.sync += [c_next[i].eq(caddr >> _log2(W)), c_left[i].eq(nw),
                             s_next[i].eq(saddr >> _log2(S)), s_left[i].eq(ns)]

        def room(req_v, rd_v, slots):
            diff = Signal(signed(VB))
            m.d.comb += diff.eq(req_v - rd_v)
            return Const(1) if "no_room_check" in self._faults else diff < slots

        # candidates: scale requests of rows 0..G-1, then code requests
        elig = Signal(2 * G)
        for i in range(G):
            m.d.comb += [elig[i].eq((s_left[i] != 0) & room(s_req_v[i], s_rd_v[i], SSL)),
                         elig[G + i].eq((c_left[i] != 0) & room(c_req_v[i], c_rd_v[i], SL))]
        all_done = Signal()
        m.d.comb += all_done.eq(Cat(*(v != 0 for v in c_left + s_left)) == 0)
        last_grant = Signal(range(2 * G))
        masked = Signal(2 * G)
        m.d.comb += masked.eq(elig & ~((Const(2, 2 * G + 1) << last_grant) - 1)[:2 * G])
        pick_from = Signal(2 * G)
        m.d.comb += pick_from.eq(Mux(masked.any(), masked, elig))
        picked = Signal(range(2 * G))
        for n in reversed(range(2 * G)):
            with m.If(pick_from[n]):
                m.d.comb += picked.eq(n)
        # A stalled request keeps its grant: room freed meanwhile may make another candidate
        # eligible, and switching to it would change `req.payload` before the transfer (the
        # stream rule; found by the TileTensorEngine handshake proof, docs/verification.md).
        # The held candidate stays eligible: eligibility only grows until a request is taken.
        grant = Signal(range(2 * G))
        stalled = Signal()
        held_grant = Signal(range(2 * G))
        m.d.comb += grant.eq(Mux(stalled & ("regrant_while_stalled" not in self._faults),
                                 held_grant, picked))

        # A read serves every row that wants the same port word next (rows shorter than a
        # word, tight scale planes: one read for many rows). The tag records which rows take it,
        # each with its buffer slot and (scales) the SRAM word within the port word.
        LB = max(1, _log2(W // S))
        TAG = data.StructLayout({"scale": 1, "rows": G,
                                 "slot": data.ArrayLayout(_log2(max(SL, SSL)), G),
                                 "lane": data.ArrayLayout(LB, G)})
        m.submodules.tags = tags = SyncFIFOBuffered(width=TAG.size, depth=8)
        req = self.mem.req
        tag = Signal(TAG)
        g_row = Signal(range(max(G, 2)))
        g_scale = Signal()
        m.d.comb += [g_scale.eq(grant < G), g_row.eq(Mux(g_scale, grant, grant - G))]
        sel_c_next = _sel(c_next, g_row)
        sel_s_port = Signal(A)
        m.d.comb += sel_s_port.eq(_sel(s_next, g_row) >> _log2(W // S))
        takes = Signal(G)                  # rows served by this request
        for i in range(G):
            m.d.comb += takes[i].eq(Mux(g_scale,
                                        elig[i] & ((s_next[i] >> _log2(W // S)) == sel_s_port),
                                        elig[G + i] & (c_next[i] == sel_c_next)))
            m.d.comb += [tag.slot[i].eq(Mux(g_scale, s_req_v[i], c_req_v[i])),
                         tag.lane[i].eq(s_next[i] if W > S else 0)]
        m.d.comb += [
            req.valid.eq(busy_req & elig.any() & tags.w_rdy),
            req.payload.write.eq(0),
            req.payload.addr.eq(Mux(g_scale, sel_s_port, sel_c_next)),
            tag.rows.eq(takes), tag.scale.eq(g_scale),
            tags.w_data.eq(tag),
            tags.w_en.eq(req.valid & req.ready),
        ]
        m.d.sync += [stalled.eq(req.valid & ~req.ready), held_grant.eq(grant)]
        with m.If(req.valid & req.ready):
            m.d.sync += last_grant.eq(grant)
            for i in range(G):
                with m.If(g_scale & takes[i]):
                    m.d.sync += [s_next[i].eq(s_next[i] + 1), s_left[i].eq(s_left[i] - 1),
                                 s_req_v[i].eq(s_req_v[i] + 1)]
                with m.If(~g_scale & takes[i]):
                    m.d.sync += [c_next[i].eq(c_next[i] + 1), c_left[i].eq(c_left[i] - 1),
                                 c_req_v[i].eq(c_req_v[i] + 1)]
        with m.If(busy_req & all_done):
            m.d.sync += busy_req.eq(0)

        # ---- responses -> row buffers ------------------------------------------------------
        rsp = self.mem.rsp
        rtag = data.View(TAG, tags.r_data)
        poison_in = Signal()
        # A response is taken only once its tag is out of the (buffered, two-cycle) tag FIFO: a
        # port answering one cycle after the request must not find a stale tag.
        rsp_take = Signal()
        m.d.comb += [rsp.ready.eq(tags.r_rdy), rsp_take.eq(rsp.valid & tags.r_rdy),
                     tags.r_en.eq(rsp_take),
                     poison_in.eq(rsp.payload.status == EccStatus.UNCORRECTABLE)]
        cbuf = [[Signal(64, name=f"cbuf{i}_{q}") for q in range(Q)] for i in range(G)]
        cpois = [Signal(SL, name=f"cpois{i}") for i in range(G)]
        c_wr_v = [Signal(VB, name=f"c_wr_v{i}") for i in range(G)]
        sbuf = [[Signal(8, name=f"sbuf{i}_{b}") for b in range(SSL * S)] for i in range(G)]
        spois = [Signal(SSL, name=f"spois{i}") for i in range(G)]
        s_wr_v = [Signal(VB, name=f"s_wr_v{i}") for i in range(G)]
        rdata = rsp.payload.data
        words = [rdata[8 * S * j:8 * S * (j + 1)] for j in range(W // S)]
        for i in range(G):
            row_hit = rsp_take & rtag.rows[i]
            with m.If(row_hit & ~rtag.scale):
                m.d.sync += c_wr_v[i].eq(c_wr_v[i] + 1)
                for s in range(SL):
                    with m.If(rtag.slot[i][:_log2(SL)] == s):
                        m.d.sync += cpois[i][s].eq(poison_in)
                        for j in range(QPW):
                            m.d.sync += cbuf[i][s * QPW + j].eq(rdata[64 * j:64 * (j + 1)])
            with m.If(row_hit & rtag.scale):
                sword = Signal(8 * S, name=f"sword{i}")
                m.d.comb += sword.eq(_sel(words, rtag.lane[i][:_log2(W // S)]))
                m.d.sync += s_wr_v[i].eq(s_wr_v[i] + 1)
                for s in range(SSL):
                    with m.If(rtag.slot[i][:_log2(SSL)] == s):
                        m.d.sync += spois[i][s].eq(poison_in)
                        for j in range(S):
                            m.d.sync += sbuf[i][s * S + j].eq(sword[8 * j:8 * (j + 1)])

        # ---- reader: blocks -> beats -------------------------------------------------------
        rjob = data.View(RJOB, rjobs.r_data)
        have = rjobs.r_rdy
        job = rjob.job
        kb = Signal(DIM_BITS)
        kbB = Signal(DIM_BITS + 6)                  # kb x bytes a block
        t = Signal(range(max(T, 2)))
        beat = Signal(range(BLOCK_SIZE))
        seg_cv = [Signal(VB, name=f"seg_cv{i}") for i in range(G)]
        seg_sv = [Signal(VB, name=f"seg_sv{i}") for i in range(G)]
        bpb_log = _log2(BLOCK_SIZE // lanes)
        bpb = Signal(range(BLOCK_SIZE + 1))
        bbytes = Signal(6)
        m.d.comb += [bpb.eq((1 << bpb_log) >> (job.pair if self._pair else 0)),
                     bbytes.eq(_block_bytes(job.fmt, formats))]
        window = 8 * lanes
        # packed bits a beat takes, by format (FP4 x FP4 double rate: 8, the bytes as they are)
        beat_bits = {f.spec.bits * lanes for f in formats} | {window}
        grain = 64
        for b in beat_bits:
            while b % grain:
                grain //= 2
        positions = Q * 64 // grain
        fmt_bits6 = Signal()
        fmt_fp4 = Signal()                          # FP4 codes widened (not double rate)
        m.d.comb += [
            fmt_bits6.eq(Cat(*(job.fmt == f.spec.hw_code for f in formats
                               if f.spec.bits == 6)).any()),
            fmt_fp4.eq(Cat(*(job.fmt == f.spec.hw_code for f in formats
                             if f.spec.bits == 4)).any() & ~(job.pair if self._pair else 0)),
        ]
        beat_grains = Signal(range(BLOCK_SIZE * 8 // grain + 1))    # the beat's offset / grain
        m.d.comb += beat_grains.eq(_times_const(beat, window // grain))
        for bits, is_fmt in ((6, fmt_bits6), (4, fmt_fp4)):
            if any(f.spec.bits == bits for f in formats):
                with m.If(is_fmt):
                    m.d.comb += beat_grains.eq(_times_const(beat, bits * lanes // grain))
        ok, poison, blocks, scales, active = [], [], [], [], []
        for i in range(G):
            pos, spos = Signal(DIM_BITS + 7, name=f"pos{i}"), Signal(DIM_BITS + 1, name=f"spos{i}")
            w_lo, w_hi, s_w = (Signal(VB, name=f"{n}{i}") for n in ("w_lo", "w_hi", "s_w"))
            c_have, s_have = Signal(signed(VB), name=f"c_have{i}"), Signal(signed(VB),
                                                                            name=f"s_have{i}")
            m.d.comb += [
                pos.eq(rjob.rows[i].coff + kbB), spos.eq(rjob.rows[i].soff + kb),
                w_lo.eq(seg_cv[i] + (pos >> _log2(W))),
                w_hi.eq(seg_cv[i] + ((pos + bbytes - 1) >> _log2(W))),
                s_w.eq(seg_sv[i] + (spos >> _log2(S))),
                c_have.eq(c_wr_v[i] - w_hi), s_have.eq(s_wr_v[i] - s_w),
            ]
            act = Signal(name=f"active{i}")
            m.d.comb += [act.eq(i < job.rows),
                         c_rd_v[i].eq(Mux(have & act, w_lo, seg_cv[i])),
                         s_rd_v[i].eq(Mux(have & act, s_w, seg_sv[i]))]
            row_ok = Signal(name=f"row_ok{i}")
            m.d.comb += row_ok.eq(~act | ((c_have > 0) & (s_have > 0)))
            # The beat's packed bits: a window of 8 x lanes bits of the circular row buffer,
            # at the block's first qword plus the beat's offset in the block (a multiple of
            # `grain` bits). Only this window is selected, never the whole block.
            at = Signal(range(positions), name=f"at{i}")
            m.d.comb += at.eq((((seg_cv[i] * QPW + (pos >> 3)) << (6 - _log2(grain)))
                               + beat_grains)[:_log2(positions)])
            flat = Cat(*cbuf[i])
            flat = Cat(flat, flat[:window - grain])
            block = Signal(window, name=f"window{i}")
            m.d.comb += block.eq(_sel([flat[p * grain:p * grain + window]
                                       for p in range(positions)], at))
            sc = Signal(8, name=f"scale{i}")
            m.d.comb += sc.eq(Array(sbuf[i])[(seg_sv[i] * S + spos)[:_log2(SSL * S)]])
            po = Signal(name=f"poison{i}")
            cp = [cpois[i][n] for n in range(SL)]
            m.d.comb += po.eq(act & (Array(cp)[w_lo[:_log2(SL)]] | Array(cp)[w_hi[:_log2(SL)]]
                                     | Array([spois[i][n] for n in range(SSL)])
                                     [s_w[:_log2(SSL)]]))
            ok.append(row_ok), poison.append(po), blocks.append(block), scales.append(sc)
            active.append(act)

        # a tile's rows: ``t`` selects rows t*R .. t*R + R - 1
        def of_tile(values, j):
            return values[j] if T == 1 else Mux(t, values[R + j], values[j])

        tile_ok, tile_poison = Signal(), Signal()
        m.d.comb += [tile_ok.eq(Cat(*(of_tile(ok, j) for j in range(R))).all()),
                     tile_poison.eq(Cat(*(of_tile(poison, j) for j in range(R))).any())]
        out = Signal(OperandBeat.of(R, lanes))
        for j in range(R):
            blk = Signal(window, name=f"tblock{j}")
            m.d.comb += blk.eq(of_tile(blocks, j))
            unpacked = Signal(window, name=f"unpacked{j}")
            m.d.comb += unpacked.eq(blk)
            if any(f.spec.bits == 6 for f in formats):
                with m.If(fmt_bits6):
                    fields = [blk[6 * n:6 * n + 6] for n in range(lanes)]
                    if "fp6_msb_first" in self._faults:
                        fields = [Cat(*reversed([f[b] for b in range(6)])) for f in fields]
                    m.d.comb += unpacked.eq(Cat(*(Cat(f, Const(0, 2)) for f in fields)))
            if any(f.spec.bits == 4 for f in formats):
                with m.If(fmt_fp4):
                    m.d.comb += unpacked.eq(Cat(*(Cat(blk[4 * n:4 * n + 4], Const(0, 4))
                                                  for n in range(lanes))))
            act = of_tile(active, j)
            m.d.comb += [
                out.data[j].eq(Mux(act, unpacked, 0)),
                out.scale[j].eq(Mux(act, of_tile(scales, j), 0)),
            ]

        m.submodules.status_q = status_q = SyncFIFOBuffered(width=8, depth=4)
        out_valid = Signal()
        end_beat = beat == bpb - 1
        tiles_here = Signal(range(3))
        m.d.comb += tiles_here.eq(Mux(job.rows > R, 2, 1) if T == 2 else 1)
        end_t = t == tiles_here - 1
        end_kb = kb == job.k - 1
        end_job = Signal()
        m.d.comb += end_job.eq(end_beat & end_t & end_kb)
        err = Signal()
        emit = Signal()
        m.d.comb += emit.eq(have & tile_ok & (~out_valid | self.beats.ready)
                            & (~(end_job & job.last) | status_q.w_rdy))
        with m.If(emit):
            m.d.sync += [out_valid.eq(1), self.beats.payload.eq(out), beat.eq(beat + 1)]
            with m.If(end_beat):
                m.d.sync += [beat.eq(0), t.eq(t + 1)]
                with m.If(end_t):
                    m.d.sync += [t.eq(0), kb.eq(kb + 1), kbB.eq(kbB + bbytes)]
                    with m.If(end_kb):
                        m.d.sync += [kb.eq(0), kbB.eq(0)]
                        m.d.comb += rjobs.r_en.eq(1)
                        for i in range(G):
                            m.d.sync += [seg_cv[i].eq(seg_cv[i] + rjob.rows[i].nw),
                                         seg_sv[i].eq(seg_sv[i] + rjob.rows[i].ns)]
            m.d.sync += err.eq(err | tile_poison)
            with m.If(end_job & job.last):
                m.d.sync += err.eq(0)
                m.d.comb += [status_q.w_en.eq(1),
                             status_q.w_data.eq(Mux(err | tile_poison,
                                                    ErrorCode.ECC_UNCORRECTABLE, 0))]
        with m.Elif(self.beats.ready):
            m.d.sync += out_valid.eq(0)
        m.d.comb += [
            self.beats.valid.eq(out_valid),
            self.status.valid.eq(status_q.r_rdy), self.status.payload.eq(status_q.r_data),
            status_q.r_en.eq(self.status.ready),
        ]

        # ---- counters ----------------------------------------------------------------------
        cnt = self.counters
        with m.If(busy_req | have):
            m.d.sync += cnt.busy.eq(cnt.busy + 1)
        with m.If(have & ~tile_ok & (~out_valid | self.beats.ready)):
            m.d.sync += cnt.stall_input.eq(cnt.stall_input + 1)
        with m.If(out_valid & ~self.beats.ready):
            m.d.sync += cnt.stall_output.eq(cnt.stall_output + 1)
        with m.If(emit):
            m.d.sync += cnt.beats.eq(cnt.beats + 1)
            with m.If(tile_poison):
                m.d.sync += cnt.poisoned.eq(cnt.poisoned + 1)
        with m.If(req.valid & req.ready):
            m.d.sync += cnt.reads.eq(cnt.reads + 1)
        with m.If(self.counters_clear):
            m.d.sync += self.counters.eq(0)
        return m
