"""Assemble the project's image from Debian packages and wheels, without a container engine.

``build.sh`` chooses and fetches the inputs; this module turns them into an image:

1. unpack each ``.deb``'s data into a root filesystem with merged ``/usr`` (``bin``, ``sbin``,
   ``lib``, ``lib64`` are links into ``usr/``), as dpkg would, minus the maintainer scripts;
2. do by hand the little those scripts would have done that the image needs (``python3`` link,
   users, ``/tmp``, CRIU's config);
3. install the project and its wheels offline with the root filesystem's own Python, in a chroot,
   then compile byte code with hash-checked pycs (layer mtimes are zero, so timestamp pycs would be
   stale and differ between builds);
4. pack it as an OCI image-layout tarball with the test bed's writer (``hack/images/ocilayout.py``).

Usage: ``assemble.py requires WHEEL`` prints the wheel's runtime requirements (the key of the
dependency wheel cache); ``assemble.py build ...`` builds and prints the manifest digest.
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `images` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from images.ocilayout import ImageConfig, write_layout

PYTHON = "python3.13"
ENTRYPOINTS = (
    "dynamo-checkpoint-controller",
    "dynamo-podsnapshot-controller",
    "dynamo-snapshot-agent",
)
IMAGE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONUNBUFFERED": "1",
    # The root filesystem is read-only in the Deployments; pycs are already there.
    "PYTHONDONTWRITEBYTECODE": "1",
}
# The controllers run as this user (the Deployments say so too); the agent overrides it to root.
NONROOT_UID = 65532
# A clean environment for what runs in the chroot: nothing of the builder's may leak in.
CHROOT_ENV = {"PATH": IMAGE_ENV["PATH"], "HOME": "/root", "LANG": "C.UTF-8"}


def requires(wheel: Path) -> list[str]:
    """The runtime ``Requires-Dist`` lines of a wheel (extras left out), sorted."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(name).decode()
    lines = [
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    return sorted(lines)


def _run(argv: Sequence[str], **kwargs: object) -> None:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise SystemExit(
            f"assemble: {' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )


def unpack_debs(rootfs: Path, debs: Sequence[Path]) -> None:
    for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    for link in ("bin", "sbin", "lib", "lib64"):
        (rootfs / link).symlink_to(f"usr/{link}")
    for deb in debs:
        # dpkg-deb streams the data member whatever its compression; tar keeps our /usr links.
        dpkg = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        tar = subprocess.run(
            ["tar", "-x", "-C", str(rootfs), "--keep-directory-symlink"],
            stdin=dpkg.stdout,
            capture_output=True,
            check=False,
        )
        if dpkg.wait() != 0 or tar.returncode != 0:
            raise SystemExit(f"assemble: unpacking {deb} failed: {tar.stderr.decode()}")


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def configure(rootfs: Path) -> None:
    """What the maintainer scripts would have done, as far as the image needs it."""
    python3 = rootfs / "usr/bin/python3"
    if not python3.exists():
        python3.symlink_to(PYTHON)
    sh = rootfs / "usr/bin/sh"
    if not sh.exists() and not sh.is_symlink():
        sh.symlink_to("dash")
    _write(
        rootfs / "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\n"
        f"nonroot:x:{NONROOT_UID}:{NONROOT_UID}:nonroot:/home/nonroot:/usr/sbin/nologin\n",
    )
    _write(rootfs / "etc/group", f"root:x:0:\nnonroot:x:{NONROOT_UID}:\n")
    for d, mode in (("tmp", 0o1777), ("root", 0o700), ("home/nonroot", 0o755)):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
        (rootfs / d).chmod(mode)
    os.chown(rootfs / "home/nonroot", NONROOT_UID, NONROOT_UID)
    # No iptables-restore in the image (nor on these hosts): CRIU locks the network with nftables.
    _write(rootfs / "etc/criu/default.conf", "network-lock nftables\n")
    # Documentation is dead weight in an image; licences (usr/share/doc/*/copyright) stay.
    for d in ("usr/share/man", "usr/share/info", "usr/share/lintian"):
        shutil.rmtree(rootfs / d, ignore_errors=True)
    for p in (rootfs / "usr/share/doc").glob("*/*"):
        if p.name != "copyright" and not p.is_dir():
            p.unlink()


def break_hard_links(rootfs: Path) -> None:
    """Layers here hold no hard links (their encoding would depend on inode order): copy them."""
    for dirpath, _dirs, files in os.walk(rootfs):
        for name in files:
            p = Path(dirpath) / name
            st = p.lstat()
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                tmp = p.with_name(p.name + ".unlink")
                shutil.copy2(p, tmp)
                tmp.replace(p)


def chroot(rootfs: Path, *argv: str) -> None:
    _run(["chroot", str(rootfs), *argv], env=CHROOT_ENV)


def install_wheels(rootfs: Path, wheels: Path, project_wheel: Path) -> None:
    staged = rootfs / "tmp/wheels"
    shutil.copytree(wheels, staged)
    shutil.copy2(project_wheel, staged)
    pip = next(staged.glob("pip-*.whl"))
    chroot(
        rootfs,
        PYTHON,
        f"/tmp/wheels/{pip.name}/pip",
        "install",
        "--quiet",
        "--no-index",
        "--find-links=/tmp/wheels",
        "--break-system-packages",
        "--no-compile",
        "--no-cache-dir",
        "--root-user-action=ignore",
        "--disable-pip-version-check",
        "dynamo-snapshot",
    )
    shutil.rmtree(staged)
    # Byte code for everything, single process (compileall -j needs /dev/shm, absent in a chroot).
    chroot(
        rootfs,
        PYTHON,
        "-m",
        "compileall",
        "-q",
        "-f",
        "--invalidation-mode=checked-hash",
        f"/usr/lib/{PYTHON}",
        f"/usr/local/lib/{PYTHON}",
    )
    chroot(rootfs, "/sbin/ldconfig")
    # ldconfig's aux cache records inode numbers: it would change the digest on every build.
    shutil.rmtree(rootfs / "var/cache/ldconfig", ignore_errors=True)
    for script in ENTRYPOINTS:
        if not (rootfs / "usr/local/bin" / script).is_file():
            raise SystemExit(f"assemble: pip did not install the console script {script}")


def build(
    debs: Sequence[Path], wheels: Path, project_wheel: Path, reference: str, work: Path, out: Path
) -> str:
    old_umask = os.umask(0o022)
    try:
        with tempfile.TemporaryDirectory(prefix="rootfs-", dir=work) as tmp:
            rootfs = Path(tmp)
            rootfs.chmod(0o755)
            unpack_debs(rootfs, debs)
            configure(rootfs)
            install_wheels(rootfs, wheels, project_wheel)
            break_hard_links(rootfs)
            config = ImageConfig(
                entrypoint=[],
                cmd=[ENTRYPOINTS[0], "--help"],
                env=IMAGE_ENV,
                labels={
                    "org.opencontainers.image.title": "dynamo-snapshot",
                    "org.opencontainers.image.description": (
                        "dynamo-checkpoint-controller, dynamo-podsnapshot-controller, "
                        "dynamo-snapshot-agent"
                    ),
                },
            )
            return write_layout(rootfs, config, reference, out)
    finally:
        os.umask(old_umask)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    req = sub.add_parser("requires", help="print a wheel's runtime requirements")
    req.add_argument("wheel", type=Path)
    b = sub.add_parser("build", help="assemble the image; print its manifest digest")
    b.add_argument("--debs", type=Path, required=True, help="file listing the .deb paths")
    b.add_argument("--wheels", type=Path, required=True, help="directory of dependency wheels")
    b.add_argument("--project-wheel", type=Path, required=True)
    b.add_argument("--reference", required=True, help="the image name, host/repo:tag")
    b.add_argument("--work", type=Path, required=True, help="scratch directory (same filesystem)")
    b.add_argument("--out", type=Path, required=True, help="the OCI layout tarball to write")
    args = parser.parse_args(argv)
    if args.command == "requires":
        print("\n".join(requires(args.wheel)))
        return 0
    debs = [Path(line) for line in args.debs.read_text().splitlines() if line.strip()]
    print(build(debs, args.wheels, args.project_wheel, args.reference, args.work, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
