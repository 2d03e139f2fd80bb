"""config_from_dict: defaults, every rule, and that no problem ever echoes a secret."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from typing import Any

import pytest

from shardbeat.config import (
    Config,
    ConfigError,
    GroupConfig,
    LoadedConfig,
    OutputConfig,
    Problem,
    config_from_dict,
    default_consumer,
)
from shardbeat.config.build import MAX_GROUPS
from shardbeat.core.lease import default_margin
from shardbeat.providers.base import Credentials
from shardbeat.schemas import schema_text

SLS_SECRET = "sls-Secret-VALUE-123"
SLS_TOKEN = "sls-Token-VALUE-456"
CLS_SECRET = "cls-Secret-KEY-789"
CLS_TOKEN = "cls-Token-VALUE-000"
SECRETS = (SLS_SECRET, SLS_TOKEN, CLS_SECRET, CLS_TOKEN)


def sls_group(**changes: Any) -> dict[str, Any]:
    group: dict[str, Any] = {
        "provider": "sls",
        "endpoint": "cn-hangzhou.log.aliyuncs.com",
        "project": "my-project",
        "logstore": "my-logstore",
        "consumer_group": "g1",
        "consumer": "c1",
        "credentials": {"access_key_id": "AKID", "access_key_secret": SLS_SECRET},
    }
    group.update(changes)
    return {k: v for k, v in group.items() if v is not None}


def cls_group(**changes: Any) -> dict[str, Any]:
    group: dict[str, Any] = {
        "provider": "cls",
        "region": "ap-guangzhou",
        "logset_id": "6f6ded3f-0000-4000-8000-000000000001",
        "topics": ["topic-id-a", "topic-id-b"],
        "consumer_group": "test-123",
        "consumer": "test-123-1",
        "credentials": {"secret_id": "SID", "secret_key": CLS_SECRET, "token": CLS_TOKEN},
    }
    group.update(changes)
    return {k: v for k, v in group.items() if v is not None}


def load(*groups: dict[str, Any], environ: dict[str, str] | None = None, **top: Any) -> LoadedConfig:
    return config_from_dict(
        {"groups": list(groups), **top}, environ=environ or {}, hostname="web-01.example.com"
    )


def problems(raw: Any, environ: dict[str, str] | None = None, **kwargs: Any) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw, environ=environ or {}, hostname="host", **kwargs)
    found = list(caught.value.problems)
    assert found, "a ConfigError must list at least one problem"
    text = str(caught.value)
    for secret in SECRETS:
        assert secret not in text
    return found


def paths(raw: Any, environ: dict[str, str] | None = None, **kwargs: Any) -> dict[str, str]:
    return {p.path: p.message for p in problems(raw, environ, **kwargs)}


def only(raw: Any, environ: dict[str, str] | None = None) -> Problem:
    found = problems(raw, environ)
    assert len(found) == 1, found
    return found[0]


# -- valid configs -----------------------------------------------------------------------------------


def test_sls_group_with_defaults() -> None:
    loaded = load(sls_group())
    assert loaded.warnings == ()
    (group,) = loaded.config.groups
    assert group == GroupConfig(
        provider="sls",
        endpoint="cn-hangzhou.log.aliyuncs.com",
        consumer_group="g1",
        consumer="c1",
        credentials=Credentials("AKID", SLS_SECRET, None),
        heartbeat_interval=20.0,
        timeout=60.0,
        lease_margin=None,
        project="my-project",
        logstore="my-logstore",
    )
    assert isinstance(group.heartbeat_interval, float)
    assert group.margin == default_margin(60.0)
    assert loaded.config.output == OutputConfig("json")


def test_cls_group_gets_the_regional_default_endpoint() -> None:
    (group,) = load(cls_group()).config.groups
    assert group.endpoint == "cls.ap-guangzhou.tencentcloudapi.com"
    assert group.topics == ("topic-id-a", "topic-id-b")
    assert group.credentials == Credentials("SID", CLS_SECRET, CLS_TOKEN)
    assert (group.project, group.logstore) == (None, None)


def test_cls_endpoint_as_given() -> None:
    (group,) = load(cls_group(endpoint="http://127.0.0.1:8099")).config.groups
    assert group.endpoint == "http://127.0.0.1:8099"


def test_fractional_seconds_margin_and_msgpack() -> None:
    loaded = load(
        sls_group(heartbeat_interval=0.5, timeout=2.5, lease_margin=0.25), output={"format": "msgpack"}
    )
    (group,) = loaded.config.groups
    assert (group.heartbeat_interval, group.timeout, group.lease_margin) == (0.5, 2.5, 0.25)
    assert group.margin == 0.25
    assert loaded.config.output.format == "msgpack"


def test_config_is_frozen_and_repr_hides_secrets() -> None:
    config = load(sls_group(credentials={"access_key_id": "AKID", "access_key_secret": SLS_SECRET}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.config.groups[0].timeout = 1  # type: ignore[misc]
    assert SLS_SECRET not in repr(config)


def test_input_document_is_not_modified() -> None:
    raw = {"groups": [cls_group(consumer=None, credentials={"secret_id": "${ID}", "secret_key": "k"})]}
    before = copy.deepcopy(raw)
    config_from_dict(raw, environ={"ID": "x"})
    assert raw == before


def test_mixed_providers_in_one_file() -> None:
    groups = load(sls_group(), cls_group()).config.groups
    assert [g.provider for g in groups] == ["sls", "cls"]


# -- structure: missing, types, unknown keys -----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "path", "words"),
    [
        ([], "", "must be an object"),
        ({}, "groups", "required"),
        ({"groups": []}, "groups", "must not be empty"),
        ({"groups": {}}, "groups", "must be a list"),
        ({"groups": [5]}, "groups[0]", "must be an object"),
        ({"groups": [sls_group(provider=None)]}, "groups[0].provider", "required"),
        ({"groups": [sls_group(provider="aws")]}, "groups[0].provider", "one of: sls, cls"),
        ({"groups": [sls_group(consumer_group=None)]}, "groups[0].consumer_group", "required"),
        ({"groups": [sls_group(endpoint=None)]}, "groups[0].endpoint", "required for provider sls"),
        ({"groups": [sls_group(project=None)]}, "groups[0].project", "required for provider sls"),
        ({"groups": [sls_group(logstore=None)]}, "groups[0].logstore", "required for provider sls"),
        ({"groups": [cls_group(region=None)]}, "groups[0].region", "required for provider cls"),
        ({"groups": [cls_group(logset_id=None)]}, "groups[0].logset_id", "required for provider cls"),
        ({"groups": [cls_group(topics=None)]}, "groups[0].topics", "required for provider cls"),
        ({"groups": [cls_group(topics=[])]}, "groups[0].topics", "must not be empty"),
        ({"groups": [cls_group(topics="t")]}, "groups[0].topics", "must be a list"),
        ({"groups": [cls_group(topics=["a", 3])]}, "groups[0].topics[1]", "must be a string"),
        ({"groups": [sls_group(timeout="60")]}, "groups[0].timeout", "must be a number, not a string"),
        ({"groups": [sls_group(timeout=True)]}, "groups[0].timeout", "must be a number"),
        ({"groups": [sls_group(heartbeat_interval=[1])]}, "groups[0].heartbeat_interval", "a number"),
        ({"groups": [sls_group(heartbeat_interval=0)]}, "groups[0].heartbeat_interval", "at least 0.1"),
        ({"groups": [sls_group(timeout=-5)]}, "groups[0].timeout", "greater than 0"),
        ({"groups": [sls_group(timeout=math.inf)]}, "groups[0].timeout", "at most 86400"),
        ({"groups": [sls_group(timeout=math.nan)]}, "groups[0].timeout", "not NaN"),
        ({"groups": [sls_group(lease_margin=-1)]}, "groups[0].lease_margin", "at least 0"),
        ({"groups": [sls_group(consumer=7)]}, "groups[0].consumer", "must be a string"),
        ({"groups": [sls_group(endpoint="")]}, "groups[0].endpoint", "must not be empty"),
        ({"groups": [sls_group(credentials="AKID:secret")]}, "groups[0].credentials", "an object"),
        ({"groups": [sls_group()], "output": "json"}, "output", "must be an object"),
        ({"groups": [sls_group()], "output": {"format": "xml"}}, "output.format", "one of: json, msgpack"),
    ],
)
def test_structural_problem(raw: Any, path: str, words: str) -> None:
    found = paths(raw)
    assert path in found, found
    assert words in found[path]


@pytest.mark.parametrize(
    ("raw", "path", "hint"),
    [
        ({"groups": [sls_group()], "grups": []}, "grups", "did you mean 'groups'"),
        (
            {"groups": [sls_group(heartbeat_intervall=5)]},
            "groups[0].heartbeat_intervall",
            "heartbeat_interval",
        ),
        ({"groups": [sls_group(timeuot=5)]}, "groups[0].timeuot", "did you mean 'timeout'"),
        ({"groups": [sls_group(colour="red")]}, "groups[0].colour", "unknown key"),
        ({"groups": [sls_group()], "output": {"fmt": "json"}}, "output.fmt", "did you mean 'format'"),
        (
            {"groups": [sls_group(credentials={"access_key_id": "a", "access_key_secret": "b", "x": "y"})]},
            "groups[0].credentials.x",
            "unknown key",
        ),
        (
            {
                "groups": [
                    sls_group(credentials={"access_key_id": "a", "access_key_secret": "b", "rol_name": "r"})
                ]
            },
            "groups[0].credentials.rol_name",
            "did you mean 'role_name'",
        ),
        ({"groups": [sls_group(**{"odd key": 1})]}, 'groups[0]["odd key"]', "unknown key"),
    ],
)
def test_unknown_keys_are_errors(raw: Any, path: str, hint: str) -> None:
    found = paths(raw)
    assert hint in found[path], found


def test_keys_of_the_other_provider_are_refused() -> None:
    raw = {"groups": [sls_group(logset_id="x", topics=["a"]), cls_group(project="p", signature_version="v4")]}
    found = paths(raw)
    assert found["groups[0].logset_id"] == "applies to provider cls only"
    assert found["groups[0].topics"] == "applies to provider cls only"
    assert found["groups[1].project"] == "applies to provider sls only"
    assert found["groups[1].signature_version"] == "applies to provider sls only"


def test_cls_credential_keys_on_an_sls_group() -> None:
    raw = {"groups": [sls_group(credentials={"secret_id": "SID", "secret_key": CLS_SECRET})]}
    found = paths(raw)
    assert "unknown key" in found["groups[0].credentials.secret_id"]
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" in found["groups[0].credentials.access_key_id"]


def test_all_problems_are_reported_at_once_and_sorted() -> None:
    raw = {
        "groups": [
            sls_group(project="X", timeout="x"),
            cls_group(region=None, consumer="_bad"),
            sls_group(logstore="a"),
        ]
        + [sls_group(consumer=f"c{i}") for i in range(8)]
        + [sls_group(endpoint="ftp://host")],
        "output": {"format": 1},
    }
    found = [p.path for p in problems(raw)]
    assert found == [
        "groups[0].project",
        "groups[0].timeout",
        "groups[1].consumer",
        "groups[1].region",
        "groups[2].logstore",
        "groups[11].endpoint",
        "output.format",
    ]


# -- names --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        ("project", "my-project", True),
        ("project", "abc", True),
        ("project", "ab", False),
        ("project", "a" * 63, True),
        ("project", "a" * 64, False),
        ("project", "My-project", False),
        ("project", "my_project", False),
        ("project", "-project", False),
        ("project", "project-", False),
        ("logstore", "my_logstore-1", True),
        ("logstore", "_logstore", False),
        ("logstore", "log.store", False),
        ("consumer_group", "g1", True),
        ("consumer_group", "g", False),
        ("consumer_group", "a" * 128, True),
        ("consumer_group", "a" * 129, False),
        ("consumer_group", "Group", False),
        ("consumer", "host-1.example.com:8080", True),
        ("consumer", "has space", False),
        ("consumer", "", False),
        ("consumer", "ü", False),
        ("consumer", "c" * 128, True),
        ("consumer", "c" * 129, False),
    ],
)
def test_sls_names(field: str, value: str, ok: bool) -> None:
    raw = {"groups": [sls_group(**{field: value})]}
    if ok:
        assert getattr(load(*raw["groups"]).config.groups[0], field) == value
    else:
        message = paths(raw)[f"groups[0].{field}"]
        assert "characters" in message


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("test-123", True),
        ("Test_Group-1", True),
        ("g", True),
        ("1group", False),
        ("_group", False),
        ("-group", False),
        ("group.name", False),
        ("group name", False),
        ("a" * 255, True),
        ("a" * 256, False),
    ],
)
@pytest.mark.parametrize("field", ["consumer_group", "consumer"])
def test_cls_names(field: str, value: str, ok: bool) -> None:
    raw = {"groups": [cls_group(**{field: value})]}
    if ok:
        assert getattr(load(*raw["groups"]).config.groups[0], field) == value
    else:
        message = paths(raw)[f"groups[0].{field}"]
        assert "starting with a letter" in message


@pytest.mark.parametrize(
    ("field", "value"),
    [("region", "AP-guangzhou"), ("region", "ap guangzhou"), ("logset_id", "a/b"), ("logset_id", "")],
)
def test_cls_ids(field: str, value: str) -> None:
    assert f"groups[0].{field}" in paths({"groups": [cls_group(**{field: value})]})


def test_repeated_topic_is_named() -> None:
    message = paths({"groups": [cls_group(topics=["a", "b", "a"])]})["groups[0].topics"]
    assert "'a' appears twice" in message


def test_control_characters_are_refused_without_echo() -> None:
    found = paths(
        {
            "groups": [
                sls_group(project="my-project\n"),
                sls_group(credentials={"access_key_id": "AKID", "access_key_secret": SLS_SECRET + "\t"}),
            ]
        }
    )
    assert "control characters" in found["groups[0].project"]
    assert "control characters" in found["groups[1].credentials.access_key_secret"]


# -- endpoint -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "words"),
    [
        ("ftp://cn-hangzhou.log.aliyuncs.com", "scheme must be http or https"),
        ("https://cn-hangzhou.log.aliyuncs.com/path", "no path"),
        ("host:99999", "invalid endpoint"),
        ("https://", "no host"),
        # Addresses no connection can ever reach: refused at load, not retried by a run for good.
        ("http://127.0.0.1:0", "port must be 1-65535"),
        ("[::1]:0", "port must be 1-65535"),
        ("cn-hangzhou.log.aliyun cs.com", "must not contain spaces"),
        ("a" * 64 + ".log.aliyuncs.com", "not a valid DNS name"),
        ("cn-hangzhou..aliyuncs.com", "not a valid DNS name"),
        ("xn--\u00e9.example", "not a valid DNS name"),
    ],
)
def test_bad_endpoint(endpoint: str, words: str) -> None:
    problem = only({"groups": [sls_group(endpoint=endpoint)]})
    assert problem.path == "groups[0].endpoint"
    assert words in problem.message


def test_endpoint_with_credentials_is_refused_without_echo() -> None:
    problem = only({"groups": [cls_group(endpoint=f"https://user:{CLS_SECRET}@cls.tencentcloudapi.com")]})
    assert problem.path == "groups[0].endpoint"
    assert CLS_SECRET not in problem.message


@pytest.mark.parametrize(
    "endpoint",
    [
        "cn-hangzhou.log.aliyuncs.com",
        "http://127.0.0.1:8080",
        "https://[::1]:443",
        "localhost:1",
        "\u00e9.example",  # an IDN: encoded as DNS does
        "cn-hangzhou.log.aliyuncs.com.",  # a fully qualified name
    ],
)
def test_good_endpoints(endpoint: str) -> None:
    assert load(sls_group(endpoint=endpoint)).config.groups[0].endpoint == endpoint


# -- timing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("interval", "timeout"), [(60, 60), (61, 60), (20, 10), (0.5, 0.5)])
def test_interval_not_below_timeout_is_refused(interval: float, timeout: float) -> None:
    problem = only({"groups": [sls_group(heartbeat_interval=interval, timeout=timeout)]})
    assert problem.path == "groups[0].heartbeat_interval"
    assert "less than timeout" in problem.message


def test_interval_past_the_lease_is_refused() -> None:
    # timeout 60, default margin 6: the lease lasts 54 s, so a 55 s interval would lapse every cycle.
    problem = only({"groups": [sls_group(heartbeat_interval=55, timeout=60)]})
    assert problem.path == "groups[0].heartbeat_interval"
    assert "lease margin (54 s)" in problem.message
    problem = only({"groups": [sls_group(heartbeat_interval=30, timeout=60, lease_margin=30)]})
    assert "lease margin (30 s)" in problem.message


def test_margin_not_below_timeout_is_refused() -> None:
    problem = only({"groups": [sls_group(timeout=10, heartbeat_interval=1, lease_margin=10)]})
    assert (problem.path, problem.message) == ("groups[0].lease_margin", "must be less than timeout (10 s)")


@pytest.mark.parametrize(("interval", "warned"), [(20, False), (20.5, True), (40, True), (19.9, False)])
def test_warning_above_a_third_of_timeout(interval: float, warned: bool) -> None:
    loaded = load(sls_group(heartbeat_interval=interval, timeout=60))
    if warned:
        (warning,) = loaded.warnings
        assert warning.path == "groups[0].heartbeat_interval"
        assert "third of timeout" in warning.message
        assert "20 s or less" in warning.message
    else:
        assert loaded.warnings == ()


@pytest.mark.parametrize(("interval", "message"), [(-1, "must be at least 0.1"), (0, "must be at least 0.1")])
def test_one_message_for_a_value_below_two_lower_bounds(interval: float, message: str) -> None:
    # heartbeat_interval has minimum 0.1 and (from seconds) exclusiveMinimum 0: -1 breaks both.
    problem = only({"groups": [sls_group(heartbeat_interval=interval)]})
    assert (problem.path, problem.message) == ("groups[0].heartbeat_interval", message)


def test_too_many_groups_is_one_problem_found_before_the_schema_walks_them() -> None:
    schema_max = json.loads(schema_text("config"))["properties"]["groups"]["maxItems"]
    assert schema_max == MAX_GROUPS
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"groups": [{}] * (MAX_GROUPS + 1)})
    [problem] = caught.value.problems
    assert (problem.path, problem.message) == (
        "groups",
        f"must have at most {MAX_GROUPS} items, not {MAX_GROUPS + 1} (run more processes)",
    )


def test_the_advice_never_goes_below_the_interval_floor() -> None:
    # timeout/3 under the schema's 0.1 s floor: no interval can follow "0.0666667 s or less".
    (warning,) = load(sls_group(heartbeat_interval=0.1, timeout=0.2)).warnings
    assert "0.0666667" not in warning.message
    assert "a timeout of at least 0.3 s is recommended" in warning.message


def test_default_interval_warns_against_a_short_timeout() -> None:
    (warning,) = load(sls_group(timeout=40)).warnings
    assert warning.path == "groups[0].heartbeat_interval"


# -- ${VAR} -------------------------------------------------------------------------------------------


def test_variables_expand_everywhere() -> None:
    environ = {"PROJECT": "env-project", "REGION_SUFFIX": "hangzhou", "SECRET": SLS_SECRET}
    (group,) = load(
        sls_group(
            project="${PROJECT}",
            endpoint="cn-${REGION_SUFFIX}.log.aliyuncs.com",
            credentials={"access_key_id": "AKID", "access_key_secret": "${SECRET}"},
        ),
        environ=environ,
    ).config.groups
    assert group.project == "env-project"
    assert group.endpoint == "cn-hangzhou.log.aliyuncs.com"
    assert group.credentials.secret == SLS_SECRET


def test_variables_expand_in_lists() -> None:
    (group,) = load(cls_group(topics=["${T}", "b"]), environ={"T": "topic-x"}).config.groups
    assert group.topics == ("topic-x", "b")


def test_double_dollar_escapes() -> None:
    (group,) = load(sls_group(consumer="a$${X}b$c"), environ={"X": "no"}).config.groups
    assert group.consumer == "a${X}b$c"


def test_missing_variable_names_variable_and_path_once() -> None:
    found = problems({"groups": [sls_group(project="${NO_SUCH_PROJECT}")]})
    assert found == [Problem("groups[0].project", "environment variable NO_SUCH_PROJECT is not set")]


@pytest.mark.parametrize("text", ["${", "${unterminated", "${1X}", "${}", "${A-B}"])
def test_malformed_references(text: str) -> None:
    problem = only({"groups": [sls_group(consumer=text)]})
    assert problem.path == "groups[0].consumer"
    assert "${" in problem.message


def test_missing_variable_in_a_secret_does_not_show_other_values() -> None:
    raw = {"groups": [sls_group(credentials={"access_key_id": "AKID", "access_key_secret": "x${S}y"})]}
    problem = only(raw)
    assert problem == Problem("groups[0].credentials.access_key_secret", "environment variable S is not set")


# -- credentials --------------------------------------------------------------------------------------

SLS_ENV = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "ENV_AKID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SLS_SECRET,
    "ALIBABA_CLOUD_SECURITY_TOKEN": SLS_TOKEN,
}
CLS_ENV = {
    "TENCENTCLOUD_SECRET_ID": "ENV_SID",
    "TENCENTCLOUD_SECRET_KEY": CLS_SECRET,
    "TENCENTCLOUD_SESSION_TOKEN": CLS_TOKEN,
}


def test_sls_credentials_from_environment() -> None:
    (group,) = load(sls_group(credentials=None), environ=SLS_ENV).config.groups
    assert group.credentials == Credentials("ENV_AKID", SLS_SECRET, SLS_TOKEN)


def test_cls_credentials_from_environment() -> None:
    (group,) = load(cls_group(credentials=None), environ=CLS_ENV).config.groups
    assert group.credentials == Credentials("ENV_SID", CLS_SECRET, CLS_TOKEN)


def test_config_wins_per_key_over_environment() -> None:
    (group,) = load(sls_group(credentials={"access_key_id": "CFG_AKID"}), environ=SLS_ENV).config.groups
    assert group.credentials == Credentials("CFG_AKID", SLS_SECRET, SLS_TOKEN)


def test_environment_token_is_not_paired_with_a_configured_secret() -> None:
    raw = sls_group(credentials={"access_key_id": "AKID", "access_key_secret": "long-term"})
    (group,) = load(raw, environ=SLS_ENV).config.groups
    assert group.credentials == Credentials("AKID", "long-term", None)


def test_configured_token_is_kept_with_an_environment_secret() -> None:
    (group,) = load(cls_group(credentials={"token": "cfg-token"}), environ=CLS_ENV).config.groups
    assert group.credentials == Credentials("ENV_SID", CLS_SECRET, "cfg-token")


def test_empty_environment_values_count_as_unset() -> None:
    environ = {"TENCENTCLOUD_SECRET_ID": "", "TENCENTCLOUD_SECRET_KEY": CLS_SECRET}
    found = paths({"groups": [cls_group(credentials=None)]}, environ)
    assert set(found) == {"groups[0].credentials.secret_id"}


@pytest.mark.parametrize(
    ("group", "key", "env"),
    [
        (sls_group(credentials=None), "access_key_id", "ALIBABA_CLOUD_ACCESS_KEY_ID"),
        (sls_group(credentials=None), "access_key_secret", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        (cls_group(credentials={"secret_key": CLS_SECRET}), "secret_id", "TENCENTCLOUD_SECRET_ID"),
        (cls_group(credentials={"secret_id": "SID"}), "secret_key", "TENCENTCLOUD_SECRET_KEY"),
    ],
)
def test_missing_credentials_name_key_and_variable(group: dict[str, Any], key: str, env: str) -> None:
    found = paths({"groups": [group]})
    assert env in found[f"groups[0].credentials.{key}"]


def test_empty_configured_secret_is_an_error_not_a_fallback() -> None:
    raw = {"groups": [sls_group(credentials={"access_key_id": "AKID", "access_key_secret": ""})]}
    assert paths(raw, SLS_ENV) == {"groups[0].credentials.access_key_secret": "must not be empty"}


def test_missing_credentials_reported_with_other_problems() -> None:
    found = paths({"groups": [sls_group(credentials=None, timeout="x")]})
    assert {"groups[0].timeout", "groups[0].credentials.access_key_id"} <= set(found)


# -- default consumer ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "host", "expected"),
    [
        ("sls", "web-01.example.com", "web-01.example.com"),
        ("sls", "my host", "my-host"),
        ("sls", "h" * 200, "h" * 128),
        ("sls", "", "shardbeat"),
        ("cls", "web-01.example.com", "web-01-example-com"),
        ("cls", "10-0-0-1", "host-10-0-0-1"),
        ("cls", "_x", "host-_x"),
        ("cls", "ünï", "host--n-"),
        ("cls", "h" * 300, "h" * 255),
    ],
)
def test_default_consumer(provider: str, host: str, expected: str) -> None:
    assert default_consumer(provider, host) == expected  # type: ignore[arg-type]


def test_default_consumer_is_used_and_valid() -> None:
    groups = load(sls_group(consumer=None), cls_group(consumer=None)).config.groups
    assert [g.consumer for g in groups] == ["web-01.example.com", "web-01-example-com"]


def test_default_consumer_is_stable_and_uses_the_host_name() -> None:
    import socket

    first = config_from_dict({"groups": [cls_group(consumer=None)]}, environ={})
    second = config_from_dict({"groups": [cls_group(consumer=None)]}, environ={})
    assert first.config.groups[0].consumer == second.config.groups[0].consumer
    assert first.config.groups[0].consumer == default_consumer("cls", socket.gethostname())


# -- duplicates ---------------------------------------------------------------------------------------


def test_duplicate_group_is_an_error() -> None:
    problem = only({"groups": [sls_group(), cls_group(), sls_group(heartbeat_interval=5)]})
    assert problem.path == "groups[2]"
    assert "groups[0]" in problem.message


def test_duplicate_detection_normalises_the_endpoint() -> None:
    raw = {
        "groups": [
            cls_group(),
            cls_group(endpoint="https://CLS.ap-guangzhou.tencentcloudapi.com:443", topics=["other"]),
        ]
    }
    assert only(raw).path == "groups[1]"


def test_duplicate_by_default_consumer() -> None:
    assert only({"groups": [sls_group(consumer=None), sls_group(consumer=None)]}).path == "groups[1]"


@pytest.mark.parametrize(
    "change",
    [
        {"consumer": "c2"},
        {"consumer_group": "g2"},
        {"logstore": "other-logstore"},
        {"project": "other-project"},
    ],
)
def test_groups_differing_in_identity_are_fine(change: dict[str, str]) -> None:
    groups = load(sls_group(), sls_group(**change)).config.groups
    assert groups[0].identity != groups[1].identity


@pytest.mark.parametrize(
    "endpoint",
    [
        "cn-hangzhou-intranet.log.aliyuncs.com",
        "http://cn-hangzhou.log.aliyuncs.com",
        "CN-HANGZHOU.log.aliyuncs.com:443",
    ],
)
def test_another_spelling_of_the_endpoint_is_the_same_consumer(endpoint: str) -> None:
    """Public or intranet host, http or https: the server sees one consumer, so it is a duplicate."""
    assert only({"groups": [sls_group(), sls_group(endpoint=endpoint)]}).path == "groups[1]"


def test_cls_identity_includes_region_and_logset() -> None:
    groups = load(
        cls_group(endpoint="cls.tencentcloudapi.com"),
        cls_group(endpoint="cls.tencentcloudapi.com", region="ap-shanghai"),
        cls_group(endpoint="cls.tencentcloudapi.com", logset_id="other"),
    ).config.groups
    assert len({g.identity for g in groups}) == 3


def test_label() -> None:
    sls, cls = load(sls_group(), cls_group()).config.groups
    assert sls.label == "sls:my-project/my-logstore/g1/c1"
    assert cls.label == "cls:ap-guangzhou/6f6ded3f-0000-4000-8000-000000000001/test-123/test-123-1"


def test_config_is_equal_for_equal_input() -> None:
    assert load(sls_group(), cls_group()).config == load(sls_group(), cls_group()).config
    assert isinstance(load(sls_group()).config, Config)


def test_cls_groups_beyond_the_account_rate_limit_are_warned_about() -> None:
    def cls_group(i: int, interval: float) -> dict[str, Any]:
        return {
            "provider": "cls",
            "region": "ap-guangzhou",
            "logset_id": "logset-1",
            "topics": ["topic-1"],
            "consumer_group": f"group{i}",
            "consumer": "node1",
            "credentials": {"secret_id": "AKID1", "secret_key": "secret-value"},
            "heartbeat_interval": interval,
            "timeout": 60,
        }

    quiet = config_from_dict({"groups": [cls_group(i, 1.0) for i in range(5)]})
    assert not [w for w in quiet.warnings if "limit" in w.message]
    loud = config_from_dict({"groups": [cls_group(i, 1.0) for i in range(25)]})
    [warning] = [w for w in loud.warnings if "limit" in w.message]
    assert "25.0 requests/s" in warning.message and "exceeds" in warning.message
    assert "secret-value" not in warning.message
    # checkpoint commits count against the same budget: 6 x (1 beat + 1 commit batch) per second
    commits = [{**cls_group(i, 1.0), "checkpoints": {"commit_interval": 1}} for i in range(6)]
    [warning] = [w for w in config_from_dict({"groups": commits}).warnings if "limit" in w.message]
    assert "12.0 requests/s" in warning.message and "uses over half" in warning.message
    # Thousands of groups on one key: one readable line, naming the first ten and how many more.
    many = config_from_dict({"groups": [cls_group(i, 1.0) for i in range(3000)]})
    [warning] = [w for w in many.warnings if "limit" in w.message]
    assert "3000 CLS group(s)" in warning.message and "groups[9] and 2990 more)" in warning.message
    assert "groups[10]" not in warning.message and len(warning.message) < 600
