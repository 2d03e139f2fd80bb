"""Load-time checks of this process's own endpoints (metrics.listen, control.socket).

`run` refuses these at start (exit 2); checking their form here too lets `validate` say so first.
Whether the address can actually be bound is still only known at start.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shardbeat.config.expand import encodable
from shardbeat.config.model import Problem

# sockaddr_un.sun_path is 108 bytes on Linux (104 on BSD/macOS), one of them the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107


def local_endpoint_problems(document: Mapping[str, Any], base: Path) -> list[Problem]:
    problems: list[Problem] = []
    metrics = document.get("metrics")
    listen = metrics.get("listen") if isinstance(metrics, dict) else None
    if isinstance(listen, str) and len(listen) >= 3:
        from shardbeat.runtime.metrics import MetricsError, parse_listen  # the parser `run` uses

        try:
            parse_listen(listen)
        except MetricsError as exc:
            problems.append(Problem("metrics.listen", str(exc).split(": ", 1)[-1]))
    control = document.get("control")
    socket_path = control.get("socket") if isinstance(control, dict) else None
    if isinstance(socket_path, str) and socket_path and "\0" not in socket_path and encodable(socket_path):
        full = os.path.abspath(base / os.path.expanduser(socket_path))
        if len(os.fsencode(full)) > MAX_SOCKET_PATH_BYTES:
            problems.append(
                Problem(
                    "control.socket",
                    f"the absolute path is {len(os.fsencode(full))} bytes; a unix socket path may be at most "
                    f"{MAX_SOCKET_PATH_BYTES}",
                )
            )
    return problems
