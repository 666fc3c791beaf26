"""Standard `metav1.Condition`s and the helpers that keep them honest.

The rules are those of apimachinery's `meta.SetStatusCondition`, because kubectl, dashboards
and `kubectl wait --for=condition=...` read conditions that way:

- `lastTransitionTime` moves only when `status` changes. Rewriting reason or message is not a
  transition; moving it anyway would make every reconcile look like news and defeat "write
  status only when something changed".
- `observedGeneration` records which spec generation the condition speaks about. A caller that
  does not know it (None) keeps the value already there instead of erasing it.

Conditions are a tuple of frozen values; helpers return a new tuple, so "did anything change?"
is a plain `!=` between the old and the new status.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

import attrs

from dynamo_snapshot.api import wire
from dynamo_snapshot.api.wire import JSON

ConditionStatus = Literal["True", "False", "Unknown"]
TRUE: Final = "True"
FALSE: Final = "False"
UNKNOWN: Final = "Unknown"
_STATUSES: Final = (TRUE, FALSE, UNKNOWN)
# metav1.Condition's reason rule, as the CRD schema states it.
_REASON_RE: Final = re.compile(r"[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?")


@attrs.frozen
class Condition:
    type: str
    status: ConditionStatus
    reason: str
    message: str
    last_transition_time: dt.datetime
    observed_generation: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "conditions[]") -> Condition:
        status = wire.req_str(data, "status", path)
        if status not in _STATUSES:
            raise wire.ApiDecodeError(f"{path}.status: {status!r} is not True, False or Unknown")
        when = wire.opt_time(data, "lastTransitionTime", path)
        if when is None:
            raise wire.ApiDecodeError(f"{path}.lastTransitionTime: required timestamp is missing")
        return cls(
            type=wire.req_str(data, "type", path),
            status=status,  # type: ignore[arg-type]  # checked against _STATUSES above
            reason=wire.opt_str(data, "reason", path) or "",
            message=wire.opt_str(data, "message", path) or "",
            last_transition_time=when,
            observed_generation=wire.opt_int(data, "observedGeneration", path),
        )

    def to_dict(self) -> JSON:
        out: JSON = {"type": self.type, "status": self.status}
        wire.put(out, "observedGeneration", self.observed_generation)
        out["lastTransitionTime"] = wire.format_time(self.last_transition_time)
        out["reason"] = self.reason
        out["message"] = self.message
        return out


def conditions_from(data: Mapping[str, Any], path: str) -> tuple[Condition, ...]:
    """The `conditions` list of a status object."""
    return tuple(
        Condition.from_dict(item, f"{path}.conditions[{i}]")
        for i, item in enumerate(wire.obj_list(data, "conditions", path))
    )


def find_condition(conditions: Iterable[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Iterable[Condition], type_: str) -> bool:
    found = find_condition(conditions, type_)
    return found is not None and found.status == TRUE


def set_condition(
    conditions: Iterable[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    observed_generation: int | None = None,
    now: dt.datetime | None = None,
) -> tuple[Condition, ...]:
    """Return `conditions` with `type_` set; the order of the other conditions is kept.

    `now` is the transition time for a new condition or a status change (default: the current
    time at API precision); pass it to make reconciles deterministic in tests.
    """
    if not _REASON_RE.fullmatch(reason):
        # The CRDs (like metav1.Condition) refuse such a reason; fail here, naming it, rather
        # than at the status write with a 422 far from the code that chose it.
        raise ValueError(f"condition reason {reason!r} is not CamelCase ([A-Za-z][A-Za-z0-9_,:]*)")
    when = now if now is not None else wire.now()
    result: list[Condition] = []
    found = False
    for cond in conditions:
        if cond.type != type_:
            result.append(cond)
            continue
        found = True
        result.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=(cond.last_transition_time if cond.status == status else when),
                observed_generation=(
                    cond.observed_generation if observed_generation is None else observed_generation
                ),
            )
        )
    if not found:
        result.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=when,
                observed_generation=observed_generation,
            )
        )
    return tuple(result)


def remove_condition(conditions: Iterable[Condition], type_: str) -> tuple[Condition, ...]:
    return tuple(c for c in conditions if c.type != type_)
