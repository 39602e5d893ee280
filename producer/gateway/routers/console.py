"""`/console`: the web console's page, its static assets, and its JSON API (`/console/api/...`).

The page is three static files shipped in the package (no build step, nothing from a CDN). Every
console response carries a Content-Security-Policy that allows scripts, styles and requests to
this origin only, and the page renders every value with `textContent`, never as HTML.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Final

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel

from qfleet.producer.gateway.auth import CallerDep
from qfleet.producer.gateway.console import deadletters, fleet, kb, playground, runs
from qfleet.producer.gateway.console.route import ConsoleRoute
from qfleet.producer.gateway.errors import ApiError

STATIC_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


class WhoAmI(BaseModel):
    """The key the page logged in with."""

    tenant: str
    admin: bool
    key_prefix: str


router = APIRouter(route_class=ConsoleRoute, tags=["console"])
api = APIRouter(route_class=ConsoleRoute)
for module in (fleet, runs, deadletters, kb, playground):
    api.include_router(module.router)


@api.get("/whoami")
def whoami(caller: CallerDep) -> WhoAmI:
    """Who the page's key belongs to (the page checks a key with this at login)."""
    return WhoAmI(tenant=caller.tenant, admin=caller.admin, key_prefix=caller.key_prefix)


router.include_router(api, prefix="/console/api")


def _static_dir() -> Path:
    return Path(str(resources.files("qfleet.producer.gateway.console") / "static"))


STATIC_FILES: Final = frozenset(p.name for p in _static_dir().iterdir() if p.suffix in STATIC_TYPES)


@router.get("/console", include_in_schema=False)
def console_root() -> RedirectResponse:
    """The page lives at `/console/` so that its relative asset paths resolve."""
    return RedirectResponse("/console/", status_code=307)


@router.get("/console/", include_in_schema=False)
def console_page() -> FileResponse:
    """The console's single page (no key needed: it asks for one and holds no data)."""
    return _asset("index.html")


@router.get("/console/static/{name}", include_in_schema=False)
def console_asset(name: str) -> FileResponse:
    """One of the page's shipped assets (a fixed list: no path reaches outside the folder)."""
    if name not in STATIC_FILES:
        raise ApiError(404, "no such console asset", code="not_found")
    return _asset(name)


def _asset(name: str) -> FileResponse:
    path = _static_dir() / name
    return FileResponse(
        path, media_type=STATIC_TYPES[path.suffix], headers={"cache-control": "no-cache"}
    )
