"""A deployment's description (names, roles, parents, prefixes, URLs) as checked values.

``idres deploy`` reads a small TOML or JSON file into a ``Layout``; this module turns
the parsed mapping into one, with every mistake reported at once by field, and holds
the rules of requests and signed delegations against it. Nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from resolver.topology import Delegation, Directory, Role, check_issue, sign_delegation
from schemas.errors import EncodingError, Forbidden

DEFAULT_IDRES = "idres"
DEFAULT_DIRECTORY = "/etc/idres/nodes.json"
DEFAULT_DATA_ROOT = "/var/lib/idres"
DEFAULT_LISTEN_HOST = "0.0.0.0"
REQUEST_KIND = "idres delegation request"
_NETWORK_KEYS = frozenset({"idres", "directory", "kafka", "kafka_passwords"})
_NODE_KEYS = frozenset(
    {
        "name",
        "role",
        "parent",
        "url",
        "prefixes",
        "listen",
        "data_dir",
        "database_url",
        "admin_key",
        "dns",
        "handle",
    }
)
# the fields a delegation signs that the layout decides (the key is the node's own)
_SIGNED_FIELDS = ("role", "url", "parent", "prefixes", "dns", "handle")


class LayoutError(ValueError):
    """A description, request or delegation that does not fit: every problem found,
    each as ``(where, what)``, e.g. ``("node[2].parent", "names no node")``."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{where}: {what}" for where, what in problems))


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedNode:
    """One node as its description gives it: what its delegation signs, and where it
    runs (its listening address, data directory, database, admin key)."""

    name: str
    role: Role
    parent: str | None
    url: str
    prefixes: tuple[str, ...]
    listen_host: str
    listen_port: int
    data_dir: str
    database_url: str | None = None  # None: an embedded PostgreSQL under data_dir
    admin_key: str | None = None  # None: data_dir/admin.pem, made on first start
    dns: str | None = None
    handle: str | None = None

    def unsigned(self, public_key: bytes, *, issued: int = 0) -> Delegation:
        """The delegation this node is to have, for ``public_key``, not signed yet."""
        return Delegation(
            name=self.name,
            role=self.role,
            url=self.url,
            parent=self.parent,
            prefixes=self.prefixes,
            public_key=public_key,
            issued=issued,
            dns=self.dns,
            handle=self.handle,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """The whole description: where things sit on every machine, and the nodes in the
    order given (the super node first in what is written out)."""

    nodes: tuple[PlannedNode, ...]
    idres: str = DEFAULT_IDRES  # the command on each machine
    directory: str = DEFAULT_DIRECTORY  # where nodes.json is on each machine
    kafka: str | None = None  # KAFKA_BOOTSTRAP; None: each chain stays on its node
    kafka_passwords: str | None = None  # DIR/NAME.password (idres kafka-acl); None: no SASL
    by_name: Mapping[str, PlannedNode] = field(default_factory=dict, compare=False)

    def node(self, name: str) -> PlannedNode:
        found = self.by_name.get(name)
        if found is None:
            raise LayoutError([(name, f"no node of that name ({', '.join(self.by_name)})")])
        return found


def _str(value: Any, where: str, problems: list[tuple[str, str]]) -> str | None:
    if not isinstance(value, str) or not value:
        problems.append((where, "must be a non-empty string"))
        return None
    return value


def _optional(
    obj: Mapping[str, Any], key: str, where: str, problems: list[tuple[str, str]]
) -> str | None:
    if key not in obj:
        return None
    return _str(obj[key], f"{where}.{key}", problems)


def _listen(
    text: str | None, url: str | None, where: str, problems: list[tuple[str, str]]
) -> tuple[str, int]:
    """Where ``idres serve`` binds: ``HOST:PORT`` as given, else any address and the
    URL's port."""
    if text is not None:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            problems.append((f"{where}.listen", f"{text!r} is not HOST:PORT"))
            return DEFAULT_LISTEN_HOST, 0
        return host.strip("[]") or DEFAULT_LISTEN_HOST, int(port)
    if url is None:
        return DEFAULT_LISTEN_HOST, 0
    parts = urlsplit(url)  # checked by _url: the port is a number or absent
    return DEFAULT_LISTEN_HOST, parts.port or (443 if parts.scheme == "https" else 80)


def _url(value: Any, where: str, problems: list[tuple[str, str]]) -> str | None:
    text = _str(value, where, problems)
    if text is None:
        return None
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        problems.append((where, f"{text!r} has a port that is not a number"))
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        problems.append((where, f"{text!r} must be http(s)://HOST[:PORT], without a path"))
        return None
    return text.rstrip("/")


def _node(obj: Any, i: int, problems: list[tuple[str, str]]) -> PlannedNode | None:
    where = f"node[{i}]"
    if not isinstance(obj, Mapping):
        problems.append((where, "must be a table of name, role, url, prefixes..."))
        return None
    name = _str(obj.get("name"), f"{where}.name", problems)
    if name is not None:
        where = f"node {name!r}"
    for key in sorted(set(obj) - _NODE_KEYS):
        problems.append(
            (f"{where}.{key}", f"unknown field (known: {', '.join(sorted(_NODE_KEYS))})")
        )
    role: Role | None = None
    try:
        role = Role(str(obj.get("role")))
    except ValueError:
        problems.append((f"{where}.role", "must be super, backbone or subchain"))
    parent = _optional(obj, "parent", where, problems)
    if role is Role.SUPER and parent is not None:
        problems.append((f"{where}.parent", "the super node has no parent"))
    if role is not None and role is not Role.SUPER and parent is None:
        problems.append((f"{where}.parent", f"a {role.value} node needs its parent's name"))
    url = _url(obj.get("url"), f"{where}.url", problems)
    prefixes = obj.get("prefixes", [])
    if not isinstance(prefixes, list) or not all(isinstance(p, str) and p for p in prefixes):
        problems.append((f"{where}.prefixes", 'must be a list of prefixes, e.g. ["88.100"]'))
        prefixes = []
    listen_host, listen_port = _listen(
        _optional(obj, "listen", where, problems), url, where, problems
    )
    data_dir = _optional(obj, "data_dir", where, problems)
    # as far as it could be read, with its problems noted: its name, role and parent
    # still count in the checks across nodes
    return PlannedNode(
        name=name or "",
        role=role or Role.SUBCHAIN,
        parent=parent,
        url=url or "",
        prefixes=tuple(prefixes),
        listen_host=listen_host,
        listen_port=listen_port,
        data_dir=data_dir or f"{DEFAULT_DATA_ROOT}/{name}",
        database_url=_optional(obj, "database_url", where, problems),
        admin_key=_optional(obj, "admin_key", where, problems),
        dns=_optional(obj, "dns", where, problems),
        handle=_optional(obj, "handle", where, problems),
    )


def layout_from(obj: Any) -> Layout:
    """A checked ``Layout`` from a parsed description (TOML or JSON); ``LayoutError``
    with every problem otherwise, the hierarchy's rules included (roles, parents,
    prefixes inside the parent's: those a directory would refuse)."""
    problems: list[tuple[str, str]] = []
    if not isinstance(obj, Mapping):
        raise LayoutError([("description", "must be a table with [network] and [[node]]s")])
    for key in sorted(set(obj) - {"network", "node"}):
        problems.append((key, "unknown section (known: network, node)"))
    network = obj.get("network", {})
    if not isinstance(network, Mapping):
        problems.append(("network", "must be a table"))
        network = {}
    for key in sorted(set(network) - _NETWORK_KEYS):
        problems.append(
            (f"network.{key}", f"unknown field (known: {', '.join(sorted(_NETWORK_KEYS))})")
        )
    raw = obj.get("node")
    if not isinstance(raw, list) or not raw:
        problems.append(("node", "give the nodes as [[node]] tables, the super node among them"))
        raw = []
    nodes = [n for i, item in enumerate(raw) if (n := _node(item, i, problems)) is not None]
    by_name: dict[str, PlannedNode] = {}
    for n in nodes:
        if not n.name:  # reported already
            continue
        if n.name in by_name:
            problems.append((f"node {n.name!r}", "named twice"))
        by_name[n.name] = n
    for n in nodes:
        if n.parent is not None and n.parent not in by_name:
            problems.append((f"node {n.name!r}.parent", f"{n.parent!r} names no node"))
    roots = [n for n in nodes if n.role is Role.SUPER]
    if raw and len(roots) != 1:
        problems.append(("node", f"exactly one super node, not {len(roots)}"))
    layout = Layout(
        nodes=tuple(sorted(nodes, key=lambda n: n.role is not Role.SUPER)),
        idres=_optional(network, "idres", "network", problems) or DEFAULT_IDRES,
        directory=_optional(network, "directory", "network", problems) or DEFAULT_DIRECTORY,
        kafka=_optional(network, "kafka", "network", problems),
        kafka_passwords=_optional(network, "kafka_passwords", "network", problems),
        by_name=by_name,
    )
    if problems:
        raise LayoutError(problems)
    _check_rules(layout)
    return layout


def _check_rules(layout: Layout) -> None:
    """The hierarchy's rules, as a node checks a directory: the layout signed with
    throw-away keys must make a directory that verifies (``resolver.topology``), so a
    description that passes here makes a ``nodes.json`` that every node accepts."""
    keys = {n.name: ed25519.Ed25519PrivateKey.generate() for n in layout.nodes}
    signed = [
        sign_delegation(
            n.unsigned(public_der(keys[n.name])), keys[n.parent if n.parent else n.name]
        )
        for n in layout.nodes
    ]
    try:
        Directory(signed, trust_anchor=signed[0].public_key)
    except (Forbidden, EncodingError) as exc:
        raise LayoutError([("hierarchy", exc.message)]) from exc


def public_der(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


# A request: what a node's operator sends the operator of its parent. It carries the
# node's public key and what the layout gives it, so that the parent can see what
# it is asked to sign; the parent signs what the layout says, never more.


def request_json(node: PlannedNode, public_key: bytes) -> dict[str, Any]:
    body = node.unsigned(public_key).to_json()
    del body["issued"], body["signature"]
    return {"kind": REQUEST_KIND, **body}


def request_from(obj: Any) -> Delegation:
    """A request's delegation, unsigned (``issued`` 0); ``LayoutError`` if it is none."""
    if not isinstance(obj, Mapping) or obj.get("kind") != REQUEST_KIND:
        raise LayoutError([("request", f"not an {REQUEST_KIND} (made by idres deploy request)")])
    try:
        return Delegation.from_json({**obj, "issued": 0, "signature": ""})
    except EncodingError as exc:
        raise LayoutError([("request", exc.message)]) from exc


def differences(d: Delegation, node: PlannedNode) -> list[tuple[str, str]]:
    """Where ``d`` departs from what the layout gives ``node`` (its key aside)."""
    want = node.unsigned(d.public_key)
    return [
        (f"{d.name}.{name}", f"{getattr(d, name)!r}, but the layout says {getattr(want, name)!r}")
        for name in _SIGNED_FIELDS
        if getattr(d, name) != getattr(want, name)
    ]


def sign_request(
    layout: Layout,
    request: Delegation,
    key: ed25519.Ed25519PrivateKey,
    *,
    issued: int,
    parent: Delegation | None = None,
) -> Delegation:
    """The delegation ``request`` asks for, signed with ``key``: the key of the node's
    parent in the layout (the super node's own for itself). With ``parent`` (the
    parent's signed delegation), the key must be the one it names and the child must
    keep the rules toward it."""
    node = layout.node(request.name)
    problems = differences(request, node)
    signer = public_der(key)
    if node.parent is None and signer != request.public_key:
        problems.append(
            ("key", f"the super node {node.name!r} signs its own delegation: give its own key")
        )
    if node.parent is not None and signer == request.public_key:
        problems.append(
            (
                "key",
                f"this is {node.name!r}'s own key; its parent "
                f"{node.parent!r} signs its delegation, with the parent's key",
            )
        )
    if parent is not None:
        if parent.name != node.parent:
            problems.append(
                ("parent", f"{parent.name!r} is not {node.name!r}'s parent ({node.parent!r})")
            )
        elif parent.public_key != signer:
            problems.append(("key", f"not the key of {parent.name!r} that its delegation names"))
    if problems:
        raise LayoutError(problems)
    signed = sign_delegation(replace(request, issued=issued), key)
    if parent is not None:
        try:
            check_issue(signed, parent)
        except Forbidden as exc:
            raise LayoutError([("hierarchy", exc.message)]) from exc
    return signed


def delegation_from(obj: Any, where: str) -> Delegation:
    try:
        return Delegation.from_json(obj)
    except EncodingError as exc:
        raise LayoutError([(where, exc.message)]) from exc


def assemble(
    layout: Layout, signed: list[Delegation], *, trust_anchor: bytes | None = None
) -> list[Delegation]:
    """The directory (``nodes.json``'s list) of the layout's nodes, in its order, from
    their signed delegations; ``LayoutError`` unless each node has exactly one, as the
    layout gives it, and the whole verifies against ``trust_anchor`` (default: the
    super node's key in it, which its operator should confirm)."""
    problems: list[tuple[str, str]] = []
    found: dict[str, Delegation] = {}
    for d in signed:
        if d.name not in layout.by_name:
            problems.append((d.name, "is not a node of the layout"))
        elif d.name in found:
            problems.append((d.name, "given twice"))
        else:
            found[d.name] = d
            problems += differences(d, layout.by_name[d.name])
    missing = [n.name for n in layout.nodes if n.name not in found]
    if missing:
        problems.append(("missing", f"no signed delegation of {', '.join(missing)}"))
    if problems:
        raise LayoutError(problems)
    ordered = [found[n.name] for n in layout.nodes]
    try:
        Directory(ordered, trust_anchor=trust_anchor or ordered[0].public_key)
    except Forbidden as exc:
        raise LayoutError([("directory", exc.message)]) from exc
    return ordered


def anchor_text(public_key: bytes) -> str:
    return base64.b64encode(public_key).decode()


def anchor_from(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise LayoutError([("trust anchor", "not base64 DER")]) from exc
