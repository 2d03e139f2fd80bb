"""Many config problems of one kind are said once (config/problem_summary.py): a config with 60,000 unknown
keys printed 60,000 lines. Every problem kind, on stderr (validate, run, doctor) and in `validate --format
json` (schemas/validation.schema.json); ConfigError.problems still holds every one of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from shardbeat import cli
from shardbeat.config import ConfigError, Problem, config_from_dict, load_config, schema_errors
from shardbeat.config.problem_summary import SHOWN_PER_KIND, Omitted, kind_of, summarise, summary_lines
from shardbeat.schemas import load_schema

VALIDATION = jsonschema.Draft202012Validator(load_schema("validation"))
ENV = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "AKID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "summary-Secret-31337"}


def group(i: int, **over: Any) -> dict[str, Any]:
    entry = {
        "provider": "sls",
        "endpoint": "http://127.0.0.1:9",
        "project": "my-project",
        "logstore": "my-logstore",
        "consumer_group": f"g{i}",
        "consumer": "c1",
    }
    entry.update(over)
    return entry


def sixty_thousand_keys() -> dict[str, Any]:
    groups = [group(i) for i in range(5)]
    groups[3].update({f"k{i}": 0 for i in range(60_000)})
    return {"groups": groups}


def problems_of(document: Any) -> tuple[Problem, ...]:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(document, environ=ENV)
    return caught.value.problems


def test_sixty_thousand_unknown_keys_are_a_few_lines_and_every_problem_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import difflib

    calls = [0]
    real = difflib.get_close_matches

    def counted(*args: Any, **kwargs: Any) -> list[str]:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(difflib, "get_close_matches", counted)
    problems = problems_of(sixty_thousand_keys())
    assert len(problems) == 60_000  # the error still holds each
    assert calls[0] <= SHOWN_PER_KIND  # "did you mean" only for those shown (0.2-0.7 ms each)
    lines = summary_lines(problems)
    assert len(lines) == SHOWN_PER_KIND + 1
    assert lines[:3] == [
        "groups[3].k0: unknown key",
        "groups[3].k1: unknown key",
        "groups[3].k10: unknown key",
    ]
    assert lines[-1] == "groups[3]: and 59990 more, all under it: unknown key (the last at groups[3].k9999)"
    assert str(ConfigError(problems)).splitlines() == lines


def test_every_kind_is_summarised_apart_and_said_after_its_last_problem_shown() -> None:
    groups = [group(i, consumer_grup="x", timeout=0, heartbeat_interval=-1) for i in range(300)]
    groups += [group(1000)] * 12  # one identity 12 times: 11 of "same consumer as groups[300]"
    lines = summary_lines(problems_of({"groups": groups}))
    summaries = [line for line in lines if "more, all under it" in line]
    assert sorted(s.split(": ", 1)[1].split(" (the last")[0] for s in summaries) == [
        "and 290 more, all under it: must be at least 0.1",
        "and 290 more, all under it: must be greater than 0",
        "and 290 more, all under it: unknown key",
    ]
    assert all(s.startswith("groups: ") for s in summaries)
    # each right after the tenth of its kind, in document order
    unknown = [i for i, line in enumerate(lines) if "consumer_grup: unknown key" in line]
    assert len(unknown) == SHOWN_PER_KIND and "unknown key" in lines[unknown[-1] + 1]
    assert lines[unknown[-1]].startswith("groups[9].consumer_grup")
    # one of a kind past the shown ones is shown itself, not as "1 more"
    assert sum("same consumer as" in line for line in lines) == 11
    assert not any("and 1 more" in line for line in lines)


def test_the_kind_ignores_what_names_a_key_value_or_index() -> None:
    assert kind_of("unknown key (did you mean 'consumer'?)") == kind_of("unknown key") == "unknown key"
    assert kind_of("unknown key; expected one of: a, b") == "unknown key"
    assert kind_of("same consumer as groups[3]") == kind_of("same consumer as groups[71]")
    assert kind_of("must be at least 0.1") != kind_of("must be at least 1")  # another rule


def test_thirty_thousand_repeated_keys_are_a_few_lines(tmp_path: Path) -> None:
    """The message named the key before " (" ("key 'k7' appears twice ..."): 30,000 repeated keys
    were 30,000 kinds, so 30,000 lines; and all at the file's name, a summary went to its 'parent'
    (c.json -> c)."""
    path = tmp_path / "c.json"
    path.write_text("{" + ", ".join(f'"k{i}": 1, "k{i}": 2' for i in range(3000)) + "}")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = summary_lines(caught.value.problems)
    assert len(lines) == SHOWN_PER_KIND + 1
    assert lines[-1].startswith(
        f"{path}: and {3000 - SHOWN_PER_KIND} more, all under it: a key appears twice"
    )


def test_a_summary_is_said_under_the_deepest_path_all_share() -> None:
    problems = [Problem(f'groups[2].credentials["k {i}"]', "unknown key") for i in range(30)]
    problems += [Problem(f"groups[{i}].x", "required") for i in range(30)]
    items = summarise(schema_errors.sorted_problems(problems))
    omitted = {item.kind: item for item in items if isinstance(item, Omitted)}
    assert omitted["unknown key"].path == "groups[2].credentials" and omitted["unknown key"].count == 20
    assert omitted["required"].path == "groups" and omitted["required"].last == "groups[29].x"
    same = summarise(
        [Problem("groups[1].topics", f"must not repeat an item ('t{i}' appears twice)") for i in range(12)]
    )
    assert isinstance(same[-1], Omitted) and same[-1].path == "groups[1].topics"  # all at one path: it


def test_past_the_overall_limit_the_rest_is_summarised_too() -> None:
    problems = [Problem(f"groups[{i}].f{j}", f"rule {j}") for j in range(40) for i in range(12)]
    lines = summary_lines(schema_errors.sorted_problems(problems))
    assert len(lines) <= 200 + 40  # at most MAX_SHOWN shown, and a line per kind
    assert all(f"rule {j}" in "\n".join(lines) for j in range(40))  # no kind goes unsaid


def test_validate_prints_the_summary_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "big.json"
    path.write_text(json.dumps(sixty_thousand_keys()))
    assert cli.main(["validate", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == SHOWN_PER_KIND + 1  # 60,000 before
    assert "groups[3]: and 59990 more, all under it: unknown key" in captured.err


def test_validate_json_follows_its_schema_and_summarises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    document = sixty_thousand_keys()
    document["groups"][0]["\x1b[2Jsummary-Secret-31337"] = 1  # a hostile key: escaped, and masked
    path = tmp_path / "big.json"
    path.write_text(json.dumps(document))
    assert cli.main(["validate", "--config", str(path), "--format", "json"]) == 2
    captured = capsys.readouterr()
    answer = json.loads(captured.out)
    VALIDATION.validate(answer)
    assert captured.err == "" and answer["ok"] is False and answer["structure_only"] is False
    assert len(answer["problems"]) == SHOWN_PER_KIND
    assert answer["problems_omitted"] == [
        {"path": "groups[3]", "kind": "unknown key", "count": 59991, "last": "groups[3].k9999"}
    ]
    assert "\x1b" not in captured.out and "summary-Secret-31337" not in captured.out
    # warnings, when the config is usable: summarised the same way
    many = [group(i, heartbeat_interval=25, timeout=60) for i in range(40)]  # above a third of the timeout
    path.write_text(json.dumps({"groups": many}))
    assert cli.main(["validate", "--config", str(path), "--format", "json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    VALIDATION.validate(answer)
    assert answer["ok"] is True and answer["problems"] == [] and len(answer["warnings"]) == SHOWN_PER_KIND
    assert [(o["path"], o["count"]) for o in answer["warnings_omitted"]] == [("groups", 30)]


def test_run_logs_the_summary_too(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps(sixty_thousand_keys()))
    environ = {**os.environ, **ENV}
    result = subprocess.run(
        [sys.executable, "-m", "shardbeat", "run", "--config", str(path)],
        capture_output=True,
        env=environ,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2 and result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == SHOWN_PER_KIND + 1, lines[:20]
    assert "groups[3]: and 59990 more, all under it: unknown key" in lines[-1]
