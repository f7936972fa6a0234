"""A record's values as the Handle protocol carries them (RFC 3651 §3, RFC 3652 §3.1).

The record model (schemas/record.py) keeps what the REST API shows; here each value
becomes the wire's index, timestamp, type, data bytes, TTL and permission bits, with
the typed data the CNRI client decodes: HS_ADMIN and HS_VLIST in its binary form, a
key in the Handle key encoding; and back, for the values an administrator sends
(``record_values``). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from schemas.errors import FieldError, InvalidValue
from schemas.handle_wire import (
    MAX_HANDLE_LENGTH,
    MAX_LIST_ITEMS,
    MAX_STRING,
    HandleWireError,
    ResponseCode,
    decode_public_key,
)
from schemas.handle_wire import HandleValue as WireValue
from schemas.handle_wire.wire import Reader
from schemas.record import (
    AdminPerm,
    AdminRef,
    DataFormat,
    DataValue,
    HandleValue,
    Permissions,
    Reference,
    TtlType,
    values_errors,
)

# The HS_ADMIN permission bits as the CNRI library puts them on the wire
# (net.handle.hdllib.Encoder.PERM_*, handle-client 9.3.1). RFC 3651 §3.5 lists
# Read_Value before the three admin bits; every deployed server and client follows
# the library, so its order is the one that interoperates.
_WIRE_PERMS = (
    (AdminPerm.ADD_HANDLE, 0x0001),
    (AdminPerm.DELETE_HANDLE, 0x0002),
    (AdminPerm.ADD_DERIVED_PREFIX, 0x0004),
    (AdminPerm.DELETE_DERIVED_PREFIX, 0x0008),
    (AdminPerm.MODIFY_VALUE, 0x0010),
    (AdminPerm.REMOVE_VALUE, 0x0020),
    (AdminPerm.ADD_VALUE, 0x0040),
    (AdminPerm.MODIFY_ADMIN, 0x0080),
    (AdminPerm.REMOVE_ADMIN, 0x0100),
    (AdminPerm.ADD_ADMIN, 0x0200),
    (AdminPerm.READ_VALUE, 0x0400),
    (AdminPerm.LIST_HANDLES, 0x0800),
)
# The Handle key encoding names its type first (net.handle.hdllib.Common
# KEY_ENCODING_*); the library knows DSA, RSA and DH keys only. idres's keys are
# Ed25519 and ECDSA: their DER SubjectPublicKeyInfo goes under a type of its own, so
# a client that cannot use the key says which type it met.
KEY_TYPE_DER = b"DER_PUB_KEY"


def wire_values(values: Iterable[HandleValue]) -> tuple[WireValue, ...]:
    return tuple(wire_value(v) for v in values)


def wire_value(value: HandleValue) -> WireValue:
    return WireValue(
        index=value.index,
        timestamp=value.timestamp,
        type=value.type.encode("utf-8"),
        data=wire_data(value),
        ttl_type=1 if value.ttl_type is TtlType.ABSOLUTE else 0,
        ttl=value.ttl,
        admin_read=value.permissions.admin_read,
        admin_write=value.permissions.admin_write,
        public_read=value.permissions.public_read,
        public_write=value.permissions.public_write,
        references=tuple((r.handle.encode("utf-8"), r.index) for r in value.references),
    )


def wire_data(value: HandleValue) -> bytes:
    data = value.value
    if isinstance(data, AdminRef):
        return admin_data(data)
    if isinstance(data, tuple):
        return vlist_data(data)
    if isinstance(data, bytes):
        return key_data(data) if value.format is DataFormat.KEY else data
    return data.encode("utf-8")


def admin_data(admin: AdminRef) -> bytes:
    """HS_ADMIN: permissions (2 bytes), the admin's handle, its index (RFC 3651 §3.5;
    net.handle.hdllib.Encoder.encodeAdminRecord)."""
    bits = 0
    for perm, bit in _WIRE_PERMS:
        if perm in admin.permissions:
            bits |= bit
    return bits.to_bytes(2, "big") + _string(admin.handle.encode("utf-8")) + _int(admin.index)


def vlist_data(members: tuple[Reference, ...]) -> bytes:
    """HS_VLIST: a count, then each member's handle and index (RFC 3651 §3.5;
    Encoder.encodeValueReferenceList)."""
    out = bytearray(_int(len(members)))
    for member in members:
        out += _string(member.handle.encode("utf-8")) + _int(member.index)
    return bytes(out)


def key_data(der: bytes) -> bytes:
    """HS_PUBKEY: the key type, two reserved bytes, then the key (RFC 3651 §3.5 leaves
    the encoding to the key type; net.handle.hdllib.Util.getBytesFromPublicKey)."""
    return _string(KEY_TYPE_DER) + b"\x00\x00" + _string(der)


def _string(data: bytes) -> bytes:
    return _int(len(data)) + data


def _int(n: int) -> bytes:
    return n.to_bytes(4, "big")


# ---- values a Handle client sends (create, add, modify) -----------------------------------

_PERM_OF_BIT = tuple((bit, perm) for perm, bit in _WIRE_PERMS)
_TTL_TYPES = {0: TtlType.RELATIVE, 1: TtlType.ABSOLUTE}


def record_values(wire: Sequence[WireValue], *, now: int) -> tuple[HandleValue, ...]:
    """The record values a client's wire values stand for, checked as an HTTP write's
    are (``check_values``): HS_ADMIN and HS_VLIST from the library's binary form, a key
    (Handle encoding or DER) as DER SubjectPublicKeyInfo, other data as text when it is
    UTF-8, else as bytes (base64 in the REST form); a timestamp of 0 is ``now``.
    Raises InvalidValue with every field that failed."""
    errors: list[FieldError] = []
    numbered: list[tuple[int, HandleValue]] = []
    for pos, value in enumerate(wire):
        where = f"values[{pos}]"
        try:
            numbered.append((pos, record_value(value, now=now, where=where)))
        except InvalidValue as exc:
            errors.extend(exc.errors)
    errors.extend(values_errors(numbered, count=len(wire)))
    if errors:
        raise InvalidValue(errors)
    return tuple(v for _, v in numbered)


def record_value(value: WireValue, *, now: int, where: str = "value") -> HandleValue:
    type_ = value.type.decode("utf-8")  # the codec has checked it is UTF-8
    fmt, data = _record_data(type_, value.data, f"{where}.data.value")
    ttl_type = _TTL_TYPES.get(value.ttl_type)
    if ttl_type is None:
        raise InvalidValue.single(f"{where}.ttl_type", f"must be 0 or 1, not {value.ttl_type}")
    return HandleValue(
        index=value.index,
        type=type_,
        format=fmt,
        value=data,
        ttl=value.ttl,
        ttl_type=ttl_type,
        timestamp=value.timestamp or now,
        permissions=Permissions(
            admin_read=value.admin_read,
            admin_write=value.admin_write,
            public_read=value.public_read,
            public_write=value.public_write,
        ),
        references=tuple(Reference(handle=h.decode("utf-8"), index=i) for h, i in value.references),
    )


def _record_data(type_: str, data: bytes, where: str) -> tuple[DataFormat, DataValue]:
    try:
        if type_ == "HS_ADMIN":
            return DataFormat.ADMIN, _admin_ref(data)
        if type_ == "HS_VLIST":
            return DataFormat.VLIST, _vlist(data)
        if type_ == "HS_PUBKEY":
            key = decode_public_key(_der_of(data))
            return DataFormat.KEY, key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except HandleWireError as exc:
        raise InvalidValue.single(where, str(exc)) from None
    try:
        return DataFormat.STRING, data.decode("utf-8")
    except UnicodeDecodeError:
        return DataFormat.BASE64, data


def _der_of(data: bytes) -> bytes:
    """HS_PUBKEY data as ``key_data`` hands it out (DER_PUB_KEY, so that a value read
    can be sent back) unwrapped to its DER; any other encoding as it is."""
    head = _string(KEY_TYPE_DER) + b"\x00\x00"
    if not data.startswith(head):
        return data
    r = Reader(data, "HS_PUBKEY data", start=len(head))
    der = r.octets("key", cap=MAX_STRING)
    r.expect_end()
    return der


def _admin_ref(data: bytes) -> AdminRef:
    r = Reader(data, "HS_ADMIN data")
    bits = r.u16("permissions")
    handle = r.text("handle", cap=MAX_HANDLE_LENGTH, code=ResponseCode.INVALID_VALUE)
    index = r.u32("index")
    r.expect_end()
    perms = AdminPerm(0)
    for bit, perm in _PERM_OF_BIT:
        if bits & bit:
            perms |= perm
    return AdminRef(handle=handle.decode("utf-8"), index=index, permissions=perms)


def _vlist(data: bytes) -> tuple[Reference, ...]:
    r = Reader(data, "HS_VLIST data")
    count = r.count("members", cap=MAX_LIST_ITEMS, item_size=8)
    members = tuple(
        Reference(
            handle=r.text("handle", cap=MAX_HANDLE_LENGTH, code=ResponseCode.INVALID_VALUE).decode(
                "utf-8"
            ),
            index=r.u32("index"),
        )
        for _ in range(count)
    )
    r.expect_end()
    return members
