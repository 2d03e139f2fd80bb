"""The doctor's calls: per group, the checks in order, each from a real request with a short deadline.

Requests are built and signed by the same providers `run` uses. Later checks are skipped (WARN "not
checked") when an earlier one rules them out, e.g. no HTTP answer at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TextIO, TypeVar

from shardbeat import __version__
from shardbeat.config import GroupConfig, LoadedConfig, Problem
from shardbeat.core.records import rfc3339
from shardbeat.core.redaction import redact
from shardbeat.core.shards import ShardMap
from shardbeat.core.skew import ServerClock
from shardbeat.providers import server_values
from shardbeat.providers.base import Credentials, HttpRequest, HttpResponse, ProviderError, ServerGroup
from shardbeat.providers.services import service
from shardbeat.runtime.clock import Clock
from shardbeat.runtime.cloud_credentials import DefaultSessions, FetchError
from shardbeat.runtime.credential_refresher import RefreshingCredentials
from shardbeat.runtime.doctor import reach
from shardbeat.runtime.doctor.hints import classify, hint, source_hint, transport_hint
from shardbeat.runtime.doctor.verdicts import (
    Check,
    Status,
    clock_verdict,
    config_verdict,
    group_verdict,
    ms,
    rate_budget,
    shown_key,
)
from shardbeat.runtime.http_session import RequestsTransport, make_session
from shardbeat.runtime.instance_lock import (
    InstanceLockError,
    InstanceLockHeld,
    InstanceLocks,
    acquire_instance_locks,
)
from shardbeat.runtime.network import Network, NetworkError
from shardbeat.runtime.transport import Transport, TransportError

CALL_TIMEOUT = 5.0
_AFTER_UNREACHABLE = ("credentials", "clock", "group", "heartbeat")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Answer(Generic[T]):
    value: T | None
    error: ProviderError | TransportError | None
    seconds: float


class _GroupDoctor:
    def __init__(
        self,
        group: GroupConfig,
        runtime_dir: str | None,
        transport: Transport,
        clock: Clock,
        timeout: float,
        network: Network,
    ) -> None:
        self.group = group
        self.network = network
        self.runtime_dir = runtime_dir
        self.transport = transport
        self.clock = clock
        self.timeout = timeout
        self.service = service(group.provider)
        self.provider = self.service.make_provider(group)
        self.credentials: Credentials | None = group.credentials  # a credential source fills it in
        self.server_clock = ServerClock()
        self.clock_seen = False
        self.date_refused: str | None = None  # the last Date header the parser refused, if any
        self.checks: list[Check] = []

    def add(self, status: Status, name: str, detail: str) -> None:
        # Belt and braces: no server should echo a secret, but the one redaction point masks any.
        detail = redact(detail)
        self.checks.append(Check(status, self.group.label, name, detail))

    def run(self, warnings: Sequence[Problem], heartbeat: bool) -> list[Check]:
        status, detail = config_verdict(self.group, warnings)
        self.add(status, "config", detail)
        locks, running_here = self.check_instance(heartbeat)
        try:
            source_ok = self.check_source()
            if not self.check_endpoint():
                for name in _AFTER_UNREACHABLE:
                    self.add("WARN", name, "not checked: the endpoint gave no HTTP answer")
                return self.checks
            if not source_ok:
                for name in _AFTER_UNREACHABLE:
                    self.add("WARN", name, "not checked: the credential source gave no key")
                return self.checks
            read = self.signed(self.provider.describe_group_request, self.provider.parse_describe_group)
            self.check_credentials(read)
            offset = self.server_clock.offset if self.clock_seen else None
            clock_status, clock_detail = clock_verdict(self.group.provider, offset, self.date_refused)
            self.add(clock_status, "clock", clock_detail)
            group_ok = self.check_group(read)
            self.check_heartbeat(heartbeat, read, group_ok, running_here)
        finally:
            if locks is not None:
                locks.release()
        return self.checks

    def check_instance(self, heartbeat: bool) -> tuple[InstanceLocks | None, bool]:
        """Take this consumer's instance lock: could `run` start here, and does one run already?

        With `heartbeat` the lock is kept until the group's checks end, so a `run` starting meanwhile
        does not heartbeat as the same consumer at the same moment (it is refused and says why).
        """
        try:
            locks = acquire_instance_locks([self.group], self.runtime_dir)
        except InstanceLockHeld as exc:
            pid = "pid unknown" if exc.pid is None else f"pid {exc.pid}"
            self.add("PASS", "instance", f"a shardbeat ({pid}) runs this consumer on this machine")
            return None, True
        except InstanceLockError as exc:
            self.add("FAIL", "instance", f"{exc} (`shardbeat run` would exit 2)")
            return None, False
        self.add(
            "PASS", "instance", f"free: no shardbeat using lock dir {locks.runtime_dir} runs this consumer"
        )
        if heartbeat:
            return locks, False
        locks.release()
        return None, False

    def check_source(self) -> bool:
        """With credentials.source other than static: fetch a key now and say who answered, until when."""
        spec = self.group.credential_source
        if spec is None:
            return True
        limit = (self.timeout, self.timeout)  # --call-timeout bounds each metadata/STS request too
        source = RefreshingCredentials(
            spec,
            self.clock,
            lambda: DefaultSessions(
                lambda: make_session(self.network), metadata_timeout=limit, sts_timeout=limit
            ),
        )
        start = self.clock.monotonic()
        try:
            source.fetch_once()
        except FetchError as exc:
            self.add("FAIL", "source", f"{spec.describe()}: {exc} -> {source_hint(spec.kind)}")
            return False
        status = source.status()
        self.credentials = source.current()
        seconds = self.clock.monotonic() - start
        if status.expires_wall is None:
            until = "no expiry"
        else:
            left = status.expires_wall - self.clock.wall()
            until = f"expires {rfc3339(status.expires_wall)} (in {left / 60:.0f} min; refreshed before then)"
        self.add("PASS", "source", f"{spec.kind}: {status.answered_by} answered in {ms(seconds)}; {until}")
        return True

    def check_endpoint(self) -> bool:
        endpoint = self.provider.endpoint
        where = f"{endpoint.scheme}://{endpoint.host}:{endpoint.port}"
        try:
            route = self.network.route_to(endpoint)
        except NetworkError as exc:
            self.add("FAIL", "endpoint", f"{where}: {exc}")
            return False
        proxy = route.proxy
        # Through a proxy, the proxy is what this host must resolve and reach; it resolves the endpoint.
        host, port = (proxy.host, proxy.port) if proxy is not None else (endpoint.host, endpoint.port)
        where += f" {route.shown}"
        if endpoint.scheme == "https":
            where += f", TLS verified against {self.network.trust}"
        of = " of the proxy" if proxy is not None else ""
        step = f"DNS{of}"
        try:
            start = self.clock.monotonic()
            addresses = reach.resolve(host, port, self.timeout)
            resolved = self.clock.monotonic()
            step = f"TCP connect{of}"
            address = reach.connect(addresses, self.timeout)
            connected = self.clock.monotonic()
            step = "HTTP"
            # Unsigned: any HTTP answer at all shows the endpoint speaks HTTP(S) to us.
            headers = (("Host", endpoint.host_header), ("User-Agent", f"shardbeat/{__version__}"))
            sent_wall = self.clock.wall()
            response = self.transport.send(
                endpoint, HttpRequest("GET", "/", headers, b""), connected + self.timeout
            )
            answered = self.clock.monotonic()
        except TransportError as exc:
            fix = transport_hint(exc)
            if proxy is not None and step != "HTTP":
                fix = f"the proxy is unreachable: check {route.reason} (and NO_PROXY)"
            self.add("FAIL", "endpoint", f"{where}: {step} failed: {exc.message} -> {fix}")
            return False
        self.observe_clock(response, sent_wall)
        self.add(
            "PASS",
            "endpoint",
            f"{where}: answers: DNS{of} {ms(resolved - start)}, TCP connect to {address} "
            f"{ms(connected - resolved)}, HTTP {response.status} in {ms(answered - connected)}",
        )
        return True

    # -- signed calls

    def heartbeat_request(self, now: float, credentials: Credentials) -> HttpRequest:
        return self.provider.heartbeat_request({}, now, credentials)

    def observe_clock(self, response: HttpResponse, sent_wall: float) -> None:
        value = response.headers.get("date")
        server = server_values.http_date(value)  # a malformed or absurd Date is ignored
        if server is None and value:
            self.date_refused = value
        if server is not None:
            self.server_clock.observe(server, sent_wall, self.clock.wall())
            self.clock_seen = True

    def signed(
        self, build: Callable[[float, Credentials], HttpRequest], parse: Callable[[HttpResponse], T]
    ) -> _Answer[T]:
        """One call signed with server-corrected time, as `run` signs; re-signed once on a clock refusal."""
        for attempt in (1, 2):
            sent_wall = self.clock.wall()
            start = self.clock.monotonic()
            assert self.credentials is not None  # check_source ran first
            request = build(self.server_clock.now(sent_wall), self.credentials)
            try:
                response = self.transport.send(self.provider.endpoint, request, start + self.timeout)
            except TransportError as exc:
                return _Answer(None, exc, self.clock.monotonic() - start)
            seconds = self.clock.monotonic() - start
            self.observe_clock(response, sent_wall)
            try:
                return _Answer(parse(response), None, seconds)
            except ProviderError as exc:
                if attempt == 1 and self.clock_seen and classify(self.group.provider, exc) == "clock":
                    continue
                return _Answer(None, exc, seconds)
        raise AssertionError("unreachable")

    def failure(self, error: ProviderError | TransportError, action: str) -> str:
        if isinstance(error, TransportError):
            return f"no answer ({error.code}: {error.message}) -> {transport_hint(error)}"
        status = f"HTTP {error.status} " if error.status not in (None, 200) else ""
        return f"{status}{error.code}: {error.message} -> {hint(self.group.provider, error, action)}"

    # -- what the answers say

    def check_credentials(self, read: _Answer[ServerGroup | None]) -> None:
        key = shown_key(self.credentials.key_id if self.credentials is not None else "?")
        action = self.service.doctor.read_action
        error = read.error
        if error is None:
            self.add("PASS", "credentials", f"key {key} accepted ({action} answered in {ms(read.seconds)})")
        elif isinstance(error, TransportError):
            self.add("FAIL", "credentials", f"{action}: {self.failure(error, 'list')}")
        elif (kind := classify(self.group.provider, error)) == "auth":
            self.add("FAIL", "credentials", f"key {key} refused: {self.failure(error, 'list')}")
        elif kind in ("denied", "missing") and error.code not in self.service.doctor.answered_before_auth:
            self.add(
                "PASS", "credentials", f"key {key} accepted (checked before {action} answered {error.code})"
            )
        else:  # e.g. SLS answers ProjectNotExist before it looks at the signature
            self.add("WARN", "credentials", f"not checked: {action} answered {error.code} first")

    def check_group(self, read: _Answer[ServerGroup | None]) -> bool | None:
        """Is the group there and fit to heartbeat in (None: could not tell)?"""
        g = self.group
        error = read.error
        if error is not None:
            kind = classify(g.provider, error) if isinstance(error, ProviderError) else None
            if kind in ("denied", "missing"):
                self.add("FAIL", "group", self.failure(error, "list"))
                return False if kind == "missing" else None  # a denied read says nothing of heartbeats
            why = {
                "auth": "the credentials were refused",
                "clock": "the clock was refused",
                None: "no answer",
            }
            self.add("WARN", "group", f"not checked: {why.get(kind, f'the read answered {error.code}')}")
            return None
        found = read.value
        status, detail = group_verdict(g, found, self.service.group_home(g))
        self.add(status, "group", detail)
        return status != "FAIL" and found is not None

    def check_heartbeat(
        self,
        heartbeat: bool,
        read: _Answer[ServerGroup | None],
        group_ok: bool | None,
        running: bool,
    ) -> None:
        g = self.group
        if not heartbeat:
            joins = f"it joins the group as {g.consumer}, which makes the server rebalance"
            self.add("WARN", "heartbeat", f"not checked (use --heartbeat; {joins})")
            return
        refused = isinstance(read.error, ProviderError) and classify(g.provider, read.error) == "auth"
        reasons = [
            (running, "a shardbeat runs this consumer here; its own heartbeats are the test (see its log)"),
            (refused, "the credentials were refused"),
            (group_ok is False, "the group check failed"),
        ]
        reason = next((text for applies, text in reasons if applies), None)
        if reason is not None:
            self.add("WARN", "heartbeat", f"not sent: {reason}")
            return
        beat = self.signed(self.heartbeat_request, self.provider.parse_heartbeat)
        if beat.error is not None:
            self.add(
                "FAIL", "heartbeat", f"as consumer {g.consumer}: {self.failure(beat.error, 'heartbeat')}"
            )
            return
        self.add(
            "PASS",
            "heartbeat",
            f"accepted for consumer {g.consumer} in {ms(beat.seconds)}, assigned {_shown(beat.value or {})}; "
            "it stays a member until the group's timeout passes without heartbeats",
        )


def _shown(assigned: ShardMap) -> str:
    parts = [
        f"{topic} [{', '.join(map(str, sorted(ids)))}]" for topic, ids in sorted(assigned.items()) if ids
    ]
    return "; ".join(parts) or "nothing"


def _group_warnings(warnings: Sequence[Problem], index: int) -> list[Problem]:
    prefix = f"groups[{index}]"
    return [w for w in warnings if w.path == prefix or w.path.startswith((prefix + ".", prefix + "["))]


def diagnose(
    loaded: LoadedConfig,
    *,
    heartbeat: bool = False,
    transport: Transport | None = None,
    clock: Clock | None = None,
    call_timeout: float = CALL_TIMEOUT,
    on_check: Callable[[Check], None] | None = None,
) -> list[Check]:
    """Every check of every group, in order; `on_check` sees each as soon as its group is done."""
    config = loaded.config
    clock = clock or Clock()
    own_transport = transport is None
    network = Network.of(config)
    used = transport or RequestsTransport(network=network)
    checks: list[Check] = []

    def emit(new: Sequence[Check]) -> None:
        checks.extend(new)
        if on_check is not None:
            for check in new:
                on_check(check)

    emit(
        [
            Check("WARN", "(config)", "config", str(w))
            for w in loaded.warnings
            if not w.path.startswith("groups[")
        ]
    )
    budget = rate_budget(config.groups)
    try:
        for index, group in enumerate(config.groups):
            doctor = _GroupDoctor(group, config.runtime_dir, used, clock, call_timeout, network)
            found = doctor.run(_group_warnings(loaded.warnings, index), heartbeat)
            emit([*found, budget[index]] if index in budget else found)
    finally:
        if own_transport:
            used.close()
    return checks


def summary(checks: Sequence[Check], groups: int) -> str:
    counts = {status: sum(c.status == status for c in checks) for status in ("PASS", "WARN", "FAIL")}
    return f"summary: {groups} group(s): {counts['PASS']} PASS, {counts['WARN']} WARN, {counts['FAIL']} FAIL"


def run_doctor(
    loaded: LoadedConfig,
    out: TextIO,
    *,
    heartbeat: bool = False,
    transport: Transport | None = None,
    clock: Clock | None = None,
    call_timeout: float = CALL_TIMEOUT,
) -> int:
    """Print every check, then a summary, to `out`; 0 when nothing FAILed, else 1."""

    def show(check: Check) -> None:
        print(check.line(), file=out, flush=True)

    checks = diagnose(
        loaded,
        heartbeat=heartbeat,
        transport=transport,
        clock=clock,
        call_timeout=call_timeout,
        on_check=show,
    )
    print(summary(checks, len(loaded.config.groups)), file=out, flush=True)
    return 1 if any(c.status == "FAIL" for c in checks) else 0
