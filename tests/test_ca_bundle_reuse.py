"""A CA bundle is parsed once per start: the config check's context is the one the transport uses.

OpenSSL parses every certificate of a bundle (~20 ms of CPU and ~2 MB for a system bundle), and the
check (config/network.py) and the heartbeat transport (runtime/network.py) used to load the same
file each, both before the first record of an https group.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy_kit import private_ca
from shardbeat.config.network import check_ca_bundle, checked_context
from shardbeat.runtime import network


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every file load_verify_locations parses, in order."""
    seen: list[Any] = []
    original = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, cafile: Any = None, capath: Any = None, cadata: Any = None) -> None:
        seen.append(cafile)
        original(self, cafile, capath, cadata)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    checked_context("")  # nothing left over from another test
    yield seen


def test_the_transport_takes_over_the_context_the_check_built(tmp_path: Path, loads: list[Any]) -> None:
    bundle = str(private_ca(tmp_path).ca_file)
    assert check_ca_bundle(bundle) is None
    context = network._context.__wrapped__(bundle)
    assert loads == [bundle]  # parsed once
    assert len(context.get_ca_certs()) == 1
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    # Handed over once: the next context of its own parses the file again.
    assert network._context.__wrapped__(bundle) is not context
    assert loads == [bundle, bundle]


def test_only_a_good_check_hands_a_context_over(tmp_path: Path, loads: list[Any]) -> None:
    good = str(private_ca(tmp_path).ca_file)
    empty = tmp_path / "empty.pem"
    empty.write_text("no certificate here\n")
    assert check_ca_bundle(good) is None
    assert check_ca_bundle(str(empty)) is not None
    assert checked_context(str(empty)) is None
    (tmp_path / "other").mkdir()
    other = private_ca(tmp_path / "other")
    assert check_ca_bundle(str(other.ca_file)) is None  # the last good check replaces the previous one
    assert checked_context(good) is None
    assert checked_context(str(other.ca_file)) is not None


# -- the environment's bundle loaded while `run` imports its runtime (config/network.prefetch_ca_bundle)


def test_a_prefetched_bundle_is_parsed_once_and_judged_as_ever(tmp_path: Path, loads: list[Any]) -> None:
    from shardbeat.config.network import network_config, prefetch_ca_bundle

    bundle = str(private_ca(tmp_path).ca_file)
    environ = {"SSL_CERT_FILE": bundle}
    prefetch_ca_bundle({"groups": []}, environ)
    settings, problems = network_config({"groups": []}, tmp_path, environ)
    assert problems == [] and settings.ca_file == bundle and settings.ca_source == "SSL_CERT_FILE"
    assert loads == [bundle]  # the thread's load was the check's: not parsed twice
    assert network._context.__wrapped__(bundle).get_ca_certs()  # and the transport took it over
    assert loads == [bundle]


def test_a_prefetched_bad_bundle_is_refused_with_the_same_words(tmp_path: Path, loads: list[Any]) -> None:
    from shardbeat.config.network import network_config, prefetch_ca_bundle

    empty = tmp_path / "empty.pem"
    empty.write_text("no certificate here\n")
    environ = {"REQUESTS_CA_BUNDLE": str(empty)}
    unfetched = network_config({}, tmp_path, environ)[1]
    prefetch_ca_bundle({}, environ)
    fetched = network_config({}, tmp_path, environ)[1]
    assert fetched == unfetched and len(fetched) == 1
    assert fetched[0].path == "REQUESTS_CA_BUNDLE" and "holds no usable PEM certificate" in fetched[0].message


def test_no_prefetch_when_the_config_may_name_its_own_bundle(tmp_path: Path, loads: list[Any]) -> None:
    from shardbeat.config.network import network_config, prefetch_ca_bundle

    env_bundle = str(private_ca(tmp_path).ca_file)
    (tmp_path / "own").mkdir()
    own = str(private_ca(tmp_path / "own").ca_file)
    document = {"tls": {"ca_file": own}}
    prefetch_ca_bundle(document, {"SSL_CERT_FILE": env_bundle})
    settings, problems = network_config(document, tmp_path, {"SSL_CERT_FILE": env_bundle})
    assert problems == [] and settings.ca_file == own
    assert loads == [own]  # the environment's bundle, which tls.ca_file overrides, was never parsed
