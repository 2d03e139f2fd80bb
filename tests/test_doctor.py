"""`shardbeat doctor` against an in-process emulator: one line per check, the right verdicts, exit codes.

Each test changes one thing from the emulator's demo group (a wrong secret, a skewed server clock, an
injected fault, ...) and checks the verdict of the check it concerns, plus the ones it must not spoil.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from harness import bytecode_env, write_config
from shardbeat import cli
from shardbeat.config import GroupConfig, config_from_dict
from shardbeat.config.model import CheckpointConfig
from shardbeat.emulator.server import EmulatorServer
from shardbeat.providers.base import Credentials, Endpoint, HttpRequest, HttpResponse, ProviderError, Retry
from shardbeat.runtime.doctor import run_doctor
from shardbeat.runtime.doctor.hints import classify, hint
from shardbeat.runtime.doctor.verdicts import clock_verdict, rate_budget
from shardbeat.runtime.instance_lock import acquire_instance_locks
from shardbeat.runtime.transport import HttpTransport

WRONG_SECRET = "WRONG-Secret-Value-31337"
ORDER = ["config", "instance", "endpoint", "credentials", "clock", "group", "heartbeat"]


def admin(emulator: EmulatorServer, path: str, doc: dict[str, Any]) -> None:
    request = urllib.request.Request(
        emulator.url + path, json.dumps(doc).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200


class Report:
    def __init__(self, code: int, text: str) -> None:
        self.code = code
        self.text = text
        self.lines = text.splitlines()
        self.checks: dict[str, tuple[str, str]] = {}
        self.order: list[str] = []
        for line in self.lines[:-1]:
            status, subject, rest = line.split("  ", 2)
            name, detail = rest.split(": ", 1)
            assert status in ("PASS", "WARN", "FAIL") and subject and "  " not in detail, line
            self.checks[name] = (status, detail)
            self.order.append(name)

    def status(self, name: str) -> str:
        return self.checks[name][0]

    def detail(self, name: str) -> str:
        return self.checks[name][1]


def doctor(
    emulator: EmulatorServer | None,
    provider: str,
    tmp_path: Path,
    heartbeat: bool = False,
    call_timeout: float = 2.0,
    **over: Any,
) -> Report:
    group = EmulatorServer().demo_config(provider) if emulator is None else emulator.demo_config(provider)
    group.update(over)
    loaded = config_from_dict({"groups": [group], "runtime_dir": str(tmp_path / "run")})
    out = io.StringIO()
    code = run_doctor(loaded, out, heartbeat=heartbeat, call_timeout=call_timeout)
    report = Report(code, out.getvalue())
    secrets = [s for s in (group["credentials"].get(k) for k in ("access_key_secret", "secret_key")) if s]
    for secret in secrets:
        assert secret not in report.text
    return report


def heartbeats(emulator: EmulatorServer) -> list[str | None]:
    receipts, _ = emulator.world.receipts()
    return [r.call.consumer for r in receipts]


# -- all well ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_all_pass_with_heartbeat(emulator: EmulatorServer, tmp_path: Path, provider: str) -> None:
    report = doctor(emulator, provider, tmp_path, heartbeat=True)
    expected = ORDER + (["rate budget"] if provider == "cls" else [])
    assert report.order == expected
    assert {name: status for name, (status, _) in report.checks.items()} == dict.fromkeys(expected, "PASS")
    assert report.code == 0
    assert report.lines[-1] == f"summary: 1 group(s): {len(expected)} PASS, 0 WARN, 0 FAIL"
    assert "exists: timeout 6 s" in report.detail("group")
    assert "accepted for consumer demo-consumer" in report.detail("heartbeat")
    assert heartbeats(emulator) == ["demo-consumer"]  # exactly one heartbeat, as the configured consumer
    label = "sls:demo-project/demo-logstore" if provider == "sls" else "cls:ap-guangzhou/demo-logset"
    assert all(line.split("  ")[1] == f"{label}/demo-group/demo-consumer" for line in report.lines[:-1])


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_without_heartbeat_nothing_joins(emulator: EmulatorServer, tmp_path: Path, provider: str) -> None:
    report = doctor(emulator, provider, tmp_path)
    assert report.status("heartbeat") == "WARN"
    assert "not checked (use --heartbeat" in report.detail("heartbeat")
    assert "rebalance" in report.detail("heartbeat")
    assert [n for n, (s, _) in report.checks.items() if s != "PASS"] == ["heartbeat"]
    assert report.code == 0
    assert heartbeats(emulator) == []
    assert emulator.world.state_json()["groups"][0]["consumers"] == []


# -- credentials ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "secret_key", "code", "fix"),
    [
        ("sls", "access_key_secret", "SignatureNotMatch", "check access_key_secret"),
        ("cls", "secret_key", "AuthFailure.SignatureFailure", "check secret_key"),
    ],
)
def test_wrong_secret(
    emulator: EmulatorServer, tmp_path: Path, provider: str, secret_key: str, code: str, fix: str
) -> None:
    creds = emulator.demo_config(provider)["credentials"] | {secret_key: WRONG_SECRET}
    report = doctor(emulator, provider, tmp_path, heartbeat=True, credentials=creds)
    assert report.status("credentials") == "FAIL"
    assert code in report.detail("credentials") and fix in report.detail("credentials")
    assert report.status("heartbeat") == "WARN"
    assert "not sent: the credentials were refused" in report.detail("heartbeat")
    assert report.checks["group"] == ("WARN", "not checked: the credentials were refused")
    assert report.status("endpoint") == report.status("clock") == "PASS"
    assert report.code == 1
    assert WRONG_SECRET not in report.text
    assert heartbeats(emulator) == []


def test_unknown_key_id_cls(emulator: EmulatorServer, tmp_path: Path) -> None:
    creds = {"secret_id": "no-such-id", "secret_key": WRONG_SECRET}
    report = doctor(emulator, "cls", tmp_path, credentials=creds)
    assert report.status("credentials") == "FAIL"
    assert "AuthFailure.SecretIdNotFound" in report.detail("credentials")
    assert "check secret_id" in report.detail("credentials")


# -- the group --------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_unknown_group(emulator: EmulatorServer, tmp_path: Path, provider: str) -> None:
    report = doctor(emulator, provider, tmp_path, heartbeat=True, consumer_group="no-such-group")
    assert report.status("credentials") == "PASS"
    assert report.status("group") == "FAIL"
    assert "no-such-group does not exist" in report.detail("group")
    assert "create it, or set create_group: true" in report.detail("group")
    assert report.detail("heartbeat") == "not sent: the group check failed"
    assert report.code == 1
    assert heartbeats(emulator) == []


def test_unknown_group_with_create_group_is_a_warning(emulator: EmulatorServer, tmp_path: Path) -> None:
    report = doctor(emulator, "sls", tmp_path, consumer_group="new-group", create_group=True)
    assert report.status("group") == "WARN"
    assert "create_group is on: shardbeat will create it with timeout 6 s" in report.detail("group")
    assert report.code == 0


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_timeout_mismatch(emulator: EmulatorServer, tmp_path: Path, provider: str) -> None:
    report = doctor(emulator, provider, tmp_path, timeout=12)
    assert report.status("group") == "WARN"
    detail = report.detail("group")
    assert "timeout 6 s" in detail and "the config says timeout 12 s" in detail
    assert "the lease will follow the server's 6 s" in detail
    assert report.code == 0


def test_timeout_mismatch_with_update_group(emulator: EmulatorServer, tmp_path: Path) -> None:
    report = doctor(emulator, "sls", tmp_path, timeout=12, update_group=True)
    assert report.status("group") == "WARN"
    assert "update_group is on" in report.detail("group")


def test_server_timeout_shorter_than_the_interval(emulator: EmulatorServer, tmp_path: Path) -> None:
    report = doctor(emulator, "sls", tmp_path, heartbeat_interval=7, timeout=60)
    assert report.status("group") == "FAIL"
    assert "the server would drop this consumer between heartbeats" in report.detail("group")
    assert report.code == 1


def test_cls_group_with_topics_the_config_lacks(emulator: EmulatorServer, tmp_path: Path) -> None:
    report = doctor(emulator, "cls", tmp_path, topics=["demo-topic-a"])
    assert report.status("group") == "FAIL"
    assert "also has topics demo-topic-b" in report.detail("group")
    assert "UnknownTopic" in report.detail("group")


def test_cls_topic_mismatch_blocks_the_heartbeat(emulator: EmulatorServer, tmp_path: Path) -> None:
    report = doctor(emulator, "cls", tmp_path, heartbeat=True, topics=["demo-topic-a"])
    assert report.detail("heartbeat") == "not sent: the group check failed"
    assert heartbeats(emulator) == []  # joining would have been refused anyway, after rebalancing


def test_cls_unknown_topic(emulator: EmulatorServer, tmp_path: Path) -> None:
    report = doctor(emulator, "cls", tmp_path, topics=["demo-topic-a", "demo-topic-b", "nope"])
    assert report.status("credentials") == "PASS"
    assert report.status("group") == "FAIL"
    assert "ResourceNotFound.TopicNotExist" in report.detail("group")
    assert "check topics" in report.detail("group")


def test_sls_unknown_project(emulator: EmulatorServer, tmp_path: Path) -> None:
    report = doctor(emulator, "sls", tmp_path, project="no-such-project")
    # SLS answers ProjectNotExist before it checks the signature: the key is not vouched for
    assert report.status("credentials") == "WARN"
    assert report.status("group") == "FAIL"
    assert "ProjectNotExist" in report.detail("group") and "check project" in report.detail("group")


# -- permissions (injected faults) --------------------------------------------------------------------


def test_sls_list_denied_by_ram(emulator: EmulatorServer, tmp_path: Path) -> None:
    admin(
        emulator,
        "/_admin/faults",
        {
            "service": "sls",
            "action": "ListConsumerGroup",
            "effect": "status",
            "status": 401,
            "error_code": "Unauthorized",
            "message": "denied by sts or ram, action: log:ListConsumerGroup, resource: acs:log:*",
        },
    )
    report = doctor(emulator, "sls", tmp_path)
    assert report.status("credentials") == "PASS"
    assert report.status("group") == "FAIL"
    assert "RAM policy must grant log:ListConsumerGroup" in report.detail("group")


@pytest.mark.parametrize(
    ("provider", "fault", "needed"),
    [
        (
            "sls",
            {"status": 403, "error_code": "Unauthorized"},
            "RAM policy must grant log:ConsumerGroupHeartBeat",
        ),
        ("cls", {"error_code": "OperationDenied"}, "CAM policy must grant cls:SendConsumerHeartbeat"),
        (
            "cls",
            {"error_code": "AuthFailure.UnauthorizedOperation"},
            "CAM policy must grant cls:SendConsumerHeartbeat",
        ),
    ],
)
def test_heartbeat_denied(
    emulator: EmulatorServer, tmp_path: Path, provider: str, fault: dict[str, Any], needed: str
) -> None:
    admin(
        emulator, "/_admin/faults", {"service": provider, "action": "heartbeat", "effect": "status", **fault}
    )
    report = doctor(emulator, provider, tmp_path, heartbeat=True)
    assert report.status("credentials") == "PASS"
    assert report.status("heartbeat") == "FAIL"
    assert needed in report.detail("heartbeat")
    assert report.code == 1


def test_read_call_that_hangs_is_cut_by_the_deadline(emulator: EmulatorServer, tmp_path: Path) -> None:
    admin(emulator, "/_admin/faults", {"service": "sls", "action": "ListConsumerGroup", "effect": "hang"})
    report = doctor(emulator, "sls", tmp_path, call_timeout=0.5)
    assert report.status("endpoint") == "PASS"
    assert report.status("credentials") == "FAIL"
    assert "no answer (Timeout" in report.detail("credentials")
    assert report.status("group") == "WARN"


# -- the clock --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "skew", "status", "words"),
    [
        ("sls", 120, "WARN", "~120 s behind the server's"),
        ("cls", -120, "WARN", "~120 s ahead of the server's"),
        ("sls", 1000, "FAIL", "SLS refuses signatures more than 15 min off"),
        ("cls", 400, "FAIL", "CLS refuses signatures more than 5 min off"),
    ],
)
def test_clock_skew(
    emulator: EmulatorServer, tmp_path: Path, provider: str, skew: float, status: str, words: str
) -> None:
    admin(emulator, "/_admin/clock", {"skew": skew})
    report = doctor(emulator, provider, tmp_path, heartbeat=True)
    assert report.status("clock") == status
    detail = report.detail("clock")
    if words.startswith("~"):  # the Date header has whole seconds: the estimate may be 1 s off
        number, _, rest = words[1:].partition(" ")
        found = re.search(r"(\d+) " + re.escape(rest), detail)
        assert found and abs(int(found.group(1)) - int(number)) <= 1, (words, detail)
    else:
        assert words in detail, (words, detail)
    assert "NTP" in detail
    # signed with the corrected time, as `run` does: the other checks still tell the truth
    assert report.status("credentials") == report.status("group") == report.status("heartbeat") == "PASS"
    assert report.code == (1 if status == "FAIL" else 0)


class DatelessProbe:
    """A transport whose answers to the unsigned probe (GET /) lose their Date header."""

    def __init__(self) -> None:
        self.inner = HttpTransport()
        self.sent: list[str] = []

    def send(self, endpoint: Endpoint, request: HttpRequest, deadline: float) -> HttpResponse:
        self.sent.append(request.method)
        response = self.inner.send(endpoint, request, deadline)
        if request.method == "GET" and request.target == "/":
            headers = {k: v for k, v in response.headers.items() if k != "date"}
            return HttpResponse(response.status, headers, response.body)
        return response

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize(("provider", "skew"), [("sls", 1000), ("cls", -400)])
def test_clock_refusal_is_measured_and_the_call_re_signed(
    emulator: EmulatorServer, tmp_path: Path, provider: str, skew: float
) -> None:
    admin(emulator, "/_admin/clock", {"skew": skew})
    transport = DatelessProbe()
    loaded = config_from_dict({"groups": [emulator.demo_config(provider)], "runtime_dir": str(tmp_path)})
    out = io.StringIO()
    code = run_doctor(loaded, out, transport=transport)
    report = Report(code, out.getvalue())
    # the probe, the refused read, the read again with the server's time
    assert transport.sent == [
        "GET",
        "GET" if provider == "sls" else "POST",
        "GET" if provider == "sls" else "POST",
    ]
    assert report.status("clock") == "FAIL"
    assert report.status("credentials") == report.status("group") == "PASS"


def test_clock_verdicts() -> None:
    assert clock_verdict("sls", None) == ("WARN", "offset unknown: no answer carried a Date header")
    assert clock_verdict("sls", 0.0) == ("PASS", "agrees with the server's within 2 s")
    assert clock_verdict("cls", 30.0)[0] == "PASS"
    assert clock_verdict("cls", 299.0)[0] == "WARN"
    assert clock_verdict("cls", 301.0)[0] == "FAIL"
    assert clock_verdict("sls", -899.0)[0] == "WARN"
    assert clock_verdict("sls", -901.0)[0] == "FAIL"


# -- the endpoint -----------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_unreachable_endpoint(tmp_path: Path, provider: str) -> None:
    report = doctor(None, provider, tmp_path, heartbeat=True, endpoint=f"http://127.0.0.1:{closed_port()}")
    assert report.status("endpoint") == "FAIL"
    assert "TCP connect failed" in report.detail("endpoint")
    assert "refused" in report.detail("endpoint") and "check the endpoint's host and port" in report.detail(
        "endpoint"
    )
    for name in ("credentials", "clock", "group", "heartbeat"):
        assert report.checks[name] == ("WARN", "not checked: the endpoint gave no HTTP answer")
    assert report.code == 1


def test_unresolvable_endpoint(tmp_path: Path) -> None:
    report = doctor(None, "cls", tmp_path, endpoint="http://no-such-host.invalid:8080", call_timeout=3)
    assert report.status("endpoint") == "FAIL"
    assert "DNS failed" in report.detail("endpoint")


# -- the instance lock ------------------------------------------------------------------------------


def test_running_instance_is_reported_and_not_heartbeaten_over(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    config = config_from_dict({"groups": [emulator.demo_config("sls")], "runtime_dir": str(tmp_path / "run")})
    with acquire_instance_locks(config.config.groups, str(tmp_path / "run")):
        report = doctor(emulator, "sls", tmp_path, heartbeat=True)
    assert report.status("instance") == "PASS"
    assert "runs this consumer on this machine" in report.detail("instance")
    assert report.status("heartbeat") == "WARN" and "its own heartbeats are the test" in report.detail(
        "heartbeat"
    )
    assert heartbeats(emulator) == []


def test_doctor_leaves_no_lock_behind(emulator: EmulatorServer, tmp_path: Path) -> None:
    doctor(emulator, "sls", tmp_path, heartbeat=True)
    assert list((tmp_path / "run").iterdir()) == []


def test_unusable_runtime_dir(emulator: EmulatorServer, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir(mode=0o777)
    (tmp_path / "run").chmod(0o777)
    report = doctor(emulator, "sls", tmp_path)
    assert report.status("instance") == "FAIL"
    assert "writable by group or others" in report.detail("instance")
    assert "would exit 2" in report.detail("instance")


# -- config and rate budget -------------------------------------------------------------------------


def test_config_warning(emulator: EmulatorServer, tmp_path: Path) -> None:
    report = doctor(emulator, "sls", tmp_path, heartbeat_interval=2.5)
    assert report.status("config") == "WARN"
    assert "interval 2.5 s, timeout 6 s" in report.detail("config")
    assert "groups[0].heartbeat_interval" in report.detail("config")


def cls_group(consumer: str, key_id: str, interval: float) -> GroupConfig:
    return GroupConfig(
        provider="cls",
        endpoint="cls.ap-guangzhou.tencentcloudapi.com",
        consumer_group="g",
        consumer=consumer,
        credentials=Credentials(key_id, WRONG_SECRET),
        heartbeat_interval=interval,
        timeout=60,
        region="ap-guangzhou",
        logset_id="logset",
        topics=("t",),
    )


def test_rate_budget() -> None:
    groups = [cls_group(f"a{i}", "key-a", 1.0) for i in range(9)]  # 9/s of 20: 45%
    groups += [cls_group(f"b{i}", "key-b", 0.5) for i in range(6)]  # 12/s: 60%
    groups += [cls_group(f"c{i}", "key-c", 0.25) for i in range(6)]  # 24/s: 120%
    checks = rate_budget(groups)
    assert len(checks) == len(groups)
    assert {checks[i].status for i in range(9)} == {"PASS"}
    assert {checks[i].status for i in range(9, 15)} == {"WARN"}
    assert {checks[i].status for i in range(15, 21)} == {"FAIL"}
    assert "9.00 heartbeats/s from 9 group(s)" in checks[0].detail and "45%" in checks[0].detail
    assert "120%" in checks[20].detail and "raise heartbeat_interval" in checks[20].detail
    assert all(WRONG_SECRET not in c.detail for c in checks.values())


def test_rate_budget_counts_checkpoint_commits() -> None:
    plain = [cls_group(f"a{i}", "key-a", 1.0) for i in range(5)]  # 5/s of 20: 25%
    committing = [
        dataclasses.replace(g, checkpoints=CheckpointConfig(commit_interval=0.5)) for g in plain
    ]  # 5 x (1 + 2)/s = 15/s: 75%
    assert rate_budget(plain)[0].status == "PASS"
    check = rate_budget(committing)[0]
    assert check.status == "WARN" and "15.00 heartbeats and commits/s" in check.detail
    assert "75%" in check.detail and "commit_interval" in check.detail


# -- hints ------------------------------------------------------------------------------------------


def error(code: str, message: str = "", status: int = 200) -> ProviderError:
    return ProviderError(code, message, retry=Retry.SLOW, status=status)


def test_classify_and_hints() -> None:
    assert classify("sls", error("SignatureNotMatch", status=401)) == "auth"
    assert classify("sls", error("Unauthorized", "denied by sts or ram, action: x", 401)) == "denied"
    assert classify("sls", error("Anything", status=403)) == "denied"
    assert classify("sls", error("RequestTimeExpired", status=400)) == "clock"
    assert classify("sls", error("ConsumerGroupNotExist", status=404)) == "missing"
    assert classify("cls", error("AuthFailure.SignatureExpire")) == "clock"
    assert classify("cls", error("AuthFailure.SignatureFailure")) == "auth"
    assert classify("cls", error("OperationDenied.ACLFailed")) == "denied"
    assert classify("cls", error("FailedOperation", "consumer group g does not exist")) == "missing"
    assert classify("cls", error("RequestLimitExceeded")) == "throttled"
    assert classify("cls", error("InternalError")) == "other"
    assert "create_group: true" in hint("sls", error("ConsumerGroupNotExist", status=404), "heartbeat")
    assert "create_group: true" in hint(
        "cls", error("FailedOperation", "consumer group g does not exist"), "list"
    )
    assert "log:ConsumerGroupHeartBeat" in hint("sls", error("Forbidden", status=403), "heartbeat")
    assert "clock" in hint("cls", error("AuthFailure.SignatureExpire"), "list")
    assert "overdue" in hint("cls", error("OperationDenied.AccountIsolate"), "heartbeat")
    assert "20 requests/s" in hint("cls", error("RequestLimitExceeded"), "heartbeat")
    assert "list every topic" in hint("cls", error("UnknownTopic"), "heartbeat")


# -- the command line -------------------------------------------------------------------------------


def test_cli_exit_codes(emulator: EmulatorServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_config(
        tmp_path / "good.json", [emulator.demo_config("sls")], runtime_dir=str(tmp_path / "r")
    )
    assert cli.main(["doctor", "--config", str(good)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "summary: 1 group(s): 6 PASS, 1 WARN, 0 FAIL"

    bad_group = emulator.demo_config("sls") | {"consumer_group": "missing"}
    failing = write_config(tmp_path / "bad.json", [bad_group], runtime_dir=str(tmp_path / "r"))
    assert cli.main(["doctor", "--config", str(failing)]) == 1
    assert "FAIL" in capsys.readouterr().out

    invalid = write_config(tmp_path / "invalid.json", [{"provider": "sls"}])
    assert cli.main(["doctor", "--config", str(invalid)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "config: " in captured.err

    assert cli.main(["doctor"]) == 2
    assert cli.main(["doctor", "--config", str(good), "--group", "g"]) == 2
    assert cli.main(["doctor", "--config", str(good), "--call-timeout", "0"]) == 2


def test_cli_flags_and_heartbeat_in_a_subprocess(emulator: EmulatorServer, tmp_path: Path) -> None:
    """The process contract: flags like `run`'s, a secret given as a flag never echoed, exit 0."""
    demo = emulator.demo_config("cls")
    args = [
        "doctor", "--heartbeat", "--provider", "cls", "--endpoint", emulator.url,
        "--region", demo["region"], "--logset-id", demo["logset_id"],
        "--topic", demo["topics"][0], "--topic", demo["topics"][1],
        "--group", demo["consumer_group"], "--consumer", "doctor-check",
        "--interval", "1.5", "--timeout", "6",
        "--secret-id", demo["credentials"]["secret_id"], "--secret-key", demo["credentials"]["secret_key"],
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "shardbeat", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"XDG_RUNTIME_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", **bytecode_env()},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = Report(proc.returncode, proc.stdout)
    assert report.status("heartbeat") == "PASS" and "doctor-check" in report.detail("heartbeat")
    assert demo["credentials"]["secret_key"] not in proc.stdout + proc.stderr
    assert heartbeats(emulator) == ["doctor-check"]
