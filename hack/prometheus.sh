#!/usr/bin/env bash
# Print the path of `promtool` (default) or `prometheus` from Debian trixie's packages (2.53),
# unpacked into the cache (hack/lib/debs.sh), never installed system-wide. Both run on this
# machine's libc. They check the alert rules and the dashboard's queries (e2e/test_monitoring.py):
# promtool checks and unit-tests the rules; a prometheus on 127.0.0.1 scrapes the running
# components and answers the dashboard's queries.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# A private apt state (the same as the image's): it never races the node installer's.
# shellcheck disable=SC2034  # read by debs.sh
DEBS_ROOT="${DYNAMO_SNAPSHOT_CACHE:-$HOME/.cache/dynamo-snapshot}/image/debs-root"
# shellcheck source=lib/debs.sh
source "$repo/hack/lib/debs.sh"
# shellcheck disable=SC2034  # read by fetch_package
{
  PROMTOOL_SUITE=trixie PROMTOOL_VERSION=2.53.3+ds1-2 PROMTOOL_MIN=2.45
  PROMETHEUS_SUITE=trixie PROMETHEUS_VERSION=2.53.3+ds1-2 PROMETHEUS_MIN=2.45
}
case "${1:-promtool}" in
  promtool) echo "$(fetch_package PROMTOOL promtool no)/usr/bin/promtool" ;;
  # The server's package depends on its web UI's JavaScript libraries only: the binary alone.
  prometheus) echo "$(fetch_package PROMETHEUS prometheus no)/usr/bin/prometheus" ;;
  *) echo "usage: $0 [promtool|prometheus]" >&2; exit 2 ;;
esac
