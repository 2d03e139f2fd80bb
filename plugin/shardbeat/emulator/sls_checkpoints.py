"""SLS checkpoints and cursors, emulated: GetCheckPoint, UpdateCheckPoint, GetCursor.

- GetCheckPoint lists every shard of the logstore (or the one `?shard=N` names) as
  {"shard", "checkpoint" ("" when never committed), "updateTime" (microseconds), "consumer"}.
- UpdateCheckPoint with forceSuccess=false (or left out: the API reference says a commit without a
  consumer needs forceSuccess=true) is accepted only from the shard's owner: 400 ConsumerNotExsit
  (sic, the server's spelling, as the Go and Java consumers match it) when the consumer is not a live
  member, 400 ConsumerNotMatch when another consumer owns the shard. A shard being transferred still
  belongs to its old owner until that owner lets go. forceSuccess=true skips the check (the SDK's
  default, which lets a node that lost a shard overwrite the new owner's checkpoint).
- A checkpoint must be base64 (400 InvalidShardCheckPoint); an unknown shard is 404 ShardNotExist.
- GetCursor: `from` = begin | end | unix seconds; the shard's data is one log group per second since
  the emulator's reset, and a cursor is base64 of the decimal position.
"""

from __future__ import annotations

import base64
import binascii
import json

from shardbeat.emulator.model import EmuRequest
from shardbeat.emulator.sls_auth import SlsError
from shardbeat.emulator.world import SlsGroup, SlsLogstore, StoredCheckpoint, World

GET_CHECKPOINT = "GetCheckPoint"
UPDATE_CHECKPOINT = "UpdateCheckPoint"
GET_CURSOR = "GetCursor"
MAX_CURSOR_CHARS = 1024


def encode_cursor(position: int) -> str:
    return base64.b64encode(str(position).encode()).decode()


def _shard(store: SlsLogstore, value: object) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if type(value) is not int or value not in store.shards:
        raise SlsError(404, "ShardNotExist", "shard not exist")
    return value


def commit_of(body: bytes) -> tuple[object, object]:
    """(shard, checkpoint) as the body has them, unchecked."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        return None, None
    return doc.get("shard"), doc.get("checkpoint")


def get_checkpoint(store: SlsLogstore, group: SlsGroup, req: EmuRequest) -> bytes:
    wanted = req.query.get("shard")
    ids = list(store.shards) if wanted is None or wanted == "-1" else [_shard(store, wanted)]
    listed = []
    for shard in ids:
        stored = group.checkpoints.get(shard)
        listed.append(
            {
                "shard": shard,
                "checkpoint": stored.value if stored else "",
                "updateTime": stored.update_time if stored else 0,
                "consumer": stored.consumer if stored else "",
            }
        )
    return json.dumps(listed).encode()


def update_checkpoint(
    world: World, store: SlsLogstore, group: SlsGroup, req: EmuRequest
) -> dict[str, dict[str, str | None]]:
    """Store the checkpoint; returns the shard's owner as the server saw it (for the log)."""
    consumer = req.query.get("consumer", "")
    force = req.query.get("forceSuccess", "false").lower()
    if force not in ("true", "false"):
        raise SlsError(400, "ParameterInvalid", "forceSuccess must be true or false")
    shard_value, cursor = commit_of(req.body)
    if type(shard_value) is not int or not isinstance(cursor, str):
        raise SlsError(400, "PostBodyInvalid", 'body must be {"shard": N, "checkpoint": "<base64>"}')
    shard = _shard(store, shard_value)
    try:
        valid = 0 < len(cursor) <= MAX_CURSOR_CHARS and bool(
            binascii.a2b_base64(cursor.encode("ascii"), strict_mode=True)
        )
    except (UnicodeEncodeError, binascii.Error):
        valid = False
    if not valid:
        raise SlsError(400, "InvalidShardCheckPoint", "shard checkpoint not encoded by base64")
    now = world.mono_now()
    group.state.expire(now)
    owner = group.state.shards()[shard].owner
    owners: dict[str, dict[str, str | None]] = {req.path.split("/")[2]: {str(shard): owner}}
    if force == "false":
        if not consumer:
            raise SlsError(400, "ParameterInvalid", "a commit without forceSuccess=true needs a consumer")
        if consumer not in group.state.consumers():
            raise SlsError(400, "ConsumerNotExsit", f"consumer {consumer} does not exist")  # sic
        if owner != consumer:
            raise SlsError(400, "ConsumerNotMatch", f"consumer {consumer} does not own shard {shard}")
    group.checkpoints[shard] = StoredCheckpoint(cursor, int(world.wall_now() * 1_000_000), consumer)
    return owners


def get_cursor(world: World, store: SlsLogstore, shard_text: str, req: EmuRequest) -> bytes:
    if req.query.get("type") != "cursor":
        raise SlsError(400, "ParameterInvalid", "the emulator implements only type=cursor here")
    _shard(store, shard_text)
    start = req.query.get("from", "")
    if start == "begin":
        position = 0
    elif start == "end":
        position = world.end_position()
    elif start.isascii() and start.isdigit():
        position = world.position_at(int(start))
    else:
        raise SlsError(400, "ParameterInvalid", "from must be begin, end or unix seconds")
    return json.dumps({"cursor": encode_cursor(position)}).encode()
