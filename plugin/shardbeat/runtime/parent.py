"""Notice that the host process died (e.g. it was SIGKILLed) and say so once, so the plugin can stop.

When a parent dies, the kernel re-parents its children to init or to the nearest subreaper, so
getppid() changes. A daemon thread compares it with the value seen at start, every `interval`
seconds. A pid of 1 at start is normal (the host is pid 1 in a container), hence "changed", not
"is 1". The other sign, EPIPE on stdout, is handled by the record writer.

Why not prctl(PR_SET_PDEATHSIG)? It fires when the parent *thread* that forked us exits, not the
parent process: Fluent Bit forks exec children from an input thread, so a thread ending would stop
a plugin whose host is alive and well. It would also deliver a signal where a clean, logged stop
through the runner is wanted; and it is Linux-only. Polling costs one cheap syscall per interval.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger("shardbeat.parent")

DEFAULT_INTERVAL = 0.5

# The parent as seen when the process began (`remember_parent`, first thing in `run`), not when the
# watch starts: a host killed while a big config loads (seconds) re-parents us before the watch
# exists, and a watch that took the new parent as its own would never notice.
_at_start: int | None = None


def remember_parent() -> None:
    """Note the parent pid now, once per process; `watch_parent` compares against it."""
    global _at_start
    if _at_start is None:
        _at_start = os.getppid()


class ParentWatch:
    """Calls `on_death(old_ppid, new_ppid)` once, from its own daemon thread, when the parent changes."""

    def __init__(
        self,
        on_death: Callable[[int, int], None],
        interval: float = DEFAULT_INTERVAL,
        getppid: Callable[[], int] = os.getppid,
        parent: int | None = None,
    ) -> None:
        self._on_death = on_death
        self._interval = interval
        self._getppid = getppid
        self.parent = getppid() if parent is None else parent
        self._stop = threading.Event()
        self._once = threading.Lock()
        self._fired = False
        self._thread = threading.Thread(target=self._run, name="shardbeat-parent-watch", daemon=True)

    def start(self) -> ParentWatch:
        """Check once now (a parent that died while we started is news before any heartbeat), then
        keep checking on the thread."""
        if not self.check():
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def check(self) -> bool:
        """True (once the callback has run) if the parent is gone; one poll, for tests and callers."""
        now = self._getppid()
        if now == self.parent:
            return False
        self._stop.set()
        with self._once:
            if self._fired:
                return True
            self._fired = True
        log.warning("the host process (pid %d) is gone (parent is now pid %d): stopping", self.parent, now)
        try:
            self._on_death(self.parent, now)
        except Exception:
            log.exception("internal error while stopping after the host died")
        return True

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            if self.check():
                return


def watch_parent(on_death: Callable[[int, int], None], interval: float = DEFAULT_INTERVAL) -> ParentWatch:
    """Start watching the parent `remember_parent` saw (else today's); the returned watch's stop() ends it."""
    return ParentWatch(on_death, interval, parent=_at_start).start()
