"""Shared rig for the service tests: a real `python -m reference.service` on the real stack.

`service_factory(**env)` starts one service process through the harness's own launcher
(`scenarios.target.TargetGroup`) with test-sized timeouts, after resetting the state the
service keeps in the stack (tables `audit_log`, `audit_dead_letter`, `beneficios` dropped;
Redis FLUSHALL, both over the direct URLs). Every process it started is stopped at teardown.
The truth (`audit_rows`) is read over the direct database URL, never through the proxies.

tests/conftest.py registers it as a plugin for the whole suite (test modules import
its helpers: PYTEST_DONT_REWRITE keeps pytest from warning that it was imported first).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from scenarios.stack import Stack
from scenarios.target import TargetGroup, TargetInstance, TargetSpec
from scenarios.truth import reset_state

ADMIN_TOKEN = "svc-test-admin-token-5f1c2a9e"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SMALL_TIMEOUTS: dict[str, str] = {
    "CIRCUIT_BREAKER_RESET_TIMEOUT": "1000",
    "REDIS_OP_TIMEOUT_MS": "150",
    "AUDITORIA_TIMEOUT_MS": "500",
    "HEALTH_CHECK_INTERVAL": "250",
    "ALERT_EVAL_INTERVAL": "250",
    "DB_OP_TIMEOUT_MS": "1000",
    "DB_CONNECT_TIMEOUT_MS": "1000",
}
BENEFICIOS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS beneficios (id text PRIMARY KEY, nome text NOT NULL, "
    "valor bigint NOT NULL, v bigint NOT NULL DEFAULT 0, "
    "updated_at timestamptz NOT NULL DEFAULT now())"
)


def audit_body(event_id: uuid.UUID | str | None = None, **fields: Any) -> dict[str, Any]:
    """A valid `POST /audit` body (override any field)."""
    body: dict[str, Any] = {
        "event_id": str(event_id or uuid.uuid4()),
        "actor": "tester",
        "action": "update",
        "entity": "beneficio",
        "entity_id": "42",
        "payload": {"valor": 10},
    }
    body.update(fields)
    return body


def wait_until(
    probe: Callable[[], Any], timeout_s: float, interval_s: float = 0.1, what: str = ""
) -> Any:
    """Call `probe` until it returns something truthy (returned); fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s:g}s: {what or probe!r} (last: {last!r})")
        time.sleep(interval_s)


def reset_stack_state(stack: Stack) -> None:
    """Drop the service's tables and flush Redis, over the direct URLs (as a run does)."""
    reset_state(stack)


def audit_rows(stack: Stack) -> dict[uuid.UUID, int]:
    """The truth: rows per event_id in `audit_log` (empty when the table is missing)."""
    with psycopg.connect(stack.urls.database_direct_url, autocommit=True, connect_timeout=5) as db:
        exists = db.execute("SELECT to_regclass('audit_log')").fetchone()
        if exists is None or exists[0] is None:
            return {}
        rows = db.execute("SELECT event_id, count(*) FROM audit_log GROUP BY event_id")
        return {row[0]: int(row[1]) for row in rows.fetchall()}


def insert_beneficio(stack: Stack, beneficio_id: str, nome: str, valor: int) -> None:
    """Create the table if needed and write one row, over the direct URL."""
    with psycopg.connect(stack.urls.database_direct_url, autocommit=True, connect_timeout=5) as db:
        db.execute(BENEFICIOS_SCHEMA)
        db.execute(
            "INSERT INTO beneficios (id, nome, valor) VALUES (%s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET nome = EXCLUDED.nome, valor = EXCLUDED.valor",
            (beneficio_id, nome, valor),
        )


@dataclass
class Service:
    """One running reference service, its HTTP client and where it logs."""

    stack: Stack
    group: TargetGroup
    run_dir: Path
    client: httpx.Client
    env: dict[str, str] = field(default_factory=dict)

    @property
    def instance(self) -> TargetInstance:
        return self.group.instances[0]

    @property
    def url(self) -> str:
        return self.instance.url

    @property
    def backup_path(self) -> Path:
        return Path(self.env.get("AUDITORIA_BACKUP_PATH", str(self.instance.backup_path)))

    @property
    def log_path(self) -> Path:
        return self.instance.process.log_path

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_records(self) -> list[dict[str, Any]]:
        """The service's JSON log lines, parsed (a line that is not JSON fails the test)."""
        records = []
        for line in self.log_text().splitlines():
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    pytest.fail(f"log line is not JSON: {line[:200]!r}")
        return records

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get("/health").json()
        return body

    def wait_status(self, status: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """Poll /health until its status is `status` (bounded); that body."""

        def probe() -> dict[str, Any] | None:
            body = self.health()
            return body if body["status"] == status else None

        found: dict[str, Any] = wait_until(probe, timeout_s, 0.1, f"/health {status}")
        return found

    def post_audit(self, body: dict[str, Any] | None = None) -> httpx.Response:
        return self.client.post("/audit", json=body if body is not None else audit_body())

    def recover(self) -> dict[str, int]:
        """POST /admin/recovery; the answer (the call must succeed)."""
        response = self.client.post("/admin/recovery", headers=AUTH, timeout=60.0)
        assert response.status_code == 200, response.text
        result: dict[str, int] = response.json()
        return result

    def backlog(self) -> dict[str, int]:
        response = self.client.get("/admin/audit/backlog", headers=AUTH)
        assert response.status_code == 200, response.text
        result: dict[str, int] = response.json()
        return result

    def drain(self, timeout_s: float = 20.0) -> dict[str, int]:
        """Recover until neither the journal nor the queue holds anything (bounded)."""

        def probe() -> dict[str, int] | None:
            self.recover()
            backlog = self.backlog()
            return backlog if backlog == {"journal_pending": 0, "queue_pending": 0} else None

        found: dict[str, int] = wait_until(probe, timeout_s, 0.2, "audit backlog drained")
        return found

    def restart(self) -> None:
        self.instance.start()

    def stop(self) -> None:
        self.group.stop()


ServiceFactory = Callable[..., Service]


@pytest.fixture
def service_factory(stormproof_stack: Stack, tmp_path: Path) -> Iterator[ServiceFactory]:
    """`start(**env)`: reset the stack's state, then start a service with small timeouts.

    `start(reset=False, ...)` keeps the state (a second service on the same data).
    Extra keyword arguments are environment variables for the service.
    """
    started: list[Service] = []

    def start(*, reset: bool = True, wait: bool = True, **env: str) -> Service:
        if reset:
            reset_stack_state(stormproof_stack)
        run_dir = tmp_path / f"service-{len(started) + 1}"
        group = TargetGroup(
            TargetSpec(env={**SMALL_TIMEOUTS, **env}, startup_timeout_s=30.0),
            stormproof_stack.urls,
            run_dir,
            admin_token=ADMIN_TOKEN,
        )
        client = httpx.Client(base_url=group.instances[0].url, timeout=10.0)
        service = Service(stormproof_stack, group, run_dir, client, dict(env))
        started.append(service)
        if wait:
            group.start()
        return service

    try:
        yield start
    finally:
        for service in started:
            service.client.close()
            service.stop()


@pytest.fixture
def service(service_factory: ServiceFactory) -> Service:
    """A service on a healthy stack, started from a clean state."""
    return service_factory()
