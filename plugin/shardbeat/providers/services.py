"""The table of services: a provider name -> its descriptor (providers/service.py).

Adding a service is adding its module and one entry here; config/, the doctor and the command line
read everything service-specific through `service(name)`.
"""

from __future__ import annotations

from shardbeat.providers.base import Provider
from shardbeat.providers.cls_service import CLS
from shardbeat.providers.service import GroupSettings, Service
from shardbeat.providers.sls_service import SLS

SERVICES: dict[str, Service] = {s.name: s for s in (SLS, CLS)}
DEFAULT = SLS.name  # the emulator demo's service when none is named


def service(name: str) -> Service:
    """The descriptor of a known provider name (KeyError for any other: validate names first)."""
    return SERVICES[name]


def make_provider(group: GroupSettings) -> Provider:
    return SERVICES[group.provider].make_provider(group)
