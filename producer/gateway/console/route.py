"""The console's route class: its errors in the OpenAI shape and its security headers.

Every console response (the page, its assets, the JSON API, error bodies included) carries a
Content-Security-Policy that allows scripts, styles and requests to this origin only, so even a
mistake in the page could not load or run anything from elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Final

from fastapi import Request, Response
from fastapi.routing import APIRoute
from redis.exceptions import RedisError

from qfleet.producer.gateway.errors import ApiError, error_response
from qfleet.tasks.errors import BrokerUnavailableError, InvalidJobError
from qfleet.tasks.settings import redact_url

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


class ConsoleRoute(APIRoute):
    """A console route: failures answered in the OpenAI error shape, security headers on all."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_headers(request: Request) -> Response:
            try:
                response = await handler(request)
            except ApiError as exc:
                response = error_response(
                    exc.status, _outage(request, exc), param=exc.param, code=exc.code,
                    headers=exc.headers,
                )  # fmt: skip
            except InvalidJobError as exc:
                response = error_response(400, str(exc), code="invalid_job")
            except (RedisError, BrokerUnavailableError) as exc:
                message = f"{type(exc).__name__}: {exc}"
                response = error_response(
                    503, f"Redis at {_redis(request)} does not answer ({message})",
                    code="redis_unavailable",
                )  # fmt: skip
            response.headers.update(SECURITY_HEADERS)
            return response

        return with_headers


def _redis(request: Request) -> str:
    return redact_url(request.app.state.gateway.settings.broker)


def _outage(request: Request, exc: ApiError) -> str:
    """A 503 names Redis and where it is (the key check fails first when Redis is down)."""
    if exc.status != 503 or exc.message.startswith("Redis at"):
        return exc.message
    return f"Redis at {_redis(request)} does not answer ({exc.message})"
