"""Object identifiers in dotted decimal (ITU-T X.660 §7), e.g. ``1.2.156.3001.1``.

Arcs are decimal with no leading zeros; the first arc is 0, 1 or 2, and under 0 and
1 the second arc is at most 39. At most 100 bytes, at least two arcs.
"""

from __future__ import annotations

from schemas.errors import InvalidIdentifier
from schemas.identifiers.model import Identifier, Namespace, RoutingKey, Scheme
from schemas.identifiers.text import DIGITS

MAX_OID_BYTES = 100


def parse_oid(text: str, *, offset: int = 0) -> Identifier:
    """Parse ``text[offset:]``; ``offset`` skips an ``urn:oid:`` or ``oid:`` label (RFC 3061)."""
    body = text[offset:]
    if len(body) > MAX_OID_BYTES:
        raise InvalidIdentifier(
            text,
            f"OID is {len(body)} bytes; at most {MAX_OID_BYTES}",
            position=offset + MAX_OID_BYTES,
            scheme="OID",
        )
    arcs: list[str] = []
    pos = offset
    for arc in body.split("."):
        if not arc:
            raise InvalidIdentifier(
                text, "empty arc (two dots, or a dot at an end)", position=pos, scheme="OID"
            )
        for k, ch in enumerate(arc):
            if ch not in DIGITS:
                raise InvalidIdentifier(
                    text, f"{ch!r} is not a digit", position=pos + k, scheme="OID"
                )
        if len(arc) > 1 and arc[0] == "0":
            raise InvalidIdentifier(
                text, f"arc {arc!r} has a leading zero", position=pos, scheme="OID"
            )
        arcs.append(arc)
        pos += len(arc) + 1
    if len(arcs) < 2:
        raise InvalidIdentifier(text, "an OID has at least two arcs", scheme="OID")
    if int(arcs[0]) > 2:
        raise InvalidIdentifier(
            text, f"first arc is {arcs[0]}; it must be 0, 1 or 2", position=offset, scheme="OID"
        )
    if int(arcs[0]) < 2 and int(arcs[1]) > 39:
        raise InvalidIdentifier(
            text,
            f"under arc {arcs[0]} the second arc is at most 39, not {arcs[1]}",
            position=offset + len(arcs[0]) + 1,
            scheme="OID",
        )
    return Identifier(
        scheme=Scheme.OID,
        canonical=".".join(arcs),
        routing=RoutingKey(namespace=Namespace.OID, labels=tuple(arcs)),
    )
