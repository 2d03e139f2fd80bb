"""Temporary keys kept fresh by a thread of their own, so a slow or hung metadata/STS server never
delays a heartbeat or the lease watchdog.

One RefreshingCredentials per distinct source (groups configured alike share it, so a hundred groups
on one ECS role make one metadata call per refresh). Heartbeats read the key in hand under a lock,
never waiting, unless no usable key exists at all: then they wait at most until their own call
deadline for the first fetch, and fail with CredentialsUnavailable.

The schedule is core.credential_refresh (2/3 of the lifetime or 3 minutes before the end, failed
attempts retried with a capped backoff while the old key is kept). A failure is logged and reported
to the runner (an `error` record per group, source "credentials"), naming the source, never a secret.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shardbeat.config.credential_sources import SourceSpec
from shardbeat.core.credential_refresh import DEFAULT_POLICY, Held, RefreshPolicy
from shardbeat.core.records import rfc3339
from shardbeat.providers.base import Credentials, ProviderError, Retry
from shardbeat.runtime.clock import Clock
from shardbeat.runtime.cloud_credentials import DefaultSessions, FetchError, Issued, SessionsFactory, fetch

if TYPE_CHECKING:
    from shardbeat.config import GroupConfig

log = logging.getLogger("shardbeat.credentials")

MAX_WAIT = 60.0  # the refresher wakes at least this often (a key without expiry has no due time)


class CredentialsUnavailable(ProviderError):
    """No usable key: the source has not answered yet, or the last key expired without a successor."""

    def __init__(self, message: str) -> None:
        super().__init__("CredentialsUnavailable", message, retry=Retry.FAST)


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """For doctor and logs: who answered last and until when the key is good."""

    source: str
    answered_by: str | None
    expires_wall: float | None  # epoch seconds (local clock); None: no expiry or no key
    last_error: str | None


FailureReport = Callable[["RefreshingCredentials", str, float], None]  # (source, message, retry in s)


class RefreshingCredentials:
    def __init__(
        self,
        spec: SourceSpec,
        clock: Clock | None = None,
        sessions: SessionsFactory | None = None,
        on_failure: FailureReport | None = None,
        policy: RefreshPolicy = DEFAULT_POLICY,
    ) -> None:
        self.spec = spec
        self.name = spec.describe()
        self._clock = clock or Clock()
        self._sessions = (sessions or DefaultSessions)()
        self._on_failure = on_failure
        self._cond = threading.Condition()
        self._held: Held[Credentials] = Held(policy=policy)
        self._answered_by: str | None = None
        self._expires_wall: float | None = None
        self._stopping = False
        self._expiry_logged = False
        self._thread = threading.Thread(target=self._run, name="shardbeat-credentials", daemon=True)

    # -- the heartbeat side (worker threads)

    def current(self, deadline: float | None = None) -> Credentials:
        """The key in hand; without one, wait for the refresher until `deadline` (monotonic), then raise."""
        with self._cond:
            while True:
                now = self._clock.monotonic()
                key = self._held.usable(now)
                if key is not None:
                    return key
                if deadline is None or now >= deadline or self._stopping:
                    raise CredentialsUnavailable(self._unavailable())
                self._cond.wait(deadline - now)

    def _unavailable(self) -> str:
        held = self._held
        state = "its last key expired" if held.key is not None else "no key yet"
        reason = f": {held.last_error}" if held.last_error else " (a fetch is in progress)"
        return f"credentials from {self.name}: {state}{reason}"

    def refresh(self) -> None:
        """Fetch soon (the server rejected the key, or SIGHUP): see Held.refresh_now."""
        with self._cond:
            self._held = self._held.refresh_now(self._clock.monotonic())
            self._cond.notify_all()

    def status(self) -> SourceStatus:
        with self._cond:
            return SourceStatus(self.name, self._answered_by, self._expires_wall, self._held.last_error)

    # -- lifecycle

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        # A fetch in flight is bounded by its own timeouts; the thread is a daemon, so do not wait.

    def fetch_once(self) -> None:
        """One fetch on the caller's thread (doctor, tests). Raises FetchError."""
        self._apply(fetch(self.spec, self._sessions))

    # -- the refresher thread

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._stopping:
                        now = self._clock.monotonic()
                        self._note_expiry(now)
                        wait = self._held.next_attempt - now
                        if wait <= 0:
                            break
                        if self._held.expires is not None and not self._expiry_logged:
                            wait = min(wait, max(0.0, self._held.expires - now))
                        self._cond.wait(min(wait, MAX_WAIT))
                    if self._stopping:
                        return
                try:
                    self._apply(fetch(self.spec, self._sessions))
                except FetchError as exc:
                    self._failed(str(exc))
                except Exception as exc:  # a bug must not end refreshing for good
                    log.exception("credentials %s: internal error while refreshing", self.name)
                    self._failed(f"internal error: {type(exc).__name__}")
        finally:
            self._sessions.close()

    def _apply(self, issued: Issued) -> None:
        now, wall = self._clock.monotonic(), self._clock.wall()
        lifetime = issued.lifetime(wall)
        if lifetime is not None and lifetime <= self._held.policy.safety:
            # Taking it would make every heartbeat fail while we think all is well.
            self._failed(f"{issued.answered_by} answered with a key that expires in {lifetime:.0f}s")
            return
        with self._cond:
            recovered = self._held.failures > 0
            first = self._held.key is None
            self._held = self._held.fetched(
                issued.credentials, now, None if lifetime is None else now + lifetime
            )
            self._answered_by = issued.answered_by
            self._expires_wall = None if lifetime is None else wall + lifetime
            self._expiry_logged = False
            self._cond.notify_all()
        until = "no expiry" if lifetime is None else f"expires {rfc3339(wall + lifetime)}"
        level = logging.INFO if first or recovered else logging.DEBUG
        log.log(level, "credentials %s: key from %s (%s)", self.name, issued.answered_by, until)

    def _failed(self, error: str) -> None:
        with self._cond:
            now = self._clock.monotonic()
            self._held = self._held.failed(now, error)
            held = self._held
            retry_in = held.next_attempt - now
        if held.key is not None and held.usable(now) is not None and held.expires is not None:
            keeping = f"keeping the current key for another {held.expires - now:.0f}s"
        else:
            keeping = "no usable key: heartbeats fail until the source answers"
        streak = held.failures
        level = logging.ERROR if streak & (streak - 1) == 0 else logging.DEBUG
        log.log(
            level,
            "credentials %s: refresh failed (%s); %s; retrying in %.1fs",
            self.name,
            error,
            keeping,
            retry_in,
        )
        if self._on_failure is not None:
            self._on_failure(self, f"refresh from {self.name} failed: {error}; {keeping}", retry_in)

    def _note_expiry(self, now: float) -> None:
        """Caller holds the lock: say once when the key in hand runs out with no successor."""
        held = self._held
        if held.key is not None and held.usable(now) is None and not self._expiry_logged:
            self._expiry_logged = True
            log.error("credentials %s: the key expired and no new one could be fetched", self.name)


class CredentialPool:
    """The refreshing sources of a process, one per distinct spec, and which groups use each."""

    def __init__(
        self,
        groups: Sequence[GroupConfig],
        clock: Clock | None = None,
        sessions: SessionsFactory | None = None,
        on_failure: FailureReport | None = None,
        policy: RefreshPolicy = DEFAULT_POLICY,
    ) -> None:
        self.by_spec: dict[SourceSpec, RefreshingCredentials] = {}
        self.users: dict[SourceSpec, list[int]] = {}
        for index, group in enumerate(groups):
            spec = group.credential_source
            if spec is None:
                continue
            if spec not in self.by_spec:
                self.by_spec[spec] = RefreshingCredentials(spec, clock, sessions, on_failure, policy)
            self.users.setdefault(spec, []).append(index)

    def for_group(self, group: GroupConfig) -> RefreshingCredentials | None:
        spec = group.credential_source
        return None if spec is None else self.by_spec[spec]

    def start(self) -> None:
        for source in self.by_spec.values():
            source.start()

    def close(self) -> None:
        for source in self.by_spec.values():
            source.close()
