"""Fail a test run in which a tier ran nothing: every tier must run on this workplace's machines.

A tier is a top directory of tests (unit, integration, node, e2e). pytest reports a tier whose
every test was skipped as green, and a tier that was left out entirely not at all; both hide a
suite that no longer tests anything. This reads pytest's JUnit XML report and fails when a tier
that ran has only skipped tests, or when a tier named with --require has no test at all.

Usage: python hack/check_tiers.py REPORT.xml [--require unit,integration,node]
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

# classname prefix (module path of the test file) -> tier
TIERS = {
    "tests.unit.": "unit",
    "tests.integration.": "integration",
    "tests.node.": "node",
    "e2e.": "e2e",
}


def tier_of(classname: str) -> str | None:
    for prefix, tier in TIERS.items():
        if classname.startswith(prefix):
            return tier
    return None


def count(report: Path) -> tuple[Counter[str], Counter[str]]:
    """(tests, skipped tests) per tier."""
    total: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    for case in ET.parse(report).getroot().iter("testcase"):
        tier = tier_of(case.get("classname", ""))
        if tier is None:
            continue
        total[tier] += 1
        if case.find("skipped") is not None:
            skipped[tier] += 1
    return total, skipped


def problems(report: Path, required: Sequence[str]) -> list[str]:
    total, skipped = count(report)
    found = []
    for tier in sorted(total):
        if skipped[tier] == total[tier]:
            found.append(f"tier {tier}: all {total[tier]} tests were skipped")
    for tier in required:
        if total[tier] == 0:
            found.append(f"tier {tier}: no test ran")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("report", type=Path)
    parser.add_argument("--require", default="", help="comma-separated tiers that must have run")
    args = parser.parse_args(argv)
    required = [t for t in args.require.split(",") if t]
    found = problems(args.report, required)
    total, skipped = count(args.report)
    summary = ", ".join(f"{t} {total[t] - skipped[t]}/{total[t]} run" for t in sorted(total))
    print(f"check-tiers: {summary or 'no tests'}", file=sys.stderr)
    for p in found:
        print(f"check-tiers: {p}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
