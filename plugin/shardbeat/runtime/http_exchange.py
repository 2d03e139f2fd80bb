"""The pieces of runtime/http_loop.py's state, and one exchange on one non-blocking connection: write the
request (partial writes, TLS wanting to read or write first), read and parse the answer (TLS bytes
already decrypted that select() cannot see are read on). No selector and no pool logic here: a
connection says what it needs (READ, or READ|WRITE) and the loop arranges it.
"""

from __future__ import annotations

import collections
import selectors
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from shardbeat.providers.base import Endpoint, HttpRequest, HttpResponse
from shardbeat.runtime.http_answer import AnswerParser
from shardbeat.runtime.network import Route
from shardbeat.runtime.transport_errors import TransportError

Done = Callable[[HttpResponse | TransportError], None]
Key = tuple[str, str, int]
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_RECV = 65536
# transport.py's words (transport_errors.classify, resolver.ResolveTimeout) for the same timeouts
_BEFORE = "before the call's deadline"
_LATE = f"no answer {_BEFORE}"
_LATE_BODY = f"answer body did not arrive {_BEFORE}"


@dataclass(eq=False, slots=True)
class Call:
    endpoint: Endpoint
    request: HttpRequest
    deadline: float
    done: Done
    key: Key
    data: bytes = b""  # the encoded request
    phase: str = "queued"  # queued, opening, then resolve/connect/tls (a connector thread's), then answer
    finished: bool = False
    retried: bool = False
    conn: Conn | None = None

    def timeout(self, route: Route | None) -> TransportError:
        """The Timeout this call fails with at its deadline, named by the step it was in."""
        phase = self.phase
        if phase == "answer":
            parser = self.conn.parser if self.conn is not None else None
            if parser is not None and parser.in_body:
                return TransportError(
                    "Timeout", "answer body did not arrive before the call's deadline", "answer"
                )
            return TransportError("Timeout", "no answer before the call's deadline", "answer")
        if phase == "resolve":
            proxy = route.proxy if route is not None else None
            host = proxy.host if proxy is not None else self.endpoint.host
            return TransportError(
                "Timeout", f"DNS gave no answer for {host} before the call's deadline", "resolve"
            )
        # Waiting for a turn is not "connect": no handshake was tried, and its fix (a firewall?) misleads.
        if phase == "queued":  # behind the endpoint's in-flight limit
            return TransportError("Timeout", "no connection free before the call's deadline", "queue")
        if phase == "opening":  # behind other set-ups for the connector threads
            return TransportError(
                "Timeout", "no connection set-up slot free before the call's deadline", "queue"
            )
        return TransportError("Timeout", _LATE, phase)


@dataclass(eq=False, slots=True)
class Pool:
    """The connections to one (scheme, host, port)."""

    endpoint: Endpoint
    route: Route
    absolute: str | None  # "http://host:port" when requests go to a proxy in absolute-form
    idle: list[Conn] = field(default_factory=list)
    busy: int = 0  # connections carrying a call, plus connections being opened
    opening: int = 0  # connections being opened (connector jobs)
    waiting: collections.deque[Call] = field(default_factory=collections.deque)


@dataclass(eq=False, slots=True)
class Conn:
    sock: socket.socket
    pool: Pool
    call: Call | None = None
    parser: AnswerParser | None = None
    out: memoryview | None = None  # request bytes not yet sent
    used: bool = False  # has carried an answer: a failure may be its staleness, not the call's
    events: int = READ  # what the selector watches for
    read_wants_write: bool = False  # TLS must write (e.g. a key update) before it can read on
    closed: bool = False

    def begin(self, call: Call) -> None:
        call.conn = self
        call.phase = "answer"
        self.call = call
        self.parser = AnswerParser()
        self.out = memoryview(call.data)

    def write(self) -> int:
        """Send what is left of the request; the events to wait for next. Raises OSError."""
        out = self.out
        try:
            while out:
                out = out[self.sock.send(out) :]
        except (BlockingIOError, ssl.SSLWantWriteError):
            self.out = out
            return READ | WRITE
        except ssl.SSLWantReadError:  # TLS needs the peer's bytes first: the next read event retries
            self.out = out
            return READ
        self.out = None
        return READ

    def read(self) -> HttpResponse | None:
        """Read what has arrived; the answer once it is whole. Raises OSError or TransportError."""
        parser, sock = self.parser, self.sock
        assert parser is not None
        self.read_wants_write = False
        while True:
            try:
                data = sock.recv(_RECV)
            except (BlockingIOError, ssl.SSLWantReadError):
                return None
            except ssl.SSLWantWriteError:
                self.read_wants_write = True
                return None
            answer = parser.feed(data) if data else parser.eof()  # eof() completes or raises
            if answer is not None or not data:
                return answer
            if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                return None
