"""Deterministic CBOR of records: the bytes that are hashed, signed and sent between nodes.

Encoding follows RFC 8949 §4.2.1 (core deterministic encoding): shortest integer
heads, definite lengths, map keys sorted by their encoded bytes, no floats. Every
field is always present, so one record has exactly one encoding. Decoding rejects
anything that is not that one encoding, since a hash chain cannot accept two.

Layout (version 1), a map:
    "v": 1, "handle": text, "values": [ value, ... ] sorted by index
    value = {"index": uint, "type": text, "format": text, "data": <by format>,
             "ttl": uint, "ttlType": 0|1, "timestamp": uint, "perms": uint (4 bits,
             admin read = 8 ... public write = 1), "refs": [[handle, index], ...]}
    data: string -> text; base64, hex, key -> bytes; vlist -> [[handle, index], ...];
          admin -> {"handle": text, "index": uint, "perms": uint (12 bits)}
"""

from __future__ import annotations

from typing import Any

import cbor2

from schemas.errors import EncodingError, IdresError, shown
from schemas.record import (
    AdminPerm,
    AdminRef,
    DataFormat,
    DataValue,
    HandleValue,
    Permissions,
    Record,
    Reference,
    TtlType,
    check_values,
)

FORMAT_VERSION = 1
_VALUE_KEYS = frozenset(
    {"index", "type", "format", "data", "ttl", "ttlType", "timestamp", "perms", "refs"}
)


def encode_record(record: Record) -> bytes:
    return dumps_ordered(record_to_cbor_obj(record))


def dumps_ordered(obj: Any) -> bytes:
    """CBOR of a structure whose maps were built with their keys already in RFC 8949
    §4.2.1 order, as every builder here does: then plain encoding is the deterministic
    one (cbor2 always writes the shortest integer and length heads) and about three
    times faster than sorting on every call. Tests hold the two equal."""
    return cbor2.dumps(obj)


def record_to_cbor_obj(record: Record) -> dict[str, Any]:
    """The plain structure behind ``encode_record``, for embedding in larger messages.

    Keys in encoded-bytes order: shorter first, then bytewise (RFC 8949 §4.2.1).
    """
    return {
        "v": FORMAT_VERSION,
        "handle": record.handle,
        "values": [_value_obj(v) for v in record.values],
    }


def _value_obj(value: HandleValue) -> dict[str, Any]:
    return {
        "ttl": value.ttl,
        "data": _data_obj(value.value),
        "refs": [[r.handle, r.index] for r in value.references],
        "type": value.type,
        "index": value.index,
        "perms": value.permissions.as_int(),
        "format": value.format.value,
        "ttlType": value.ttl_type.value,
        "timestamp": value.timestamp,
    }


def _data_obj(data: DataValue) -> Any:
    if isinstance(data, AdminRef):
        return {"index": data.index, "perms": int(data.permissions), "handle": data.handle}
    if isinstance(data, tuple):
        return [[r.handle, r.index] for r in data]
    return data


def decode_record(data: bytes) -> Record:
    """Decode and validate; raise EncodingError saying what is wrong."""
    try:
        obj = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise EncodingError(f"not CBOR: {exc}") from exc
    record = record_from_cbor_obj(obj)
    if encode_record(record) != data:
        raise EncodingError("CBOR is not in deterministic form (RFC 8949 §4.2.1)")
    return record


def record_from_cbor_obj(obj: Any) -> Record:
    if not isinstance(obj, dict) or set(obj) != {"v", "handle", "values"}:
        raise EncodingError("record must be a map of v, handle, values")
    if obj["v"] != FORMAT_VERSION:
        raise EncodingError(
            f"record format version {shown(obj['v'])} is not supported "
            f"(this node reads version {FORMAT_VERSION})"
        )
    handle, raw_values = obj["handle"], obj["values"]
    if not isinstance(handle, str) or not isinstance(raw_values, list):
        raise EncodingError("record handle must be text and values an array")
    values = tuple(_value_from_obj(v, k) for k, v in enumerate(raw_values))
    try:
        check_values(values)
    except IdresError as exc:
        raise EncodingError(f"record {handle!r} decodes to invalid values: {exc.message}") from exc
    return Record(handle=handle, values=values)


def _uint(obj: dict[str, Any], key: str, where: str) -> int:
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise EncodingError(f"{where}.{key} must be an unsigned integer")
    return v


def _value_from_obj(obj: Any, pos: int) -> HandleValue:
    where = f"values[{pos}]"
    if not isinstance(obj, dict) or set(obj) != _VALUE_KEYS:
        raise EncodingError(f"{where} must be a map of " + ", ".join(sorted(_VALUE_KEYS)))
    try:
        fmt = DataFormat(obj["format"])
        ttl_type = TtlType(obj["ttlType"])
    except (ValueError, TypeError) as exc:
        raise EncodingError(f"{where}: {exc}") from exc
    perms = _uint(obj, "perms", where)
    if perms > 0b1111 or not isinstance(obj["type"], str):
        raise EncodingError(f"{where}: perms must be 4 bits and type text")
    return HandleValue(
        index=_uint(obj, "index", where),
        type=obj["type"],
        format=fmt,
        value=_data_from_obj(fmt, obj["data"], where),
        ttl=_uint(obj, "ttl", where),
        ttl_type=ttl_type,
        timestamp=_uint(obj, "timestamp", where),
        permissions=Permissions.from_bits(format(perms, "04b")),
        references=_refs(obj["refs"], f"{where}.refs"),
    )


def _data_from_obj(fmt: DataFormat, data: Any, where: str) -> DataValue:
    if fmt is DataFormat.STRING:
        if isinstance(data, str):
            return data
    elif fmt is DataFormat.ADMIN:
        if isinstance(data, dict):
            return _admin_from_obj(data, f"{where}.data")
    elif fmt is DataFormat.VLIST:
        return _refs(data, f"{where}.data")
    elif isinstance(data, bytes):
        return data
    raise EncodingError(f"{where}.data has the wrong CBOR type for format {fmt!s}")


def _admin_from_obj(data: dict[Any, Any], where: str) -> AdminRef:
    if set(data) != {"handle", "index", "perms"} or not isinstance(data["handle"], str):
        raise EncodingError(f"{where} must be a map of handle, index, perms")
    perms = _uint(data, "perms", where)
    if perms >= 1 << 12:
        raise EncodingError(f"{where}.perms must be 12 bits")
    return AdminRef(
        handle=data["handle"], index=_uint(data, "index", where), permissions=AdminPerm(perms)
    )


def _refs(raw: Any, where: str) -> tuple[Reference, ...]:
    if not isinstance(raw, list):
        raise EncodingError(f"{where} must be an array")
    out = []
    for k, item in enumerate(raw):
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not isinstance(item[0], str)
            or isinstance(item[1], bool)
            or not isinstance(item[1], int)
        ):
            raise EncodingError(f"{where}[{k}] must be [handle, index]")
        out.append(Reference(handle=item[0], index=item[1]))
    return tuple(out)


def encode_data(value: HandleValue) -> bytes:
    """One value's data as the store keeps it: the bytes themselves for string (UTF-8)
    and binary formats, deterministic CBOR for the structured ones (admin, vlist)."""
    data = value.value
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, bytes):
        return data
    return dumps_ordered(_data_obj(data))


def decode_data(fmt: DataFormat, data: bytes) -> DataValue:
    if fmt is DataFormat.STRING:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EncodingError(f"stored string is not UTF-8: {exc}") from exc
    if fmt not in (DataFormat.ADMIN, DataFormat.VLIST):
        return data
    try:
        obj = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError) as exc:
        raise EncodingError(f"stored data is not CBOR: {exc}") from exc
    return _data_from_obj(fmt, obj, "data")


_EMPTY_ARRAY = b"\x80"


def encode_refs(refs: tuple[Reference, ...]) -> bytes:
    if not refs:
        return _EMPTY_ARRAY
    return cbor2.dumps([[r.handle, r.index] for r in refs], canonical=True)


def decode_refs(data: bytes) -> tuple[Reference, ...]:
    try:
        obj = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError) as exc:
        raise EncodingError(f"stored references are not CBOR: {exc}") from exc
    return _refs(obj, "refs")
