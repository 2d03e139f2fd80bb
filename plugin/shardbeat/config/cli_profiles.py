"""The vendor CLIs' credential files, read for `credentials.source: profile`.

Alibaba (`aliyun configure`): ~/.aliyun/config.json, {"current": name, "profiles": [{"name", "mode",
...}]}. Modes used here: AK (access_key_id, access_key_secret), StsToken (+ sts_token), EcsRamRole
(ram_role_name: the instance role) and OIDC (ram_role_arn, oidc_provider_arn, oidc_token_file); the
last two are delegated to the ecs_ram_role / oidc_role sources. Modes that need a signed STS call
(RamRoleArn, ChainableRamRoleArn) or a browser (CloudSSO, OAuth) are refused with a clear message.

Tencent (`tccli configure` / the SDKs): ~/.tencentcloud/credentials, INI with one section per profile
holding secret_id and secret_key (and optionally token).

Errors name the file, the profile and the key, never a value.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from typing import Any

from shardbeat.config.credential_sources import (
    ALIBABA_DURATION,
    ALIBABA_STS,
    ECS_METADATA,
    AlibabaOidc,
    CliProfile,
    EcsRamRole,
    SourceSpec,
    base_url,
    credentials_definition,
)
from shardbeat.config.credentials import credential_flaw
from shardbeat.config.files import parse_json, read_text
from shardbeat.config.model import ConfigError, Problem
from shardbeat.config.schema_errors import setting_problems
from shardbeat.providers.base import Credentials
from shardbeat.providers.services import service

MAX_PROFILE_BYTES = 1024 * 1024
_REGION = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")  # an Alibaba region id (cn-hangzhou): it names the STS host


class ProfileError(ValueError):
    """The profile cannot give credentials; the message names the file and profile."""

    def __init__(self, message: str, key: str = "profile") -> None:
        super().__init__(message)
        self.key = key  # the config key to blame: profile, or profile_file when the file is unusable


def read_profile(spec: CliProfile) -> Credentials | SourceSpec:
    """Long-term (or fixed STS) keys, or the source a role-based Alibaba profile stands for."""
    try:
        mode = os.stat(spec.path).st_mode
    except OSError as exc:
        raise ProfileError(
            f"{spec.path}: cannot read credentials profile file: {exc.strerror}", "profile_file"
        ) from None
    except ValueError:  # a NUL in the configured name: no such file can exist
        raise ProfileError(
            "cannot read credentials profile file: the name holds a NUL", "profile_file"
        ) from None
    if not stat.S_ISREG(mode):  # a FIFO would block the reader for good
        raise ProfileError(f"{spec.path}: not a regular file", "profile_file")
    try:
        text = read_text(spec.path, "credentials profile file", MAX_PROFILE_BYTES)
    except ConfigError as exc:
        raise ProfileError("; ".join(str(p) for p in exc.problems), "profile_file") from None
    return _FORMATS[service(spec.provider).credential_chain](spec, text)


def _alibaba(spec: CliProfile, text: str) -> Credentials | SourceSpec:
    try:
        document = parse_json(text, spec.path, "aliyun CLI config")
    except ConfigError as exc:
        raise ProfileError("; ".join(str(p) for p in exc.problems), "profile_file") from None
    if not isinstance(document, dict):
        raise ProfileError(f"{spec.path}: not a JSON object", "profile_file")
    name = spec.name or document.get("current") or "default"
    profiles = document.get("profiles")
    found: dict[str, Any] | None = None
    for entry in profiles if isinstance(profiles, list) else []:
        if isinstance(entry, dict) and entry.get("name") == name:
            found = entry
            break
    if found is None:
        raise ProfileError(f"{spec.path}: no profile named {name!r}")
    mode = found.get("mode", "AK")

    def field(key: str) -> str:
        value = found.get(key) if found is not None else None
        if not isinstance(value, str) or not value:
            raise ProfileError(f"{spec.path}: profile {name!r} (mode {mode}) has no {key}")
        _check(value, f"{spec.path}: profile {name!r}: {key}")
        return value

    if mode == "AK":
        return Credentials(field("access_key_id"), field("access_key_secret"))
    if mode == "StsToken":
        return Credentials(field("access_key_id"), field("access_key_secret"), field("sts_token"))

    def setting(key: str, ours: str) -> Any:
        """An optional setting, held to the rule of the config key it stands for (`ours`)."""
        value = found.get(key) if found is not None else None
        if value is None or value == "":
            return None
        problems = setting_problems(credentials_definition(spec.provider), ours, value, key)
        if problems:
            raise ProfileError(f"{spec.path}: profile {name!r}: {key} {problems[0].message}")
        return value

    if mode == "EcsRamRole":
        return EcsRamRole(ECS_METADATA, setting("ram_role_name", "role_name"))
    if mode == "OIDC":
        region = found.get("sts_region")
        sts = f"https://{ALIBABA_STS}"
        if isinstance(region, str) and region:
            sts = base_url(f"sts.{region}.aliyuncs.com", "https") or ""
            if not sts or not _REGION.fullmatch(region):
                raise ProfileError(
                    f"{spec.path}: profile {name!r}: sts_region must be a region id such as cn-hangzhou"
                )
        session = setting("role_session_name", "role_session_name")
        duration = setting("expired_seconds", "duration_seconds")
        token_file = os.path.expanduser(field("oidc_token_file"))
        return AlibabaOidc(
            field("ram_role_arn"),
            field("oidc_provider_arn"),
            os.path.join(os.path.dirname(spec.path), token_file),
            sts,
            session or f"shardbeat-{os.getpid()}",
            ALIBABA_DURATION if duration is None else int(duration),  # 3600.0 is an integer to the schema
        )
    raise ProfileError(
        f"{spec.path}: profile {name!r} has mode {str(mode)[:40]!r}; shardbeat supports AK, StsToken, "
        "EcsRamRole and OIDC profiles (use credentials.source ecs_ram_role / oidc_role for roles)"
    )


def _tencent(spec: CliProfile, text: str) -> Credentials:
    import configparser  # lazy: only a Tencent CLI profile is INI

    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, spec.path)
    except configparser.Error as exc:
        # The parser's message quotes lines; keep only its kind and the line number.
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        raise ProfileError(
            f"{spec.path}: not an INI file{where}: {type(exc).__name__}", "profile_file"
        ) from None
    name = spec.name or "default"
    if not parser.has_section(name):
        raise ProfileError(f"{spec.path}: no [{name}] section")
    section = parser[name]

    def field(key: str) -> str:
        value = section.get(key, "").strip().strip('"')
        if not value:
            raise ProfileError(f"{spec.path}: [{name}] has no {key}")
        _check(value, f"{spec.path}: [{name}] {key}")
        return value

    token = section.get("token", "").strip().strip('"') or None
    if token is not None:
        _check(token, f"{spec.path}: [{name}] token")
    return Credentials(field("secret_id"), field("secret_key"), token)


_FORMATS: dict[str, Callable[[CliProfile, str], Credentials | SourceSpec]] = {
    "alibaba": _alibaba,
    "tencent": _tencent,
}


def _check(value: str, where: str) -> None:
    """Profile values are refused as a config's credentials are (README: control characters,
    surrounding spaces, non-ASCII), naming the key, never the value."""
    flaw = credential_flaw(value)
    if flaw is not None:
        raise ProfileError(f"{where} {flaw}")


def check_profile(spec: CliProfile, where: str) -> list[Problem]:
    """Load-time check: the profile gives keys now (problems at `where`.profile or .profile_file)."""
    try:
        read_profile(spec)
    except ProfileError as exc:
        return [Problem(f"{where}.{exc.key}", str(exc))]
    return []
