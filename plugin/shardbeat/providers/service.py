"""What the rest of shardbeat may know about a service, as data: one `Service` per provider module.

config/, the doctor and the command line ask the service's descriptor (providers.services.service(name))
instead of branching on its name, so a third service is one new module registered in
providers/services.py. The descriptor holds plain values and pure functions; the wire format itself
stays behind `Provider` (providers/base.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from shardbeat.providers.base import Provider, ProviderError

# What a failed call means for an operator (the doctor sorts every error into one of these).
Kind = Literal["auth", "clock", "denied", "missing", "throttled", "other"]

CREATE_GROUP_HINT = "create the consumer group, or set create_group: true"

Text = Callable[[str], str | None]  # a group entry's string field, None when absent or not a string


class GroupSettings(Protocol):
    """What a service reads of one configured group (config.model.GroupSettings; providers import no
    config)."""

    @property
    def provider(self) -> str: ...
    @property
    def endpoint(self) -> str: ...
    @property
    def consumer_group(self) -> str: ...
    @property
    def consumer(self) -> str: ...
    @property
    def project(self) -> str | None: ...
    @property
    def logstore(self) -> str | None: ...
    @property
    def region(self) -> str | None: ...
    @property
    def logset_id(self) -> str | None: ...
    @property
    def topics(self) -> tuple[str, ...] | None: ...
    @property
    def signature_version(self) -> str: ...


@dataclass(frozen=True, slots=True)
class CredentialKeys:
    """The config keys and environment variables of one provider's key id, secret and token."""

    key_id: str
    secret: str
    token: str
    key_id_env: str
    secret_env: str
    token_env: str

    @property
    def names(self) -> tuple[str, str, str]:
        return (self.key_id, self.secret, self.token)

    @property
    def names_env(self) -> tuple[str, str, str]:
        return (self.key_id_env, self.secret_env, self.token_env)

    def env_for(self, key: str) -> str:
        return {self.key_id: self.key_id_env, self.secret: self.secret_env, self.token: self.token_env}[key]

    def flag(self, key: str) -> str:
        """The command-line flag of a key: access_key_id -> --access-key-id."""
        return "--" + key.replace("_", "-")


@dataclass(frozen=True, slots=True)
class DoctorHints:
    """How `shardbeat doctor` reads this service's errors and what it tells the operator to try."""

    read_action: str  # the API call that reads the group (and proves the key)
    actions: Mapping[str, str]  # policy action names of list, heartbeat, create, update
    policy: str  # what grants them, e.g. "RAM policy"
    classify: Callable[[ProviderError], Kind]
    auth: Mapping[str, str]  # code -> the fix, for refused credentials
    missing: Mapping[str, str]  # code -> the fix, for a resource that is not there
    denied: Mapping[str, str]  # code -> the fix, for denials no policy can lift (account, project)
    throttled: str
    answered_before_auth: frozenset[str] = frozenset()  # codes the service gives before checking keys
    group_missing: Callable[[ProviderError], bool] = lambda error: False  # an undocumented "no group"


@dataclass(frozen=True, slots=True)
class CliFlag:
    """A group flag of `run`/`doctor` that this service reads (config key, --help text)."""

    flag: str
    key: str
    help: str
    metavar: str | None = None  # given: repeatable (each use adds one value)


@dataclass(frozen=True, slots=True)
class Service:
    name: str  # the config's `provider`
    title: str  # how messages name it, e.g. "CLS"
    # What the server sees as the group's home, in order: with consumer_group and consumer, one
    # consumer's identity (config.model.GroupIdentity) and the middle of its label.
    scope_keys: tuple[str, ...]
    # The group entry's service fields -> GroupSettings keyword arguments (None: missing, the schema
    # says why) and problems as (config key, message).
    group_fields: Callable[[Mapping[str, Any], Text], tuple[dict[str, Any], list[tuple[str, str]]]]
    # Where the group lives, for the doctor: "logset ..." / "logstore ... of project ...".
    group_home: Callable[[GroupSettings], str]
    make_provider: Callable[[GroupSettings], Provider]
    default_endpoint: Callable[[Text], str | None] | None  # None: endpoint is required
    endpoint_help: str | None  # how --help states the default endpoint
    consumer_name: Callable[[str], str]  # a host name made acceptable as a consumer name
    credential_keys: CredentialKeys
    # The vendor's credential chain (config/credential_sources.py CHAINS) and which of its sources,
    # in the order messages list them.
    credential_chain: str
    credential_sources: tuple[str, ...]
    clock_window: float  # seconds a signature's time may be off before the service refuses it
    rate_limit: float | None  # requests per second per account, when the service throttles by account
    doctor: DoctorHints
    cli_flags: tuple[CliFlag, ...] = ()
