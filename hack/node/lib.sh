# Shared settings of the node scripts; sourced, never run. Everything this project installs for the
# node lives under $NODE_CACHE (outside the repo, keyed by version); everything a running node
# creates lives under $NODE_RUN, so node-down can remove exactly that.
# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables are for the scripts that source this file

HACK_NODE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_NODE_DIR/../.." && pwd)"
CACHE="${DYNAMO_SNAPSHOT_CACHE:-$HOME/.cache/dynamo-snapshot}"
NODE_CACHE="$CACHE/node"
NODE_RUN="${DYNAMO_SNAPSHOT_NODE_RUN:-$NODE_CACHE/run}"
# The private bin directory: wrappers and links, first on the PATH of containerd (runc and the shim
# find `criu` and `runc` there).
NODE_BIN="$NODE_CACHE/bin"
# CNI plugins (bridge, host-local, loopback), linked into each node's own CNI bin directory.
NODE_CNI_BIN="$NODE_CACHE/cni-bin"
CRI_SOCKET="$NODE_RUN/containerd.sock"
CONTAINERD_PIDFILE="$NODE_RUN/containerd.pid"
# Image references of the images built by hack/images; `localhost/` so that nothing tries a registry.
PAUSE_IMAGE="localhost/dynamo-snapshot/pause:v1"
WORKLOAD_IMAGE="localhost/dynamo-snapshot/workload:v1"
# The cgroup parent (cgroupfs driver, cgroup v1) that tests put their pods under; node-down removes
# what is left of it.
NODE_CGROUP_PARENT="dynamo-snapshot-node"

# shellcheck source=versions.env
source "$HACK_NODE_DIR/versions.env"

log() { echo "node: $*" >&2; }
die() { echo "node: error: $*" >&2; exit 1; }

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }
