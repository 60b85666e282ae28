"""Functional coverage on cocotb-coverage: cross bins declared once, sampled by benches, checked
by pytest.

A bench declares a :class:`Coverage` (axes and their bins, e.g. format pair x special-value class
x shape class x error code), calls :meth:`Coverage.sample` for each checked transaction and
:func:`export` at its end; the run's ``coverage.yml`` then lands in the run folder, where
:attr:`SimResult.coverage <openmaia.harness.sim.SimResult>` reads it as a :class:`CoverageReport`.
The slow tier calls :meth:`CoverageReport.assert_complete`, which fails on any bin not hit.
The same classes work in plain Python (Amaranth simulator tests), outside any simulator.
"""

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cocotb_coverage.coverage import CoverCross, CoverPoint, coverage_db

__all__ = ["Coverage", "CoverageReport", "export", "COVERAGE_FILE"]

COVERAGE_FILE = "coverage.yml"
_ROOT = "openmaia"


class Coverage:
    """Cross coverage of named axes: ``Coverage("dot", fmt_pair=[...], special=[...])``.

    Each axis is a cover point with the given bins; with two or more axes, their full cross is
    one more item. Every bin must be hit at least once. Declaring a model with the name of an
    existing one starts it afresh.
    """

    def __init__(self, name: str, **axes):
        if not name.isidentifier():
            raise ValueError(f"coverage model name must be an identifier, not {name!r}")
        if not axes:
            raise ValueError("a coverage model needs at least one axis")
        for axis, bins in axes.items():
            if not bins or len(set(bins)) != len(bins):
                raise ValueError(f"axis {axis!r} needs distinct bins, not {bins!r}")
        self.name = name
        self.axes = {axis: list(bins) for axis, bins in axes.items()}
        prefix = f"{_ROOT}.{name}"
        for key in [k for k in coverage_db if k == prefix or k.startswith(prefix + ".")]:
            del coverage_db[key]
        # Points must exist before their cross; and cocotb-coverage samples in the outermost
        # decorator first, so the points wrap the cross, which then sees this sample's hits.
        point_names = [f"{prefix}.{axis}" for axis in self.axes]
        points = [CoverPoint(point, xf=_getter(axis), bins=list(bins))
                  for point, (axis, bins) in zip(point_names, self.axes.items())]
        sampler = _no_op
        if len(axes) > 1:
            sampler = CoverCross(f"{prefix}.{'_x_'.join(self.axes)}", items=point_names)(sampler)
        for point in points:
            sampler = point(sampler)
        self._sampler = sampler

    def sample(self, **values):
        """Record one transaction; values outside an axis's bins are not counted."""
        missing = set(self.axes) - set(values)
        if missing:
            raise ValueError(f"sample of {self.name} lacks axes {sorted(missing)}")
        self._sampler(values)

    def report(self) -> "CoverageReport":
        prefix = f"{_ROOT}.{self.name}."
        items = {name: dict(item.detailed_coverage) for name, item in coverage_db.items()
                 if name.startswith(prefix) and hasattr(item, "detailed_coverage")}
        return CoverageReport({k: {_key(b): int(h) for b, h in v.items()}
                               for k, v in items.items()})


def _no_op(sample):
    return None


def _getter(axis):
    return lambda sample: sample[axis]


def _key(bin_value) -> str:
    if isinstance(bin_value, tuple):
        return "(" + ", ".join(repr(v) for v in bin_value) + ")"
    return str(bin_value)


def export(path: "str | Path | None" = None) -> Path:
    """Write every coverage model of this process to ``path`` (default: the run folder)."""
    if path is None:
        path = Path(os.environ.get("OPENMAIA_RUN_DIR", ".")) / COVERAGE_FILE
    path = Path(path)
    coverage_db.export_to_yaml(str(path))
    return path


@dataclass
class CoverageReport:
    """Hits per bin per cover item: ``{"openmaia.dot.fmt_pair": {"e4m3*e4m3": 12, ...}}``."""
    items: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: "str | Path") -> "CoverageReport":
        data = yaml.safe_load(Path(path).read_text()) or {}
        items = {}
        for name, item in data.items():
            if "bins:_hits" in item:
                items[name] = {_key(b): int(h) for b, h in item["bins:_hits"].items()}
        return cls(items)

    def merge(self, other: "CoverageReport") -> "CoverageReport":
        merged = {name: dict(bins) for name, bins in self.items.items()}
        for name, bins in other.items.items():
            target = merged.setdefault(name, {})
            for b, hits in bins.items():
                target[b] = target.get(b, 0) + hits
        return CoverageReport(merged)

    def missing(self) -> list[tuple[str, str]]:
        return [(name, b) for name, bins in sorted(self.items.items())
                for b, hits in bins.items() if hits < 1]

    def percentage(self) -> float:
        total = sum(len(bins) for bins in self.items.values())
        hit = total - len(self.missing())
        return 100.0 * hit / total if total else 0.0

    def assert_complete(self) -> None:
        """Fail, listing them, if any bin was not hit (or nothing was recorded at all)."""
        if not self.items:
            raise AssertionError("no coverage was recorded")
        missing = self.missing()
        if missing:
            shown = "\n".join(f"  {name}: {b}" for name, b in itertools.islice(missing, 40))
            raise AssertionError(f"{len(missing)} coverage bins not hit:\n{shown}")
