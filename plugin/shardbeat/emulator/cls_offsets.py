"""CLS consumer offsets, emulated: DescribeConsumerOffsets and CommitConsumerOffsets.

- DescribeConsumerOffsets {ConsumerGroup, LogsetId, TopicId, PartitionId (string; "-1" or left out:
  every partition), From (string: begin | end | unix seconds), OffsetType (0, the default: the
  committed offset, -1 when none; 1: the offset at From)} -> {ConsumerGroup, TopicPartitionOffsetsInfo:
  [{TopicID, PartitionOffsets: [{PartitionId, Offset}]}]}. A partition's data is one log group per
  second since the emulator's reset.
- CommitConsumerOffsets {ConsumerGroup, Consumer, LogsetId, TopicPartitionOffsetsInfo} is all or
  nothing, and only from the owner of every partition it names (a partition being transferred still
  belongs to its old owner): anything else is FailedOperation, the documented catch-all, since no
  dedicated code is documented. Both count against their own 20/s rate limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shardbeat.emulator.cls_auth import ClsError
from shardbeat.emulator.world import ClsGroup, ClsKey, StoredCheckpoint, World

DESCRIBE_OFFSETS = "DescribeConsumerOffsets"
COMMIT_OFFSETS = "CommitConsumerOffsets"
ACTIONS = (DESCRIBE_OFFSETS, COMMIT_OFFSETS)
NO_OFFSET = -1
MAX_OFFSET = 2**63 - 1

Params = Mapping[str, Any]


def _decimal(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes '\u00b2', which int() refuses."""
    return text.isascii() and text.isdigit()


def commit_values(params: Params) -> dict[str, dict[str, str | int]]:
    """The offsets a commit names, {TopicID: {"<partition>": offset}} (raises ClsError if malformed)."""
    infos = params.get("TopicPartitionOffsetsInfo")
    if not isinstance(infos, list) or not infos:
        raise ClsError("InvalidParameter", "`TopicPartitionOffsetsInfo` must be a non-empty list.")
    values: dict[str, dict[str, str | int]] = {}
    for info in infos:
        topic = info.get("TopicID") if isinstance(info, dict) else None
        offsets = info.get("PartitionOffsets") if isinstance(info, dict) else None
        if not isinstance(topic, str) or not isinstance(offsets, list):
            raise ClsError("InvalidParameter", "Each entry needs a TopicID and a PartitionOffsets list.")
        for item in offsets:
            pid = item.get("PartitionId") if isinstance(item, dict) else None
            offset = item.get("Offset") if isinstance(item, dict) else None
            if type(pid) is not int or pid < 0 or type(offset) is not int or not 0 <= offset <= MAX_OFFSET:
                raise ClsError(
                    "InvalidParameter",
                    "Each PartitionOffsets entry needs integer PartitionId and Offset >= 0.",
                )
            values.setdefault(topic, {})[str(pid)] = offset
    return values


def describe(world: World, name: str, group: ClsGroup, params: Params) -> dict[str, Any]:
    topic = params.get("TopicId")
    if topic is not None and (not isinstance(topic, str) or topic not in group.topics):
        raise ClsError("InvalidParameter", "`TopicId` is not a topic of this consumer group.")
    partition = params.get("PartitionId", "-1")
    if not isinstance(partition, str) or not (partition == "-1" or _decimal(partition)):
        raise ClsError("InvalidParameter", "`PartitionId` must be a partition id as a string.")
    offset_type = params.get("OffsetType", 0)
    if offset_type not in (0, 1) or isinstance(offset_type, bool):
        raise ClsError("InvalidParameter", "`OffsetType` must be 0 (fetch_offset) or 1 (list_offset).")
    start = params.get("From")
    if offset_type == 1 and not (isinstance(start, str) and (start in ("begin", "end") or _decimal(start))):
        raise ClsError("InvalidParameter", "`From` must be begin, end or unix seconds (a string).")
    keys = [
        key
        for key in group.state.shards()
        if (topic is None or key[0] == topic) and (partition == "-1" or key[1] == int(partition))
    ]
    if partition != "-1" and not keys:
        raise ClsError("InvalidParameter", f"partition {partition} does not exist in this topic.")
    by_topic: dict[str, list[dict[str, int]]] = {}
    for key in keys:
        if offset_type == 0:
            stored = group.checkpoints.get(key)
            offset = int(stored.value) if stored is not None else NO_OFFSET
        else:
            assert isinstance(start, str)
            offset = (
                0
                if start == "begin"
                else world.end_position()
                if start == "end"
                else world.position_at(int(start))
            )
        by_topic.setdefault(key[0], []).append({"PartitionId": key[1], "Offset": offset})
    infos = [{"TopicID": t, "PartitionOffsets": offsets} for t, offsets in by_topic.items()]
    return {"ConsumerGroup": name, "TopicPartitionOffsetsInfo": infos}


def commit(world: World, group: ClsGroup, consumer: str, params: Params) -> dict[str, dict[str, str | None]]:
    """Store the offsets; returns each partition's owner as the server saw it (for the log)."""
    values = commit_values(params)
    now = world.mono_now()
    group.state.expire(now)
    states = group.state.shards()
    owners: dict[str, dict[str, str | None]] = {}
    for topic, offsets in values.items():
        for partition in offsets:
            key: ClsKey = (topic, int(partition))
            if key not in states:
                raise ClsError("InvalidParameter", f"partition {partition} of {topic} is not in this group.")
            owners.setdefault(topic, {})[partition] = states[key].owner
    for topic, owned in owners.items():
        for partition, owner in owned.items():
            if owner != consumer:
                raise ClsError(
                    "FailedOperation",
                    f"consumer {consumer} does not own partition {partition} of topic {topic}.",
                )
    stamp = int(world.wall_now() * 1_000_000)
    for topic, offsets in values.items():
        for partition, offset in offsets.items():
            group.checkpoints[(topic, int(partition))] = StoredCheckpoint(offset, stamp, consumer)
    return owners
