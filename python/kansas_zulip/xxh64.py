"""XXH64 (xxHash 0.8 specification), in pure Python.

Used when the ``xxhash`` C extension is not importable; the tests check it against the C one on
the golden vectors. :func:`xxh64` hashes any byte string; :func:`xxh64_pair` is the same hash
written out for the 16 bytes ``le64(a) || le64(b)`` that rendezvous hashing feeds it.
"""

from __future__ import annotations

import struct

_MASK = 0xFFFFFFFFFFFFFFFF
P1 = 0x9E3779B185EBCA87
P2 = 0xC2B2AE3D27D4EB4F
P3 = 0x165667B19E3779F9
P4 = 0x85EBCA77C2B2AE63
P5 = 0x27D4EB2F165667C5


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _MASK


def _round(acc: int, lane: int) -> int:
    acc = (acc + lane * P2) & _MASK
    acc = _rotl(acc, 31)
    return (acc * P1) & _MASK


def _merge(acc: int, val: int) -> int:
    acc ^= _round(0, val)
    return (acc * P1 + P4) & _MASK


def _avalanche(h: int) -> int:
    h ^= h >> 33
    h = (h * P2) & _MASK
    h ^= h >> 29
    h = (h * P3) & _MASK
    return h ^ (h >> 32)


def xxh64(data: bytes, seed: int = 0) -> int:
    """XXH64 of ``data`` with ``seed``, as an unsigned 64-bit integer."""
    n = len(data)
    seed &= _MASK
    i = 0
    if n >= 32:
        v1 = (seed + P1 + P2) & _MASK
        v2 = (seed + P2) & _MASK
        v3 = seed
        v4 = (seed - P1) & _MASK
        limit = n - 32
        while i <= limit:
            a, b, c, d = struct.unpack_from("<QQQQ", data, i)
            v1 = _round(v1, a)
            v2 = _round(v2, b)
            v3 = _round(v3, c)
            v4 = _round(v4, d)
            i += 32
        h = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & _MASK
        h = _merge(h, v1)
        h = _merge(h, v2)
        h = _merge(h, v3)
        h = _merge(h, v4)
    else:
        h = (seed + P5) & _MASK
    h = (h + n) & _MASK
    while i + 8 <= n:
        (lane,) = struct.unpack_from("<Q", data, i)
        h ^= _round(0, lane)
        h = (_rotl(h, 27) * P1 + P4) & _MASK
        i += 8
    if i + 4 <= n:
        (word,) = struct.unpack_from("<I", data, i)
        h ^= (word * P1) & _MASK
        h = (_rotl(h, 23) * P2 + P3) & _MASK
        i += 4
    while i < n:
        h ^= (data[i] * P5) & _MASK
        h = (_rotl(h, 11) * P1) & _MASK
        i += 1
    return _avalanche(h)


def xxh64_pair(a: int, b: int) -> int:
    """XXH64 (seed 0) of the 16 bytes ``le64(a) || le64(b)``; equal to ``xxh64(pack(a, b))``."""
    h = (P5 + 16) ^ _round(0, a)
    h = (_rotl(h, 27) * P1 + P4) & _MASK
    h ^= _round(0, b)
    h = (_rotl(h, 27) * P1 + P4) & _MASK
    return _avalanche(h)
