"""DNS and TCP connect with deadlines, timed separately (the transport does both inside one call)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence

from shardbeat.runtime.transport import TransportError

Address = tuple[int, tuple[str, int]]  # (family, (ip, port))


def resolve(host: str, port: int, timeout: float) -> list[Address]:
    """getaddrinfo with a deadline (it has none of its own): run in a daemon thread we stop waiting for."""
    box: list[object] = []

    def work() -> None:
        try:
            box.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            box.append(exc)

    worker = threading.Thread(target=work, name="shardbeat-doctor-dns", daemon=True)
    worker.start()
    worker.join(timeout)
    if not box:
        raise TransportError("Timeout", f"DNS gave no answer for {host} within {timeout:g} s")
    result = box[0]
    if isinstance(result, OSError):
        reason = result.strerror or str(result)
        raise TransportError("NameResolution", f"cannot resolve {host}: {reason}")
    assert isinstance(result, list)
    return [(family, (str(addr[0]), int(addr[1]))) for family, _, _, _, addr in result]


def connect(addresses: Sequence[Address], timeout: float) -> str:
    """Connect to each address in turn (then close): the IP that accepted, or the last failure."""
    failure = TransportError("NetworkError", "no address to connect to")
    for family, address in addresses:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(address)
            except TimeoutError:
                failure = TransportError("Timeout", f"no answer from {address[0]} within {timeout:g} s")
            except ConnectionRefusedError:
                failure = TransportError("ConnectionRefused", f"{address[0]} refused the connection")
            except OSError as exc:
                failure = TransportError("NetworkError", f"{address[0]}: {exc.strerror or exc}")
            else:
                return address[0]
    raise failure
