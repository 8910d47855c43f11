"""Alerts end to end: a Redis outage fires REDIS_MULTIPLE_FAILURES once (deduplicated, not
once per evaluation) to a real webhook, and healing sends its resolution; a webhook that
never answers does not slow requests down."""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.integration.service_support import Service, ServiceFactory, wait_until

pytestmark = pytest.mark.integration

RULE = "REDIS_MULTIPLE_FAILURES"
OUTAGE_S = 3.0
RESOLUTION_BOUND_S = 20.0
LATENCY_SAMPLES = 200


class Receiver:
    """A webhook on 127.0.0.1:<free port> that records every POSTed JSON body."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length))
                with receiver._lock:
                    receiver.events.append(body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def named(self, name: str, state: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                e
                for e in self.events
                if e["name"] == name and (state is None or e["state"] == state)
            ]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class BlackHole:
    """Accepts connections and never answers (nor closes them)."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/hooks/alerts"
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        for conn in self.accepted:
            conn.close()
        self._sock.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    server = BlackHole()
    try:
        yield server
    finally:
        server.close()


def test_redis_outage_fires_once_and_resolves(
    service_factory: ServiceFactory, receiver: Receiver
) -> None:
    """With a long cooldown, an outage with cache traffic sends one "firing" for
    REDIS_MULTIPLE_FAILURES however many evaluations see it, and healing sends exactly one
    "resolved"; the log sink records the same."""
    service = service_factory(
        ALERT_WEBHOOK_URL=receiver.url, ALERT_COOLDOWN="600000", ALERT_EVAL_INTERVAL="500"
    )
    # a first probe may miss its 150 ms timeout on a loaded machine: wait for HEALTHY (bounded)
    service.wait_status("HEALTHY")
    assert not receiver.named(RULE), "no alert on a healthy start"

    with service.stack.redis_proxy.down():
        deadline = time.monotonic() + OUTAGE_S
        while time.monotonic() < deadline:
            service.client.get(f"/cache/miss-{time.monotonic_ns()}")
            service.client.put("/cache/k", json={"value": 1})
            time.sleep(0.02)
        wait_until(lambda: receiver.named(RULE, "firing"), 5.0, what="firing alert")
        failures = service.client.get("/resilience").json()["redis"]["failures"]
        assert failures >= 5, failures

    resolved = wait_until(
        lambda: receiver.named(RULE, "resolved"), RESOLUTION_BOUND_S, what="resolution"
    )
    time.sleep(1.0)  # a few more evaluations: nothing else may arrive for this rule
    firing = receiver.named(RULE, "firing")
    assert len(firing) == 1, f"deduplication failed: {firing}"
    assert len(receiver.named(RULE, "resolved")) == 1, receiver.named(RULE)
    event = firing[0]
    assert event["severity"] == "warning" and event["instance_id"] == "i1"
    assert event["at"].endswith("Z") and "Redis failures" in event["message"]
    assert resolved[0]["message"].startswith("resolved")
    service.wait_status("HEALTHY")

    alerts = [r for r in service.log_records() if r.get("logger") == "reference.alerts"]
    fired_logs = [r for r in alerts if f"alert firing {RULE}" in r["msg"]]
    assert len(fired_logs) == 1, fired_logs
    assert any(f"alert resolved {RULE}" in r["msg"] for r in alerts)


def _p99_of_cache_gets(service: Service) -> float:
    latencies = []
    for _ in range(LATENCY_SAMPLES):
        started = time.perf_counter()
        response = service.client.get("/cache/hot")
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200
    return statistics.quantiles(latencies, n=100)[98]


def test_hanging_webhook_does_not_slow_requests(
    service_factory: ServiceFactory, black_hole: BlackHole
) -> None:
    """A webhook that accepts and never answers, with an alert firing every evaluation
    (cooldown 0, PostgreSQL down): the p99 of a batch of cache GETs stays close to the
    p99 measured before any alert, far below the webhook's 2 s timeout, and evaluations go
    on (the log sink keeps firing)."""
    service = service_factory(ALERT_WEBHOOK_URL=black_hole.url, ALERT_COOLDOWN="0")
    assert service.client.put("/cache/hot", json={"value": {"x": 1}}).status_code == 204
    _p99_of_cache_gets(service)  # warm-up
    before = _p99_of_cache_gets(service)

    with service.stack.postgres_proxy.down():
        wait_until(lambda: black_hole.accepted, 10.0, what="a webhook POST to the black hole")
        during = _p99_of_cache_gets(service)

        def firings() -> int:
            return sum(
                "alert firing SYSTEM_UNHEALTHY" in r.get("msg", "") for r in service.log_records()
            )

        wait_until(lambda: firings() >= 4, 5.0, what="evaluations go on while the hook hangs")
    assert during < max(before * 5, before + 0.1), (before, during)
    assert during < 0.5, f"p99 {during:.3f}s: requests waited on the webhook"
