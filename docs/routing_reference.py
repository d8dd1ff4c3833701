#!/usr/bin/env python3
"""Checks kansas's weighted rendezvous hashing (docs/routing.md) in Python, the language Django
uses, against the golden vectors. The implementation is the Zulip-side package's
(python/kansas_zulip/routing.py), so there is one Python implementation:

    pip install xxhash        # optional: without it, a pure-Python XXH64 is used
    python3 docs/routing_reference.py tests/data/routing-vectors.json

Exits 0 when every case's winner and realm hash match and every score agrees to 1e-12
relative, 1 otherwise.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from kansas_zulip.routing import choose, key_hash, score  # noqa: E402


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
