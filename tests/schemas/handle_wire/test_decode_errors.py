"""Truncated, oversized and lying inputs: each refused with the right code, field and offset."""

from __future__ import annotations

from dataclasses import replace

import pytest

from schemas.handle_wire import (
    CreateHandleRequest,
    Envelope,
    HandleValue,
    HandleWireError,
    Header,
    Message,
    OpCode,
    ResponseCode,
    SiteInfo,
    decode_request,
    decode_response,
    encode_error_reply,
    encode_message,
    reply_envelope,
    tcp_message,
)
from tests.schemas.handle_wire.test_vectors import (
    ENVELOPE,
    RESOLUTION_REQUEST,
    SITE_BYTES,
)

NOW = 1_800_000_000
E = ResponseCode


def put(data: bytes, at: int, hex_: str) -> bytes:
    """``data`` with the bytes at ``at`` overwritten by ``hex_``."""
    new = bytes.fromhex(hex_)
    return data[:at] + new + data[at + len(new) :]


def decode(payload: bytes, **envelope: object) -> Message:
    base = replace(Envelope.decode(ENVELOPE), message_length=len(payload))
    return decode_request(replace(base, **envelope), payload)  # type: ignore[arg-type]


CREATE = encode_message(
    Message(
        envelope=Envelope(),
        header=Header(opcode=OpCode.CREATE_HANDLE),
        body=CreateHandleRequest(
            handle=b"88.100.1/NEW",
            values=(
                HandleValue(index=1, type=b"URL", data=b"https://e.x/", references=((b"a/b", 1),)),
            ),
        ),
    )
)
# offsets in CREATE: header 0-23, handle length 24, handle 28-39, value count 40, then the
# value: index 44, timestamp 48, ttl type 52, ttl 53, permission 57, type length 58,
# type 62-64, data length 65, data 69-80, reference count 81, reference handle length 85


# name, payload, expected code, field, offset (None: not checked), words of the message
REQUEST_CASES: list[tuple[str, bytes, ResponseCode, str, int | None, str]] = [
    ("header cut short", RESOLUTION_REQUEST[:10], E.PROTOCOL_ERROR, "header", 0, "needs 24"),
    (
        "body length past the message",
        put(RESOLUTION_REQUEST, 20, "00000100"),
        E.PROTOCOL_ERROR,
        "body_length",
        20,
        "exceeds the 32 bytes",
    ),
    (
        "body length negative",
        put(RESOLUTION_REQUEST, 20, "ffffffff"),
        E.PROTOCOL_ERROR,
        "body_length",
        20,
        "-1",
    ),
    (
        "handle length past the body",
        put(RESOLUTION_REQUEST, 24, "00000100"),
        E.PROTOCOL_ERROR,
        "handle",
        24,
        "length 256 needs at least 256 bytes but only 24 remain",
    ),
    (
        "handle length negative",
        put(RESOLUTION_REQUEST, 24, "ffffffff"),
        E.PROTOCOL_ERROR,
        "handle",
        24,
        "negative (-1)",
    ),
    (
        "handle longer than MAX_HANDLE_LENGTH",
        put(RESOLUTION_REQUEST, 24, "00000801"),
        E.INVALID_HANDLE,
        "handle",
        24,
        "2049 exceeds the cap of 2048",
    ),
    (
        "handle not UTF-8",
        put(RESOLUTION_REQUEST, 37, "ff"),  # the "A" of 88.100.1/ABC-123
        E.INVALID_HANDLE,
        "handle",
        37,
        "not UTF-8",
    ),
    (
        "index count negative",
        put(RESOLUTION_REQUEST, 44, "ffffffff"),
        E.PROTOCOL_ERROR,
        "indexes",
        44,
        "negative",
    ),
    (
        "index count beyond the bytes left",
        put(RESOLUTION_REQUEST, 44, "00000010"),
        E.PROTOCOL_ERROR,
        "indexes",
        44,
        "count 16 needs at least 64 bytes but only 4 remain",
    ),
    (
        "index count over MAX_LIST_ITEMS",
        put(RESOLUTION_REQUEST, 44, "00000401"),
        E.PROTOCOL_ERROR,
        "indexes",
        44,
        "1025 exceeds the cap of 1024",
    ),
    (
        "type count beyond the bytes left",
        put(RESOLUTION_REQUEST, 48, "00000001"),
        E.PROTOCOL_ERROR,
        "types",
        48,
        "needs at least 4 bytes but only 0 remain",
    ),
    (
        "bytes after the body's last field",
        put(RESOLUTION_REQUEST[:52], 20, "0000001e") + b"\0\0" + bytes(4),
        E.PROTOCOL_ERROR,
        "(end)",
        52,
        "2 unexpected bytes",
    ),
    (
        "credential length cut short",
        RESOLUTION_REQUEST[:-2],
        E.PROTOCOL_ERROR,
        "credential",
        52,
        "needs 4 bytes but only 2 remain",
    ),
    (
        "credential length past the message",
        put(RESOLUTION_REQUEST, 52, "00000010"),
        E.PROTOCOL_ERROR,
        "credential",
        52,
        "length 16 needs at least 16 bytes but only 0 remain",
    ),
    (
        "bytes after the credential",
        RESOLUTION_REQUEST + b"\x01",
        E.PROTOCOL_ERROR,
        "(end)",
        56,
        "1 unexpected bytes",
    ),
    (
        "unknown opcode",
        put(RESOLUTION_REQUEST, 0, "000003e7"),
        E.OPERATION_NOT_SUPPORTED,
        "opcode",
        0,
        "unknown opcode 999",
    ),
    (
        "replication opcode",
        put(RESOLUTION_REQUEST, 0, "000003e9"),
        E.OPERATION_NOT_SUPPORTED,
        "opcode",
        0,
        "RETRIEVE_TXN_LOG requests are not decoded",
    ),
    (
        "unknown response code",
        put(RESOLUTION_REQUEST, 4, "00000009"),
        E.PROTOCOL_ERROR,
        "response_code",
        4,
        "unknown response code 9",
    ),
    (
        "a response where a request belongs",
        put(RESOLUTION_REQUEST, 4, "00000001"),
        E.PROTOCOL_ERROR,
        "response_code",
        4,
        "expected a request, got a response",
    ),
    (
        "value count over MAX_VALUES",
        put(CREATE, 40, "00000401"),
        E.PROTOCOL_ERROR,
        "values",
        40,
        "1025 exceeds the cap of 1024",
    ),
    (
        "value count beyond the bytes left",
        put(CREATE, 40, "00000005"),
        E.PROTOCOL_ERROR,
        "values",
        40,
        "count 5 needs at least 130 bytes",
    ),
    (
        "value type not UTF-8",
        put(CREATE, 62, "c3"),  # a lead byte with no continuation
        E.INVALID_VALUE,
        "type",
        62,
        "not UTF-8",
    ),
    (
        "value data length past the body",
        put(CREATE, 65, "7fffffff"),
        E.PROTOCOL_ERROR,
        "data",
        65,
        "exceeds the cap of 65536",
    ),
    (
        "reference count beyond the bytes left",
        put(CREATE, 81, "00000009"),
        E.PROTOCOL_ERROR,
        "references",
        81,
        "count 9 needs at least 72 bytes",
    ),
]


@pytest.mark.parametrize(
    ("payload", "code", "field", "offset", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in REQUEST_CASES],
)
def test_bad_request_is_refused_with_code_field_and_offset(
    payload: bytes, code: ResponseCode, field: str, offset: int | None, words: str
) -> None:
    with pytest.raises(HandleWireError) as info:
        decode(payload)

    error = info.value
    assert (error.code, error.field) == (code, field)
    if offset is not None:
        assert error.offset == offset
    assert words in str(error)
    assert f"field {field}" in str(error)


def test_the_unmutated_create_request_decodes() -> None:
    assert decode(CREATE).body == CreateHandleRequest(
        handle=b"88.100.1/NEW",
        values=(
            HandleValue(index=1, type=b"URL", data=b"https://e.x/", references=((b"a/b", 1),)),
        ),
    )


def test_a_payload_shorter_than_its_envelope_says_is_refused() -> None:
    with pytest.raises(HandleWireError) as info:
        decode(RESOLUTION_REQUEST, message_length=len(RESOLUTION_REQUEST) + 1)

    assert info.value.field == "message_length"
    assert "message length 57 but 56 bytes follow" in str(info.value)


def test_an_encrypted_message_needs_a_session() -> None:
    with pytest.raises(HandleWireError) as info:
        decode(RESOLUTION_REQUEST, encrypted=True)

    assert info.value.code == ResponseCode.SESSION_FAILED


def test_a_compressed_message_is_refused() -> None:
    with pytest.raises(HandleWireError) as info:
        decode(RESOLUTION_REQUEST, compressed=True)

    assert (info.value.code, info.value.field) == (ResponseCode.PROTOCOL_ERROR, "compressed")


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        pytest.param(ENVELOPE[:19], "envelope", "needs 20 bytes, got 19", id="cut short"),
        pytest.param(
            put(ENVELOPE, 16, "00040001"),
            "message_length",
            "262145 exceeds the cap of 262144",
            id="over 256 KiB",
        ),
        pytest.param(
            put(ENVELOPE, 16, "80000000"),
            "message_length",
            "2147483648 exceeds",
            id="negative to a Java int",
        ),
    ],
)
def test_bad_envelope_is_refused(data: bytes, field: str, words: str) -> None:
    with pytest.raises(HandleWireError) as info:
        Envelope.decode(data)

    assert (info.value.code, info.value.field) == (ResponseCode.PROTOCOL_ERROR, field)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        pytest.param(SITE_BYTES[:7], "hash_option", "needs 1 bytes but only 0", id="cut short"),
        pytest.param(
            put(SITE_BYTES, 32, "00000002"),
            "servers",
            "count 2 needs at least 56 bytes but only 40 remain",
            id="server count lying",
        ),
        pytest.param(SITE_BYTES + b"\0", "(end)", "1 unexpected bytes", id="bytes left over"),
        pytest.param(
            put(SITE_BYTES, 60, "00000003"),
            "interfaces",
            "count 3 needs at least 18 bytes but only 12 remain",
            id="interface count lying",
        ),
    ],
)
def test_bad_site_info_is_refused(data: bytes, field: str, words: str) -> None:
    with pytest.raises(HandleWireError) as info:
        SiteInfo.decode(data)

    assert (info.value.code, info.value.field) == (ResponseCode.PROTOCOL_ERROR, field)
    assert words in str(info.value)


def reply_to(payload: bytes) -> Message:
    """Decode ``payload``, which must fail, and decode the error reply to it."""
    envelope = replace(Envelope.decode(ENVELOPE), message_length=len(payload))
    with pytest.raises(HandleWireError) as info:
        decode_request(envelope, payload)
    framed = tcp_message(
        reply_envelope(envelope), encode_error_reply(envelope, info.value, now=NOW)
    )
    return decode_response(Envelope.decode(framed), framed[20:])


def test_error_reply_to_an_unknown_opcode_has_opcode_zero_as_cnri_sends() -> None:
    reply = reply_to(put(RESOLUTION_REQUEST, 0, "000003e7"))

    assert reply.header.opcode == OpCode.RESERVED
    assert reply.header.response_code == ResponseCode.OPERATION_NOT_SUPPORTED
    assert "unknown opcode 999" in reply.body.message  # type: ignore[union-attr]


def test_error_reply_to_a_bad_body_echoes_the_opcode_and_the_digest_asked_for() -> None:
    bad = put(put(RESOLUTION_REQUEST, 8, "19800000"), 24, "00000100")  # RD, lying handle

    reply = reply_to(bad)

    assert reply.header.opcode == OpCode.RESOLUTION
    assert reply.header.response_code == ResponseCode.PROTOCOL_ERROR
    assert reply.header.public_only
    assert reply.header.return_request_digest
    assert reply.request_digest is not None
    assert reply.request_digest.matches(bad[:-4])
    assert "handle length 256" in reply.body.message  # type: ignore[union-attr]


def test_error_reply_without_sound_request_bytes_carries_no_digest() -> None:
    bad = put(put(RESOLUTION_REQUEST, 8, "19800000"), 20, "00000100")  # RD, lying body length

    reply = reply_to(bad)

    assert reply.header.opcode == OpCode.RESOLUTION
    assert reply.request_digest is None
    assert not reply.header.return_request_digest
