"""Helpers of the e2e suite that need no cluster: the project's image, waiting with a deadline."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


@dataclass(frozen=True)
class Image:
    reference: str
    tarball: Path
    digest: str


def build_image(fresh: bool = False) -> Image:
    """Build (or take from the cache) the in-cluster image with hack/image/build.sh; ``fresh``
    assembles it again even when the cache holds it."""
    env = {**os.environ, "DYNAMO_SNAPSHOT_IMAGE_FRESH": "1" if fresh else ""}
    proc = subprocess.run(
        ["bash", str(REPO / "hack/image/build.sh")],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env=env,
    )
    if proc.returncode != 0:
        raise AssertionError(f"hack/image/build.sh failed:\n{proc.stderr[-4000:]}")
    reference, tarball, digest = proc.stdout.split()
    return Image(reference, Path(tarball), digest)


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    interval: float = 0.5,
    progress: Callable[[], str] | None = None,
) -> T:
    """Poll ``probe`` until it returns a value other than None; fail after ``timeout`` seconds,
    naming ``what`` and the last progress line. ``progress`` is printed when it changes."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        value = probe()
        if value is not None:
            return value
        if progress is not None:
            line = progress()
            if line != last:
                print(f"    {what}: {line}", flush=True)
                last = line
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} ({last})")
        time.sleep(interval)
