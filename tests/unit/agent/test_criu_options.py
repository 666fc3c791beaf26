"""The CRIU fallback's command line, diff tar and part checks (SPEC §5.2)."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from dynamo_snapshot.agent import criu


def test_dump_args_carry_every_spec_option(tmp_path: Path) -> None:
    args = criu.dump_args(
        pid=42,
        images=tmp_path,
        root=Path("/proc/42/root"),
        freezer_cgroup=Path("/sys/fs/cgroup/freezer/pod/c"),
        external_mount_points=["/snapshot-control"],
        external_netns_inode=4026531992,
    )
    for option in (
        "--leave-running",
        "--tcp-established",
        "--file-locks",
        "--ext-unix-sk",
        "--link-remap",
        "--manage-cgroups=soft",
        "-v4",
    ):
        assert option in args
    assert args[:3] == ["dump", "--tree", "42"]
    assert args[args.index("--log-file") + 1] == str(tmp_path / "dump.log")
    assert args[args.index("--root") + 1] == "/proc/42/root"
    assert args[args.index("--freeze-cgroup") + 1] == "/sys/fs/cgroup/freezer/pod/c"
    assert "net[4026531992]:extRootNetNS" in args
    assert "mnt[/snapshot-control]:/snapshot-control" in args


def test_host_network_has_no_external_netns(tmp_path: Path) -> None:
    args = criu.dump_args(
        pid=1,
        images=tmp_path,
        root=Path("/"),
        freezer_cgroup=None,
        external_mount_points=[],
        external_netns_inode=None,
    )
    assert not any(a.startswith("net[") for a in args)
    assert "--freeze-cgroup" not in args


def test_external_mounts_of_a_runtime_spec() -> None:
    spec = {
        "linux": {"cgroupsPath": "/pods/p1/c1"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data", "type": "bind", "source": "/host/data"},
            {"destination": "/etc/hosts", "source": "/x/hosts", "options": ["rbind", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"},
        ],
    }
    out = criu.external_mounts(spec, [Path("/sys/fs/cgroup/memory")])
    assert out == {
        "/data": "/host/data",
        "/etc/hosts": "/x/hosts",
        "/sys/fs/cgroup/memory": "/sys/fs/cgroup/memory/pods/p1/c1",
    }


def test_rootfs_diff_lists_whiteouts_as_deleted(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "new.conf").write_text("hello")
    os.mknod(upper / "etc" / "gone", 0o600 | 0o020000, os.makedev(0, 0))  # overlay whiteout
    tar_path, deleted = tmp_path / "rootfs-diff.tar", tmp_path / "deleted.files"
    assert criu.write_rootfs_diff(upper, tar_path, deleted) == 2
    criu.check_rootfs_diff(tar_path, deleted)
    assert json.loads(deleted.read_text()) == ["/etc/gone"]
    with tarfile.open(tar_path) as tar:
        assert sorted(tar.getnames()) == ["etc", "etc/new.conf"]
    assert os.stat(tar_path).st_mode & 0o777 == 0o600


def test_a_broken_diff_fails_the_check(tmp_path: Path) -> None:
    tar_path, deleted = tmp_path / "rootfs-diff.tar", tmp_path / "deleted.files"
    tar_path.write_bytes(b"not a tar at all" * 100)
    deleted.write_text("[]")
    with pytest.raises(criu.CriuError, match="not a readable tar"):
        criu.check_rootfs_diff(tar_path, deleted)


def test_missing_upperdir_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        criu.write_rootfs_diff(tmp_path / "nope", tmp_path / "t.tar", tmp_path / "d")


def test_image_checks(tmp_path: Path) -> None:
    (tmp_path / "dump.log").write_text("...\nDumping finished successfully\n")
    with pytest.raises(criu.CriuError, match=r"inventory\.img"):
        criu.check_images(tmp_path)
    (tmp_path / "inventory.img").write_bytes(b"x")
    (tmp_path / "pstree.img").write_bytes(b"x")
    with pytest.raises(criu.CriuError, match="pages"):
        criu.check_images(tmp_path)
    (tmp_path / "pages-1.img").write_bytes(b"x")
    criu.check_images(tmp_path)
    (tmp_path / "dump.log").write_text("Error (criu/cr-dump.c): Dumping FAILED.\n")
    with pytest.raises(criu.CriuError, match="does not say"):
        criu.check_images(tmp_path)
