"""Replaying journaled events into the audit table: typed COPY straight from the records.

The journal stores each event as its canonical JSON (sorted keys, compact, UTF-8). A
replayed batch becomes COPY rows of the table's own columns, cut from those bytes in
Python, so PostgreSQL does what a bare COPY of the same rows would do: no JSON document
staged and taken apart server-side.

- `encode_rows` turns documents into COPY text rows. Canonical documents (the only kind
  our journal writes) are cut into their fields by one regular expression over the whole
  chunk; any other document is decoded with `json` and escaped field by field. One that
  is not an event object raises `UndecodableRecord` (the caller then validates the batch
  and quarantines). Values are checked by PostgreSQL (uuid, timestamptz, jsonb): a bad one
  fails the COPY with a data error, which the caller treats the same way.
- `copy_into` streams the rows in chunks, encoding the next chunk while PostgreSQL takes
  the previous one. Rows that cannot conflict go straight into the table under a
  savepoint; when one is already there (a crash between a commit and its checkpoint, an
  event that also reached the table by another path), the batch is rolled back to the
  savepoint and goes through a typed staging table with `INSERT ... SELECT ... ON
  CONFLICT DO NOTHING`. A caller that knows the rows may conflict (a resumed segment) asks
  for the staging path at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence

import psycopg

__all__ = ["CHUNK_RECORDS", "COPY_COLUMNS", "UndecodableRecord", "copy_into", "encode_rows"]

COPY_COLUMNS = "action, actor, entity, entity_id, event_id, occurred_at, payload, path"
"""The column order of a COPY row: the canonical JSON's key order, then the path."""
CHUNK_RECORDS = 2048
"""Records encoded per step: small enough to keep the event loop responsive (~2 ms),
large enough that PostgreSQL always has the previous chunk to work on meanwhile."""

_STAGE = "audit_replay_stage"
_FIELDS = ("action", "actor", "entity", "entity_id", "event_id", "occurred_at")
_PLAIN = rb'"([^"\\\x00-\x1f]*)"'
_CANONICAL = (
    rb'\{"action":' + _PLAIN + rb',"actor":' + _PLAIN + rb',"entity":' + _PLAIN
    + rb',"entity_id":' + _PLAIN + rb',"event_id":' + _PLAIN + rb',"occurred_at":'
    + _PLAIN + rb',"payload":(\{[^\t\n\r]*\})\}'
)  # fmt: skip
"""A canonical event whose text fields need no unescaping: each group is a COPY value as
it stands (JSON strings without backslashes hold no tab, newline or COPY escape); the
payload keeps its JSON text, with backslashes doubled for COPY beforehand."""
_LINES = re.compile(rb"^" + _CANONICAL + rb"$", re.MULTILINE)
_TAB = b"\t"


class UndecodableRecord(ValueError):
    """A journal record that is not an event object; `index` is its place in the batch."""

    def __init__(self, index: int, problem: str) -> None:
        super().__init__(f"record {index}: {problem}")
        self.index = index


def encode_rows(docs: Sequence[bytes], path: str, first_index: int = 0) -> bytes:
    """COPY text rows (`COPY_COLUMNS` order) for event JSON documents.

    Raises `UndecodableRecord` for the first document that is not an event object.
    """
    tail = b"\t" + _escape(path).encode("utf-8") + b"\n"
    blob = b"\n".join(docs)
    if b"\\" in blob:  # COPY's escape character; a text field with one is not canonical
        blob = blob.replace(b"\\", b"\\\\")
    lines = blob.count(b"\n") + 1
    fields = _LINES.findall(blob)
    del blob
    if docs and lines == len(docs) == len(fields):  # one line per document, each canonical
        return tail.join(map(_TAB.join, fields)) + tail
    out: list[bytes] = []
    for index, doc in enumerate(docs, first_index):
        out.append(_decoded_row(index, doc))
        out.append(tail)
    return b"".join(out)


def _decoded_row(index: int, doc: bytes) -> bytes:
    """Any JSON spelling of an event object, escaped for COPY (without the path)."""
    try:
        data = json.loads(doc)
    except (ValueError, RecursionError) as exc:
        raise UndecodableRecord(index, f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UndecodableRecord(index, "not a JSON object")
    values: list[str] = []
    for name in _FIELDS:
        value = data.get(name)
        if not isinstance(value, str):
            raise UndecodableRecord(index, f"{name} missing or not a string")
        values.append(_escape(value))
    if data.get("payload") is None:
        raise UndecodableRecord(index, "payload missing")
    try:
        payload = json.dumps(data["payload"], ensure_ascii=False, separators=(",", ":"))
        values.append(_escape(payload))
        return "\t".join(values).encode("utf-8")
    except (ValueError, RecursionError) as exc:  # UnicodeEncodeError: a lone surrogate
        raise UndecodableRecord(index, f"not encodable ({exc})") from None


def _escape(value: str) -> str:
    """A value in COPY text format (backslash is COPY's escape character)."""
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    for char, escaped in (("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
        if char in value:
            value = value.replace(char, escaped)
    return value


class _Rows:
    """A batch's rows, encoded chunk by chunk on first use and kept for a second pass."""

    def __init__(self, docs: Sequence[bytes], path: str) -> None:
        self._docs = docs
        self._path = path
        self._chunks: list[bytes] = []

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks
        for first in range(len(self._chunks) * CHUNK_RECORDS, len(self._docs), CHUNK_RECORDS):
            chunk = encode_rows(self._docs[first : first + CHUNK_RECORDS], self._path, first)
            self._chunks.append(chunk)
            yield chunk


async def copy_into(
    conn: psycopg.AsyncConnection[object],
    table: str,
    docs: Sequence[bytes],
    path: str,
    *,
    on_conflict: str,
    can_conflict: bool = False,
    sent: Callable[[], None] | None = None,
) -> int:
    """COPY `docs` into `table` inside the caller's transaction; returns rows added.

    `on_conflict` is the clause that makes a replay idempotent (the store's); with it
    empty (a variant without an idempotency key) every row is simply appended. `sent` is
    called once every row is handed to the connection, before PostgreSQL has taken them
    all (a hint: the caller may start on the next batch meanwhile).
    """
    rows = _Rows(docs, path)
    async with conn.cursor() as cur:
        if not can_conflict or not on_conflict:
            await cur.execute("SAVEPOINT replay_direct")
            try:
                await _copy(cur, table, rows, sent)
            except psycopg.errors.UniqueViolation:
                await cur.execute("ROLLBACK TO SAVEPOINT replay_direct")
            else:  # the savepoint is left to the commit (one round trip fewer)
                return max(0, cur.rowcount)
        await cur.execute(
            f"CREATE TEMP TABLE {_STAGE} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        await _copy(cur, _STAGE, rows, sent)
        await cur.execute(
            f"INSERT INTO {table} ({COPY_COLUMNS}) SELECT {COPY_COLUMNS} FROM {_STAGE} "
            f"{on_conflict}"
        )
        return max(0, cur.rowcount)


async def _copy(
    cur: psycopg.AsyncCursor[object],
    table: str,
    rows: _Rows,
    sent: Callable[[], None] | None = None,
) -> None:
    async with cur.copy(f"COPY {table} ({COPY_COLUMNS}) FROM STDIN") as copy:
        for chunk in rows:  # encoded while PostgreSQL takes the chunk sent before
            await copy.write(chunk)
        if sent is not None:  # PostgreSQL still has buffered rows to take
            sent()
