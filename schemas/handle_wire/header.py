"""The 24-byte Message Header common to every Handle operation (RFC 3652 §2.2.2).

OpCode 4 | ResponseCode 4 | OpFlag 4 | SiteInfoSerialNumber 2 | RecursionCount 1 |
reserved 1 | ExpirationTime 4 | BodyLength 4
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from schemas.handle_wire.codes import OpCode, OpFlag, ResponseCode
from schemas.handle_wire.errors import HandleWireError, cannot_encode
from schemas.handle_wire.limits import HEADER_SIZE, MAX_MESSAGE_LENGTH

_LAYOUT = struct.Struct(">IIIHBBIi")


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """One header. ``op_flags`` keeps every bit as sent; the properties name the known ones."""

    opcode: OpCode  # §2.2.2.1
    response_code: ResponseCode = ResponseCode.RESERVED  # §2.2.2.2: 0 in every request
    op_flags: int = 0  # §2.2.2.3
    # §2.2.2.4: in a request, the serial of the HS_SITE the client used (CNRI sends
    # 0xffff, its -1, when it has none); in a response, the responding site's serial.
    site_info_serial: int = 0xFFFF
    recursion_count: int = 0  # §2.2.2.5
    expiration: int = 0  # §2.2.2.6, seconds since 1970
    body_length: int = 0  # §2.2.2.7

    def _flag(self, flag: OpFlag) -> bool:
        return bool(self.op_flags & flag)

    @property
    def authoritative(self) -> bool:
        return self._flag(OpFlag.AUTHORITATIVE)

    @property
    def certify(self) -> bool:
        return self._flag(OpFlag.CERTIFY)

    @property
    def encrypt(self) -> bool:
        return self._flag(OpFlag.ENCRYPT)

    @property
    def recursive(self) -> bool:
        return self._flag(OpFlag.RECURSIVE)

    @property
    def cache_certify(self) -> bool:
        return self._flag(OpFlag.CACHE_CERTIFY)

    @property
    def continuous(self) -> bool:
        return self._flag(OpFlag.CONTINUOUS)

    @property
    def keep_alive(self) -> bool:
        return self._flag(OpFlag.KEEP_ALIVE)

    @property
    def public_only(self) -> bool:
        return self._flag(OpFlag.PUBLIC_ONLY)

    @property
    def return_request_digest(self) -> bool:
        return self._flag(OpFlag.RETURN_REQUEST_DIGEST)

    @property
    def overwrite_when_exists(self) -> bool:
        return self._flag(OpFlag.OVERWRITE_WHEN_EXISTS)

    @property
    def mint_new_suffix(self) -> bool:
        return self._flag(OpFlag.MINT_NEW_SUFFIX)

    @property
    def do_not_refer(self) -> bool:
        return self._flag(OpFlag.DO_NOT_REFER)

    @classmethod
    def decode(cls, data: bytes, offset: int = 0) -> Header:
        """Read the header at ``offset`` of ``data`` (offsets in errors are into ``data``)."""
        if len(data) - offset < HEADER_SIZE:
            raise HandleWireError(
                ResponseCode.PROTOCOL_ERROR,
                f"header: needs {HEADER_SIZE} bytes but only {max(len(data) - offset, 0)} remain",
                field="header",
                offset=offset,
            )
        (opcode, code, flags, serial, recursion, _reserved, expiration, body_length) = (
            _LAYOUT.unpack_from(data, offset)
        )
        try:
            known_opcode = OpCode(opcode)
        except ValueError:
            raise HandleWireError(
                ResponseCode.OPERATION_NOT_SUPPORTED,
                f"header: unknown opcode {opcode}",
                field="opcode",
                offset=offset,
            ) from None
        try:
            known_code = ResponseCode(code)
        except ValueError:
            raise HandleWireError(
                ResponseCode.PROTOCOL_ERROR,
                f"header: unknown response code {code}",
                field="response_code",
                offset=offset + 4,
            ) from None
        # §2.2.2.7 <BodyLength>: as a Java int to CNRI, so the top bit makes it negative.
        if not 0 <= body_length <= MAX_MESSAGE_LENGTH:
            raise HandleWireError(
                ResponseCode.PROTOCOL_ERROR,
                f"header: body length {body_length} is not within 0..{MAX_MESSAGE_LENGTH}",
                field="body_length",
                offset=offset + 20,
            )
        return cls(
            opcode=known_opcode,
            response_code=known_code,
            op_flags=flags,
            site_info_serial=serial,
            recursion_count=recursion,
            expiration=expiration,
            body_length=body_length,
        )

    def encode(self) -> bytes:
        try:
            return _LAYOUT.pack(
                self.opcode,
                self.response_code,
                self.op_flags,
                self.site_info_serial,
                self.recursion_count,
                0,  # the reserved octet
                self.expiration,
                self.body_length,
            )
        except struct.error as exc:
            raise cannot_encode(str(exc), field="header") from None
