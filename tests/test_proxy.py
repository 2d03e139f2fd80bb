"""Proxies: requests' rules for choosing one (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY with suffixes and CIDR),
the config's `proxy` over the environment, absolute-form for http and CONNECT for https on the
heartbeat transport and the requests sessions, and proxy credentials that never reach any output."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from harness import shardbeat_in_process
from proxy_kit import PrivateCa, loopback_proxy, private_ca
from shardbeat.config import ConfigError, config_from_dict, load_config
from shardbeat.config.model import NetworkConfig
from shardbeat.config.proxy_url import ProxyUrlError, parse_proxy_url
from shardbeat.emulator.server import EmulatorServer
from shardbeat.providers.base import Credentials, Endpoint
from shardbeat.providers.sls import SlsProvider
from shardbeat.runtime import connect
from shardbeat.runtime.http_loop import HttpLoop
from shardbeat.runtime.http_session import RequestsTransport, make_session
from shardbeat.runtime.network import Network, config_problems
from shardbeat.runtime.resolver import Resolver
from shardbeat.runtime.transport import HttpTransport, Transport, TransportError

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
PASSWORD = "pr0xy-s3cret"


@pytest.fixture(autouse=True)
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- choosing the route --------------------------------------------------------------------------------


def route_url(network: Network, url: str) -> str | None:
    scheme, rest = url.split("://", 1)
    hostport = rest.split("/", 1)[0]
    host, _, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
    route = network.route(scheme, host, int(port) if port else {"http": 80, "https": 443}[scheme])
    return route.proxy.url if route.proxy is not None else None


def requests_choice(url: str) -> str | None:
    """What requests itself would use for `url` from the environment (its Session, trust_env on)."""
    session = requests.Session()
    settings = session.merge_environment_settings(url, {}, None, None, None)
    proxies = settings["proxies"]
    scheme = url.split("://", 1)[0]
    chosen = proxies.get(scheme, proxies.get("all"))
    return parse_proxy_url(chosen).url if chosen else None


ENVIRONMENTS: list[dict[str, str]] = [
    {"HTTPS_PROXY": "http://p1:3128", "HTTP_PROXY": "http://p2:8080"},
    {"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:2"},
    {"ALL_PROXY": "http://all:3128"},
    {"HTTPS_PROXY": "p3:3128"},  # no scheme: http:// as requests reads it
    {"HTTPS_PROXY": "http://p1:3128", "NO_PROXY": "example.com,10.0.0.0/8,192.168.1.7,internal:8443"},
    {"HTTPS_PROXY": "http://p1:3128", "no_proxy": ".aliyuncs.com"},
    {"HTTP_PROXY": "http://u:p%40ss@p1:3128", "NO_PROXY": "*"},
    {"HTTPS_PROXY": "http://p1:3128", "NO_PROXY": "127.0.0.0/8, localhost"},
    # runtime/proxy_env.py's edge cases: bad CIDR masks, a lone "*" among others, port-qualified suffixes
    {"HTTPS_PROXY": "http://p1:3128", "NO_PROXY": "10.0.0.0/0,11.0.0.0/33,192.168.1.0/24x,,"},
    {"HTTPS_PROXY": "http://p1:3128", "no_proxy": "foo, *", "NO_PROXY": ""},
    {"ALL_PROXY": "http://all:1", "HTTP_PROXY": "http://h:2", "NO_PROXY": ".example.com:443,internal"},
    {"REQUEST_METHOD": "GET", "HTTP_PROXY": "http://cgi:1", "HTTPS_PROXY": "http://p1:3128"},
    {"https_proxy": "", "HTTPS_PROXY": "http://upper:2", "no_proxy": "EXAMPLE.com"},
]
URLS = [
    "https://cn-hangzhou.log.aliyuncs.com/",
    "https://my-project.cn-hangzhou.log.aliyuncs.com/",
    "http://cls.ap-guangzhou.tencentcloudapi.com/",
    "https://example.com/",
    "https://sub.example.com/",
    "https://notexample.com/",
    "https://10.1.2.3/",
    "https://11.1.2.3/",
    "https://192.168.1.7/",
    "https://internal:8443/",
    "https://internal:9443/",
    "http://127.0.0.1:8099/",
    "http://localhost:8099/",
]


@pytest.mark.parametrize("environment", ENVIRONMENTS, ids=[",".join(e) for e in ENVIRONMENTS])
def test_the_route_is_the_one_requests_would_take(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    network = Network()
    for url in URLS:
        assert route_url(network, url) == requests_choice(url), url


def test_no_proxy_suffix_and_cidr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", ".log.aliyuncs.com,10.0.0.0/8")
    network = Network()
    assert network.route("https", "p.cn-hangzhou.log.aliyuncs.com", 443).proxy is None
    assert network.route("https", "p.cn-hangzhou.log.aliyuncs.com", 443).reason == "NO_PROXY"
    assert network.route("https", "10.200.3.4", 443).proxy is None
    via = network.route("https", "11.0.0.1", 443)
    assert via.proxy is not None and via.proxy.host == "proxy.corp" and via.reason == "HTTPS_PROXY"
    assert network.route("https", "cls.tencentcloudapi.com", 443).proxy is not None


@pytest.mark.parametrize("bits", ["\u00b2", "\u0663", " 8", "+8", "8/8"])  # '\u00b2'.isdigit(): int() crashed
def test_a_no_proxy_cidr_mask_is_read_as_requests_reads_it(
    monkeypatch: pytest.MonkeyPatch, bits: str
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", f"10.0.0.0/{bits}")
    for url in ("https://10.1.2.3/", "https://11.0.0.1/", "https://64.0.0.1/"):
        assert route_url(Network(), url) == requests_choice(url), url


def test_config_proxy_overrides_the_environment_but_not_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy:1")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    network = Network(NetworkConfig(proxy=parse_proxy_url("http://u:pw@cfg-proxy:3128")))
    route = network.route("https", "cn-hangzhou.log.aliyuncs.com", 443)
    assert route.proxy is not None and route.proxy.host == "cfg-proxy" and route.reason == "config proxy"
    assert network.route("https", "internal.example", 443).proxy is None
    assert "pw" not in route.shown and "***@cfg-proxy:3128" in route.shown


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("socks5://u:pw@h:1080", "only http://"),
        ("https://h:3128", "only http://"),
        ("http://h:3128/path", "no path"),
        ("http://:3128", "no host"),
        ("http://h:notaport", "not a valid URL"),
        ("", "is empty"),
        ("http://u:p\rw@h:3128", "control characters"),
        ("http://u:pw@127.0.0.1:0", "no connection can be made to"),
        ("http://u:pw@proxy..corp:3128", "no connection can be made to"),
        ("http://u:pw@pro xy:3128", "no connection can be made to"),
    ],
)
def test_bad_proxy_urls_are_refused_without_echoing_them(text: str, why: str) -> None:
    with pytest.raises(ProxyUrlError) as caught:
        parse_proxy_url(text)
    assert why in str(caught.value)
    if text.strip():
        assert text.strip() not in str(caught.value)


def test_proxy_url_credentials_are_decoded_and_redacted() -> None:
    proxy = parse_proxy_url("http://us%3Aer:p%40ss@[::1]:3128")
    assert (proxy.username, proxy.password, proxy.host, proxy.port) == ("us:er", "p@ss", "::1", 3128)
    assert proxy.redacted == "http://***@[::1]:3128"
    assert parse_proxy_url(proxy.url) == proxy
    assert "p@ss" not in repr(proxy) and parse_proxy_url("h").port == 80


def test_a_proxy_without_credentials_is_named_not_masked() -> None:
    """Its URL is no secret: registering it masked the proxy's address in every log line and error."""
    from shardbeat.core.redaction import redact

    proxy = parse_proxy_url("http://127.0.0.1:3129")
    assert proxy.secrets == ()
    assert redact(f"via proxy {proxy.url}") == "via proxy http://127.0.0.1:3129"
    with_credentials = parse_proxy_url("http://bob:long-proxy-password@127.0.0.1:3129")
    assert "long-proxy-password" not in redact(f"via {with_credentials.url}")


def test_a_proxy_echoing_the_basic_credentials_it_refused_is_masked() -> None:
    """A 407 status line quoting our Proxy-Authorization value (base64 of user:password, as good as
    the password) or the decoded pair went into records, logs and doctor as is."""
    import base64

    from shardbeat.core.redaction import redact

    proxy = parse_proxy_url("http://bob:hunter2@127.0.0.1:3130")
    encoded = base64.b64encode(b"bob:hunter2").decode()
    shown = redact(f"407 you sent {encoded} as bob:hunter2")
    assert encoded not in shown and "hunter2" not in shown
    assert set(proxy.secrets) >= {encoded, "bob:hunter2"}


def sls_group(**extra: Any) -> dict[str, Any]:
    return {
        "provider": "sls",
        "endpoint": "cn-hangzhou.log.aliyuncs.com",
        "project": "my-project",
        "logstore": "my-logstore",
        "consumer_group": "g1",
        "consumer": "c1",
        "credentials": {"access_key_id": "id", "access_key_secret": "secret"},
        **extra,
    }


def test_config_proxy_is_validated_naming_the_key_not_the_value() -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"groups": [sls_group()], "proxy": f"socks5://u:{PASSWORD}@h:1"}, environ={})
    assert [p.path for p in caught.value.problems] == ["proxy"]
    assert PASSWORD not in str(caught.value)
    loaded = config_from_dict({"groups": [sls_group()], "proxy": f"http://u:{PASSWORD}@h:3128"}, environ={})
    assert loaded.config.network.proxy is not None and loaded.config.network.proxy.port == 3128
    assert PASSWORD not in repr(loaded.config)


def test_an_unusable_proxy_variable_is_a_config_problem_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", f"socks5h://u:{PASSWORD}@h:1080")
    config = config_from_dict({"groups": [sls_group()]}, environ={}).config
    problems = config_problems(config)
    assert [p.path for p in problems] == ["groups[0].endpoint"]
    assert "https_proxy" in problems[0].message and PASSWORD not in problems[0].message
    monkeypatch.setenv("NO_PROXY", ".aliyuncs.com")  # not used for this endpoint: no problem
    assert config_problems(config_from_dict({"groups": [sls_group()]}, environ={}).config) == []


# -- through a proxy, on loopback ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCa:
    return private_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def tls_emulator(ca: PrivateCa) -> Iterator[EmulatorServer]:
    with EmulatorServer(tls=ca.server_context()) as server:
        yield server


def heartbeat(transport: Transport, server: EmulatorServer, consumer: str = "via-proxy") -> int:
    demo = server.demo_config("sls")
    provider = SlsProvider(server.url, demo["project"], demo["logstore"], demo["consumer_group"], consumer)
    creds = Credentials(demo["credentials"]["access_key_id"], demo["credentials"]["access_key_secret"])
    request = provider.heartbeat_request({}, time.time(), creds)
    answer = transport.send(provider.endpoint, request, time.monotonic() + 5)
    assert provider.parse_heartbeat(answer)[demo["logstore"]], answer
    return answer.status


def transports(network: Network) -> list[Transport]:
    return [HttpTransport(network=network), HttpLoop(network=network), RequestsTransport(network=network)]


def lean_transports(network: Network) -> list[Transport]:
    """The heartbeat transports of `run` (requests' own errors are named by http_session)."""
    return [HttpTransport(network=network), HttpLoop(network=network)]


def test_http_through_a_proxy_uses_absolute_form_with_credentials(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with loopback_proxy(("user", PASSWORD)) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url())
        for transport in transports(Network()):
            try:
                assert heartbeat(transport, emulator) == 200
                assert heartbeat(transport, emulator) == 200  # and again, on the kept-alive connection
            finally:
                transport.close()
        assert len(proxy.seen) == 6
        for seen in proxy.seen:
            assert seen.method == "POST"
            assert seen.target.startswith(f"http://127.0.0.1:{emulator.port}/logstores/")
            assert seen.headers["proxy-authorization"].startswith("Basic ")
            assert seen.headers["host"].endswith(f"127.0.0.1:{emulator.port}")


def test_https_through_a_proxy_uses_connect(
    tls_emulator: EmulatorServer, ca: PrivateCa, monkeypatch: pytest.MonkeyPatch
) -> None:
    with loopback_proxy(("user", PASSWORD)) as proxy:
        monkeypatch.setenv("https_proxy", proxy.url())
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead_port()}")  # not for https
        network = Network(NetworkConfig(ca_file=str(ca.ca_file), ca_source="tls.ca_file"))
        for transport in transports(network):
            try:
                assert heartbeat(transport, tls_emulator) == 200
            finally:
                transport.close()
        assert [s.method for s in proxy.seen] == ["CONNECT", "CONNECT", "CONNECT"]
        for seen in proxy.seen:
            assert seen.target == f"127.0.0.1:{tls_emulator.port}"
            assert seen.headers["proxy-authorization"].startswith("Basic ")


def test_a_proxy_that_wants_credentials_is_reported_without_leaking_any(
    tls_emulator: EmulatorServer, emulator: EmulatorServer, ca: PrivateCa
) -> None:
    with loopback_proxy(("user", PASSWORD)) as proxy:
        wrong = parse_proxy_url(f"http://user:not-{PASSWORD}@127.0.0.1:{proxy.port}")
        anonymous = parse_proxy_url(proxy.url(with_credentials=False))
        for given in (wrong, anonymous):
            network = Network(NetworkConfig(proxy=given, ca_file=str(ca.ca_file), ca_source="tls.ca_file"))
            for transport in lean_transports(network):
                try:
                    with pytest.raises(TransportError) as caught:
                        heartbeat(transport, tls_emulator)
                    assert caught.value.code == "ProxyAuthRequired"
                    assert PASSWORD not in str(caught.value) and "127.0.0.1" in caught.value.message
                finally:
                    transport.close()
            control = RequestsTransport(network=network)
            try:
                with pytest.raises(TransportError) as caught:
                    heartbeat(control, tls_emulator)
                assert caught.value.code in ("ProxyAuthRequired", "ProxyError")
                assert PASSWORD not in str(caught.value)
            finally:
                control.close()


def test_no_proxy_cidr_goes_direct(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead_port()}")
    monkeypatch.setenv("NO_PROXY", "10.0.0.0/8,127.0.0.0/8")
    for transport in transports(Network()):
        try:
            assert heartbeat(transport, emulator) == 200
        finally:
            transport.close()
    monkeypatch.setenv("NO_PROXY", "10.0.0.0/8")  # now the dead proxy is in the way
    for transport in lean_transports(Network()):
        with pytest.raises(TransportError) as caught:
            heartbeat(transport, emulator)
        assert caught.value.code == "ConnectionRefused"
        transport.close()


def test_session_factory_uses_the_route_and_a_default_timeout(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with loopback_proxy() as proxy:
        network = Network(NetworkConfig(proxy=parse_proxy_url(proxy.url())))
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead_port()}")  # overridden by the config's
        session = make_session(network, timeout=3.0)
        try:
            answer = session.get(f"{emulator.url}/_admin/state")
            assert answer.status_code == 200
            assert answer.request.headers["User-Agent"].startswith("shardbeat/")
        finally:
            session.close()
        assert [s.target for s in proxy.seen] == [f"{emulator.url}/_admin/state"]


# -- the whole process ----------------------------------------------------------------------------------


def run_config(tmp_path: Path, server: EmulatorServer, **top: Any) -> Path:
    demo = server.demo_config("sls")
    demo.update(heartbeat_interval=0.5, timeout=5, consumer="proxied-node")
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"groups": [demo], "runtime_dir": str(tmp_path / "run"), **top}))
    return path


def test_run_and_doctor_go_through_the_config_proxy_and_never_show_its_password(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    from harness import Plugin

    with loopback_proxy(("user", PASSWORD)) as proxy:
        config = run_config(tmp_path, emulator, proxy=proxy.url())
        env = {"HTTP_PROXY": f"http://127.0.0.1:{dead_port()}", "NO_PROXY": ""}
        plugin = Plugin(["run", "--config", str(config), "--log-level", "debug"], env=env)
        try:
            assert plugin.wait_for(lambda rs: any(r["event"] == "lease" for r in rs), 15), plugin.log()
        finally:
            plugin.terminate()
            plugin.finish()
        # Bootstrap (requests) and heartbeats (http.client) both went through the proxy.
        assert any(s.target.endswith("/consumergroups") for s in proxy.seen)
        assert any("type=heartbeat" in s.target for s in proxy.seen)
        output = plugin.log() + b"".join(plugin.raw_stdout).decode()
        assert PASSWORD not in output
        assert f"via proxy http://***@127.0.0.1:{proxy.port} (from config proxy)" in plugin.log()
        doctor = subprocess.run(
            [sys.executable, "-m", "shardbeat", "doctor", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env},
        )
        assert PASSWORD not in doctor.stdout + doctor.stderr
        assert f"via proxy http://***@127.0.0.1:{proxy.port} (from config proxy)" in doctor.stdout
        assert "credentials: key" in doctor.stdout, doctor.stdout
        assert not [line for line in doctor.stdout.splitlines() if line.startswith("FAIL")], doctor.stdout


def test_validate_refuses_an_unusable_proxy_variable(tmp_path: Path, emulator: EmulatorServer) -> None:
    config = run_config(tmp_path, emulator)
    env = {**os.environ, "HTTP_PROXY": f"socks5://u:{PASSWORD}@127.0.0.1:1080"}
    for verb in ("validate", "run", "doctor"):
        if verb == "run":  # what a host starts: a real process; the others through cli.main here
            done = subprocess.run(
                [sys.executable, "-m", "shardbeat", verb, "--config", str(config)],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
            )
        else:
            done = shardbeat_in_process(verb, "--config", str(config), env=env)
        assert done.returncode == 2, (verb, done.stderr)
        assert "HTTP_PROXY" in done.stderr and PASSWORD not in done.stderr + done.stdout
        assert done.stdout.strip() == "", verb


def test_doctor_names_an_unreachable_proxy_without_its_password(tmp_path: Path) -> None:
    from shardbeat.runtime.doctor import diagnose

    raw = {"groups": [sls_group()], "proxy": f"http://u:{PASSWORD}@127.0.0.1:{dead_port()}"}
    loaded = config_from_dict({**raw, "runtime_dir": str(tmp_path)}, environ={})
    checks = diagnose(loaded, call_timeout=1.0)
    endpoint = next(c for c in checks if c.name == "endpoint")
    assert endpoint.status == "FAIL"
    assert "via proxy http://***@127.0.0.1:" in endpoint.detail and "(from config proxy)" in endpoint.detail
    assert "TCP connect of the proxy failed" in endpoint.detail and "proxy is unreachable" in endpoint.detail
    assert all(PASSWORD not in c.line() for c in checks)


def test_the_proxy_and_v4_example_is_valid() -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "configs" / "sls-v4-proxy.json"
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "AKID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret"}
    loaded = load_config(example, environ=env, hostname="host")
    assert loaded.warnings == ()
    assert loaded.config.groups[0].signature_version == "v4"
    assert (
        loaded.config.network.proxy is not None and loaded.config.network.proxy.host == "proxy.corp.example"
    )


@pytest.mark.parametrize(
    ("answer", "code", "words"),
    [
        (
            b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 32\r\n\r\n"
            b"<html>credentials needed</html>\n",
            "ProxyAuthRequired",
            "needs credentials",
        ),
        (
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\nContent-Length: 24\r\n\r\n"
            b"<html>not allowed</html>",
            "ProxyError",
            "refused CONNECT",
        ),
        (b"HTTP/1.1 200 Connection established\r\n\r\nearly bytes", "ProxyError", "sent data before"),
        (
            b"HTTP/1.1 \xb200 OK\r\n\r\n",
            "ProxyError",
            "refused CONNECT",
        ),  # '\u00b200'.isdigit(): int() raised
    ],
)
def test_a_proxy_refusal_with_a_body_is_named_by_its_status(answer: bytes, code: str, words: str) -> None:
    """Real proxies (squid, corporate gateways) send their 407 and 403 with an HTML page: in the same
    segment as the head, that body was taken for 'data before the tunnel opened', hiding the status
    (and that credentials were missing) behind a vaguer error - depending on how the bytes were cut."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            conn.sendall(answer)  # head and body in one segment
            conn.recv(1)

    threading.Thread(target=serve, daemon=True).start()
    proxy = parse_proxy_url(f"http://127.0.0.1:{listener.getsockname()[1]}")
    network = Network(NetworkConfig(proxy=proxy))
    endpoint = Endpoint("https", "127.0.0.1", 443, "127.0.0.1")
    try:
        with pytest.raises(connect.ProxyRefused) as caught:
            connect.open_socket(
                endpoint,
                network.route_to(endpoint),
                Resolver(),
                network.ssl_context,
                time.monotonic() + 5,
                time.monotonic,
            )
        assert caught.value.code == code and words in caught.value.message, caught.value.message
    finally:
        listener.close()


def test_a_proxy_refusing_an_http_request_is_named_as_the_proxy_not_the_service(
    emulator: EmulatorServer,
) -> None:
    """For an http endpoint the request itself goes to the proxy (absolute-form), so its 407 came back
    as the service's answer: 'InvalidResponse: HTTP 407: body is not JSON' (SLS), 'HttpError: HTTP 407
    instead of 200' (CLS) - nothing said a proxy wanted credentials, as it does for CONNECT."""
    with loopback_proxy(("user", PASSWORD)) as proxy:
        wrong = parse_proxy_url(f"http://user:not-{PASSWORD}@127.0.0.1:{proxy.port}")
        anonymous = parse_proxy_url(proxy.url(with_credentials=False))
        for given, why in ((wrong, "refused the credentials"), (anonymous, "needs credentials")):
            network = Network(NetworkConfig(proxy=given))
            for transport in lean_transports(network):
                try:
                    with pytest.raises(TransportError) as caught:
                        heartbeat(transport, emulator)
                    assert (caught.value.code, caught.value.step) == ("ProxyAuthRequired", "connect")
                    assert why in caught.value.message and PASSWORD not in str(caught.value)
                finally:
                    transport.close()


def test_a_proxy_that_holds_connect_is_named_not_a_tcp_handshake(tls_emulator: EmulatorServer) -> None:
    """A proxy that takes the TCP connection and never answers CONNECT failed as 'connect to <endpoint>:
    ...; no reply to the TCP handshake: a firewall may drop the traffic' - the handshake was done, with
    the proxy; the proxy is what to check."""
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (backlog) and never answers
    try:
        proxy = parse_proxy_url(f"http://127.0.0.1:{listener.getsockname()[1]}")
        network = Network(NetworkConfig(proxy=proxy))
        for transport in lean_transports(network):
            try:
                demo = tls_emulator.demo_config("sls")
                provider = SlsProvider(
                    tls_emulator.url, demo["project"], demo["logstore"], demo["consumer_group"], "held"
                )
                creds = Credentials("id", "secret")
                with pytest.raises(TransportError) as caught:
                    transport.send(
                        provider.endpoint,
                        provider.heartbeat_request({}, time.time(), creds),
                        time.monotonic() + 0.5,
                    )
                assert (caught.value.code, caught.value.step) == ("Timeout", "proxy")
                words = caught.value.describe(provider.endpoint)
                assert "TCP handshake" not in words and "check the proxy" in words, words
            finally:
                transport.close()
    finally:
        listener.close()


def test_a_call_through_an_unreachable_proxy_names_the_proxy_not_the_endpoint(
    emulator: EmulatorServer,
) -> None:
    """`run` said 'connect to <endpoint>: connection refused; nothing listens there: check the endpoint's
    host and port' when it was the proxy that refused: the endpoint was fine, the proxy is what to check
    (doctor named it; the records and logs of `run` now do too)."""
    from shardbeat.runtime.output import RecordWriter
    from shardbeat.runtime.runner import Runner

    port = dead_port()
    raw = {"groups": [sls_group(endpoint=emulator.url)], "proxy": f"http://u:{PASSWORD}@127.0.0.1:{port}"}
    config = config_from_dict(raw, environ={}).config
    r, w = os.pipe()
    runner = Runner(config.groups, RecordWriter(w), network=Network.of(config))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    errors: list[dict[str, Any]] = []
    with os.fdopen(r, "rb") as stream:
        for line in stream:  # bounded: the runner is stopped at the first error record
            record = json.loads(line)
            if record["event"] == "error":
                errors.append(record)
                runner.stop()
            if record["event"] == "stopped":
                break
    thread.join(5)
    os.close(w)
    message = errors[0]["error"]["message"]
    assert message.startswith(f"connect to proxy 127.0.0.1:{port} (for 127.0.0.1:{emulator.port}): ")
    assert "check the proxy's host and port" in message and PASSWORD not in message


@pytest.mark.parametrize(
    ("code", "step", "expected"),
    [
        ("ConnectionRefused", "connect", "connect to proxy p.example:3128 (for h.example:443): x; nothing"),
        (
            "NameResolution",
            "resolve",
            "resolve proxy p.example (for h.example:443): x; check the proxy's host",
        ),
        (
            "Timeout",
            "connect",
            "connect to proxy p.example:3128 (for h.example:443): x; no reply from the proxy",
        ),
        ("TLSError", "tls", "TLS handshake with h.example:443: x"),  # past the proxy: the endpoint's
        ("Timeout", "answer", "answer from h.example:443: x"),
    ],
)
def test_errors_of_the_proxys_own_steps_name_the_proxy(code: str, step: str, expected: str) -> None:
    endpoint = Endpoint("https", "h.example", 443, "h.example")
    assert TransportError(code, "x", step).describe(endpoint, None, "p.example:3128").startswith(expected)
