#!/usr/bin/env bash
# The e2e suite on a kind cluster (a workstation with docker or podman and kind; it cannot run on
# this project's machines, which have no container engine). Creates or reuses the cluster, checks
# containerd >= 2 on each node, installs CRIU there, builds the image with the Containerfile,
# loads it, and runs the same suite with the kind overlay. Extra arguments go to pytest.
#   KIND_CLUSTER (dynamo-snapshot), KIND_NODE_IMAGE (kindest/node:v1.34.0),
#   CONTAINER_ENGINE (docker; podman also sets KIND_EXPERIMENTAL_PROVIDER=podman)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
cluster="${KIND_CLUSTER:-dynamo-snapshot}"
node_image="${KIND_NODE_IMAGE:-kindest/node:v1.34.0}"
engine="${CONTAINER_ENGINE:-docker}"
[[ "$engine" == podman ]] && export KIND_EXPERIMENTAL_PROVIDER=podman
image="localhost/dynamo-snapshot/dynamo-snapshot:dev"
for tool in kind "$engine" kubectl; do
  command -v "$tool" >/dev/null || { echo "e2e-kind: $tool is required" >&2; exit 1; }
done

if ! kind get clusters 2>/dev/null | grep -qxF "$cluster"; then
  kind create cluster --name "$cluster" --image "$node_image" \
    --config hack/kind/kind-config.yaml --wait 180s
fi
for node in $(kind get nodes --name "$cluster"); do
  version="$("$engine" exec "$node" containerd --version | awk '{print $3}')"
  [[ "${version#v}" == [2-9]* ]] ||
    { echo "e2e-kind: $node runs containerd $version; CheckpointContainer needs >= 2.0" >&2; exit 1; }
  # CRIU: runc calls it for the CRI checkpoint. Needs CRIU >= 4 on recent kernels.
  "$engine" exec "$node" sh -c 'command -v criu >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends criu >/dev/null; }'
  "$engine" exec "$node" criu check || echo "e2e-kind: warning: criu check failed on $node" >&2
done

"$engine" build -t "$image" -f Containerfile .
kind load docker-image "$image" --name "$cluster"

kubeconfig="$(mktemp)"
trap 'rm -f "$kubeconfig"' EXIT
kind get kubeconfig --name "$cluster" >"$kubeconfig"
# The suite reads the node's files (artifacts, the restore check) through the engine.
KUBECONFIG="$kubeconfig" E2E_OVERLAY=kind E2E_NODE_EXEC="$engine exec -i {node}" \
  DYNAMO_SNAPSHOT_EXISTING_CLUSTER=1 python -m pytest e2e "$@"
