"""load_config: JSON and TOML files, syntax and read errors, credentials files, the examples."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from shardbeat.config import (
    ConfigError,
    Problem,
    config_from_dict,
    load_config,
    parse_config_file,
    reload_credentials,
)
from shardbeat.providers.base import Credentials

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "configs"
SECRET = "file-Secret-VALUE-42"

SLS_TOML = """
[[groups]]
provider = "sls"
endpoint = "cn-hangzhou.log.aliyuncs.com"
project = "my-project"
logstore = "my-logstore"
consumer_group = "g1"
consumer = "c1"
heartbeat_interval = 2.5
timeout = 60

[groups.credentials]
access_key_id = "AKID"
access_key_secret = "SECRET"

[[groups]]
provider = "cls"
region = "ap-guangzhou"
logset_id = "logset-1"
topics = ["a", "b"]
consumer_group = "g1"
consumer = "c1"
credentials = { secret_id = "SID", secret_key = "SKEY" }

[output]
format = "msgpack"
"""

SLS_JSON: dict[str, Any] = {
    "groups": [
        {
            "provider": "sls",
            "endpoint": "cn-hangzhou.log.aliyuncs.com",
            "project": "my-project",
            "logstore": "my-logstore",
            "consumer_group": "g1",
            "consumer": "c1",
            "heartbeat_interval": 2.5,
            "timeout": 60,
            "credentials": {"access_key_id": "AKID", "access_key_secret": "SECRET"},
        },
        {
            "provider": "cls",
            "region": "ap-guangzhou",
            "logset_id": "logset-1",
            "topics": ["a", "b"],
            "consumer_group": "g1",
            "consumer": "c1",
            "credentials": {"secret_id": "SID", "secret_key": "SKEY"},
        },
    ],
    "output": {"format": "msgpack"},
}


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def file_problems(path: Path, environ: dict[str, str] | None = None) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ or {}, hostname="host")
    assert SECRET not in str(caught.value)
    return list(caught.value.problems)


def test_toml_and_json_give_equal_configs(tmp_path: Path) -> None:
    from_toml = load_config(write(tmp_path / "c.toml", SLS_TOML), environ={})
    from_json = load_config(write(tmp_path / "c.json", json.dumps(SLS_JSON)), environ={})
    assert from_toml == from_json
    assert from_json.config.output.format == "msgpack"
    assert from_json.config.groups[0].heartbeat_interval == 2.5


def test_extension_decides_the_parser(tmp_path: Path) -> None:
    # JSON for anything but .toml (e.g. .conf), and TOML for .TOML too.
    assert load_config(write(tmp_path / "c.conf", json.dumps(SLS_JSON)), environ={}).config.groups
    assert load_config(write(tmp_path / "c.TOML", SLS_TOML), environ={}).config.groups


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("c.json", '{"groups": [\n  {"provider": "sls",}\n]}', "line 2"),
        ("c.json", '{"groups": [\n\n\n', "line 4"),
        ("c.toml", '[[groups]]\nprovider = "sls"\nconsumer_group = \n', "line 3"),
        ("c.toml", f'[[groups]]\naccess_key_secret = "{SECRET}\n', "line 2"),
    ],
)
def test_syntax_errors_name_file_and_line(tmp_path: Path, name: str, text: str, line: str) -> None:
    path = write(tmp_path / name, text)
    (problem,) = file_problems(path)
    assert problem.path == str(path)
    assert line in problem.message
    assert ("TOML" if name.endswith(".toml") else "JSON") in problem.message


def test_json_nan_and_repeated_keys_are_refused(tmp_path: Path) -> None:
    (nan,) = file_problems(write(tmp_path / "nan.json", '{"groups": [{"timeout": NaN}]}'))
    assert "NaN" in nan.message
    repeated = file_problems(write(tmp_path / "rep.json", '{"groups": [], "groups": []}'))
    assert [p.message for p in repeated] == ["a key appears twice in one object ('groups', in config file)"]


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        (lambda p: None, "No such file"),
        (lambda p: p.mkdir(), "not a directory"),
        (lambda p: p.write_bytes(b'{"groups": "\xff\xfe"}'), "not UTF-8"),
        (lambda p: p.write_bytes(b" " * (1 << 20) + b"{}"), "larger than"),
    ],
)
def test_unreadable_files(tmp_path: Path, setup: Any, words: str) -> None:
    path = tmp_path / "config.json"
    setup(path)
    (problem,) = file_problems(path)
    assert problem.path == str(path)
    assert words in problem.message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_permission_denied(tmp_path: Path) -> None:
    path = write(tmp_path / "c.json", json.dumps(SLS_JSON), mode=0o000)
    (problem,) = file_problems(path)
    assert "Permission denied" in problem.message


def test_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(SLS_JSON).encode())
    assert parse_config_file(path) == SLS_JSON


def test_toml_dates_get_a_type_error(tmp_path: Path) -> None:
    text = SLS_TOML.replace("timeout = 60", "timeout = 2026-01-01")
    problems = file_problems(write(tmp_path / "c.toml", text))
    assert problems == [Problem("groups[0].timeout", "must be a number, not a date")]


# -- credentials_file ---------------------------------------------------------------------------------


def sls_entry(**changes: Any) -> dict[str, Any]:
    entry = dict(SLS_JSON["groups"][0])
    entry.pop("credentials")
    entry.update(changes)
    return entry


def test_credentials_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    creds = {"access_key_id": "FILE_AKID", "access_key_secret": SECRET, "security_token": "tok"}
    write(tmp_path / "conf" / "creds.json", json.dumps(creds))
    config = write(
        tmp_path / "conf" / "c.json", json.dumps({"groups": [sls_entry(credentials_file="creds.json")]})
    )
    loaded = load_config(config, environ={})
    (group,) = loaded.config.groups
    assert group.credentials == Credentials("FILE_AKID", SECRET, "tok")
    assert group.credentials_file == str(tmp_path / "conf" / "creds.json")
    assert loaded.warnings == ()


def test_credentials_file_falls_back_to_environment(tmp_path: Path) -> None:
    write(tmp_path / "creds.json", json.dumps({"access_key_id": "FILE_AKID"}))
    raw = {"groups": [sls_entry(credentials_file="creds.json")]}
    environ = {"ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET, "ALIBABA_CLOUD_SECURITY_TOKEN": "envtok"}
    (group,) = config_from_dict(raw, base_dir=tmp_path, environ=environ).config.groups
    assert group.credentials == Credentials("FILE_AKID", SECRET, "envtok")


def test_credentials_file_readable_by_others_warns(tmp_path: Path) -> None:
    write(
        tmp_path / "creds.json", json.dumps({"access_key_id": "A", "access_key_secret": SECRET}), mode=0o644
    )
    raw = {"groups": [sls_entry(credentials_file="creds.json")]}
    (warning,) = config_from_dict(raw, base_dir=tmp_path, environ={}).warnings
    assert warning.path == "groups[0].credentials_file"
    assert "chmod 600" in warning.message


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "No such file"),
        ("{", "invalid JSON"),
        ('["x"]', "must hold a JSON object"),
        (
            json.dumps({"access_key_id": "A", "access_key_secret": SECRET, "acess": "x"}),
            "unknown key ('acess')",
        ),
        (json.dumps({"access_key_id": "A", "access_key_secret": 5}), "access_key_secret must be a non-empty"),
        (json.dumps({"access_key_id": "A"}), "not in {file}, and ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
    ],
)
def test_credentials_file_problems(tmp_path: Path, content: str | None, words: str) -> None:
    path = tmp_path / "creds.json"
    if content is not None:
        write(path, content)
    raw = {"groups": [sls_entry(credentials_file="creds.json")]}
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw, base_dir=tmp_path, environ={})
    (problem,) = caught.value.problems
    assert problem.path.startswith("groups[0].credentials")
    assert words.replace("{file}", str(path)) in problem.message
    assert SECRET not in str(caught.value)


def test_credentials_and_credentials_file_together_are_refused(tmp_path: Path) -> None:
    raw = {"groups": [sls_entry(credentials_file="c.json", credentials={"access_key_id": "A"})]}
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw, base_dir=tmp_path, environ={})
    assert caught.value.problems == (
        Problem("groups[0].credentials_file", "give either credentials or credentials_file, not both"),
    )


def test_reload_credentials_reads_the_file_again(tmp_path: Path) -> None:
    path = write(tmp_path / "creds.json", json.dumps({"access_key_id": "A", "access_key_secret": "one"}))
    (group,) = config_from_dict(
        {"groups": [sls_entry(credentials_file="creds.json")]}, base_dir=tmp_path, environ={}
    ).config.groups
    write(path, json.dumps({"access_key_id": "A", "access_key_secret": "two", "security_token": "t"}))
    assert reload_credentials(group, environ={}) == Credentials("A", "two", "t")
    write(path, json.dumps({"access_key_id": "A"}))
    with pytest.raises(ConfigError):
        reload_credentials(group, environ={})


def test_reload_credentials_without_a_file_returns_them_unchanged() -> None:
    group = config_from_dict(SLS_JSON, environ={}).config.groups[0]
    assert reload_credentials(group, environ={}) is group.credentials


# -- examples -----------------------------------------------------------------------------------------

EXAMPLE_ENV = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "AKID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
    "TENCENTCLOUD_SECRET_ID": "SID",
    "TENCENTCLOUD_SECRET_KEY": SECRET,
    "CLS_SECRET_ID": "SID2",
    "CLS_SECRET_KEY": SECRET,
    "SHARDBEAT_CONSUMER": "consumer-1",
    "AUDIT_ACCESS_KEY_ID": "F",
    "AUDIT_ACCESS_KEY_SECRET": SECRET,
}


@pytest.mark.parametrize(
    "name", ["sls.json", "sls.toml", "cls.json", "cloud-nodes.json", "sls-checkpoints.json"]
)
def test_examples_are_valid(name: str) -> None:
    loaded = load_config(EXAMPLES / name, environ=EXAMPLE_ENV, hostname="host")
    assert loaded.config.groups
    assert loaded.warnings == ()


def test_example_toml_equals_example_json() -> None:
    assert load_config(EXAMPLES / "sls.toml", environ=EXAMPLE_ENV) == load_config(
        EXAMPLES / "sls.json", environ=EXAMPLE_ENV
    )


def test_example_mixed() -> None:
    loaded = load_config(EXAMPLES / "mixed.json", environ=EXAMPLE_ENV, hostname="host")
    assert [g.provider for g in loaded.config.groups] == ["sls", "sls", "cls"]
    assert loaded.config.groups[1].credentials.key_id == "F"
    assert loaded.warnings == ()


HUGE = "9" * 5000  # past int()'s digit limit: the parsers raise a bare ValueError, not their own error


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("c.json", '{"groups": [{"timeout": ' + HUGE + "}]}"),
        ("c.toml", "[[groups]]\ntimeout = " + HUGE + "\n"),
    ],
)
def test_an_integer_too_long_to_read_is_a_problem_not_a_crash(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path / name, text)
    (problem,) = file_problems(path)
    assert problem == Problem(str(path), "config file holds an integer with too many digits to read")


def test_a_credentials_file_with_an_integer_too_long_to_read(tmp_path: Path) -> None:
    write(tmp_path / "creds.json", '{"access_key_id": "A", "access_key_secret": ' + HUGE + "}")
    raw = {"groups": [sls_entry(credentials_file="creds.json")]}
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw, base_dir=tmp_path, environ={})
    (problem,) = caught.value.problems
    assert "too many digits" in problem.message


@pytest.mark.parametrize(
    ("name", "text"),
    [
        # Deep enough for the walks after parsing (two frames a level) to pass Python's recursion limit,
        # shallow enough for the parsers themselves: an internal error before.
        ("c.json", '{"groups": [{"x": ' + "[" * 700 + "]" * 700 + "}]}"),
        ("c.json", '{"control": ' + '{"a": ' * 700 + "1" + "}" * 700 + "}"),
        ("c.toml", "x = " + "[" * 400 + "]" * 400 + "\n"),
    ],
)
def test_nesting_the_checks_cannot_walk_is_refused_at_parse(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path / name, text)
    (problem,) = file_problems(path)
    assert problem == Problem(str(path), "config file is nested too deeply")


def test_nesting_up_to_the_bound_is_left_to_the_schema(tmp_path: Path) -> None:
    from shardbeat.config.files import MAX_NESTING

    def nested(levels: int) -> str:  # the document itself is the first level
        return '{"x": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"

    assert "nested" not in " ".join(
        p.message for p in file_problems(write(tmp_path / "a.json", nested(MAX_NESTING)))
    )
    (deep,) = file_problems(write(tmp_path / "b.json", nested(MAX_NESTING + 1)))
    assert "nested too deeply" in deep.message


def test_thousands_of_unknown_keys_in_a_credentials_file_are_a_few_lines(tmp_path: Path) -> None:
    """Each named its key before the part problem_summary cuts off: one kind, so one line, per key."""
    from shardbeat.config.problem_summary import SHOWN_PER_KIND, summary_lines

    keys = {"access_key_id": "A", "access_key_secret": SECRET, **{f"k{i}": 1 for i in range(2000)}}
    write(tmp_path / "creds.json", json.dumps(keys))
    with pytest.raises(ConfigError) as caught:
        config_from_dict(
            {"groups": [sls_entry(credentials_file="creds.json")]}, base_dir=tmp_path, environ={}
        )
    lines = summary_lines(caught.value.problems)
    assert len(lines) == SHOWN_PER_KIND + 1 and "and 1990 more" in lines[-1]
    assert SECRET not in "\n".join(lines)
