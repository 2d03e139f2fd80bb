"""Temporary keys from the cloud: instance metadata (ECS, CVM), STS with an OIDC token (ACK RRSA, TKE),
and the vendor CLIs' profile files. Each fetch is one blocking call chain on the refresher's thread.

    fetch(spec, sessions) -> Issued(credentials, expires (epoch seconds or None), answered_by)

Wire formats follow the official credential libraries (alibabacloud-credentials,
tencentcloud-sdk-python-common); each module's docstring says what is sent and read.
"""

from __future__ import annotations

from shardbeat.config.cli_profiles import ProfileError, read_profile
from shardbeat.config.credential_sources import (
    AlibabaOidc,
    CliProfile,
    CvmRole,
    EcsRamRole,
    SourceSpec,
    TkeOidc,
)
from shardbeat.config.credentials import credential_flaw
from shardbeat.providers.base import Credentials
from shardbeat.runtime.cloud_credentials import alibaba, tencent
from shardbeat.runtime.cloud_credentials.http import (
    DefaultSessions,
    FetchError,
    HttpSessions,
    SessionsFactory,
)
from shardbeat.runtime.cloud_credentials.issued import Issued

__all__ = ["DefaultSessions", "FetchError", "HttpSessions", "Issued", "SessionsFactory", "fetch"]


def fetch(spec: SourceSpec, sessions: HttpSessions) -> Issued:
    """Fresh keys from `spec`. Raises FetchError (message names the step, never a secret).

    Issued keys pass the same check as configured ones (credential_flaw): a control character, a
    lone surrogate or a non-ASCII character from a broken or hostile issuer would otherwise fail
    inside signing, on every call, as an internal error."""
    issued = _fetch(spec, sessions)
    for part, value in (("key id", issued.credentials.key_id), ("secret", issued.credentials.secret)):
        _check(part, value, issued)
    _check("token", issued.credentials.token, issued)
    return issued


def _check(part: str, value: str | None, issued: Issued) -> None:
    flaw = credential_flaw(value)
    if flaw is not None:
        raise FetchError(f"{issued.answered_by}: the issued {part} {flaw}")


def _fetch(spec: SourceSpec, sessions: HttpSessions) -> Issued:
    if isinstance(spec, EcsRamRole):
        return alibaba.from_ecs_metadata(spec, sessions.metadata(), sessions.metadata_timeout)
    if isinstance(spec, AlibabaOidc):
        return alibaba.from_oidc(spec, sessions.control_plane(), sessions.sts_timeout)
    if isinstance(spec, CvmRole):
        return tencent.from_cvm_metadata(spec, sessions.metadata(), sessions.metadata_timeout)
    if isinstance(spec, TkeOidc):
        return tencent.from_oidc(spec, sessions.control_plane(), sessions.sts_timeout)
    return _from_profile(spec, sessions)


def _from_profile(spec: CliProfile, sessions: HttpSessions) -> Issued:
    try:
        found = read_profile(spec)
    except ProfileError as exc:
        raise FetchError(f"profile: {exc}") from None
    if isinstance(found, Credentials):
        return Issued(found, None, f"profile {spec.name or 'default'} in {spec.path}")
    inner = _fetch(found, sessions)
    via = f"profile {spec.name or 'default'} -> {inner.answered_by}"
    return Issued(inner.credentials, inner.expires, via, inner.server_time)
