#!/usr/bin/env bash
# Run the whole test suite. Building the Kubernetes binaries and the node runtime happens here, up
# front and with progress on the terminal, instead of silently inside the first fixture that needs
# them. pytest's "no tests collected" (exit 5) is a failure: a suite that ran nothing is not green.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
echo "run-tests: ensuring Kubernetes binaries and etcd (a cold build takes ~6 min on 2 cores)" >&2
bash hack/build-kube.sh >/dev/null
bash hack/ensure-etcd.sh >/dev/null
if [[ -x hack/node/install.sh ]]; then
  echo "run-tests: ensuring the node runtime (containerd, runc, CRIU)" >&2
  bash hack/node/install.sh >/dev/null
fi
set +e
python -m pytest "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
  echo "run-tests: pytest collected no tests; failing" >&2
  exit 1
fi
exit $rc
