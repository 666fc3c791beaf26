"""What every Python contender shares: flags, the record of reconcile starts, READY, the dump."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

GROUP = "bench.dynamo.test"
VERSION = "v1"
PLURAL = "benchobjects"
KIND = "BenchObject"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--namespace", default="bench")
    p.add_argument("--expect", type=int, required=True, help="print READY after N distinct objects")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    return p


class Recorder:
    """Reconcile starts as (stamp, start) pairs, wall-clock seconds (the writer's clock)."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.records: list[tuple[float, float]] = []
        self._seen: set[str] | None = set()

    def record(self, key: str, obj: Any) -> None:
        start = time.time()
        try:
            stamp = float(obj["spec"]["stamp"])
        except (KeyError, TypeError, ValueError):
            return
        self.records.append((stamp, start))
        if self._seen is not None:
            self._seen.add(key)
            if len(self._seen) >= self.expect:
                self._seen = None
                print("READY", flush=True)

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps({"records": self.records}))
        print(f"wrote {len(self.records)} records", file=sys.stderr, flush=True)
