"""What the emulator tells a newcomer on start: where it listens, its keys, its resources and
timeouts, and a config that works against it as is (`shardbeat emulator --print-config`).

The keys are the emulator's own public demo keys (they are in its packaged fixtures and open
nothing anywhere else), so printing them is fine; shardbeat never prints real credentials.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from shardbeat.emulator.fixtures import FixtureError, Fixtures, load_fixtures

CONSUMER_VAR = "SHARDBEAT_CONSUMER"


def demo_config(fixtures: Fixtures, url: str) -> dict[str, Any]:
    """A config with the fixtures' demo groups (SLS and CLS) against `url`. The consumer name and the
    control socket come from ${SHARDBEAT_CONSUMER}, so one file serves several nodes on one machine:
    SHARDBEAT_CONSUMER=node-1 shardbeat run --config demo.json (the socket node-1.sock sits beside it)."""
    groups = []
    for provider in ("sls", "cls"):
        demo = fixtures.demo.get(provider)
        if demo is None:
            continue
        copied = json.loads(json.dumps(dict(demo)))
        group = {"provider": provider, "endpoint": url, **copied, "consumer": f"${{{CONSUMER_VAR}}}"}
        groups.append(group)
    return {"groups": groups, "control": {"socket": f"${{{CONSUMER_VAR}}}.sock"}}


def banner(fixtures: Fixtures, url: str) -> str:
    lines = [
        "",
        "Credentials (the emulator's own public demo keys, not secrets: fine to print and to commit):",
    ]
    for c in fixtures.sls_credentials:
        token = f" security_token={c.security_token}" if c.security_token else ""
        lines.append(f"  sls  access_key_id={c.access_key_id} access_key_secret={c.access_key_secret}{token}")
    for k in fixtures.cls_credentials:
        token = f" token={k.token}" if k.token else ""
        lines.append(f"  cls  secret_id={k.secret_id} secret_key={k.secret_key}{token}")
    lines += [
        "",
        "Resources and timeouts (a consumer not heard from for `timeout` seconds loses its shards):",
    ]
    for project, logstores in sorted(fixtures.projects.items()):
        for logstore, store in sorted(logstores.items()):
            groups = (
                ", ".join(
                    f"{name} (timeout {g.timeout}s, order {str(g.order).lower()})"
                    for name, g in sorted(store.groups.items())
                )
                or "none"
            )
            lines.append(
                f"  sls  project {project}, logstore {logstore}: {len(store.shards)} shards; "
                f"consumer groups: {groups}"
            )
    for logset_id, logset in sorted(fixtures.logsets.items()):
        topics = ", ".join(f"{t} ({len(p)} partitions)" for t, p in sorted(logset.topics.items()))
        groups = (
            ", ".join(
                f"{name} (timeout {g.timeout}s, topics {' '.join(g.topics)})"
                for name, g in sorted(logset.groups.items())
            )
            or "none"
        )
        lines.append(f"  cls  logset {logset_id} (any region): topics {topics}; consumer groups: {groups}")
    lines.append(f"  cls  rate limit {fixtures.cls_rate_limit} requests/s per SecretId")
    lines += [
        "",
        "A config that works against this emulator as is (shardbeat emulator --print-config > demo.json):",
        *("  " + line for line in json.dumps(demo_config(fixtures, url), indent=2).splitlines()),
        "",
        "Then two nodes sharing the shards (a terminal each), and a look at one and a stop:",
        f"  {CONSUMER_VAR}=node-1 shardbeat run --config demo.json",
        f"  {CONSUMER_VAR}=node-2 shardbeat run --config demo.json",
        f"  {CONSUMER_VAR}=node-1 shardbeat status --config demo.json",
        f"  {CONSUMER_VAR}=node-1 shardbeat stop --config demo.json",
        "",
        f"Admin API (tests, fault injection): {url}/_admin/state, /_admin/log, /_admin/faults, /_admin/clock",
    ]
    return "\n".join(lines) + "\n"


def print_config(path: str | None, host: str, port: int) -> int:
    """`shardbeat emulator --print-config`: the demo config for host:port on stdout; exit status."""
    if port == 0:
        print(
            "shardbeat emulator: --print-config needs the port the emulator runs on (--port)", file=sys.stderr
        )
        return 2
    try:
        fixtures = load_fixtures(path)
    except FixtureError as exc:
        print(f"shardbeat emulator: bad fixtures: {exc}", file=sys.stderr)
        return 2
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    sys.stdout.write(json.dumps(demo_config(fixtures, url), indent=2) + "\n")
    return 0
