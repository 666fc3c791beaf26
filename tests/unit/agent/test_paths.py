"""Destination safety: IDs and base paths are validated before anything is created."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dynamo_snapshot.agent.paths import (
    DestinationError,
    make_dirs_nofollow,
    resolve_destination,
    validate_checkpoint_id,
)
from dynamo_snapshot.api import constants as c


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, c.REASON_MISSING_CHECKPOINT_ID),
        ("", c.REASON_MISSING_CHECKPOINT_ID),
        ("a/b", c.REASON_INVALID_CHECKPOINT_ID),
        ("a..b", c.REASON_INVALID_CHECKPOINT_ID),
        ("-abc", c.REASON_INVALID_CHECKPOINT_ID),
        ("x" * 64, c.REASON_INVALID_CHECKPOINT_ID),
    ],
)
def test_bad_checkpoint_ids_are_rejected_with_their_reason(value: str | None, reason: str) -> None:
    with pytest.raises(DestinationError) as err:
        validate_checkpoint_id(value)
    assert err.value.reason == reason


def test_valid_id_and_default_base(tmp_path: Path) -> None:
    assert validate_checkpoint_id("0123abcd.v_1-x") == "0123abcd.v_1-x"
    dest = resolve_destination(tmp_path, None, "abc", "1")
    assert dest.final == tmp_path / "abc" / "versions" / "1"
    assert dest.new_staging().parent == tmp_path / "abc" / "versions" / "tmp"
    assert dest.new_staging() != dest.new_staging()
    assert list(tmp_path.iterdir()) == [], "resolving creates nothing"


@pytest.mark.parametrize(
    ("annotation", "words"),
    [
        ("relative/path", "not absolute"),
        ("/root/../../etc", "'..'"),
        ("/etc", "outside the allowed root"),
    ],
)
def test_hostile_annotations_are_invalid_destinations(
    tmp_path: Path, annotation: str, words: str
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    annotation = annotation.replace("/root", str(root))
    with pytest.raises(DestinationError) as err:
        resolve_destination(root, annotation, "abc", "1")
    assert err.value.reason == c.REASON_INVALID_DESTINATION
    assert words in str(err.value)


def test_symlink_escape_is_rejected(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "team").symlink_to(outside)
    with pytest.raises(DestinationError, match="symlink escapes"):
        resolve_destination(root, str(root / "team" / "x"), "abc", "1")
    # A symlinked checkpoint directory is refused too.
    (root / "abc").symlink_to(outside)
    with pytest.raises(DestinationError, match="is a symlink"):
        resolve_destination(root, None, "abc", "1")
    assert list(outside.iterdir()) == []


def test_narrowing_inside_the_root_is_allowed(tmp_path: Path) -> None:
    dest = resolve_destination(tmp_path, str(tmp_path / "team-a"), "abc", "2")
    assert dest.final == tmp_path / "team-a" / "abc" / "versions" / "2"


def test_bad_version_is_an_invalid_destination(tmp_path: Path) -> None:
    for version in ("../x", "tmp", ""):
        with pytest.raises(DestinationError) as err:
            resolve_destination(tmp_path, None, "abc", version)
        assert err.value.reason == c.REASON_INVALID_DESTINATION


def test_make_dirs_never_follows_a_planted_symlink(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    make_dirs_nofollow(root, root / "a" / "b")
    assert (root / "a" / "b").is_dir()
    assert os.stat(root / "a" / "b").st_mode & 0o777 == 0o700
    (root / "c").symlink_to(outside)
    with pytest.raises(DestinationError):
        make_dirs_nofollow(root, root / "c" / "d")
    assert list(outside.iterdir()) == []
