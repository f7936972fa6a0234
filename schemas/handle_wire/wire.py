"""Bounds-checked primitives of the Handle wire format: integers, octet strings, counts.

RFC 3652 §2.1.1: every integer is big-endian. §2.1.4: a UTF8-String (and every other
octet string) is a 4-byte length followed by that many octets. The CNRI library reads
lengths and counts as signed Java ints, so a length with the top bit set is negative to
it; this reader says so instead of reading 2 GiB. Nothing here reads past what it checked.
"""

from __future__ import annotations

import struct

from schemas.handle_wire.codes import ResponseCode
from schemas.handle_wire.errors import HandleWireError, cannot_encode

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")


class Reader:
    """Reads one region of ``data``; ``what`` names it in errors ("resolution request").

    Offsets in errors are ``base`` + the position in ``data``, so a body reader can report
    offsets in the whole payload.
    """

    __slots__ = ("_base", "_data", "_end", "_pos", "what")

    def __init__(
        self, data: bytes, what: str, *, start: int = 0, end: int | None = None, base: int = 0
    ) -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end
        self._base = base
        self.what = what

    @property
    def offset(self) -> int:
        return self._base + self._pos

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def error(
        self,
        reason: str,
        *,
        field: str,
        code: ResponseCode = ResponseCode.PROTOCOL_ERROR,
        offset: int | None = None,
    ) -> HandleWireError:
        where = self.offset if offset is None else offset
        return HandleWireError(code, f"{self.what}: {reason}", field=field, offset=where)

    def _need(self, size: int, field: str) -> int:
        if size > self.remaining:
            raise self.error(
                f"{field} needs {size} bytes but only {self.remaining} remain", field=field
            )
        start = self._pos
        self._pos += size
        return start

    def u8(self, field: str) -> int:
        return self._data[self._need(1, field)]

    def u16(self, field: str) -> int:
        value: int = _U16.unpack_from(self._data, self._need(2, field))[0]
        return value

    def u32(self, field: str) -> int:
        value: int = _U32.unpack_from(self._data, self._need(4, field))[0]
        return value

    def i32(self, field: str) -> int:
        value: int = _I32.unpack_from(self._data, self._need(4, field))[0]
        return value

    def raw(self, size: int, field: str) -> bytes:
        start = self._need(size, field)
        return self._data[start : start + size]

    def _size(
        self,
        field: str,
        *,
        cap: int,
        unit: int,
        noun: str,
        cap_code: ResponseCode = ResponseCode.PROTOCOL_ERROR,
    ) -> int:
        """A 4-byte length or count, checked before use: not negative, within the cap
        (else ``cap_code``), and no more than the bytes that remain could hold at ``unit``
        bytes each."""
        at = self.offset
        size = self.i32(field)
        if size < 0:
            raise self.error(f"{field} {noun} is negative ({size})", field=field, offset=at)
        if size > cap:
            raise self.error(
                f"{field} {noun} {size} exceeds the cap of {cap}",
                field=field,
                code=cap_code,
                offset=at,
            )
        if size * unit > self.remaining:
            raise self.error(
                f"{field} {noun} {size} needs at least {size * unit} bytes "
                f"but only {self.remaining} remain",
                field=field,
                offset=at,
            )
        return size

    def octets(
        self, field: str, *, cap: int, cap_code: ResponseCode = ResponseCode.PROTOCOL_ERROR
    ) -> bytes:
        """An RFC 3652 §2.1.4 length-prefixed octet string."""
        size = self._size(field, cap=cap, unit=1, noun="length", cap_code=cap_code)
        return self.raw(size, field)

    def text(self, field: str, *, cap: int, code: ResponseCode) -> bytes:
        """A UTF8-String (RFC 3652 §2.1.4), returned as the bytes it is after checking them."""
        at = self.offset + 4
        data = self.octets(field, cap=cap, cap_code=code)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.error(
                f"{field} is not UTF-8 ({exc.reason} at its byte {exc.start})",
                field=field,
                code=code,
                offset=at + exc.start,
            ) from None
        return data

    def count(self, field: str, *, cap: int, item_size: int) -> int:
        """A 4-byte item count; ``item_size`` is the smallest encoding of one item."""
        return self._size(field, cap=cap, unit=item_size, noun="count")

    def expect_end(self) -> None:
        if self.remaining:
            raise self.error(
                f"{self.remaining} unexpected bytes after the last field",
                field="(end)",
            )


class Writer:
    """Builds an encoding; refuses values that do not fit their field (a bug on our side)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def getvalue(self) -> bytes:
        return bytes(self._buf)

    def raw(self, data: bytes) -> None:
        self._buf += data

    def u8(self, value: int, field: str) -> None:
        if not 0 <= value <= 0xFF:
            raise cannot_encode(f"{field}={value} is not one unsigned octet", field=field)
        self._buf.append(value)

    def u16(self, value: int, field: str) -> None:
        if not 0 <= value <= 0xFFFF:
            raise cannot_encode(f"{field}={value} is not a 2-byte unsigned integer", field=field)
        self._buf += _U16.pack(value)

    def u32(self, value: int, field: str) -> None:
        if not 0 <= value <= 0xFFFF_FFFF:
            raise cannot_encode(f"{field}={value} is not a 4-byte unsigned integer", field=field)
        self._buf += _U32.pack(value)

    def i32(self, value: int, field: str) -> None:
        if not -0x8000_0000 <= value <= 0x7FFF_FFFF:
            raise cannot_encode(f"{field}={value} is not a 4-byte signed integer", field=field)
        self._buf += _I32.pack(value)

    def count(self, value: int, field: str, *, cap: int) -> None:
        if value > cap:
            raise cannot_encode(f"{field} count {value} exceeds the cap of {cap}", field=field)
        self._buf += _U32.pack(value)

    def octets(self, data: bytes, field: str, *, cap: int) -> None:
        if len(data) > cap:
            raise cannot_encode(
                f"{field} of {len(data)} bytes exceeds the cap of {cap}", field=field
            )
        self._buf += _U32.pack(len(data))
        self._buf += data
