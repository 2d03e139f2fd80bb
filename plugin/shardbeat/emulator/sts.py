"""STS, emulated: Alibaba AssumeRoleWithOIDC (RPC, 2015-04-01) and Tencent AssumeRoleWithWebIdentity
(API 3.0, 2018-08-13). Both are anonymous calls: the OIDC token is the proof, nothing is signed.

Alibaba: parameters from the query and/or a form body (RPC style accepts both); answer
{"RequestId", "AssumedRoleUser", "Credentials": {"AccessKeyId", "AccessKeySecret", "SecurityToken",
"Expiration"}}; errors HTTP 400 {"RequestId", "Code", "Message"}.
Tencent: POST / JSON body; answer {"Response": {"Credentials": {"Token", "TmpSecretId",
"TmpSecretKey"}, "ExpiredTime", "Expiration", "RequestId"}}; errors HTTP 200 Response.Error.

The token is not verified cryptographically: any non-empty token passes unless it is listed in
identity.revoked_oidc_tokens (the error codes for that are the emulator's choice).
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qsl

from shardbeat.emulator.call import Call
from shardbeat.emulator.faults import FaultRule
from shardbeat.emulator.identity import iso_seconds
from shardbeat.emulator.model import EmuRequest, EmuResponse
from shardbeat.emulator.world import World

SERVICE = "sts"
ALIBABA_ACTION = "AssumeRoleWithOIDC"
TENCENT_ACTION = "AssumeRoleWithWebIdentity"
MIN_DURATION, MAX_DURATION = 900, 43200


def is_sts(req: EmuRequest) -> bool:
    return req.headers.get("x-tc-action") == TENCENT_ACTION or req.query.get("Action") == ALIBABA_ACTION


def describe(req: EmuRequest) -> Call:
    return Call(
        SERVICE, TENCENT_ACTION if req.headers.get("x-tc-action") == TENCENT_ACTION else ALIBABA_ACTION
    )


def _json(status: int, doc: dict[str, Any]) -> EmuResponse:
    return EmuResponse(status, json.dumps(doc).encode(), [("Content-Type", "application/json")])


def fault_response(rule: FaultRule) -> tuple[EmuResponse, str]:
    code = rule.error_code or "InternalError"
    message = rule.message or "fault injected by the shardbeat emulator"
    return _json(rule.status or 500, {"RequestId": str(uuid.uuid4()), "Code": code, "Message": message}), code


def internal_error() -> EmuResponse:
    return _json(500, {"RequestId": str(uuid.uuid4()), "Code": "InternalError", "Message": "internal error"})


def handle(world: World, req: EmuRequest, call: Call) -> EmuResponse:
    if call.action == TENCENT_ACTION:
        return _tencent(world, req)
    return _alibaba(world, req)


def _alibaba(world: World, req: EmuRequest) -> EmuResponse:
    request_id = str(uuid.uuid4())

    def error(code: str, message: str) -> EmuResponse:
        return _json(400, {"RequestId": request_id, "Code": code, "Message": message})

    params = dict(req.query)
    if req.body:
        params.update(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
    if params.get("Version") != "2015-04-01":
        return error("InvalidVersion", "Specified parameter Version is not valid.")
    for name in ("RoleArn", "OIDCProviderArn", "OIDCToken", "RoleSessionName"):
        if not params.get(name):
            return error(f"MissingParameter.{name}", f"{name} is mandatory for this action.")
    if "Signature" in params or "AccessKeyId" in params:
        return error("InvalidParameter", "AssumeRoleWithOIDC is an anonymous call; do not sign it.")
    try:
        duration = int(params.get("DurationSeconds", "3600"))
    except ValueError:
        return error("InvalidParameter.DurationSeconds", "DurationSeconds must be an integer.")
    if not MIN_DURATION <= duration <= MAX_DURATION:
        return error("InvalidParameter.DurationSeconds", "DurationSeconds is out of range.")
    token = params["OIDCToken"]
    with world.lock:
        identity = world.identity
        identity.see_oidc_token(token)
        if token in identity.revoked_oidc_tokens:
            return error("AuthenticationFail.OIDCToken.Invalid", "The OIDC token is invalid or has expired.")
        key = identity.issue("sls", ALIBABA_ACTION, world.wall_now(), float(duration))
    role = params["RoleArn"]
    return _json(
        200,
        {
            "RequestId": request_id,
            "AssumedRoleUser": {"Arn": f"{role}/{params['RoleSessionName']}", "AssumedRoleId": "emulated"},
            "Credentials": {
                "AccessKeyId": key.key_id,
                "AccessKeySecret": key.secret,
                "SecurityToken": key.token,
                "Expiration": iso_seconds(key.expires),
            },
        },
    )


def _tencent(world: World, req: EmuRequest) -> EmuResponse:
    request_id = str(uuid.uuid4())

    def error(code: str, message: str) -> EmuResponse:
        return _json(
            200, {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": request_id}}
        )

    if req.headers.get("x-tc-version") != "2018-08-13":
        return error("NoSuchVersion", "The API version does not exist; sts speaks 2018-08-13.")
    if not req.headers.get("x-tc-region"):
        return error("MissingParameter", "The request is missing a required parameter `X-TC-Region`.")
    try:
        doc = json.loads(req.body)
    except (ValueError, RecursionError):
        return error("InvalidParameter", "The body is not JSON.")
    if not isinstance(doc, dict):
        return error("InvalidParameter", "The body is not a JSON object.")
    for name in ("ProviderId", "WebIdentityToken", "RoleArn", "RoleSessionName"):
        if not isinstance(doc.get(name), str) or not doc[name]:
            return error("MissingParameter", f"The request is missing a required parameter `{name}`.")
    duration = doc.get("DurationSeconds", 7200)
    if isinstance(duration, bool) or not isinstance(duration, int) or not 0 < duration <= MAX_DURATION:
        return error("InvalidParameter.DurationSeconds", "DurationSeconds is out of range.")
    token = doc["WebIdentityToken"]
    with world.lock:
        identity = world.identity
        identity.see_oidc_token(token)
        if token in identity.revoked_oidc_tokens:
            return error("InvalidParameter.WebIdentityTokenError", "The web identity token is invalid.")
        key = identity.issue("cls", TENCENT_ACTION, world.wall_now(), float(duration))
    return _json(
        200,
        {
            "Response": {
                "Credentials": {"Token": key.token, "TmpSecretId": key.key_id, "TmpSecretKey": key.secret},
                "ExpiredTime": int(key.expires),
                "Expiration": iso_seconds(key.expires),
                "RequestId": request_id,
            }
        },
    )
