"""`--namespace`: one name (as before), repeated, comma-separated, or from $WATCH_NAMESPACE in the
same forms; nothing means all namespaces; a bad name is a usage error. Start-up checks then ask
for each verb in each namespace, never cluster-wide."""

from __future__ import annotations

import pytest

from dynamo_snapshot.cmd import checkpoint_controller, common, podsnapshot_controller
from dynamo_snapshot.runtime import JOBS, PODS


def namespaces(argv: list[str]) -> tuple[str, ...]:
    parser = checkpoint_controller.parser()
    return common.options_from(parser.parse_args(argv)).namespaces


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCH_NAMESPACE", raising=False)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ()),
        (["--namespace=work"], ("work",)),
        (["--namespace", "work"], ("work",)),
        (["--namespace=b", "--namespace=a"], ("a", "b")),
        (["--namespace=b,a"], ("a", "b")),
        (["--namespace", " b , a ,", "--namespace=c", "--namespace=a"], ("a", "b", "c")),
        (["--namespace="], ()),
    ],
)
def test_one_several_or_none(argv: list[str], expected: tuple[str, ...]) -> None:
    assert namespaces(argv) == expected


def test_the_environment_variable_takes_the_same_forms_and_the_flag_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WATCH_NAMESPACE", "one")
    assert namespaces([]) == ("one",)
    monkeypatch.setenv("WATCH_NAMESPACE", "two,one")
    assert namespaces([]) == ("one", "two")
    assert namespaces(["--namespace=three"]) == ("three",)
    monkeypatch.setenv("WATCH_NAMESPACE", "")
    assert namespaces([]) == ()


@pytest.mark.parametrize("bad", ["Work", "a_b", "-a", "x" * 64, "a,b/c"])
def test_a_name_the_api_server_would_reject_is_a_usage_error(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        common.run(checkpoint_controller.parser(), _never_started, [f"--namespace={bad}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--namespace" in err
    assert "is not a namespace name" in err


async def _never_started(opts: common.CommonOptions, args: object) -> None:
    raise AssertionError("started despite a bad --namespace")


def test_the_manager_gets_every_namespace_and_the_lease_keeps_its_own() -> None:
    parser = podsnapshot_controller.parser()
    opts = common.options_from(
        parser.parse_args(["--namespace=a,b", "--leader-elect", "--leader-election-namespace=sys"])
    )
    mo = common.manager_options(opts, "svc")
    assert mo.watched_namespaces == frozenset({"a", "b"})
    assert mo.leader_election_namespace == "sys"
    assert (
        common.manager_options(common.options_from(parser.parse_args([])), "svc").watched_namespaces
        is None
    )


def test_needs_are_asked_in_each_namespace_or_cluster_wide_without_one() -> None:
    assert common.needs_in(("a", "b"), PODS, ("list", "watch")) == [
        common.Need(PODS, ("list", "watch"), "a"),
        common.Need(PODS, ("list", "watch"), "b"),
    ]
    assert common.needs_in((), JOBS, ("get",), custom=True) == [
        common.Need(JOBS, ("get",), None, custom=True)
    ]


@pytest.mark.parametrize("entry", [checkpoint_controller, podsnapshot_controller])
def test_help_explains_several_namespaces(
    entry: object, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        entry.parser().parse_args(["--help"])  # type: ignore[attr-defined]
    out = " ".join(capsys.readouterr().out.split())
    assert "--namespace NS[,NS...]" in out
    assert "repeat the flag or separate names with commas" in out
    assert "Roles in those namespaces suffice" in out
    assert "$WATCH_NAMESPACE" in out
