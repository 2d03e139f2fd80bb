"""Host name lookups bounded by the caller's deadline.

getaddrinfo has no timeout of its own: a resolver that never answers would hold a heartbeat (and
the worker thread it runs on) far past the call's budget. So each lookup runs in a daemon thread
that the caller stops waiting for at its deadline; the thread finishes (or not) on its own and
fills the cache when it does. At most one lookup per (host, port) is in flight, so a hung resolver
costs one thread per name, not one per call.

Answers are kept for a short while (TTL 30 s: a lease outlives many beats, and keep-alive means a
lookup only happens for a new connection anyway). When a fresh lookup fails or times out, an
answer up to 5 minutes old is used instead (with a warning), so a resolver hiccup does not cost
the lease; after that the failure is the caller's. While such an answer could stand in, a hung
lookup is waited for at most STALE_WAIT (1 s, or half the time left): its stand-in must come while
there is still time to connect with it.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("shardbeat.resolver")

Address = tuple[socket.AddressFamily, tuple[Any, ...]]  # (family, sockaddr)
GetAddrInfo = Callable[..., list[tuple[Any, ...]]]

FRESH_FOR = 30.0
STALE_FOR = 300.0
STALE_WAIT = (
    1.0  # the longest a lookup is waited for when an older answer could stand in (at most half the time left)
)


class ResolveTimeout(TimeoutError):
    """The lookup gave no answer before the call's deadline."""


@dataclass
class _Lookup:
    done: threading.Event = field(default_factory=threading.Event)
    addresses: list[Address] | None = None
    error: OSError | None = None


class Resolver:
    def __init__(
        self,
        getaddrinfo: GetAddrInfo = socket.getaddrinfo,
        monotonic: Callable[[], float] = time.monotonic,
        fresh_for: float = FRESH_FOR,
        stale_for: float = STALE_FOR,
    ) -> None:
        self._getaddrinfo = getaddrinfo
        self._monotonic = monotonic
        self._fresh_for = fresh_for
        self._stale_for = stale_for
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, int], tuple[float, list[Address]]] = {}
        self._in_flight: dict[tuple[str, int], _Lookup] = {}

    def resolve(self, host: str, port: int, deadline: float) -> list[Address]:
        """Stream-socket addresses of host:port by `deadline` (monotonic seconds).

        Raises ResolveTimeout when no answer came in time, socket.gaierror when the name does not
        resolve (either only when no recent answer can stand in).
        """
        literal = _literal(host, port)
        if literal is not None:
            return literal
        key = (host.lower(), port)
        now = self._monotonic()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and now - cached[0] < self._fresh_for:
                return cached[1]
            lookup = self._in_flight.get(key)
            if lookup is None:
                lookup = self._in_flight[key] = _Lookup()
                threading.Thread(
                    target=self._run, args=(key, lookup), name="shardbeat-dns", daemon=True
                ).start()
        left = max(0.0, deadline - self._monotonic())
        stand_in = cached is not None and now - cached[0] < self._stale_for
        # With an answer that may stand in, a hung lookup is not waited for to the deadline: the
        # answer would come when no time is left to connect with it (and every new connection failed
        # for as long as the resolver hung). The lookup goes on and fills the cache when it answers.
        patience = min(left / 2, STALE_WAIT) if stand_in else left
        lookup.done.wait(patience)
        if lookup.addresses is not None:
            return lookup.addresses
        failure: OSError = lookup.error or ResolveTimeout(
            f"DNS gave no answer for {host} "
            + (f"within {patience:.1f}s" if stand_in else "before the call's deadline")
        )
        if cached is not None and now - cached[0] < self._stale_for:
            age = now - cached[0]
            log.warning("DNS lookup of %s failed (%s); using its answer from %.0fs ago", host, failure, age)
            return cached[1]
        raise failure

    def _run(self, key: tuple[str, int], lookup: _Lookup) -> None:
        try:
            found = self._getaddrinfo(key[0], key[1], type=socket.SOCK_STREAM)
            addresses = [(family, tuple(sockaddr)) for family, _, _, _, sockaddr in found]
            if not addresses:
                raise socket.gaierror(socket.EAI_NONAME, "no address")
            lookup.addresses = addresses
        except OSError as exc:
            lookup.error = exc
        except Exception as exc:  # an injected or broken resolver: still an answer, never a hang
            lookup.error = OSError(f"{type(exc).__name__}: {exc}")
        with self._lock:
            if lookup.addresses is not None:
                self._cache[key] = (self._monotonic(), lookup.addresses)
            self._in_flight.pop(key, None)
        lookup.done.set()


def _literal(host: str, port: int) -> list[Address] | None:
    """IP literals need no lookup (and no thread)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 6:
        return [(socket.AF_INET6, (host, port, 0, 0))]
    return [(socket.AF_INET, (host, port))]


_shared: Resolver | None = None
_shared_lock = threading.Lock()


def shared_resolver() -> Resolver:
    """The process's resolver, so the heartbeat transport and requests sessions share one cache."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Resolver()
        return _shared
