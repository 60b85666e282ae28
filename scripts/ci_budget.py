#!/usr/bin/env python3
"""Measure what each part of the test suite costs, as the table in docs/ci-budget.md.

Runs pytest (arguments after ``--`` go to it, e.g. ``-- -m slow``) with a JUnit XML report and
prints, per test file, the number of tests and the summed test time, plus the wall time of the
whole run. Example: ``.venv/bin/python scripts/ci_budget.py -- -n 2``.
"""

import argparse
import collections
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pytest_args", nargs="*", help="arguments for pytest (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp, "junit.xml")
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               f"--junitxml={report}", *args.pytest_args])
        wall = time.monotonic() - start
        tree = ET.parse(report)
    per_file = collections.defaultdict(lambda: [0, 0.0, 0])
    for case in tree.iter("testcase"):
        name = case.get("classname", "").split(".")
        path = "/".join(name[:-1] if name and name[-1][:1].isupper() else name) + ".py"
        entry = per_file[path]
        entry[0] += 1
        entry[1] += float(case.get("time", 0))
        entry[2] += 1 if case.find("skipped") is not None else 0
    print("\n| test file | tests | skipped | summed test time (s) |")
    print("|---|---:|---:|---:|")
    for path, (count, seconds, skipped) in sorted(per_file.items(), key=lambda kv: -kv[1][1]):
        print(f"| {path} | {count} | {skipped} | {seconds:.0f} |")
    total = sum(v[1] for v in per_file.values())
    print(f"| **all** | {sum(v[0] for v in per_file.values())} | "
          f"{sum(v[2] for v in per_file.values())} | {total:.0f} |")
    print(f"\nwall time {wall:.0f} s (pytest exit code {proc.returncode})")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
