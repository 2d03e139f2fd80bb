"""The doctor's judgments, pure: config, clock offset, server-side group vs config, rate budget (CLS).

Each takes plain values (what the network part measured) and returns a status and a detail line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from shardbeat.config import GroupConfig, Problem
from shardbeat.core.skew import WARN_ABOVE
from shardbeat.providers.base import ServerGroup
from shardbeat.providers.server_values import text
from shardbeat.providers.services import service

Status = Literal["PASS", "WARN", "FAIL"]
Verdict = tuple[Status, str]

_NTP = "fix this host's time sync (NTP, chrony)"


@dataclass(frozen=True, slots=True)
class Check:
    status: Status
    subject: str  # the group's label, or "(config)"
    name: str  # config, instance, endpoint, credentials, clock, group, heartbeat, rate budget
    detail: str

    def line(self) -> str:
        return f"{self.status}  {self.subject}  {self.name}: {self.detail}"


def ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:.1f} ms" if value < 10 else f"{value:.0f} ms"


def shown_key(key_id: str) -> str:
    """Key ids are not secret, but there is no need to print one whole either."""
    return key_id if len(key_id) <= 8 else f"{key_id[:4]}...{key_id[-4:]}"


def config_verdict(group: GroupConfig, warnings: Sequence[Problem]) -> Verdict:
    """The timing in force (the loader already refused impossible ones), plus the loader's warnings."""
    lease = group.timeout - group.margin
    detail = (
        f"interval {group.heartbeat_interval:g} s, timeout {group.timeout:g} s, lease margin "
        f"{group.margin:g} s: {lease / group.heartbeat_interval:.1f} intervals per lease"
    )
    if warnings:
        return "WARN", detail + "; " + "; ".join(str(w) for w in warnings)
    return "PASS", detail


def clock_verdict(provider: str, offset: float | None, refused: str | None = None) -> Verdict:
    """`offset`: seconds to add to this host's clock to get the server's (core.skew.ServerClock), which
    is 0 when within its noise; None when no answer carried a usable Date header (`refused`: the last
    one the parser refused, as malformed or outside 2000-2099)."""
    if offset is None:
        if refused is not None:
            shown = text(refused, 64)
            return "WARN", f"offset unknown: the server's Date header {shown!r} is malformed or implausible"
        return "WARN", "offset unknown: no answer carried a Date header"
    described = service(provider)
    window = described.clock_window  # how far off a signature's time may be
    how_far = (
        f"this host's clock is {abs(offset):.0f} s {'behind' if offset > 0 else 'ahead of'} the server's"
    )
    limit = f"{described.title} refuses signatures more than {window / 60:.0f} min off"
    if abs(offset) > window:
        return "FAIL", f"{how_far}: {limit} (shardbeat corrects after the first answer); {_NTP}"
    if abs(offset) > WARN_ABOVE:
        return "WARN", f"{how_far} ({limit}); {_NTP}"
    if offset:
        return "PASS", how_far
    return "PASS", "agrees with the server's within 2 s"


def group_verdict(group: GroupConfig, found: ServerGroup | None, where: str) -> Verdict:
    """The configured group vs what the service says about it (`found` None: not there)."""
    name = group.consumer_group
    if found is None:
        if group.create_group:
            return "WARN", (
                f"{name} does not exist in {where}; create_group is on: "
                f"shardbeat will create it with timeout {group.timeout:g} s"
            )
        return "FAIL", f"{name} does not exist in {where}: create it, or set create_group: true"
    notes = [f"{name} exists: timeout {found.timeout} s, {found.shape}"]
    status: Status = "PASS"
    timeout_differs = found.timeout != group.timeout
    if timeout_differs:
        notes.append(f"the config says timeout {group.timeout:g} s")
    configured = set(group.topics or ())
    absent = sorted(configured - set(found.topics)) if found.topics is not None else []
    extra = sorted(set(found.topics) - configured) if found.topics is not None else []
    if absent:
        notes.append(f"configured topics {', '.join(absent)} are not in the group (never assigned)")
    if group.update_group:
        if timeout_differs or absent or extra:
            if extra:
                notes.append(f"the group also has topics {', '.join(extra)}")
            notes.append(
                "update_group is on: shardbeat will change the server's group to the config at start"
            )
    else:
        if extra:
            status = "FAIL"
            notes.append(
                f"the group also has topics {', '.join(extra)}, which the config lacks: their partitions "
                "would be assigned here and every heartbeat refused (UnknownTopic); add them to topics"
            )
        if timeout_differs:
            notes.append(
                f"the lease will follow the server's {found.timeout} s (set timeout to {found.timeout}, "
                "or update_group: true to change the server's)"
            )
            if group.heartbeat_interval >= found.timeout:
                status = "FAIL"
                notes.append(
                    f"the interval ({group.heartbeat_interval:g} s) is not below it: the server would "
                    "drop this consumer between heartbeats"
                )
    if len(notes) > 1 and status == "PASS":
        status = "WARN"
    return status, "; ".join(notes)


def _shown_source(label: str) -> str:
    """A key id shortened, or a credential source's description as it is (it holds no secret)."""
    return label if " (" in label else f"key {shown_key(label)}"


def rate_budget(groups: Sequence[GroupConfig]) -> dict[int, Check]:
    """Requests per second on each key (heartbeats, and checkpoint commits) vs the per-account limit
    of a service that has one (CLS), as a check for each of its groups."""
    per_key: dict[tuple[str, str], list[int]] = {}
    for index, group in enumerate(groups):
        if service(group.provider).rate_limit is not None:
            per_key.setdefault((group.provider, group.credential_label), []).append(index)
    checks: dict[int, Check] = {}
    for (provider, key_id), indexes in per_key.items():
        described = service(provider)
        limit = described.rate_limit
        assert limit is not None
        rate = sum(groups[i].request_rate for i in indexes)
        share = rate / limit
        status: Status = "FAIL" if share > 1 else "WARN" if share > 0.5 else "PASS"
        what = "heartbeats and commits" if any(groups[i].checkpoints for i in indexes) else "heartbeats"
        detail = (
            f"{rate:.2f} {what}/s from {len(indexes)} group(s) on {_shown_source(key_id)} in this "
            f"config: {share:.0%} of {described.title}'s {limit:g}/s per account (other processes count too)"
        )
        if status != "PASS":
            detail += "; raise heartbeat_interval (or commit_interval) or spread the groups over accounts"
        for i in indexes:
            checks[i] = Check(status, groups[i].label, "rate budget", detail)
    return checks
