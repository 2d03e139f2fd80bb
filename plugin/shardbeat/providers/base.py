"""What every provider module implements, and the plain data it trades in.

A provider knows its wire format and nothing about threads, records, clocks or stdout: it turns a
claim into request bytes for a given instant and an HTTP answer into an assignment or a ProviderError.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from shardbeat.core.schedule import Retry as Retry  # re-exported: providers classify, the schedule reacts
from shardbeat.core.wire import Credentials as Credentials
from shardbeat.core.wire import Endpoint as Endpoint
from shardbeat.core.wire import HttpRequest as HttpRequest
from shardbeat.core.wire import HttpResponse as HttpResponse
from shardbeat.core.wire import ProviderError as ProviderError
from shardbeat.core.wire import Wire
from shardbeat.providers import server_values


@dataclass(frozen=True, slots=True)
class ServerGroup:
    """A consumer group's settings as the server has them."""

    name: str
    timeout: int  # what to lease by: the server's, clamped to server_values.MAX_GROUP_TIMEOUT
    order: bool | None = None  # SLS
    topics: tuple[str, ...] | None = None  # CLS
    reported_timeout: int | None = None  # the server's own figure, when it was clamped

    @property
    def detail(self) -> str:
        """Provider-specific settings worth logging, e.g. "order=false" or "topics=a,b"."""
        if self.order is not None:
            return f"order={str(self.order).lower()}"
        # Server-supplied names reach the log: printable and clipped.
        return "topics=" + server_values.text(",".join(self.topics or ()), 400)

    @property
    def shape(self) -> str:
        """The same settings in words, for the doctor: "order false" or "topics a, b" ("none")."""
        if self.order is not None:
            return f"order {str(self.order).lower()}"
        return f"topics {', '.join(self.topics or ()) or 'none'}"


def find_group(groups: Iterable[ServerGroup], name: str) -> ServerGroup | None:
    return next((g for g in groups if g.name == name), None)


class Provider(Wire, Protocol):
    """A provider module's group client: the driver's Wire, with its own ServerGroup for doctor."""

    def parse_describe_group(self, response: HttpResponse) -> ServerGroup | None:
        """This group's settings; None when the group does not exist; ProviderError otherwise."""
        ...
