"""A record's values as the Handle protocol carries them (RFC 3651 §3, RFC 3652 §3.1).

The record model (schemas/record.py) keeps what the REST API shows; here each value
becomes the wire's index, timestamp, type, data bytes, TTL and permission bits, with
the typed data the CNRI client decodes: HS_ADMIN and HS_VLIST in its binary form, a
key in the Handle key encoding. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.handle_wire import HandleValue as WireValue
from schemas.record import AdminPerm, AdminRef, DataFormat, HandleValue, Reference, TtlType

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
