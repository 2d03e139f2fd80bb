"""Secrets in any spelling, and in part: what core.redaction's list of exact spellings cannot hold.

An echo is not always the secret as we sent it, nor in one of the spellings Python's own encoders
write. A Go server escapes `&`, `<`, `>` as `\\u0026` in JSON, Gson escapes `=` and `'` too, a C# or
Java encoder writes `\\u002B` in upper case, a proxy percent-encodes in lower case (`%2f`), a page
writes `&#61;`, and a server, proxy or log field cuts a token to its first (or last) few dozen
characters. Each is the secret to whoever reads the log.

So every character of a secret may here be spelled any of those ways (as is or backslash-escaped at
any depth; `\\uXXXX`, `\\u{X}`, `\\xXX`; `%XX` in either case, `%25XX`; HTML entities, `&amp;`-escaped
at any depth; `+` for a space), and a secret counts as found from its first MIN_FRAGMENT characters
onwards (a prefix: the rest was cut) or up to its last MIN_FRAGMENT (a suffix: "...end"). A fragment
that stops short of the secret's end is masked only where it stops at the end of the text or before a
character that is no letter or digit: a key id that shares a secret's first characters ("demo-sts-akid"
beside "demo-sts-secret") is no cut secret.

A fragment from the middle of a secret (neither end) is not recognised: no echo seen cuts both ends.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

# Characters a fragment must have to be recognised as part of a secret: fewer is too likely to be a
# key id's, a host's or a word's (and masking 12 of a 30-character key leaves 18 unguessed).
MIN_FRAGMENT = 12
_LONGEST_SPELLING = 24  # characters one spelled character may take when read backwards (a suffix)
# Reading a fragment on past its anchor, character by character, is bounded per text: a text made
# of overlapping near-copies of a secret ("aaaa..." against a secret "aaa...aZ") would otherwise take
# time quadratic in its length. Past the bound, every anchor left is masked as found, with the run of
# characters around it that the secret could hold: masking a word too many is the safe way to be wrong.
_STEPS_PER_CHARACTER = 1  # a step: one character of a secret read on, at each position it may be at
_STEPS_ANYWAY = 2_000  # so a short text still reads a whole 1000-character token
_ENTITIES = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos"}


def _hex(value: int, width: int = 1) -> str:
    """`value` in hex (at least `width` digits), either case, leading zeros optional beyond `width`."""
    digits = f"{value:0{width}x}"
    return "0*" + "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in digits)


def char_forms(char: str) -> list[str]:
    """Regexes, one per way of spelling one character of a secret that an echo may use."""
    code = ord(char)
    utf8 = char.encode("utf-8", "surrogatepass")
    forms = [
        re.escape(char),
        r"\\+" + re.escape(char),  # JSON \" \\ \/, repr \' ..., at any depth of nesting
        r"\\+(?:u\{?" + _hex(code) + r"\}?|U" + _hex(code) + ")",  # \u0026, \u{26}, \U00000026
        "".join(r"\\+x" + _hex(b, 2) for b in utf8),  # \x26, and a bytes repr of UTF-8
        "".join("%(?:25)*" + _hex(b, 2) for b in utf8),  # %2f, %2F, %252F
        "&(?:amp;)*#(?:" + f"0*{code}" + "|[xX]" + _hex(code) + ");",  # &#61; &#x3d; &amp;#61;
    ]
    if char in _ENTITIES:
        forms.append(f"&(?:amp;)*{_ENTITIES[char]};")
    if char == " ":
        forms.append(r"\+")
    return forms


def _run_end(text: str, at: int, secret: str) -> int:
    """Where the run of characters from `at` on that could all be part of `secret` (or its escapes) ends."""
    allowed = set(secret) | set("\\%&#;")
    while at < len(text) and text[at] in allowed:
        at += 1
    return at


def _run_start(text: str, at: int, secret: str) -> int:
    """Where the run of characters up to `at` that could all be part of `secret` begins."""
    allowed = set(secret) | set("\\%&#;")
    while at > 0 and text[at - 1] in allowed:
        at -= 1
    return at


def char_pattern(char: str) -> str:
    """A regex for one character of a secret in any spelling an echo may give it."""
    return "(?:" + "|".join(char_forms(char)) + ")"


@functools.cache
def _compiled_forms(char: str) -> tuple[list[re.Pattern[str]], list[re.Pattern[str]]]:
    """char_forms(char) compiled to match forwards (at a position) and backwards (ending at one).
    Compiled when first needed, as the spelled anchors are: compiling them all for a 1000-character
    token costs ~100 ms, and nearly every text never needs them (no anchor in it)."""
    forms = char_forms(char)
    return [re.compile(form) for form in forms], [re.compile(rf"(?:{form})\Z") for form in forms]


class Spellings:
    """Finds, in a text, the registered secrets and their prefix and suffix fragments in any spelling."""

    def __init__(self, secrets: Iterable[tuple[str, bool]]) -> None:
        """`secrets`: (value, whole only): a whole-only value is found in any spelling, never cut."""
        self._anchors: list[tuple[str, bool]] = []  # group number - 1 -> (secret, is the prefix)
        self._by_text: dict[str, list[tuple[str, bool]]] = {}  # an anchor as is -> its (secret, prefix)
        self._whole: set[str] = set()
        spaced = False
        for secret, whole_only in secrets:
            if whole_only:
                self._whole.add(secret)
            spaced = spaced or " " in secret
            ends = [True] if len(secret) <= MIN_FRAGMENT or whole_only else [True, False]
            for prefix in ends:
                piece = secret[:MIN_FRAGMENT] if prefix else secret[-MIN_FRAGMENT:]
                self._anchors.append((secret, prefix))
                self._by_text.setdefault(piece, []).append((secret, prefix))
        self._spelled: re.Pattern[str] | None = None  # compiled when first needed (_spelled_anchors)
        # Every spelling but the plain one starts with one of these (or is "+", for a space): a text
        # without them (nearly every log line and record) is searched for the anchors as they are,
        # which a regex of literals does some 30 times faster.
        self._marks = "\\%&+" if spaced else "\\%&"
        ordered = sorted(self._by_text, key=len, reverse=True)
        self._plain = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        encoded = [piece.encode("utf-8", "surrogatepass") for piece in ordered]
        self._plain_bytes = re.compile(b"|".join(map(re.escape, encoded))) if encoded else None
        self._mark_bytes = [mark.encode() for mark in self._marks]

    def found_in(self, data: bytes) -> bool:
        """Does encoded output (UTF-8 JSON, msgpack) hold a secret or a fragment?"""
        if self._plain_bytes is None:
            return False
        if not any(mark in data for mark in self._mark_bytes) and self._plain_bytes.search(data) is None:
            return False  # no spelling but the plain one can be here, and no anchor is
        return bool(self.spans(data.decode("utf-8", "replace")))

    def _spelled_anchors(self) -> re.Pattern[str]:
        if self._spelled is None:
            pieces = [
                secret[:MIN_FRAGMENT] if prefix else secret[-MIN_FRAGMENT:]
                for secret, prefix in self._anchors
            ]
            self._spelled = re.compile("|".join("(" + "".join(map(char_pattern, p)) + ")" for p in pieces))
        return self._spelled

    def _anchor_hits(self, text: str, at: int) -> tuple[re.Match[str], list[tuple[str, bool]]] | None:
        """The next anchor at or after `at`, with the (secret, prefix) ends it may be."""
        if any(mark in text for mark in self._marks):
            match = self._spelled_anchors().search(text, at)
            if match is None:
                return None
            assert match.lastindex is not None
            return match, [self._anchors[match.lastindex - 1]]
        assert self._plain is not None
        match = self._plain.search(text, at)
        return None if match is None else (match, self._by_text[match.group()])

    def spans(self, text: str) -> list[tuple[int, int]]:
        """The (start, end) of every secret or fragment found in `text`, merged, in order."""
        if not self._anchors:
            return []
        found: list[tuple[int, int]] = []
        budget = [_STEPS_PER_CHARACTER * len(text) + _STEPS_ANYWAY]
        at = 0
        while (hit := self._anchor_hits(text, at)) is not None:
            match, ends = hit
            spans = [
                span
                for secret, prefix in ends
                if (
                    span := self._prefix(text, secret, match, budget)
                    if prefix
                    else self._suffix(text, secret, match, budget)
                )
            ]
            if not spans:
                at = match.start() + 1  # not a secret here: anchors starting inside may still be
                continue
            span = (min(s[0] for s in spans), max(s[1] for s in spans))
            if found and span[0] <= found[-1][1]:
                found[-1] = (found[-1][0], max(found[-1][1], span[1]))
            else:
                found.append(span)
            at = max(span[1], match.start() + 1)
        return found

    # One spelled character may be read more than one way ("%25" is "%" encoded, or "%" then "25";
    # "&amp;" is "&" encoded, or "&" then "amp;"): every reading is followed, as a set of positions.

    def _prefix(
        self, text: str, secret: str, match: re.Match[str], budget: list[int]
    ) -> tuple[int, int] | None:
        ends, done = {match.end()}, min(len(secret), MIN_FRAGMENT)
        while done < len(secret):
            budget[0] -= len(ends)
            if budget[0] < 0:
                return match.start(), _run_end(text, max(ends), secret)  # out of time (_STEPS_ANYWAY)
            forms = _compiled_forms(secret[done])[0]
            further = {step.end() for at in ends for form in forms if (step := form.match(text, at))}
            if not further:
                break
            ends, done = further, done + 1
        at = max(ends)
        if done == len(secret) or (secret not in self._whole and (at == len(text) or not text[at].isalnum())):
            return match.start(), at
        return None

    def _suffix(
        self, text: str, secret: str, match: re.Match[str], budget: list[int]
    ) -> tuple[int, int] | None:
        starts, left = {match.start()}, len(secret) - MIN_FRAGMENT
        while left > 0:
            budget[0] -= len(starts)
            if budget[0] < 0:
                return _run_start(text, min(starts), secret), match.end()
            forms = _compiled_forms(secret[left - 1])[1]
            earlier = {
                step.start()
                for at in starts
                for form in forms
                if (step := form.search(text, max(0, at - _LONGEST_SPELLING), at))
            }
            if not earlier:
                break
            starts, left = earlier, left - 1
        at = min(starts)
        if left == 0 or at == 0 or not text[at - 1].isalnum():
            return at, match.end()
        return None

    def mask(self, text: str, mask: str) -> str:
        spans = self.spans(text)
        if not spans:
            return text
        out: list[str] = []
        at = 0
        for start, end in spans:
            out.append(text[at:start])
            out.append(mask)
            at = end
        out.append(text[at:])
        return "".join(out)
