# Debian packages of any suite (bookworm, trixie, sid, ...) unpacked into private prefixes; sourced,
# never run. Nothing is installed system-wide: a newer suite's packages would drag in a newer libc
# and break this bookworm machine. apt runs with a private state per suite (own sources, lists,
# cache and an empty dpkg status, so dependency resolution ignores what the host has installed);
# packages are fetched with `apt-get download` and unpacked with `dpkg -x`. The mirror is whatever
# this machine's own apt sources use, so no host is written here.
#
# The caller defines, per package NAME: NAME_SUITE, NAME_VERSION (the version tested here) and
# NAME_MIN (the oldest acceptable one), then calls `fetch_package NAME PKG CLOSURE`.
# shellcheck shell=bash

DEBS_ROOT="${DEBS_ROOT:-${DYNAMO_SNAPSHOT_CACHE:-$HOME/.cache/dynamo-snapshot}/debs}"
DEBS_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

debs_log() { echo "debs: $*" >&2; }
debs_die() { echo "debs: error: $*" >&2; exit 1; }

# A version string with ':' (a Debian epoch) cannot sit in a path that goes into PATH-like lists.
path_version() { echo "${1//:/_}"; }

# The URI this machine's apt sources use for an archive (`debian` or `debian-security`).
debs_mirror() {
  local archive="$1" uri
  uri="$(sed -n "s/^URIs:[[:space:]]*\(.*\/$archive\)\/\?[[:space:]]*$/\1/p" \
    /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)"
  if [[ -z "$uri" ]]; then
    uri="$(sed -n "s/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\/$archive\)\/\?[[:space:]].*/\2/p" \
      /etc/apt/sources.list 2>/dev/null | head -1)"
  fi
  echo "$uri"
}

apt_private() {
  local tool="$1" suite="$2"
  shift 2
  local d="$DEBS_ROOT/apt/$suite"
  "$tool" -q \
    -o Dir::Etc::SourceList="$d/sources.list" -o Dir::Etc::SourceParts="$d/sources.list.d" \
    -o Dir::Etc::Preferences="$d/preferences" -o Dir::Etc::PreferencesParts="$d/preferences.d" \
    -o Dir::State::Lists="$d/lists" -o Dir::State::status="$d/status" -o Dir::Cache="$d/cache" \
    -o APT::Get::List-Cleanup=false -o APT::Sandbox::User=root \
    -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false \
    -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false "$@"
}

apt_prepare() {
  local suite="$1" d="$DEBS_ROOT/apt/$1" mirror security
  [[ -f "$d/.updated" ]] && return 0
  command -v apt-get >/dev/null || debs_die "apt-get is required"
  [[ -f "$DEBS_KEYRING" ]] || debs_die "$DEBS_KEYRING is missing (package debian-archive-keyring)"
  mirror="$(debs_mirror debian)"
  [[ -n "$mirror" ]] || debs_die "no Debian mirror found in this machine's apt sources"
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/sources.list.d" "$d/preferences.d"
  : >"$d/status"
  {
    echo "deb [signed-by=$DEBS_KEYRING] $mirror $suite main"
    if [[ "$suite" == bookworm ]]; then
      echo "deb [signed-by=$DEBS_KEYRING] $mirror bookworm-updates main"
      security="$(debs_mirror debian-security)"
      [[ -z "$security" ]] || echo "deb [signed-by=$DEBS_KEYRING] $security bookworm-security main"
    fi
  } >"$d/sources.list"
  debs_log "apt: updating private lists for $suite"
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
  [[ -n "$cand" ]] || debs_die "$pkg is not in $suite"
  dpkg --compare-versions "$cand" ge "$min" || debs_die "$pkg in $suite is $cand, older than $min"
  debs_log "warning: $pkg $want is gone from $suite; taking $cand"
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

# Download <pkg> (and its library closure) into $5 (a directory of .debs).
download() {
  local suite="$1" pkg="$2" version="$3" closure="$4" debs="$5"
  local -a set
  mapfile -t set < <(package_set "$suite" "$pkg" "$version" "$closure")
  debs_log "apt: downloading ${set[*]} from $suite"
  (cd "$debs" && apt_private apt-get "$suite" download "${set[@]}" >&2)
  echo "${set[*]}" >"$debs/.set"
}

# fetch_package NAME PKG CLOSURE: unpack <pkg> (and, with CLOSURE=yes, its library closure) into
# $DEBS_ROOT/pkgs/<pkg>-<version>; print that prefix. The tested version's name is the cache key, so
# a warm cache needs no apt at all; when the mirror has moved on, that name becomes a link to the
# version actually taken.
fetch_package() {
  local name="$1" pkg="$2" closure="$3"
  local suite_var="${name}_SUITE" want_var="${name}_VERSION" min_var="${name}_MIN"
  local suite="${!suite_var}" want="${!want_var}" min="${!min_var}"
  local key
  key="$DEBS_ROOT/pkgs/$pkg-$(path_version "$want")"
  if [[ -f "$key/.complete" ]]; then
    echo "$key"
    return 0
  fi
  mkdir -p "$DEBS_ROOT/pkgs"
  apt_prepare "$suite"
  local version prefix tmp debs
  version="$(resolve_version "$suite" "$pkg" "$want" "$min")"
  prefix="$DEBS_ROOT/pkgs/$pkg-$(path_version "$version")"
  tmp="$prefix.tmp.$$"
  debs="$prefix.debs.$$"
  rm -rf "$tmp" "$debs"
  mkdir -p "$tmp" "$debs"
  if ! download "$suite" "$pkg" "$version" "$closure" "$debs"; then
    # Lists older than the mirror (sid moves daily) name files that are gone: refresh, retry.
    debs_log "apt: download failed; refreshing the $suite lists and retrying"
    rm -f "$DEBS_ROOT/apt/$suite/.updated"
    apt_prepare "$suite"
    version="$(resolve_version "$suite" "$pkg" "$want" "$min")"
    prefix="$DEBS_ROOT/pkgs/$pkg-$(path_version "$version")"
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
