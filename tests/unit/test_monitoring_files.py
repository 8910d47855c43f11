"""The monitoring files: docker-compose's `prometheus` and `grafana` services, the Grafana
dashboard and its provisioning. (Every panel's query is run against a live Prometheus in
tests/integration/test_prometheus_scenarios.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "stormproof.json"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"


def panel_queries(dashboard: dict[str, Any]) -> dict[str, list[str]]:
    """Panel title -> its PromQL expressions."""
    return {
        panel["title"]: [target["expr"] for target in panel.get("targets", [])]
        for panel in dashboard["panels"]
    }


def compose_config() -> dict[str, Any]:
    compose = shutil.which("docker-compose")
    if compose is None:
        if os.environ.get("STORMPROOF_REQUIRE_SERVICES") == "1":
            pytest.fail("docker-compose missing (scripts/bootstrap --test installs it)")
        pytest.skip("docker-compose missing (scripts/bootstrap --test installs it)")
    result = subprocess.run(
        [compose, "-f", "docker-compose.yml", "--profile", "monitoring", "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def test_compose_has_prometheus_and_grafana_with_our_files() -> None:
    """Both services validate, and every file they mount exists in the repository."""
    services = compose_config()["services"]
    assert {"prometheus", "grafana"} <= set(services)
    mounted = [
        Path(volume.split(":")[0]) if isinstance(volume, str) else Path(volume["source"])
        for name in ("prometheus", "grafana")
        for volume in services[name]["volumes"]
    ]
    assert mounted
    for path in mounted:
        assert (ROOT / path).exists(), path
    rule_mounts = [str(p) for p in mounted if p.name == "rules.yml"]
    assert rule_mounts and rule_mounts[0].endswith("deploy/prometheus/rules.yml")
    assert any(str(p).endswith("deploy/grafana/stormproof.json") for p in mounted)


def test_dashboard_panels_use_the_provisioned_data_source() -> None:
    """Every panel and target names the data source uid the provisioning creates."""
    dashboard = json.loads(DASHBOARD.read_text())
    source = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    uid = source["datasources"][0]["uid"]
    assert dashboard["uid"] and dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_dashboard_covers_what_operators_look_at() -> None:
    """Health, breakers, cache hit rates L1/L2 and fallback, audit paths, journal backlog
    and alert state each have a panel querying the metric behind them."""
    queries = "\n".join(
        q for qs in panel_queries(json.loads(DASHBOARD.read_text())).values() for q in qs
    )
    for metric in (
        "stormproof_health_status",
        "stormproof_breaker_state",
        'stormproof_cache_hits_total{tier="l1"}',
        'stormproof_cache_hits_total{tier="l2"}',
        "stormproof_cache_loader_fallbacks_total",
        "stormproof_audit_events_total",
        "stormproof_journal_backlog",
        "ALERTS",
    ):
        assert metric in queries, metric
