"""Utilization reports and roofline plots of SDK runs: what ``openmaia report`` does (docs/sdk.md).

Input: a run's JSON, as ``openmaia run gemm --json`` (one run) or ``openmaia run mlp-digits
--json`` (one run per recipe under ``runs``) print it. Each run is broken down
(:func:`breakdown`) from its ``counters`` (names in docs/sdk.md, "Counters the report reads"):

* MAC utilization = ``macs / (cycles x Config.macs_per_cycle(a_fmt, b_fmt))``;
* per engine (TTU, DMA, TVP, TCP) the share of the run's cycles it was busy and stalled;
* bytes moved across the HBM port, arithmetic intensity (MACs per HBM byte), and HBM bandwidth
  used (bytes a cycle) against the peak of :func:`peak_hbm_bytes_per_cycle`; the byte counters
  are checked against the bytes the program's DMA descriptors move (``program_bytes``).

A backend without time (``golden``) has no ``cycles``: everything that needs time is None and
the report says so; bytes, MACs and intensity are still given. Nothing is estimated.

:func:`roofline_png` draws the roofline of the configuration (compute ceiling
``macs_per_cycle x clock``, HBM ceiling ``peak bytes a cycle x clock x intensity``) with each
run's point (or, without cycles, its intensity only). :func:`balance` and
:func:`balance_table`: the tile balance, peak MACs a cycle over peak HBM bytes a cycle.
"""

import itertools
import json
from pathlib import Path

from ..config import PRESETS, Config, get_config
from ..numerics import Format

__all__ = [
    "BALANCE_PAIRS",
    "ENGINES",
    "HBM_BYTES_PER_CYCLE_PER_CHANNEL",
    "balance",
    "balance_table",
    "breakdown",
    "dma_bytes",
    "load_runs",
    "peak_hbm_bytes_per_cycle",
    "render_text",
    "report",
    "roofline_png",
]

#: docs/hbm.md: a pseudo-channel moves 16 B a tCK (32 pins x 4 bits), its data-bus peak.
HBM_BYTES_PER_CYCLE_PER_CHANNEL = 16

#: Per engine: (label, counter) of its busy cycles, then of its two stall kinds.
ENGINES = {
    "ttu": (("busy", "ttu_busy"), ("stalled on input", "ttu_stall_input"),
            ("stalled on output", "ttu_stall_output")),
    "dma": (("busy", "dma_busy"), ("stalled on AXI (HBM)", "dma_axi_stall"),
            ("stalled on TSRAM", "dma_tsram_stall")),
    "tvp": (("busy", "tvp_busy"), ("stalled on input", "tvp_stall_input"),
            ("stalled on output", "tvp_stall_output")),
    "tcp": (("busy (command held)", "tcp_busy"), ("waiting on a semaphore", "tcp_wait_cycles"),
            ("no command (input stall)", "tcp_input_stall")),
}

#: Format pairs of the balance table (the FP8-rate pairs all share one peak).
BALANCE_PAIRS = ((Format.E4M3, Format.E4M3), (Format.E4M3, Format.E2M1),
                 (Format.E2M1, Format.E2M1))


def peak_hbm_bytes_per_cycle(config: Config) -> int:
    """Peak HBM bytes a tile cycle: ``hbm_pseudo_channels`` ports, each moving one AXI beat a
    cycle at most; an HBM pseudo-channel's data bus peaks at 16 B a cycle (docs/hbm.md; one HBM
    cycle is one tile cycle in wave 1), so ``channels x min(16, axi_data_bytes)``. ``ONCHIP``
    (FPGA block RAM behind the same port): ``channels x axi_data_bytes``."""
    config = get_config(config)
    per_channel = config.axi_data_bytes
    if config.hbm_preset != "ONCHIP":
        per_channel = min(HBM_BYTES_PER_CYCLE_PER_CHANNEL, per_channel)
    return config.hbm_pseudo_channels * per_channel


def balance(config: Config, fmt_a, fmt_b) -> float:
    """Tile balance: peak MACs a cycle of the pair over peak HBM bytes a cycle (the arithmetic
    intensity, in MACs per HBM byte, at which the roofline's two ceilings meet)."""
    config = get_config(config)
    return config.macs_per_cycle(fmt_a, fmt_b) / peak_hbm_bytes_per_cycle(config)


def balance_table(configs=None, pairs=BALANCE_PAIRS) -> str:
    """Markdown table of :func:`balance` for ``configs`` (default: every preset) x ``pairs``."""
    configs = [get_config(c) for c in (configs or PRESETS)]
    head = ["preset", "MHz", "HBM B/cycle"] + \
        [f"{Format.of(a).name} x {Format.of(b).name}: MAC/cycle, B" for a, b in pairs]
    rows = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for c in configs:
        cells = [c.name, f"{c.clock_mhz:g}", f"{peak_hbm_bytes_per_cycle(c)}"]
        for a, b in pairs:
            cells.append(f"{c.macs_per_cycle(a, b):,}, {balance(c, a, b):g}")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------------
# Reading runs
# ------------------------------------------------------------------------------------------------

def load_runs(data) -> list:
    """The runs of a run JSON (a path, JSON text or parsed data): a list of records with
    ``config``, ``backend``, ``a_fmt``, ``b_fmt``, ``counters`` and a ``name``."""
    if isinstance(data, str) and data.lstrip()[:1] in ("{", "["):
        data = json.loads(data)
    elif isinstance(data, (str, Path)):
        data = json.loads(Path(data).read_text())
    if not isinstance(data, dict):
        raise ValueError("a run JSON is an object")  # noqa: TRY004 (bad input, CLI error)
    if "runs" in data:
        top = {k: v for k, v in data.items() if k != "runs"}
        records = [{**top, **run} for run in data["runs"]]
        for r in records:
            r["name"] = f"{data.get('workload', 'run')} {r.get('recipe', '')}".strip()
    else:
        records = [dict(data)]
        r = records[0]
        if {"m", "n", "k"} <= set(r):
            r["name"] = f"gemm {r['m']} x {r['n']} x {r['k']}"
        else:
            r["name"] = r.get("workload", "run")
    for r in records:
        for key in ("config", "a_fmt", "b_fmt"):
            if key not in r:
                raise ValueError(f"run {r['name']!r} has no {key!r}")
    return records


def dma_bytes(counters, *, default=0):
    """HBM bytes the DMA read and wrote in a run, ``(read, written)``: the ``rtl`` and ``fpga``
    backends' bus bytes (``dma_bytes_read`` / ``dma_bytes_written``), else the ``golden``
    backend's descriptor bytes (``dma_bytes_in`` / ``dma_bytes_out``), else ``default``."""
    read = _counter(counters, "dma_bytes_read", "dma_bytes_in")
    written = _counter(counters, "dma_bytes_written", "dma_bytes_out")
    return (default if read is None else read, default if written is None else written)


def _counter(counters, *names):
    for name in names:
        if name in counters:
            return counters[name]
    return None


def breakdown(record: dict, config: Config | None = None) -> dict:
    """The utilization breakdown of one run record (module docstring): plain data, None where
    the run has no time. ``config``: default the preset the record names."""
    config = get_config(config or record["config"])
    counters = dict(record.get("counters") or {})
    macs = _counter(counters, "macs")
    macs = record.get("macs", 0) if macs is None else macs
    read, written = dma_bytes(counters, default=None)
    read = record.get("bytes_in", 0) if read is None else read
    written = record.get("bytes_out", 0) if written is None else written
    moved = read + written
    cycles = counters.get("cycles")
    peak_macs = config.macs_per_cycle(record["a_fmt"], record["b_fmt"])
    peak_bytes = peak_hbm_bytes_per_cycle(config)
    hz = config.clock_mhz * 1e6
    out = {
        "name": record["name"], "config": config.name, "backend": record.get("backend"),
        "a_fmt": Format.of(record["a_fmt"]).name, "b_fmt": Format.of(record["b_fmt"]).name,
        "clock_mhz": config.clock_mhz,
        "macs": macs, "flops": 2 * macs,
        "hbm_bytes_read": read, "hbm_bytes_written": written, "hbm_bytes": moved,
        "program_bytes": record.get("program_bytes"),
        "arithmetic_intensity": macs / moved if moved else None,
        "peak_macs_per_cycle": peak_macs, "peak_hbm_bytes_per_cycle": peak_bytes,
        "balance": peak_macs / peak_bytes,
        "cycles": cycles, "seconds": None, "mac_utilization": None, "macs_per_second": None,
        "hbm_bytes_per_cycle": None, "hbm_bandwidth_utilization": None, "engines": None,
        "notes": [],
    }
    expected = record.get("program_bytes")
    if expected and (read, written) != (expected["read"], expected["written"]):
        out["notes"].append(f"HBM bytes in the counters ({read:,} read, {written:,} written) "
                            f"differ from the program's DMA descriptors ({expected['read']:,} "
                            f"read, {expected['written']:,} written)")
    if not cycles:
        out["notes"].append(f"no cycles in the counters (the {record.get('backend') or '?'} "
                            f"backend has no time): no utilization, rates or engine shares")
        return out
    out.update(seconds=cycles / hz, mac_utilization=macs / (cycles * peak_macs),
               macs_per_second=macs * hz / cycles, hbm_bytes_per_cycle=moved / cycles,
               hbm_bandwidth_utilization=moved / (cycles * peak_bytes))
    engines, missing = {}, []
    for engine, items in ENGINES.items():
        row = {}
        for label, name in items:
            value = counters.get(name)
            if value is None:
                missing.append(name)
                continue
            row[label] = {"counter": name, "cycles": value, "share": value / cycles}
        engines[engine] = row
    out["engines"] = engines
    if missing:
        out["notes"].append(f"counters missing from the run: {', '.join(missing)}")
    return out


# ------------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------------

def _fmt(value, spec="{:,}", none="-"):
    return none if value is None else spec.format(value)


def render_text(items, console=None) -> None:
    """Print the breakdowns as rich tables."""
    from rich.console import Console
    from rich.table import Table
    console = console or Console()
    for b in items:
        table = Table(title=f"{b['name']}: {b['a_fmt']} x {b['b_fmt']} on {b['backend']} "
                            f"({b['config']}, {b['clock_mhz']:g} MHz)")
        table.add_column("quantity")
        table.add_column("value", justify="right")
        rows = [
            ("cycles", _fmt(b["cycles"])),
            ("time", _fmt(b["seconds"], "{:.3e} s")),
            ("MACs", _fmt(b["macs"])),
            ("peak MACs a cycle", _fmt(b["peak_macs_per_cycle"])),
            ("MAC utilization", _fmt(b["mac_utilization"], "{:.2%}")),
            ("achieved rate", _fmt(b["macs_per_second"] and b["macs_per_second"] / 1e9,
                                   "{:.3f} GMAC/s")),
            ("HBM bytes read", _fmt(b["hbm_bytes_read"])),
            ("HBM bytes written", _fmt(b["hbm_bytes_written"])),
            ("program's DMA bytes read / written",
             f"{b['program_bytes']['read']:,} / {b['program_bytes']['written']:,}"
             if b["program_bytes"] else "-"),
            ("arithmetic intensity", _fmt(b["arithmetic_intensity"], "{:.2f} MAC/B")),
            ("tile balance", f"{b['balance']:g} MAC/B"),
            ("HBM bytes a cycle", (f"{_fmt(b['hbm_bytes_per_cycle'], '{:.2f}')} of peak "
                                   f"{b['peak_hbm_bytes_per_cycle']}")),
            ("HBM bandwidth utilization", _fmt(b["hbm_bandwidth_utilization"], "{:.2%}")),
        ]
        for row in rows:
            table.add_row(*row)
        console.print(table)
        if b["engines"]:
            shares = Table(title="engine cycles (share of the run's cycles)")
            for col in ("engine", "state", "counter", "cycles", "share"):
                shares.add_column(col, justify="right" if col in ("cycles", "share") else "left")
            for engine, row in b["engines"].items():
                for label, v in row.items():
                    shares.add_row(engine, label, v["counter"], f"{v['cycles']:,}",
                                   f"{v['share']:.2%}")
            console.print(shares)
        for note in b["notes"]:
            console.print(f"note: {note}")


def roofline_png(items, path) -> Path:
    """Write the roofline of the breakdowns' configuration(s) to ``path`` (PNG, Agg backend):
    x = MACs per HBM byte, y = GMAC/s (log-log); per (configuration, peak) the compute ceiling
    and the HBM ceiling; each run with cycles as a point, without cycles as a dotted vertical
    line at its intensity."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure
    items = list(items)
    if not items:
        raise ValueError("no runs to plot")
    fig = Figure(figsize=(7, 5), dpi=110)
    ax = fig.add_subplot()
    ais = [b["arithmetic_intensity"] for b in items if b["arithmetic_intensity"]]
    balances = [b["balance"] for b in items]
    lo = min(ais + balances + [1.0]) / 8
    hi = max(ais + balances + [1.0]) * 8
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ceilings = {}
    for b in items:
        ceilings[(b["config"], b["peak_macs_per_cycle"], b["peak_hbm_bytes_per_cycle"],
                  b["clock_mhz"])] = b
    colors = iter(f"C{i}" for i in itertools.count())
    ys = []
    for (name, peak, bw, mhz), b in ceilings.items():
        compute = peak * mhz * 1e6 / 1e9
        memory = bw * mhz * 1e6 / 1e9        # GB/s
        ys += [compute, memory * lo]
        ax.plot(xs, [min(compute, memory * x) for x in xs], color=next(colors),
                label=f"{name}: {peak} MAC/cycle ({compute:g} GMAC/s), "
                      f"HBM {bw} B/cycle ({memory:g} GB/s); ridge at {peak / bw:g} MAC/B")
    for b in items:
        label = f"{b['name']} ({b['a_fmt']} x {b['b_fmt']}, {b['backend']})"
        color = next(colors)
        if b["macs_per_second"] and b["arithmetic_intensity"]:
            ys.append(b["macs_per_second"] / 1e9)
            ax.plot([b["arithmetic_intensity"]], [b["macs_per_second"] / 1e9], "o", color=color,
                    label=f"{label}: {b['arithmetic_intensity']:.3g} MAC/B, "
                          f"{b['macs_per_second'] / 1e9:.3g} GMAC/s = "
                          f"{b['mac_utilization']:.1%} of peak")
        elif b["arithmetic_intensity"]:
            ax.axvline(b["arithmetic_intensity"], linestyle=":", color=color,
                       label=f"{label}: {b['arithmetic_intensity']:.3g} MAC/B "
                             f"(no cycles: intensity only)")
    ax.set_ylim(min(ys) / 2, max(ys) * 3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (MACs per HBM byte)")
    ax.set_ylabel("rate (GMAC/s; 1 MAC = 2 FLOP)")
    ax.set_title("roofline")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def report(data, *, png=None) -> list:
    """Breakdowns of every run in ``data`` (:func:`load_runs`); the roofline to ``png``."""
    items = [breakdown(r) for r in load_runs(data)]
    if png:
        roofline_png(items, png)
    return items


if __name__ == "__main__":
    print(balance_table())
