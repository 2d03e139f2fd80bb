"""SLS signing (v1 and v4) against the official SDK vectors in tests/vectors.json."""

from __future__ import annotations

import json
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shardbeat.providers import sls

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "vectors.json").read_text())
V1: list[dict[str, Any]] = VECTORS["sls_v1"]
V4: list[dict[str, Any]] = VECTORS["sls_v4"]


def by_name(vectors: list[dict[str, Any]]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("vector", vectors, ids=[v["name"] for v in vectors])


def _string_to_sign(vector: dict[str, Any], headers: list[tuple[str, str]]) -> str:
    return sls.string_to_sign_v1(
        vector["method"],
        sls.content_md5(vector["body"].encode()),
        vector["content_type"],
        vector["date"],
        headers,
        sls.canonical_resource(vector["path"], vector["query"]),
    )


@by_name(V1)
def test_v1_content_md5(vector: dict[str, Any]) -> None:
    assert sls.content_md5(vector["body"].encode()) == vector["content_md5"]


@by_name(V1)
def test_v1_string_to_sign_and_authorization(vector: dict[str, Any]) -> None:
    to_sign = _string_to_sign(vector, list(vector["signed_headers"].items()))
    assert to_sign == vector["string_to_sign"]
    signature = sls.sign_v1(vector["access_key_secret"], to_sign)
    assert f"LOG {vector['access_key_id']}:{signature}" == vector["authorization"]


@by_name(V1)
def test_v1_verifies_from_the_headers_a_server_receives(vector: dict[str, Any]) -> None:
    """Lower-cased names, unsigned headers mixed in, x-log-date added after signing (Python SDK)."""
    received = {name.lower(): value for name, value in vector["signed_headers"].items()}
    received |= {
        "host": vector["host"],
        "date": vector["date"],
        "x-log-date": vector["date"],
        "user-agent": "log-python-sdk-v-0.9.52",
        "content-length": str(len(vector["body"])),
        "x-log-meta-trace": "abc",
    }
    if vector["body"]:
        received |= {"content-type": vector["content_type"], "content-md5": vector["content_md5"]}
    assert _string_to_sign(vector, list(reversed(received.items()))) == vector["string_to_sign"]


def test_v1_header_names_are_matched_case_insensitively() -> None:
    vector = V1[3]
    mixed = [(name.upper(), value) for name, value in vector["signed_headers"].items()]
    assert _string_to_sign(vector, mixed) == vector["string_to_sign"]


def test_v1_signature_depends_on_secret_and_text() -> None:
    vector = V1[0]
    good = f"LOG {vector['access_key_id']}:"
    assert good + sls.sign_v1("other", vector["string_to_sign"]) != vector["authorization"]
    tampered = vector["string_to_sign"].replace("consumer_1", "consumer_2")
    assert good + sls.sign_v1(vector["access_key_secret"], tampered) != vector["authorization"]


def test_canonical_headers_v1_filters_and_sorts() -> None:
    headers = [
        ("x-log-signaturemethod", "hmac-sha1"),
        ("Content-Type", "application/json"),
        ("X-Acs-Security-Token", "tok"),
        ("x-log-meta-anything", "no"),
        ("x-log-date", "no"),
        ("x-logger", "no"),
        ("x-log-apiversion", "0.6.0"),
    ]
    expected = "x-acs-security-token:tok\nx-log-apiversion:0.6.0\nx-log-signaturemethod:hmac-sha1\n"
    assert sls.canonical_headers_v1(headers) == expected
    assert sls.canonical_headers_v1([]) == ""


def test_canonical_resource_uses_raw_values_sorted_by_key() -> None:
    assert sls.canonical_resource("/logstores/ls", {}) == "/logstores/ls"
    query = {"type": "heartbeat", "consumer": "a b&c", "forceSuccess": "true"}
    assert sls.canonical_resource("/p", query) == "/p?consumer=a b&c&forceSuccess=true&type=heartbeat"


def test_content_md5_of_empty_body_is_empty() -> None:
    assert sls.content_md5(b"") == ""


@by_name(V1)
def test_rfc1123_reproduces_vector_date(vector: dict[str, Any]) -> None:
    epoch = parsedate_to_datetime(vector["date"]).timestamp()
    assert sls.rfc1123(epoch) == vector["date"]
    assert sls.rfc1123(epoch + 0.999) == vector["date"]  # fractions are cut, never rounded up


@given(st.floats(min_value=0, max_value=2**33, allow_nan=False))
def test_rfc1123_agrees_with_the_stdlib_locale_free_formatter(epoch: float) -> None:
    assert sls.rfc1123(epoch) == formatdate(epoch, usegmt=True)


@by_name(V4)
def test_v4_vector(vector: dict[str, Any]) -> None:
    body = vector["body"].encode()
    epoch = parsedate_to_datetime(V1[0]["date"]).timestamp()  # the same fixed clock
    assert sls.v4_date(epoch) == vector["x_log_date"]
    payload = sls.content_sha256(body)
    assert payload == vector["x_log_content_sha256"]
    headers = [
        ("Content-Type", "application/json"),
        ("Host", vector["host"]),
        ("x-log-apiversion", "0.6.0"),
        ("x-log-content-sha256", payload),
        ("x-log-date", vector["x_log_date"]),
        ("User-Agent", "not signed"),
        ("Content-Length", str(len(body))),
        ("x-log-meta-trace", "not signed"),
    ]
    canonical = sls.canonical_request_v4("POST", vector["path"], vector["query"], headers, payload)
    assert canonical == vector["canonical_request"]
    to_sign = sls.string_to_sign_v4(vector["x_log_date"], vector["region"], canonical)
    assert to_sign == vector["string_to_sign"]
    signature = sls.sign_v4(vector["access_key_secret"], vector["x_log_date"], vector["region"], to_sign)
    authorization = sls.authorization_v4(
        vector["access_key_id"], vector["x_log_date"], vector["region"], signature
    )
    assert authorization == vector["authorization"]


def test_v4_query_encoding_follows_rfc3986() -> None:
    canonical = sls.canonical_request_v4("GET", "/p", {"b": "x/y z~", "a": ""}, [], "h")
    assert canonical.split("\n")[2] == "a&b=x%2Fy%20z~"
