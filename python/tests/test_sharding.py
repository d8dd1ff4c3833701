"""The Zulip drop-in (kansas_zulip.sharding) on fixed snapshots, and its settings."""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Iterator

import pytest

from conftest import Realm, UserProfile
from kansas_zulip import sharding
from kansas_zulip.errors import NoShard, RoutingError
from kansas_zulip.residency import Residency, Window
from kansas_zulip.routing import RoutingState

SHARDS = [("s0", 9800, 1.0), ("s1", 9801, 1.0), ("s2", 9802, 1.0), ("s3", 9803, 1.0)]


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    sharding.reset()
    yield
    sharding.reset()


def use(current: RoutingState, windows: list[Window] | None = None, processes: int = 4) -> None:
    sharding.configure(residency=Residency(current, windows or []), tornado_processes=processes)


def test_zulip_functions() -> None:
    use(RoutingState(SHARDS, {"big.example.com": ["s1"], "split.example.com": ["s2", "s3"]}))
    big, split = Realm("big.example.com"), Realm("Split.Example.com:443", id=2)
    assert sharding.get_realm_tornado_ports(big) == [9801]
    assert sharding.get_realm_tornado_ports(split) == [9802, 9803]
    assert sharding.get_user_id_tornado_port([9802, 9803], 7) == 9803
    assert sharding.get_user_tornado_port(UserProfile(7, split)) == 9803
    assert sharding.get_user_tornado_port(UserProfile(8, split)) == 9802
    assert sharding.get_user_tornado_port(UserProfile(8, big)) == 9801
    assert sharding.get_tornado_port(split) == 9802
    assert sharding.get_tornado_url(9801) == "http://127.0.0.1:9801"
    assert sharding.get_tornado_uri(big) == "http://127.0.0.1:9801"
    assert sharding.notify_tornado_queue_name(9801) == "notify_tornado_port_9801"
    assert sharding.tornado_return_queue_name(9801) == "tornado_return_port_9801"
    # a hashed realm is on exactly one port
    ports = sharding.get_realm_tornado_ports(Realm("elsewhere.example.org"))
    assert len(ports) == 1 and ports[0] in (9800, 9801, 9802, 9803)


def test_one_process_queue_names() -> None:
    use(RoutingState(SHARDS), processes=1)
    assert sharding.notify_tornado_queue_name(9800) == "notify_tornado"
    assert sharding.tornado_return_queue_name(9800) == "tornado_return"


def test_event_port_user_map_without_windows() -> None:
    use(RoutingState(SHARDS, {"big.example.com": ["s1"], "split.example.com": ["s2", "s3"]}))
    big, split = Realm("big.example.com"), Realm("split.example.com")
    users = [1, 2, 3]
    m = sharding.event_port_user_map(big, iter(users))
    assert m == {9801: [1, 2, 3]}
    assert sharding.event_port_user_map(big, []) == {9801: []}  # as Zulip: one port, any users
    dicts = [{"id": 1, "flags": []}, {"id": 2, "flags": ["read"]}]
    m2 = sharding.event_port_user_map(split, dicts)
    assert m2 == {9803: [dicts[0]], 9802: [dicts[1]]}
    assert m2[9803][0] is dicts[0]
    assert sharding.event_port_user_map(split, []) == {}


def test_while_draining() -> None:
    now = time.time()
    before = RoutingState(SHARDS, {"r.example.com": ["s0"], "split.example.com": ["s0", "s1"]})
    after = RoutingState(SHARDS, {"r.example.com": ["s2"], "split.example.com": ["s0", "s3"]})
    use(after, [Window(1, now - 1, now + 100, before, after)])
    r, split = Realm("r.example.com"), Realm("split.example.com")
    # registration goes to the current port
    assert sharding.get_realm_tornado_ports(r) == [9802]
    assert sharding.get_user_tornado_port(UserProfile(5, r)) == 9802
    # events go to every resident port of every user
    assert sharding.event_port_user_map(r, [1, 2]) == {9802: [1, 2], 9800: [1, 2]}
    assert sharding.event_port_user_map(r, []) == {9802: []}
    m = sharding.event_port_user_map(split, [{"id": 4}, {"id": 5}])
    assert m == {9800: [{"id": 4}], 9803: [{"id": 5}], 9801: [{"id": 5}]}
    # Tornado's check
    u5 = UserProfile(5, split)
    assert sharding.user_resident_ports(u5) == [9803, 9801]
    assert sharding.port_serves_user(9801, u5) and sharding.port_serves_user(9803, u5)
    assert not sharding.port_serves_user(9800, u5)
    u4 = UserProfile(4, split)
    assert sharding.user_resident_ports(u4) == [9800]
    assert sharding.realm_resident_ports(split) == [9800, 9803, 9801]
    assert sharding.realm_resident_ports(r, now + 200) == [9802]
    assert sharding.user_id_resident_ports(r, 5, now + 200) == [9802]


def test_no_shard_and_bad_host() -> None:
    use(RoutingState([("s0", 9800, 0.0)]))
    with pytest.raises(NoShard, match="has no Tornado shard"):
        sharding.get_realm_tornado_ports(Realm("a.example.com"))
    with pytest.raises(NoShard):
        sharding.get_user_tornado_port(UserProfile(1, Realm("a.example.com")))
    with pytest.raises(NoShard):
        sharding.event_port_user_map(Realm("a.example.com"), [1])
    with pytest.raises(NoShard):
        sharding.user_resident_ports(UserProfile(1, Realm("a.example.com")))
    with pytest.raises(RoutingError, match="not a valid host"):
        sharding.get_realm_tornado_ports(Realm("bad host"))


def test_not_configured() -> None:
    with pytest.raises(RoutingError, match="not configured"):
        sharding.get_realm_tornado_ports(Realm("a.example.com"))
    with pytest.raises(ValueError):
        sharding.configure()


def fake_django(monkeypatch: pytest.MonkeyPatch, **settings: object) -> None:
    django = types.ModuleType("django")
    conf = types.ModuleType("django.conf")
    conf.settings = types.SimpleNamespace(configured=True, **settings)  # type: ignore[attr-defined]
    django.conf = conf  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "django", django)
    monkeypatch.setitem(sys.modules, "django.conf", conf)


def test_django_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_django(
        monkeypatch,
        DATABASES={"default": {"NAME": "zulip", "USER": "zulip", "PASSWORD": "p'w\\x",
                               "HOST": "", "PORT": "", "OPTIONS": {"sslmode": "require",
                                                                  "connection_factory": object}}},
        TORNADO_PROCESSES=3,
        KANSAS_ROUTING_CACHE="/var/lib/zulip/kansas-routing.json",
    )
    s = sharding._settings()
    assert s.dsn == "dbname='zulip' user='zulip' password='p\\'w\\\\x' sslmode='require'"
    assert s.cache_path == "/var/lib/zulip/kansas-routing.json"
    assert s.tornado_processes == 3
    from psycopg2.extensions import parse_dsn

    assert parse_dsn(s.dsn)["password"] == "p'w\\x"
    assert sharding.notify_tornado_queue_name(9801) == "notify_tornado_port_9801"


def test_django_kansas_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_django(monkeypatch, KANSAS_DATABASE_URL="postgresql://k:pw@db/zulip",
                DATABASES={"default": {"NAME": "zulip"}}, TORNADO_PROCESSES=1)
    s = sharding._settings()
    assert s.dsn == "postgresql://k:pw@db/zulip"
    assert s.cache_path is None
    assert sharding.notify_tornado_queue_name(9801) == "notify_tornado"


def test_configure_wins_over_django(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_django(monkeypatch, KANSAS_DATABASE_URL="postgresql://k:pw@db/zulip",
                TORNADO_PROCESSES=1)
    use(RoutingState(SHARDS, {"big.example.com": ["s1"]}), processes=2)
    assert sharding.get_realm_tornado_ports(Realm("big.example.com")) == [9801]
    assert sharding.notify_tornado_queue_name(9801) == "notify_tornado_port_9801"


def test_no_zulip_or_django_import() -> None:
    import pathlib

    import kansas_zulip

    for path in pathlib.Path(kansas_zulip.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert text.startswith('"""'), f"{path.name} must open with a module docstring"
        assert "import zerver" not in text and "from zerver" not in text, path
        assert "from zproject" not in text, path
