#!/usr/bin/env bash
# Build the test bed's images (pause, workload) as OCI image-layout tarballs and, with --import,
# load them into the running private node's containerd (namespace k8s.io, where CRI looks).
# Tarballs are cached under $NODE_CACHE/images/<content hash>: rebuilt only when the builder, the
# workload script or busybox changed. Prints "<reference> <tarball> <digest>" per image.
set -euo pipefail
# shellcheck source=../node/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../node/lib.sh"

import=no
[[ "${1:-}" == --import ]] && import=yes

"$HACK_NODE_DIR/install.sh" >/dev/null
busybox="$(readlink -f "$NODE_BIN/busybox")"
images_dir="$REPO_ROOT/hack/images"
key="$(cat "$images_dir/ocilayout.py" "$images_dir/build.py" "$images_dir/workload/workload.sh" \
  "$busybox" | sha256sum | cut -c1-16)"
out="$NODE_CACHE/images/$key"
mkdir -p "$NODE_CACHE/images"
# One build at a time on the machine (test sessions of several checkouts share the cache): two
# builds of one key would share "$out.tmp".
exec 8>"$NODE_CACHE/images.lock"
flock 8
if [[ ! -f "$out/images.txt" ]]; then
  log "building images into $out"
  rm -rf "$out.tmp"
  mkdir -p "$out.tmp"
  "${PYTHON:-python3}" "$images_dir/build.py" --busybox "$busybox" --out "$out.tmp" \
    >"$out.tmp/images.txt.partial"
  # The tarball paths printed point into the temporary directory: rewrite them.
  sed "s|$out.tmp/|$out/|" "$out.tmp/images.txt.partial" >"$out.tmp/images.txt"
  rm "$out.tmp/images.txt.partial"
  rm -rf "$out"
  mv "$out.tmp" "$out"
  # Older builds are dead weight, but another checkout's session may be using one right now
  # (its tests read the tarballs it was handed): remove only those unused for a day.
  find "$NODE_CACHE/images" -mindepth 1 -maxdepth 1 ! -name "$key" -mmin +1440 -exec rm -rf {} +
fi
touch "$out" # in use: see the clean-up above
flock -u 8
exec 8>&-

if [[ "$import" == yes ]]; then
  [[ -S "$CRI_SOCKET" ]] || die "no node running (socket $CRI_SOCKET missing); run node-up"
  ctr=("$NODE_BIN/ctr" --address "$CRI_SOCKET" -n k8s.io)
  while read -r ref tarball digest; do
    # Skip the import when containerd already has this exact manifest under this name.
    if "${ctr[@]}" images ls -q "name==$ref" 2>/dev/null | grep -qxF "$ref" &&
      "${ctr[@]}" images ls "name==$ref" | grep -qF "$digest"; then
      continue
    fi
    log "importing $ref"
    "${ctr[@]}" images import "$tarball" >/dev/null
  done <"$out/images.txt"
fi
cat "$out/images.txt"
