"""Routing: XXH64 (C and pure Python) on the golden vectors, host normalization, route()."""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys

import pytest
import xxhash

from conftest import REPO
from kansas_zulip import routing
from kansas_zulip.routing import InvalidHost, RoutingState, normalize_host, route
from kansas_zulip.xxh64 import xxh64, xxh64_pair

VECTORS = json.loads((REPO / "tests" / "data" / "routing-vectors.json").read_text())["cases"]


def c_xxh64(data: bytes) -> int:
    return xxhash.xxh64_intdigest(data, seed=0)


def test_the_c_extension_is_in_use() -> None:
    assert routing.IMPLEMENTATION == "xxhash"


@pytest.mark.parametrize("impl", ["c", "pure"])
def test_golden_vectors(impl: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if impl == "pure":
        monkeypatch.setattr(routing, "_key_hash", lambda b: xxh64(b, 0))
        monkeypatch.setattr(routing, "_pair_hash", xxh64_pair)
    assert len(VECTORS) == 1200
    for case in VECTORS:
        realm_hash = routing.key_hash(case["realm"])
        assert f"{realm_hash:016x}" == case["realm_hash"], case["realm"]
        shards = [(s["name"], s["weight"]) for s in case["shards"]]
        assert routing.choose(shards, case["realm"]) == case["winner"], case["realm"]
        for s in case["shards"]:
            have = routing.score(s["weight"], routing.key_hash(s["name"]), realm_hash)
            assert abs(have - s["score"]) <= 1e-12 * max(1.0, abs(s["score"])), (case, s)


def test_pure_xxh64_equals_c() -> None:
    rng = random.Random(7)
    assert xxh64(b"") == 0xEF46DB3751D8E999
    for n in list(range(0, 130)) + [255, 256, 1000, 4096]:
        data = bytes(rng.randrange(256) for _ in range(n))
        assert xxh64(data) == c_xxh64(data), n
        seed = rng.randrange(2**64)
        assert xxh64(data, seed) == xxhash.xxh64_intdigest(data, seed=seed), n
    for _ in range(2000):
        a, b = rng.randrange(2**64), rng.randrange(2**64)
        assert xxh64_pair(a, b) == c_xxh64(struct.pack("<QQ", a, b))
    for case in VECTORS[:200]:
        data = case["realm"].encode()
        assert xxh64(data) == c_xxh64(data)


def test_reference_script_uses_the_package() -> None:
    text = (REPO / "docs" / "routing_reference.py").read_text()
    assert "kansas_zulip.routing" in text
    r = subprocess.run(
        [sys.executable, str(REPO / "docs" / "routing_reference.py"),
         str(REPO / "tests" / "data" / "routing-vectors.json")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("1200 passed, 0 failed")


@pytest.mark.parametrize(
    "raw, want",
    [
        ("chat.example.com", "chat.example.com"),
        ("Chat.Example.COM", "chat.example.com"),
        ("chat.example.com:443", "chat.example.com"),
        ("chat.example.com.", "chat.example.com"),
        ("chat.example.com.:9799", "chat.example.com"),
        ("  localhost ", "localhost"),
        ("127.0.0.1:9799", "127.0.0.1"),
        ("zulip_dev.local", "zulip_dev.local"),
        ("zulipdev.com:9991", "zulipdev.com"),
    ],
)
def test_normalize_host(raw: str, want: str) -> None:
    assert normalize_host(raw) == want


@pytest.mark.parametrize(
    "raw",
    [
        "", "   ", ".", "a..b", ".example.com", "exa mple.com", "example.com:", "example.com:123456",
        "example.com:http", "[::1]:80", "ex/ample.com", "ex@ample.com", "é.example.com", "-",
        "-chat.example.com", "chat-.example.com", "a" * 64 + ".com", ".".join(["a" * 60] * 5),
        "example.com:١٢", "ｅxample.com",
    ],
)
def test_normalize_host_refuses(raw: str) -> None:
    with pytest.raises(InvalidHost):
        normalize_host(raw)


def shards(*spec: tuple[str, int, float]) -> list[tuple[str, int, float]]:
    return list(spec)


S4 = shards(("s0", 9800, 1.0), ("s1", 9801, 1.0), ("s2", 9802, 1.0), ("s3", 9803, 1.0))


def test_route_order_assignment_rule_hash() -> None:
    state = RoutingState.from_json(
        {
            "shards": [{"name": n, "port": p, "weight": w} for n, p, w in S4],
            "assignments": {"big.example.com": ["s1"], "split.example.com": ["s2", "s3"],
                            "eu1.example.com": ["s3"]},
            "rules": [
                {"priority": 20, "pattern": r".*\.example\.org", "shards": ["s2"]},
                {"priority": 10, "pattern": r"^eu\d*\.", "shards": ["s0"]},
            ],
        }
    )
    assert route(state, "big.example.com") == ("s1",)
    assert route(state, "split.example.com") == ("s2", "s3")
    # the assignment wins over the rule
    assert route(state, "eu1.example.com") == ("s3",)
    # rules in priority order (10 before 20), whatever the JSON order
    assert route(state, "eu2.example.org") == ("s0",)
    assert route(state, "chat.example.org") == ("s2",)
    # anchored at the start only, case-insensitive
    assert route(state, "xeu2.example.net") == state.route("xeu2.example.net")
    assert state.rules[0].regex.match("EU7.x") is not None
    # hashing: the reference choose() over the shards
    for realm in ("a.example.net", "b.example.net", "c.example.net", "zz.zz"):
        want = routing.choose([(n, w) for n, _, w in S4], realm)
        assert route(state, realm) == (want,)


def test_route_skips_unknown_shards_and_bad_patterns() -> None:
    state = RoutingState(
        S4,
        {"a.example.com": ["nope"], "b.example.com": ["s1", "nope"], "c.example.com": ["s2"],
         "Bad.Example.com": ["s1"], "d.example.com": []},
        [
            (1, r"a\.", ("ghost",)),
            (2, r"(unclosed", ("s1",)),
            (3, r"(?=b)b\.", ("s1",)),  # look-ahead: kansas's regex crate refuses it
            (4, r"b\.", ("s3", "ghost")),
            (5, r"[ab]\.", ("s0",)),
        ],
    )
    hashed = routing.choose([(n, w) for n, _, w in S4], "c.example.org")
    assert route(state, "a.example.com") == ("s0",)  # assignment and rule 1 skipped -> rule 5
    assert route(state, "b.example.com") == ("s0",)
    assert route(state, "c.example.com") == ("s2",)
    assert route(state, "c.example.org") == (hashed,)
    assert "bad.example.com" not in state.assignments and "Bad.Example.com" not in state.assignments
    assert [r.priority for r in state.rules] == [5]
    assert len(state.ignored) == 8


def test_route_weights() -> None:
    # weight 0 shards are never hashed to; assignments to them still hold
    state = RoutingState([("s0", 9800, 0.0), ("s1", 9801, 2.5), ("s2", 9802, 0.0)],
                         {"pinned.example.com": ["s0"]})
    for i in range(200):
        assert route(state, f"r{i}.example.com") == ("s1",)
    assert route(state, "pinned.example.com") == ("s0",)
    none = RoutingState([("s0", 9800, 0.0)], {}, [(1, "^x", ["s0"])])
    assert route(none, "a.example.com") is None
    assert route(none, "x.example.com") == ("s0",)
    assert route(RoutingState([]), "a.example.com") is None


def test_ports_and_json_round_trip() -> None:
    obj = {
        "shards": [{"name": "s0", "port": 9800, "weight": 1.0}, {"name": "s1", "port": 9801,
                                                                 "weight": 0.5}],
        "assignments": {"r.example.com": ["s1", "s0"]},
        "rules": [{"priority": 1, "pattern": "^q", "shards": ["s1"]}],
    }
    state = RoutingState.from_json(obj)
    assert state.port("s1") == 9801
    assert state.to_json() == obj
    again = RoutingState.from_json(json.loads(json.dumps(RoutingState(
        [("s0", 9800, 1.0)], {"x.example.com": ["s0"]}, [(3, "^y", ["s0"])]).to_json())))
    assert again.route("x.example.com") == ("s0",)
    assert again.route("y.example.com") == ("s0",)
    # malformed rows are skipped, not fatal
    odd = RoutingState.from_json({"shards": [{"name": "s0", "port": None, "weight": 1},
                                             {"name": "s1", "port": 9801, "weight": 1}, {}],
                                  "assignments": {"a.b": 5}, "rules": [{"priority": "x"}]})
    assert [s.name for s in odd.shards] == ["s1"]
    assert len(odd.ignored) == 4


def test_falls_back_to_pure_python_without_xxhash() -> None:
    code = (
        "import sys, json; sys.modules['xxhash'] = None\n"
        "from kansas_zulip import routing\n"
        "assert routing.IMPLEMENTATION == 'pure', routing.IMPLEMENTATION\n"
        f"cases = json.load(open({str(REPO / 'tests' / 'data' / 'routing-vectors.json')!r}))"
        "['cases']\n"
        "bad = [c['realm'] for c in cases if routing.choose("
        "[(s['name'], s['weight']) for s in c['shards']], c['realm']) != c['winner']"
        " or f\"{routing.key_hash(c['realm']):016x}\" != c['realm_hash']]\n"
        "print(len(cases), bad)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=REPO / "python")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1200 []"
