"""Our Prometheus (scenarios.stack.prometheus) against a real reference service: it scrapes
the targets it is given, loads the rules, answers queries, rejects bad PromQL with its own
message, and leaves no process behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from scenarios.pytest_plugin import unavailable
from scenarios.stack.errors import StackError
from scenarios.stack.prometheus import PrometheusError, PrometheusServer, find_prometheus
from tests.integration.service_support import ServiceFactory, wait_until

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration.service_support"]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[PrometheusServer]:
    try:
        find_prometheus()
    except StackError as exc:
        unavailable(str(exc))
    server = PrometheusServer(tmp_path / "prometheus").start()
    try:
        yield server
    finally:
        server.close()


def test_prometheus_scrapes_the_service_and_loads_the_rules(
    prometheus: PrometheusServer, service_factory: ServiceFactory
) -> None:
    """The service's gauges arrive with the instance label; every rule is loaded."""
    service = service_factory()
    prometheus.set_targets([service.url], {"scenario": "smoke"})
    prometheus.wait_scraped([service.url], timeout_s=15)
    instance = service.url.split("://")[1]

    def health() -> list[float]:
        found = prometheus.query(f'stormproof_health_status{{instance="{instance}"}}')
        return [s.samples[0][1] for s in found]

    assert wait_until(health, 10, 0.2, "stormproof_health_status scraped") == [0.0]
    [series] = prometheus.query('stormproof_breaker_state{breaker="redis"}')
    assert series.labels["scenario"] == "smoke" and series.labels["job"] == "stormproof"
    rules = prometheus._get("/api/v1/rules", {})
    names = {r["name"] for g in rules["groups"] for r in g["rules"]}
    assert {"REDIS_MULTIPLE_FAILURES", "SYSTEM_UNHEALTHY", "AUDIT_QUEUE_UNSAFE"} <= names


def test_bad_promql_is_refused_with_prometheus_own_message(prometheus: PrometheusServer) -> None:
    with pytest.raises(PrometheusError, match=r"bad_data: .*parse error"):
        prometheus.query("sum by (instance (up)")


def test_close_stops_the_process(tmp_path: Path) -> None:
    """After close() the process group is gone and the port no longer answers."""
    try:
        find_prometheus()
    except StackError as exc:
        unavailable(str(exc))
    server = PrometheusServer(tmp_path / "p").start()
    pid = server._process.pid if server._process else None
    assert pid is not None and server.running
    server.close()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    server.close()  # idempotent
