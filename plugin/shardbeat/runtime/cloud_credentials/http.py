"""HTTP for credential fetching (instance metadata, STS), through `requests`, behind a small seam.

Two kinds of session, made by an injectable factory so the process can wire its network settings
(proxy, CA bundle) into the STS one:
- `metadata`: the instance metadata service is host-local by definition (100.100.100.200,
  metadata.tencentyun.com, only reachable from the instance itself), so it is always connected to
  directly: `trust_env` is off, which ignores HTTP(S)_PROXY / ALL_PROXY. (The official SDKs differ
  here: Alibaba's Tea core sends metadata calls through HTTP_PROXY unless NO_PROXY covers the host,
  and Tencent's urlopen honours the proxy variables too; a proxy there either fails or, worse, answers
  with the proxy host's own role.)
- `control_plane`: STS is an ordinary public API and goes the way every control-plane call goes.

`requests` is imported only when a session is made, so a process whose groups all use static keys
never loads it (memory and start-up; see runtime/http_session.py). Bodies are read with a size
cap; timeouts are (connect, read) per call, so a hung server costs a bounded wait on the
refresher's own thread and never anything on the heartbeat path.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # imported where a session is made: a static-keys process never loads requests
    import requests

from shardbeat.core.redaction import clip, register_secret
from shardbeat.providers.server_values import http_date

MAX_BODY = 64 * 1024
METADATA_TIMEOUT = (2.0, 5.0)  # (connect, read) seconds
STS_TIMEOUT = (5.0, 10.0)


Timeout = tuple[float, float]  # (connect, read) seconds


class FetchError(Exception):
    """A credential fetch failed. The message names the step and never contains a secret."""


class HttpSessions(Protocol):
    metadata_timeout: tuple[float, float]  # (connect, read) seconds per metadata request
    sts_timeout: tuple[float, float]

    def metadata(self) -> requests.Session: ...

    def control_plane(self) -> requests.Session: ...

    def close(self) -> None: ...


class DefaultSessions:
    """Metadata direct, STS with the environment's proxy and CA settings (requests' own rules)."""

    def __init__(
        self,
        control_plane: Callable[[], requests.Session] | None = None,
        metadata_timeout: tuple[float, float] = METADATA_TIMEOUT,
        sts_timeout: tuple[float, float] = STS_TIMEOUT,
    ) -> None:
        self.metadata_timeout = metadata_timeout
        self.sts_timeout = sts_timeout
        self._metadata: requests.Session | None = None
        self._control: requests.Session | None = None
        self._make_control = control_plane or _plain_session

    def metadata(self) -> requests.Session:
        if self._metadata is None:
            from shardbeat.runtime.call_deadline import direct_session

            # no proxy from the environment, ever (see the module docstring)
            self._metadata = direct_session()
        return self._metadata

    def control_plane(self) -> requests.Session:
        if self._control is None:
            self._control = self._make_control()
        return self._control

    def close(self) -> None:
        for session in (self._metadata, self._control):
            if session is not None:
                session.close()
        self._metadata = self._control = None


def _plain_session() -> requests.Session:
    import requests

    return requests.Session()


SessionsFactory = Callable[[], HttpSessions]


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    server_time: float | None = None  # the Date header: expiry instants are on the issuer's clock

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def call(
    session: requests.Session,
    method: str,
    url: str,
    what: str,
    *,
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
    timeout: tuple[float, float],
) -> Answer:
    """One request; raises FetchError naming `what` on a network failure or an oversize body.

    The whole call, trickled headers and body included, ends within connect + read timeout
    (runtime/call_deadline.py): urllib3 alone re-arms its timeout on every byte."""
    from shardbeat.runtime.call_deadline import CallDeadline  # loads requests: only sources use it

    with CallDeadline(timeout[0] + timeout[1]) as cut:
        try:
            answer = _call(session, method, url, what, headers, data, timeout)
        except FetchError:
            if not cut.expired:
                raise
    if cut.expired:
        raise FetchError(f"{what}: no whole answer within {timeout[0] + timeout[1]:g}s")
    return answer


def _call(
    session: requests.Session,
    method: str,
    url: str,
    what: str,
    headers: Mapping[str, str] | None,
    data: bytes | None,
    timeout: tuple[float, float],
) -> Answer:
    import requests
    import urllib3

    try:
        with session.request(
            method,
            url,
            headers=dict(headers or {}),
            data=data,
            timeout=timeout,
            stream=True,
            allow_redirects=False,
        ) as response:
            body = response.raw.read(MAX_BODY + 1, decode_content=True)
            status = response.status_code
            date = response.headers.get("Date")
    except requests.RequestException as exc:
        raise FetchError(f"{what}: {_reason(exc)}") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:  # raw.read's own errors (a body cut short)
        raise FetchError(f"{what}: answer cut short ({type(exc).__name__})") from None
    if len(body) > MAX_BODY:
        raise FetchError(f"{what}: answer larger than {MAX_BODY} bytes")
    return Answer(status, body, http_date(date))  # an absurd Date is ignored: expiry by our clock


def _reason(exc: requests.RequestException) -> str:
    """The socket-level reason ("Connection refused", "read timed out") without urllib3's wrapping."""
    import requests

    if isinstance(exc, requests.Timeout):
        return "connect timed out" if isinstance(exc, requests.ConnectTimeout) else "read timed out"
    found = _ERRNO.search(str(exc))
    if found:
        return found.group(1)
    return clip(str(exc), 200)


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^\"')]+)")


def read_token_file(path: str, what: str) -> str:
    """The OIDC token as it is now (it rotates: re-read on every refresh)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the refresher for good
            raise FetchError(f"{what}: token file {path} is not a regular file")
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BODY + 1)
    except OSError as exc:
        raise FetchError(f"{what}: cannot read token file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_BODY:
        raise FetchError(f"{what}: token file {path} is larger than {MAX_BODY} bytes")
    token = raw.decode("utf-8", "replace").strip()
    if not token:
        raise FetchError(f"{what}: token file {path} is empty")
    register_secret(token)  # a bearer token: masked wherever an STS answer or a library echoes it
    return token


def json_object(answer: Answer, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(answer.body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than json can decode
        raise FetchError(f"{what}: HTTP {answer.status}, answer is not JSON") from None
    if not isinstance(doc, dict):
        raise FetchError(f"{what}: HTTP {answer.status}, answer is not a JSON object")
    return doc


def text_field(doc: dict[str, Any], key: str, what: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise FetchError(f"{what}: answer has no {key}")
    # Keys go through credential_flaw once they are issued (cloud_credentials.fetch), as configured ones.
    return value
