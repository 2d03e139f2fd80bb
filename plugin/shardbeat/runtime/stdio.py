"""The standard descriptors 0-2, made safe before anything else opens a file.

A host that starts us with fd 0, 1 or 2 closed (`<&-`, `>&-`) leaves that number free, and the next
open() takes it: the instance lock file would then be read as control input on "stdin", or records
written into it as "stdout". So the first thing the CLI does is put /dev/null on every closed one and
remember which were closed: a closed stdout means `run` could never tell downstream anything, so it
must refuse to start (and claim nothing) rather than heartbeat into /dev/null.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys

STANDARD_FDS = (0, 1, 2)


def reserve_standard_fds() -> frozenset[int]:
    """Open /dev/null on each closed standard fd; return the ones that were closed."""
    closed: set[int] = set()
    for fd in STANDARD_FDS:
        try:
            os.fstat(fd)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                continue
            closed.add(fd)
    for fd in sorted(closed):
        # Lowest free number first: opening fills the gaps in order, so each open lands on `fd`
        # unless a lower one was still free; dup2 makes it exact either way.
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        os.set_inheritable(fd, True)
    # Python leaves sys.stdin/stdout/stderr as None for a descriptor closed at its start, and
    # print(file=None) falls back to stdout: give each a stream on its (now /dev/null) fd.
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, errors="backslashreplace", closefd=False))  # noqa: SIM115
    return frozenset(closed)


def unwritable_stdout() -> str | None:
    """Why no record could ever be written to fd 1 (open, but for reading only: `1<file`), else None.
    Known before anything is claimed, like a closed stdout; found only at the first record otherwise,
    after the first heartbeat had joined the group and been given shards nobody would be told of."""
    try:
        mode = fcntl.fcntl(1, fcntl.F_GETFL) & os.O_ACCMODE
    except OSError:
        return "stdout is closed"
    return "stdout is open for reading only" if mode == os.O_RDONLY else None
