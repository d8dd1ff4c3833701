"""Residency (docs/residency.md §3): current, resident and user-resident shards over windows."""

from __future__ import annotations

import json

import pytest

from kansas_zulip import residency as residency_module
from kansas_zulip.residency import Residency, ResidentShard, Window
from kansas_zulip.routing import RoutingState, choose

PORTS = {"s0": 9800, "s1": 9801, "s2": 9802, "s3": 9803}


def state(assign: dict[str, list[str]] | None = None, weights: tuple[float, ...] = (1, 1, 1),
          rules: list[tuple[int, str, list[str]]] | None = None) -> RoutingState:
    shards = [(f"s{i}", 9800 + i, float(w)) for i, w in enumerate(weights)]
    return RoutingState(shards, assign or {}, rules or [])


def window(wid: int, until: float, before: RoutingState, after: RoutingState,
           opened_at: float | None = None) -> Window:
    return Window(wid, float(wid) if opened_at is None else opened_at, until, before, after)


def names(rs: list[ResidentShard]) -> list[str]:
    return [r.shard for r in rs]


def test_no_windows() -> None:
    res = Residency(state({"r": ["s1"], "split.example.com": ["s0", "s2"]}))
    assert res.current_targets("r") == ("s1",)
    assert res.current_ports("r") == [9801]
    assert res.resident("r", 0.0) == [ResidentShard("s1", 9801, None)]
    assert res.user_resident("r", 5, 0.0) == [9801]
    assert res.user_resident("split.example.com", 5, 0.0) == [9802]
    assert res.user_resident("split.example.com", 4, 0.0) == [9800]
    assert names(res.resident("split.example.com", 0.0)) == ["s0", "s2"]
    assert res.user_port("split.example.com", 7) == 9802
    empty = Residency(state(weights=(0, 0, 0)))
    assert empty.current_targets("x.example.com") is None
    assert empty.resident("x.example.com", 0.0) == []
    assert empty.user_resident("x.example.com", 1, 0.0) == []
    assert empty.user_port("x.example.com", 1) is None


def test_windows_newest_first_dedupe_and_deadlines() -> None:
    a0, a1, a2 = state({"r": ["s0"]}), state({"r": ["s1"]}), state({"r": ["s2"]})
    # r moved s0 -> s1 (window 1, until 100), then s1 -> s2 (window 2, until 50); given in any order
    res = Residency(state({"r": ["s2"]}), [window(2, 50.0, a1, a2), window(1, 100.0, a0, a1)])
    assert [w.id for w in res.windows] == [2, 1]
    r = res.resident("r", 10.0)
    assert r == [ResidentShard("s2", 9802, None), ResidentShard("s1", 9801, 50.0),
                 ResidentShard("s0", 9800, 100.0)]
    # window 2 expired: s1 is no longer resident; window 1 still keeps s0
    assert names(res.resident("r", 60.0)) == ["s2", "s0"]
    # until == now is closed
    assert names(res.resident("r", 100.0)) == ["s2"]
    assert names(res.resident("r", 50.0)) == ["s2", "s0"]
    # a realm no window moved gets nothing from them
    assert len(res.resident("other.example.com", 10.0)) == 1
    assert res.user_resident("r", 3, 10.0) == [9802, 9801, 9800]


def test_ordering_by_opened_at_then_id() -> None:
    a0, a1, a2 = state({"r": ["s0"]}), state({"r": ["s1"]}), state({"r": ["s2"]})
    # window 9 opened before window 3: window 3 is newer
    res = Residency(a2, [window(9, 100.0, a0, a2, opened_at=5.0),
                         window(3, 200.0, a1, a2, opened_at=6.0)])
    assert [w.id for w in res.windows] == [3, 9]
    assert res.resident("r", 0.0)[1:] == [ResidentShard("s1", 9801, 200.0),
                                         ResidentShard("s0", 9800, 100.0)]
    # equal opened_at: the larger id is newer
    res = Residency(a2, [window(1, 100.0, a0, a2, opened_at=5.0),
                         window(2, 200.0, a1, a2, opened_at=5.0)])
    assert names(res.resident("r", 0.0)) == ["s2", "s1", "s0"]


def test_deadline_is_the_last_contributing_window_to_close() -> None:
    a0, a1 = state({"r": ["s0"]}), state({"r": ["s1"]})
    # r moved s0 -> s1 (window 1, until 300), back to s0 (window 2, until 200), then to s1
    # again (window 3, until 100): s0 is kept by windows 3 and 1, so until 300.
    res = Residency(a1, [window(1, 300.0, a0, a1), window(2, 200.0, a1, a0),
                         window(3, 100.0, a0, a1)])
    assert res.resident("r", 0.0) == [ResidentShard("s1", 9801, None),
                                      ResidentShard("s0", 9800, 300.0)]
    # the user-level answer agrees
    assert [r.until for r in res.user_resident_shards("r", 7, 0.0)] == [None, 300.0]
    # after window 3 closes, window 1 still keeps s0
    assert res.resident("r", 150.0) == [ResidentShard("s1", 9801, None),
                                        ResidentShard("s0", 9800, 300.0)]
    assert res.resident("r", 300.0) == [ResidentShard("s1", 9801, None)]


def test_window_that_did_not_move_the_realm() -> None:
    before = state({"pinned.example.com": ["s0"]}, weights=(1, 1, 1))
    after = state({"pinned.example.com": ["s0"]}, weights=(1, 1, 0))
    res = Residency(after, [window(1, 100.0, before, after)])
    assert names(res.resident("pinned.example.com", 0.0)) == ["s0"]
    hashed = [f"h{i}.example.com" for i in range(300)]
    moved = next(r for r in hashed if before.route(r) == ("s2",))
    stayed = next(r for r in hashed if before.route(r) == ("s1",))
    r = res.resident(moved, 0.0)
    assert names(r) == [after.route(moved)[0], "s2"]  # type: ignore[index]
    assert r[1] == ResidentShard("s2", 9802, 100.0)
    assert names(res.resident(stayed, 0.0)) == ["s1"]
    # a later window that does not move a realm does not make an older move matter more or less
    later = state({"pinned.example.com": ["s1"]}, weights=(1, 1, 0))
    res2 = Residency(later, [window(1, 100.0, before, after), window(2, 50.0, after, later)])
    assert names(res2.resident(moved, 0.0)) == [later.route(moved)[0], "s2"]  # type: ignore[index]
    assert names(res2.resident("pinned.example.com", 0.0)) == ["s1", "s0"]


def test_rule_and_removed_shard_windows() -> None:
    before = RoutingState([("s0", 9800, 1.0), ("old", 9805, 1.0)], {},
                          [(1, r"^eu\.", ["old"])])
    after = RoutingState([("s0", 9800, 1.0)], {}, [])
    res = Residency(after, [window(1, 100.0, before, after)])
    # the port comes from the state that contributed the shard
    assert res.resident("eu.example.com", 0.0) == [ResidentShard("s0", 9800, None),
                                                   ResidentShard("old", 9805, 100.0)]
    assert res.user_resident("eu.example.com", 11, 0.0) == [9800, 9805]


def test_user_split_residency() -> None:
    split = state({"r": ["s0", "s1"]})
    moved = state({"r": ["s0", "s2"]})
    res = Residency(moved, [window(1, 100.0, split, moved)])
    # realm level: the lists differ, so s0 and s1 are kept
    assert names(res.resident("r", 0.0)) == ["s0", "s2", "s1"]
    # even users stay on s0: nothing moved them; odd users moved s1 -> s2
    assert res.user_resident("r", 4, 0.0) == [9800]
    assert res.user_resident("r", 5, 0.0) == [9802, 9801]
    assert names(res.user_resident_shards("r", 5, 0.0)) == ["s2", "s1"]
    assert res.user_resident_shards("r", 5, 0.0)[1].until == 100.0


def test_realm_with_no_current_shard_but_draining() -> None:
    before = state({"r": ["s1"]}, weights=(0, 0, 0))
    after = state({}, weights=(0, 0, 0))
    res = Residency(after, [window(1, 100.0, before, after)])
    assert res.current_targets("r") is None
    assert res.resident("r", 0.0) == [ResidentShard("s1", 9801, 100.0)]
    assert res.user_resident("r", 1, 0.0) == [9801]
    assert res.resident("r", 200.0) == []


def test_cache_respects_expiry_and_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    a0, a1 = state({"r": ["s0"]}), state({"r": ["s1"]})
    res = Residency(a1, [window(1, 100.0, a0, a1)])
    assert names(res.resident("r", 10.0)) == ["s1", "s0"]
    assert names(res.resident("r", 99.999)) == ["s1", "s0"]
    assert names(res.resident("r", 100.0)) == ["s1"]
    assert names(res.resident("r", 10.0)) == ["s1", "s0"]  # a clock going back is answered too
    assert res.user_resident("r", 1, 100.5) == [9801]
    monkeypatch.setattr(residency_module, "CACHE_LIMIT", 50)
    for i in range(500):
        res.resident(f"h{i}.example.com", 0.0)
        assert len(res._cache) <= 50 and len(res._current_cache) <= 50


def test_json_round_trip() -> None:
    a0, a1 = state({"r": ["s0"]}), state({"r": ["s1", "s2"]}, rules=[(1, "^x", ["s2"])])
    res = Residency(a1, [window(1, 1764012345.123456, a0, a1, opened_at=1764012300.5)],
                    loaded_at=5.0)
    again = Residency.from_json(json.loads(json.dumps(res.to_json())))
    assert again.source == "cache file"
    for realm in ("r", "x.example.com", "q.example.com"):
        assert again.resident(realm, 0.0) == res.resident(realm, 0.0)
        assert again.user_resident(realm, 3, 0.0) == res.user_resident(realm, 3, 0.0)
    with pytest.raises(ValueError):
        Residency.from_json({"format": 99})


def test_hash_agrees_with_reference_choose() -> None:
    st = state(weights=(1, 2.5, 0.5))
    for i in range(500):
        realm = f"realm{i}.zulipchat.com"
        want = choose([("s0", 1), ("s1", 2.5), ("s2", 0.5)], realm)
        assert Residency(st).current_targets(realm) == (want,)
