"""The FastAPI application of the reference service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from reference.config import Settings
from reference.service.components import Components
from reference.service.routes import router

MAX_BODY_BYTES = 256 * 1024


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

    @app.middleware("http")
    async def limit_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return JSONResponse(
                {"detail": f"request body larger than {MAX_BODY_BYTES} bytes"}, status_code=413
            )
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    return app
