"""What a failed call means for an operator: error codes sorted into kinds, each with the fix to try.

Used by `shardbeat doctor`. The codes are the services' own (reference/sls.md, reference/cls.md) plus
the transport's; anything unknown falls through to the server's own message.
"""

from __future__ import annotations

from typing import Literal

from shardbeat.providers.base import ProviderError
from shardbeat.runtime.transport import TransportError

Kind = Literal["auth", "clock", "denied", "missing", "throttled", "other"]

# Actions an operator grants: RAM (SLS) and CAM (CLS) names of what shardbeat and doctor call.
SLS_ACTIONS = {
    "list": "log:ListConsumerGroup",
    "heartbeat": "log:ConsumerGroupHeartBeat",
    "create": "log:CreateConsumerGroup",
    "update": "log:UpdateConsumerGroup",
}
CLS_ACTIONS = {
    "list": "cls:DescribeConsumerGroups",
    "heartbeat": "cls:SendConsumerHeartbeat",
    "create": "cls:CreateConsumerGroup",
    "update": "cls:ModifyConsumerGroup",
}

_SLS_AUTH = {
    "SignatureNotMatch": "the access key secret does not match the access key id: check access_key_secret",
    "InvalidAccessKeyId": "the access key id is unknown or disabled: check access_key_id",
    "Unauthorized": "the access key id is unknown or disabled, or the STS token is wrong: "
    "check access_key_id (and security_token)",
    "SecurityTokenExpired": "the STS token has expired: refresh it (a credentials_file is re-read on change)",
    "InvalidSecurityToken": "the STS token is invalid or not for this key: check security_token",
}
_SLS_MISSING = {
    "ProjectNotExist": "check project, and that the endpoint is in the project's region",
    "LogStoreNotExist": "check logstore",
    "ConsumerGroupNotExist": "create the consumer group, or set create_group: true",
}
_CLS_AUTH = {
    "AuthFailure.SignatureFailure": "secret_key does not belong to this secret_id: check secret_key",
    "AuthFailure.SecretIdNotFound": "secret_id is unknown (deleted, disabled, or of the other site: "
    "China vs international): check secret_id",
    "AuthFailure.TokenFailure": "the session token is invalid or expired: refresh token",
    "AuthFailure.InvalidAuthorization": "the service could not read our Authorization header "
    "(check secret_id for odd characters)",
    "AuthFailure.InvalidSecretId": "secret_id is malformed: check secret_id",
    "AuthFailure.MFAFailure": "the key requires MFA, which API calls cannot give: use another key",
}
_CLS_ACCOUNT = (
    "OperationDenied.AccountIsolate",
    "OperationDenied.AccountDestroy",
    "OperationDenied.AccountNotExists",
)
_CLS_MISSING = {
    "ResourceNotFound.LogsetNotExist": "check logset_id, and that region is the logset's",
    "ResourceNotFound.TopicNotExist": "check topics (TopicIDs of this logset, in this region)",
}

# Codes our own parsers give (providers/*.py), not the services'.
_PARSER = {
    "UnknownTopic": "the group's topics differ from the config's: list every topic of the group in topics",
    "InvalidResponse": "the answer is not what the service sends: a proxy or another server at the endpoint?",
    "HttpError": "an HTTP error instead of the API's answer: a proxy or gateway in the way?",
}

_TRANSPORT = {
    "NameResolution": "check the endpoint's host name and this machine's DNS",
    "ConnectionRefused": "nothing listens there: check the endpoint's host and port",
    "Timeout": "a firewall or proxy in the way, or an intranet endpoint used from outside its VPC",
    "TLSError": "TLS failed: a proxy intercepting TLS, or a private CA: give its PEM bundle in tls.ca_file",
    "ProxyError": "the proxy failed: check the config's proxy or HTTPS_PROXY/HTTP_PROXY, and NO_PROXY",
    "ProxyAuthRequired": "the proxy wants credentials: give http://user:pass@host:port (never logged)",
    "ConnectionReset": "the connection was cut: a proxy or firewall in the way?",
}


def _has_prefix(code: str, prefix: str) -> bool:
    return code == prefix or code.startswith(prefix + ".")


def _is_group_missing(error: ProviderError) -> bool:
    # CLS has no documented code for an unknown group: it answers FailedOperation with a message.
    text = error.message.lower()
    return error.code == "FailedOperation" and "not exist" in text and "group" in text


def classify(provider: str, error: ProviderError) -> Kind:
    code = error.code
    if provider == "sls":
        if code == "RequestTimeExpired":
            return "clock"
        if error.status == 403 or (
            code == "Unauthorized" and "denied by sts or ram" in error.message.lower()
        ):
            return "denied"
        if code in _SLS_AUTH:
            return "auth"
        if code in _SLS_MISSING:
            return "missing"
        if code in ("ExceedQuota", "QuotaExceed", "Throttling", "ServerBusy"):
            return "throttled"
        return "other"
    if code == "AuthFailure.SignatureExpire":
        return "clock"
    if code in _CLS_AUTH:
        return "auth"
    if any(_has_prefix(code, p) for p in ("AuthFailure.UnauthorizedOperation", "UnauthorizedOperation")):
        return "denied"
    if _has_prefix(code, "OperationDenied"):
        return "denied"
    if _has_prefix(code, "AuthFailure"):
        return "auth"
    if _has_prefix(code, "ResourceNotFound") or _is_group_missing(error):
        return "missing"
    if code == "RequestLimitExceeded":
        return "throttled"
    return "other"


def hint(provider: str, error: ProviderError, action: str) -> str:
    """The fix to try for `error` answered to `action` ("list", "heartbeat", ...)."""
    kind = classify(provider, error)
    code = error.code
    actions = SLS_ACTIONS if provider == "sls" else CLS_ACTIONS
    if kind == "clock":
        return "this host's clock is off: fix its time sync (NTP, chrony)"
    if kind == "denied":
        if code in _CLS_ACCOUNT:
            return "the account is isolated (overdue payment?) or closed"
        if provider == "sls" and code == "ProjectForbidden":
            return "the project is disabled (overdue payment?)"
        policy = "RAM policy" if provider == "sls" else "CAM policy"
        return f"the key is valid but not allowed: its {policy} must grant {actions[action]}"
    if kind == "auth":
        table = _SLS_AUTH if provider == "sls" else _CLS_AUTH
        return table.get(code, "the service refused the credentials: check the key pair")
    if kind == "missing":
        if _is_group_missing(error):
            return _SLS_MISSING["ConsumerGroupNotExist"]
        table = _SLS_MISSING if provider == "sls" else _CLS_MISSING
        return table.get(code, "check the names in the config (project/logstore or logset/topics)")
    if kind == "throttled":
        if provider == "cls":
            return "over CLS's 20 requests/s for this account: fewer groups per account or a longer interval"
        return "the service is throttling this project: retry later"
    if code in _PARSER:
        return _PARSER[code]
    if _has_prefix(code, "InvalidParameter") or code in ("ParameterInvalid", "JsonInfoInvalid"):
        return "the service refused a parameter: check the consumer_group and consumer names"
    return "the service answered an error; try again, and look at the service's status if it persists"


def transport_hint(error: TransportError) -> str:
    return _TRANSPORT.get(error.code, "the network call failed")


_SOURCE_HINTS = {
    "ecs_ram_role": "attach a RAM role to the ECS instance (or set credentials.role_name), and check that "
    "its metadata service is reachable from here",
    "cvm_role": "bind a CAM role to the CVM instance (or set credentials.role_name), and check that "
    "its metadata service is reachable from here",
    "oidc_role": "check the role ARN, the OIDC provider and that the service-account token file is mounted "
    "(ACK: enable RRSA for the pod; TKE: enable the pod identity webhook)",
    "profile": "run the vendor CLI's `configure`, or name the profile and file in credentials",
}


def source_hint(kind: str) -> str:
    """What to try when a credential source gives no key."""
    return _SOURCE_HINTS.get(kind, "check the credential source settings")
