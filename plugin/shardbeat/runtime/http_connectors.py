"""Connection set-up for the event loop (runtime/http_loop.py), on a few threads of its own.

Opening a connection (DNS, TCP, a proxy's CONNECT, the TLS handshake) is rare with keep-alive, so it
is done the simple, blocking way, with runtime/connect.py's deadline-bound open_socket, on at most
`threads` daemon threads started as needed. A finished job goes back through a thread-safe deque
and the loop's `wakeup()`; the loop takes results with `take()`. open_socket gives up at the call's
deadline at every step (the resolver is abandonable), so a thread is never held past a deadline.
"""

from __future__ import annotations

import collections
import queue
import socket
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Token = TypeVar("Token")
Opener = Callable[[], socket.socket]


class Connectors(Generic[Token]):
    def __init__(self, wakeup: Callable[[], None], threads: int = 8) -> None:
        self._wakeup = wakeup
        self._max = max(1, threads)
        self._jobs: queue.SimpleQueue[tuple[Token, Opener] | None] = queue.SimpleQueue()
        self._results: collections.deque[tuple[Token, socket.socket | BaseException]] = collections.deque()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0  # threads waiting for a job
        self._queued = 0  # jobs no thread has taken yet
        self._closed = False

    def submit(self, token: Token, opener: Opener) -> None:
        """Run `opener` on a connector thread; its socket (or exception) comes back with `token`."""
        with self._lock:
            if self._closed:
                raise RuntimeError("connectors closed")
            self._queued += 1
            start = self._queued > self._idle and self._threads < self._max
            if start:
                self._threads += 1
        self._jobs.put((token, opener))
        if start:
            threading.Thread(target=self._work, name="shardbeat-connect", daemon=True).start()

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
            count = self._threads
        for _ in range(count):
            self._jobs.put(None)
        for _, result in self.take():
            if isinstance(result, socket.socket):
                result.close()

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
                if job is not None:
                    self._queued -= 1
            if job is None:
                return
            token, opener = job
            result: socket.socket | BaseException
            try:
                result = opener()
            except BaseException as exc:
                result = exc
            with self._lock:
                closed = self._closed
            if closed:
                if isinstance(result, socket.socket):
                    result.close()
                continue
            self._results.append((token, result))
            self._wakeup()
