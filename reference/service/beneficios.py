"""The `beneficios` table: a small read-through-cached entity written with an audit event."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reference.audit.db import run_bounded
from reference.breaker import CircuitBreaker

SCHEMA = """
CREATE TABLE IF NOT EXISTS beneficios (
    id text PRIMARY KEY,
    nome text NOT NULL,
    valor bigint NOT NULL,
    v bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""
_GET = text("SELECT id, nome, valor, v FROM beneficios WHERE id = :id")
# Ordered by version: a write older than the row (a lower `v`) changes nothing, so two
# versioned PUTs of one id end with the higher version whatever order they commit in
# (equal versions overwrite). A PUT without a version takes the next one (last commit wins).
_COLUMNS = "RETURNING id, nome, valor, v"
_PUT = text(
    "INSERT INTO beneficios (id, nome, valor, v) VALUES (:id, :nome, :valor, :v) "
    "ON CONFLICT (id) DO UPDATE SET nome = EXCLUDED.nome, valor = EXCLUDED.valor, "
    f"v = EXCLUDED.v, updated_at = now() WHERE beneficios.v <= EXCLUDED.v {_COLUMNS}"
)
_PUT_NEXT = text(
    "INSERT INTO beneficios (id, nome, valor, v) VALUES (:id, :nome, :valor, 0) "
    "ON CONFLICT (id) DO UPDATE SET nome = EXCLUDED.nome, valor = EXCLUDED.valor, "
    f"v = beneficios.v + 1, updated_at = now() {_COLUMNS}"
)


class BeneficiosRepo:
    """Reads and writes `beneficios`, each call bounded and guarded by the database breaker."""

    def __init__(self, engine: AsyncEngine, breaker: CircuitBreaker, timeout_s: float) -> None:
        self._engine = engine
        self._breaker = breaker
        self._timeout_s = timeout_s

    async def ensure_schema(self) -> None:
        """Create the table if it does not exist."""

        async def create(conn: AsyncConnection) -> None:
            await conn.execute(text("SELECT pg_advisory_xact_lock(77001)"))
            await conn.execute(text(SCHEMA))

        await run_bounded(self._engine, create, max(self._timeout_s, 5.0))

    async def get(self, beneficio_id: str) -> dict[str, Any] | None:
        """The stored value for `key`, or None."""

        async def read(conn: AsyncConnection) -> dict[str, Any] | None:
            row = (await conn.execute(_GET, {"id": beneficio_id})).mappings().first()
            return dict(row) if row else None

        return await self._breaker.call(lambda: run_bounded(self._engine, read, self._timeout_s))

    async def put(self, beneficio_id: str, nome: str, valor: int, v: int | None) -> dict[str, Any]:
        """Upsert unless the stored row has a higher version (`v` None: the next version);
        returns the row as stored."""
        params = {"id": beneficio_id, "nome": nome, "valor": valor, "v": v}
        sql = _PUT if v is not None else _PUT_NEXT

        async def write(conn: AsyncConnection) -> dict[str, Any]:
            written = (await conn.execute(sql, params)).mappings().first()
            if written is None:  # superseded by a newer version: the row as it stands
                return dict((await conn.execute(_GET, {"id": beneficio_id})).mappings().one())
            return dict(written)

        return await self._breaker.call(lambda: run_bounded(self._engine, write, self._timeout_s))
