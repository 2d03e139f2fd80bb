"""What a request is, as far as fault rules and the heartbeat log care: service, action, group, consumer.

Each service module describes a request cheaply (before verifying it), so that a fault can hit a
request the signature check would reject, as a network fault would.
"""

from __future__ import annotations

from dataclasses import dataclass

SLS = "sls"
CLS = "cls"
HEARTBEAT_ALIAS = "heartbeat"  # matches SLS HeartBeat and CLS SendConsumerHeartbeat in fault rules


@dataclass(frozen=True, slots=True)
class Call:
    service: str  # SLS | CLS
    action: str  # SLS: HeartBeat, CreateConsumerGroup, ...; CLS: the X-TC-Action value
    scope: str | None = None  # SLS "project/logstore", CLS LogsetId
    group: str | None = None
    consumer: str | None = None
    held: dict[str, list[int]] | None = None  # heartbeats: the claim, {topic: sorted ids}
    is_heartbeat: bool = False
    fault: str | None = None  # the injected fault's effect when one hit this request
    # commits (SLS UpdateCheckPoint, CLS CommitConsumerOffsets): the values, {topic: {"<shard>": value}}
    checkpoints: dict[str, dict[str, str | int]] | None = None

    @property
    def logged(self) -> bool:
        """Heartbeats and commits go to the log the ownership checker reads."""
        return self.is_heartbeat or self.checkpoints is not None
