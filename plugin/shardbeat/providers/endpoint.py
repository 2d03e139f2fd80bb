"""Endpoint strings ("host[:port]" with an optional http:// or https://) -> where to connect.

Shared by both providers; SLS puts the project in front of the host name (virtual hosting), and
when the host is an IP literal or localhost it connects to that address directly while still
naming `{project}.{host[:port]}` in the Host header, as the official SDK does.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from shardbeat.providers.base import Endpoint

DEFAULT_PORTS = {"http": 80, "https": 443}


class EndpointError(ValueError):
    pass


def split(endpoint: str) -> tuple[str, str, int, bool]:
    """-> (scheme, host, port, port_given). Raises EndpointError with a readable reason."""
    text = endpoint.strip()
    if not text:
        raise EndpointError("endpoint is empty")
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise EndpointError(f"invalid endpoint {endpoint!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise EndpointError(f"invalid endpoint {endpoint!r}: scheme must be http or https")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise EndpointError(f"invalid endpoint {endpoint!r}: give host[:port] only, no path or query")
    host = parts.hostname
    if not host:
        raise EndpointError(f"invalid endpoint {endpoint!r}: no host")
    if problem := address_problem(host, port):
        raise EndpointError(f"invalid endpoint {endpoint!r}: {problem}")
    return scheme, host, port if port is not None else DEFAULT_PORTS[scheme], port is not None


def address_problem(host: str, port: int | None) -> str | None:
    """Why no connection to host:port can ever be made (None: it may be), so a config says so at load
    instead of a run retrying for good: port 0, a name with spaces, or one DNS cannot carry (a label
    empty or over 63 characters, a bad xn-- label). For endpoints, proxies and STS endpoints alike."""
    if port == 0:
        return "port must be 1-65535"
    if ":" in host or is_direct(host):
        return None  # an IP literal (urlsplit already refused a malformed IPv6 one)
    if any(ch.isspace() or not ch.isprintable() for ch in host):
        return "the host name must not contain spaces or control characters"
    try:
        host.encode("idna")  # what the connect does to it (socket.getaddrinfo)
    except UnicodeError as exc:
        reason = str(exc).rpartition("UnicodeError: ")[2].rstrip(")") or "cannot be encoded"
        return (
            f"the host name is not a valid DNS name ({reason}; each dot-separated label is 1-63 characters)"
        )
    return None


def is_direct(host: str) -> bool:
    """IP literals and localhost are connected to as given (no project prefix in DNS)."""
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _authority(host: str, port: int, scheme: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == DEFAULT_PORTS[scheme] else f"{shown}:{port}"


def resolve(endpoint: str, vhost_prefix: str | None = None) -> Endpoint:
    """Parse `endpoint`; with `vhost_prefix` (the SLS project) the Host header becomes prefix.host."""
    scheme, host, port, _ = split(endpoint)
    authority = _authority(host, port, scheme)
    if vhost_prefix is None:
        return Endpoint(scheme, host, port, authority)
    connect = host if is_direct(host) else f"{vhost_prefix}.{host}"
    return Endpoint(scheme, connect, port, f"{vhost_prefix}.{authority}")
