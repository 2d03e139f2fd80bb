"""Alibaba Cloud SLS as the rest of shardbeat sees it: its descriptor (providers/service.py).

Config fields project, logstore (and region for signature v4), the ALIBABA_CLOUD_* keys and the
Alibaba credential chain, the 15-minute signature window, and what `doctor` says about SLS errors
(reference/sls.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from shardbeat.providers.base import Provider, ProviderError
from shardbeat.providers.service import (
    CREATE_GROUP_HINT,
    CliFlag,
    CredentialKeys,
    DoctorHints,
    GroupSettings,
    Kind,
    Service,
    Text,
)
from shardbeat.providers.sls import SlsProvider

# 1-128 printable ASCII, no spaces: other characters become '-'.
_NOT_CONSUMER = re.compile(r"[^!-~]")


def consumer_name(host: str) -> str:
    return _NOT_CONSUMER.sub("-", host)[:128]


def group_fields(raw: Mapping[str, Any], text: Text) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    fields: dict[str, Any] = {"project": text("project"), "logstore": text("logstore")}
    if raw.get("signature_version") == "v4" and "region" not in raw:
        return fields, [("region", "is required with signature_version v4 (e.g. cn-hangzhou)")]
    if "region" in raw:
        fields["region"] = text("region")  # the region v4 signs for
    return fields, []


def group_home(group: GroupSettings) -> str:
    return f"logstore {group.logstore} of project {group.project}"


def make_provider(group: GroupSettings) -> Provider:
    assert group.project is not None and group.logstore is not None
    return SlsProvider(
        group.endpoint,
        group.project,
        group.logstore,
        group.consumer_group,
        group.consumer,
        signature_version=group.signature_version,
        region=group.region,
    )


AUTH = {
    "SignatureNotMatch": "the access key secret does not match the access key id: check access_key_secret",
    "InvalidAccessKeyId": "the access key id is unknown or disabled: check access_key_id",
    "Unauthorized": "the access key id is unknown or disabled, or the STS token is wrong: "
    "check access_key_id (and security_token)",
    "SecurityTokenExpired": "the STS token has expired: refresh it (a credentials_file is re-read on change)",
    "InvalidSecurityToken": "the STS token is invalid or not for this key: check security_token",
}
MISSING = {
    "ProjectNotExist": "check project, and that the endpoint is in the project's region",
    "LogStoreNotExist": "check logstore",
    "ConsumerGroupNotExist": CREATE_GROUP_HINT,
}


def classify(error: ProviderError) -> Kind:
    code = error.code
    if code == "RequestTimeExpired":
        return "clock"
    if error.status == 403 or (code == "Unauthorized" and "denied by sts or ram" in error.message.lower()):
        return "denied"
    if code in AUTH:
        return "auth"
    if code in MISSING:
        return "missing"
    if code in ("ExceedQuota", "QuotaExceed", "Throttling", "ServerBusy"):
        return "throttled"
    return "other"


SLS = Service(
    name="sls",
    title="SLS",
    scope_keys=("project", "logstore"),
    group_fields=group_fields,
    group_home=group_home,
    make_provider=make_provider,
    default_endpoint=None,
    endpoint_help=None,
    consumer_name=consumer_name,
    credential_keys=CredentialKeys(
        "access_key_id",
        "access_key_secret",
        "security_token",
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "ALIBABA_CLOUD_SECURITY_TOKEN",
    ),
    credential_chain="alibaba",
    credential_sources=("static", "ecs_ram_role", "oidc_role", "profile"),
    clock_window=15 * 60.0,
    rate_limit=None,  # SLS throttles per project and shard, not per account (ExceedQuota)
    doctor=DoctorHints(
        read_action="ListConsumerGroup",
        actions={
            "list": "log:ListConsumerGroup",
            "heartbeat": "log:ConsumerGroupHeartBeat",
            "create": "log:CreateConsumerGroup",
            "update": "log:UpdateConsumerGroup",
        },
        policy="RAM policy",
        classify=classify,
        auth=AUTH,
        missing=MISSING,
        denied={"ProjectForbidden": "the project is disabled (overdue payment?)"},
        throttled="the service is throttling this project: retry later",
        # SLS answers ProjectNotExist before it looks at the signature.
        answered_before_auth=frozenset({"ProjectNotExist"}),
    ),
    cli_flags=(CliFlag("--project", "project", "sls"), CliFlag("--logstore", "logstore", "sls")),
)
