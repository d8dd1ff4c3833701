"""Reading kansas's PostgreSQL schema (version 3) into a :class:`Residency`, and the cache file.

:func:`load` reads everything in one ``REPEATABLE READ`` read-only transaction: the shards with
a port (ordered by name), the assignments and rules (a realm's list is ``split_shards`` if set,
else ``[shard]``), and the drain windows still open (``until > now()``). :func:`write_cache` and
:func:`read_cache` keep the last snapshot in a file (written atomically) for a process that
starts while the database is unreachable. :class:`Follower` (in :mod:`.follower`) keeps a
snapshot current.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from typing import TYPE_CHECKING, Any

from .dsn import describe, redact
from .errors import RoutingUnavailable, SchemaMismatch
from .residency import Residency, Window
from .routing import RoutingState

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection
else:
    Connection = Any

log = logging.getLogger("kansas_zulip")

#: The kansas schema version this module reads.
SCHEMA_VERSION = 3
#: The channel kansas's triggers notify.
CHANNEL = "kansas_routing"

_SHARDS = 'SELECT name, port, weight FROM kansas.shards WHERE port IS NOT NULL ORDER BY name COLLATE "C"'
_ASSIGNMENTS = "SELECT realm, coalesce(split_shards, ARRAY[shard]) FROM kansas.realm_assignments"
_RULES = (
    "SELECT priority, pattern, coalesce(split_shards, ARRAY[shard]) FROM kansas.realm_rules"
    " ORDER BY priority"
)
_WINDOWS = (
    "SELECT id, extract(epoch FROM opened_at)::float8, extract(epoch FROM until)::float8,"
    " change, changed_by, before, after FROM kansas.drain_windows WHERE until > now()"
    " ORDER BY opened_at DESC, id DESC"
)


def connect(dsn: str, *, timeout: float = 5.0) -> Connection:
    """An autocommit psycopg2 connection with a connect timeout and TCP keepalives."""
    import psycopg2

    extra: dict[str, Any] = {
        "connect_timeout": max(1, int(round(timeout))),
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }
    try:
        from psycopg2.extensions import parse_dsn

        if "application_name" not in parse_dsn(dsn):
            extra["application_name"] = "kansas_zulip"
    except Exception:  # noqa: BLE001 - psycopg2.connect reports a bad DSN below
        pass
    try:  # a dead peer fails a pending query after 10 s (libpq >= 12)
        conn = psycopg2.connect(dsn, tcp_user_timeout=10_000, **extra)
    except psycopg2.ProgrammingError as e:
        if "tcp_user_timeout" not in str(e):
            raise
        conn = psycopg2.connect(dsn, **extra)
    conn.autocommit = True
    return conn  # type: ignore[no-any-return,unused-ignore]


def _one(cur: Any, sql: str) -> Any:
    cur.execute(sql)
    row = cur.fetchone()
    return None if row is None else row[0]


def load(conn: Connection) -> Residency:
    """Reads the whole routing state and the open drain windows in one consistent snapshot.
    ``conn`` must be in autocommit mode (as :func:`connect` leaves it)."""
    with conn.cursor() as cur:
        cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            cur.execute("SET LOCAL statement_timeout = '30s'")
            if not _one(cur, "SELECT to_regclass('kansas.schema_migrations') IS NOT NULL"):
                raise SchemaMismatch(
                    "the database has no kansas schema: run `kansas db migrate --config FILE`"
                )
            version = _one(cur, "SELECT max(version) FROM kansas.schema_migrations")
            if version != SCHEMA_VERSION:
                raise SchemaMismatch(
                    f"the database has kansas schema version {version}, this kansas_zulip "
                    f"reads version {SCHEMA_VERSION}: "
                    + (
                        "run `kansas db migrate --config FILE`"
                        if (version or 0) < SCHEMA_VERSION
                        else "upgrade kansas_zulip"
                    )
                )
            cur.execute(_SHARDS)
            shards = [(name, port, weight) for name, port, weight in cur.fetchall()]
            cur.execute(_ASSIGNMENTS)
            assignments = {realm: tuple(names) for realm, names in cur.fetchall()}
            cur.execute(_RULES)
            rules = [(p, pattern, tuple(names)) for p, pattern, names in cur.fetchall()]
            cur.execute(_WINDOWS)
            window_rows = cur.fetchall()
            cur.execute("COMMIT")
        except BaseException:
            if not conn.closed:
                try:
                    cur.execute("ROLLBACK")
                except Exception:  # noqa: BLE001 - the original error matters more
                    pass
            raise
    current = RoutingState(shards, assignments, rules)
    windows = []
    for wid, opened_at, until, change, changed_by, before, after in window_rows:
        if isinstance(before, str):
            before = json.loads(before)
        if isinstance(after, str):
            after = json.loads(after)
        windows.append(
            Window(
                id=int(wid),
                opened_at=float(opened_at),
                until=float(until),
                before=RoutingState.from_json(before),
                after=RoutingState.from_json(after),
                change=change,
                changed_by=changed_by,
            )
        )
    residency = Residency(current, windows, loaded_at=time.time(), source="database")
    for what in current.ignored:
        log.debug("kansas routing: skipped %s", what)
    return residency


def load_dsn(dsn: str, *, timeout: float = 5.0) -> Residency:
    """Connects, :func:`load`\\ s, disconnects. Raises :class:`RoutingUnavailable` with a message
    that never holds the DSN's password."""
    try:
        conn = connect(dsn, timeout=timeout)
    except Exception as e:  # noqa: BLE001
        raise RoutingUnavailable(
            f"cannot connect to {describe(dsn)}: {redact(str(e).strip(), dsn)}"
        ) from None
    try:
        return load(conn)
    except SchemaMismatch:
        raise
    except Exception as e:  # noqa: BLE001
        raise RoutingUnavailable(
            f"cannot read kansas routing from {describe(dsn)}: {redact(str(e).strip(), dsn)}"
        ) from None
    finally:
        conn.close()


def serialize(residency: Residency) -> str:
    """The cache file's text for a snapshot."""
    return json.dumps(residency.to_json(), separators=(",", ":"), sort_keys=True)


def write_cache(path: str, text: str) -> None:
    """Writes the cache file atomically (a temporary file in the same directory, renamed)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_cache(path: str) -> Residency:
    """The snapshot a :func:`write_cache` left in ``path``."""
    with open(path, encoding="utf-8") as f:
        obj = json.load(f)
    return Residency.from_json(obj, source=f"cache file {path}")


from .follower import Follower  # noqa: E402  (re-exported: store.Follower)

__all__ = [
    "CHANNEL",
    "SCHEMA_VERSION",
    "Follower",
    "connect",
    "load",
    "load_dsn",
    "read_cache",
    "serialize",
    "write_cache",
]
