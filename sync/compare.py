"""Whether a record as PostgreSQL stores it is the one an operation in a chain wrote,
decided on the rows and the operation's bytes: nothing here does I/O.

``idres verify`` asks this of every record, so it works on plain CBOR structures,
not on ``Record`` objects: the stored rows are turned into the value maps the
operation carries (``schemas.codec_cbor``, ``schemas.commitment``: a private value
the holder keeps in clear is committed with its salt first) and the two are
compared as data. Equal structures encode to equal deterministic CBOR, so this is
the comparison of encodings the chain binds, without building a record per row.
Only a record that differs is decoded in full, to say where it departs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cbor2

from schemas.commitment import (
    COMMITMENT_FORMAT,
    COMMITTED_RECORD_VERSION,
    PLAIN_RECORD_VERSION,
)
from schemas.commitment import encode as encode_record
from schemas.record import DataFormat, Record

# a stored value row: idx, type, format, data, ttl, ttl_type, ts, perms, refs, salt
ValueRow = Sequence[Any]
_EMPTY_ARRAY = b"\x80"
_PUBLIC_READ = 0b0010
_STRUCTURED = frozenset({DataFormat.ADMIN.value, DataFormat.VLIST.value})
_OP_KEYS = frozenset({"v", "op", "handle", "version", "actor", "at", "record"})


class Unreadable(ValueError):
    """Stored bytes that no operation or value could have written."""


@dataclass(frozen=True, slots=True)
class OpFields:
    """What the records check needs of one operation: its identifier and version,
    and its record map (None for a delete), as the chain carries them."""

    handle: str
    version: int
    record: dict[str, Any] | None


def op_fields(payload: bytes) -> OpFields:
    """The fields of an operation's bytes, with the structural checks a signed entry
    needs (its block binds the bytes; ``schemas.oplog.decode_operation`` is the full
    reading). Raises Unreadable."""
    try:
        obj = cbor2.loads(payload)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise Unreadable(f"operation is not CBOR: {exc}") from exc
    if not isinstance(obj, dict) or obj.keys() != _OP_KEYS:
        raise Unreadable("operation is not a map of " + ", ".join(sorted(_OP_KEYS)))
    handle, version, record = obj["handle"], obj["version"], obj["record"]
    if not isinstance(handle, str) or isinstance(version, bool) or not isinstance(version, int):
        raise Unreadable("operation fields have the wrong types")
    if record is not None and not isinstance(record, dict):
        raise Unreadable("operation record is not a map")
    return OpFields(handle=handle, version=version, record=record)


def _data(fmt: str, data: bytes) -> Any:
    if fmt == DataFormat.STRING.value:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Unreadable(f"stored string is not UTF-8: {exc}") from exc
    if fmt in _STRUCTURED:
        try:
            return cbor2.loads(data)
        except (cbor2.CBORDecodeError, ValueError, TypeError) as exc:
            raise Unreadable(f"stored data is not CBOR: {exc}") from exc
    return data


def _refs(refs: bytes) -> Any:
    if refs == _EMPTY_ARRAY:
        return []
    try:
        return cbor2.loads(refs)
    except (cbor2.CBORDecodeError, ValueError, TypeError) as exc:
        raise Unreadable(f"stored references are not CBOR: {exc}") from exc


class NoSalt(Exception):
    """The holder keeps a private value without the salt that commits to it."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


def stored_map(handle: str, rows: Sequence[ValueRow], *, holder: bool) -> dict[str, Any]:
    """The record map the chain must carry for the stored ``rows`` (in index order) of
    ``handle``; ``holder``: this node holds the record, and commits its private values
    with the salts it keeps (elsewhere they are stored committed). Raises NoSalt,
    Unreadable."""
    values: list[dict[str, Any]] = []
    committed = False
    for idx, type_, fmt, data, ttl, ttl_type, ts, perms, refs, salt in rows:
        if fmt == COMMITMENT_FORMAT:
            committed = True
            values.append(_commitment_map(idx, perms, data, ttl, ttl_type, ts))
            continue
        plain = {
            "ttl": ttl,
            "data": _data(fmt, data),
            "refs": _refs(refs),
            "type": type_,
            "index": idx,
            "perms": perms,
            "format": fmt,
            "ttlType": ttl_type,
            "timestamp": ts,
        }
        if holder and not perms & _PUBLIC_READ:
            if salt is None:
                raise NoSalt(idx)
            bound = {
                "handle": handle,
                "index": idx,
                "type": type_,
                "format": fmt,
                "data": plain["data"],
                "refs": plain["refs"],
            }
            digest = hashlib.sha256(salt + cbor2.dumps(bound, canonical=True)).digest()
            committed = True
            values.append(_commitment_map(idx, perms, digest, ttl, ttl_type, ts))
            continue
        values.append(plain)
    version = COMMITTED_RECORD_VERSION if committed else PLAIN_RECORD_VERSION
    return {"v": version, "handle": handle, "values": values}


def _commitment_map(
    idx: int, perms: int, commit: bytes, ttl: int, ttl_type: int, ts: int
) -> dict[str, Any]:
    # as schemas.commitment._wire writes it
    return {
        "ttl": ttl,
        "index": idx,
        "perms": perms,
        "commit": commit,
        "ttlType": ttl_type,
        "timestamp": ts,
    }


def difference(have: Record, want: Record) -> str:
    """Which part of ``have`` first departs from ``want``."""
    mine = {v.index: v for v in have.values}
    theirs = {v.index: v for v in want.values}
    for index in sorted(mine.keys() | theirs.keys()):
        a, b = mine.get(index), theirs.get(index)
        if (
            a is None
            or b is None
            or encode_record(Record(handle=have.handle, values=(a,)))
            != encode_record(Record(handle=have.handle, values=(b,)))
        ):
            return f"the value at index {index}"
    return "the record"
