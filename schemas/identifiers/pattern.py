"""The identifier grammar as regular expressions, for the OpenAPI description.

Each scheme's syntax, built from the parsers' own tables, in the subset of regex that
JSON Schema (ECMA-262, with or without the u flag) and Python's ``re`` read alike.
What a regex cannot state stays the parser's alone, and is listed in ``NOT_IN_PATTERN``.
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.identifiers import did, digital_link, ecode, gs1
from schemas.identifiers.base58 import ALPHABET as BASE58
from schemas.identifiers.did import BECH32
from schemas.identifiers.digital_link import CSET82, QUALIFIER_MAX
from schemas.identifiers.handle import SEGMENT_CHARS
from schemas.identifiers.text import MAX_INPUT_CHARS

__all__ = ["IDENTIFIER", "MAX_INPUT_CHARS", "NOT_IN_PATTERN", "NOT_IN_PATTERN_REASONS", "PREFIX"]

NOT_IN_PATTERN = (
    "a GS1 key's check digit; a handle's 255 bytes of UTF-8 and a suffix's Unicode "
    "format, private-use or unassigned characters; an OID's 100 characters; the 22 "
    "bytes a did:bid suffix decodes to"
)
# the parser's words when it refuses for one of them (InvalidIdentifier.reason)
NOT_IN_PATTERN_REASONS = (
    "check digit",
    "bytes of UTF-8",
    "control or unassigned character",
    "OID is",
    "must decode to",
)


def _cls(chars: Iterable[str]) -> str:
    """A character class of ``chars``, escaping only what a class needs escaped."""
    return "[" + "".join("\\" + c if c in "\\]^-[" else c for c in sorted(set(chars))) + "]"


def _ci(word: str) -> str:
    """``word`` in any case, as the parser reads scheme labels."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


def _alt(*options: str) -> str:
    return "(?:" + "|".join(options) + ")"


def _digits(*lengths: int) -> str:
    return _alt(*(f"[0-9]{{{n}}}" for n in lengths))


_SEGMENT = _cls(SEGMENT_CHARS) + "+"
_HANDLE_PREFIX = f"{_SEGMENT}(?:\\.{_SEGMENT})*"
# no whitespace, no C0 or C1 control (the rest of the parser's refusals: NOT_IN_PATTERN)
_SUFFIX = "[^\\s\\x00-\\x1f\\x7f-\\x9f]+"
_ARC = "(?:0|[1-9][0-9]*)"
_OID = f"(?:[01]\\.(?:[0-9]|[1-3][0-9])|2\\.{_ARC})(?:\\.{_ARC})*"
_GTIN = _digits(*gs1.GTIN_LENGTHS)
_GLN = _digits(gs1.GLN_LENGTH)
_SSCC = _digits(gs1.SSCC_LENGTH)
# version digit, NSI and a master data code of 1 to its longest
_ECODE = _alt(
    *(f"{v}[0-9]{{{nsi + 1},{nsi + md}}}" for v, (nsi, md) in sorted(ecode.VERSIONS.items()))
)
_BID = f"(?:[a-z0-9]{{4}}:)?{_cls(did.KEY_TYPES)}" + _alt(
    f"f{_cls(BASE58)}+", "s[A-Za-z0-9_-]{30}", f"t{_cls(BECH32)}{{36}}"
)
_DID = _ci("did:") + _alt(_ci("bid") + ":" + _BID, _ci("cn") + ":" + _HANDLE_PREFIX)


def _qualifier_value() -> str:
    """1 to 20 characters of GS1's set 82, each as is or percent-encoded; '/' and '?'
    only encoded, since a path segment holds them no other way, and a '%' that starts
    no escape is itself (the parser percent-decodes as ``unquote_to_bytes`` does)."""
    plain = _cls(set(CSET82) - {"%", "/", "?"})
    escapes = _alt(
        *(
            h[0] + (f"[{h[1]}{h[1].lower()}]" if h[1].isalpha() else h[1])
            for h in sorted(f"{ord(c):02X}" for c in CSET82)
        )
    )
    return f"(?:{plain}|%{escapes}|%(?![0-9A-Fa-f]{{2}})){{1,{QUALIFIER_MAX}}}"


def _key_path() -> str:
    value = _qualifier_value()
    keys = {"01": _GTIN, "00": _SSCC, "414": _GLN}
    return _alt(
        *(
            f"{ai}/{keys[ai]}" + "".join(f"(?:/{q}/{value})?" for q in qualifiers)
            for ai, (_scheme, qualifiers) in digital_link.PRIMARY_KEYS.items()
        )
    )


# path info first (segments other than a primary key's AI), then the key, its qualifiers
# in their order, a trailing slash at most, and any query or fragment
_PATH_INFO = "(?:(?!(?:" + "|".join(digital_link.PRIMARY_KEYS) + ")/)[^/?#\\s]*/)*"
_DIGITAL_LINK = (
    _ci("http")
    + "[Ss]?://[^/\\s\\x00-\\x1f\\x7f-\\x9f]+/"
    + _PATH_INFO
    + _key_path()
    + "/?(?:[?#]\\S*)?"
)

IDENTIFIER = (
    "^"
    + _alt(
        f"(?:{_ci('hdl:')})?{_HANDLE_PREFIX}/{_SUFFIX}",
        _ci("doi:") + f"10(?:\\.{_SEGMENT})+/{_SUFFIX}",
        _ci("urn:oid:") + _OID,
        _ci("oid:") + _OID,
        _OID,
        _ci("gtin:") + _GTIN,
        _ci("gln:") + _GLN,
        _ci("sscc:") + _SSCC,
        _GTIN,
        _SSCC,
        _ci("ecode:") + _ECODE,
        _DID,
        _DIGITAL_LINK,
    )
    + "$"
)
"""Every identifier ``parse`` accepts matches; one that matches may still be refused for
what ``NOT_IN_PATTERN`` lists."""

PREFIX = (
    "^"
    + _alt(
        _HANDLE_PREFIX,
        "gs1:[0-9]+",
        "ecode:[0-9]+",
        f"oid:{_ARC}(?:\\.{_ARC})*",
        "bid:[a-z0-9]{4}",
    )
    + "$"
)
"""Exactly the prefixes ``parse_prefix`` accepts (``GET /api/handles?prefix=``)."""
