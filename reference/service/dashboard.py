"""The seed's health dashboard: `GET /dashboard`, one self-contained HTML page.

The page (dashboard.html next to this module: inline CSS and JavaScript, nothing fetched
from elsewhere) refreshes itself from `/health`, `/resilience` and `/dashboard/state`.
It shows states and counts only, never the probes' error texts, and needs no token: what
it renders is what the unauthenticated endpoints already say, minus the error details.

`/dashboard/state` adds what the other two do not carry: the in-service alerts active at
the last evaluation, the audit queue's backlog and the dead letters (bounded reads, see
`reference.service.readings`; null when unknown), so a dashboard left open during an
outage never piles up waiting calls.
"""

from __future__ import annotations

import asyncio
from functools import cache
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from reference.service.components import Components
from reference.service.readings import READ_BOUND_S, dead_letters, queue_backlog

__all__ = ["dashboard_state", "page", "router"]

SECURITY_HEADERS = {
    # the page may talk to this service only, and load nothing from anywhere
    "Content-Security-Policy": (
        "default-src 'none'; connect-src 'self'; script-src 'unsafe-inline'; "
        "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter()


@cache
def page() -> str:
    """The dashboard's HTML (read once)."""
    return files("reference.service").joinpath("dashboard.html").read_text(encoding="utf-8")


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> HTMLResponse:
    return HTMLResponse(page(), headers=SECURITY_HEADERS)


@router.get("/dashboard/state")
async def state(request: Request) -> dict[str, Any]:
    """Active in-service alerts, queue backlog and dead letters (null: unknown now)."""
    components: Components = request.app.state.components
    return await dashboard_state(components)


async def dashboard_state(c: Components, bound_s: float = READ_BOUND_S) -> dict[str, Any]:
    """The readings `/dashboard/state` returns."""
    queue, dead = await asyncio.gather(queue_backlog(c, bound_s), dead_letters(c, bound_s))
    return {
        "alerts": sorted(c.alerts.active) if c.alerts is not None else [],
        "alertsEnabled": c.alerts is not None,
        "queueBacklog": queue,
        "deadLetters": dead,
        # 1 when the queue's Redis cannot be durable; null while no such gauge exists
        "queueUnsafe": c.metrics.registry.get_sample_value("stormproof_audit_queue_unsafe"),
    }
