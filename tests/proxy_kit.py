"""A tiny HTTP proxy on loopback for tests: absolute-form forwarding and CONNECT tunnels, optional Basic
auth, and a log of every request head it received. It forwards to loopback addresses only."""

from __future__ import annotations

import base64
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:  # imported where a CA is made: collection imports this in every xdist worker
    import trustme


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]  # names lower-case


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_head(sock: socket.socket) -> tuple[bytes, bytes] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
        if len(data) > 1 << 20:
            return None
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _parse(head: bytes) -> tuple[str, str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return method, target, headers


def _read_exact(sock: socket.socket, rest: bytes, length: int) -> bytes:
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return rest


@dataclass
class LoopbackProxy:
    credentials: tuple[str, str] | None = None
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self, with_credentials: bool = True) -> str:
        if self.credentials and with_credentials:
            return f"http://{self.credentials[0]}:{self.credentials[1]}@127.0.0.1:{self.port}"
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _authorized(self, headers: dict[str, str]) -> bool:
        if self.credentials is None:
            return True
        expected = base64.b64encode(":".join(self.credentials).encode()).decode()
        return headers.get("proxy-authorization") == f"Basic {expected}"

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(10)
        upstream: socket.socket | None = None
        try:
            while True:
                got = _read_head(client)
                if got is None:
                    return
                head, rest = got
                method, target, pairs = _parse(head)
                headers = {n.lower(): v for n, v in pairs}
                with self._lock:
                    self.seen.append(Seen(method, target, headers))
                if not self._authorized(headers):
                    client.sendall(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
                    )
                    continue
                if method == "CONNECT":
                    host, _, port = target.rpartition(":")
                    host = host.strip("[]")
                    if not _loopback(host):
                        client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                        return
                    upstream = socket.create_connection((host, int(port)), timeout=10)
                    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    self._pipe(client, upstream, rest)
                    return
                parts = urlsplit(target)
                if parts.scheme != "http" or not parts.hostname or not _loopback(parts.hostname):
                    client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    return
                if upstream is None:
                    upstream = socket.create_connection((parts.hostname, parts.port or 80), timeout=10)
                length = int(headers.get("content-length", "0"))
                body = _read_exact(client, rest, length)
                origin = parts.path + (f"?{parts.query}" if parts.query else "")
                kept = [(n, v) for n, v in pairs if n.lower() != "proxy-authorization"]
                out = f"{method} {origin} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in kept) + "\r\n"
                upstream.sendall(out.encode("latin-1") + body)
                answer = _read_head(upstream)
                if answer is None:
                    return
                ahead, arest = answer
                _, _, apairs = _parse(ahead + b"\r\n")
                alength = int({n.lower(): v for n, v in apairs}.get("content-length", "0"))
                client.sendall(ahead + b"\r\n\r\n" + _read_exact(upstream, arest, alength))
        except OSError:
            return
        finally:
            client.close()
            if upstream is not None:
                upstream.close()

    def _pipe(self, client: socket.socket, upstream: socket.socket, early: bytes) -> None:
        if early:
            upstream.sendall(early)

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while chunk := src.recv(65536):
                    dst.sendall(chunk)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        other = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        other.start()
        pump(client, upstream)
        other.join(10)


@contextmanager
def loopback_proxy(credentials: tuple[str, str] | None = None) -> Iterator[LoopbackProxy]:
    proxy = LoopbackProxy(credentials)
    try:
        yield proxy
    finally:
        proxy.close()


@dataclass
class PrivateCa:
    """A CA made for one test, a certificate for 127.0.0.1/localhost, and the CA's PEM bundle on disk."""

    ca: trustme.CA
    ca_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        return context


def private_ca(directory: Path) -> PrivateCa:
    import trustme

    ca = trustme.CA()
    ca_file = directory / "private-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return PrivateCa(ca, ca_file)
