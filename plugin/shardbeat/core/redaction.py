"""The one redaction point for text that leaves the process: log lines, record messages, doctor output.

Two things are cut out, whatever field or message they sit in:
- every secret this process holds (a secret key or session token): `Credentials` registers its own
  values when it is created, whichever source loaded them, so a server that echoes a token, or a
  library that quotes a header, cannot carry it out;
- quoted byte/str literals in exception text (`http.client`'s "Invalid header value b'...'" quotes the
  header it refused, and a header may be a signature or a token): `describe_exception` keeps the
  exception's type and words but drops what it quotes.

The registry is process-wide state (no I/O): secrets are registered where credentials are made and
looked for where text leaves, which are far apart. Values shorter than MIN_SECRET are not registered
(they would cut ordinary words out of every line); real keys and tokens are far longer.

Beyond the exact spellings listed here (`shown_forms`), core.secret_spellings finds a secret in any
other spelling an encoder may give it (`%2f`, `\\u003d`, `&#61;`) and cut to its first or last few
dozen characters.

Text from outside (a server's message, a proxy's status line) is masked BEFORE it is cut to size
(`clip`): a cut through an echoed token would leave a prefix the mask no longer recognises, and an
STS token is longer than any limit a message is cut to.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import quote, quote_plus

from shardbeat.core.encodable import MAX_DEPTH, TOO_DEEP
from shardbeat.core.secret_spellings import Spellings

MIN_SECRET = 8
MAX_SECRETS = 256  # rotation keeps adding; the oldest rotated ones fall out
# The first values registered (config load: static keys, proxy credentials) stay for the life of the
# process: they are never re-registered, so in a plain LRU a few days of a role's refreshes (each
# adds a key, a token, an IMDS or OIDC token) would push them out and they would go unmasked.
PINNED_SECRETS = 128
MASK = "[redacted]"
MAX_DESCRIPTION = 300
# b'...' / b"..." / '...' / "..." as repr() writes them (escaped quotes included).
_QUOTED = re.compile(r"b?'(?:[^'\\]|\\.)*'" + r'|b?"(?:[^"\\]|\\.)*"')


class SecretRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pinned: set[str] = set()
        self._values: OrderedDict[str, bool] = OrderedDict()  # value -> whole only (never a cut one)
        self._text: re.Pattern[str] | None = None
        self._bytes: re.Pattern[bytes] | None = None
        self._spellings = Spellings(())

    def register(self, value: str | None, whole_only: bool = False) -> None:
        """`whole_only`: a value made of a secret and text that is not (a proxy URL's user, host and
        port): masked only whole, as a cut one's ends are no secret (secret_spellings)."""
        if not value or len(value) < MIN_SECRET:
            return
        with self._lock:
            if value in self._values:
                self._values.move_to_end(value)
                if self._values[value] and not whole_only:
                    self._values[value] = False
                    self._compile()
                return
            if len(self._pinned) < PINNED_SECRETS:
                self._pinned.add(value)
            self._values[value] = whole_only
            if len(self._values) > MAX_SECRETS:
                oldest = next(v for v in self._values if v not in self._pinned)  # pinned < MAX
                del self._values[oldest]
            self._compile()

    def _compile(self) -> None:
        forms: set[str] = set()
        for value in self._values:
            forms |= shown_forms(value)
        ordered = sorted(forms, key=len, reverse=True)  # longest first: no partial masks
        self._text = re.compile("|".join(map(re.escape, ordered)))
        encoded = sorted({f.encode("utf-8", "surrogatepass") for f in forms}, key=len, reverse=True)
        self._bytes = re.compile(b"|".join(map(re.escape, encoded)))
        self._spellings = Spellings(self._values.items())  # any other spelling, a cut one (secret_spellings)

    def redact(self, text: str) -> str:
        pattern = self._text
        # Fragments and other spellings first: the exact pass could mask a shorter secret inside a
        # longer one's fragment ("demo-secret" in "demo-secret-key-and-m...") and leave its rest.
        return text if pattern is None else pattern.sub(MASK, self._spellings.mask(text, MASK))

    def found_in(self, data: bytes) -> bool:
        """Cheap check on encoded output: does it hold any secret (in any spelling, or cut)?"""
        pattern = self._bytes
        if pattern is None:
            return False
        return pattern.search(data) is not None or self._spellings.found_in(data)


def shown_forms(value: str) -> set[str]:
    """Every spelling of `value` that text leaving the process may hold (a secret with ', ", \\, /,
    +, =, & or < is spelled differently in each): as is; escaped inside a JSON string (also with
    `\\/`, as PHP and some portals write it); percent-encoded (a redirect's Location, a form); HTML-
    escaped (a 4xx page echoing our headers); quoted by repr() (an exception message, a traceback);
    and each of those once more escaped inside a JSON string (a JSON log line or record quoting it)."""
    ascii_json = json.dumps(value)[1:-1]
    spellings = {
        value,
        json.dumps(value, ensure_ascii=False)[1:-1],
        ascii_json,
        ascii_json.replace("/", "\\/"),
        quote(value, safe="", errors="surrogatepass"),
        quote_plus(value, safe="", errors="surrogatepass"),
        _html_escaped(value, quote=True),
        _html_escaped(value, quote=False),
        repr(value)[1:-1],
        repr(value.encode("utf-8", "surrogatepass"))[2:-1],
    }
    forms = set(spellings)
    for spelling in spellings:
        forms.add(json.dumps(spelling, ensure_ascii=False)[1:-1])
        forms.add(json.dumps(spelling)[1:-1])
    return forms


SECRETS = SecretRegistry()


def register_secret(value: str | None, whole_only: bool = False) -> None:
    SECRETS.register(value, whole_only)


def redact(text: str) -> str:
    """`text` with every registered secret masked."""
    return SECRETS.redact(text)


def masked(value: Any, depth: int = 0) -> Any:
    """A copy of a JSON-like document with every registered secret masked in every string (keys too)."""
    if isinstance(value, str):
        return redact(value)
    if depth >= MAX_DEPTH:
        return TOO_DEEP
    if isinstance(value, dict):
        return {masked(k, depth): masked(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v, depth + 1) for v in value]
    return value


def clip(text: str, limit: int) -> str:
    """`text` with every registered secret masked, then cut to `limit` characters ("..." when cut)."""
    masked = redact(text)
    return masked if len(masked) <= limit else masked[:limit] + "..."


def describe_exception(exc: BaseException) -> str:
    """`Type: message` safe to log or put in a record: secrets and quoted literals masked, one size."""
    if isinstance(exc, UnicodeEncodeError | UnicodeDecodeError):
        # str() quotes the codec and the character, and "can't" unbalances the quotes, so masking
        # quoted literals left "[redacted] codec can[redacted]...": say it from the fields instead.
        verb = "encode" if isinstance(exc, UnicodeEncodeError) else "decode"
        text = f"{type(exc).__name__}: {exc.encoding} cannot {verb} position {exc.start}: {exc.reason}"
        return redact(text)[:MAX_DESCRIPTION]
    try:
        message = str(exc)
    except Exception:
        message = ""
    message = _QUOTED.sub(MASK, redact(message))
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:MAX_DESCRIPTION]


def _html_escaped(value: str, quote: bool) -> str:
    """html.escape's spelling, without importing `html` (its entity table costs ~1 MB of RSS)."""
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value.replace('"', "&quot;").replace("'", "&#x27;") if quote else value
