"""The admin API (JSON, unauthenticated, for tests and demos) under /_admin/.

    GET    /_admin/state    {"clock": {...}, "groups": [{"service", "scope", "group", "timeout",
                             "consumers": [{"name", "last_heartbeat_age", "assigned": {topic: [ids]}}],
                             "shards": [{"topic", "shard", "state", "owner", "next"}], ...}]}
    GET    /_admin/log      ?since=N  -> {"next": M, "receipts": [{"seq", "wall", "mono", "service",
                             "scope", "group", "consumer", "held", "assigned", "status", "error", "fault"}]}
    GET    /_admin/faults   {"rules": [...]}
    POST   /_admin/faults   a rule object or {"rules": [...]} -> {"rules": [... with ids]}
    DELETE /_admin/faults   {"cleared": n}  (hanging connections are let go)
    POST   /_admin/clock    {"skew": s} (wall clock offset, absolute) and/or {"advance": s} (jump
                             the group-timeout clock forward by s) -> {"wall", "mono", "skew", "advance"}
    POST   /_admin/reset    back to the fixtures -> {"reset": true}
    GET    /_admin/identity the metadata/STS side: settings, fetch counts, keys issued (no secrets)
    POST   /_admin/identity {"lifetime", "imds_v2", "ecs_roles", "cvm_roles", "revoked_oidc_tokens"}
                             (any subset; see identity.py) -> the same view

Errors: 400 (bad input) / 404 (unknown path) / 405 (wrong method) with {"error": "..."}.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from shardbeat.emulator.faults import FaultError
from shardbeat.emulator.identity import IdentityError
from shardbeat.emulator.model import EmuRequest, EmuResponse
from shardbeat.emulator.world import World

PREFIX = "/_admin"
MAX_ABS_SKEW = 10 * 365 * 86400.0


class _AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(status: int, doc: object) -> EmuResponse:
    return EmuResponse(status, json.dumps(doc).encode(), [("Content-Type", "application/json")])


def internal_error() -> EmuResponse:
    return _json(500, {"error": "internal error in the emulator; see its log on stderr"})


def is_admin(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def handle(world: World, req: EmuRequest) -> EmuResponse:
    try:
        return _json(200, _route(world, req))
    except _AdminError as exc:
        return _json(exc.status, {"error": str(exc)})


def _route(world: World, req: EmuRequest) -> Any:
    path = req.path.rstrip("/")
    routes: dict[tuple[str, str], Callable[[], Any]] = {
        ("GET", "/_admin/state"): world.state_json,
        ("GET", "/_admin/log"): lambda: _log(world, req),
        ("GET", "/_admin/faults"): lambda: _faults(world),
        ("POST", "/_admin/faults"): lambda: _add_faults(world, _body(req)),
        ("DELETE", "/_admin/faults"): lambda: _clear_faults(world),
        ("POST", "/_admin/clock"): lambda: _clock(world, _body(req)),
        ("POST", "/_admin/reset"): lambda: _reset(world),
        ("GET", "/_admin/identity"): lambda: _identity(world),
        ("POST", "/_admin/identity"): lambda: _configure_identity(world, _body(req)),
    }
    action = routes.get((req.method, path))
    if action is not None:
        return action()
    if any(known == path for _, known in routes):
        allowed = sorted(method for method, known in routes if known == path)
        raise _AdminError(405, f"{req.method} {path}: use {' or '.join(allowed)}")
    raise _AdminError(
        404, f"no admin endpoint {path}; see /_admin/state, log, faults, clock, reset, identity"
    )


def _body(req: EmuRequest) -> Any:
    try:
        return json.loads(req.body)
    except (ValueError, RecursionError):
        raise _AdminError(400, "the body must be JSON") from None


def _log(world: World, req: EmuRequest) -> dict[str, Any]:
    text = req.query.get("since", "0")
    try:
        since = int(text)
    except ValueError:
        raise _AdminError(400, f"since must be an integer, not {text!r}") from None
    receipts, next_seq = world.receipts(since)
    return {"next": next_seq, "receipts": [r.to_json() for r in receipts]}


def _faults(world: World) -> dict[str, Any]:
    with world.lock:
        now = world.mono_now()
        return {"rules": [rule.to_json(now) for rule in world.faults.rules(now)]}


def _add_faults(world: World, doc: Any) -> dict[str, Any]:
    if isinstance(doc, dict) and set(doc) == {"rules"}:
        docs = doc["rules"]
        if not isinstance(docs, list):
            raise _AdminError(400, "rules must be a list of fault rules")
    else:
        docs = [doc]
    with world.lock:
        now = world.mono_now()
        try:
            added = world.faults.add(docs, now)
        except FaultError as exc:
            raise _AdminError(400, str(exc)) from None
        return {"rules": [rule.to_json(now) for rule in added]}


def _clear_faults(world: World) -> dict[str, Any]:
    with world.lock:
        return {"cleared": world.faults.clear()}


def _number(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise _AdminError(400, f"{key} must be a number of seconds, not {value!r}")
    return float(value)


def _clock(world: World, doc: Any) -> dict[str, float]:
    if not isinstance(doc, dict) or not doc or set(doc) - {"skew", "advance"}:
        raise _AdminError(400, 'give {"skew": seconds} and/or {"advance": seconds}')
    skew = None if doc.get("skew") is None else _number(doc["skew"], "skew")
    advance = None if doc.get("advance") is None else _number(doc["advance"], "advance")
    if skew is not None and abs(skew) > MAX_ABS_SKEW:
        raise _AdminError(400, "skew must be within ten years")
    if advance is not None and not 0 <= advance <= MAX_ABS_SKEW:
        raise _AdminError(400, "advance must be >= 0 (the monotonic clock only moves forward)")
    with world.lock:
        if skew is not None:
            world.skew = skew
        if advance is not None:
            world.advance += advance
        return world.clock_json()


def _reset(world: World) -> dict[str, bool]:
    world.reset()
    return {"reset": True}


def _identity(world: World) -> dict[str, Any]:
    with world.lock:
        return world.identity.to_json(world.wall_now())


def _configure_identity(world: World, doc: Any) -> dict[str, Any]:
    with world.lock:
        try:
            world.identity.configure(doc)
        except IdentityError as exc:
            raise _AdminError(400, str(exc)) from None
        return world.identity.to_json(world.wall_now())
