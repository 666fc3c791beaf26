"""The in-cluster image (hack/image/build.sh) is what the manifests run: its tarball names the image
the local overlay uses, holds the three entrypoints, CRIU 4 and a shell for the agent's init
container, and builds byte-identically from a warm cache. Each check runs inside the image's own
root filesystem (chroot), unpacked from the very layer containerd imports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from e2e.conftest import REPO
from e2e.support import build_image

IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
ENTRYPOINTS = (
    "dynamo-checkpoint-controller",
    "dynamo-podsnapshot-controller",
    "dynamo-snapshot-agent",
)


def _blob(layout: tarfile.TarFile, digest: str) -> bytes:
    f = layout.extractfile("blobs/sha256/" + digest.removeprefix("sha256:"))
    assert f is not None, digest
    return f.read()


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    image = build_image()
    root = tmp_path_factory.mktemp("image-rootfs")
    with tarfile.open(image.tarball) as layout:
        index = json.loads(_blob_named(layout, "index.json"))
        manifest = json.loads(_blob(layout, index["manifests"][0]["digest"]))
        (layer,) = manifest["layers"]
        member = layout.extractfile("blobs/sha256/" + layer["digest"].removeprefix("sha256:"))
        assert member is not None
        # tar(1) rather than tarfile: it restores links and modes exactly as containerd's unpacker.
        subprocess.run(["tar", "-x", "-C", str(root)], input=member.read(), check=True)
    return root


def _blob_named(layout: tarfile.TarFile, name: str) -> bytes:
    f = layout.extractfile(name)
    assert f is not None, name
    return f.read()


def _chroot(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",
        "LANG": "C.UTF-8",
        "HOME": "/root",
    }
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    return subprocess.run(
        [chroot, str(root), *argv], capture_output=True, text=True, env=env, check=False
    )


def test_tarball_names_the_image_of_the_local_overlay() -> None:
    image = build_image()
    with tarfile.open(image.tarball) as layout:
        index = json.loads(_blob_named(layout, "index.json"))
    (entry,) = index["manifests"]
    assert entry["digest"] == image.digest
    assert entry["annotations"]["io.containerd.image.name"] == image.reference
    overlay = yaml.safe_load((REPO / "manifests/overlays/local/kustomization.yaml").read_text())
    (override,) = overlay["images"]
    assert f"{override['newName']}:{override['newTag']}" == image.reference


def test_build_is_cached_and_reproducible() -> None:
    first = build_image()
    assert build_image() == first  # a cache hit
    # Assembled again from the same inputs: byte for byte the same image.
    assert build_image(fresh=True) == first
    assert first.tarball.stat().st_size > 50 * 2**20  # a Python userland, not an empty layer


@pytest.mark.parametrize("entrypoint", ENTRYPOINTS)
def test_entrypoint_help_runs_in_the_image(rootfs: Path, entrypoint: str) -> None:
    proc = _chroot(rootfs, entrypoint, "--help")
    assert proc.returncode == 0, proc.stderr
    for flag in ("--metrics-bind-address", "--health-probe-bind-address", "--kubeconfig"):
        assert flag in proc.stdout, proc.stdout


def test_criu_4_is_in_the_image(rootfs: Path) -> None:
    proc = _chroot(rootfs, "criu", "--version")
    assert proc.returncode == 0, proc.stderr
    version = proc.stdout.split("Version:")[1].split()[0]
    assert int(version.split(".")[0]) >= 4, proc.stdout
    # What CRIU itself executes: tar and gzip to dump a tmpfs (/dev/shm of every checkpoint pod).
    for tool in ("tar", "gzip"):
        assert _chroot(rootfs, tool, "--version").returncode == 0, tool
    # CRIU's network lock must not need iptables-restore, which these hosts lack.
    assert "network-lock nftables" in (rootfs / "etc/criu/default.conf").read_text()


def test_init_container_command_works_in_the_image(rootfs: Path, tmp_path: Path) -> None:
    """The agent's init container runs `/bin/sh -c install ...` from this image."""
    ds = yaml.safe_load((REPO / "manifests/agent/daemonset.yaml").read_text())
    (init,) = ds["spec"]["template"]["spec"]["initContainers"]
    script = init["command"][-1]
    profile_dir = rootfs / "profile"
    profile_dir.mkdir(exist_ok=True)
    (profile_dir / "block-io-uring.json").write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    host = rootfs / "host-seccomp"
    host.mkdir(exist_ok=True)
    proc = _chroot(rootfs, *init["command"][:-1], script)
    assert proc.returncode == 0, proc.stderr
    installed = host / "dynamo-snapshot" / "block-io-uring.json"
    assert installed.read_text() == '{"defaultAction": "SCMP_ACT_ALLOW"}'
    assert os.stat(installed).st_mode & 0o777 == 0o644
