"""Partitions of users: ranges of hashint8(user_id), which a fold claims one at a time.

Two folds never share a user because each claims the users of one partition,
under an advisory lock of that partition.  A partition is a range of
``hashint8(user_id)``, the hash Citus distributes a bigint column by: on
Citus the partitions are the shards of ``rerankdb.interaction_queue`` (read
from ``pg_dist_shard``: a shard split changes them), so a claim's
``FOR UPDATE`` runs on one shard, which Citus requires; on one node they
are 16 equal ranges, as Citus would cut 16 shards.
"""

from __future__ import annotations

import bisect
import weakref
from dataclasses import dataclass
from typing import Any

import psycopg

from rerankdb.sqlfiles import queries

Q = queries("partitions")

ONE_NODE_PARTITIONS = 16
_HASH_MIN = -(2**31)
_HASH_MAX = 2**31 - 1


@dataclass(frozen=True)
class Partitions:
    """The partitions' lower bounds (sorted; the first is the smallest int4) and whether
    they are Citus shards."""

    lower: tuple[int, ...]
    citus: bool

    @property
    def upper(self) -> tuple[int, ...]:
        """Each partition's upper bound (inclusive)."""
        return (*(lo - 1 for lo in self.lower[1:]), _HASH_MAX)

    def index(self, hashed: int) -> int:
        """The partition holding a user whose hashint8(user_id) is ``hashed``."""
        return bisect.bisect_right(self.lower, hashed) - 1

    def group(self, users: list[int], hashes: list[int]) -> list[list[int]]:
        """``users`` grouped by partition (each group in user order), partitions in order."""
        groups: dict[int, list[int]] = {}
        for user, hashed in sorted(zip(users, hashes, strict=True)):
            groups.setdefault(self.index(hashed), []).append(user)
        return [groups[k] for k in sorted(groups)]


ONE_NODE = Partitions(
    tuple(_HASH_MIN + i * (2**32 // ONE_NODE_PARTITIONS) for i in range(ONE_NODE_PARTITIONS)), citus=False
)

_known: weakref.WeakKeyDictionary[psycopg.Connection[Any], Partitions] = weakref.WeakKeyDictionary()


def of(conn: psycopg.Connection[Any], *, fresh: bool = False) -> Partitions:
    """The partitions of the database ``conn`` is connected to (read once per connection)."""
    if not fresh and conn in _known:
        return _known[conn]
    found = ONE_NODE
    row = conn.execute(Q["is_citus"]).fetchone()
    if row is not None and row[0]:
        shards = conn.execute(Q["shard_ranges"]).fetchall()
        if shards:
            found = Partitions(tuple(lo for lo, _hi in shards), citus=True)
    _known[conn] = found
    return found


def by_partition(conn: psycopg.Connection[Any], users: list[int]) -> list[list[int]]:
    """``users`` in groups that each lie in one partition on Citus (a transaction that
    locks users' rows must stay on one shard there); on one node, one group."""
    parts = of(conn)
    if not parts.citus or not users:
        return [sorted(users)] if users else []
    hashes = [h for (h,) in conn.execute(Q["user_hashes"], {"users": users})]
    return parts.group(users, hashes)
