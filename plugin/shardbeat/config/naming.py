"""The default consumer name: this machine's host name, made acceptable to the provider.

Derived from the host name (not random, not the pid) so a restarted plugin rejoins as the same
consumer and the server hands its shards straight back instead of waiting out the old session.
Each service's descriptor says how a host name becomes an acceptable consumer name
(providers/sls_service.py, cls_service.py). An empty host name gives 'shardbeat'.
"""

from __future__ import annotations

import socket

from shardbeat.config.model import ProviderName
from shardbeat.providers.services import service


def default_consumer(provider: ProviderName, hostname: str | None = None) -> str:
    host = (socket.gethostname() if hostname is None else hostname).strip() or "shardbeat"
    return service(provider).consumer_name(host)
