"""The queue worker's pure parts: sorting entries, parsing replies, configuration."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from reference.audit.event import AuditEvent
from reference.audit.queue import (
    EVENT_FIELD,
    QueueWorker,
    StreamEntry,
    WorkerConfig,
    classify,
    entries_from_reply,
)
from reference.audit.store import AuditStore
from reference.audit.stream import clean_reason
from reference.config import Settings
from reference.redis_client import make_redis
from reference.service.configs import worker_config


def _entry(entry_id: str, event: AuditEvent | None = None, deliveries: int = 1) -> StreamEntry:
    fields = {EVENT_FIELD: event.to_json_bytes()} if event is not None else {b"x": b"y"}
    return StreamEntry(entry_id, fields, deliveries)


def test_classify_sorts_events_dead_letters_and_gone() -> None:
    """Valid events pass however often they were delivered; malformed entries become dead
    letters; deleted entries are only to be acked; a duplicate id counts once."""
    good, tired = AuditEvent.new("a", "b", "c", "1"), AuditEvent.new("a", "b", "c", "2")
    entries = [
        _entry("1-0", good),
        _entry("1-0", good),
        _entry("2-0", tired, deliveries=40),
        _entry("3-0"),
        StreamEntry("4-0", {EVENT_FIELD: b"{broken"}),
        StreamEntry("5-0", None),
    ]
    batch = classify(entries, "s")
    assert [entry_id for entry_id, _ in batch.events] == ["1-0", "2-0"]
    assert batch.events[0][1] == good and batch.events[1][1] == tired
    reasons = {d.entry_id: d.reason for d in batch.dead}
    assert reasons["3-0"] == "malformed: no event field"
    assert reasons["4-0"].startswith("malformed: event: not valid JSON")
    assert batch.gone == ("5-0",)
    assert len(batch) == 5 and sorted(batch.ids) == ["1-0", "2-0", "3-0", "4-0", "5-0"]


def test_dead_letter_reasons_are_storable() -> None:
    """A foreign entry's text with a NUL and other control characters: the reason has them
    escaped (PostgreSQL refuses NUL in text) and is bounded."""
    batch = classify([StreamEntry("1-0", {EVENT_FIELD: b'{"\\u0000\\u0007": 1}'})], "s")
    (letter,) = batch.dead
    assert "\x00" not in letter.reason and "\x07" not in letter.reason
    assert letter.reason.startswith("malformed")
    assert len(clean_reason("x" * 10_000)) == 500


def test_classify_accepts_decoded_fields() -> None:
    """A client with decode_responses=True gives str keys and values: still understood."""
    event = AuditEvent.new("a", "b", "c", "1")
    entry = StreamEntry("1-0", {"e": event.to_json_bytes().decode()})  # type: ignore[dict-item]
    assert classify([entry], "s").events == (("1-0", event),)


def test_entries_from_resp2_and_resp3_replies() -> None:
    """Both reply shapes give the same entries; an empty reply gives none."""
    fields = {b"e": b"{}"}
    resp2 = [[b"stream", [(b"1-0", fields), (b"2-0", None)]]]
    resp3 = {b"stream": [(b"1-0", fields), (b"2-0", None)]}
    expected = [StreamEntry("1-0", fields), StreamEntry("2-0", None)]
    assert entries_from_reply(resp2) == expected
    assert entries_from_reply(resp3) == expected
    assert entries_from_reply(None) == [] and entries_from_reply([]) == []


def test_worker_config_from_settings_and_validation() -> None:
    """Stream, delivery limit and timeouts come from Settings; nonsense is refused."""
    settings = Settings(audit_queue_stream="audit:x", audit_max_deliveries=7)
    config = worker_config(settings, consumer="c1", batch_size=10)
    assert (config.stream, config.max_deliveries, config.consumer) == ("audit:x", 7, "c1")
    assert config.db_timeout_s == settings.db_op_timeout_s
    for bad in ({"batch_size": 0}, {"claim_idle_s": 0}, {"backoff_initial_s": 5.0}):
        with pytest.raises(ValueError):
            WorkerConfig(stream="s", **bad)


def test_consumers_get_distinct_default_names() -> None:
    """Two workers never share a consumer name by accident."""
    assert WorkerConfig(stream="s").consumer != WorkerConfig(stream="s").consumer


def test_worker_refuses_a_client_that_would_time_out_while_blocking() -> None:
    """A blocking read longer than the client's socket timeout would always fail."""
    store = AuditStore(create_async_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"))
    short = make_redis("redis://127.0.0.1:1/0", 0.25)
    with pytest.raises(ValueError, match="socket"):
        QueueWorker(short, store, WorkerConfig(stream="s", block_s=1.0))
    QueueWorker(make_redis("redis://127.0.0.1:1/0", 2.0), store, WorkerConfig(stream="s"))


def test_store_refuses_unsafe_table_names() -> None:
    """Table names are interpolated into SQL: only plain identifiers are accepted."""
    engine = create_async_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(ValueError):
        AuditStore(engine, table="audit_log; DROP TABLE x")
    assert AuditStore(engine, table="audit_log_2").table == "audit_log_2"
