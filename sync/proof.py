"""Proofs a client can check offline: the record answered is an operation its
authority's chain committed in a signed block, and that block is anchored in the
blocks above it, up to the super node's chain.

What a proof cannot show is that no newer operation exists: old blocks stay valid.
It says when its block was cut, so a client can refuse a proof older than it likes.

A proof has one level per chain, from the record's chain up as far as this node
holds the chains: the entry (kind, sequence number, previous entry hash, payload),
its Merkle audit path (RFC 6962 §2.1.1) and the signed block header. Above the first
level each entry is the anchor of the block of the level below. The delegations of
the chains' nodes up to the super node come along, so the keys can be checked
against the one trusted super node key. ``build`` reads PostgreSQL; ``check`` is
pure.

    {"v": 1, "levels": [{"chain", "seq", "kind", "prev", "payload", "index", "path",
     "header", "signature"}, ...], "delegations": [...]}   bytes as base64
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import load_der_public_key

from resolver.topology import Delegation, Directory
from schemas.chain import (
    GENESIS,
    ChainError,
    decode_anchor,
    decode_header,
    digest,
    entry_hash,
    merkle_path,
    root_from_path,
)
from schemas.codec_json import record_to_json
from schemas.errors import EncodingError, IdresError
from schemas.oplog import decode_operation
from schemas.record import Record
from sync.judge import holds

PROOF_VERSION = 1
MAX_DEPTH = 16  # delegations in a proof: the path from the super node to the holder


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise EncodingError(f"proof: {what} must be base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EncodingError(f"proof: {what} is not base64") from exc


async def _level(conn: asyncpg.Connection, chain: str, seq: int) -> dict[str, Any] | None:
    entry = await conn.fetchrow(
        "SELECT seq, height, kind, payload FROM chain_entries WHERE chain = $1 AND seq = $2",
        chain,
        seq,
    )
    if entry is None:
        return None
    block = await conn.fetchrow(
        "SELECT message, first_seq FROM chain_blocks WHERE chain = $1 AND height = $2",
        chain,
        entry["height"],
    )
    hashes = [
        r["hash"]
        for r in await conn.fetch(
            "SELECT hash FROM chain_entries WHERE chain = $1 AND height = $2 ORDER BY seq",
            chain,
            entry["height"],
        )
    ]
    prev = (
        await conn.fetchval(
            "SELECT hash FROM chain_entries WHERE chain = $1 AND seq = $2", chain, seq - 1
        )
        if seq > 1
        else GENESIS
    )
    message = cbor2.loads(block["message"])
    header = decode_header(message["header"])
    index = seq - block["first_seq"]
    return {
        "chain": chain,
        "seq": seq,
        "kind": entry["kind"],
        "prev": _b64(prev or b""),
        "payload": _b64(entry["payload"]),
        "index": index,
        "path": [_b64(p) for p in merkle_path(header.alg, hashes, index)],
        "header": _b64(message["header"]),
        "signature": _b64(message["sig"]),
    }


async def build(
    pool: asyncpg.Pool, directory: Directory, chain: str, handle: str, held: set[str]
) -> tuple[dict[str, Any], Record | None] | None:
    """The proof of the last operation on ``handle`` in ``chain``, and its record; None
    if no block holds an operation on it yet."""
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        row = await conn.fetchrow(
            "SELECT seq, payload FROM chain_entries WHERE chain = $1 AND handle = $2"
            " AND kind = 'op' ORDER BY version DESC LIMIT 1",
            chain,
            handle,
        )
        if row is None:
            return None
        first = await _level(conn, chain, row["seq"])
        assert first is not None
        levels = [first]
        current = chain
        while True:
            node = directory.by_name.get(current)
            parent = node.parent if node is not None else None
            if parent is None or parent not in held:
                break
            height = decode_header(_unb64(levels[-1]["header"], "header")).height
            anchor = await conn.fetchval(
                "SELECT seq FROM chain_entries WHERE chain = $1 AND kind = 'anchor'"
                " AND handle = $2 AND version = $3",
                parent,
                current,
                height,
            )
            if anchor is None:
                break  # not anchored yet: the proof ends at this level
            level = await _level(conn, parent, anchor)
            if level is None:
                break
            levels.append(level)
            current = parent
    names = directory.ancestors(chain)  # every level's chain is among them
    proof = {
        "v": PROOF_VERSION,
        "levels": levels,
        "delegations": [directory.by_name[n].to_json() for n in names],
    }
    return proof, decode_operation(row["payload"]).record


@dataclass(slots=True)
class Checked:
    claims: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def check(answer: dict[str, Any], trust_anchor: bytes | None, *, partial: bool = False) -> Checked:
    """Check a resolution answer carrying ``proof`` (as ``?proof=true`` returns it).

    With ``trust_anchor`` (the super node's key, DER) the delegations must chain to
    it; without, the super node's key in the proof is taken as it is, which proves
    nothing about who signed, and is a problem unless ``partial``. A proof that ends
    below the super node's chain is a problem unless ``partial``.
    """
    out = Checked()
    try:
        _check(answer, trust_anchor, out, partial=partial)
    except (IdresError, KeyError, TypeError, ValueError) as exc:
        message = exc.message if isinstance(exc, IdresError) else f"malformed proof: {exc!r}"
        out.problems.append(message)
    return out


def _check(
    answer: dict[str, Any], trust_anchor: bytes | None, out: Checked, *, partial: bool
) -> None:
    proof = answer["proof"]
    if not isinstance(proof, dict) or proof.get("v") != PROOF_VERSION:
        raise EncodingError(f"proof: version must be {PROOF_VERSION}")
    if not isinstance(proof["delegations"], list) or len(proof["delegations"]) > MAX_DEPTH:
        raise ChainError(f"proof: at most {MAX_DEPTH} delegations, the path to the holder")
    delegations = [Delegation.from_json(d) for d in proof["delegations"]]
    roots = [d for d in delegations if d.parent is None]
    if trust_anchor is None:
        if len(roots) != 1:
            raise ChainError("proof: the delegations name no single super node")
        trust_anchor = roots[0].public_key
        fingerprint = digest("sha256", trust_anchor).hex()[:16]
        note = (
            f"no trust anchor given: the super node key in the proof itself (sha256 "
            f"{fingerprint}...) was taken on trust"
        )
        (out.claims if partial else out.problems).append(note)
    directory = Directory(delegations, trust_anchor)
    levels = proof["levels"]
    holder = levels[0]["chain"] if isinstance(levels, list) and levels else None
    if holder is None or set(directory.by_name) != set(directory.ancestors(str(holder))):
        raise ChainError(
            "proof: the delegations must be the path from the super node to the holder"
        )
    out.claims.append("the delegations chain to the trusted super node key")
    below: tuple[str, int, bytes] | None = None  # chain, height, block hash of the level below
    for n, level in enumerate(proof["levels"]):
        chain = level["chain"]
        node = directory.by_name.get(chain)
        if node is None:
            raise ChainError(f"proof: chain {chain!r} has no delegation in the proof")
        header_bytes = _unb64(level["header"], "header")
        header = decode_header(header_bytes)
        if header.chain != chain:
            raise ChainError(f"proof level {n}: the header is of chain {header.chain!r}")
        key = load_der_public_key(node.public_key)
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise ChainError(f"proof: node {chain!r} has no Ed25519 key")
        try:
            key.verify(_unb64(level["signature"], "signature"), header_bytes)
        except InvalidSignature:
            raise ChainError(
                f"proof level {n}: block {header.height} of {chain!r} is not signed by its node"
            ) from None
        seq, index = int(level["seq"]), int(level["index"])
        if not (header.first <= seq < header.first + header.count) or index != seq - header.first:
            raise ChainError(f"proof level {n}: entry {seq} is not in block {header.height}")
        payload = _unb64(level["payload"], "payload")
        leaf = entry_hash(
            header.alg, chain, seq, level["kind"], _unb64(level["prev"], "prev"), payload
        )
        path = [_unb64(p, "path") for p in level["path"]]
        if root_from_path(header.alg, leaf, index, header.count, path) != header.root:
            raise ChainError(
                f"proof level {n}: entry {seq} is not under the Merkle root of block "
                f"{header.height} of {chain!r}"
            )
        if n == 0:
            if level["kind"] != "op":
                raise ChainError("proof: the first level must be an operation")
            op = decode_operation(payload)
            if op.handle != answer.get("handle") or op.record is None:
                raise ChainError(f"proof: the operation is on {op.handle}, not this record")
            if not holds(directory, chain, op):  # only its authority's chain can write it
                raise ChainError(
                    f"proof: chain {chain!r} does not hold {op.handle} (another node's "
                    "identifier, or not in its canonical form)"
                )
            public = tuple(v for v in op.record.values if v.permissions.public_read)
            if record_to_json(op.record, values=public)["values"] != answer.get("values"):
                raise ChainError(
                    f"proof: the values answered differ from version {op.version} in the chain"
                )
            cut = datetime.fromtimestamp(header.at / 1000, UTC).isoformat(timespec="seconds")
            out.claims.append(
                f"{op.handle} as answered is version {op.version}: entry {seq} of block "
                f"{header.height} of chain {chain!r}, signed by {chain!r}, cut {cut}"
            )
        else:
            assert below is not None
            if level["kind"] != "anchor":
                raise ChainError(f"proof level {n}: must be an anchor")
            anchor = decode_anchor(payload)
            if (anchor.chain, anchor.height, anchor.hash) != below:
                raise ChainError(
                    f"proof level {n}: the anchor in {chain!r} is not of block {below[1]} "
                    f"of {below[0]!r}"
                )
            if directory.by_name[below[0]].parent != chain:
                raise ChainError(f"proof level {n}: {chain!r} is not the parent of {below[0]!r}")
            out.claims.append(
                f"block {below[1]} of {below[0]!r} is anchored by entry {seq} of block "
                f"{header.height} of {chain!r}, signed by {chain!r}"
            )
        below = (chain, header.height, digest(header.alg, header_bytes))
    if below is None:
        raise ChainError("proof: no levels")
    if directory.by_name[below[0]].parent is not None:
        note = f"the proof ends at chain {below[0]!r}, below the super node's chain"
        (out.claims if partial else out.problems).append(note)
