"""What both of our standard-library HTTP servers (the emulator, /metrics) share: the socketserver
fixes (PromptServerMixin), and the threaded server with its handler base (ThreadedHttpServer,
ServedHandler): connection limits, idle and whole-connection timeouts, a serving thread, a stop that
cuts open connections, access lines at DEBUG."""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shardbeat.core.redaction import describe_exception

log = logging.getLogger("shardbeat.http")


class PromptServerMixin(socketserver.TCPServer):
    """Mix in before HTTPServer / ThreadingHTTPServer.

    - server_bind skips HTTPServer's getfqdn(), a reverse DNS lookup that can stall start-up for seconds;
    - accepted sockets get TCP_NODELAY: small answers written in more than one send would otherwise
      wait on Nagle plus the client's delayed ACK (~40 ms on loopback);
    - handle_error goes through logging (socketserver's prints a raw multi-line traceback to stderr,
      which breaks `--log-format json`); a client that went away is not even a warning.
    """

    server_name: str
    server_port: int

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def handle_error(self, request: object, client_address: object) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            log.debug("connection from %s ended early: %s", client_address, describe_exception(error))
        elif error is not None:
            log.warning("connection from %s failed: %s", client_address, describe_exception(error))

    def get_request(self) -> tuple[socket.socket, object]:
        connection, address = self.socket.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address


class ThreadedHttpServer(PromptServerMixin, ThreadingHTTPServer):
    """A ThreadingHTTPServer as both of ours run it: one daemon thread per connection (an idle or slow
    client holds only its own), optionally at most `max_connections` at once (more are turned away at
    once, so a flood cannot grow threads without bound), every open connection known (so a stop can
    cut them), served from one daemon thread.

    Handlers derive from ServedHandler, which registers their connection and applies the server's
    idle timeout and whole-connection deadline.
    """

    daemon_threads = True
    block_on_close = False  # never wait for handler threads: stop() cuts connections itself
    label = "http"  # names the server in its log lines
    logger = log  # where they go
    idle_timeout: float | None = None  # seconds a client may stay silent mid-request
    connection_deadline: float | None = None  # a whole connection, however it trickles

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        max_connections: int | None = None,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.max_connections = max_connections
        self.slots = threading.BoundedSemaphore(max_connections) if max_connections else None
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        self.serving: threading.Thread | None = None
        self.poll_interval = 0.5
        super().__init__(address, handler)

    # -- connection slots

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        if self.slots is not None and not self.slots.acquire(blocking=False):
            self.logger.debug(
                "%s: %d connections already open; turning %s away",
                self.label,
                self.max_connections,
                client_address,
            )
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            if self.slots is not None:
                self.slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)
        finally:
            if self.slots is not None:
                self.slots.release()

    # -- open connections

    def opened(self, connection: socket.socket) -> None:
        with self.connections_lock:
            self.connections.add(connection)

    def closed(self, connection: socket.socket) -> None:
        with self.connections_lock:
            self.connections.discard(connection)

    def cut_connections(self) -> None:
        """Shut every open connection down (wakes the handler threads blocked reading them)."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    # -- the serving thread

    def start_serving(self, name: str, poll_interval: float) -> None:
        """serve_forever on a daemon thread; `poll_interval`: its select() timeout (a long one costs
        no idle wake-ups: stop_serving wakes the loop with a connection of its own)."""
        if self.serving is None:
            self.poll_interval = poll_interval
            self.serving = threading.Thread(
                target=self.serve_forever, kwargs={"poll_interval": poll_interval}, name=name, daemon=True
            )
            self.serving.start()

    def stop_serving(self) -> None:
        """Stop the serving loop (if it was started) and close the listening socket."""
        if self.serving is not None:
            if self.poll_interval <= _WAKE_ABOVE:
                self.shutdown()
            else:
                self._shutdown_waking()
            self.serving.join(timeout=5)
        self.server_close()

    def _shutdown_waking(self) -> None:
        # shutdown() waits for serve_forever's next poll: throwaway connections wake it until it has
        # seen the request (the first may land before shutdown() has set its flag).
        waiter = threading.Thread(target=self.shutdown, daemon=True)
        waiter.start()
        deadline = time.monotonic() + 5
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.server_name, self.server_name)
        while waiter.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection((host, self.server_port), timeout=0.5).close()
            waiter.join(timeout=0.05)


_WAKE_ABOVE = 1.0  # poll intervals up to this end on their own soon enough


class ServedHandler(BaseHTTPRequestHandler):
    """A request handler of a ThreadedHttpServer: its connection registered while open, reads bounded
    by the server's idle_timeout, the whole connection by its connection_deadline, and the standard
    library's access log turned into DEBUG lines of `log`."""

    sys_version = ""
    server: ThreadedHttpServer
    _cutoff: threading.Timer | None = None

    def setup(self) -> None:
        super().setup()
        if self.server.idle_timeout is not None:
            self.connection.settimeout(self.server.idle_timeout)  # per read
        self.server.opened(self.connection)
        deadline = self.server.connection_deadline
        if deadline is not None:
            # The timeout above is per read: a client trickling a byte at a time would never trip it.
            self._cutoff = threading.Timer(deadline, self._cut)
            self._cutoff.daemon = True
            self._cutoff.start()

    def _cut(self) -> None:
        self.server.logger.debug(
            "%s: %s took over %gs; closing it",
            self.server.label,
            self.client_address,
            self.server.connection_deadline,
        )
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        if self._cutoff is not None:
            self._cutoff.cancel()
        try:
            super().finish()
        finally:
            self.server.closed(self.connection)

    def log_message(self, format: str, *args: object) -> None:
        if self.server.logger.isEnabledFor(logging.DEBUG):
            self.server.logger.debug("%s %s", self.address_string(), format % args)
