"""Redis URLs as qfleet uses them: the password put in, TLS that verifies, and a loggable form."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import SecretStr


def with_password(url: str, password: SecretStr | None) -> str:
    """`url` with `password` in it (percent-encoded), for clients that read it only there."""
    if password is None:
        return url
    parts = urlsplit(url)
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{quote(user, safe='')}:{quote(password.get_secret_value(), safe='')}@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def with_tls_defaults(url: str) -> str:
    """A `rediss://` URL that verifies the server's certificate unless it says otherwise.

    Without `ssl_cert_reqs` kombu connects the broker with CERT_NONE (TLS that trusts anyone)
    and Celery's result backend refuses the URL; `ssl_cert_reqs=required` fixes both. An
    explicit `ssl_cert_reqs` (e.g. `none` for a test server) is kept.
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss" or "ssl_cert_reqs=" in parts.query:
        return url
    query = "&".join(filter(None, [parts.query, "ssl_cert_reqs=required"]))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***`, safe to log or print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}{port}", parts.path, parts.query, ""))
