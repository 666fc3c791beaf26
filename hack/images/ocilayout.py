"""Deterministic OCI image-layout tarballs from a directory.

No container registry is reachable on the machines this project runs on, so images are built
locally and imported with ``ctr images import``. An image here has a single uncompressed layer: a
tar of a root-filesystem directory. The same directory and config always give byte-identical
output (sorted entries, zeroed times and owners), so an image's digest changes only when its
content does, and a cache keyed by content stays valid.

Layout written (OCI image-layout 1.0.0): ``oci-layout``, ``index.json`` (one manifest, annotated
with ``io.containerd.image.name`` so that containerd names the image on import, and
``org.opencontainers.image.ref.name``), and ``blobs/sha256/<digest>`` for the layer, config
and manifest.
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an OCI image config (what a container starts with)."""

    entrypoint: Sequence[str]
    cmd: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = "/"
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self, annotations: Mapping[str, str] | None = None) -> dict[str, object]:
        d: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.data),
        }
        if annotations:
            d["annotations"] = dict(annotations)
        return d


def _canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _walk(root: Path) -> Iterator[Path]:
    """Every path under root, depth first, each directory before its content, names sorted."""
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        yield entry
        if entry.is_dir() and not entry.is_symlink():
            yield from _walk(entry)


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Drop everything that differs between builds of the same content."""
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = stat.S_IMODE(info.mode)
    return info


def layer_tar(rootfs: Path) -> bytes:
    """A deterministic tar of the directory's content, paths relative to it (``bin/sh``)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _walk(rootfs):
            arcname = path.relative_to(rootfs).as_posix()
            info = _normalised(tar.gettarinfo(str(path), arcname=arcname))
            if info.isreg():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            elif info.isdir() or info.issym():
                tar.addfile(info)
            else:
                # Device nodes, fifos and sockets have no place in these images; hard links
                # would make the output depend on inode numbers.
                raise ValueError(f"{path}: unsupported file type for an image layer")
    return buf.getvalue()


def image_blobs(rootfs: Path, config: ImageConfig) -> tuple[Blob, Blob, Blob]:
    """Layer, config and manifest blobs of a single-layer linux/amd64 image."""
    layer = Blob(MEDIA_LAYER, layer_tar(rootfs))
    runtime: dict[str, object] = {
        "Entrypoint": list(config.entrypoint),
        "Env": [f"{k}={v}" for k, v in sorted(config.env.items())],
        "WorkingDir": config.working_dir,
    }
    if config.cmd:
        runtime["Cmd"] = list(config.cmd)
    if config.labels:
        runtime["Labels"] = dict(config.labels)
    image_config = Blob(
        MEDIA_CONFIG,
        _canonical_json(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": runtime,
                # The layer is uncompressed, so its diff ID is its own digest.
                "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
                "history": [{"created_by": "hack/images/ocilayout.py"}],
            }
        ),
    )
    manifest = Blob(
        MEDIA_MANIFEST,
        _canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_MANIFEST,
                "config": image_config.descriptor(),
                "layers": [layer.descriptor()],
            }
        ),
    )
    return layer, image_config, manifest


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(_normalised(info), io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(_normalised(info))


def layout_tar(rootfs: Path, config: ImageConfig, reference: str) -> tuple[bytes, str]:
    """The OCI image-layout tarball of the image named ``reference`` (``host/repo:tag``), and the
    digest of its manifest."""
    blobs = image_blobs(rootfs, config)
    manifest = blobs[2]
    last = reference.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else "latest"
    index = _canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                manifest.descriptor(
                    {ANNOTATION_CONTAINERD_NAME: reference, ANNOTATION_REF_NAME: tag}
                )
            ],
        }
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", _canonical_json({"imageLayoutVersion": "1.0.0"}))
        _add_bytes(tar, "index.json", index)
        _add_dir(tar, "blobs")
        _add_dir(tar, "blobs/sha256")
        for blob in sorted(blobs, key=lambda b: b.digest):
            _add_bytes(tar, "blobs/sha256/" + blob.digest.removeprefix("sha256:"), blob.data)
    return buf.getvalue(), manifest.digest


def write_layout(rootfs: Path, config: ImageConfig, reference: str, out: Path) -> str:
    """Write the tarball to ``out`` atomically; return the manifest digest."""
    data, digest = layout_tar(rootfs, config, reference)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    return digest
