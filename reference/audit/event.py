"""The audit event: an idempotent, validated record with a canonical JSON encoding."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reference.clock import SYSTEM_CLOCK, Clock

MAX_PAYLOAD_BYTES = 64 * 1024
"""Largest payload accepted, measured on its canonical UTF-8 JSON encoding."""
MAX_FIELD_CHARS = 200
"""Longest actor / action / entity / entity_id accepted."""
MAX_JSON_INPUT_BYTES = 8 * MAX_PAYLOAD_BYTES
"""Largest (possibly non-canonical) JSON document `from_json_bytes` will parse."""
MAX_PAYLOAD_DEPTH = 64
"""Deepest nesting of objects and arrays accepted in a payload."""

_TEXT_FIELDS = ("actor", "action", "entity", "entity_id")
_FIELDS = frozenset(("event_id", "occurred_at", "payload", *_TEXT_FIELDS))


def utc_now(clock: Clock = SYSTEM_CLOCK) -> datetime:
    """`clock`'s wall-clock time as an aware UTC datetime."""
    return datetime.fromtimestamp(clock.now(), UTC)


class InvalidAuditEvent(ValueError):
    """An event failed validation; the message names the field and the problem."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def canonical_json(value: object) -> bytes:
    """Stable JSON bytes: sorted keys, compact separators, UTF-8, no NaN/Infinity."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


@dataclass(frozen=True)
class AuditEvent:
    """One audit fact; `event_id` is the client's idempotency key.

    Treat `payload` as immutable: the event keeps its own deep copy of what it was given.
    """

    event_id: uuid.UUID
    occurred_at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    payload: dict[str, Any]
    _json: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.event_id, uuid.UUID):
            raise InvalidAuditEvent("event_id", "must be a UUID")
        if self.event_id.int == 0:
            raise InvalidAuditEvent("event_id", "must not be the nil UUID")
        if not isinstance(self.occurred_at, datetime):
            raise InvalidAuditEvent("occurred_at", "must be a datetime")
        if self.occurred_at.utcoffset() is None:
            raise InvalidAuditEvent("occurred_at", "must be timezone-aware")
        try:
            object.__setattr__(self, "occurred_at", self.occurred_at.astimezone(UTC))
        except OverflowError:
            raise InvalidAuditEvent("occurred_at", "out of range in UTC") from None
        for name in _TEXT_FIELDS:
            _check_text(name, getattr(self, name))
        payload_bytes = _check_payload(self.payload)
        object.__setattr__(self, "payload", json.loads(payload_bytes))
        object.__setattr__(self, "_json", canonical_json(self._as_dict()))

    @classmethod
    def new(
        cls,
        actor: str,
        action: str,
        entity: str,
        entity_id: str,
        payload: Mapping[str, Any] | None = None,
        *,
        event_id: uuid.UUID | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> AuditEvent:
        """Build an event, generating the id (uuid4) and the time when not given."""
        return cls(
            event_id=event_id if event_id is not None else uuid.uuid4(),
            occurred_at=utc_now(clock),
            actor=actor,
            action=action,
            entity=entity,
            entity_id=entity_id,
            payload=dict(payload) if payload is not None else {},
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], clock: Clock = SYSTEM_CLOCK) -> AuditEvent:
        """Validate a decoded JSON object; a missing `occurred_at` defaults to `clock`'s
        wall-clock time."""
        if not isinstance(data, Mapping):
            raise InvalidAuditEvent("event", "must be a JSON object")
        for key in data:
            if key not in _FIELDS:
                raise InvalidAuditEvent(str(key), "unknown field")
        for name in ("event_id", *_TEXT_FIELDS, "payload"):
            if name not in data or data[name] is None:
                raise InvalidAuditEvent(name, "is required")
        return cls(
            event_id=_parse_uuid(data["event_id"]),
            occurred_at=_parse_time(data.get("occurred_at"), clock),
            actor=data["actor"],
            action=data["action"],
            entity=data["entity"],
            entity_id=data["entity_id"],
            payload=data["payload"],
        )

    @classmethod
    def from_json_bytes(cls, raw: bytes, clock: Clock = SYSTEM_CLOCK) -> AuditEvent:
        """Parse and validate one JSON-encoded event."""
        if len(raw) > MAX_JSON_INPUT_BYTES:
            raise InvalidAuditEvent("event", f"larger than {MAX_JSON_INPUT_BYTES} bytes")
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise InvalidAuditEvent("event", f"not valid JSON ({_one_line(exc)})") from None
        if not isinstance(data, dict):
            raise InvalidAuditEvent("event", "must be a JSON object")
        return cls.from_dict(data, clock)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (fresh copy, payload included)."""
        result: dict[str, Any] = json.loads(self._json)
        return result

    def to_json_bytes(self) -> bytes:
        """The canonical JSON encoding (stable across runs and processes)."""
        return self._json

    def _as_dict(self) -> dict[str, Any]:
        return {
            "event_id": str(self.event_id),
            "occurred_at": self.occurred_at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "entity": self.entity,
            "entity_id": self.entity_id,
            "payload": self.payload,
        }


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:120]


def _parse_uuid(value: object) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        raise InvalidAuditEvent("event_id", "must be a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidAuditEvent("event_id", "is not a valid UUID") from None


_FRACTIONAL_OFFSET = re.compile(r"[+-]\d{2}:?\d{2}:?\d{2}[.,]\d+$")


def _parse_time(value: object, clock: Clock) -> datetime:
    if value is None:
        return utc_now(clock)
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise InvalidAuditEvent("occurred_at", "must be an ISO 8601 string")
    if _FRACTIONAL_OFFSET.search(value):
        # Python 3.11's fromisoformat silently drops an offset's fraction of a second
        raise InvalidAuditEvent("occurred_at", "a UTC offset must be whole seconds")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidAuditEvent("occurred_at", "is not an ISO 8601 date-time") from None


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise InvalidAuditEvent(name, "must be a string")
    if not value.strip():
        raise InvalidAuditEvent(name, "must not be empty")
    if len(value) > MAX_FIELD_CHARS:
        raise InvalidAuditEvent(name, f"longer than {MAX_FIELD_CHARS} characters")
    problem = _text_problem(value)
    if problem:
        raise InvalidAuditEvent(name, problem)


def _text_problem(value: str) -> str | None:
    """PostgreSQL text and jsonb reject NUL and lone surrogates: refuse them up front."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (lone surrogate)"
    return None


def _check_payload(payload: object) -> bytes:
    if not isinstance(payload, dict):
        raise InvalidAuditEvent("payload", "must be a JSON object")
    _check_json_value(payload, "payload", 0)
    try:
        encoded = canonical_json(payload)
    except ValueError as exc:  # e.g. an int too long to convert
        raise InvalidAuditEvent("payload", f"not encodable ({_one_line(exc)})") from None
    if len(encoded) > MAX_PAYLOAD_BYTES:
        raise InvalidAuditEvent("payload", f"larger than {MAX_PAYLOAD_BYTES} bytes")
    return encoded


def _check_json_value(value: object, where: str, depth: int) -> None:
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidAuditEvent("payload", f"non-finite number at {where}")
        return
    if isinstance(value, str):
        problem = _text_problem(value)
        if problem:
            raise InvalidAuditEvent("payload", f"string at {where} {problem}")
        return
    if depth >= MAX_PAYLOAD_DEPTH:
        raise InvalidAuditEvent("payload", f"nested deeper than {MAX_PAYLOAD_DEPTH}")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidAuditEvent("payload", f"non-string key at {where}")
            problem = _text_problem(key)
            if problem:
                raise InvalidAuditEvent("payload", f"key at {where} {problem}")
            _check_json_value(item, f"{where}[{key[:20]!r}]", depth + 1)
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_json_value(item, f"{where}[{index}]", depth + 1)
        return
    raise InvalidAuditEvent("payload", f"{type(value).__name__} at {where} is not JSON")
