"""Whole Handle messages: decode a request, encode the reply (RFC 3652 §2.2).

A message after its envelope is Header (24 bytes) | Body (BodyLength bytes) | Credential
(a 4-byte length and that many bytes, RFC 3652 §2.2.4). A response whose RD flag is set
starts its body with the digest of the request (§2.2.3). Nothing in this module does
I/O: the envelope and the framing are the caller's (see ``framing.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from schemas.handle_wire.codes import DigestAlgorithm, OpCode, OpFlag, ResponseCode
from schemas.handle_wire.digest import RequestDigest
from schemas.handle_wire.envelope import Envelope
from schemas.handle_wire.errors import HandleWireError, cannot_encode
from schemas.handle_wire.header import Header
from schemas.handle_wire.limits import (
    HEADER_SIZE,
    MAX_MESSAGE_LENGTH,
    MAX_STRING,
    PROTOCOL_VERSION,
    RESPONSE_LIFETIME,
)
from schemas.handle_wire.request_bodies import REQUEST_BODIES, RequestBody, SessionSetupRequest
from schemas.handle_wire.response_bodies import ErrorResponse, ResponseBody, response_body_type
from schemas.handle_wire.wire import Reader, Writer

Body = RequestBody | ResponseBody

# The request flags a CNRI server's response carries over (AbstractResponse(req, rc) and
# AbstractMessage.takeValuesFrom): AT, CA, PO, DNRF; RD is set when a digest is attached.
# CT and ENC are not echoed: this codec neither signs nor encrypts, and a response with
# CT set claims to be signed (RFC 3652 §2.2.2.3). REC is always set, as CNRI's default.
_ECHOED_FLAGS = (
    OpFlag.AUTHORITATIVE | OpFlag.CACHE_CERTIFY | OpFlag.PUBLIC_ONLY | OpFlag.DO_NOT_REFER
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One message. ``header_and_body`` is the header and body exactly as received: what a
    request digest covers and a credential signs (empty for messages built locally)."""

    envelope: Envelope
    header: Header
    body: Body
    request_digest: RequestDigest | None = None  # responses with the RD flag only
    credential: bytes | None = None  # §2.2.4; None when absent or of length 0
    header_and_body: bytes = field(default=b"", repr=False, compare=False)

    @property
    def is_request(self) -> bool:
        return self.header.response_code == ResponseCode.RESERVED


def decode_request(envelope: Envelope, payload: bytes) -> Message:
    """Decode a request; ``payload`` is the ``message_length`` bytes after the envelope.

    Raises HandleWireError for anything else, with ``header`` and ``request_bytes`` set on
    it once the header was read, for ``encode_error_reply``.
    """
    return _decode(envelope, payload, expect="request")


def decode_response(envelope: Envelope, payload: bytes) -> Message:
    """Decode a response (of another Handle server); raises HandleWireError otherwise."""
    return _decode(envelope, payload, expect="response")


def _decode(
    envelope: Envelope, payload: bytes, *, expect: Literal["request", "response"]
) -> Message:
    # RFC 3652 §2.2.1 <MessageFlag>: EC needs a session key (CNRI answers SESSION_FAILED
    # when it has no session); CP is never set by CNRI and not supported here.
    if envelope.encrypted:
        raise HandleWireError(
            ResponseCode.SESSION_FAILED,
            "envelope: the message is encrypted, and sessions are not supported",
            field="encrypted",
        )
    if envelope.compressed:
        raise HandleWireError(
            ResponseCode.PROTOCOL_ERROR,
            "envelope: compressed messages are not supported",
            field="compressed",
        )
    # §2.2.1 <MessageLength> counts every byte after the envelope.
    if len(payload) != envelope.message_length or len(payload) > MAX_MESSAGE_LENGTH:
        raise HandleWireError(
            ResponseCode.PROTOCOL_ERROR,
            f"envelope: message length {envelope.message_length} but {len(payload)} bytes follow",
            field="message_length",
        )
    header = Header.decode(payload)
    is_request = header.response_code == ResponseCode.RESERVED
    kind = "request" if is_request else "response"
    body_end = HEADER_SIZE + header.body_length
    request_bytes = payload[:body_end] if is_request and body_end <= len(payload) else None
    try:
        if kind != expect:
            raise HandleWireError(
                ResponseCode.PROTOCOL_ERROR,
                f"expected a {expect}, got a {kind} ({header.response_code.name})",
                field="response_code",
                offset=4,
            )
        # §2.2.2.7 <BodyLength>: the body must fit in what the envelope delivered.
        if body_end > len(payload):
            raise HandleWireError(
                ResponseCode.PROTOCOL_ERROR,
                f"header: body length {header.body_length} exceeds the "
                f"{len(payload) - HEADER_SIZE} bytes after the header",
                field="body_length",
                offset=20,
            )
        r = Reader(payload, f"{header.opcode.name} {kind}", start=HEADER_SIZE, end=body_end)
        digest = None
        if is_request:
            body_type = REQUEST_BODIES.get(header.opcode)
            if body_type is None:
                raise HandleWireError(
                    ResponseCode.OPERATION_NOT_SUPPORTED,
                    f"{header.opcode.name} requests are not decoded",
                    field="opcode",
                    offset=0,
                )
            body: Body = body_type.read(r)
            # CNRI pads its session setup bodies with two unused bytes (request_bodies)
            trailing_ok = body_type is SessionSetupRequest
        else:
            response_type = response_body_type(
                header.opcode, header.response_code, envelope.version
            )
            if header.return_request_digest:
                digest = RequestDigest.read(r)  # §2.2.3: the first field of the body
            body = response_type.read(r)
            trailing_ok = False
        if not trailing_ok:
            r.expect_end()
        credential = _read_credential(payload, body_end)
    except HandleWireError as exc:
        exc.header = header
        exc.request_bytes = request_bytes
        raise
    return Message(
        envelope=envelope,
        header=header,
        body=body,
        request_digest=digest,
        credential=credential,
        header_and_body=payload[:body_end],
    )


def _read_credential(payload: bytes, start: int) -> bytes | None:
    """RFC 3652 §2.2.4 <CredentialLength> and the credential. CNRI reads one only when four
    bytes remain after the body, and sends a zero length when it does not sign."""
    if start == len(payload):
        return None
    r = Reader(payload, "message credential", start=start)
    credential = r.octets("credential", cap=MAX_STRING)
    r.expect_end()
    return credential or None


def encode_message(message: Message) -> bytes:
    """The payload of ``message``: header (BodyLength set), body, credential.

    The header's RD flag follows ``request_digest`` in responses; ``envelope`` is not
    encoded here (``tcp_message`` and ``udp_packets`` frame the payload).
    """
    header = message.header
    expected = _expected_body(header.opcode, header.response_code, message.envelope.version)
    if type(message.body) is not expected:
        raise cannot_encode(
            f"{header.opcode.name}/{header.response_code.name} carries a {expected.__name__}, "
            f"not a {type(message.body).__name__}",
            field="body",
        )
    flags = header.op_flags
    if message.is_request:
        if message.request_digest is not None:
            raise cannot_encode("a request carries no request digest", field="request_digest")
    elif message.request_digest is not None:
        flags |= OpFlag.RETURN_REQUEST_DIGEST
    else:
        flags &= ~OpFlag.RETURN_REQUEST_DIGEST
    return _assemble(
        replace(header, op_flags=flags), message.body, message.request_digest, message.credential
    )


def _expected_body(opcode: OpCode, code: ResponseCode, version: tuple[int, int]) -> type[Body]:
    if code == ResponseCode.RESERVED:
        body = REQUEST_BODIES.get(opcode)
        if body is None:
            raise cannot_encode(f"{opcode.name} requests have no body codec", field="opcode")
        return body
    try:
        return response_body_type(opcode, code, version)
    except HandleWireError as exc:
        raise cannot_encode(exc.reason, field="body") from None


def _assemble(
    header: Header, body: Body, digest: RequestDigest | None, credential: bytes | None
) -> bytes:
    w = Writer()
    if digest is not None:
        digest.write(w)
    body.write(w)
    body_bytes = w.getvalue()
    cred = credential or b""
    if len(cred) > MAX_STRING:
        raise cannot_encode(f"a credential of {len(cred)} bytes", field="credential")
    payload = b"".join(
        (
            replace(header, body_length=len(body_bytes)).encode(),
            body_bytes,
            len(cred).to_bytes(4, "big"),
            cred,
        )
    )
    if len(payload) > MAX_MESSAGE_LENGTH:
        raise cannot_encode(
            f"the message is {len(payload)} bytes, over the {MAX_MESSAGE_LENGTH} a client accepts",
            field="message_length",
        )
    return payload


def reply_version(request: Envelope) -> tuple[int, int]:
    """The version of a reply: the request's suggested version, capped at ours (CNRI
    ``AbstractResponse(req, rc)`` then ``setSupportedProtocolVersion``)."""
    return min(request.suggested_version, PROTOCOL_VERSION)


def reply_envelope(request: Envelope) -> Envelope:
    """The envelope of the reply to ``request``: same session and request ids (RFC 3652
    §2.2.1 <RequestId>), the reply version, and our version as the suggestion.
    ``message_length`` and ``sequence`` are set by ``tcp_message``/``udp_packets``."""
    major, minor = reply_version(request)
    return Envelope(
        major=major,
        minor=minor,
        suggested_major=PROTOCOL_VERSION[0],
        suggested_minor=PROTOCOL_VERSION[1],
        session_id=request.session_id,
        request_id=request.request_id,
    )


def encode_response(
    request: Message,
    response_code: ResponseCode,
    body: ResponseBody,
    *,
    now: int,
    site_info_serial: int | None = None,
    keep_alive: bool = False,
    continuous: bool = False,
) -> bytes:
    """The payload answering ``request``; frame it with ``reply_envelope(request.envelope)``.

    The header copies the opcode and recursion count, echoes the AT/CA/PO/DNRF flags,
    sets REC (and KC if ``keep_alive``; CN if ``continuous``: more messages of this
    answer follow, RFC 3652 §2.2.2.3), and expires RESPONSE_LIFETIME after ``now``
    (seconds since 1970; the client refuses expired responses). ``site_info_serial`` is
    the serial of our HS_SITE (RFC 3652 §2.2.2.4); by default the request's is echoed,
    so the client never takes its site information for stale. A request digest is
    attached when the request set RD, and always to a challenge (RC 402).
    """
    return _reply(
        request.envelope,
        request.header,
        request.header_and_body or _header_and_body(request),
        response_code,
        body,
        now=now,
        site_info_serial=site_info_serial,
        keep_alive=keep_alive,
        continuous=continuous,
    )


def encode_error_reply(
    envelope: Envelope,
    error: HandleWireError,
    *,
    now: int,
    site_info_serial: int | None = None,
) -> bytes:
    """The payload answering a request that failed to decode with ``error``: its code and
    message, the request's opcode and flags when its header was read (else opcode 0, as a
    CNRI server answers), and the request digest when one was asked for and can be had."""
    return _reply(
        envelope,
        error.header,
        error.request_bytes,
        error.code,
        ErrorResponse(message=str(error)),
        now=now,
        site_info_serial=site_info_serial,
        keep_alive=False,
    )


def _header_and_body(message: Message) -> bytes:
    payload = encode_message(message)
    return payload[: HEADER_SIZE + int.from_bytes(payload[20:24], "big")]


def _reply(
    envelope: Envelope,
    request: Header | None,
    request_bytes: bytes | None,
    code: ResponseCode,
    body: ResponseBody,
    *,
    now: int,
    site_info_serial: int | None,
    keep_alive: bool,
    continuous: bool = False,
) -> bytes:
    version = reply_version(envelope)
    opcode = OpCode.RESERVED if request is None else request.opcode
    expected = _expected_body(opcode, code, version)
    if type(body) is not expected:
        raise cannot_encode(
            f"{code.name} to {opcode.name} carries a {expected.__name__}, "
            f"not a {type(body).__name__}",
            field="body",
        )
    flags = (
        OpFlag.RECURSIVE
        | (OpFlag.KEEP_ALIVE if keep_alive else 0)
        | (OpFlag.CONTINUOUS if continuous else 0)
    )
    digest = None
    if request is not None:
        flags |= request.op_flags & _ECHOED_FLAGS
        wants_digest = request.return_request_digest or code == ResponseCode.AUTHENTICATION_NEEDED
        if wants_digest and request_bytes is not None:
            # CNRI takeDigestOfRequest: SHA-256 from protocol 2.7 on, SHA-1 before.
            algorithm = DigestAlgorithm.SHA256 if version >= (2, 7) else DigestAlgorithm.SHA1
            digest = RequestDigest.of(request_bytes, algorithm)
            flags |= OpFlag.RETURN_REQUEST_DIGEST
    if site_info_serial is None:
        site_info_serial = 0xFFFF if request is None else request.site_info_serial
    header = Header(
        opcode=opcode,
        response_code=_wire_code(code, version),
        op_flags=int(flags),
        site_info_serial=site_info_serial,
        recursion_count=0 if request is None else request.recursion_count,
        expiration=now + RESPONSE_LIFETIME,
    )
    return _assemble(header, body, digest, None)


def _wire_code(code: ResponseCode, version: tuple[int, int]) -> ResponseCode:
    """CNRI ``Encoder.writeHeader``: before protocol 2.5, INVALID_VALUE went out as
    VALUE_ALREADY_EXISTS and SERVER_READ_ONLY (RC_SERVER_BACKUP) as 303."""
    if version < (2, 5):
        if code == ResponseCode.INVALID_VALUE:
            return ResponseCode.VALUE_ALREADY_EXISTS
        if code == ResponseCode.SERVER_READ_ONLY:
            return ResponseCode.PREFIX_REFERRAL
    return code
