"""`create_app(settings)`: the gateway's FastAPI app, its routers, limits and error handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from qfleet.producer.gateway.bodylimit import BodyLimit
from qfleet.producer.gateway.errors import install_error_handlers
from qfleet.producer.gateway.routers import (
    batches,
    chat,
    console,
    embeddings,
    files,
    health,
    jobs,
    knowledge,
    models,
)
from qfleet.producer.gateway.runner import BatchRunner
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
        # Each gateway process also follows batches and sends webhooks (never in a handler).
        runner = BatchRunner(settings).start() if settings.gateway_follow_batches else None
        try:
            yield
        finally:
            if runner is not None:
                runner.stop()
            await app.state.gateway.aclose()

    app = FastAPI(
        title="qfleet gateway",
        summary="OpenAI-compatible HTTP front door of a qfleet fleet.",
        version="1",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=settings.gateway_max_body_bytes, exempt=UPLOAD_PATHS)
    app.include_router(health.router)
    app.include_router(chat.router)
    app.include_router(models.router)
    app.include_router(embeddings.router)
    app.include_router(jobs.router)
    app.include_router(knowledge.router)
    app.include_router(console.router)
    app.include_router(files.router)
    app.include_router(batches.router)
    return app
