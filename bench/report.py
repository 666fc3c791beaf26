"""Render bench/results/*.json (the BENCHMARKS.md format) as a markdown table for the README.

`python -m bench.report` prints the table; `--readme README.md` replaces the text between the
markers `<!-- bench:begin -->` and `<!-- bench:end -->` in that file instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.results import RESULTS

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        ms = value * 1e3
        return f"{ms:,.0f} ms" if ms >= 100 else f"{ms:.3g} ms"
    if unit == "bytes":
        return f"{value / 1024:.2f} KiB"
    if abs(value) >= 1000:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"


def _verdict(doc: dict[str, Any]) -> str:
    ratio, goal = doc.get("ratio"), doc.get("goal")
    if ratio is None or goal is None:
        return ""
    ok = ratio <= goal if doc["better"] == "lower" else ratio >= goal
    return "met" if ok else "missed"


def load() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(RESULTS.glob("*.json")):
        doc = json.loads(path.read_text())
        if "ours" in doc and "better" in doc:  # comparisons only, not the detail files
            docs.append(doc)
    return docs


def render() -> str:
    lines = [
        "| benchmark | ours (median) | baseline (median) | ratio | goal | |",
        "|---|---|---|---|---|---|",
    ]
    for d in load():
        unit = d["unit"]
        base = d.get("baseline")
        base_txt = (
            f"{_fmt(base['median'], unit)} ({base['name']})" if base else f"none: {d.get('why')}"
        )
        ratio = f"{d['ratio']:.2f}x" if d.get("ratio") is not None else "-"
        goal = d.get("goal")
        goal_txt = (
            "-" if goal is None else ("<= " if d["better"] == "lower" else ">= ") + f"{goal:g}x"
        )
        ours = f"{_fmt(d['ours']['median'], unit)} (n={d['ours']['runs']})"
        lines.append(
            f"| `{d['name']}`: {d['what']} | {ours} | {base_txt} | {ratio} | {goal_txt} "
            f"| {_verdict(d)} |"
        )
    dates = sorted({d["date"] for d in load()})
    lines.append("")
    lines.append(
        f"Ratio = ours / baseline, both measured in the same run ({', '.join(dates) or '-'}). "
        "Reproduce with `./hack/just bench` (all) or `./hack/just bench NAME`; "
        "see bench/README.md."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--readme", type=Path, help="update the marked section of this file")
    args = p.parse_args(argv)
    table = render()
    if args.readme is None:
        print(table)
        return 0
    text = args.readme.read_text()
    if BEGIN not in text or END not in text:
        print(f"{args.readme} has no {BEGIN} ... {END} section", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    args.readme.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
