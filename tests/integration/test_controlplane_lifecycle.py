"""`just up` reuses a healthy cluster and `just down` leaves no process of ours running."""

from __future__ import annotations

import os
from pathlib import Path

from controlplane import COMPONENTS, ControlPlane


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_up_reuses_and_down_stops_every_process(tmp_path: Path) -> None:
    cluster = ControlPlane(dir=tmp_path / "cluster")
    try:
        cluster.up()
        pids = {c: cluster.pid(c) for c in COMPONENTS}
        assert all(pids.values()), pids

        # A second `up` from a fresh process view (state loaded from disk) keeps the same processes.
        again = ControlPlane.load(tmp_path / "cluster")
        again.up()
        assert {c: again.pid(c) for c in COMPONENTS} == pids
        assert again.healthy()
    finally:
        ControlPlane.load(tmp_path / "cluster").down()

    still_running = [c for c, pid in pids.items() if pid is not None and _alive(pid)]
    assert still_running == []
    assert not list((tmp_path / "cluster").glob("*.pid"))
