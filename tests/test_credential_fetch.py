"""Each credential source against the emulator's metadata and STS endpoints (loopback only)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from shardbeat.config.cli_profiles import ProfileError, read_profile
from shardbeat.config.credential_sources import (
    AlibabaOidc,
    CliProfile,
    CvmRole,
    EcsRamRole,
    TkeOidc,
)
from shardbeat.emulator.server import EmulatorServer
from shardbeat.providers.base import Credentials
from shardbeat.runtime.cloud_credentials import DefaultSessions, FetchError, fetch

ALI_ROLE = "acs:ram::1234567890:role/shardbeat"
ALI_PROVIDER = "acs:ram::1234567890:oidc-provider/ack-rrsa-c1"
TKE_ROLE = "qcs::cam::uin/100000000001:roleName/shardbeat"


@pytest.fixture
def sessions() -> Iterator[DefaultSessions]:
    made = DefaultSessions(metadata_timeout=(1.0, 1.0), sts_timeout=(1.0, 2.0))
    yield made
    made.close()


def identity(emu: EmulatorServer, **settings: Any) -> dict[str, Any]:
    if settings:
        requests.post(emu.url + "/_admin/identity", json=settings, timeout=5).raise_for_status()
    answer: dict[str, Any] = requests.get(emu.url + "/_admin/identity", timeout=5).json()
    return answer


def issued_key(emu: EmulatorServer, key_id: str) -> Credentials:
    key = emu.world.identity.keys[key_id]
    return Credentials(key.key_id, key.secret, key.token)


# -- ECS RAM role


def test_ecs_role_uses_imdsv2_and_discovers_the_role(
    emulator: EmulatorServer, sessions: DefaultSessions
) -> None:
    issued = fetch(EcsRamRole(emulator.url, None), sessions)
    assert issued.answered_by.startswith("IMDSv2 ") and "role shardbeat-ecs-role" in issued.answered_by
    assert issued.credentials == issued_key(emulator, issued.credentials.key_id)
    assert issued.credentials.token  # an STS key always comes with its token
    assert issued.expires is not None and issued.server_time is not None
    assert issued.expires - issued.server_time == pytest.approx(21600, abs=2)
    assert identity(emulator)["fetches"] == {"ecs_metadata/IMDSv2": 1}


def test_ecs_role_falls_back_to_v1_when_the_instance_has_no_imdsv2(
    emulator: EmulatorServer, sessions: DefaultSessions
) -> None:
    identity(emulator, imds_v2="off")
    issued = fetch(EcsRamRole(emulator.url, "shardbeat-ecs-role"), sessions)
    assert issued.answered_by.startswith("IMDSv1 ")
    assert identity(emulator)["fetches"] == {"ecs_metadata/IMDSv1": 1}


def test_ecs_role_without_v1_fallback_fails_naming_the_token_step(
    emulator: EmulatorServer, sessions: DefaultSessions
) -> None:
    identity(emulator, imds_v2="off")
    with pytest.raises(FetchError, match=r"IMDSv2 token: HTTP 404"):
        fetch(EcsRamRole(emulator.url, "shardbeat-ecs-role", imds_v1_fallback=False), sessions)


def test_ecs_role_works_where_imdsv2_is_enforced(emulator: EmulatorServer, sessions: DefaultSessions) -> None:
    identity(emulator, imds_v2="required")
    assert fetch(EcsRamRole(emulator.url, None), sessions).answered_by.startswith("IMDSv2 ")
    # A client that never asks for a token is refused there: the token is what makes it work.
    answer = requests.get(emulator.url + "/latest/meta-data/ram/security-credentials/", timeout=5)
    assert answer.status_code == 403


def test_ecs_unknown_role_and_no_role_are_named(emulator: EmulatorServer, sessions: DefaultSessions) -> None:
    with pytest.raises(FetchError, match=r"role nope: IMDSv2: HTTP 404 \(no such role\?\)"):
        fetch(EcsRamRole(emulator.url, "nope"), sessions)
    identity(emulator, ecs_roles=[])
    with pytest.raises(FetchError, match="no RAM role is attached"):
        fetch(EcsRamRole(emulator.url, None), sessions)


# -- CVM role


def test_cvm_role_discovers_the_role_and_reads_expired_time(
    emulator: EmulatorServer, sessions: DefaultSessions
) -> None:
    identity(emulator, lifetime=1800)
    issued = fetch(CvmRole(emulator.url, None), sessions)
    assert "role shardbeat-cvm-role" in issued.answered_by
    assert issued.credentials == issued_key(emulator, issued.credentials.key_id)
    assert issued.expires is not None and issued.server_time is not None
    assert issued.expires - issued.server_time == pytest.approx(1800, abs=2)
    with pytest.raises(FetchError, match="role other: HTTP 404"):
        fetch(CvmRole(emulator.url, "other"), sessions)


# -- OIDC (ACK RRSA, TKE)


def test_rrsa_assume_role_with_oidc_rereads_the_rotating_token_file(
    emulator: EmulatorServer, sessions: DefaultSessions, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("oidc-token-one\n")
    spec = AlibabaOidc(ALI_ROLE, ALI_PROVIDER, str(token_file), emulator.url, "shardbeat-test", 900)
    first = fetch(spec, sessions)
    assert first.credentials == issued_key(emulator, first.credentials.key_id)
    assert first.expires is not None and first.server_time is not None
    assert first.expires - first.server_time == pytest.approx(900, abs=2)
    # The kubelet rotates the projected token; the old one stops being accepted.
    token_file.write_text("oidc-token-two")
    identity(emulator, revoked_oidc_tokens=["oidc-token-one"])
    second = fetch(spec, sessions)
    assert second.credentials.key_id != first.credentials.key_id
    seen = identity(emulator)["oidc_tokens_seen"]
    assert seen == [hashlib.sha256(t).hexdigest()[:16] for t in (b"oidc-token-one", b"oidc-token-two")]
    token_file.write_text("oidc-token-one")  # a stale token is refused, and the error says so
    with pytest.raises(FetchError, match=r"HTTP 400 AuthenticationFail\.OIDCToken\.Invalid"):
        fetch(spec, sessions)


def test_tke_assume_role_with_web_identity(
    emulator: EmulatorServer, sessions: DefaultSessions, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tke-token-one")
    spec = TkeOidc(
        TKE_ROLE, "tke-oidc", str(token_file), emulator.url, "ap-guangzhou", "shardbeat-test", 7200
    )
    issued = fetch(spec, sessions)
    assert issued.credentials == issued_key(emulator, issued.credentials.key_id)
    assert issued.expires is not None and issued.server_time is not None
    assert issued.expires - issued.server_time == pytest.approx(7200, abs=2)
    identity(emulator, revoked_oidc_tokens=["tke-token-one"])
    with pytest.raises(FetchError, match=r"InvalidParameter\.WebIdentityTokenError"):
        fetch(spec, sessions)
    token_file.write_text("tke-token-two")
    assert fetch(spec, sessions).credentials.key_id != issued.credentials.key_id


def test_missing_or_empty_token_file_is_named(sessions: DefaultSessions, tmp_path: Path) -> None:
    spec = AlibabaOidc(ALI_ROLE, ALI_PROVIDER, str(tmp_path / "absent"), "http://127.0.0.1:9", "s", 900)
    with pytest.raises(FetchError, match=r"cannot read token file .*absent"):
        fetch(spec, sessions)
    (tmp_path / "empty").write_text("  \n")
    spec = AlibabaOidc(ALI_ROLE, ALI_PROVIDER, str(tmp_path / "empty"), "http://127.0.0.1:9", "s", 900)
    with pytest.raises(FetchError, match=r"token file .*empty is empty"):
        fetch(spec, sessions)


def test_a_fifo_token_file_is_refused_not_waited_on(sessions: DefaultSessions, tmp_path: Path) -> None:
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    spec = AlibabaOidc(ALI_ROLE, ALI_PROVIDER, str(fifo), "http://127.0.0.1:9", "s", 900)
    with pytest.raises(FetchError, match="is not a regular file"):
        fetch(spec, sessions)
    with pytest.raises(ProfileError, match="not a regular file"):
        read_profile(CliProfile("cls", str(fifo), None))


# -- profiles


def test_alibaba_profiles(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "current": "ak",
                "profiles": [
                    {"name": "ak", "mode": "AK", "access_key_id": "LTAIak", "access_key_secret": "s1"},
                    {
                        "name": "sts",
                        "mode": "StsToken",
                        "access_key_id": "STS.x",
                        "access_key_secret": "s2",
                        "sts_token": "t2",
                    },
                    {"name": "ecs", "mode": "EcsRamRole", "ram_role_name": "node-role"},
                    {
                        "name": "oidc",
                        "mode": "OIDC",
                        "ram_role_arn": ALI_ROLE,
                        "oidc_provider_arn": ALI_PROVIDER,
                        "oidc_token_file": "/var/run/token",
                        "sts_region": "cn-hangzhou",
                    },
                    {"name": "sso", "mode": "CloudSSO"},
                ],
            }
        )
    )
    assert read_profile(CliProfile("sls", str(config), None)) == Credentials("LTAIak", "s1")
    assert read_profile(CliProfile("sls", str(config), "sts")) == Credentials("STS.x", "s2", "t2")
    ecs = read_profile(CliProfile("sls", str(config), "ecs"))
    assert ecs == EcsRamRole("http://100.100.100.200", "node-role")
    oidc = read_profile(CliProfile("sls", str(config), "oidc"))
    assert isinstance(oidc, AlibabaOidc)
    assert (oidc.role_arn, oidc.token_file, oidc.sts_endpoint) == (
        ALI_ROLE,
        "/var/run/token",
        "https://sts.cn-hangzhou.aliyuncs.com",
    )
    with pytest.raises(ProfileError, match="mode 'CloudSSO'"):
        read_profile(CliProfile("sls", str(config), "sso"))
    with pytest.raises(ProfileError, match="no profile named 'nope'"):
        read_profile(CliProfile("sls", str(config), "nope"))


def test_tencent_profiles(tmp_path: Path, sessions: DefaultSessions) -> None:
    path = tmp_path / "credentials"
    path.write_text(
        "[default]\nsecret_id = AKIDdefault\nsecret_key = k1\n\n[ci]\nsecret_id=AKIDci\nsecret_key=k2\n"
    )
    issued = fetch(CliProfile("cls", str(path), None), sessions)
    assert issued.credentials == Credentials("AKIDdefault", "k1") and issued.expires is None
    assert read_profile(CliProfile("cls", str(path), "ci")) == Credentials("AKIDci", "k2")
    with pytest.raises(ProfileError, match=r"\[prod\] section"):
        read_profile(CliProfile("cls", str(path), "prod"))
    path.write_text("[default]\nsecret_id = AKID\n")
    with pytest.raises(FetchError, match=r"\[default\] has no secret_key"):
        fetch(CliProfile("cls", str(path), None), sessions)


# -- proxies: metadata never goes through one, STS does


class _ProxyRecorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.seen: list[str] = []
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _ProxyRecorder

    def do_GET(self) -> None:
        self.server.seen.append(f"{self.command} {self.path}")
        self.send_response(502)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[_ProxyRecorder]:
    server = _ProxyRecorder()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, url)
    yield server
    server.shutdown()
    server.server_close()


def test_metadata_bypasses_proxies_but_sts_uses_them(
    emulator: EmulatorServer, proxy: _ProxyRecorder, tmp_path: Path
) -> None:
    sessions = DefaultSessions(metadata_timeout=(1.0, 1.0), sts_timeout=(1.0, 2.0))
    try:
        assert fetch(EcsRamRole(emulator.url, None), sessions).credentials.token
        assert fetch(CvmRole(emulator.url, None), sessions).credentials.token
        assert proxy.seen == []
        token_file = tmp_path / "token"
        token_file.write_text("t")
        spec = AlibabaOidc(ALI_ROLE, ALI_PROVIDER, str(token_file), emulator.url, "s", 900)
        with pytest.raises(FetchError, match="HTTP 502"):
            fetch(spec, sessions)
        assert len(proxy.seen) == 1 and proxy.seen[0].startswith(
            f"POST {emulator.url}/?Action=AssumeRoleWithOIDC"
        )
        assert "OIDCToken" not in proxy.seen[0]  # the token travels in the body, not the URL
    finally:
        sessions.close()


# -- a hung metadata server costs a bounded wait; odd answers never leak a secret


def test_hung_metadata_server_gives_up_within_the_read_timeout(sessions: DefaultSessions) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections (the kernel does), never answers
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(FetchError, match="read timed out"):
            fetch(CvmRole(url, "r"), sessions)
    finally:
        listener.close()


class _Canned(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body
        super().__init__(("127.0.0.1", 0), _CannedHandler)


class _CannedHandler(BaseHTTPRequestHandler):
    server: _Canned

    def do_GET(self) -> None:
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    do_PUT = do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {
                "Code": "Success",
                "AccessKeyId": "STS.k",
                "AccessKeySecret": "SECRET-xyz",
                "SecurityToken": "TOKEN-xyz",
                "Expiration": "soon",
            },
            "is not YYYY-MM-DDTHH:MM:SSZ",
        ),
        (
            {"Code": "Success", "AccessKeyId": "STS.k", "AccessKeySecret": "SECRET-xyz"},
            "answer has no SecurityToken",
        ),
        ({"Code": "Failed", "AccessKeySecret": "SECRET-xyz"}, "answered Code 'Failed'"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_malformed_metadata_answers_are_named_without_secrets(
    sessions: DefaultSessions, body: object, error: str
) -> None:
    server = _Canned(200, json.dumps(body).encode())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(FetchError, match=error) as caught:
            fetch(EcsRamRole(url, "r"), sessions)
        assert "SECRET" not in str(caught.value) and "TOKEN" not in str(caught.value)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("body", [b"[" * 50_000, b'{"Code": ' + b"9" * 5000 + b"}"])
def test_a_metadata_answer_json_cannot_decode_is_a_fetch_error(
    sessions: DefaultSessions, body: bytes
) -> None:
    """Nesting past the decoder's recursion limit (RecursionError) or an integer past int()'s digit
    limit (a bare ValueError): a FetchError like any answer that is not JSON, not an internal error."""
    server = _Canned(200, body)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(FetchError, match="answer is not JSON"):
            fetch(EcsRamRole(f"http://127.0.0.1:{server.server_address[1]}", "r"), sessions)
    finally:
        server.shutdown()
        server.server_close()


def test_an_sts_error_echoing_the_oidc_token_is_scrubbed(sessions: DefaultSessions, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("eyJ-bearer-TOKEN-value")
    ali = {"RequestId": "r", "Code": "InvalidParameter.OIDCToken", "Message": "bad: eyJ-bearer-TOKEN-value"}
    tc = {"Response": {"Error": {"Code": "InvalidParameter", "Message": "eyJ-bearer-TOKEN-value"}}}
    for status, body, spec_of in (
        (400, ali, lambda url: AlibabaOidc(ALI_ROLE, ALI_PROVIDER, str(token_file), url, "s", 900)),
        (200, tc, lambda url: TkeOidc(TKE_ROLE, "p", str(token_file), url, "ap-guangzhou", "s", 7200)),
    ):
        server = _Canned(status, json.dumps(body).encode())
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with pytest.raises(FetchError) as caught:
                fetch(spec_of(f"http://127.0.0.1:{server.server_address[1]}"), sessions)
        finally:
            server.shutdown()
            server.server_close()
        assert "InvalidParameter" in str(caught.value) and "TOKEN" not in str(caught.value)


@pytest.mark.parametrize("expired_time", ["Infinity", "NaN", "1e300", "-5", "true", '"1700000000"'])
def test_unusable_cvm_expired_time_is_refused(sessions: DefaultSessions, expired_time: str) -> None:
    body = (
        '{"Code": "Success", "TmpSecretId": "AKIDx", "TmpSecretKey": "SECRET-k", "Token": "TOKEN-t", '
        f'"ExpiredTime": {expired_time}}}'
    )
    server = _Canned(200, body.encode())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(FetchError, match="no usable ExpiredTime") as caught:
            fetch(CvmRole(f"http://127.0.0.1:{server.server_address[1]}", "r"), sessions)
    finally:
        server.shutdown()
        server.server_close()
    assert "SECRET" not in str(caught.value)
