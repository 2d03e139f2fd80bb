"""Tencent Cloud CLS as the rest of shardbeat sees it: its descriptor (providers/service.py).

Config fields region, logset_id and topics, the default endpoint, the TENCENTCLOUD_* keys and the
Tencent credential chain, the 5-minute signature window, the per-account rate limit, and what
`doctor` says about CLS errors (reference/cls.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from shardbeat.providers.base import Provider, ProviderError
from shardbeat.providers.cls import CLS_RATE_LIMIT, ClsProvider
from shardbeat.providers.service import (
    CliFlag,
    CredentialKeys,
    DoctorHints,
    GroupSettings,
    Kind,
    Service,
    Text,
)

# Letters, digits, '_', '-', starting with a letter, under 256.
_NOT_CONSUMER = re.compile(r"[^A-Za-z0-9_-]")


def consumer_name(host: str) -> str:
    name = _NOT_CONSUMER.sub("-", host)  # dots included
    if not name[0].isascii() or not name[0].isalpha():
        name = "host-" + name
    return name[:255]


def default_endpoint(region: str) -> str:
    return f"cls.{region}.tencentcloudapi.com"


def _default_endpoint(text: Text) -> str | None:
    region = text("region")
    return default_endpoint(region) if region else None


def group_fields(raw: Mapping[str, Any], text: Text) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    topics = raw.get("topics")
    texts = tuple(t for t in topics if isinstance(t, str)) if isinstance(topics, list) else ()
    fields = {
        "region": text("region"),
        "logset_id": text("logset_id"),
        "topics": texts if isinstance(topics, list) and len(texts) == len(topics) else None,
    }
    return fields, []


def group_home(group: GroupSettings) -> str:
    return f"logset {group.logset_id}"


def make_provider(group: GroupSettings) -> Provider:
    assert group.region is not None and group.logset_id is not None and group.topics is not None
    return ClsProvider(
        group.endpoint, group.region, group.logset_id, group.topics, group.consumer_group, group.consumer
    )


AUTH = {
    "AuthFailure.SignatureFailure": "secret_key does not belong to this secret_id: check secret_key",
    "AuthFailure.SecretIdNotFound": "secret_id is unknown (deleted, disabled, or of the other site: "
    "China vs international): check secret_id",
    "AuthFailure.TokenFailure": "the session token is invalid or expired: refresh token",
    "AuthFailure.InvalidAuthorization": "the service could not read our Authorization header "
    "(check secret_id for odd characters)",
    "AuthFailure.InvalidSecretId": "secret_id is malformed: check secret_id",
    "AuthFailure.MFAFailure": "the key requires MFA, which API calls cannot give: use another key",
}
ACCOUNT = (
    "OperationDenied.AccountIsolate",
    "OperationDenied.AccountDestroy",
    "OperationDenied.AccountNotExists",
)
MISSING = {
    "ResourceNotFound.LogsetNotExist": "check logset_id, and that region is the logset's",
    "ResourceNotFound.TopicNotExist": "check topics (TopicIDs of this logset, in this region)",
}


def _has_prefix(code: str, prefix: str) -> bool:
    return code == prefix or code.startswith(prefix + ".")


def is_group_missing(error: ProviderError) -> bool:
    # CLS has no documented code for an unknown group: it answers FailedOperation with a message.
    text = error.message.lower()
    return error.code == "FailedOperation" and "not exist" in text and "group" in text


def classify(error: ProviderError) -> Kind:
    code = error.code
    if code == "AuthFailure.SignatureExpire":
        return "clock"
    if code in AUTH:
        return "auth"
    if any(_has_prefix(code, p) for p in ("AuthFailure.UnauthorizedOperation", "UnauthorizedOperation")):
        return "denied"
    if _has_prefix(code, "OperationDenied"):
        return "denied"
    if _has_prefix(code, "AuthFailure"):
        return "auth"
    if _has_prefix(code, "ResourceNotFound") or is_group_missing(error):
        return "missing"
    if code == "RequestLimitExceeded":
        return "throttled"
    return "other"


CLS = Service(
    name="cls",
    title="CLS",
    scope_keys=("region", "logset_id"),
    group_fields=group_fields,
    group_home=group_home,
    make_provider=make_provider,
    default_endpoint=_default_endpoint,
    endpoint_help="cls default: cls.REGION.tencentcloudapi.com",
    consumer_name=consumer_name,
    credential_keys=CredentialKeys(
        "secret_id",
        "secret_key",
        "token",
        "TENCENTCLOUD_SECRET_ID",
        "TENCENTCLOUD_SECRET_KEY",
        "TENCENTCLOUD_SESSION_TOKEN",
    ),
    credential_chain="tencent",
    credential_sources=("static", "cvm_role", "oidc_role", "profile"),
    clock_window=5 * 60.0,
    rate_limit=CLS_RATE_LIMIT,
    doctor=DoctorHints(
        read_action="DescribeConsumerGroups",
        actions={
            "list": "cls:DescribeConsumerGroups",
            "heartbeat": "cls:SendConsumerHeartbeat",
            "create": "cls:CreateConsumerGroup",
            "update": "cls:ModifyConsumerGroup",
        },
        policy="CAM policy",
        classify=classify,
        auth=AUTH,
        missing=MISSING,
        denied=dict.fromkeys(ACCOUNT, "the account is isolated (overdue payment?) or closed"),
        throttled=f"over CLS's {CLS_RATE_LIMIT:g} requests/s for this account: fewer groups per account "
        "or a longer interval",
        group_missing=is_group_missing,
    ),
    cli_flags=(
        CliFlag("--region", "region", "cls"),
        CliFlag("--logset-id", "logset_id", "cls"),
        CliFlag("--topic", "topics", "cls; repeatable", metavar="TOPIC_ID"),
    ),
)
