"""Rotating credentials: a group's credentials_file is re-read when it changes, on request (SIGHUP, the
`reload` control op) and once after the server rejects the key, so STS tokens rotate without a restart.

Checking for a change costs one stat() per heartbeat; the file is parsed only when its identity
(mtime, size, inode) moved. A file that is mid-rewrite or broken keeps the last good credentials in
force and logs why, once per distinct problem.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Protocol

from shardbeat.providers.base import Credentials

if TYPE_CHECKING:
    from shardbeat.config import GroupConfig

log = logging.getLogger("shardbeat.credentials")

_Stamp = tuple[int, int, int] | None


def _stamp(path: str) -> _Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class Keys(Protocol):
    """What a heartbeat needs of any credential source (static here, refreshing in credential_refresher)."""

    def current(self, deadline: float | None = None) -> Credentials:
        """The key to sign with; may wait until `deadline` (monotonic) for a first one, else raises."""
        ...

    def refresh(self) -> None:
        """The key was rejected or a reload was asked for: look for a newer one."""
        ...


class CredentialSource:
    """Keys from the config, a credentials_file (re-read on change) or the environment."""

    def __init__(self, group: GroupConfig) -> None:
        assert group.credentials is not None, "a group with a credential_source uses RefreshingCredentials"
        self._group = group
        self._path = group.credentials_file
        self._current: Credentials = group.credentials
        self._stamp = _stamp(self._path) if self._path else None
        self._stale = False
        self._last_problem: str | None = None
        self._lock = threading.Lock()

    def current(self, deadline: float | None = None) -> Credentials:
        if self._path is None:
            return self._current
        stamp = _stamp(self._path)
        with self._lock:
            if stamp == self._stamp and not self._stale:
                return self._current
            self._stamp, self._stale = stamp, False
        return self._reload()

    def refresh(self) -> None:
        """Re-read on the next use even if the file looks unchanged (SIGHUP, rejected key)."""
        with self._lock:
            self._stale = True

    def _reload(self) -> Credentials:
        from shardbeat.config import ConfigError, reload_credentials

        try:
            fresh = reload_credentials(self._group)
        except ConfigError as exc:
            problem = "; ".join(str(p) for p in exc.problems)
            if problem != self._last_problem:
                log.error(
                    "%s: cannot re-read credentials, keeping the previous ones: %s",
                    self._group.label,
                    problem,
                )
                self._last_problem = problem
            return self._current
        with self._lock:
            changed = fresh != self._current
            self._current = fresh
            self._last_problem = None
        if changed:
            log.info("%s: credentials reloaded from %s", self._group.label, self._path)
        return fresh
