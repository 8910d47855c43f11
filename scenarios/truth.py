"""The ground truth, read over the stack's direct URLs (never through a proxy).

`reset_state` gives each run a clean slate; `read_truth` reads what the database really
holds after healing, for the checkers to compare with what the target acknowledged.
"""

from __future__ import annotations

import psycopg
import redis

from scenarios.stack.base import Stack

TRUTH_QUERY = "SELECT event_id::text, count(*) FROM audit_log GROUP BY 1"
"""The default truth query: (event_id, rows in audit_log)."""
RESET_TABLES = ("audit_log", "audit_dead_letter", "beneficios")


def reset_state(stack: Stack) -> None:
    """A clean slate over the direct URLs: the target's tables dropped, Redis flushed."""
    with psycopg.connect(stack.urls.database_direct_url, autocommit=True, connect_timeout=5) as c:
        for table in RESET_TABLES:
            c.execute(f"DROP TABLE IF EXISTS {table}")
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
