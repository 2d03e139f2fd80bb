"""The blocking face of the HTTP engine: `Transport` (send one request, get the whole answer before a
deadline) and `HttpTransport`, which serves it with the same engine the runner's loop uses
(runtime/http_loop.py), one private loop per calling thread.

The runner itself never blocks on a call: it drives HttpLoop from its loop thread. A blocking
transport serves whatever needs one call at a time: tests that wrap it to inject faults (the runner
then runs it on worker threads: runtime/exchange.py ThreadedExchange), and the benchmark's clients.
So there is one HTTP client in the process, with one set of rules: the strict deadline against a
trickling peer, DNS within the deadline, proxies (CONNECT for https, absolute-form for http), the
pooled keep-alive connection retried once when the server closed it while idle, and the error
vocabulary of runtime/transport_errors.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from shardbeat.providers.base import Endpoint, HttpRequest, HttpResponse
from shardbeat.runtime.http_loop import HttpLoop
from shardbeat.runtime.network import Network
from shardbeat.runtime.resolver import Resolver
from shardbeat.runtime.transport_errors import MAX_RESPONSE_BYTES as MAX_RESPONSE_BYTES
from shardbeat.runtime.transport_errors import TransportError as TransportError


class Transport(Protocol):
    def send(self, endpoint: Endpoint, request: HttpRequest, deadline: float) -> HttpResponse:
        """Send and read the whole answer before `deadline` (monotonic seconds) or raise TransportError."""
        ...

    def close(self) -> None: ...


class HttpTransport:
    def __init__(
        self,
        monotonic: Callable[[], float] = time.monotonic,
        max_idle_per_host: int = 4,
        network: Network | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self._monotonic = monotonic
        self._max_idle = max_idle_per_host
        self._network = network
        self._resolver = resolver
        self._local = threading.local()
        self._loops: list[HttpLoop] = []
        self._lock = threading.Lock()
        self._closed = False

    def send(self, endpoint: Endpoint, request: HttpRequest, deadline: float) -> HttpResponse:
        loop: HttpLoop | None = getattr(self._local, "loop", None)
        if loop is None:
            loop = HttpLoop(
                self._monotonic,
                max_idle_per_host=self._max_idle,
                network=self._network,
                resolver=self._resolver,
            )
            with self._lock:
                if self._closed:
                    loop.close()
                    raise TransportError("TransportFailure", "the transport is closed")
                self._loops.append(loop)
            self._local.loop = loop
        return loop.send(endpoint, request, deadline)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            loops, self._loops = self._loops, []
        for loop in loops:
            loop.close()
