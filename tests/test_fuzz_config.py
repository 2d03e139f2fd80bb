"""Fuzzed config documents: never a traceback. `config_from_dict` returns a config or raises ConfigError
(problems with a path and a message that never echoes a value); `shardbeat validate` exits 0 or 2.

Documents are grown from valid ones by hypothesis: keys dropped or added, values replaced by any
JSON value (and the datetimes TOML produces, and NaN / infinities), numbers at and past the edges,
strings with ${VAR} references, wrong container types at every level.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import shardbeat_in_process
from shardbeat import cli
from shardbeat.config import ConfigError, config_from_dict

SECRET = "do-not-echo-this-secret-0123456789"
VALID: dict[str, dict[str, Any]] = {
    "sls": {
        "provider": "sls",
        "endpoint": "cn-hangzhou.log.aliyuncs.com",
        "project": "my-project",
        "logstore": "my-logstore",
        "consumer_group": "my-group",
        "consumer": "node-1",
        "credentials": {"access_key_id": "akid", "access_key_secret": SECRET},
        "heartbeat_interval": 5,
        "timeout": 30,
    },
    "cls": {
        "provider": "cls",
        "region": "ap-guangzhou",
        "logset_id": "6f6ded3f-0000-4000-8000-000000000001",
        "topics": ["topic-id-a", "topic-id-b"],
        "consumer_group": "my_group",
        "consumer": "node-1",
        "credentials": {"secret_id": "sid", "secret_key": SECRET},
        "heartbeat_interval": 5,
        "timeout": 30,
    },
}
ENVIRON = {"SHARDBEAT_TEST_VALUE": "from-env", "EMPTY": ""}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**400, -(10**400)]),  # past float's range: float() of it raises OverflowError
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["${SHARDBEAT_TEST_VALUE}", "${MISSING_VAR}", "${", "$${x}", "${EMPTY}", "a${B", "${}"]),
    st.sampled_from([dt.datetime(2026, 1, 1, 12, 0), dt.date(2026, 1, 1), dt.time(12, 30)]),  # TOML types
    st.sampled_from([0, -1, 0.0001, 86400, 86400.5, 1e300, 2**63, "20", "sls", "cls", "json", "msgpack"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
KEYS = [
    *sorted(set(VALID["sls"]) | set(VALID["cls"])),
    "lease_margin",
    "credentials_file",
    "create_group",
    "update_group",
    "release",
    "release_grace",
    "unknown_key",
]
TOP_KEYS = ["groups", "output", "control", "metrics", "runtime_dir", "extra"]


@st.composite
def documents(draw: st.DrawFn) -> Any:
    """A valid document, then a few edits anywhere in it (or, now and then, not a document at all)."""
    if draw(st.integers(0, 19)) == 0:
        return draw(values)
    groups = [
        copy.deepcopy(VALID[draw(st.sampled_from(["sls", "cls"]))]) for _ in range(draw(st.integers(1, 3)))
    ]
    doc: dict[str, Any] = {"groups": groups}
    for _ in range(draw(st.integers(0, 6))):
        where = draw(st.sampled_from(["group", "group", "group", "credentials", "top", "output", "control"]))
        if where in ("group", "credentials"):
            target = draw(st.sampled_from(groups))
            if where == "credentials":
                target = target.setdefault("credentials", {})
                if not isinstance(target, dict):
                    continue
            key = draw(st.sampled_from([*KEYS, "access_key_id", "secret_key", "security_token", "token"]))
        elif where == "top":
            target, key = doc, draw(st.sampled_from(TOP_KEYS))
        else:
            target = doc.setdefault(where, {})
            if not isinstance(target, dict):
                continue
            key = draw(st.sampled_from(["format", "socket", "stdin", "exit_on_stdin_eof", "listen", "x"]))
        if draw(st.booleans()) and key in target:
            del target[key]
        else:
            target[key] = draw(values)
    return doc


def check_loaded_or_config_error(doc: Any, base_dir: Path) -> None:
    try:
        loaded = config_from_dict(doc, base_dir=base_dir, environ=ENVIRON, hostname="fuzz-host")
    except ConfigError as exc:
        assert exc.problems, "a ConfigError must name at least one problem"
        for problem in exc.problems:
            assert isinstance(problem.path, str) and isinstance(problem.message, str) and problem.message
            assert SECRET not in str(problem), "a problem message echoes a secret"
        return
    config = loaded.config
    assert config.groups
    for group in config.groups:
        assert 0 < group.heartbeat_interval < group.timeout
        assert math.isfinite(group.timeout) and 0 <= group.margin < group.timeout
        assert group.heartbeat_interval < group.timeout - group.margin  # the lease outlives a beat gap
        assert SECRET not in repr(group)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_config_from_dict_never_raises_anything_but_config_error(tmp_path_factory: Any, doc: Any) -> None:
    check_loaded_or_config_error(doc, tmp_path_factory.getbasetemp())


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_the_valid_seeds_are_valid(tmp_path: Path, provider: str) -> None:
    loaded = config_from_dict({"groups": [VALID[provider]]}, base_dir=tmp_path, environ={}, hostname="h")
    assert loaded.config.groups[0].provider == provider


def run_validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["validate", "--config", str(path)])
    out, err = capsys.readouterr()
    return code, out + err


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=documents(), as_toml=st.booleans())
def test_validate_exits_0_or_2_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: Any, as_toml: bool
) -> None:
    path = tmp_path / "fuzzed.json"
    try:
        text = json.dumps(doc, default=str)  # TOML's datetimes as strings; NaN as the non-JSON NaN
    except ValueError:
        text = "{}"
    path.write_text(text)
    code, output = run_validate(path, capsys)
    assert code in (0, 2), output
    assert "Traceback" not in output and "internal error" not in output, output
    assert SECRET not in output
    if as_toml:
        toml = tmp_path / "fuzzed.toml"
        toml.write_text(text)  # JSON is rarely TOML: the parse error path, with line and column
        code, output = run_validate(toml, capsys)
        assert code in (0, 2) and "Traceback" not in output, output


@given(st.binary(max_size=300))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_validate_any_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes) -> None:
    for name in ("bytes.json", "bytes.toml"):
        path = tmp_path / name
        path.write_bytes(data)
        code, output = run_validate(path, capsys)
        assert code in (0, 2) and "Traceback" not in output, output


GARBAGE_FILES = {
    "deep.json": b"[" * 200_000 + b"]" * 200_000,
    "deep.toml": b"a = " + b"[" * 200_000 + b"]" * 200_000,
    "huge.json": b'{"groups": [' + b" " * (2 << 20) + b"]}",
    "nan.json": b'{"groups": [{"provider": "sls", "timeout": NaN}]}',
    "dupkey.json": b'{"groups": [], "groups": []}',
    "bom.json": b"\xef\xbb\xbf" + json.dumps({"groups": [VALID["sls"]]}).encode(),
    "latin1.json": '{"groups": [{"consumer": "caf\xe9"}]}'.encode("latin-1"),
    "empty.toml": b"",
    "datetime.toml": b"[[groups]]\nprovider = 'sls'\ntimeout = 1979-05-27T07:32:00Z\n",
}


# In real processes: the ones that could exhaust the stack or the memory; the others through the
# same cli.main in this process (a child each only added an interpreter start-up).
IN_A_PROCESS = {"deep.json", "deep.toml", "huge.json"}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GARBAGE_FILES))
def test_shardbeat_validate_process_on_garbage_files(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(GARBAGE_FILES[name])
    if name in IN_A_PROCESS:
        proc = subprocess.run(
            [sys.executable, "-m", "shardbeat", "validate", "--config", str(path)],
            capture_output=True,
            timeout=60,
        )
        code, err = proc.returncode, proc.stderr.decode(errors="replace")
    else:
        here = shardbeat_in_process("validate", "--config", str(path))
        code, err = here.returncode, here.stderr
    assert code in (0, 2), err
    assert "Traceback" not in err, err
    if name != "bom.json":
        assert code == 2 and err.strip(), f"{name}: accepted"
    assert len(err) < 10_000, "the error echoes the garbage"
