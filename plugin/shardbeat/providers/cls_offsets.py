"""CLS consumer offsets on the wire (API 3.0, 2020-10-16): request parameters and answer shapes.

As tencentcloud-sdk-python-cls's models name them (DescribeConsumerOffsetsRequest,
CommitConsumerOffsetsRequest, TopicPartitionOffsetInfo, PartitionOffsetInfo) and as the official
consumer (tencentcloud-cls-sdk-python 1.0.9) sends them:

- DescribeConsumerOffsets {ConsumerGroup, LogsetId, TopicId, PartitionId (a string), From (a string:
  "begin", "end" or unix seconds), OffsetType (0: the committed offset, fetch_offset; 1: the offset
  at From, list_offset)} -> Response.TopicPartitionOffsetsInfo
  [{TopicID, PartitionOffsets: [{PartitionId, Offset}]}]. Note TopicId in the request, TopicID in
  the answer. The official consumer takes an Offset > 0 as committed, anything else as none.
- CommitConsumerOffsets {ConsumerGroup, Consumer, LogsetId, TopicPartitionOffsetsInfo} -> nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from shardbeat.core.checkpoints import BEGIN, END, ShardKey, Start
from shardbeat.core.json_kind import json_kind

DESCRIBE_OFFSETS = "DescribeConsumerOffsets"
COMMIT_OFFSETS = "CommitConsumerOffsets"
FETCH_OFFSET = 0  # OffsetType: the group's committed offset
LIST_OFFSET = 1  # OffsetType: the partition's offset at `From`
MAX_OFFSET = 2**63 - 1


class AnswerShape(ValueError):
    """A successful answer whose fields are not what the API returns."""


def offset_problem(value: object) -> str | None:
    """Why `value` cannot be a CLS checkpoint: an offset is a non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"a CLS checkpoint is an integer offset, not {json_kind(value)}"
    if not 0 <= value <= MAX_OFFSET:
        return f"a CLS offset is between 0 and {MAX_OFFSET}"
    return None


def from_value(start: Start) -> str:
    if start in (BEGIN, END):
        return str(start)
    if isinstance(start, str) or not math.isfinite(start) or start < 0:
        raise ValueError(f"start must be begin, end or unix seconds, not {start!r}")
    return str(int(start))


def describe_params(
    group: str, logset_id: str, topic: str, partition: int, start: Start, offset_type: int
) -> dict[str, Any]:
    return {
        "ConsumerGroup": group,
        "LogsetId": logset_id,
        "TopicId": topic,
        "PartitionId": str(partition),
        "From": from_value(start),
        "OffsetType": offset_type,
    }


def commit_params(
    group: str, consumer: str, logset_id: str, values: Mapping[ShardKey, int]
) -> dict[str, Any]:
    by_topic: dict[str, list[dict[str, int]]] = {}
    for topic, partition in sorted(values):
        by_topic.setdefault(topic, []).append(
            {"PartitionId": partition, "Offset": values[(topic, partition)]}
        )
    infos = [{"TopicID": topic, "PartitionOffsets": offsets} for topic, offsets in by_topic.items()]
    return {
        "ConsumerGroup": group,
        "Consumer": consumer,
        "LogsetId": logset_id,
        "TopicPartitionOffsetsInfo": infos,
    }


def offset_in(answer: Mapping[str, Any], topic: str, partition: int) -> int | None:
    """The Offset of (topic, partition) in Response.TopicPartitionOffsetsInfo; None when not listed
    (or null, which Tencent uses for "no value")."""
    infos = answer.get("TopicPartitionOffsetsInfo")
    if infos is None:
        return None
    if not isinstance(infos, list):
        raise AnswerShape(f"Response.TopicPartitionOffsetsInfo is {json_kind(infos)}, not a list")
    for info in infos:
        if not isinstance(info, dict) or not isinstance(info.get("TopicID"), str):
            raise AnswerShape("TopicPartitionOffsetsInfo entry without a TopicID")
        if info["TopicID"] != topic:
            continue
        offsets = info.get("PartitionOffsets") or []
        if not isinstance(offsets, list):
            raise AnswerShape(f"PartitionOffsets of {topic!r} is {json_kind(offsets)}, not a list")
        for item in offsets:
            pid = item.get("PartitionId") if isinstance(item, dict) else None
            offset = item.get("Offset") if isinstance(item, dict) else None
            if isinstance(pid, bool) or not isinstance(pid, int):
                raise AnswerShape("PartitionOffsets entry without an integer PartitionId")
            if pid != partition:
                continue
            if offset is None:
                return None
            if isinstance(offset, bool) or not isinstance(offset, int) or abs(offset) > MAX_OFFSET:
                raise AnswerShape(f"Offset of partition {partition} is {json_kind(offset)}")
            return offset
    return None
