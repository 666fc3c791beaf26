"""A small vocabulary for OpenAPI v3 (apiextensions.k8s.io/v1) schemas, written as Python.

The CRDs are defined in `crds.py` with these functions and written to YAML by
`hack/gen_crds.py`; nothing in `manifests/crds/` is edited by hand. Every function returns a
plain dict in the order fields should appear in the YAML, so the output is stable.

What the apiserver requires of a *structural* schema, and how these helpers keep to it:
every node has a `type` (or `x-kubernetes-int-or-string`); `description`, `default`, `enum`
and validations sit on typed nodes; CEL rules (`x-kubernetes-validations`) need bounded
sizes (`maxLength`, `maxItems`, `maxProperties`) or the apiserver rejects them as too costly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

Schema = dict[str, Any]

# RFC 1123 label: container names, namespaces (63 characters at most).
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_LABEL_MAX: Final = 63
_DNS_LABEL: Final = re.compile(DNS_LABEL_PATTERN)


def is_dns_label(name: str) -> bool:
    """Whether ``name`` is an RFC 1123 label, as the API server checks one (length included)."""
    return len(name) <= DNS_LABEL_MAX and _DNS_LABEL.fullmatch(name) is not None


# RFC 1123 subdomain: pod and node names (253 characters at most).
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# resource.Quantity as controller-gen writes it.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def rule(expression: str, message: str, *, field_path: str | None = None) -> Schema:
    """One CEL validation rule (`x-kubernetes-validations` entry)."""
    out: Schema = {"rule": expression, "message": message}
    if field_path is not None:
        out["fieldPath"] = field_path
    return out


def _common(
    out: Schema,
    description: str,
    default: Any = None,
    validations: Sequence[Schema] = (),
) -> Schema:
    # description first, as controller-gen writes it: the YAML then reads top-down.
    out = {"description": description, **out}
    if default is not None:
        out["default"] = default
    if validations:
        out["x-kubernetes-validations"] = list(validations)
    return out


def string(
    description: str,
    *,
    min_length: int | None = None,
    max_length: int | None = None,
    pattern: str | None = None,
    enum: Iterable[str] | None = None,
    fmt: str | None = None,
    default: str | None = None,
) -> Schema:
    out: Schema = {"type": "string"}
    if fmt is not None:
        out["format"] = fmt
    if enum is not None:
        out["enum"] = list(enum)
    if min_length is not None:
        out["minLength"] = min_length
    if max_length is not None:
        out["maxLength"] = max_length
    if pattern is not None:
        out["pattern"] = pattern
    return _common(out, description, default)


def integer(
    description: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    bits: int = 32,
    default: int | None = None,
) -> Schema:
    out: Schema = {"type": "integer", "format": f"int{bits}"}
    if minimum is not None:
        out["minimum"] = minimum
    if maximum is not None:
        out["maximum"] = maximum
    return _common(out, description, default)


def boolean(description: str, *, default: bool | None = None) -> Schema:
    return _common({"type": "boolean"}, description, default)


def quantity(description: str) -> Schema:
    """A resource.Quantity (`8Gi` or a number of bytes)."""
    out: Schema = {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": QUANTITY_PATTERN,
        "x-kubernetes-int-or-string": True,
    }
    return _common(out, description)


def string_map(description: str, *, max_properties: int, max_value_length: int) -> Schema:
    out: Schema = {
        "type": "object",
        "maxProperties": max_properties,
        "additionalProperties": {"type": "string", "maxLength": max_value_length},
    }
    return _common(out, description)


def array(
    description: str,
    items: Schema,
    *,
    min_items: int | None = None,
    max_items: int | None = None,
    list_type: str | None = None,
    list_map_keys: Sequence[str] = (),
    validations: Sequence[Schema] = (),
) -> Schema:
    out: Schema = {"type": "array", "items": items}
    if min_items is not None:
        out["minItems"] = min_items
    if max_items is not None:
        out["maxItems"] = max_items
    if list_type is not None:
        out["x-kubernetes-list-type"] = list_type
    if list_map_keys:
        out["x-kubernetes-list-map-keys"] = list(list_map_keys)
    return _common(out, description, validations=validations)


def obj(
    description: str,
    properties: Mapping[str, Schema] | None = None,
    *,
    required: Sequence[str] = (),
    validations: Sequence[Schema] = (),
    preserve_unknown_fields: bool = False,
) -> Schema:
    out: Schema = {"type": "object"}
    if properties:
        out["properties"] = dict(properties)
    if required:
        missing = set(required) - set(properties or {})
        if missing and not preserve_unknown_fields:
            raise ValueError(f"required fields without a schema: {sorted(missing)}")
        out["required"] = list(required)
    if preserve_unknown_fields:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return _common(out, description, validations=validations)


def conditions(description: str) -> Schema:
    """A list of standard `metav1.Condition`s, merged by `type` (as controller-gen writes it)."""
    condition = obj(
        "Condition contains details for one aspect of the current state of this API Resource.",
        {
            "type": string(
                "Type of condition in CamelCase.",
                max_length=316,
                pattern=(
                    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
                ),
            ),
            "status": string(
                "Status of the condition, one of True, False, Unknown.",
                enum=["True", "False", "Unknown"],
            ),
            "observedGeneration": integer(
                "The .metadata.generation that the condition was set based upon.",
                minimum=0,
                bits=64,
            ),
            "lastTransitionTime": string(
                "Last time the condition transitioned from one status to another.",
                fmt="date-time",
            ),
            "reason": string(
                "A programmatic identifier (CamelCase) for the condition's last transition.",
                min_length=1,
                max_length=1024,
                pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
            ),
            "message": string(
                "A human readable message indicating details about the transition.",
                max_length=32768,
            ),
        },
        required=["type", "status", "lastTransitionTime", "reason", "message"],
    )
    return array(
        description,
        condition,
        max_items=16,
        list_type="map",
        list_map_keys=["type"],
    )


def printer_column(name: str, json_path: str, description: str, *, type_: str = "string") -> Schema:
    return {"name": name, "type": type_, "jsonPath": json_path, "description": description}


AGE_COLUMN: Schema = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
READY_COLUMN: Schema = printer_column(
    "Ready", '.status.conditions[?(@.type=="Ready")].status', "Ready condition"
)
