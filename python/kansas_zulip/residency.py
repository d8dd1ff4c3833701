"""A realm's current and resident shards at a time (docs/residency.md §3).

A :class:`Residency` is one immutable snapshot: the current routing state and the drain windows
that were open when it was read. It answers

- :meth:`Residency.current_targets` / :meth:`Residency.current_ports`: where the realm lives now;
- :meth:`Residency.resident`: the current shards, then the shards each open window that moved
  the realm keeps it on (newest window first, each shard once, with that window's ``until``);
- :meth:`Residency.user_resident`: the same for one user of the realm, as Tornado ports.

Per-realm results are cached inside the snapshot; an entry is reused only while the set of open
windows is the same as when it was computed, so window expiry is exact. The cache is bounded.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from .routing import RoutingState

#: The per-snapshot cache is cleared when it holds this many realms.
CACHE_LIMIT = 100_000

# A realm's shards as (name, port) pairs of the state that routed it.
Named = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Window:
    """One drain window: the routing before and after a change, open while ``until > now``.
    Times are seconds since the Unix epoch."""

    id: int
    opened_at: float
    until: float
    before: RoutingState
    after: RoutingState
    change: str = ""
    changed_by: str = ""

    def is_open(self, now: float) -> bool:
        return self.until > now

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "opened_at": self.opened_at,
            "until": self.until,
            "change": self.change,
            "changed_by": self.changed_by,
            "before": self.before.to_json(),
            "after": self.after.to_json(),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Window:
        return cls(
            id=int(obj["id"]),
            opened_at=float(obj["opened_at"]),
            until=float(obj["until"]),
            before=RoutingState.from_json(obj["before"]),
            after=RoutingState.from_json(obj["after"]),
            change=str(obj.get("change", "")),
            changed_by=str(obj.get("changed_by", "")),
        )


class ResidentShard(NamedTuple):
    """One resident shard of a realm: its name, Tornado port, and the ``until`` of the window
    that keeps it (None for a current shard)."""

    shard: str
    port: int
    until: float | None


class _Move(NamedTuple):
    """An open window that moved the realm: its until, and the realm's shards before/after."""

    until: float
    before: Named | None
    after: Named | None


class _Entry(NamedTuple):
    lo: float  # valid for lo <= now < hi: the open windows are the same throughout
    hi: float
    current: Named | None
    resident: tuple[ResidentShard, ...]
    moves: tuple[_Move, ...]


def _named(state: RoutingState, realm: str) -> Named | None:
    targets = state.route(realm)
    if targets is None:
        return None
    by_name = state.by_name
    return tuple((name, by_name[name].port) for name in targets)


def _names(named: Named | None) -> tuple[str, ...] | None:
    return None if named is None else tuple(n for n, _ in named)


def _extend(resident: list[ResidentShard], name: str, until: float) -> None:
    """A shard kept by several open windows stays resident until the last of them closes."""
    for i, r in enumerate(resident):
        if r.shard == name and r.until is not None and r.until < until:
            resident[i] = ResidentShard(r.shard, r.port, until)


class Residency:
    """The current routing state and the drain windows open when it was read. Immutable."""

    def __init__(
        self,
        current: RoutingState,
        windows: Iterable[Window] = (),
        *,
        loaded_at: float | None = None,
        source: str = "database",
    ) -> None:
        self.current = current
        # Newest first: (opened_at, id) descending.
        self.windows: tuple[Window, ...] = tuple(
            sorted(windows, key=lambda w: (w.opened_at, w.id), reverse=True)
        )
        self.loaded_at = time.time() if loaded_at is None else loaded_at
        #: "database" or "cache file" (a snapshot read from the cache file) or anything else.
        self.source = source
        self._untils = sorted({w.until for w in self.windows})
        self._cache: dict[str, _Entry] = {}
        self._current_cache: dict[str, Named | None] = {}

    # --- JSON (the cache file) --------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": 1,
            "loaded_at": self.loaded_at,
            "current": self.current.to_json(),
            "windows": [w.to_json() for w in self.windows],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, source: str = "cache file") -> Residency:
        if obj.get("format") != 1:
            raise ValueError(f"unknown routing snapshot format {obj.get('format')!r}")
        return cls(
            RoutingState.from_json(obj["current"]),
            [Window.from_json(w) for w in obj.get("windows") or ()],
            loaded_at=float(obj.get("loaded_at", 0.0)),
            source=source,
        )

    # --- answers ---------------------------------------------------------------------------

    def draining(self, now: float | None = None) -> bool:
        """Whether any window is open at ``now``."""
        t = time.time() if now is None else now
        return bool(self._untils) and self._untils[-1] > t

    def _current(self, realm: str) -> Named | None:
        cache = self._current_cache
        try:
            return cache[realm]
        except KeyError:
            pass
        named = _named(self.current, realm)
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        cache[realm] = named
        return named

    def current_targets(self, realm: str) -> tuple[str, ...] | None:
        """The realm's current shard names (several: split by user), or None."""
        return _names(self._current(realm))

    def current_ports(self, realm: str) -> list[int] | None:
        """The Tornado ports of :meth:`current_targets`, in order, or None."""
        named = self._current(realm)
        return None if named is None else [p for _, p in named]

    def user_port(self, realm: str, user_id: int) -> int | None:
        """The user's current port: ``ports[user_id % len(ports)]``, or None."""
        named = self._current(realm)
        return None if named is None else named[user_id % len(named)][1]

    def _entry(self, realm: str, now: float) -> _Entry:
        entry = self._cache.get(realm)
        if entry is not None and entry.lo <= now < entry.hi:
            return entry
        untils = self._untils
        i = bisect.bisect_right(untils, now)  # untils[:i] <= now < untils[i:]
        lo = untils[i - 1] if i > 0 else -math.inf
        hi = untils[i] if i < len(untils) else math.inf
        current = self._current(realm)
        resident: list[ResidentShard] = []
        seen: set[str] = set()
        for name, port in current or ():
            if name not in seen:
                seen.add(name)
                resident.append(ResidentShard(name, port, None))
        moves: list[_Move] = []
        for w in self.windows:
            if not w.until > now:
                continue
            before = _named(w.before, realm)
            after = _named(w.after, realm)
            if _names(before) == _names(after):
                continue  # this change did not move the realm
            moves.append(_Move(w.until, before, after))
            for name, port in before or ():
                if name not in seen:
                    seen.add(name)
                    resident.append(ResidentShard(name, port, w.until))
                else:
                    _extend(resident, name, w.until)
        entry = _Entry(lo, hi, current, tuple(resident), tuple(moves))
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[realm] = entry
        return entry

    def resident(self, realm: str, now: float | None = None) -> list[ResidentShard]:
        """The realm's resident shards at ``now`` (default: this machine's clock)."""
        if now is None:
            now = time.time()
        if not self._untils or self._untils[-1] <= now:  # nothing drains: the current shards
            named = self._current(realm)
            if named is None:
                return []
            if len(named) == 1:
                return [ResidentShard(named[0][0], named[0][1], None)]
        return list(self._entry(realm, now).resident)

    def user_resident_shards(
        self, realm: str, user_id: int, now: float | None = None
    ) -> list[ResidentShard]:
        """One user's resident shards at ``now``: the user's current shard, then the user's
        shard before each open window that moved the user, newest first, each once."""
        if now is None:
            now = time.time()
        if not self._untils or self._untils[-1] <= now:
            named = self._current(realm)
            if named is None:
                return []
            name, port = named[user_id % len(named)]
            return [ResidentShard(name, port, None)]
        entry = self._entry(realm, now)
        out: list[ResidentShard] = []
        if entry.current is not None:
            name, port = entry.current[user_id % len(entry.current)]
            out.append(ResidentShard(name, port, None))
        for move in entry.moves:
            b = move.before
            if b is None:
                continue
            name, port = b[user_id % len(b)]
            a = move.after
            if a is not None and a[user_id % len(a)][0] == name:
                continue
            if any(r.shard == name for r in out):
                _extend(out, name, move.until)
                continue
            out.append(ResidentShard(name, port, move.until))
        return out

    def user_resident(self, realm: str, user_id: int, now: float | None = None) -> list[int]:
        """The Tornado ports of :meth:`user_resident_shards`, in order."""
        return [r.port for r in self.user_resident_shards(realm, user_id, now)]

    def __repr__(self) -> str:
        return f"Residency({self.current!r}, {len(self.windows)} windows, from {self.source})"
