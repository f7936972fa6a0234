"""Round trips of every body, and the rules of encode_response a client depends on."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.handle_wire import (
    PROTOCOL_VERSION,
    ChallengeResponse,
    DeleteHandleRequest,
    Envelope,
    ErrorResponse,
    GenericResponse,
    HandleValue,
    HandleWireError,
    Header,
    ListHandlesRequest,
    ListHandlesResponse,
    Message,
    OpCode,
    OpFlag,
    ResolutionRequest,
    ResolutionResponse,
    ResponseCode,
    SiteInfo,
    decode_request,
    decode_response,
    encode_message,
    encode_response,
    reply_envelope,
    tcp_message,
)
from tests.schemas.handle_wire import strategies as hs

NOW = 1_800_000_000


def through_the_wire(message: Message) -> tuple[Message, bytes]:
    payload = encode_message(message)
    framed = tcp_message(message.envelope, payload)
    envelope = Envelope.decode(framed)
    decode = decode_request if message.is_request else decode_response
    return decode(envelope, framed[20:]), payload


def expected_after(message: Message, payload: bytes) -> Message:
    """``message`` as it comes back: BodyLength set, RD following the digest in responses."""
    flags = message.header.op_flags
    if not message.is_request:
        flags = (
            (flags | OpFlag.RETURN_REQUEST_DIGEST)
            if message.request_digest
            else (flags & ~OpFlag.RETURN_REQUEST_DIGEST)
        )
    header = replace(
        message.header,
        op_flags=flags,
        body_length=int.from_bytes(payload[20:24], "big"),
    )
    envelope = replace(message.envelope, message_length=len(payload))
    return replace(message, header=header, envelope=envelope)


@settings(max_examples=300)
@given(hs.requests())
def test_every_request_body_round_trips(message: Message) -> None:
    decoded, payload = through_the_wire(message)

    assert decoded == expected_after(message, payload)
    assert decoded.header_and_body == payload[: 24 + decoded.header.body_length]
    assert encode_message(decoded) == payload


@settings(max_examples=300)
@given(hs.responses())
def test_every_response_body_round_trips(message: Message) -> None:
    decoded, payload = through_the_wire(message)

    assert decoded == expected_after(message, payload)
    assert encode_message(decoded) == payload


@given(hs.values)
def test_handle_value_round_trips(value: HandleValue) -> None:
    assert HandleValue.decode(value.encode()) == value


@given(hs.sites)
def test_site_info_round_trips(site: SiteInfo) -> None:
    assert SiteInfo.decode(site.encode()) == site


def resolution_request(*, flags: int = 0, suggested: tuple[int, int] = (2, 11)) -> Message:
    message = Message(
        envelope=Envelope(
            major=2, minor=3, suggested_major=suggested[0], suggested_minor=suggested[1]
        ),
        header=Header(opcode=OpCode.RESOLUTION, op_flags=flags, recursion_count=3),
        body=ResolutionRequest(handle=b"88.100.1/A"),
    )
    decoded, _ = through_the_wire(message)
    return decoded


def answer(request: Message, code: ResponseCode, body: object, **options: object) -> Message:
    payload = encode_response(request, code, body, now=NOW, **options)  # type: ignore[arg-type]
    framed = tcp_message(reply_envelope(request.envelope), payload)
    return decode_response(Envelope.decode(framed), framed[20:])


EMPTY = ResolutionResponse(handle=b"88.100.1/A", values=())


@pytest.mark.parametrize(
    ("request_flags", "reply_flags"),
    [
        pytest.param(0, OpFlag.RECURSIVE, id="REC set even when not asked (CNRI default)"),
        pytest.param(
            OpFlag.AUTHORITATIVE | OpFlag.CACHE_CERTIFY | OpFlag.PUBLIC_ONLY | OpFlag.DO_NOT_REFER,
            OpFlag.AUTHORITATIVE
            | OpFlag.CACHE_CERTIFY
            | OpFlag.PUBLIC_ONLY
            | OpFlag.DO_NOT_REFER
            | OpFlag.RECURSIVE,
            id="AT CA PO DNRF echoed",
        ),
        pytest.param(
            OpFlag.CERTIFY | OpFlag.ENCRYPT | OpFlag.KEEP_ALIVE | OpFlag.CONTINUOUS,
            OpFlag.RECURSIVE,
            id="CT ENC KC CN not echoed: we neither sign nor encrypt",
        ),
        pytest.param(
            OpFlag.OVERWRITE_WHEN_EXISTS | OpFlag.MINT_NEW_SUFFIX,
            OpFlag.RECURSIVE,
            id="request-only flags dropped",
        ),
    ],
)
def test_reply_flags(request_flags: int, reply_flags: int) -> None:
    reply = answer(resolution_request(flags=request_flags), ResponseCode.SUCCESS, EMPTY)

    assert reply.header.op_flags == reply_flags


def test_reply_header_copies_opcode_and_recursion_count_and_expires_later() -> None:
    reply = answer(resolution_request(), ResponseCode.SUCCESS, EMPTY, site_info_serial=9)

    assert reply.header == Header(
        opcode=OpCode.RESOLUTION,
        response_code=ResponseCode.SUCCESS,
        op_flags=OpFlag.RECURSIVE,
        site_info_serial=9,
        recursion_count=3,
        expiration=NOW + 43_200,
        body_length=reply.header.body_length,
    )
    assert reply.credential is None


def test_keep_alive_is_ours_to_set() -> None:
    reply = answer(resolution_request(), ResponseCode.SUCCESS, EMPTY, keep_alive=True)

    assert reply.header.keep_alive


@pytest.mark.parametrize("continuous", [True, False])
def test_an_answer_of_several_messages_says_more_follow_on_all_but_its_last(
    continuous: bool,
) -> None:
    request = Message(
        envelope=Envelope(),
        header=Header(opcode=OpCode.LIST_HANDLES),
        body=ListHandlesRequest(handle=b"0.NA/88.100"),
    )
    reply = answer(
        request,
        ResponseCode.SUCCESS,
        ListHandlesResponse(handles=(b"88.100/A", b"88.100/B")),
        continuous=continuous,
    )

    assert reply.header.continuous is continuous
    assert reply.body == ListHandlesResponse(handles=(b"88.100/A", b"88.100/B"))


@pytest.mark.parametrize(
    ("suggested", "version"),
    [
        pytest.param((2, 11), (2, 11), id="the CNRI 9.3.1 client"),
        pytest.param((2, 6), (2, 6), id="an older client"),
        pytest.param((3, 0), PROTOCOL_VERSION, id="a newer client, capped at ours"),
    ],
)
def test_reply_speaks_the_lower_of_the_suggested_version_and_ours(
    suggested: tuple[int, int], version: tuple[int, int]
) -> None:
    request = resolution_request(suggested=suggested)

    reply = reply_envelope(request.envelope)

    assert reply.version == version
    assert reply.suggested_version == PROTOCOL_VERSION
    assert reply.request_id == request.envelope.request_id


@pytest.mark.parametrize(
    ("code", "wire_code"),
    [
        (ResponseCode.INVALID_VALUE, ResponseCode.VALUE_ALREADY_EXISTS),
        (ResponseCode.SERVER_READ_ONLY, ResponseCode.PREFIX_REFERRAL),
    ],
)
def test_clients_before_2_5_get_the_codes_they_knew(
    code: ResponseCode, wire_code: ResponseCode
) -> None:
    request = resolution_request(suggested=(2, 4))

    payload = encode_response(request, code, ErrorResponse(message="no"), now=NOW)

    assert int.from_bytes(payload[4:8], "big") == wire_code


def test_a_body_that_does_not_fit_the_code_is_a_bug_on_our_side() -> None:
    with pytest.raises(HandleWireError) as info:
        encode_response(resolution_request(), ResponseCode.HANDLE_NOT_FOUND, EMPTY, now=NOW)

    assert info.value.code == ResponseCode.ERROR
    assert "carries a ErrorResponse, not a ResolutionResponse" in str(info.value)


def test_generic_success_reply_has_an_empty_body() -> None:
    message = Message(
        envelope=Envelope(),
        header=Header(opcode=OpCode.DELETE_HANDLE),
        body=DeleteHandleRequest(handle=b"88.100.1/A"),
    )
    request, _ = through_the_wire(message)

    reply = answer(request, ResponseCode.SUCCESS, GenericResponse())

    assert reply.header.body_length == 0
    assert reply.body == GenericResponse()


def test_a_locally_built_request_still_gets_its_digest() -> None:
    message = Message(
        envelope=Envelope(),
        header=Header(opcode=OpCode.RESOLUTION, op_flags=OpFlag.RETURN_REQUEST_DIGEST),
        body=ResolutionRequest(handle=b"88.100.1/A"),
    )

    reply = answer(message, ResponseCode.AUTHENTICATION_NEEDED, ChallengeResponse(nonce=b"n"))

    payload = encode_message(message)
    assert reply.request_digest is not None
    assert reply.request_digest.matches(payload[:-4])


@given(st.binary(max_size=8))
def test_a_request_never_carries_a_digest(nonce: bytes) -> None:
    request = resolution_request()
    bad = replace(
        request,
        request_digest=answer(
            request, ResponseCode.AUTHENTICATION_NEEDED, ChallengeResponse(nonce=nonce)
        ).request_digest,
    )

    with pytest.raises(HandleWireError):
        encode_message(bad)
