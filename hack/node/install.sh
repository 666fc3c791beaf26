#!/usr/bin/env bash
# Install the node runtime (containerd >= 2.0, runc, CRIU >= 4.0, busybox-static) from Debian
# packages into $NODE_CACHE, without touching the system: packages are fetched with `apt-get
# download` through a private apt directory per suite and unpacked with `dpkg -x`. Nothing newer
# than bookworm is ever installed system-wide (it would drag in a newer libc). A package already
# unpacked for its version is reused without any network access.
#
# Prints the private bin directory on stdout.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

APT_BASE="$NODE_CACHE/apt"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

# apt-get / apt-cache confined to one suite's private state: its own sources, lists, cache and an
# empty dpkg status (so dependency resolution ignores what the host has installed).
apt_private() {
  local tool="$1" suite="$2"
  shift 2
  local d="$APT_BASE/$suite"
  "$tool" -q \
    -o Dir::Etc::SourceList="$d/sources.list" -o Dir::Etc::SourceParts="$d/sources.list.d" \
    -o Dir::Etc::Preferences="$d/preferences" -o Dir::Etc::PreferencesParts="$d/preferences.d" \
    -o Dir::State::Lists="$d/lists" -o Dir::State::status="$d/status" -o Dir::Cache="$d/cache" \
    -o APT::Get::List-Cleanup=false -o APT::Sandbox::User=root \
    -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false \
    -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false "$@"
}

apt_prepare() {
  local suite="$1" d="$APT_BASE/$1"
  [[ -f "$d/.updated" ]] && return 0
  command -v apt-get >/dev/null || die "apt-get is required"
  [[ -f "$KEYRING" ]] || die "$KEYRING is missing (package debian-archive-keyring)"
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/sources.list.d" "$d/preferences.d"
  : >"$d/status"
  {
    echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian $suite main"
    if [[ "$suite" == bookworm ]]; then
      echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian bookworm-updates main"
      echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian-security bookworm-security main"
    fi
  } >"$d/sources.list"
  log "apt: updating private lists for $suite"
  apt_private apt-get "$suite" update >&2
  touch "$d/.updated"
}

# Which version to take: the tested one if the mirror still has it, else the suite's candidate if it
# is at least the minimum.
resolve_version() {
  local suite="$1" pkg="$2" want="$3" min="$4" have cand
  have="$(apt_private apt-cache "$suite" madison "$pkg" | awk -F'|' '{gsub(/ /,"",$2); print $2}')"
  if grep -qxF -- "$want" <<<"$have"; then
    echo "$want"
    return 0
  fi
  cand="$(head -n1 <<<"$have")"
  [[ -n "$cand" ]] || die "$pkg is not in $suite"
  dpkg --compare-versions "$cand" ge "$min" || die "$pkg in $suite is $cand, older than $min"
  log "warning: $pkg $want is gone from $suite; taking $cand"
  echo "$cand"
}

# The package plus, with closure=yes, every library package it needs (recursively, within the
# suite). Non-library dependencies (python, perl, ...) are not needed to run the binary.
package_set() {
  local suite="$1" pkg="$2" version="$3" closure="$4"
  echo "$pkg=$version"
  [[ "$closure" == yes ]] || return 0
  apt_private apt-cache "$suite" depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances "$pkg=$version" |
    grep -v '^ ' | grep -E '^lib' | sort -u
}

# Download <pkg> (and its library closure) into $1 (a directory of .debs).
download() {
  local suite="$1" pkg="$2" version="$3" closure="$4" debs="$5"
  local -a set
  mapfile -t set < <(package_set "$suite" "$pkg" "$version" "$closure")
  log "apt: downloading ${set[*]} from $suite"
  (cd "$debs" && apt_private apt-get "$suite" download "${set[@]}" >&2)
  echo "${set[*]}" >"$debs/.set"
}

# Unpack <pkg> (and its library closure) into $NODE_CACHE/pkgs/<pkg>-<version>; print that prefix.
# The tested version's name is the cache key, so a warm cache needs no apt at all; when the mirror
# has moved on, that name becomes a link to the version actually taken.
fetch() {
  local name="$1" pkg="$2" closure="$3"
  local suite_var="${name}_SUITE" want_var="${name}_VERSION" min_var="${name}_MIN"
  local suite="${!suite_var}" want="${!want_var}" min="${!min_var}"
  local key
  key="$NODE_CACHE/pkgs/$pkg-$(path_version "$want")"
  if [[ -f "$key/.complete" ]]; then
    echo "$key"
    return 0
  fi
  mkdir -p "$NODE_CACHE/pkgs"
  apt_prepare "$suite"
  local version prefix tmp debs
  version="$(resolve_version "$suite" "$pkg" "$want" "$min")"
  prefix="$NODE_CACHE/pkgs/$pkg-$(path_version "$version")"
  tmp="$prefix.tmp.$$"
  debs="$prefix.debs.$$"
  rm -rf "$tmp" "$debs"
  mkdir -p "$tmp" "$debs"
  if ! download "$suite" "$pkg" "$version" "$closure" "$debs"; then
    # Lists older than the mirror (sid moves daily) name files that are gone: refresh, retry.
    log "apt: download failed; refreshing the $suite lists and retrying"
    rm -f "$APT_BASE/$suite/.updated"
    apt_prepare "$suite"
    version="$(resolve_version "$suite" "$pkg" "$want" "$min")"
    prefix="$NODE_CACHE/pkgs/$pkg-$(path_version "$version")"
    rm -f "$debs"/*.deb
    download "$suite" "$pkg" "$version" "$closure" "$debs"
  fi
  local deb
  for deb in "$debs"/*.deb; do
    dpkg -x "$deb" "$tmp"
  done
  echo "$pkg=$version (from $suite; packages: $(cat "$debs/.set"))" >"$tmp/.complete"
  rm -rf "$debs" "$prefix"
  mv "$tmp" "$prefix"
  [[ "$prefix" == "$key" ]] || ln -sfn "$(basename "$prefix")" "$key"
  echo "$key"
}

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
  containerd="$(fetch CONTAINERD containerd no)"
  criu="$(fetch CRIU criu yes)"
  runc="$(fetch RUNC runc no)"
  busybox="$(fetch BUSYBOX busybox-static no)"

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

  # CRIU needs a newer glibc than the host's: run it through the prefix's own loader. runc execs
  # `criu` from PATH (also in RPC `swrk` mode), so the wrapper must be named criu. The config file
  # carries `network-lock nftables` (iptables-restore is absent here); the env variable reaches
  # CRIU in RPC mode too, where there is no command line to add options to.
  printf '%s\n' '# Written by hack/node/install.sh' 'network-lock nftables' \
    >"$NODE_CACHE/etc/criu.conf"
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
