"""The emulator's HTTP front: one port for SLS, CLS and the admin API.

Dispatch: /_admin/... -> admin API; /latest/... -> instance metadata (ECS and CVM, metadata.py);
STS AssumeRoleWithOIDC / AssumeRoleWithWebIdentity -> sts.py; POST / with X-TC-Action -> CLS;
anything else -> SLS.
Standard-library ThreadingHTTPServer (a daemon thread per connection), HTTP/1.1 keep-alive,
TCP_NODELAY on accepted sockets, and every answer written in one send: status line, headers and
body written separately meet Nagle plus delayed ACK and cost ~40 ms per request on loopback.
Every answer carries Date (the server clock, skew included) and Content-Length. A handler
exception never kills the server: it is logged to stderr and answered 500 InternalServerError
(SLS shape) or InternalError (CLS shape).
"""

from __future__ import annotations

import argparse
import copy
import logging
import signal
import socket
import ssl
import struct
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from email.utils import formatdate
from http import HTTPStatus
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from shardbeat.emulator import admin, cls, metadata, sls, sts
from shardbeat.emulator.call import CLS, SLS, Call
from shardbeat.emulator.faults import MISBEHAVIOURS, FaultRule
from shardbeat.emulator.fixtures import FixtureError, Fixtures, load_fixtures
from shardbeat.emulator.misbehaviour import PROCESSED, misbehaving_answer
from shardbeat.emulator.model import EmuRequest, EmuResponse
from shardbeat.emulator.world import World
from shardbeat.http_server import ServedHandler, ThreadedHttpServer

__all__ = ["EmulatorServer", "FixtureError", "load_fixtures", "main"]

LOG = logging.getLogger("shardbeat.emulator")
MAX_BODY = 1 << 20  # no consumer-group request comes near this
IDLE_TIMEOUT = 300.0  # an idle keep-alive connection is closed after this many seconds
DEFAULT_PORT = 8099


@dataclass(frozen=True, slots=True)
class _Service:
    describe: Callable[[EmuRequest], Call]
    handle: Callable[[World, EmuRequest, Call], EmuResponse]
    fault_response: Callable[[FaultRule], tuple[EmuResponse, str]]
    internal_error: Callable[[], EmuResponse]


_SERVICES = {
    SLS: _Service(sls.describe, sls.handle, sls.fault_response, sls.internal_error),
    CLS: _Service(cls.describe, cls.handle, cls.fault_response, cls.internal_error),
    metadata.SERVICE: _Service(
        metadata.describe, metadata.handle, metadata.fault_response, metadata.internal_error
    ),
    sts.SERVICE: _Service(sts.describe, sts.handle, sts.fault_response, sts.internal_error),
}


class _HttpServer(ThreadedHttpServer):
    """A thread per connection, no limit (http_server.ThreadedHttpServer); https when given a context."""

    request_queue_size = 128
    label = "emulator"
    logger = LOG
    idle_timeout = IDLE_TIMEOUT

    def __init__(
        self, address: tuple[str, int], emulator: EmulatorServer, tls: ssl.SSLContext | None = None
    ) -> None:
        self.emulator = emulator
        self.tls = tls
        self.resets: set[socket.socket] = set()  # to be closed with RST instead of FIN
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, object]:
        connection, address = super().get_request()
        if self.tls is not None:  # the handshake happens in the handler's thread, not the accept loop
            connection = self.tls.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        return connection, address

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self.connections_lock:
            reset = request in self.resets
            self.resets.discard(request)
        if reset:
            request.close()  # SO_LINGER 0 is set: close sends RST
        else:
            super().shutdown_request(request)

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError | TimeoutError):  # the client's doing
            LOG.debug("emulator: connection from %s dropped by the client", client_address)
        else:
            LOG.exception("emulator: connection from %s failed", client_address)


class _Handler(ServedHandler):
    protocol_version = "HTTP/1.1"
    server_version = "shardbeat-emulator"
    server: _HttpServer

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
        super().setup()

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_GET

    # -- one request

    def _serve(self) -> None:
        emulator = self.server.emulator
        headers = {name.lower(): value for name, value in self.headers.items()}
        target = urlsplit(self.path)
        path = unquote(target.path)
        service = CLS if self.command == "POST" and path == "/" and "x-tc-action" in headers else SLS
        if metadata.is_metadata(path):
            service = metadata.SERVICE
        needs_length = (
            self.command in ("POST", "PUT") and not admin.is_admin(path) and service != metadata.SERVICE
        )
        body = self._read_body(headers, service, needs_length)
        if body is None:
            return
        req = EmuRequest(
            method=self.command,
            path=path,
            query=dict(parse_qsl(target.query, keep_blank_values=True)),
            raw_query=target.query,
            headers=headers,
            body=body,
        )
        if sts.is_sts(req):
            service = sts.SERVICE
        handlers = _SERVICES[service]
        try:
            if admin.is_admin(path):
                response: EmuResponse | None = admin.handle(emulator.world, req)
            else:
                response = self._dispatch(handlers, req)
        except Exception:
            LOG.exception("emulator: %s %s failed", self.command, path)
            response = admin.internal_error() if admin.is_admin(path) else handlers.internal_error()
        if response is not None:
            self._write(response)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors (bad request line, unsupported method, ...) in the SLS error shape,
        with a request id, in one write like every other answer."""
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        self._write(sls.error_response(code, phrase.replace(" ", "").replace("-", ""), message or phrase))

    def _read_body(self, headers: dict[str, str], service: str, needs_length: bool) -> bytes | None:
        """The request body, or None after answering (or dropping) a request whose body is unusable.

        A POST/PUT without Content-Length is refused (SLS: 411 MissingContentLength) rather than read
        as empty: its body, if any, would otherwise be parsed as the next request on the connection.
        """
        problem: tuple[int, str, str] | None = None
        length = 0
        if "transfer-encoding" in headers:
            problem = (411, "MissingContentLength", "send Content-Length; chunked bodies are not accepted")
        elif needs_length and "content-length" not in headers:
            problem = (
                411,
                "MissingContentLength",
                "Content-Length does not exist in http header when it is necessary.",
            )
        else:
            try:
                length = int(headers.get("content-length", "0"))
                if length < 0:
                    raise ValueError
            except ValueError:
                problem = (400, "InvalidContentLength", "Content-Length is not a non-negative integer")
        if problem is None and length > MAX_BODY:
            problem = (413, "PostBodyTooLarge", f"the body may be at most {MAX_BODY} bytes")
        if problem is not None:
            status, code, message = problem
            if service == CLS:
                cls_code = {413: "RequestSizeLimitExceeded", 411: "MissingParameter"}.get(
                    status, "InvalidParameter"
                )
                response = cls.error_response(cls_code, message, status=status)
            else:
                response = sls.error_response(status, code, message)
            self.close_connection = True  # the body (if any) was not read: the stream is out of step
            self._write(response)
            return None
        body = self.rfile.read(length) if length else b""
        if len(body) < length:  # the client went away mid-body
            self.close_connection = True
            return None
        return body

    def _dispatch(self, handlers: _Service, req: EmuRequest) -> EmuResponse | None:
        """Apply a matching fault rule, else handle the request. None: nothing is to be written."""
        world = self.server.emulator.world
        call = handlers.describe(req)
        with world.lock:
            hit = world.faults.take(call, world.mono_now())
        if hit is None:
            return handlers.handle(world, req, call)
        effect = hit.rule.effect
        call = replace(call, fault=effect)
        if effect in MISBEHAVIOURS:
            normal = handlers.handle(world, req, call) if effect in PROCESSED else None
            response = misbehaving_answer(hit.rule, call.service, normal)
            if normal is None and call.is_heartbeat:
                world.record(call, response.status, error=effect)
            if response.version != "HTTP/1.1" or response.trickle:
                self.close_connection = True  # HTTP/1.0 has no keep-alive; a trickle may be cut off
            return response
        if effect == "status":
            response, code = handlers.fault_response(hit.rule)
            if call.logged:
                world.record(call, response.status, error=code)
            return response
        if effect == "delay":
            self.server.emulator.stopping.wait(hit.rule.seconds or 0.0)
            return handlers.handle(world, req, call)
        if effect == "drop":
            handlers.handle(world, req, call)  # state moves; the client never hears of it
        elif call.logged:
            world.record(call, 0)
        if effect == "hang":
            hit.released.wait(hit.rule.seconds)  # set when faults are cleared or the server stops
        self._close(reset=effect == "reset")
        return None

    def _close(self, *, reset: bool) -> None:
        """End the connection without an answer: FIN, or RST when `reset`."""
        self.close_connection = True
        if reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with self.server.connections_lock:
                self.server.resets.add(self.connection)

    def _write(self, response: EmuResponse) -> None:
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = ""
        date = formatdate(self.server.emulator.world.wall_now(), usegmt=True)
        lines = [
            f"{response.version} {response.status} {reason}",
            f"Date: {date}",
            f"Content-Length: {len(response.body)}",
        ]
        lines += [f"{name}: {value}" for name, value in response.headers]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if response.trickle:
            self._trickle(head + response.body, response.trickle)
        else:
            self.wfile.write(head + response.body)  # one send: see the module docstring
        self.log_request(response.status, len(response.body))

    def _trickle(self, data: bytes, seconds: float) -> None:
        """A byte at a time (the `trickle` fault), until done, the client leaves or the server stops."""
        stopping = self.server.emulator.stopping
        self.close_connection = True
        for i in range(len(data)):
            try:
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
            except OSError:
                return
            if stopping.wait(seconds):
                return


class EmulatorServer:
    """The emulator on a port, serving from a daemon thread once started.

    The socket is bound at construction, so `.port` and `.url` are known before `.start()`.
    """

    def __init__(
        self,
        fixtures: Fixtures | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`tls`: a server-side context to serve https (tests of CA trust and CONNECT proxies)."""
        self.world = World(fixtures if fixtures is not None else load_fixtures(None))
        self.stopping = threading.Event()
        self._httpd = _HttpServer((host, port), self, tls)
        self._stopped = False

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self._httpd.tls is not None else 'http'}://{host}:{self.port}"

    def demo_config(self, provider: str) -> dict[str, Any]:
        """The fixtures' ready group config for "sls" or "cls", pointed at this emulator."""
        demo = self.world.fixtures.demo.get(provider)
        if demo is None:
            raise KeyError(f"the fixtures have no demo config for {provider!r}")
        return {**copy.deepcopy(dict(demo)), "endpoint": self.url}

    def start(self) -> EmulatorServer:
        self._httpd.start_serving(f"shardbeat-emulator:{self.port}", 0.05)
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and every open connection. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self.stopping.set()
        with self.world.lock:
            self.world.faults.release_hangs()
        self._httpd.stop_serving()
        self._httpd.cut_connections()  # wakes the handler threads blocked reading them

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _port(text: str) -> int:
    """--port: 0..65535 (0: any free port), refused up front rather than printed into a config."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a port number, 0-65535") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("must be a port number, 0-65535")
    return port


def _host(text: str) -> str:
    """--host: an address or name; empty would bind every interface (INADDR_ANY), a space none."""
    if not text.strip():
        raise argparse.ArgumentTypeError("give an address (0.0.0.0 listens on every interface)")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise argparse.ArgumentTypeError("must be an address or host name, without spaces")
    return text


def main(argv: list[str] | None = None) -> int:
    """`shardbeat emulator [--host H] [--port N] [--fixtures FILE] [--log-level L]`."""
    parser = argparse.ArgumentParser(
        prog="shardbeat emulator",
        description="Run a local emulator of SLS and CLS consumer groups (one port, both services).",
    )
    parser.add_argument(
        "--host", type=_host, default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any)"
    )
    parser.add_argument(
        "--fixtures", metavar="FILE", help="fixtures JSON (default: the packaged demo fixtures)"
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=("debug", "info", "warning", "error"),
        help="stderr log level",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print a shardbeat config for this emulator's demo groups (--host/--port) and exit",
    )
    parser.add_argument("--quiet", action="store_true", help="on start, print only the listening line")
    args = parser.parse_args(argv)
    if args.print_config:
        from shardbeat.emulator.describe import print_config

        return print_config(args.fixtures, args.host, args.port)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(args.log_level.upper())
    LOG.propagate = False
    try:
        try:
            fixtures = load_fixtures(args.fixtures)
        except FixtureError as exc:
            print(f"shardbeat emulator: bad fixtures: {exc}", file=sys.stderr)
            return 2
        try:
            server = EmulatorServer(fixtures, args.host, args.port)
        except OSError as exc:
            print(
                f"shardbeat emulator: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
                file=sys.stderr,
            )
            return 1
        return _serve_until_signalled(server, not args.quiet)
    finally:
        LOG.removeHandler(handler)


def _serve_until_signalled(server: EmulatorServer, describe: bool = True) -> int:
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        server.start()
        print(f"shardbeat emulator listening on {server.url}", file=sys.stderr, flush=True)
        if describe:
            from shardbeat.emulator.describe import banner

            print(banner(server.world.fixtures, server.url), file=sys.stderr, end="", flush=True)
        while not done.wait(0.5):
            pass
    finally:
        server.stop()
        for signum, old in previous.items():
            signal.signal(signum, old)
    return 0


if __name__ == "__main__":
    sys.exit(main())
