"""POST /audit walks the seed's paths as the faults pile up: queue, then the database when
Redis is cut off, then the file journal when PostgreSQL is too, then 503 when the journal
cannot write either. After healing and recovery, every acknowledged event is in audit_log
exactly once (read over the direct URL)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.service_support import (
    SMALL_TIMEOUTS,
    Service,
    ServiceFactory,
    audit_body,
    audit_rows,
)

pytestmark = pytest.mark.integration

PER_PHASE = 4
TMPFS_SIZE = "256k"
MAX_ABSORBED = 64
JOURNAL_BREAKER_RESET_S = int(SMALL_TIMEOUTS["CIRCUIT_BREAKER_RESET_TIMEOUT"]) / 1000


class JournalDisk:
    """Where the journal lives, and a way to make it refuse writes for real.

    As root: a small tmpfs, filled to ENOSPC. Otherwise: the journal directory moved aside
    and replaced by a file (the open segment is no longer linked; a new one cannot be
    created), then put back.
    """

    def __init__(self, base: Path) -> None:
        self.mount_point = base / "journal-fs"
        self.mount_point.mkdir()
        self.directory = self.mount_point / "audit"
        self.mounted = _mount_tmpfs(self.mount_point)
        self._filler = self.mount_point / "filler"

    @contextlib.contextmanager
    def unwritable(self) -> Iterator[str]:
        """Inside: nothing can be written to the journal; yields how."""
        if self.mounted:
            _fill(self._filler)
            try:
                yield "disk full"
            finally:
                self._filler.unlink()
            return
        aside = self.mount_point / "audit-aside"
        self.directory.rename(aside)
        self.directory.write_bytes(b"not a directory")
        try:
            yield "directory replaced by a file"
        finally:
            self.directory.unlink()
            aside.rename(self.directory)

    def refuses_writes(self) -> bool:
        """A direct write next to the journal's segments fails (the fault is real)."""
        try:
            probe = self.directory / "probe"
            with open(probe, "wb") as f:
                f.write(b"x" * 8192)
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            return True
        probe.unlink()
        return False

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.mount_point)], check=False)


def _mount_tmpfs(target: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(target)],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def _fill(path: Path) -> None:
    """Write until the file system is full (ENOSPC)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    try:  # the last partial page, byte by byte
        while True:
            os.write(fd, b"\0")
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


@pytest.fixture
def journal_disk(tmp_path: Path) -> Iterator[JournalDisk]:
    disk = JournalDisk(tmp_path)
    try:
        yield disk
    finally:
        disk.close()


def _post(service: Service, acked: dict[uuid.UUID, str], refused: set[uuid.UUID]) -> str:
    body = audit_body(payload={"n": len(acked) + len(refused)})
    response = service.post_audit(body)
    event_id = uuid.UUID(body["event_id"])
    if response.status_code == 202:
        assert response.json()["event_id"] == body["event_id"]
        path: str = response.json()["path"]
        acked[event_id] = path
        return path
    assert response.status_code == 503, response.text
    assert "not durably recorded" in response.json()["detail"]
    refused.add(event_id)
    return "503"


def test_audit_paths_follow_the_faults_and_nothing_is_lost(
    service_factory: ServiceFactory, journal_disk: JournalDisk
) -> None:
    """queue -> db (redis down) -> file (both down) -> 503 (journal unwritable) -> file
    (journal back); heal + POST /admin/recovery: every 202 is in audit_log exactly once,
    and no row exists that nobody asked for."""
    service = service_factory(AUDITORIA_BACKUP_PATH=str(journal_disk.directory))
    stack = service.stack
    acked: dict[uuid.UUID, str] = {}
    refused: set[uuid.UUID] = set()
    seen: list[list[str]] = []

    seen.append([_post(service, acked, refused) for _ in range(PER_PHASE)])
    with stack.redis_proxy.down():
        seen.append([_post(service, acked, refused) for _ in range(PER_PHASE)])
        with stack.postgres_proxy.down():
            seen.append([_post(service, acked, refused) for _ in range(PER_PHASE)])
            with journal_disk.unwritable() as how:
                assert journal_disk.refuses_writes(), f"the journal disk still writes ({how})"
                # the open segment's last page may still have room: those appends are
                # really stored (and must be recovered); the first 503 marks the full disk
                absorbed = 0
                while _post(service, acked, refused) != "503":
                    absorbed += 1
                    assert absorbed < MAX_ABSORBED, "the journal never refused"
                seen.append([_post(service, acked, refused) for _ in range(PER_PHASE)])
            # the journal path has its own breaker (opened by the full disk): it lets a
            # trial through once its reset timeout has passed
            time.sleep(JOURNAL_BREAKER_RESET_S + 0.3)
            seen.append([_post(service, acked, refused) for _ in range(PER_PHASE)])
            backlog_file = service.client.get("/resilience").json()["auditoria"]

    assert seen == [
        ["queue"] * PER_PHASE,
        ["db"] * PER_PHASE,
        ["file"] * PER_PHASE,
        ["503"] * PER_PHASE,
        ["file"] * PER_PHASE,
    ], f"paths taken per phase: {seen} ({how})"
    assert backlog_file["fileBackups"] == 2 * PER_PHASE + absorbed
    assert backlog_file["syncFallbacks"] == PER_PHASE
    assert backlog_file["queueFailures"] >= 2 * PER_PHASE
    assert "journal batch of 1 records failed" in service.log_text()
    assert len(refused) == PER_PHASE + 1
    metrics = service.client.get("/metrics").text
    assert f"stormproof_audit_failures_total {float(PER_PHASE + 1)}" in metrics

    service.wait_status("HEALTHY", timeout_s=15.0)
    service.drain()
    rows = audit_rows(stack)
    lost = [e for e in acked if e not in rows]
    duplicated = {e: n for e, n in rows.items() if n != 1}
    unexpected = set(rows) - set(acked) - refused
    assert not lost, f"{len(lost)} acknowledged events lost (paths {[acked[e] for e in lost]})"
    assert not duplicated, duplicated
    assert not unexpected, unexpected
    assert not os.listdir(journal_disk.directory) or service.backlog()["journal_pending"] == 0
