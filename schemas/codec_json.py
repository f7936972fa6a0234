"""The Handle.Net REST JSON shape of records, both ways.

Decoding is strict: unknown fields, wrong types and bad encodings are all reported
together as one InvalidValue, each with the field path that failed.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.errors import FieldError, InvalidValue
from schemas.record import (
    DEFAULT_PERMISSIONS,
    DEFAULT_TTL,
    MAX_TIMESTAMP,
    MAX_VALUES,
    AdminPerm,
    AdminRef,
    DataFormat,
    DataValue,
    HandleValue,
    Permissions,
    Record,
    Reference,
    TtlType,
    values_errors,
)

_VALUE_FIELDS = frozenset(
    {"index", "type", "data", "ttl", "ttlType", "timestamp", "permissions", "references"}
)


def format_timestamp(seconds: int) -> str:
    # clamped, so that a record from any source (a peer, an old row) can always be shown
    clamped = min(max(seconds, 0), MAX_TIMESTAMP)
    return datetime.fromtimestamp(clamped, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_to_json(
    record: Record, *, values: tuple[HandleValue, ...] | None = None
) -> dict[str, Any]:
    """The success body for a record; ``values`` narrows it to a filtered subset."""
    shown = record.values if values is None else values
    return {"responseCode": 1, "handle": record.handle, "values": [value_to_json(v) for v in shown]}


def dumps(body: dict[str, Any]) -> bytes:
    """A JSON body's bytes, compact: every answer idres gives is encoded here."""
    try:
        return orjson.dumps(body)
    except TypeError:  # a lone surrogate echoed from input: escape it instead
        return json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode("ascii")


@dataclass(frozen=True, slots=True)
class PublicAnswer:
    """What anyone may read of a record: ``GET /api/handles/{id}``'s body, and how long
    a cache may keep it (RFC 3651 §3.1): ``ttl`` the shortest relative TTL of its
    values, ``expires_at`` the earliest absolute one (seconds since the epoch)."""

    body: bytes
    ttl: float | None
    expires_at: float | None


def public_answer(record: Record) -> PublicAnswer | None:
    """The answer to anyone for ``record``; None if none of its values is public (the
    holder asks for a signature then, see resolver.api.local_answer)."""
    public = tuple(v for v in record.values if v.permissions.public_read)
    if not public:
        return None
    relative = [v.ttl for v in public if v.ttl_type is not TtlType.ABSOLUTE]
    absolute = [v.ttl for v in public if v.ttl_type is TtlType.ABSOLUTE]
    return PublicAnswer(
        body=dumps(record_to_json(record, values=public)),
        ttl=float(min(relative)) if relative else None,
        expires_at=float(min(absolute)) if absolute else None,
    )


def value_to_json(value: HandleValue) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": value.index,
        "type": value.type,
        "data": {"format": str(value.format), "value": _data_to_json(value.format, value.value)},
        "ttl": value.ttl,
        "timestamp": format_timestamp(value.timestamp),
    }
    if value.ttl_type is TtlType.ABSOLUTE:
        out["ttlType"] = "absolute"
    if value.permissions != DEFAULT_PERMISSIONS:
        out["permissions"] = value.permissions.to_bits()
    if value.references:
        out["references"] = [{"handle": r.handle, "index": r.index} for r in value.references]
    return out


def _data_to_json(fmt: DataFormat, data: DataValue) -> Any:
    if isinstance(data, AdminRef):
        return {
            "handle": data.handle,
            "index": data.index,
            "permissions": data.permissions.to_bits(),
        }
    if isinstance(data, tuple):
        return [{"handle": r.handle, "index": r.index} for r in data]
    if isinstance(data, bytes):
        return data.hex() if fmt is DataFormat.HEX else base64.b64encode(data).decode("ascii")
    return data


def values_from_json(body: Any, *, now: int) -> tuple[HandleValue, ...]:
    """Decode and validate the ``values`` of a request body ``{"values": [...]}``.

    Values without a timestamp get ``now``; every error comes back in one InvalidValue.
    """
    if not isinstance(body, dict):
        raise InvalidValue([FieldError(field="(body)", reason="must be a JSON object")])
    errors = [FieldError(field=k, reason="unknown field") for k in body if k != "values"]
    raw = body.get("values")
    if not isinstance(raw, list):
        errors.append(FieldError(field="values", reason="must be a list of values"))
        raise InvalidValue(errors)
    if len(raw) > MAX_VALUES:  # refused before any is decoded: no work for a huge list
        errors.append(FieldError(field="values", reason=f"{len(raw)} values; at most {MAX_VALUES}"))
        raise InvalidValue(errors)
    decoded: list[tuple[int, HandleValue]] = []
    for pos, item in enumerate(raw):
        value = _value_from_json(item, f"values[{pos}]", now, errors)
        if value is not None:
            decoded.append((pos, value))
    errors.extend(values_errors(decoded, count=len(raw)))
    if errors:
        raise InvalidValue(errors)
    return tuple(v for _, v in decoded)


class _Fields:
    """Typed getters over one JSON object that record what was wrong and where."""

    def __init__(self, obj: dict[str, Any], where: str, errors: list[FieldError]) -> None:
        self.obj, self.where, self.errors = obj, where, errors

    def fail(self, name: str, reason: str) -> None:
        self.errors.append(FieldError(field=f"{self.where}.{name}", reason=reason))

    def integer(self, name: str, default: int | None = None) -> int | None:
        v = self.obj.get(name, default)
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(name, "must be an integer" if name in self.obj else "is required")
            return None
        return v

    def text(self, name: str) -> str | None:
        v = self.obj.get(name)
        if not isinstance(v, str):
            self.fail(name, "must be a string" if name in self.obj else "is required")
            return None
        return v


_FAST_KEYS = frozenset({"index", "type", "data", "ttl"})


def _simple_value(item: dict[str, Any], now: int) -> HandleValue | None:
    """The common shape (a string value, default permissions) without the general
    machinery; None sends anything else down the full decoder. Rules are checked
    afterwards for both alike (``values_errors``)."""
    if not item.keys() <= _FAST_KEYS:
        return None
    index, type_, data = item.get("index"), item.get("type"), item.get("data")
    ttl = item.get("ttl", DEFAULT_TTL)
    if type(index) is not int or type(type_) is not str or type(ttl) is not int:
        return None  # exact types: bool is an int subclass and is not an index
    if type(data) is dict and data.keys() == {"format", "value"} and data["format"] == "string":
        data = data["value"]
    if type(data) is not str:
        return None
    return HandleValue(
        index=index, type=type_, format=DataFormat.STRING, value=data, ttl=ttl, timestamp=now
    )


def _value_from_json(
    item: Any, where: str, now: int, errors: list[FieldError]
) -> HandleValue | None:
    if type(item) is dict:
        simple = _simple_value(item, now)
        if simple is not None:
            return simple
    if not isinstance(item, dict):
        errors.append(FieldError(field=where, reason="must be a JSON object"))
        return None
    start = len(errors)
    f = _Fields(item, where, errors)
    for key in item:
        if key not in _VALUE_FIELDS:
            f.fail(key, "unknown field")
    index = f.integer("index")
    type_ = f.text("type")
    fmt, data = _data_from_json(item.get("data"), f"{where}.data", errors)
    ttl = f.integer("ttl", DEFAULT_TTL)
    ttl_type = _ttl_type(item.get("ttlType", "relative"), f)
    timestamp = _timestamp(item.get("timestamp"), now, f)
    permissions = _permissions(item.get("permissions", "1110"), f)
    references = _references(item.get("references", []), f"{where}.references", errors)
    if (
        len(errors) > start
        or index is None
        or type_ is None
        or fmt is None
        or data is None
        or ttl is None
        or ttl_type is None
        or timestamp is None
        or permissions is None
        or references is None
    ):
        return None
    return HandleValue(
        index=index,
        type=type_,
        format=fmt,
        value=data,
        ttl=ttl,
        ttl_type=ttl_type,
        timestamp=timestamp,
        permissions=permissions,
        references=references,
    )


def _data_from_json(
    raw: Any, where: str, errors: list[FieldError]
) -> tuple[DataFormat | None, DataValue | None]:
    if isinstance(raw, str):  # shorthand: "data": "text" is a string value
        return DataFormat.STRING, raw
    if not isinstance(raw, dict):
        errors.append(FieldError(field=where, reason="must be {format, value} or a string"))
        return None, None
    f = _Fields(raw, where, errors)
    for key in raw:
        if key not in ("format", "value"):
            f.fail(key, "unknown field")
    name = raw.get("format", "string")
    try:
        fmt = DataFormat(name)
    except ValueError:
        f.fail("format", f"{name!r} is not one of " + ", ".join(x.value for x in DataFormat))
        return None, None
    if "value" not in raw:
        f.fail("value", "is required")
        return None, None
    value = raw["value"]
    if fmt is DataFormat.STRING:
        if isinstance(value, str):
            return fmt, value
        f.fail("value", "must be a string")
        return None, None
    if fmt in (DataFormat.BASE64, DataFormat.KEY, DataFormat.HEX):
        return fmt, _binary(value, fmt, f)
    if fmt is DataFormat.ADMIN:
        return fmt, _admin(value, f"{where}.value", errors)
    refs = _references(value, f"{where}.value", errors)
    return fmt, refs


def _binary(value: Any, fmt: DataFormat, f: _Fields) -> bytes | None:
    if not isinstance(value, str):
        f.fail("value", f"must be a {fmt!s} string")
        return None
    try:
        if fmt is DataFormat.HEX:
            return bytes.fromhex(value)
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        f.fail("value", f"is not valid {'hex' if fmt is DataFormat.HEX else 'base64'}")
        return None


def _admin(value: Any, where: str, errors: list[FieldError]) -> AdminRef | None:
    if not isinstance(value, dict):
        errors.append(FieldError(field=where, reason="must be {handle, index, permissions}"))
        return None
    f = _Fields(value, where, errors)
    for key in value:
        if key not in ("handle", "index", "permissions"):
            f.fail(key, "unknown field")
    handle = f.text("handle")
    raw_index = value.get("index")
    if (
        isinstance(raw_index, str)
        and raw_index.isascii()
        and raw_index.isdigit()
        and len(raw_index) < 11
    ):
        # pyhandle writes the admin's index as a string ("300"); Handle.Net takes it
        index: int | None = int(raw_index)
    else:
        index = f.integer("index")
    bits = f.text("permissions")
    if bits is not None and (len(bits) != 12 or set(bits) - {"0", "1"}):
        f.fail("permissions", "must be 12 characters of 0 and 1")
        bits = None
    if handle is None or index is None or bits is None:
        return None
    return AdminRef(handle=handle, index=index, permissions=AdminPerm.from_bits(bits))


def _references(raw: Any, where: str, errors: list[FieldError]) -> tuple[Reference, ...] | None:
    if not isinstance(raw, list):
        errors.append(FieldError(field=where, reason="must be a list of {handle, index}"))
        return None
    out: list[Reference] = []
    for k, item in enumerate(raw):
        if not isinstance(item, dict):
            errors.append(FieldError(field=f"{where}[{k}]", reason="must be {handle, index}"))
            continue
        f = _Fields(item, f"{where}[{k}]", errors)
        for key in item:
            if key not in ("handle", "index"):
                f.fail(key, "unknown field")
        handle, index = f.text("handle"), f.integer("index")
        if handle is not None and index is not None:
            out.append(Reference(handle=handle, index=index))
    return tuple(out)


def _ttl_type(raw: Any, f: _Fields) -> TtlType | None:
    if raw == "relative" or (type(raw) is int and raw == 0):
        return TtlType.RELATIVE
    if raw == "absolute" or (type(raw) is int and raw == 1):
        return TtlType.ABSOLUTE
    f.fail("ttlType", "must be 'relative' or 'absolute'")
    return None


def _timestamp(raw: Any, now: int, f: _Fields) -> int | None:
    if raw is None:
        return now
    if not isinstance(raw, str):
        f.fail("timestamp", "must be an ISO 8601 string such as 2026-11-23T08:00:00Z")
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        f.fail("timestamp", f"{raw[:40]!r} is not ISO 8601 (2026-11-23T08:00:00Z)")
        return None
    if parsed.tzinfo is None:
        f.fail("timestamp", "needs a time zone (Z or +hh:mm)")
        return None
    try:
        seconds = int(parsed.timestamp())
    except (OverflowError, ValueError):
        seconds = -1
    if not 0 <= seconds <= MAX_TIMESTAMP:
        f.fail("timestamp", f"{raw[:40]!r} is outside 1970 to 9999 UTC")
        return None
    return seconds


def _permissions(raw: Any, f: _Fields) -> Permissions | None:
    if not isinstance(raw, str) or len(raw) != 4 or set(raw) - {"0", "1"}:
        f.fail(
            "permissions",
            "must be 4 characters of 0 and 1 (admin read, admin write, public read, public write)",
        )
        return None
    return Permissions.from_bits(raw)
