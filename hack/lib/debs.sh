#!/usr/bin/env bash
# fetch_debs SUITE PREFIX PKG...: download Debian packages of any suite (trixie, sid, ...) with a
# private apt state and unpack them into PREFIX with dpkg -x. Never installs anything system-wide:
# a newer suite's packages would drag in a newer libc and break this bookworm machine.
# The mirror is whatever this machine's own apt sources use, so no host is hard-coded here.
set -euo pipefail

_debs_mirror() {
  local uri
  uri="$(sed -n 's/^URIs:[[:space:]]*\(.*\/debian\)[[:space:]]*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)"
  if [[ -z "$uri" ]]; then
    uri="$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\/debian\)[[:space:]].*/\2/p' /etc/apt/sources.list 2>/dev/null | head -1)"
  fi
  [[ -n "$uri" ]] || { echo "debs: no Debian mirror found in this machine's apt sources" >&2; return 1; }
  echo "$uri"
}

fetch_debs() {
  local suite="$1" prefix="$2"; shift 2
  local cache="${DYNAMO_SNAPSHOT_CACHE:-$HOME/.cache/dynamo-snapshot}/apt/$suite"
  local opts=(-o "Dir::Etc::SourceList=$cache/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
              -o "Dir::State::Lists=$cache/lists" -o "Dir::Cache::Archives=$cache/archives"
              -o "Dir::Cache=$cache" -o "APT::Get::List-Cleanup=0" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
  mkdir -p "$cache/lists/partial" "$cache/archives/partial" "$prefix"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(_debs_mirror) $suite main" > "$cache/sources.list"
  if [[ -z "$(find "$cache/lists" -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]]; then
    apt-get "${opts[@]}" update -qq >&2
  fi
  local pkg
  (cd "$cache/archives" && apt-get "${opts[@]}" download -qq "$@" >&2)
  for pkg in "$@"; do
    local deb
    deb="$(ls -t "$cache/archives/${pkg}_"*.deb | head -1)"
    dpkg -x "$deb" "$prefix"
  done
}
