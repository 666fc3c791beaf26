"""Writing bench/results/*.json in the format of shared/design/BENCHMARKS.md."""

from __future__ import annotations

import datetime
import json
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# BENCH_RESULTS redirects the output (e.g. for a trial run that must not replace real results).
RESULTS = Path(os.environ.get("BENCH_RESULTS") or Path(__file__).resolve().parent / "results")


def machine() -> str:
    return f"{os.cpu_count()} cores, same run"


def today() -> str:
    return datetime.datetime.now(datetime.UTC).date().isoformat()


def summary(values: Sequence[float]) -> dict[str, Any]:
    """median/min/max/runs of one contender's per-run values."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
    }


def write_raw(name: str, data: dict[str, Any]) -> Path:
    """Write a free-form companion file (e.g. a whole comparison table)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def write(
    name: str,
    *,
    what: str,
    unit: str,
    ours: Sequence[float],
    baseline_name: str | None,
    baseline: Sequence[float] | None,
    better: str,
    goal: float | None,
    why: str | None = None,
    inputs: dict[str, Any] | None = None,
) -> Path:
    """Write one measured comparison; ratio = ours.median / baseline.median.

    A comparison without a baseline gets `"baseline": null` and a `"why"`, never an invented one.
    """
    assert better in ("lower", "higher")
    doc: dict[str, Any] = {"name": name, "what": what, "unit": unit, "ours": summary(ours)}
    if baseline_name is not None and baseline:
        base = {"name": baseline_name, **summary(baseline)}
        doc["baseline"] = base
        doc["ratio"] = round(doc["ours"]["median"] / base["median"], 4) if base["median"] else None
    else:
        doc["baseline"] = None
        doc["why"] = why or "no baseline was measured"
        doc["ratio"] = None
    doc["better"] = better
    doc["goal"] = goal
    doc["machine"] = machine()
    doc["date"] = today()
    if inputs is not None:
        doc["inputs"] = inputs
    return write_raw(name, doc)
