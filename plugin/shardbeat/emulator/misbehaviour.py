"""Answers of the fault effects that imitate whatever may answer in a service's place: a proxy, a
captive portal, a broken server (faults.MISBEHAVIOURS). Pure: a rule and the normal answer in,
the answer to write out."""

from __future__ import annotations

import html

from shardbeat.emulator.call import CLS
from shardbeat.emulator.faults import FaultRule
from shardbeat.emulator.model import EmuResponse

PROCESSED = frozenset({"trickle", "http10"})  # the request is handled, only the answer misbehaves
HTML_PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Wi-Fi login</body></html>"
# Cut mid-JSON, in each service's own shape.
_MALFORMED = {
    "sls": b"[0, 1, ",
    CLS: b'{"Response": {"TopicPartitionsInfo": [{"TopicID": "',
}


def oversized_body(size: int, service: str) -> bytes:
    """Valid-looking JSON of exactly `size` bytes (where size allows), in the service's shape."""
    head, tail = (b'{"Response": {"RequestId": "', b'"}}') if service == CLS else (b'["', b'"]')
    fill = max(0, size - len(head) - len(tail))
    return head + b"x" * fill + tail


def misbehaving_answer(rule: FaultRule, service: str, normal: EmuResponse | None) -> EmuResponse:
    """The answer for a misbehaviour effect; `normal` is the handler's answer for PROCESSED ones."""
    effect = rule.effect
    if effect in PROCESSED:
        assert normal is not None
        if effect == "trickle":
            normal.trickle = rule.seconds or 0.0
        else:
            normal.version = "HTTP/1.0"
        return normal
    json_type = ("Content-Type", "application/json")
    if effect == "oversized":
        return EmuResponse(200, oversized_body(rule.size or 0, service), [json_type])
    if effect == "malformed":
        return EmuResponse(200, _MALFORMED.get(service, b"{"), [json_type])
    if effect == "html200":
        return EmuResponse(200, HTML_PAGE, [("Content-Type", "text/html; charset=utf-8")])
    if effect == "redirect":
        location = rule.location or ""
        page = f'<html><body>Moved <a href="{html.escape(location)}">here</a></body></html>'
        return EmuResponse(
            302, page.encode(), [("Location", location), ("Content-Type", "text/html; charset=utf-8")]
        )
    raise ValueError(f"not a misbehaviour effect: {effect}")
