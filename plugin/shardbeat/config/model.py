"""The typed, frozen result of loading a config, and the error that lists every problem with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from shardbeat.config.proxy_url import ProxyUrl
from shardbeat.core.checkpoints import DEFAULT_COMMIT_INTERVAL, DEFAULT_START, Start
from shardbeat.core.lease import default_margin
from shardbeat.core.redaction import redact
from shardbeat.providers.base import Credentials
from shardbeat.providers.services import service

if TYPE_CHECKING:
    from shardbeat.config.credential_sources import SourceSpec

ProviderName = str  # a key of providers.services.SERVICES
OutputFormat = Literal["json", "msgpack", "text"]
ReleaseMode = Literal["immediate", "ack"]
SignatureVersion = Literal["v1", "v4"]

DEFAULT_INTERVAL = 20.0
DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong (or, as a warning, worth a look) at a JSON path such as `groups[0].timeout`.

    `path` is "" for the document as a whole and the file name for problems with the file itself.
    Messages name the field and the rule, never the value, so secrets cannot leak through them.
    """

    path: str
    message: str

    def __str__(self) -> str:
        # The one place a problem becomes text: a key from the file may hold terminal escapes or run
        # to kilobytes, and a message may quote a path expanded from a secret variable.
        # Masked first: a cut (or an escape) through a quoted secret would hide it from the mask.
        return printable(redact(f"{self.path or '(root)'}: {self.message}"))


MAX_PROBLEM_TEXT = 1000


def printable(text: str) -> str:
    """Control characters escaped (`\\x1b`), and cut short: a hostile key must not drive the terminal."""
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return shown if len(shown) <= MAX_PROBLEM_TEXT else shown[:MAX_PROBLEM_TEXT] + "..."


class ConfigError(Exception):
    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(f"{len(self.problems)} config problem(s)")

    def __str__(self) -> str:
        """One line per problem; many of one kind summarised (60,000 unknown keys are not 60,000 lines)."""
        from shardbeat.config.problem_summary import summary_lines

        return "\n".join(summary_lines(self.problems))


@dataclass(frozen=True, slots=True)
class OutputConfig:
    format: OutputFormat = "json"


@dataclass(frozen=True, slots=True)
class GroupIdentity:
    """What the server sees as one consumer: two configured groups with the same identity would fight.

    No endpoint: one group is reached under many spellings (localhost or 127.0.0.1, public or intranet
    host, http or https), and SLS project names and CLS logset ids already say which service holds it.
    """

    provider: ProviderName
    scope: tuple[str, ...]  # the service's scope_keys: SLS (project, logstore); CLS (region, logset_id)
    consumer_group: str
    consumer: str


@dataclass(frozen=True, slots=True)
class CheckpointConfig:
    """`checkpoints`: start positions on assignment records, and fenced commits."""

    start: Start = DEFAULT_START  # "begin" | "end" | unix seconds, for shards never committed
    commit_interval: float = DEFAULT_COMMIT_INTERVAL


@dataclass(frozen=True, slots=True)
class GroupConfig:
    provider: ProviderName
    endpoint: str  # as given; for CLS without one, cls.{region}.tencentcloudapi.com
    consumer_group: str
    consumer: str
    credentials: Credentials | None  # None: a credential_source fetches them at run time
    credentials_file: str | None = None  # absolute path, re-read on rotation (config.reload_credentials)
    heartbeat_interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    lease_margin: float | None = None  # None: core.lease.default_margin(timeout)
    project: str | None = None  # SLS
    logstore: str | None = None  # SLS
    region: str | None = None  # CLS; SLS: the region v4 signs for
    logset_id: str | None = None  # CLS
    topics: tuple[str, ...] | None = None  # CLS topic ids
    create_group: bool = False  # create a missing group with `timeout`
    update_group: bool = False  # overwrite a differing server-side timeout with `timeout`
    release: ReleaseMode = "immediate"
    release_grace: float | None = None  # ack mode: longest wait for downstream's ack (None: timeout)
    signature_version: SignatureVersion = "v1"  # SLS: v1 (hmac-sha1) or v4 (SLS4-HMAC-SHA256, needs region)
    credential_source: SourceSpec | None = None  # credentials.source other than static

    @property
    def credential_label(self) -> str:
        """What the keys are known by in logs and warnings: the key id, or the source's description."""
        if self.credential_source is not None:
            return self.credential_source.describe()
        return self.credentials.key_id if self.credentials is not None else "?"

    checkpoints: CheckpointConfig | None = None  # None: the feature is off

    @property
    def identity(self) -> GroupIdentity:
        return GroupIdentity(self.provider, self._scope, self.consumer_group, self.consumer)

    @property
    def _scope(self) -> tuple[str, ...]:
        return tuple(getattr(self, key) or "" for key in service(self.provider).scope_keys)

    @property
    def request_rate(self) -> float:
        """Steady requests per second on the service: heartbeats, plus at most one commit batch per
        commit_interval with checkpoints (what counts against CLS's per-account rate limit)."""
        commits = 1.0 / self.checkpoints.commit_interval if self.checkpoints is not None else 0.0
        return 1.0 / self.heartbeat_interval + commits

    @property
    def margin(self) -> float:
        """The lease margin in force: the configured one or the default for this timeout."""
        return default_margin(self.timeout) if self.lease_margin is None else self.lease_margin

    @property
    def label(self) -> str:
        """Short human name for logs, e.g. sls:my-project/my-logstore/g1/c1."""
        scope = "/".join(self._scope)
        return f"{self.provider}:{scope}/{self.consumer_group}/{self.consumer}"


@dataclass(frozen=True, slots=True)
class ControlConfig:
    socket: str | None = None  # absolute path of a Unix socket for control messages
    stdin: Literal["auto", "off"] = "auto"
    exit_on_stdin_eof: bool = False


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    listen: str  # host:port


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """Top-level `proxy` and the CA bundle in force (config/network.py says how it is chosen)."""

    proxy: ProxyUrl | None = None  # overrides HTTP(S)_PROXY / ALL_PROXY of the environment
    ca_file: str | None = None  # PEM bundle (or hashed-cert directory); None: the system trust store
    ca_source: str | None = None  # "tls.ca_file" or the environment variable it came from


@dataclass(frozen=True, slots=True)
class Config:
    groups: tuple[GroupConfig, ...]
    output: OutputConfig = OutputConfig()
    control: ControlConfig = ControlConfig()
    metrics: MetricsConfig | None = None
    runtime_dir: str | None = None  # instance locks; None: the platform default
    network: NetworkConfig = NetworkConfig()


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    config: Config
    warnings: tuple[Problem, ...] = ()
