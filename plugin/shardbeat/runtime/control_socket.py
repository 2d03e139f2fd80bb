"""The control socket: a Unix stream socket (mode 0600) taking control messages from several clients.

For hosts that give the plugin no usable stdin (Vector: /dev/null; Fluent Bit: its own stdin).
Each connection is a stream of its own (JSON lines or MessagePack, detected per connection, with
its own decoder). Every message is answered on its connection, in the client's encoding (a
`status` reply, an ack naming what an op did, or the problem with the message); the effects still
show as records on stdout as well. A client may also write and close at once (`socat`, `nc -U`):
replies still pending then go out before the connection is closed, and a client that never reads
them is disconnected (control_outbox.py).

Creating the socket:
- an existing socket file nobody listens on (left by a killed process) is replaced; one with a live
  listener is refused with a ControlSocketError, and so is a path that is not a socket;
- the mode is set to 0600 between bind() and listen(): no client can connect before listen(), so
  no client ever sees looser permissions (and the process umask is left alone);
- close() removes the file, if it is still the one this server created.
One daemon thread serves the listener and every client through a selector.

Fair to every client: a connection that sends nothing for `idle_timeout` seconds (default 300) is
closed, and a newcomer beyond `max_clients` is admitted by closing the longest-silent connection,
so idle or stuck clients can never lock everyone else out (a client mid-message is rarely the most
silent one); each turn reads at most RECV_SIZE of each ready client, so a busy one cannot either.
Whatever an evicted client left unterminated is reported like any end of stream.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import socket
import stat
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shardbeat.runtime.control_outbox import Outbox

if TYPE_CHECKING:
    from shardbeat.runtime.control_channels import Feed

log = logging.getLogger("shardbeat.control")

MAX_PATH_BYTES = 107  # sun_path is 108 bytes on Linux, with the terminating NUL
MAX_CLIENTS = 32
BACKLOG = 16
# One read per ready client per turn: small, so a client looping on cheap ops (a few hundred fit in
# a read) cannot keep the others waiting; a 64 KiB message still arrives in a few turns.
RECV_SIZE = 4 * 1024
PROBE_SECONDS = 1.0
IDLE_TIMEOUT = 300.0  # hygiene; the eviction below is what keeps newcomers served
EVICTION_LOG_EVERY = 10.0  # seconds between warnings about evicted clients (a connect flood is quiet)
_WAKE = "wake"


class ControlSocketError(OSError):
    """The socket cannot be served; the message says why and names the path."""


class ControlSocketServer:
    def __init__(
        self,
        path: str,
        new_feed: Callable[[], Feed],
        max_clients: int = MAX_CLIENTS,
        idle_timeout: float = IDLE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._new_feed = new_feed
        self._max_clients = max_clients
        self._idle_timeout = idle_timeout
        self._clock = clock
        self._last_heard: dict[socket.socket, float] = {}  # insertion order = least recent first
        self._evicted = 0  # since the last warning about it
        self._evicted_logged = float("-inf")
        self._listener: socket.socket | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file we bound
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = -1, -1
        self._clients: dict[socket.socket, Feed] = {}
        self._outboxes: dict[socket.socket, Outbox] = {}
        self._ending: set[socket.socket] = set()  # EOF seen; open until pending replies are out
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def clients(self) -> int:
        return len(self._clients)

    def start(self) -> ControlSocketServer:
        self._listener = bind_control_socket(self.path)
        st = os.stat(self.path)
        self._identity = (st.st_dev, st.st_ino)
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self._thread = threading.Thread(target=self._serve, name="shardbeat-control-socket", daemon=True)
        self._thread.start()
        log.info("control socket listening on %s", self.path)
        return self

    def close(self, timeout: float = 1.0) -> None:
        """Idempotent: stop serving, disconnect clients, remove the socket file if it is ours."""
        with self._lock:
            if self._closed or self._thread is None:
                self._closed = True
                return
            self._closed = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout)
        self._remove_file()

    def _remove_file(self) -> None:
        try:
            st = os.lstat(self.path)
        except OSError:
            return
        if (st.st_dev, st.st_ino) == self._identity:
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    # -- the serving thread

    def _serve(self) -> None:
        try:
            while True:
                for key, mask in self._selector.select(self._until_next_idle()):
                    if key.data == _WAKE:
                        return
                    if key.fileobj is self._listener:
                        self._accept()
                        continue
                    assert isinstance(key.fileobj, socket.socket)
                    if mask & selectors.EVENT_WRITE:
                        self._send_pending(key.fileobj)
                    if mask & selectors.EVENT_READ and key.fileobj in self._clients:
                        self._receive(key.fileobj)
                self._close_idle()
        except Exception:  # a bug here must not go unnoticed, nor take the process down
            log.exception("internal error in the control socket server; it stops serving")
        finally:
            self._teardown()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as exc:  # e.g. EMFILE: keep serving the clients already connected
            log.warning("control socket: cannot accept a client: %s", exc.strerror or exc)
            return
        if len(self._clients) >= self._max_clients:
            self._evict_most_silent()
        conn.setblocking(False)
        feed = self._new_feed()
        outbox = Outbox(conn, lambda: feed.decoder.mode, lambda pending: self._watch(conn, pending))
        feed.reply = outbox.reply
        self._clients[conn] = feed
        self._outboxes[conn] = outbox
        self._last_heard[conn] = self._clock()
        self._selector.register(conn, selectors.EVENT_READ)

    # -- fairness: idle timeout and eviction

    def _until_next_idle(self) -> float | None:
        if not self._last_heard:
            return None
        oldest = next(iter(self._last_heard.values()))
        return max(0.0, oldest + self._idle_timeout - self._clock())

    def _close_idle(self) -> None:
        now = self._clock()
        for conn, heard in list(self._last_heard.items()):
            if now - heard < self._idle_timeout:
                break  # ordered by last activity: the rest were heard from later
            log.debug("control socket: closing a client silent for %.0fs", now - heard)
            self._end(conn)

    def _evict_most_silent(self) -> None:
        conn, heard = next(iter(self._last_heard.items()))
        self._evicted += 1
        now = self._clock()
        if now - self._evicted_logged >= EVICTION_LOG_EVERY:
            log.warning(
                "control socket: %d clients connected (the limit); closed the one silent longest "
                "(%.1fs) to admit a new one (%d such in all since the last report)",
                len(self._clients),
                now - heard,
                self._evicted,
            )
            self._evicted, self._evicted_logged = 0, now
        self._end(conn)

    def _end(self, conn: socket.socket) -> None:
        feed = self._clients.get(conn)
        if feed is not None:
            feed.end()
        self._drop(conn)

    # -- replies

    def _watch(self, conn: socket.socket, writable: bool) -> None:
        """Listen for writability only while replies wait; an ending connection is not read."""
        if conn not in self._clients:
            return
        events = 0 if conn in self._ending else selectors.EVENT_READ
        if writable:
            events |= selectors.EVENT_WRITE
        with contextlib.suppress(KeyError, ValueError):
            self._selector.modify(conn, events)

    def _send_pending(self, conn: socket.socket) -> None:
        outbox = self._outboxes.get(conn)
        if outbox is None:
            return
        outbox.flush()
        if outbox.failed or (conn in self._ending and not outbox.pending):
            self._drop(conn)
        elif not outbox.pending:
            self._watch(conn, False)

    def _receive(self, conn: socket.socket) -> None:
        feed = self._clients[conn]
        try:
            chunk = conn.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.debug("control socket: client gone: %s", exc.strerror or exc)
            chunk = b""
        outbox = self._outboxes[conn]
        if chunk:
            self._last_heard.pop(conn, None)  # re-inserted last: the order stays "least recent first"
            self._last_heard[conn] = self._clock()
            feed.data(chunk)
            if outbox.failed:
                self._drop(conn)
            return
        feed.end()
        if outbox.pending and not outbox.failed:
            self._ending.add(conn)  # the client half-closed: deliver its replies, then close
            self._watch(conn, True)
            return
        self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        self._clients.pop(conn, None)
        self._last_heard.pop(conn, None)
        self._outboxes.pop(conn, None)
        self._ending.discard(conn)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn)
        conn.close()

    def _teardown(self) -> None:
        for conn, feed in list(self._clients.items()):
            feed.closed = True
            self._drop(conn)
        self._selector.close()
        if self._listener is not None:
            self._listener.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


def bind_control_socket(path: str) -> socket.socket:
    """A bound, listening socket at `path`, mode 0600, replacing a stale socket file."""
    size = len(os.fsencode(path))
    if size > MAX_PATH_BYTES:
        raise ControlSocketError(
            f"control socket path {path} is {size} bytes long; the limit is {MAX_PATH_BYTES}"
        )
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.bind(path)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ControlSocketError(f"control socket {path} was just taken by another process") from None
            raise ControlSocketError(f"cannot create control socket {path}: {exc.strerror or exc}") from None
        os.chmod(path, 0o600)  # before listen(): until then every connect() is refused
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _clear_stale(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ControlSocketError(f"cannot use control socket path {path}: {exc.strerror or exc}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise ControlSocketError(f"control socket path {path} exists and is not a socket; not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_SECONDS)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        pass  # nobody listens: left behind by a process that died
    except FileNotFoundError:
        return
    except (TimeoutError, BlockingIOError):  # a listener with a full backlog is still a listener
        raise ControlSocketError(f"another process is listening on control socket {path}") from None
    except OSError as exc:
        raise ControlSocketError(f"cannot check control socket {path}: {exc.strerror or exc}") from None
    else:
        raise ControlSocketError(f"another process is listening on control socket {path}")
    finally:
        probe.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ControlSocketError(f"cannot remove old control socket {path}: {exc.strerror or exc}") from None
    log.info("removed a stale control socket left at %s", path)
