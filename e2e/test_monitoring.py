"""The alert rules and the dashboard's queries work on what the components really export.

- promtool (Debian's package, hack/prometheus.sh) checks the PrometheusRule's rules and runs their
  unit tests (manifests/alerts/tests.yaml), and parses every dashboard query.
- A real Prometheus (the same package's server, on 127.0.0.1) scrapes the running controllers and
  agent after a capture; every dashboard query must answer without error, with series for every
  panel whose metric exists once a capture succeeded, and the alert rules must evaluate cleanly,
  with no leader alert pending while both controllers lead.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.conftest import REPO, Captured, Env
from e2e.deploy import SYSTEM_NAMESPACE
from e2e.support import wait_for

RULES = REPO / "manifests" / "alerts" / "prometheusrule.yaml"
RULE_TESTS = REPO / "manifests" / "alerts" / "tests.yaml"
DASHBOARD = REPO / "manifests" / "dashboards" / "dynamo-snapshot.json"
# Series that exist only after something went wrong (a failure, an error, a retry).
ONLY_AFTER_TROUBLE = (
    "dynamo_snapshot_capture_failures_total",
    "controller_runtime_reconcile_errors_total",
    "workqueue_retries_total",
)


def _tool(name: str) -> Path:
    out = subprocess.run(
        ["bash", str(REPO / "hack" / "prometheus.sh"), name],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def _write_rules(directory: Path) -> Path:
    spec = yaml.safe_load(RULES.read_text())["spec"]
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": spec["groups"]}))
    return path


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) with Grafana's variables as a 1-minute-scrape Prometheus sees them."""
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "1m")
            out.append((panel["title"], expr.replace("$namespace", SYSTEM_NAMESPACE)))
    return out


def test_alert_rules_pass_promtool_check(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(_tool("promtool")), "check", "rules", str(_write_rules(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 6 rules found" in proc.stdout, proc.stdout


def test_alert_rules_unit_tests_pass(tmp_path: Path) -> None:
    _write_rules(tmp_path)
    (tmp_path / "tests.yaml").write_text(RULE_TESTS.read_text())
    proc = subprocess.run(
        [str(_tool("promtool")), "test", "rules", "tests.yaml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 15, queries
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:panel{i}", "expr": expr}
                    for i, (_title, expr) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    proc = subprocess.run(
        [str(_tool("promtool")), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _api(base: str, path: str, **params: str) -> Any:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}" if params else f"{base}{path}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def prometheus(env: Env, captured: Captured, tmp_path: Path) -> Iterator[str]:
    """A Prometheus on 127.0.0.1 scraping the three components every second; yields its URL."""
    if env.deployed.node is None:
        pytest.skip("the real-scrape check reaches the components on the local cluster's node")
    targets = []
    for component, url in env.deployed.metrics.items():
        parsed = urllib.parse.urlsplit(url)
        targets.append(
            {
                "targets": [parsed.netloc],
                "labels": {"namespace": SYSTEM_NAMESPACE, "pod": component},
            }
        )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(_write_rules(tmp_path))],
        "scrape_configs": [{"job_name": "dynamo-snapshot", "static_configs": targets}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            str(_tool("prometheus")),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool | None:
            if proc.poll() is not None:
                raise AssertionError((tmp_path / "prometheus.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as r:
                    return r.status == 200 or None
            except OSError:
                return None

        wait_for("prometheus to be ready", ready, timeout=60)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_dashboard_queries_answer_on_a_real_scrape(prometheus: str) -> None:
    def all_up() -> list[Any] | None:
        active = _api(prometheus, "/api/v1/targets")["data"]["activeTargets"]
        return active if active and all(t["health"] == "up" for t in active) else None

    targets = wait_for("every component to be scraped", all_up, timeout=60)
    assert len(targets) == 3, targets
    _wait_scrapes(prometheus, 3)  # a rate over 1m needs two samples of each series
    empty = []
    for title, expr in dashboard_queries():
        answer = _api(prometheus, "/api/v1/query", query=expr)
        assert answer["status"] == "success", (title, expr, answer)
        if not answer["data"]["result"] and not any(m in expr for m in ONLY_AFTER_TROUBLE):
            empty.append(f"{title}: {expr}")
    assert not empty, "queries without data:\n" + "\n".join(empty)


def test_alert_rules_evaluate_on_a_real_scrape(prometheus: str) -> None:
    _wait_scrapes(prometheus, 3)
    since = time.time()

    def evaluated_since() -> list[Any] | None:
        groups = _api(prometheus, "/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        fresh = [r for r in rules if _epoch(r.get("lastEvaluation", "")) > since]
        return rules if rules and len(fresh) == len(rules) else None

    rules = wait_for("every rule to be evaluated on the scraped data", evaluated_since, 60)
    for r in rules:
        assert r["health"] == "ok", r
    no_leader = next(r for r in rules if r["name"] == "DynamoSnapshotNoLeader")
    assert no_leader["state"] == "inactive", no_leader


def _wait_scrapes(prometheus: str, n: int) -> None:
    def scraped() -> bool | None:
        answer = _api(prometheus, "/api/v1/query", query="min(count_over_time(up[1m]))")
        result = answer["data"]["result"]
        return (bool(result) and float(result[0]["value"][1]) >= n) or None

    wait_for(f"{n} scrapes of every component", scraped, timeout=60)


def _epoch(rfc3339: str) -> float:
    """Seconds since the epoch of Prometheus' RFC 3339 times (nanoseconds; 0 for "never")."""
    m = re.fullmatch(r"(\d{4}-.*?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", rfc3339)
    if not m or m.group(1).startswith("0001"):
        return 0.0
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    frac = float("0." + m.group(2)) if m.group(2) else 0.0
    return datetime.fromisoformat(m.group(1) + zone).timestamp() + frac
