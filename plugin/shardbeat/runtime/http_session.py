"""requests for the credential sources' metadata/STS calls and for doctor, never for run's own calls.

Bootstrap and heartbeats go over runtime/transport.py instead: it holds a call to its deadline
against a trickling peer (below), and leaving requests unimported saves a static-keys process
~6 MB of RSS and ~100 ms of start-up. Import this module only where a session is actually made.

    session = make_session(network)          # proxy + CA + DNS + User-Agent + default timeout
    session.get(url, timeout=2.0)            # the route and trust of runtime/network.py apply
    RequestsTransport(session).send(endpoint, request, deadline)   # the Transport protocol

A session made here:
- takes its proxy per URL from Network.route (requests' own rules, with the config's `proxy` on
  top), never from requests' environment handling (trust_env is off), so REQUESTS_CA_BUNDLE cannot
  override `tls.ca_file` and every call takes the route the heartbeat takes;
- verifies TLS against Network's CAs, always: a `verify=False` from a caller is ignored;
- resolves names through runtime/resolver.py within the connect timeout (urllib3 would call
  getaddrinfo, which has no timeout);
- does not follow redirects unless asked (a redirect is an answer, not a detour), and sends
  `User-Agent: shardbeat/<version>`; `timeout` defaults to the factory's.

Errors are requests' own exceptions; RequestsTransport turns them into TransportError with texts
that never carry the proxy's credentials. Its deadline bounds DNS, connect and each read, and the
body is checked against it between chunks; since urllib3 re-arms its timeout per read, a peer that
trickles the status line, headers or body byte by byte is cut off at the deadline by
runtime/call_deadline.py (the connections here register with it). The heartbeat and bootstrap,
whose deadlines guard the lease, stay on runtime/transport.py.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from shardbeat import __version__
from shardbeat.core.redaction import clip
from shardbeat.providers.base import Endpoint, HttpRequest, HttpResponse
from shardbeat.providers.endpoint import DEFAULT_PORTS
from shardbeat.runtime.call_deadline import CallDeadline, Watched
from shardbeat.runtime.network import Network, NetworkError, url_of
from shardbeat.runtime.resolver import Resolver, ResolveTimeout, shared_resolver
from shardbeat.runtime.transport import MAX_RESPONSE_BYTES, TransportError

USER_AGENT = f"shardbeat/{__version__}"
DEFAULT_TIMEOUT = 5.0


def _pool_classes(resolver: Resolver) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 pools whose connections look names up through `resolver` (bounded by the connect timeout)."""

    def new_conn(conn: HTTPConnection, connect: Any) -> Any:
        name = conn._dns_host  # what urllib3 would resolve: the proxy when there is one
        timeout = conn.timeout if isinstance(conn.timeout, int | float) else DEFAULT_TIMEOUT
        deadline = time.monotonic() + timeout
        try:
            addresses = resolver.resolve(name, conn.port, deadline)
        except ResolveTimeout as exc:
            raise ConnectTimeoutError(conn, str(exc)) from exc
        except OSError as exc:
            raise NewConnectionError(conn, f"Failed to resolve {name} ({exc})") from exc
        failure: Exception | None = None
        try:
            for _, sockaddr in addresses:
                if time.monotonic() >= deadline:
                    break
                conn._dns_host = sockaddr[0]  # an IP literal: urllib3's own connect needs no DNS
                try:
                    return connect()
                except NewConnectionError as exc:
                    failure = exc
        finally:
            conn._dns_host = name
        raise failure or ConnectTimeoutError(conn, f"no address of {name} answered in time")

    # connect and request register with the calling thread's CallDeadline (a reused connection
    # only sends), so a trickling peer is cut off at the call's deadline.
    class Http(Watched, HTTPConnection):
        def _new_conn(self) -> Any:
            return new_conn(self, super()._new_conn)

    class Https(Watched, HTTPSConnection):
        def _new_conn(self) -> Any:
            return new_conn(self, super()._new_conn)

    class HttpPool(HTTPConnectionPool):
        ConnectionCls = Http

    class HttpsPool(HTTPSConnectionPool):
        ConnectionCls = Https

    return {"http": HttpPool, "https": HttpsPool}


class _Adapter(HTTPAdapter):
    def __init__(self, network: Network, resolver: Resolver) -> None:
        self._network = network
        self._pools = _pool_classes(resolver)
        # Our own context: urllib3 sets attributes on the one it is given.
        self._ssl_context = network.new_ssl_context()
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = self._pools
        return manager

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # requests would set CERT_NONE for verify=False, and add certifi's bundle (ca_certs) to our
        # context for verify=True: neither. The context holds exactly the CAs of Network.
        conn.cert_reqs = "CERT_REQUIRED"
        conn.ca_certs = None
        conn.ca_cert_dir = None

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> Any:
        host_params, _ = super().build_connection_pool_key_attributes(request, True, cert)
        # Verification is not negotiable: whatever `verify` says, certificates and names are checked.
        return host_params, {"cert_reqs": "CERT_REQUIRED", "ssl_context": self._ssl_context}


class _Session(requests.Session):
    def __init__(self, network: Network, timeout: float) -> None:
        super().__init__()
        self.network = network
        self.default_timeout = timeout
        self.trust_env = False  # proxies and CAs come from `network`, which read the environment already

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.default_timeout)
        kwargs.setdefault("allow_redirects", False)
        if "proxies" not in kwargs:
            kwargs["proxies"] = self.proxies_for(url if isinstance(url, str) else url.decode())
        return super().request(method, url, *args, **kwargs)

    def proxies_for(self, url: str) -> dict[str, str]:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            return {}
        route = self.network.route(scheme, parts.hostname, parts.port or DEFAULT_PORTS[scheme])
        return {scheme: route.proxy.url} if route.proxy is not None else {}


def make_session(
    network: Network | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    user_agent: str = USER_AGENT,
    resolver: Resolver | None = None,
) -> requests.Session:
    """A requests session on the process's network rules (see the module docstring)."""
    used = network or Network()
    session = _Session(used, timeout)
    adapter = _Adapter(used, resolver or shared_resolver())
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = user_agent
    return session


class RequestsTransport:
    """The Transport protocol over a requests session: for calls made once, not per beat."""

    def __init__(
        self,
        session: requests.Session | None = None,
        network: Network | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._network = network or (session.network if isinstance(session, _Session) else Network())
        self._session = session or make_session(self._network)
        self._monotonic = monotonic

    def send(self, endpoint: Endpoint, request: HttpRequest, deadline: float) -> HttpResponse:
        left = deadline - self._monotonic()
        if left <= 0:
            raise TransportError("Timeout", "call deadline passed")
        url = url_of(endpoint.scheme, endpoint.host, endpoint.port)[:-1] + request.target
        with CallDeadline(left) as cut:
            try:
                answer = self._send(url, request, deadline)
            except TransportError as exc:
                if not cut.expired or exc.code == "Timeout":  # its own words: e.g. which DNS lookup
                    raise
        if cut.expired:  # a body cut short is not an answer, whatever parsed of it
            raise TransportError("Timeout", "no answer before the call's deadline", "answer")
        return answer

    def _send(self, url: str, request: HttpRequest, deadline: float) -> HttpResponse:
        left = deadline - self._monotonic()
        if left <= 0:
            raise TransportError("Timeout", "call deadline passed", "answer")
        try:
            with self._session.request(
                request.method,
                url,
                headers=dict(request.headers),
                data=request.body or None,
                timeout=(left, left),
                stream=True,
            ) as answer:
                body = _read_within(answer, deadline, self._monotonic)
                headers = {name.lower(): value for name, value in answer.headers.items()}
                return HttpResponse(answer.status_code, headers, body)
        except NetworkError as exc:
            raise TransportError("ProxyError", str(exc)) from None
        except requests.RequestException as exc:
            raise _transport_error(exc, self._network.secrets) from None
        except OSError as exc:  # e.g. a body read that failed below requests' wrapping
            raise _transport_error(exc, self._network.secrets) from None

    def close(self) -> None:
        self._session.close()


def _read_within(answer: requests.Response, deadline: float, monotonic: Callable[[], float]) -> bytes:
    """The body, at most MAX_RESPONSE_BYTES, checked against the deadline between reads."""
    chunks: list[bytes] = []
    size = 0
    for chunk in answer.iter_content(16 * 1024):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise TransportError("ResponseTooLarge", f"answer body over {MAX_RESPONSE_BYTES} bytes", "answer")
        chunks.append(chunk)
        if monotonic() > deadline:
            raise TransportError("Timeout", "answer body did not arrive before the call's deadline", "answer")
    return b"".join(chunks)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """exc and what it wraps (requests -> urllib3 MaxRetryError.reason -> OSError), outermost first."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 16:
        item = todo.pop(0)
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo += [a for a in item.args if isinstance(a, BaseException)]
        for linked in (getattr(item, "reason", None), item.__cause__, item.__context__):
            if isinstance(linked, BaseException):
                todo.append(linked)


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return "".join(ch if ch.isprintable() else " " for ch in clip(text, 200))


def _transport_error(exc: BaseException, secrets: tuple[str, ...]) -> TransportError:
    chain = list(_causes(exc))
    innermost = chain[-1]
    detail = _scrub(f"{type(innermost).__name__}: {innermost}", secrets)

    def has(*kinds: type[BaseException]) -> bool:
        return any(isinstance(e, kinds) for e in chain)

    if has(TransportError):
        return next(e for e in chain if isinstance(e, TransportError))
    if has(requests.exceptions.ProxyError):
        code = "ProxyAuthRequired" if " 407 " in f" {detail} " else "ProxyError"
        return TransportError(code, f"the proxy refused or failed ({detail})")
    # The step (net_errors.Step) lets describe() name it and the fix, as the heartbeat's errors do.
    if has(requests.exceptions.SSLError):
        return TransportError("TLSError", detail, "tls")
    if has(ResolveTimeout):
        found = next(e for e in chain if isinstance(e, ResolveTimeout))
        return TransportError("Timeout", _scrub(str(found), secrets), "resolve")
    # requests.ConnectTimeout, not urllib3's ConnectTimeoutError: NewConnectionError (refused, no
    # such name) is a subclass of that.
    if has(requests.exceptions.ConnectTimeout) and not has(ConnectionRefusedError, NewConnectionError):
        return TransportError("Timeout", "no TCP handshake before the call's deadline", "connect")
    if has(requests.exceptions.Timeout, TimeoutError) and not has(ConnectionRefusedError):
        return TransportError("Timeout", "no answer before the call's deadline", "answer")
    if "Failed to resolve" in detail or has(socket.gaierror):
        return TransportError("NameResolution", f"cannot resolve host ({detail})", "resolve")
    if has(ConnectionRefusedError):
        return TransportError("ConnectionRefused", "connection refused", "connect")
    if has(ConnectionResetError, BrokenPipeError) or "RemoteDisconnected" in detail:
        return TransportError(
            "ConnectionReset", "connection closed by the server without an answer", "answer"
        )
    if has(requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
        return TransportError("ConnectionReset", f"answer cut short ({detail})", "answer")
    if has(requests.ConnectionError, OSError):
        return TransportError("NetworkError", detail, "connect" if has(NewConnectionError) else None)
    return TransportError("TransportFailure", detail)


__all__ = ["DEFAULT_TIMEOUT", "USER_AGENT", "RequestsTransport", "make_session"]
