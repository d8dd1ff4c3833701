"""A drop-in for Zulip's ``zerver/tornado/sharding.py`` that routes by kansas's database.

Zulip's functions keep their names and signatures; their answers come from kansas's routing
(docs/residency.md) instead of ``/etc/zulip/sharding.json``:

- :func:`get_realm_tornado_ports`: the realm's *current* ports, so Zulip's unpatched
  ``get_user_id_tornado_port(ports, user_id)`` picks the user's current port (registration);
- :func:`get_user_tornado_port`: the user's current port.

And the functions the small Zulip patches call while a realm drains from one shard to another:

- :func:`event_port_user_map`: for ``send_event``, every user goes to *every* resident port;
- :func:`user_resident_ports` / :func:`port_serves_user`: Tornado's "is this user mine?" check.

Settings come from ``django.conf.settings`` when Django is importable and configured
(``KANSAS_DATABASE_URL``, else a DSN built from ``DATABASES["default"]``; ``KANSAS_ROUTING_CACHE``;
``TORNADO_PROCESSES``), unless :func:`configure` was called, which then wins.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from . import dsn as _dsn
from .errors import NoShard, RoutingError
from .follower import Follower
from .residency import Residency
from .routing import InvalidHost, normalize_host

__all__ = [
    "configure",
    "event_port_user_map",
    "get_realm_tornado_ports",
    "get_tornado_port",
    "get_tornado_uri",
    "get_tornado_url",
    "get_user_id_tornado_port",
    "get_user_tornado_port",
    "notify_tornado_queue_name",
    "port_serves_user",
    "realm_resident_ports",
    "routing_snapshot",
    "tornado_return_queue_name",
    "user_id_resident_ports",
    "user_resident_ports",
]


class RealmLike(Protocol):
    """What is used of Zulip's ``Realm``."""

    @property
    def host(self) -> str: ...


class UserLike(Protocol):
    """What is used of Zulip's ``UserProfile``."""

    @property
    def id(self) -> int: ...

    @property
    def realm(self) -> RealmLike: ...


U = TypeVar("U", int, Mapping[str, Any])


@dataclass(frozen=True)
class _Settings:
    dsn: str | None
    cache_path: str | None
    tornado_processes: int
    resync_secs: float
    residency: Residency | None  # a fixed snapshot (tests, scripts): no database


_configured: _Settings | None = None
_active: tuple[_Settings, Follower | None] | None = None
_lock = threading.Lock()


def configure(
    dsn: str | None = None,
    *,
    cache_path: str | None = None,
    tornado_processes: int = 1,
    resync_secs: float = 60.0,
    residency: Residency | None = None,
) -> None:
    """Configures the module without Django (tests, scripts); takes precedence over Django's
    settings. ``dsn``: the database holding kansas's schema; or ``residency``: a fixed snapshot.
    Stops the follower of any previous configuration."""
    global _configured
    if dsn is None and residency is None:
        raise ValueError("configure() needs a dsn or a residency")
    with _lock:
        _configured = _Settings(dsn, cache_path, int(tornado_processes), resync_secs, residency)
        _reset_locked()


def reset() -> None:
    """Forgets any configuration and stops following (tests)."""
    global _configured
    with _lock:
        _configured = None
        _reset_locked()


def _reset_locked() -> None:
    global _active
    if _active is not None and _active[1] is not None:
        _active[1].stop()
    _active = None


def _django_settings() -> _Settings | None:
    try:
        from django.conf import settings  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    try:
        if not settings.configured:
            return None
        url = getattr(settings, "KANSAS_DATABASE_URL", None)
        if not url:
            url = _dsn.from_django(settings.DATABASES["default"])
        return _Settings(
            dsn=url,
            cache_path=getattr(settings, "KANSAS_ROUTING_CACHE", None) or None,
            tornado_processes=int(getattr(settings, "TORNADO_PROCESSES", 1)),
            resync_secs=float(getattr(settings, "KANSAS_ROUTING_RESYNC_SECS", 60.0)),
            residency=None,
        )
    except Exception as e:  # noqa: BLE001 - an odd settings module must not leak secrets
        raise RoutingError(f"cannot read kansas settings from Django: {type(e).__name__}") from None


def _settings() -> _Settings:
    if _configured is not None:
        return _configured
    found = _django_settings()
    if found is None:
        raise RoutingError(
            "kansas_zulip is not configured: set KANSAS_DATABASE_URL (or DATABASES) in Django's "
            "settings, or call kansas_zulip.sharding.configure(dsn=...)"
        )
    return found


def _follower() -> tuple[_Settings, Follower | None]:
    global _active
    active = _active
    if active is not None:
        return active
    with _lock:
        if _active is None:
            s = _settings()
            follower = (
                None
                if s.residency is not None
                else Follower(s.dsn or "", cache_path=s.cache_path, resync_secs=s.resync_secs)
            )
            _active = (s, follower)
        return _active


def routing_snapshot() -> Residency:
    """The routing snapshot in use (loaded on first use, then kept current in the background).
    Raises :class:`~kansas_zulip.errors.RoutingUnavailable` when there is none."""
    s, follower = _follower()
    if follower is None:
        assert s.residency is not None
        return s.residency
    return follower.snapshot()


def _realm_key(realm: RealmLike) -> str:
    try:
        return normalize_host(realm.host)
    except InvalidHost as e:
        raise RoutingError(f"realm host {realm.host!r} is not a valid host name: {e}") from None


def _no_shard(realm: str) -> NoShard:
    return NoShard(
        f"realm {realm} has no Tornado shard: no kansas assignment or rule matches it and every "
        "shard's weight is 0 (kansas assign REALM SHARD, or kansas weight SHARD W)"
    )


def _user_id(user: int | Mapping[str, Any]) -> int:
    return user if isinstance(user, int) else int(user["id"])


# --- Zulip's functions ---------------------------------------------------------------------


def get_realm_tornado_ports(realm: RealmLike) -> list[int]:
    """The realm's current Tornado ports (several: split by user)."""
    key = _realm_key(realm)
    ports = routing_snapshot().current_ports(key)
    if ports is None:
        raise _no_shard(key)
    return ports


def get_user_id_tornado_port(realm_ports: list[int], user_id: int) -> int:
    """Zulip's user split: ``realm_ports[user_id % len(realm_ports)]``."""
    return realm_ports[user_id % len(realm_ports)]


def get_user_tornado_port(user: UserLike) -> int:
    """The user's current Tornado port: where a new queue is registered."""
    return get_user_id_tornado_port(get_realm_tornado_ports(user.realm), user.id)


def get_tornado_port(realm: RealmLike) -> int:
    """Older Zulip: the realm's (first) current port."""
    return get_realm_tornado_ports(realm)[0]


def get_tornado_uri(realm: RealmLike) -> str:
    """Older Zulip: the URL of the realm's (first) current Tornado."""
    return get_tornado_url(get_tornado_port(realm))


def get_tornado_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _tornado_processes() -> int:
    return _follower()[0].tornado_processes


def notify_tornado_queue_name(port: int) -> str:
    if _tornado_processes() == 1:
        return "notify_tornado"
    return f"notify_tornado_port_{port}"


def tornado_return_queue_name(port: int) -> str:
    if _tornado_processes() == 1:
        return "tornado_return"
    return f"tornado_return_port_{port}"


# --- residency: what the Zulip patches call --------------------------------------------------


def realm_resident_ports(realm: RealmLike, now: float | None = None) -> list[int]:
    """Every port the realm's queues may live on now: current ones first, each port once."""
    key = _realm_key(realm)
    out: list[int] = []
    for r in routing_snapshot().resident(key, now):
        if r.port not in out:
            out.append(r.port)
    if not out:
        raise _no_shard(key)
    return out


def user_id_resident_ports(realm: RealmLike, user_id: int, now: float | None = None) -> list[int]:
    """The ports a user's queues may live on now: the current one first, each port once."""
    key = _realm_key(realm)
    out: list[int] = []
    for port in routing_snapshot().user_resident(key, user_id, now):
        if port not in out:
            out.append(port)
    if not out:
        raise _no_shard(key)
    return out


def user_resident_ports(user: UserLike) -> list[int]:
    """The ports ``user``'s queues may live on now (Tornado forwards a ``DELETE`` to them)."""
    return user_id_resident_ports(user.realm, user.id)


def port_serves_user(port: int, user: UserLike) -> bool:
    """Tornado's check: whether the Tornado on ``port`` serves ``user`` now (one of the user's
    resident ports). When not, Tornado redirects to :func:`get_user_tornado_port`."""
    key = _realm_key(user.realm)
    return port in routing_snapshot().user_resident(key, user.id)


def event_port_user_map(realm: RealmLike, users: Iterable[U]) -> dict[int, list[U]]:
    """Where ``send_event`` publishes an event: port -> the users (ints or dicts with ``"id"``,
    passed through unchanged) whose queues may live there. Every user goes to every one of its
    resident ports. Like Zulip's ``send_event_rollback_unsafe``, a realm on one port gets that
    port with every user, even an empty list."""
    key = _realm_key(realm)
    snap = routing_snapshot()
    now = time.time()
    users = list(users)
    current = snap.current_ports(key)
    if current is None and not snap.draining(now):
        raise _no_shard(key)
    if not snap.draining(now):
        assert current is not None
        if len(current) == 1:
            return {current[0]: users}
        split: dict[int, list[U]] = {}
        for user in users:
            split.setdefault(current[_user_id(user) % len(current)], []).append(user)
        return split
    result: dict[int, list[U]] = {}
    if current is not None and len(current) == 1:
        result[current[0]] = []
    for user in users:
        ports = snap.user_resident(key, _user_id(user), now)
        if not ports:
            raise _no_shard(key)
        seen: set[int] = set()
        for port in ports:
            if port not in seen:
                seen.add(port)
                result.setdefault(port, []).append(user)
    return result
