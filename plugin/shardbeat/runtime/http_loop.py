"""Heartbeat HTTP on one event loop: many calls in flight, driven by the runner's loop thread.

`start(endpoint, request, deadline, done)` queues a call; `poll(timeout)` waits for I/O (selectors) at
most `timeout` seconds, and never past the earliest call's deadline, makes progress on every ready
connection and calls `done` for each finished call, exactly once, from inside `poll`, with the
HttpResponse or a TransportError named as runtime/transport.py names it (transport_errors). Every
method but `wakeup()` belongs to one thread, the one that calls `poll`.

Per beat this costs one send, one wait and one recv on a kept-alive connection, and the answer is
read by the sans-I/O parser (http_answer.py), not http.client. Opening a connection is rare and done
the blocking way on connector threads (http_connectors.py), which hand the socket back to the loop.
- Pool: connections are kept per (scheme, host, port); at most `max_in_flight_per_host` calls hold
  or open one at a time, the rest wait FIFO (their deadlines still run); `max_idle_per_host` are
  kept between calls (by default as many as may be in flight: a burst of beats that needed them
  will come again, and reopening costs far more than an idle socket), and an idle connection the
  server closes is noticed and dropped at once.
- Deadlines are strict: at a call's deadline it fails with Timeout at the step it was in (resolve,
  connect and tls as the connector thread last said, else answer), and its connection is closed; no byte
  of a request is written past its deadline (a heartbeat's claim past its lease).
  A connector that finishes after its call timed out gives the socket to the next waiting call of
  that endpoint, else to the idle pool (the set-up was paid for; a slow network still gets a use).
- A call on a reused connection that fails before any byte of answer arrived (the server had
  closed it) is retried once on a fresh connection: heartbeats are idempotent (as transport.py).
- Proxies: http endpoints get the request in absolute-form with Proxy-Authorization; https go
  through the CONNECT tunnel runtime/connect.py opens.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import itertools
import logging
import selectors
import socket
import time
from collections.abc import Callable

from shardbeat.providers.base import Endpoint, HttpRequest, HttpResponse
from shardbeat.runtime.connect import absolute_form_refusal, open_socket
from shardbeat.runtime.http_connectors import Connectors
from shardbeat.runtime.http_exchange import READ, WRITE, Call, Conn, Done, Key, Pool
from shardbeat.runtime.http_request import encode_request
from shardbeat.runtime.network import Network, NetworkError, url_of
from shardbeat.runtime.resolver import Resolver, shared_resolver
from shardbeat.runtime.transport_errors import TransportError, as_transport_error, setup_step

log = logging.getLogger("shardbeat.http_loop")

MAX_OPENING = 4  # connections being opened at once per endpoint (and at most a fair share: http_connectors)
# What a dead kept-alive connection looks like when nothing of the answer came yet: worth one fresh try.
_STALE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def _unsent() -> TransportError:
    """A call whose deadline passed before it could be sent: no step of the network was slow (that
    would have been its Timeout), this process was: named so, not "connect" (whose fix blames a firewall)."""
    return TransportError(
        "Timeout",
        "the call's deadline passed before it was sent (this process ran late: a busy host or a "
        "stopped process)",
    )


class HttpLoop:
    def __init__(
        self,
        monotonic: Callable[[], float] = time.monotonic,
        max_idle_per_host: int = 32,  # as many as a burst needed: reopening is the expensive part
        max_in_flight_per_host: int = 32,
        network: Network | None = None,
        resolver: Resolver | None = None,
        connector_threads: int = 8,
    ) -> None:
        self._monotonic = monotonic
        self._network = network or Network()
        self._resolver = resolver or shared_resolver()
        self._max_idle = max_idle_per_host
        self._max_busy = max(1, max_in_flight_per_host)
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        for end in (self._wake_r, self._wake_w):
            end.setblocking(False)
        self._selector.register(self._wake_r, READ, None)
        self._connectors: Connectors[tuple[Pool, Call]] = Connectors(self.wakeup, connector_threads)
        self._pools: dict[Key, Pool] = {}
        self._new: list[Call] = []
        self._timers: list[tuple[float, int, Call]] = []
        self._finished: collections.deque[tuple[Call, HttpResponse | TransportError]] = collections.deque()
        self._seq = itertools.count()
        self._live = 0
        self._closed = False

    # -- the API -----------------------------------------------------------------------------------

    def start(self, endpoint: Endpoint, request: HttpRequest, deadline: float, done: Done) -> None:
        """Queue a call; `done` gets its answer or TransportError from inside a later `poll`."""
        if self._closed:
            raise RuntimeError("HttpLoop is closed")
        call = Call(endpoint, request, deadline, done, (endpoint.scheme, endpoint.host, endpoint.port))
        self._new.append(call)
        self._live += 1
        heapq.heappush(self._timers, (deadline, next(self._seq), call))

    def poll(self, timeout: float | None) -> None:
        """Wait for I/O at most `timeout` seconds (None: until something happens or a deadline
        comes), make progress, fire `done` for every call that finished. A `done` that raises
        leaves the others for the next poll."""
        if self._closed:
            raise RuntimeError("HttpLoop is closed")
        self._dispatch_new()
        self._take_connected()
        wait = timeout
        if self._finished or self._new:
            wait = 0.0
        else:
            upcoming = self.next_deadline()
            if upcoming is not None:
                left = max(0.0, upcoming - self._monotonic())
                wait = left if wait is None else min(wait, left)
        for key, mask in self._selector.select(wait if wait is None else max(0.0, wait)):
            conn = key.data
            if conn is None:
                self._drain_wakeups()
            elif not conn.closed:
                self._on_ready(conn, mask)
        self._take_connected()
        self._expire(self._monotonic())
        timers = self._timers
        if len(timers) > 2 * self._live + 64:  # answered calls wait in the heap for their deadline: prune
            self._timers = [entry for entry in timers if not entry[2].finished]
            heapq.heapify(self._timers)
        finished = self._finished
        while finished:
            call, result = finished.popleft()
            self._live -= 1
            call.done(result)

    def next_deadline(self) -> float | None:
        """The earliest deadline of a call not yet finished, if any."""
        timers = self._timers
        while timers and timers[0][2].finished:
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def wakeup(self) -> None:
        """Make a `poll` in progress return soon (any thread)."""
        with contextlib.suppress(OSError):  # full: a wake-up is pending anyway; closed: nobody to wake
            self._wake_w.send(b"\0")

    def send(self, endpoint: Endpoint, request: HttpRequest, deadline: float) -> HttpResponse:
        """One call, blocking until it is done (the Transport protocol of runtime/transport.py).
        Only while no other thread drives this loop."""
        box: list[HttpResponse | TransportError] = []
        self.start(endpoint, request, deadline, box.append)
        while not box:
            self.poll(None)  # bounded: the call's deadline fires
        result = box[0]
        if isinstance(result, TransportError):
            raise result
        return result

    @property
    def in_flight(self) -> int:
        """Calls started and not yet handed to `done`."""
        return self._live

    def close(self) -> None:
        """Close every connection; calls still in flight are abandoned (no `done`)."""
        if self._closed:
            return
        self._closed = True
        self._connectors.close()
        for pool in self._pools.values():
            for conn in list(pool.idle):
                self._drop(conn)
        for key in list(self._selector.get_map().values()):
            if key.data is not None:
                self._drop(key.data)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- calls to connections ----------------------------------------------------------------------

    def _dispatch_new(self) -> None:
        new, self._new = self._new, []
        now = self._monotonic()
        for call in new:
            if call.deadline <= now:  # as transport.py: no time left to even try
                self._finish(call, _unsent())
                continue
            pool = self._pools.get(call.key)
            if pool is None:
                try:
                    pool = self._pools[call.key] = self._make_pool(call.endpoint)
                except NetworkError as exc:
                    self._finish(call, TransportError("ProxyError", str(exc)))
                    continue
            request = call.request
            try:
                target = request.target if pool.absolute is None else pool.absolute + request.target
                authorization = pool.route.proxy.authorization if pool.absolute and pool.route.proxy else None
                call.data = encode_request(
                    request.method, target, request.headers, request.body, authorization
                )
            except Exception as exc:  # a header http.client would refuse: the same error
                self._finish(call, as_transport_error(exc, "answer"))
                continue
            self._assign(pool, call)

    def _make_pool(self, endpoint: Endpoint) -> Pool:
        route = self._network.route_to(endpoint)
        absolute = None
        if route.proxy is not None and endpoint.scheme == "http":
            absolute = url_of(endpoint.scheme, endpoint.host, endpoint.port)[:-1]
        return Pool(endpoint, route, absolute)

    def _assign(self, pool: Pool, call: Call) -> None:
        pool.waiting.append(call)
        self._pump(pool)

    def _pump(self, pool: Pool) -> None:
        """Let waiting calls go, in order, while the pool's limits allow: a kept-alive connection if
        one is idle, else a new one (at most MAX_OPENING being opened at once per endpoint, so one
        unreachable endpoint cannot hold every connector thread)."""
        waiting = pool.waiting
        now = None
        while waiting and pool.busy < self._max_busy and (pool.idle or pool.opening < MAX_OPENING):
            call = waiting.popleft()
            if call.finished:
                continue
            if now is None:
                now = self._monotonic()
            if call.deadline <= now:
                # Its deadline passed while it waited (a loop back late): not sent, and ended here, in
                # this loop: _send_on's own check would recurse through _keep_idle once per such call.
                self._finish(call, call.timeout(pool.route))
                continue
            pool.busy += 1
            if pool.idle:
                conn = pool.idle.pop()
                conn.begin(call)
                self._write(conn)
            else:
                self._open(pool, call)

    def _slot_freed(self, pool: Pool) -> None:
        """A connection of `pool` stopped counting against its limit: let a waiting call go."""
        pool.busy -= 1
        self._pump(pool)

    def _open(self, pool: Pool, call: Call) -> None:
        call.phase = "opening"  # until a connector thread takes the job and names its first step
        pool.opening += 1
        network, resolver, monotonic, deadline = self._network, self._resolver, self._monotonic, call.deadline

        def on_step(step: str) -> None:
            call.phase = step  # read by the loop thread at the deadline: names the slow step

        def opener() -> socket.socket:
            return open_socket(
                pool.endpoint, pool.route, resolver, network.ssl_context, deadline, monotonic, on_step
            )

        self._connectors.submit((pool, call), opener, call.key)  # scheduled fairly per endpoint

    def _take_connected(self) -> None:
        for (pool, call), result in self._connectors.take():
            pool.opening -= 1
            if not isinstance(result, socket.socket):
                if not call.finished:
                    self._finish(call, as_transport_error(result, setup_step(result) or "connect"))
                self._slot_freed(pool)
                continue
            result.setblocking(False)
            conn = Conn(result, pool)
            self._selector.register(result, READ, conn)
            if not call.finished:
                self._send_on(conn, call)
                self._pump(pool)  # one fewer being opened: a call waiting on that limit may go
                continue
            # The call timed out meanwhile: the set-up was paid for, so the next call uses it.
            pool.busy -= 1
            self._keep_idle(conn)

    def _send_on(self, conn: Conn, call: Call) -> None:
        if call.deadline <= self._monotonic():
            # A loop that comes back late (a loaded machine) puts no call on the wire past its
            # deadline (a heartbeat's claim past its lease); the connection goes on to the next call.
            self._finish(call, _unsent())
            conn.pool.busy -= 1
            self._keep_idle(conn)
            return
        conn.begin(call)
        self._write(conn)

    def _keep_idle(self, conn: Conn) -> None:
        """`conn` carries no call now: to a waiting call, else to the idle list (the newest kept)."""
        pool = conn.pool
        pool.idle.append(conn)
        self._pump(pool)
        while len(pool.idle) > self._max_idle:
            self._drop(pool.idle.pop(0))

    # -- I/O -----------------------------------------------------------------------------------------

    def _want(self, conn: Conn, events: int) -> None:
        if conn.events != events:
            conn.events = events
            self._selector.modify(conn.sock, events, conn)

    def _write(self, conn: Conn) -> None:
        try:
            events = conn.write()
        except OSError as exc:
            self._fail(conn, exc)
            return
        except Exception as exc:  # as in _on_ready: one connection's bug stays that call's
            log.exception("internal error sending a request to %s", conn.pool.endpoint.host)
            self._fail(conn, exc)
            return
        self._want(conn, events)

    def _on_ready(self, conn: Conn, mask: int) -> None:
        if conn.call is None:  # idle, and the server spoke: it closed the connection (or sent junk)
            if conn in conn.pool.idle:
                conn.pool.idle.remove(conn)
            self._drop(conn)
            return
        if conn.out is not None:
            if conn.call.deadline <= self._monotonic():
                # The rest of a request never goes on the wire past its deadline (a server that opened
                # its window late, a loop back late): _expire, later in this poll, ends the call.
                return
            self._write(conn)
            if conn.closed or (conn.out is not None and not mask & READ):
                return
            # Sent, or the server spoke before it took the whole request (an early answer such as a
            # 413): read it now, or its bytes keep READ ready and the loop spins until the deadline.
        elif not mask & READ and not conn.read_wants_write:
            return
        try:
            answer = conn.read()
        except (OSError, TransportError) as exc:
            self._fail(conn, exc)
            return
        except Exception as exc:  # a bug met by one server's bytes fails that call, never the loop
            log.exception("internal error reading an answer from %s", conn.pool.endpoint.host)
            self._fail(conn, exc)
            return
        if answer is not None:
            self._complete(conn, answer)
        else:
            events = conn.events if conn.out is not None else READ  # as the pending write wants
            self._want(conn, events | WRITE if conn.read_wants_write else events)

    def _complete(self, conn: Conn, answer: HttpResponse) -> None:
        call, parser = conn.call, conn.parser
        assert call is not None and parser is not None
        conn.call = conn.parser = None
        call.conn = None
        conn.used = True
        refusal = absolute_form_refusal(conn.pool.route, answer.status) if conn.pool.absolute else None
        self._finish(call, answer if refusal is None else as_transport_error(refusal, "connect"))
        conn.pool.busy -= 1
        if parser.reusable and conn.out is None:  # an early answer: the rest of the request is owed
            self._keep_idle(conn)
        else:
            self._drop(conn)
            self._pump(conn.pool)

    def _fail(self, conn: Conn, exc: BaseException) -> None:
        call, parser = conn.call, conn.parser
        self._drop(conn)
        if call is None:
            return
        call.conn = None
        pool = conn.pool
        quiet = parser is None or parser.received == 0
        stale = isinstance(exc, _STALE) or (isinstance(exc, TransportError) and exc.code == "ConnectionReset")
        if conn.used and quiet and stale and not call.retried and not call.finished:
            call.retried = True  # the kept-alive connection had died: one fresh try, same deadline
            self._open(pool, call)  # keeps the connection's slot, past the MAX_OPENING limit
            return
        if not call.finished:
            if parser is not None and parser.in_body and isinstance(exc, OSError):
                # The head came, then a reset: a cut answer (as transport.py and a FIN say), not
                # "closed without an answer"
                exc = TransportError("InvalidHTTP", f"answer cut short ({type(exc).__name__})", "answer")
            self._finish(call, as_transport_error(exc, setup_step(exc) or "answer"))
        self._slot_freed(pool)

    def _drop(self, conn: Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        conn.call = conn.parser = None
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)
        conn.sock.close()

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:  # BlockingIOError: drained
            pass

    # -- deadlines -----------------------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, call = heapq.heappop(timers)
            if call.finished:
                continue
            pool = self._pools.get(call.key)
            self._finish(call, call.timeout(pool.route if pool is not None else None))
            conn = call.conn
            if conn is not None:  # mid-exchange: never reused, and its slot goes to the next call
                call.conn = None
                self._drop(conn)
                self._slot_freed(conn.pool)
            # queued: skipped when its turn comes; connecting: the connector's socket goes on

    def _finish(self, call: Call, result: HttpResponse | TransportError) -> None:
        call.finished = True
        call.data = b""
        self._finished.append((call, result))
