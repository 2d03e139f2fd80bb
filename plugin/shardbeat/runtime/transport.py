"""HTTP with deadlines and pooled keep-alive connections: the heartbeat's transport.

Plain `http.client`, not requests, for every call of `shardbeat run` (heartbeats and bootstrap):
- a strict deadline: the answer is read through a reader that re-arms the socket timeout from the
  call's one deadline, so a peer trickling its status line or headers cannot stretch a call (urllib3
  re-arms per read: see runtime/http_session.py), and the lease watchdog never waits on a late call;
- memory and start-up: a static-keys process never imports requests (measured with bench/startup.py,
  one group: ~6 MB less idle RSS and ~100 ms sooner to the first record);
- CPU: a heartbeat is the one call made thousands of times, and requests costs ~3x per call
  (bench/README.md, "requests.Session.post").
requests (runtime/http_session.py) serves the credential sources (metadata, STS) and doctor. Both
take the same route to an endpoint, proxy, CA trust and DNS included, from runtime/network.py, so
the rules are the ones requests applies.

Connections are pooled per (scheme, host, port) and reused across beats; a pooled connection the
server has since closed is retried once on a fresh one, which is safe because a heartbeat is
idempotent. Opening one (runtime/connect.py) resolves the name within the call's deadline
(runtime/resolver.py), so a hung DNS server costs a failed beat, never a late watchdog. Through a
proxy, https goes through a CONNECT tunnel and http is sent in absolute-form.
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from shardbeat.providers.base import Endpoint, HttpRequest, HttpResponse
from shardbeat.runtime.connect import open_socket
from shardbeat.runtime.network import Network, NetworkError, Route, url_of
from shardbeat.runtime.resolver import Resolver, shared_resolver
from shardbeat.runtime.transport_errors import MAX_RESPONSE_BYTES as MAX_RESPONSE_BYTES
from shardbeat.runtime.transport_errors import TransportError as TransportError
from shardbeat.runtime.transport_errors import as_transport_error, setup_step


class Transport(Protocol):
    def send(self, endpoint: Endpoint, request: HttpRequest, deadline: float) -> HttpResponse:
        """Send and read the whole answer before `deadline` (monotonic seconds) or raise TransportError."""
        ...

    def close(self) -> None: ...


_Key = tuple[str, str, int]

# Failures that mean "this kept-alive connection was already dead", worth one fresh try.
_STALE = (http.client.RemoteDisconnected, http.client.BadStatusLine, ConnectionResetError, BrokenPipeError)


class _Connection(http.client.HTTPConnection):
    """An http.client connection whose socket comes from runtime/connect.py (route, DNS, TLS)."""

    def __init__(self, opener: Callable[[float], socket.socket], route: Route, absolute: str | None) -> None:
        super().__init__("connection.invalid")  # never used: we always send our own Host header
        self._opener = opener
        self.route = route
        self.absolute = absolute  # "http://host:port" when requests go to a proxy in absolute-form
        self.deadline = 0.0

    def connect(self) -> None:
        self.sock = self._opener(self.deadline)


class HttpTransport:
    def __init__(
        self,
        monotonic: Callable[[], float] = time.monotonic,
        max_idle_per_host: int = 4,
        network: Network | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self._monotonic = monotonic
        self._network = network or Network()
        self._resolver = resolver or shared_resolver()
        self._max_idle = max_idle_per_host
        self._idle: dict[_Key, list[_Connection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def send(self, endpoint: Endpoint, request: HttpRequest, deadline: float) -> HttpResponse:
        key = (endpoint.scheme, endpoint.host, endpoint.port)
        try:
            conn, reused = self._checkout(endpoint)
        except NetworkError as exc:
            raise TransportError("ProxyError", str(exc)) from None
        try:
            response = self._exchange(conn, request, deadline)
        except _STALE as exc:
            conn.close()
            if not reused:
                raise as_transport_error(exc, "answer") from None
            conn = self._new(endpoint)  # the pooled connection died while idle: one fresh try
            try:
                response = self._exchange(conn, request, deadline)
            except BaseException as exc2:
                step = _step(conn, exc2)
                conn.close()
                raise as_transport_error(exc2, step) from None
        except BaseException as exc:
            step = _step(conn, exc)
            conn.close()
            raise as_transport_error(exc, step) from None
        self._checkin(key, conn, response)
        return response

    def _exchange(self, conn: _Connection, request: HttpRequest, deadline: float) -> HttpResponse:
        self._set_timeout(conn, deadline)
        if conn.sock is None:
            conn.deadline = deadline
            conn.connect()
            self._set_timeout(conn, deadline)
        target = request.target if conn.absolute is None else conn.absolute + request.target
        conn.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in request.headers:
            conn.putheader(name, value)
        if conn.absolute is not None:
            authorization = conn.route.proxy.authorization if conn.route.proxy is not None else None
            if authorization is not None:
                conn.putheader("Proxy-Authorization", authorization)
        # One segment for headers and body: avoids the Nagle/delayed-ACK stall on small requests.
        conn.endheaders(request.body)
        # The answer is read through a reader that re-arms the socket timeout from the one deadline
        # before every recv: an answer that trickles in byte by byte cannot outlast the call.
        monotonic = self._monotonic
        conn.response_class = lambda sock, *a, **k: http.client.HTTPResponse(  # type: ignore[assignment]
            _DeadlineSocket(sock, deadline, monotonic),  # type: ignore[arg-type]
            *a,
            **k,
        )
        raw = conn.getresponse()
        try:
            body = _read_body(raw)
        except TimeoutError:
            raise TransportError("Timeout", "answer body did not arrive before the call's deadline") from None
        except (http.client.HTTPException, OSError) as exc:  # the status line came: no retry from here
            raise TransportError("InvalidHTTP", f"answer cut short ({type(exc).__name__})") from None
        headers = {name.lower(): value for name, value in raw.getheaders()}
        if raw.will_close:
            conn.close()
        return HttpResponse(raw.status, headers, body)

    def _set_timeout(self, conn: http.client.HTTPConnection, deadline: float) -> None:
        remaining = deadline - self._monotonic()
        if remaining <= 0:
            raise TransportError("Timeout", "call deadline passed")
        conn.timeout = remaining
        if conn.sock is not None:
            conn.sock.settimeout(remaining)

    def _new(self, endpoint: Endpoint) -> _Connection:
        route = self._network.route_to(endpoint)
        absolute = None
        if route.proxy is not None and endpoint.scheme == "http":
            absolute = url_of(endpoint.scheme, endpoint.host, endpoint.port)[:-1]
        network, resolver, monotonic = self._network, self._resolver, self._monotonic

        def opener(deadline: float) -> socket.socket:
            return open_socket(endpoint, route, resolver, network.ssl_context, deadline, monotonic)

        return _Connection(opener, route, absolute)

    def _checkout(self, endpoint: Endpoint) -> tuple[_Connection, bool]:
        with self._lock:
            idle = self._idle.get((endpoint.scheme, endpoint.host, endpoint.port))
            if idle:
                return idle.pop(), True
        return self._new(endpoint), False

    def _checkin(self, key: _Key, conn: _Connection, response: HttpResponse) -> None:
        if conn.sock is None:
            return
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if self._closed or len(idle) >= self._max_idle:
                conn.close()
            else:
                idle.append(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pools, self._idle = self._idle, {}
        for idle in pools.values():
            for conn in idle:
                conn.close()


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: socket.socket, deadline: float, monotonic: Callable[[], float]) -> None:
        self._sock = sock
        # makefile() holds a reference: the socket stays open for this answer even when http.client
        # closes the connection under it ("Connection: close").
        self._raw = sock.makefile("rb", buffering=0)
        self._deadline = deadline
        self._monotonic = monotonic

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        left = self._deadline - self._monotonic()
        if left <= 0:
            raise TimeoutError("call deadline passed while reading the answer")
        self._sock.settimeout(left)
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DeadlineSocket:
    """What HTTPResponse reads from: the real socket behind a deadline-aware reader."""

    def __init__(self, sock: socket.socket, deadline: float, monotonic: Callable[[], float]) -> None:
        self._raw = _DeadlineReader(sock, deadline, monotonic)

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(self._raw)


def _read_body(raw: http.client.HTTPResponse) -> bytes:
    """The whole body, refusing broken framing: a short body, a bad or oversize Content-Length."""
    declared = raw.getheader("content-length")
    chunked = "chunked" in (raw.getheader("transfer-encoding") or "").lower()
    if declared is not None and not chunked:
        if not declared.strip().isdigit():
            raise TransportError("InvalidHTTP", "answer has an invalid Content-Length")
        if int(declared) > MAX_RESPONSE_BYTES:
            raise TransportError("ResponseTooLarge", f"answer body over {MAX_RESPONSE_BYTES} bytes")
        return raw.read()  # raises IncompleteRead when the connection closes early
    body = raw.read(MAX_RESPONSE_BYTES + 1)
    if len(body) > MAX_RESPONSE_BYTES:
        raise TransportError("ResponseTooLarge", f"answer body over {MAX_RESPONSE_BYTES} bytes")
    return body


def _step(conn: http.client.HTTPConnection, exc: BaseException) -> str:
    """Where a call failed, read off the connection's state when it did (before it is closed)."""
    named = setup_step(exc)
    if named is not None:
        return named
    if conn.sock is None:  # http.client sets it once the TCP connection is up
        return "connect"
    if isinstance(conn, http.client.HTTPSConnection) and not isinstance(conn.sock, ssl.SSLSocket):
        return "tls"  # the TCP connection is up but not yet wrapped: the handshake failed
    return "answer"
