"""Prefixes as users write them: ``88.100.1`` for handles, ``gs1:690123``, ``oid:1.2.156``,
``ecode:1000`` and ``bid:ab12`` for the other namespaces; and, where a node's
delegation or a prefix record names it, ``bid:`` alone for the did:bid main chain.
Pure; nothing here does I/O.
"""

from __future__ import annotations

from schemas.errors import InvalidIdentifier
from schemas.identifiers.handle import parse_prefix as parse_handle_prefix
from schemas.identifiers.model import Namespace, RoutingKey
from schemas.identifiers.text import DIGITS, check_text


def parse_prefix(text: str) -> RoutingKey:
    """A prefix as users write it: ``88.100.1`` (handle), or ``gs1:690123``,
    ``oid:1.2.156``, ``ecode:1000``, ``bid:ab12`` for the other namespaces."""
    check_text(text, scheme="prefix")
    if ":" not in text:
        segments = parse_handle_prefix(text, text, scheme="prefix")
        return RoutingKey(namespace=Namespace.HANDLE, labels=tuple(segments))
    name, _, rest = text.partition(":")
    start = len(name) + 1
    if name in ("gs1", "ecode"):
        if not rest or any(c not in DIGITS for c in rest):
            raise InvalidIdentifier(
                text, f"a {name} prefix is one or more digits", position=start, scheme="prefix"
            )
        return RoutingKey(namespace=Namespace(name), labels=tuple(rest))
    if name == "oid":
        arcs = rest.split(".")
        if not rest or any(
            not a or any(c not in DIGITS for c in a) or (len(a) > 1 and a[0] == "0") for a in arcs
        ):
            raise InvalidIdentifier(
                text,
                "an oid prefix is dotted decimal arcs without leading zeros",
                position=start,
                scheme="prefix",
            )
        return RoutingKey(namespace=Namespace.OID, labels=tuple(arcs))
    if name == "bid":
        if len(rest) != 4 or any(c not in "abcdefghijklmnopqrstuvwxyz0123456789" for c in rest):
            raise InvalidIdentifier(
                text,
                "a bid prefix is a 4-character sub-chain code",
                position=start,
                scheme="prefix",
            )
        return RoutingKey(namespace=Namespace.BID, labels=(rest,))
    raise InvalidIdentifier(
        text,
        f"unknown prefix namespace {name!r} (gs1, oid, ecode, bid)",
        position=0,
        scheme="prefix",
    )


MAIN_CHAIN = RoutingKey(namespace=Namespace.BID, labels=())


def delegated_prefix(text: str) -> RoutingKey:
    """A prefix a node may hold and a prefix record may administer: what ``parse_prefix``
    accepts, and ``bid:`` alone, the main chain (did:bid without a sub-chain code)."""
    return MAIN_CHAIN if text == "bid:" else parse_prefix(text)


def administered(prefix: RoutingKey) -> bool:
    """Whether a prefix record ``0.NA/P`` may stand for ``prefix``: any prefix with labels,
    and the main chain; never the bare root of another namespace."""
    return bool(prefix.labels) or prefix == MAIN_CHAIN
