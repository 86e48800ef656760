"""k8s/monitoring: the Grafana dashboard and the Prometheus alerts query only the metrics the
services export (the names below are the contract), and the alerts are the ones the runbook
expects.

PrometheusRule and PodMonitor are the Prometheus Operator's CRDs, whose schemas
kubernetes-validate does not have: the folder is kept out of the overlays, its plain objects are
validated strictly, and the two CRD objects get the structural checks here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import K8S, documents, render, validate

METRICS = {
    "emeterai_grpc_server_requests_total",
    "emeterai_grpc_server_request_seconds_bucket",
    "emeterai_http_requests_total",
    "emeterai_http_request_seconds_bucket",
    "emeterai_stamps_total",
    "emeterai_holds_outstanding",
    "emeterai_oldest_hold_age_seconds",
    "emeterai_signer_in_flight",
    "emeterai_admission_queue_depth",
    "emeterai_admission_rejections_total",
    "emeterai_ledger_reconcile_discrepancies",
}
ALERTS = {
    "EmeteraiOldHolds",
    "EmeteraiLedgerReconcileDiscrepancy",
    "EmeteraiHttp5xxRate",
    "EmeteraiAdmissionQueueSaturated",
}
Rendered = tuple[list[dict[str, Any]], str]
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool"}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects: what is left once strings, label matchers,
    ranges, grouping labels, function names, keywords and numbers are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\b[a-zA-Z_]\w*\s*\(", "(", text)
    names = set(re.findall(r"\b[a-zA-Z_:][\w:]*\b", text)) - _KEYWORDS
    return {n for n in names if not re.fullmatch(r"\d+(\.\d+)?|e\d+", n)}


def test_metric_names_finds_only_series() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, method)"
        ' (rate(emeterai_x_bucket{code=~"5.."}[$__rate_interval])))'
        " / on (method) group_left max without (pod) (emeterai_y) > bool 1"
    )
    assert metric_names(expr) == {"emeterai_x_bucket", "emeterai_y"}


def test_the_contract_names_are_the_ones_the_services_define() -> None:
    # The services' metric modules name each metric once; a renamed one must change the contract
    # (and with it the alerts and the dashboard), not leave them querying nothing.
    source = "".join(p.read_text() for p in (K8S.parent / "services").glob("*/metrics.py"))
    for name in METRICS:
        assert f'"{re.sub(r"_(total|bucket)$", "", name)}"' in source, name


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    text = render(K8S / "monitoring")
    return documents(text), text


def test_plain_objects_are_valid_kubernetes(rendered: Rendered, tmp_path: Path) -> None:
    plain = [o for o in rendered[0] if not o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert plain
    validate(yaml.safe_dump_all(plain), tmp_path)


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def test_the_rules_hold_the_four_alerts_on_contract_metrics(
    rendered: Rendered,
) -> None:
    rule = one(rendered[0], "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    alerts = {}
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for r in group["rules"]:
            assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, r
            assert re.fullmatch(r"\d+[smh]", r["for"])
            assert r["labels"]["severity"] in {"warning", "critical"}
            assert r["annotations"]["summary"] and r["annotations"]["description"]
            alerts[r["alert"]] = r["expr"]
    assert set(alerts) == ALERTS
    for name, expr in alerts.items():
        assert metric_names(expr) and metric_names(expr) <= METRICS, (name, metric_names(expr))


def test_the_old_holds_alert_sits_above_the_hold_ttl(rendered: Rendered) -> None:
    prod = documents(render(K8S / "overlays" / "prod"))
    (config,) = [
        o for o in prod if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("emeterai-config")
    ]
    ttl = int(config["data"]["EMETERAI_HOLD_TTL_S"])
    rule = one(rendered[0], "PrometheusRule")
    (expr,) = [
        r["expr"] for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"] == "EmeteraiOldHolds"
    ]
    threshold = float(expr.rpartition(">")[2])
    assert ttl < threshold <= ttl + 120


def test_the_dashboard_queries_contract_metrics(rendered: Rendered) -> None:
    config = one(rendered[0], "ConfigMap")
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config["data"]["emeterai.json"])
    assert dashboard == json.loads((K8S / "monitoring" / "dashboard.json").read_text())
    used: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names and names <= METRICS, (panel["title"], names)
            used |= names
    wanted = METRICS - {"emeterai_ledger_reconcile_discrepancies"}
    assert wanted <= used


def test_prometheus_scrapes_the_port_named_metrics(rendered: Rendered) -> None:
    monitor = one(rendered[0], "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/part-of": "emeterai"}
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == ["emeterai"]
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]
