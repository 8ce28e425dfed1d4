"""docs/prometheus/alerts.yml and docs/grafana/launchbay.json: well-formed, and naming only metrics
that docs/metrics.md lists (and that the code therefore serves; see test_metrics_scrape.py).

promtool (Debian's ``prometheus`` package, which scripts/test installs) also checks the rules and runs
them against tests/metrics/alerts_test.yml: each alert fires when it should and not before. Without it
the test skips locally and fails in CI.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from conftest import REPO_ROOT, require
from metrics_helpers import documented_metrics

DOCS = REPO_ROOT / "docs"
ALERTS = DOCS / "prometheus" / "alerts.yml"
DASHBOARD = DOCS / "grafana" / "launchbay.json"
RULE_TESTS = Path(__file__).resolve().parent / "alerts_test.yml"
METRIC_RE = re.compile(r"\b(launchbay_[a-z_]+?)(?:_bucket|_count|_sum)?\b")
#: Prometheus' own series, which the expressions may use besides ours.
PROMETHEUS_SERIES = {"up"}


def metrics_in(expr: str) -> set:
    return set(METRIC_RE.findall(expr))


def test_the_alert_rules_are_the_two_documented_ones_and_name_only_documented_metrics():
    rules = yaml.safe_load(ALERTS.read_text())
    [group] = rules["groups"]
    alerts = {rule["alert"]: rule for rule in group["rules"]}
    assert set(alerts) == {"LaunchbayAgentLost", "LaunchbayQueueStarving"}
    for name, rule in alerts.items():
        assert isinstance(rule["expr"], str) and rule["expr"].strip(), name
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert metrics_in(rule["expr"]) <= documented_metrics(), name
        assert name in (DOCS / "metrics.md").read_text()
    assert 'up{job="launchbay-agent"}' in alerts["LaunchbayAgentLost"]["expr"]


def test_the_dashboard_queries_only_documented_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    exprs = [target["expr"] for panel in panels for target in panel["targets"]]
    assert len(panels) >= 12 and all(panel["targets"] for panel in panels)
    used = set().union(*(metrics_in(e) for e in exprs))
    assert used <= documented_metrics(), used - documented_metrics()
    assert {"launchbay_queue_depth", "launchbay_agent_gpu_utilization_ratio", "launchbay_agents"} <= used
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_promtool_accepts_the_rules_and_each_alert_fires_when_it_should():
    require(shutil.which("promtool") is not None, "promtool is not on PATH (Debian: prometheus)")
    checked = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        ["promtool", "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
