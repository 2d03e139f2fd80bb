"""The provider seam: everything service-specific is read from providers/services.py's table.

Two proofs: no module outside providers/ (and the emulator, which serves both wires) names a service
in code, and a third service registered in the table (and nowhere else) is built, validated, named
and diagnosed by config/ and the doctor as the two real ones are.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from shardbeat.config import ConfigError, config_from_dict, default_consumer
from shardbeat.config import build as config_build
from shardbeat.config.credential_sources import CliProfile, parse_source
from shardbeat.providers import services
from shardbeat.providers.base import ProviderError, Retry
from shardbeat.providers.cls import CLS_RATE_LIMIT
from shardbeat.providers.cls_service import CLS
from shardbeat.providers.service import CredentialKeys, DoctorHints, Kind, Service, Text
from shardbeat.runtime.doctor.hints import classify, hint
from shardbeat.runtime.doctor.verdicts import clock_verdict, rate_budget

PACKAGE = Path(__file__).resolve().parent.parent / "plugin" / "shardbeat"
# Outside providers/ and emulator/, a service's name may appear only where a format names it.
ALLOWED = {
    # The control messages' `provider` field, typed as the control schema's enum
    # (schemas/control.schema.json) - data of the wire contract, not a decision.
    "runtime/control.py",
}


def _docstrings(tree: ast.AST) -> set[int]:
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def test_no_service_name_in_code_outside_providers() -> None:
    names = set(services.SERVICES)
    offenders: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(("providers/", "emulator/")) or relative in ALLOWED:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in docs:
                offenders.append(f"{relative}:{node.lineno}: {node.value!r}")
    assert not offenders, "a provider decision outside providers/:\n" + "\n".join(offenders)


def test_the_table_is_keyed_by_each_descriptors_name() -> None:
    assert list(services.SERVICES) == ["sls", "cls"]
    assert all(name == s.name for name, s in services.SERVICES.items())
    assert services.DEFAULT in services.SERVICES
    assert services.service("cls").rate_limit == CLS_RATE_LIMIT == 20.0
    assert services.service("sls").rate_limit is None


# -- a third service, registered in the table only ---------------------------------------------------


def _fields(raw: Mapping[str, Any], text: Text) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    if raw.get("logset_id") == "forbidden":
        return {}, [("logset_id", "is not allowed by the fake service")]
    return {"region": text("region"), "logset_id": text("logset_id"), "topics": ("only",)}, []


def _classify(error: ProviderError) -> Kind:
    return {"Clock": "clock", "Key": "auth", "Gone": "missing", "Slow": "throttled"}.get(error.code, "other")  # type: ignore[return-value]


FAKE = Service(
    name="fake",
    title="FAKE",
    scope_keys=("region", "logset_id"),
    group_fields=_fields,
    group_home=lambda group: f"fake space {group.logset_id}",
    make_provider=CLS.make_provider,
    default_endpoint=lambda text: f"fake.{text('region')}.example" if text("region") else None,
    endpoint_help=None,
    consumer_name=lambda host: "fake-" + host,
    credential_keys=CredentialKeys(
        "fake_id", "fake_secret", "fake_token", "FAKE_ID", "FAKE_SECRET", "FAKE_TOKEN"
    ),
    credential_chain="tencent",
    credential_sources=("static", "profile"),
    clock_window=60.0,
    rate_limit=1.0,
    doctor=DoctorHints(
        read_action="ReadFake",
        actions={"list": "fake:Read", "heartbeat": "fake:Beat", "create": "fake:Make", "update": "fake:Set"},
        policy="fake policy",
        classify=_classify,
        auth={"Key": "check fake_secret"},
        missing={"Gone": "check logset_id in the fake console"},
        denied={},
        throttled="the fake service is slow",
    ),
)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    monkeypatch.setitem(services.SERVICES, FAKE.name, FAKE)
    # The JSON schema names the real services only (it may): let the fake provider through it.
    real = config_build.schema_problems
    monkeypatch.setattr(
        config_build,
        "schema_problems",
        lambda name, doc: [p for p in real(name, doc) if "provider" not in p.path],
    )
    yield FAKE


def _group(**extra: Any) -> dict[str, Any]:
    return {"provider": "fake", "region": "r1", "logset_id": "space", "consumer_group": "g", **extra}


ENV = {"FAKE_ID": "fake-key-id", "FAKE_SECRET": "fake-secret-value"}


def test_a_registered_service_is_built_by_config_without_touching_config(fake: Service) -> None:
    loaded = config_from_dict({"groups": [_group()]}, environ=ENV, hostname="host1")
    group = loaded.config.groups[0]
    assert group.provider == "fake"
    assert group.endpoint == "fake.r1.example"  # its default endpoint
    assert group.consumer == "fake-host1" == default_consumer("fake", "host1")  # its consumer naming
    assert group.credentials is not None and group.credentials.key_id == "fake-key-id"  # its env names
    assert group.topics == ("only",)  # its own fields
    assert group.identity.scope == ("r1", "space") and group.label == "fake:r1/space/g/fake-host1"


def test_a_registered_service_has_its_rules_applied(fake: Service) -> None:
    with pytest.raises(ConfigError) as missing:
        config_from_dict({"groups": [_group()]}, environ={}, hostname="h")
    assert {p.path for p in missing.value.problems} == {
        "groups[0].credentials.fake_id",
        "groups[0].credentials.fake_secret",
    }
    assert "set FAKE_SECRET" in str(missing.value)
    with pytest.raises(ConfigError) as own_rule:
        config_from_dict({"groups": [_group(logset_id="forbidden")]}, environ=ENV, hostname="h")
    assert [str(p) for p in own_rule.value.problems] == [
        "groups[0].logset_id: is not allowed by the fake service"
    ]
    with pytest.raises(ConfigError) as twice:
        config_from_dict({"groups": [_group(), _group(endpoint="other:1")]}, environ=ENV, hostname="h")
    assert "(provider, region, logset_id, consumer_group and consumer all equal" in str(twice.value)
    with pytest.raises(ConfigError) as source:
        config_from_dict({"groups": [_group(credentials={"source": "profile", "fake_id": "x"})]}, environ=ENV)
    assert "applies to source static only, not profile" in str(source.value)


def test_a_registered_service_takes_only_its_credential_sources(fake: Service, tmp_path: Path) -> None:
    profile = {"source": "profile", "profile_file": str(tmp_path / "creds"), "profile": "p"}
    (tmp_path / "creds").write_text("[p]\nsecret_id = AKIDp\nsecret_key = sk\n")
    tmp_path.joinpath("creds").chmod(0o600)
    loaded = config_from_dict({"groups": [_group(credentials=profile)]}, environ={}, hostname="h")
    assert loaded.config.groups[0].credential_source == CliProfile("fake", str(tmp_path / "creds"), "p")
    # cvm_role is CLS's (the schema says so for the real services; the descriptor for any):
    spec, problems = parse_source("fake", "cvm_role", {}, "groups[0].credentials", {}, str(tmp_path), None)
    assert spec is None
    assert [str(p) for p in problems] == [
        "groups[0].credentials.source: must be one of static, profile for provider fake"
    ]


def test_a_registered_service_gets_its_rate_limit_warning(fake: Service) -> None:
    beating = _group(heartbeat_interval=1.5, timeout=30)  # 0.67/s of the fake 1/s: over half
    loaded = config_from_dict({"groups": [beating]}, environ=ENV, hostname="h")
    messages = [str(w) for w in loaded.warnings]
    assert any(
        "1 FAKE group(s) on one FakeId (groups[0]) send 0.7 requests/s, which uses over half of the "
        "service's 1/s limit" in m
        for m in messages
    ), messages
    checks = rate_budget(loaded.config.groups)
    assert checks[0].status == "WARN" and "of FAKE's 1/s per account" in checks[0].detail


def test_the_doctor_reads_a_registered_services_hints(fake: Service) -> None:
    def error(code: str) -> ProviderError:
        return ProviderError(code, "text", retry=Retry.SLOW)

    assert classify("fake", error("Key")) == "auth"
    assert hint("fake", error("Key"), "list") == "check fake_secret"
    assert hint("fake", error("Gone"), "list") == "check logset_id in the fake console"
    assert hint("fake", error("Slow"), "list") == "the fake service is slow"
    assert clock_verdict("fake", 61.0) == (
        "FAIL",
        "this host's clock is 61 s behind the server's: FAKE refuses signatures more than 1 min off "
        "(shardbeat corrects after the first answer); fix this host's time sync (NTP, chrony)",
    )


def test_make_provider_is_the_services_factory() -> None:
    from shardbeat.providers.services import make_provider

    loaded = config_from_dict(
        {"groups": [{"provider": "cls", "region": "ap-guangzhou", "logset_id": "ls", "topics": ["t"],
                     "consumer_group": "g", "credentials": {"secret_id": "a", "secret_key": "b"}}]},
        hostname="h",
    )  # fmt: skip
    group = loaded.config.groups[0]
    provider = make_provider(group)
    assert provider.name == "cls" and provider.endpoint.host == "cls.ap-guangzhou.tencentcloudapi.com"
    assert dataclasses.asdict(provider.endpoint) == dataclasses.asdict(services.make_provider(group).endpoint)
