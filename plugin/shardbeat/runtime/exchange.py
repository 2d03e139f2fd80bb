"""How the shell carries out a call's `Send` steps: the `Exchange` protocol, and `ThreadedExchange`,
which runs any blocking `Transport` (tests inject fault-wrapping ones) on a few worker threads.

Every exchange delivers answers the same way: `done` is called inside `poll()`, on the loop thread,
so the shell handles every answer on one thread and the drivers need no locking of their own.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
from collections.abc import Callable
from typing import Protocol

from shardbeat.core.wire import Endpoint, HttpRequest, HttpResponse
from shardbeat.runtime.transport import Transport, TransportError

log = logging.getLogger("shardbeat.exchange")

Done = Callable[[HttpResponse | TransportError], None]


class Exchange(Protocol):
    def start(self, endpoint: Endpoint, request: HttpRequest, deadline: float, done: Done) -> None:
        """Send before `deadline` (monotonic); `done` gets the answer or a TransportError, once,
        from inside `poll()`. Loop thread only."""
        ...

    def poll(self, timeout: float | None) -> None:
        """Wait at most `timeout` seconds (None: until woken) for answers, and hand them to their
        `done`. Loop thread only."""
        ...

    def wakeup(self) -> None:
        """Make a `poll` in progress return soon. Any thread, signal handlers included."""
        ...

    def close(self) -> None: ...


_Job = tuple[Endpoint, HttpRequest, float, Done]


class ThreadedExchange:
    def __init__(self, transport: Transport, workers: int) -> None:
        self.transport = transport
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._answers: collections.deque[tuple[Done, HttpResponse | TransportError]] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._woken = False
        self._threads = [
            threading.Thread(target=self._work, name=f"shardbeat-call-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        self._started = False

    def start(self, endpoint: Endpoint, request: HttpRequest, deadline: float, done: Done) -> None:
        if not self._started:
            self._started = True
            for thread in self._threads:
                thread.start()
        self._jobs.put((endpoint, request, deadline, done))

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            endpoint, request, deadline, done = job
            result: HttpResponse | TransportError
            try:
                result = self.transport.send(endpoint, request, deadline)
            except TransportError as exc:
                result = exc
            except Exception as exc:  # a transport bug must not leave the call unanswered
                log.exception("internal error in the transport")
                result = TransportError("TransportFailure", type(exc).__name__)
            with self._cond:
                self._answers.append((done, result))
                self._cond.notify()

    def poll(self, timeout: float | None) -> None:
        with self._cond:
            if not self._answers and not self._woken and (timeout is None or timeout > 0):
                self._cond.wait(timeout)
            self._woken = False
            answers = list(self._answers)
            self._answers.clear()
        for done, result in answers:
            done(result)

    def wakeup(self) -> None:
        # A bounded wait for the lock: this may run in a signal handler that interrupted the loop
        # thread while it held it (the shell also never sleeps long: see Runner.MAX_SLEEP).
        self._woken = True
        if self._cond.acquire(timeout=0.05):
            try:
                self._cond.notify()
            finally:
                self._cond.release()

    def close(self) -> None:
        if self._started:
            for _ in self._threads:
                self._jobs.put(None)
        self.transport.close()
