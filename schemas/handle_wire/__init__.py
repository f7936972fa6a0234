"""A pure codec for Handle protocol messages (RFC 3652, data model RFC 3651), as spoken by
the CNRI Java client ``net.handle:handle-client`` 9.3.x. No I/O, no asyncio.

A server's loop, in order::

    envelope = Envelope.decode(first_20_bytes)          # or the UDP packet
    try:
        request = decode_request(envelope, payload)      # payload: message_length bytes
        payload = encode_response(request, ResponseCode.SUCCESS, ResolutionResponse(...), now=now)
    except HandleWireError as error:
        payload = encode_error_reply(envelope, error, now=now)
    out = tcp_message(reply_envelope(envelope), payload)    # or udp_packets(...)

Module map: ``codes`` (the numbers), ``limits`` (sizes and caps), ``wire`` (checked
primitives), ``envelope``, ``header``, ``values`` (HandleValue, HS_SITE), ``digest``,
``request_bodies``, ``response_bodies``, ``messages`` (whole messages), ``framing``
(TCP/UDP), ``errors``.
``auth``: HS_PUBKEY keys and the challenge-response answer (signed, verified; no I/O).
"""

from __future__ import annotations

from schemas.handle_wire.auth import (
    AUTH_TYPE_PUBKEY,
    CHALLENGE_NONCE_SIZE,
    HASH_ID_ED25519,
    HASH_ID_SHA1,
    HASH_ID_SHA256,
    SignedResponse,
    decode_public_key,
    encode_public_key,
    make_nonce,
    sign_challenge,
    signed_message,
    verify_challenge_answer,
)
from schemas.handle_wire.codes import (
    DigestAlgorithm,
    HashOption,
    OpCode,
    OpFlag,
    ResponseCode,
    ServiceType,
    TransportProtocol,
    TtlType,
)
from schemas.handle_wire.digest import RequestDigest
from schemas.handle_wire.envelope import Envelope
from schemas.handle_wire.errors import HandleWireError
from schemas.handle_wire.framing import (
    reassemble_udp,
    tcp_message,
    udp_packet_count,
    udp_packets,
)
from schemas.handle_wire.header import Header
from schemas.handle_wire.limits import (
    ENVELOPE_SIZE,
    HEADER_SIZE,
    MAX_HANDLE_LENGTH,
    MAX_LIST_ITEMS,
    MAX_MESSAGE_LENGTH,
    MAX_STRING,
    MAX_UDP_PACKETS,
    MAX_VALUES,
    PROTOCOL_VERSION,
    RESPONSE_LIFETIME,
    UDP_DATA_SIZE,
    UDP_PACKET_SIZE,
)
from schemas.handle_wire.messages import (
    Body,
    Message,
    decode_request,
    decode_response,
    encode_error_reply,
    encode_message,
    encode_response,
    reply_envelope,
    reply_version,
)
from schemas.handle_wire.request_bodies import (
    AddValueRequest,
    ChallengeAnswerRequest,
    CreateHandleRequest,
    DeleteHandleRequest,
    GenericRequest,
    GetSiteInfoRequest,
    ListHandlesRequest,
    ListNAsRequest,
    ModifyValueRequest,
    RemoveValueRequest,
    RequestBody,
    ResolutionRequest,
    SessionExchangeKeyRequest,
    SessionSetupRequest,
    VerifyResponseRequest,
)
from schemas.handle_wire.response_bodies import (
    ChallengeResponse,
    CreateHandleResponse,
    ErrorResponse,
    GenericResponse,
    ListHandlesResponse,
    ResolutionResponse,
    ResponseBody,
    ServiceReferral,
    SiteInfoResponse,
    VerifyResponseResponse,
)
from schemas.handle_wire.values import HandleValue, Interface, ServerInfo, SiteInfo

__all__ = [
    "AUTH_TYPE_PUBKEY",
    "CHALLENGE_NONCE_SIZE",
    "ENVELOPE_SIZE",
    "HASH_ID_ED25519",
    "HASH_ID_SHA1",
    "HASH_ID_SHA256",
    "HEADER_SIZE",
    "MAX_HANDLE_LENGTH",
    "MAX_LIST_ITEMS",
    "MAX_MESSAGE_LENGTH",
    "MAX_STRING",
    "MAX_UDP_PACKETS",
    "MAX_VALUES",
    "PROTOCOL_VERSION",
    "RESPONSE_LIFETIME",
    "UDP_DATA_SIZE",
    "UDP_PACKET_SIZE",
    "AddValueRequest",
    "Body",
    "ChallengeAnswerRequest",
    "ChallengeResponse",
    "CreateHandleRequest",
    "CreateHandleResponse",
    "DeleteHandleRequest",
    "DigestAlgorithm",
    "Envelope",
    "ErrorResponse",
    "GenericRequest",
    "GenericResponse",
    "GetSiteInfoRequest",
    "HandleValue",
    "HandleWireError",
    "HashOption",
    "Header",
    "Interface",
    "ListHandlesRequest",
    "ListHandlesResponse",
    "ListNAsRequest",
    "Message",
    "ModifyValueRequest",
    "OpCode",
    "OpFlag",
    "RemoveValueRequest",
    "RequestBody",
    "RequestDigest",
    "ResolutionRequest",
    "ResolutionResponse",
    "ResponseBody",
    "ResponseCode",
    "ServerInfo",
    "ServiceReferral",
    "ServiceType",
    "SessionExchangeKeyRequest",
    "SessionSetupRequest",
    "SignedResponse",
    "SiteInfo",
    "SiteInfoResponse",
    "TransportProtocol",
    "TtlType",
    "VerifyResponseRequest",
    "VerifyResponseResponse",
    "decode_public_key",
    "decode_request",
    "decode_response",
    "encode_error_reply",
    "encode_message",
    "encode_public_key",
    "encode_response",
    "make_nonce",
    "reassemble_udp",
    "reply_envelope",
    "reply_version",
    "sign_challenge",
    "signed_message",
    "tcp_message",
    "udp_packet_count",
    "udp_packets",
    "verify_challenge_answer",
]
