"""Room for a big config's descriptors: one instance lock per group, and up to a connection per group.

Many hosts start services with a soft limit of 1024 open files (the hard limit is usually far
higher), so a config of 3000 groups failed at its 1020th lock with "Too many open files". Like
Go's runtime and most servers, `run` raises its soft limit, but only to what the config needs
(children it starts, a credential_process for one, keep a modest limit); when even the hard limit
is too low, it says so before taking any lock, with the number to set.
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Callable

log = logging.getLogger("shardbeat.process")

# Besides the locks and connections: the standard fds, log and writer pipes, the loop's selector and
# wake-up pipe, control clients (32), /metrics, credential sources, the idle connections kept.
BASE = 256
PER_GROUP = 2  # its instance lock, and its heartbeat's connection when every group is out at once
FLOOR = 64  # below the locks plus this, the process cannot even start its threads and sockets

Limits = tuple[int, int]


def needed_for(groups: int) -> int:
    return BASE + PER_GROUP * groups


def make_room(
    groups: int,
    getrlimit: Callable[[int], Limits] = resource.getrlimit,
    setrlimit: Callable[[int, Limits], None] = resource.setrlimit,
) -> str | None:
    """Raise the soft RLIMIT_NOFILE to what `groups` need (never past the hard limit).
    -> None, or why the config cannot run under this limit (the fix included)."""
    needed = needed_for(groups)
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    if _at_least(soft, needed):
        return None
    target = needed if _at_least(hard, needed) else hard
    try:
        setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.debug("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
        target = soft
    else:
        log.info("open-file limit raised from %d to %d for %d group(s)", soft, target, groups)
    if target >= needed:
        return None
    if target >= groups + FLOOR:  # the locks fit; connections may fail at a burst: say so, run
        log.warning(
            "open-file limit %d is below the %d that %d group(s) may need at a burst of heartbeats; "
            "calls may fail with 'Too many open files' (raise ulimit -n / LimitNOFILE)",
            target,
            needed,
            groups,
        )
        return None
    return (
        f"{groups} group(s) need about {needed} open files (an instance lock per group, plus "
        f"connections), but this process may open at most {target} (ulimit -n; hard limit {hard}): "
        f"raise the limit (e.g. `ulimit -n {needed}`, systemd LimitNOFILE={needed}) or split the "
        "groups over several processes"
    )


def _at_least(limit: int, needed: int) -> bool:
    return limit == resource.RLIM_INFINITY or limit >= needed


__all__ = ["make_room", "needed_for"]
