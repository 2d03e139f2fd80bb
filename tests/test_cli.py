"""The command line: verbs, exit codes, flags == file, stdout kept for records, no secrets in stderr.

In-process tests replace shardbeat.runtime.process.run with a recorder (the runner has its own tests);
subprocess tests cover the process contract (exit code 2, empty stdout) for a representative subset.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import shardbeat_in_process
from shardbeat import cli
from shardbeat.config import Config, config_from_dict, load_config
from shardbeat.emulator import server as emulator_server
from shardbeat.runtime import process as runner
from shardbeat.schemas import SCHEMA_NAMES, load_schema

SECRET = "cli-Secret-VALUE-31337"
TOKEN = "cli-Token-VALUE-4242"

SLS = {
    "provider": "sls",
    "endpoint": "http://127.0.0.1:9",
    "project": "my-project",
    "logstore": "my-logstore",
    "consumer_group": "g1",
    "consumer": "c1",
    "heartbeat_interval": 5,
    "timeout": 30,
}
SLS_FLAGS = [
    "--provider", "sls", "--endpoint", "http://127.0.0.1:9", "--project", "my-project",
    "--logstore", "my-logstore", "--group", "g1", "--consumer", "c1", "--interval", "5", "--timeout", "30",
]  # fmt: skip
CLS = {
    "provider": "cls",
    "region": "ap-guangzhou",
    "logset_id": "logset-1",
    "topics": ["topic-a", "topic-b"],
    "consumer_group": "test-123",
    "consumer": "test-123-1",
    "lease_margin": 2.5,
}
CLS_FLAGS = [
    "--provider", "cls", "--region", "ap-guangzhou", "--logset-id", "logset-1", "--topic", "topic-a",
    "--topic", "topic-b", "--group", "test-123", "--consumer", "test-123-1", "--lease-margin", "2.5",
]  # fmt: skip
CREDENTIAL_ENV = (
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "ALIBABA_CLOUD_SECURITY_TOKEN",
    "TENCENTCLOUD_SECRET_ID",
    "TENCENTCLOUD_SECRET_KEY",
    "TENCENTCLOUD_SESSION_TOKEN",
)


@pytest.fixture(autouse=True)
def clean_env_and_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in CREDENTIAL_ENV:
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """Configs the runner was started with (the runner itself is not run)."""
    seen: list[Config] = []

    def fake_run(config: Config, config_path: str | None = None) -> int:
        seen.append(config)
        return 0

    monkeypatch.setattr(runner, "run", fake_run)
    return seen


def write_config(tmp_path: Path, document: Any, name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return path


def sls_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)


# -- run: flags and files --------------------------------------------------------------------------------


def test_run_with_a_file_starts_the_runner(
    tmp_path: Path, ran: list[Config], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sls_env(monkeypatch)
    path = write_config(tmp_path, {"groups": [SLS]})
    assert cli.main(["run", "--config", str(path)]) == 0
    assert ran == [load_config(path).config]
    assert capsys.readouterr().out == ""


def test_runner_exit_code_is_returned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sls_env(monkeypatch)
    monkeypatch.setattr(runner, "run", lambda config, config_path=None: 3)
    assert cli.main(["run", "--config", str(write_config(tmp_path, {"groups": [SLS]}))]) == 3


@pytest.mark.parametrize(("group", "flags"), [(SLS, SLS_FLAGS), (CLS, CLS_FLAGS)])
def test_flags_give_the_same_config_as_a_file(
    tmp_path: Path,
    ran: list[Config],
    monkeypatch: pytest.MonkeyPatch,
    group: dict[str, Any],
    flags: list[str],
) -> None:
    sls_env(monkeypatch)
    monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", "SID")
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", SECRET)
    path = write_config(tmp_path, {"groups": [group], "output": {"format": "msgpack"}})
    assert cli.main(["run", "--config", str(path)]) == 0
    assert cli.main(["run", *flags, "--output-format", "msgpack"]) == 0
    from_file, from_flags = ran
    assert from_flags == from_file
    assert from_flags.output.format == "msgpack"


def test_credentials_file_flag(tmp_path: Path, ran: list[Config], monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"access_key_id": "F", "access_key_secret": SECRET}))
    creds.chmod(0o600)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", *SLS_FLAGS, "--credentials-file", "creds.json"]) == 0
    (config,) = ran
    assert config.groups[0].credentials.key_id == "F"
    assert config.groups[0].credentials_file == str(creds)


def test_output_format_flag_overrides_the_file(
    tmp_path: Path, ran: list[Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    sls_env(monkeypatch)
    path = write_config(tmp_path, {"groups": [SLS], "output": {"format": "json"}})
    assert cli.main(["run", "--config", str(path), "--output-format", "msgpack"]) == 0
    assert ran[0].output.format == "msgpack"


def test_secret_flags_warn_without_showing_the_secret(
    ran: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--access-key-id", "AKID", "--access-key-secret", SECRET, "--security-token", TOKEN]
    assert cli.main(["run", *SLS_FLAGS, *flags]) == 0
    assert ran[0].groups[0].credentials.secret == SECRET
    assert ran[0].groups[0].credentials.token == TOKEN
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = [line for line in captured.err.splitlines() if "WARNING" in line]
    assert "--access-key-secret, --security-token" in line
    assert "ps" in line and "environment variables" in line
    assert SECRET not in captured.err and TOKEN not in captured.err


@pytest.mark.parametrize("verb", ["run", "doctor"])
def test_a_secret_flag_warns_even_when_the_command_line_is_refused(
    verb: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ps (and the shell's history) showed the secret whatever else is wrong with the command line;
    the usage errors for --config with group flags (or with nothing to run) came first and hid it."""
    path = write_config(tmp_path, {"groups": [SLS]})
    for argv in (["--config", str(path), "--access-key-secret", SECRET], ["--access-key-secret", SECRET]):
        capsys.readouterr()
        assert cli.main([verb, *argv]) == 2
        err = capsys.readouterr().err
        assert "secrets given on the command line (--access-key-secret)" in err, (argv, err)
        assert SECRET not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["validate", "--config", "c.json", "--access-key-secret", SECRET],  # a verb without secret flags
        ["status", "--config", "c.json", "--token", SECRET],
        ["run", "--config", "c.json", "--acess-key-secret", SECRET],  # a typo in the flag
        ["run", "--config", "c.json", f"--acess-key-secret={SECRET}"],
        ["run", "--config", "c.json", SECRET],  # a stray word
        ["run", "--config", "c.json", f"--secret={SECRET}"],  # ambiguous: --secret-id or --secret-key
    ],
)
def test_a_refused_command_line_names_the_flags_never_a_value(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse repeats what it could not place ("unrecognized arguments: --acess-key-secret S3CR3T"),
    and stderr is the host's log under Fluent Bit and Vector."""
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert SECRET not in captured.err and captured.out == ""
    assert "error: " in captured.err
    flag = next((arg.partition("=")[0] for arg in argv[3:] if arg.startswith("-")), None)
    if flag is not None:
        assert flag in captured.err  # the flag at fault is still named


def test_key_id_flag_alone_does_not_warn(
    ran: list[Config], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
    assert cli.main(["run", *SLS_FLAGS, "--access-key-id", "AKID"]) == 0
    assert "WARNING" not in capsys.readouterr().err


def test_config_warnings_are_logged(
    tmp_path: Path, ran: list[Config], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sls_env(monkeypatch)
    path = write_config(tmp_path, {"groups": [{**SLS, "heartbeat_interval": 15}]})
    assert cli.main(["run", "--config", str(path), "--log-format", "json"]) == 0
    captured = capsys.readouterr()
    entries = [json.loads(line) for line in captured.err.splitlines()]
    assert any(
        e["level"] == "WARNING" and "groups[0].heartbeat_interval" in e["message"] and "third" in e["message"]
        for e in entries
    )
    assert captured.out == ""


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["run"], "give --config FILE"),
        (["run", "--config", "x.json", "--group", "g"], "cannot be combined with --group"),
        (["run", "--config", "x.json", "--emulator"], "cannot be combined with --emulator"),
        (["run", *CLS_FLAGS, "--access-key-id", "A"], "--access-key-id is for --provider sls"),
        (["run", "--emulator", "--endpoint", "h"], "--endpoint cannot be combined with --emulator"),
        (["run", "--provider", "aws"], "invalid choice"),
        (["run", "--interval", "soon"], "invalid float value"),
        (["run", "--log-level", "loud"], "invalid choice"),
        (["validate"], "--config"),
        (["schema", "other"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
        ([], "give a verb"),
    ],
)
def test_usage_errors_exit_2_on_stderr(
    argv: list[str], words: str, ran: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert words in captured.err
    assert ran == []


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--provider", "sls", "--project", "P"],
            ["--group: required", "--endpoint: required", "--project: must"],
        ),
        ([*SLS_FLAGS[:-2], "--timeout", "4"], ["--interval: must be less than timeout (4 s)"]),
        ([*CLS_FLAGS, "--topic", "topic-a"], ["--topic: must not repeat"]),
        ([*CLS_FLAGS, "--project", "p"], ["--project: applies to provider sls only"]),
        (SLS_FLAGS, ["--access-key-id: missing: set ALIBABA_CLOUD_ACCESS_KEY_ID"]),
        # A source setting no flag gives: named after the flag that chose the source, not groups[0].
        (
            [*CLS_FLAGS, "--credentials-source", "oidc_role"],
            ["--credentials-source setting role_arn: missing: required by this source; or set TKE_ROLE_ARN"],
        ),
    ],
)
def test_config_errors_from_flags_name_the_flag(
    argv: list[str], expected: list[str], ran: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    for words in expected:
        assert words in captured.err
    assert "groups[0]" not in captured.err
    assert ran == []


def test_internal_error_is_one_log_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sls_env(monkeypatch)

    def broken(config: Config, config_path: str | None = None) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "run", broken)
    path = write_config(tmp_path, {"groups": [SLS]})
    assert cli.main(["run", "--config", str(path), "--log-format", "json"]) == 1
    captured = capsys.readouterr()
    (entry,) = [json.loads(line) for line in captured.err.splitlines() if "CRITICAL" in line]
    assert "boom" in entry["message"] and "RuntimeError" in entry["exc"]
    assert captured.out == ""


@pytest.mark.parametrize("verb", ["run", "doctor"])
def test_a_value_error_while_loading_is_an_internal_error_not_the_users_flags(
    verb: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A corrupt bytecode file fails its (lazy) import with ValueError("bad marshal data"): it was
    reported as a usage error ("shardbeat run: error: bad marshal data", usage, exit 2), sending the
    operator to their flags. Only a flag that does not fit is a usage error."""
    sls_env(monkeypatch)

    def corrupt(*args: object, **kwargs: object) -> None:
        raise ValueError("bad marshal data (unknown type code)")

    monkeypatch.setattr(cli, "config_from_dict", corrupt)
    path = write_config(tmp_path, {"groups": [SLS]})
    assert cli.main([verb, "--config", str(path)]) == 1
    captured = capsys.readouterr()
    assert "internal error (please report it): bad marshal data" in captured.err
    assert "usage:" not in captured.err
    assert captured.out == ""


# -- run --emulator ------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_emulator_runs_the_demo_group_against_a_live_emulator(
    provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[Config, bool]] = []

    def fake_run(config: Config, config_path: str | None = None) -> int:
        host, port = config.groups[0].endpoint.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=2):
            seen.append((config, True))  # the emulator is listening while the runner runs
        return 0

    monkeypatch.setattr(runner, "run", fake_run)
    assert cli.main(["run", "--emulator", "--provider", provider, "--interval", "0.5", "--timeout", "3"]) == 0
    ((config, listening),) = seen
    (group,) = config.groups
    assert listening and group.provider == provider
    assert (group.heartbeat_interval, group.timeout) == (0.5, 3.0)
    assert group.endpoint.startswith("http://127.0.0.1:")
    host, port = group.endpoint.removeprefix("http://").rsplit(":", 1)
    with pytest.raises(OSError):  # stopped once the runner returned
        socket.create_connection((host, int(port)), timeout=2).close()


def test_emulator_default_provider_is_sls(ran: list[Config]) -> None:
    assert cli.main(["run", "--emulator"]) == 0
    assert ran[0].groups[0].provider == "sls"


def test_emulator_override_errors_exit_2_before_starting(
    monkeypatch: pytest.MonkeyPatch, ran: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    started: list[object] = []
    monkeypatch.setattr(emulator_server.EmulatorServer, "start", lambda self: started.append(self))
    assert cli.main(["run", "--emulator", "--interval", "10", "--timeout", "6"]) == 2
    assert "--interval: must be less than timeout" in capsys.readouterr().err
    assert started == [] and ran == []


def test_emulator_verb_delegates(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        calls.append(argv)
        return 0

    monkeypatch.setattr(emulator_server, "main", fake_main)
    assert cli.main(["emulator", "--port", "0", "--log-level", "info"]) == 0
    assert calls == [["--port", "0", "--log-level", "info"]]


# -- validate and schema -----------------------------------------------------------------------------


def test_validate_ok(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sls_env(monkeypatch)
    path = write_config(tmp_path, {"groups": [{**SLS, "heartbeat_interval": 20}]})
    assert cli.main(["validate", "--config", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "ok\n"
    assert captured.err.startswith("warning: groups[0].heartbeat_interval: is more than a third")


def test_validate_lists_every_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    document = {"groups": [{**SLS, "project": "X", "credentials": {"access_key_secret": SECRET}}, 5]}
    path = write_config(tmp_path, document)
    assert cli.main(["validate", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    expected = [str(p) for p in _problems(document)]
    assert captured.err.splitlines() == expected
    assert len(expected) == 3
    assert SECRET not in captured.err


def _problems(document: Any) -> list[Any]:
    try:
        config_from_dict(document, environ={})
    except Exception as exc:
        return list(exc.problems)  # type: ignore[attr-defined]
    raise AssertionError("expected a ConfigError")


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_prints_json(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["schema", name]) == 0
    assert json.loads(capsys.readouterr().out) == load_schema(name)  # type: ignore[arg-type]


def test_schema_defaults_to_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "shardbeat configuration"


# -- the process contract (subprocess) -------------------------------------------------------------------


def shardbeat(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    environ = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_ENV}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "shardbeat", *argv], capture_output=True, env=environ, timeout=60, check=False
    )


def shardbeat_here(*argv: str) -> subprocess.CompletedProcess[bytes]:
    """`shardbeat` above, run by cli.main in this process (same environment, output as bytes): for the
    cases of a contract that a real process already proves for one of them."""
    environ = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_ENV}
    done = shardbeat_in_process(*argv, env=environ, clean_env=True)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.encode(), done.stderr.encode())


# In real processes: a JSON and a missing-key case; the others through the same cli.main in this process.
IN_A_PROCESS = {"json", "missing"}


BAD_CONFIGS = {
    "missing": (
        {"groups": [{k: v for k, v in SLS.items() if k != "project"}]},
        "groups[0].project: required",
    ),
    "unknown": ({"groups": [{**SLS, "intervall": 5}]}, "groups[0].intervall: unknown key"),
    "endpoint": ({"groups": [{**SLS, "endpoint": "ftp://x"}]}, "groups[0].endpoint: invalid endpoint"),
    "timing": ({"groups": [{**SLS, "heartbeat_interval": 30}]}, "groups[0].heartbeat_interval: must be less"),
    "variable": ({"groups": [{**SLS, "consumer": "${NOT_SET_ANYWHERE}"}]}, "NOT_SET_ANYWHERE is not set"),
    "name": ({"groups": [{**SLS, "logstore": "Bad!"}]}, "groups[0].logstore: must be 3-63"),
    "duplicate": ({"groups": [SLS, SLS]}, "groups[1]: same consumer as groups[0]"),
    "json": ('{"groups": [\n  {"provider": "sls"\n]}', "line 3, column 1: invalid JSON"),
    "toml": (
        '[[groups]]\nprovider = "sls"\ntimeout = \n',
        "invalid TOML in config file: Invalid value (at line 3",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_run_with_a_bad_config_exits_2_with_empty_stdout(tmp_path: Path, case: str) -> None:
    document, expected = BAD_CONFIGS[case]
    if isinstance(document, dict):
        groups = [
            {**g, "credentials": {"access_key_id": "AKID", "access_key_secret": SECRET}}
            for g in document["groups"]
        ]
        document = {"groups": groups}
    path = write_config(tmp_path, document, "config.toml" if case == "toml" else "config.json")
    result = (shardbeat if case in IN_A_PROCESS else shardbeat_here)("run", "--config", str(path))
    assert result.returncode == 2
    assert result.stdout == b""
    assert expected in result.stderr.decode()
    assert SECRET.encode() not in result.stderr


def test_run_missing_credentials_and_unreadable_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"groups": [SLS]})
    result = shardbeat("run", "--config", str(path), env={"ALIBABA_CLOUD_ACCESS_KEY_ID": "AKID"})
    assert (result.returncode, result.stdout) == (2, b"")
    assert (
        b"groups[0].credentials.access_key_secret: missing: set ALIBABA_CLOUD_ACCESS_KEY_SECRET"
        in result.stderr
    )
    result = shardbeat("run", "--config", str(tmp_path / "absent.json"), "--log-format", "json")
    assert (result.returncode, result.stdout) == (2, b"")
    (entry,) = [json.loads(line) for line in result.stderr.decode().splitlines()]
    assert "cannot read config file: No such file or directory" in entry["message"]


def test_argparse_errors_exit_2_with_empty_stdout() -> None:
    result = shardbeat("run", "--no-such-flag")
    assert (result.returncode, result.stdout) == (2, b"")
    assert b"unrecognized arguments: --no-such-flag" in result.stderr


def test_secret_flag_warning_in_a_process() -> None:
    result = shardbeat("run", "--provider", "sls", "--access-key-secret", SECRET)
    assert (result.returncode, result.stdout) == (2, b"")
    stderr = result.stderr.decode()
    assert "WARNING shardbeat.cli: secrets given on the command line (--access-key-secret)" in stderr
    assert SECRET not in stderr


def test_secret_flag_warning_from_doctor_too() -> None:
    """doctor takes the same credential flags as run, so it warns the same (ps shows them to all)."""
    result = shardbeat("doctor", "--provider", "cls", "--secret-key", SECRET, "--token", SECRET + "-t")
    assert result.stdout == b""
    stderr = result.stderr.decode()
    assert "secrets given on the command line (--secret-key, --token)" in stderr
    assert SECRET not in stderr


def test_validate_and_schema_in_a_process(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"groups": [SLS]})
    result = shardbeat(
        "validate",
        "--config",
        str(path),
        env={"ALIBABA_CLOUD_ACCESS_KEY_ID": "A", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET},
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"ok\n", b"")
    # One schema in a process; test_schema_prints_json prints every one through the same cli.main.
    result = shardbeat("schema", "config")
    assert result.returncode == 0
    assert json.loads(result.stdout) == load_schema("config")


@pytest.mark.parametrize(
    ("flags", "checkpoints"),
    [
        (["--checkpoints"], {}),
        (["--start", "begin"], {"start": "begin"}),
        (["--checkpoints", "--start", "1700000000"], {"start": 1700000000}),
    ],
)
def test_checkpoint_flags_give_the_same_config_as_a_file(
    tmp_path: Path,
    ran: list[Config],
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    checkpoints: dict[str, Any],
) -> None:
    sls_env(monkeypatch)
    path = write_config(tmp_path, {"groups": [{**SLS, "checkpoints": checkpoints}]})
    assert cli.main(["run", "--config", str(path)]) == 0
    assert cli.main(["run", *SLS_FLAGS, *flags]) == 0
    from_file, from_flags = ran
    assert from_flags == from_file and from_flags.groups[0].checkpoints is not None


@pytest.mark.parametrize(
    ("start", "words"), [("now", "--start: must be begin, end or unix seconds"), ("-5", "--start: must be")]
)
def test_a_bad_start_flag_is_a_usage_error(
    start: str,
    words: str,
    ran: list[Config],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sls_env(monkeypatch)
    assert cli.main(["run", *SLS_FLAGS, "--start", start]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and words in captured.err and ran == []


def test_checkpoint_flags_with_a_config_file_are_refused(
    tmp_path: Path, ran: list[Config], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sls_env(monkeypatch)
    path = write_config(tmp_path, {"groups": [SLS]})
    assert cli.main(["run", "--config", str(path), "--checkpoints"]) == 2
    assert "--checkpoints" in capsys.readouterr().err and ran == []


@pytest.mark.parametrize(
    "argv",
    [["schema", "config"], ["emulator", "--print-config", "--port", "9"]],
    ids=["schema", "print-config"],
)
def test_one_shot_verb_on_a_full_stdout_says_so_without_a_traceback(argv: list[str]) -> None:
    """stdout on a full disk (/dev/full) is the environment, not a bug: one clear line, exit 1."""
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "shardbeat", *argv],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "shardbeat: error: cannot write to stdout: No space left on device"
