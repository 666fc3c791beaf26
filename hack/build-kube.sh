#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and the kubelet from the Go module
# k8s.io/kubernetes at one pinned release. These binaries are in no Debian suite and not on PyPI,
# so the only way to a real control plane here is the Go module proxy.
#
# k8s.io/kubernetes' own go.mod points its k8s.io/* staging modules at ./staging/..., and v0.0.0 is
# not served, so as a dependency it needs a `replace` pinning each staging module to the matching
# v0.x.y. The binaries land in a cache outside the repo keyed by version; a present, runnable set
# is reused and nothing is rebuilt.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.34.4}"
CACHE="${DYNAMO_SNAPSHOT_CACHE:-$HOME/.cache/dynamo-snapshot}"
OUT="$CACHE/kube/$KUBE_VERSION/bin"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet)

have_all() {
  local b
  for b in "${BINARIES[@]}"; do
    [[ -x "$OUT/$b" ]] || return 1
  done
  "$OUT/kube-apiserver" --version 2>/dev/null | grep -q "$KUBE_VERSION"
}

if have_all; then
  echo "$OUT"
  exit 0
fi

command -v go >/dev/null || { echo "build-kube: Go is required (go not on PATH)" >&2; exit 1; }

work="$CACHE/kube/$KUBE_VERSION/module"
mkdir -p "$work" "$OUT"
# Several checkouts share this cache: one build at a time, and whoever waited finds it done.
exec 8>"$CACHE/kube/$KUBE_VERSION/build.lock"
flock 8
if have_all; then
  echo "$OUT"
  exit 0
fi
cd "$work"
minor="${KUBE_VERSION#v1.}"          # 34.4
staging_version="v0.${minor}"        # v0.34.4

if [[ ! -f go.mod ]]; then
  echo "build-kube: preparing module for k8s.io/kubernetes@$KUBE_VERSION" >&2
  cat > go.mod <<MOD
module dynamo-snapshot/kubebuild

go 1.24.0

require k8s.io/kubernetes $KUBE_VERSION
MOD
  gomod="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
  {
    echo
    echo "replace ("
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$gomod" | sort -u |
      while read -r m; do echo "	$m => $m $staging_version"; done
    echo ")"
  } >> go.mod
fi
# tools.go anchors the commands in this module's requirements; tidy again only when that set changes.
tools="//go:build tools

// Package kubebuild only anchors the k8s.io/kubernetes commands in this module's requirements.
package kubebuild

import (
$(for b in "${BINARIES[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$b\""; done)
)"
if [[ ! -f tools.go || "$(cat tools.go)" != "$tools" ]]; then
  echo "$tools" > tools.go
  go mod tidy -e >&2
fi

ldflags="-s -w"
for v in gitVersion=$KUBE_VERSION gitMajor=1 "gitMinor=${minor%%.*}" gitTreeState=clean; do
  ldflags+=" -X k8s.io/component-base/version.$v -X k8s.io/client-go/pkg/version.$v"
done
start=$(date +%s)
for b in "${BINARIES[@]}"; do
  [[ -x "$OUT/$b" ]] && continue  # moved into place only after a successful build
  echo "build-kube: building $b $KUBE_VERSION (cold builds take many minutes on 2 cores)" >&2
  go build -trimpath -ldflags "$ldflags" -o "$OUT/$b.tmp" "k8s.io/kubernetes/cmd/$b" >&2
  mv "$OUT/$b.tmp" "$OUT/$b"
done
echo "build-kube: built in $(( $(date +%s) - start )) s" >&2
echo "$OUT"
