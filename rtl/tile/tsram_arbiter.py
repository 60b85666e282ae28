"""One cycle's arbitration of the tile SRAM: which requests are granted, lost and deferred.

The rules are docs/tsram.md, "Timing, conflicts, fairness": for the current head, the requests are
taken in priority order (the head; the requests that cannot be deferred, wider ports first; the
deferrable writes), each taking its banks if they are free. :class:`TsramArbiter` computes that
greedy pass without carrying bank vectors from step to step: a step only needs to know whether an
earlier step's banks *overlap* its own, and whether two requests' banks overlap is known from
their bank masks alone, before any decision. So the chain from step to step is a few single-bit
gates (docs/tsram.md, "Arbitration logic"), not a bank-wide OR and a bank-wide mask update: a
six-port tile SRAM's deepest path went from 39.0 to 27.0 mapped LUT levels on ECP5.
verif/tests/test_tsram_arbiter.py proves it equal, for every input, to the bank-vector form.
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["TsramArbiter", "arbiter_signature", "priority_order"]


def priority_order(widths, head: int) -> list:
    """The steps of the pass for ``head``: ``(port, kind)`` with kind ``None`` (the head, whatever
    its request), ``False`` (a request that cannot be deferred) or ``True`` (a deferrable write).

    After the head: the other ports for non-deferrable requests, wider first and, among equal
    widths, in circular order from the head; then the other ports for deferrable writes, in
    circular order. Each port but the head has two steps, of which its request uses one.
    """
    nports = len(widths)
    circ = [(head + step) % nports for step in range(nports)]
    wide_first = sorted(circ[1:], key=lambda p: -widths[p])        # stable: circular
    return [(circ[0], None)] + [(p, False) for p in wide_first] + [(p, True) for p in circ[1:]]


def arbiter_signature(nports: int, banks: int) -> wiring.Signature:
    """The members of :class:`TsramArbiter` for ``nports`` ports and ``banks`` banks."""
    return wiring.Signature({
        "eligible": In(nports), "out_of_range": In(nports), "rmw": In(nports),
        "deferrable": In(nports), "read": In(nports),
        "banks": In(data.ArrayLayout(banks, nports)), "pretaken": In(banks),
        "claimed": In(banks), "head": In(range(max(2, nports))),
        "grant": Out(nports), "lose": Out(nports), "defer": Out(nports)})


class TsramArbiter(wiring.Component):
    """The arbitration of one cycle (combinational), for ports of ``widths`` bank words.

    Parameters
    ----------
    widths : sequence of int
        Each port's width in bank words, in port order (only the priority order uses them).
    banks : int
        Banks of the SRAM.

    Members (bit ``p`` of each port vector is port ``p``)
    -------
    eligible : ``In(ports)``
        A request is offered and may be taken (a write, or a read with room for its response).
    out_of_range : ``In(ports)``
        The request's address is outside the SRAM: granted without banks.
    rmw : ``In(ports)``
        A write that becomes a read-modify-write (it holds its banks in the next cycle too).
    deferrable : ``In(ports)``
        A full, in-range write: it may be accepted with its banks taken and written next cycle.
    read : ``In(ports)``
        The request is a read.
    banks : ``In(ArrayLayout(banks, ports))``
        The banks each request uses.
    pretaken : ``In(banks)``
        Banks not free this cycle (held from the previous cycle, or taken by an injection).
    claimed : ``In(banks)``
        Banks already claimed for the next cycle (an injection's write-back).
    head : ``In(range(ports))``
        The port first in priority (a value past the last port counts as the last port).
    grant, lose, defer : ``Out(ports)``
        Granted (``req.ready``); eligible, in range and not granted; granted as a deferred write.
    """

    def __init__(self, *, widths, banks: int):
        widths = tuple(widths)
        if not widths or not all(isinstance(w, int) and w >= 1 for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of positive integers, "
                             f"not {widths!r}")
        if not isinstance(banks, int) or banks < 1:
            raise ValueError(f"banks must be a positive integer, not {banks!r}")
        self.widths, self.nports, self.nbanks = widths, len(widths), banks
        super().__init__(arbiter_signature(self.nports, banks))

    def elaborate(self, platform):
        m = Module()
        n = self.nports
        mask = [self.banks[p] for p in range(n)]
        elig, oor, rmw = self.eligible, self.out_of_range, self.rmw
        dfrable, is_read = self.deferrable, self.read

        # What is known before any decision: which pairs of requests share a bank, and which
        # requests touch a bank taken or claimed at the start of the cycle.
        overlap = {}
        for p in range(n):
            for q in range(p, n):
                o = Signal(name=f"overlap_{p}_{q}")
                m.d.comb += o.eq((mask[p] & mask[q]).any())
                overlap[p, q] = overlap[q, p] = o
        pre_clash = Signal(n)
        pre_claim = Signal(n)
        want = Signal(n)
        for p in range(n):
            m.d.comb += [pre_clash[p].eq((mask[p] & self.pretaken).any()),
                         pre_claim[p].eq((mask[p] & self.claimed).any()),
                         want[p].eq(elig[p] & ~oor[p])]

        per_head = []
        for head in range(n):
            # (bit, port) of each earlier step: it uses its banks now / claims them for the next
            # cycle / writes them now
            uses, claims, writes = [], [], []
            terms = {kind: [[] for _ in range(n)] for kind in ("grant", "lose", "defer")}

            def hit(earlier, p, start):
                return Cat(start, *(bit & overlap[q, p] for bit, q in earlier)).any()

            for step, (p, kind) in enumerate(priority_order(self.widths, head)):
                active = Const(1) if kind is None else dfrable[p] if kind else ~dfrable[p]
                stem = f"h{head}_s{step}"
                clash, blocked, wclash, normal, dfr, lost, use, claim = (
                    Signal(name=f"{stem}_{name}") for name in
                    ("clash", "blocked", "wclash", "normal", "defer", "lost", "use", "claim"))
                m.d.comb += [
                    clash.eq(hit(uses, p, pre_clash[p])),
                    blocked.eq(hit(claims, p, pre_claim[p])),
                    wclash.eq(hit(writes, p, Const(0))),
                    normal.eq(~clash & ~(rmw[p] & blocked)),
                    dfr.eq(dfrable[p] & clash & ~wclash & ~blocked),
                    lost.eq(want[p] & ~normal & ~dfr),
                    use.eq(active & want[p] & (normal | dfr)),
                    # the waiting head reserves its banks for the next cycle
                    claim.eq(active & want[p] & ((normal & rmw[p]) | dfr)
                             | (lost if step == 0 else 0)),
                ]
                terms["grant"][p].append(active & elig[p] & (oor[p] | normal | dfr))
                terms["lose"][p].append(active & lost)
                terms["defer"][p].append(active & want[p] & dfr)
                uses.append((use, p))
                claims.append((claim, p))
                writes.append((use & ~is_read[p], p))
            per_head.append({kind: Cat(*(Cat(*t).any() for t in by_port))
                             for kind, by_port in terms.items()})

        with m.Switch(self.head):
            for head in range(n):
                with (m.Case(head) if head < n - 1 else m.Default()):
                    m.d.comb += [self.grant.eq(per_head[head]["grant"]),
                                 self.lose.eq(per_head[head]["lose"]),
                                 self.defer.eq(per_head[head]["defer"])]
        return m
