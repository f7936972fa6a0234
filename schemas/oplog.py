"""One registry operation as it travels between nodes: deterministic CBOR, versioned.

Layout (version 1), a map: "v": 1, "op": "create" | "replace" | "delete",
"handle": text, "version": uint, "actor": text (the signing key id), "at": uint
(seconds since the epoch), "record": the record map of codec_cbor, or null on delete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import cbor2

from schemas.codec_cbor import dumps_ordered, record_from_cbor_obj, record_to_cbor_obj
from schemas.errors import EncodingError
from schemas.record import Record

OPLOG_VERSION = 1
Op = Literal["create", "replace", "delete"]
_KEYS = frozenset({"v", "op", "handle", "version", "actor", "at", "record"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    op: Op
    handle: str
    version: int
    actor: str
    at: int
    record: Record | None


def encode_operation(operation: Operation, *, record_obj: dict[str, Any] | None = None) -> bytes:
    """The operation's deterministic CBOR; ``record_obj`` reuses the structure of
    ``codec_cbor.record_to_cbor_obj`` when the caller has already built it."""
    if operation.record is not None and record_obj is None:
        record_obj = record_to_cbor_obj(operation.record)
    # keys in RFC 8949 §4.2.1 order, so plain encoding is the deterministic one
    obj: dict[str, Any] = {
        "v": OPLOG_VERSION,
        "at": operation.at,
        "op": operation.op,
        "actor": operation.actor,
        "handle": operation.handle,
        "record": record_obj if operation.record is not None else None,
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
    if obj["v"] != OPLOG_VERSION:
        raise EncodingError(f"operation format version {obj['v']!r} is not supported")
    op, handle, version, actor, at = (obj[k] for k in ("op", "handle", "version", "actor", "at"))
    if (
        op not in ("create", "replace", "delete")
        or not isinstance(handle, str)
        or not isinstance(actor, str)
        or not isinstance(version, int)
        or not isinstance(at, int)
    ):
        raise EncodingError("operation fields have the wrong types")
    record = None if obj["record"] is None else record_from_cbor_obj(obj["record"])
    if (record is None) != (op == "delete"):
        raise EncodingError("a delete carries no record; a create or replace carries one")
    operation = Operation(op=op, handle=handle, version=version, actor=actor, at=at, record=record)
    if check_form and encode_operation(operation) != data:
        raise EncodingError("operation is not in deterministic CBOR form (RFC 8949 §4.2.1)")
    return operation
