"""What the workers say to the edge (resolver/edge_forwards.py): an answer under the
edge's id with how long it may be kept, or an answer of several messages as parts,
each sent once the connection has room for it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from resolver.edge_forwards import PART, EdgeForwards
from resolver.wirecache import Kept

pytestmark = pytest.mark.asyncio


class Pipe(asyncio.Transport):
    """What the protocol wrote, as the edge would read it."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def messages(self) -> list[tuple[int, int, bytes, bytes]]:
        """(id, keep ms, identifier, answer) of each message written."""
        out, seen = bytes(self.out), []
        while out:
            size = int.from_bytes(out[:4], "big")
            body, out = out[4 : 4 + size], out[4 + size :]
            about = int.from_bytes(body[8:10], "big")
            seen.append(
                (
                    int.from_bytes(body[:4], "big"),
                    int.from_bytes(body[4:8], "big"),
                    body[10 : 10 + about],
                    body[10 + about :],
                )
            )
        return seen


def request(ident: int, query: bytes, *, fill: bool = True, peer: bytes = b"10.0.0.7") -> bytes:
    body = ident.to_bytes(4, "big") + bytes([1 if fill else 0, len(peer)]) + peer + query
    return len(body).to_bytes(4, "big") + body


async def settle(pending: set[asyncio.Task[None]]) -> None:
    while pending:
        await asyncio.gather(*pending)


async def test_an_answer_goes_back_under_the_edges_id_with_its_keep() -> None:
    asked = []

    async def answer(query: bytes, peer: str, fill: bool) -> tuple[bytes | None, Kept | None]:
        asked.append((query, peer, fill))
        return b"answer:" + query, Kept(ttl=2.5, about="88.100.1/X")

    pending: set[asyncio.Task[None]] = set()
    proto, pipe = EdgeForwards(answer, pending, logging.getLogger("t")), Pipe()
    proto.connection_made(pipe)
    whole = request(7, b"q1") + request(8, b"q2", fill=False)
    proto.data_received(whole[:5])  # messages may come in pieces
    proto.data_received(whole[5:])
    await settle(pending)
    assert asked == [(b"q1", "10.0.0.7", True), (b"q2", "10.0.0.7", False)]
    assert pipe.messages() == [
        (7, 2500, b"88.100.1/X", b"answer:q1"),
        (8, 2500, b"88.100.1/X", b"answer:q2"),
    ]


async def test_an_answer_of_several_messages_goes_as_parts_then_its_last() -> None:
    async def answer(
        query: bytes, peer: str, fill: bool
    ) -> tuple[AsyncIterator[bytes] | None, Kept | None]:
        async def messages() -> AsyncIterator[bytes]:
            for n in range(3):
                yield f"m{n}".encode()

        return messages(), None

    pending: set[asyncio.Task[None]] = set()
    proto, pipe = EdgeForwards(answer, pending, logging.getLogger("t")), Pipe()
    proto.connection_made(pipe)
    proto.data_received(request(9, b"list"))
    await settle(pending)
    assert pipe.messages() == [(9, PART, b"", b"m0"), (9, PART, b"", b"m1"), (9, 0, b"", b"m2")]


async def test_parts_wait_for_room_and_stop_when_the_edge_is_gone() -> None:
    made = []
    closed = asyncio.Event()

    async def answer(
        query: bytes, peer: str, fill: bool
    ) -> tuple[AsyncIterator[bytes] | None, Kept | None]:
        async def messages() -> AsyncIterator[bytes]:
            try:
                for n in range(1000):
                    made.append(n)
                    yield f"m{n}".encode()
            finally:
                closed.set()

        return messages(), None

    pending: set[asyncio.Task[None]] = set()
    proto, pipe = EdgeForwards(answer, pending, logging.getLogger("t")), Pipe()
    proto.connection_made(pipe)
    proto.pause_writing()  # the edge lags: nothing past the first message is made
    proto.data_received(request(3, b"list"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert pipe.messages() == []
    assert len(made) == 2  # one held, the next read to know the held one is not the last
    proto.resume_writing()  # room for one part, and the edge lags again
    proto.pause_writing()
    for _ in range(20):
        await asyncio.sleep(0)
    assert pipe.messages() == [(3, PART, b"", b"m0")]
    assert len(made) == 3
    proto.connection_lost(None)  # the edge went away: the listing is closed, not run out
    await settle(pending)
    assert closed.is_set()
    assert len(made) == 3
