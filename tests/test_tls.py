"""TLS trust: an emulator endpoint with a certificate from a private CA made in the test is refused by
default (system trust) and accepted with `tls.ca_file`, by the heartbeat transport, the requests
sessions and the whole process; CA bundles from the config or the environment are checked at load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import Plugin, shardbeat_in_process
from proxy_kit import PrivateCa, private_ca
from shardbeat.config import ConfigError, config_from_dict
from shardbeat.config.model import NetworkConfig
from shardbeat.emulator.server import EmulatorServer
from shardbeat.providers.base import Credentials
from shardbeat.providers.sls import SlsProvider
from shardbeat.runtime.http_loop import HttpLoop
from shardbeat.runtime.http_session import RequestsTransport, make_session
from shardbeat.runtime.network import Network
from shardbeat.runtime.transport import HttpTransport, Transport, TransportError

CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")


@pytest.fixture(autouse=True)
def no_proxy_no_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCa:
    return private_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def server(ca: PrivateCa) -> Iterator[EmulatorServer]:
    with EmulatorServer(tls=ca.server_context()) as emulator:
        yield emulator


def heartbeat(transport: Transport, server: EmulatorServer) -> None:
    demo = server.demo_config("sls")
    provider = SlsProvider(server.url, demo["project"], demo["logstore"], demo["consumer_group"], "tls-node")
    creds = Credentials(demo["credentials"]["access_key_id"], demo["credentials"]["access_key_secret"])
    answer = transport.send(
        provider.endpoint, provider.heartbeat_request({}, time.time(), creds), time.monotonic() + 5
    )
    assert provider.parse_heartbeat(answer)[demo["logstore"]]


def both(network: Network) -> list[Transport]:
    return [HttpTransport(network=network), HttpLoop(network=network), RequestsTransport(network=network)]


def test_a_private_ca_is_refused_by_system_trust_and_accepted_with_ca_file(
    server: EmulatorServer, ca: PrivateCa
) -> None:
    assert server.url.startswith("https://127.0.0.1:")
    for transport in both(Network()):
        try:
            with pytest.raises(TransportError) as caught:
                heartbeat(transport, server)
            assert caught.value.code == "TLSError"
            assert (
                "certificate verify failed" in caught.value.message.lower()
                or "CERTIFICATE" in caught.value.message
            )
        finally:
            transport.close()
    for transport in both(Network(NetworkConfig(ca_file=str(ca.ca_file), ca_source="tls.ca_file"))):
        try:
            heartbeat(transport, server)
        finally:
            transport.close()


def test_the_host_name_is_checked_too(server: EmulatorServer, ca: PrivateCa, tmp_path: Path) -> None:
    other = private_ca(tmp_path)  # a CA that did not sign the server's certificate
    for transport in both(Network(NetworkConfig(ca_file=str(other.ca_file)))):
        try:
            with pytest.raises(TransportError) as caught:
                heartbeat(transport, server)
            assert caught.value.code == "TLSError"
        finally:
            transport.close()


def test_a_caller_cannot_turn_verification_off(server: EmulatorServer) -> None:
    session = make_session(Network())
    try:
        import requests

        with pytest.raises(requests.exceptions.SSLError):
            session.get(f"{server.url}/_admin/state", verify=False)
    finally:
        session.close()


def sls_group() -> dict[str, Any]:
    return {
        "provider": "sls",
        "endpoint": "cn-hangzhou.log.aliyuncs.com",
        "project": "my-project",
        "logstore": "my-logstore",
        "consumer_group": "g1",
        "consumer": "c1",
        "credentials": {"access_key_id": "id", "access_key_secret": "secret"},
    }


def test_ca_file_is_relative_to_the_config_and_beats_the_environment(ca: PrivateCa, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(ca.ca_file.read_bytes())
    env = {"REQUESTS_CA_BUNDLE": str(tmp_path / "missing.pem")}
    loaded = config_from_dict(
        {"groups": [sls_group()], "tls": {"ca_file": "ca.pem"}}, base_dir=tmp_path, environ=env
    )
    assert loaded.config.network.ca_file == str(tmp_path / "ca.pem")
    assert loaded.config.network.ca_source == "tls.ca_file"


@pytest.mark.parametrize("variable", CA_VARIABLES)
def test_ca_bundle_variables_are_honoured_in_requests_order(variable: str, ca: PrivateCa) -> None:
    env = {variable: str(ca.ca_file)}
    network = config_from_dict({"groups": [sls_group()]}, environ=env).config.network
    assert (network.ca_file, network.ca_source) == (str(ca.ca_file), variable)
    both_set = {"SSL_CERT_FILE": "/nonexistent", "REQUESTS_CA_BUNDLE": str(ca.ca_file)}
    network = config_from_dict({"groups": [sls_group()]}, environ=both_set).config.network
    assert network.ca_source == "REQUESTS_CA_BUNDLE"
    assert config_from_dict({"groups": [sls_group()]}, environ={}).config.network.ca_file is None


@pytest.mark.parametrize(
    ("content", "why"),
    [(None, "no such file"), (b"not a certificate\n", "no usable PEM"), (b"", "no usable PEM")],
)
def test_unusable_ca_bundles_exit_2_naming_the_key(content: bytes | None, why: str, tmp_path: Path) -> None:
    path = tmp_path / "bundle.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"groups": [sls_group()], "tls": {"ca_file": str(path)}}, environ={})
    assert [p.path for p in caught.value.problems] == ["tls.ca_file"]
    assert why in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"groups": [sls_group()]}, environ={"SSL_CERT_FILE": str(path)})
    assert [p.path for p in caught.value.problems] == ["SSL_CERT_FILE"]


def test_a_ca_directory_from_the_environment_needs_hashed_certificates(ca: PrivateCa, tmp_path: Path) -> None:
    # An empty (or un-rehashed) capath would fail every TLS call at run time: refused at load.
    empty = tmp_path / "certs"
    empty.mkdir()
    (empty / "ca.pem").write_bytes(ca.ca_file.read_bytes())  # not hash-named: OpenSSL never finds it
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"groups": [sls_group()]}, environ={"SSL_CERT_FILE": str(empty)})
    [problem] = caught.value.problems
    assert problem.path == "SSL_CERT_FILE" and "without hashed certificates" in problem.message
    (empty / "5ed36f99.0").write_bytes(ca.ca_file.read_bytes())
    network = config_from_dict(
        {"groups": [sls_group()]}, environ={"SSL_CERT_FILE": str(empty)}
    ).config.network
    assert (network.ca_file, network.ca_source) == (str(empty), "SSL_CERT_FILE")


def test_tls_has_no_insecure_switch() -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"groups": [sls_group()], "tls": {"verify": False}}, environ={})
    assert [p.path for p in caught.value.problems] == ["tls.verify"]


@pytest.mark.slow
def test_run_trusts_the_private_ca_only_with_ca_file(
    server: EmulatorServer, ca: PrivateCa, tmp_path: Path
) -> None:
    demo = server.demo_config("sls")
    demo.update(heartbeat_interval=0.5, timeout=5, consumer="tls-run")
    env = {name: "" for name in CA_VARIABLES}
    for with_ca in (False, True):
        config = {"groups": [demo], "runtime_dir": str(tmp_path / "run")}
        if with_ca:
            config["tls"] = {"ca_file": str(ca.ca_file)}
        path = tmp_path / f"config-{with_ca}.json"
        path.write_text(json.dumps(config))
        plugin = Plugin(["run", "--config", str(path)], env=env)
        try:
            wanted = "lease" if with_ca else "error"
            assert plugin.wait_for(lambda rs, w=wanted: any(r["event"] == w for r in rs), 15), plugin.log()
        finally:
            assert plugin.terminate() == 0
            plugin.finish()
        if not with_ca:
            errors = plugin.events("error")
            assert errors[0]["error"]["code"] == "TLSError"
            assert not plugin.events("assignment")
        if with_ca:
            doctor = subprocess.run(
                [sys.executable, "-m", "shardbeat", "doctor", "--config", str(path)],
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, **env},
            )
        else:  # the refusal through the same cli.main in this process (a child costs a start-up)
            doctor = shardbeat_in_process("doctor", "--config", str(path), env=env)
        endpoint = next(line for line in doctor.stdout.splitlines() if " endpoint: " in line)
        if with_ca:
            assert endpoint.startswith("PASS") and f"CA bundle {ca.ca_file} (from tls.ca_file)" in endpoint
        else:
            assert endpoint.startswith("FAIL") and "tls.ca_file" in endpoint, endpoint


def test_the_sessions_trust_exactly_the_bundle_not_certifi_too(server: EmulatorServer, ca: PrivateCa) -> None:
    session = make_session(Network(NetworkConfig(ca_file=str(ca.ca_file), ca_source="tls.ca_file")))
    try:
        assert session.get(f"{server.url}/_admin/state").status_code == 200
        context = session.get_adapter(server.url)._ssl_context  # type: ignore[attr-defined]
        assert len(context.get_ca_certs()) == 1  # requests would have added certifi's ~150 CAs
    finally:
        session.close()
