"""The shared entrypoint pieces: flags, JSON logging, start-up errors as one line."""

from __future__ import annotations

import argparse
import io
import json
import logging
from pathlib import Path

import pytest

from dynamo_snapshot.cmd import common


def parser(leader: bool = True) -> argparse.ArgumentParser:
    return common.build_parser(
        "dynamo-test", "A test binary.", leader_election=leader, default_leader_election_id="x.io"
    )


def test_defaults_are_specs() -> None:
    opts = common.options_from(parser().parse_args([]))
    assert opts.metrics_bind_address == ":8080"
    assert opts.health_probe_bind_address == ":8081"
    assert not opts.leader_elect
    assert opts.leader_election_id == "x.io"
    assert opts.namespaces == ()
    assert opts.log_format == "auto"
    mo = common.manager_options(opts, "svc")
    assert (mo.metrics_bind_address, mo.health_probe_bind_address) == (":8080", ":8081")
    assert mo.leader_election is False


def test_flags_are_read() -> None:
    args = parser().parse_args(
        [
            "--kubeconfig=/k",
            "--leader-elect",
            "--leader-election-id=y",
            "--leader-election-namespace=sys",
            "--metrics-bind-address=127.0.0.1:0",
            "--health-probe-bind-address=0",
            "--namespace=work",
            "--log-level=debug",
            "--log-format=json",
        ]
    )
    opts = common.options_from(args)
    assert opts == common.CommonOptions(
        kubeconfig="/k",
        metrics_bind_address="127.0.0.1:0",
        health_probe_bind_address="0",
        log_level="debug",
        log_format="json",
        namespaces=("work",),
        leader_elect=True,
        leader_election_id="y",
        leader_election_namespace="sys",
    )
    mo = common.manager_options(opts, "svc")
    assert mo.leader_election
    assert (mo.leader_election_id, mo.leader_election_namespace) == ("y", "sys")
    assert mo.watched_namespaces == frozenset({"work"})


def test_agent_parser_has_no_leader_flags() -> None:
    with pytest.raises(SystemExit):
        parser(leader=False).parse_args(["--leader-elect"])


def test_help_explains_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--kubeconfig",
        "--leader-elect",
        "--leader-election-id",
        "--metrics-bind-address",
        "--health-probe-bind-address",
        "--log-level",
        "--log-format",
        "--namespace",
    ):
        assert flag in out
    assert "A test binary." in out
    assert "ServiceAccount" in " ".join(out.split())


def test_bad_bind_address_is_a_usage_error() -> None:
    with pytest.raises(common.StartupError, match="--metrics-bind-address"):
        common.options_from(parser().parse_args(["--metrics-bind-address=nocolon"]))


def test_json_lines_with_extra_fields() -> None:
    stream = io.StringIO()  # not a TTY: auto means JSON
    common.setup_logging("info", "auto", stream)
    try:
        logging.getLogger("t").info("hello %s", "world", extra={"key": "ns/x"})
        logging.getLogger("t").debug("hidden")
    finally:
        common.setup_logging("warning", "text")
    (line,) = stream.getvalue().splitlines()
    rec = json.loads(line)
    assert rec["msg"] == "hello world"
    assert rec["level"] == "info"
    assert rec["key"] == "ns/x"
    assert rec["logger"] == "t"


async def test_missing_kubeconfig_is_a_startup_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(common.StartupError, match="no kubeconfig"):
        await common.load_api_client(None)
    with pytest.raises(common.StartupError, match="does not exist"):
        await common.load_api_client(str(tmp_path / "nope"))
    bad = tmp_path / "bad"
    bad.write_text("not: [a kubeconfig")
    with pytest.raises(common.StartupError, match="cannot load"):
        await common.load_api_client(str(bad))


def test_leader_election_adds_the_lease_verbs_to_the_preflight() -> None:
    plain = common.options_from(parser().parse_args([]))
    assert common.leader_election_needs(plain) == []
    elect = common.options_from(
        parser().parse_args(["--leader-elect", "--leader-election-namespace=sys"])
    )
    (need,) = common.leader_election_needs(elect)
    assert need.resource.plural == "leases"
    assert need.namespace == "sys"
    assert set(need.verbs) == {"get", "create", "update"}
