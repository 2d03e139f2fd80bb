"""SIGHUP's reload runs off the loop thread (process.Reloads): the signal only asks."""

from __future__ import annotations

import threading

from shardbeat.runtime.process import Reloads


def test_a_reload_runs_on_its_own_thread_and_asks_during_one_share_the_next() -> None:
    started = threading.Event()
    release = threading.Event()
    ran: list[str] = []
    done = threading.Semaphore(0)

    def reload() -> None:
        ran.append(threading.current_thread().name)
        started.set()
        release.wait(5)
        done.release()

    reloads = Reloads(reload)
    reloads.ask()  # returns at once: the work is not done on the asking (signal) thread
    assert started.wait(5)
    assert ran == ["shardbeat-reload"]
    for _ in range(5):  # a burst of signals while one reload runs: one more reload, not five
        reloads.ask()
    release.set()
    assert done.acquire(timeout=5) and done.acquire(timeout=5)
    assert not done.acquire(timeout=0.3)
    assert ran == ["shardbeat-reload", "shardbeat-reload"]


def test_a_failing_reload_does_not_end_reloads() -> None:
    calls: list[int] = []
    second = threading.Event()

    def reload() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        second.set()

    reloads = Reloads(reload)
    reloads.ask()
    for _ in range(50):
        if calls:
            break
        threading.Event().wait(0.02)
    reloads.ask()
    assert second.wait(5)
