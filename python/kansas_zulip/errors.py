"""The errors kansas_zulip raises."""

from __future__ import annotations


class RoutingError(RuntimeError):
    """Base class of kansas_zulip's errors."""


class RoutingUnavailable(RoutingError):
    """No routing snapshot: the kansas database could not be read (and no usable cache file)."""


class SchemaMismatch(RoutingError):
    """The database's kansas schema is not the version this module reads (3)."""


class NoShard(RoutingError):
    """A realm has no Tornado shard: no assignment or rule matches it and every weight is 0."""
