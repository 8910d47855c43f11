"""The FastAPI application of the reference service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reference.config import Settings
from reference.service.components import Components
from reference.service.dashboard import router as dashboard_router
from reference.service.routes import router

MAX_BODY_BYTES = 256 * 1024


class BodyLimit:
    """Refuses request bodies over `max_bytes` with 413, declared or not.

    A Content-Length over the limit is refused before the body is read; a chunked body
    (no Content-Length) is counted as it is received and cut off at the limit, so it can
    neither be buffered whole in memory nor reach a route.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"request body larger than {self.max_bytes} bytes"
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI turns an HTTPException raised while reading the body into
                    # the response; anything else would become a 400 "error parsing".
                    raise HTTPException(413, detail)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except HTTPException as exc:  # raised outside a route (no handler caught it)
            if exc.status_code != 413 or started:
                raise
            await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)


def create_app(settings: Settings) -> FastAPI:
    """The service: components are built and started in the lifespan, stopped after."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        components = await Components.build(settings)
        app.state.components = components
        await components.start()
        try:
            yield
        finally:
            await components.stop()

    app = FastAPI(
        title="stormproof reference service",
        version="0.1.0",
        lifespan=lifespan,
        description="Hybrid L1/L2 cache with a circuit breaker and a resilient audit trail.",
    )
    app.include_router(router)
    app.include_router(dashboard_router)

    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    return app
