"""The target contract's endpoints (see DESIGN, "The target contract")."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from reference.audit.event import AuditEvent, InvalidAuditEvent
from reference.audit.resilient import AuditUnavailable
from reference.service.components import Components
from reference.service.readings import publish_gauges

router = APIRouter()
# /cache keys live in their own namespace: a client of the cache API cannot forge the
# entries the service itself keeps (beneficios, the warmed critical keys).
KV = "kv:"
Key = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:\-]+$")]


def components(request: Request) -> Components:
    """The app's `Components` (a FastAPI dependency)."""
    found: Components = request.app.state.components
    return found


Deps = Annotated[Components, Depends(components)]


class CachePut(BaseModel):
    """Body of `PUT /cache/{key}`."""

    model_config = ConfigDict(extra="forbid")
    value: JsonValue
    ttl_s: int | None = Field(default=None, ge=1, le=30 * 24 * 3600)


class BeneficioPut(BaseModel):
    """Body of `PUT /beneficios/{key}`."""

    model_config = ConfigDict(extra="forbid")
    nome: str = Field(min_length=1, max_length=200)
    valor: int = Field(ge=0, le=10**12)
    v: int | None = Field(default=None, ge=0, le=2**62)
    event_id: uuid.UUID | None = None
    actor: str = Field(default="api", min_length=1, max_length=200)


class AuditIn(BaseModel):
    """Body of `POST /auditoria`."""

    model_config = ConfigDict(extra="forbid")
    event_id: uuid.UUID
    actor: str
    action: str
    entity: str
    entity_id: str
    payload: dict[str, JsonValue] = Field(default_factory=dict)
    occurred_at: str | None = None


@router.get("/cache/{key}")
async def cache_get(key: Key, c: Deps) -> dict[str, Any]:
    """`GET /cache/{key}`."""
    found = await c.cache.get(KV + key)
    if found is None:
        raise HTTPException(404, f"no cached value for {key!r}")
    return {"key": key, "value": found.value, "source": found.source}


def _check_storable(value: JsonValue) -> None:
    """422 unless `value` is strict JSON that Redis can take as UTF-8 (no NaN/Infinity, no
    lone surrogate): bad input must neither crash the route nor count as a Redis failure."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise HTTPException(422, f"value is not storable JSON: {type(exc).__name__}") from None


@router.put("/cache/{key}", status_code=204)
async def cache_put(key: Key, body: CachePut, c: Deps) -> Response:
    """`PUT /cache/{key}`."""
    _check_storable(body.value)
    await c.cache.set(KV + key, body.value, ttl_s=body.ttl_s)
    return Response(status_code=204)


@router.delete("/cache/{key}", status_code=204)
async def cache_delete(key: Key, c: Deps) -> Response:
    """`DELETE /cache/{key}`."""
    await c.cache.delete(KV + key)
    return Response(status_code=204)


async def _schema(c: Components) -> None:
    """The tables exist (created now if start-up has not yet); raises when it cannot."""
    await c.ensure_schema(timeout_s=c.settings.db_op_timeout_s)


@router.get("/beneficios/{beneficio_id}")
async def beneficio_get(beneficio_id: Key, c: Deps) -> dict[str, Any]:
    """`GET /beneficios/{key}`: through the cache, loaded from the database."""

    async def load() -> Any:
        await _schema(c)
        return await c.beneficios.get(beneficio_id)

    try:
        found = await c.cache.get_or_load(f"beneficio:{beneficio_id}", load)
    except Exception as exc:
        raise HTTPException(503, f"database unavailable: {type(exc).__name__}") from exc
    if found is None or not isinstance(found.value, dict):
        raise HTTPException(404, f"no beneficio {beneficio_id!r}")
    return {**found.value, "source": found.source}


@router.put("/beneficios/{beneficio_id}")
async def beneficio_put(beneficio_id: Key, body: BeneficioPut, c: Deps) -> dict[str, Any]:
    """Audit first (durably), then write, then invalidate the cache: no change without a
    trail, and no older row left cached by a slower concurrent PUT."""
    try:
        event = AuditEvent.new(
            body.actor,
            "beneficio.update",
            "beneficio",
            beneficio_id,
            {"nome": body.nome, "valor": body.valor, "v": body.v or 0},
            event_id=body.event_id,
        )
    except InvalidAuditEvent as exc:
        raise HTTPException(422, str(exc)) from exc
    try:
        await _schema(c)
    except Exception as exc:
        raise HTTPException(503, f"database unavailable: {type(exc).__name__}") from exc
    try:
        path = await c.audit.record(event)
    except AuditUnavailable as exc:
        raise HTTPException(503, "audit unavailable: the change was not made") from exc
    try:
        row = await c.beneficios.put(beneficio_id, body.nome, body.valor, body.v)
    except Exception as exc:
        raise HTTPException(503, f"database unavailable: {type(exc).__name__}") from exc
    # Invalidate, never write the row: a PUT's cache write can arrive after a later PUT's
    # (a slow Redis link), and would then leave the older row cached everywhere for
    # CACHE_TTL. A delete is order-free; the next read loads the row under the fill guard.
    await c.cache.delete(f"beneficio:{beneficio_id}")
    return {**row, "audit": {"event_id": str(event.event_id), "path": path}}


@router.post("/audit", status_code=202)
async def audit_post(body: AuditIn, c: Deps) -> dict[str, Any]:
    """`POST /auditoria`: recorded durably on some path, or 503."""
    try:
        event = AuditEvent.from_dict(body.model_dump(mode="json", exclude_none=True))
    except InvalidAuditEvent as exc:
        raise HTTPException(422, str(exc)) from exc
    try:
        path = await c.audit.record(event)
    except AuditUnavailable as exc:
        raise HTTPException(503, "not durably recorded: every audit path failed") from exc
    return {"event_id": str(event.event_id), "path": path}


def _is_admin(c: Components, authorization: str | None) -> bool:
    """ADMIN_TOKEN is set and `authorization` carries it as a bearer token."""
    token = c.settings.admin_token
    scheme, _, given = (authorization or "").partition(" ")
    return token is not None and scheme.lower() == "bearer" and token.matches(given)


@router.get("/health")
async def health(c: Deps, authorization: Annotated[str | None, Header()] = None) -> JSONResponse:
    """`GET /health`; dependency error texts (hosts, ports, users) only for the admin."""
    report = await c.health_report()
    if not _is_admin(c, authorization):
        for probe in ("redis", "database"):
            if isinstance(report.get(probe), dict) and report[probe].get("error"):
                report[probe] = {**report[probe], "error": "unavailable"}
    return JSONResponse(report, status_code=503 if report["status"] == "UNHEALTHY" else 200)


def _metrics_enabled(c: Components) -> None:
    if not c.settings.metrics_enabled:
        raise HTTPException(404, "metrics are turned off (RESILIENCE_METRICS_ENABLED=false)")


@router.get("/resilience")
async def resilience(c: Deps) -> dict[str, Any]:
    """`GET /resilience`."""
    _metrics_enabled(c)
    return await c.resilience()


@router.get("/metrics")
async def metrics(c: Deps) -> PlainTextResponse:
    """`GET /metrics`: Prometheus text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    _metrics_enabled(c)
    await c.refresh_gauges()
    await publish_gauges(c)
    return PlainTextResponse(generate_latest(c.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def require_admin(c: Deps, authorization: Annotated[str | None, Header()] = None) -> None:
    """Refuse unless ADMIN_TOKEN is set and the bearer token matches."""
    if not _is_admin(c, authorization):
        raise HTTPException(
            401,
            "admin endpoints need Authorization: Bearer <ADMIN_TOKEN>",
            headers={"WWW-Authenticate": "Bearer"},
        )


Admin = Annotated[None, Depends(require_admin)]


@router.post("/admin/recovery")
async def admin_recovery(_: Admin, c: Deps) -> dict[str, int]:
    """`POST /admin/recovery`: replay the journal now."""
    try:
        return await c.run_recovery()
    except Exception as exc:
        raise HTTPException(503, f"recovery failed: {type(exc).__name__}") from exc


@router.get("/admin/audit/backlog")
async def admin_backlog(_: Admin, c: Deps) -> dict[str, int]:
    """`GET /admin/audit/backlog`."""
    try:
        return await c.backlog()
    except Exception as exc:
        raise HTTPException(503, f"backlog unknown: {type(exc).__name__}") from exc
