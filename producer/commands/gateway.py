"""`qfleet gateway` (the HTTP front door) and `qfleet keys` (its API keys and tenants)."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import click

from qfleet.producer.console import ExitCode, fail, handle_errors
from qfleet.tasks.settings import Settings

if TYPE_CHECKING:
    from qfleet.producer.gateway.keys import KeyStore


@click.command()
@click.option("--host", help="Address to bind [QFLEET_GATEWAY_HOST, default 127.0.0.1].")
@click.option("--port", type=int, help="Port [QFLEET_GATEWAY_PORT, default 8000].")
@click.option("--workers", type=int, default=1, show_default=True, help="Gateway processes.")
@click.option("-l", "--log-level", default="info", show_default=True)
def gateway(host: str | None, port: int | None, workers: int, log_level: str) -> None:
    """Serve the OpenAI-compatible HTTP gateway of this fleet.

    \b
    Every endpoint but /healthz and /readyz needs `Authorization: Bearer KEY`:
      qfleet keys create --tenant acme       prints a new key once
      qfleet gateway --port 8000
      curl -H "Authorization: Bearer $KEY" http://127.0.0.1:8000/v1/models
    """
    try:
        import uvicorn
    except ImportError:
        fail("the gateway needs: pip install 'qfleet[gateway]'", ExitCode.UNAVAILABLE)
    settings = Settings()
    uvicorn.run(
        "qfleet.producer.gateway.app:create_app",
        factory=True,
        host=host or settings.gateway_host,
        port=port or settings.gateway_port,
        workers=workers,
        log_level=log_level,
        # The gateway sits behind a proxy at most; it trusts no forwarded headers by default.
        proxy_headers=False,
    )


@click.group()
def keys() -> None:
    """API keys of the gateway: each belongs to one tenant; Redis keeps only its hash."""


def _store() -> KeyStore:
    from qfleet.producer.gateway.keys import KeyStore
    from qfleet.tasks.redisconn import PRODUCER_RETRIES, fleet_redis

    settings = Settings()
    return KeyStore(fleet_redis(settings, retries=PRODUCER_RETRIES), settings.redis_key_prefix)


@keys.command("create")
@click.option("--tenant", required=True, help="Tenant the key acts for (letters, digits, - _).")
@click.option("--name", default="", help="A note to recognise the key by.")
@click.option("--admin", is_flag=True, help="May see every tenant (the console's operators).")
@handle_errors
def keys_create(tenant: str, name: str, admin: bool) -> None:
    """Create a key for TENANT and print it (once: it is not stored)."""
    store = _store()
    try:
        key, record = store.create(tenant, name=name, admin=admin)
    except ValueError as exc:
        fail(str(exc), ExitCode.USAGE)
    click.echo(key)
    click.secho(
        f"key {record.prefix}… for tenant {tenant}{' (admin)' if admin else ''}: "
        "store it now, it cannot be shown again",
        err=True,
        dim=True,
    )


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per key.")
@handle_errors
def keys_list(as_json: bool) -> None:
    """List keys (prefix, tenant, created, revoked) — never the keys themselves."""
    store = _store()
    for record in store.list():
        if as_json:
            click.echo(json.dumps(record.model_dump(exclude={"digest"})))
            continue
        created = dt.datetime.fromtimestamp(record.created_at).isoformat(timespec="seconds")
        state = "revoked" if record.revoked_at else "active"
        admin = " admin" if record.admin else ""
        click.echo(
            f"{record.prefix}…  {record.tenant:<20} {created}  {state}{admin}  {record.name}"
        )


@keys.command("revoke")
@click.argument("prefix")
@handle_errors
def keys_revoke(prefix: str) -> None:
    """Revoke the key whose prefix (as `qfleet keys list` shows it) is PREFIX."""
    store = _store()
    record = store.revoke(prefix.rstrip("…"))
    if record is None:
        fail(f"no key with prefix {prefix}", ExitCode.NOT_FOUND)
    click.echo(f"revoked {record.prefix}… of tenant {record.tenant}")
