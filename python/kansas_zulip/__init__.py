"""kansas_zulip: the Zulip side of kansas's realm routing (docs/residency.md, docs/routing.md).

- :mod:`kansas_zulip.routing`: XXH64, weighted rendezvous hashing, routing states, ``route``;
- :mod:`kansas_zulip.residency`: a snapshot with drain windows: current and resident shards;
- :mod:`kansas_zulip.store`: loading a snapshot from PostgreSQL, the cache file;
- :mod:`kansas_zulip.follower`: keeping a process's snapshot current (LISTEN/NOTIFY);
- :mod:`kansas_zulip.sharding`: the drop-in for Zulip's ``zerver/tornado/sharding.py``.
"""

from .errors import NoShard, RoutingError, RoutingUnavailable, SchemaMismatch
from .residency import Residency, ResidentShard, Window
from .routing import InvalidHost, RoutingState, normalize_host, route

__all__ = [
    "InvalidHost",
    "NoShard",
    "Residency",
    "ResidentShard",
    "RoutingError",
    "RoutingState",
    "RoutingUnavailable",
    "SchemaMismatch",
    "Window",
    "normalize_host",
    "route",
]
