"""The reference on a forgetful journal disk: while the disk refuses writes (ENOSPC, EIO,
EROFS) and nothing else can take an audit event, it answers 503 rather than acknowledging,
and /health says why; once the disk is back, the journal takes writes again and every
acknowledged event lands exactly once."""

from __future__ import annotations

import time
import uuid

import pytest

from scenarios.faults import FaultInjector, FaultSpec
from scenarios.pytest_plugin import unavailable
from tests.integration.service_support import (
    SMALL_TIMEOUTS,
    ServiceFactory,
    audit_body,
    audit_rows,
)

pytestmark = pytest.mark.integration
# the journal path has its own breaker, opened by the refusing disk: it lets a trial
# through once its reset timeout has passed
JOURNAL_BREAKER_RESET_S = int(SMALL_TIMEOUTS["CIRCUIT_BREAKER_RESET_TIMEOUT"]) / 1000


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("disk_full", "No space left on device"),
        ("disk_eio", "Input/output error"),
        ("disk_readonly", "Read-only file system"),
    ],
)
def test_a_refusing_disk_gets_503_and_health_says_why(
    service_factory: ServiceFactory, kind: str, says: str
) -> None:
    """503 (never 202) while the journal disk refuses; health names the errno; then healed."""
    probe = service_factory(wait=False)
    stack = probe.stack
    if stack.disks is None or "journal" not in stack.disks.mounts:
        why = stack.disks.unavailable if stack.disks else f"{stack.provider} stack"
        unavailable(f"no forgetful journal disk: {why}")
    assert stack.disks is not None
    backup = stack.disks.journal_root(kind) / "audit-backup"
    service = service_factory(AUDITORIA_BACKUP_PATH=str(backup))
    acknowledged: list[uuid.UUID] = []
    injector = FaultInjector.on_stack(stack)
    try:
        injector.apply(FaultSpec("down", "redis"))
        injector.apply(FaultSpec("down", "postgres"))
        body = audit_body()
        response = service.post_audit(body)
        assert response.status_code == 202 and response.json()["path"] == "file", response.text
        acknowledged.append(uuid.UUID(body["event_id"]))

        disk = injector.apply(FaultSpec(kind, "journal"))
        for _ in range(5):
            refused = service.post_audit()
            assert refused.status_code == 503, refused.text
        journal = service.health()["journal"]
        assert journal["ok"] is False and says in journal["error"], journal

        injector.revert(disk)
        time.sleep(JOURNAL_BREAKER_RESET_S + 0.3)
        body = audit_body()
        response = service.post_audit(body)
        assert response.status_code == 202 and response.json()["path"] == "file", response.text
        acknowledged.append(uuid.UUID(body["event_id"]))
        assert service.health()["journal"] == {"ok": True, "error": None}
    finally:
        assert injector.revert_all() == []
    stack.heal()
    service.wait_status("HEALTHY", 15.0)
    service.drain()
    rows = audit_rows(stack)
    assert {event: rows.get(event) for event in acknowledged} == {e: 1 for e in acknowledged}
