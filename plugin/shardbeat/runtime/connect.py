"""Open the socket a request goes out on, every step within the call's deadline: DNS (runtime/resolver.py),
TCP connect, the proxy's CONNECT tunnel for https, the TLS handshake.

A proxy for an http endpoint needs no tunnel: the request itself goes to the proxy in absolute-form
(transport.py writes the target). The CONNECT answer is read here with the deadline re-armed
before every recv, so a proxy that trickles its answer cannot outlast the call.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable, Sequence

from shardbeat.core.redaction import clip
from shardbeat.providers.base import Endpoint
from shardbeat.runtime.network import Route
from shardbeat.runtime.resolver import Address, Resolver, ResolveTimeout

MAX_CONNECT_ANSWER = 16 * 1024
# The least time one address of several gets for its TCP handshake (a far region's round trip fits).
MIN_ATTEMPT = 1.0


class ProxyRefused(OSError):
    """The proxy answered CONNECT with something other than 2xx (message safe to log)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class HandshakeStalled(TimeoutError):
    """TCP is up but the TLS handshake did not finish in time: the step is `tls`, not `connect`."""


def open_socket(
    endpoint: Endpoint,
    route: Route,
    resolver: Resolver,
    ssl_context: Callable[[], ssl.SSLContext],
    deadline: float,
    monotonic: Callable[[], float],
    on_step: Callable[[str], None] | None = None,
) -> socket.socket:
    """`on_step` hears each step as it begins (resolve, connect, proxy, tls): a caller that gives up at the
    deadline from another thread (runtime/http_loop.py) can then name the step that was too slow."""
    step = on_step or _ignore
    proxy = route.proxy
    host, port = (proxy.host, proxy.port) if proxy is not None else (endpoint.host, endpoint.port)
    step("resolve")
    addresses = resolver.resolve(host, port, deadline)
    step("connect")
    sock = connect_first(addresses, deadline, monotonic)
    try:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if endpoint.scheme != "https":
            return sock
        if proxy is not None:
            step("proxy")
            try:
                _tunnel(sock, endpoint, route, deadline, monotonic)
            except TimeoutError as exc:
                exc.step = "proxy"  # type: ignore[attr-defined]  # the proxy held CONNECT: not a TCP handshake
                raise
        step("tls")
        sock.settimeout(_left(deadline, monotonic))
        try:
            return ssl_context().wrap_socket(sock, server_hostname=endpoint.host)
        except TimeoutError as exc:
            raise HandshakeStalled(f"no TLS handshake before the call's deadline ({exc})") from None
        except Exception as exc:
            exc.step = "tls"  # type: ignore[attr-defined]  # net_errors names it: the handshake failed
            raise
    except BaseException:
        sock.close()
        raise


def _ignore(step: str) -> None:
    pass


def _left(deadline: float, monotonic: Callable[[], float]) -> float:
    left = deadline - monotonic()
    if left <= 0:
        raise TimeoutError("call deadline passed")
    return left


def connect_first(
    addresses: Sequence[Address], deadline: float, monotonic: Callable[[], float]
) -> socket.socket:
    """Each address in turn, as socket.create_connection does, but against the one deadline.

    An address whose handshake gets no reply (a black-holed A record, or IPv6 that is configured
    but dropped on the way) may not spend the whole deadline: each address but the last gets its
    share of the time left (at least MIN_ATTEMPT, if there is that much), so the next one is tried.
    """
    failure: OSError = OSError("no address to connect to")
    for index, (family, sockaddr) in enumerate(addresses):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            left = _left(deadline, monotonic)
            sock.settimeout(max(left / (len(addresses) - index), min(left, MIN_ATTEMPT)))
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            failure = exc
            if isinstance(exc, TimeoutError) and deadline - monotonic() <= 0:
                break  # the deadline is spent: no time for the next address
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise failure


def _tunnel(
    sock: socket.socket, endpoint: Endpoint, route: Route, deadline: float, monotonic: Callable[[], float]
) -> None:
    proxy = route.proxy
    assert proxy is not None
    authority = (
        f"[{endpoint.host}]:{endpoint.port}" if ":" in endpoint.host else f"{endpoint.host}:{endpoint.port}"
    )
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.authorization is not None:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    sock.settimeout(_left(deadline, monotonic))
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    answer = b""
    while b"\r\n\r\n" not in answer:
        sock.settimeout(_left(deadline, monotonic))
        chunk = sock.recv(4096)
        if not chunk:
            raise ProxyRefused("ProxyError", f"proxy {proxy.redacted} closed the connection during CONNECT")
        answer += chunk
        if len(answer) > MAX_CONNECT_ANSWER:
            raise ProxyRefused("ProxyError", f"proxy {proxy.redacted} sent an oversize answer to CONNECT")
    head, _, rest = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    parts = status_line.split(" ", 2)
    status = parts[1] if len(parts) > 1 and parts[0].startswith("HTTP/") else ""
    if status.isascii() and status.isdigit() and 200 <= int(status) < 300:  # "²00": isdigit, not int
        if rest:
            # Nothing may follow a 2xx before our TLS hello; a refusal's body (a 407 page) may.
            raise ProxyRefused("ProxyError", f"proxy {proxy.redacted} sent data before the tunnel opened")
        return
    # A proxy may echo what it was sent (our Proxy-Authorization): masked before the cut.
    shown = "".join(ch if ch.isprintable() else " " for ch in clip(status_line, 100))
    if status == "407":
        why = "needs credentials" if proxy.authorization is None else "refused the credentials"
        raise ProxyRefused("ProxyAuthRequired", f"proxy {proxy.redacted} {why} ({shown})")
    raise ProxyRefused("ProxyError", f"proxy {proxy.redacted} refused CONNECT to {authority} ({shown})")


def absolute_form_refusal(route: Route, status: int) -> ProxyRefused | None:
    """A 407 to a request sent to the proxy in absolute-form (an http endpoint) is the proxy's word,
    not the service's: named as CONNECT's refusal is, not as the service's odd answer."""
    proxy = route.proxy
    if proxy is None or status != 407:
        return None
    why = "needs credentials" if proxy.authorization is None else "refused the credentials"
    return ProxyRefused("ProxyAuthRequired", f"proxy {proxy.redacted} {why} (HTTP 407)")


__all__ = ["ProxyRefused", "ResolveTimeout", "absolute_form_refusal", "connect_first", "open_socket"]
