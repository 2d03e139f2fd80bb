"""One process per consumer identity on this machine: an flock'ed file per identity in a runtime dir.

Two plugins heartbeating as the same consumer would each be told they own the same shards, so a second
process with the same (provider, project/logstore or region/logset, group, consumer) refuses to start,
whatever endpoint spelling it reaches the service by (see config.GroupIdentity). The lock is
`flock(LOCK_EX | LOCK_NB)` on a file held open for the life of the process: the kernel drops it when the
process dies, SIGKILL included, so there are no stale locks to clean up by hand. The file holds the
holder's pid and a readable label for the refusal message.

A released lock file is unlinked while still locked; an acquirer checks after locking that the path
still names the inode it locked (else retries), so unlinking cannot let two holders in at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shardbeat.config import GroupConfig, GroupIdentity

DIR_MODE = 0o700
FILE_MODE = 0o600
_ATTEMPTS = 5  # lock-then-verify rounds; only lost if the file is unlinked under us every time
_MAX_LABEL_READ = 4096
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class InstanceLockError(Exception):
    """Another process holds one of our identities, or the runtime dir is unusable (exit 2)."""


class InstanceLockHeld(InstanceLockError):
    """Another process runs this identity; `pid` is its pid when the lock file says so."""

    def __init__(self, message: str, pid: int | None, path: str) -> None:
        super().__init__(message)
        self.pid = pid
        self.path = path


@dataclass(frozen=True, slots=True)
class _Held:
    path: str
    fd: int


class InstanceLocks:
    """The locks this process holds; `release()` (or leaving the `with` block) gives them back."""

    def __init__(self, runtime_dir: str, held: Sequence[_Held]) -> None:
        self.runtime_dir = runtime_dir
        self._held = list(held)

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(h.path for h in self._held)

    def release(self) -> None:
        """Idempotent. Unlink while still locked (see the module doc), then close."""
        held, self._held = self._held, []
        for h in reversed(held):
            with contextlib.suppress(OSError):
                os.unlink(h.path)
            with contextlib.suppress(OSError):
                os.close(h.fd)

    def __enter__(self) -> InstanceLocks:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


# -- the runtime directory ---------------------------------------------------------------------------


def default_runtime_dir(environ: Mapping[str, str] | None = None, uid: int | None = None) -> str:
    """$XDG_RUNTIME_DIR/shardbeat when that is set and writable, else /tmp/shardbeat-{uid}."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(xdg) and os.path.isdir(xdg) and os.access(xdg, os.W_OK | os.X_OK):
        return os.path.join(xdg, "shardbeat")
    return f"/tmp/shardbeat-{os.getuid() if uid is None else uid}"


def prepare_runtime_dir(path: str) -> str:
    """Create `path` (mode 0700) if missing; refuse one that others could plant locks in."""
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        pass
    except OSError as exc:
        raise InstanceLockError(f"runtime dir {path}: cannot create it: {exc.strerror or exc}") from None
    try:
        link = os.lstat(path)
        info = os.stat(path)
    except OSError as exc:
        raise InstanceLockError(f"runtime dir {path}: {exc.strerror or exc}") from None
    uid = os.getuid()
    # A symlink someone else planted (e.g. /tmp/shardbeat-1000 -> their dir) must not be followed.
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (uid, 0):
        raise InstanceLockError(f"runtime dir {path} is a symlink owned by uid {link.st_uid}, not by us")
    if not stat.S_ISDIR(info.st_mode):
        raise InstanceLockError(f"runtime dir {path} exists and is not a directory")
    if info.st_uid != uid:
        raise InstanceLockError(
            f"runtime dir {path} is owned by uid {info.st_uid}, not by this user (uid {uid}); "
            "remove it or set runtime_dir to a directory of your own"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise InstanceLockError(
            f"runtime dir {path} is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"chmod 700 it or set runtime_dir to a private directory"
        )
    return path


# -- names and labels --------------------------------------------------------------------------------


def identity_label(identity: GroupIdentity) -> str:
    """e.g. consumer c1 of group g1 (sls:project/logstore)."""
    scope = "/".join(identity.scope)
    return f"consumer {identity.consumer} of group {identity.consumer_group} ({identity.provider}:{scope})"


def lock_file_name(identity: GroupIdentity) -> str:
    """A readable prefix (provider, group, consumer) plus a hash of the whole identity."""
    canonical = json.dumps(
        [
            identity.provider,
            list(identity.scope),
            identity.consumer_group,
            identity.consumer,
        ]
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:20]
    prefix = _UNSAFE.sub("_", f"{identity.provider}-{identity.consumer_group}-{identity.consumer}")[:80]
    return f"{prefix}.{digest}.lock"


# -- acquiring ---------------------------------------------------------------------------------------


def acquire_instance_locks(groups: Sequence[GroupConfig], runtime_dir: str | None) -> InstanceLocks:
    """Lock every group's identity, or none of them: raises InstanceLockError naming the holder."""
    directory = prepare_runtime_dir(runtime_dir or default_runtime_dir())
    held: list[_Held] = []
    seen: set[GroupIdentity] = set()
    try:
        for group in groups:
            identity = group.identity
            if identity in seen:  # the config loader refuses this too; two fds would lock each other out
                raise InstanceLockError(f"{identity_label(identity)} is configured twice")
            seen.add(identity)
            held.append(_lock(os.path.join(directory, lock_file_name(identity)), identity_label(identity)))
    except BaseException:
        InstanceLocks(directory, held).release()
        raise
    return InstanceLocks(directory, held)


def _lock(path: str, label: str) -> _Held:
    for _ in range(_ATTEMPTS):
        fd = _open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise InstanceLockError(f"lock file {path}: {exc.strerror or exc}") from None
            pid = f"pid {holder}" if holder is not None else "pid unknown"
            raise InstanceLockHeld(
                f"another shardbeat ({pid}) already runs {label}; stop it first, or give this one "
                f"another consumer name (lock file {path})",
                holder,
                path,
            ) from None
        if _still_named(fd, path):
            try:
                _write_holder(fd, label)
            except OSError as exc:  # a full or read-only runtime_dir: a clear refusal, not a traceback
                InstanceLocks(os.path.dirname(path), [_Held(path, fd)]).release()
                raise InstanceLockError(f"lock file {path}: cannot write it: {exc.strerror or exc}") from None
            return _Held(path, fd)
        os.close(fd)  # the holder released (unlinked) it between our open and flock: take the new one
    raise InstanceLockError(
        f"lock file {path} keeps being replaced; is another shardbeat starting and stopping?"
    )


def _open(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        raise InstanceLockError(f"lock file {path}: cannot open it: {exc.strerror or exc}") from None


def _still_named(fd: int, path: str) -> bool:
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino)


def _write_holder(fd: int, label: str) -> None:
    # Write, then cut: a reader never sees an empty file between truncate and write.
    data = f"{os.getpid()}\n{label}\n".encode()
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))


def _read_holder(fd: int) -> int | None:
    """The pid in a lock file someone else holds, if it reads as one."""
    try:
        first = os.pread(fd, _MAX_LABEL_READ, 0).split(b"\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None
