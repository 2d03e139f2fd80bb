"""What a failed call means for an operator: error codes sorted into kinds, each with the fix to try.

Used by `shardbeat doctor`. The codes are the services' own (reference/sls.md, reference/cls.md), sorted
by each service's descriptor (providers/*_service.py: doctor), plus our parsers' and the transport's;
anything unknown falls through to the server's own message.
"""

from __future__ import annotations

from shardbeat.providers.base import ProviderError
from shardbeat.providers.service import CREATE_GROUP_HINT, Kind
from shardbeat.providers.services import service
from shardbeat.runtime.transport import TransportError

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


def classify(provider: str, error: ProviderError) -> Kind:
    return service(provider).doctor.classify(error)


def hint(provider: str, error: ProviderError, action: str) -> str:
    """The fix to try for `error` answered to `action` ("list", "heartbeat", ...)."""
    hints = service(provider).doctor
    kind = hints.classify(error)
    code = error.code
    if kind == "clock":
        return "this host's clock is off: fix its time sync (NTP, chrony)"
    if kind == "denied":
        if code in hints.denied:
            return hints.denied[code]
        return f"the key is valid but not allowed: its {hints.policy} must grant {hints.actions[action]}"
    if kind == "auth":
        return hints.auth.get(code, "the service refused the credentials: check the key pair")
    if kind == "missing":
        if hints.group_missing(error):
            return CREATE_GROUP_HINT
        return hints.missing.get(code, "check the names in the config (project/logstore or logset/topics)")
    if kind == "throttled":
        return hints.throttled
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
