"""Replay a DRAMsim3-format trace on the HBM controller model under Verilator; report figures.

Used by ``openmaia hbm-bench`` and scripts/hbm_bench.py. The model is one pseudo-channel of
``preset`` built ``timing_only`` (no backing store, so the whole 512 MiB address range can be
used; every timing and command is the real model's) with ``queue_depth`` entries and ``mapping``.
The cocotb bench :func:`openmaia.benches.hbm.replay` drives the trace through cocotbext-axi's
AxiMaster, feeds the command stream to the independent timing checker and collects latencies.

Figures (one pseudo-channel, peak = 16 B a cycle):

* ``bandwidth``: 64 B x requests / (16 B x cycles from the first DRAM command to the end of the
  last data burst);
* latency: cycles from the AXI address handshake to the last R beat (reads) or the B handshake
  (writes), average, p50 and p99 over all requests;
* ``row_hit_rate``: row hits / requests (a hit needed no ACT or PRE of its own);
* ``activates``, ``refreshes``, ``precharges``; ``violations`` from the checker (must be 0).
"""

import json
import math
from pathlib import Path

from .controller import HbmController
from .timing import ORGANISATION, get_timing
from .traces import read_trace

__all__ = ["run_bench", "run_benches", "summarise", "percentile",
           "ANALYTIC_LIMITS", "PEAK_BYTES_PER_CYCLE"]

PEAK_BYTES_PER_CYCLE = 16

#: ../shared/brief/hbm3.md, one pseudo-channel, reads only.
ANALYTIC_LIMITS = {"sequential": 0.93, "random": 0.62, "random_two_activates": 0.31}


def percentile(values, q):
    """The nearest-rank percentile ``q`` (0..100) of ``values``."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, math.ceil(q / 100 * len(s)) - 1)
    return s[k]


def summarise(result: dict, *, mapping, queue_depth, preset, trace=None) -> dict:
    lat = result["rlat"] + result["wlat"]
    window = max(1, result["last_data_end"] - (result["first_cmd"] or 0))
    stats = result["stats"]
    requests = result["requests"]
    return {
        "trace": str(trace) if trace else None, "preset": preset, "mapping": mapping,
        "queue_depth": queue_depth, "requests": requests, "reads": result["reads"],
        "writes": result["writes"], "cycles": window,
        "bandwidth": round(64 * requests / (PEAK_BYTES_PER_CYCLE * window), 4),
        "latency_avg": round(sum(lat) / len(lat), 1) if lat else None,
        "latency_p50": percentile(lat, 50), "latency_p99": percentile(lat, 99),
        "row_hit_rate": round(stats["row_hits"] / requests, 4) if requests else None,
        "row_hits": stats["row_hits"], "row_misses": stats["row_misses"],
        "row_conflicts": stats["row_conflicts"], "activates": stats["activates"],
        "precharges": stats["precharges"], "refreshes": stats["refreshes"],
        "violations": result["checker"]["count"],
    }


def run_benches(traces, *, mapping="MOP4CLXOR", queue_depth=32, preset="HBM3_6400",
                row_hit_cap=16, seed=1, outstanding=None) -> list:
    """Replay each trace file of ``traces`` on one build (the model is reset between them) and
    return one :func:`summarise` dict per trace, plus ``passed`` (no lost request, no timing
    violation), ``build_seconds``, ``sim_seconds`` (all traces) and ``cycles_per_second``
    (simulated cycles a wall-clock second over the whole run, monitor and AXI model included)."""
    from ..harness import simulate
    paths = [Path(t) for t in traces]
    for path in paths:
        read_trace(path)  # validate before building anything
    timing = get_timing(preset)
    ctrl = HbmController(timing=timing, mapping=mapping, queue_depth=queue_depth,
                         row_hit_cap=row_hit_cap, capacity_bytes=ORGANISATION.bytes,
                         timing_only=True)
    params = {"timing": timing.values(), "preset": timing.name, "mapping": mapping,
              "capacity": ORGANISATION.bytes, "data_bytes": ctrl.axi.data_bytes,
              "row_hit_cap": row_hit_cap, "traces": [str(p.resolve()) for p in paths],
              "outstanding": outstanding or 2 * queue_depth + 16}
    # the bench reads top-level ports only: build as an array (about 8 x faster to compile)
    sim = simulate(ctrl, bench="openmaia.benches.hbm", name=f"hbm_q{queue_depth}",
                   testcase="replay", params=params, seed=seed, check=False, array=True)
    result_file = sim.run_dir / "result.json"
    if not result_file.exists():
        raise RuntimeError(f"hbm bench produced no result (log {sim.log_file}):\n"
                           f"{sim.log_tail()}")
    results = json.loads(result_file.read_text())
    total_cycles = sum(r["end_cycle"] for r in results)
    out = []
    for path, result in zip(paths, results):
        row = summarise(result, mapping=mapping, queue_depth=queue_depth, preset=timing.name,
                        trace=path)
        row.update(passed=sim.passed, build_seconds=round(sim.build_seconds, 1),
                   sim_seconds=round(sim.run_seconds, 1),
                   cycles_per_second=round(total_cycles / max(sim.run_seconds, 1e-9)),
                   log=str(sim.log_file))
        if result["checker"]["violations"]:
            row["first_violations"] = result["checker"]["violations"][:5]
        out.append(row)
    return out


def run_bench(trace, **kwargs) -> dict:
    """:func:`run_benches` for one trace file."""
    return run_benches([trace], **kwargs)[0]
