"""The connector threads of the event loop (runtime/http_connectors.py): endpoints whose connection set-up
stalls (held here by events, as a hung DNS or a black-holed handshake holds a thread until the call's
deadline) can never make another endpoint's set-up wait, and the threads stay bounded.

No network here: the openers are fakes. tests/test_http_loop.py stalls real set-ups on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from shardbeat.runtime.http_connectors import Connectors

WAIT = 10.0  # generous: what a result may take to come back on a loaded machine


class Harness:
    def __init__(self, threads: int = 8, max_threads: int = 32) -> None:
        self.woken = threading.Event()
        self.connectors: Connectors[str] = Connectors(self.woken.set, threads, max_threads)
        self.release = threading.Event()
        self.started: list[str] = []
        self.results: dict[str, socket.socket | BaseException] = {}
        self._lock = threading.Lock()

    def stuck(self, name: str) -> Callable[[], socket.socket]:
        def opener() -> socket.socket:
            with self._lock:
                self.started.append(name)
            self.release.wait(WAIT)  # a set-up that stalls until its deadline
            raise TimeoutError(f"{name}: deadline")

        return opener

    def quick(self, name: str) -> Callable[[], socket.socket]:
        def opener() -> socket.socket:
            with self._lock:
                self.started.append(name)
            raise ConnectionRefusedError(name)  # done at once (a socket would do as well)

        return opener

    def wait_for(self, *names: str) -> None:
        end = time.monotonic() + WAIT
        while not all(name in self.results for name in names):
            assert time.monotonic() < end, f"no result for {set(names) - set(self.results)}"
            self.woken.wait(0.1)
            self.woken.clear()
            self.results.update(self.connectors.take())

    def running(self) -> int:
        with self._lock:
            return len(self.started) - len(self.results)


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.release.set()
    h.connectors.close()


def settle(condition: Callable[[], bool]) -> None:
    end = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < end
        time.sleep(0.01)


def test_stalled_endpoints_holding_every_shared_thread_do_not_delay_another(harness: Harness) -> None:
    # a and b fill the 8 shared threads (4 set-ups each, as MAX_OPENING allows); c, d, e stall one each
    for endpoint in ("a", "b", "c", "d", "e"):
        for i in range(4):
            harness.connectors.submit(f"{endpoint}{i}", harness.stuck(f"{endpoint}{i}"), endpoint)
    settle(lambda: len(harness.started) >= 11)
    harness.connectors.submit("healthy", harness.quick("healthy"), "healthy")
    harness.wait_for("healthy")  # while every stalled set-up still waits
    assert not any(name != "healthy" for name in harness.results)
    assert isinstance(harness.results["healthy"], ConnectionRefusedError)
    # each stalled endpoint holds a fair share at most: 4 + 4 shared, then one thread each for c, d, e
    assert sorted(harness.started[:8]) == [f"{e}{i}" for e in "ab" for i in range(4)]
    assert {name[0] for name in harness.started[8:11]} == {"c", "d", "e"}
    assert harness.connectors.threads == 11  # 8 shared + one each for c, d, e; healthy's ended with its job
    harness.release.set()
    harness.wait_for(*[f"{e}{i}" for e in "abcde" for i in range(4)])


def test_a_freed_thread_goes_to_the_endpoint_with_the_fewest_set_ups_not_the_oldest_job() -> None:
    h = Harness(threads=2, max_threads=2)
    gates = {name: threading.Event() for name in ("a0", "a1", "a2", "b0", "b1")}

    def gated(name: str) -> Callable[[], socket.socket]:
        def opener() -> socket.socket:
            h.started.append(name)
            gates[name].wait(WAIT)
            raise TimeoutError(name)

        return opener

    try:
        for name in ("a0", "a1", "a2", "b0", "b1"):  # a's burst came first
            h.connectors.submit(name, gated(name), name[0])
        settle(lambda: len(h.started) == 2)
        assert h.started == ["a0", "a1"]  # a alone then: its share was every thread
        gates["a0"].set()
        h.wait_for("a0")
        settle(lambda: len(h.started) == 3)
        assert h.started[2] == "b0"  # FIFO would have run a2
        gates["a1"].set()
        h.wait_for("a1")
        settle(lambda: len(h.started) == 4)
        assert h.started[3] == "a2"  # a and b hold one each now: the oldest job goes first
    finally:
        for gate in gates.values():
            gate.set()
        h.connectors.close()


def test_threads_stay_bounded_and_extra_ones_end_when_idle() -> None:
    h = Harness(threads=4, max_threads=6)
    try:
        for i in range(10):  # ten stalled endpoints
            h.connectors.submit(f"s{i}", h.stuck(f"s{i}"), f"s{i}")
        settle(lambda: len(h.started) == 6)
        h.connectors.submit("late", h.quick("late"), "late")
        time.sleep(0.2)
        assert len(h.started) == 6 and h.connectors.threads == 6  # the bound holds, whatever stalls
        h.release.set()
        h.wait_for("late", *[f"s{i}" for i in range(10)])
        settle(lambda: h.connectors.threads <= 4)  # the extra threads ended; the shared ones wait
        h.connectors.submit("again", h.quick("again"), "again")
        h.wait_for("again")
    finally:
        h.release.set()
        h.connectors.close()


def test_a_socket_opened_after_close_is_closed_and_idle_threads_end() -> None:
    h = Harness()
    opened: list[socket.socket] = []

    def opener() -> socket.socket:
        h.release.wait(WAIT)
        ours, theirs = socket.socketpair()
        theirs.close()
        opened.append(ours)
        return ours

    h.connectors.submit("quick", h.quick("quick"), "q")
    h.wait_for("quick")
    h.connectors.submit("late", opener, "late")
    assert h.connectors.threads == 1  # the thread kept idle took it
    h.connectors.submit("quick2", h.quick("quick2"), "q")  # a second thread, idle once done
    h.wait_for("quick2")
    assert h.connectors.threads == 2
    h.connectors.close()
    h.release.set()
    settle(lambda: len(opened) == 1 and opened[0].fileno() == -1)
    settle(lambda: h.connectors.threads == 0)  # the busy one after its job, the idle one at once
    assert h.connectors.take() == []
    with pytest.raises(RuntimeError):
        h.connectors.submit("after", h.quick("after"), "q")


def test_a_thread_that_cannot_start_fails_its_job_instead_of_losing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = Harness()

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    try:
        h.connectors.submit("job", h.quick("job"), "k")
        monkeypatch.undo()
        h.wait_for("job")
        assert isinstance(h.results["job"], OSError) and "no thread" in str(h.results["job"])
        h.connectors.submit("next", h.quick("next"), "k")  # the books balance: the next one runs
        h.wait_for("next")
        assert isinstance(h.results["next"], ConnectionRefusedError)
    finally:
        h.connectors.close()
