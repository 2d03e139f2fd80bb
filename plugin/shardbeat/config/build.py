"""Raw document -> Config: expand ${VAR}, validate against the schema, then the rules across fields.

Every problem in the document is collected before anything fails, and all of it happens before any
network I/O. Rules past the schema:
- endpoint syntax (providers.endpoint.split); a service's default endpoint (CLS: from region);
- heartbeat_interval < timeout, and below timeout - lease margin (else the lease lapses between two
  beats); a warning above timeout/3 (one lost beat would leave no retry before the timeout);
- lease_margin < timeout; NaN is refused;
- credentials present (config, credentials_file or environment; see config.credentials), or a
  credentials.source with its settings (config.credential_sources; a profile is read once here);
- no two groups with the same identity (the server would see one consumer claiming twice);
- the service's own fields (providers/*_service.py group_fields: SLS v4 needs region, CLS topics);
- top level: `proxy` syntax, the CA bundle in force (config/network.py).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shardbeat.config import credentials
from shardbeat.config.expand import expand
from shardbeat.config.files import parse_config_file
from shardbeat.config.local_endpoints import local_endpoint_problems
from shardbeat.config.model import (
    DEFAULT_INTERVAL,
    DEFAULT_TIMEOUT,
    CheckpointConfig,
    Config,
    ConfigError,
    ControlConfig,
    GroupConfig,
    LoadedConfig,
    MetricsConfig,
    OutputConfig,
    Problem,
    ProviderName,
    SignatureVersion,
)
from shardbeat.config.naming import default_consumer
from shardbeat.config.network import network_config
from shardbeat.config.schema_errors import schema_problems, sorted_problems
from shardbeat.core.checkpoints import DEFAULT_COMMIT_INTERVAL, DEFAULT_START
from shardbeat.core.lease import default_margin
from shardbeat.providers.base import Credentials
from shardbeat.providers.endpoint import EndpointError, split
from shardbeat.providers.services import SERVICES, service

if TYPE_CHECKING:
    from shardbeat.config.credential_sources import SourceSpec

STRUCTURE_ONLY = Credentials("", "")  # stands in for credentials not checked (never sent)

MAX_SECONDS = 86400.0  # as in the schema
MAX_START = 253402300799  # checkpoints.start's maximum in the schema (9999-12-31T23:59:59Z)
MIN_SAFE_MARGIN = 0.1
MIN_INTERVAL = 0.1  # heartbeat_interval's minimum in the schema
# groups' maxItems in the schema, checked before it: a 1 MB file of 200000 `{}` entries took a minute
# and gigabytes to list 400000 problems.
MAX_GROUPS = 10000


class _Group:
    """Checks one group entry; collects problems and warnings, builds the GroupConfig if it can."""

    def __init__(self, raw: dict[str, Any], path: str, skip: set[str]) -> None:
        self.raw = raw
        self.path = path
        self.skip = skip
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.check_credentials = True  # False: structure only (validate --no-credentials)

    def at(self, key: str) -> str:
        return f"{self.path}.{key}"

    def text(self, key: str) -> str | None:
        value = self.raw.get(key)
        return value if isinstance(value, str) and self.at(key) not in self.skip else None

    def seconds(self, key: str, default: float | None, minimum_exclusive: bool) -> tuple[float | None, bool]:
        """-> (value, usable). Out-of-range values are left to the schema's message."""
        if key not in self.raw:
            return default, True
        value = self.raw[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, False
        if isinstance(value, float) and math.isnan(value):
            self.problems.append(Problem(self.at(key), "must be a number (not NaN)"))
            return None, False
        # Compared before any float(): a 400-digit integer does not fit a float (OverflowError);
        # out of range, it is the schema's to report, naming the field.
        low_ok = value > 0 if minimum_exclusive else value >= 0
        if not (low_ok and value <= MAX_SECONDS):
            return None, False
        return float(value), True

    def endpoint(self, provider: ProviderName) -> str | None:
        endpoint = self.text("endpoint")
        default = service(provider).default_endpoint
        if endpoint is None and "endpoint" not in self.raw and default is not None:
            return default(self.text)
        if not endpoint:
            return None
        try:
            split(endpoint)
        except EndpointError as exc:
            # split() quotes the endpoint; refuse user:password@ without repeating it.
            message = "must not contain user:password@" if "@" in endpoint else str(exc)
            self.problems.append(Problem(self.at("endpoint"), message))
            return None
        return endpoint

    def timing(self) -> tuple[float, float, float | None] | None:
        interval, interval_ok = self.seconds("heartbeat_interval", DEFAULT_INTERVAL, True)
        timeout, timeout_ok = self.seconds("timeout", DEFAULT_TIMEOUT, True)
        margin, margin_ok = self.seconds("lease_margin", None, False)
        if interval is None or timeout is None or not (interval_ok and timeout_ok and margin_ok):
            return None
        if margin is not None and margin >= timeout:
            message = f"must be less than timeout ({timeout:g} s)"
            self.problems.append(Problem(self.at("lease_margin"), message))
            return None
        if interval >= timeout:
            self.problems.append(
                Problem(self.at("heartbeat_interval"), f"must be less than timeout ({timeout:g} s)")
            )
            return None
        lease = timeout - (default_margin(timeout) if margin is None else margin)
        if interval >= lease:
            self.problems.append(
                Problem(
                    self.at("heartbeat_interval"),
                    f"must be less than timeout minus the lease margin ({lease:g} s), "
                    "or the lease runs out before the next heartbeat",
                )
            )
            return None
        if margin is not None and margin < MIN_SAFE_MARGIN:
            self.warnings.append(
                Problem(
                    self.at("lease_margin"),
                    f"is below {MIN_SAFE_MARGIN:g} s: it leaves no room for a late watchdog or for the "
                    "server's clock running faster than this one; the default is max(1 s, timeout/10)",
                )
            )
        if interval > timeout / 3:
            # Below the interval's floor, the advice can only be a longer timeout.
            advice = (
                f"{timeout / 3:g} s or less is recommended"
                if timeout / 3 >= MIN_INTERVAL
                else f"heartbeat_interval cannot go below {MIN_INTERVAL:g} s, so a timeout of at least "
                f"{3 * MIN_INTERVAL:g} s is recommended"
            )
            self.warnings.append(
                Problem(
                    self.at("heartbeat_interval"),
                    f"is more than a third of timeout ({timeout:g} s): a single lost heartbeat leaves "
                    f"little time to retry; {advice}",
                )
            )
        return interval, timeout, margin

    def checkpoints(self) -> CheckpointConfig | bool | None:  # False: invalid
        """The `checkpoints` object; None when absent, False when the schema found it wrong."""
        raw = self.raw.get("checkpoints")
        if "checkpoints" not in self.raw:
            return None
        if not isinstance(raw, dict) or self.at("checkpoints") in self.skip:
            return False
        start = raw.get("start", DEFAULT_START)
        if isinstance(start, bool) or not (start in ("begin", "end") or isinstance(start, int | float)):
            return False
        if isinstance(start, float) and math.isnan(start):
            self.problems.append(Problem(self.at("checkpoints.start"), "must be a number (not NaN)"))
            return False
        if not isinstance(start, str) and not 0 <= start <= MAX_START:
            return False  # the schema says why; float() of a 400-digit int would raise
        interval = raw.get("commit_interval", DEFAULT_COMMIT_INTERVAL)
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not 0 < interval <= MAX_SECONDS
        ):
            return False  # the schema says why (NaN fails the range check too)
        return CheckpointConfig(start if isinstance(start, str) else float(start), float(interval))

    def credentials(
        self, provider: ProviderName, base_dir: Path, environ: Mapping[str, str]
    ) -> tuple[Credentials | None, str | None, SourceSpec | None, bool]:
        """-> (static keys, credentials_file, source spec, usable)."""
        if not self.check_credentials:
            return STRUCTURE_ONLY, None, None, True
        given: Mapping[str, Any] = {}
        file_path: str | None = None
        inline = self.raw.get("credentials")
        if "credentials" in self.raw and "credentials_file" in self.raw:
            self.problems.append(
                Problem(self.at("credentials_file"), "give either credentials or credentials_file, not both")
            )
            return None, None, None, False
        if isinstance(inline, dict) and inline.get("source", "static") != "static":
            return self.source(provider, str(inline.get("source")), inline, base_dir, environ)
        if "credentials_file" in self.raw:
            name = self.text("credentials_file")
            if not name:
                return None, None, None, False
            file_path = os.path.abspath(base_dir / os.path.expanduser(name))
            try:
                given, warnings = credentials.read_credentials_file(
                    file_path, provider, self.at("credentials_file")
                )
            except ConfigError as exc:
                self.problems.extend(exc.problems)
                return None, file_path, None, False
            self.warnings.extend(warnings)
        elif isinstance(inline, dict):
            given = {k: v for k, v in inline.items() if k != "source"}
        elif inline is not None:
            return None, None, None, False  # wrong type: the schema says so
        elif not any(environ.get(n) for n in service(provider).credential_keys.names_env[:2]):
            # Lazy, as in source(): static keys (the common case) never need the sources' module.
            from shardbeat.config.credential_sources import env_default_source

            picked = env_default_source(provider, environ)
            if picked is not None:  # as the official credential chain does
                return self.source(provider, picked, {}, base_dir, environ)
        found, problems = credentials.resolve(provider, given, environ, self.at("credentials"), file_path)
        self.problems.extend(problems)
        return found, file_path, None, found is not None

    def source(
        self,
        provider: ProviderName,
        name: str,
        given: Mapping[str, Any],
        base_dir: Path,
        environ: Mapping[str, str],
    ) -> tuple[Credentials | None, str | None, SourceSpec | None, bool]:
        from shardbeat.config import cli_profiles  # lazy: only a credentials.source needs them
        from shardbeat.config import credential_sources as sources

        where = self.at("credentials")
        if name not in service(provider).credential_sources:
            return None, None, None, False  # the schema names the allowed sources
        spec, problems = sources.parse_source(
            provider, name, given, where, environ, str(base_dir), self.text("region")
        )
        self.problems.extend(problems)
        if isinstance(spec, sources.AlibabaOidc | sources.TkeOidc) and sources.plain_http_off_host(
            spec.sts_endpoint
        ):
            self.warnings.append(
                Problem(
                    f"{where}.sts_endpoint", "is plain http: the OIDC token and the keys travel unencrypted"
                )
            )
        if isinstance(spec, sources.CliProfile):
            problems = cli_profiles.check_profile(spec, where)
            self.problems.extend(p for p in problems if p.path not in self.skip)  # expand() said why
            if problems:
                return None, None, None, False
        return None, None, spec, spec is not None

    def build(self, base_dir: Path, environ: Mapping[str, str], hostname: str | None) -> GroupConfig | None:
        provider = self.raw.get("provider")
        if not isinstance(provider, str) or provider not in SERVICES:
            return None  # the schema reports it; nothing else can be checked without it
        described = SERVICES[provider]
        endpoint = self.endpoint(provider)
        timing = self.timing()
        creds, creds_file, source, creds_ok = self.credentials(provider, base_dir, environ)
        group = self.text("consumer_group")
        consumer = self.text("consumer") if "consumer" in self.raw else default_consumer(provider, hostname)
        signature: SignatureVersion = "v4" if self.raw.get("signature_version") == "v4" else "v1"
        scope, wrong = described.group_fields(self.raw, self.text)
        if wrong:
            self.problems.extend(Problem(self.at(key), message) for key, message in wrong)
            return None
        if endpoint is None or timing is None or not creds_ok or not group or not consumer:
            return None
        if any(value is None for value in scope.values()):
            return None
        interval, timeout, margin = timing
        grace, _ = self.seconds("release_grace", None, True)
        checkpoints = self.checkpoints()
        if checkpoints is False:
            return None
        assert checkpoints is not True
        return GroupConfig(
            provider=provider,
            endpoint=endpoint,
            consumer_group=group,
            consumer=consumer,
            credentials=creds,
            credentials_file=creds_file,
            heartbeat_interval=interval,
            timeout=timeout,
            lease_margin=margin,
            create_group=self.raw.get("create_group") is True,
            update_group=self.raw.get("update_group") is True,
            release="ack" if self.raw.get("release") == "ack" else "immediate",
            release_grace=grace,
            signature_version=signature,
            credential_source=source,
            checkpoints=checkpoints,
            **scope,
        )


def _duplicates(groups: list[tuple[int, GroupConfig]]) -> list[Problem]:
    problems: list[Problem] = []
    first_at: dict[object, int] = {}
    for index, group in groups:
        identity = group.identity
        if identity in first_at:
            scope = ", ".join(service(group.provider).scope_keys)
            problems.append(
                Problem(
                    f"groups[{index}]",
                    f"same consumer as groups[{first_at[identity]}] (provider, {scope}, consumer_group "
                    "and consumer all equal, whatever the endpoint): one consumer cannot join a group twice",
                )
            )
        else:
            first_at[identity] = index
    return problems


MAX_LISTED = 10  # paths one message names; a config of thousands of groups would fill a screen per line


def _listed(paths: list[str]) -> str:
    shown = ", ".join(paths[:MAX_LISTED])
    return shown if len(paths) <= MAX_LISTED else f"{shown} and {len(paths) - MAX_LISTED} more"


def _rate_warnings(groups: list[tuple[int, GroupConfig]]) -> list[Problem]:
    """A service that throttles per account (CLS): warn when this process alone would come near the
    limit."""
    per_key: dict[tuple[str, str], list[tuple[int, GroupConfig]]] = {}
    for index, group in groups:
        if service(group.provider).rate_limit is not None:
            per_key.setdefault((group.provider, group.credential_label), []).append((index, group))
    warnings: list[Problem] = []
    for (provider, label), members in per_key.items():
        described = service(provider)
        limit = described.rate_limit
        assert limit is not None
        key_id = described.credential_keys.key_id.title().replace("_", "")  # secret_id -> SecretId
        shared = f"credential source {label}" if members[0][1].credential_source is not None else key_id
        rate = sum(g.request_rate for _, g in members)  # heartbeats, and commits with checkpoints
        if rate > limit / 2:
            paths = _listed([f"groups[{i}]" for i, _ in members])
            verdict = "exceeds" if rate > limit else "uses over half of"
            warnings.append(
                Problem(
                    f"groups[{members[0][0]}]",
                    f"{len(members)} {described.title} group(s) on one {shared} ({paths}) send {rate:.1f} "
                    f"requests/s, which {verdict} the service's {limit:g}/s limit per account "
                    "(RequestLimitExceeded); raise heartbeat_interval (or commit_interval) "
                    "or split across accounts",
                )
            )
    return warnings


def config_from_dict(
    raw: Any,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    hostname: str | None = None,
    check_credentials: bool = True,
) -> LoadedConfig:
    """Validate a parsed config document. Raises ConfigError listing every problem.

    `check_credentials=False` checks structure only (for a build machine without the secrets):
    credentials are not looked for, and an unset ${VAR} is a warning, not a problem; the
    Config it returns carries placeholder credentials and must not be run.

    `base_dir` anchors relative credentials_file paths (default: the working directory);
    `environ` (default os.environ) feeds ${VAR} and credential fallbacks; `hostname` (default
    socket.gethostname()) names consumers left unnamed.
    """
    env = os.environ if environ is None else environ
    base = Path.cwd() if base_dir is None else Path(base_dir)
    document, problems, skip = expand(raw, env)
    entries = document.get("groups") if isinstance(document, dict) else None
    if isinstance(entries, list) and len(entries) > MAX_GROUPS:
        message = f"must have at most {MAX_GROUPS} items, not {len(entries)} (run more processes)"
        raise ConfigError([Problem("groups", message)])
    warnings: list[Problem] = []
    if not check_credentials:
        warnings = [p for p in problems if p.message.endswith(" is not set")]
        problems = [p for p in problems if p not in warnings]
    problems.extend(p for p in schema_problems("config", document) if p.path not in skip)
    built: list[tuple[int, GroupConfig]] = []
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, dict):
            continue
        checker = _Group(entry, f"groups[{index}]", skip)
        checker.check_credentials = check_credentials
        group = checker.build(base, env, hostname)
        problems.extend(checker.problems)
        warnings.extend(checker.warnings)
        if group is not None:
            built.append((index, group))
    problems.extend(_duplicates(built))
    network, network_problems = network_config(document if isinstance(document, dict) else {}, base, env)
    problems.extend(p for p in network_problems if p.path not in skip)
    problems.extend(
        p
        for p in local_endpoint_problems(document if isinstance(document, dict) else {}, base)
        if p.path not in skip
    )
    if check_credentials:  # the rate budget is per key: unknown without the keys
        warnings.extend(_rate_warnings(built))
    if problems:
        raise ConfigError(sorted_problems(problems))
    output = document.get("output", {})
    control = document.get("control", {})
    socket_path = control.get("socket")
    metrics = document.get("metrics")
    runtime_dir = document.get("runtime_dir")
    config = Config(
        tuple(group for _, group in built),
        OutputConfig(output.get("format", "json")),
        ControlConfig(
            socket=os.path.abspath(base / os.path.expanduser(socket_path)) if socket_path else None,
            stdin=control.get("stdin", "auto"),
            exit_on_stdin_eof=control.get("exit_on_stdin_eof", False),
        ),
        MetricsConfig(metrics["listen"]) if metrics else None,
        os.path.abspath(base / os.path.expanduser(runtime_dir)) if runtime_dir else None,
        network,
    )
    return LoadedConfig(config, tuple(sorted_problems(warnings)))


def load_config(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    hostname: str | None = None,
    check_credentials: bool = True,
) -> LoadedConfig:
    """Read and validate a JSON or TOML (by the `.toml` suffix) config file. Raises ConfigError."""
    raw = parse_config_file(path)
    return config_from_dict(
        raw,
        base_dir=Path(path).parent,
        environ=environ,
        hostname=hostname,
        check_credentials=check_credentials,
    )
