"""What a Handle face does with bytes no client should send: a defined answer (a
protocol error with the request's id) or a closed connection, and it keeps serving."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from resolver.handle.server import MAX_TCP_PER_PEER
from schemas.handle_wire import (
    ENVELOPE_SIZE,
    Envelope,
    Header,
    OpCode,
    ResponseCode,
    decode_response,
    reassemble_udp,
    udp_packet_count,
)
from tests.resolver.handle.conftest import HandleNet

pytestmark = pytest.mark.asyncio
CAPTURE = Path(__file__).parents[2] / "fixtures" / "handle" / "resolve-tcp-plain.bin"
WAIT = 5.0


def request(*, opcode: int = OpCode.RESOLUTION, body: bytes | None = None, rid: int = 7) -> bytes:
    """A resolution request as the CNRI client sends it, its opcode or body replaced."""
    captured = CAPTURE.read_bytes()
    envelope = Envelope.decode(captured)
    header = Header.decode(captured, ENVELOPE_SIZE)
    old_body = captured[ENVELOPE_SIZE + 24 : ENVELOPE_SIZE + 24 + header.body_length]
    body = old_body if body is None else body
    head = Header(
        opcode=OpCode.RESOLUTION,
        op_flags=header.op_flags,
        expiration=header.expiration,
        body_length=len(body),
    )
    payload = opcode.to_bytes(4, "big") + head.encode()[4:] + body + b"\x00\x00\x00\x00"
    framed = Envelope(
        major=envelope.major,
        minor=envelope.minor,
        suggested_major=envelope.suggested_major,
        suggested_minor=envelope.suggested_minor,
        request_id=rid,
        message_length=len(payload),
    )
    return framed.encode() + payload


async def tcp_exchange(net: HandleNet, data: bytes) -> bytes:
    """Send ``data``, then read until the node closes or one whole message is in."""
    reader, writer = await asyncio.open_connection(*net.addresses["sub"])
    try:
        writer.write(data)
        await writer.drain()
        head = await asyncio.wait_for(reader.read(ENVELOPE_SIZE), WAIT)
        if len(head) < ENVELOPE_SIZE:
            return head
        length = Envelope.decode(head).message_length
        return head + await asyncio.wait_for(reader.readexactly(length), WAIT)
    finally:
        writer.close()


def udp_exchange(net: HandleNet, data: bytes) -> list[bytes]:
    host, port = net.addresses["sub"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.sendto(data, (host, port))
        packets = []
        try:
            while True:
                packets.append(sock.recv(2048))
                first = Envelope.decode(packets[0])
                if len(packets) == udp_packet_count(first.message_length):
                    return packets
        except TimeoutError:
            return packets


def response_code(wire: bytes) -> tuple[int, int]:
    envelope = Envelope.decode(wire)
    message = decode_response(envelope, wire[ENVELOPE_SIZE:])
    return envelope.request_id, int(message.header.response_code)


async def still_serves(net: HandleNet) -> None:
    answer = await tcp_exchange(net, request(rid=99))
    assert response_code(answer) == (99, ResponseCode.SUCCESS)


async def test_an_unknown_operation_is_refused_by_name(handle_net: HandleNet) -> None:
    answer = await tcp_exchange(handle_net, request(opcode=77, rid=11))
    assert response_code(answer) == (11, ResponseCode.OPERATION_NOT_SUPPORTED)
    await still_serves(handle_net)


async def test_a_body_that_lies_about_its_lengths_is_a_protocol_error(
    handle_net: HandleNet,
) -> None:
    lying = (1000).to_bytes(4, "big") + b"88.100.1/ABC-123" + bytes(8)  # handle of 1000 bytes
    answer = await tcp_exchange(handle_net, request(body=lying, rid=12))
    rid, code = response_code(answer)
    assert (rid, code) == (12, ResponseCode.PROTOCOL_ERROR)
    message = decode_response(Envelope.decode(answer), answer[ENVELOPE_SIZE:])
    assert "handle" in str(message.body)  # says which field
    await still_serves(handle_net)


async def test_a_handle_that_is_not_utf8_is_refused(handle_net: HandleNet) -> None:
    bad = (4).to_bytes(4, "big") + b"\xff\xfe\x00\x01" + bytes(8)
    answer = await tcp_exchange(handle_net, request(body=bad, rid=13))
    assert response_code(answer)[0] == 13
    assert response_code(answer)[1] in (ResponseCode.PROTOCOL_ERROR, ResponseCode.INVALID_HANDLE)


async def test_a_message_length_over_the_cap_closes_the_connection(handle_net: HandleNet) -> None:
    head = bytearray(request())[:ENVELOPE_SIZE]
    head[16:20] = (1 << 30).to_bytes(4, "big")
    assert await tcp_exchange(handle_net, bytes(head)) == b""
    await still_serves(handle_net)


async def test_a_request_that_stops_midway_is_closed_once_idle(
    handle_net: HandleNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("resolver.handle.server.IDLE", 0.5)
    reader, writer = await asyncio.open_connection(*handle_net.addresses["sub"])
    try:
        writer.write(request()[:30])  # the envelope and part of the header, then nothing
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), WAIT) == b""  # closed, unanswered
    finally:
        writer.close()
    await still_serves(handle_net)


async def test_udp_garbage_gets_no_answer_and_a_split_request_a_protocol_error(
    handle_net: HandleNet,
) -> None:
    assert await asyncio.to_thread(udp_exchange, handle_net, b"\x02\x03") == []
    whole = request(rid=21)
    half = bytearray(whole[: ENVELOPE_SIZE + 30])  # packet 0 of a longer message
    packets = await asyncio.to_thread(udp_exchange, handle_net, bytes(half))
    _, payload = reassemble_udp(packets)
    envelope = Envelope.decode(packets[0])
    assert envelope.request_id == 21
    message = decode_response(envelope, payload)
    assert message.header.response_code == ResponseCode.PROTOCOL_ERROR
    assert "TCP" in str(message.body)
    answered = await asyncio.to_thread(udp_exchange, handle_net, request(rid=22))
    assert response_code(answered[0]) == (22, ResponseCode.SUCCESS)


async def test_one_address_holding_many_connections_does_not_shut_out_others(
    handle_net: HandleNet,
) -> None:
    host, port = handle_net.addresses["sub"]
    opened = [await asyncio.open_connection(host, port) for _ in range(MAX_TCP_PER_PEER + 20)]
    try:
        # past its share, the greedy address's connections are closed at once
        extra_reader, _ = opened[-1]
        assert await asyncio.wait_for(extra_reader.read(), WAIT) == b""
        reader, writer = await asyncio.open_connection(host, port, local_addr=("127.0.0.2", 0))
        try:
            writer.write(request(rid=31))
            await writer.drain()
            head = await asyncio.wait_for(reader.readexactly(ENVELOPE_SIZE), WAIT)
            rest = await reader.readexactly(Envelope.decode(head).message_length)
            assert response_code(head + rest) == (31, ResponseCode.SUCCESS)
        finally:
            writer.close()
    finally:
        for _, w in opened:
            w.close()
