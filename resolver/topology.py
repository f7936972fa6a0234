"""The hierarchy: nodes, the delegations that place them, and where a lookup goes next.

Each delegation names a node, its role, URL, parent, key and prefixes, and is signed
by its parent's key (the super node signs its own, matched against the trust anchor
every node is configured with). ``Directory.verify`` refuses any delegation whose
chain of signatures does not reach that anchor. ``route`` is a pure decision over a
verified directory; nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import load_der_public_key

from schemas.errors import EncodingError, Forbidden
from schemas.identifiers import Namespace, RoutingKey
from schemas.identifiers.prefix import parse_prefix

DELEGATION_VERSION = 1


class Role(StrEnum):
    SUPER = "super"
    BACKBONE = "backbone"
    SUBCHAIN = "subchain"


@dataclass(frozen=True, slots=True, kw_only=True)
class Delegation:
    """One node's place in the hierarchy, as its parent signed it."""

    name: str
    role: Role
    url: str
    parent: str | None  # None only for the super node
    prefixes: tuple[str, ...]  # as users write them: 88.100, gs1:690, bid:ab12, bid:
    public_key: bytes  # DER SubjectPublicKeyInfo, Ed25519
    issued: int
    signature: bytes = b""

    def signed_bytes(self) -> bytes:
        """Deterministic CBOR of everything but the signature (RFC 8949 §4.2.1)."""
        return cbor2.dumps(
            {
                "v": DELEGATION_VERSION,
                "url": self.url,
                "name": self.name,
                "role": self.role.value,
                "issued": self.issued,
                "parent": self.parent,
                "prefixes": list(self.prefixes),
                "publicKey": self.public_key,
            },
            canonical=True,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role.value,
            "url": self.url,
            "parent": self.parent,
            "prefixes": list(self.prefixes),
            "publicKey": base64.b64encode(self.public_key).decode(),
            "issued": self.issued,
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_json(cls, obj: Any) -> Delegation:
        try:
            return cls(
                name=str(obj["name"]),
                role=Role(obj["role"]),
                url=str(obj["url"]),
                parent=None if obj["parent"] is None else str(obj["parent"]),
                prefixes=tuple(str(p) for p in obj["prefixes"]),
                public_key=base64.b64decode(obj["publicKey"], validate=True),
                issued=int(obj["issued"]),
                signature=base64.b64decode(obj["signature"], validate=True),
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise EncodingError(f"malformed delegation: {exc!r}") from exc


def sign_delegation(delegation: Delegation, issuer: ed25519.Ed25519PrivateKey) -> Delegation:
    return Delegation(
        **{**_fields(delegation), "signature": issuer.sign(delegation.signed_bytes())}
    )


def _fields(d: Delegation) -> dict[str, Any]:
    return {
        "name": d.name,
        "role": d.role,
        "url": d.url,
        "parent": d.parent,
        "prefixes": d.prefixes,
        "public_key": d.public_key,
        "issued": d.issued,
        "signature": d.signature,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """Where a lookup goes: answer here, ask ``node`` next, or nowhere holds it."""

    kind: str  # "local" | "down" | "up" | "none"
    node: Delegation | None = None  # the next hop for "down" and "up"
    authority: Delegation | None = None  # the node that holds the identifier
    prefix: RoutingKey | None = None  # the delegated prefix that matched


class Directory:
    """A verified set of delegations with longest-prefix routing over all namespaces."""

    def __init__(self, delegations: list[Delegation], trust_anchor: bytes) -> None:
        self.by_name = verify(delegations, trust_anchor)
        self._routes: list[tuple[RoutingKey, Delegation]] = []
        for d in self.by_name.values():
            for text in d.prefixes:
                self._routes.append((prefix_key(text), d))

    def authority(self, routing: RoutingKey) -> tuple[RoutingKey, Delegation] | None:
        """The node delegated the longest prefix of ``routing``, if any."""
        best: tuple[RoutingKey, Delegation] | None = None
        for prefix, node in self._routes:
            if (
                prefix.namespace is routing.namespace
                and routing.labels[: len(prefix.labels)] == prefix.labels
                and (best is None or len(prefix.labels) > len(best[0].labels))
            ):
                best = (prefix, node)
        return best

    def ancestors(self, name: str) -> list[str]:
        """``name`` and its parents up to the super node."""
        chain = []
        current: str | None = name
        while current is not None and current not in chain:
            chain.append(current)
            node = self.by_name.get(current)
            current = node.parent if node else None
        return chain

    def route(self, here: str, routing: RoutingKey) -> Route:
        """Where a lookup of ``routing`` goes from node ``here``, down the tree or up."""
        found = self.authority(routing)
        me = self.by_name[here]
        if found is None:
            if me.parent is None:
                return Route(kind="none")
            return Route(kind="up", node=self.by_name[me.parent])
        prefix, holder = found
        if holder.name == here:
            return Route(kind="local", authority=holder, prefix=prefix)
        path = self.ancestors(holder.name)  # holder, its parent, ..., super
        if here in path:  # the holder is below: step to the child on the way to it
            child = path[path.index(here) - 1]
            return Route(kind="down", node=self.by_name[child], authority=holder, prefix=prefix)
        if me.parent is None:  # unreachable for a verified directory
            return Route(kind="none")
        return Route(kind="up", node=self.by_name[me.parent], authority=holder, prefix=prefix)


def prefix_key(text: str) -> RoutingKey:
    """A delegated prefix; ``bid:`` alone is the main chain (did:bid without a code)."""
    if text == "bid:":
        return RoutingKey(namespace=Namespace.BID, labels=())
    return parse_prefix(text)


def verify(delegations: list[Delegation], trust_anchor: bytes) -> dict[str, Delegation]:
    """The delegations whose signatures chain to ``trust_anchor``; raise on any other.

    A node refuses a directory it cannot verify whole: one bad link is reported, not
    skipped, so an operator sees it.
    """
    by_name: dict[str, Delegation] = {}
    for d in delegations:
        if d.name in by_name:
            raise Forbidden(f"directory names node {d.name!r} twice")
        by_name[d.name] = d
    roots = [d for d in delegations if d.parent is None]
    if len(roots) != 1 or roots[0].role is not Role.SUPER:
        raise Forbidden("directory must have exactly one super node without a parent")
    if roots[0].public_key != trust_anchor:
        raise Forbidden("the super node's key in the directory is not the trusted one")
    for d in delegations:
        issuer = by_name.get(d.parent) if d.parent is not None else d
        if issuer is None:
            raise Forbidden(f"node {d.name!r} names unknown parent {d.parent!r}")
        key = load_der_public_key(issuer.public_key)
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise Forbidden(f"node {issuer.name!r} has no Ed25519 key")
        try:
            key.verify(d.signature, d.signed_bytes())
        except InvalidSignature:
            raise Forbidden(f"delegation of {d.name!r} is not signed by {issuer.name!r}") from None
        seen: set[str] = set()
        current: str | None = d.name
        while current is not None:  # parent links must end at the super node
            if current in seen:
                raise Forbidden(f"delegations loop through {current!r}")
            seen.add(current)
            parent = by_name[current].parent
            current = parent
        for text in d.prefixes:
            prefix_key(text)
    _check_carving(by_name)
    return by_name


def _check_carving(by_name: dict[str, Delegation]) -> None:
    """A node may only be given a prefix out of its ancestors' space (or space no node
    holds): never one inside another branch's prefix, nor one another node holds. So a
    parent cannot delegate itself into its neighbour's identifiers."""
    held = [(prefix_key(text), d.name) for d in by_name.values() for text in d.prefixes]
    for prefix, name in held:
        lineage = set()
        current: str | None = name
        while current is not None:
            lineage.add(current)
            current = by_name[current].parent
        for other, holder in held:
            if holder == name or other.namespace is not prefix.namespace:
                continue
            if other.labels == prefix.labels:
                raise Forbidden(f"prefix {prefix} is delegated to both {holder!r} and {name!r}")
            covers = prefix.labels[: len(other.labels)] == other.labels
            if covers and holder not in lineage:
                raise Forbidden(
                    f"{name!r} is given {prefix}, inside {other} of {holder!r}, "
                    "which is not its ancestor"
                )
