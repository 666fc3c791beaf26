"""The two controller entrypoints' own flags."""

from __future__ import annotations

import pytest

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.cmd import checkpoint_controller, podsnapshot_controller


@pytest.mark.parametrize(
    ("text", "seconds"), [("300", 300.0), ("45s", 45.0), ("5m", 300.0), ("1h", 3600.0), ("0", 0.0)]
)
def test_orphan_grace_period_takes_a_duration(text: str, seconds: float) -> None:
    args = podsnapshot_controller.parser().parse_args([f"--orphan-grace-period={text}"])
    assert args.orphan_grace_period == seconds


def test_orphan_grace_period_default_is_five_minutes_and_bad_values_are_usage_errors() -> None:
    assert podsnapshot_controller.parser().parse_args([]).orphan_grace_period == 300.0
    for bad in ("-1", "soon", "5d"):
        with pytest.raises(SystemExit) as exit_:
            podsnapshot_controller.parser().parse_args([f"--orphan-grace-period={bad}"])
        assert exit_.value.code == 2


def test_checkpoint_controller_defaults() -> None:
    args = checkpoint_controller.parser().parse_args([])
    assert args.job_seccomp_profile == c.SECCOMP_LOCALHOST_PROFILE
    assert args.workers == 4
    assert args.leader_election_id == "dynamo-checkpoint-controller.nvidia.com"
    assert (
        podsnapshot_controller.parser().parse_args([]).leader_election_id
        == "dynamo-podsnapshot-controller.nvidia.com"
    )
    assert (
        checkpoint_controller.parser().parse_args(["--job-seccomp-profile="]).job_seccomp_profile
        == ""
    )
