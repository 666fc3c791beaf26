"""Build the node test bed's images as OCI image-layout tarballs.

- ``pause``: the pod sandbox image, busybox running ``sleep infinity`` (no registry can serve
  ``registry.k8s.io/pause`` here).
- ``workload``: busybox plus ``workload/workload.sh``, the workload that honours the control-volume
  contract of SPEC §3 (see that script).

Usage: ``python3 hack/images/build.py --busybox PATH --out DIR``; prints one line per image:
``<reference> <tarball> <manifest digest>``. Uses only the standard library, so the system
``python3`` runs it on a fresh machine.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `images` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from images.ocilayout import ImageConfig, write_layout

HERE = Path(__file__).resolve().parent
PAUSE_IMAGE = "localhost/dynamo-snapshot/pause:v1"
WORKLOAD_IMAGE = "localhost/dynamo-snapshot/workload:v1"
PATH_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}


@dataclass(frozen=True)
class ImageSource:
    name: str
    reference: str
    config: ImageConfig
    extra: Callable[[Path], None]


def _mkdir(path: Path, mode: int = 0o755) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)  # explicit: the builder's umask must not leak into the image


def stage_busybox(root: Path, busybox: Path) -> None:
    """A minimal busybox userland: /bin/busybox, one symlink per applet, users, /tmp."""
    for d in ("bin", "usr", "usr/bin", "usr/local", "usr/local/bin", "etc", "root"):
        _mkdir(root / d)
    _mkdir(root / "tmp", 0o1777)
    shutil.copyfile(busybox, root / "bin/busybox")
    (root / "bin/busybox").chmod(0o755)
    applets = subprocess.run(
        [str(busybox), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    for f in ("etc/passwd", "etc/group"):
        (root / f).chmod(0o644)


def _add_workload(root: Path) -> None:
    target = root / "usr/local/bin/workload"
    shutil.copyfile(HERE / "workload" / "workload.sh", target)
    target.chmod(0o755)
    _mkdir(root / "snapshot-control")


def _nothing(root: Path) -> None:
    del root


SOURCES = (
    ImageSource(
        "pause",
        PAUSE_IMAGE,
        ImageConfig(entrypoint=["/bin/sleep", "infinity"], env=PATH_ENV),
        _nothing,
    ),
    ImageSource(
        "workload",
        WORKLOAD_IMAGE,
        ImageConfig(
            entrypoint=["/usr/local/bin/workload"],
            env={**PATH_ENV, "DYN_SNAPSHOT_CONTROL_DIR": "/snapshot-control"},
        ),
        _add_workload,
    ),
)


def build(busybox: Path, out: Path) -> list[tuple[str, Path, str]]:
    out.mkdir(parents=True, exist_ok=True)
    built = []
    for src in SOURCES:
        with tempfile.TemporaryDirectory(prefix=f"image-{src.name}-") as tmp:
            root = Path(tmp)
            stage_busybox(root, busybox)
            src.extra(root)
            tarball = out / f"{src.name}.tar"
            digest = write_layout(root, src.config, src.reference, tarball)
            built.append((src.reference, tarball, digest))
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--busybox", type=Path, required=True, help="a static busybox binary")
    parser.add_argument("--out", type=Path, required=True, help="directory for the tarballs")
    args = parser.parse_args(argv)
    for reference, tarball, digest in build(args.busybox, args.out):
        print(reference, tarball, digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
