"""Checks every scheme applies to raw input before its own grammar."""

from __future__ import annotations

import unicodedata

from schemas.errors import InvalidIdentifier

# No scheme we accept is longer than a Digital Link URI with qualifiers and a query;
# anything past this is refused before any grammar runs over it.
MAX_INPUT_CHARS = 2048


def check_text(text: str, *, scheme: str | None = None) -> None:
    """Refuse empty, overlong, non-UTF-8 (lone surrogates), control and space characters."""
    if not text:
        raise InvalidIdentifier(text, "empty input", scheme=scheme)
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidIdentifier(
            text,
            f"input is {len(text)} characters long; no identifier exceeds {MAX_INPUT_CHARS}",
            scheme=scheme,
        )
    if text.isascii() and text.isprintable() and " " not in text:
        return  # the common case, decided in C: no space, control or non-ASCII character
    for pos, ch in enumerate(text):
        if "\ud800" <= ch <= "\udfff":
            # argv bytes that were not UTF-8 arrive as lone surrogates (PEP 383)
            raise InvalidIdentifier(text, "not valid UTF-8", position=pos, scheme=scheme)
        if ch.isspace():
            raise InvalidIdentifier(
                text, f"whitespace (U+{ord(ch):04X}) is not allowed", position=pos, scheme=scheme
            )
        if unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cn"):
            raise InvalidIdentifier(
                text,
                f"control or unassigned character U+{ord(ch):04X}",
                position=pos,
                scheme=scheme,
            )


def first_not_in(text: str, allowed: frozenset[str], start: int = 0) -> int | None:
    """Offset of the first character of ``text[start:]`` outside ``allowed``."""
    for pos in range(start, len(text)):
        if text[pos] not in allowed:
            return pos
    return None


DIGITS = frozenset("0123456789")
