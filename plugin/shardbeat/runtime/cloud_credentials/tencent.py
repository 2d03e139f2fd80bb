"""Tencent Cloud temporary keys: CVM instance CAM role (metadata) and TKE OIDC (STS).

CVM metadata, as tencentcloud-sdk-python-common's CVMRoleCredential does it:
    GET /latest/meta-data/cam/security-credentials/         -> the role name (when none is configured)
    GET /latest/meta-data/cam/security-credentials/<role>   -> {"Code": "Success", "TmpSecretId",
        "TmpSecretKey", "Token", "ExpiredTime": <epoch seconds>, "Expiration": "...Z"}

STS AssumeRoleWithWebIdentity (API 3.0, version 2018-08-13) is sent unsigned, as the SDK's
OIDCRoleArnCredential does (its SkipSign option): POST / with a JSON body {ProviderId,
WebIdentityToken, RoleArn, RoleSessionName, DurationSeconds}, X-TC-Action/-Version/-Region/-Timestamp
and `Authorization: SKIP`. Answer: {"Response": {"Credentials": {"Token", "TmpSecretId",
"TmpSecretKey"}, "ExpiredTime", "Expiration", "RequestId"}}; errors in Response.Error {Code, Message}.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shardbeat.config.credential_sources import CvmRole, TkeOidc
from shardbeat.core.redaction import clip
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

ROLES_PATH = "/latest/meta-data/cam/security-credentials/"
STS_VERSION = "2018-08-13"
STS_ACTION = "AssumeRoleWithWebIdentity"
LATEST_EXPIRY = 32503680000  # 3000-01-01: anything later is garbage, not a key to plan by


def from_cvm_metadata(spec: CvmRole, session: requests.Session, timeout: Timeout) -> Issued:
    base = spec.metadata_endpoint
    role = spec.role_name
    if role is None:
        answer = _get(session, base + ROLES_PATH, f"CVM metadata {base}: role discovery", timeout)
        lines = [line.strip() for line in answer.text().splitlines() if line.strip()]
        if not lines:
            raise FetchError(
                f"CVM metadata {base}: no CAM role is bound to this instance (bind one, or set role_name)"
            )
        role = lines[0]
    what = f"CVM metadata {base}: role {role}"
    answer = _get(session, base + ROLES_PATH + quote(role, safe=""), what, timeout)
    doc = json_object(answer, what)
    if doc.get("Code") != "Success":
        raise FetchError(f"{what}: answered Code {clip(str(doc.get('Code')), 60)!r}")
    credentials = Credentials(
        text_field(doc, "TmpSecretId", what),
        text_field(doc, "TmpSecretKey", what),
        text_field(doc, "Token", what),
    )
    return Issued(credentials, _expired_time(doc, what), f"{base} role {role}", answer.server_time)


def _get(session: requests.Session, url: str, what: str, timeout: Timeout) -> Answer:
    answer = call(session, "GET", url, what, timeout=timeout)
    if answer.status != 200:
        raise FetchError(
            f"{what}: HTTP {answer.status}" + (" (no such role?)" if answer.status == 404 else "")
        )
    return answer


def from_oidc(spec: TkeOidc, session: requests.Session, timeout: Timeout) -> Issued:
    what = f"STS {STS_ACTION} {spec.sts_endpoint}"
    token = read_token_file(spec.token_file, what)
    body = json.dumps(
        {
            "ProviderId": spec.provider_id,
            "WebIdentityToken": token,
            "RoleArn": spec.role_arn,
            "RoleSessionName": spec.role_session_name,
            "DurationSeconds": spec.duration_seconds,
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "X-TC-Action": STS_ACTION,
        "X-TC-Version": STS_VERSION,
        "X-TC-Region": spec.region,
        "X-TC-Timestamp": str(int(time.time())),
        "Authorization": "SKIP",
    }
    answer = call(session, "POST", spec.sts_endpoint + "/", what, headers=headers, data=body, timeout=timeout)
    doc = json_object(answer, what)
    response = doc.get("Response")
    if not isinstance(response, dict):
        raise FetchError(f"{what}: HTTP {answer.status}, answer has no Response")
    error = response.get("Error")
    if isinstance(error, dict):
        code = clip(str(error.get("Code", "?")), 80)
        # never echo the bearer token (registered, and replaced here too in case it is short)
        message = clip(str(error.get("Message", "")).replace(token, "***"), 300)
        raise FetchError(f"{what}: {code}: {message}")
    creds = response.get("Credentials")
    if answer.status != 200 or not isinstance(creds, dict):
        raise FetchError(f"{what}: HTTP {answer.status}, answer has no Credentials")
    credentials = Credentials(
        text_field(creds, "TmpSecretId", what),
        text_field(creds, "TmpSecretKey", what),
        text_field(creds, "Token", what),
    )
    return Issued(
        credentials,
        _expired_time(response, what),
        f"STS {STS_ACTION} {spec.sts_endpoint} role {spec.role_arn}",
        answer.server_time,
    )


def _expired_time(doc: dict[str, Any], what: str) -> float:
    value = doc.get("ExpiredTime")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < LATEST_EXPIRY:
        raise FetchError(f"{what}: answer has no usable ExpiredTime")  # NaN fails the range test too
    return float(value)
