"""How single values travel in the API's JSON: typed reads out of a dict, and timestamps.

Every `from_dict` in this package reads through these helpers, so a malformed object fails with
one error type that names the field (`ApiDecodeError("spec.source.podRef.name: ...")`) instead
of a bare KeyError deep in a controller. Writing back is plain dict building in each type's
`to_dict`; the one shared rule there is "absent stays absent" (see `put`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

JSON = dict[str, Any]


class ApiDecodeError(ValueError):
    """A JSON object does not have the shape of the API type it was read as."""


def _where(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def obj(data: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> JSON:
    """The sub-object at `key`; `{}` when absent (and not required)."""
    value = data.get(key)
    if value is None:
        if required:
            raise ApiDecodeError(f"{_where(path, key)}: required object is missing")
        return {}
    if not isinstance(value, dict):
        raise ApiDecodeError(f"{_where(path, key)}: expected an object, got {type(value).__name__}")
    return value


def req_str(data: Mapping[str, Any], key: str, path: str) -> str:
    value = opt_str(data, key, path)
    if value is None:
        raise ApiDecodeError(f"{_where(path, key)}: required string is missing")
    return value


def opt_str(data: Mapping[str, Any], key: str, path: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ApiDecodeError(f"{_where(path, key)}: expected a string, got {type(value).__name__}")


def opt_int(data: Mapping[str, Any], key: str, path: str) -> int | None:
    value = data.get(key)
    # bool is an int subclass in Python; JSON `true` is never a valid integer field.
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ApiDecodeError(f"{_where(path, key)}: expected an integer, got {type(value).__name__}")


def opt_bool(data: Mapping[str, Any], key: str, path: str) -> bool | None:
    value = data.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise ApiDecodeError(f"{_where(path, key)}: expected a boolean, got {type(value).__name__}")


def str_map(data: Mapping[str, Any], key: str, path: str) -> dict[str, str] | None:
    """A string-to-string map (labels, annotations, extraParameters); None when absent."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ApiDecodeError(f"{_where(path, key)}: expected a map of strings")
    return dict(value)


def str_list(data: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiDecodeError(f"{_where(path, key)}: expected a list of strings")
    return tuple(value)


def obj_list(data: Mapping[str, Any], key: str, path: str) -> list[JSON]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ApiDecodeError(f"{_where(path, key)}: expected a list of objects")
    return value


def opt_time(data: Mapping[str, Any], key: str, path: str) -> dt.datetime | None:
    raw = opt_str(data, key, path)
    if raw is None:
        return None
    try:
        return parse_time(raw)
    except ValueError as err:
        raise ApiDecodeError(f"{_where(path, key)}: {err}") from None


def parse_time(raw: str) -> dt.datetime:
    """An RFC 3339 timestamp as the apiserver writes it (`2026-11-25T13:30:00Z`), made aware."""
    value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"timestamp {raw!r} has no time zone")
    return value.astimezone(dt.UTC)


def format_time(value: dt.datetime) -> str:
    """The apiserver's form of a `metav1.Time`: UTC, whole seconds, `Z` suffix.

    Kubernetes truncates `metav1.Time` to seconds; writing the same precision keeps a
    written-then-read object equal to itself and avoids spurious "changed" status writes.
    """
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> dt.datetime:
    """The current time at the precision the API stores (whole seconds, UTC)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def put(out: JSON, key: str, value: Any) -> None:
    """Set `key` unless the value is absent: None, or an empty map/list.

    Absent and empty are the same for every optional field of these CRDs (the apiserver and
    Go clients omit empty values), so leaving them out keeps `to_dict(from_dict(x)) == x`.
    """
    if value is None:
        return
    if isinstance(value, Mapping | list | tuple) and not value:
        return
    out[key] = value


def dicts(items: Iterable[Any]) -> list[JSON]:
    """`to_dict()` of each item, as a JSON list."""
    return [item.to_dict() for item in items]
