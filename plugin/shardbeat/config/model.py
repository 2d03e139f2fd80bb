"""The typed, frozen result of loading a config, and the error that lists every problem with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shardbeat.core.lease import default_margin
from shardbeat.providers.base import Credentials
from shardbeat.providers.endpoint import split

ProviderName = Literal["sls", "cls"]
OutputFormat = Literal["json", "msgpack", "text"]
ReleaseMode = Literal["immediate", "ack"]

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
        return f"{self.path or '(root)'}: {self.message}"


class ConfigError(Exception):
    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True, slots=True)
class OutputConfig:
    format: OutputFormat = "json"


@dataclass(frozen=True, slots=True)
class GroupIdentity:
    """What the server sees as one consumer: two configured groups with the same identity would fight."""

    provider: ProviderName
    endpoint: tuple[str, str, int]  # scheme, lower-case host, port
    scope: tuple[str, ...]  # SLS (project, logstore); CLS (region, logset_id)
    consumer_group: str
    consumer: str


@dataclass(frozen=True, slots=True)
class GroupConfig:
    provider: ProviderName
    endpoint: str  # as given; for CLS without one, cls.{region}.tencentcloudapi.com
    consumer_group: str
    consumer: str
    credentials: Credentials
    credentials_file: str | None = None  # absolute path, re-read on rotation (config.reload_credentials)
    heartbeat_interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    lease_margin: float | None = None  # None: core.lease.default_margin(timeout)
    project: str | None = None  # SLS
    logstore: str | None = None  # SLS
    region: str | None = None  # CLS
    logset_id: str | None = None  # CLS
    topics: tuple[str, ...] | None = None  # CLS topic ids
    create_group: bool = False  # create a missing group with `timeout`
    update_group: bool = False  # overwrite a differing server-side timeout with `timeout`
    release: ReleaseMode = "immediate"
    release_grace: float | None = None  # ack mode: longest wait for downstream's ack (None: timeout)

    @property
    def identity(self) -> GroupIdentity:
        scheme, host, port, _ = split(self.endpoint)
        return GroupIdentity(
            self.provider, (scheme, host.lower(), port), self._scope, self.consumer_group, self.consumer
        )

    @property
    def _scope(self) -> tuple[str, str]:
        if self.provider == "sls":
            return (self.project or "", self.logstore or "")
        return (self.region or "", self.logset_id or "")

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
class Config:
    groups: tuple[GroupConfig, ...]
    output: OutputConfig = OutputConfig()
    control: ControlConfig = ControlConfig()
    metrics: MetricsConfig | None = None
    runtime_dir: str | None = None  # instance locks; None: the platform default


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    config: Config
    warnings: tuple[Problem, ...] = ()
