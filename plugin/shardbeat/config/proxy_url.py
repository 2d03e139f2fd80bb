"""Proxy URLs (`http://[user:pass@]host[:port]`): parsed once, shown only with the credentials hidden.

Used for the config's `proxy` and for HTTP(S)_PROXY / ALL_PROXY from the environment. A bare
`host:port` is read as http://, as requests does. Only plain-HTTP proxies are supported (CONNECT for
https targets, absolute-form for http ones); an https:// or socks proxy is refused with a reason.
Error messages never repeat the URL: it may hold a password.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from shardbeat.core.redaction import register_secret
from shardbeat.providers.endpoint import address_problem

DEFAULT_PROXY_PORT = 80  # what requests/urllib3 use for an http:// proxy without a port


class ProxyUrlError(ValueError):
    """A proxy URL that cannot be used; the message names the rule, never the URL."""


@dataclass(frozen=True, slots=True)
class ProxyUrl:
    host: str  # name or IP literal, no brackets
    port: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # The one redaction point masks them in every log, record and reply; the password also when
        # cut short, the values around it only whole (their ends are the user name, host and port).
        for secret in self.secrets:
            register_secret(secret, whole_only=secret != self.password)

    @property
    def authority(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"{shown}:{self.port}"

    @property
    def redacted(self) -> str:
        """For logs, records and doctor: credentials replaced by ***."""
        return f"http://{'***@' if self.username is not None else ''}{self.authority}"

    @property
    def url(self) -> str:
        """The full URL, credentials included (for requests' `proxies`); never log it."""
        if self.username is None:
            return f"http://{self.authority}"
        userinfo = quote(self.username, safe="") + ":" + quote(self.password or "", safe="")
        return f"http://{userinfo}@{self.authority}"

    @property
    def authorization(self) -> str | None:
        """The Proxy-Authorization value (Basic), or None without credentials."""
        if self.username is None:
            return None
        pair = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never appear in any output (to scrub library error texts with). Without
        credentials the URL is no secret: masking it would hide which proxy failed."""
        if self.username is None:
            return ()
        # The Basic value alone and the user:password pair too: a proxy that echoes the header it
        # refused (in a 407 status line) quotes them without the "Basic " prefix or the URL around.
        basic = self.authorization or ""
        pair = f"{self.username}:{self.password or ''}"
        return tuple(s for s in (self.password, self.url, basic, basic.removeprefix("Basic "), pair) if s)


def parse_proxy_url(text: str) -> ProxyUrl:
    """`http://[user:pass@]host[:port]` (or bare `host:port`) -> ProxyUrl; ProxyUrlError otherwise."""
    value = text.strip()
    if not value:
        raise ProxyUrlError("is empty")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ProxyUrlError("contains control characters")
    if "://" not in value:
        value = "http://" + value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ProxyUrlError("is not a valid URL (expected http://[user:pass@]host:port)") from None
    scheme = parts.scheme.lower()
    if scheme != "http":
        raise ProxyUrlError(
            f"uses {scheme}://: only http:// proxies are supported (https targets go through them "
            "with CONNECT)"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ProxyUrlError("must be http://[user:pass@]host[:port] with no path or query")
    host = parts.hostname
    if not host:
        raise ProxyUrlError("has no host (expected http://[user:pass@]host:port)")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise ProxyUrlError("has an invalid IPv6 host") from None
    if address_problem(host, port) is not None:  # the reason may quote the host: keep to the rule
        raise ProxyUrlError("has a host or port no connection can be made to (port 1-65535, a DNS name)")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return ProxyUrl(host, port if port is not None else DEFAULT_PROXY_PORT, username, password)
