"""The heartbeat clients the per-beat benchmark compares, each a `beat()` that sends one heartbeat,
reads the answer and checks it, with a keep-alive connection made before measuring starts.

- shardbeat: what the runner's loop does per beat (provider.heartbeat_request, HttpLoop.start, then
  poll until its done fires, provider.parse_heartbeat), imported from the package.
- sdk: the official SDKs' own calls, as their users would make them.
- floor: a bare http.client keep-alive POST of the bytes shardbeat sends, signed inline per beat with
  only what is constant per group precomputed (canonical header block, TC3 day key), and the answer
  read with json.loads. Nothing correct can be much cheaper in CPython.
- context: the same signed request through urllib3 and requests, to show what a client library costs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.emulator import CLS_KEY, LOGSET, PROJECT, REGION, SLS_KEY, TOPICS
from shardbeat.core.shards import ShardMap
from shardbeat.providers.base import Credentials, HttpRequest
from shardbeat.providers.cls import ClsProvider
from shardbeat.providers.sls import SlsProvider
from shardbeat.runtime.http_loop import HttpLoop
from shardbeat.runtime.transport import HttpTransport, TransportError

LOGSTORE = "per-beat"
CONSUMER = "bench-consumer"
DEADLINE = 5.0  # seconds per call; loopback answers take well under a millisecond


@dataclass
class Client:
    name: str  # the table's row label
    provider: str  # "sls" | "cls"
    kind: str  # "shardbeat" | "sdk" | "floor" | "context"
    beat: Callable[[], None]
    close: Callable[[], None]


class BenchError(RuntimeError):
    """A client got an answer other than an assignment: the figures would be meaningless."""


def _group(kind: str, provider: str) -> str:
    return f"{kind}-{provider}"


def group_names() -> list[str]:
    """Every consumer group the per-beat fixtures need (one per client, for both services)."""
    return ["shardbeat-sls", "sdk-sls", "floor-sls", "context-sls", "context-sls-requests",
            "shardbeat-cls", "sdk-cls", "floor-cls"]  # fmt: skip


# -- shardbeat -----------------------------------------------------------------------------------------


def _shardbeat(provider: SlsProvider | ClsProvider, name: str) -> Client:
    loop = HttpLoop()
    key = SLS_KEY if provider.name == "sls" else CLS_KEY
    credentials = Credentials(*key)
    claim: list[ShardMap] = [{}]
    box: list[object] = []

    def beat() -> None:
        request = provider.heartbeat_request(claim[0], time.time(), credentials)
        loop.start(provider.endpoint, request, time.monotonic() + DEADLINE, box.append)
        while not box:
            loop.poll(DEADLINE)
        result = box.pop()
        if isinstance(result, TransportError):
            raise BenchError(f"{name}: {result}")
        claim[0] = provider.parse_heartbeat(result)  # type: ignore[arg-type]

    beat()
    if not claim[0]:
        raise BenchError(f"{name}: the first heartbeat was assigned nothing")
    return Client(name, provider.name, "shardbeat", beat, loop.close)


def sls_provider(url: str, group: str) -> SlsProvider:
    return SlsProvider(url, PROJECT, LOGSTORE, group, CONSUMER)


def cls_provider(url: str, group: str) -> ClsProvider:
    return ClsProvider(url, REGION, LOGSET, TOPICS, group, CONSUMER)


def shardbeat_sls(url: str) -> Client:
    return _shardbeat(sls_provider(url, _group("shardbeat", "sls")), "shardbeat SLS")


def shardbeat_cls(url: str) -> Client:
    return _shardbeat(cls_provider(url, _group("shardbeat", "cls")), "shardbeat CLS")


# -- the floor: http.client and inline signing -----------------------------------------------------------


def _template(provider: SlsProvider | ClsProvider, credentials: Credentials) -> tuple[HttpRequest, ShardMap]:
    """The request shardbeat sends in steady state (holding everything it was assigned)."""
    transport = HttpTransport()
    try:
        claim: ShardMap = {}
        for _ in range(2):
            request = provider.heartbeat_request(claim, time.time(), credentials)
            response = transport.send(provider.endpoint, request, time.monotonic() + DEADLINE)
            claim = provider.parse_heartbeat(response)
        return provider.heartbeat_request(claim, time.time(), credentials), claim
    finally:
        transport.close()


def _connection(url: str) -> http.client.HTTPConnection:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=DEADLINE)
    conn.connect()
    assert conn.sock is not None
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def _post(
    conn: http.client.HTTPConnection, target: str, headers: list[tuple[str, str]], body: bytes
) -> bytes:
    conn.putrequest("POST", target, skip_host=True, skip_accept_encoding=True)
    for name, value in headers:
        conn.putheader(name, value)
    conn.endheaders(body)
    answer = conn.getresponse()
    data = answer.read()
    if answer.status != 200:
        raise BenchError(f"HTTP {answer.status}: {data[:200]!r}")
    return data


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _http_date(epoch: float) -> str:
    t = time.gmtime(epoch)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


class SlsFloorSigner:
    """SLS v1 signing written out inline: only the x-log-* header block and the resource are precomputed."""

    def __init__(self, template: HttpRequest, group: str) -> None:
        self.target = template.target
        self.body = template.body
        self.names = [name for name, _ in template.headers]
        self.constant = {name: value for name, value in template.headers}
        signed = sorted(
            (n.lower(), v) for n, v in template.headers if n.lower().startswith(("x-log-", "x-acs-"))
        )
        self.canonical = "".join(f"{n}:{v}\n" for n, v in signed)
        self.resource = f"/logstores/{LOGSTORE}/consumergroups/{group}?consumer={CONSUMER}&type=heartbeat"
        self.key = SLS_KEY[1].encode()
        self.auth_prefix = f"LOG {SLS_KEY[0]}:"

    def headers(self) -> list[tuple[str, str]]:
        md5 = hashlib.md5(self.body).hexdigest().upper()
        date = _http_date(time.time())
        to_sign = f"POST\n{md5}\napplication/json\n{date}\n{self.canonical}{self.resource}"
        signature = base64.b64encode(hmac.new(self.key, to_sign.encode(), hashlib.sha1).digest()).decode()
        fresh = {"Content-MD5": md5, "Date": date, "Authorization": self.auth_prefix + signature}
        return [(name, fresh.get(name) or self.constant[name]) for name in self.names]


class ClsFloorSigner:
    """TC3-HMAC-SHA256 written out inline; the day's signing key is derived once per UTC day."""

    def __init__(self, template: HttpRequest, host: str) -> None:
        self.body = template.body
        self.names = [name for name, _ in template.headers]
        self.constant = {name: value for name, value in template.headers}
        self.canonical_head = f"POST\n/\n\ncontent-type:application/json\nhost:{host}\n\ncontent-type;host\n"
        self.day_key: tuple[str, bytes] = ("", b"")

    def _key(self, date: str) -> bytes:
        if self.day_key[0] != date:
            k = hmac.new(("TC3" + CLS_KEY[1]).encode(), date.encode(), hashlib.sha256).digest()
            k = hmac.new(k, b"cls", hashlib.sha256).digest()
            self.day_key = (date, hmac.new(k, b"tc3_request", hashlib.sha256).digest())
        return self.day_key[1]

    def headers(self) -> list[tuple[str, str]]:
        timestamp = int(time.time())
        date = time.strftime("%Y-%m-%d", time.gmtime(timestamp))
        canonical = self.canonical_head + hashlib.sha256(self.body).hexdigest()
        to_sign = (
            f"TC3-HMAC-SHA256\n{timestamp}\n{date}/cls/tc3_request\n"
            f"{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        signature = hmac.new(self._key(date), to_sign.encode(), hashlib.sha256).hexdigest()
        authorization = (
            f"TC3-HMAC-SHA256 Credential={CLS_KEY[0]}/{date}/cls/tc3_request, "
            f"SignedHeaders=content-type;host, Signature={signature}"
        )
        fresh = {"X-TC-Timestamp": str(timestamp), "Authorization": authorization}
        return [(name, fresh.get(name) or self.constant[name]) for name in self.names]


def _check_sls(data: bytes) -> None:
    if not json.loads(data):
        raise BenchError("SLS answer assigned nothing")


def _check_cls(data: bytes) -> None:
    answer = json.loads(data)["Response"]
    if "Error" in answer or not answer.get("TopicPartitionsInfo"):
        raise BenchError(f"CLS answer without an assignment: {data[:200]!r}")


def floor_sls(url: str) -> Client:
    group = _group("floor", "sls")
    template, _ = _template(sls_provider(url, group), Credentials(*SLS_KEY))
    signer = SlsFloorSigner(template, group)
    conn = _connection(url)

    def beat() -> None:
        _check_sls(_post(conn, signer.target, signer.headers(), signer.body))

    beat()
    return Client("floor SLS (http.client, inline v1 signing)", "sls", "floor", beat, conn.close)


def floor_cls(url: str) -> Client:
    provider = cls_provider(url, _group("floor", "cls"))
    template, _ = _template(provider, Credentials(*CLS_KEY))
    signer = ClsFloorSigner(template, provider.endpoint.host_header)
    conn = _connection(url)

    def beat() -> None:
        _check_cls(_post(conn, "/", signer.headers(), signer.body))

    beat()
    return Client("floor CLS (http.client, inline TC3 signing)", "cls", "floor", beat, conn.close)


# -- context: the same signed request through urllib3 and requests ----------------------------------


def urllib3_sls(url: str) -> Client:
    import urllib3

    group = _group("context", "sls")
    template, _ = _template(sls_provider(url, group), Credentials(*SLS_KEY))
    signer = SlsFloorSigner(template, group)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    pool = urllib3.HTTPConnectionPool(host, int(port), maxsize=1, timeout=DEADLINE, retries=False)

    def beat() -> None:
        answer = pool.urlopen("POST", signer.target, body=signer.body, headers=dict(signer.headers()))
        if answer.status != 200:
            raise BenchError(f"HTTP {answer.status}")
        _check_sls(answer.data)

    beat()
    return Client("urllib3 pool, inline signing (SLS)", "sls", "context", beat, pool.close)


def requests_sls(url: str) -> Client:
    import requests

    group = "context-sls-requests"
    template, _ = _template(sls_provider(url, group), Credentials(*SLS_KEY))
    signer = SlsFloorSigner(template, group)
    session = requests.Session()
    target = url + signer.target

    def beat() -> None:
        answer = session.post(target, data=signer.body, headers=dict(signer.headers()), timeout=DEADLINE)
        if answer.status_code != 200:
            raise BenchError(f"HTTP {answer.status_code}")
        _check_sls(answer.content)

    beat()
    return Client("requests.Session.post, inline signing (SLS)", "sls", "context", beat, session.close)


# -- the official SDKs --------------------------------------------------------------------------------


def sdk_sls(url: str) -> Client:
    """aliyun-log-python-sdk: LogClient.heart_beat, holding what the last answer assigned."""
    from aliyun.log import LogClient

    client: Any = LogClient(url, *SLS_KEY)
    client._isRowIp = True  # the SDK treats only dotted IPs without a port as IP literals
    client.timeout = DEADLINE
    group = _group("sdk", "sls")
    held: list[list[int]] = [[]]

    def beat() -> None:
        held[0] = client.heart_beat(PROJECT, LOGSTORE, group, CONSUMER, held[0]).get_shards()
        if not held[0]:
            raise BenchError("SDK SLS heartbeat assigned nothing")

    beat()
    return Client("aliyun-log-python-sdk LogClient.heart_beat", "sls", "sdk", beat, lambda: None)


def sdk_cls(url: str) -> Client:
    """tencentcloud-sdk-python-cls: ClsClient.SendConsumerHeartbeat, building the request as documented."""
    from tencentcloud.cls.v20201016 import cls_client, models  # type: ignore[import-untyped]
    from tencentcloud.common import credential  # type: ignore[import-untyped]
    from tencentcloud.common.profile.client_profile import ClientProfile  # type: ignore[import-untyped]
    from tencentcloud.common.profile.http_profile import HttpProfile  # type: ignore[import-untyped]

    endpoint = url.removeprefix("http://")
    profile = ClientProfile(
        httpProfile=HttpProfile(protocol="http", endpoint=endpoint, reqTimeout=int(DEADLINE))
    )
    client: Any = cls_client.ClsClient(credential.Credential(*CLS_KEY), REGION, profile)
    group = _group("sdk", "cls")
    held: list[dict[str, list[int]]] = [{}]

    def beat() -> None:
        request: Any = models.SendConsumerHeartbeatRequest()
        request.from_json_string(
            json.dumps(
                {
                    "ConsumerGroup": group,
                    "Consumer": CONSUMER,
                    "LogsetId": LOGSET,
                    "TopicPartitionsInfo": [{"TopicID": t, "Partitions": held[0].get(t, [])} for t in TOPICS],
                }
            )
        )
        answer = client.SendConsumerHeartbeat(request)
        held[0] = {info.TopicID: info.Partitions for info in answer.TopicPartitionsInfo}
        if not held[0]:
            raise BenchError("SDK CLS heartbeat assigned nothing")

    beat()
    return Client("tencentcloud-sdk-python-cls SendConsumerHeartbeat", "cls", "sdk", beat, lambda: None)


FACTORIES: tuple[Callable[[str], Client], ...] = (
    shardbeat_sls,
    sdk_sls,
    floor_sls,
    urllib3_sls,
    requests_sls,
    shardbeat_cls,
    sdk_cls,
    floor_cls,
)
