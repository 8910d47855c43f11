"""Re-driving dead letters (issue 12, item 1): the runbook's command, on real PostgreSQL.

`python -m reference.audit.dead_letters` lists; `--redrive` inserts the valid events among
the dead letters into `audit_log` and removes exactly those letters. What is not an event
stays, counted. Running it twice changes nothing the second time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from reference.audit.event import AuditEvent
from scenarios.stack import Stack
from scenarios.truth import reset_state

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SCHEMA = [
    "CREATE TABLE IF NOT EXISTS audit_dead_letter (stream text NOT NULL, entry_id text NOT "
    "NULL, event_id uuid, raw bytea NOT NULL, reason text NOT NULL, deliveries integer NOT "
    "NULL, dead_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (stream, entry_id))",
]


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reference.audit.dead_letters", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DATABASE_URL": stack.urls.database_direct_url},
        cwd=REPO,
    )


def _count(stack: Stack, sql: str) -> int:
    with psycopg.connect(stack.urls.database_direct_url, connect_timeout=5) as conn:
        return int(conn.execute(sql).fetchone()[0])  # type: ignore[index]


def test_redrive_moves_valid_events_and_keeps_the_rest(stormproof_stack: Stack) -> None:
    """Two valid events and one foreign entry dead-lettered: list shows 3 (2 events);
    --redrive puts both events in audit_log and leaves only the foreign entry; a second
    run (through `stormproof audit dead-letters --redrive`) re-drives nothing."""
    reset_state(stormproof_stack)
    events = [AuditEvent.new("t", "a", "e", str(i), {"i": i}) for i in range(2)]
    with psycopg.connect(stormproof_stack.urls.database_direct_url, autocommit=True) as conn:
        for statement in SCHEMA:
            conn.execute(statement)
        for n, event in enumerate(events):
            conn.execute(
                "INSERT INTO audit_dead_letter VALUES ('audit:events', %s, %s, %s, %s, 9)",
                (f"1-{n}", event.event_id, event.to_json_bytes(), "delivered 9 times (max 5)"),
            )
        conn.execute(
            "INSERT INTO audit_dead_letter VALUES ('audit:events', '2-0', NULL, %s, %s, 1)",
            (b'{"x": 1}', "malformed: not an event"),
        )
    listing = _cli(stormproof_stack)
    assert listing.returncode == 0, listing.stderr
    assert "dead letters: 3 (2 valid events)" in listing.stdout, listing.stdout
    result = _cli(stormproof_stack, "--redrive")
    assert result.returncode == 0, result.stderr
    assert "re-driven: 2 (2 new rows" in result.stdout, result.stdout
    rows = _count(stormproof_stack, "SELECT count(*) FROM audit_log WHERE path = 'redrive'")
    assert rows == 2
    assert _count(stormproof_stack, "SELECT count(*) FROM audit_dead_letter") == 1
    again = subprocess.run(
        [sys.executable, "-m", "scenarios.cli", "audit", "dead-letters", "--redrive"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DATABASE_URL": stormproof_stack.urls.database_direct_url},
        cwd=REPO,
    )
    assert again.returncode == 0, again.stderr
    assert "re-driven: 0" in again.stdout, again.stdout
    assert _count(stormproof_stack, "SELECT count(*) FROM audit_log") == 2


def test_without_a_database_url_it_says_so() -> None:
    """No $DATABASE_URL: exit 2 with one line naming the variable."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "reference.audit.dead_letters"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr
