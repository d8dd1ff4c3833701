#!/usr/bin/env python3
"""Reference implementation of kansas's weighted rendezvous hashing (docs/routing.md) in Python,
the language Django would use, checked against the golden vectors.

    pip install xxhash
    python3 docs/routing_reference.py tests/data/routing-vectors.json

Exits 0 when every case's winner matches (and every score agrees to 1e-12 relative), 1 otherwise.
"""
import json
import math
import struct
import sys

import xxhash


def key_hash(text: str) -> int:
    """XXH64 with seed 0 of a shard name or realm host (UTF-8 bytes)."""
    return xxhash.xxh64_intdigest(text.encode("utf-8"), seed=0)


def unit(shard_hash: int, realm_hash: int) -> float:
    """u in (0, 1) for one (shard, realm) pair."""
    x = xxhash.xxh64_intdigest(struct.pack("<QQ", shard_hash, realm_hash), seed=0)
    return ((x >> 11) + 0.5) / 2.0**53


def score(weight: float, shard_hash: int, realm_hash: int) -> float:
    if weight <= 0:
        return 0.0
    return weight / -math.log(unit(shard_hash, realm_hash))


def choose(shards, realm: str):
    """shards: list of (name, weight). Returns the winning name, or None if all weights are 0."""
    realm_hash = key_hash(realm)
    best = None  # (score, name)
    for name, weight in shards:
        if weight <= 0:
            continue
        s = score(weight, key_hash(name), realm_hash)
        if best is None or s > best[0] or (s == best[0] and name.encode() < best[1].encode()):
            best = (s, name)
    return None if best is None else best[1]


def main(path: str) -> int:
    with open(path) as f:
        cases = json.load(f)["cases"]
    bad = 0
    for i, case in enumerate(cases):
        shards = [(s["name"], s["weight"]) for s in case["shards"]]
        got = choose(shards, case["realm"])
        realm_hash = key_hash(case["realm"])
        ok = got == case["winner"] and f"{realm_hash:016x}" == case["realm_hash"]
        for s in case["shards"]:
            want = s["score"]
            have = score(s["weight"], key_hash(s["name"]), realm_hash)
            ok &= abs(have - want) <= 1e-12 * max(1.0, abs(want))
        if not ok:
            bad += 1
            print(f"case {i}: realm {case['realm']!r}: want {case['winner']!r}, got {got!r}")
    print(f"{len(cases) - bad} passed, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/routing-vectors.json"))
