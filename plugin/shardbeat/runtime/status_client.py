"""`shardbeat status`: ask a running instance over its control socket and show the answer.

One connection per poll: send `{"op": "status", "records": false}` (so asking writes nothing
to the record stream), read the one-line reply. Every failure names the socket path and what
to do about it; none of them is a traceback. The path may be anything (a dead instance, another
program's socket, a peer trickling bytes): `timeout` bounds the whole exchange, not each read, and
an answer is shown only if it follows schemas/reply.schema.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import jsonschema

from shardbeat.schemas import load_schema
from shardbeat.views import status_table

REQUEST = b'{"op": "status", "records": false}\n'
MAX_REPLY = 64 << 20
CLEAR = "\x1b[H\x1b[2J"


class StatusError(Exception):
    """The instance could not be asked; the message says why and what to do."""


def ask(path: str, timeout: float) -> list[dict[str, Any]]:
    """The status reply's groups from the instance serving `path`. Raises StatusError."""
    groups = request(path, REQUEST, timeout).get("groups")
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise StatusError(f"{path} answered a status reply without groups")
    return groups


def request(path: str, message: bytes, timeout: float) -> dict[str, Any]:
    """Send one control message (a JSON line) and return its reply if it is `ok`. Raises StatusError."""
    with contextlib.suppress(OSError):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise StatusError(f"{path} is not a socket: give the path of shardbeat's control.socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        try:
            _connect(sock, path, deadline)
        except FileNotFoundError:
            raise StatusError(
                f"no control socket at {path}: is shardbeat running with control.socket "
                "(or --control-socket) set to this path?"
            ) from None
        except ConnectionRefusedError:
            raise StatusError(
                f"nothing listens on {path}: the file is left from an instance that is no longer running"
            ) from None
        except PermissionError:
            raise StatusError(
                f"permission denied on {path}: the socket is mode 0600; "
                "run status as the user that runs shardbeat"
            ) from None
        except TimeoutError:
            raise StatusError(f"{path} did not accept a connection within {timeout:g}s") from None
        except OSError as exc:
            raise StatusError(f"cannot connect to {path}: {exc.strerror or exc}") from None
        try:
            sock.sendall(message)
            data = _read_line(sock, deadline)
        except TimeoutError:
            raise StatusError(f"{path} accepted but sent no answer within {timeout:g}s") from None
        except OSError as exc:
            raise StatusError(f"{path} closed the connection: {exc.strerror or exc}") from None
    finally:
        sock.close()
    return _reply(path, data)


def _connect(sock: socket.socket, path: str, deadline: float) -> None:
    """connect(), waiting while the listener's backlog is full: with a timeout set, a Unix socket
    says EAGAIN at once instead of waiting (a burst of other clients must not fail us)."""
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() + 0.05 > deadline:
                raise TimeoutError from None
            time.sleep(0.05)


def _read_line(sock: socket.socket, deadline: float) -> bytes:
    data = bytearray()
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:  # a peer sending a byte now and then must not hold us past the timeout
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REPLY:
            break
    return bytes(data.split(b"\n", 1)[0])


def _reply(path: str, data: bytes) -> dict[str, Any]:
    if not data:
        raise StatusError(
            f"{path} closed the connection without an answer: is it a shardbeat that answers "
            "control messages (version 0.1 with status replies or later)?"
        )
    try:
        reply = json.loads(data)
    except (ValueError, RecursionError):
        raise StatusError(f"{path} answered something that is not JSON") from None
    problem = jsonschema.exceptions.best_match(_reply_validator().iter_errors(reply))
    if not isinstance(reply, dict) or problem is not None:
        where = "/".join(str(p) for p in problem.absolute_path) if problem is not None else ""
        raise StatusError(
            f"{path} answered something that is not a shardbeat reply"
            + (f" ({where or 'the reply'} does not follow reply.schema.json)" if problem is not None else "")
            + ": is this shardbeat's control socket?"
        )
    if reply.get("ok") is not True:
        error = reply.get("error") or {}
        raise StatusError(f"{path} refused the request: {error.get('code')}: {error.get('message')}")
    return reply


_VALIDATOR: jsonschema.protocols.Validator | None = None


def _reply_validator() -> jsonschema.protocols.Validator:
    global _VALIDATOR
    if _VALIDATOR is None:
        _VALIDATOR = jsonschema.Draft202012Validator(load_schema("reply"))
    return _VALIDATOR


def show(groups: list[dict[str, Any]], as_json: bool, path: str = "the instance") -> str:
    if as_json:
        return json.dumps({"groups": groups}, separators=(",", ":"), ensure_ascii=False) + "\n"
    try:
        return status_table.render(groups)
    except (TypeError, ValueError, AttributeError, KeyError):  # fields the schema leaves open
        raise StatusError(
            f"{path} answered a status reply with values this version cannot show; try --json"
        ) from None


def run_status(
    path: str,
    *,
    as_json: bool,
    watch: float | None,
    timeout: float,
    out: TextIO | None = None,
    err: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
    polls: int | None = None,
) -> int:
    """Print once (exit 0, or 1 when the instance cannot be asked), or every `watch` seconds
    until interrupted (a failed poll is shown and retried; the exit status is then 0).
    `polls` bounds the loop (tests)."""
    out = out or sys.stdout
    err = err or sys.stderr
    if watch is None:
        try:
            out.write(show(ask(path, timeout), as_json, path))
        except StatusError as exc:
            err.write(f"shardbeat status: {exc}\n")
            return 1
        return 0
    clear = out.isatty() and not as_json
    done = 0
    try:
        while polls is None or done < polls:
            try:
                text = show(ask(path, timeout), as_json, path)
            except StatusError as exc:
                text = f"shardbeat status: {exc}\n"
            if clear:
                text = (
                    f"{CLEAR}every {watch:g}s: shardbeat status {path}  {time.strftime('%H:%M:%S')}\n\n{text}"
                )
            out.write(text)
            out.flush()
            done += 1
            if polls is None or done < polls:
                sleep(watch)
    except KeyboardInterrupt:
        pass
    return 0


def run_stop(
    path: str, *, timeout: float, err: TextIO | None = None, clock: Callable[[], float] = time.monotonic
) -> int:
    """Ask the instance to stop (it writes `lost` and `stopped` records first), then wait until it
    has removed its socket, i.e. exited. 0 once gone; 1 if it could not be asked or is still there."""
    err = err or sys.stderr
    try:
        request(path, b'{"op": "stop"}\n', timeout)
    except StatusError as exc:
        err.write(f"shardbeat stop: {exc}\n")
        return 1
    deadline = clock() + timeout
    while os.path.exists(path):
        if clock() > deadline:
            err.write(f"shardbeat stop: asked to stop, but {path} is still there after {timeout:g}s\n")
            return 1
        time.sleep(0.05)
    err.write(f"shardbeat stop: the instance on {path} stopped\n")
    return 0
