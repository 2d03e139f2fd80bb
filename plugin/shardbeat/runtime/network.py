"""One set of network rules for every call: which proxy (if any) reaches a URL, and which CAs to trust.

Both HTTP clients use it: the lean transport of `run`'s heartbeats and bootstrap
(runtime/transport.py) and the requests sessions of the credential sources and doctor
(runtime/http_session.py), so every call to an endpoint takes the same route.

Proxies follow requests' own rules (runtime/proxy_env.py, checked against requests.utils):
HTTPS_PROXY / HTTP_PROXY / ALL_PROXY and NO_PROXY in either case (lower case wins), NO_PROXY
entries as domain suffixes ("example.com" and ".example.com" both match sub.example.com),
host:port, IPv4 addresses and CIDR blocks, "*" for everything. The config's `proxy` replaces the
*_PROXY variables; NO_PROXY still applies to it. Choices are made once per (scheme, host, port)
and kept: the environment of a running process does not change.
"""

from __future__ import annotations

import functools
import os
import ssl
import threading
from dataclasses import dataclass

from shardbeat.config.model import Config, NetworkConfig, Problem
from shardbeat.config.network import checked_context
from shardbeat.config.proxy_url import ProxyUrl, ProxyUrlError, parse_proxy_url
from shardbeat.providers.base import Endpoint
from shardbeat.providers.endpoint import DEFAULT_PORTS
from shardbeat.runtime.proxy_env import environ_proxies, should_bypass

_VARIABLES = {"http": "http_proxy", "https": "https_proxy"}


@dataclass(frozen=True, slots=True)
class Route:
    """How to reach one endpoint: directly, or through `proxy`; `reason` says why, for doctor."""

    proxy: ProxyUrl | None
    reason: str  # e.g. "config proxy", "HTTPS_PROXY", "NO_PROXY", "no proxy configured"

    @property
    def shown(self) -> str:
        if self.proxy is None:
            return f"direct ({self.reason})"
        return f"via proxy {self.proxy.redacted} (from {self.reason})"


class NetworkError(ValueError):
    """A proxy from the environment that cannot be used; names the variable, never its value."""


def url_of(scheme: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}/" if port == DEFAULT_PORTS[scheme] else f"{scheme}://{shown}:{port}/"


def _variable_named(scheme: str, value: str) -> str:
    """Which environment variable gave `value` (for messages), lower case first as urllib reads them."""
    for name in (_VARIABLES[scheme], "all_proxy"):
        for spelling in (name, name.upper()):
            if os.environ.get(spelling) == value:
                return spelling
    return f"{scheme}_proxy"


class Network:
    def __init__(self, settings: NetworkConfig | None = None) -> None:
        self.settings = settings or NetworkConfig()
        self._routes: dict[tuple[str, str, int], Route] = {}
        self._lock = threading.Lock()

    @classmethod
    def of(cls, config: Config) -> Network:
        return cls(config.network)

    def route(self, scheme: str, host: str, port: int) -> Route:
        """The route to scheme://host:port; NetworkError for an unusable proxy variable."""
        key = (scheme, host.lower(), port)
        with self._lock:
            found = self._routes.get(key)
        if found is None:
            found = self._choose(*key)
            with self._lock:
                self._routes[key] = found
        return found

    def route_to(self, endpoint: Endpoint) -> Route:
        return self.route(endpoint.scheme, endpoint.host, endpoint.port)

    def proxy_of(self, endpoint: Endpoint) -> str | None:
        """host:port of the proxy that calls to `endpoint` go through, for error messages; None if direct."""
        try:
            proxy = self.route_to(endpoint).proxy
        except NetworkError:  # refused before the start (config_problems): no call went anywhere
            return None
        return None if proxy is None else proxy.authority

    def _choose(self, scheme: str, host: str, port: int) -> Route:
        url = url_of(scheme, host, port)
        configured = self.settings.proxy
        if configured is not None:
            if should_bypass(url):
                return Route(None, "NO_PROXY")
            return Route(configured, "config proxy")
        found = environ_proxies(url)
        if not found:
            named = any(os.environ.get(n) for v in (_VARIABLES[scheme], "all_proxy") for n in (v, v.upper()))
            return Route(None, "NO_PROXY" if named else "no proxy configured")
        # requests.utils.resolve_proxies: the scheme's own variable, else ALL_PROXY.
        raw = found.get(scheme, found.get("all"))
        if not raw:
            return Route(None, "no proxy configured")
        variable = _variable_named(scheme, raw)
        try:
            return Route(parse_proxy_url(raw), variable.upper())
        except ProxyUrlError as exc:
            raise NetworkError(f"{variable} {exc}") from None

    def problems(self, endpoints: list[tuple[str, Endpoint]]) -> list[Problem]:
        """Unusable proxy variables for these (config path, endpoint) pairs: found before any I/O."""
        found = []
        for path, endpoint in endpoints:
            try:
                self.route_to(endpoint)
            except NetworkError as exc:
                found.append(Problem(path, f"proxy from the environment: {exc}"))
        return found

    def ssl_context(self) -> ssl.SSLContext:
        """The shared context of the heartbeat transport (built once per CA bundle)."""
        return _context(self.settings.ca_file)

    def new_ssl_context(self) -> ssl.SSLContext:
        """A context of its own, for a library that sets attributes on the one it is given."""
        return _context.__wrapped__(self.settings.ca_file)

    @property
    def trust(self) -> str:
        """The CAs in force, for doctor and logs."""
        if self.settings.ca_file is None:
            return "the system trust store"
        return f"CA bundle {self.settings.ca_file} (from {self.settings.ca_source})"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings no output may contain: the proxies' credentials."""
        with self._lock:
            proxies = [r.proxy for r in self._routes.values() if r.proxy is not None]
        if self.settings.proxy is not None:
            proxies.append(self.settings.proxy)
        return tuple({s for p in proxies for s in p.secrets})


@functools.cache
def _context(ca_file: str | None) -> ssl.SSLContext:
    """Verification always on: CERT_REQUIRED and host names checked (create_default_context)."""
    if ca_file is None:
        return ssl.create_default_context()
    if os.path.isdir(ca_file):
        return ssl.create_default_context(capath=ca_file)
    # The config check loaded this very file with the same call: take its context over.
    return checked_context(ca_file) or ssl.create_default_context(cafile=ca_file)


def endpoints_of(config: Config) -> list[tuple[str, Endpoint]]:
    """(config path, endpoint) of every group, as its provider connects to it."""
    from shardbeat.providers.services import make_provider  # providers are the ones to say where

    return [(f"groups[{i}].endpoint", make_provider(g).endpoint) for i, g in enumerate(config.groups)]


def config_problems(config: Config) -> list[Problem]:
    """What the environment's proxy variables make unusable for this config (exit 2 before any I/O)."""
    return Network.of(config).problems(endpoints_of(config))
