"""Loss windows of the audit queue (issue 12, items 1 and 3), shown on a real service.

- A valid event whose stream entry was delivered many times (lost replies, restarts) must
  still land in `audit_log`: delivery counts say nothing about the event.
- Each process consumes under its own name, and a restarted instance takes over the
  entries its previous process left pending (no waiting for them to go idle).
- A foreign entry whose error text holds a NUL must not stop the worker: the valid event
  next to it lands, the foreign one is dead-lettered with a clean reason.

Entries are written and inspected over the direct Redis URL, rows over the direct
database URL.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
import pytest
import redis

from reference.audit.event import AuditEvent
from scenarios.stack import Stack
from tests.integration.service_support import (
    ServiceFactory,
    audit_rows,
    reset_stack_state,
    wait_until,
)

pytest_plugins = ["tests.integration.service_support"]
pytestmark = pytest.mark.integration

STREAM = "audit:events"
GROUP = "audit-workers"


def _redis(stack: Stack) -> redis.Redis:
    return redis.Redis.from_url(stack.urls.redis_direct_url, socket_timeout=5)


def _event(i: int) -> AuditEvent:
    return AuditEvent.new("tester", "update", "beneficio", str(i), {"i": i})


def _dead_letters(stack: Stack) -> list[tuple[Any, ...]]:
    with psycopg.connect(stack.urls.database_direct_url, connect_timeout=5) as conn:
        try:
            return conn.execute("SELECT entry_id, reason FROM audit_dead_letter").fetchall()
        except psycopg.errors.UndefinedTable:
            return []


def _consumers(client: redis.Redis) -> list[str]:
    try:
        infos = client.xinfo_consumers(STREAM, GROUP)
    except redis.ResponseError:
        return []
    return [str(i["name"], "utf-8") if isinstance(i["name"], bytes) else i["name"] for i in infos]


def test_an_often_delivered_valid_event_is_stored_not_dead_lettered(
    stormproof_stack: Stack, service_factory: ServiceFactory
) -> None:
    """An entry read 8 times by the instance's consumer (as lost replies and restarts do)
    is a valid event: it must reach audit_log, and nothing may be dead-lettered."""
    reset_stack_state(stormproof_stack)
    client = _redis(stormproof_stack)
    event = _event(1)
    try:
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        client.xadd(STREAM, {b"e": event.to_json_bytes()})
        client.xreadgroup(GROUP, "i1", {STREAM: ">"}, count=10)
        for _ in range(7):  # history reads: each one counts as a delivery
            client.xreadgroup(GROUP, "i1", {STREAM: "0"}, count=10)
        delivered = client.xpending_range(STREAM, GROUP, "-", "+", 10)[0]["times_delivered"]
        assert delivered == 8
        service = service_factory(reset=False)
        wait_until(
            lambda: (
                audit_rows(stormproof_stack).get(event.event_id) == 1
                or _dead_letters(stormproof_stack)
            ),
            20.0,
            what="the event stored (or dead-lettered)",
        )
        assert audit_rows(stormproof_stack).get(event.event_id) == 1, (
            f"valid event not stored; dead letters: {_dead_letters(stormproof_stack)}"
        )
        assert _dead_letters(stormproof_stack) == []
        service.stop()
    finally:
        client.close()


def test_each_process_consumes_under_its_own_name_and_takes_over_its_predecessor(
    stormproof_stack: Stack, service_factory: ServiceFactory
) -> None:
    """Two successive processes of instance i1 have different consumer names, both
    starting with the instance id; the second settles what the first left pending
    well before `claim_idle_s` (30 s) would let any worker claim it."""
    client = _redis(stormproof_stack)
    try:
        service = service_factory()
        first = uuid.uuid4()
        body = {
            "event_id": str(first),
            "actor": "t",
            "action": "a",
            "entity": "e",
            "entity_id": "1",
            "payload": {},
        }
        assert service.post_audit(body).status_code == 202
        wait_until(lambda: audit_rows(stormproof_stack).get(first) == 1, 15.0, what="stored")
        names_before = set(_consumers(client))
        assert names_before, "no consumer registered"
        # an entry pending on the first process's consumer, as if it died mid-batch
        pending = _event(2)
        entry = client.xadd(STREAM, {b"e": pending.to_json_bytes()})
        (old_name,) = names_before
        service.instance.kill()
        client.xclaim(STREAM, GROUP, old_name, 0, [entry], force=True)
        started = time.monotonic()
        service.restart()
        wait_until(
            lambda: audit_rows(stormproof_stack).get(pending.event_id) == 1,
            15.0,
            what="the dead process's pending entry stored by its successor",
        )
        assert time.monotonic() - started < 15.0
        names_after = set(_consumers(client)) - names_before
        assert names_after, f"the restarted process reused the consumer name {old_name!r}"
        for name in names_before | names_after:
            assert name.startswith("i1"), name
        assert _dead_letters(stormproof_stack) == []
    finally:
        client.close()


def test_a_foreign_entry_with_a_nul_does_not_stop_the_worker(
    stormproof_stack: Stack, service_factory: ServiceFactory
) -> None:
    """`{"\\u0000": 1}` in the event field next to a valid event: the valid one lands; the
    foreign one is dead-lettered with a reason PostgreSQL accepts (no NUL)."""
    service = service_factory()
    client = _redis(stormproof_stack)
    good = _event(3)
    try:
        wait_until(lambda: _consumers(client), 15.0, what="the worker's consumer group")
        pipe = client.pipeline(transaction=True)
        pipe.xadd(STREAM, {b"e": b'{"\\u0000": 1}'})
        pipe.xadd(STREAM, {b"e": good.to_json_bytes()})
        pipe.execute()
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline and audit_rows(stormproof_stack).get(good.event_id) != 1:
            time.sleep(0.2)
        assert audit_rows(stormproof_stack).get(good.event_id) == 1, (
            "the valid event never landed: " + service.log_text()[-800:]
        )
        wait_until(lambda: _dead_letters(stormproof_stack), 10.0, what="the foreign entry")
        (letter,) = _dead_letters(stormproof_stack)
        assert "\x00" not in letter[1]
    finally:
        client.close()
