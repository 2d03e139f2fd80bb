"""Which provider module serves a group."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shardbeat.providers.base import Provider

if TYPE_CHECKING:
    from shardbeat.config import GroupConfig


def make_provider(group: GroupConfig) -> Provider:
    if group.provider == "sls":
        from shardbeat.providers.sls import SlsProvider

        assert group.project is not None and group.logstore is not None
        return SlsProvider(
            group.endpoint,
            group.project,
            group.logstore,
            group.consumer_group,
            group.consumer,
            signature_version=group.signature_version,
            region=group.region,
        )
    from shardbeat.providers.cls import ClsProvider

    assert group.region is not None and group.logset_id is not None and group.topics is not None
    return ClsProvider(
        group.endpoint, group.region, group.logset_id, group.topics, group.consumer_group, group.consumer
    )
