"""Handle-style identifiers ``prefix/suffix`` (RFC 3650 §3), DOIs included.

Prefix segments are dot-separated and case-insensitive (canonical: upper case);
the suffix is case-sensitive, except for DOIs, which are case-insensitive in
ASCII (DOI Handbook §2.4) and so canonically upper case. At most 255 bytes of UTF-8.
"""

from __future__ import annotations

from schemas.errors import InvalidIdentifier
from schemas.identifiers.model import Identifier, Namespace, RoutingKey, Scheme

MAX_HANDLE_BYTES = 255
SEGMENT_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_")


def parse_prefix(text: str, prefix: str, *, offset: int = 0, scheme: str = "handle") -> list[str]:
    """Validate a dotted prefix found at ``offset`` of ``text``; return canonical segments."""
    if not prefix:
        raise InvalidIdentifier(text, "empty prefix", position=offset, scheme=scheme)
    segments: list[str] = []
    pos = offset
    for seg in prefix.split("."):
        if not seg:
            raise InvalidIdentifier(
                text,
                "empty prefix segment (two dots, or a dot at an end)",
                position=pos,
                scheme=scheme,
            )
        for k, ch in enumerate(seg):
            if ch not in SEGMENT_CHARS:
                raise InvalidIdentifier(
                    text,
                    f"{ch!r} is not allowed in a prefix (letters, digits, '-', '_')",
                    position=pos + k,
                    scheme=scheme,
                )
        segments.append(seg.upper())
        pos += len(seg) + 1
    return segments


def parse_handle(text: str, *, offset: int = 0) -> Identifier:
    """Parse ``text[offset:]`` as prefix/suffix; ``offset`` skips a ``hdl:``/``doi:`` label."""
    body = text[offset:]
    slash = body.find("/")
    if slash < 0:
        raise InvalidIdentifier(
            text, "a handle needs '/' between prefix and suffix", scheme="handle"
        )
    segments = parse_prefix(text, body[:slash], offset=offset)
    suffix = body[slash + 1 :]
    if not suffix:
        raise InvalidIdentifier(
            text, "empty suffix after '/'", position=offset + slash + 1, scheme="handle"
        )
    if segments[0] == "10":
        suffix = "".join(c.upper() if c.isascii() else c for c in suffix)
    canonical = ".".join(segments) + "/" + suffix
    size = len(canonical.encode("utf-8"))
    if size > MAX_HANDLE_BYTES:
        raise InvalidIdentifier(
            text,
            f"handle is {size} bytes of UTF-8; at most {MAX_HANDLE_BYTES}",
            position=offset + _char_at_byte(body, MAX_HANDLE_BYTES),
            scheme="handle",
        )
    return Identifier(
        scheme=Scheme.HANDLE,
        canonical=canonical,
        routing=RoutingKey(namespace=Namespace.HANDLE, labels=tuple(segments)),
    )


def _char_at_byte(text: str, limit: int) -> int:
    """Index of the first character that ends past ``limit`` bytes of UTF-8."""
    used = 0
    for i, ch in enumerate(text):
        used += len(ch.encode("utf-8"))
        if used > limit:
            return i
    return len(text)
