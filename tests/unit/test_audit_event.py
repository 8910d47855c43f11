"""AuditEvent: validation, canonical encoding and round-trips."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from reference.audit.event import (
    MAX_FIELD_CHARS,
    MAX_PAYLOAD_BYTES,
    AuditEvent,
    InvalidAuditEvent,
)
from reference.clock import FakeClock
from tests.strategies import audit_events

FIXED = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def _valid() -> dict[str, Any]:
    return {
        "event_id": "6f1f9c1e-3c1a-4c55-9c51-0d6e0b7f5a11",
        "occurred_at": "2024-05-01T12:30:00+00:00",
        "actor": "user:42",
        "action": "update",
        "entity": "beneficio",
        "entity_id": "b-7",
        "payload": {"b": 1, "a": [1, 2, {"z": None}]},
    }


@given(audit_events)
def test_dict_and_json_round_trip(event: AuditEvent) -> None:
    """Any valid event survives to_dict/from_dict and to_json_bytes/from_json_bytes."""
    assert AuditEvent.from_dict(event.to_dict()) == event
    again = AuditEvent.from_json_bytes(event.to_json_bytes())
    assert again == event
    assert again.to_json_bytes() == event.to_json_bytes()


@given(
    st.datetimes(
        timezones=st.builds(timezone, st.timedeltas(timedelta(hours=-23), timedelta(hours=23)))
    )
)
# Python 3.11's fromisoformat drops an offset's microseconds: a different instant
@example(datetime(2020, 1, 1, tzinfo=timezone(timedelta(microseconds=1))))
def test_any_aware_time_is_normalised_to_utc_or_rejected(moment: datetime) -> None:
    """Aware times in any offset become UTC (same instant); unrepresentable ones are refused."""
    data = _valid() | {"occurred_at": moment.isoformat()}
    try:
        event = AuditEvent.from_dict(data)
    except InvalidAuditEvent as exc:
        assert exc.field == "occurred_at"
        return
    assert event.occurred_at == moment
    assert event.occurred_at.utcoffset() == timedelta(0)


def test_canonical_bytes_are_sorted_and_compact() -> None:
    """The JSON encoding sorts keys at every level and has no whitespace."""
    event = AuditEvent.from_dict(_valid())
    raw = event.to_json_bytes()
    assert b" " not in raw
    assert raw.startswith(b'{"action":"update","actor":"user:42","entity":"beneficio"')
    assert b'"payload":{"a":[1,2,{"z":null}],"b":1}' in raw
    reordered = dict(reversed(list(_valid().items())))
    reordered["payload"] = {"a": [1, 2, {"z": None}], "b": 1}
    assert AuditEvent.from_dict(reordered).to_json_bytes() == raw


def test_missing_occurred_at_uses_injected_clock() -> None:
    """Without occurred_at the injected wall clock supplies the time."""
    data = _valid()
    del data["occurred_at"]
    clock = FakeClock(wall=FIXED.timestamp())
    event = AuditEvent.from_dict(data, clock)
    assert event.occurred_at == FIXED
    fresh = AuditEvent.new("a", "b", "c", "d", clock=clock)
    assert fresh.occurred_at == FIXED
    assert fresh.event_id.version == 4
    assert fresh.payload == {}


def test_payload_is_copied_and_to_dict_is_fresh() -> None:
    """Mutating the caller's payload or a to_dict result never changes the event."""
    payload: dict[str, Any] = {"k": [1]}
    event = AuditEvent.from_dict(_valid() | {"payload": payload})
    before = event.to_json_bytes()
    payload["k"].append(2)
    event.to_dict()["payload"]["k"] = "changed"
    assert event.payload == {"k": [1]}
    assert event.to_json_bytes() == before


def test_time_in_other_offset_becomes_utc() -> None:
    """An aware time with an offset is stored as the same instant in UTC."""
    event = AuditEvent.from_dict(_valid() | {"occurred_at": "2024-05-01T14:30:00+02:00"})
    assert event.occurred_at == FIXED
    assert event.occurred_at.tzinfo == UTC
    assert event.to_dict()["occurred_at"] == "2024-05-01T12:30:00+00:00"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"event_id": "not-a-uuid"}, "event_id"),
        ({"event_id": str(uuid.UUID(int=0))}, "event_id"),
        ({"event_id": 12}, "event_id"),
        ({"event_id": None}, "event_id"),
        ({"actor": ""}, "actor"),
        ({"action": "   "}, "action"),
        ({"entity": 5}, "entity"),
        ({"entity_id": "x" * (MAX_FIELD_CHARS + 1)}, "entity_id"),
        ({"entity_id": "a\x00b"}, "entity_id"),
        ({"actor": "\ud800"}, "actor"),
        ({"payload": [1, 2]}, "payload"),
        ({"payload": "text"}, "payload"),
        ({"payload": {"big": "x" * MAX_PAYLOAD_BYTES}}, "payload"),
        ({"payload": {"n": float("nan")}}, "payload"),
        ({"payload": {"s": "nul\x00"}}, "payload"),
        ({"payload": {"t": (1, 2)}}, "payload"),
        ({"payload": {1: "int key"}}, "payload"),
        ({"occurred_at": "2024-05-01T12:30:00"}, "occurred_at"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"occurred_at": 1714566600}, "occurred_at"),
        ({"entityId": "typo"}, "entityId"),
    ],
)
def test_invalid_fields_are_named(change: dict[str, Any], field: str) -> None:
    """Each kind of bad input raises InvalidAuditEvent naming the field, on one line."""
    with pytest.raises(InvalidAuditEvent) as info:
        AuditEvent.from_dict(_valid() | change)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert "\n" not in str(info.value)


def test_missing_field_is_named() -> None:
    """A missing required field is reported by name."""
    data = _valid()
    del data["entity"]
    with pytest.raises(InvalidAuditEvent, match=r"^entity: is required$"):
        AuditEvent.from_dict(data)


def test_naive_datetime_object_is_rejected() -> None:
    """A naive datetime passed directly is refused."""
    with pytest.raises(InvalidAuditEvent) as info:
        AuditEvent(uuid.uuid4(), datetime(2024, 1, 1), "a", "b", "c", "d", {})
    assert info.value.field == "occurred_at"


def test_payload_just_under_limit_is_accepted() -> None:
    """A payload whose canonical encoding is exactly the limit is accepted."""
    filler = "x" * (MAX_PAYLOAD_BYTES - len(b'{"k":""}'))
    event = AuditEvent.from_dict(_valid() | {"payload": {"k": filler}})
    assert len(json.dumps(event.payload, separators=(",", ":"))) == MAX_PAYLOAD_BYTES


@pytest.mark.parametrize(
    "raw", [b"{not json", b"\xff\xfe", b"[1,2]", b"x" * (10 * MAX_PAYLOAD_BYTES)]
)
def test_bad_json_bytes(raw: bytes) -> None:
    """Undecodable, non-object or oversized documents raise InvalidAuditEvent('event')."""
    with pytest.raises(InvalidAuditEvent) as info:
        AuditEvent.from_json_bytes(raw)
    assert info.value.field == "event"
