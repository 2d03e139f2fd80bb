"""What the emulated services contain at start (and after POST /_admin/reset): credentials, SLS
projects/logstores/consumer groups, CLS logsets/topics/consumer groups, and ready demo configs.

Format (JSON; the # notes are for this illustration only; every key below is known, and any other key
is an error so that typos do not pass silently):

    {
      "sls": {
        "credentials": [
          {"access_key_id": "emulator-akid", "access_key_secret": "emulator-secret"},
          {"access_key_id": "...", "access_key_secret": "...", "security_token": "..."}
        ],
        "projects": {
          "demo-project": {
            "logstores": {
              "demo-logstore": {
                "shards": 4,                      # a count (ids 0..n-1) or a list of distinct ids >= 0
                "consumer_groups": {"demo-group": {"timeout": 6, "order": false}}
              }
            }
          }
        }
      },
      "cls": {
        "credentials": [{"secret_id": "...", "secret_key": "...", "token": "..."}],   # token optional
        "rate_limit": 20,                         # SendConsumerHeartbeat requests per second (account)
        "logsets": {
          "demo-logset": {                        # the LogsetId
            "topics": {"demo-topic-a": {"partitions": 2}},   # TopicID -> count (ids 1..n) or list
            "consumer_groups": {"demo-group": {"timeout": 6, "topics": ["demo-topic-a"]}}
          }
        }
      },
      "demo": {"sls": {...group config...}, "cls": {...group config...}}   # optional, passed through
    }

A credential with a security_token / token is temporary: requests must carry that token. Both
services are optional; timeouts are positive integers (seconds); at most 30 consumer groups per
logstore (the SLS quota). The "demo" entries are group configs in the config-file format without an
endpoint (the CLI fills in the emulator's URL); their project/logstore/logset/topics/group must exist.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shardbeat.config.files import read_text
from shardbeat.config.model import ConfigError
from shardbeat.core.json_kind import json_kind
from shardbeat.providers.cls import CLS_RATE_LIMIT

MAX_SLS_GROUPS_PER_LOGSTORE = 30
# Shards/partitions per logstore/topic, and their largest id (int32 on both wires): bounds that keep a
# hostile count from allocating gigabytes (or overflowing range()) before the emulator even listens.
MAX_IDS = 10_000
MAX_ID = 2**31 - 1
DEFAULT_CLS_RATE_LIMIT = int(CLS_RATE_LIMIT)  # the service's, as the plugin assumes it
_DEFAULT_NAME = "default_fixtures.json"


class FixtureError(ValueError):
    """A fixtures file that cannot be used; the message names the file and the offending key."""


@dataclass(frozen=True, slots=True)
class SlsCredential:
    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class SlsGroupConfig:
    timeout: int
    order: bool


@dataclass(frozen=True, slots=True)
class SlsLogstore:
    shards: tuple[int, ...]
    groups: Mapping[str, SlsGroupConfig]


@dataclass(frozen=True, slots=True)
class ClsCredential:
    secret_id: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ClsGroupConfig:
    timeout: int
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClsLogset:
    topics: Mapping[str, tuple[int, ...]]  # TopicID -> partition ids
    groups: Mapping[str, ClsGroupConfig]


@dataclass(frozen=True, slots=True)
class Fixtures:
    sls_credentials: tuple[SlsCredential, ...] = ()
    projects: Mapping[str, Mapping[str, SlsLogstore]] = field(default_factory=dict)  # project -> logstores
    cls_credentials: tuple[ClsCredential, ...] = ()
    cls_rate_limit: int = DEFAULT_CLS_RATE_LIMIT
    logsets: Mapping[str, ClsLogset] = field(default_factory=dict)
    # provider -> group config; holds demo secrets, so kept out of repr
    demo: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)


def load_fixtures(path: str | None) -> Fixtures:
    """Fixtures from a JSON file, or the packaged default when `path` is None. Raises FixtureError."""
    if path is None:
        source = f"<packaged {_DEFAULT_NAME}>"
        text = importlib.resources.files("shardbeat.emulator").joinpath(_DEFAULT_NAME).read_text("utf-8")
    else:
        source = path
        try:  # the config's reader: a FIFO or device is refused at once instead of blocking for good
            text = read_text(path, "fixtures file")
        except ConfigError as exc:
            raise FixtureError("; ".join(str(p) for p in exc.problems)) from None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise FixtureError(f"{source}: not valid JSON: {exc}") from None
    try:
        return parse_fixtures(doc)
    except FixtureError as exc:
        raise FixtureError(f"{source}: {exc}") from None


def parse_fixtures(doc: object) -> Fixtures:
    """Validate a decoded fixtures document. Raises FixtureError naming the offending key path."""
    top = _object(doc, "fixtures", {"sls", "cls", "demo"})
    sls = _object(top.get("sls", {}), "sls", {"credentials", "projects"})
    cls = _object(top.get("cls", {}), "cls", {"credentials", "rate_limit", "logsets"})
    demo = {
        provider: dict(_object(value, f"demo.{provider}", None))
        for provider, value in _object(top.get("demo", {}), "demo", {"sls", "cls"}).items()
    }
    fixtures = Fixtures(
        sls_credentials=_sls_credentials(sls.get("credentials", []), "sls.credentials"),
        projects={
            name: _sls_project(value, f"sls.projects.{name}")
            for name, value in _named(sls.get("projects", {}), "sls.projects").items()
        },
        cls_credentials=_cls_credentials(cls.get("credentials", []), "cls.credentials"),
        cls_rate_limit=_positive_int(cls.get("rate_limit", DEFAULT_CLS_RATE_LIMIT), "cls.rate_limit"),
        logsets={
            name: _cls_logset(value, f"cls.logsets.{name}")
            for name, value in _named(cls.get("logsets", {}), "cls.logsets").items()
        },
        demo=demo,
    )
    _check_demo(fixtures)
    return fixtures


# -- pieces


def _object(value: object, where: str, known: set[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FixtureError(f"{where}: must be an object, not {json_kind(value)}")
    if known is not None:
        unknown = sorted(set(value) - known)
        if unknown:
            raise FixtureError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return value


def _named(value: object, where: str) -> dict[str, Any]:
    items = _object(value, where, None)
    for name in items:
        if not name.strip():
            raise FixtureError(f"{where}: names must be non-empty")
    return items


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise FixtureError(f"{where}: must be a non-empty string, not {json_kind(value)}")
    return value


def _optional_text(value: object, where: str) -> str | None:
    return None if value is None else _text(value, where)


def _positive_int(value: object, where: str) -> int:
    if type(value) is not int or value <= 0:
        raise FixtureError(f"{where}: must be a positive integer, not {value!r}")
    return value


def _ids(value: object, where: str, first: int) -> tuple[int, ...]:
    """A count n (ids first..first+n-1) or an explicit list of distinct non-negative ids."""
    if type(value) is int:
        count = _positive_int(value, where)
        if count > MAX_IDS:
            raise FixtureError(f"{where}: at most {MAX_IDS}, not {count}")
        return tuple(range(first, first + count))
    if not isinstance(value, list) or not value:
        raise FixtureError(
            f"{where}: must be a positive count or a non-empty list of ids, not {json_kind(value)}"
        )
    if len(value) > MAX_IDS:
        raise FixtureError(f"{where}: at most {MAX_IDS} ids, not {len(value)}")
    for item in value:
        if type(item) is not int or not 0 <= item <= MAX_ID:
            raise FixtureError(f"{where}: ids must be integers from 0 to {MAX_ID}, not {item!r}")
    if len(set(value)) != len(value):
        raise FixtureError(f"{where}: ids must be distinct")
    return tuple(sorted(value))


def _sls_credentials(value: object, where: str) -> tuple[SlsCredential, ...]:
    if not isinstance(value, list):
        raise FixtureError(f"{where}: must be an array, not {json_kind(value)}")
    found: dict[str, SlsCredential] = {}
    for index, item in enumerate(value):
        at = f"{where}[{index}]"
        entry = _object(item, at, {"access_key_id", "access_key_secret", "security_token"})
        credential = SlsCredential(
            _text(entry.get("access_key_id"), f"{at}.access_key_id"),
            _text(entry.get("access_key_secret"), f"{at}.access_key_secret"),
            _optional_text(entry.get("security_token"), f"{at}.security_token"),
        )
        if credential.access_key_id in found:
            raise FixtureError(f"{at}.access_key_id: {credential.access_key_id!r} is listed twice")
        found[credential.access_key_id] = credential
    return tuple(found.values())


def _cls_credentials(value: object, where: str) -> tuple[ClsCredential, ...]:
    if not isinstance(value, list):
        raise FixtureError(f"{where}: must be an array, not {json_kind(value)}")
    found: dict[str, ClsCredential] = {}
    for index, item in enumerate(value):
        at = f"{where}[{index}]"
        entry = _object(item, at, {"secret_id", "secret_key", "token"})
        credential = ClsCredential(
            _text(entry.get("secret_id"), f"{at}.secret_id"),
            _text(entry.get("secret_key"), f"{at}.secret_key"),
            _optional_text(entry.get("token"), f"{at}.token"),
        )
        if credential.secret_id in found:
            raise FixtureError(f"{at}.secret_id: {credential.secret_id!r} is listed twice")
        found[credential.secret_id] = credential
    return tuple(found.values())


def _sls_project(value: object, where: str) -> dict[str, SlsLogstore]:
    project = _object(value, where, {"logstores"})
    return {
        name: _sls_logstore(item, f"{where}.logstores.{name}")
        for name, item in _named(project.get("logstores", {}), f"{where}.logstores").items()
    }


def _sls_logstore(value: object, where: str) -> SlsLogstore:
    logstore = _object(value, where, {"shards", "consumer_groups"})
    if "shards" not in logstore:
        raise FixtureError(f"{where}: missing key 'shards'")
    groups = _named(logstore.get("consumer_groups", {}), f"{where}.consumer_groups")
    if len(groups) > MAX_SLS_GROUPS_PER_LOGSTORE:
        raise FixtureError(f"{where}.consumer_groups: at most {MAX_SLS_GROUPS_PER_LOGSTORE} per logstore")
    parsed = {}
    for name, item in groups.items():
        at = f"{where}.consumer_groups.{name}"
        group = _object(item, at, {"timeout", "order"})
        order = group.get("order", False)
        if not isinstance(order, bool):
            raise FixtureError(f"{at}.order: must be true or false, not {order!r}")
        parsed[name] = SlsGroupConfig(_positive_int(group.get("timeout"), f"{at}.timeout"), order)
    return SlsLogstore(_ids(logstore["shards"], f"{where}.shards", 0), parsed)


def _cls_logset(value: object, where: str) -> ClsLogset:
    logset = _object(value, where, {"topics", "consumer_groups"})
    topics = {}
    for topic_id, item in _named(logset.get("topics", {}), f"{where}.topics").items():
        at = f"{where}.topics.{topic_id}"
        topic = _object(item, at, {"partitions"})
        if "partitions" not in topic:
            raise FixtureError(f"{at}: missing key 'partitions'")
        topics[topic_id] = _ids(topic["partitions"], f"{at}.partitions", 1)
    groups = {}
    for name, item in _named(logset.get("consumer_groups", {}), f"{where}.consumer_groups").items():
        at = f"{where}.consumer_groups.{name}"
        group = _object(item, at, {"timeout", "topics"})
        listed = group.get("topics")
        if not isinstance(listed, list) or not listed:
            raise FixtureError(f"{at}.topics: must be a non-empty array of TopicIDs, not {json_kind(listed)}")
        for topic_id in listed:
            if not isinstance(topic_id, str):  # checked before the lookup: a list or object is unhashable
                raise FixtureError(f"{at}.topics: must hold TopicID strings, not {json_kind(topic_id)}")
            if topic_id not in topics:
                raise FixtureError(f"{at}.topics: {topic_id!r} is not a topic of this logset")
        if len(set(listed)) != len(listed):
            raise FixtureError(f"{at}.topics: a TopicID is listed twice")
        groups[name] = ClsGroupConfig(_positive_int(group.get("timeout"), f"{at}.timeout"), tuple(listed))
    return ClsLogset(topics, groups)


def _lookup(table: Mapping[str, Any], key: object) -> Any:
    return table.get(key) if isinstance(key, str) else None


def _check_demo(fixtures: Fixtures) -> None:
    """The demo configs must point at things that exist, or `make run` would fail confusingly."""
    sls = fixtures.demo.get("sls")
    if sls is not None:
        logstores = _lookup(fixtures.projects, sls.get("project"))
        if logstores is None:
            raise FixtureError(f"demo.sls.project: {sls.get('project')!r} is not an SLS fixture project")
        logstore = _lookup(logstores, sls.get("logstore"))
        if logstore is None:
            raise FixtureError(f"demo.sls.logstore: {sls.get('logstore')!r} is not in that project")
        if _lookup(logstore.groups, sls.get("consumer_group")) is None:
            group = sls.get("consumer_group")
            raise FixtureError(f"demo.sls.consumer_group: {group!r} is not in that logstore")
    cls = fixtures.demo.get("cls")
    if cls is not None:
        logset = _lookup(fixtures.logsets, cls.get("logset_id"))
        if logset is None:
            raise FixtureError(f"demo.cls.logset_id: {cls.get('logset_id')!r} is not a CLS fixture logset")
        group = _lookup(logset.groups, cls.get("consumer_group"))
        if group is None:
            name = cls.get("consumer_group")
            raise FixtureError(f"demo.cls.consumer_group: {name!r} is not in that logset")
        if cls.get("topics") != list(group.topics):
            raise FixtureError(f"demo.cls.topics: must equal the group's topics {list(group.topics)!r}")
