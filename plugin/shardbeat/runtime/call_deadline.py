"""A whole-call deadline for requests: cut the call's sockets when it passes.

urllib3 re-arms its read timeout on every read, so a peer that trickles the status line, the headers
or the body a byte at a time can stretch one call without bound. A CallDeadline is entered around a
call on the calling thread; the connections that call uses register with it (runtime/http_session.py's
connection classes), and when the deadline passes a timer shuts their sockets down, which ends any
blocked read at once. `expired` then tells the caller that whatever came back is not an answer.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_current = threading.local()


class CallDeadline:
    def __init__(self, seconds: float) -> None:
        self._lock = threading.Lock()
        self._conns: list[Any] = []
        self.expired = False
        self._timer = threading.Timer(max(0.0, seconds), self._expire)
        self._timer.daemon = True
        self._outer: CallDeadline | None = None

    def __enter__(self) -> CallDeadline:
        self._outer = getattr(_current, "deadline", None)
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._timer.cancel()
        _current.deadline = self._outer

    def watch(self, conn: Any) -> None:
        with self._lock:
            if not any(c is conn for c in self._conns):
                self._conns.append(conn)
            expired = self.expired
        if expired:
            _cut(conn)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            conns = list(self._conns)
        for conn in conns:
            _cut(conn)


def watch(conn: Any) -> None:
    """Called by a connection about to connect or send: the current call's deadline covers it."""
    deadline: CallDeadline | None = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.watch(conn)


def _cut(conn: Any) -> None:
    sock = getattr(conn, "sock", None)
    if sock is None:
        return
    # socket.socket's own shutdown, not SSLSocket's (which drops its SSL object under a reader).
    with contextlib.suppress(OSError, ValueError, TypeError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Watched:
    """Mixin for a urllib3 connection class: connect and request register with the calling thread's
    CallDeadline (a reused connection only sends), so a trickling peer is cut off at the deadline."""

    def connect(self) -> None:
        watch(self)
        super().connect()  # type: ignore[misc]

    def request(self, *args: Any, **kwargs: Any) -> None:
        watch(self)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHttp(Watched, HTTPConnection):
    pass


class _WatchedHttps(Watched, HTTPSConnection):
    pass


class _WatchedHttpPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHttp


class _WatchedHttpsPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHttps


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHttpPool, "https": _WatchedHttpsPool}


def direct_session() -> requests.Session:
    """A plain requests session (no proxy from the environment) whose calls a CallDeadline can cut."""
    session = requests.Session()
    session.trust_env = False
    adapter = _WatchedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


__all__ = ["CallDeadline", "direct_session", "watch"]
