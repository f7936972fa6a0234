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
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import load_der_public_key

from schemas.errors import EncodingError, Forbidden
from schemas.identifiers import Namespace, RoutingKey
from schemas.identifiers.prefix import parse_prefix

DELEGATION_VERSION = 1
MAX_NODES = 10_000  # a directory bigger than any national system's node count
MAX_CHILDREN = 2_000  # delegations one node may sign
MAX_PREFIXES = 64  # prefixes one delegation may hold
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_RESERVED = RoutingKey(namespace=Namespace.HANDLE, labels=("0",))


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
        self._build(verify(delegations, trust_anchor), trust_anchor)

    def _build(self, by_name: dict[str, Delegation], trust_anchor: bytes) -> None:
        self.by_name = by_name
        self.trust_anchor = trust_anchor
        self._depth = {name: len(self.ancestors(name)) for name in by_name}
        self._routes: list[tuple[RoutingKey, Delegation]] = []
        for d in self.by_name.values():
            for text in d.prefixes:
                self._routes.append((prefix_key(text), d))

    def with_delegation(self, d: Delegation) -> Directory:
        """This directory and ``d``: a new node is checked against what is here alone
        (its issuer's signature, role and space, and the prefixes it would touch), so a
        refused delegation costs nothing like a whole re-verification; a changed one
        (rare: only its parent can sign it) verifies the whole directory again."""
        if d.name in self.by_name:
            merged = {**self.by_name, d.name: d}
            return Directory(list(merged.values()), self.trust_anchor)
        if len(self.by_name) >= MAX_NODES:
            raise Forbidden(f"the directory is full ({MAX_NODES} nodes)")
        if d.parent is None:
            raise Forbidden(f"node {d.name!r} claims to be a second super node")
        issuer = self.by_name.get(d.parent)
        if issuer is None:
            raise Forbidden(f"node {d.name!r} names unknown parent {d.parent!r}")
        children = sum(1 for other in self.by_name.values() if other.parent == issuer.name)
        if children >= MAX_CHILDREN:
            raise Forbidden(f"{issuer.name!r} already has {MAX_CHILDREN} children")
        check_issue(d, issuer)
        lineage = {d.name, *self.ancestors(issuer.name)}
        theirs = [
            (prefix_key(text), other.name)
            for other in self.by_name.values()
            for text in other.prefixes
        ]
        for prefix in (prefix_key(text) for text in d.prefixes):
            for other, holder in theirs:
                _check_pair(prefix, d.name, lineage, other, holder, self._lineage(holder))
        grown = Directory.__new__(Directory)
        grown._build({**self.by_name, d.name: d}, self.trust_anchor)
        return grown

    def kept_prefixes(self, name: str) -> tuple[RoutingKey, ...]:
        """``name``'s prefixes but those it handed down whole to a node below it: the
        ones whose prefix records (``0.NA/P``) it keeps itself."""
        kept = []
        for text in self.by_name[name].prefixes:
            prefix = prefix_key(text)
            found = self.authority(prefix)
            if found is None or found[1].name == name or found[0] != prefix:
                kept.append(prefix)
        return tuple(kept)

    def _lineage(self, name: str) -> set[str]:
        return set(self.ancestors(name))

    def authority(self, routing: RoutingKey) -> tuple[RoutingKey, Delegation] | None:
        """The node delegated the longest prefix of ``routing``, if any; of a parent and
        the child it handed a whole prefix to, the child."""
        best: tuple[RoutingKey, Delegation] | None = None
        for prefix, node in self._routes:
            if prefix.namespace is not routing.namespace:
                continue
            if routing.labels[: len(prefix.labels)] != prefix.labels:
                continue
            if (
                best is None
                or len(prefix.labels) > len(best[0].labels)
                or (
                    len(prefix.labels) == len(best[0].labels)
                    and self._depth[node.name] > self._depth[best[1].name]
                )
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


def covers(outer: RoutingKey, inner: RoutingKey) -> bool:
    """Whether prefix ``inner`` equals or lies inside prefix ``outer``."""
    return outer.namespace is inner.namespace and inner.labels[: len(outer.labels)] == outer.labels


def check_issue(d: Delegation, issuer: Delegation) -> None:
    """The rules one delegation must keep toward the node that signed it; raise if not.

    - Roles: only the super node and backbone nodes sign children; a backbone signs
      sub-chain nodes only; nothing but the root is a super node.
    - Space: a child's prefixes lie inside its issuer's own (a backbone holding ``88``
      may give ``88.100``, or hand ``88`` down whole), except that the super node,
      the root of every namespace, may give any prefix.
    - The handle prefix ``0`` is the prefix-administration namespace (``0.NA/...``,
      RFC 3651 §2): no node is ever given it or anything in it.
    - The issuer's key signed it.
    """
    if d.role is Role.SUPER:
        raise Forbidden(f"node {d.name!r} claims the super role under {issuer.name!r}")
    if issuer.role is Role.SUBCHAIN:
        raise Forbidden(
            f"sub-chain node {issuer.name!r} may not delegate (it signed node {d.name!r})"
        )
    if issuer.role is Role.BACKBONE and d.role is not Role.SUBCHAIN:
        raise Forbidden(
            f"backbone node {issuer.name!r} may delegate sub-chain nodes only, not the "
            f"{d.role.value} node {d.name!r}"
        )
    _check_own(d)
    if issuer.role is not Role.SUPER:
        space = [prefix_key(text) for text in issuer.prefixes]
        for text in d.prefixes:
            prefix = prefix_key(text)
            if not any(covers(own, prefix) for own in space):
                raise Forbidden(
                    f"{issuer.name!r} gives {d.name!r} {prefix}, which is outside its own "
                    f"prefixes ({', '.join(str(p) for p in space) or 'none'})"
                )
    _check_signature(d, issuer)


def _check_own(d: Delegation) -> None:
    """What a delegation must be on its own: an Ed25519 key, bounded, well-formed
    prefixes, none reserved."""
    _node_key(d)
    if len(d.prefixes) > MAX_PREFIXES:
        raise Forbidden(
            f"node {d.name!r} is given {len(d.prefixes)} prefixes (at most {MAX_PREFIXES})"
        )
    if not _NAME.fullmatch(d.name):
        raise Forbidden(
            f"node name {d.name[:64]!r} must be 1 to 64 of A-Z a-z 0-9 . _ - (it names "
            "the node's Kafka topic)"
        )
    for text in d.prefixes:
        prefix = prefix_key(text)
        if covers(_RESERVED, prefix):
            raise Forbidden(
                f"node {d.name!r} is given {prefix}: handle prefix 0 is reserved for prefix "
                "records (0.NA/...)"
            )


def _node_key(d: Delegation) -> ed25519.Ed25519PublicKey:
    """The Ed25519 key a delegation names; raise if it names none (a key of another or
    unknown algorithm would otherwise surface as cryptography's own exception)."""
    try:
        key = load_der_public_key(d.public_key)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise Forbidden(f"node {d.name!r} has no readable key") from exc
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise Forbidden(f"node {d.name!r} has no Ed25519 key")
    return key


def _check_signature(d: Delegation, issuer: Delegation) -> None:
    key = _node_key(issuer)
    try:
        key.verify(d.signature, d.signed_bytes())
    except InvalidSignature:
        raise Forbidden(f"delegation of {d.name!r} is not signed by {issuer.name!r}") from None


def verify(delegations: list[Delegation], trust_anchor: bytes) -> dict[str, Delegation]:
    """The delegations whose signatures chain to ``trust_anchor``; raise on any other.

    A node refuses a directory it cannot verify whole: one bad link is reported, not
    skipped, so an operator sees it.
    """
    if len(delegations) > MAX_NODES:
        raise Forbidden(f"the directory names {len(delegations)} nodes (at most {MAX_NODES})")
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
        if d.parent is not None and d.parent not in by_name:
            raise Forbidden(f"node {d.name!r} names unknown parent {d.parent!r}")
        seen: set[str] = set()
        current: str | None = d.name
        while current is not None:  # parent links must end at the super node
            if current in seen:
                raise Forbidden(f"delegations loop through {current!r}")
            seen.add(current)
            current = by_name[current].parent
    for d in delegations:
        if d.parent is None:
            _check_own(d)
            _check_signature(d, d)
        else:
            check_issue(d, by_name[d.parent])
    _check_carving(by_name)
    return by_name


def _check_carving(by_name: dict[str, Delegation]) -> None:
    """No prefix inside (or equal to) another node's unless that node is an ancestor:
    a parent cannot delegate itself into its neighbour's identifiers."""
    lineages: dict[str, set[str]] = {}
    for name in by_name:
        lineage: set[str] = set()
        current: str | None = name
        while current is not None:
            lineage.add(current)
            current = by_name[current].parent
        lineages[name] = lineage
    held = [(prefix_key(text), d.name) for d in by_name.values() for text in d.prefixes]
    for prefix, name in held:
        for other, holder in held:
            _check_pair(
                prefix, name, lineages[name], other, holder, lineages[holder], both_ways=False
            )


def _check_pair(
    prefix: RoutingKey,
    name: str,
    lineage: set[str],
    other: RoutingKey,
    holder: str,
    holder_lineage: set[str],
    *,
    both_ways: bool = True,
) -> None:
    """``name`` holding ``prefix`` beside ``holder`` holding ``other``: inside or equal
    only below an ancestor."""
    if holder == name or other.namespace is not prefix.namespace:
        return
    if covers(other, prefix) and holder not in lineage:
        if other.labels == prefix.labels and name in holder_lineage:
            return  # the same prefix, handed down to ``holder`` from ``name``
        if other.labels == prefix.labels:
            raise Forbidden(f"prefix {prefix} is delegated to both {holder!r} and {name!r}")
        raise Forbidden(
            f"{name!r} is given {prefix}, inside {other} of {holder!r}, which is not its ancestor"
        )
    if both_ways and covers(prefix, other) and name not in holder_lineage:
        if prefix.labels == other.labels and holder in lineage:
            return
        raise Forbidden(
            f"{name!r} is given {prefix}, which covers {other} of {holder!r}, not its descendant"
        )
