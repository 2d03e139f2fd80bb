"""SLS checkpoints on the wire, the parts that need no signing: queries, bodies, answer shapes.

As aliyun-log-python-sdk 0.9.52 builds them (LogClient.get_check_point / update_check_point /
get_cursor), with one deliberate difference: forceSuccess is always `false`, so the server refuses a
commit from a consumer that does not own the shard (ConsumerNotMatch) instead of letting a node that
lost a shard overwrite its new owner's checkpoint. The SDK sends Python's `False`; the Go and Java
SDKs and the API reference spell it `false`.

- GetCheckPoint  GET  /logstores/{ls}/consumergroups/{g}[?shard=N]
                 -> [{"shard": N, "checkpoint": "..." ("" = never committed), "updateTime", "consumer"}]
- UpdateCheckPoint POST /logstores/{ls}/consumergroups/{g}?type=checkpoint&consumer=C&forceSuccess=false
                 body {"shard": N, "checkpoint": "<base64>"}
- GetCursor      GET  /logstores/{ls}/shards/{N}?type=cursor&from=begin|end|<unix seconds>
                 -> {"cursor": "<base64>"}
"""

from __future__ import annotations

import binascii
import json
import math
from typing import Any

from shardbeat.core.checkpoints import BEGIN, END, Start
from shardbeat.core.json_kind import json_kind

MAX_CURSOR_CHARS = 1024  # real cursors are ~30 characters; anything far longer is not one
MAX_SHARD_ID = 2**31 - 1


class AnswerShape(ValueError):
    """A 200 answer whose JSON is not what the API returns (the caller wraps it as InvalidResponse)."""


def cursor_problem(value: object) -> str | None:
    """Why `value` cannot be an SLS checkpoint: the server takes a non-empty base64 cursor."""
    if not isinstance(value, str):
        return f"an SLS checkpoint is a cursor string, not {json_kind(value)}"
    if not value or len(value) > MAX_CURSOR_CHARS:
        return f"an SLS cursor is 1 to {MAX_CURSOR_CHARS} characters"
    try:
        binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error):
        return "an SLS cursor is base64 (the server answers InvalidShardCheckPoint otherwise)"
    return None


def cursor_from(start: Start) -> str:
    """The `from` query value of GetCursor: begin, end, or whole unix seconds."""
    if start in (BEGIN, END):
        return str(start)
    if isinstance(start, str) or not math.isfinite(start) or start < 0:
        raise ValueError(f"start must be begin, end or unix seconds, not {start!r}")
    return str(int(start))


def commit_body(shard: int, cursor: str) -> bytes:
    # The SDK's json.dumps spacing, as for every SLS body we send.
    return json.dumps({"shard": shard, "checkpoint": cursor}).encode()


def committed_from(doc: Any, ids: tuple[int, ...]) -> dict[int, str | None]:
    """GetCheckPoint's list -> {shard: cursor or None}; shards the answer leaves out never had one."""
    if not isinstance(doc, list):
        raise AnswerShape(f"expected a JSON array of checkpoints, got {json_kind(doc)}")
    found: dict[int, str | None] = {}
    for item in doc:
        shard = item.get("shard") if isinstance(item, dict) else None
        cursor = item.get("checkpoint") if isinstance(item, dict) else None
        if type(shard) is not int or not 0 <= shard <= MAX_SHARD_ID or not isinstance(cursor, str):
            raise AnswerShape(f"not a checkpoint {{shard, checkpoint}}: {json_kind(item)}")
        if len(cursor) > MAX_CURSOR_CHARS:
            raise AnswerShape(f"checkpoint of shard {shard} is {len(cursor)} characters long")
        found[shard] = cursor or None
    return {shard: found.get(shard) for shard in ids}


def cursor_of(doc: Any) -> str:
    """GetCursor's {"cursor": "..."} -> the cursor."""
    cursor = doc.get("cursor") if isinstance(doc, dict) else None
    if not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CURSOR_CHARS:
        raise AnswerShape(f'expected {{"cursor": "..."}}, got {json_kind(doc)}')
    return cursor
