"""Figures for operators: a latency histogram per session, and an optional Prometheus text endpoint.

Only `Histogram.observe` runs on the heartbeat path; it is a bisect and two additions. Everything
else runs when someone scrapes: `render_prometheus` turns session snapshots into the text exposition
format 0.0.4, and `MetricsServer` serves it from the standard library's http.server on one daemon
thread (no new dependency).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from shardbeat.core.histogram import Histogram, HistogramSnapshot
from shardbeat.http_server import ServedHandler, ThreadedHttpServer

log = logging.getLogger("shardbeat.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRICS_PATH = "/metrics"
CLIENT_TIMEOUT = 2.0  # seconds a scraper may stay silent mid-request before it is hung up on
MAX_CONNECTIONS = 16  # served at once, each on its own thread; more are turned away at once
CONNECTION_DEADLINE = 5.0  # a whole connection, however it trickles: then it is cut
IDLE_POLL = 3600.0  # serve_forever's select() timeout


# ---------------------------------------------------------------------------------------------------
# Text exposition format 0.0.4


class SessionFigures(Protocol):
    """What render_prometheus reads from each session snapshot (core/group_figures.py GroupSnapshot).

    A snapshot may also carry `scope` (str: "project/logstore" or "region/logset"); when it does, it
    becomes a label, so that one group name on two logstores gives two series instead of a clash.
    """

    @property
    def provider(self) -> str: ...
    @property
    def group(self) -> str: ...
    @property
    def consumer(self) -> str: ...
    @property
    def epoch(self) -> int: ...
    @property
    def assigned(self) -> int: ...
    @property
    def releasing(self) -> int: ...
    @property
    def lease_remaining(self) -> float | None: ...
    @property
    def clock_offset(self) -> float: ...
    @property
    def beats(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def changes(self) -> int: ...
    @property
    def lost(self) -> int: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def latency(self) -> Histogram | HistogramSnapshot | None: ...


Sample = tuple[str, float | int]  # (rendered label set, value)
_PER_GROUP: tuple[tuple[str, str, Callable[[SessionFigures], float | int], str], ...] = (
    ("shardbeat_heartbeats_total", "counter", lambda s: s.beats,
     "Heartbeat calls completed, answered or not."),
    ("shardbeat_heartbeat_failures_total", "counter", lambda s: s.failures,
     "Heartbeat calls that failed (no answer, an error answer, or one that could not be read)."),
    ("shardbeat_heartbeat_failing", "gauge", lambda s: 0 if s.last_error is None else 1,
     "1 while the group's latest heartbeat failed, else 0."),
    ("shardbeat_lease_remaining_seconds", "gauge",
     lambda s: 0.0 if s.lease_remaining is None else max(0.0, s.lease_remaining),
     "Seconds this node may still act on its shards without another successful heartbeat (0: none held)."),
    ("shardbeat_assigned_shards", "gauge", lambda s: s.assigned,
     "Shards (CLS: partitions) assigned to this consumer by the last answer."),
    ("shardbeat_releasing_shards", "gauge", lambda s: s.releasing,
     "Revoked shards still listed in heartbeats until downstream lets go of them."),
    ("shardbeat_assignment_changes_total", "counter", lambda s: s.changes,
     "Assignment records written (joins and every change of the assigned shards)."),
    ("shardbeat_lost_total", "counter", lambda s: s.lost,
     "Lost records written (lease expired, or the server forgot this consumer)."),
    ("shardbeat_membership_epoch", "gauge", lambda s: s.epoch,
     "The epoch of the group's latest assignment or lost record."),
    ("shardbeat_clock_offset_seconds", "gauge", lambda s: s.clock_offset,
     "Server clock minus this host's clock as applied when signing (0 unless they differ by more "
     "than 2 s), estimated from answers' Date headers."),
)  # fmt: skip


def escape_label_value(value: str) -> str:
    """Backslash, double quote and line feed escaped, as the text format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float | int) -> str:
    if isinstance(value, int):  # bool included: True -> 1
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{name}="{escape_label_value(value)}"' for name, value in pairs)


def _group_labels(s: SessionFigures) -> str:
    pairs = [("provider", s.provider)]
    scope = getattr(s, "scope", None)
    if isinstance(scope, str):
        pairs.append(("scope", scope))
    pairs += (("group", s.group), ("consumer", s.consumer))
    return _labels(pairs)


def _family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> list[str]:
    lines = [f"# HELP {name} {_escape_help(help_text)}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        lines.append(
            f"{name}{{{labels}}} {format_value(value)}" if labels else f"{name} {format_value(value)}"
        )
    return lines


def _latency_by_provider(snapshots: Sequence[SessionFigures]) -> dict[str, HistogramSnapshot]:
    """One histogram per provider, summed over its sessions (a series per group would be thousands)."""
    bounds: dict[str, tuple[float, ...]] = {}
    counts: dict[str, list[int]] = {}
    sums: dict[str, float] = {}
    for s in snapshots:
        latency = s.latency
        if latency is None:
            continue
        snap = latency.snapshot() if isinstance(latency, Histogram) else latency
        have = counts.get(s.provider)
        if have is None:
            bounds[s.provider], counts[s.provider], sums[s.provider] = (
                snap.bounds,
                list(snap.counts),
                snap.sum,
            )
            continue
        if snap.bounds != bounds[s.provider]:
            raise ValueError("cannot add histograms with different bucket bounds")
        for i, n in enumerate(snap.counts):
            have[i] += n
        sums[s.provider] += snap.sum
    return {p: HistogramSnapshot(bounds[p], tuple(counts[p]), sums[p]) for p in counts}


def _histogram_lines(name: str, help_text: str, by_label: dict[str, HistogramSnapshot]) -> list[str]:
    lines = [f"# HELP {name} {_escape_help(help_text)}", f"# TYPE {name} histogram"]
    for provider in sorted(by_label):
        snap = by_label[provider]
        base = _labels([("provider", provider)])
        cumulative = snap.cumulative()
        for bound, n in zip(snap.bounds, cumulative, strict=False):
            lines.append(f'{name}_bucket{{{base},le="{format_value(bound)}"}} {n}')
        lines.append(f'{name}_bucket{{{base},le="+Inf"}} {cumulative[-1]}')
        lines.append(f"{name}_sum{{{base}}} {format_value(snap.sum)}")
        lines.append(f"{name}_count{{{base}}} {cumulative[-1]}")
    return lines


def render_prometheus(snapshots: Sequence[SessionFigures], writer_dropped: int) -> str:
    """The whole /metrics page: per-provider latency histograms, per-group figures, process figures."""
    lines = _histogram_lines(
        "shardbeat_heartbeat_latency_seconds",
        "Time from sending a heartbeat to reading its whole answer, for answered heartbeats.",
        _latency_by_provider(snapshots),
    )
    labels = [_group_labels(s) for s in snapshots]
    for name, kind, read, help_text in _PER_GROUP:
        lines += _family(
            name, kind, help_text, ((lab, read(s)) for lab, s in zip(labels, snapshots, strict=True))
        )
    lines += _family(
        "shardbeat_groups", "gauge", "Consumer groups this process holds.", [("", len(snapshots))]
    )
    lines += _family(
        "shardbeat_records_dropped_total",
        "counter",
        "Superseded records (lease, error, status) dropped because stdout's reader fell behind.",
        [("", writer_dropped)],
    )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# The endpoint


class MetricsError(ValueError):
    """metrics.listen cannot be used (malformed, or the address cannot be bound)."""


def _decimal(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes '²' (which int() refuses) and '٣' (which it reads as 3)."""
    return text.isascii() and text.isdigit()


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` or `[ipv6]:port` -> (host, port). An empty host is refused: binding every interface
    must be asked for explicitly (0.0.0.0:PORT), since the page names groups and consumers."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not _decimal(port_text) or not 0 <= int(port_text) <= 65535:
        raise MetricsError(f"metrics.listen {listen!r}: expected host:port, e.g. 127.0.0.1:9464")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise MetricsError(f"metrics.listen {listen!r}: put an IPv6 address in brackets, e.g. [::1]:9464")
    if not host:
        raise MetricsError(
            f"metrics.listen {listen!r}: give a host (0.0.0.0:{port_text} for every interface)"
        )
    return host, int(port_text)


Snapshotter = Callable[[], tuple[Sequence[SessionFigures], int]]


class _Server(ThreadedHttpServer):
    """One thread per connection, at most MAX_CONNECTIONS at once (http_server.ThreadedHttpServer)."""

    request_queue_size = 64
    label = "metrics"
    logger = log

    def __init__(
        self,
        address: tuple[str, int],
        snapshot: Snapshotter,
        client_timeout: float,
        connection_deadline: float,
    ) -> None:
        self.snapshot = snapshot
        self.idle_timeout = client_timeout
        self.connection_deadline = connection_deadline
        super().__init__(address, _Handler, MAX_CONNECTIONS)


class _Handler(ServedHandler):
    # HTTP/1.0: one request per connection, so one idle scraper never holds the only serving thread.
    protocol_version = "HTTP/1.0"
    server_version = "shardbeat-metrics"
    server: _Server

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _answer(self, head: bool) -> None:
        if self.path.partition("?")[0] != METRICS_PATH:
            self._send(404, b"not found: the metrics are at /metrics\n", "text/plain; charset=utf-8", head)
            return
        try:
            snapshots, dropped = self.server.snapshot()
            page = render_prometheus(snapshots, dropped).encode()
        except Exception:  # a bug must cost one scrape, not the endpoint
            log.exception("cannot render /metrics")
            self._send(500, b"internal error; see shardbeat's log\n", "text/plain; charset=utf-8", head)
            return
        self._send(200, page, CONTENT_TYPE, head)

    def _send(self, status: int, body: bytes, content_type: str, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


class MetricsServer:
    """GET /metrics on `listen` (host:port; port 0 picks a free one), served by one daemon thread.

    The socket is bound at construction (MetricsError if it cannot be), so `.port` is known before
    `.start()`. `snapshot` is called on the serving thread for every scrape.
    """

    def __init__(
        self,
        listen: str,
        snapshot: Snapshotter,
        client_timeout: float = CLIENT_TIMEOUT,
        connection_deadline: float = CONNECTION_DEADLINE,
    ) -> None:
        host, port = parse_listen(listen)
        try:
            self._httpd = _Server((host, port), snapshot, client_timeout, connection_deadline)
        except (OSError, OverflowError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise MetricsError(f"metrics.listen {listen!r}: cannot listen there ({reason})") from None
        self._stopped = False

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> MetricsServer:
        if not self._stopped:
            # No periodic wake-ups while idle (a sidecar's idle CPU is paid on every node): stop()
            # wakes the loop with a connection of its own instead.
            self._httpd.start_serving("shardbeat-metrics", IDLE_POLL)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket. Idempotent; safe before start()."""
        if self._stopped:
            return
        self._stopped = True
        self._httpd.stop_serving()
