"""Parent death: the watch notices a new parent pid once, and a real orphaned child hears about it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from shardbeat.runtime.parent import ParentWatch


def test_nothing_happens_while_the_parent_is_the_same() -> None:
    calls: list[tuple[int, int]] = []
    watch = ParentWatch(lambda old, new: calls.append((old, new)), getppid=lambda: 4242)
    assert watch.parent == 4242
    assert not watch.check() and not watch.check()
    assert calls == []


def test_a_changed_parent_calls_back_exactly_once() -> None:
    ppid = [4242]
    calls: list[tuple[int, int]] = []
    watch = ParentWatch(lambda old, new: calls.append((old, new)), getppid=lambda: ppid[0])
    ppid[0] = 1  # re-parented to init
    assert watch.check()
    ppid[0] = 77  # and again (a subreaper): still one call
    assert watch.check()
    assert calls == [(4242, 1)]


def test_pid_1_at_start_is_a_normal_parent() -> None:
    calls: list[tuple[int, int]] = []
    watch = ParentWatch(lambda old, new: calls.append((old, new)), getppid=lambda: 1)
    assert not watch.check()
    assert calls == []


def test_a_failing_callback_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    ppid = [10]

    def boom(old: int, new: int) -> None:
        raise RuntimeError("bug")

    watch = ParentWatch(boom, getppid=lambda: ppid[0])
    ppid[0] = 11
    assert watch.check()
    assert "internal error while stopping after the host died" in caplog.text


def test_the_thread_polls_and_stop_ends_it() -> None:
    ppid = [10]
    calls: list[tuple[int, int]] = []
    watch = ParentWatch(lambda old, new: calls.append((old, new)), interval=0.01, getppid=lambda: ppid[0])
    watch.start()
    time.sleep(0.05)
    assert calls == []
    ppid[0] = 1
    deadline = time.monotonic() + 2
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls == [(10, 1)]
    watch.stop()


# A child that watches its parent and reports on stdout; its parent is a shell-like middle process
# that the test SIGKILLs, as a host killed with SIGKILL would be.
CHILD = textwrap.dedent(
    """
    import os, sys, threading
    from shardbeat.runtime.parent import watch_parent
    done = threading.Event()
    def gone(old, new):
        print(f"gone {old} {new}", flush=True)
        done.set()
    watch_parent(gone, interval=0.1)
    print(f"watching {os.getppid()}", flush=True)
    done.wait(10)
    """
)
MIDDLE = textwrap.dedent(
    """
    import subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", sys.argv[1]])
    time.sleep(60)
    """
)


def test_a_real_child_notices_its_parent_was_killed() -> None:
    middle = subprocess.Popen([sys.executable, "-c", MIDDLE, CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert middle.stdout is not None
        first = middle.stdout.readline().split()
        assert first == ["watching", str(middle.pid)]
        os.kill(middle.pid, signal.SIGKILL)
        middle.wait(5)
        t0 = time.monotonic()
        second = middle.stdout.readline().split()  # the grandchild still holds the pipe
        assert second[:2] == ["gone", str(middle.pid)]
        assert int(second[2]) != middle.pid
        assert time.monotonic() - t0 < 2
        assert middle.stdout.read() == ""  # and then it exited, closing the pipe
    finally:
        if middle.poll() is None:
            middle.kill()
