"""The 20-byte Message Envelope that frames every Handle message (RFC 3652 §2.2.1).

The two MessageFlag octets carry the CP/EC/TC flags of the RFC in their top three bits;
the CNRI library puts the sender's *suggested* protocol version in the rest: the major
version in the low two bits of the first octet (``Encoder.encodeEnvelope`` writes
``flags | suggestMajorProtocolVersion``, ``decodeEnvelope`` reads ``& 0x03``) and the
minor version in the whole second octet. The 9.3.1 client sends ``02 03 02 0b``:
envelope version 2.3 (its compatibility version), suggested version 2.11.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from schemas.handle_wire.codes import ResponseCode
from schemas.handle_wire.errors import HandleWireError, cannot_encode
from schemas.handle_wire.limits import ENVELOPE_SIZE, MAX_MESSAGE_LENGTH, PROTOCOL_VERSION

_LAYOUT = struct.Struct(">BBBBIIII")

# RFC 3652 §2.2.1 <MessageFlag>, first octet: CP (compressed), EC (encrypted),
# TC (truncated); CNRI Encoder.ENV_FLAG_*.
_COMPRESSED = 0x80
_ENCRYPTED = 0x40
_TRUNCATED = 0x20
# CNRI: the suggested major version sits in the low two bits of the same octet. Bits
# 0x1c are reserved (RFC: must be zero) and ignored on input, as CNRI ignores them.
_SUGGESTED_MAJOR = 0x03


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """One envelope. ``suggested_major`` 0 means the sender suggested nothing."""

    major: int = PROTOCOL_VERSION[0]  # RFC 3652 §2.2.1 <MajorVersion>
    minor: int = PROTOCOL_VERSION[1]  # <MinorVersion>
    compressed: bool = False
    encrypted: bool = False
    truncated: bool = False
    suggested_major: int = 0
    suggested_minor: int = 0
    session_id: int = 0  # <SessionId>, 0 outside a session
    request_id: int = 0  # <RequestId>, copied into the reply
    sequence: int = 0  # <SequenceNumber>: the packet's place in a UDP message, from 0
    message_length: int = 0  # <MessageLength>: the whole message after the envelope

    @property
    def version(self) -> tuple[int, int]:
        return (self.major, self.minor)

    @property
    def suggested_version(self) -> tuple[int, int]:
        """The version the sender would rather speak; CNRI ``decodeEnvelope`` falls back
        to the envelope's own version when none is suggested."""
        if self.suggested_major == 0:
            return self.version
        return (self.suggested_major, self.suggested_minor)

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        """Read the envelope at the start of ``data`` (a UDP packet may follow on)."""
        if len(data) < ENVELOPE_SIZE:
            raise HandleWireError(
                ResponseCode.PROTOCOL_ERROR,
                f"envelope: needs {ENVELOPE_SIZE} bytes, got {len(data)}",
                field="envelope",
                offset=len(data),
            )
        (major, minor, flags, suggested_minor, session_id, request_id, sequence, length) = (
            _LAYOUT.unpack_from(data)
        )
        # RFC 3652 §2.2.1 <MessageLength>; CNRI decodeEnvelope rejects lengths over
        # Common.MAX_MESSAGE_LENGTH and negative ones (the top bit set, as a Java int).
        if length > MAX_MESSAGE_LENGTH:
            raise HandleWireError(
                ResponseCode.PROTOCOL_ERROR,
                f"envelope: message length {length} exceeds the cap of {MAX_MESSAGE_LENGTH}",
                field="message_length",
                offset=16,
            )
        return cls(
            major=major,
            minor=minor,
            compressed=bool(flags & _COMPRESSED),
            encrypted=bool(flags & _ENCRYPTED),
            truncated=bool(flags & _TRUNCATED),
            suggested_major=flags & _SUGGESTED_MAJOR,
            suggested_minor=suggested_minor,
            session_id=session_id,
            request_id=request_id,
            sequence=sequence,
            message_length=length,
        )

    def encode(self) -> bytes:
        if not 0 <= self.suggested_major <= _SUGGESTED_MAJOR:
            raise cannot_encode(
                f"suggested major version {self.suggested_major} does not fit two bits",
                field="suggested_major",
            )
        if not 0 <= self.message_length <= MAX_MESSAGE_LENGTH:
            raise cannot_encode(
                f"message length {self.message_length} is not within 0..{MAX_MESSAGE_LENGTH}",
                field="message_length",
            )
        flags = (
            (_COMPRESSED if self.compressed else 0)
            | (_ENCRYPTED if self.encrypted else 0)
            | (_TRUNCATED if self.truncated else 0)
            | self.suggested_major
        )
        try:
            return _LAYOUT.pack(
                self.major,
                self.minor,
                flags,
                self.suggested_minor,
                self.session_id,
                self.request_id,
                self.sequence,
                self.message_length,
            )
        except struct.error as exc:
            raise cannot_encode(str(exc), field="envelope") from None
