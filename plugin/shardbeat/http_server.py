"""What both of our standard-library HTTP servers (the emulator, /metrics) need from socketserver."""

from __future__ import annotations

import logging
import socket
import socketserver
import sys

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
