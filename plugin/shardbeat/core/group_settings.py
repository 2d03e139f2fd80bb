"""What a GroupDriver is given: its group's settings and keys, and what it hands back (Emit)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shardbeat.core.group_checkpoints import CheckpointSettings
from shardbeat.core.records import Record
from shardbeat.core.shards import ShardMap
from shardbeat.core.wire import Credentials


class Settings(Protocol):
    """What the driver reads of a group's config (config/model.py GroupConfig)."""

    @property
    def label(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def consumer_group(self) -> str: ...
    @property
    def consumer(self) -> str: ...
    @property
    def heartbeat_interval(self) -> float: ...
    @property
    def timeout(self) -> float: ...
    @property
    def lease_margin(self) -> float | None: ...
    @property
    def margin(self) -> float: ...
    @property
    def release(self) -> str: ...
    @property
    def release_grace(self) -> float | None: ...
    @property
    def create_group(self) -> bool: ...
    @property
    def update_group(self) -> bool: ...
    @property
    def checkpoints(self) -> CheckpointSettings | None: ...


class Keys(Protocol):
    def current(self, deadline: float | None = None) -> Credentials:
        """The key in hand; raises ProviderError (CredentialsUnavailable) when there is none."""
        ...

    def refresh(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Emit:
    """A record for stdout; `release`: revoked shards to stop claiming once it is written."""

    record: Record
    release: ShardMap | None = None
