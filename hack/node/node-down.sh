#!/usr/bin/env bash
# Stop the private test node started by node-up.sh and remove everything it created: containers
# and their shims, containerd (by its PID file, never by name), mounts under $NODE_RUN, leftover
# cgroups of the test pods, and $NODE_RUN itself. The install cache is kept. Safe to run when
# nothing is running, or after a half-failed node-up.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ "$(id -u)" == 0 ]] || die "must run as root"
[[ -d "$NODE_RUN" ]] || { log "no node run directory at $NODE_RUN: nothing to do"; exit 0; }
if [[ -z "${NODE_LOCK_HELD:-}" ]]; then # node-up calls us with the lock already held
  mkdir -p "$NODE_CACHE"
  exec 9>"$NODE_CACHE/node.lock"
  flock 9
fi

TASKS="$NODE_RUN/state/io.containerd.runtime.v2.task"

# Wait until none of the PIDs is alive, up to $1 tenths of a second.
wait_gone() {
  local tenths="$1" p alive
  shift
  while :; do
    alive=no
    for p in "$@"; do pid_alive "$p" && alive=yes; done
    [[ "$alive" == no ]] && return 0
    ((tenths-- > 0)) || return 1
    sleep 0.1
  done
}

# A PID read from a file under our run dir, only if that process still runs the expected binary
# (a recycled PID must never be killed).
pid_of() {
  local file="$1" exe="$2" pid
  pid="$(cat "$file" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] && pid_alive "$pid" || return 1
  if [[ -n "$exe" && "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" != "$(readlink -f "$exe")" ]]; then
    return 1
  fi
  echo "$pid"
}

# Our shims: containerd 2.x writes no shim.pid, so find the processes running our shim binary
# with `-address <our socket>` on their command line (shims of any other containerd differ).
our_shims() {
  local exe cmdline proc
  exe="$(readlink -f "$NODE_BIN/containerd-shim-runc-v2" 2>/dev/null)" || return 0
  for proc in /proc/[0-9]*; do
    [[ "$(readlink -f "$proc/exe" 2>/dev/null)" == "$exe" ]] || continue
    cmdline="$(tr '\0' ' ' <"$proc/cmdline" 2>/dev/null)" || continue
    [[ " $cmdline " == *" -address $CRI_SOCKET "* ]] && echo "${proc#/proc/}"
  done
}

# 1. Containers: SIGKILL every container's init (its PID namespace dies with it), then the shims.
shopt -s nullglob
inits=() shim_sockets=()
mapfile -t shims < <(our_shims)
for bundle in "$TASKS"/*/*/; do
  # A container's init is recognised by its cgroup, which names the container ID.
  if p="$(pid_of "$bundle/init.pid" "")" && grep -qF "$(basename "$bundle")" "/proc/$p/cgroup"; then
    inits+=("$p")
  fi
  # The shim's socket lives under /run/containerd/s (a path fixed in containerd); remember it.
  if [[ -f "$bundle/bootstrap.json" ]]; then
    s="$(sed -n 's|.*"address":"unix://\([^"]*\)".*|\1|p' "$bundle/bootstrap.json")"
    [[ -n "$s" ]] && shim_sockets+=("$s")
  elif [[ -f "$bundle/address" ]]; then
    shim_sockets+=("$(sed 's|^unix://||' "$bundle/address")")
  fi
done
if ((${#inits[@]})); then
  log "killing ${#inits[@]} container process(es)"
  kill -KILL "${inits[@]}" 2>/dev/null || true
  wait_gone 50 "${inits[@]}" || log "warning: container processes still alive: ${inits[*]}"
fi

# 2. containerd: SIGTERM, then SIGKILL after 10 s.
if pid="$(pid_of "$CONTAINERD_PIDFILE" "$NODE_BIN/containerd")"; then
  log "stopping containerd (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  wait_gone 100 "$pid" || { kill -KILL "$pid" 2>/dev/null || true; wait_gone 50 "$pid" || true; }
fi
rm -f "$CONTAINERD_PIDFILE"

# 3. Shims outlive containerd by design; stop ours.
if ((${#shims[@]})); then
  log "stopping ${#shims[@]} shim(s)"
  kill -TERM "${shims[@]}" 2>/dev/null || true
  wait_gone 30 "${shims[@]}" || kill -KILL "${shims[@]}" 2>/dev/null || true
  wait_gone 30 "${shims[@]}" || true
fi
for s in "${shim_sockets[@]}"; do
  [[ "$s" == /run/containerd/s/* ]] && rm -f "$s"
done
rmdir /run/containerd/s /run/containerd 2>/dev/null || true

# 4. Mounts under the run dir (rootfs overlays, sandbox shm, ...), deepest first.
mapfile -t mounts < <(awk -v root="$NODE_RUN" '
  { p = $5; gsub(/\\040/, " ", p) } index(p, root "/") == 1 { print p }' /proc/self/mountinfo |
  awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2-)
for m in "${mounts[@]}"; do
  umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: cannot unmount $m"
done

# 5. Empty cgroups left under the test pods' parent (runc removes a container's own on delete).
# Every node runtime on the machine shares this parent name, so one still in use is not ours alone.
kept=()
for top in /sys/fs/cgroup/*/"$NODE_CGROUP_PARENT" /sys/fs/cgroup/"$NODE_CGROUP_PARENT"; do
  [[ -d "$top" ]] || continue
  find "$top" -depth -type d -exec rmdir {} + 2>/dev/null || true
  [[ -d "$top" ]] && kept+=("$top")
done
((${#kept[@]} == 0)) ||
  log "cgroup parent $NODE_CGROUP_PARENT kept in ${#kept[@]} hierarchies: pods of another node runtime on this machine use it"

# 6. The run dir itself.
rm -rf "$NODE_RUN"
log "node stopped and cleaned"
