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
import ipaddress
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
from schemas.identifiers.prefix import delegated_prefix

DELEGATION_VERSION = 1
MAX_NODES = 10_000  # a directory bigger than any national system's node count
MAX_CHILDREN = 2_000  # delegations one node may sign
MAX_PREFIXES = 64  # prefixes one delegation may hold
MAX_PREFIXES_TOTAL = 20_000  # prefixes a directory may hold, all nodes together
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
    # the address the node's DNS face answers on (resolver/dns): the glue its parent's
    # zone gives for it. Signed with the rest, so glue is as trusted as the URL.
    dns: str | None = None
    # where the node's Handle protocol face answers (resolver/handle), ADDRESS:PORT
    # ([v6]:PORT): the HS_SITE a Handle referral to it names. Signed with the rest.
    handle: str | None = None

    def signed_bytes(self) -> bytes:
        """Deterministic CBOR of everything but the signature (RFC 8949 §4.2.1); a
        delegation without ``dns`` or ``handle`` signs the bytes it signed before the
        field existed."""
        fields: dict[str, Any] = {
            "v": DELEGATION_VERSION,
            "url": self.url,
            "name": self.name,
            "role": self.role.value,
            "issued": self.issued,
            "parent": self.parent,
            "prefixes": list(self.prefixes),
            "publicKey": self.public_key,
        }
        if self.dns is not None:
            fields["dns"] = self.dns
        if self.handle is not None:
            fields["handle"] = self.handle
        return cbor2.dumps(fields, canonical=True)

    def to_json(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "role": self.role.value,
            "url": self.url,
            "parent": self.parent,
            "prefixes": list(self.prefixes),
            "publicKey": base64.b64encode(self.public_key).decode(),
            "issued": self.issued,
            "signature": base64.b64encode(self.signature).decode(),
        }
        if self.dns is not None:
            out["dns"] = self.dns
        if self.handle is not None:
            out["handle"] = self.handle
        return out

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
                issued=_uint(obj["issued"], "issued"),
                signature=base64.b64decode(obj["signature"], validate=True),
                dns=_address(obj.get("dns")),
                handle=_address_port(obj.get("handle")),
            )
        except (KeyError, TypeError, ValueError, OverflowError, binascii.Error) as exc:
            raise EncodingError(f"malformed delegation: {exc!r}") from exc


def _address(value: Any) -> str | None:
    """A delegation's DNS address: an IPv4 or IPv6 address in its canonical form (as
    signed: another spelling would be another signature's bytes)."""
    if value is None:
        return None
    if not isinstance(value, str) or str(ipaddress.ip_address(value)) != value:
        raise ValueError("dns must be an IP address in its canonical form")
    return value


def _address_port(value: Any) -> str | None:
    """A delegation's Handle face: ``ADDRESS:PORT`` (``[v6]:PORT``), the address in its
    canonical form (as signed)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("handle must be ADDRESS:PORT")
    host, _, port = value.rpartition(":")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        address = None
    shown = f"[{address}]" if address and address.version == 6 else str(address)
    if shown != host or not port.isdigit() or not 0 < int(port) < 65536 or str(int(port)) != port:
        raise ValueError(f"handle {value!r} is not ADDRESS:PORT, the address in canonical form")
    return value


def handle_address(value: str) -> tuple[str, int]:
    """A checked ``handle`` field's address and port."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def _uint(value: Any, what: str) -> int:
    """An integer field of a delegation: a JSON or CBOR float (Infinity, say) is not one."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValueError(f"{what} must be an integer from 0 to 2^63 - 1")
    return value


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
        "dns": d.dns,
        "handle": d.handle,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """Where a lookup goes: answer here, ask ``node`` next, or nowhere holds it."""

    kind: str  # "local" | "down" | "up" | "none"
    node: Delegation | None = None  # the next hop for "down" and "up"
    authority: Delegation | None = None  # the node that holds the identifier
    prefix: RoutingKey | None = None  # the delegated prefix that matched


_Key = tuple[Namespace, tuple[str, ...]]


class _Index:
    """Where prefixes sit, so that routing and the carving checks cost about a prefix's
    length, not the directory's size: ``held`` maps each delegated prefix to its
    holders (two when one was handed down whole), ``under`` each proper label-prefix
    of a delegated prefix to the delegated prefixes below it."""

    def __init__(self) -> None:
        self.held: dict[_Key, list[str]] = {}
        self.under: dict[_Key, list[tuple[RoutingKey, str]]] = {}
        self.count = 0

    def add(self, name: str, prefix: RoutingKey) -> None:
        self.held.setdefault((prefix.namespace, prefix.labels), []).append(name)
        for n in range(len(prefix.labels)):
            key = (prefix.namespace, prefix.labels[:n])
            self.under.setdefault(key, []).append((prefix, name))
        self.count += 1

    def above(self, prefix: RoutingKey) -> list[tuple[RoutingKey, str]]:
        """The delegated prefixes equal to or above ``prefix``, with their holders."""
        return [
            (RoutingKey(namespace=prefix.namespace, labels=prefix.labels[:n]), holder)
            for n in range(len(prefix.labels) + 1)
            for holder in self.held.get((prefix.namespace, prefix.labels[:n]), ())
        ]

    def around(self, prefix: RoutingKey) -> list[tuple[RoutingKey, str]]:
        """The delegated prefixes equal to, above or below ``prefix``, with holders."""
        return self.above(prefix) + self.under.get((prefix.namespace, prefix.labels), [])


class Directory:
    """A verified set of delegations with longest-prefix routing over all namespaces."""

    def __init__(self, delegations: list[Delegation], trust_anchor: bytes) -> None:
        self._build(*verify(delegations, trust_anchor), trust_anchor)

    def _build(self, by_name: dict[str, Delegation], index: _Index, trust_anchor: bytes) -> None:
        self.by_name = by_name
        self.trust_anchor = trust_anchor
        # shared with the directories grown from this one: each reads only the holders
        # its own by_name names (a node added later is invisible to the older one)
        self._index = index
        self._depth = {name: len(self.ancestors(name)) for name in by_name}
        self._below: dict[str, tuple[tuple[RoutingKey, str], ...]] = {}

    def with_delegation(self, d: Delegation) -> Directory:
        """This directory and ``d``, checked against what is here alone: its issuer's
        signature first (a forged message costs one signature check), then its role,
        space and the prefixes around its own. A changed delegation (only its parent
        can sign one) is checked the same way, and its children against it."""
        held = self.by_name.get(d.name)
        if held is None and len(self.by_name) >= MAX_NODES:
            raise Forbidden(f"the directory is full ({MAX_NODES} nodes)")
        if d.parent is None:
            if held is None:
                raise Forbidden(f"node {d.name!r} claims to be a second super node")
            if d.public_key != self.trust_anchor:
                raise Forbidden("the super node's key in the directory is not the trusted one")
            _check_own(d)
            _check_signature(d, d)
        else:
            issuer = self.by_name.get(d.parent)
            if issuer is None:
                raise Forbidden(f"node {d.name!r} names unknown parent {d.parent!r}")
            _check_signature(d, issuer)  # before any other work: forgeries stop here
            if held is None:
                children = sum(1 for o in self.by_name.values() if o.parent == issuer.name)
                if children >= MAX_CHILDREN:
                    raise Forbidden(f"{issuer.name!r} already has {MAX_CHILDREN} children")
            check_issue(d, issuer)
        if self._index.count + len(d.prefixes) > MAX_PREFIXES_TOTAL:
            raise Forbidden(f"the directory is full ({MAX_PREFIXES_TOTAL} prefixes)")
        by_name = {**self.by_name, d.name: d}
        if held is not None:  # a change: its children must still fit it, then a new index
            for child in by_name.values():
                if child.parent == d.name:
                    check_issue(child, d)
            index = _index_of(by_name)
            lineages = {name: self._lineage(name) for name in by_name}
            for text in d.prefixes:
                _check_around(prefix_key(text), d.name, lineages, index)
        else:
            lineage = {d.name, *self.ancestors(d.parent or d.name)}
            for text in d.prefixes:
                prefix = prefix_key(text)
                for other, holder in self._index.around(prefix):
                    if holder in self.by_name:
                        _check_pair(prefix, d.name, lineage, other, holder, self._lineage(holder))
            index = self._index
            for text in d.prefixes:
                index.add(d.name, prefix_key(text))
        grown = Directory.__new__(Directory)
        grown._build(by_name, index, self.trust_anchor)
        return grown

    def check_signed(self, d: Delegation) -> None:
        """Raise unless the node ``d`` names as parent (itself, for the super node) is here
        and signed ``d``: the one check a forged message costs."""
        issuer = self.by_name.get(d.parent) if d.parent is not None else self.by_name.get(d.name)
        if issuer is None:
            raise Forbidden(f"node {d.name!r} names unknown parent {d.parent!r}")
        _check_signature(d, issuer)

    def delegated_below(self, name: str) -> tuple[tuple[RoutingKey, str], ...]:
        """The prefixes the nodes below ``name`` hold inside its own (88.100 inside 88, or
        a prefix handed down whole), with their holders; worked out once per directory
        (a node asks at every write)."""
        found = self._below.get(name)
        if found is None:
            found = tuple(
                (prefix, holder)
                for text in self.by_name[name].prefixes
                for prefix, holder in self._index.around(prefix_key(text))
                if holder != name
                and holder in self.by_name
                and name in self.ancestors(holder)
                and covers(prefix_key(text), prefix)
            )
            self._below[name] = found
        return found

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
        for n in range(len(routing.labels), -1, -1):
            holders = [
                self.by_name[h]
                for h in self._index.held.get((routing.namespace, routing.labels[:n]), ())
                if h in self.by_name
            ]
            if holders:
                node = max(holders, key=lambda h: self._depth[h.name])
                return RoutingKey(namespace=routing.namespace, labels=routing.labels[:n]), node
        return None

    def holder_url(self, here: str, routing: RoutingKey) -> str | None:
        """The URL of the node that holds ``routing``, for a write that reached node
        ``here``; None when ``here`` holds it or nobody does."""
        found = self.authority(routing)
        if found is None or found[1].name == here:
            return None
        return found[1].url

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
    return delegated_prefix(text)


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


def verify(
    delegations: list[Delegation], trust_anchor: bytes
) -> tuple[dict[str, Delegation], _Index]:
    """The delegations whose signatures chain to ``trust_anchor``, by name, and the index
    of their prefixes; raise on any other.

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
    return by_name, _check_carving(by_name)


def _index_of(by_name: dict[str, Delegation]) -> _Index:
    index = _Index()
    for d in by_name.values():
        for text in d.prefixes:
            index.add(d.name, prefix_key(text))
    return index


def _check_carving(by_name: dict[str, Delegation]) -> _Index:
    """No prefix inside (or equal to) another node's unless that node is an ancestor:
    a parent cannot delegate itself into its neighbour's identifiers. Returns the index
    the check was made with."""
    lineages: dict[str, set[str]] = {}
    for name in by_name:
        lineage: set[str] = set()
        current: str | None = name
        while current is not None:
            lineage.add(current)
            current = by_name[current].parent
        lineages[name] = lineage
    index = _index_of(by_name)
    if index.count > MAX_PREFIXES_TOTAL:
        raise Forbidden(
            f"the directory names {index.count} prefixes (at most {MAX_PREFIXES_TOTAL})"
        )
    for d in by_name.values():
        for text in d.prefixes:
            _check_around(prefix_key(text), d.name, lineages, index, both_ways=False)
    return index


def _check_around(
    prefix: RoutingKey,
    name: str,
    lineages: dict[str, set[str]],
    index: _Index,
    *,
    both_ways: bool = True,
) -> None:
    """``name``'s ``prefix`` against every delegated prefix equal to, above or (with
    ``both_ways``) below it."""
    found = index.around(prefix) if both_ways else index.above(prefix)
    for other, holder in found:
        _check_pair(
            prefix, name, lineages[name], other, holder, lineages[holder], both_ways=both_ways
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
