"""Connection strings: building one from Django's settings, describing and redacting them.

A DSN may hold a password. Nothing here ever puts it in a message: :func:`describe` gives
``host:port/dbname`` for logs and :func:`redact` removes the DSN and its password from any text
(an error message from libpq may quote a malformed connection string).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

# libpq connection parameters Django's OPTIONS may carry through to a connection string.
_LIBPQ_OPTIONS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
    "target_session_attrs",
    "gssencmode",
    "passfile",
    "service",
    "options",
)


def quote_value(value: str) -> str:
    """A libpq key=value value, single-quoted with ``\\`` and ``'`` escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def from_django(db: Mapping[str, Any]) -> str:
    """A libpq ``key=value`` DSN from a Django ``DATABASES`` entry (NAME, USER, PASSWORD, HOST,
    PORT, and libpq parameters in OPTIONS such as ``sslmode``). Empty values are left out, so an
    empty HOST means libpq's default (the Unix socket), as in Django."""
    parts: list[str] = []
    for key, setting in (
        ("dbname", "NAME"),
        ("user", "USER"),
        ("password", "PASSWORD"),
        ("host", "HOST"),
        ("port", "PORT"),
    ):
        value = db.get(setting)
        if value not in (None, ""):
            parts.append(f"{key}={quote_value(str(value))}")
    options = db.get("OPTIONS") or {}
    for key in _LIBPQ_OPTIONS:
        value = options.get(key)
        if value not in (None, ""):
            parts.append(f"{key}={quote_value(str(value))}")
    return " ".join(parts)


_KV_PASSWORD = re.compile(r"""password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']+)""", re.IGNORECASE)


def _secrets(dsn: str) -> list[str]:
    """The DSN itself and every form of its password that could appear in a message."""
    found = [dsn]
    if "://" in dsn:
        try:
            parts = urlsplit(dsn)
            if parts.password:
                found += [parts.password, unquote(parts.password)]
            found.append(parts.netloc)
        except ValueError:
            m = re.search(r"://[^/@]*?:([^@/]*)@", dsn)
            if m:
                found += [m.group(1), unquote(m.group(1))]
        for m in re.finditer(r"[?&]password=([^&]*)", dsn):
            found += [m.group(1), unquote(m.group(1))]
    for m in _KV_PASSWORD.finditer(dsn):
        raw = m.group(1)
        found.append(raw)
        if raw.startswith("'"):
            found.append(re.sub(r"\\(.)", r"\1", raw[1:-1]))
    return sorted({s for s in found if s}, key=len, reverse=True)


def redact(text: str, dsn: str | None) -> str:
    """``text`` with the DSN and its password replaced by ``***``."""
    if not dsn:
        return text
    for secret in _secrets(dsn):
        text = text.replace(secret, "***")
    return text


def describe(dsn: str) -> str:
    """Where a DSN points, for logs: ``host:port/dbname`` (never user or password)."""
    params: dict[str, str] = {}
    try:
        from psycopg2.extensions import parse_dsn

        params = dict(parse_dsn(dsn))
    except Exception:  # noqa: BLE001 - a malformed DSN still gets a description
        if "://" in dsn:
            try:
                parts = urlsplit(dsn)
                params = {
                    "host": parts.hostname or "",
                    "port": str(parts.port or ""),
                    "dbname": parts.path.lstrip("/"),
                }
            except ValueError:
                return "PostgreSQL (unparsable connection string)"
    host = params.get("host") or params.get("hostaddr") or "local socket"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or "(default database)"
    return f"PostgreSQL at {host}:{port}/{dbname}"
