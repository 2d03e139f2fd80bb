"""What both of our standard-library HTTP servers (the emulator, /metrics) need from socketserver."""

from __future__ import annotations

import socket
import socketserver


class PromptServerMixin(socketserver.TCPServer):
    """Mix in before HTTPServer / ThreadingHTTPServer.

    - server_bind skips HTTPServer's getfqdn(), a reverse DNS lookup that can stall start-up for seconds;
    - accepted sockets get TCP_NODELAY: small answers written in more than one send would otherwise
      wait on Nagle plus the client's delayed ACK (~40 ms on loopback).
    """

    server_name: str
    server_port: int

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def get_request(self) -> tuple[socket.socket, object]:
        connection, address = self.socket.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address
