"""The answers a control-socket client gets (schemas/reply.schema.json), built from runner data.

Every message gets exactly one reply, `{"op": ..., "ok": true, ...}` when it was acted on and
`{"ok": false, "error": {"code", "message"}}` (plus `op` when it was known) when not:
- status: `groups`, one entry per configured group: the status record's fields plus what an
  operator asks first (scope, whether it is failing now, the last failure with its age, the
  last heartbeat's latency);
- released / held: per matched group, the shards this released and those that were not waiting
  to be released (already released, never revoked, or not this group's);
- heartbeat: the groups a heartbeat was asked of; reload, stop: just the acknowledgement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from shardbeat.core import shards
from shardbeat.core.shards import ShardMap

if TYPE_CHECKING:
    from shardbeat.core.driver import GroupDriver as Session

Reply = dict[str, Any]


def status_entry(record: dict[str, Any], session: Session, now: float) -> dict[str, object]:
    """A status record (records.status) plus the operator's figures; `now` is monotonic."""
    entry: dict[str, object] = {k: v for k, v in record.items() if k != "event"}
    entry["scope"] = session.scope
    entry["failing"] = session.last_error is not None
    failure = session.last_failure
    entry["last_failure"] = (
        None
        if failure is None
        else {"code": failure[0], "message": failure[1], "age_s": round(max(0.0, now - failure[2]), 3)}
    )
    latency = session.last_latency
    entry["last_latency_ms"] = None if latency is None else round(latency * 1000, 3)
    return entry


def status(groups: Sequence[dict[str, object]]) -> Reply:
    return {"op": "status", "ok": True, "groups": list(groups)}


def _who(session: Session) -> dict[str, str]:
    who = session.identity
    return {"provider": who.provider, "group": who.group, "consumer": who.consumer}


def released(
    op: str, asked: ShardMap, targets: Sequence[Session], done: Sequence[tuple[ShardMap, ShardMap]]
) -> Reply:
    """`asked`: the shards the message named; `done`: per target, (released, still releasing), as
    the runner saw them under its lock."""
    entries = []
    for session, (mine, still) in zip(targets, done, strict=True):
        entry: dict[str, Any] = _who(session)
        entry["released"] = shards.to_json(mine)
        if op == "released":
            # Shards still releasing were waiting too: their release follows the commit of their values.
            entry["not_releasing"] = shards.to_json(shards.minus(shards.minus(asked, mine), still))
        entry["releasing"] = shards.to_json(still)
        entries.append(entry)
    return {"op": op, "ok": True, "groups": entries}


def heartbeat(targets: Sequence[Session]) -> Reply:
    return {"op": "heartbeat", "ok": True, "groups": [_who(s) for s in targets]}


def done(op: str) -> Reply:
    return {"op": op, "ok": True}


def failed(op: str | None, code: str, message: str) -> Reply:
    reply: Reply = {"ok": False, "error": {"code": code, "message": message}}
    if op is not None:
        reply = {"op": op, **reply}
    return reply
