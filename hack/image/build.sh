#!/usr/bin/env bash
# Build the project's image (all three entrypoints, SPEC §7) without a container engine, as an OCI
# image-layout tarball that `ctr -n k8s.io images import` loads into any containerd:
#   1. the userland: Debian trixie packages (Python 3.13 and CRIU 4.1 that fit together), chosen by
#      apt's own solver from a private apt state with an empty dpkg status, fetched with
#      `apt-get download` (cached by file name);
#   2. the project's wheel plus cp313 manylinux wheels of its dependencies (cached by the wheel's
#      dependency list);
#   3. hack/image/assemble.py unpacks 1, installs 2 offline with the rootfs's own Python in a
#      chroot, and packs it with the test bed's writer (hack/images/ocilayout.py).
# The output is cached under $CACHE/image/out/<key>, the key a hash of everything that goes in, and
# is byte-identical run to run. Prints "<reference> <tarball> <manifest digest>".
# With --import SOCKET CTR: also import it into that containerd (namespace k8s.io) unless it holds
# this exact manifest already.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${DYNAMO_SNAPSHOT_CACHE:-$HOME/.cache/dynamo-snapshot}"
image_cache="$cache/image"
# A private apt state (lists, cache) for the image: the node installer's own trixie state may be
# updated concurrently by another build, and apt's lock would fail one of them.
DEBS_ROOT="$image_cache/debs-root"
# shellcheck source=../lib/debs.sh
source "$repo/hack/lib/debs.sh"
# shellcheck source=image.env
source "$here/image.env"
python="${PYTHON:-$repo/.venv/bin/python}"
[[ -x "$python" ]] || python=python3

log() { echo "image: $*" >&2; }
# The file `apt-get download` writes for pkg=version (an epoch's ':' becomes %3a; arch amd64 or all).
deb_file() {
  local f
  for f in "$debs/${1}_${2//:/%3a}_"*.deb; do
    [[ -f "$f" ]] && echo "$f" && return 0
  done
  return 1
}
die() { echo "image: error: $*" >&2; exit 1; }

import_socket="" import_ctr=""
if [[ "${1:-}" == --import ]]; then
  import_socket="${2:?--import needs the containerd socket}"
  import_ctr="${3:?--import needs the ctr binary}"
fi

[[ "$(id -u)" == 0 ]] || die "building the image needs root (chroot, file owners)"
mkdir -p "$image_cache"
exec 9>"$image_cache/.lock"
flock 9 # one build at a time: they share the caches below

# 1. Package set: apt's solver, from an empty status, exactly as a Containerfile's apt-get would.
apt_prepare "$IMAGE_SUITE"
solve() {
  apt_private apt-get "$IMAGE_SUITE" -s install --no-install-recommends "${IMAGE_PACKAGES[@]}" |
    sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) .*/\1=\2/p' | sort
}
if ! pkgset="$(solve)" || [[ -z "$pkgset" ]]; then
  rm -f "$DEBS_ROOT/apt/$IMAGE_SUITE/.updated"
  apt_prepare "$IMAGE_SUITE"
  pkgset="$(solve)"
fi
# Skipped: their content exists only after maintainer scripts, which never run here (TESTBED.md).
pkgset="$(grep -vE '^(debconf|ca-certificates)=' <<<"$pkgset")"
debs="$image_cache/debs"
mkdir -p "$debs"
missing=()
while IFS='=' read -r pkg version; do
  deb_file "$pkg" "$version" >/dev/null || missing+=("$pkg=$version")
done <<<"$pkgset"
if ((${#missing[@]})); then
  log "downloading ${#missing[@]} Debian packages from $IMAGE_SUITE"
  if ! (cd "$debs" && apt_private apt-get "$IMAGE_SUITE" download "${missing[@]}" >&2); then
    rm -f "$DEBS_ROOT/apt/$IMAGE_SUITE/.updated"
    die "apt-get download failed; the lists were stale and are refreshed on the next run: rerun"
  fi
fi
deblist="$(while IFS='=' read -r pkg version; do deb_file "$pkg" "$version"; done <<<"$pkgset")"

# 2. Wheels: the project's own (hatchling's wheels are reproducible), then its dependencies.
work="$(mktemp -d "$image_cache/work.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$python" -m pip wheel -q --no-deps --disable-pip-version-check -w "$work/project" "$repo" >&2
project_wheel="$(ls "$work/project"/dynamo_snapshot-*.whl)"
requires="$("$python" "$here/assemble.py" requires "$project_wheel")"
wheels="$image_cache/wheels/$(printf '%s\n%s\n' "$requires" "${WHEEL_PLATFORMS[*]}" | sha256sum | cut -c1-16)"
if [[ ! -f "$wheels/.complete" ]]; then
  log "downloading cp313 wheels of the dependencies into $wheels"
  rm -rf "$wheels.tmp"
  platforms=()
  for p in "${WHEEL_PLATFORMS[@]}"; do platforms+=(--platform "$p"); done
  "$python" -m pip download -q --disable-pip-version-check --no-cache-dir -d "$wheels.tmp" \
    --only-binary=:all: --python-version 3.13 --implementation cp --abi cp313 --abi abi3 \
    --abi none "${platforms[@]}" "$project_wheel" pip >&2
  rm -f "$wheels.tmp"/dynamo_snapshot-*.whl
  touch "$wheels.tmp/.complete"
  rm -rf "$wheels"
  mv "$wheels.tmp" "$wheels"
fi

# 3. The key covers every input; a hit skips the assembly.
key="$(
  {
    echo "$pkgset"
    sha256sum "$project_wheel" | cut -d' ' -f1
    (cd "$wheels" && sha256sum ./*.whl)
    cat "$here/assemble.py" "$here/image.env" "$repo/hack/images/ocilayout.py"
  } | sha256sum | cut -c1-16
)"
out="$image_cache/out/$key"
# DYNAMO_SNAPSHOT_IMAGE_FRESH=1 assembles again even on a hit (the reproducibility check).
if [[ ! -f "$out/image.txt" || "${DYNAMO_SNAPSHOT_IMAGE_FRESH:-}" == 1 ]]; then
  log "assembling the image (key $key)"
  rm -rf "$out.tmp"
  mkdir -p "$out.tmp"
  "$python" "$here/assemble.py" build --debs <(echo "$deblist") --wheels "$wheels" \
    --project-wheel "$project_wheel" --reference "$IMAGE_REFERENCE" \
    --work "$work" --out "$out.tmp/dynamo-snapshot.tar" >"$out.tmp/digest"
  echo "$IMAGE_REFERENCE $out/dynamo-snapshot.tar $(cat "$out.tmp/digest")" >"$out.tmp/image.txt"
  echo "$pkgset" >"$out.tmp/packages.txt"
  rm -f "$out.tmp/digest"
  rm -rf "$out"
  mv "$out.tmp" "$out"
  # Older builds are dead weight, but another checkout's deploy may be about to import the one
  # it was just handed (the lock is released by then): remove only those unused for an hour.
  find "$image_cache/out" -mindepth 1 -maxdepth 1 ! -name "$key" -mmin +60 -exec rm -rf {} +
fi
touch "$out" # in use: see the clean-up above

if [[ -n "$import_socket" ]]; then
  read -r ref tarball digest <"$out/image.txt"
  ctr=("$import_ctr" --address "$import_socket" -n k8s.io)
  if ! "${ctr[@]}" images ls "name==$ref" 2>/dev/null | grep -qF "$digest"; then
    log "importing $ref into $import_socket"
    "${ctr[@]}" images import "$tarball" >/dev/null
  fi
fi
cat "$out/image.txt"
