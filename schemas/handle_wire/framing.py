"""Framing a payload for TCP or UDP, and reassembling a UDP message (RFC 3652 §2.3).

Over TCP a message is its envelope and its payload. Over UDP a payload longer than one
packet is cut into fragments, each behind a copy of the envelope whose SequenceNumber is
its place (from 0) and whose MessageLength is the *whole* payload's length. That is how
the CNRI client and server both do it (``HandleResolver.getUdpPacketsForRequest``,
``HdlUdpRequestHandler.handleResponse``): the receiver counts ceil(MessageLength / 492)
packets and copies fragment N to offset N * 492, so every fragment but the last must be
exactly 492 bytes. The TC flag is set on every fragment of a split message (RFC 3652
§2.2.1, §2.3); CNRI's server leaves it as the request had it, and its client ignores it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from schemas.handle_wire.codes import ResponseCode
from schemas.handle_wire.envelope import Envelope
from schemas.handle_wire.errors import HandleWireError, cannot_encode
from schemas.handle_wire.limits import (
    ENVELOPE_SIZE,
    MAX_MESSAGE_LENGTH,
    MAX_UDP_PACKETS,
    UDP_PACKET_SIZE,
)


def tcp_message(envelope: Envelope, payload: bytes) -> bytes:
    """The envelope (its length set to the payload's, sequence 0) and the payload."""
    if len(payload) > MAX_MESSAGE_LENGTH:
        raise cannot_encode(
            f"a {len(payload)}-byte message is over the {MAX_MESSAGE_LENGTH} a client accepts",
            field="message_length",
        )
    framed = replace(envelope, sequence=0, truncated=False, message_length=len(payload))
    return framed.encode() + payload


def udp_packet_count(message_length: int, *, max_packet: int = UDP_PACKET_SIZE) -> int:
    """How many packets carry a message of ``message_length`` bytes (at least one)."""
    chunk = max_packet - ENVELOPE_SIZE
    return max(1, -(-message_length // chunk))


def udp_packets(
    envelope: Envelope,
    payload: bytes,
    *,
    max_packet: int = UDP_PACKET_SIZE,
    max_packets: int = MAX_UDP_PACKETS,
) -> list[bytes]:
    """The UDP packets of one message, each at most ``max_packet`` bytes.

    CNRI clients reassemble at 492-byte steps, so keep ``max_packet`` at 512 for them.
    A message needing more than ``max_packets`` packets raises HandleWireError (code
    ERROR): send it over TCP, or answer over UDP with a short error.
    """
    chunk = max_packet - ENVELOPE_SIZE
    if chunk <= 0:
        raise cannot_encode(f"a packet of {max_packet} bytes holds no data", field="max_packet")
    if len(payload) > MAX_MESSAGE_LENGTH:
        raise cannot_encode(
            f"a {len(payload)}-byte message is over the {MAX_MESSAGE_LENGTH} a client accepts",
            field="message_length",
        )
    count = udp_packet_count(len(payload), max_packet=max_packet)
    if count > max_packets:
        raise cannot_encode(
            f"a {len(payload)}-byte message needs {count} UDP packets, more than {max_packets}",
            field="max_packets",
        )
    base = replace(envelope, truncated=count > 1, message_length=len(payload))
    return [
        replace(base, sequence=n).encode() + payload[n * chunk : (n + 1) * chunk]
        for n in range(count)
    ]


def reassemble_udp(
    packets: Iterable[bytes], *, max_packet: int = UDP_PACKET_SIZE
) -> tuple[Envelope, bytes]:
    """The envelope (of fragment 0) and the payload of one message from all its packets,
    in any order, as the CNRI receivers rebuild it; every inconsistency is refused."""
    chunk = max_packet - ENVELOPE_SIZE
    fragments: dict[int, bytes] = {}
    first: Envelope | None = None
    expected = 0
    for number, packet in enumerate(packets):
        envelope = Envelope.decode(packet)
        data = packet[ENVELOPE_SIZE:]
        if first is None:
            first = envelope
            expected = udp_packet_count(envelope.message_length, max_packet=max_packet)
        elif (envelope.request_id, envelope.session_id, envelope.message_length) != (
            first.request_id,
            first.session_id,
            first.message_length,
        ):
            raise _bad(f"packet {number} belongs to another message (ids or length differ)")
        seq = envelope.sequence
        if seq >= expected:
            raise _bad(f"packet {number} has sequence {seq}; the message has {expected} packets")
        want = min(chunk, first.message_length - seq * chunk)
        if len(data) != want:
            raise _bad(f"fragment {seq} carries {len(data)} bytes, not {want}")
        if fragments.setdefault(seq, data) != data:
            raise _bad(f"fragment {seq} arrived twice with different bytes")
    if first is None:
        raise _bad("no packets")
    missing = [n for n in range(expected) if n not in fragments]
    if missing:
        raise _bad(f"fragments {missing[:8]} of {expected} are missing")
    payload = b"".join(fragments[n] for n in range(expected))
    return replace(first, sequence=0), payload


def _bad(reason: str) -> HandleWireError:
    return HandleWireError(ResponseCode.PROTOCOL_ERROR, f"UDP message: {reason}", field="sequence")
