"""The CRDs: the committed YAML is exactly the generator's output, and each CRD has the shape
SPEC §2 asks for (scope, short name, printer columns, status subresource, CEL rules, a
structural schema)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gen_crds
import pytest
import yaml

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api.crds import crds

CRDS = {crd["spec"]["names"]["kind"]: crd for crd in crds().values()}


def test_committed_yaml_is_what_the_generator_writes() -> None:
    rendered = gen_crds.render()
    on_disk = {p.name: p.read_text() for p in gen_crds.CRD_DIR.iterdir() if p.is_file()}
    assert on_disk == rendered, "manifests/crds/ is stale or hand-edited: run `just manifests`"
    assert gen_crds.main(["--check"]) == 0


def test_check_mode_detects_a_hand_edit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, text in gen_crds.render().items():
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(gen_crds, "CRD_DIR", tmp_path)
    assert gen_crds.main(["--check"]) == 0
    edited = tmp_path / "nvidia.com_podsnapshots.yaml"
    edited.write_text(edited.read_text().replace("podsnap\n", "psnap\n"))
    assert gen_crds.main(["--check"]) == 1
    assert gen_crds.main([]) == 0  # regenerating repairs it
    assert gen_crds.main(["--check"]) == 0


def test_generated_yaml_parses_back_to_the_definitions() -> None:
    for name, crd in crds().items():
        assert yaml.safe_load((gen_crds.CRD_DIR / name).read_text()) == crd


@pytest.mark.parametrize(
    ("kind", "plural", "short", "scope", "columns"),
    [
        (
            c.KIND_DYNAMO_CHECKPOINT,
            "dynamocheckpoints",
            "dckpt",
            "Namespaced",
            ["Model", "Backend", "Phase", "CheckpointID", "Age"],
        ),
        (c.KIND_POD_SNAPSHOT, "podsnapshots", "podsnap", "Namespaced", ["Content", "Ready", "Age"]),
        (
            c.KIND_POD_SNAPSHOT_CONTENT,
            "podsnapshotcontents",
            "podsnapcontent",
            "Cluster",
            ["PodSnapshot", "Namespace", "Ready", "Age"],
        ),
    ],
)
def test_names_scope_columns_and_status_subresource(
    kind: str, plural: str, short: str, scope: str, columns: list[str]
) -> None:
    spec = CRDS[kind]["spec"]
    assert CRDS[kind]["metadata"]["name"] == f"{plural}.nvidia.com"
    assert spec["group"] == "nvidia.com"
    assert spec["names"]["plural"] == plural
    assert spec["names"]["shortNames"] == [short]
    assert spec["scope"] == scope
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    assert [col["name"] for col in version["additionalPrinterColumns"]] == columns


def _root(kind: str) -> dict[str, Any]:
    root: dict[str, Any] = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return root


def _at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    for part in path.split("."):
        schema = schema["properties"][part]
    return schema


def _rules(schema: dict[str, Any]) -> list[str]:
    return [r["rule"] for r in schema.get("x-kubernetes-validations", [])]


def test_cel_rules_of_the_spec() -> None:
    assert _rules(_at(_root(c.KIND_POD_SNAPSHOT), "spec")) == ["self == oldSelf"]
    assert _rules(_at(_root(c.KIND_POD_SNAPSHOT_CONTENT), "spec")) == ["self == oldSelf"]
    assert _rules(_at(_root(c.KIND_DYNAMO_CHECKPOINT), "spec.identity")) == ["self == oldSelf"]
    # DynamoCheckpoint's job is not frozen: only the identity names the artifact.
    assert _rules(_at(_root(c.KIND_DYNAMO_CHECKPOINT), "spec")) == []
    for kind, path in [
        (c.KIND_POD_SNAPSHOT, "spec.source.podRef.containers"),
        (c.KIND_POD_SNAPSHOT_CONTENT, "spec.source.podRef.containers"),
    ]:
        containers = _at(_root(kind), path)
        (rule,) = _rules(containers)
        assert "self.size() == 1" in rule
        assert "matches(" in rule
        assert containers["maxItems"] == 1


def test_required_fields_enums_and_defaults() -> None:
    dckpt = _root(c.KIND_DYNAMO_CHECKPOINT)
    assert dckpt["required"] == ["spec"]
    assert _at(dckpt, "spec")["required"] == ["identity", "job"]
    identity = _at(dckpt, "spec.identity")
    assert identity["required"] == ["model", "backendFramework"]
    assert identity["properties"]["backendFramework"]["enum"] == ["vllm", "sglang", "trtllm"]
    assert identity["properties"]["tensorParallelSize"]["default"] == 1
    assert identity["properties"]["pipelineParallelSize"]["default"] == 1
    job = _at(dckpt, "spec.job")
    assert job["required"] == ["podTemplateSpec"]
    assert job["properties"]["targetContainerName"]["default"] == "main"
    assert job["properties"]["activeDeadlineSeconds"]["default"] == 3600
    assert job["properties"]["activeDeadlineSeconds"]["minimum"] == 1
    assert _at(dckpt, "status.phase")["enum"] == ["Pending", "Creating", "Ready", "Failed"]
    content = _at(_root(c.KIND_POD_SNAPSHOT_CONTENT), "spec")
    assert content["properties"]["source"]["required"] == ["podRef", "nodeName"]
    assert content["properties"]["snapshotRef"]["required"] == ["namespace", "name", "uid"]


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if "items" in schema:
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_schema_is_structural_and_cel_is_bounded(kind: str) -> None:
    for path, node in _nodes(_root(kind)):
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        # The root's metadata is the apiserver's own; everywhere else a bare object is a bug.
        if node.get("type") == "object" and path not in ("", ".metadata"):
            assert (
                "properties" in node
                or "additionalProperties" in node
                or node.get("x-kubernetes-preserve-unknown-fields")
            ), f"{path}: an object without fields would prune everything"
    # Every string and list under a CEL rule is bounded, or the apiserver refuses the rule as
    # too expensive. Check it here so the failure names the field, not an apiserver cost.
    for path, node in _nodes(_root(kind)):
        if "x-kubernetes-validations" not in node:
            continue
        for sub_path, sub in _nodes(node, path):
            if sub.get("type") == "string" and "enum" not in sub:
                assert "maxLength" in sub, f"{sub_path} needs maxLength (under a CEL rule)"
            if sub.get("type") == "array":
                assert "maxItems" in sub, f"{sub_path} needs maxItems (under a CEL rule)"
