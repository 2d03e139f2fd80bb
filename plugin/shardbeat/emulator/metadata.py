"""Instance metadata, emulated: Alibaba ECS (IMDSv2 token + v1) and Tencent CVM role credentials.

    PUT /latest/api/token  (X-aliyun-ecs-metadata-token-ttl-seconds: 1..21600)  -> token text
    GET /latest/meta-data/ram/security-credentials/[<role>]   ECS: role list / role keys
    GET /latest/meta-data/cam/security-credentials/[<role>]   CVM: role list / role keys

ECS GETs carry X-aliyun-ecs-metadata-token when the client has one; a bad or expired token is 401;
no token is fine unless identity.imds_v2 is "required" (403, as an instance that enforces IMDSv2
answers). With imds_v2 "off" the token PUT is 404 (an instance without IMDSv2). Answers are
text/plain or JSON like the real services, each fetch issuing a fresh key (identity.py).
"""

from __future__ import annotations

import json
import secrets
from urllib.parse import unquote

from shardbeat.emulator.call import Call
from shardbeat.emulator.faults import FaultRule
from shardbeat.emulator.identity import iso_seconds
from shardbeat.emulator.model import EmuRequest, EmuResponse
from shardbeat.emulator.world import World

SERVICE = "metadata"
PREFIX = "/latest/"
TOKEN_PATH = "/latest/api/token"
ECS_ROLES = "/latest/meta-data/ram/security-credentials/"
CVM_ROLES = "/latest/meta-data/cam/security-credentials/"
TTL_HEADER = "x-aliyun-ecs-metadata-token-ttl-seconds"
TOKEN_HEADER = "x-aliyun-ecs-metadata-token"
MAX_TOKEN_TTL = 21600


def is_metadata(path: str) -> bool:
    return path.startswith(PREFIX)


def describe(req: EmuRequest) -> Call:
    if req.path == TOKEN_PATH:
        action = "ecs-token"
    elif req.path.startswith(ECS_ROLES):
        action = "ecs-role"
    elif req.path.startswith(CVM_ROLES):
        action = "cvm-role"
    else:
        action = "unknown"
    return Call(SERVICE, action)


def _text(status: int, text: str) -> EmuResponse:
    return EmuResponse(status, text.encode(), [("Content-Type", "text/plain")])


def fault_response(rule: FaultRule) -> tuple[EmuResponse, str]:
    status = rule.status or 500
    return _text(status, rule.message or "fault injected by the shardbeat emulator"), rule.error_code or str(
        status
    )


def internal_error() -> EmuResponse:
    return _text(500, "internal error")


def handle(world: World, req: EmuRequest, call: Call) -> EmuResponse:
    with world.lock:
        identity = world.identity
        now = world.wall_now()
        if req.path == TOKEN_PATH:
            return _token(world, req)
        if req.method != "GET":
            return _text(405, "method not allowed")
        if req.path.startswith(ECS_ROLES):
            token = req.headers.get(TOKEN_HEADER)
            if token is not None:
                expires = identity.metadata_tokens.get(token)
                if expires is None or now >= expires:
                    return _text(401, "invalid or expired metadata token")
            elif identity.imds_v2 == "required":
                return _text(403, "IMDSv1 is disabled on this instance: PUT /latest/api/token first")
            version = "IMDSv2" if token else "IMDSv1"
            return _role(
                world, req.path[len(ECS_ROLES) :], identity.ecs_roles, "sls", f"ecs_metadata/{version}"
            )
        if req.path.startswith(CVM_ROLES):
            return _role(world, req.path[len(CVM_ROLES) :], identity.cvm_roles, "cls", "cvm_metadata")
        return _text(404, "Not Found")


def _token(world: World, req: EmuRequest) -> EmuResponse:
    identity = world.identity
    if identity.imds_v2 == "off":
        return _text(404, "Not Found")
    if req.method != "PUT":
        return _text(405, "method not allowed")
    try:
        ttl = int(req.headers.get(TTL_HEADER, ""))
    except ValueError:
        return _text(400, f"{TTL_HEADER} must be an integer")
    if not 1 <= ttl <= MAX_TOKEN_TTL:
        return _text(400, f"{TTL_HEADER} must be in 1..{MAX_TOKEN_TTL}")
    token = secrets.token_urlsafe(32)
    now = world.wall_now()
    identity.metadata_tokens = {t: e for t, e in identity.metadata_tokens.items() if e > now}
    identity.metadata_tokens[token] = now + ttl
    return _text(200, token)


def _role(world: World, rest: str, roles: tuple[str, ...], service: str, via: str) -> EmuResponse:
    if not rest:
        return _text(200, "\n".join(roles))
    role = unquote(rest)
    if role not in roles:
        return _text(404, "Not Found")
    now = world.wall_now()
    key = world.identity.issue(service, via, now, None)
    if service == "sls":
        doc: dict[str, object] = {
            "AccessKeyId": key.key_id,
            "AccessKeySecret": key.secret,
            "Expiration": iso_seconds(key.expires),
            "SecurityToken": key.token,
            "LastUpdated": iso_seconds(now),
            "Code": "Success",
        }
    else:
        doc = {
            "TmpSecretId": key.key_id,
            "TmpSecretKey": key.secret,
            "ExpiredTime": int(key.expires),
            "Expiration": iso_seconds(key.expires),
            "Token": key.token,
            "Code": "Success",
        }
    return EmuResponse(200, json.dumps(doc).encode(), [("Content-Type", "application/json")])
