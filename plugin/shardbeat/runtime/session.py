"""Which provider module serves a group."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shardbeat.providers.base import Provider

if TYPE_CHECKING:
    from shardbeat.config import GroupConfig


def make_provider(group: GroupConfig) -> Provider:
    from shardbeat.providers.services import make_provider as of_service  # the service's own factory

    return of_service(group)
