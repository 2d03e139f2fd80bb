"""What a failed HTTP call is called, shared by both heartbeat transports (runtime/transport.py, blocking
http.client; runtime/http_loop.py, one event loop): the TransportError codes, the step a failure
happened at, and the mapping from the exceptions of sockets, ssl, DNS and http.client to those codes.
One mapping, so a fault reads the same whichever transport met it."""

from __future__ import annotations

import socket
import ssl
import sys

from shardbeat.core.redaction import describe_exception
from shardbeat.providers.base import Endpoint
from shardbeat.runtime.connect import HandshakeStalled, ProxyRefused
from shardbeat.runtime.resolver import ResolveTimeout

MAX_RESPONSE_BYTES = 1 << 20


class TransportError(Exception):
    """A request that got no usable HTTP answer (timeout, refused, reset, oversize). `step` is where
    it failed (net_errors.Step: resolve, connect, tls, answer) when known."""

    def __init__(self, code: str, message: str, step: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.step = step

    def describe(self, endpoint: Endpoint, budget: float | None = None, proxy: str | None = None) -> str:
        """The failure as an operator reads it: the endpoint, the step and the fix (net_errors);
        `budget`, the call's time allowance in seconds, is named in a timeout; `proxy` (host:port),
        the proxy the call went through, is named when it was the proxy that could not be reached."""
        from shardbeat.runtime.net_errors import describe

        detail = self.message
        if self.code == "Timeout" and budget is not None:
            detail = f"{detail} ({budget:.1f}s)"
        return describe(self.code, detail, self.step, f"{endpoint.host}:{endpoint.port}", proxy)


def setup_step(exc: BaseException) -> str | None:
    """The step an exception itself names (DNS, TLS), else None: the caller knows from its state."""
    tagged = getattr(exc, "step", None)  # connect.open_socket marks a failed TLS handshake
    if isinstance(tagged, str):
        return tagged
    if isinstance(exc, socket.gaierror | ResolveTimeout):
        return "resolve"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError | HandshakeStalled):
        return "tls"
    return None


def as_transport_error(exc: BaseException, step: str | None = None) -> TransportError:
    error = classify(exc)
    if error.step is None:
        error.step = step
    return error


def classify(exc: BaseException) -> TransportError:
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, ProxyRefused):
        return TransportError(exc.code, exc.message)
    if isinstance(exc, ResolveTimeout):
        return TransportError("Timeout", str(exc))
    if isinstance(exc, TimeoutError | socket.timeout):
        return TransportError("Timeout", "no answer before the call's deadline")
    if isinstance(exc, ConnectionRefusedError):
        return TransportError("ConnectionRefused", "connection refused")
    if isinstance(exc, socket.gaierror):
        return TransportError("NameResolution", f"cannot resolve host: {exc.strerror or exc}")
    if isinstance(exc, ssl.SSLError):
        return TransportError("TLSError", describe_exception(exc))
    if isinstance(exc, ConnectionResetError | BrokenPipeError):  # http.client's RemoteDisconnected too
        return TransportError("ConnectionReset", "connection closed by the server without an answer")
    # http.client is not imported on the event-loop path: until something imports it, none of its
    # exceptions can exist (http_request raises its InvalidURL after importing it).
    http_client = sys.modules.get("http.client")
    if http_client is not None and isinstance(exc, http_client.HTTPException):
        return TransportError("InvalidHTTP", describe_exception(exc)[:200])
    if isinstance(exc, OSError):
        reason = f"{type(exc).__name__}: {exc.strerror}" if exc.strerror else describe_exception(exc)
        return TransportError("NetworkError", reason[:200])
    if isinstance(exc, Exception):
        # e.g. http.client's ValueError("Invalid header value b'...'"): it quotes the header (a token)
        return TransportError("TransportFailure", describe_exception(exc)[:200])
    raise exc
