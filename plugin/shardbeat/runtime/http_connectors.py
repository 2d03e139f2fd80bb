"""Connection set-up for the event loop (runtime/http_loop.py), on a few threads of its own.

Opening a connection (DNS, TCP, a proxy's CONNECT, the TLS handshake) is rare with keep-alive, so it
is done the simple, blocking way, with runtime/connect.py's deadline-bound open_socket, on daemon
threads started as needed. A finished job goes back through a thread-safe deque and the loop's
`wakeup()`; the loop takes results with `take()`. open_socket gives up at the call's deadline at
every step (the resolver is abandonable), so a thread is never held past a deadline.

A stalled endpoint (a hung DNS name, a black-holed TCP handshake, a proxy that never answers
CONNECT, a TLS server that never finishes its handshake) holds each of its threads until its
call's deadline. So that it can never make another endpoint's set-up wait, jobs are queued per
endpoint (`key`) and scheduled fairly, not first come first served:
- `threads` (8) threads are shared: an endpoint gets at most its fair share of them (`threads`
  divided by the endpoints with set-ups running or waiting, at least one), the endpoint with the
  fewest running first, then in order of arrival;
- beyond those, an endpoint with no set-up running always gets a thread of its own, up to
  `max_threads` (32) in all. Such extra threads end when they find no job they may take.
Both bounds hold whatever the endpoints do; only `max_threads` endpoints stalled at once (each
holding a thread) could make a further endpoint's first set-up wait for a thread.
"""

from __future__ import annotations

import collections
import socket
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Token = TypeVar("Token")
Opener = Callable[[], socket.socket]
_Job = tuple[Token, Opener, Hashable]


class _Worker(Generic[Token]):
    __slots__ = ("job", "ready")

    def __init__(self, job: _Job[Token] | None) -> None:
        self.job = job
        self.ready = threading.Event()


class Connectors(Generic[Token]):
    def __init__(self, wakeup: Callable[[], None], threads: int = 8, max_threads: int = 32) -> None:
        self._wakeup = wakeup
        self._shared = max(1, threads)
        self._max = max(self._shared, max_threads)
        self._results: collections.deque[tuple[Token, socket.socket | BaseException]] = collections.deque()
        self._lock = threading.Lock()
        # per endpoint: jobs waiting (each with its arrival number); set-ups running
        self._waiting: dict[Hashable, collections.deque[tuple[int, _Job[Token]]]] = {}
        self._running: dict[Hashable, int] = {}
        self._arrivals = 0
        self._busy = 0  # jobs running, all endpoints
        self._threads = 0
        self._idle: list[_Worker[Token]] = []
        self._closed = False

    def submit(self, token: Token, opener: Opener, key: Hashable = None) -> None:
        """Run `opener` on a connector thread; its socket (or exception) comes back with `token`.
        `key` names the endpoint (the set-ups that one stall would hold up together)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("connectors closed")
            self._arrivals += 1
            self._waiting.setdefault(key, collections.deque()).append((self._arrivals, (token, opener, key)))
            starts = self._dispatch()
        self._start(starts)

    def take(self) -> list[tuple[Token, socket.socket | BaseException]]:
        """The jobs finished since the last call (loop thread)."""
        results = self._results
        taken = []
        while results:
            taken.append(results.popleft())
        return taken

    @property
    def threads(self) -> int:
        return self._threads

    def close(self) -> None:
        """Let the threads go once their current job is done; a socket opened after this is closed."""
        with self._lock:
            self._closed = True
            self._waiting.clear()
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.ready.set()  # with no job: the thread ends
        for _, result in self.take():
            if isinstance(result, socket.socket):
                result.close()

    # -- scheduling (under the lock) -----------------------------------------------------------------

    def _pick(self) -> _Job[Token] | None:
        """The next job a free thread may run, counted as running; None when none may start now."""
        if self._busy >= self._max or not self._waiting:
            return None
        running = self._running
        share = max(1, self._shared // (len(self._waiting.keys() | running.keys())))
        best: tuple[int, int] | None = None
        chosen: Hashable = None
        for key, queued in self._waiting.items():
            held = running.get(key, 0)
            if held and (self._busy >= self._shared or held >= share):
                continue  # past its share, or only a thread of its own would do and it has one
            rank = (held, queued[0][0])  # the fewest running, then the oldest job
            if best is None or rank < best:
                best, chosen = rank, key
        if best is None:
            return None
        key = chosen
        queued = self._waiting[key]
        _, job = queued.popleft()
        if not queued:
            del self._waiting[key]
        running[key] = running.get(key, 0) + 1
        self._busy += 1
        return job

    def _dispatch(self) -> list[_Worker[Token]]:
        """Hand every job that may start to an idle thread; the workers that need a new thread."""
        starts: list[_Worker[Token]] = []
        while (job := self._pick()) is not None:
            if self._idle:
                worker = self._idle.pop()
                worker.job = job
                worker.ready.set()
            else:
                self._threads += 1
                starts.append(_Worker(job))
        return starts

    # -- the threads ------------------------------------------------------------------------------------

    def _start(self, workers: list[_Worker[Token]]) -> None:
        for worker in workers:
            try:
                threading.Thread(
                    target=self._work, args=(worker,), name="shardbeat-connect", daemon=True
                ).start()
            except RuntimeError as exc:  # no thread to be had: the job fails now, never silently waits
                assert worker.job is not None
                token, _, key = worker.job
                with self._lock:
                    self._threads -= 1
                    self._busy -= 1
                    held = self._running.pop(key) - 1
                    if held:
                        self._running[key] = held
                self._results.append((token, OSError(f"no thread for the connection set-up ({exc})")))
                self._wakeup()

    def _work(self, worker: _Worker[Token]) -> None:
        job = worker.job
        while job is not None:  # None: closed, or an extra thread with nothing it may take
            token, opener, key = job
            result: socket.socket | BaseException
            try:
                result = opener()
            except BaseException as exc:
                result = exc
            with self._lock:
                held = self._running.pop(key) - 1
                if held:
                    self._running[key] = held
                self._busy -= 1
                closed = self._closed
                job = None if closed else self._pick()
                starts = [] if closed else self._dispatch()
                idle = job is None and not closed and self._threads <= self._shared
                if idle:  # one of the shared threads: kept for the next job
                    worker.job = None
                    worker.ready.clear()
                    self._idle.append(worker)
                elif job is None:
                    self._threads -= 1
            self._start(starts)
            if closed:
                if isinstance(result, socket.socket):
                    result.close()
            else:
                self._results.append((token, result))
                self._wakeup()
            if idle:
                worker.ready.wait()
                job = worker.job
                if job is None:  # closed while idle
                    with self._lock:
                        self._threads -= 1
