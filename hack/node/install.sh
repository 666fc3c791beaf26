#!/usr/bin/env bash
# Install the node runtime (containerd >= 2.0, runc, CRIU >= 4.0, busybox-static, CNI plugins) from Debian
# packages, without touching the system (hack/lib/debs.sh: private apt per suite, `dpkg -x` into
# the cache). A package already unpacked for its version is reused without any network access.
#
# Prints the private bin directory on stdout.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=../lib/debs.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/debs.sh"

# Write a file atomically, so a running node never sees half a wrapper.
write_exec() {
  local path="$1"
  cat >"$path.tmp.$$"
  chmod 0755 "$path.tmp.$$"
  mv -f "$path.tmp.$$" "$path"
}

link() { ln -sfn "$1" "$2.tmp.$$" && mv -Tf "$2.tmp.$$" "$2"; }

main() {
  [[ "$(uname -m)" == x86_64 ]] || die "only x86_64 is supported (got $(uname -m))"
  local containerd criu runc busybox
  containerd="$(fetch_package CONTAINERD containerd no)"
  criu="$(fetch_package CRIU criu yes)"
  runc="$(fetch_package RUNC runc no)"
  busybox="$(fetch_package BUSYBOX busybox-static no)"
  cni="$(fetch_package CNI containernetworking-plugins no)"

  mkdir -p "$NODE_BIN" "$NODE_CACHE/etc"
  # containerd, ctr and the shim run natively. The shim re-executes /proc/self/exe: a symlink is
  # fine, a loader wrapper is not.
  local b
  for b in containerd ctr containerd-shim-runc-v2; do
    [[ -x "$containerd/usr/bin/$b" ]] || die "$b missing from $containerd"
    link "$containerd/usr/bin/$b" "$NODE_BIN/$b"
  done
  link "$runc/usr/sbin/runc" "$NODE_BIN/runc"
  link "$busybox/bin/busybox" "$NODE_BIN/busybox"
  # The CNI plugins a node's containerd runs (node-up.sh links them into its CNI bin directory).
  mkdir -p "$NODE_CNI_BIN"
  for b in bridge host-local loopback; do
    [[ -x "$cni/usr/lib/cni/$b" ]] || die "CNI plugin $b missing from $cni"
    link "$cni/usr/lib/cni/$b" "$NODE_CNI_BIN/$b"
  done

  # CRIU needs a newer glibc than the host's: run it through the prefix's own loader. runc execs
  # `criu` from PATH (also in RPC `swrk` mode), so the wrapper must be named criu. The config file
  # carries `network-lock nftables` (iptables-restore is absent here); the env variable reaches
  # CRIU in RPC mode too, where there is no command line to add options to.
  # Written like the wrapper (a temp file, then rename), and only when it changed: every node-up
  # and image build runs this script, and a CRIU starting meanwhile (another test session on this
  # machine) must never read a truncated file, which would drop the network-lock setting.
  local conf="$NODE_CACHE/etc/criu.conf"
  printf '%s\n' '# Written by hack/node/install.sh' 'network-lock nftables' >"$conf.tmp.$$"
  if cmp -s "$conf.tmp.$$" "$conf"; then rm -f "$conf.tmp.$$"; else mv -f "$conf.tmp.$$" "$conf"; fi
  local libs="$criu/usr/lib/x86_64-linux-gnu:$criu/lib/x86_64-linux-gnu" loader
  # trixie has merged /usr; older suites keep the loader in /lib64.
  for loader in "$criu/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
    "$criu/lib64/ld-linux-x86-64.so.2" ""; do
    [[ -z "$loader" || -e "$loader" ]] && break
  done
  [[ -n "$loader" ]] || die "no ld-linux-x86-64.so.2 in $criu"
  write_exec "$NODE_BIN/criu" <<WRAP
#!/bin/sh
# CRIU $CRIU_VERSION from a private prefix, through its own loader (see hack/node/install.sh).
export CRIU_CONFIG_FILE="\${CRIU_CONFIG_FILE:-$NODE_CACHE/etc/criu.conf}"
exec "$loader" --library-path "$libs" "$criu/usr/sbin/criu" "\$@"
WRAP
  echo "$NODE_BIN"
}

main "$@"
