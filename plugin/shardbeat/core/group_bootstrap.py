"""A group's bootstrap (part of GroupDriver): before the first heartbeat, find the consumer group
(core/calls.py `bootstrap`), lease by the server's timeout, and fit the interval to it.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import TYPE_CHECKING

from shardbeat.core.calls import Answer, Bootstrapped, GroupPlan, Step, bootstrap
from shardbeat.core.interval_fit import fitted_interval
from shardbeat.core.lease import Lease, default_margin
from shardbeat.core.records import Instant
from shardbeat.core.schedule import Pacer, call_budget
from shardbeat.core.wire import Credentials, ProviderError

if TYPE_CHECKING:
    from shardbeat.core.driver import GroupDriver
    from shardbeat.core.group_settings import Keys, Settings
    from shardbeat.core.membership import Membership

log = logging.getLogger("shardbeat.runner")

KEY_WAIT_STEP = 0.05  # no key yet from a credential source: look again this soon, silently
FIRST_KEY_WAIT = 5.0  # seconds the first key may take before the bootstrap reports it missing


class BootstrapRules:
    """Mixed into GroupDriver (core/driver.py), whose state these rules read and write."""

    if not TYPE_CHECKING:  # no dict per driver (GroupDriver lists the slots); mypy checks the driver's
        __slots__ = ()

    # The driver's state these rules use (set by GroupDriver.__init__).
    config: Settings
    credentials: Keys
    membership: Membership
    pacer: Pacer
    bootstrapped: bool
    in_flight: bool
    stopping: bool
    due_at: float
    interval: float
    timeout: float
    key_wait_until: float | None
    had_key: bool  # a key was in hand once (or the first wait is spent)

    def _driver(self) -> GroupDriver:
        return self  # type: ignore[return-value]

    def _keys(self, at: Instant, budget: float) -> Credentials | None:
        """The key in hand; None while a credential source's key is still on its way (then a look
        again is scheduled, without a record: for the first key up to FIRST_KEY_WAIT, since a metadata
        or STS answer may take longer than a short interval's call budget and the source reports its
        own failures; after that, up to one call budget)."""
        try:
            key = self.credentials.current()
        except ProviderError:
            if self.key_wait_until is None:
                first = not self.had_key
                self.key_wait_until = at.mono + (max(budget, FIRST_KEY_WAIT) if first else budget)
                self.had_key = True  # (the long wait is granted once)
            if at.mono < self.key_wait_until:
                self.in_flight = False
                self.due_at = at.mono + KEY_WAIT_STEP
                return None
            self.key_wait_until = None
            raise
        self.key_wait_until = None
        self.had_key = True
        return key

    def _bootstrap(self, at: Instant) -> Generator[Step, Answer, None]:
        deadline = at.mono + call_budget(self.interval, None)
        try:
            credentials = self._keys(at, deadline - at.mono)
        except ProviderError as exc:  # no key from the credential source in time
            self.in_flight = False
            self._driver()._on_failure(exc, at, source="bootstrap")
            return
        if credentials is None:
            return
        config = self.config
        plan = GroupPlan(
            config.label, config.consumer_group, config.timeout, config.create_group, config.update_group
        )
        outcome = yield from bootstrap(self._driver(), plan, credentials, at, deadline)
        self._bootstrapped(outcome)

    def _bootstrapped(self, outcome: Bootstrapped) -> None:
        self.in_flight = False
        at = outcome.at
        if self.stopping or at is None:
            return
        if outcome.done:
            self.bootstrapped = True
            if outcome.timeout is not None and outcome.timeout != self.timeout:
                self.use_server_timeout(outcome.timeout)
                self._fit_interval(at.mono)
            self.due_at = at.mono
        elif outcome.failure is not None:
            self._driver()._on_failure(outcome.failure, at, source="bootstrap")

    def use_server_timeout(self, timeout: float) -> None:
        """Lease by the group's real timeout (the server's clock is what matters). Before joining only."""
        margin = self.config.lease_margin
        if margin is None or margin >= timeout:
            margin = default_margin(timeout)
        self.timeout = timeout
        self.membership.lease = Lease(timeout, margin)

    def _fit_interval(self, now: float) -> None:
        """Never flap: an interval the server's timeout cannot carry is lowered until it fits."""
        lease = self.membership.lease
        fitted = fitted_interval(self.interval, lease.timeout, lease.margin)
        if fitted is None:
            return
        log.warning(
            "%s: heartbeat_interval %gs does not fit the server's group timeout %gs (lease %gs after the "
            "margin): beating every %gs instead; lower heartbeat_interval, or set update_group: true to "
            "give the group the configured timeout",
            self.config.label,
            self.interval,
            lease.timeout,
            lease.timeout - lease.margin,
            fitted,
        )
        self.interval = fitted
        self.pacer = Pacer.create(fitted, now, self.pacer.fast.rng)
