#!/usr/bin/env bash
# shellcheck disable=SC2034  # ETCD_* are read by fetch_package through their common prefix
# Ensure etcd is unpacked in the cache and print the path of its binary. Trixie's etcd-server runs
# natively on bookworm's libc; bookworm's own 3.4 is older than kube-apiserver supports.
set -euo pipefail
# shellcheck source=lib/debs.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/debs.sh"
ETCD_SUITE="${ETCD_SUITE:-trixie}"
ETCD_VERSION="${ETCD_VERSION:-3.5.16-4}"
ETCD_MIN=3.5
prefix="$(fetch_package ETCD etcd-server no)"
"$prefix/usr/bin/etcd" --version >/dev/null
echo "$prefix/usr/bin/etcd"
