"""The alerting rules pass `promtool check rules`, and the Grafana dashboard and the rules
reference only metrics the code exports, grouped by labels those metrics have."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
from typing import Any

import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from backstop.settings import SERVICES
from tests.support import ROOT
from tests.tools import go_tool

RULES = ROOT / "deploy" / "prometheus-alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "backstop.json"
# Series Prometheus makes itself, not the code.
PROMETHEUS_OWN = {"up": {"job", "instance"}}
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
            "gauge": ("",), "summary": ("_count", "_sum", "_created")}  # fmt: skip


def exported() -> dict[str, set[str]]:
    """Every series name the services export, with its labels (from the live registry
    once every service's app is imported, so nothing is listed by hand)."""
    for service in SERVICES:
        importlib.import_module(f"services.{service}.app")
    names: dict[str, set[str]] = dict(PROMETHEUS_OWN)
    for collector in list(REGISTRY._collector_to_names):  # every registered collector
        if not isinstance(collector, MetricWrapperBase):
            continue  # the client's own process and GC collectors
        for family in collector.describe():
            labels = set(collector._labelnames)
            for suffix in SUFFIXES.get(family.type, ("",)):
                names[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


def expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load(RULES.read_text())
    found = [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        found += [(panel["title"], t["expr"]) for t in panel["targets"]]
    return found


def referenced_metrics(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    names = set(re.findall(r"\b(backstop_[a-z0-9_]+)\b", without_strings))
    return names | {n for n in PROMETHEUS_OWN if re.search(rf"\b{n}\{{", expr)}


def test_dashboard_and_rules_use_only_exported_metrics_and_their_labels() -> None:
    metrics = exported()
    assert "backstop_consumer_lag" in metrics and "backstop_outbox_parked" in metrics
    for where, expr in expressions():
        used = referenced_metrics(expr)
        assert used, f"{where}: no metric in {expr}"
        unknown = used - metrics.keys()
        assert not unknown, f"{where}: {sorted(unknown)} not exported by the code"
        labels = set().union(*(metrics[m] for m in used))
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            missing = {x.strip() for x in group.split(",")} - labels
            assert not missing, f"{where}: grouped by {sorted(missing)}, not a label of {used}"


def test_the_dashboard_has_the_panels_operators_asked_for() -> None:
    titles = " | ".join(p["title"] for p in json.loads(DASHBOARD.read_text())["panels"])
    for words in ("HTTP requests", "p99", "Feed batches", "Feed records", "Late deliveries",
                  "Consumer lag", "Outbox backlog and parked", "DLQ", "risk level and town",
                  "Tasks open and overdue", "Reminders sent and failed", "Webhook failures"):  # fmt: skip
        assert words in titles, words


def test_the_alerts_cover_lag_parked_dlq_late_feeds_readiness_and_webhooks() -> None:
    rules: dict[str, Any] = {
        r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
    }
    assert rules["BackstopConsumerLagGrowing"]["for"] == "10m"
    assert "backstop_outbox_parked" in rules["BackstopOutboxRowParked"]["expr"]
    assert 'outcome="dead_lettered"' in rules["BackstopDeadLetter"]["expr"]
    assert "backstop_datasync_deliveries_late" in rules["BackstopFeedLate"]["expr"]
    assert "backstop_service_ready" in rules["BackstopServiceNotReady"]["expr"]
    assert "webhook" in rules["BackstopWebhookFailing"]["expr"]


def test_promtool_accepts_the_rules() -> None:
    promtool = go_tool("promtool")
    result = subprocess.run(
        [str(promtool), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout
    config = subprocess.run(  # the Prometheus config that loads them, as compose mounts it
        [str(promtool), "check", "config", "--syntax-only", str(ROOT / "deploy" / "prometheus.yml")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert config.returncode == 0, config.stdout + config.stderr
