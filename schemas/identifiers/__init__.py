"""Parse any identifier we serve to one canonical, routable form.

``parse`` decides the scheme from the input's shape, hands it to that scheme's
grammar and returns a frozen ``Identifier``; every failure is an
``InvalidIdentifier`` naming the position and the reason. Nothing here does I/O.
"""

from __future__ import annotations

import functools

from schemas.errors import InvalidIdentifier
from schemas.identifiers.did import parse_did
from schemas.identifiers.digital_link import parse_digital_link
from schemas.identifiers.ecode import parse_ecode
from schemas.identifiers.gs1 import check_digit, parse_gs1_key
from schemas.identifiers.handle import parse_handle
from schemas.identifiers.model import Identifier, Namespace, RoutingKey, Scheme
from schemas.identifiers.oid import parse_oid
from schemas.identifiers.text import DIGITS, check_text

__all__ = [
    "Identifier",
    "InvalidIdentifier",
    "Namespace",
    "RoutingKey",
    "Scheme",
    "check_digit",
    "parse",
]

_EXPLICIT_GS1 = {"gtin:": Scheme.GTIN, "gln:": Scheme.GLN, "sscc:": Scheme.SSCC}
_DOTTED_DIGITS = DIGITS | {"."}


@functools.lru_cache(maxsize=16384)
def parse(text: str) -> Identifier:
    """Parse ``text`` as whichever scheme its shape names.

    Cached: one request names an identifier to several layers (the API, the policy,
    the store), and an Identifier is immutable, so each parses it only once.
    """
    check_text(text)
    lower = text[:8].lower()
    if lower.startswith("did:"):
        return parse_did(text)
    if lower.startswith(("http://", "https://")):
        return parse_digital_link(text)
    if lower.startswith("urn:oid:"):
        return parse_oid(text, offset=8)
    if lower.startswith("oid:"):
        return parse_oid(text, offset=4)
    if lower.startswith("ecode:"):
        return parse_ecode(text)
    for label, scheme in _EXPLICIT_GS1.items():
        if lower.startswith(label):
            return parse_gs1_key(text[len(label) :], scheme, offset=len(label), whole=text)
    if lower.startswith(("hdl:", "doi:")):
        ident = parse_handle(text, offset=4)
        if lower.startswith("doi:") and not ident.canonical.startswith("10."):
            raise InvalidIdentifier(
                text, "a DOI prefix starts with '10.'", position=4, scheme="DOI"
            )
        return ident
    if "/" in text:
        return parse_handle(text)
    if all(c in DIGITS for c in text):
        return parse_gs1_key(text)
    if all(c in _DOTTED_DIGITS for c in text):
        return parse_oid(text)
    colon = text.find(":")
    if 0 < colon < 16:
        raise InvalidIdentifier(text, f"unknown scheme {text[:colon]!r}", position=0)
    raise InvalidIdentifier(
        text,
        "unknown scheme: not a handle (prefix/suffix), GS1 key (digits), OID (dotted digits), "
        "Digital Link URI, ecode:, did:bid: or did:cn:",
        position=0,
    )
