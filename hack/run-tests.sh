#!/usr/bin/env bash
# Run the whole test suite. Building the Kubernetes binaries and the node runtime happens here, up
# front and with progress on the terminal, instead of silently inside the first fixture that needs
# them.
#
# A suite that ran nothing is not green: pytest's "no tests collected" (exit 5) fails, and so does
# a tier (unit, integration, node, e2e) whose tests were all skipped (hack/check_tiers.py). With no
# arguments every tier must run: unit, integration and node in one pytest run (the kubelet node and
# the direct-CRI node runtime side by side), then the e2e suite, when it has tests, against a
# throw-away local cluster with its kubelet node. Arguments go to the first pytest run only, and
# then only the tiers it ran are checked.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
echo "run-tests: ensuring Kubernetes binaries and etcd (a cold build takes ~6 min on 2 cores)" >&2
bash hack/build-kube.sh >/dev/null
bash hack/ensure-etcd.sh >/dev/null
echo "run-tests: ensuring the node runtime (containerd, runc, CRIU, CNI plugins)" >&2
bash hack/node/install.sh >/dev/null

reports="$(mktemp -d)"
trap 'rm -rf "$reports"' EXIT

# run_tier NAME REQUIRED_TIERS PYTEST_ARGS...
run_tier() {
  local name="$1" required="$2" rc
  shift 2
  set +e
  python -m pytest --junitxml="$reports/$name.xml" "$@"
  rc=$?
  set -e
  if [[ $rc -eq 5 ]]; then
    echo "run-tests: pytest collected no tests; failing" >&2
    return 1
  fi
  if [[ -f "$reports/$name.xml" ]] &&
    ! python hack/check_tiers.py "$reports/$name.xml" --require "$required"; then
    echo "run-tests: a tier ran nothing; failing" >&2
    return 1
  fi
  return $rc
}

if (($#)); then
  run_tier selected "" "$@"
  exit $?
fi

status=0
run_tier suite unit,integration,node || status=1

shopt -s nullglob
e2e_tests=(e2e/test_*.py e2e/*/test_*.py)
if ((${#e2e_tests[@]})); then
  cluster="$root/.run/test-e2e"
  echo "run-tests: e2e against a throw-away cluster with its node in $cluster" >&2
  down() {
    python hack/kubenode.py down --dir "$cluster" >&2 || true
    python hack/controlplane.py down --dir "$cluster" >&2 || true
  }
  down # whatever a killed earlier run left, then a fresh etcd: a throw-away cluster every time
  if awk -v d="$cluster/" 'index($5, d) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
    echo "run-tests: mounts remain under $cluster; not removing it" >&2
    exit 1
  fi
  rm -rf "$cluster"
  if python hack/controlplane.py up --dir "$cluster" >/dev/null &&
    python hack/kubenode.py up --dir "$cluster" >/dev/null; then
    KUBECONFIG="$cluster/admin.kubeconfig" DYNAMO_SNAPSHOT_EXISTING_CLUSTER=1 DYNAMO_SNAPSHOT_CLUSTER_DIR="$cluster" \
      run_tier e2e e2e e2e || status=1
  else
    echo "run-tests: the e2e cluster did not come up" >&2
    status=1
  fi
  down
fi
exit $status
