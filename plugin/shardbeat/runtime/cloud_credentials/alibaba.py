"""Alibaba Cloud temporary keys: ECS instance RAM role (metadata) and ACK RRSA (STS AssumeRoleWithOIDC).

ECS metadata, as alibabacloud-credentials' EcsRamRoleCredentialsProvider does it:
    PUT  /latest/api/token   X-aliyun-ecs-metadata-token-ttl-seconds: 21600  -> the IMDSv2 token (text)
    GET  /latest/meta-data/ram/security-credentials/         -> the role name (when none is configured)
    GET  /latest/meta-data/ram/security-credentials/<role>   -> {"Code": "Success", "AccessKeyId",
         "AccessKeySecret", "SecurityToken", "Expiration": "YYYY-MM-DDTHH:MM:SSZ", ...}
    each GET carrying X-aliyun-ecs-metadata-token when a token was issued. When the token cannot be
    had (or a GET with it fails) and v1 is allowed, the GET is made without it (IMDSv1).

STS AssumeRoleWithOIDC (RPC style, version 2015-04-01) is anonymous: no AccessKey, no signature; the
OIDC token is the proof. Action/Version/Format/Timestamp go in the query, the rest in a form body
(so the token stays out of URLs and proxy logs). Answer: {"Credentials": {"AccessKeyId",
"AccessKeySecret", "SecurityToken", "Expiration"}, ...}; errors {"Code", "Message", "RequestId"}.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from shardbeat.config.credential_sources import AlibabaOidc, EcsRamRole
from shardbeat.core.credential_refresh import parse_expiration
from shardbeat.core.redaction import clip, register_secret
from shardbeat.providers.base import Credentials
from shardbeat.runtime.cloud_credentials.http import (
    Answer,
    FetchError,
    Timeout,
    call,
    json_object,
    read_token_file,
    text_field,
)
from shardbeat.runtime.cloud_credentials.issued import Issued

if TYPE_CHECKING:  # sessions come from cloud_credentials/http.py, which imports requests lazily
    import requests

TOKEN_PATH = "/latest/api/token"
ROLES_PATH = "/latest/meta-data/ram/security-credentials/"
TOKEN_TTL_HEADER = "X-aliyun-ecs-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aliyun-ecs-metadata-token"
TOKEN_TTL = 21600  # seconds, as the official library asks
STS_VERSION = "2015-04-01"


def from_ecs_metadata(spec: EcsRamRole, session: requests.Session, timeout: Timeout) -> Issued:
    base = spec.metadata_endpoint
    token = _metadata_token(spec, session, timeout)
    role = spec.role_name or _discover_role(spec, session, token, timeout)
    answer, version = _metadata_get(
        spec, session, ROLES_PATH + quote(role, safe=""), token, f"role {role}", timeout
    )
    doc = json_object(answer, f"ECS metadata role {role}")
    if doc.get("Code") != "Success":
        raise FetchError(f"ECS metadata {base}: role {role} answered Code {clip(str(doc.get('Code')), 60)!r}")
    credentials = Credentials(
        text_field(doc, "AccessKeyId", "ECS metadata"),
        text_field(doc, "AccessKeySecret", "ECS metadata"),
        text_field(doc, "SecurityToken", "ECS metadata"),
    )
    try:
        expires = parse_expiration(doc.get("Expiration"))
    except ValueError as exc:
        raise FetchError(f"ECS metadata {base}: role {role}: {exc}") from None
    return Issued(credentials, expires, f"{version} {base} role {role}", answer.server_time)


def _metadata_token(spec: EcsRamRole, session: requests.Session, timeout: Timeout) -> str | None:
    what = f"ECS metadata {spec.metadata_endpoint}: IMDSv2 token"
    try:
        answer = call(
            session,
            "PUT",
            spec.metadata_endpoint + TOKEN_PATH,
            what,
            headers={TOKEN_TTL_HEADER: str(TOKEN_TTL)},
            timeout=timeout,
        )
        if answer.status != 200 or not answer.body.strip():
            raise FetchError(f"{what}: HTTP {answer.status}")
    except FetchError:
        if not spec.imds_v1_fallback:
            raise
        return None  # IMDSv1: the same GETs without the token
    token = answer.text().strip()
    register_secret(token)  # it opens the role's keys to whoever holds it: masked like them
    return token


def _metadata_get(
    spec: EcsRamRole, session: requests.Session, path: str, token: str | None, step: str, timeout: Timeout
) -> tuple[Answer, str]:
    """GET with the token; once more without it when that fails and v1 is allowed. -> (answer, IMDSv1|v2)."""
    attempts: list[str | None] = [token]
    if token is not None and spec.imds_v1_fallback:
        attempts.append(None)
    errors: list[str] = []
    what = f"ECS metadata {spec.metadata_endpoint}: {step}"
    for attempt in attempts:
        headers = {TOKEN_HEADER: attempt} if attempt else {}
        label = "IMDSv2" if attempt else "IMDSv1"
        try:
            answer = call(
                session, "GET", spec.metadata_endpoint + path, what, headers=headers, timeout=timeout
            )
        except FetchError as exc:
            errors.append(f"{label}: {str(exc).removeprefix(what + ': ')}")
            continue
        if answer.status == 200:
            return answer, label
        errors.append(f"{label}: HTTP {answer.status}" + (" (no such role?)" if answer.status == 404 else ""))
    raise FetchError(f"{what}: {'; '.join(errors)}")


def _discover_role(spec: EcsRamRole, session: requests.Session, token: str | None, timeout: Timeout) -> str:
    answer, _ = _metadata_get(spec, session, ROLES_PATH, token, "role discovery", timeout)
    lines = [line.strip() for line in answer.text().splitlines() if line.strip()]
    if not lines:
        raise FetchError(
            f"ECS metadata {spec.metadata_endpoint}: no RAM role is attached to this instance "
            "(attach one, or set credentials.role_name)"
        )
    return lines[0]


def from_oidc(spec: AlibabaOidc, session: requests.Session, timeout: Timeout) -> Issued:
    what = f"STS AssumeRoleWithOIDC {spec.sts_endpoint}"
    token = read_token_file(spec.token_file, what)
    query = {
        "Action": "AssumeRoleWithOIDC",
        "Format": "JSON",
        "Version": STS_VERSION,
        "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    form = {
        "DurationSeconds": str(spec.duration_seconds),
        "RoleArn": spec.role_arn,
        "OIDCProviderArn": spec.oidc_provider_arn,
        "OIDCToken": token,
        "RoleSessionName": spec.role_session_name,
    }
    answer = call(
        session,
        "POST",
        f"{spec.sts_endpoint}/?{urlencode(query)}",
        what,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        data=urlencode(form).encode(),
        timeout=timeout,
    )
    doc = json_object(answer, what)
    if answer.status != 200 or not isinstance(doc.get("Credentials"), dict):
        code = clip(str(doc.get("Code", "?")), 80)
        # never echo the bearer token (registered, and replaced here too in case it is short)
        message = clip(str(doc.get("Message", "")).replace(token, "***"), 300)
        raise FetchError(f"{what}: HTTP {answer.status} {code}: {message}")
    creds: dict[str, Any] = doc["Credentials"]
    credentials = Credentials(
        text_field(creds, "AccessKeyId", what),
        text_field(creds, "AccessKeySecret", what),
        text_field(creds, "SecurityToken", what),
    )
    try:
        expires = parse_expiration(creds.get("Expiration"))
    except ValueError as exc:
        raise FetchError(f"{what}: {exc}") from None
    answered_by = f"STS AssumeRoleWithOIDC {spec.sts_endpoint} role {spec.role_arn}"
    return Issued(credentials, expires, answered_by, answer.server_time)
