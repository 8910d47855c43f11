"""`drain.encode_rows`: the bulk fast path for canonical records gives exactly the rows the
careful path (json-decoded, escaped field by field) gives, for any valid event; records
that are not events raise `UndecodableRecord` naming their place."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.audit import drain
from reference.audit.drain import UndecodableRecord, encode_rows
from reference.audit.event import AuditEvent
from tests.strategies import audit_events


def _careful(docs: list[bytes], path: str) -> bytes:
    """The slow path for every document (what the fast path must reproduce)."""
    tail = b"\t" + path.encode() + b"\n"
    return b"".join(drain._decoded_row(i, doc) + tail for i, doc in enumerate(docs))


def _columns(row: bytes) -> list[str]:
    """A COPY text row back to its values (COPY's unescaping)."""
    out = []
    for value in row.rstrip(b"\n").split(b"\t"):
        text = value.decode()
        unescaped, i = [], 0
        while i < len(text):
            if text[i] == "\\":
                unescaped.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}[text[i + 1]])
                i += 2
            else:
                unescaped.append(text[i])
                i += 1
        out.append("".join(unescaped))
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(audit_events, min_size=1, max_size=8))
def test_fast_path_rows_equal_the_careful_rows(events: list[AuditEvent]) -> None:
    """Any valid events: same bytes as the careful path, and the values read back."""
    docs = [e.to_json_bytes() for e in events]
    rows = encode_rows(docs, "file")
    assert rows == _careful(docs, "file")
    for event, row in zip(events, rows.splitlines(keepends=True), strict=True):
        action, actor, entity, entity_id, event_id, occurred_at, payload, path = _columns(row)
        assert (action, actor, entity, entity_id) == (
            event.action,
            event.actor,
            event.entity,
            event.entity_id,
        )
        assert (event_id, occurred_at, path) == (
            str(event.event_id),
            event.occurred_at.isoformat(),
            "file",
        )
        assert json.loads(payload) == event.payload


def test_tricky_fields_and_a_nested_payload_key() -> None:
    """Quotes, backslashes, tabs, newlines and a payload holding its own "payload" key."""
    event = AuditEvent.new('a"b', "c\\d", "e\tf", "g\nh", {"payload": {"x": "\\t"}, "k": 'q"\t'})
    doc = event.to_json_bytes()
    assert encode_rows([doc], "file") == _careful([doc], "file")
    # columns: action, actor, entity, entity_id (AuditEvent.new takes the actor first)
    assert _columns(encode_rows([doc], "file"))[:4] == ["c\\d", 'a"b', "e\tf", "g\nh"]


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"action": "a"}', "actor missing"),
        (b'{"action":"a","actor":"b","entity":"c","entity_id":"d","event_id":"e",'
         b'"occurred_at":"f"}', "payload missing"),
    ],
)  # fmt: skip
def test_a_record_that_is_not_an_event_is_named(doc: bytes, problem: str) -> None:
    """The first non-event raises with its index in the batch."""
    good = AuditEvent.new("a", "b", "c", "d").to_json_bytes()
    with pytest.raises(UndecodableRecord, match=problem) as raised:
        encode_rows([good, doc, good], "file")
    assert raised.value.index == 1


def test_a_record_with_a_raw_newline_is_not_cut_in_two() -> None:
    """Two canonical documents glued by a newline in one record do not pass as two rows."""
    one = AuditEvent.new("a", "b", "c", "1").to_json_bytes()
    two = AuditEvent.new("a", "b", "c", "2").to_json_bytes()
    with pytest.raises(UndecodableRecord, match="not JSON"):
        encode_rows([one + b"\n" + two, b"{}"], "file")
