#!/usr/bin/env bash
# Ensure etcd is unpacked in the cache and print the path of its binary. Trixie's etcd-server runs
# natively on bookworm's libc; bookworm's own 3.4 is older than kube-apiserver supports.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${DYNAMO_SNAPSHOT_CACHE:-$HOME/.cache/dynamo-snapshot}"
ETCD_SUITE="${ETCD_SUITE:-trixie}"
prefix="$CACHE/etcd/$ETCD_SUITE"
etcd="$prefix/usr/bin/etcd"
if ! "$etcd" --version >/dev/null 2>&1; then
  source "$here/lib/debs.sh"
  echo "ensure-etcd: fetching etcd-server from $ETCD_SUITE into $prefix" >&2
  fetch_debs "$ETCD_SUITE" "$prefix" etcd-server
  "$etcd" --version >/dev/null
fi
echo "$etcd"
