"""Ecode (GB/T 31866): version digit, number-system identifier (NSI), master data code.

Written ``ecode:<digits>``, since bare digits would be read as a GS1 key. Versions 1
and 2 are all-digit; version 0 is reserved for GS1 compatibility, and the others
are alphanumeric or reserved, which this parser does not accept.
"""

from __future__ import annotations

from schemas.errors import InvalidIdentifier
from schemas.identifiers.model import Identifier, Namespace, RoutingKey, Scheme
from schemas.identifiers.text import DIGITS, first_not_in

# version -> (NSI digits, longest master data code) after GB/T 31866 table 1
VERSIONS: dict[str, tuple[int, int]] = {"1": (4, 20), "2": (8, 28)}
LABEL = "ecode:"


def parse_ecode(text: str, *, offset: int = len(LABEL)) -> Identifier:
    body = text[offset:]
    if not body:
        raise InvalidIdentifier(text, "no digits after 'ecode:'", position=offset, scheme="Ecode")
    bad = first_not_in(body, DIGITS)
    if bad is not None:
        raise InvalidIdentifier(
            text, f"{body[bad]!r} is not a digit", position=offset + bad, scheme="Ecode"
        )
    version = body[0]
    if version == "0":
        raise InvalidIdentifier(
            text,
            "version 0 is reserved for GS1 compatibility; give the GS1 key itself",
            position=offset,
            scheme="Ecode",
        )
    if version not in VERSIONS:
        raise InvalidIdentifier(
            text,
            f"version {version} is not supported (versions 1 and 2 are all-digit)",
            position=offset,
            scheme="Ecode",
        )
    nsi_len, md_max = VERSIONS[version]
    md_len = len(body) - 1 - nsi_len
    if md_len < 1:
        raise InvalidIdentifier(
            text,
            f"version {version} needs a {nsi_len}-digit NSI and a master data code "
            f"of 1 to {md_max} digits; got {len(body)} digits in all",
            position=len(text),
            scheme="Ecode",
        )
    if md_len > md_max:
        raise InvalidIdentifier(
            text,
            f"master data code is {md_len} digits; version {version} allows {md_max}",
            position=offset + 1 + nsi_len + md_max,
            scheme="Ecode",
        )
    return Identifier(
        scheme=Scheme.ECODE,
        canonical=LABEL + body,
        routing=RoutingKey(namespace=Namespace.ECODE, labels=tuple(body)),
    )
