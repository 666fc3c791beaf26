#!/usr/bin/env bash
# Start the private test node: containerd 2.x (CRI enabled) with runc and CRIU from
# hack/node/install.sh, its own root, state and socket under $NODE_RUN, and the test bed's images
# imported. Idempotent: a node already running is left as it is. Prints the CRI socket path on
# stdout (and nothing else).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ "$(id -u)" == 0 ]] || die "must run as root (containerd, runc and CRIU need it)"

# Probes of what the machine must offer; each failure names what is missing.
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
  die "the kernel has no overlay filesystem (needed by the overlayfs snapshotter)"
[[ -d /sys/fs/cgroup ]] || die "no cgroup filesystem at /sys/fs/cgroup"
# Unix socket paths are limited to 107 bytes, and containerd adds ".ttrpc" for its second socket.
((${#CRI_SOCKET} <= 100)) ||
  die "socket path $CRI_SOCKET is too long; set DYNAMO_SNAPSHOT_NODE_RUN to a shorter directory"

mkdir -p "$NODE_CACHE"
exec 9>"$NODE_CACHE/node.lock"
flock 9 # one node-up / node-down at a time

"$HACK_NODE_DIR/install.sh" >/dev/null

containerd_running() {
  local pid
  pid="$(cat "$CONTAINERD_PIDFILE" 2>/dev/null || true)"
  pid_alive "$pid" && [[ "$(readlink -f "/proc/$pid/exe")" == "$(readlink -f "$NODE_BIN/containerd")" ]]
}

if containerd_running && [[ -S "$CRI_SOCKET" ]]; then
  log "containerd already running (pid $(cat "$CONTAINERD_PIDFILE"))"
else
  if [[ -e "$NODE_RUN" ]]; then
    # Left by a node that died (or a machine that rebooted): containers, shims and mounts of it
    # may remain. Start from a clean slate rather than let containerd recover half a state.
    log "cleaning up the stale run directory $NODE_RUN"
    NODE_LOCK_HELD=1 "$HACK_NODE_DIR/node-down.sh"
  fi
  mkdir -p "$NODE_RUN"/{etc,log,cni/net.d,cdi,etc/certs.d}
  chmod 0711 "$NODE_RUN"
  sed -e "s|@RUN@|$NODE_RUN|g" -e "s|@NODE_BIN@|$NODE_BIN|g" -e "s|@NODE_CNI_BIN@|$NODE_CNI_BIN|g" \
    -e "s|@PAUSE_IMAGE@|$PAUSE_IMAGE|g" \
    "$HACK_NODE_DIR/containerd.toml.in" >"$NODE_RUN/etc/containerd.toml"
  log "starting containerd (log: $NODE_RUN/log/containerd.log)"
  # A clean environment with the private bin directory first: the shim and runc inherit it and
  # find `runc` and the `criu` wrapper there. setsid: the daemon outlives this script and its
  # terminal; its output goes to the log so no caller waits on an inherited pipe.
  env -i PATH="$NODE_BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    HOME="${HOME:-/root}" TMPDIR="${TMPDIR:-/tmp}" \
    setsid "$NODE_BIN/containerd" --config "$NODE_RUN/etc/containerd.toml" \
    </dev/null >>"$NODE_RUN/log/containerd.log" 2>&1 9>&- &
  child=$!
  echo "$child" >"$CONTAINERD_PIDFILE"
  # Ready when it answers on its socket; give up early if it died. "Died" is our child being
  # gone, not containerd_running: until env and setsid have exec'd, the child's binary is still
  # bash, env or setsid, and on a loaded machine the first check can come before that.
  deadline=$((SECONDS + 60))
  until "$NODE_BIN/ctr" --address "$CRI_SOCKET" version >/dev/null 2>&1; do
    if ! pid_alive "$child"; then
      tail -n 30 "$NODE_RUN/log/containerd.log" >&2 || true
      die "containerd exited during start"
    fi
    ((SECONDS < deadline)) || die "containerd did not answer on $CRI_SOCKET within 60 s"
    sleep 0.1
  done
  log "containerd ready (pid $(cat "$CONTAINERD_PIDFILE"))"
fi

"$REPO_ROOT/hack/images/build-images.sh" --import >/dev/null
echo "$CRI_SOCKET"
