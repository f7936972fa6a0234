"""Salted commitments: how a value without public read travels, so it never leaves
its holder in clear. Nothing here does I/O; the holder draws and keeps the salts.

A value whose permissions deny public read is replaced, in every operation a node
publishes, by its commitment: index, ttl, ttlType, timestamp and permissions stay
in clear (a reader learns that a private value exists, and when it changed), while
type, format, data and references are bound by

    commit = SHA-256(salt || deterministic CBOR (RFC 8949 §4.2.1) of
                     {"handle", "index", "type", "format", "data", "refs"})

with a 16-byte random salt only the holder keeps. The salt makes guessing useless
(a phone number hashed alone is found by trying them all); binding handle and index
means an opening shown for one value proves nothing about another. The holder
keeps a value's salt while the value's content stays the same, so an unchanged
value keeps its commitment and parents' history says "modified" only on a change.

Why a commitment and not a ciphertext to recovery keys: a commitment carries no
information about the value at all, whatever happens to any key later, and needs
no key management across operators; its cost is that a holder that loses its
database rebuilds public values and commitments from its chain, and its private
values from its operator's backup.

Wire form (inside a record map of version 2, schemas.oplog), keys in §4.2.1 order:
    {"ttl": uint, "index": uint, "perms": uint (4 bits, public read clear),
     "commit": bytes (32), "ttlType": 0|1, "timestamp": uint}
A record map holds version 2 exactly when at least one of its values is committed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import cbor2

from schemas.codec_cbor import dumps_ordered, record_from_cbor_obj, record_to_cbor_obj
from schemas.errors import EncodingError, IdresError
from schemas.record import (
    MAX_VALUES,
    DataFormat,
    HandleValue,
    Permissions,
    Record,
    TtlType,
    check_values,
)

SALT_BYTES = 16  # 128 bits: no value can be found by trying salts
DIGEST_BYTES = 32  # SHA-256
# The type a committed value shows in place of its own, which the commitment hides
# (issue 11: types of non-public values are not shown to anonymous readers).
COMMITTED_TYPE = "idres.committed"
# The ``format`` column of a committed value in ``handle_values`` (registry.store).
COMMITMENT_FORMAT = "commitment"
PLAIN_RECORD_VERSION = 1
COMMITTED_RECORD_VERSION = 2
_WIRE_KEYS = frozenset({"ttl", "index", "perms", "commit", "ttlType", "timestamp"})


@dataclass(frozen=True, slots=True, kw_only=True)
class CommittedValue(HandleValue):
    """A private value as parents, mirrors and log readers see it: ``value`` is the
    32-byte commitment (format hex), ``type`` is ``COMMITTED_TYPE``. A distinct class,
    so a committed value never equals, or is mistaken for, a value in clear."""


class SaltMissing(IdresError):
    """The holder has no salt for a private value, so it cannot commit to it."""


def is_private(value: HandleValue) -> bool:
    return not value.permissions.public_read


def commitment(handle: str, value: HandleValue, salt: bytes) -> bytes:
    """The commitment to ``value`` of record ``handle`` under ``salt``."""
    if len(salt) != SALT_BYTES:
        raise ValueError(f"a salt has {SALT_BYTES} bytes, not {len(salt)}")
    plain = record_to_cbor_obj(Record(handle=handle, values=(value,)))["values"][0]
    bound = {
        "handle": handle,
        "index": value.index,
        "type": plain["type"],
        "format": plain["format"],
        "data": plain["data"],
        "refs": plain["refs"],
    }
    return hashlib.sha256(salt + cbor2.dumps(bound, canonical=True)).digest()


def commit(handle: str, value: HandleValue, salt: bytes) -> CommittedValue:
    """``value`` as it travels: what the chain needs to prove it, nothing to read."""
    return CommittedValue(
        index=value.index,
        type=COMMITTED_TYPE,
        format=DataFormat.HEX,
        value=commitment(handle, value, salt),
        ttl=value.ttl,
        ttl_type=value.ttl_type,
        timestamp=value.timestamp,
        permissions=value.permissions,
    )


def commit_record(record: Record, salts: Mapping[int, bytes]) -> Record:
    """``record`` with each private value replaced by its commitment (salts by index).

    Raises SaltMissing naming the index when a private value has no salt."""
    if not in_clear(record):
        return record
    values: list[HandleValue] = []
    for v in record.values:
        if is_private(v) and not isinstance(v, CommittedValue):
            salt = salts.get(v.index)
            if salt is None:
                raise SaltMissing(f"{record.handle}: no salt for the private value {v.index}")
            values.append(commit(record.handle, v, salt))
        else:
            values.append(v)
    return replace(record, values=tuple(values))


def opens(handle: str, committed: HandleValue, value: HandleValue, salt: bytes) -> bool:
    """Whether ``value`` and ``salt``, as the holder shows them, are what ``committed``
    (read from a chain) binds: same index, ttl, timestamp and permissions in clear, and
    the same commitment."""
    if not isinstance(committed, CommittedValue) or not isinstance(committed.value, bytes):
        return False
    if len(salt) != SALT_BYTES or (
        committed.index,
        committed.ttl,
        committed.ttl_type,
        committed.timestamp,
        committed.permissions,
    ) != (value.index, value.ttl, value.ttl_type, value.timestamp, value.permissions):
        return False
    return hmac.compare_digest(committed.value, commitment(handle, value, salt))


def in_clear(record: Record) -> list[int]:
    """The indexes of private values of ``record`` that are not committed."""
    return [v.index for v in record.values if is_private(v) and not isinstance(v, CommittedValue)]


def has_commitments(record: Record) -> bool:
    return any(isinstance(v, CommittedValue) for v in record.values)


def record_obj(record: Record) -> dict[str, Any]:
    """The CBOR structure of a record whose values may be committed: the plain record
    map of codec_cbor when none is, else version 2 with commitment maps in place."""
    obj = record_to_cbor_obj(record)
    if not has_commitments(record):
        return obj
    obj["v"] = COMMITTED_RECORD_VERSION
    obj["values"] = [
        _wire(v) if isinstance(v, CommittedValue) else m
        for v, m in zip(record.values, obj["values"], strict=True)
    ]
    return obj


def encode(record: Record) -> bytes:
    return dumps_ordered(record_obj(record))


def _wire(v: CommittedValue) -> dict[str, Any]:
    # keys in RFC 8949 §4.2.1 order: shorter first, then bytewise
    return {
        "ttl": v.ttl,
        "index": v.index,
        "perms": v.permissions.as_int(),
        "commit": v.value,
        "ttlType": v.ttl_type.value,
        "timestamp": v.timestamp,
    }


def record_from_obj(obj: Any, *, clear_private: bool) -> Record:
    """Decode a record map of version 1 or 2. ``clear_private=False`` (anything read
    from another node) refuses a private value in clear: it must come committed."""
    if isinstance(obj, dict) and obj.get("v") == COMMITTED_RECORD_VERSION:
        record = _committed_from_obj(obj)
    else:
        record = record_from_cbor_obj(obj)
    if not clear_private and (clear := in_clear(record)):
        raise EncodingError(
            f"{record.handle}: the value at index {clear[0]} has no public read but travels "
            "in clear; it must come as a commitment (schemas.commitment)"
        )
    return record


def decode(data: bytes, *, clear_private: bool) -> Record:
    """A record stored or sent with ``encode``, refusing any form but the deterministic one."""
    try:
        obj = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise EncodingError(f"record is not CBOR: {exc}") from exc
    record = record_from_obj(obj, clear_private=clear_private)
    if encode(record) != data:
        raise EncodingError("record is not in deterministic CBOR form (RFC 8949 §4.2.1)")
    return record


def _committed_from_obj(obj: dict[Any, Any]) -> Record:
    if set(obj) != {"v", "handle", "values"}:
        raise EncodingError("record must be a map of v, handle, values")
    handle, raw = obj["handle"], obj["values"]
    if not isinstance(handle, str) or not isinstance(raw, list):
        raise EncodingError("record handle must be text and values an array")
    if len(raw) > MAX_VALUES:
        raise EncodingError(f"record {handle!r} has {len(raw)} values; at most {MAX_VALUES}")
    committed = [
        _committed_value(m, f"values[{k}]")
        for k, m in enumerate(raw)
        if isinstance(m, dict) and set(m) == _WIRE_KEYS
    ]
    if not committed:
        raise EncodingError(f"record {handle!r} of version 2 holds no commitment")
    plain = [m for m in raw if not (isinstance(m, dict) and set(m) == _WIRE_KEYS)]
    values: list[HandleValue] = list(committed)
    if plain:
        values += record_from_cbor_obj(
            {"v": PLAIN_RECORD_VERSION, "handle": handle, "values": plain}
        ).values
    try:
        check_values(values)  # indexes unique across both kinds, every range respected
    except IdresError as exc:
        raise EncodingError(f"record {handle!r} decodes to invalid values: {exc.message}") from exc
    return Record(handle=handle, values=tuple(values))


def _committed_value(m: dict[Any, Any], where: str) -> CommittedValue:
    for key in ("ttl", "index", "perms", "ttlType", "timestamp"):
        if isinstance(m[key], bool) or not isinstance(m[key], int) or m[key] < 0:
            raise EncodingError(f"{where}.{key} must be an unsigned integer")
    if m["perms"] > 0b1111 or m["perms"] & 0b0010:
        raise EncodingError(f"{where}: a committed value has 4 permission bits, public read clear")
    if not isinstance(m["commit"], bytes) or len(m["commit"]) != DIGEST_BYTES:
        raise EncodingError(f"{where}.commit must be {DIGEST_BYTES} bytes")
    try:
        ttl_type = TtlType(m["ttlType"])
    except ValueError as exc:
        raise EncodingError(f"{where}.ttlType: {exc}") from exc
    return CommittedValue(
        index=m["index"],
        type=COMMITTED_TYPE,
        format=DataFormat.HEX,
        value=m["commit"],
        ttl=m["ttl"],
        ttl_type=ttl_type,
        timestamp=m["timestamp"],
        permissions=Permissions.from_bits(format(m["perms"], "04b")),
    )
