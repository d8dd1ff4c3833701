"""Against a live PostgreSQL: loading, following changes, drain windows, outages, the cache file,
fork safety, and the password never reaching a log or an error."""

from __future__ import annotations

import gc
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    SECRET_PASSWORD,
    SECRET_USER,
    Database,
    PgServer,
    Realm,
    Relay,
    UserProfile,
    dsn_for,
    free_port,
    wait_for,
)
from kansas_zulip import sharding, store
from kansas_zulip.errors import RoutingUnavailable, SchemaMismatch
from kansas_zulip.follower import Follower
from kansas_zulip.residency import ResidentShard

SHARDS = [("s0", 9800, 1.0), ("s1", 9801, 1.0), ("s2", 9802, 1.0)]

_followers: list[Follower] = []


def follower(dsn: str, **kw: Any) -> Follower:
    f = Follower(dsn, **kw)
    _followers.append(f)
    return f


@pytest.fixture(autouse=True)
def _stop_followers() -> Iterator[None]:
    yield
    while _followers:
        _followers.pop().stop()
    sharding.reset()


def set_state(db: Database, shards: list[tuple[str, int | None, float]] = SHARDS,
              assignments: dict[str, list[str]] | None = None,
              rules: list[tuple[int, str, list[str]]] | None = None) -> None:
    sql = ["TRUNCATE kansas.shards, kansas.realm_assignments, kansas.realm_rules, "
           "kansas.drain_windows"]
    params: list[Any] = []
    for name, port, weight in shards:
        sql.append("INSERT INTO kansas.shards (name, port, weight) VALUES (%s, %s, %s)")
        params.append((name, port, weight))
    for realm, names in (assignments or {}).items():
        sql.append("INSERT INTO kansas.realm_assignments (realm, shard, split_shards) "
                   "VALUES (%s, %s, %s)")
        params.append((realm, names[0], names if len(names) > 1 else None))
    for priority, pattern, names in rules or []:
        sql.append("INSERT INTO kansas.realm_rules (priority, pattern, shard, split_shards) "
                   "VALUES (%s, %s, %s, %s)")
        params.append((priority, pattern, names[0], names if len(names) > 1 else None))
    import psycopg2

    conn = psycopg2.connect(db.dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql[0])
            for statement, p in zip(sql[1:], params):
                cur.execute(statement, p)
    finally:
        conn.close()


def state_json(assignments: dict[str, list[str]], shards: list[tuple[str, int, float]] = SHARDS,
               rules: list[tuple[int, str, list[str]]] | None = None) -> str:
    return json.dumps({
        "shards": [{"name": n, "port": p, "weight": w} for n, p, w in shards],
        "assignments": assignments,
        "rules": [{"priority": p, "pattern": pat, "shards": s} for p, pat, s in rules or []],
    })


def open_window(db: Database, before: str, after: str, secs: float = 30.0) -> int:
    rows = db.query(
        "INSERT INTO kansas.drain_windows (until, change, before, after) VALUES "
        "(now() + make_interval(secs => %s), 'test change', %s::jsonb, %s::jsonb) RETURNING id",
        (secs, before, after),
    )
    return int(rows[0][0])


@pytest.fixture()
def secret_dsn(kansas_db: Database, pg_server: PgServer) -> str:
    """A DSN with a password: a role that needs it on the local server, else the given URL."""
    if not pg_server.local:
        return kansas_db.dsn
    kansas_db.execute(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{SECRET_USER}') THEN "
        f"CREATE ROLE {SECRET_USER} LOGIN PASSWORD '{SECRET_PASSWORD}'; END IF; END $$"
    )
    kansas_db.execute(f"GRANT USAGE ON SCHEMA kansas TO {SECRET_USER}; "
                      f"GRANT SELECT ON ALL TABLES IN SCHEMA kansas TO {SECRET_USER}")
    return (f"postgresql://{SECRET_USER}:{SECRET_PASSWORD}@127.0.0.1:{pg_server.port}/"
            f"{kansas_db.name}")


def test_load(kansas_db: Database) -> None:
    set_state(kansas_db, SHARDS + [("unported", None, 5.0)],
              {"big.example.com": ["s1"], "split.example.com": ["s2", "s0"],
               "ghost.example.com": ["unported"]},
              [(20, r".*\.org", ["s2"]), (10, r"^eu\.", ["s0", "s1"])])
    kansas_db.execute(
        "INSERT INTO kansas.drain_windows (opened_at, until, change, before, after) VALUES "
        "(now() - interval '1 hour', now() - interval '1 second', 'old', '{}', '{}')")
    res = store.load_dsn(kansas_db.dsn)
    assert [s.name for s in res.current.shards] == ["s0", "s1", "s2"]
    assert res.current_targets("big.example.com") == ("s1",)
    assert res.current_ports("split.example.com") == [9802, 9800]
    assert res.current_targets("eu.example.org") == ("s0", "s1")
    assert res.current_targets("chat.example.org") == ("s2",)
    # an assignment to a shard without a port is skipped: hashing decides
    assert res.current_targets("ghost.example.com") == (res.current.hash_winner("ghost.example.com"),)
    assert res.windows == ()
    assert res.source == "database"


def test_schema_version_checked(kansas_db: Database) -> None:
    kansas_db.execute("INSERT INTO kansas.schema_migrations (version, description) "
                      "VALUES (4, 'future')")
    try:
        with pytest.raises(SchemaMismatch, match="version 4"):
            store.load_dsn(kansas_db.dsn)
        # at first use: the cache file if there is one, else a clear error
        f = follower(kansas_db.dsn)
        with pytest.raises(RoutingUnavailable, match="schema version 4.*upgrade kansas_zulip"):
            f.snapshot()
    finally:
        kansas_db.execute("DELETE FROM kansas.schema_migrations WHERE version = 4")


def test_follows_changes_within_a_second(kansas_db: Database) -> None:
    set_state(kansas_db, assignments={"r.example.com": ["s0"]})
    f = follower(kansas_db.dsn)
    assert f.snapshot().current_targets("r.example.com") == ("s0",)
    assert wait_for(lambda: f.connected, 5)
    for change, check in [
        ("UPDATE kansas.realm_assignments SET shard = 's1' WHERE realm = 'r.example.com'",
         lambda s: s.current_targets("r.example.com") == ("s1",)),
        ("INSERT INTO kansas.realm_rules (priority, pattern, shard) VALUES (1, '^q', 's2')",
         lambda s: s.current_targets("q.example.com") == ("s2",)),
        ("UPDATE kansas.shards SET weight = 0 WHERE name <> 's1'",
         lambda s: s.current_targets("hashed.example.net") == ("s1",)),
        ("UPDATE kansas.shards SET port = 9900 WHERE name = 's1'",
         lambda s: s.current_ports("r.example.com") == [9900]),
        ("DELETE FROM kansas.realm_assignments",
         lambda s: s.current_targets("r.example.com") == ("s1",)),
    ]:
        kansas_db.execute(change)
        t0 = time.monotonic()
        assert wait_for(lambda: check(f.snapshot()), 1.0), change
        assert time.monotonic() - t0 < 1.0
    assert f.sessions == 1


def test_debounced_and_periodic_reloads(kansas_db: Database) -> None:
    set_state(kansas_db)
    f = follower(kansas_db.dsn)
    f.snapshot()
    assert wait_for(lambda: f.connected, 5)
    loads = f.loads
    values = ",".join(f"('r{i}.example.com', 's{i % 3}')" for i in range(300))
    kansas_db.execute(f"INSERT INTO kansas.realm_assignments (realm, shard) VALUES {values}")
    assert wait_for(lambda: f.snapshot().current_targets("r299.example.com") == ("s2",), 1.0)
    time.sleep(0.3)
    assert f.loads - loads <= 3, "300 notifications from one transaction: one reload or so"
    # with no change at all, it still reloads every resync_secs
    g = follower(kansas_db.dsn, resync_secs=0.3)
    g.snapshot()
    assert wait_for(lambda: g.loads >= 4, 3)


def test_window_row(kansas_db: Database) -> None:
    set_state(kansas_db, assignments={"r.example.com": ["s2"], "split.example.com": ["s0", "s2"]})
    f = follower(kansas_db.dsn)
    assert f.snapshot().resident("r.example.com") == [ResidentShard("s2", 9802, None)]
    before = state_json({"r.example.com": ["s0"], "split.example.com": ["s0", "s1"]})
    after = state_json({"r.example.com": ["s2"], "split.example.com": ["s0", "s2"]})
    wid = open_window(kansas_db, before, after, 30)
    (until,) = kansas_db.query("SELECT extract(epoch FROM until)::float8 FROM "
                               "kansas.drain_windows WHERE id = %s", (wid,))[0]
    assert wait_for(lambda: len(f.snapshot().resident("r.example.com")) == 2, 1.0)
    res = f.snapshot()
    r = res.resident("r.example.com")
    assert r[0] == ResidentShard("s2", 9802, None)
    assert r[1].shard == "s0" and r[1].port == 9800 and abs(r[1].until - until) < 1e-3
    assert res.user_resident("split.example.com", 3) == [9802, 9801]
    assert res.user_resident("split.example.com", 4) == [9800]
    assert res.resident("other.example.com") == [ResidentShard(*res.resident(
        "other.example.com")[0])]
    sharding.configure(dsn=kansas_db.dsn, tornado_processes=3)
    split = Realm("split.example.com")
    assert sharding.event_port_user_map(split, [3, 4]) == {9802: [3], 9801: [3], 9800: [4]}
    assert sharding.port_serves_user(9801, UserProfile(3, split))
    assert sharding.get_user_tornado_port(UserProfile(3, split)) == 9802
    # closing the window early ends it everywhere
    kansas_db.execute("UPDATE kansas.drain_windows SET until = now() WHERE id = %s", (wid,))
    assert wait_for(lambda: len(f.snapshot().resident("r.example.com")) == 1, 1.0)
    assert wait_for(lambda: not sharding.port_serves_user(9801, UserProfile(3, split)), 1.0)


def secrets() -> list[str]:
    found = [SECRET_PASSWORD]
    url = os.environ.get("KANSAS_TEST_DATABASE_URL")
    if url:
        from psycopg2.extensions import parse_dsn

        password = parse_dsn(url).get("password")
        if password and len(password) >= 4:
            found.append(password)
    return found


def assert_no_secret(caplog: pytest.LogCaptureFixture, *texts: str | None) -> None:
    for secret in secrets():
        for record in caplog.records:
            for text in (record.getMessage(), str(record.args), record.exc_text or ""):
                assert secret not in text, record.getMessage()
        for text in texts:
            assert secret not in (text or "")


def test_database_outage(kansas_db: Database, pg_server: PgServer, secret_dsn: str,
                         caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG, logger="kansas_zulip")
    set_state(kansas_db, assignments={"r.example.com": ["s1"]})
    relay = None
    dsn = secret_dsn
    if not pg_server.local:  # a shared server is not stopped: cut the connection instead
        relay = Relay(pg_server.host, pg_server.port)
        dsn = dsn_for(secret_dsn, host="127.0.0.1", port=relay.port)
    cache = tmp_path / "routing.json"
    f = follower(dsn, cache_path=str(cache))
    sharding.configure(dsn=dsn, cache_path=str(cache))
    realm = Realm("r.example.com")
    assert sharding.get_realm_tornado_ports(realm) == [9801]
    follower_of_module = sharding._follower()[1]
    assert follower_of_module is not None
    assert f.snapshot().current_targets("r.example.com") == ("s1",)
    assert wait_for(lambda: f.connected and follower_of_module.connected, 5)
    if relay is None:
        pg_server.stop()
    else:
        relay.cut()
    try:
        assert wait_for(lambda: not f.connected, 3), "the follower did not notice the outage"
        # the module keeps answering from its last snapshot, without waiting on anything
        t0 = time.monotonic()
        for _ in range(100):
            assert sharding.get_realm_tornado_ports(realm) == [9801]
            assert f.snapshot().current_targets("r.example.com") == ("s1",)
        assert time.monotonic() - t0 < 0.5
        time.sleep(1.0)  # a few reconnect attempts fail
        assert f.last_error
        if relay is not None:
            kansas_db.execute("UPDATE kansas.realm_assignments SET shard = 's2'")
    finally:
        if relay is None:
            pg_server.start()
        else:
            relay.restore()
    if relay is None:
        kansas_db.execute("UPDATE kansas.realm_assignments SET shard = 's2'")
    assert wait_for(lambda: f.snapshot().current_targets("r.example.com") == ("s2",), 35)
    assert wait_for(lambda: sharding.get_realm_tornado_ports(realm) == [9802], 35)
    assert f.connected and f.sessions >= 2
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings, "the outage was not logged"
    assert any("reconnecting" in r.getMessage() for r in warnings)
    assert_no_secret(caplog, f.last_error)
    assert cache.exists()
    assert SECRET_PASSWORD not in cache.read_text()


def test_cache_file_when_the_database_is_unreachable_at_first_use(
        kansas_db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kansas_zulip")
    set_state(kansas_db, assignments={"r.example.com": ["s1"]})
    open_window(kansas_db, state_json({"r.example.com": ["s0"]}),
                state_json({"r.example.com": ["s1"]}), 60)
    cache = tmp_path / "routing.json"
    f = follower(kansas_db.dsn, cache_path=str(cache))
    assert len(f.snapshot().resident("r.example.com")) == 2
    assert cache.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["routing.json"]  # no temporary file left
    f.stop()

    unreachable = (f"host=127.0.0.1 port={free_port()} dbname=zulip user=zulip "
                   f"password={SECRET_PASSWORD}")
    g = follower(unreachable, cache_path=str(cache), connect_timeout=1)
    snap = g.snapshot()
    assert snap.source.startswith("cache file")
    assert snap.current_targets("r.example.com") == ("s1",)
    assert [r.shard for r in snap.resident("r.example.com")] == ["s1", "s0"]

    sharding.configure(dsn=unreachable, cache_path=str(cache))
    assert sharding.get_realm_tornado_ports(Realm("r.example.com")) == [9801]
    assert sharding.realm_resident_ports(Realm("r.example.com")) == [9801, 9800]

    h = follower(unreachable, connect_timeout=1)
    with pytest.raises(RoutingUnavailable) as e:
        h.snapshot()
    message = str(e.value)
    assert "cannot connect to PostgreSQL at 127.0.0.1" in message
    assert "KANSAS_ROUTING_CACHE" in message
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    k = follower(unreachable, cache_path=str(broken), connect_timeout=1)
    with pytest.raises(RoutingUnavailable, match="not usable"):
        k.snapshot()
    assert_no_secret(caplog, message)


def test_password_never_in_errors_or_logs(kansas_db: Database, pg_server: PgServer,
                                          secret_dsn: str,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kansas_zulip")
    messages: list[str] = []
    bad = [
        # malformed: libpq quotes the connection string in its error
        f"host=127.0.0.1 port={pg_server.port} password={SECRET_PASSWORD} dbname='unclosed",
        f"postgresql://zulip:{SECRET_PASSWORD}@127.0.0.1:{free_port()}/zulip?sslmode=bogus",
        f"postgresql://zulip:{SECRET_PASSWORD}@127.0.0.1:notaport/zulip",
    ]
    if pg_server.local:  # a wrong password for a role that needs one
        bad.append(f"postgresql://{SECRET_USER}:wrong-{SECRET_PASSWORD}@127.0.0.1:"
                   f"{pg_server.port}/{kansas_db.name}")
    for dsn in bad:
        f = follower(dsn, connect_timeout=2)
        with pytest.raises(RoutingUnavailable) as e:
            f.snapshot()
        messages.append(str(e.value))
        wait_for(lambda: f.last_error is not None, 2)
        messages.append(f.last_error or "")
        f.stop()
    if pg_server.local:
        assert any("password authentication failed" in m for m in messages), messages
    # and a good one, at DEBUG
    set_state(kansas_db)
    good = follower(secret_dsn)
    good.snapshot()
    assert_no_secret(caplog, *messages)


def test_fork_safety(kansas_db: Database) -> None:
    set_state(kansas_db, assignments={"r.example.com": ["s0"]})
    f = follower(kansas_db.dsn)
    f.snapshot()
    assert wait_for(lambda: f.connected, 5)
    sessions = f.sessions
    pid = os.fork()
    if pid == 0:  # the child: answer from the inherited snapshot, follow on its own
        code = 1
        try:
            ok = f.snapshot().current_targets("r.example.com") == ("s0",)
            ok &= f._thread is not None and f._thread.is_alive()
            # drop the parent's connection object: it must not end the parent's session
            f._inherited.clear()
            gc.collect()
            ok &= wait_for(lambda: f.connected, 5)
            kansas_db.execute("UPDATE kansas.realm_assignments SET shard = 's1'")
            ok &= wait_for(lambda: f.snapshot().current_targets("r.example.com") == ("s1",), 2)
            code = 0 if ok else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert wait_for(lambda: f.snapshot().current_targets("r.example.com") == ("s1",), 1.0)
    kansas_db.execute("UPDATE kansas.realm_assignments SET shard = 's2'")
    assert wait_for(lambda: f.snapshot().current_targets("r.example.com") == ("s2",), 1.0)
    assert f.sessions == sessions and f.connected, "the child disturbed the parent's session"


def test_change_committed_during_a_reload_is_not_delayed(
        kansas_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    # A notification for a change committed while the reload's transaction is open arrives with
    # the COMMIT's answer, not as new socket data: it must still be acted on at once.
    set_state(kansas_db, assignments={"r.example.com": ["s0"]})
    monkeypatch.setattr(store, "_SHARDS", store._SHARDS.replace(
        "FROM kansas.shards", "FROM kansas.shards CROSS JOIN pg_sleep(0.05)"))
    f = follower(kansas_db.dsn)
    f.snapshot()
    assert wait_for(lambda: f.connected, 5)
    worst = 0.0
    for i in range(10):
        target = ("s1", "s0")[i % 2]
        kansas_db.execute("UPDATE kansas.realm_assignments SET note = %s", (str(i),))
        time.sleep(0.02)  # the reload for the first change is under way
        kansas_db.execute("UPDATE kansas.realm_assignments SET shard = %s", (target,))
        t0 = time.monotonic()
        assert wait_for(lambda: f.snapshot().current_targets("r.example.com") == (target,), 2)
        worst = max(worst, time.monotonic() - t0)
    assert worst < 0.5, f"a change took {worst:.2f} s to be followed"
