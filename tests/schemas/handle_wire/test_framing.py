"""UDP splitting the way the CNRI client reassembles it, our reassembly, and TCP framing.

``data/cnri-create-handle-udp.bin`` holds the six UDP packets (in order, back to back;
all but the last are 512 bytes) that the CNRI 9.3.1 ``HandleResolver.sendHdlUdpRequest``
sent for a CreateHandleRequest of 88.100.1/NEW with twenty URL values, captured on
loopback.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.handle_wire import (
    MAX_MESSAGE_LENGTH,
    UDP_DATA_SIZE,
    CreateHandleRequest,
    Envelope,
    HandleWireError,
    ResponseCode,
    decode_request,
    reassemble_udp,
    tcp_message,
    udp_packet_count,
    udp_packets,
)

CAPTURE = Path(__file__).parent / "data" / "cnri-create-handle-udp.bin"
ENVELOPE = Envelope(major=2, minor=11, suggested_major=2, suggested_minor=11, request_id=0x1234)


def cnri_client_reassembly(packets: list[bytes]) -> bytes:
    """HandleResolver.sendHdlUdpRequest's loop, transcribed: size the message from the
    first packet's MessageLength, copy each packet's data to SequenceNumber * 492."""
    message = b""
    received: list[bool] = []
    for packet in packets:
        envelope = Envelope.decode(packet)
        if not received:
            count = envelope.message_length // 492 + (1 if envelope.message_length % 492 else 0)
            received = [False] * count
            message = bytes(envelope.message_length)
        received[envelope.sequence] = True
        at = envelope.sequence * 492
        data = packet[20:]
        message = message[:at] + data + message[at + len(data) :]
    assert all(received)
    return message


@pytest.mark.parametrize(
    ("size", "packets", "last"),
    [
        (24, 1, 24),
        (492, 1, 492),
        (493, 2, 1),
        (1000, 3, 16),
        (492 * 32, 32, 492),
    ],
)
def test_packets_are_full_but_the_last(size: int, packets: int, last: int) -> None:
    payload = bytes(random.Random(size).randrange(256) for _ in range(size))

    out = udp_packets(ENVELOPE, payload)

    assert len(out) == packets == udp_packet_count(size)
    assert [len(p) for p in out[:-1]] == [512] * (packets - 1)
    assert len(out[-1]) == 20 + last
    envelopes = [Envelope.decode(p) for p in out]
    assert [e.sequence for e in envelopes] == list(range(packets))
    assert {e.message_length for e in envelopes} == {size}  # the whole, in every packet
    assert {e.truncated for e in envelopes} == {packets > 1}
    assert {e.request_id for e in envelopes} == {0x1234}


@given(st.binary(min_size=1, max_size=492 * 12), st.randoms(use_true_random=False))
def test_the_cnri_client_reassembles_our_packets_in_any_order(
    payload: bytes, rng: random.Random
) -> None:
    packets = udp_packets(ENVELOPE, payload)
    rng.shuffle(packets)

    assert cnri_client_reassembly(packets) == payload
    envelope, data = reassemble_udp(packets)
    assert data == payload
    assert envelope == replace(ENVELOPE, message_length=len(payload), truncated=len(packets) > 1)


def test_a_message_needing_too_many_packets_goes_over_tcp_instead() -> None:
    with pytest.raises(HandleWireError) as info:
        udp_packets(ENVELOPE, bytes(UDP_DATA_SIZE * 32 + 1))

    assert info.value.code == ResponseCode.ERROR
    assert "needs 33 UDP packets, more than 32" in str(info.value)
    assert len(udp_packets(ENVELOPE, bytes(UDP_DATA_SIZE * 33), max_packets=33)) == 33


def test_tcp_message_is_the_envelope_and_the_payload() -> None:
    framed = tcp_message(replace(ENVELOPE, sequence=5, truncated=True), b"\x01\x02\x03")

    assert Envelope.decode(framed) == replace(ENVELOPE, message_length=3)
    assert framed[20:] == b"\x01\x02\x03"


def test_no_message_over_256_kib_is_framed() -> None:
    with pytest.raises(HandleWireError):
        tcp_message(ENVELOPE, bytes(MAX_MESSAGE_LENGTH + 1))
    with pytest.raises(HandleWireError):
        udp_packets(ENVELOPE, bytes(MAX_MESSAGE_LENGTH + 1), max_packets=1000)


def capture() -> list[bytes]:
    data = CAPTURE.read_bytes()
    return [data[at : at + 512] for at in range(0, len(data), 512)]


def test_a_real_cnri_multi_packet_request_reassembles_and_decodes() -> None:
    packets = capture()
    envelopes = [Envelope.decode(p) for p in packets]

    envelope, payload = reassemble_udp(reversed(packets))
    message = decode_request(envelope, payload)

    assert [e.sequence for e in envelopes] == list(range(6))
    assert all(e.truncated for e in envelopes)  # the CNRI client sets TC on each fragment
    assert {e.message_length for e in envelopes} == {2798}
    assert isinstance(message.body, CreateHandleRequest)
    assert message.body.handle == b"88.100.1/NEW"
    assert [v.index for v in message.body.values] == list(range(1, 21))
    assert message.body.values[19].data == b"https://example.com/value/19/" + b"y" * 80
    assert udp_packets(replace(envelope, truncated=True), payload) == packets


@pytest.mark.parametrize(
    ("packets", "words"),
    [
        pytest.param([], "no packets", id="none"),
        pytest.param(lambda p: p[:-1], "fragments [5] of 6 are missing", id="one missing"),
        pytest.param(lambda p: [*p, p[2]], None, id="an identical duplicate is fine"),
        pytest.param(
            lambda p: [*p, p[2][:-1] + b"?"], "fragment 2 arrived twice", id="a changed duplicate"
        ),
        pytest.param(
            lambda p: [p[0], p[1][:8] + b"\0\0\0\x01" + p[1][12:], *p[2:]],
            "belongs to another message",
            id="another request id",
        ),
        pytest.param(
            lambda p: [p[0], p[1][:15] + b"\x09" + p[1][16:], *p[2:]],
            "has sequence 9; the message has 6 packets",
            id="sequence out of range",
        ),
        pytest.param(
            lambda p: [p[0][:-1], *p[1:]], "fragment 0 carries 491 bytes, not 492", id="short"
        ),
        pytest.param(lambda p: [p[0][:12], *p[1:]], "needs 20 bytes", id="no envelope"),
    ],
)
def test_reassembly_refuses_what_does_not_add_up(
    packets: list[bytes] | Callable[[list[bytes]], list[bytes]], words: str | None
) -> None:
    chosen = packets(capture()) if callable(packets) else packets

    if words is None:
        assert reassemble_udp(chosen)[1] == reassemble_udp(capture())[1]
        return
    with pytest.raises(HandleWireError) as info:
        reassemble_udp(chosen)
    assert info.value.code == ResponseCode.PROTOCOL_ERROR
    assert words in str(info.value)
