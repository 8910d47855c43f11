"""The ground truth, read over the stack's direct URLs (never through a proxy).

`reset_state` gives each run a clean slate; `read_truth` reads what the database really
holds after healing, for the checkers to compare with what the target acknowledged:
rows per event_id; `read_audit_rows` every audit row's fields, per event_id (the audit
checker compares them with what was sent: `corrupted`); `read_beneficios` every beneficio
row (compared with the last acknowledged write). The last two return None when a column
is not there (a target with another schema): the checker then says it could not
compare, instead of passing on nothing.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import psycopg
import redis

from scenarios.history import JSON
from scenarios.stack.base import Stack

TRUTH_QUERY = "SELECT event_id::text, count(*) FROM audit_log GROUP BY 1"
"""The default truth query: (event_id, rows in audit_log)."""
RESET_TABLES = ("audit_log", "audit_dead_letter", "beneficios")


def reset_state(stack: Stack) -> None:
    """A clean slate over the direct URLs: the target's tables dropped, Redis flushed."""
    with psycopg.connect(stack.urls.database_direct_url, autocommit=True, connect_timeout=5) as c:
        for table in RESET_TABLES:
            c.execute(f"DROP TABLE IF EXISTS {table}")
    if stack.redis_set is not None:
        stack.redis_set.reset()  # node 0 (redis_direct_url) the primary again
    client = redis.Redis.from_url(stack.urls.redis_direct_url, socket_timeout=5)
    try:
        client.flushall()
    finally:
        client.close()


def read_truth(stack: Stack, query: str = TRUTH_QUERY) -> dict[str, int]:
    """event_id -> rows in audit_log, read over the direct database URL."""
    with psycopg.connect(stack.urls.database_direct_url, connect_timeout=5) as conn:
        try:
            rows = conn.execute(query).fetchall()
        except psycopg.errors.UndefinedTable:
            return {}
    return {str(row[0]): int(row[1]) for row in rows}


AUDIT_ROWS_QUERY = "SELECT event_id::text, actor, action, entity, entity_id, payload FROM audit_log"
BENEFICIOS_QUERY = "SELECT id, nome, valor, v FROM beneficios"


def read_audit_rows(stack: Stack) -> dict[str, list[dict[str, JSON]]] | None:
    """event_id -> its rows' fields; {} without audit_log, None when a column is missing."""
    rows = _query(stack, AUDIT_ROWS_QUERY, missing_table_is_empty=True)
    if rows is None:
        return None
    out: dict[str, list[dict[str, JSON]]] = defaultdict(list)
    for eid, actor, action, entity, entity_id, payload in rows:
        out[str(eid)].append(
            {
                "actor": actor,
                "action": action,
                "entity": entity,
                "entity_id": entity_id,
                "payload": payload,
            }
        )
    return dict(out)


def read_beneficios(stack: Stack) -> dict[str, JSON] | None:
    """id -> {"nome", "valor", "v"}; {} when the table was never created."""
    rows = _query(stack, BENEFICIOS_QUERY, missing_table_is_empty=True)
    if rows is None:
        return None
    return {str(i): {"nome": n, "valor": int(val), "v": int(v)} for i, n, val, v in rows}


def _query(
    stack: Stack, sql: str, *, missing_table_is_empty: bool = False
) -> list[tuple[Any, ...]] | None:
    with psycopg.connect(stack.urls.database_direct_url, connect_timeout=5) as conn:
        try:
            return list(conn.execute(sql).fetchall())
        except psycopg.errors.UndefinedTable:
            return [] if missing_table_is_empty else None
        except psycopg.errors.UndefinedColumn:
            return None
