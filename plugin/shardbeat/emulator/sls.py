"""Alibaba Cloud SLS consumer groups, emulated: HeartBeat, Create/Update/List/DeleteConsumerGroup,
and checkpoints (GetCheckPoint, UpdateCheckPoint, GetCursor: sls_checkpoints.py).

The project is the first label of the Host header (the SDKs send `{project}.{endpoint}` even when
they connect to an IP). Every answer carries `x-log-requestid`; errors are
`{"errorCode", "errorMessage"}` with the documented status. A heartbeat body is a bare JSON array
of shard ids; the object form `{"shards": [...]}` is accepted leniently. The answer is always a
JSON array, `[]` when nothing is assigned, never an empty body.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from shardbeat.emulator import sls_checkpoints as checkpoints
from shardbeat.emulator.call import SLS, Call
from shardbeat.emulator.faults import FaultRule
from shardbeat.emulator.model import EmuRequest, EmuResponse
from shardbeat.emulator.sls_auth import SlsError, authenticate
from shardbeat.emulator.state import ConsumerUnknown
from shardbeat.emulator.world import SlsGroup, SlsLogstore, World

JSON_TYPE = "application/json"
MAX_GROUPS_PER_LOGSTORE = 30
MAX_SHARD_ID = 2**31 - 1
HEARTBEAT = "HeartBeat"
# SLS naming rule is stricter in the console (lower case); the API accepts what matches this.
_GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_FAULT_CODES = {500: "InternalServerError", 502: "ServerBusy", 503: "ServerBusy", 504: "ServerBusy"}


@dataclass(frozen=True, slots=True)
class _Route:
    action: str
    logstore: str | None = None
    group: str | None = None


def new_request_id() -> str:
    return uuid.uuid4().hex[:24].upper()  # SLS request ids are 24 upper-case hex digits


def project_of(host: str) -> str:
    """`my-project.cn-hangzhou.log.aliyuncs.com` or `my-project.127.0.0.1:8099` -> `my-project`."""
    return host.split(".", 1)[0].split(":", 1)[0]


def _route(req: EmuRequest) -> _Route:
    parts = req.path.split("/")
    if len(parts) == 5 and not parts[0] and parts[1] == "logstores" and parts[2] and parts[3] == "shards":
        # GetCursor: the shard id rides in `group`
        return _Route(checkpoints.GET_CURSOR if req.method == "GET" else "Unknown", parts[2], parts[4])
    if len(parts) < 4 or parts[0] or parts[1] != "logstores" or not parts[2] or parts[3] != "consumergroups":
        return _Route("Unknown")
    logstore = parts[2]
    if len(parts) == 4 or (len(parts) == 5 and not parts[4]):
        actions = {"POST": "CreateConsumerGroup", "GET": "ListConsumerGroup"}
        return _Route(actions.get(req.method, "Unknown"), logstore)
    if len(parts) != 5:
        return _Route("Unknown")
    group = parts[4]
    if req.method == "POST":
        kind = req.query.get("type")
        action = {"heartbeat": HEARTBEAT, "checkpoint": "UpdateCheckPoint"}.get(kind or "", "Unknown")
    else:
        actions = {"PUT": "UpdateConsumerGroup", "DELETE": "DeleteConsumerGroup", "GET": "GetCheckPoint"}
        action = actions.get(req.method, "Unknown")
    return _Route(action, logstore, group)


def _held(body: bytes) -> list[int]:
    """The shard ids a heartbeat claims. Raises SlsError for anything else."""
    try:
        doc = json.loads(body) if body.strip() else []
    except (ValueError, RecursionError):
        doc = None
    if isinstance(doc, dict) and set(doc) == {"shards"}:
        doc = doc["shards"]  # the wrong-but-common object form, accepted leniently
    if not isinstance(doc, list) or not all(type(item) is int and 0 <= item <= MAX_SHARD_ID for item in doc):
        # The code for a malformed heartbeat body is not documented; PostBodyInvalid is SLS's
        # code for bodies it cannot read.
        raise SlsError(400, "PostBodyInvalid", "heartbeat body must be a JSON array of shard ids, e.g. [0,1]")
    return sorted(set(doc))


def describe(req: EmuRequest) -> Call:
    route = _route(req)
    project = project_of(req.headers.get("host", ""))
    scope = f"{project}/{route.logstore}" if route.logstore else project
    group = route.group
    if route.action == "CreateConsumerGroup":
        try:
            doc = json.loads(req.body)
        except (ValueError, RecursionError):
            doc = None
        name = doc.get("consumerGroup") if isinstance(doc, dict) else None
        group = name if isinstance(name, str) else None
    if route.action == checkpoints.UPDATE_CHECKPOINT:
        shard, cursor = checkpoints.commit_of(req.body)
        committed: dict[str, dict[str, str | int]] = (
            {route.logstore or "": {str(shard): cursor}} if isinstance(cursor, str) else {}
        )
        return Call(SLS, route.action, scope, group, req.query.get("consumer"), checkpoints=committed)
    if route.action == checkpoints.GET_CURSOR:
        return Call(SLS, route.action, scope)
    if route.action != HEARTBEAT:
        return Call(SLS, route.action, scope, group)
    try:
        held: dict[str, list[int]] | None = {route.logstore or "": _held(req.body)}
    except SlsError:
        held = None
    return Call(SLS, HEARTBEAT, scope, group, req.query.get("consumer"), held, is_heartbeat=True)


def error_response(status: int, code: str, message: str, request_id: str | None = None) -> EmuResponse:
    body = json.dumps({"errorCode": code, "errorMessage": message}).encode()
    headers = [("x-log-requestid", request_id or new_request_id()), ("Content-Type", JSON_TYPE)]
    return EmuResponse(status, body, headers)


def fault_response(rule: FaultRule) -> tuple[EmuResponse, str]:
    """The answer of a `status` fault rule, and its error code."""
    status = rule.status or 500
    code = rule.error_code or _FAULT_CODES.get(status, "EmulatedFault")
    return error_response(status, code, rule.message or "fault injected by the shardbeat emulator"), code


def internal_error() -> EmuResponse:
    return error_response(500, "InternalServerError", "Internal server error message.")


def handle(world: World, req: EmuRequest, call: Call) -> EmuResponse:
    request_id = new_request_id()
    try:
        status, body = _handle(world, req, call)
    except SlsError as exc:
        if call.logged:
            world.record(call, exc.status, error=exc.code)
        return error_response(exc.status, exc.code, exc.message, request_id)
    headers = [("x-log-requestid", request_id)]
    if body:
        headers.append(("Content-Type", JSON_TYPE))
    return EmuResponse(status, body, headers)


def _handle(world: World, req: EmuRequest, call: Call) -> tuple[int, bytes]:
    host = req.headers.get("host")
    if not host:
        raise SlsError(400, "MissingHost", "Host does not exist in http header.")
    project = project_of(host)
    if project not in world.fixtures.projects:
        raise SlsError(404, "ProjectNotExist", f"The Project does not exist : {project}")
    with world.lock:
        credentials = {c.access_key_id: c for c in world.fixtures.sls_credentials}
        credentials.update(world.identity.sls_credentials())
    credential = authenticate(req, credentials, world.wall_now())
    with world.lock:
        if world.identity.expired(credential.access_key_id, world.wall_now()):
            # What SLS answers for an STS key past its Expiration (the SDKs' users report this code).
            raise SlsError(401, "SecurityTokenExpired", "The security token you provided has expired.")
    route = _route(req)
    with world.lock:
        logstores = world.projects[project]
        if route.logstore is None or route.action == "Unknown":
            raise SlsError(
                404, "EmulatorUnsupported", f"the emulator does not implement {req.method} {req.path}"
            )
        store = logstores.get(route.logstore)
        if store is None:
            raise SlsError(404, "LogStoreNotExist", f"logstore {route.logstore} dose not exist")  # sic
        if route.action == "CreateConsumerGroup":
            return _create(store, req.body)
        if route.action == checkpoints.GET_CURSOR:
            return 200, checkpoints.get_cursor(world, store, route.group or "", req)
        if route.action == "ListConsumerGroup":
            listed = [
                {"name": n, "timeout": g.timeout, "order": g.order} for n, g in sorted(store.groups.items())
            ]
            return 200, json.dumps(listed).encode()
        group = store.groups.get(route.group or "")
        if group is None:
            raise SlsError(404, "ConsumerGroupNotExist", "consumer group not exist")
        if route.action == HEARTBEAT:
            return _heartbeat(world, call, route.logstore, group, req)
        if route.action == checkpoints.GET_CHECKPOINT:
            return 200, checkpoints.get_checkpoint(store, group, req)
        if route.action == checkpoints.UPDATE_CHECKPOINT:
            owners = checkpoints.update_checkpoint(world, store, group, req)
            world.record(call, 200, owners=owners)
            return 200, b""
        if route.action == "UpdateConsumerGroup":
            _update(world, group, req.body)
        else:
            del store.groups[route.group or ""]
        return 200, b""


def _heartbeat(
    world: World, call: Call, logstore: str, group: SlsGroup, req: EmuRequest
) -> tuple[int, bytes]:
    consumer = req.query.get("consumer", "")
    if not consumer:
        raise SlsError(400, "ParameterInvalid", "the consumer query parameter is missing or empty")
    held = _held(req.body)
    try:
        assigned = group.state.heartbeat(consumer, held, world.mono_now())
    except ConsumerUnknown:
        raise SlsError(
            400, "NotExistConsumerWithBody", f"consumer {consumer} does not exist in the consumer group"
        ) from None
    world.record(call, 200, assigned={logstore: assigned})
    return 200, json.dumps(assigned, separators=(",", ":")).encode()


def _json_object(body: bytes) -> Mapping[str, object]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        raise SlsError(400, "JsonInfoInvalid", "consumerGroup or timeout is of error format")
    return doc


def _timeout(value: object) -> int | None:
    """A group timeout in seconds, or None when the value is not one (the API's own upper bound is
    undocumented; a day is far above any sane session timeout)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 86400 else None


def _create(store: SlsLogstore, body: bytes) -> tuple[int, bytes]:
    doc = _json_object(body)
    name, timeout, order = doc.get("consumerGroup"), _timeout(doc.get("timeout")), doc.get("order", False)
    if not isinstance(name, str) or not _GROUP_NAME.fullmatch(name) or timeout is None:
        raise SlsError(400, "JsonInfoInvalid", "consumerGroup or timeout is of error format")
    if not isinstance(order, bool):
        raise SlsError(400, "JsonInfoInvalid", "order is of error format")
    if name in store.groups:
        raise SlsError(400, "ConsumerGroupAlreadyExist", "consumer group already exist")
    if len(store.groups) >= MAX_GROUPS_PER_LOGSTORE:
        raise SlsError(
            400, "ConsumerGroupQuotaExceed", f"at most {MAX_GROUPS_PER_LOGSTORE} consumer groups per logstore"
        )
    store.groups[name] = store.new_group(timeout, order)
    return 200, b""


def _update(world: World, group: SlsGroup, body: bytes) -> None:
    doc = _json_object(body)
    given, order = doc.get("timeout"), doc.get("order")
    timeout = _timeout(given)
    if (given is None and order is None) or (given is not None and timeout is None):
        raise SlsError(400, "JsonInfoInvalid", "consumerGroup or timeout is of error format")
    if order is not None and not isinstance(order, bool):
        raise SlsError(400, "JsonInfoInvalid", "order is of error format")
    if timeout is not None:
        group.timeout = timeout
        group.state.set_timeout(timeout, world.mono_now())
    if isinstance(order, bool):
        group.order = order
