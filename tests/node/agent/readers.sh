#!/usr/bin/env bash
# Independent readers of an artifact (TESTBED.md): checkpointctl (trixie, through its own loader)
# for CRI checkpoint archives and crit (trixie python3-pycriu on bookworm's python3-protobuf) for
# CRIU images. Unpacked privately with hack/lib/debs.sh, never installed system-wide.
#
# Prints two lines: CHECKPOINTCTL=<wrapper> and CRIT=<wrapper>.
# The NAME_SUITE/_VERSION/_MIN variables are read by fetch_package through indirect expansion.
# shellcheck disable=SC2034
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
# shellcheck source=../../../hack/lib/debs.sh
# shellcheck source=../../../hack/lib/debs.sh disable=SC1091
source "$repo/hack/lib/debs.sh"

CHECKPOINTCTL_SUITE=trixie
CHECKPOINTCTL_VERSION=1.3.0+ds1-2+b5
CHECKPOINTCTL_MIN=1.1
PYCRIU_SUITE=trixie
PYCRIU_VERSION=4.1.1-1
PYCRIU_MIN=4.0
PROTOBUF_SUITE=bookworm
PROTOBUF_VERSION=3.21.12-3+deb12u1
PROTOBUF_MIN=3.12

bin="${DYNAMO_SNAPSHOT_CACHE:-$HOME/.cache/dynamo-snapshot}/readers/bin"
mkdir -p "$bin"

ctl="$(fetch_package CHECKPOINTCTL checkpointctl yes)"
loader=""
for l in "$ctl/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$ctl/lib64/ld-linux-x86-64.so.2"; do
  [[ -e "$l" ]] && { loader="$l"; break; }
done
if [[ -n "$loader" ]]; then
  libs="$ctl/usr/lib/x86_64-linux-gnu:$ctl/lib/x86_64-linux-gnu"
  printf '#!/bin/sh\nexec "%s" --library-path "%s" "%s" "$@"\n' "$loader" "$libs" \
    "$ctl/usr/bin/checkpointctl" >"$bin/checkpointctl.tmp.$$"
else
  printf '#!/bin/sh\nexec "%s" "$@"\n' "$ctl/usr/bin/checkpointctl" >"$bin/checkpointctl.tmp.$$"
fi
chmod 0755 "$bin/checkpointctl.tmp.$$" && mv -f "$bin/checkpointctl.tmp.$$" "$bin/checkpointctl"

pycriu="$(fetch_package PYCRIU python3-pycriu no)"
protobuf="$(fetch_package PROTOBUF python3-protobuf no)"
pypath="$pycriu/usr/lib/python3/dist-packages:$protobuf/usr/lib/python3/dist-packages"
# The pure-Python protobuf: the package's C++ extension wants bookworm's libprotobuf, not unpacked.
printf '#!/bin/sh\nPROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python PYTHONPATH="%s" exec /usr/bin/python3 "%s" "$@"\n' \
  "$pypath" "$pycriu/usr/bin/crit" >"$bin/crit.tmp.$$"
chmod 0755 "$bin/crit.tmp.$$" && mv -f "$bin/crit.tmp.$$" "$bin/crit"

echo "CHECKPOINTCTL=$bin/checkpointctl"
echo "CRIT=$bin/crit"
