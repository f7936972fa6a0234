"""Requests the real CNRI 9.3.1 client sent (``tests/fixtures/handle/*.bin``: envelope and
payload of one message each), decoded field by field; and our reply to each, checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.handle_wire import (
    Envelope,
    GetSiteInfoRequest,
    HandleValue,
    ListHandlesRequest,
    Message,
    OpCode,
    OpFlag,
    ResolutionRequest,
    ResolutionResponse,
    ResponseCode,
    decode_request,
    decode_response,
    encode_response,
    reply_envelope,
    tcp_message,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "handle"
CAPTURES = sorted(FIXTURES.glob("*.bin"))

# The CNRI client's defaults: recursive, cacheCertify and ignoreRestrictedValues (PO).
DEFAULT = OpFlag.RECURSIVE | OpFlag.CACHE_CERTIFY | OpFlag.PUBLIC_ONLY
ABC = ResolutionRequest(handle=b"88.100.1/ABC-123")

# capture name without the transport: (opcode flags, body)
EXPECTED: dict[str, tuple[int, object]] = {
    "resolve-plain": (DEFAULT, ABC),
    "resolve-digest": (DEFAULT | OpFlag.RETURN_REQUEST_DIGEST, ABC),
    "resolve-indexes": (DEFAULT, ResolutionRequest(handle=b"88.100.1/ABC-123", indexes=(1, 2))),
    "resolve-no-recursion": (OpFlag.CACHE_CERTIFY | OpFlag.PUBLIC_ONLY, ABC),
    "resolve-types": (
        DEFAULT,
        ResolutionRequest(handle=b"88.100.1/ABC-123", types=(b"URL", b"EMAIL")),
    ),
    "resolve-utf8": (DEFAULT, ResolutionRequest(handle="88.100.1/Grüße-東京".encode())),
    "siteinfo": (DEFAULT, GetSiteInfoRequest(handle=b"/")),
    "list": (DEFAULT, ListHandlesRequest(handle=b"0.NA/88.100.1")),
}


def load(path: Path) -> Message:
    data = path.read_bytes()
    envelope = Envelope.decode(data)
    return decode_request(envelope, data[20:])


@pytest.mark.parametrize("path", CAPTURES, ids=[p.stem for p in CAPTURES])
def test_every_capture_decodes_as_the_cnri_client_frames_it(path: Path) -> None:
    message = load(path)

    envelope = message.envelope
    assert (envelope.major, envelope.minor) == (2, 3)  # CNRI's compatibility version
    assert envelope.suggested_version == (2, 11)  # its Common.MAJOR/MINOR_VERSION
    assert (envelope.session_id, envelope.sequence, envelope.truncated) == (0, 0, False)
    assert message.header.response_code == ResponseCode.RESERVED
    assert message.header.site_info_serial == 0xFFFF  # its -1: no HS_SITE in hand
    assert message.header.recursion_count == 0
    assert message.credential is None  # a zero CredentialLength: unsigned


@pytest.mark.parametrize(
    "path",
    [p for p in CAPTURES if p.stem.replace("-tcp", "").replace("-udp", "") in EXPECTED],
    ids=lambda p: p.stem,
)
def test_capture_fields(path: Path) -> None:
    flags, body = EXPECTED[path.stem.replace("-tcp", "").replace("-udp", "")]

    message = load(path)

    assert message.header.op_flags == flags
    assert message.body == body
    opcodes = {GetSiteInfoRequest: OpCode.GET_SITE_INFO, ListHandlesRequest: OpCode.LIST_HANDLES}
    assert message.header.opcode == opcodes.get(type(body), OpCode.RESOLUTION)


@pytest.mark.parametrize(
    "path", [p for p in CAPTURES if p.stem.startswith("resolve-")], ids=lambda p: p.stem
)
def test_our_reply_to_each_capture_is_what_the_client_checks_for(path: Path) -> None:
    message = load(path)
    assert isinstance(message.body, ResolutionRequest)
    values = (HandleValue(index=1, type=b"URL", data=b"https://example.com/"),)

    payload = encode_response(
        message,
        ResponseCode.SUCCESS,
        ResolutionResponse(handle=message.body.handle, values=values),
        now=1_800_000_000,
    )
    framed = tcp_message(reply_envelope(message.envelope), payload)
    reply = decode_response(Envelope.decode(framed), framed[20:])

    assert reply.envelope.request_id == message.envelope.request_id
    assert reply.envelope.version == (2, 11)
    assert reply.header.opcode == OpCode.RESOLUTION
    if message.header.return_request_digest:
        assert reply.request_digest is not None
        assert reply.request_digest.matches(message.header_and_body)
    else:
        assert reply.request_digest is None
    assert reply.body == ResolutionResponse(handle=message.body.handle, values=values)
