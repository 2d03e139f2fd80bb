"""The emulated identity side: instance roles, OIDC trust, and the temporary keys handed out.

Keys issued by the metadata and STS endpoints are accepted by the SLS / CLS signature checks until
their expiry on the emulator's wall clock (skew included), then refused (SLS SecurityTokenExpired,
CLS AuthFailure.TokenFailure). Settings (POST /_admin/identity):

    lifetime         seconds a key lives (default: STS DurationSeconds; metadata 21600 s)
    imds_v2          "optional" (default) | "required" (token-less GETs get 403) | "off" (PUT 404)
    ecs_roles        RAM role names attached to the emulated ECS instance (default ["shardbeat-ecs-role"])
    cvm_roles        CAM role names bound to the emulated CVM instance (default ["shardbeat-cvm-role"])
    revoked_oidc_tokens  OIDC tokens STS refuses (to prove a rotated token file is re-read)

Not locked itself: the World holds its lock around every use.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from shardbeat.emulator.fixtures import ClsCredential, SlsCredential

IMDS_MODES = ("optional", "required", "off")
METADATA_LIFETIME = 21600.0
MAX_LIFETIME = 43200.0
MAX_KEYS = 10_000


def iso_seconds(wall: float) -> str:
    """2026-11-30T21:00:00Z: the Expiration format of both vendors (whole seconds, truncated)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(wall)))


class IdentityError(ValueError):
    """Bad settings for POST /_admin/identity; the message names the key."""


@dataclass(slots=True)
class IssuedKey:
    service: str  # "sls" | "cls"
    key_id: str
    secret: str = field(repr=False)
    token: str = field(repr=False)
    expires: float  # emulator wall clock
    via: str  # e.g. "ecs_metadata", "AssumeRoleWithOIDC"


@dataclass(slots=True)
class Identity:
    lifetime: float | None = None
    imds_v2: str = "optional"
    ecs_roles: tuple[str, ...] = ("shardbeat-ecs-role",)
    cvm_roles: tuple[str, ...] = ("shardbeat-cvm-role",)
    revoked_oidc_tokens: frozenset[str] = frozenset()
    keys: dict[str, IssuedKey] = field(default_factory=dict)
    metadata_tokens: dict[str, float] = field(default_factory=dict)  # IMDSv2 token -> expiry (wall)
    fetches: dict[str, int] = field(default_factory=dict)  # "ecs_metadata/IMDSv2", "AssumeRoleWithOIDC", ...
    oidc_tokens_seen: list[str] = field(default_factory=list)  # sha256 prefixes, newest last

    def configure(self, doc: object) -> None:
        if not isinstance(doc, dict):
            raise IdentityError("identity settings must be a JSON object")
        known = {"lifetime", "imds_v2", "ecs_roles", "cvm_roles", "revoked_oidc_tokens"}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise IdentityError(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        if "lifetime" in doc:
            value = doc["lifetime"]
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_LIFETIME
            ):
                raise IdentityError(f"lifetime must be seconds in (0, {MAX_LIFETIME:g}] or null")
            self.lifetime = None if value is None else float(value)
        if "imds_v2" in doc:
            if doc["imds_v2"] not in IMDS_MODES:
                raise IdentityError(f"imds_v2 must be one of {', '.join(IMDS_MODES)}")
            self.imds_v2 = doc["imds_v2"]
        for key in ("ecs_roles", "cvm_roles", "revoked_oidc_tokens"):
            if key in doc:
                value = doc[key]
                if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                    raise IdentityError(f"{key} must be a list of non-empty strings")
                setattr(self, key, frozenset(value) if key == "revoked_oidc_tokens" else tuple(value))

    def issue(self, service: str, via: str, now: float, asked: float | None) -> IssuedKey:
        lifetime = self.lifetime if self.lifetime is not None else (asked or METADATA_LIFETIME)
        prefix = "STS." if service == "sls" else "AKID"
        key = IssuedKey(
            service,
            prefix + secrets.token_hex(10),
            secrets.token_urlsafe(24),
            "tmp-" + secrets.token_urlsafe(48),
            now + lifetime,
            via,
        )
        self.keys[key.key_id] = key
        if len(self.keys) > MAX_KEYS:  # a long-running emulator forgets its oldest keys
            del self.keys[next(iter(self.keys))]
        self.fetches[via] = self.fetches.get(via, 0) + 1
        return key

    def see_oidc_token(self, token: str) -> None:
        self.oidc_tokens_seen.append(hashlib.sha256(token.encode()).hexdigest()[:16])
        del self.oidc_tokens_seen[:-100]

    def sls_credentials(self) -> dict[str, SlsCredential]:
        return {
            k.key_id: SlsCredential(k.key_id, k.secret, k.token)
            for k in self.keys.values()
            if k.service == "sls"
        }

    def cls_credentials(self) -> dict[str, ClsCredential]:
        return {
            k.key_id: ClsCredential(k.key_id, k.secret, k.token)
            for k in self.keys.values()
            if k.service == "cls"
        }

    def expired(self, key_id: str, now: float) -> bool:
        key = self.keys.get(key_id)
        return key is not None and now >= key.expires

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "lifetime": self.lifetime,
            "imds_v2": self.imds_v2,
            "ecs_roles": list(self.ecs_roles),
            "cvm_roles": list(self.cvm_roles),
            "revoked_oidc_tokens": len(self.revoked_oidc_tokens),
            "fetches": dict(self.fetches),
            "oidc_tokens_seen": list(self.oidc_tokens_seen),
            "keys": [
                {"service": k.service, "key_id": k.key_id, "via": k.via, "expires_in": k.expires - now}
                for k in self.keys.values()
            ],
        }
