"""A request body over the limit is answered 413 before it is read (by its Content-Length).

Plain ASGI rather than `@app.middleware("http")`: Starlette's `BaseHTTPMiddleware` pipes every
response through a memory stream and a task group, a cost paid on each chunk of every stream.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from qfleet.producer.gateway.errors import error_response


class BodyLimit:
    """ASGI middleware: 413 for a declared body over `limit` bytes, except under `exempt` paths."""

    def __init__(self, app: ASGIApp, *, limit: int, exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self.limit = limit
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not str(scope.get("path", "")).startswith(self.exempt):
            length = dict(scope.get("headers") or []).get(b"content-length", b"")
            if length.isdigit() and int(length) > self.limit:
                response = error_response(
                    413,
                    f"request body of {int(length)} bytes is over the limit of {self.limit} "
                    "(QFLEET_GATEWAY_MAX_BODY_BYTES)",
                    code="body_too_large",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
