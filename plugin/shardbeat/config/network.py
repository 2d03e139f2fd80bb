"""The config's network settings: `proxy` and `tls.ca_file`, plus the CA bundle variables of the environment.

Trust, first match wins (requests' order, then OpenSSL's): `tls.ca_file`, REQUESTS_CA_BUNDLE,
CURL_CA_BUNDLE, SSL_CERT_FILE; none of them: the system's trust store. A bundle replaces the system
store (as with curl --cacert or requests' verify=PATH): give one that holds every CA you need.
Whichever is used must exist and hold at least one PEM certificate; otherwise it is a config error
(exit 2), never silently "no verification". There is no option to turn verification off.

Proxies from the environment depend on each endpoint's URL, so they are chosen at run time
(runtime.network); only the config's own `proxy` is checked here.
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shardbeat.config.model import NetworkConfig, Problem
from shardbeat.config.proxy_url import ProxyUrlError, parse_proxy_url

CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
_HASHED = re.compile(r"[0-9a-f]{8}\.r?[0-9]+")  # OpenSSL's capath names: subject hash . n (r: CRLs)

# The context the last good check of a bundle file built. OpenSSL parses every certificate of a
# bundle (~20 ms of CPU and ~2 MB for a system bundle of ~150): the transport takes this one over
# instead of loading the same file again before its first TLS call. One at most, handed over once.
_checked: dict[str, ssl.SSLContext] = {}


def checked_context(path: str) -> ssl.SSLContext | None:
    """The context a good `check_ca_bundle(path)` of a file built, once; None if there is none."""
    return _checked.pop(path, None)


# A load of the environment's bundle begun early (prefetch_ca_bundle): path -> (thread, its context).
_prefetched: dict[str, tuple[threading.Thread, list[ssl.SSLContext]]] = {}


def _environment_bundle(environ: Mapping[str, str]) -> str | None:
    for name in CA_BUNDLE_VARIABLES:
        value = environ.get(name)
        if value:
            return os.path.abspath(os.path.expanduser(value))
    return None


def prefetch_ca_bundle(document: object, environ: Mapping[str, str]) -> None:
    """Begin loading the CA bundle the environment names (~20-35 ms of CPU for a system bundle) on a
    thread, for a config document without a `tls` section: OpenSSL parses it without holding the GIL,
    so `run` imports its runtime meanwhile on the other core. check_ca_bundle() takes the result (and
    still judges it as it would its own); a load that failed is simply done again there, so every
    problem reads the same. Nothing is skipped: the check completes before the config is accepted."""
    if not isinstance(document, dict) or "tls" in document:
        return  # tls.ca_file may name another bundle: the check loads whichever it is, as always
    path = _environment_bundle(environ)
    if path is None or path in _prefetched or not os.path.isfile(path):
        return
    box: list[ssl.SSLContext] = []

    def load() -> None:
        with contextlib.suppress(Exception):  # the check loads it again and says why
            box.append(ssl.create_default_context(cafile=path))

    thread = threading.Thread(target=load, name="ca-bundle", daemon=True)
    thread.start()
    _prefetched[path] = (thread, box)


def _take_prefetched(path: str) -> ssl.SSLContext | None:
    pending = _prefetched.pop(path, None)
    if pending is None:
        return None
    thread, box = pending
    thread.join()
    return box[0] if box else None


def check_ca_bundle(path: str) -> str | None:
    """None when `path` is a usable CA bundle (a PEM file, or a directory of hashed certs), else why not."""
    try:
        if os.path.isdir(path):
            ssl.create_default_context(capath=path)
            # OpenSSL reads a capath lazily, by subject hash: with no hash-named entry nothing can ever
            # verify (every call a TLS failure), so say it now.
            if not any(_HASHED.fullmatch(name) for name in os.listdir(path)):
                return "is a directory without hashed certificates (HASH.0 names: run openssl rehash on it)"
            return None
        if not os.path.exists(path):
            return "no such file"
        if not os.path.isfile(path):
            return "is not a regular file"
        context = _take_prefetched(path) or ssl.create_default_context(cafile=path)
    except PermissionError:
        return "cannot be read (permission denied)"
    except (ssl.SSLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        return f"holds no usable PEM certificate ({reason})"
    # Counts what get_ca_certs() would list (X509_check_ca), without decoding each one into a dict.
    if not context.cert_store_stats()["x509_ca"]:
        return "holds no CA certificate"
    _checked.clear()
    _checked[path] = context
    return None


def network_config(
    document: Mapping[str, Any], base_dir: Path, environ: Mapping[str, str]
) -> tuple[NetworkConfig, list[Problem]]:
    problems: list[Problem] = []
    proxy = None
    raw_proxy = document.get("proxy")
    if isinstance(raw_proxy, str):
        try:
            proxy = parse_proxy_url(raw_proxy)
        except ProxyUrlError as exc:
            problems.append(Problem("proxy", str(exc)))
    ca_file: str | None = None
    ca_source: str | None = None
    tls = document.get("tls")
    given = tls.get("ca_file") if isinstance(tls, dict) else None
    if isinstance(given, str) and given:
        ca_file, ca_source = os.path.abspath(base_dir / os.path.expanduser(given)), "tls.ca_file"
    else:
        ca_file = _environment_bundle(environ)
        ca_source = next((name for name in CA_BUNDLE_VARIABLES if environ.get(name)), None)
    if ca_file is not None and ca_source is not None:
        why = check_ca_bundle(ca_file)
        if why is None and ca_source == "tls.ca_file" and os.path.isdir(ca_file):
            why = "is a directory: give a PEM bundle file"
        if why is not None:
            where = "" if ca_source == "tls.ca_file" else " (from the environment)"
            problems.append(Problem(ca_source, f"CA bundle {ca_file}{where}: {why}"))
    return NetworkConfig(proxy, ca_file, ca_source), problems
