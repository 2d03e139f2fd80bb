"""Shard maps: {topic: frozenset of shard ids}, the one shape both providers speak.

A topic is the SLS logstore name or a CLS TopicID. Empty topics are dropped so that two maps
holding the same shards always compare equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

ShardMap = Mapping[str, frozenset[int]]

EMPTY: ShardMap = {}


def shard_map(items: Mapping[str, Iterable[int]]) -> dict[str, frozenset[int]]:
    """Normalise any {topic: ids} mapping; topics without ids are left out."""
    out: dict[str, frozenset[int]] = {}
    for topic, ids in items.items():
        ids = frozenset(ids)
        if ids:
            out[topic] = ids
    return out


def union(a: ShardMap, b: ShardMap) -> dict[str, frozenset[int]]:
    out = dict(a)
    for topic, ids in b.items():
        out[topic] = out.get(topic, frozenset()) | ids
    return shard_map(out)


def minus(a: ShardMap, b: ShardMap) -> dict[str, frozenset[int]]:
    return shard_map({topic: ids - b.get(topic, frozenset()) for topic, ids in a.items()})


def count(a: ShardMap) -> int:
    return sum(len(ids) for ids in a.values())


def to_json(a: ShardMap) -> dict[str, list[int]]:
    """Sorted lists, topics sorted: records are byte-stable for the same assignment."""
    return {topic: sorted(a[topic]) for topic in sorted(a)}
