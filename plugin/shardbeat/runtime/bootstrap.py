"""Group bootstrap, once per group before its first heartbeat: does the consumer group exist, and with
which timeout? Optionally create it, or bring its timeout in line.

The server's timeout is what decides when our shards move, so a lease computed from a different
configured value would be wrong: when they differ and `update_group` is off, we warn and lease by the
server's value. A read that is refused (a RAM/CAM policy may grant the heartbeat action alone) is not
fatal: we warn and heartbeat with the configured timeout, and the heartbeat reports any real problem.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shardbeat.core.schedule import Retry
from shardbeat.providers.base import Credentials, HttpRequest, HttpResponse, Provider, ProviderError
from shardbeat.runtime.transport import Transport, TransportError

if TYPE_CHECKING:
    from shardbeat.config import GroupConfig

log = logging.getLogger("shardbeat.bootstrap")

GROUP_MISSING = "ConsumerGroupNotExist"


@dataclass(frozen=True, slots=True)
class Outcome:
    """done: heartbeats may start (timeout: the server's, when known); else `failure` says why not yet."""

    done: bool
    timeout: int | None = None
    failure: ProviderError | None = None
    answer: HttpResponse | None = None  # the last answer, for the clock offset


def run_bootstrap(
    group: GroupConfig,
    provider: Provider,
    transport: Transport,
    credentials: Credentials,
    server_now: Callable[[], float],
    deadline: float,
) -> Outcome:
    answer: HttpResponse | None = None

    def call(build: Callable[[float, Credentials], HttpRequest]) -> HttpResponse:
        nonlocal answer
        try:
            answer = transport.send(provider.endpoint, build(server_now(), credentials), deadline)
        except TransportError as exc:
            raise ProviderError(exc.code, exc.describe(provider.endpoint), retry=Retry.FAST) from None
        return answer

    label = group.label
    try:
        found = provider.parse_describe_group(call(provider.describe_group_request))
        if found is None:
            if not group.create_group:
                return Outcome(
                    False,
                    failure=ProviderError(
                        GROUP_MISSING,
                        f"consumer group {group.consumer_group} does not exist; "
                        "create it or set create_group: true",
                        retry=Retry.SLOW,
                    ),
                    answer=answer,
                )
            timeout = _whole(group.timeout)
            try:
                provider.parse_setup_group(
                    call(lambda now, c: provider.setup_group_request(timeout, True, now, c))
                )
            except ProviderError as exc:
                if "already" not in f"{exc.code} {exc.message}".lower():
                    raise
                # Another node created it between our read and our create: take it as it is.
                plain = dataclasses.replace(group, create_group=False)
                return run_bootstrap(plain, provider, transport, credentials, server_now, deadline)
            log.warning("%s: created consumer group with timeout %ds", label, timeout)
            return Outcome(True, timeout, answer=answer)
        if found.reported_timeout is not None:
            log.warning(
                "%s: the server reports a group timeout of %ds; leasing by at most %ds",
                label,
                found.reported_timeout,
                found.timeout,
            )
        if found.timeout == group.timeout:
            log.info("%s: consumer group found (timeout %ds, %s)", label, found.timeout, found.detail)
            return Outcome(True, found.timeout, answer=answer)
        if group.update_group:
            timeout = _whole(group.timeout)
            provider.parse_setup_group(
                call(lambda now, c: provider.setup_group_request(timeout, False, now, c))
            )
            log.warning("%s: consumer group timeout changed from %ds to %ds", label, found.timeout, timeout)
            return Outcome(True, timeout, answer=answer)
        log.warning(
            "%s: the consumer group's timeout is %ds on the server but %gs here; leasing by the server's "
            "(set timeout to match, or update_group: true to change the server's)",
            label,
            found.timeout,
            group.timeout,
        )
        return Outcome(True, found.timeout, answer=answer)
    except ProviderError as exc:
        if exc.retry is Retry.SLOW and not exc.credentials_rejected:
            log.warning(
                "%s: cannot check the consumer group (%s: %s); heartbeating with the configured timeout",
                label,
                exc.code,
                exc.message,
            )
            return Outcome(True, None, answer=answer)
        return Outcome(False, failure=exc, answer=answer)


def _whole(seconds: float) -> int:
    """Services take whole seconds; round up so the server never drops us before our lease ends."""
    whole = int(seconds)
    return whole if whole == seconds else whole + 1
