"""`stormproof journal replay` on real PostgreSQL: idempotent, resumable, corruption, keys."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg
import pytest

from reference.audit import journal_replay
from reference.audit.event import AuditEvent
from reference.audit.journal import Journal, JournalConfig
from reference.audit.journal_format import list_segments, read_segment
from reference.audit.journal_replay import ReplayOptions, replay
from reference.audit.recovery import read_checkpoint
from reference.clock import SYSTEM_CLOCK
from scenarios.ports import free_port
from scenarios.stack import Stack
from tests.integration.audit_support import make_event

pytestmark = pytest.mark.integration
KEY_ENV = "REPLAY_TEST_HMAC_KEY"
KEY = "replay-test-key-0123456789abcdef"


@pytest.fixture
def table(stormproof_stack: Stack) -> Iterator[str]:
    """A fresh audit table name (created by the replay), dropped afterwards."""
    name = f"audit_r_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(
        stormproof_stack.urls.database_direct_url, autocommit=True, connect_timeout=5
    ) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


def write_journal(directory: Path, events: Sequence[AuditEvent], key: str | None = KEY) -> None:
    """Journal `events` (HMAC-chained with `key`) in small segments, then close it."""

    async def write() -> None:
        config = JournalConfig(
            directory, segment_max_bytes=16 * 1024, hmac_key=key.encode() if key else None
        )
        journal = Journal(config, SYSTEM_CLOCK)
        await journal.open()
        for event in events:
            await journal.append(event.to_json_bytes())
        await journal.close()

    asyncio.run(write())


def rows(stack: Stack, table: str) -> dict[str, int]:
    """event_id -> rows in `table`, over the direct URL ({} when the table is absent)."""
    with psycopg.connect(stack.urls.database_direct_url, connect_timeout=5) as conn:
        try:
            found = conn.execute(f"SELECT event_id::text, count(*) FROM {table} GROUP BY 1")
        except psycopg.errors.UndefinedTable:
            return {}
        return {str(r[0]): int(r[1]) for r in found.fetchall()}


def cli(directory: Path, url: str, table: str, *extra: str) -> int:
    """`stormproof journal replay` in-process, without the progress bar."""
    argv = [str(directory), "--database-url", url, "--table", table, "--hmac-key-env", KEY_ENV]
    return journal_replay.main([*argv, "--quiet", "--timeout", "3", *extra])


def test_replay_twice_replays_nothing_new(
    stormproof_stack: Stack,
    table: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Replayed once: every event exactly once; again: nothing replayed; a copy of the
    directory replayed: nothing new, nothing doubled."""
    monkeypatch.setenv(KEY_ENV, KEY)
    events = [make_event(i) for i in range(600)]
    journal = tmp_path / "journal"
    write_journal(journal, events)
    copy = tmp_path / "copy"
    shutil.copytree(journal, copy)
    assert len(list_segments(journal)) > 3
    url = stormproof_stack.urls.database_url
    assert cli(journal, url, table) == 0
    out = capsys.readouterr().out
    assert "replayed 600 records (600 new rows" in out and "HMAC chain verified" in out
    expected = {str(e.event_id): 1 for e in events}
    assert rows(stormproof_stack, table) == expected
    assert cli(journal, url, table) == 0
    assert "replayed 0 records" in capsys.readouterr().out
    assert cli(copy, url, table) == 0
    assert "replayed 600 records (0 new rows, 600 already present)" in capsys.readouterr().out
    assert rows(stormproof_stack, table) == expected


def test_interrupted_replay_resumes_where_it_stopped(
    stormproof_stack: Stack,
    table: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A replay cancelled after its first checkpoint leaves part of the journal replayed;
    the same command again replays the rest (not everything again): each event once."""
    monkeypatch.setenv(KEY_ENV, KEY)
    events = [make_event(i) for i in range(400)]
    write_journal(tmp_path, events)
    options = ReplayOptions(
        tmp_path, stormproof_stack.urls.database_url, KEY.encode(), batch_size=5, table=table
    )

    async def interrupted() -> None:
        task = asyncio.create_task(replay(options))
        async with asyncio.timeout(30):
            while read_checkpoint(tmp_path) is None and not task.done():  # noqa: ASYNC110
                await asyncio.sleep(0.001)
        assert not task.done(), "the replay finished before it could be interrupted"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())
    before = rows(stormproof_stack, table)
    assert 0 < len(before) < 400
    assert cli(tmp_path, stormproof_stack.urls.database_url, table, "--batch-size", "5") == 0
    line = capsys.readouterr().out
    resumed = int(line.split("replayed ")[1].split(" ")[0])
    assert resumed <= 400 - len(before) + 5, line  # at most one batch replayed again
    assert rows(stormproof_stack, table) == {str(e.event_id): 1 for e in events}
    assert list_segments(tmp_path) == []


@pytest.mark.parametrize(("with_key", "set_aside"), [(False, 1), (True, 2)])
def test_corrupt_record_is_quarantined_and_the_rest_replayed(
    stormproof_stack: Stack,
    table: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    with_key: bool,
    set_aside: int,
) -> None:
    """A flipped bit in one record: it goes to quarantine/, every other record is replayed
    exactly once. With the key, the record after it is intact but its MAC cannot be
    verified across the gap, so recovery sets it aside too (quarantined, not replayed)."""
    if with_key:
        monkeypatch.setenv(KEY_ENV, KEY)
    else:
        monkeypatch.delenv(KEY_ENV, raising=False)
    events = [make_event(i) for i in range(200)]
    write_journal(tmp_path, events)
    _, first = list_segments(tmp_path)[0]
    scan = read_segment(first)
    middle = len(scan.records) // 2
    victim = scan.records[middle]
    data = bytearray(first.read_bytes())
    data[victim.end - 1] ^= 0x01
    first.write_bytes(bytes(data))
    lost = {
        str(json.loads(r.payload)["event_id"]) for r in scan.records[middle : middle + set_aside]
    }
    assert cli(tmp_path, stormproof_stack.urls.database_url, table) == 0
    out = capsys.readouterr().out
    assert f"replayed {200 - set_aside} records" in out and f"quarantined {set_aside}" in out, out
    assert rows(stormproof_stack, table) == {
        str(e.event_id): 1 for e in events if str(e.event_id) not in lost
    }
    assert len(list((tmp_path / "quarantine").iterdir())) == set_aside


def test_wrong_hmac_key_is_refused_in_one_line(
    stormproof_stack: Stack,
    table: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A key other than the writer's: refused with one line, exit 2, nothing replayed."""
    monkeypatch.setenv(KEY_ENV, "another-key-0123456789abcdefgh")
    write_journal(tmp_path, [make_event(i) for i in range(50)])
    segments = list_segments(tmp_path)
    assert cli(tmp_path, stormproof_stack.urls.database_url, table) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "HMAC key does not match" in err, err
    assert rows(stormproof_stack, table) == {}
    assert list_segments(tmp_path) == segments


def test_unreachable_database_one_line_exit_2_nothing_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No PostgreSQL at the URL: one line, exit 2, no checkpoint, every segment kept."""
    monkeypatch.setenv(KEY_ENV, KEY)
    write_journal(tmp_path, [make_event(i) for i in range(50)])
    segments = list_segments(tmp_path)
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/nowhere"
    assert cli(tmp_path, url, "audit_log") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "database unreachable" in err, err
    assert read_checkpoint(tmp_path) is None
    assert list_segments(tmp_path) == segments
