"""Keeping a routing snapshot current in a process: a daemon thread following the database.

:class:`Follower` loads the snapshot on first use (synchronously, connect timeout 5 s; falling
back to the cache file when the database is unreachable), then a daemon thread ``LISTEN``\\ s on
``kansas_routing`` and reloads everything on any notification (all pending notifications, then
one reload), at least every ``resync_secs``, and on every reconnect. While the database is
unreachable the last snapshot stays in use; the thread reconnects with backoff (0.25 s doubling
to 30 s). It wakes at least once a second, so a lost connection is noticed within a second.

Fork safety (uWSGI forks Django workers): the thread is started lazily, and restarted when
``os.getpid()`` changed. A child never touches its parent's connection: right after a fork the
inherited socket is pointed at ``/dev/null``, so nothing the child does (not even garbage
collecting the connection object) can disturb the parent's session.

Swapping the snapshot is a plain attribute assignment; readers take the reference once and use
that immutable object, so no lock is taken on the request path and no call queries the database.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
import weakref
from typing import Any

from .dsn import describe, redact
from .errors import RoutingError, RoutingUnavailable
from .residency import Residency

log = logging.getLogger("kansas_zulip")

BACKOFF_INITIAL = 0.25
BACKOFF_MAX = 30.0
#: The listening loop wakes at least this often to notice a lost connection.
WAKE_SECS = 1.0

_FOLLOWERS: weakref.WeakSet[Follower] = weakref.WeakSet()


def _neutralize_fd(fd: int) -> None:
    """Points an inherited descriptor at /dev/null: the child's copy of the parent's socket is
    closed, and writes to it (a connection object's goodbye message) go nowhere."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
    except OSError:  # pragma: no cover
        return
    try:
        os.dup2(null, fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(null)


def _after_fork_in_child() -> None:
    for follower in list(_FOLLOWERS):
        follower._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Follower:
    """A process's routing snapshot, loaded on first use and kept current by a daemon thread."""

    def __init__(
        self,
        dsn: str,
        *,
        cache_path: str | None = None,
        resync_secs: float = 60.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self.cache_path = cache_path
        self.resync_secs = resync_secs
        self.connect_timeout = connect_timeout
        self.target = describe(dsn)
        self._snapshot: Residency | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._conn: Any = None
        self._conn_fd: int | None = None
        self._inherited: list[Any] = []  # parents' connections: never closed, never used
        self._cache_warned = False
        #: Successful loads from the database, and the last error (redacted), for monitoring.
        self.loads = 0
        #: Database sessions the thread opened (each LISTENs and reloads).
        self.sessions = 0
        self.last_error: str | None = None
        self.connected = False
        _FOLLOWERS.add(self)

    # --- the request path ------------------------------------------------------------------

    def snapshot(self) -> Residency:
        """The current snapshot. The first call in a process (or after a fork) may load it
        synchronously; raises :class:`RoutingUnavailable` when there is none to give."""
        snap = self._snapshot
        thread = self._thread
        if snap is not None and self._pid == os.getpid() and thread is not None:
            if thread.is_alive():
                return snap
        return self._slow_snapshot()

    @property
    def current(self) -> Residency | None:
        """The snapshot in use, if any (never loads)."""
        return self._snapshot

    def _slow_snapshot(self) -> Residency:
        if self._pid != os.getpid():
            self._forked()
        with self._lock:
            first_error: str | None = None
            if self._snapshot is None and not self._thread_alive():
                try:
                    self._publish(self._load_once())
                except RoutingError as e:  # unreachable, or a schema this module cannot read
                    first_error = str(e)
                    self.last_error = first_error
                    log.warning("kansas routing: %s", first_error)
                    self._use_cache_file()
            self._ensure_thread()
            snap = self._snapshot
        if snap is None:
            why = first_error or self.last_error or "the database has not been read yet"
            hint = (
                f"; the cache file {self.cache_path} is not usable either"
                if self.cache_path
                else "; no cache file is configured (KANSAS_ROUTING_CACHE)"
            )
            raise RoutingUnavailable(f"no kansas routing snapshot: {why}{hint}")
        return snap

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _use_cache_file(self) -> None:
        if not self.cache_path:
            return
        try:
            from .store import read_cache

            snap = read_cache(self.cache_path)
        except FileNotFoundError:
            log.warning("kansas routing: no cache file at %s", self.cache_path)
            return
        except Exception as e:  # noqa: BLE001
            log.warning("kansas routing: cannot use the cache file %s: %s", self.cache_path, e)
            return
        age = time.time() - snap.loaded_at
        log.warning(
            "kansas routing: using the snapshot in the cache file %s (read from the database "
            "%.0f s ago) until the database answers",
            self.cache_path,
            age,
        )
        if self._snapshot is None:
            self._snapshot = snap

    def _load_once(self) -> Residency:
        from .store import load_dsn

        return load_dsn(self._dsn, timeout=self.connect_timeout)

    # --- publishing a snapshot ---------------------------------------------------------------

    def _publish(self, snap: Residency) -> None:
        self._snapshot = snap  # atomic swap
        self.loads += 1
        if self.cache_path:
            self._write_cache(snap)

    def _write_cache(self, snap: Residency) -> None:
        from .store import serialize, write_cache

        assert self.cache_path is not None
        try:
            write_cache(self.cache_path, serialize(snap))
        except Exception as e:  # noqa: BLE001
            if not self._cache_warned:
                log.warning("kansas routing: cannot write the cache file %s: %s", self.cache_path, e)
                self._cache_warned = True

    # --- the thread --------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread_alive() and self._pid == os.getpid():
            return
        self._stop = threading.Event()
        thread = threading.Thread(
            target=self._run, args=(self._stop,), name="kansas-routing", daemon=True
        )
        self._thread = thread
        thread.start()

    def start(self) -> None:
        """Loads (if needed) and starts following; same as a first :meth:`snapshot` call,
        without raising when nothing could be loaded."""
        try:
            self.snapshot()
        except RoutingUnavailable:
            pass

    def stop(self, timeout: float = 5.0) -> None:
        """Stops the thread (for tests and shutdown); the snapshot stays."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    def _forked(self) -> None:
        """In a child process: forget the parent's thread and connection, never use them."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._thread = None
        self._stop = threading.Event()
        if self._conn_fd is not None:
            _neutralize_fd(self._conn_fd)
        if self._conn is not None:
            self._inherited.append(self._conn)
        self._conn = None
        self._conn_fd = None
        self.connected = False

    def _fail(self, e: BaseException) -> str:
        message = redact(f"{type(e).__name__}: {str(e).strip()}", self._dsn)
        self.last_error = message
        return message

    def _run(self, stop: threading.Event) -> None:
        backoff = BACKOFF_INITIAL
        while not stop.is_set():
            loads = self.loads
            try:
                self._session(stop)
            except Exception as e:  # noqa: BLE001 - keep following whatever happens
                if self.loads > loads:  # this connection worked for a while: start over
                    backoff = BACKOFF_INITIAL
                message = self._fail(e)
                snap = self._snapshot
                keeping = (
                    "keeping the routing read at "
                    + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap.loaded_at))
                    if snap is not None
                    else "no routing loaded yet"
                )
                log.warning(
                    "kansas routing: %s: %s (%s; reconnecting in %.2f s)",
                    self.target,
                    message,
                    keeping,
                    backoff,
                )
            finally:
                self._close()
            if stop.wait(backoff):
                break
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _close(self) -> None:
        conn, self._conn, self._conn_fd = self._conn, None, None
        self.connected = False
        if conn is not None and self._pid == os.getpid():
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def _session(self, stop: threading.Event) -> None:
        """One connection's life: connect, LISTEN, load, then follow until it fails."""
        from .store import CHANNEL, connect, load

        conn = connect(self._dsn, timeout=self.connect_timeout)
        self._conn = conn
        self._conn_fd = conn.fileno()
        self.sessions += 1
        if stop.is_set() or self._pid != os.getpid():
            return
        with conn.cursor() as cur:
            cur.execute(f"LISTEN {CHANNEL}")
        # LISTEN first, then load: a change committed after the load's snapshot is notified.
        snap = load(conn)
        reconnected = self.last_error is not None
        self.connected = True
        self.last_error = None
        self._publish(snap)
        if reconnected:
            log.info("kansas routing: connected to %s again, routing reloaded", self.target)
        last_load = time.monotonic()
        while not stop.is_set():
            # Notifications may already be here, read along with a reload's answers (a change
            # committed during the reload): then do not wait for the socket.
            if not conn.notifies:
                wait = min(WAKE_SECS, last_load + self.resync_secs - time.monotonic())
                if wait > 0:
                    select.select([conn], [], [], wait)
                conn.poll()
            if conn.notifies or time.monotonic() - last_load >= self.resync_secs:
                # Debounce: take every notification already here, then reload once.
                del conn.notifies[:]
                if stop.is_set():
                    return
                self._publish(load(conn))
                last_load = time.monotonic()
