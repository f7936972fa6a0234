"""Domain names for identifiers and prefixes, and back: where a stock DNS client asks.

Under the network's zone (``idres.internal.`` unless configured), read right to left
the way DNS delegates, so each delegated prefix is a zone cut:

    GTIN    <indicator>.<digits 2-13, reversed>.gtin.gs1.id.<zone>   (ONS 2.0.1 §6)
    GLN     <digits 1-12, reversed>.gln.gs1.id.<zone>
    SSCC    <extension>.<digits 2-17, reversed>.sscc.gs1.id.<zone>
    OID     <arcs, reversed>.oid-res.<zone>                          (X.672 §7.3)
    Ecode   <digits, reversed>.ecode.<zone>
    handle  <suffix>._.<prefix segments, reversed>.handle.<zone>
    did:bid <id>[.<sub-chain code>].bid.<zone>
    node    <node name>.ns.<zone>                                    (NS targets, glue)

GS1 names leave out the check digit, as ONS does; it is computed back. A handle's
suffix is one label, under a ``_`` label that keeps suffixes apart from the prefix
segments below which sub-prefixes are cut.

DNS names compare without ASCII case (RFC 4343): kdig lowercases what it sends, caches
fold case. So a case-sensitive part (a handle's suffix, a did:bid's id) is written as
itself when it has no lowercase ASCII letter (read back upper-cased); as ``lc-`` and
itself when it has no uppercase one (read back lower-cased); otherwise, or when it
starts with one of the marks, as ``b32-`` and its UTF-8 in base32 (RFC 4648 §6,
lowercase, no padding): letters, digits and hyphens, which every zone-file reader
takes. Each part has one spelling; it must fit a label's 63 bytes. Nothing here does
I/O.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import dns.name

from schemas.errors import InvalidIdentifier
from schemas.identifiers import Identifier, Namespace, RoutingKey, Scheme, check_digit, parse
from schemas.identifiers.handle import SEGMENT_CHARS

DEFAULT_ZONE = "idres.internal."
SUFFIX_MARK = b"_"
ENCODED = "b32-"  # a label in base32: the part has letters in both cases
LOWER = "lc-"  # a label read back lower-cased: the part has lowercase letters only
_MARKS = (ENCODED, LOWER)
MAX_LABEL = 63  # RFC 1035 §2.3.4

# GS1 key kind -> (labels in a full name, whether its leftmost label is an indicator or
# extension digit that routing skips); the other digits route from the company prefix
_GS1_KINDS: dict[bytes, tuple[int, bool]] = {
    b"gtin": (13, True),
    b"gln": (12, False),
    b"sscc": (17, True),
}
_GS1_LABEL = {Scheme.GTIN: b"gtin", Scheme.GLN: b"gln", Scheme.SSCC: b"sscc"}
_DIGITS = frozenset(b"0123456789")
_SEGMENT_BYTES = frozenset("".join(SEGMENT_CHARS).encode())  # a handle prefix segment's


@dataclass(frozen=True, slots=True)
class Named:
    """A name that is one identifier's."""

    ident: Identifier


@dataclass(frozen=True, slots=True)
class Inner:
    """A name inside a namespace but above its identifiers: a prefix, which may be a
    zone cut, a zone's apex or an empty non-terminal. ``routing`` None: above the
    namespaces (the zone's apex, ``gs1.id``, ``ns``)."""

    routing: RoutingKey | None


@dataclass(frozen=True, slots=True)
class NodeHost:
    """``<node>.ns.<zone>``: the name an NS record points at, with the node's address."""

    node: str


Place = Named | Inner | NodeHost


def zone_name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def locate(qname: dns.name.Name, zone: dns.name.Name) -> Place | None:
    """What ``qname`` (under ``zone``) names; None: no such name can exist (NXDOMAIN)."""
    path = tuple(reversed(qname.relativize(zone).labels))  # from the zone downwards
    if not path:
        return Inner(None)
    top = path[0].lower()
    rest = path[1:]
    if top == b"ns":
        if not rest:
            return Inner(None)
        try:
            return NodeHost(".".join(label.decode("ascii") for label in reversed(rest)).lower())
        except UnicodeDecodeError:
            return None
    if top == b"id":
        if not rest:
            return Inner(None)
        if rest[0].lower() != b"gs1":
            return None
        if len(rest) == 1:
            return Inner(None)
        return _gs1(rest[1].lower(), rest[2:])
    if top == b"oid-res":
        return _oid(rest)
    if top == b"ecode":
        return _ecode(rest)
    if top == b"handle":
        return _handle(rest)
    if top == b"bid":
        return _bid(rest)
    return None


def _digits(labels: tuple[bytes, ...]) -> str | None:
    if any(len(label) != 1 or label[0] not in _DIGITS for label in labels):
        return None
    return b"".join(labels).decode()


def _gs1(kind: bytes, below: tuple[bytes, ...]) -> Place | None:
    shape = _GS1_KINDS.get(kind)
    digits = _digits(below)
    if shape is None or digits is None:
        return None
    full, lead = shape
    if len(digits) < full:
        return Inner(RoutingKey(namespace=Namespace.GS1, labels=tuple(digits)))
    if len(digits) > full:
        return None
    # the leftmost label (read last here) is the indicator or extension digit
    data = (digits[-1] + digits[:-1]) if lead else digits
    text = data + str(check_digit(data))
    label = {b"gln": "gln:", b"sscc": "sscc:"}.get(kind, "")
    try:
        return Named(parse(label + text))
    except InvalidIdentifier:
        return None


def _oid(arcs: tuple[bytes, ...]) -> Place | None:
    if any(not label.isdigit() or (len(label) > 1 and label[0] == 0x30) for label in arcs):
        return None
    text = b".".join(arcs).decode()
    if len(arcs) >= 2:
        try:
            return Named(parse("oid:" + text))
        except InvalidIdentifier:
            return None
    return Inner(RoutingKey(namespace=Namespace.OID, labels=tuple(a.decode() for a in arcs)))


def _ecode(below: tuple[bytes, ...]) -> Place | None:
    digits = _digits(below)
    if digits is None:
        return None
    try:
        return Named(parse("ecode:" + digits))
    except InvalidIdentifier:  # a prefix of one, or no name at all
        return Inner(RoutingKey(namespace=Namespace.ECODE, labels=tuple(digits)))


def _handle(below: tuple[bytes, ...]) -> Place | None:
    marked = SUFFIX_MARK in below
    mark = below.index(SUFFIX_MARK) if marked else len(below)
    segments, after = below[:mark], below[mark + 1 :]
    if any(not set(seg) <= _SEGMENT_BYTES for seg in segments):
        return None
    routing = RoutingKey(
        namespace=Namespace.HANDLE, labels=tuple(seg.decode().upper() for seg in segments)
    )
    if not marked:
        return Inner(routing)
    if not segments or len(after) > 1:
        return None
    if not after:
        return Inner(routing)  # the empty non-terminal above the prefix's suffixes
    suffix = read_label(after[0])
    if suffix is None:
        return None
    try:
        return Named(parse(".".join(routing.labels) + "/" + suffix))
    except InvalidIdentifier:
        return None


def _bid(below: tuple[bytes, ...]) -> Place | None:
    if not below:
        return Inner(RoutingKey(namespace=Namespace.BID, labels=()))
    if len(below) > 2 or not all(label.isascii() for label in below):
        return None
    first = below[0].decode().lower()
    if len(below) == 1 and len(first) == 4:  # a sub-chain code: ids are longer
        return Inner(RoutingKey(namespace=Namespace.BID, labels=(first,)))
    ident = read_label(below[-1])
    if ident is None:
        return None
    text = ident if len(below) == 1 else f"{first}:{ident}"
    try:
        return Named(parse("did:bid:" + text))
    except InvalidIdentifier:
        return None


def owner(ident: Identifier, zone: dns.name.Name) -> dns.name.Name | None:
    """The name ``ident``'s records sit at; None when it has none (a handle suffix over
    63 bytes, a did:cn, which names a prefix)."""
    canonical = ident.canonical
    if ident.scheme in _GS1_LABEL:
        digits = canonical.removeprefix("gln:")[:-1]  # the check digit is computed back
        if ident.scheme is Scheme.GLN:
            labels = tuple(reversed(digits))
        else:
            labels = (digits[0], *reversed(digits[1:]))
        return _name((*labels, _GS1_LABEL[ident.scheme], b"gs1", b"id"), zone)
    if ident.scheme is Scheme.OID:
        return _name((*reversed(canonical.split(".")), b"oid-res"), zone)
    if ident.scheme is Scheme.ECODE:
        return _name((*reversed(canonical.removeprefix("ecode:")), b"ecode"), zone)
    if ident.scheme is Scheme.HANDLE:
        prefix, _, suffix = canonical.partition("/")
        label = write_label(suffix)
        segments = prefix.split(".")
        if label is None or SUFFIX_MARK.decode() in segments:  # no name tells it apart
            return None
        return _name((label, SUFFIX_MARK, *reversed(segments), b"handle"), zone)
    if ident.scheme is Scheme.DID_BID:
        *code, idstring = canonical.removeprefix("did:bid:").split(":")
        label = write_label(idstring)
        return None if label is None else _name((label, *code, b"bid"), zone)
    return None


def write_label(text: str) -> bytes | None:
    """A case-sensitive part as one label that survives case folding; None when it
    would outgrow a label."""
    raw = text.encode()
    lower = any(0x61 <= b <= 0x7A for b in raw)
    upper = any(0x41 <= b <= 0x5A for b in raw)
    if text.lower().startswith(_MARKS) or (lower and upper):
        raw = ENCODED.encode() + base64.b32encode(raw).rstrip(b"=").lower()
    elif lower:
        raw = LOWER.encode() + raw
    return raw if len(raw) <= MAX_LABEL else None


def read_label(label: bytes) -> str | None:
    """What ``write_label`` wrote, in whatever case it arrives; None for a label it
    would not have written (each part has one spelling)."""
    folded = label.lower()
    try:
        if folded.startswith(ENCODED.encode()):
            body = label[len(ENCODED) :].upper()
            text = base64.b32decode(body + b"=" * (-len(body) % 8)).decode()
        elif folded.startswith(LOWER.encode()):
            text = folded[len(LOWER) :].decode()
        else:
            text = label.upper().decode()  # upper() folds ASCII letters only
    except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError
        return None
    written = write_label(text)
    return text if written is not None and written.lower() == folded else None


def cuts(prefix: RoutingKey, zone: dns.name.Name) -> tuple[dns.name.Name, ...]:
    """The names where a delegated prefix's zones start (three for a GS1 prefix: one
    for each kind of key it may begin; none where no name of the kind has that many)."""
    labels = prefix.labels
    if prefix.namespace is Namespace.GS1:
        names = [
            _name((*reversed(labels), kind, b"gs1", b"id"), zone)
            for kind, (full, lead) in _GS1_KINDS.items()
            if len(labels) <= full - (1 if lead else 0)
        ]
    elif prefix.namespace is Namespace.HANDLE and SUFFIX_MARK.decode() in labels:
        names = []  # a segment "_": its names would read as suffixes
    else:
        tail = {
            Namespace.HANDLE: b"handle",
            Namespace.OID: b"oid-res",
            Namespace.ECODE: b"ecode",
            Namespace.BID: b"bid",
        }[prefix.namespace]
        names = [_name((*reversed(labels), tail), zone)]
    return tuple(n for n in names if n is not None)


def ns_host(node: str, zone: dns.name.Name) -> dns.name.Name:
    """``<node>.ns.<zone>``; a node name DNS cannot carry (64 characters, ``..``) goes
    as ``n-`` and a digest of it."""
    found = _name((*node.lower().split("."), b"ns"), zone)
    if found is None:
        digest = hashlib.sha256(node.encode()).hexdigest()[:20]
        found = _name((f"n-{digest}", b"ns"), zone)
        assert found is not None  # a short label under a zone that has room for one
    return found


def _name(labels: tuple[str | bytes, ...], zone: dns.name.Name) -> dns.name.Name | None:
    """The name, or None where DNS has none: a label over 63 bytes, a name over 255
    (an OID arc of 64 digits, a deep handle prefix), an empty label."""
    raw = tuple(label.encode() if isinstance(label, str) else label for label in labels)
    try:
        return dns.name.Name(raw + zone.labels)
    except (dns.name.NameTooLong, dns.name.LabelTooLong, dns.name.EmptyLabel):
        return None
