"""The tamper-evident log of one chain: hash-chained entries, Merkle blocks, signatures.

Every node keeps a chain of what it accepted. Entries (operations, and anchors of the
child chains' blocks) are numbered from 1 and each hashes the one before it. Entries
are grouped into blocks; a block header names the chain, its height, the previous
block's hash, the last entry's hash and the Merkle root of the block's entries
(RFC 6962 §2.1), and is signed with the node's Ed25519 key. A block travels whole as
one message. Everything is deterministic CBOR (RFC 8949 §4.2.1); nothing here does
I/O, so the same code checks a block off the wire, a row in PostgreSQL or a proof.

Message (version 1), a map:
    "v": 1, "sig": bytes (Ed25519 over the header bytes), "header": bytes,
    "entries": [[kind, payload], ...]  kind "op" (schemas.oplog) or "anchor"
header (version 1), a map:
    "v": 1, "at": uint (ms), "alg": "sha256" | "sm3", "head": bytes, "prev": bytes,
    "root": bytes, "chain": text, "count": uint, "first": uint, "height": uint
entry hash = H(CBOR {"seq", "kind", "prev", "chain", "payload"}); the first entry's
and first block's "prev" are 32 zero bytes. block hash = H(header bytes).
anchor payload (version 1): {"v": 1, "seq": last entry, "hash": block hash,
    "head": last entry hash, "chain": child chain, "height": block height}
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import load_der_public_key

from schemas.codec_cbor import dumps_ordered
from schemas.errors import EncodingError, shown

CHAIN_VERSION = 1
GENESIS = bytes(32)
HASH_ALGORITHMS = ("sha256", "sm3")  # SM3: GB/T 32905-2016, through OpenSSL
Kind = Literal["op", "anchor"]


class ChainError(EncodingError):
    """A block or proof that does not check: bad signature, broken link, wrong root."""


class ChainGap(ChainError):
    """A block signed by its node, but not the next one: a block before it is missing."""


def digest(alg: str, data: bytes) -> bytes:
    if alg == "sha256":
        return hashlib.sha256(data).digest()
    if alg == "sm3":
        try:
            return hashlib.new("sm3", data).digest()
        except ValueError as exc:  # an OpenSSL built without SM3
            raise ChainError("this machine's OpenSSL has no SM3") from exc
    raise ChainError(f"unknown hash algorithm {alg!r}; known: {', '.join(HASH_ALGORITHMS)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    seq: int
    kind: Kind
    payload: bytes
    prev: bytes  # the previous entry's hash
    hash: bytes


def entry_hash(alg: str, chain: str, seq: int, kind: str, prev: bytes, payload: bytes) -> bytes:
    # keys in RFC 8949 §4.2.1 order (length first, then bytewise)
    return digest(
        alg,
        dumps_ordered({"seq": seq, "kind": kind, "prev": prev, "chain": chain, "payload": payload}),
    )


def link(
    alg: str, chain: str, first_seq: int, prev: bytes, items: Sequence[tuple[Kind, bytes]]
) -> list[Entry]:
    """Number and chain ``items`` after the entry whose hash is ``prev``."""
    h = _constructor(alg)  # once per block: checking one hashes every entry thrice
    out = []
    for n, (kind, payload) in enumerate(items):
        seq = first_seq + n
        this: bytes = h(
            # as entry_hash encodes it
            dumps_ordered(
                {"seq": seq, "kind": kind, "prev": prev, "chain": chain, "payload": payload}
            )
        ).digest()
        out.append(Entry(seq=seq, kind=kind, payload=payload, prev=prev, hash=this))
        prev = this
    return out


def _constructor(alg: str) -> Callable[[bytes], Any]:
    """The hash of ``alg`` as a constructor, as ``digest`` computes it."""
    if alg == "sha256":
        return hashlib.sha256
    digest(alg, b"")  # raises ChainError for an algorithm this machine lacks
    return lambda data: hashlib.new(alg, data)


# --- Merkle tree (RFC 6962 §2.1; the verification algorithm of RFC 9162 §2.1.3.2) -----


def _leaf(alg: str, h: bytes) -> bytes:
    return digest(alg, b"\x00" + h)


def _node(alg: str, left: bytes, right: bytes) -> bytes:
    return digest(alg, b"\x01" + left + right)


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def merkle_root(alg: str, leaves: Sequence[bytes]) -> bytes:
    """Bottom up, with no recursion: RFC 6962's tree pairs the nodes of each level left
    to right and carries an odd last one up unchanged, which is its split at the
    largest power of two (``_root``; tests hold the two equal)."""
    h = _constructor(alg)
    if not leaves:
        return bytes(h(b"").digest())
    level = [h(b"\x00" + x).digest() for x in leaves]
    while len(level) > 1:
        paired = [
            h(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return bytes(level[0])


def _root(alg: str, hashed: Sequence[bytes]) -> bytes:
    if len(hashed) == 1:
        return hashed[0]
    k = _split(len(hashed))
    return _node(alg, _root(alg, hashed[:k]), _root(alg, hashed[k:]))


def merkle_path(alg: str, leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf ``index``: sibling hashes from the leaf up."""
    hashed = [_leaf(alg, h) for h in leaves]

    def path(m: int, nodes: Sequence[bytes]) -> list[bytes]:
        if len(nodes) == 1:
            return []
        k = _split(len(nodes))
        if m < k:
            return [*path(m, nodes[:k]), _root(alg, nodes[k:])]
        return [*path(m - k, nodes[k:]), _root(alg, nodes[:k])]

    return path(index, hashed)


def root_from_path(alg: str, leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes:
    """The root that ``path`` proves ``leaf`` (at ``index`` of ``size``) to be under."""
    if not 0 <= index < size:
        raise ChainError(f"leaf index {index} is outside a tree of {size}")
    fn, sn = index, size - 1
    r = _leaf(alg, leaf)
    for p in path:
        if sn == 0:
            raise ChainError("Merkle path is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = _node(alg, p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(alg, r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ChainError("Merkle path is shorter than the tree is deep")
    return r


# --- blocks --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    chain: str
    height: int
    alg: str
    prev: bytes  # the previous block's hash
    first: int  # the first entry's sequence number
    count: int
    head: bytes  # the last entry's hash
    root: bytes
    at: int  # milliseconds since the epoch, when the block was cut

    def encode(self) -> bytes:
        return dumps_ordered(
            {
                "v": CHAIN_VERSION,
                "at": self.at,
                "alg": self.alg,
                "head": self.head,
                "prev": self.prev,
                "root": self.root,
                "chain": self.chain,
                "count": self.count,
                "first": self.first,
                "height": self.height,
            }
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    header: Header
    header_bytes: bytes
    signature: bytes
    entries: tuple[Entry, ...]
    hash: bytes  # H(header_bytes)

    @property
    def last_seq(self) -> int:
        return self.header.first + self.header.count - 1

    def message(self) -> bytes:
        return dumps_ordered(
            {
                "v": CHAIN_VERSION,
                "sig": self.signature,
                "header": self.header_bytes,
                "entries": [[e.kind, e.payload] for e in self.entries],
            }
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Tip:
    """Where a chain stands: the last block and entry a node has of it."""

    height: int = 0
    block_hash: bytes = GENESIS
    seq: int = 0
    head: bytes = GENESIS


def cut_block(
    *,
    chain: str,
    alg: str,
    tip: Tip,
    items: Sequence[tuple[Kind, bytes]],
    key: ed25519.Ed25519PrivateKey,
    at: int,
) -> Block:
    """The next block of ``chain`` after ``tip``, holding ``items``, signed by ``key``."""
    if not items:
        raise ValueError("a block holds at least one entry")
    entries = link(alg, chain, tip.seq + 1, tip.head, items)
    header = Header(
        chain=chain,
        height=tip.height + 1,
        alg=alg,
        prev=tip.block_hash,
        first=tip.seq + 1,
        count=len(entries),
        head=entries[-1].hash,
        root=merkle_root(alg, [e.hash for e in entries]),
        at=at,
    )
    header_bytes = header.encode()
    return Block(
        header=header,
        header_bytes=header_bytes,
        signature=key.sign(header_bytes),
        entries=tuple(entries),
        hash=digest(alg, header_bytes),
    )


def _loads(data: bytes, what: str) -> Any:
    try:
        return cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise EncodingError(f"{what} is not CBOR: {exc}") from exc


def _version(obj: Any, what: str) -> None:
    if not isinstance(obj, dict) or not isinstance(obj.get("v"), int):
        raise EncodingError(f"{what} must be a map with a version number")
    if not 1 <= obj["v"] <= CHAIN_VERSION:  # older versions stay readable as they are added
        raise EncodingError(
            f"{what} version {shown(obj['v'])} is not supported (this node reads 1)"
        )


_HEADER_FIELDS = {
    "chain": str,
    "height": int,
    "alg": str,
    "prev": bytes,
    "first": int,
    "count": int,
    "head": bytes,
    "root": bytes,
    "at": int,
}
_ANCHOR_FIELDS = {"chain": str, "height": int, "hash": bytes, "seq": int, "head": bytes}


def _decode_map(data: bytes, what: str, fields: dict[str, type]) -> dict[str, Any]:
    """The typed fields of a versioned CBOR map (unknown extra keys are refused by
    the deterministic-form check that follows, since re-encoding drops them)."""
    obj = _loads(data, what)
    _version(obj, what)
    try:
        return {name: _typed(obj, name, kind) for name, kind in fields.items()}
    except KeyError as exc:
        raise EncodingError(f"{what} lacks {exc}") from None


def _deterministic(encoded: bytes, data: bytes, what: str) -> None:
    if encoded != data:
        raise EncodingError(f"{what} is not in deterministic CBOR form (RFC 8949 §4.2.1)")


def decode_header(data: bytes) -> Header:
    header = Header(**_decode_map(data, "block header", _HEADER_FIELDS))
    _deterministic(header.encode(), data, "block header")
    if header.height < 1 or header.first < 1 or header.count < 1:
        raise EncodingError("block height, first entry and count must be positive")
    return header


def _typed(obj: dict[str, Any], key: str, kind: type) -> Any:
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise EncodingError(f"block field {key!r} must be {kind.__name__}")
    return value


def decode_block(data: bytes) -> Block:
    """A block message's structure, unchecked against any chain or key (``check_block``)."""
    obj = _loads(data, "block")
    _version(obj, "block")
    header_bytes, sig, raw = obj.get("header"), obj.get("sig"), obj.get("entries")
    if not isinstance(header_bytes, bytes) or not isinstance(sig, bytes):
        raise EncodingError("block must carry header and sig as byte strings")
    if not isinstance(raw, list) or not all(
        isinstance(e, list) and len(e) == 2 and e[0] in ("op", "anchor") and isinstance(e[1], bytes)
        for e in raw
    ):
        raise EncodingError('block entries must be a list of ["op" | "anchor", bytes]')
    header = decode_header(header_bytes)
    if len(raw) != header.count:
        raise EncodingError(f"block header counts {header.count} entries; it carries {len(raw)}")
    return Block(
        header=header,
        header_bytes=header_bytes,
        signature=sig,
        # linked from a zero hash for now; check_block links them to the chain's tip
        entries=tuple(
            Entry(seq=header.first + n, kind=k, payload=p, prev=b"", hash=b"")
            for n, (k, p) in enumerate(raw)
        ),
        hash=digest(header.alg, header_bytes),
    )


def check_block(block: Block, *, tip: Tip, public_key_der: bytes) -> Block:
    """``block`` with its entries linked, if it follows ``tip`` and its key signed it."""
    h = block.header
    key = load_der_public_key(public_key_der)
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ChainError(f"chain {h.chain!r} has no Ed25519 key")
    try:
        key.verify(block.signature, block.header_bytes)
    except InvalidSignature:
        raise ChainError(
            f"block {h.height} of chain {h.chain!r} is not signed by its node"
        ) from None
    if h.height > tip.height + 1:
        raise ChainGap(
            f"block {h.height} of chain {h.chain!r} does not follow {tip.height}: "
            f"block {tip.height + 1} is missing"
        )
    if h.height != tip.height + 1:
        raise ChainError(f"block {h.height} of chain {h.chain!r} does not follow {tip.height}")
    if h.prev != tip.block_hash:
        raise ChainError(
            f"block {h.height} of chain {h.chain!r} names a previous block that is not "
            f"block {tip.height} (broken link)"
        )
    if h.first != tip.seq + 1:
        raise ChainError(f"block {h.height} starts at entry {h.first}, expected {tip.seq + 1}")
    entries = link(h.alg, h.chain, h.first, tip.head, [(e.kind, e.payload) for e in block.entries])
    if entries[-1].hash != h.head:
        raise ChainError(f"entries of block {h.height} of chain {h.chain!r} do not chain to head")
    if merkle_root(h.alg, [e.hash for e in entries]) != h.root:
        raise ChainError(f"Merkle root of block {h.height} of chain {h.chain!r} does not match")
    return Block(
        header=h,
        header_bytes=block.header_bytes,
        signature=block.signature,
        entries=tuple(entries),
        hash=block.hash,
    )


def tip_after(block: Block) -> Tip:
    return Tip(
        height=block.header.height,
        block_hash=block.hash,
        seq=block.last_seq,
        head=block.header.head,
    )


# --- anchors -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Anchor:
    """A child chain's block, recorded in its parent's chain."""

    chain: str
    height: int
    hash: bytes
    seq: int
    head: bytes

    def encode(self) -> bytes:
        return dumps_ordered(
            {
                "v": CHAIN_VERSION,
                "seq": self.seq,
                "hash": self.hash,
                "head": self.head,
                "chain": self.chain,
                "height": self.height,
            }
        )


def anchor_of(block: Block) -> Anchor:
    return Anchor(
        chain=block.header.chain,
        height=block.header.height,
        hash=block.hash,
        seq=block.last_seq,
        head=block.header.head,
    )


def decode_anchor(data: bytes) -> Anchor:
    anchor = Anchor(**_decode_map(data, "anchor", _ANCHOR_FIELDS))
    _deterministic(anchor.encode(), data, "anchor")
    return anchor
