"""Shard maps as short text: `[0-3,7]` for one topic, `logstore-a[0,1] logstore-b[4]` for several."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def ranges(ids: Iterable[int]) -> str:
    """[0, 1, 2, 3, 7] -> 0-3,7 (runs of three or more collapse)."""
    out: list[str] = []
    run: list[int] = []
    for shard in sorted(set(ids)):
        if run and shard == run[-1] + 1:
            run.append(shard)
            continue
        out.extend(_run(run))
        run = [shard]
    out.extend(_run(run))
    return ",".join(out)


def _run(run: list[int]) -> list[str]:
    if len(run) >= 3:
        return [f"{run[0]}-{run[-1]}"]
    return [str(x) for x in run]


def shard_text(shards: Mapping[str, Iterable[int]], single_topic: bool = True) -> str:
    """`[0-3]` when one topic is all there is (and `single_topic`), else `topic[ids]` per topic."""
    topics = {t: list(ids) for t, ids in shards.items() if list(ids)}
    if not topics:
        return "[]"
    if single_topic and len(topics) == 1:
        return f"[{ranges(next(iter(topics.values())))}]"
    return " ".join(f"{t}[{ranges(ids)}]" for t, ids in sorted(topics.items()))


def count(shards: Mapping[str, Iterable[int]]) -> int:
    return sum(len(list(ids)) for ids in shards.values())
