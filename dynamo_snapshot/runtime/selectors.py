"""Selectors: label and field selector strings, evaluated in memory with the API server's rules.

Cached reads filter with the same selector strings a live list sends to the API server, so that a
reader can switch between the cache and the server without changing meaning:

* :func:`label_selector_matcher`: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``,
  ``a`` (exists), ``!a`` (does not exist), comma-separated, all must hold.
* :func:`field_selector_matcher`: ``path=value``, ``path==value``, ``path!=value`` on dotted paths
  (``metadata.name``, ``spec.nodeName``, ``status.phase``); a missing field compares as ``""``,
  as the server's field selectors do.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["field_selector_matcher", "label_selector_matcher"]

_SET_RE = re.compile(r"^\s*(!)?\s*([^\s!=,()]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([^\s!=,()]+)\s*(==|=|!=)\s*([^\s!=,()]*)\s*$")


def _split_requirements(selector: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in parts if p.strip()]


Labels = Mapping[str, Any]
Check = Callable[[Labels], bool]


def _requirement(req: str, selector: str) -> Check:
    eq = _EQ_RE.match(req)
    if eq:
        key, op, value = eq.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    st = _SET_RE.match(req)
    if not st:
        raise ValueError(f"invalid label selector requirement {req!r} in {selector!r}")
    neg, key, op, values = st.groups()
    if op:
        vals = frozenset(x.strip() for x in values.split(",") if x.strip())
        if op == "in":
            return lambda labels: labels.get(key) in vals
        return lambda labels: labels.get(key) not in vals
    if neg:
        return lambda labels: key not in labels
    return lambda labels: key in labels


def label_selector_matcher(selector: str) -> Check:
    """Compile a label selector string (``a=b,c!=d,e in (x,y),!f,g``) into a predicate on a
    labels mapping, with the API server's semantics."""
    checks = [_requirement(req, selector) for req in _split_requirements(selector)]
    return lambda labels: all(c(labels) for c in checks)


def _field(obj: Mapping[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def field_selector_matcher(selector: str) -> Callable[[Mapping[str, Any]], bool]:
    """Compile a field selector (``metadata.name=x,spec.nodeName!=n1``) into a predicate on a
    whole object."""
    checks: list[Callable[[Mapping[str, Any]], bool]] = []
    for req in (r for r in selector.split(",") if r.strip()):
        m = _EQ_RE.match(req)
        if not m:
            raise ValueError(f"invalid field selector requirement {req!r} in {selector!r}")
        path, op, value = m.groups()
        checks.append(_field_check(path, value, negate=op == "!="))
    return lambda obj: all(c(obj) for c in checks)


def _field_check(path: str, value: str, *, negate: bool) -> Callable[[Mapping[str, Any]], bool]:
    if negate:
        return lambda obj: _field(obj, path) != value
    return lambda obj: _field(obj, path) == value
