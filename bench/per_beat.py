"""Part 1: CPU time and wall latency per heartbeat, shardbeat next to the official SDKs and the floor.

Every client runs in this process against an emulator in another one, so this process's CPU time
(time.process_time) is the client's alone. Clients take turns in rounds, so a disturbance on the
machine spreads over all of them instead of landing on one.
"""

from __future__ import annotations

import email.utils
import gc
import http.client
import io
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from bench import clients
from bench.emulator import CLS_KEY, SLS_KEY, EmulatorProcess, per_beat_fixtures


@dataclass(frozen=True, slots=True)
class BeatFigures:
    name: str
    provider: str
    kind: str
    beats: int
    cpu_us: float  # CPU per beat, this process (user + system)
    wall_p50_us: float
    wall_p99_us: float
    wall_mean_us: float


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def measure(beat_clients: list[clients.Client], beats: int, rounds: int, warmup: int) -> list[BeatFigures]:
    for client in beat_clients:
        for _ in range(warmup):
            client.beat()
    cpu = {c.name: 0.0 for c in beat_clients}
    walls: dict[str, list[float]] = {c.name: [] for c in beat_clients}
    per_round = max(1, beats // rounds)
    clock = time.perf_counter
    for _ in range(rounds):
        for client in beat_clients:
            beat, wall = client.beat, walls[client.name]
            gc.collect()
            started = time.process_time()
            for _ in range(per_round):
                t0 = clock()
                beat()
                wall.append(clock() - t0)
            cpu[client.name] += time.process_time() - started
    figures = []
    for client in beat_clients:
        wall = walls[client.name]
        figures.append(
            BeatFigures(
                client.name,
                client.provider,
                client.kind,
                len(wall),
                cpu[client.name] / len(wall) * 1e6,
                percentile(wall, 50) * 1e6,
                percentile(wall, 99) * 1e6,
                statistics.fmean(wall) * 1e6,
            )
        )
    return figures


# -- where the time goes: the stages of one beat, without the network ------------------------------


def _cpu_us(fn: Callable[[], object], n: int) -> float:
    for _ in range(min(n, 200)):
        fn()
    gc.collect()
    started = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - started) / n * 1e6


def stage_costs(url: str, n: int) -> dict[str, float | str]:
    """CPU us per call of each step the runner takes per beat. A step whose API has moved is reported
    as "n/a: ..." rather than failing the benchmark."""
    from shardbeat.providers.base import Credentials
    from shardbeat.runtime.transport import HttpTransport

    out: dict[str, float | str] = {}
    transport = HttpTransport()
    claim: Any = {}
    date = ""
    for label, provider, key in (
        ("SLS", clients.sls_provider(url, "shardbeat-sls"), SLS_KEY),
        ("CLS", clients.cls_provider(url, "shardbeat-cls"), CLS_KEY),
    ):
        credentials = Credentials(*key)
        request = provider.heartbeat_request({}, time.time(), credentials)
        response = transport.send(provider.endpoint, request, time.monotonic() + 5)
        claim = provider.parse_heartbeat(response)
        out[f"{label} heartbeat_request (body, signature, headers)"] = _cpu_us(
            partial(_request, provider, claim, credentials), n
        )
        out[f"{label} parse_heartbeat"] = _cpu_us(partial(provider.parse_heartbeat, response), n)
        raw = _raw_answer(response)
        out[f"{label} answer read: http_answer.AnswerParser (HttpLoop)"] = _cpu_us(
            partial(_read_loop, raw), n
        )
        out[f"{label} answer read: http.client.HTTPResponse (the floor)"] = _cpu_us(
            partial(_read_http_client, raw), n
        )
        date = response.headers.get("date", "")
    transport.close()
    out["Date header parse (email.utils.parsedate_to_datetime)"] = _cpu_us(
        lambda: email.utils.parsedate_to_datetime(date).timestamp(), n
    )
    try:
        steps = _runner_steps(claim)
    except Exception as exc:  # an internal API moved: say so, keep going
        return out | {"runner steps": f"n/a: {type(exc).__name__}: {exc}"[:160]}
    for label, step in steps.items():
        try:
            out[label] = _cpu_us(step, n)
        except Exception as exc:
            out[label] = f"n/a: {type(exc).__name__}: {exc}"[:160]
    return out


def _raw_answer(response: Any) -> bytes:
    """The answer's bytes as the emulator sent them (near enough: same headers and body)."""
    head = "".join(f"{name}: {value}\r\n" for name, value in response.headers.items())
    body: bytes = response.body
    return f"HTTP/1.1 {response.status} OK\r\n{head}\r\n".encode("latin-1") + body


def _read_loop(raw: bytes) -> object:
    from shardbeat.runtime.http_answer import AnswerParser

    return AnswerParser().feed(raw)


class _Bytes:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self.raw))


def _read_http_client(raw: bytes) -> object:
    answer = http.client.HTTPResponse(_Bytes(raw))  # type: ignore[arg-type]
    answer.begin()
    return {name.lower(): value for name, value in answer.getheaders()}, answer.read()


def _request(provider: Any, claim: Any, credentials: Any) -> object:
    return provider.heartbeat_request(claim, time.time(), credentials)


def _runner_steps(claim: Any) -> dict[str, Callable[[], object]]:
    """The runner's per-beat work after the answer, with the lead-owned engine's current API."""
    from shardbeat.core.histogram import Histogram
    from shardbeat.core.lease import Lease
    from shardbeat.core.membership import Membership
    from shardbeat.core.records import Identity, Instant, from_event
    from shardbeat.runtime.output import json_line

    membership = Membership(Lease(15.0, 1.5))
    who = Identity("cls", "g-00001", "bench-consumer")
    membership.on_success(claim, time.monotonic(), time.monotonic())
    histogram = Histogram()

    def engine() -> object:
        now = time.monotonic()
        return membership.on_success(claim, now, now)

    def record() -> object:
        now = time.monotonic()
        event = membership.on_success(claim, now, now)[-1]
        return json_line(from_event(who, event, Instant(time.time(), now), 0.42))

    return {
        "Membership.on_success (steady state)": engine,
        "Membership.on_success + lease record built and JSON-encoded": record,
        "Histogram.observe": lambda: histogram.observe(0.0004),
    }


def run(beats: int, rounds: int, warmup: int, stage_n: int) -> dict[str, Any]:
    with EmulatorProcess(per_beat_fixtures(clients.group_names())) as emulator:
        made: list[clients.Client] = []
        skipped: dict[str, str] = {}
        for factory in clients.FACTORIES:
            try:
                made.append(factory(emulator.url))
            except ImportError as exc:  # the sdk extra is not installed: the row says so
                skipped[factory.__name__] = f"not installed: {exc.name}"
        try:
            figures = measure(made, beats, rounds, warmup)
        finally:
            for client in made:
                client.close()
        stages = stage_costs(emulator.url, stage_n)
    return {
        "beats_per_client": beats,
        "rounds": rounds,
        "clients": [asdict(f) for f in figures],
        "skipped": skipped,
        "stages_cpu_us": stages,
    }
