"""The smaller defects of issue 12 (item 8), one test each, on real files where it matters.

- the writer resumes the HMAC chain past an empty or half-written last segment;
- a writer restarted after recovery removed every segment does not reuse an old sequence
  (its quarantine files, its checkpoint anchor);
- ADMIN_TOKEN has a minimum length;
- a scenario name cannot escape the report directory;
- the Redis alert is not resolved while the breaker is only HALF_OPEN (mid-outage).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reference.alerts import AlertEvaluator, AlertEvent, AlertSignals, AlertThresholds
from reference.audit.journal import Journal, JournalConfig
from reference.audit.journal_format import (
    HEADER_BYTES,
    hmac_key_from_text,
    list_segments,
    read_segment,
)
from reference.clock import SYSTEM_CLOCK, FakeClock
from reference.config import ConfigError, Settings
from scenarios.run.scenario import ScenarioError, parse_scenario

KEY = hmac_key_from_text("small-fixes-key-0123456789abcdef")


async def _append(directory: Path, payloads: list[bytes]) -> None:
    journal = Journal(JournalConfig(directory, hmac_key=KEY), SYSTEM_CLOCK)
    await journal.open()
    await asyncio.gather(*(journal.append(p) for p in payloads))
    await journal.close()


@pytest.mark.parametrize("damage", ["empty", "torn-record"])
async def test_the_chain_resumes_past_a_damaged_last_segment(tmp_path: Path, damage: str) -> None:
    """seg 1 intact; seg 2 empty (a crash right after creating it) or holding only a torn
    record; the next writer's segment must chain from seg 1's last MAC, not from zero."""
    await _append(tmp_path, [b'{"n": 1}', b'{"n": 2}'])
    await _append(tmp_path, [b'{"n": 3}'])
    (_, first), (_, second) = list_segments(tmp_path)
    if damage == "empty":
        second.write_bytes(b"")
    else:
        with second.open("r+b") as f:
            f.truncate(HEADER_BYTES + 10)
    await _append(tmp_path, [b'{"n": 4}'])
    newest = list_segments(tmp_path)[-1][1]
    expected = read_segment(first, KEY).last_mac
    assert read_segment(newest, KEY).header.prev_mac == expected  # type: ignore[union-attr]


async def test_a_restarted_writer_does_not_reuse_a_quarantined_sequence(tmp_path: Path) -> None:
    """Recovery removed every segment but quarantined a region of seg 1: the next writer
    starts after it, so its quarantine names can never collide."""
    await _append(tmp_path, [b'{"n": 1}'])
    ((sequence, segment),) = list_segments(tmp_path)
    quarantine = tmp_path / "quarantine"
    quarantine.mkdir()
    (quarantine / f"{segment.name}.000000000084-10.bad").write_bytes(b"x" * 10)
    segment.unlink()
    await _append(tmp_path, [b'{"n": 2}'])
    ((new_sequence, _),) = list_segments(tmp_path)
    assert new_sequence > sequence


def test_admin_token_has_a_minimum_length() -> None:
    """A short ADMIN_TOKEN stops start-up with a line naming the variable."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"ADMIN_TOKEN": "short"})
    assert "ADMIN_TOKEN" in str(info.value)
    assert Settings.from_env({"ADMIN_TOKEN": "a-long-enough-admin-token-1234"}).admin_token


@pytest.mark.parametrize("name", ["../escape", "a/b", "/abs", "..", "bad name\n"])
def test_a_scenario_name_must_be_a_plain_file_name(name: str) -> None:
    """Scenario names become directory names under the report: no separators, no `..`."""
    with pytest.raises(ScenarioError, match="name"):
        parse_scenario({"name": name, "duration_s": 5})


class _Sink:
    def __init__(self) -> None:
        self.events: list[AlertEvent] = []

    def send(self, event: AlertEvent) -> None:
        self.events.append(event)


def test_half_open_does_not_resolve_the_redis_alert() -> None:
    """OPEN fires REDIS_MULTIPLE_FAILURES; HALF_OPEN (trials under way, the outage not
    over) must not send "resolved"; CLOSED does."""
    sink = _Sink()
    thresholds = AlertThresholds(redis_failures=5, fallback_usage=0.5, min_cache_reads=20)
    evaluator = AlertEvaluator(thresholds, [sink], FakeClock(), 0.0, "n")
    evaluator.evaluate(AlertSignals(redis_circuit="OPEN"))
    evaluator.evaluate(AlertSignals(redis_circuit="HALF_OPEN"))
    states = [e.state for e in sink.events if e.name == "REDIS_MULTIPLE_FAILURES"]
    assert "resolved" not in states, states
    evaluator.evaluate(AlertSignals(redis_circuit="CLOSED"))
    states = [e.state for e in sink.events if e.name == "REDIS_MULTIPLE_FAILURES"]
    assert states[-1] == "resolved"
