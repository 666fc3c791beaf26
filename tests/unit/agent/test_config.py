"""Agent configuration: file, then environment, then flags; one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynamo_snapshot.agent.config import ConfigError, load


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text("nodeName: from-file\nmethod: cri\nworkers: 2\nfsync: false\n")
    env = {"NODE_NAME": "from-env", "DYNAMO_SNAPSHOT_STORAGE_ROOT": "/srv/ckpt"}
    cfg = load(file=str(f), env=env, overrides={"workers": 8, "method": None})
    assert cfg.node_name == "from-env"
    assert cfg.method == "cri"
    assert cfg.workers == 8
    assert cfg.fsync is False
    assert cfg.storage_root == "/srv/ckpt"
    ex = cfg.executor
    assert str(ex.storage_root) == "/srv/ckpt"
    assert ex.method == "cri"


def test_config_file_from_env(tmp_path: Path) -> None:
    f = tmp_path / "a.yaml"
    f.write_text("nodeName: n1\n")
    assert load(env={"DYNAMO_SNAPSHOT_CONFIG": str(f)}).node_name == "n1"


@pytest.mark.parametrize(
    ("yaml_text", "env", "message"),
    [
        ("", {}, "nodeName is required"),
        ("nodeName: n\nmethod: fast\n", {}, "method must be one of auto, cri, criu"),
        ("nodeName: n\nstorageRoot: rel/path\n", {}, "storageRoot must be an absolute path"),
        ("nodeName: n\nworkers: two\n", {}, "workers (config file"),
        ("nodeName: n\nbogus: 1\n", {}, "unknown setting 'bogus'"),
        ("nodeName: n\n", {"DYNAMO_SNAPSHOT_FSYNC": "maybe"}, "fsync (environment"),
        ("nodeName: n\nleaseRenewSeconds: 40\n", {}, "must be shorter than leaseDurationSeconds"),
        ("- a list\n", {}, "must hold a mapping"),
        ("nodeName: [unclosed\n", {}, "is not valid YAML"),
        ("nodeName: n\nruntimeEndpoint: tcp://x\n", {}, "runtimeEndpoint must be"),
    ],
)
def test_errors_are_one_line(
    tmp_path: Path, yaml_text: str, env: dict[str, str], message: str
) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load(file=str(f), env=env)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load(file=str(tmp_path / "nope.yaml"), env={})
