# dynamo-snapshot tasks. `./hack/just --list` explains each. Always run through ./hack/just: on a
# fresh machine it first makes the Python environment (.venv, with this very `just` from PyPI).

set shell := ["bash", "-euo", "pipefail", "-c"]

cache := env("DYNAMO_SNAPSHOT_CACHE", env("HOME") / ".cache/dynamo-snapshot")
kube_version := env("KUBE_VERSION", "v1.34.4")

# Our kubectl (built with the control plane) first on PATH; .venv/bin for the project's tools.
export PATH := justfile_directory() / ".venv/bin:" + cache / "kube" / kube_version / "bin:" + env("PATH")
export KUBE_VERSION := kube_version

import 'hack/recipes/node.just'
import 'hack/recipes/api.just'
import 'hack/recipes/bench.just'
import 'hack/recipes/e2e.just'

# List the recipes
default:
    @just --list

# Lint, then run every test (unit, integration on a real apiserver, node runtime). Extra args go to pytest
test *args: lint
    bash hack/run-tests.sh {{args}}

# Run only the unit tests (no cluster, no runtime)
unit *args:
    python -m pytest tests/unit {{args}}

# ruff (lint + format check), mypy --strict over the whole tree, shellcheck over the scripts
lint:
    ruff check .
    ruff format --check .
    mypy
    shellcheck -S warning hack/just hack/*.sh hack/*/*.sh .ci/run

# Format the code in place
fmt:
    ruff format .
    ruff check --fix .

# The main job: bring up the local cluster and node, deploy, checkpoint a demo workload, print the result
demo: up
    python hack/demo.py

# Start (or reuse) the local cluster: control plane, node runtime and a kubelet node; prints the admin kubeconfig path
up:
    @bash hack/build-kube.sh >/dev/null
    @python hack/controlplane.py up >/dev/null
    @just node-up >/dev/null
    @python hack/kubenode.py up >/dev/null
    @python hack/controlplane.py kubeconfig

# Stop every process `up` started, by PID, and undo what the node changed on the host
down:
    python hack/kubenode.py down
    @just node-down
    python hack/controlplane.py down

# Show which local components run, and the node
status:
    python hack/controlplane.py status
    bash hack/node/node-env.sh RUNNING | sed 's/^/containerd (node runtime)  running: /'
    python hack/kubenode.py status

# Print only the admin kubeconfig path of the local cluster (scripts rely on it)
kubeconfig:
    @python hack/controlplane.py kubeconfig

# Run the end-to-end suite against the cluster in KUBECONFIG (default: the local one from `up`)
e2e *args:
    #!/usr/bin/env bash
    set -euo pipefail
    if [[ -z "${KUBECONFIG:-}" ]]; then just up >/dev/null; export KUBECONFIG="$(just kubeconfig)"; fi
    DYNAMO_SNAPSHOT_EXISTING_CLUSTER=1 python -m pytest e2e {{args}}

# Regenerate the CRI gRPC stubs from dynamo_snapshot/agent/cri/*.proto
proto:
    bash hack/gen-proto.sh
