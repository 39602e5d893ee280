"""A request body over the limit is answered 413 before it is read.

A declared body (Content-Length) is judged by its header alone; a chunked one is read up to the
limit and answered 413 the moment it passes it, or handed on whole (the routes read it whole
anyway). Plain ASGI rather than `@app.middleware("http")`: Starlette's `BaseHTTPMiddleware`
pipes every response through a memory stream and a task group, a cost paid on each chunk of
every stream.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qfleet.producer.gateway.errors import error_response


class BodyLimit:
    """ASGI middleware: 413 for a body over `limit` bytes, except under `exempt` paths."""

    def __init__(self, app: ASGIApp, *, limit: int, exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self.limit = limit
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"")
        if length.isdigit():
            if int(length) > self.limit:
                await self._refuse(int(length), scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            await self.app(scope, receive, send)
            return
        # Chunked: no length to judge by, so count what arrives and stop at the limit.
        buffered: list[Message] = []
        size = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(size, scope, receive, send, read_so_far=True)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)

    async def _refuse(
        self, size: int, scope: Scope, receive: Receive, send: Send, *, read_so_far: bool = False
    ) -> None:
        amount = f"more than {self.limit}" if read_so_far else str(size)
        response = error_response(
            413,
            f"request body of {amount} bytes is over the limit of {self.limit} "
            "(QFLEET_GATEWAY_MAX_BODY_BYTES)",
            code="body_too_large",
        )
        await response(scope, receive, send)
