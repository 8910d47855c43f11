"""Recovery checks the journal's HMAC chain (issue 12, item 6), on a real service.

With `AUDITORIA_HMAC_KEY` set, a segment dropped into the backup directory by someone
without the key (CRC-valid, MACs wrong) must not become rows: recovery quarantines it and
counts it. Deleting the oldest unreplayed segment must be visible: the checkpoint keeps
the last replayed MAC and sequence as the chain's anchor, and both `stormproof journal
verify` and recovery report the gap.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from reference.audit.event import AuditEvent
from reference.audit.journal import Journal, JournalConfig
from reference.audit.journal_format import hmac_key_from_text, list_segments, segment_name
from reference.clock import SYSTEM_CLOCK
from scenarios.stack import Stack
from tests.integration.service_support import (
    Service,
    ServiceFactory,
    audit_body,
    audit_rows,
)

pytest_plugins = ["tests.integration.service_support"]
pytestmark = pytest.mark.integration

KEY = "chain-test-key-0123456789abcdef"
WRONG_KEY = "someone-elses-key-0123456789abc"
REPO = Path(__file__).resolve().parents[2]


def _forge_segment(directory: Path, sequence: int, event: AuditEvent) -> Path:
    """A CRC-valid segment holding `event`, written with a key that is not the service's."""
    scratch = directory.parent / f"forge-{uuid.uuid4().hex[:8]}"

    async def write() -> None:
        journal = Journal(
            JournalConfig(scratch, hmac_key=hmac_key_from_text(WRONG_KEY)), SYSTEM_CLOCK
        )
        await journal.open()
        await journal.append(event.to_json_bytes())
        await journal.close()

    asyncio.run(write())
    ((_, written),) = list_segments(scratch)
    target = directory / segment_name(sequence)
    shutil.copyfile(written, target)
    shutil.rmtree(scratch)
    return target


def _journal_events(stack: Stack, service: Service, count: int) -> list[uuid.UUID]:
    """`count` events acknowledged on the file path (Redis and PostgreSQL cut off)."""
    ids = []
    stack.redis_proxy.disable()
    stack.postgres_proxy.disable()
    try:
        for _ in range(count):
            event_id = uuid.uuid4()
            response = service.post_audit(audit_body(event_id))
            assert response.status_code == 202 and response.json()["path"] == "file"
            ids.append(event_id)
    finally:
        stack.redis_proxy.enable()
        stack.postgres_proxy.enable()
    return ids


def _verify(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scenarios.cli", "journal", "verify", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "AUDITORIA_HMAC_KEY": KEY},
        cwd=REPO,
    )


def test_a_forged_segment_is_quarantined_not_replayed(
    stormproof_stack: Stack, service_factory: ServiceFactory
) -> None:
    """A segment chained with another key, dropped in the backup directory: no row for
    its event, the file is quarantined, and the count shows in /metrics."""
    service = service_factory(AUDITORIA_HMAC_KEY=KEY)
    genuine = _journal_events(stormproof_stack, service, 3)
    forged = AuditEvent.new("intruder", "grant", "beneficio", "1", {"valor": 10**9})
    _forge_segment(service.backup_path, 0, forged)
    for _ in range(3):
        service.recover()
    rows = audit_rows(stormproof_stack)
    assert all(rows.get(e) == 1 for e in genuine)
    assert forged.event_id not in rows, "a forged journal segment became an audit row"
    quarantined = list((service.backup_path / "quarantine").glob("*"))
    assert quarantined, "the forged segment was not quarantined"
    metrics = service.client.get("/metrics").text
    assert any(
        line.startswith("stormproof_journal_chain_breaks_total") and float(line.split()[-1]) >= 1
        for line in metrics.splitlines()
    ), "chain breaks not counted"


def test_a_deleted_unreplayed_segment_is_reported_by_verify_and_recovery(
    stormproof_stack: Stack, service_factory: ServiceFactory
) -> None:
    """Replay once (the checkpoint anchors the chain), journal three more segments, delete
    the oldest of them: `journal verify` fails naming the gap, and so does recovery."""
    service = service_factory(AUDITORIA_HMAC_KEY=KEY, AUDITORIA_JOURNAL_SEGMENT_BYTES="4096")
    _journal_events(stormproof_stack, service, 3)
    service.drain()
    later = _journal_events(stormproof_stack, service, 60)
    service.stop()
    segments = list_segments(service.backup_path)
    assert len(segments) >= 3, segments
    (segments[0][1]).unlink()
    report = _verify(service.backup_path)
    assert report.returncode == 1, report.stdout + report.stderr
    assert "missing" in report.stdout, report.stdout
    service.restart()
    service.drain()
    rows = audit_rows(stormproof_stack)
    assert sum(1 for e in later if e in rows) < len(later)
    assert "chain" in service.log_text().lower() and "missing" in service.log_text().lower(), (
        "recovery did not report the deleted segment"
    )
