"""Test fixtures: a throwaway PostgreSQL server, a fresh database per test module with kansas's
schema applied from src/store/migrations, and tiny stand-ins for Zulip's Realm and UserProfile.

The server is ``KANSAS_TEST_DATABASE_URL`` when set (a role that may CREATE DATABASE), else one
started here with ``initdb`` + ``pg_ctl`` on a free loopback port in a temporary directory (as the
``postgres`` user when running as root). If neither works the tests fail, saying how to fix it.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
MIGRATIONS = REPO / "src" / "store" / "migrations"
SECRET_USER = "kz_secret"
SECRET_PASSWORD = "Sup3r-S3cret-Pa55word"


# --- stand-ins for Zulip's models -------------------------------------------------------------


@dataclass
class Realm:
    host: str
    id: int = 1


@dataclass
class UserProfile:
    id: int
    realm: Realm = field(default_factory=lambda: Realm("chat.example.com"))


# --- PostgreSQL ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bindir() -> str | None:
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)

    def version(path: str) -> tuple[int, ...]:
        m = re.search(r"/postgresql/([\d.]+)/bin", path)
        return tuple(int(x) for x in m.group(1).split(".")) if m else (0,)

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    return os.path.dirname(found[-1]) if found else None


HOW_TO_FIX = (
    "install the PostgreSQL server (apt-get install postgresql; its binaries are found on PATH "
    "or in /usr/lib/postgresql/*/bin), or set KANSAS_TEST_DATABASE_URL to a PostgreSQL server "
    "URL whose role may CREATE DATABASE"
)


class PgServer:
    """A PostgreSQL server for the tests: ``admin_dsn`` connects as a superuser (or the given
    role). ``local`` servers can be stopped and started (``pg_ctl stop -m fast``)."""

    def __init__(self) -> None:
        self.local = False
        self.admin_dsn = ""
        self.host = "127.0.0.1"
        self.port = 0
        self.tmp: str | None = None
        self.bindir: str | None = None
        self.as_postgres = os.geteuid() == 0

    # local servers
    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.bindir is not None
        cmd = [os.path.join(self.bindir, args[0]), *args[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def init_local(self) -> None:
        self.bindir = _pg_bindir()
        if self.bindir is None:
            pytest.fail(f"cannot start PostgreSQL: no initdb found: {HOW_TO_FIX}", pytrace=False)
        self.tmp = tempfile.mkdtemp(prefix="kansas-zulip-pg-")
        if self.as_postgres:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail(
                    "cannot start PostgreSQL as root: PostgreSQL refuses to run as root and there "
                    f"is no 'postgres' user (useradd --system postgres); or {HOW_TO_FIX}",
                    pytrace=False,
                )
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
        self.port = free_port()
        data = os.path.join(self.tmp, "data")
        try:
            self._run(
                "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                "--locale=C", "--no-sync",
            )
        except (subprocess.CalledProcessError, OSError) as e:
            out = getattr(e, "stderr", "") or str(e)
            pytest.fail(f"cannot start PostgreSQL: initdb failed: {out.strip()}\n{HOW_TO_FIX}",
                        pytrace=False)
        with open(os.path.join(data, "pg_hba.conf"), "w") as f:
            f.write(
                "local all all trust\n"
                f"host all {SECRET_USER} 127.0.0.1/32 scram-sha-256\n"
                "host all all 127.0.0.1/32 trust\n"
            )
        with open(os.path.join(data, "postgresql.conf"), "a") as f:
            f.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.tmp}'\nfsync = off\n"
                "synchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n"
            )
        if self.as_postgres:
            subprocess.run(["chown", "-R", "postgres:postgres", self.tmp], check=True)
        self.local = True
        self.admin_dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        self.start()

    def start(self) -> None:
        assert self.local and self.tmp
        data = os.path.join(self.tmp, "data")
        r = self._run("pg_ctl", "-D", data, "-l", os.path.join(self.tmp, "log"), "-w",
                      "-t", "60", "start", check=False)
        if r.returncode != 0:
            log = ""
            try:
                log = Path(self.tmp, "log").read_text()[-2000:]
            except OSError:
                pass
            pytest.fail(f"cannot start PostgreSQL: pg_ctl start failed: {r.stderr.strip()}\n"
                        f"{log}\n{HOW_TO_FIX}", pytrace=False)

    def stop(self) -> None:
        assert self.local and self.tmp
        self._run("pg_ctl", "-D", os.path.join(self.tmp, "data"), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        if self.local and self.tmp:
            self._run("pg_ctl", "-D", os.path.join(self.tmp, "data"), "-m", "immediate", "-w",
                      "stop", check=False)
            shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = PgServer()
    url = os.environ.get("KANSAS_TEST_DATABASE_URL")
    if url:
        import psycopg2
        from psycopg2.extensions import parse_dsn

        server.admin_dsn = url
        params = parse_dsn(url)
        server.host = params.get("host", "127.0.0.1")
        server.port = int(params.get("port", 5432))
        try:
            psycopg2.connect(url, connect_timeout=10).close()
        except psycopg2.Error as e:
            pytest.fail(f"cannot connect to KANSAS_TEST_DATABASE_URL: {str(e).strip()}",
                        pytrace=False)
    else:
        server.init_local()
    try:
        yield server
    finally:
        server.close()


def dsn_for(base: str, **params: Any) -> str:
    from psycopg2.extensions import make_dsn

    return str(make_dsn(base, **params))


def admin_exec(dsn: str, *statements: str) -> None:
    import psycopg2

    conn = psycopg2.connect(dsn, connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
    finally:
        conn.close()


def apply_schema(dsn: str) -> None:
    """What `kansas db migrate` does to a fresh database, from the migration files."""
    import psycopg2

    files = sorted(MIGRATIONS.glob("*.sql"))
    assert [f.name[:4] for f in files] == ["0001", "0002", "0003"], files
    conn = psycopg2.connect(dsn, connect_timeout=10)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("CREATE SCHEMA IF NOT EXISTS kansas")
            cur.execute(
                "CREATE TABLE IF NOT EXISTS kansas.schema_migrations (version integer PRIMARY KEY,"
                " description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for f in files:
                cur.execute(f.read_text())
                cur.execute(
                    "INSERT INTO kansas.schema_migrations (version, description) VALUES (%s, %s)",
                    (int(f.name[:4]), f.stem),
                )
    finally:
        conn.close()


@dataclass
class Database:
    """A fresh database on the test server."""

    server: PgServer
    name: str
    dsn: str

    def execute(self, sql: str, params: Any = None) -> None:
        import psycopg2

        conn = psycopg2.connect(self.dsn, connect_timeout=10)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(sql, params)
        finally:
            conn.close()

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        import psycopg2

        conn = psycopg2.connect(self.dsn, connect_timeout=10)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        finally:
            conn.close()


def _new_database(server: PgServer, module: str) -> Database:
    name = f"kz_{re.sub(r'[^a-z0-9]', '_', module.lower())[-30:]}_{uuid.uuid4().hex[:8]}"
    admin_exec(server.admin_dsn, f'CREATE DATABASE "{name}"')
    return Database(server, name, dsn_for(server.admin_dsn, dbname=name))


def _drop_database(db: Database) -> None:
    try:
        admin_exec(db.server.admin_dsn, f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
    except Exception:  # noqa: BLE001 - the server may be gone already
        pass


@pytest.fixture(scope="module")
def empty_db(pg_server: PgServer, request: pytest.FixtureRequest) -> Iterator[Database]:
    """A fresh database with nothing in it (kansas migrates it itself)."""
    db = _new_database(pg_server, request.module.__name__ + "_empty")
    try:
        yield db
    finally:
        _drop_database(db)


@pytest.fixture(scope="module")
def kansas_db(pg_server: PgServer, request: pytest.FixtureRequest) -> Iterator[Database]:
    """A fresh database with kansas's schema (version 3) applied from the migration files."""
    db = _new_database(pg_server, request.module.__name__)
    apply_schema(db.dsn)
    try:
        yield db
    finally:
        _drop_database(db)


# --- a TCP relay: an unreachable database without stopping a shared server ----------------------


class Relay:
    """Forwards 127.0.0.1:port to a target; :meth:`cut` drops every connection and refuses new
    ones, :meth:`restore` accepts again on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.restore()

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self._listener is not listener:  # cut meanwhile
                client.close()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        if self._listener is not None:
            try:  # wakes the thread blocked in accept() (close() alone does not, on Linux)
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def wait_for(predicate: Any, timeout: float, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
