"""`create_app(settings)`: the gateway's FastAPI app, its routers, limits and error handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from qfleet.producer.gateway.errors import error_response, install_error_handlers
from qfleet.producer.gateway.routers import console, health
from qfleet.producer.gateway.state import GatewayState
from qfleet.tasks.settings import Settings

# Paths whose bodies may exceed `gateway_max_body_bytes` (they have limits of their own).
UPLOAD_PATHS = ("/v1/files",)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The gateway for the fleet `settings` describe (default: from the environment)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.gateway = GatewayState.open(settings)
        try:
            yield
        finally:
            app.state.gateway.close()

    app = FastAPI(
        title="qfleet gateway",
        summary="OpenAI-compatible HTTP front door of a qfleet fleet.",
        version="1",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    _limit_bodies(app, settings.gateway_max_body_bytes)
    app.include_router(health.router)
    app.include_router(console.router)
    # Resource routers are added here, one line each (see routers/).
    return app


def _limit_bodies(app: FastAPI, limit: int) -> None:
    """Answer 413 before reading a body over `limit` bytes (by its Content-Length)."""

    @app.middleware("http")
    async def limit_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if (
            length is not None
            and length.isdigit()
            and int(length) > limit
            and not request.url.path.startswith(UPLOAD_PATHS)
        ):
            return error_response(
                413,
                f"request body of {length} bytes is over the limit of {limit} "
                "(QFLEET_GATEWAY_MAX_BODY_BYTES)",
                code="body_too_large",
            )
        return await call_next(request)
