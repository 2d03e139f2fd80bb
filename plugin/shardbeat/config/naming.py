"""The default consumer name: this machine's host name, made acceptable to the provider.

Derived from the host name (not random, not the pid) so a restarted plugin rejoins as the same
consumer and the server hands its shards straight back instead of waiting out the old session.
- sls (1-128 printable ASCII, no spaces): other characters become '-'; cut to 128.
- cls (letters, digits, '_', '-', starting with a letter, under 256): other characters (dots
  included) become '-'; prefixed with 'host-' unless it starts with a letter; cut to 255.
An empty host name gives 'shardbeat'.
"""

from __future__ import annotations

import re
import socket

from shardbeat.config.model import ProviderName

_NOT_SLS = re.compile(r"[^!-~]")
_NOT_CLS = re.compile(r"[^A-Za-z0-9_-]")


def default_consumer(provider: ProviderName, hostname: str | None = None) -> str:
    host = (socket.gethostname() if hostname is None else hostname).strip() or "shardbeat"
    if provider == "sls":
        return _NOT_SLS.sub("-", host)[:128]
    name = _NOT_CLS.sub("-", host)
    if not name[0].isascii() or not name[0].isalpha():
        name = "host-" + name
    return name[:255]
