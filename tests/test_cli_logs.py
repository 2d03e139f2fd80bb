"""runtime.logs: one line per record on stderr, text or JSON, and never an exception."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from shardbeat.runtime.logs import StderrHandler, setup_logging

TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: "
)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    library_level = logging.getLogger("urllib3").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("urllib3").setLevel(library_level)
    logging.captureWarnings(False)


def only_ours() -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if not isinstance(h, StderrHandler)]:
        root.removeHandler(handler)


def lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.splitlines()


def test_text_format(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", "text")
    logging.getLogger("shardbeat.x").warning("disk %s is %d%% full", "sda", 91)
    (line,) = lines(capsys)
    assert TEXT_LINE.match(line), line
    assert line.endswith(" WARNING shardbeat.x: disk sda is 91% full")


def test_json_format_with_extras(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("debug", "json")
    logging.getLogger("shardbeat.y").debug("beat", extra={"group": "g1", "latency_ms": 12.5, "obj": object()})
    (line,) = lines(capsys)
    entry = json.loads(line)
    assert list(entry)[:4] == ["time", "level", "logger", "message"]
    assert (entry["level"], entry["logger"], entry["message"]) == ("DEBUG", "shardbeat.y", "beat")
    assert (entry["group"], entry["latency_ms"]) == ("g1", 12.5)
    assert entry["obj"].startswith("<object object")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    assert " " not in line.replace(entry["time"], "").split('"message"')[0]  # compact separators


def test_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("WARNING", "text")
    log = logging.getLogger("shardbeat.z")
    log.info("hidden")
    log.error("shown")
    assert [line.split(": ", 1)[1] for line in lines(capsys)] == ["shown"]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_every_record_is_one_line(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", fmt)  # type: ignore[arg-type]
    only_ours()  # pytest's own capture handler would raise on the bad format below
    log = logging.getLogger("shardbeat.odd")
    log.info("two\nlines\r\tand \x00 a nul, \u2603 and \udcff")
    try:
        raise ValueError("inner\nproblem")
    except ValueError:
        log.exception("failed")
    log.info("%s and %s", "only one arg")  # bad format: logged, not raised
    log.info({"not": "a string"})
    out = lines(capsys)
    assert len(out) == 4
    if fmt == "json":
        entries = [json.loads(line) for line in out]
        assert entries[0]["message"] == "two\nlines\r\tand \x00 a nul, \u2603 and \udcff"
        assert "ValueError: inner\nproblem" in entries[1]["exc"]
        assert "unformattable arguments" in entries[2]["message"]
        assert all(line.isascii() for line in out)
    else:
        # capsys' stream is strict UTF-8: the lone surrogate is escaped, the rest kept
        assert out[0].endswith("two\\nlines\\r\\tand \\x00 a nul, \u2603 and \\udcff")
        assert "| Traceback" in out[1] and "ValueError: inner\\nproblem" in out[1]
        assert "unformattable arguments" in out[2]
        assert out[3].endswith("{'not': 'a string'}")


def test_setup_is_idempotent(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", "text")
    setup_logging("info", "json")
    assert sum(isinstance(h, StderrHandler) for h in logging.getLogger().handlers) == 1
    logging.getLogger("shardbeat").info("once")
    (line,) = lines(capsys)
    assert json.loads(line)["message"] == "once"


def test_python_warnings_are_logged(capsys: pytest.CaptureFixture[str]) -> None:
    import warnings

    setup_logging("info", "json")
    warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
    (line,) = lines(capsys)
    assert "deprecated thing" in json.loads(line)["message"]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        setup_logging("verbose", "text")
    with pytest.raises(ValueError):
        setup_logging("info", "xml")  # type: ignore[arg-type]


def test_a_closed_stderr_does_not_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    class Closed:
        def write(self, text: str) -> int:
            raise BrokenPipeError

        def flush(self) -> None:
            raise BrokenPipeError

    setup_logging("info", "text")
    monkeypatch.setattr("sys.stderr", Closed())
    logging.getLogger("shardbeat").error("nobody listens")  # must not raise


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_threads_uncaught_exception_is_one_redacted_log_line(
    fmt: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python's default thread hook prints a raw multi-line traceback past the redaction point."""
    import threading

    from shardbeat.core.redaction import register_secret

    monkeypatch.setattr(threading, "excepthook", threading.excepthook)  # restored after the test
    token = "thread-hook-secret-token-1"
    register_secret(token)
    setup_logging("info", fmt)

    def fail() -> None:
        raise RuntimeError("server echoed " + token)

    worker = threading.Thread(target=fail, name="shardbeat-test-worker")
    worker.start()
    worker.join(5)
    err = capsys.readouterr().err
    assert token not in err and "[redacted]" in err
    (line,) = err.splitlines()
    assert "shardbeat-test-worker" in line and "RuntimeError" in line
    if fmt == "json":
        assert json.loads(line)["level"] == "CRITICAL"


def test_a_library_warning_about_a_peer_has_no_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    """urllib3 logs a hostile peer's unparsable headers as a WARNING with a traceback; that is not our
    crash, so stderr carries no traceback for it (and urllib3 below ERROR stays quiet). Our own
    log.exception (an internal error) keeps its traceback."""
    setup_logging("info", "text")
    only_ours()
    try:
        raise ValueError("MissingHeaderBodySeparatorDefect")
    except ValueError as exc:
        logging.getLogger("urllib3.connection").warning("Failed to parse headers", exc_info=exc)
        logging.getLogger("otherlib").warning("peer sent junk", exc_info=exc)
        logging.getLogger("shardbeat.runner").exception("internal error in group g")
    err = "\n".join(lines(capsys))
    assert "Failed to parse headers" not in err
    assert "otherlib: peer sent junk (ValueError)" in err
    assert err.count("Traceback") == 1 and "internal error in group g | Traceback" in err


@pytest.mark.parametrize("verb", ["doctor", "validate"])
def test_an_internal_error_in_any_verb_is_one_redacted_log_line(
    verb: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only `run` set up logging: doctor (which holds the keys and talks to servers) and the other
    verbs logged through Python's last-resort handler, unredacted, the traceback over many lines."""
    from shardbeat import cli
    from shardbeat.runtime import doctor, network

    token = "doctor-sts-token-" + "q" * 20
    config = tmp_path / "c.json"
    group = {
        "provider": "sls", "endpoint": "http://127.0.0.1:1", "project": "demo-project",
        "logstore": "demo-logstore", "consumer_group": "demo-group", "consumer": "c1",
        "credentials": {"access_key_id": "akid-1", "access_key_secret": "doctor-secret-1",
                        "security_token": token},
    }  # fmt: skip
    config.write_text(json.dumps({"groups": [group]}))

    def bug(*args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError(f"a bug quoting {token}")

    monkeypatch.setattr(doctor, "run_doctor", bug)
    monkeypatch.setattr(network, "config_problems", bug)
    assert cli.main([verb, "--config", str(config)]) == 1
    err = lines(capsys)
    assert len(err) == 1 and TEXT_LINE.match(err[0]), err
    assert "internal error" in err[0] and "RuntimeError" in err[0] and token not in err[0]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_an_exception_python_cannot_raise_is_one_redacted_log_line(
    fmt: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception in a __del__ or a finalised generator goes to sys.unraisablehook, whose default
    prints it raw over many lines, past the redaction point (as the thread hook did)."""
    import gc
    import sys

    from shardbeat.core.redaction import register_secret

    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # restored after the test
    token = "unraisable-secret-token-1"
    register_secret(token)
    setup_logging("info", fmt)

    class Holder:
        def __del__(self) -> None:
            raise RuntimeError("finaliser quoting " + token)

    Holder()
    gc.collect()
    err = capsys.readouterr().err
    assert token not in err and "[redacted]" in err
    (line,) = err.splitlines()
    assert "RuntimeError" in line and "Holder.__del__" in line
