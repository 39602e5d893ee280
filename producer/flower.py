"""Starting Flower for a fleet: loopback, basic auth from settings, the secret kept off `ps`.

Flower reads any option from a `FLOWER_<OPTION>` environment variable, so the credentials travel
as `FLOWER_BASIC_AUTH` in the child's environment (readable by its owner only) instead of on a
command line every local user can list. OAuth is configured the same way (docs/operations.md).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from qfleet.tasks.errors import PermanentError
from qfleet.tasks.settings import Settings

# Flower's own switch; we set it only to say the API is closed unless authenticated.
BASIC_AUTH_ENV = "FLOWER_BASIC_AUTH"


class FlowerConfigError(PermanentError):
    """Flower cannot be started safely with these settings."""

    code = "flower_config"


def basic_auth(settings: Settings) -> str:
    """`user:password` for Flower's basic auth; refuses a missing or unusable password."""
    if settings.flower_password is None or not settings.flower_password.get_secret_value():
        raise FlowerConfigError(
            "Flower needs a password: set QFLEET_FLOWER_PASSWORD (and QFLEET_FLOWER_USER), or "
            "pass --no-auth to run it open to anyone who can reach its port"
        )
    password = settings.flower_password.get_secret_value()
    # Flower splits FLOWER_BASIC_AUTH on commas (several users) and the user name ends at ':'.
    if "," in password or ":" in settings.flower_user or "," in settings.flower_user:
        raise FlowerConfigError(
            "QFLEET_FLOWER_PASSWORD must not contain ',' and QFLEET_FLOWER_USER neither ',' nor ':'"
        )
    return f"{settings.flower_user}:{password}"


def flower_command(address: str, port: int, extra: tuple[str, ...] = ()) -> list[str]:
    """The argv that runs Flower on `address:port` for the producer-side app (no secrets in it)."""
    return [
        sys.executable, "-m", "celery", "-A", "qfleet.producer.celeryapp", "flower",
        f"--address={address}", f"--port={port}", *extra,
    ]  # fmt: skip


def flower_environment(
    settings: Settings, *, no_auth: bool, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment for Flower: `base` (ours by default) plus the basic-auth credentials."""
    env = dict(os.environ if base is None else base)
    env.pop(BASIC_AUTH_ENV, None)
    if not no_auth:
        env[BASIC_AUTH_ENV] = basic_auth(settings)
    return env
