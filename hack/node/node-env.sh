#!/usr/bin/env bash
# Print the node's settings as KEY=VALUE lines (for tests and scripts), or only the value of the
# one KEY given as argument. RUNNING says whether this run directory's containerd is up.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

running=no
pid="$(cat "$CONTAINERD_PIDFILE" 2>/dev/null || true)"
if pid_alive "$pid" && [[ "$(readlink -f "/proc/$pid/exe")" == "$(readlink -f "$NODE_BIN/containerd" 2>/dev/null)" ]]; then
  running=yes
fi
values=(
  "CRI_SOCKET=$CRI_SOCKET"
  "NODE_BIN=$NODE_BIN"
  "NODE_CNI_BIN=$NODE_CNI_BIN"
  "NODE_RUN=$NODE_RUN"
  "NODE_CACHE=$NODE_CACHE"
  "CONTAINERD_PIDFILE=$CONTAINERD_PIDFILE"
  "PAUSE_IMAGE=$PAUSE_IMAGE"
  "WORKLOAD_IMAGE=$WORKLOAD_IMAGE"
  "NODE_CGROUP_PARENT=$NODE_CGROUP_PARENT"
  "RUNNING=$running"
)
if (($#)); then
  for kv in "${values[@]}"; do
    [[ "${kv%%=*}" == "$1" ]] && { echo "${kv#*=}"; exit 0; }
  done
  die "unknown key $1"
fi
printf '%s\n' "${values[@]}"
