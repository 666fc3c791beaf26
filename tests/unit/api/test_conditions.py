"""Condition helpers follow apimachinery's SetStatusCondition rules."""

from __future__ import annotations

import datetime as dt

import pytest

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api.conditions import (
    Condition,
    find_condition,
    is_true,
    remove_condition,
    set_condition,
)

T0 = dt.datetime(2026, 11, 25, 10, 0, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)


def test_new_condition_gets_now_and_generation() -> None:
    conds = set_condition(
        (), c.CONDITION_READY, "False", c.REASON_PENDING, "waiting", observed_generation=3, now=T0
    )
    assert conds == (
        Condition(
            type=c.CONDITION_READY,
            status="False",
            reason=c.REASON_PENDING,
            message="waiting",
            last_transition_time=T0,
            observed_generation=3,
        ),
    )


def test_same_status_keeps_transition_time_but_updates_reason_and_message() -> None:
    first = set_condition((), c.CONDITION_READY, "False", "Pending", "a", now=T0)
    second = set_condition(first, c.CONDITION_READY, "False", "StillPending", "b", now=T1)
    cond = find_condition(second, c.CONDITION_READY)
    assert cond is not None
    assert cond.last_transition_time == T0
    assert (cond.reason, cond.message) == ("StillPending", "b")


def test_status_change_moves_transition_time() -> None:
    first = set_condition((), c.CONDITION_READY, "False", "Pending", "a", now=T0)
    second = set_condition(first, c.CONDITION_READY, "True", c.REASON_CAPTURED, "done", now=T1)
    cond = find_condition(second, c.CONDITION_READY)
    assert cond is not None
    assert cond.last_transition_time == T1
    assert is_true(second, c.CONDITION_READY)


def test_observed_generation_is_kept_when_not_given_and_replaced_when_given() -> None:
    first = set_condition((), c.CONDITION_FAILED, "False", "Ok", "", observed_generation=2, now=T0)
    kept = set_condition(first, c.CONDITION_FAILED, "False", "Ok", "", now=T1)
    assert kept[0].observed_generation == 2
    replaced = set_condition(kept, c.CONDITION_FAILED, "False", "Ok", "", observed_generation=5)
    assert replaced[0].observed_generation == 5


def test_unchanged_set_is_equal_so_callers_can_skip_the_write() -> None:
    first = set_condition((), c.CONDITION_READY, "True", "Captured", "m", now=T0)
    again = set_condition(first, c.CONDITION_READY, "True", "Captured", "m", now=T1)
    assert again == first


def test_other_conditions_keep_their_order_and_remove_drops_one() -> None:
    conds = set_condition((), c.CONDITION_JOB_CREATED, "True", "Created", "", now=T0)
    conds = set_condition(conds, c.CONDITION_JOB_COMPLETED, "False", "Running", "", now=T0)
    conds = set_condition(conds, c.CONDITION_JOB_CREATED, "True", "Created", "again", now=T1)
    assert [x.type for x in conds] == [c.CONDITION_JOB_CREATED, c.CONDITION_JOB_COMPLETED]
    assert [x.type for x in remove_condition(conds, c.CONDITION_JOB_CREATED)] == [
        c.CONDITION_JOB_COMPLETED
    ]
    assert not is_true(conds, c.CONDITION_JOB_COMPLETED)
    assert not is_true(conds, c.CONDITION_READY)


def test_default_now_is_whole_seconds_utc() -> None:
    conds = set_condition((), c.CONDITION_READY, "Unknown", "Starting", "")
    when = conds[0].last_transition_time
    assert when.tzinfo == dt.UTC
    assert when.microsecond == 0


def test_round_trip_of_a_condition_dict() -> None:
    raw = {
        "type": "Ready",
        "status": "True",
        "observedGeneration": 1,
        "lastTransitionTime": "2026-11-25T10:00:00Z",
        "reason": "Captured",
        "message": "done",
    }
    assert Condition.from_dict(raw).to_dict() == raw


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (
            {"type": "Ready", "status": "Maybe", "lastTransitionTime": "2026-11-25T10:00:00Z"},
            "status",
        ),
        ({"type": "Ready", "status": "True"}, "lastTransitionTime"),
        (
            {"type": "Ready", "status": "True", "lastTransitionTime": "yesterday"},
            "lastTransitionTime",
        ),
    ],
)
def test_malformed_condition_names_the_field(raw: dict[str, str], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Condition.from_dict(raw, "status.conditions[0]")


@pytest.mark.parametrize("reason", ["", "Not Camel", "9Lives", "Trailing:"])
def test_reasons_the_api_would_refuse_are_refused_here(reason: str) -> None:
    with pytest.raises(ValueError, match="reason"):
        set_condition((), c.CONDITION_READY, "False", reason, "m")


@pytest.mark.parametrize("reason", c.AGENT_FAILURE_REASONS)
def test_every_agent_failure_reason_is_a_valid_reason(reason: str) -> None:
    (cond,) = set_condition((), c.CONDITION_FAILED, "True", reason, "m")
    assert cond.reason == reason
