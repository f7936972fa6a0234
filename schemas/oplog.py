"""One registry operation as it travels between nodes: deterministic CBOR, versioned.

Layout, a map: "v": 1 | 2, "op": "create" | "replace" | "delete", "handle": text,
"version": uint, "actor": text (the signing key id), "at": uint (seconds since the
epoch), "record": the record map, or null on delete.

Version 2 (issue 11) is the one whose record holds commitments (schemas.commitment):
every value without public read travels committed, never in clear. An operation
with only public values keeps version 1 and the bytes it always had. A reader
refuses a version-1 operation that carries a private value in clear (written before
commitments existed: its value has left its holder, and no node stores it again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import cbor2

from schemas.codec_cbor import dumps_ordered
from schemas.commitment import (
    COMMITTED_RECORD_VERSION,
    PLAIN_RECORD_VERSION,
    in_clear,
    record_from_obj,
)
from schemas.commitment import record_obj as committed_record_obj
from schemas.errors import EncodingError, shown
from schemas.record import Record

OPLOG_VERSION = COMMITTED_RECORD_VERSION  # the newest this node reads and writes
Op = Literal["create", "replace", "delete"]
_KEYS = frozenset({"v", "op", "handle", "version", "actor", "at", "record"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    op: Op
    handle: str
    version: int
    actor: str
    at: int
    record: Record | None  # private values as schemas.commitment.CommittedValue


def encode_operation(operation: Operation, *, record_obj: dict[str, Any] | None = None) -> bytes:
    """The operation's deterministic CBOR; ``record_obj`` reuses the structure of
    ``schemas.commitment.record_obj`` when the caller has already built it.

    Raises ValueError for a private value in clear: commit it first (the holder's
    store does), so no code path can publish one."""
    record = operation.record
    if record is not None:
        clear = in_clear(record)
        if clear:
            raise ValueError(
                f"{record.handle}: commit the private values at index "
                + ", ".join(map(str, clear))
                + " before encoding"
            )
        if record_obj is None:
            record_obj = committed_record_obj(record)
    # keys in RFC 8949 §4.2.1 order, so plain encoding is the deterministic one
    obj: dict[str, Any] = {
        "v": record_obj["v"] if record_obj is not None else PLAIN_RECORD_VERSION,
        "at": operation.at,
        "op": operation.op,
        "actor": operation.actor,
        "handle": operation.handle,
        "record": record_obj if record is not None else None,
        "version": operation.version,
    }
    return dumps_ordered(obj)


def decode_operation(data: bytes, *, check_form: bool = True) -> Operation:
    """The operation in ``data``. ``check_form=False`` skips re-encoding to prove the
    bytes are the one deterministic form: for an entry of a checked block, whose exact
    bytes the signed Merkle root already binds, the check buys nothing."""
    try:
        obj = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise EncodingError(f"operation is not CBOR: {exc}") from exc
    if not isinstance(obj, dict) or set(obj) != _KEYS:
        raise EncodingError("operation must be a map of " + ", ".join(sorted(_KEYS)))
    if obj["v"] not in (PLAIN_RECORD_VERSION, COMMITTED_RECORD_VERSION):
        raise EncodingError(
            f"operation format version {shown(obj['v'])} is not supported "
            f"(this node reads 1 and {COMMITTED_RECORD_VERSION})"
        )
    op, handle, version, actor, at = (obj[k] for k in ("op", "handle", "version", "actor", "at"))
    if (
        op not in ("create", "replace", "delete")
        or not isinstance(handle, str)
        or not isinstance(actor, str)
        or not isinstance(version, int)
        or not isinstance(at, int)
    ):
        raise EncodingError("operation fields have the wrong types")
    raw = obj["record"]
    if raw is not None and (not isinstance(raw, dict) or raw.get("v") != obj["v"]):
        raise EncodingError(
            f"an operation of version {shown(obj['v'])} carries a record map of the same version"
        )
    if raw is None and obj["v"] != PLAIN_RECORD_VERSION:
        raise EncodingError("a delete is an operation of version 1")
    # a private value in clear is refused: it must never be stored away from its holder
    record = None if raw is None else record_from_obj(raw, clear_private=False)
    if (record is None) != (op == "delete"):
        raise EncodingError("a delete carries no record; a create or replace carries one")
    operation = Operation(op=op, handle=handle, version=version, actor=actor, at=at, record=record)
    if check_form and encode_operation(operation) != data:
        raise EncodingError("operation is not in deterministic CBOR form (RFC 8949 §4.2.1)")
    return operation
