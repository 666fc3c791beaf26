"""The controllers as real processes, started through their console scripts (as a Deployment
runs them) and stopped by PID: gracefully, or with SIGKILL to play a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
CHECKPOINT = "dynamo-checkpoint-controller"
PODSNAPSHOT = "dynamo-podsnapshot-controller"


def script(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{path}: the console script is not installed (pip install -e .)"
    return str(path)


class ControllerProcess:
    """One controller binary; `start` again after `kill` to play a restart."""

    def __init__(self, name: str, kubeconfig: Path, namespace: str, log: Path, *extra: str):
        self.name = name
        self.args = [
            script(name),
            f"--kubeconfig={kubeconfig}",
            f"--namespace={namespace}",
            "--metrics-bind-address=0",
            "--health-probe-bind-address=0",
            "--log-format=json",
            *extra,
        ]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a node crash or an OOM kill."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
