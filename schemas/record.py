"""The record: a list of typed values after the Handle System (RFC 3651 §3.1).

Value objects and the rules a record must satisfy; ``check_values`` reports every
broken rule at once. HS_ADMIN names who may change a record (``AdminRef``),
HS_PUBKEY carries a key that may sign for it. Nothing here does I/O.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag, StrEnum

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from schemas.errors import FieldError, InvalidIdentifier, InvalidValue
from schemas.identifiers import parse

MAX_INDEX = 2**31 - 1  # indexes and TTLs are 4-byte signed integers on the Handle wire
MAX_TTL = 2**31 - 1
MAX_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z, the last instant RFC 3339 can write
MAX_VALUES = 1000
MAX_DATA_BYTES = 65535
MAX_TYPE_BYTES = 128
MAX_REFERENCES = 100
DEFAULT_TTL = 86400
# RSA admin keys (what CNRI's client signs with): NIST SP 800-131A's floor since 2014
MIN_RSA_BITS = 2048


class DataFormat(StrEnum):
    STRING = "string"
    BASE64 = "base64"
    HEX = "hex"
    ADMIN = "admin"
    KEY = "key"
    VLIST = "vlist"


class TtlType(IntEnum):
    RELATIVE = 0
    ABSOLUTE = 1


class AdminPerm(IntFlag):
    """The twelve HS_ADMIN permissions (Handle Technical Manual, HS_ADMIN value)."""

    ADD_HANDLE = 1 << 0
    DELETE_HANDLE = 1 << 1
    ADD_DERIVED_PREFIX = 1 << 2
    DELETE_DERIVED_PREFIX = 1 << 3
    MODIFY_VALUE = 1 << 4
    REMOVE_VALUE = 1 << 5
    ADD_VALUE = 1 << 6
    READ_VALUE = 1 << 7
    MODIFY_ADMIN = 1 << 8
    REMOVE_ADMIN = 1 << 9
    ADD_ADMIN = 1 << 10
    LIST_HANDLES = 1 << 11

    @classmethod
    def from_bits(cls, bits: str) -> AdminPerm:
        """Parse the REST form: 12 characters, the first is LIST_HANDLES (bit 11)."""
        return cls(int(bits, 2))

    def to_bits(self) -> str:
        return format(int(self), "012b")


ALL_ADMIN_PERMS = AdminPerm((1 << 12) - 1)

KNOWN_HS_TYPES = frozenset(
    {
        "HS_ADMIN",
        "HS_PUBKEY",
        "HS_SITE",
        "HS_SIGNATURE",
        "HS_CERT",
        "HS_VLIST",
        "HS_ALIAS",
        "HS_SERV",
        "HS_NA_DELEGATE",
        "HS_SECKEY",
    }
)
# types whose data has one required format
TYPE_FORMATS = {
    "HS_ADMIN": DataFormat.ADMIN,
    "HS_PUBKEY": DataFormat.KEY,
    "HS_VLIST": DataFormat.VLIST,
}
_TYPE_RE = re.compile(r"[A-Za-z0-9_.:/+-]+")
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class Permissions:
    """Per-value access bits, in the order of their REST form ``"1110"``."""

    admin_read: bool = True
    admin_write: bool = True
    public_read: bool = True
    public_write: bool = False

    def to_bits(self) -> str:
        flags = (self.admin_read, self.admin_write, self.public_read, self.public_write)
        return "".join("1" if f else "0" for f in flags)

    def as_int(self) -> int:
        """The bits as a number, admin read = 8 ... public write = 1."""
        return 8 * self.admin_read + 4 * self.admin_write + 2 * self.public_read + self.public_write

    @classmethod
    def from_bits(cls, bits: str) -> Permissions:
        return cls(
            admin_read=bits[0] == "1",
            admin_write=bits[1] == "1",
            public_read=bits[2] == "1",
            public_write=bits[3] == "1",
        )


DEFAULT_PERMISSIONS = Permissions()


@dataclass(frozen=True, slots=True, kw_only=True)
class Reference:
    """A pointer to one value of another (or the same) record."""

    handle: str
    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminRef:
    """HS_ADMIN data: the admin is value ``index`` of ``handle`` (an HS_PUBKEY or a group)."""

    handle: str
    index: int
    permissions: AdminPerm

    def allows(self, perm: AdminPerm) -> bool:
        return perm in self.permissions


DataValue = str | bytes | AdminRef | tuple[Reference, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class HandleValue:
    index: int
    type: str
    format: DataFormat
    value: DataValue
    ttl: int = DEFAULT_TTL
    ttl_type: TtlType = TtlType.RELATIVE
    timestamp: int = 0  # seconds since the epoch, UTC
    permissions: Permissions = field(default=DEFAULT_PERMISSIONS)
    references: tuple[Reference, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """An identifier's values, kept sorted by index so equal records compare equal."""

    handle: str
    values: tuple[HandleValue, ...]

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.values, key=lambda v: v.index))
        if ordered != self.values:
            object.__setattr__(self, "values", ordered)

    def by_type(self, type_: str) -> tuple[HandleValue, ...]:
        return tuple(v for v in self.values if v.type == type_)

    def admins(self) -> tuple[AdminRef, ...]:
        return tuple(v.value for v in self.by_type("HS_ADMIN") if isinstance(v.value, AdminRef))

    def public_keys(self) -> dict[int, bytes]:
        """HS_PUBKEY values by index: DER SubjectPublicKeyInfo bytes."""
        return {v.index: v.value for v in self.by_type("HS_PUBKEY") if isinstance(v.value, bytes)}


def same_content(a: HandleValue, b: HandleValue) -> bool:
    """Whether two values say the same thing: a new timestamp alone is not a change."""
    return (a.type, a.format, a.value, a.ttl, a.ttl_type, a.permissions, a.references) == (
        b.type,
        b.format,
        b.value,
        b.ttl,
        b.ttl_type,
        b.permissions,
        b.references,
    )


def check_values(values: tuple[HandleValue, ...] | list[HandleValue]) -> None:
    """Raise one InvalidValue listing every rule the values break."""
    errors = values_errors(list(enumerate(values)), count=len(values))
    if errors:
        raise InvalidValue(errors)


def values_errors(
    numbered: list[tuple[int, HandleValue]], *, count: int, path: str = "values"
) -> list[FieldError]:
    """Every rule broken by ``numbered`` (position in the request, value) of ``count`` values.

    Positions are those of the caller's input, so a decoder that dropped malformed
    values still reports the rest at the places the client sent them.
    """
    errors: list[FieldError] = []
    if count == 0:
        errors.append(FieldError(field=path, reason="a record needs at least one value"))
    if count > MAX_VALUES:
        errors.append(FieldError(field=path, reason=f"{count} values; at most {MAX_VALUES}"))
    seen: dict[int, int] = {}
    for pos, value in numbered:
        where = f"{path}[{pos}]"
        if value.index in seen:
            errors.append(
                FieldError(
                    field=f"{where}.index",
                    reason=f"index {value.index} is already used by {path}[{seen[value.index]}]",
                )
            )
        else:
            seen[value.index] = pos
        errors.extend(value_errors(value, where))
    return errors


def value_errors(value: HandleValue, where: str) -> list[FieldError]:
    """Every rule one value breaks, each naming its field under ``where``."""
    errors: list[FieldError] = []

    def bad(name: str, reason: str) -> None:
        errors.append(FieldError(field=f"{where}.{name}", reason=reason))

    if not 1 <= value.index <= MAX_INDEX:
        bad("index", f"must be from 1 to {MAX_INDEX}, not {value.index}")
    for name, reason in _type_problems(value.type, value.format):
        bad(name, reason)
    errors.extend(_data_errors(value, where))
    if not 0 <= value.ttl <= MAX_TTL:
        bad("ttl", f"must be from 0 to {MAX_TTL} seconds, not {value.ttl}")
    if not 0 <= value.timestamp <= MAX_TIMESTAMP:
        bad("timestamp", "must be from 1970 to 9999 (RFC 3339 years have four digits)")
    if len(value.references) > MAX_REFERENCES:
        bad("references", f"{len(value.references)} references; at most {MAX_REFERENCES}")
    for k, ref in enumerate(value.references):
        errors.extend(_reference_errors(ref, f"{where}.references[{k}]"))
    return errors


@functools.lru_cache(maxsize=4096)
def _type_problems(type_: str, fmt: DataFormat) -> tuple[tuple[str, str], ...]:
    """What is wrong with a type name and its data format; cached, as a few types
    (URL, EMAIL, HS_ADMIN, ...) make up nearly every value."""
    problems: list[tuple[str, str]] = []
    type_bytes = len(type_.encode("utf-8", "surrogatepass"))
    if not type_ or type_bytes > MAX_TYPE_BYTES or not _TYPE_RE.fullmatch(type_):
        problems.append(
            (
                "type",
                f"{type_!r} is not a type name (1 to {MAX_TYPE_BYTES} of "
                "letters, digits and _ . : / + -)",
            )
        )
    elif type_.startswith("HS_") and type_ not in KNOWN_HS_TYPES:
        problems.append(
            (
                "type",
                f"{type_!r}: HS_ types are reserved; known: " + ", ".join(sorted(KNOWN_HS_TYPES)),
            )
        )
    required = TYPE_FORMATS.get(type_)
    if required is not None and fmt is not required:
        problems.append(("data.format", f"{type_} data must have format {required!s}, not {fmt!s}"))
    elif fmt in (DataFormat.ADMIN, DataFormat.KEY) and required is not fmt:
        problems.append(
            (
                "data.format",
                f"format {fmt!s} is only for "
                + ("HS_ADMIN" if fmt is DataFormat.ADMIN else "HS_PUBKEY"),
            )
        )
    return tuple(problems)


def _data_errors(value: HandleValue, where: str) -> list[FieldError]:
    field_ = f"{where}.data.value"
    data = value.value
    fmt = value.format
    if fmt is DataFormat.STRING:
        if not isinstance(data, str):
            return [FieldError(field=field_, reason="must be a string")]
        size = len(data.encode("utf-8", "surrogatepass"))
        if size > MAX_DATA_BYTES:
            return [FieldError(field=field_, reason=f"{size} bytes; at most {MAX_DATA_BYTES}")]
        if value.type == "URL" and not _URI_RE.fullmatch(data):
            return [FieldError(field=field_, reason=f"{data[:80]!r} is not an absolute URI")]
        if value.type == "EMAIL" and (data.count("@") != 1 or not all(data.split("@"))):
            return [FieldError(field=field_, reason=f"{data[:80]!r} is not an e-mail address")]
        return []
    if fmt in (DataFormat.BASE64, DataFormat.HEX, DataFormat.KEY):
        if not isinstance(data, bytes):
            return [FieldError(field=field_, reason="must be bytes")]
        if len(data) > MAX_DATA_BYTES:
            return [FieldError(field=field_, reason=f"{len(data)} bytes; at most {MAX_DATA_BYTES}")]
        if fmt is DataFormat.KEY:
            return _key_errors(data, field_)
        return []
    if fmt is DataFormat.ADMIN:
        if not isinstance(data, AdminRef):
            return [FieldError(field=field_, reason="must be an admin reference")]
        return _reference_errors(Reference(handle=data.handle, index=data.index), field_)
    if not isinstance(data, tuple):
        return [FieldError(field=field_, reason="must be a list of references")]
    errors: list[FieldError] = []
    for k, ref in enumerate(data[: MAX_REFERENCES + 1]):
        errors.extend(_reference_errors(ref, f"{field_}[{k}]"))
    if len(data) > MAX_REFERENCES:
        errors.append(FieldError(field=field_, reason=f"at most {MAX_REFERENCES} references"))
    return errors


def _reference_errors(ref: Reference, where: str) -> list[FieldError]:
    errors: list[FieldError] = []
    try:
        parse(ref.handle)
    except InvalidIdentifier as exc:
        errors.append(FieldError(field=f"{where}.handle", reason=exc.message))
    if not 1 <= ref.index <= MAX_INDEX:
        errors.append(
            FieldError(
                field=f"{where}.index", reason=f"must be from 1 to {MAX_INDEX}, not {ref.index}"
            )
        )
    return errors


def _key_errors(der: bytes, where: str) -> list[FieldError]:
    try:
        key = load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        return [FieldError(field=where, reason="not a DER SubjectPublicKeyInfo public key")]
    if isinstance(key, ed25519.Ed25519PublicKey):
        return []
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return []
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size >= MIN_RSA_BITS:
            return []
        shown = f"an RSA key of {key.key_size} bits"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        shown = f"an ECDSA key on {key.curve.name}"
    else:
        shown = f"a {type(key).__name__}"
    return [
        FieldError(
            field=where,
            reason=f"key must be Ed25519 or ECDSA P-256, or RSA of at least {MIN_RSA_BITS} "
            f"bits; this is {shown}",
        )
    ]
