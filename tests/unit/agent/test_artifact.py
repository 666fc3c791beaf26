"""Artifact files: digests, manifest, verification, modes and the no-replace rename."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from dynamo_snapshot.agent import artifact


def _tree(d: Path) -> None:
    (d / "checkpoint").mkdir(parents=True)
    (d / "checkpoint" / "pages-1.img").write_bytes(os.urandom(3 << 20))
    (d / "rootfs-diff.tar").write_bytes(b"x" * 100)


def _manifest(d: Path) -> dict[str, object]:
    files = artifact.digest_files(d)
    return {"schema": artifact.MANIFEST_SCHEMA, "files": [f.to_dict() for f in files]}


def test_digests_match_hashlib(tmp_path: Path) -> None:
    _tree(tmp_path)
    files = {f.path: f for f in artifact.digest_files(tmp_path)}
    data = (tmp_path / "checkpoint" / "pages-1.img").read_bytes()
    assert files["checkpoint/pages-1.img"].sha256 == hashlib.sha256(data).hexdigest()
    assert files["checkpoint/pages-1.img"].size == len(data)
    assert set(files) == {"checkpoint/pages-1.img", "rootfs-diff.tar"}


def test_verify_catches_missing_extra_resized_and_altered_files(tmp_path: Path) -> None:
    _tree(tmp_path)
    artifact.write_manifest(tmp_path, _manifest(tmp_path))
    artifact.verify(tmp_path, full=True)
    pages = tmp_path / "checkpoint" / "pages-1.img"
    with pages.open("r+b") as f:
        f.write(b"\0")
    artifact.verify(tmp_path, full=False)  # same size
    with pytest.raises(artifact.ArtifactError, match="SHA-256"):
        artifact.verify(tmp_path, full=True)
    (tmp_path / "extra").write_text("x")
    with pytest.raises(artifact.ArtifactError, match="unlisted"):
        artifact.verify(tmp_path, full=False)
    (tmp_path / "extra").unlink()
    (tmp_path / "rootfs-diff.tar").write_bytes(b"short")
    with pytest.raises(artifact.ArtifactError, match="size"):
        artifact.verify(tmp_path, full=False)


def test_no_manifest_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(artifact.ArtifactError, match="manifest"):
        artifact.verify(tmp_path, full=False)


def test_modes_are_restricted(tmp_path: Path) -> None:
    _tree(tmp_path)
    os.chmod(tmp_path / "rootfs-diff.tar", 0o644)
    os.chmod(tmp_path / "checkpoint", 0o755)
    artifact.restrict_modes(tmp_path)
    for dirpath, dirnames, filenames in os.walk(tmp_path):
        assert os.stat(dirpath).st_mode & 0o777 == 0o700
        for f in filenames:
            assert os.stat(os.path.join(dirpath, f)).st_mode & 0o777 == 0o600
        assert dirnames is not None


def test_publish_never_replaces_an_existing_final_dir(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    final = tmp_path / "final"
    _tree(staging)
    final.mkdir()  # even an empty one: a plain rename(2) would replace it
    with pytest.raises(FileExistsError):
        artifact.publish(staging, final, fsync=True)
    assert staging.exists()
    final.rmdir()
    artifact.publish(staging, final, fsync=True)
    assert (final / "rootfs-diff.tar").exists()
    assert not staging.exists()


def test_symlink_in_artifact_is_refused(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "link").symlink_to("/etc/passwd")
    with pytest.raises(artifact.ArtifactError, match="not a regular file"):
        artifact.digest_files(tmp_path)


def test_tail_hasher_follows_files_as_they_grow(tmp_path: Path) -> None:
    import threading

    chunks = [os.urandom(1 << 20) for _ in range(8)]
    hasher = artifact.TailHasher(tmp_path, "pages-", ".img")
    out: dict[str, tuple[int, str]] = {}
    t = threading.Thread(target=lambda: out.update(hasher.run()))
    t.start()
    with (tmp_path / "pages-1.img").open("wb") as f:
        for chunk in chunks:
            f.write(chunk)
            f.flush()
    (tmp_path / "other.img").write_bytes(b"ignored")
    hasher.stop()
    t.join(10)
    data = b"".join(chunks)
    assert out == {"pages-1.img": (len(data), hashlib.sha256(data).hexdigest())}
    # A known digest is used only while the size still matches.
    known = {"pages-1.img": out["pages-1.img"]}
    assert {d.path: d.sha256 for d in artifact.digest_files(tmp_path, known=known)}[
        "pages-1.img"
    ] == hashlib.sha256(data).hexdigest()
    stale = {"pages-1.img": (len(data), "0" * 64)}
    (tmp_path / "pages-1.img").write_bytes(b"changed")
    digests = {d.path: d.sha256 for d in artifact.digest_files(tmp_path, known=stale)}
    assert digests["pages-1.img"] == hashlib.sha256(b"changed").hexdigest()
