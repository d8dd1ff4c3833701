"""Which shard(s) a realm goes to: host normalization, weighted rendezvous hashing, routing states.

Exactly ``docs/routing.md`` and ``docs/residency.md`` §2, the same answer kansas (Rust) gives:

1. an explicit assignment (realm host -> list of shard names);
2. else the first regex rule, in priority order, matching like
   ``re.match(pattern, realm, re.IGNORECASE)``;
3. else weighted rendezvous hashing (XXH64, seed 0) over the shards with weight > 0;
4. else none.

A :class:`RoutingState` is built from the JSON shape of ``docs/residency.md`` §2 and is immutable.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

from . import xxh64 as _pure

_xxhash: Any
try:  # the C extension, when installed
    import xxhash as _xxhash
except ImportError:  # pragma: no cover - exercised by the tests through the pure functions
    _xxhash = None

_PACK_PAIR = struct.Struct("<QQ").pack
_TWO_POW_53 = 9007199254740992.0

#: Which XXH64 implementation :func:`key_hash` uses: "xxhash" (C) or "pure".
IMPLEMENTATION = "xxhash" if _xxhash is not None else "pure"


def _pure_key_hash(data: bytes) -> int:
    return _pure.xxh64(data, 0)


if _xxhash is not None:
    _c_intdigest: Callable[..., int] = _xxhash.xxh64_intdigest

    def _c_key_hash(data: bytes) -> int:
        return _c_intdigest(data, 0)

    def _c_pair_hash(a: int, b: int) -> int:
        return _c_intdigest(_PACK_PAIR(a, b), 0)

    _key_hash: Callable[[bytes], int] = _c_key_hash
    _pair_hash: Callable[[int, int], int] = _c_pair_hash
else:  # pragma: no cover
    _key_hash = _pure_key_hash
    _pair_hash = _pure.xxh64_pair


def key_hash(text: str) -> int:
    """XXH64 (seed 0) of a realm host or shard name's UTF-8 bytes."""
    return _key_hash(text.encode("utf-8"))


def unit(shard_hash: int, realm_hash: int) -> float:
    """``u`` in (0, 1) for one (shard, realm) pair."""
    return ((_pair_hash(shard_hash, realm_hash) >> 11) + 0.5) / _TWO_POW_53


def score(weight: float, shard_hash: int, realm_hash: int) -> float:
    """A shard's rendezvous score for a realm; 0 for weight <= 0 (never chosen)."""
    if not weight > 0:
        return 0.0
    return weight / -math.log(unit(shard_hash, realm_hash))


# --- host normalization (routing.md §1) -----------------------------------------------------

_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_DIGITS = frozenset("0123456789")


class InvalidHost(ValueError):
    """A host that is not a valid realm key (kansas answers such requests 400)."""


def normalize_host(raw: str) -> str:
    """The realm key of a ``Host`` header or configured host: trimmed, ``:port`` and one trailing
    dot removed, ASCII lower-cased; 1-253 characters of labels of 1-63 ASCII letters, digits,
    ``-`` and ``_``, not starting or ending with ``-``. Raises :class:`InvalidHost` otherwise."""
    name = raw.strip()
    if not name:
        raise InvalidHost("missing host")
    head, colon, port = name.rpartition(":")
    if colon:
        if not port or len(port) > 5 or not set(port) <= _DIGITS:
            raise InvalidHost(f"invalid host {raw!r}")
        name = head
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > 253:
        raise InvalidHost(f"invalid host {raw!r}")
    for label in name.split("."):
        if (
            not label
            or len(label) > 63
            or label[0] == "-"
            or label[-1] == "-"
            or not set(label) <= _LABEL_CHARS
        ):
            raise InvalidHost(f"invalid host {raw!r}")
    return name.lower()  # only ASCII is left, so this is ASCII lower-casing


def is_normalized(host: str) -> bool:
    """Whether ``host`` is already a realm key (its own normalization)."""
    try:
        return normalize_host(host) == host
    except InvalidHost:
        return False


# --- patterns --------------------------------------------------------------------------------

try:  # Python >= 3.11
    import re._constants as _sre_constants  # type: ignore[import-not-found,unused-ignore]
    import re._parser as _sre_parse  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - Python 3.10
    try:
        import sre_constants as _sre_constants  # type: ignore[no-redef,unused-ignore]
        import sre_parse as _sre_parse  # type: ignore[no-redef,unused-ignore]
    except ImportError:
        _sre_constants = _sre_parse = None

# Constructs Python's `re` accepts and kansas's Rust `regex` crate refuses: a rule using one
# cannot compile in kansas, so it is skipped here too (docs/residency.md §2: both skip the same).
_RUST_REFUSES = {
    name
    for name in (
        "ASSERT",  # look-ahead / look-behind
        "ASSERT_NOT",
        "GROUPREF",  # back-references
        "GROUPREF_EXISTS",  # (?(1)...)
        "GROUPREF_IGNORE",
        "ATOMIC_GROUP",  # (?>...)
        "POSSESSIVE_REPEAT",  # a*+
    )
}


def _rust_incompatible(pattern: str) -> str | None:
    """Why the Rust regex crate would refuse ``pattern`` (a construct it lacks), or None."""
    if _sre_parse is None:  # pragma: no cover
        return None
    try:
        tree = _sre_parse.parse(pattern, re.IGNORECASE)
    except Exception:  # pragma: no cover - compile() already accepted it
        return None
    # The parse tree is nested SubPatterns, lists and tuples; opcodes are named int constants.
    stack: list[Any] = [tree]
    while stack:
        item = stack.pop()
        name = getattr(item, "name", None)
        if isinstance(item, int) and isinstance(name, str):
            if name in _RUST_REFUSES:
                return name.lower().replace("_", " ")
            if name == "AT_END_STRING":
                return "\\Z"
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif hasattr(item, "data"):
            stack.extend(item.data)
    return None


def compile_rule_pattern(pattern: str) -> re.Pattern[str]:
    """Compiles a rule pattern as routing uses it (``re.IGNORECASE``; callers use ``.match``).
    Raises :class:`re.error` when Python cannot compile it or kansas could not either."""
    compiled = re.compile(pattern, re.IGNORECASE)
    why = _rust_incompatible(pattern)
    if why is not None:
        raise re.error(f"kansas's regex syntax has no {why}")
    return compiled


# --- routing states (residency.md §2) ----------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """One registered shard: a name, its Tornado port and its hashing weight."""

    name: str
    port: int
    weight: float
    hash: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True)
class Rule:
    """A regex rule: realms matching ``pattern`` go to ``shards`` (several: split by user)."""

    priority: int
    pattern: str
    regex: re.Pattern[str] = field(compare=False, repr=False)
    shards: tuple[str, ...]


Targets = tuple[str, ...]


def _name_list(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


class RoutingState:
    """A routing state: shards (name, port, weight), assignments, rules. Immutable.

    Rows naming a shard the state does not have, assignments whose key is not a normalized host,
    and rules whose pattern does not compile are skipped; :attr:`ignored` says which and why.
    """

    __slots__ = (
        "shards",
        "by_name",
        "assignments",
        "rules",
        "ignored",
        "_candidates",
        "_raw",
    )

    shards: tuple[Shard, ...]
    by_name: Mapping[str, Shard]
    assignments: Mapping[str, Targets]
    rules: tuple[Rule, ...]
    ignored: tuple[str, ...]

    def __init__(
        self,
        shards: Sequence[tuple[str, int, float]] | Sequence[Shard],
        assignments: Mapping[str, Sequence[str]] | None = None,
        rules: Sequence[tuple[int, str, Sequence[str]]] | None = None,
    ) -> None:
        ignored: list[str] = []
        by_name: dict[str, Shard] = {}
        for s in shards:
            name, port, weight = (s.name, s.port, s.weight) if isinstance(s, Shard) else s
            if name in by_name:
                ignored.append(f"shard {name}: listed twice")
                continue
            by_name[name] = Shard(name, int(port), float(weight), key_hash(name))
        self.shards = tuple(by_name.values())
        self.by_name = by_name
        known = by_name.keys()

        assigned: dict[str, Targets] = {}
        for realm, names in (assignments or {}).items():
            what = f"assignment {realm} -> {','.join(names)}"
            if not is_normalized(realm):
                ignored.append(f"{what}: not a valid realm host")
            elif not names or any(n not in known for n in names):
                ignored.append(f"{what}: names a shard that is not registered")
            else:
                assigned[realm] = tuple(names)
        self.assignments = assigned

        compiled: list[Rule] = []
        for priority, pattern, names in sorted(rules or (), key=lambda r: r[0]):
            what = f"rule {priority} {pattern!r} -> {','.join(names)}"
            if not names or any(n not in known for n in names):
                ignored.append(f"{what}: names a shard that is not registered")
                continue
            try:
                regex = compile_rule_pattern(pattern)
            except (re.error, OverflowError, RecursionError) as e:
                ignored.append(f"{what}: invalid regular expression ({e})")
                continue
            compiled.append(Rule(priority, pattern, regex, tuple(names)))
        self.rules = tuple(compiled)
        self.ignored = tuple(ignored)
        self._candidates = tuple(
            (s.weight, s.hash, s.name, s.name.encode("utf-8")) for s in self.shards if s.weight > 0
        )
        self._raw: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> RoutingState:
        """Builds a state from ``{"shards": [...], "assignments": {...}, "rules": [...]}``.
        Malformed rows are skipped (and listed in :attr:`ignored`) rather than fatal."""
        shards: list[tuple[str, int, float]] = []
        bad: list[str] = []
        for s in obj.get("shards") or ():
            try:
                name, port, weight = s["name"], s["port"], s["weight"]
                if not isinstance(name, str) or port is None:
                    raise TypeError
                shards.append((name, int(port), float(weight)))
            except (KeyError, TypeError, ValueError):
                bad.append(f"shard {s!r}: malformed")
        assignments: dict[str, tuple[str, ...]] = {}
        for realm, names in (obj.get("assignments") or {}).items():
            lst = _name_list(names)
            if lst is None:
                bad.append(f"assignment {realm}: malformed")
            else:
                assignments[realm] = lst
        rules: list[tuple[int, str, tuple[str, ...]]] = []
        for r in obj.get("rules") or ():
            try:
                lst = _name_list(r.get("shards", r.get("shard")))
                if lst is None or not isinstance(r["pattern"], str):
                    raise TypeError
                rules.append((int(r["priority"]), r["pattern"], lst))
            except (KeyError, TypeError, ValueError, AttributeError):
                bad.append(f"rule {r!r}: malformed")
        state = cls(shards, assignments, rules)
        if bad:
            state.ignored = tuple(bad) + state.ignored
        state._raw = dict(obj)
        return state

    def to_json(self) -> dict[str, Any]:
        """The JSON shape; the original object when built by :meth:`from_json`."""
        if self._raw is not None:
            return self._raw
        return {
            "shards": [{"name": s.name, "port": s.port, "weight": s.weight} for s in self.shards],
            "assignments": {k: list(v) for k, v in self.assignments.items()},
            "rules": [
                {"priority": r.priority, "pattern": r.pattern, "shards": list(r.shards)}
                for r in self.rules
            ],
        }

    def port(self, name: str) -> int:
        """The Tornado port of shard ``name`` (KeyError if the state has no such shard)."""
        return self.by_name[name].port

    def hash_winner(self, realm: str) -> str | None:
        """The weighted rendezvous winner for ``realm``, ignoring assignments and rules."""
        realm_hash = _key_hash(realm.encode("utf-8"))
        best: tuple[float, bytes, str] | None = None
        for weight, shard_hash, name, name_bytes in self._candidates:
            u = ((_pair_hash(shard_hash, realm_hash) >> 11) + 0.5) / _TWO_POW_53
            s = weight / -math.log(u)
            if best is None or s > best[0] or (s == best[0] and name_bytes < best[1]):
                best = (s, name_bytes, name)
        return None if best is None else best[2]

    def route(self, realm: str) -> Targets | None:
        """The targets of a normalized realm host, or None (see the module docstring)."""
        targets = self.assignments.get(realm)
        if targets is not None:
            return targets
        for rule in self.rules:
            if rule.regex.match(realm):
                return rule.shards
        winner = self.hash_winner(realm)
        return None if winner is None else (winner,)

    def __repr__(self) -> str:
        return (
            f"RoutingState({len(self.shards)} shards, {len(self.assignments)} assignments, "
            f"{len(self.rules)} rules)"
        )


def route(state: RoutingState, realm: str) -> Targets | None:
    """``route(state, realm)`` of docs/residency.md §2: a normalized realm's targets, or None."""
    return state.route(realm)


def choose(shards: Sequence[tuple[str, float]], realm: str) -> str | None:
    """The rendezvous winner among ``(name, weight)`` pairs; None if every weight is <= 0."""
    state = RoutingState([(name, 0, weight) for name, weight in shards])
    return state.hash_winner(realm)
