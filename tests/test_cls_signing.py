"""TC3-HMAC-SHA256 against the official SDK vectors (tests/vectors.json, `cls_tc3`) and the API doc."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from shardbeat.providers.cls import (
    Tc3Authorization,
    authorization_tc3,
    canonical_request_tc3,
    parse_authorization_tc3,
    sha256_hex,
    signature_tc3,
    string_to_sign_tc3,
)

VECTORS: list[dict[str, Any]] = json.loads((Path(__file__).parent / "vectors.json").read_text())["cls_tc3"]
SIGNATURE_RE = re.compile(r"Signature=([0-9a-f]{64})$")


by_vector = pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])


def test_there_are_vectors() -> None:
    assert len(VECTORS) >= 3


def test_sha256_hex_of_empty_input_is_the_published_digest() -> None:
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@by_vector
def test_canonical_request_matches_vector(vector: dict[str, Any]) -> None:
    headers = {"content-type": "application/json", "host": vector["host"]}
    got = canonical_request_tc3("POST", "/", "", headers, ["content-type", "host"], vector["body"].encode())
    assert got == vector["canonical_request"]


@by_vector
def test_string_to_sign_matches_vector(vector: dict[str, Any]) -> None:
    got = string_to_sign_tc3(vector["timestamp"], "cls", vector["canonical_request"])
    assert got == vector["string_to_sign"]


@by_vector
def test_signature_matches_vector(vector: dict[str, Any]) -> None:
    match = SIGNATURE_RE.search(vector["authorization"])
    assert match is not None
    got = signature_tc3(vector["secret_key"], vector["timestamp"], "cls", vector["string_to_sign"])
    assert got == match.group(1)


@by_vector
def test_authorization_matches_vector(vector: dict[str, Any]) -> None:
    got = authorization_tc3(
        vector["secret_id"],
        vector["secret_key"],
        vector["timestamp"],
        vector["host"],
        vector["body"].encode(),
    )
    assert got == vector["authorization"]


@by_vector
def test_parse_authorization_of_vector(vector: dict[str, Any]) -> None:
    parsed = parse_authorization_tc3(vector["authorization"])
    match = SIGNATURE_RE.search(vector["authorization"])
    assert match is not None
    scope_date = vector["string_to_sign"].split("\n")[2].split("/")[0]
    assert parsed == Tc3Authorization(
        algorithm="TC3-HMAC-SHA256",
        secret_id=vector["secret_id"],
        date=scope_date,
        service="cls",
        signed_headers=("content-type", "host"),
        signature=match.group(1),
    )


def verify(headers: dict[str, str], body: bytes, secret_key: str) -> bool:
    """What the emulator does: everything from the request as received."""
    auth = parse_authorization_tc3(headers["authorization"])
    assert auth is not None
    timestamp = int(headers["x-tc-timestamp"])
    canonical = canonical_request_tc3("POST", "/", "", headers, auth.signed_headers, body)
    to_sign = string_to_sign_tc3(timestamp, auth.service, canonical)
    return signature_tc3(secret_key, timestamp, auth.service, to_sign) == auth.signature


def received(vector: dict[str, Any]) -> dict[str, str]:
    return {
        "host": vector["host"],
        "content-type": "application/json",
        "x-tc-action": vector["action"],
        "x-tc-version": vector["version"],
        "x-tc-region": vector["region"],
        "x-tc-timestamp": str(vector["timestamp"]),
        "x-tc-token": "unsigned-session-token",
        "authorization": vector["authorization"],
    }


@by_vector
def test_verifier_path_accepts_vector_request(vector: dict[str, Any]) -> None:
    assert verify(received(vector), vector["body"].encode(), vector["secret_key"])


@by_vector
def test_verifier_path_rejects_reserialised_or_tampered_body(vector: dict[str, Any]) -> None:
    body = vector["body"].encode()
    reserialised = json.dumps(json.loads(body), separators=(",", ":") if b", " in body else (", ", ": "))
    assert reserialised.encode() != body
    assert not verify(received(vector), reserialised.encode(), vector["secret_key"])
    assert not verify(received(vector), body.replace(b"[1]", b"[2]"), vector["secret_key"])
    assert not verify(received(vector), body, vector["secret_key"] + "x")


@by_vector
def test_verifier_path_rejects_other_host_or_timestamp(vector: dict[str, Any]) -> None:
    headers = received(vector)
    assert not verify({**headers, "host": "evil.example.com"}, vector["body"].encode(), vector["secret_key"])
    later = str(vector["timestamp"] + 1)
    assert not verify({**headers, "x-tc-timestamp": later}, vector["body"].encode(), vector["secret_key"])


def test_canonical_headers_follow_the_doc_example_with_an_extra_signed_header() -> None:
    # API doc (Signature v3): key and value lower-cased and trimmed, "key:value\n" each, then the names.
    body = b'{"Limit": 1}'
    headers = {
        "content-type": "application/json; charset=utf-8",
        "host": " cvm.tencentcloudapi.com ",
        "x-tc-action": "DescribeInstances",
    }
    got = canonical_request_tc3("POST", "/", "", headers, ["content-type", "host", "x-tc-action"], body)
    assert got == (
        "POST\n/\n\n"
        "content-type:application/json; charset=utf-8\n"
        "host:cvm.tencentcloudapi.com\n"
        "x-tc-action:describeinstances\n"
        "\n"
        "content-type;host;x-tc-action\n" + hashlib.sha256(body).hexdigest()
    )


def test_canonical_request_keeps_the_order_the_client_signed_in() -> None:
    headers = {"content-type": "application/json", "host": "h"}
    got = canonical_request_tc3("POST", "/", "", headers, ["host", "content-type"], b"")
    assert got.split("\n")[3:7] == ["host:h", "content-type:application/json", "", "host;content-type"]


def test_canonical_request_counts_an_absent_signed_header_as_empty() -> None:
    got = canonical_request_tc3("POST", "/", "", {"host": "h"}, ["host", "x-missing"], b"")
    assert got.split("\n")[3:6] == ["host:h", "x-missing:", ""]


def test_canonical_request_passes_method_path_and_query_through() -> None:
    got = canonical_request_tc3("GET", "/", "Limit=10&Offset=0", {"host": "h"}, ["host"], b"")
    assert got.split("\n")[:3] == ["GET", "/", "Limit=10&Offset=0"]


@pytest.mark.parametrize(
    ("timestamp", "date"),
    [(1551113065, "2019-02-25"), (1551139199, "2019-02-25"), (1551139200, "2019-02-26"), (0, "1970-01-01")],
)
def test_string_to_sign_uses_the_utc_date_of_the_timestamp(timestamp: int, date: str) -> None:
    assert string_to_sign_tc3(timestamp, "cls", "x").split("\n")[2] == f"{date}/cls/tc3_request"


def test_signature_depends_on_the_date_of_the_timestamp() -> None:
    vector = VECTORS[0]
    same_day = signature_tc3(vector["secret_key"], 1551139199, "cls", vector["string_to_sign"])
    next_day = signature_tc3(vector["secret_key"], 1551139200, "cls", vector["string_to_sign"])
    match = SIGNATURE_RE.search(vector["authorization"])
    assert match is not None
    assert same_day == match.group(1)  # the key depends on the date only; the string is the vector's
    assert next_day != same_day


SIG = "a" * 64


@pytest.mark.parametrize(
    "value",
    [
        "",
        "TC3-HMAC-SHA256",
        f"Credential=AK/2019-02-25/cls/tc3_request, SignedHeaders=host, Signature={SIG}",
        "TC3-HMAC-SHA256 Credential=AK/2019-02-25/cls/tc3_request, SignedHeaders=host",
        f"TC3-HMAC-SHA256 Credential=AK/2019-02-25/cls/tc3_request, SignedHeaders=host, Signature={SIG}, X=1",
        f"TC3-HMAC-SHA256 Credential=AK/2019-02-25/cls/tc3_request, Signature={SIG}, Signature={SIG}",
        f"TC3-HMAC-SHA256 Credential=AK/2019-02-25/cls, SignedHeaders=host, Signature={SIG}",
        f"TC3-HMAC-SHA256 Credential=AK/2019-02-25/cls/tc3_requests, SignedHeaders=host, Signature={SIG}",
        f"TC3-HMAC-SHA256 Credential=/2019-02-25/cls/tc3_request, SignedHeaders=host, Signature={SIG}",
        f"TC3-HMAC-SHA256 Credential=AK/2019-2-25/cls/tc3_request, SignedHeaders=host, Signature={SIG}",
        f"TC3-HMAC-SHA256 Credential=AK/2019-02-25//tc3_request, SignedHeaders=host, Signature={SIG}",
        f"TC3-HMAC-SHA256 Credential=AK/2019-02-25/cls/tc3_request, SignedHeaders=a;;b, Signature={SIG}",
        f"TC3-HMAC-SHA256 Credential=AK/2019-02-25/cls/tc3_request, SignedHeaders=, Signature={SIG}",
        "TC3-HMAC-SHA256 Credential=AK/2019-02-25/cls/tc3_request, SignedHeaders=host, Signature=abc",
        f"TC3-HMAC-SHA256 Credential=AK/2019-02-25/cls/tc3_request, SignedHeaders=host, Signature={'g' * 64}",
        "TC3-HMAC-SHA256 Credential AK/2019-02-25/cls/tc3_request, SignedHeaders=host",
    ],
)
def test_parse_authorization_rejects_malformed(value: str) -> None:
    assert parse_authorization_tc3(value) is None


def test_parse_authorization_is_lenient_about_spacing_and_case() -> None:
    value = (
        " OTHER-ALG Credential=AK/2019-02-25/cvm/tc3_request,"
        f"SignedHeaders=Host;X-TC-Action,Signature={'AB' * 32} "
    )
    assert parse_authorization_tc3(value) == Tc3Authorization(
        "OTHER-ALG", "AK", "2019-02-25", "cvm", ("host", "x-tc-action"), "ab" * 32
    )
