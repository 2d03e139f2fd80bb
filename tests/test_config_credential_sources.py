"""`credentials.source` in the config: settings, environment defaults (the official chains' variables),
and every bad value refused with its key named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shardbeat.config import ConfigError, GroupConfig, config_from_dict
from shardbeat.config.credential_sources import AlibabaOidc, CliProfile, CvmRole, EcsRamRole, TkeOidc
from shardbeat.providers.base import Credentials


def sls(**over: Any) -> dict[str, Any]:
    return {
        "provider": "sls",
        "endpoint": "cn-hangzhou.log.aliyuncs.com",
        "project": "my-project",
        "logstore": "my-logstore",
        "consumer_group": "g1",
        "consumer": "c1",
        **over,
    }


def cls(**over: Any) -> dict[str, Any]:
    return {
        "provider": "cls",
        "region": "ap-guangzhou",
        "logset_id": "6f6ded3f-948c-4616-9c7c-956a95d8c1a3",
        "topics": ["t-1"],
        "consumer_group": "g1",
        "consumer": "c1",
        **over,
    }


def load(
    group: dict[str, Any], environ: dict[str, str] | None = None, base: Path | None = None
) -> GroupConfig:
    return config_from_dict({"groups": [group]}, environ=environ or {}, base_dir=base).config.groups[0]


def problems(group: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load(group, environ)
    return {p.path: p.message for p in caught.value.problems}


def test_static_is_the_default_and_may_be_named() -> None:
    keys = {"access_key_id": "LTAI", "access_key_secret": "s"}
    assert load(sls(credentials=keys)).credentials == Credentials("LTAI", "s")
    named = load(sls(credentials={"source": "static", **keys}))
    assert named.credentials == Credentials("LTAI", "s") and named.credential_source is None


def test_ecs_ram_role_defaults_and_settings() -> None:
    group = load(sls(credentials={"source": "ecs_ram_role"}))
    assert group.credentials is None
    assert group.credential_source == EcsRamRole("http://100.100.100.200", None, True)
    spec = load(
        sls(
            credentials={
                "source": "ecs_ram_role",
                "role_name": "r1",
                "metadata_endpoint": "127.0.0.1:8099",
                "imds_v1_fallback": False,
            }
        )
    ).credential_source
    assert spec == EcsRamRole("http://127.0.0.1:8099", "r1", False)
    env = {"ALIBABA_CLOUD_ECS_METADATA": "env-role", "ALIBABA_CLOUD_IMDSV1_DISABLED": "true"}
    assert load(sls(credentials={"source": "ecs_ram_role"}), env).credential_source == EcsRamRole(
        "http://100.100.100.200", "env-role", False
    )


def test_the_official_chains_environment_picks_a_source_when_no_key_is_given(tmp_path: Path) -> None:
    assert load(sls(), {"ALIBABA_CLOUD_ECS_METADATA": "node"}).credential_source == EcsRamRole(
        "http://100.100.100.200", "node"
    )
    rrsa = {
        "ALIBABA_CLOUD_ROLE_ARN": "acs:ram::1:role/r",
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": "acs:ram::1:oidc-provider/p",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": "/var/run/secrets/tokens/oidc-token",
        "ALIBABA_CLOUD_ECS_METADATA": "node",
    }
    spec = load(sls(), rrsa).credential_source
    assert isinstance(spec, AlibabaOidc)
    assert (spec.role_arn, spec.oidc_provider_arn, spec.token_file, spec.sts_endpoint) == (
        "acs:ram::1:role/r",
        "acs:ram::1:oidc-provider/p",
        "/var/run/secrets/tokens/oidc-token",
        "https://sts.aliyuncs.com",
    )
    # Keys in the environment win, as in the official chain.
    keyed = load(
        sls(), {**rrsa, "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s"}
    )
    assert keyed.credential_source is None and keyed.credentials == Credentials("LTAI", "s")
    tke = {
        "TKE_ROLE_ARN": "qcs::cam::uin/1:roleName/r",
        "TKE_PROVIDER_ID": "p",
        "TKE_WEB_IDENTITY_TOKEN_FILE": "/var/run/tke/token",
    }
    spec = load(cls(), tke).credential_source
    assert isinstance(spec, TkeOidc)
    assert (spec.token_file, spec.region, spec.sts_endpoint) == (
        "/var/run/tke/token",
        "ap-guangzhou",
        "https://sts.tencentcloudapi.com",
    )
    assert load(
        cls(), {**tke, "TKE_IDENTITY_TOKEN_FILE": "/t2", "TKE_REGION": "ap-shanghai"}
    ).credential_source == (
        TkeOidc(
            "qcs::cam::uin/1:roleName/r",
            "p",
            "/t2",
            "https://sts.tencentcloudapi.com",
            "ap-shanghai",
            spec.role_session_name,
            7200,
        )
    )
    disabled = {"ALIBABA_CLOUD_ECS_METADATA": "node", "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"}
    assert "groups[0].credentials.access_key_id" in problems(sls(), disabled)
    # Nothing at all: still the old, specific message.
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" in problems(sls())["groups[0].credentials.access_key_id"]


def test_oidc_settings_in_the_config_win_and_relative_paths_follow_the_config(tmp_path: Path) -> None:
    creds = {
        "source": "oidc_role",
        "role_arn": "acs:ram::1:role/cfg",
        "oidc_provider_arn": "p",
        "oidc_token_file": "token",
        "sts_endpoint": "sts-vpc.cn-hangzhou.aliyuncs.com",
        "role_session_name": "node-1",
        "duration_seconds": 1800,
    }
    env = {"ALIBABA_CLOUD_ROLE_ARN": "acs:ram::1:role/env"}
    assert load(sls(credentials=creds), env, tmp_path).credential_source == AlibabaOidc(
        "acs:ram::1:role/cfg",
        "p",
        str(tmp_path / "token"),
        "https://sts-vpc.cn-hangzhou.aliyuncs.com",
        "node-1",
        1800,
    )


def test_cvm_role() -> None:
    assert load(cls(credentials={"source": "cvm_role"})).credential_source == CvmRole(
        "http://metadata.tencentyun.com", None
    )


def test_profiles_are_read_at_load_and_bad_ones_name_the_key(tmp_path: Path) -> None:
    aliyun = tmp_path / ".aliyun" / "config.json"
    aliyun.parent.mkdir()
    aliyun.write_text(
        json.dumps(
            {
                "current": "p1",
                "profiles": [{"name": "p1", "mode": "AK", "access_key_id": "LTAI", "access_key_secret": "s"}],
            }
        )
    )
    home = {"HOME": str(tmp_path)}
    assert load(sls(credentials={"source": "profile"}), home).credential_source == CliProfile(
        "sls", str(aliyun), None
    )
    found = problems(sls(credentials={"source": "profile", "profile": "p2"}), home)
    assert "no profile named 'p2'" in found["groups[0].credentials.profile"]
    found = problems(cls(credentials={"source": "profile"}), home)
    assert ".tencentcloud/credentials" in found["groups[0].credentials.profile_file"]
    aliyun.write_text("{not json")
    assert "groups[0].credentials.profile_file" in problems(sls(credentials={"source": "profile"}), home)


@pytest.mark.parametrize(
    ("secret", "flaw"),
    [("s\u00ebcret-key-VALUE-1", "non-ASCII"), ("secret-key\tVALUE-2", "a tab")],
)
def test_profile_values_are_refused_like_config_credentials(tmp_path: Path, secret: str, flaw: str) -> None:
    """README: a credential with a control character or non-ASCII is refused at load, naming the key
    and where it came from, never the value; a CLI profile is one more place it comes from."""
    tencent = tmp_path / ".tencentcloud" / "credentials"
    tencent.parent.mkdir()
    tencent.write_text(f"[default]\nsecret_id = AKIDx\nsecret_key = {secret}\n", encoding="utf-8")
    aliyun = tmp_path / ".aliyun" / "config.json"
    aliyun.parent.mkdir()
    profile = {"name": "p1", "mode": "StsToken", "access_key_id": "LTAI", "access_key_secret": "ok-secret"}
    aliyun.write_text(json.dumps({"current": "p1", "profiles": [profile | {"sts_token": secret}]}))
    home = {"HOME": str(tmp_path)}
    for group, key in (
        (cls(credentials={"source": "profile"}), "secret_key"),
        (sls(credentials={"source": "profile"}), "sts_token"),
    ):
        found = problems(group, home)["groups[0].credentials.profile"]
        assert key in found and flaw in found and secret not in found


@pytest.mark.parametrize(
    ("group", "path", "message"),
    [
        (sls(credentials={"source": "cvm_role"}), "groups[0].credentials.source", "must be one of"),
        (cls(credentials={"source": "ecs_ram_role"}), "groups[0].credentials.source", "must be one of"),
        (sls(credentials={"source": "magic"}), "groups[0].credentials.source", "must be one of"),
        (
            sls(credentials={"source": "ecs_ram_role", "access_key_id": "x"}),
            "groups[0].credentials.access_key_id",
            "applies to source static only",
        ),
        (
            sls(credentials={"source": "ecs_ram_role", "metadata_endpoint": "http://h/latest"}),
            "groups[0].credentials.metadata_endpoint",
            "without a path",
        ),
        (
            sls(credentials={"source": "ecs_ram_role", "metadata_endpoint": "ftp://h"}),
            "groups[0].credentials.metadata_endpoint",
            "http(s)://host[:port]",
        ),
        (
            sls(credentials={"source": "ecs_ram_role", "imds_v1_fallback": "yes"}),
            "groups[0].credentials.imds_v1_fallback",
            "true or false",
        ),
        (
            sls(credentials={"source": "oidc_role"}),
            "groups[0].credentials.role_arn",
            "ALIBABA_CLOUD_ROLE_ARN",
        ),
        (
            sls(credentials={"source": "oidc_role"}),
            "groups[0].credentials.oidc_token_file",
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
        ),
        (cls(credentials={"source": "oidc_role"}), "groups[0].credentials.provider_id", "TKE_PROVIDER_ID"),
        (
            cls(credentials={"source": "oidc_role"}),
            "groups[0].credentials.token_file",
            "TKE_IDENTITY_TOKEN_FILE",
        ),
        (
            sls(credentials={"source": "oidc_role", "duration_seconds": 60}),
            "groups[0].credentials.duration_seconds",
            "900",
        ),
        (cls(credentials={"source": "cvm_role", "role_name": "a/b"}), "groups[0].credentials.role_name", ""),
        (
            cls(credentials={"source": "cvm_role", "oidc_token_file": "x"}),
            "groups[0].credentials.oidc_token_file",
            "unknown key",
        ),
        (
            sls(credentials={"source": "ecs_ram_role"}, credentials_file="c.json"),
            "groups[0].credentials_file",
            "not both",
        ),
    ],
)
def test_bad_source_settings_name_their_key(group: dict[str, Any], path: str, message: str) -> None:
    found = problems(group)
    assert path in found, found
    assert message in found[path]


def test_cls_rate_warning_groups_by_source() -> None:
    groups = [
        cls(credentials={"source": "cvm_role"}, consumer=f"c{i}", heartbeat_interval=0.1) for i in range(3)
    ]
    warnings = config_from_dict({"groups": groups}, environ={}).warnings
    assert any("cvm_role" in w.message and "requests/s" in w.message for w in warnings)


def test_plain_http_sts_off_this_host_is_warned_about() -> None:
    creds = {"source": "oidc_role", "role_arn": "r", "oidc_provider_arn": "p", "oidc_token_file": "/t"}
    warned = config_from_dict(
        {"groups": [sls(credentials={**creds, "sts_endpoint": "http://sts.example"})]}, environ={}
    ).warnings
    assert [w.path for w in warned] == ["groups[0].credentials.sts_endpoint"]
    local = config_from_dict(
        {"groups": [sls(credentials={**creds, "sts_endpoint": "http://127.0.0.1:8099"})]}, environ={}
    ).warnings
    assert local == ()


@pytest.mark.parametrize("sts", ["sts..aliyuncs.com", "https://sts.aliyuncs.com:0", "sts aliyuncs.com"])
def test_an_sts_endpoint_no_connection_can_reach_is_refused(sts: str) -> None:
    creds = {"source": "oidc_role", "role_arn": "r", "oidc_provider_arn": "p", "oidc_token_file": "/t"}
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"groups": [sls(credentials={**creds, "sts_endpoint": sts})]}, environ={})
    assert [p.path for p in caught.value.problems] == ["groups[0].credentials.sts_endpoint"]


@pytest.mark.parametrize(
    ("group", "environ", "path"),
    [
        # The schema refuses these in the file; from the official chains' variables they got through.
        (sls(credentials={"source": "ecs_ram_role"}), {"ALIBABA_CLOUD_ECS_METADATA": "../../x"}, "role_name"),
        (
            sls(credentials={"source": "oidc_role", "role_arn": "r", "oidc_provider_arn": "p"}),
            {"ALIBABA_CLOUD_OIDC_TOKEN_FILE": "/t", "ALIBABA_CLOUD_ROLE_SESSION_NAME": "a b"},
            "role_session_name",
        ),
        (
            sls(credentials={"source": "oidc_role", "role_arn": "r", "oidc_provider_arn": "p"}),
            {"ALIBABA_CLOUD_OIDC_TOKEN_FILE": "/t", "ALIBABA_CLOUD_ROLE_SESSION_NAME": "x" * 65},
            "role_session_name",
        ),
    ],
)
def test_a_setting_from_the_environment_is_held_to_the_schemas_rule(
    group: dict[str, Any], environ: dict[str, str], path: str
) -> None:
    found = problems(group, environ)
    key = f"groups[0].credentials.{path}"
    assert key in found, found
    assert found[key].startswith("ALIBABA_CLOUD_")
    assert (
        environ.get("ALIBABA_CLOUD_ECS_METADATA", "@") not in found[key]
    )  # names the variable, not its value


@pytest.mark.parametrize(
    ("profile", "words"),
    [
        ({"mode": "EcsRamRole", "ram_role_name": "../../latest/x"}, "ram_role_name has an invalid format"),
        ({"mode": "EcsRamRole", "ram_role_name": "role\n"}, "ram_role_name"),
        ({"mode": "OIDC", "sts_region": "evil.example/x?"}, "sts_region must be a region id"),
        ({"mode": "OIDC", "sts_region": "cn-hangzhou\n"}, "sts_region must be a region id"),
        ({"mode": "OIDC", "role_session_name": "a b"}, "role_session_name has an invalid format"),
        ({"mode": "OIDC", "expired_seconds": 10**12}, "expired_seconds must be at most 43200"),
        ({"mode": "OIDC", "expired_seconds": "3600"}, "expired_seconds must be an integer"),
    ],
)
def test_a_profiles_settings_are_held_to_the_rules_of_the_config_keys(
    tmp_path: Path, profile: dict[str, Any], words: str
) -> None:
    """A profile's role name goes into the metadata URL's path and its region into the STS host name:
    one that the config's own key would refuse is refused from the profile too."""
    oidc = {
        "ram_role_arn": "acs:ram::1:role/r",
        "oidc_provider_arn": "acs:ram::1:oidc/p",
        "oidc_token_file": "/t",
    }
    aliyun = tmp_path / ".aliyun" / "config.json"
    aliyun.parent.mkdir()
    aliyun.write_text(json.dumps({"current": "p1", "profiles": [{"name": "p1", **oidc, **profile}]}))
    found = problems(sls(credentials={"source": "profile"}), {"HOME": str(tmp_path)})
    assert words in found["groups[0].credentials.profile"], found
