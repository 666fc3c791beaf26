"""The OCI image-layout builder of hack/images: deterministic output that containerd can import."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from pathlib import Path

import pytest
from images.build import PAUSE_IMAGE, SOURCES, WORKLOAD_IMAGE
from images.ocilayout import (
    ANNOTATION_CONTAINERD_NAME,
    MEDIA_CONFIG,
    MEDIA_LAYER,
    MEDIA_MANIFEST,
    ImageConfig,
    layer_tar,
    layout_tar,
)

REPO = Path(__file__).resolve().parents[3]
CONFIG = ImageConfig(entrypoint=["/bin/app"], cmd=["--flag"], env={"B": "2", "A": "1"})


def _rootfs(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin/app").write_text("#!/bin/sh\necho hi\n")
    (root / "bin/app").chmod(0o755)
    (root / "bin/alias").symlink_to("app")
    (root / "etc").mkdir()
    (root / "etc/conf").write_text("x=1\n")
    (root / "etc/conf").chmod(0o644)
    return root


def _members(data: bytes) -> dict[str, bytes]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m)
            out[m.name] = f.read() if f else b""
    return out


def test_output_is_byte_identical_whatever_the_times_and_owners(tmp_path: Path) -> None:
    a = _rootfs(tmp_path / "a")
    b = _rootfs(tmp_path / "b")
    os.utime(b / "etc/conf", (1_000_000, 1_000_000))
    if os.geteuid() == 0:  # only root can give a file away; the mtime difference stays
        os.chown(b / "etc/conf", 1234, 5678)
    assert layer_tar(a) == layer_tar(b)
    assert layout_tar(a, CONFIG, "localhost/x/y:v1") == layout_tar(b, CONFIG, "localhost/x/y:v1")


def test_content_change_changes_the_digest(tmp_path: Path) -> None:
    root = _rootfs(tmp_path / "r")
    _, first = layout_tar(root, CONFIG, "localhost/x/y:v1")
    (root / "etc/conf").write_text("x=2\n")
    _, second = layout_tar(root, CONFIG, "localhost/x/y:v1")
    assert first != second


def test_layer_keeps_modes_and_symlinks_with_zeroed_metadata(tmp_path: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(layer_tar(_rootfs(tmp_path / "r")))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert list(members) == ["bin", "bin/alias", "bin/app", "etc", "etc/conf"]
    assert members["bin/app"].mode == 0o755
    assert members["etc/conf"].mode == 0o644
    assert members["bin/alias"].issym()
    assert members["bin/alias"].linkname == "app"
    assert {(m.uid, m.gid, m.mtime, m.uname) for m in members.values()} == {(0, 0, 0, "")}


def test_layout_is_a_valid_oci_image_layout(tmp_path: Path) -> None:
    data, manifest_digest = layout_tar(_rootfs(tmp_path / "r"), CONFIG, "localhost/x/y:v1")
    files = _members(data)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    blobs = {name.removeprefix("blobs/sha256/"): body for name, body in files.items() if body}
    for name, body in blobs.items():
        if re.fullmatch(r"[0-9a-f]{64}", name):
            assert hashlib.sha256(body).hexdigest() == name

    index = json.loads(files["index.json"])
    (desc,) = index["manifests"]
    assert desc["digest"] == manifest_digest
    assert desc["mediaType"] == MEDIA_MANIFEST
    assert desc["annotations"][ANNOTATION_CONTAINERD_NAME] == "localhost/x/y:v1"
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == "v1"

    manifest = json.loads(blobs[manifest_digest.removeprefix("sha256:")])
    assert desc["size"] == len(blobs[manifest_digest.removeprefix("sha256:")])
    assert manifest["config"]["mediaType"] == MEDIA_CONFIG
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == MEDIA_LAYER
    layer_body = blobs[layer["digest"].removeprefix("sha256:")]
    assert layer["size"] == len(layer_body)

    config = json.loads(blobs[manifest["config"]["digest"].removeprefix("sha256:")])
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer["digest"]]}
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert config["config"]["Entrypoint"] == ["/bin/app"]
    assert config["config"]["Cmd"] == ["--flag"]
    assert config["config"]["Env"] == ["A=1", "B=2"]


def test_reference_without_tag_is_latest(tmp_path: Path) -> None:
    data, _ = layout_tar(_rootfs(tmp_path / "r"), CONFIG, "localhost:5000/x/y")
    (desc,) = json.loads(_members(data)["index.json"])["manifests"]
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == "latest"


def test_special_files_are_refused(tmp_path: Path) -> None:
    root = _rootfs(tmp_path / "r")
    os.mkfifo(root / "etc/fifo")
    with pytest.raises(ValueError, match="unsupported file type"):
        layer_tar(root)


def test_image_names_agree_with_the_node_scripts() -> None:
    lib = (REPO / "hack/node/lib.sh").read_text()
    assert f'PAUSE_IMAGE="{PAUSE_IMAGE}"' in lib
    assert f'WORKLOAD_IMAGE="{WORKLOAD_IMAGE}"' in lib
    assert {s.reference for s in SOURCES} == {PAUSE_IMAGE, WORKLOAD_IMAGE}
