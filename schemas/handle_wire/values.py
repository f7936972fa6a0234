"""Handle values (RFC 3652 §3.2.2, RFC 3651 §3.1) and the HS_SITE record (RFC 3651 §3.2.2).

HS_SITE is a value type whose data is a binary site description (RFC 3651 §3.2.2); it is
what a client reads to learn which servers serve a prefix and how to reach them.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from schemas.handle_wire.codes import HashOption, ResponseCode, TtlType
from schemas.handle_wire.limits import (
    MAX_HANDLE_LENGTH,
    MAX_LIST_ITEMS,
    MAX_STRING,
    MAX_VALUES,
    PROTOCOL_VERSION,
)
from schemas.handle_wire.wire import Reader, Writer

# RFC 3652 §3.2.2 <Permission>, the low four bits; CNRI Encoder.PERM_*.
_ADMIN_READ = 0x08
_ADMIN_WRITE = 0x04
_PUBLIC_READ = 0x02
_PUBLIC_WRITE = 0x01

# The smallest encodings, used to check a count against the bytes that remain.
VALUE_MIN_SIZE = 4 + 4 + 1 + 4 + 1 + 4 + 4 + 4  # index..permission, empty type/data/refs
_REFERENCE_MIN_SIZE = 4 + 4
_ATTRIBUTE_MIN_SIZE = 4 + 4
_SERVER_MIN_SIZE = 4 + 16 + 4 + 4
_INTERFACE_SIZE = 1 + 1 + 4

# RFC 3651 §3.2.2 <PrimaryMask>; CNRI SiteInfo.PRIMARY_SITE, MULTI_PRIMARY.
_PRIMARY = 0x80
_MULTI_PRIMARY = 0x40
# CNRI stores an IPv4 address as twelve zero octets and the four of the address.
_IPV4_PREFIX = bytes(12)


@dataclass(frozen=True, slots=True, kw_only=True)
class HandleValue:
    """One handle value; the defaults are CNRI ``HandleValue``'s."""

    index: int
    type: bytes
    data: bytes
    ttl_type: int = TtlType.RELATIVE
    ttl: int = 86_400
    timestamp: int = 0
    admin_read: bool = True
    admin_write: bool = True
    public_read: bool = True
    public_write: bool = False
    references: tuple[tuple[bytes, int], ...] = ()  # (handle, index) pairs

    def encode(self) -> bytes:
        w = Writer()
        self.write(w)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> HandleValue:
        """One value that fills ``data`` exactly (as CNRI stores them)."""
        r = Reader(data, "handle value")
        value = cls.read(r)
        r.expect_end()
        return value

    def write(self, w: Writer) -> None:
        # RFC 3652 §3.2.2 <HandleValue>: Index, Timestamp, TTLType, TTL, Permission, Type, Data,
        # References, in this order (CNRI Encoder.encodeHandleValue).
        w.u32(self.index, "index")
        w.u32(self.timestamp, "timestamp")
        w.u8(self.ttl_type, "ttl_type")
        w.i32(self.ttl, "ttl")
        w.u8(
            (_ADMIN_READ if self.admin_read else 0)
            | (_ADMIN_WRITE if self.admin_write else 0)
            | (_PUBLIC_READ if self.public_read else 0)
            | (_PUBLIC_WRITE if self.public_write else 0),
            "permission",
        )
        w.octets(self.type, "type", cap=MAX_STRING)
        w.octets(self.data, "data", cap=MAX_STRING)
        w.count(len(self.references), "references", cap=MAX_LIST_ITEMS)
        for handle, index in self.references:
            w.octets(handle, "reference handle", cap=MAX_HANDLE_LENGTH)
            w.u32(index, "reference index")

    @classmethod
    def read(cls, r: Reader) -> HandleValue:
        index = r.u32("index")
        timestamp = r.u32("timestamp")
        ttl_type = r.u8("ttl_type")
        ttl = r.i32("ttl")
        # The high four bits are unassigned; CNRI ignores them and so do we.
        permission = r.u8("permission")
        type_ = r.text("type", cap=MAX_STRING, code=ResponseCode.INVALID_VALUE)
        data = r.octets("data", cap=MAX_STRING)
        count = r.count("references", cap=MAX_LIST_ITEMS, item_size=_REFERENCE_MIN_SIZE)
        references = tuple(
            (
                r.text("reference handle", cap=MAX_HANDLE_LENGTH, code=ResponseCode.INVALID_VALUE),
                r.u32("reference index"),
            )
            for _ in range(count)
        )
        return cls(
            index=index,
            type=type_,
            data=data,
            ttl_type=ttl_type,
            ttl=ttl,
            timestamp=timestamp,
            admin_read=bool(permission & _ADMIN_READ),
            admin_write=bool(permission & _ADMIN_WRITE),
            public_read=bool(permission & _PUBLIC_READ),
            public_write=bool(permission & _PUBLIC_WRITE),
            references=references,
        )


def write_values(w: Writer, values: tuple[HandleValue, ...]) -> None:
    """A <ValueList>: a 4-byte count, then the values (RFC 3652 §3.2.2)."""
    w.count(len(values), "values", cap=MAX_VALUES)
    for value in values:
        value.write(w)


def read_values(r: Reader) -> tuple[HandleValue, ...]:
    count = r.count("values", cap=MAX_VALUES, item_size=VALUE_MIN_SIZE)
    return tuple(HandleValue.read(r) for _ in range(count))


@dataclass(frozen=True, slots=True, kw_only=True)
class Interface:
    """RFC 3651 §3.2.2 <ServiceInterface>: what a server answers, over what, where."""

    service_type: int  # ServiceType
    protocol: int  # TransportProtocol
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerInfo:
    """RFC 3651 §3.2.2 <ServerRecord>."""

    server_id: int
    address: IPv4Address | IPv6Address
    public_key: bytes = b""  # the server's key, in CNRI's HS_PUBKEY encoding
    interfaces: tuple[Interface, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteInfo:
    """The data of an HS_SITE value (RFC 3651 §3.2.2); defaults are CNRI ``SiteInfo``'s."""

    version: int = 1  # <Version> of the record format; CNRI SITE_RECORD_FORMAT_VERSION
    major_version: int = PROTOCOL_VERSION[0]  # <ProtocolVersion> the site's servers speak
    minor_version: int = PROTOCOL_VERSION[1]
    serial_number: int = 0  # <SerialNumber>, raised on every change of the site
    is_primary: bool = True
    multi_primary: bool = False
    hash_option: int = HashOption.BY_HANDLE
    hash_filter: bytes = b""
    attributes: tuple[tuple[bytes, bytes], ...] = ()  # (name, value), e.g. b"desc"
    servers: tuple[ServerInfo, ...] = ()

    def encode(self) -> bytes:
        # Field order: CNRI Encoder.encodeSiteInfoRecord, as RFC 3651 §3.2.2 lists them.
        w = Writer()
        w.u16(self.version, "version")
        w.u8(self.major_version, "major_version")
        w.u8(self.minor_version, "minor_version")
        w.u16(self.serial_number, "serial_number")
        w.u8(
            (_PRIMARY if self.is_primary else 0) | (_MULTI_PRIMARY if self.multi_primary else 0),
            "primary_mask",
        )
        w.u8(self.hash_option, "hash_option")
        w.octets(self.hash_filter, "hash_filter", cap=MAX_STRING)
        w.count(len(self.attributes), "attributes", cap=MAX_LIST_ITEMS)
        for name, value in self.attributes:
            w.octets(name, "attribute name", cap=MAX_STRING)
            w.octets(value, "attribute value", cap=MAX_STRING)
        w.count(len(self.servers), "servers", cap=MAX_LIST_ITEMS)
        for server in self.servers:
            w.u32(server.server_id, "server_id")
            packed = server.address.packed
            w.raw(_IPV4_PREFIX + packed if len(packed) == 4 else packed)
            w.octets(server.public_key, "public_key", cap=MAX_STRING)
            w.count(len(server.interfaces), "interfaces", cap=MAX_LIST_ITEMS)
            for interface in server.interfaces:
                w.u8(interface.service_type, "service_type")
                w.u8(interface.protocol, "protocol")
                w.u32(interface.port, "port")
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> SiteInfo:
        """An HS_SITE value's data; CNRI rejects bytes left over, and so do we."""
        r = Reader(data, "HS_SITE")
        site = cls.read(r)
        r.expect_end()
        return site

    @classmethod
    def read(cls, r: Reader) -> SiteInfo:
        version = r.u16("version")
        major_version = r.u8("major_version")
        minor_version = r.u8("minor_version")
        serial_number = r.u16("serial_number")
        mask = r.u8("primary_mask")
        hash_option = r.u8("hash_option")
        hash_filter = r.octets("hash_filter", cap=MAX_STRING)
        count = r.count("attributes", cap=MAX_LIST_ITEMS, item_size=_ATTRIBUTE_MIN_SIZE)
        attributes = tuple(
            (
                r.octets("attribute name", cap=MAX_STRING),
                r.octets("attribute value", cap=MAX_STRING),
            )
            for _ in range(count)
        )
        count = r.count("servers", cap=MAX_LIST_ITEMS, item_size=_SERVER_MIN_SIZE)
        servers = tuple(_read_server(r) for _ in range(count))
        return cls(
            version=version,
            major_version=major_version,
            minor_version=minor_version,
            serial_number=serial_number,
            is_primary=bool(mask & _PRIMARY),
            multi_primary=bool(mask & _MULTI_PRIMARY),
            hash_option=hash_option,
            hash_filter=hash_filter,
            attributes=attributes,
            servers=servers,
        )


def _read_server(r: Reader) -> ServerInfo:
    server_id = r.u32("server_id")
    raw = r.raw(16, "address")
    address: IPv4Address | IPv6Address = (
        IPv4Address(raw[12:]) if raw[:12] == _IPV4_PREFIX else IPv6Address(raw)
    )
    public_key = r.octets("public_key", cap=MAX_STRING)
    count = r.count("interfaces", cap=MAX_LIST_ITEMS, item_size=_INTERFACE_SIZE)
    interfaces = tuple(
        Interface(service_type=r.u8("service_type"), protocol=r.u8("protocol"), port=r.u32("port"))
        for _ in range(count)
    )
    return ServerInfo(
        server_id=server_id, address=address, public_key=public_key, interfaces=interfaces
    )
