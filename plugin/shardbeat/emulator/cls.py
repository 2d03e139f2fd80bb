"""Tencent Cloud CLS consumer groups, emulated (API 3.0, version 2020-10-16, POST / with X-TC-Action):
SendConsumerHeartbeat, CreateConsumerGroup, DescribeConsumerGroups, ModifyConsumerGroup,
DeleteConsumerGroup, and consumer offsets (DescribeConsumerOffsets, CommitConsumerOffsets: cls_offsets.py).

Every answer is HTTP 200 with `Content-Type: application/json` exactly (the Python SDK ignores
Response.Error under any other type), body `{"Response": {..., "RequestId"}}` or
`{"Response": {"Error": {"Code", "Message"}, "RequestId"}}`. Unknown request fields are accepted
(the official consumer sends an undocumented PartitionStrategy). A group balances every partition
of its topics, keyed (TopicID, partition); partition ids start at 1.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from shardbeat.emulator import cls_offsets as offsets
from shardbeat.emulator.call import CLS, Call
from shardbeat.emulator.cls_auth import ClsError, authenticate
from shardbeat.emulator.faults import FaultRule
from shardbeat.emulator.model import EmuRequest, EmuResponse
from shardbeat.emulator.world import ClsGroup, ClsLogset, World

API_VERSION = "2020-10-16"
CONTENT_TYPE = "application/json"
HEARTBEAT = "SendConsumerHeartbeat"
ACTIONS = (
    HEARTBEAT,
    "CreateConsumerGroup",
    "DescribeConsumerGroups",
    "ModifyConsumerGroup",
    "DeleteConsumerGroup",
    *offsets.ACTIONS,
)
MAX_TIMEOUT = 3600
# Documented as letters, digits and "_", not starting with a digit or "_", under 256 characters;
# the API doc's own example is "test-123-1", so "-" is accepted too.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,254}")

Params = Mapping[str, Any]


def describe(req: EmuRequest) -> Call:
    action = req.headers.get("x-tc-action", "")
    try:
        params = json.loads(req.body)
    except (ValueError, RecursionError):
        params = None
    if not isinstance(params, dict):
        return Call(CLS, action, is_heartbeat=action == HEARTBEAT)
    scope, group, consumer = (_text_or_none(params.get(k)) for k in ("LogsetId", "ConsumerGroup", "Consumer"))
    held: dict[str, list[int]] | None = None
    if action == offsets.COMMIT_OFFSETS:
        try:
            committed = offsets.commit_values(params)
        except ClsError:
            committed = {}
        return Call(CLS, action, scope, group, consumer, checkpoints=committed)
    if action == HEARTBEAT:
        try:
            held = {topic: sorted(parts) for topic, parts in _claim(params).items()}
        except ClsError:
            held = None
    return Call(CLS, action, scope, group, consumer, held, is_heartbeat=action == HEARTBEAT)


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _json_response(response: dict[str, Any], status: int = 200) -> EmuResponse:
    body = json.dumps({"Response": response}, separators=(",", ":")).encode()
    return EmuResponse(status, body, [("Content-Type", CONTENT_TYPE)])


def error_response(code: str, message: str, request_id: str | None = None, status: int = 200) -> EmuResponse:
    error = {"Error": {"Code": code, "Message": message}, "RequestId": request_id or str(uuid.uuid4())}
    return _json_response(error, status)


def fault_response(rule: FaultRule) -> tuple[EmuResponse, str]:
    """The answer of a `status` fault rule, and its error code."""
    message = rule.message or "fault injected by the shardbeat emulator"
    code = rule.error_code or "InternalError"
    return error_response(code, message, status=rule.status or 200), code


def internal_error() -> EmuResponse:
    return error_response("InternalError", "An internal error occurred; retry later.")


def handle(world: World, req: EmuRequest, call: Call) -> EmuResponse:
    request_id = str(uuid.uuid4())
    try:
        answer = _handle(world, req, call)
    except ClsError as exc:
        if call.logged:
            world.record(call, 200, error=exc.code)
        return error_response(exc.code, exc.message, request_id)
    return _json_response({**answer, "RequestId": request_id})


def _handle(world: World, req: EmuRequest, call: Call) -> dict[str, Any]:
    with world.lock:
        credentials = {c.secret_id: c for c in world.fixtures.cls_credentials}
        credentials.update(world.identity.cls_credentials())
    credential = authenticate(req, credentials, world.wall_now())
    with world.lock:
        if world.identity.expired(credential.secret_id, world.wall_now()):
            raise ClsError(
                "AuthFailure.TokenFailure", "The token has expired; get new temporary credentials."
            )
    version = req.headers.get("x-tc-version")
    if version is None:
        raise ClsError("MissingParameter", "The request is missing a required parameter `X-TC-Version`.")
    if version != API_VERSION:
        raise ClsError(
            "NoSuchVersion", f"The API version `{version}` does not exist; cls speaks {API_VERSION}."
        )
    action = call.action
    if action not in ACTIONS:
        raise ClsError(
            "InvalidAction", f"The requested action `{action}` does not exist (or is not emulated)."
        )
    if not req.headers.get("content-type", "").lower().startswith(CONTENT_TYPE):
        raise ClsError("InvalidParameter", "The emulator accepts application/json request bodies only.")
    try:
        params = json.loads(req.body)
    except (ValueError, RecursionError):
        params = None
    if not isinstance(params, dict):
        raise ClsError("InvalidParameter", "The request body must be a JSON object.")
    with world.lock:
        if action == HEARTBEAT and not world.cls_heartbeat_rate.allow(world.mono_now()):
            limit = world.cls_heartbeat_rate.limit
            raise ClsError(
                "RequestLimitExceeded",
                f"Your current request frequency exceeds the limit `{limit}` per second for {HEARTBEAT}. "
                "Please reduce the frequency of calls.",
            )
        if action in offsets.ACTIONS and not world.cls_offsets_rate.allow(world.mono_now()):
            raise ClsError(
                "RequestLimitExceeded",
                f"Your current request frequency exceeds the limit `{world.cls_offsets_rate.limit}` per "
                f"second for {action}. Please reduce the frequency of calls.",
            )
        logset = _logset(world, params)
        if action in offsets.ACTIONS:
            name = _string(params, "ConsumerGroup")
            group = _group(logset, name)
            if action == offsets.DESCRIBE_OFFSETS:
                return offsets.describe(world, name, group, params)
            owners = offsets.commit(world, group, _name(params, "Consumer"), params)
            world.record(call, 200, owners=owners)
            return {}
        if action == HEARTBEAT:
            return _heartbeat(world, call, logset, params)
        if action == "CreateConsumerGroup":
            return _create(logset, params)
        if action == "DescribeConsumerGroups":
            return _describe_groups(logset, params)
        name = _string(params, "ConsumerGroup")
        group = _group(logset, name)
        if action == "ModifyConsumerGroup":
            _modify(world, logset, group, params)
        else:
            del logset.groups[name]
        return {}


# -- parameters


def _string(params: Params, name: str) -> str:
    value = params.get(name)
    if value is None:
        raise ClsError("MissingParameter", f"The request is missing a required parameter `{name}`.")
    if not isinstance(value, str) or not value:
        raise ClsError("InvalidParameter", f"The parameter `{name}` must be a non-empty string.")
    return value


def _name(params: Params, name: str) -> str:
    value = _string(params, name)
    if not _NAME.fullmatch(value):
        raise ClsError(
            "InvalidParameter",
            f"The parameter `{name}` must be letters, digits, `_` or `-`, start with a letter, "
            "and be under 256 characters.",
        )
    return value


def _timeout(params: Params) -> int:
    value = params.get("Timeout")
    if value is None:
        raise ClsError("MissingParameter", "The request is missing a required parameter `Timeout`.")
    if type(value) is not int or not 0 < value <= MAX_TIMEOUT:
        raise ClsError("InvalidParameter", f"The parameter `Timeout` must be an integer in 1..{MAX_TIMEOUT}.")
    return value


def _topics(params: Params, logset: ClsLogset) -> tuple[str, ...]:
    value = params.get("Topics")
    if value is None:
        raise ClsError("MissingParameter", "The request is missing a required parameter `Topics`.")
    if not isinstance(value, list) or not value or not all(isinstance(t, str) and t for t in value):
        raise ClsError("InvalidParameter", "The parameter `Topics` must be a non-empty list of TopicIDs.")
    for topic in value:
        if topic not in logset.topics:
            raise ClsError("ResourceNotFound.TopicNotExist", f"topic {topic} does not exist in this logset")
    return tuple(dict.fromkeys(value))


def _claim(params: Params) -> dict[str, set[int]]:
    """TopicPartitionsInfo: what the consumer holds, {TopicID: partitions}. Optional; [] if absent."""
    infos = params.get("TopicPartitionsInfo", [])
    if infos is None:
        infos = []
    if not isinstance(infos, list):
        raise ClsError("InvalidParameter", "The parameter `TopicPartitionsInfo` must be a list.")
    claim: dict[str, set[int]] = {}
    for info in infos:
        topic = info.get("TopicID") if isinstance(info, dict) else None
        partitions = info.get("Partitions", []) if isinstance(info, dict) else None
        if (
            not isinstance(topic, str)
            or not isinstance(partitions, list)
            or not all(type(p) is int and p >= 0 for p in partitions)
        ):
            raise ClsError(
                "InvalidParameter",
                "Each `TopicPartitionsInfo` entry needs a TopicID and a list of non-negative Partitions.",
            )
        claim.setdefault(topic, set()).update(partitions)
    return claim


def _logset(world: World, params: Params) -> ClsLogset:
    logset_id = _string(params, "LogsetId")
    logset = world.logsets.get(logset_id)
    if logset is None:
        raise ClsError("ResourceNotFound.LogsetNotExist", f"logset {logset_id} does not exist")
    return logset


def _group(logset: ClsLogset, name: str) -> ClsGroup:
    group = logset.groups.get(name)
    if group is None:
        # The code for an unknown consumer group is not documented; FailedOperation is the
        # documented catch-all ("operation failed"), so that is what the emulator answers.
        raise ClsError("FailedOperation", f"consumer group {name} does not exist")
    return group


# -- actions


def _heartbeat(world: World, call: Call, logset: ClsLogset, params: Params) -> dict[str, Any]:
    name = _string(params, "ConsumerGroup")
    consumer = _name(params, "Consumer")
    claim = _claim(params)
    group = _group(logset, name)
    held = [(topic, partition) for topic, partitions in claim.items() for partition in partitions]
    assigned: dict[str, list[int]] = {}
    for topic, partition in group.state.heartbeat(consumer, held, world.mono_now()):
        assigned.setdefault(topic, []).append(partition)
    world.record(call, 200, assigned=assigned)
    infos = [{"TopicID": topic, "Partitions": assigned[topic]} for topic in group.topics if topic in assigned]
    return {"ConsumerGroup": name, "TopicPartitionsInfo": infos}


def _create(logset: ClsLogset, params: Params) -> dict[str, Any]:
    name = _name(params, "ConsumerGroup")
    timeout = _timeout(params)
    topics = _topics(params, logset)
    if name in logset.groups:
        # No dedicated code is documented; clients recognise the message.
        raise ClsError("FailedOperation", f"consumer group already exists: {name}")
    logset.groups[name] = logset.new_group(timeout, topics)
    return {"ConsumerGroup": name}


def _describe_groups(logset: ClsLogset, params: Params) -> dict[str, Any]:
    wanted = None if params.get("Topics") is None else set(_topics(params, logset))
    infos = [
        {"ConsumerGroup": name, "Timeout": group.timeout, "Topics": list(group.topics)}
        for name, group in sorted(logset.groups.items())
        if wanted is None or wanted & set(group.topics)
    ]
    return {"ConsumerGroupsInfo": infos}


def _modify(world: World, logset: ClsLogset, group: ClsGroup, params: Params) -> None:
    timeout = None if params.get("Timeout") is None else _timeout(params)
    topics = None if params.get("Topics") is None else _topics(params, logset)
    now = world.mono_now()
    if topics is not None and topics != group.topics:
        group.topics = topics
        group.state.set_shards(logset.keys(topics), now)
    if timeout is not None:
        group.timeout = timeout
        group.state.set_timeout(timeout, now)
