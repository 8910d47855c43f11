"""Crash and disk faults on the last path: SIGKILL mid-burst, a full disk, an unwritable path."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from reference.audit.db import make_engine
from reference.audit.event import AuditEvent
from reference.audit.journal import Journal, JournalConfig, JournalWriteError
from reference.audit.journal_format import list_segments, read_segment
from reference.audit.queue import AuditQueue
from reference.audit.recovery import RecoveryConfig, RecoveryJob
from reference.audit.resilient import AuditUnavailable, ResilientAudit
from reference.audit.store import AuditStore
from reference.clock import SYSTEM_CLOCK
from reference.redis_client import make_redis
from reference.service.configs import audit_config, breakers, database_config
from scenarios.faults import FaultInjector, FaultSpec
from scenarios.stack import Stack
from tests.integration.audit_support import (
    audit_rig,
    fresh_store,
    make_event,
    rig_settings,
    rows_per_event,
)

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def both_down(stack: Stack) -> Iterator[None]:
    injector = FaultInjector.on_stack(stack)
    injector.apply(FaultSpec("down", "redis"))
    injector.apply(FaultSpec("down", "postgres"))
    try:
        yield
    finally:
        assert injector.revert_all() == []


def _journaled_ids(directory: Path) -> set[uuid.UUID]:
    """Every event id in an intact journal record (what a recovery could replay)."""
    ids = set()
    for _, path in list_segments(directory):
        for record in read_segment(path).records:
            ids.add(AuditEvent.from_json_bytes(record.payload).event_id)
    return ids


async def test_sigkill_mid_burst_loses_no_acknowledged_event(
    stormproof_stack: Stack, tmp_path: Path
) -> None:
    """A writer on the journal path is SIGKILLed mid-burst; every event it acknowledged (told
    to us before the kill) is in audit_log exactly once after a recovery run."""
    journal_dir = tmp_path / "journal"
    async with fresh_store(stormproof_stack) as store:
        with both_down(stormproof_stack):
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.integration.audit_child", "record",
                stormproof_stack.urls.redis_url, stormproof_stack.urls.database_url,
                str(journal_dir), store.table,
                cwd=REPO, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert child.stdout is not None
            acked: list[str] = []
            try:
                async with asyncio.timeout(30):
                    while len(acked) < 1500:
                        line = await child.stdout.readline()
                        assert line, "the child died on its own"
                        acked.append(line.decode().strip())
            finally:
                child.send_signal(signal.SIGKILL)
                await child.wait()
            rest = await child.stdout.read()  # reported before the kill, read after
            acked += [line for line in rest.decode().split("\n") if line.strip()]
            assert child.returncode == -signal.SIGKILL
        assert len(list_segments(journal_dir)) > 1  # it really spread over segments

        result = await RecoveryJob(RecoveryConfig(journal_dir), store).run_once()
        rows = await rows_per_event(stormproof_stack, store.table)
    acked_ids = {uuid.UUID(line) for line in acked}
    assert len(acked_ids) == len(acked) >= 1500
    missing = acked_ids - set(rows)
    assert not missing, f"{len(missing)} acknowledged events lost"
    assert all(count == 1 for count in rows.values())
    assert result.remaining == 0
    assert result.replayed >= len(acked_ids)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs at `path` (skips the test when mounting is not permitted)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield path
    finally:
        done = subprocess.run(["umount", str(path)], capture_output=True, timeout=10)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10)


async def test_disk_full_refuses_and_acknowledges_only_what_is_on_disk(
    stormproof_stack: Stack, tmp_path: Path
) -> None:
    """With Redis and PostgreSQL down and a 256 KiB disk, records are refused once the disk is
    full; every acknowledged one is in an intact journal record, and lands after healing."""
    with tmpfs(tmp_path / "small", "256k") as small:
        async with audit_rig(stormproof_stack, small) as rig:
            acked: set[uuid.UUID] = set()
            refused = 0
            with both_down(stormproof_stack):
                for i in range(3000):
                    event = make_event(i, pad="x" * 200)
                    try:
                        assert await rig.audit.record(event) == "file"
                    except AuditUnavailable as exc:
                        refused += 1
                        assert set(exc.reasons) == {"queue", "db", "file"}
                        if refused >= 20:
                            break
                    else:
                        acked.add(event.event_id)
                on_disk = _journaled_ids(rig.journal.directory)
            assert refused >= 20 and len(acked) > 100
            assert acked <= on_disk, f"{len(acked - on_disk)} acknowledged but not on disk"
            result = await rig.recovery.run_once()
            assert result.remaining == 0
            rows = await rig.rows_per_event()
    assert acked <= set(rows)
    assert all(count == 1 for count in rows.values())


async def test_unwritable_backup_path_refuses(stormproof_stack: Stack, tmp_path: Path) -> None:
    """A backup path under a regular file cannot be opened; with Redis and PostgreSQL down,
    record raises AuditUnavailable naming every path, and nothing is acknowledged."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    settings = rig_settings(stormproof_stack, blocker / "journal")
    journal = Journal(JournalConfig(settings.audit_backup_path), SYSTEM_CLOCK)
    with pytest.raises(JournalWriteError):
        await journal.open()
    engine = make_engine(database_config(settings))
    redis = make_redis(settings.redis_url, settings.redis_op_timeout_s)
    redis_breaker, db_breaker = breakers(settings)
    audit = ResilientAudit(
        audit_config(settings),
        redis_breaker=redis_breaker,
        db_breaker=db_breaker,
        queue=AuditQueue(redis, settings.audit_queue_stream),
        store=AuditStore(engine),
        journal=journal,
    )
    try:
        with both_down(stormproof_stack):
            for i in range(3):
                with pytest.raises(AuditUnavailable) as info:
                    await audit.record(make_event(i))
                assert set(info.value.reasons) == {"queue", "db", "file"}
                assert "journal is" in info.value.reasons["file"]
    finally:
        await redis.aclose()
        await engine.dispose()
    assert not blocker.with_name("journal").exists()
