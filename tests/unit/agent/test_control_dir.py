"""Where the agent writes snapshot-complete: the control volume's host path from the runtime
spec, else the same directory through the container's root in the host's /proc."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, cast

from dynamo_snapshot.agent.capture import Captures
from dynamo_snapshot.agent.config import AgentConfig
from dynamo_snapshot.agent.container import ContainerFacts


def _captures(host_proc: Path) -> Captures:
    cfg = AgentConfig(node_name="n", host_proc=str(host_proc))
    return Captures(cast(Any, types.SimpleNamespace(settings=cfg)))


def _facts(source: Path, inside: str = "/snapshot-control") -> ContainerFacts:
    spec = {
        "process": {"env": [f"SNAPSHOT_CONTROL_DIR={inside}", "PATH=/bin"]},
        "mounts": [{"destination": inside, "source": str(source), "type": "bind"}],
    }
    return ContainerFacts("c1", "main", 4242, "img", "ref", spec, 0)


def test_the_bind_source_when_the_agent_sees_it(tmp_path: Path) -> None:
    source = tmp_path / "kubelet" / "pods" / "u" / "subpath"
    source.mkdir(parents=True)
    assert _captures(tmp_path / "proc")._control_dir(_facts(source)) == source


def test_through_the_container_root_when_the_source_is_not_mounted(tmp_path: Path) -> None:
    inside = tmp_path / "proc" / "4242" / "root" / "ctl"
    inside.mkdir(parents=True)
    facts = _facts(tmp_path / "not-mounted", inside="/ctl")
    assert _captures(tmp_path / "proc")._control_dir(facts) == inside


def test_no_control_volume(tmp_path: Path) -> None:
    facts = ContainerFacts("c1", "main", 1, "img", "ref", {"mounts": []}, 0)
    assert _captures(tmp_path)._control_dir(facts) is None
