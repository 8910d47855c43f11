"""Hypothesis strategies shared by the tests."""

from __future__ import annotations

from datetime import UTC

from hypothesis import strategies as st

from reference.audit.event import MAX_FIELD_CHARS, AuditEvent

_chars = st.characters(codec="utf-8", exclude_characters="\x00")
_text = st.text(_chars, max_size=12)
_field = st.text(_chars, min_size=1, max_size=MAX_FIELD_CHARS).filter(lambda s: bool(s.strip()))
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20,
)
audit_events = st.builds(
    AuditEvent,
    event_id=st.uuids().filter(lambda u: u.int != 0),
    occurred_at=st.datetimes(timezones=st.just(UTC)),
    actor=_field,
    action=_field,
    entity=_field,
    entity_id=_field,
    payload=st.dictionaries(_text, _json, max_size=5),
)
"""Valid audit events with arbitrary (non-NUL) text and JSON payloads."""
