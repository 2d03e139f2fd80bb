"""runtime/metrics.py: the latency histogram, the Prometheus text page, and the /metrics endpoint.

The page is checked with a small parser written here from the text format 0.0.4 grammar (not from the
renderer), so a formatting slip shows up as a parse failure rather than as a matching string.
"""

from __future__ import annotations

import http.client
import math
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from shardbeat.core.histogram import LATENCY_BUCKETS, Histogram, HistogramSnapshot
from shardbeat.runtime.metrics import (
    CONTENT_TYPE,
    MetricsError,
    MetricsServer,
    parse_listen,
    render_prometheus,
)

# -- a parser for the text exposition format 0.0.4 ----------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
_SAMPLE = re.compile(rf"({_NAME})(?:\{{((?:{_LABEL},?)*)\}})? (\S+)")
_VALUE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|Inf)|NaN")
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}

Labels = tuple[tuple[str, str], ...]


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], value)


@dataclass
class Family:
    kind: str
    help: str
    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)


def parse(page: str) -> dict[str, Family]:
    """Family name -> kind, help and samples; raises AssertionError for anything out of format."""
    assert page.endswith("\n")
    families: dict[str, Family] = {}
    helps: dict[str, str] = {}
    current: str | None = None
    for line in page[:-1].split("\n"):
        if line.startswith("# HELP "):
            name, _, text = line[7:].partition(" ")
            assert name not in helps, f"second HELP for {name}"
            helps[name] = _unescape(text)
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in _TYPES and name not in families, line
            families[name] = Family(kind, helps.get(name, ""))
            current = name
        else:
            match = _SAMPLE.fullmatch(line)
            assert match, f"not a sample line: {line!r}"
            name, labels_text, value = match.group(1), match.group(2) or "", match.group(len(match.groups()))
            assert _VALUE.fullmatch(value), f"bad value in {line!r}"
            assert current is not None
            suffixes = ("_bucket", "_sum", "_count") if families[current].kind == "histogram" else ("",)
            assert any(name == current + suffix for suffix in suffixes), f"{name} outside its family"
            labels = tuple((k, _unescape(v)) for k, v in re.findall(_LABEL, labels_text))
            key = (name, labels)
            assert key not in families[current].samples, f"duplicate series {key}"
            families[current].samples[key] = float(value)
    assert helps.keys() == families.keys(), "every family has HELP and TYPE"
    return families


def by_labels(family: Family, name: str) -> dict[Labels, float]:
    return {labels: v for (n, labels), v in family.samples.items() if n == name}


# -- stand-ins for core/group_figures.py GroupSnapshot --------------------------------------------------


@dataclass(frozen=True)
class Snap:
    provider: str = "sls"
    group: str = "g1"
    consumer: str = "c1"
    epoch: int = 3
    assigned: int = 2
    releasing: int = 1
    lease_remaining: float | None = 12.5
    clock_offset: float = 0.0
    beats: int = 40
    failures: int = 2
    changes: int = 3
    lost: int = 1
    last_error: str | None = None
    latency: Histogram | HistogramSnapshot | None = None


@dataclass(frozen=True)
class ScopedSnap(Snap):
    scope: str = "project/logstore"


def histogram(*values: float) -> Histogram:
    h = Histogram()
    for v in values:
        h.observe(v)
    return h


# -- Histogram -----------------------------------------------------------------------------------------


def test_observations_land_in_the_first_bucket_whose_bound_is_not_below_them() -> None:
    h = Histogram([0.1, 1.0])
    for v in (0.05, 0.1, 0.5, 1.0, 3.0):
        h.observe(v)
    snap = h.snapshot()
    assert snap.counts == (2, 2, 1)  # <=0.1: 0.05 and 0.1 (le is "less or equal"); <=1: 0.5, 1.0; above
    assert snap.cumulative() == [2, 4, 5]
    assert snap.count == h.count == 5
    assert snap.sum == pytest.approx(4.65)


def test_nan_is_ignored_and_negative_counts_in_the_lowest_bucket() -> None:
    h = Histogram([0.1, 1.0])
    h.observe(math.nan)
    h.observe(-0.5)
    assert h.snapshot().counts == (1, 0, 0)
    assert h.snapshot().sum == -0.5


def test_a_snapshot_is_a_copy() -> None:
    h = histogram(0.002)
    before = h.snapshot()
    h.observe(0.002)
    assert before.count == 1 and h.snapshot().count == 2


@pytest.mark.parametrize("bounds", [[1.0, 0.5], [0.1, 0.1], [0.1, math.inf], [math.nan]])
def test_bounds_must_be_finite_and_increasing(bounds: list[float]) -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram(bounds)


def test_default_buckets_resolve_loopback_and_cloud_latencies() -> None:
    assert LATENCY_BUCKETS[0] <= 0.001 and LATENCY_BUCKETS[-1] >= 5.0
    assert list(LATENCY_BUCKETS) == sorted(set(LATENCY_BUCKETS))


def test_quantile_interpolates_within_a_bucket() -> None:
    h = Histogram([1.0, 2.0, 4.0])
    for v in [0.5] * 10 + [1.5] * 10 + [3.0] * 20:
        h.observe(v)
    snap = h.snapshot()
    assert snap.quantile(0.25) == pytest.approx(1.0)  # rank 10 of 40: the top of the first bucket
    assert snap.quantile(0.5) == pytest.approx(2.0)
    assert snap.quantile(0.75) == pytest.approx(3.0)  # halfway through (2, 4]
    assert Histogram().snapshot().quantile(0.99) is None
    h.observe(100.0)
    assert h.snapshot().quantile(1.0) == 4.0  # beyond the last bound the histogram knows nothing more
    with pytest.raises(ValueError):
        snap.quantile(1.5)


# -- render_prometheus ---------------------------------------------------------------------------------


def test_page_parses_and_carries_every_figure_per_group() -> None:
    snaps = [
        Snap(latency=histogram(0.0004, 0.003)),
        Snap(group="g2", consumer="c9", epoch=7, assigned=0, releasing=0, lease_remaining=None,
             clock_offset=-3.25, beats=5, failures=5, changes=0, lost=0, last_error="Timeout"),
    ]  # fmt: skip
    families = parse(render_prometheus(snaps, writer_dropped=4))
    one = (("provider", "sls"), ("group", "g1"), ("consumer", "c1"))
    two = (("provider", "sls"), ("group", "g2"), ("consumer", "c9"))
    expected = {
        "shardbeat_heartbeats_total": ("counter", 40, 5),
        "shardbeat_heartbeat_failures_total": ("counter", 2, 5),
        "shardbeat_heartbeat_failing": ("gauge", 0, 1),
        "shardbeat_lease_remaining_seconds": ("gauge", 12.5, 0),
        "shardbeat_assigned_shards": ("gauge", 2, 0),
        "shardbeat_releasing_shards": ("gauge", 1, 0),
        "shardbeat_assignment_changes_total": ("counter", 3, 0),
        "shardbeat_lost_total": ("counter", 1, 0),
        "shardbeat_membership_epoch": ("gauge", 3, 7),
        "shardbeat_clock_offset_seconds": ("gauge", 0, -3.25),
    }
    for name, (kind, first, second) in expected.items():
        assert families[name].kind == kind, name
        assert families[name].help, name
        assert by_labels(families[name], name) == {one: first, two: second}, name
    assert by_labels(families["shardbeat_groups"], "shardbeat_groups") == {(): 2}
    dropped = families["shardbeat_records_dropped_total"]
    assert dropped.kind == "counter"
    assert by_labels(dropped, "shardbeat_records_dropped_total") == {(): 4}


def test_latency_is_one_histogram_per_provider_summed_over_groups() -> None:
    snaps = [
        Snap(group="a", latency=histogram(0.0004, 0.003, 20.0)),
        Snap(group="b", latency=histogram(0.003).snapshot()),  # a snapshot is accepted as well
        Snap(provider="cls", group="c", latency=histogram(0.2)),
        Snap(group="d", latency=None),
    ]
    family = parse(render_prometheus(snaps, 0))["shardbeat_heartbeat_latency_seconds"]
    assert family.kind == "histogram"
    buckets = by_labels(family, "shardbeat_heartbeat_latency_seconds_bucket")
    sls = {dict(labels)["le"]: v for labels, v in buckets.items() if dict(labels)["provider"] == "sls"}
    assert len(sls) == len(LATENCY_BUCKETS) + 1
    assert sls["0.0005"] == 1 and sls["0.001"] == 1 and sls["0.005"] == 3 and sls["10.0"] == 3
    assert sls["+Inf"] == 4
    values = [sls[k] for k in sorted(sls, key=lambda le: math.inf if le == "+Inf" else float(le))]
    assert values == sorted(values), "buckets are cumulative"
    counts = by_labels(family, "shardbeat_heartbeat_latency_seconds_count")
    sums = by_labels(family, "shardbeat_heartbeat_latency_seconds_sum")
    assert counts == {(("provider", "sls"),): 4, (("provider", "cls"),): 1}
    assert sums[(("provider", "sls"),)] == pytest.approx(20.0064)
    assert sums[(("provider", "cls"),)] == pytest.approx(0.2)


def test_label_values_are_escaped() -> None:
    nasty = 'a"b\\c\nd'
    families = parse(render_prometheus([Snap(group=nasty, consumer="ü")], 0))
    series = by_labels(families["shardbeat_heartbeats_total"], "shardbeat_heartbeats_total")
    assert series == {(("provider", "sls"), ("group", nasty), ("consumer", "ü")): 40}


def test_scope_becomes_a_label_when_the_snapshot_has_one() -> None:
    snaps = [ScopedSnap(scope="p/ls1"), ScopedSnap(scope="p/ls2")]  # one group name on two logstores
    series = by_labels(parse(render_prometheus(snaps, 0))["shardbeat_lost_total"], "shardbeat_lost_total")
    assert {dict(labels)["scope"] for labels in series} == {"p/ls1", "p/ls2"}


def test_empty_process_renders_a_valid_page() -> None:
    families = parse(render_prometheus([], 0))
    assert by_labels(families["shardbeat_groups"], "shardbeat_groups") == {(): 0}
    assert families["shardbeat_heartbeat_latency_seconds"].samples == {}


def test_a_thousand_groups_render_quickly_enough_to_scrape() -> None:
    snaps = [Snap(group=f"g{i}", latency=histogram(0.001 * (i % 7))) for i in range(1000)]
    page = render_prometheus(snaps, 0)
    assert page.count("\n") > 10_000
    assert parse(page)["shardbeat_heartbeat_latency_seconds"].samples


# -- listen addresses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "expected"),
    [("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:0", ("::1", 0)), ("localhost:80", ("localhost", 80)),
     ("0.0.0.0:9464", ("0.0.0.0", 9464))],
)  # fmt: skip
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize(
    ("listen", "problem"),
    [("9464", "host:port"), ("127.0.0.1:", "host:port"), ("127.0.0.1:99999", "host:port"),
     ("host:http", "host:port"), (":9464", "give a host"), ("::1:9464", "brackets"),
     # str.isdigit() takes both: int() raised on the first (an internal error) and read the second as 3
     ("127.0.0.1:\u00b2", "host:port"), ("127.0.0.1:\u0663", "host:port")],
)  # fmt: skip
def test_parse_listen_refuses_with_a_specific_message(listen: str, problem: str) -> None:
    with pytest.raises(MetricsError, match=problem):
        parse_listen(listen)


# -- the endpoint --------------------------------------------------------------------------------------


@dataclass
class Source:
    """The runner's side of the endpoint: snapshots on demand, or a failure."""

    snaps: list[Snap] = field(default_factory=lambda: [Snap(latency=histogram(0.002))])
    dropped: int = 0
    fail: bool = False
    calls: int = 0

    def __call__(self) -> tuple[list[Snap], int]:
        self.calls += 1
        if self.fail:
            raise RuntimeError("snapshot failed")
        return self.snaps, self.dropped


@pytest.fixture
def source() -> Source:
    return Source()


@pytest.fixture
def server(source: Source) -> Iterator[MetricsServer]:
    srv = MetricsServer("127.0.0.1:0", source).start()
    yield srv
    srv.stop()


def get(srv: MetricsServer, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    try:
        conn.request(method, path)
        answer = conn.getresponse()
        return answer.status, answer.getheader("Content-Type") or "", answer.read()
    finally:
        conn.close()


def test_get_metrics_serves_the_current_page(server: MetricsServer, source: Source) -> None:
    status, content_type, body = get(server, "/metrics")
    assert (status, content_type) == (200, CONTENT_TYPE)
    assert body.decode() == render_prometheus(source.snaps, 0)
    source.dropped = 9
    source.snaps = [*source.snaps, Snap(group="later")]
    families = parse(get(server, "/metrics?x=1")[2].decode())
    assert by_labels(families["shardbeat_records_dropped_total"], "shardbeat_records_dropped_total") == {
        (): 9
    }
    assert by_labels(families["shardbeat_groups"], "shardbeat_groups") == {(): 2}


def test_head_has_no_body_and_other_paths_are_404(server: MetricsServer, source: Source) -> None:
    status, _, body = get(server, "/metrics", "HEAD")
    assert (status, body) == (200, b"")
    for path in ("/", "/metrics/x", "/favicon.ico"):
        status, _, body = get(server, path)
        assert status == 404 and b"/metrics" in body
    assert get(server, "/metrics", "POST")[0] == 501


def test_a_failing_snapshot_costs_one_scrape_not_the_endpoint(
    server: MetricsServer, source: Source, caplog: pytest.LogCaptureFixture
) -> None:
    source.fail = True
    assert get(server, "/metrics")[0] == 500
    assert "cannot render /metrics" in caplog.text
    source.fail = False
    assert get(server, "/metrics")[0] == 200


def test_a_silent_client_delays_other_scrapes_by_at_most_the_client_timeout(source: Source) -> None:
    server = MetricsServer("127.0.0.1:0", source, client_timeout=0.3).start()
    idle = socket.create_connection(("127.0.0.1", server.port))
    try:
        idle.sendall(b"GET /metr")  # and then nothing: the one serving thread gives up on it after 0.3 s
        result: list[int] = []
        t = threading.Thread(target=lambda: result.append(get(server, "/metrics")[0]), daemon=True)
        started = time.monotonic()
        t.start()
        t.join(5)
        assert result == [200]
        assert time.monotonic() - started < 2.0
    finally:
        idle.close()
        server.stop()


def test_port_in_use_and_stop_before_start() -> None:
    first = MetricsServer("127.0.0.1:0", Source())
    try:
        with pytest.raises(MetricsError, match="cannot listen"):
            MetricsServer(f"127.0.0.1:{first.port}", Source())
    finally:
        first.stop()  # never started: must not hang
        first.stop()


def test_stop_closes_the_port(source: Source) -> None:
    srv = MetricsServer("127.0.0.1:0", source).start()
    port = srv.port
    assert get(srv, "/metrics")[0] == 200
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 2.0  # the idle server does not poll: stop() must wake it
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_idle_clients_never_delay_other_scrapes(server: MetricsServer) -> None:
    """Idle connections (default client timeout) each hold only their own thread: every scrape made
    meanwhile is answered at once, not after the idle ones time out."""
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]
    try:
        idle[0].sendall(b"GET /metr")  # one that started a request and stalled
        for _ in range(8):
            started = time.monotonic()
            assert get(server, "/metrics")[0] == 200
            assert time.monotonic() - started < 1.0
    finally:
        for conn in idle:
            conn.close()


def test_a_flood_of_idle_clients_is_turned_away_not_queued(server: MetricsServer) -> None:
    from shardbeat.runtime.metrics import MAX_CONNECTIONS

    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(MAX_CONNECTIONS + 8)]
    try:
        time.sleep(0.3)
        # over the cap, connections are closed at once (never a thread each): a scrape then is turned
        # away or answered, but never left hanging
        started = time.monotonic()
        conn = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        conn.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        conn.recv(1)
        conn.close()
        assert time.monotonic() - started < 1.0
        assert threading.active_count() <= before + 2 * MAX_CONNECTIONS  # a thread and a cutoff timer each
    finally:
        for c in idle:
            c.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # their slots come back as they are closed
        try:
            if get(server, "/metrics")[0] == 200:
                break
        except (ConnectionError, http.client.HTTPException):
            time.sleep(0.05)
    assert get(server, "/metrics")[0] == 200


def test_a_client_that_resets_is_logged_as_one_line_not_a_raw_traceback(
    server: MetricsServer, capfd: pytest.CaptureFixture[str]
) -> None:
    import json
    import logging
    import struct

    from shardbeat.runtime.logs import setup_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    setup_logging("debug", "json")
    try:
        for _ in range(20):
            conn = socket.create_connection(("127.0.0.1", server.port))
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.sendall(b"GET /metrics HTTP/1.0\r\n")  # headers unfinished, then RST
            conn.close()
        time.sleep(0.3)
        assert get(server, "/metrics")[0] == 200
    finally:
        root.handlers[:], root.level = saved
    err = capfd.readouterr().err
    assert "Traceback" not in err
    for line in err.splitlines():
        json.loads(line)  # every stderr line stays one JSON object


def test_a_trickling_client_is_cut_at_the_connection_deadline(source: Source) -> None:
    server = MetricsServer("127.0.0.1:0", source, client_timeout=0.5, connection_deadline=1.0).start()
    conn = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        started = time.monotonic()
        cut = False
        for byte in b"GET /metrics HTTP/1.0\r\nX-Slow: " + b"y" * 200:  # one byte per 0.2 s: never idle 0.5 s
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                cut = True
                break
            time.sleep(0.2)
            if time.monotonic() - started > 4:
                break
        if not cut:
            conn.settimeout(2)
            try:
                cut = conn.recv(1) == b""
            except OSError:
                cut = True
        assert cut and time.monotonic() - started < 3.5
        assert get(server, "/metrics")[0] == 200
    finally:
        conn.close()
        server.stop()
