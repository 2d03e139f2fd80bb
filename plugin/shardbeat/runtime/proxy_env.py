"""requests' rules for proxies from the environment, without importing requests.

The same decisions as requests.utils.get_environ_proxies / should_bypass_proxies (tests/test_proxy.py
checks them against requests itself), so that a process which never needs requests (static keys)
does not pay its import: ~6 MB of RSS and ~100 ms of start-up. Lower-case variables win; NO_PROXY
entries match as domain suffixes with or without a leading dot, as host:port, as IPv4 addresses or
CIDR blocks, and "*" matches everything. The last two functions are urllib.request's
getproxies_environment / proxy_bypass_environment (what requests calls on Linux), restated: importing
urllib.request alone costs ~1 MB of RSS in this process.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from urllib.parse import urlsplit


def _variable(name: str) -> str | None:
    return os.environ.get(name) or os.environ.get(name.upper())


def _cidr(entry: str) -> ipaddress.IPv4Network | None:
    """An IPv4 CIDR block as requests.utils.is_valid_cidr accepts it (mask 1..32), else None."""
    address, slash, bits = entry.partition("/")
    try:
        mask = int(bits)  # as requests: int() ('٣' is 3); isdigit() also took '²', which int() refuses
    except ValueError:
        return None
    if not slash or not 1 <= mask <= 32:
        return None
    try:
        socket.inet_aton(address)
        return ipaddress.IPv4Network(f"{socket.inet_ntoa(socket.inet_aton(address))}/{mask}", strict=False)
    except (OSError, ValueError):
        return None


def _is_ipv4(host: str) -> bool:
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


def should_bypass(url: str) -> bool:
    """True when NO_PROXY (or no host at all) says `url` goes direct."""
    parts = urlsplit(url)
    host = parts.hostname
    if host is None:
        return True
    no_proxy = _variable("no_proxy")
    if no_proxy:
        entries = [entry for entry in no_proxy.replace(" ", "").split(",") if entry]
        if _is_ipv4(host):
            address = ipaddress.IPv4Address(socket.inet_ntoa(socket.inet_aton(host)))
            for entry in entries:
                block = _cidr(entry)
                if (block is not None and address in block) or (block is None and host == entry):
                    return True
        else:
            with_port = f"{host}:{parts.port}" if parts.port else host
            for entry in entries:
                entry = entry.lstrip(".")
                if entry in (host, with_port):
                    return True
                if host.endswith("." + entry) or with_port.endswith("." + entry):
                    return True
    return _bypass_by_suffix(host)


def environ_proxies(url: str) -> dict[str, str]:
    """{scheme: proxy URL} from the *_PROXY variables, or {} when NO_PROXY covers `url`."""
    if should_bypass(url):
        return {}
    return _environment_proxies()


def _environment_proxies() -> dict[str, str]:
    """{scheme: value} of every *_proxy variable, lower case winning; "no" holds NO_PROXY."""
    proxies: dict[str, str] = {}
    for name, value in os.environ.items():
        if value and name.lower().endswith("_proxy"):
            proxies[name.lower()[:-6]] = value
    if "REQUEST_METHOD" in os.environ:  # CGI: HTTP_PROXY may come from a client's "Proxy:" header
        proxies.pop("http", None)
    for name, value in os.environ.items():
        if name.endswith("_proxy"):  # the lower-case spellings, second: they win, even when empty
            if value:
                proxies[name.lower()[:-6]] = value
            else:
                proxies.pop(name.lower()[:-6], None)
    return proxies


def _bypass_by_suffix(host: str) -> bool:
    """NO_PROXY as plain DNS suffixes ("*" for all), the way urllib reads it after requests did."""
    no_proxy = _environment_proxies().get("no")
    if no_proxy is None:
        return False
    if no_proxy == "*":
        return True
    host = host.lower()
    port = host.rsplit(":", 1)[-1]
    bare = host.rsplit(":", 1)[0] if port.isascii() and port.isdigit() else host
    for name in no_proxy.split(","):
        name = name.strip().lstrip(".").lower()
        if not name:
            continue
        if name in (bare, host) or bare.endswith("." + name) or host.endswith("." + name):
            return True
    return False


__all__ = ["environ_proxies", "should_bypass"]
