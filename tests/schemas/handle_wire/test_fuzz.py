"""Any bytes at all: the decoders raise HandleWireError or nothing, and the server's error
path (``encode_error_reply``) answers every such error without raising in turn."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

from hypothesis import given, settings

from schemas.handle_wire import (
    ChallengeAnswerRequest,
    CreateHandleRequest,
    DigestAlgorithm,
    Envelope,
    ErrorResponse,
    GetSiteInfoRequest,
    HandleValue,
    HandleWireError,
    Header,
    Message,
    OpCode,
    OpFlag,
    RemoveValueRequest,
    RequestDigest,
    ResolutionRequest,
    ResolutionResponse,
    ResponseCode,
    ServerInfo,
    ServiceReferral,
    SessionSetupRequest,
    SiteInfo,
    SiteInfoResponse,
    VerifyResponseRequest,
    decode_request,
    decode_response,
    encode_error_reply,
    encode_message,
    reassemble_udp,
    tcp_message,
    udp_packets,
)
from tests.fuzz.strategies import FUZZ, inputs
from tests.schemas.handle_wire.test_vectors import ENVELOPE, RESOLUTION_REQUEST, SITE_BYTES

FIXTURES = Path(__file__).parents[2] / "fixtures" / "handle"
NOW = 1_800_000_000

VALUE = HandleValue(index=7, type=b"URL", data=b"https://e.x/", references=((b"0.NA/88", 200),))
SITE = SiteInfo(
    serial_number=1, servers=(ServerInfo(server_id=1, address=IPv4Address("10.0.0.1")),)
)


def seed(header: Header, body: object, **extra: object) -> bytes:
    message = Message(envelope=Envelope(), header=header, body=body, **extra)  # type: ignore[arg-type]
    return tcp_message(Envelope(request_id=7), encode_message(message))


SEEDS = [
    ENVELOPE + RESOLUTION_REQUEST,
    seed(
        Header(opcode=OpCode.RESOLUTION),
        ResolutionRequest(handle=b"88/x", indexes=(1, 2), types=(b"URL",)),
    ),
    seed(Header(opcode=OpCode.GET_SITE_INFO), GetSiteInfoRequest()),
    seed(
        Header(opcode=OpCode.CREATE_HANDLE),
        CreateHandleRequest(handle=b"88/x", values=(VALUE, VALUE)),
    ),
    seed(Header(opcode=OpCode.REMOVE_VALUE), RemoveValueRequest(handle=b"88/x", indexes=(1,))),
    seed(
        Header(opcode=OpCode.CHALLENGE_RESPONSE),
        ChallengeAnswerRequest(
            auth_type=b"HS_PUBKEY", key_handle=b"0.NA/88", key_index=300, signed_response=b"sig"
        ),
    ),
    seed(
        Header(opcode=OpCode.VERIFY_RESPONSE),
        VerifyResponseRequest(
            key_handle=b"0.NA/88",
            key_index=300,
            nonce=b"n" * 16,
            request_digest=RequestDigest(
                algorithm=DigestAlgorithm.MD5_OLD_FORMAT, digest=bytes(16)
            ),
            signed_response=b"sig",
        ),
    ),
    seed(
        Header(opcode=OpCode.SESSION_SETUP),
        SessionSetupRequest(
            key_exchange_mode=4,
            timeout=60,
            identity_handle=b"0.NA/88",
            identity_index=300,
            public_key=b"k",
        ),
    ),
    seed(
        Header(opcode=OpCode.RESOLUTION, response_code=ResponseCode.SUCCESS),
        ResolutionResponse(handle=b"88/x", values=(VALUE,)),
        request_digest=RequestDigest(algorithm=DigestAlgorithm.SHA256, digest=bytes(32)),
    ),
    seed(
        Header(opcode=OpCode.GET_SITE_INFO, response_code=ResponseCode.SUCCESS),
        SiteInfoResponse(site=SITE),
    ),
    seed(
        Header(opcode=OpCode.RESOLUTION, response_code=ResponseCode.HANDLE_NOT_FOUND),
        ErrorResponse(message="no", indexes=(1,)),
    ),
    seed(
        Header(
            opcode=OpCode.RESOLUTION,
            response_code=ResponseCode.SERVICE_REFERRAL,
            op_flags=OpFlag.RECURSIVE,
        ),
        ServiceReferral(
            handle=b"0.NA/88", values=(HandleValue(index=1, type=b"HS_SITE", data=SITE_BYTES),)
        ),
    ),
    *(path.read_bytes() for path in sorted(FIXTURES.glob("*.bin"))),
]
PAYLOAD_SEEDS = [data[20:] for data in SEEDS]


def answer_as_a_server(envelope: Envelope, payload: bytes) -> None:
    try:
        decode_request(envelope, payload)
    except HandleWireError as error:
        encode_error_reply(envelope, error, now=NOW)  # must not raise


@settings(FUZZ, max_examples=1000)
@given(inputs(SEEDS))
def test_a_server_reading_any_packet_raises_only_handle_wire_error(data: bytes) -> None:
    try:
        envelope = Envelope.decode(data)
    except HandleWireError:
        return
    answer_as_a_server(envelope, data[20:])
    with contextlib.suppress(HandleWireError):
        decode_response(envelope, data[20:])


@settings(FUZZ, max_examples=1000)
@given(inputs(PAYLOAD_SEEDS))
def test_any_payload_of_the_declared_length_raises_only_handle_wire_error(payload: bytes) -> None:
    # the envelope agrees with the payload, so every input reaches the body parsers
    envelope = replace(Envelope.decode(ENVELOPE), message_length=len(payload))
    answer_as_a_server(envelope, payload)
    with contextlib.suppress(HandleWireError):
        decode_response(envelope, payload)


@settings(FUZZ, max_examples=500)
@given(inputs([SITE_BYTES, SITE.encode(), VALUE.encode()]))
def test_value_data_decoders_raise_only_handle_wire_error(data: bytes) -> None:
    for decode in (SiteInfo.decode, HandleValue.decode):
        with contextlib.suppress(HandleWireError):
            decode(data)


@settings(FUZZ, max_examples=300)
@given(inputs([b"".join(udp_packets(Envelope(request_id=9), bytes(range(256)) * 5))]))
def test_udp_reassembly_raises_only_handle_wire_error(data: bytes) -> None:
    packets = [data[at : at + 512] for at in range(0, len(data), 512)]
    with contextlib.suppress(HandleWireError):
        reassemble_udp(packets)
