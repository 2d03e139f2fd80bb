"""Session-token checks shared by both services' authentication."""

from __future__ import annotations

import hmac


def token_matches(sent: str | None, expected: str | None) -> bool:
    """A temporary credential needs its own token; a permanent one must come without any.

    An empty header counts as absent (some SDKs send the header empty for permanent keys).
    """
    sent = sent or None
    if expected is None or sent is None:
        return sent is None and expected is None
    return hmac.compare_digest(sent.encode(), expected.encode())
