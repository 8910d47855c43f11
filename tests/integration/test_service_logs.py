"""The service's log is JSON lines (its output is not a TTY) and never shows a secret: not
the admin token, the journal's HMAC key, the database password, nor the webhook URL's
secret path, even through outages, alert deliveries that fail and refused admin calls."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit, urlunsplit

import pytest

from scenarios.stack import Stack
from tests.integration.service_support import (
    ADMIN_TOKEN,
    ServiceFactory,
    wait_until,
)

pytestmark = pytest.mark.integration

HMAC_KEY = "hmac-key-0b6d41f3c9e2a7d5"
DB_PASSWORD = "db-pass-73e19c0a5f"
HOOK_SECRET = "hook-secret-9d2c4e71aa"


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_log_is_json_and_has_no_secret(
    service_factory: ServiceFactory, stormproof_stack: Stack
) -> None:
    """JSON log lines with ts/level/logger/msg/instance_id; after a PostgreSQL outage (with an
    alert whose webhook delivery fails), a Redis outage, audit writes on every path and
    refused admin calls, none of the secrets appears in the log or in any answer."""
    secrets = (ADMIN_TOKEN, HMAC_KEY, DB_PASSWORD, HOOK_SECRET)
    service = service_factory(
        AUDITORIA_HMAC_KEY=HMAC_KEY,
        ALERT_WEBHOOK_URL=f"http://127.0.0.1:{_closed_port()}/hooks/{HOOK_SECRET}",
        ALERT_COOLDOWN="0",
        # the local PostgreSQL trusts loopback: the password is carried, never checked
        DATABASE_URL=_with_password(stormproof_stack.urls.database_url, DB_PASSWORD),
    )
    answers = [service.client.get("/health").text]
    answers.append(
        service.client.post(
            "/admin/recovery", headers={"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"}
        ).text
    )
    with service.stack.postgres_proxy.down():
        answers.append(service.client.get("/health").text)
        answers.append(service.client.get("/beneficios/b1").text)
        answers.append(service.post_audit().text)
        wait_until(lambda: "alert webhook" in service.log_text(), 10.0, what="webhook failure")
        with service.stack.redis_proxy.down():
            answers.append(service.post_audit().text)
            answers.append(service.client.get("/health").text)
            answers.append(service.client.get("/resilience").text)
            answers.append(service.client.get("/metrics").text)
    service.wait_status("HEALTHY", timeout_s=15.0)
    service.drain()
    service.stop()

    records = service.log_records()
    assert len(records) >= 5
    for record in records:
        assert {"ts", "level", "logger", "msg", "instance_id"} <= set(record), record
        assert record["instance_id"] == "i1"
    text = service.log_text()
    assert "alert webhook http://127.0.0.1/***" in text, "the webhook failure is logged"
    for secret in secrets:
        assert secret not in text, f"a secret ({secret[:6]}...) is in the log"
        for answer in answers:
            assert secret not in answer, f"a secret ({secret[:6]}...) is in an answer"
