"""`credentials.source`: where a group's keys come from when they are not written down (static).

    static        access_key_id/... inline, a credentials_file, or the environment (the default)
    ecs_ram_role  SLS: the ECS instance's RAM role, from the instance metadata service
    cvm_role      CLS: the CVM instance's CAM role, from the instance metadata service
    oidc_role     SLS: ACK RRSA (STS AssumeRoleWithOIDC); CLS: TKE OIDC (STS AssumeRoleWithWebIdentity)
    profile       the vendor CLI's file: ~/.aliyun/config.json or ~/.tencentcloud/credentials

Each source's settings default from the environment variables the official credential chains read,
so a pod with RRSA / TKE OIDC injected needs nothing but the source name. Which sources a provider
takes is its descriptor's (providers/*_service.py: credential_chain, credential_sources); how each
vendor's sources are read is its chain's here (CHAINS). Problems name the key and the rule, never a
value.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from shardbeat.config.model import Problem, ProviderName
from shardbeat.config.schema_errors import setting_problems
from shardbeat.providers.endpoint import address_problem
from shardbeat.providers.services import service

SourceName = Literal["static", "ecs_ram_role", "cvm_role", "oidc_role", "profile"]

ECS_METADATA = "http://100.100.100.200"
CVM_METADATA = "http://metadata.tencentyun.com"
ALIBABA_STS = "sts.aliyuncs.com"
TENCENT_STS = "sts.tencentcloudapi.com"
ALIBABA_DURATION = 3600  # seconds; STS accepts 900 up to the role's maximum
TENCENT_DURATION = 7200  # seconds; STS accepts up to 43200
MIN_DURATION = 900
MAX_DURATION = 43200


@dataclass(frozen=True, slots=True)
class EcsRamRole:
    metadata_endpoint: str  # scheme://host[:port], no path
    role_name: str | None  # None: discovered from the metadata service
    imds_v1_fallback: bool = True

    @property
    def kind(self) -> str:
        return "ecs_ram_role"

    def describe(self) -> str:
        return f"ecs_ram_role (role {self.role_name or '<discovered>'} at {self.metadata_endpoint})"


@dataclass(frozen=True, slots=True)
class CvmRole:
    metadata_endpoint: str
    role_name: str | None

    @property
    def kind(self) -> str:
        return "cvm_role"

    def describe(self) -> str:
        return f"cvm_role (role {self.role_name or '<discovered>'} at {self.metadata_endpoint})"


@dataclass(frozen=True, slots=True)
class AlibabaOidc:
    role_arn: str
    oidc_provider_arn: str
    token_file: str
    sts_endpoint: str  # scheme://host[:port]
    role_session_name: str
    duration_seconds: int = ALIBABA_DURATION

    @property
    def kind(self) -> str:
        return "oidc_role"

    def describe(self) -> str:
        return f"oidc_role (RRSA {self.role_arn} via {self.sts_endpoint})"


@dataclass(frozen=True, slots=True)
class TkeOidc:
    role_arn: str
    provider_id: str
    token_file: str
    sts_endpoint: str
    region: str  # X-TC-Region of the STS call
    role_session_name: str
    duration_seconds: int = TENCENT_DURATION

    @property
    def kind(self) -> str:
        return "oidc_role"

    def describe(self) -> str:
        return f"oidc_role (TKE {self.role_arn} via {self.sts_endpoint})"


@dataclass(frozen=True, slots=True)
class CliProfile:
    provider: ProviderName
    path: str  # the CLI's credentials file
    name: str | None  # None: the file's current (Alibaba) / [default] (Tencent)

    @property
    def kind(self) -> str:
        return "profile"

    def describe(self) -> str:
        return f"profile ({self.name or 'default'} in {self.path})"


SourceSpec = EcsRamRole | CvmRole | AlibabaOidc | TkeOidc | CliProfile


def credentials_definition(provider: ProviderName) -> str:
    """The config schema's `$defs` entry for a group's `credentials`."""
    return f"{provider}Credentials"


def _home(environ: Mapping[str, str]) -> str:
    return environ.get("HOME") or os.path.expanduser("~")


def base_url(value: str, default_scheme: str) -> str | None:
    """`host[:port]` or `scheme://host[:port]` -> `scheme://host[:port]`; None when unusable."""
    text = value.strip()
    if "://" not in text:
        text = f"{default_scheme}://{text}"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    if address_problem(parts.hostname, parts.port) is not None:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def plain_http_off_host(url: str) -> bool:
    """An http:// URL to anything but this host (loopback is where tests and local proxies live)."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def env_default_source(provider: ProviderName, environ: Mapping[str, str]) -> str | None:
    """The source the official chain would pick from the environment when no key is configured.

    None: static (a missing key is then reported as missing).
    """
    return CHAINS[service(provider).credential_chain].env_default(environ)


def _alibaba_env_default(environ: Mapping[str, str]) -> str | None:
    """RRSA variables (all three), else ALIBABA_CLOUD_ECS_METADATA (the role name) unless
    ALIBABA_CLOUD_ECS_METADATA_DISABLED=true."""
    if all(environ.get(n) for n in _ALIBABA_OIDC_ENV.values()):
        return "oidc_role"
    disabled = environ.get("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "").lower() == "true"
    if environ.get("ALIBABA_CLOUD_ECS_METADATA") and not disabled:
        return "ecs_ram_role"
    return None


def _tencent_env_default(environ: Mapping[str, str]) -> str | None:
    """The TKE OIDC variables (all three)."""
    if environ.get("TKE_ROLE_ARN") and environ.get("TKE_PROVIDER_ID") and _tke_token_file(environ):
        return "oidc_role"
    return None


_ALIBABA_OIDC_ENV = {
    "role_arn": "ALIBABA_CLOUD_ROLE_ARN",
    "oidc_provider_arn": "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
    "oidc_token_file": "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
}
_TKE_ENV = {"role_arn": "TKE_ROLE_ARN", "provider_id": "TKE_PROVIDER_ID"}


def _tke_token_file(environ: Mapping[str, str]) -> str | None:
    # The name first; tencentcloud-sdk-python reads TKE_WEB_IDENTITY_TOKEN_FILE.
    return environ.get("TKE_IDENTITY_TOKEN_FILE") or environ.get("TKE_WEB_IDENTITY_TOKEN_FILE") or None


class _Reader:
    def __init__(
        self, given: Mapping[str, Any], where: str, environ: Mapping[str, str], provider: ProviderName
    ) -> None:
        self.given = given
        self.where = where
        self.environ = environ
        self.definition = credentials_definition(provider)  # the schema's rules for these keys
        self.problems: list[Problem] = []

    def text(self, key: str, env: str | None = None, default: str | None = None) -> str | None:
        value = self.given.get(key)
        if isinstance(value, str) and value:
            return value
        if key in self.given:
            return None  # wrong type or empty: the schema reports it
        if env and self.environ.get(env):
            found = self.environ[env]
            # The schema refuses these in the file; a value from the environment gets the same rule
            # (a `$(cat)` newline or a stray escape would otherwise reach STS or the log).
            if found != found.strip() or not found.isprintable():
                self.problems.append(
                    Problem(
                        f"{self.where}.{key}",
                        f"{env} holds control characters or surrounding spaces (e.g. a trailing newline); "
                        "remove them",
                    )
                )
                return None
            flaws = setting_problems(self.definition, key, found, f"{self.where}.{key}")
            self.problems.extend(Problem(p.path, f"{env} {p.message}") for p in flaws)
            return None if flaws else found
        return default

    def required(self, key: str, env: str | None) -> str:
        value = self.text(key, env)
        if value is None:
            if key not in self.given and not (env and self.environ.get(env)):  # else text() said why
                hint = f"; or set {env}" if env else ""
                self.problems.append(
                    Problem(f"{self.where}.{key}", f"missing: required by this source{hint}")
                )
            return ""
        return value

    def url(self, key: str, env: str | None, default: str, scheme: str) -> str:
        value = self.text(key, env, default) or default
        url = base_url(value, scheme)
        if url is None:
            self.problems.append(
                Problem(f"{self.where}.{key}", "must be host[:port] or http(s)://host[:port], without a path")
            )
            return default
        return url

    def path(self, key: str, env: str | None, base_dir: str) -> str:
        value = self.required(key, env)
        return os.path.abspath(os.path.join(base_dir, os.path.expanduser(value))) if value else ""

    def duration(self, default: int) -> int:
        value = self.given.get("duration_seconds", default)
        return value if isinstance(value, int) and not isinstance(value, bool) else default


@dataclass(frozen=True, slots=True)
class _Where:
    """What a source's settings are read against besides the settings themselves."""

    provider: ProviderName
    base_dir: str
    default_region: str | None

    @property
    def session(self) -> str:
        return f"shardbeat-{os.getpid()}"


def _ecs_ram_role(reader: _Reader, where: _Where) -> SourceSpec:
    disabled = reader.environ.get("ALIBABA_CLOUD_IMDSV1_DISABLED", "").lower() == "true"
    fallback = reader.given.get("imds_v1_fallback", not disabled)
    return EcsRamRole(
        reader.url("metadata_endpoint", None, ECS_METADATA, "http"),
        reader.text("role_name", "ALIBABA_CLOUD_ECS_METADATA"),
        fallback is True,
    )


def _cvm_role(reader: _Reader, where: _Where) -> SourceSpec:
    return CvmRole(reader.url("metadata_endpoint", None, CVM_METADATA, "http"), reader.text("role_name"))


def _alibaba_oidc(reader: _Reader, where: _Where) -> SourceSpec:
    region = reader.environ.get("ALIBABA_CLOUD_STS_REGION")
    sts = f"sts.{region}.aliyuncs.com" if region else ALIBABA_STS
    session = where.session
    return AlibabaOidc(
        reader.required("role_arn", _ALIBABA_OIDC_ENV["role_arn"]),
        reader.required("oidc_provider_arn", _ALIBABA_OIDC_ENV["oidc_provider_arn"]),
        reader.path("oidc_token_file", _ALIBABA_OIDC_ENV["oidc_token_file"], where.base_dir),
        reader.url("sts_endpoint", None, sts, "https"),
        reader.text("role_session_name", "ALIBABA_CLOUD_ROLE_SESSION_NAME", session) or session,
        reader.duration(ALIBABA_DURATION),
    )


def _tke_oidc(reader: _Reader, where: _Where) -> SourceSpec:
    token_file = reader.text("token_file") or _tke_token_file(reader.environ)
    if token_file is None and "token_file" not in reader.given:
        reader.problems.append(
            Problem(
                f"{reader.where}.token_file",
                "missing: required by this source; or set TKE_IDENTITY_TOKEN_FILE",
            )
        )
    sts_region = reader.text("sts_region", "TKE_REGION", where.default_region)
    session = where.session
    return TkeOidc(
        reader.required("role_arn", _TKE_ENV["role_arn"]),
        reader.required("provider_id", _TKE_ENV["provider_id"]),
        os.path.abspath(os.path.join(where.base_dir, os.path.expanduser(token_file or ""))),
        reader.url("sts_endpoint", None, TENCENT_STS, "https"),
        sts_region or "",
        reader.text("role_session_name", None, session) or session,
        reader.duration(TENCENT_DURATION),
    )


def _profile(reader: _Reader, where: _Where, default_path: str, env: str) -> SourceSpec:
    name = reader.text("profile", env)
    file = reader.text("profile_file") or default_path
    path = os.path.abspath(os.path.join(where.base_dir, os.path.expanduser(file)))
    return CliProfile(where.provider, path, name)


def _aliyun_profile(reader: _Reader, where: _Where) -> SourceSpec:
    default_path = os.path.join(_home(reader.environ), ".aliyun", "config.json")
    return _profile(reader, where, default_path, "ALIBABA_CLOUD_PROFILE")


def _tencent_profile(reader: _Reader, where: _Where) -> SourceSpec:
    default_path = os.path.join(_home(reader.environ), ".tencentcloud", "credentials")
    if not os.path.exists(default_path) and os.path.exists("/etc/tencentcloud/credentials"):
        default_path = "/etc/tencentcloud/credentials"  # where tencentcloud-sdk-python looks next
    return _profile(reader, where, default_path, "TENCENTCLOUD_PROFILE")


@dataclass(frozen=True, slots=True)
class _Source:
    keys: tuple[str, ...]  # what `credentials` may hold besides `source`
    parse: Callable[[_Reader, _Where], SourceSpec]


@dataclass(frozen=True, slots=True)
class Chain:
    """One vendor's credential chain: the sources it offers besides static, as its official chain
    reads them, and the source its chain picks from the environment alone."""

    sources: Mapping[str, _Source]
    env_default: Callable[[Mapping[str, str]], str | None]


_PROFILE_KEYS = ("profile", "profile_file")
CHAINS: dict[str, Chain] = {
    "alibaba": Chain(
        {
            "ecs_ram_role": _Source(("role_name", "metadata_endpoint", "imds_v1_fallback"), _ecs_ram_role),
            "oidc_role": _Source(
                (
                    "role_arn",
                    "oidc_provider_arn",
                    "oidc_token_file",
                    "sts_endpoint",
                    "role_session_name",
                    "duration_seconds",
                ),
                _alibaba_oidc,
            ),
            "profile": _Source(_PROFILE_KEYS, _aliyun_profile),
        },
        _alibaba_env_default,
    ),
    "tencent": Chain(
        {
            "cvm_role": _Source(("role_name", "metadata_endpoint"), _cvm_role),
            "oidc_role": _Source(
                (
                    "role_arn",
                    "provider_id",
                    "token_file",
                    "sts_endpoint",
                    "sts_region",
                    "role_session_name",
                    "duration_seconds",
                ),
                _tke_oidc,
            ),
            "profile": _Source(_PROFILE_KEYS, _tencent_profile),
        },
        _tencent_env_default,
    ),
}


def _source(provider: ProviderName, source: str) -> _Source | None:
    """How `provider` reads `source` (None: static, or a source it does not take)."""
    described = service(provider)
    if source not in described.credential_sources:
        return None
    return CHAINS[described.credential_chain].sources.get(source)


def source_keys(provider: ProviderName, source: str) -> tuple[str, ...]:
    """The keys `credentials` may hold with `source` (besides `source` itself)."""
    if source == "static":
        return service(provider).credential_keys.names
    found = _source(provider, source)
    return found.keys if found is not None else ()


def parse_source(
    provider: ProviderName,
    source: str,
    given: Mapping[str, Any],
    where: str,
    environ: Mapping[str, str],
    base_dir: str,
    default_region: str | None,
) -> tuple[SourceSpec | None, list[Problem]]:
    """`credentials` of a non-static source -> its spec, or the problems (at `where`.key)."""
    reader = _Reader(given, where, environ, provider)
    allowed = service(provider).credential_sources
    for key in given:
        if key != "source" and key not in source_keys(provider, source):
            owners = [s for s in allowed if key in source_keys(provider, s)]
            if owners:  # an unknown key is the schema's to report
                rule = f"applies to source {' or '.join(owners)} only, not {source}"
                reader.problems.append(Problem(f"{where}.{key}", rule))
    spec: SourceSpec | None = None
    found = _source(provider, source)
    if found is not None:
        spec = found.parse(reader, _Where(provider, base_dir, default_region))
    else:
        reader.problems.append(
            Problem(f"{where}.source", f"must be one of {', '.join(allowed)} for provider {provider}")
        )
    return (spec if not reader.problems else None), reader.problems
