"""The requests the node's edge did not hold an answer for (resolver/edge/forward.go):
DNS queries over UDP, Handle requests over TCP. They come on connections to a unix
socket only the node's processes reach; each message after its length (u32),
big-endian:

    edge -> workers: id u32 | flags u8 (1: fill) | len u8 | the asker's address | request
    workers -> edge: id u32 | keep ms u32 (0: not kept) | len u16 | identifier | answer

"fill" asks for an answer read fresh that the edge may keep, for as long as the
answer says (at most MAX_KEEP), until the identifier changes. An empty answer tells
the edge there is none to send (it stops waiting; over TCP it closes the connection).
An answer of several messages (a Handle list of handles) goes as parts, each with
keep ms PART, then its last message with keep ms 0; each part is made once the
connection has room for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

from resolver.wirecache import MAX_KEEP, Kept

# bytes: a request (a DNS query is at most 65,535; a Handle message at most 262,144
# and its envelope) and its asker's address
MAX_EDGE_MESSAGE = 262_144 + 20 + 300
MAX_PENDING = 2000  # requests worked on at once, all connections together
PART = 0xFFFF_FFFF  # keep ms of a part of an answer: more of it follows


# (the request, the asker's address, fill) -> the answer (None: none; or its messages
# one by one) and how it may be kept
Answer = Callable[
    [bytes, str, bool], Awaitable[tuple[bytes | AsyncIterator[bytes] | None, Kept | None]]
]


class EdgeForwards(asyncio.Protocol):
    """One connection from the edge; ``answer`` works out each request."""

    def __init__(
        self, answer: Answer, pending: set[asyncio.Task[None]], log: logging.Logger
    ) -> None:
        self.answer = answer
        self.transport: asyncio.Transport | None = None
        self.pending = pending  # every connection's, together
        self.log = log
        self._buffer = bytearray()
        self._writable = asyncio.Event()  # clear while the edge lags behind
        self._writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._writable.set()  # what waits for room finds the connection gone

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= 4:
            size = int.from_bytes(buffer[:4], "big")
            if size > MAX_EDGE_MESSAGE:  # not the edge's: nothing sensible follows
                if self.transport is not None:
                    self.transport.close()
                buffer.clear()
                return
            if len(buffer) < 4 + size:
                return
            message = bytes(buffer[4 : 4 + size])
            del buffer[: 4 + size]
            self._received(message)

    def _received(self, message: bytes) -> None:
        if len(message) < 6 or len(message) < 6 + message[5]:
            return  # not the edge's: nothing to answer to
        if len(self.pending) >= MAX_PENDING:
            self._send(message[:4], 0, b"", b"")  # the edge stops waiting for it
            return
        task = asyncio.ensure_future(self._reply(message))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _reply(self, message: bytes) -> None:
        asker_end = 6 + message[5]
        peer = message[6:asker_end].decode("ascii", "replace")
        request = message[asker_end:]
        keep_ms, about = 0, b""
        try:
            out, kept = await self.answer(request, peer, bool(message[4] & 1))
            if kept is not None:
                keep_ms = int(min(kept.ttl, MAX_KEEP) * 1000)
                about = b"" if kept.about is None else kept.about.encode()
            if out is not None and not isinstance(out, bytes):
                out = await self._parts(message[:4], out)
        except Exception:  # a bug must cost one answer, never the connection
            self.log.exception("no answer for a request from %s", peer)
            out, keep_ms, about = None, 0, b""
        if len(about) > 0xFFFF:
            keep_ms, about = 0, b""
        self._send(message[:4], keep_ms, about, out or b"")

    async def _parts(self, ident: bytes, messages: AsyncIterator[bytes]) -> bytes | None:
        """Send every message but the last as a part, each once the connection has room
        for it; the last, to be sent as the answer (None: the connection is gone)."""
        last = None
        try:
            async for message in messages:
                if last is not None:
                    await self._writable.wait()
                    if self.transport is None:
                        return None
                    self._send(ident, PART, b"", last)
                last = message
        finally:
            close = getattr(messages, "aclose", None)
            if close is not None:
                await close()
        return last

    def _send(self, ident: bytes, keep_ms: int, about: bytes, answer: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        size = 10 + len(about) + len(answer)
        transport.write(
            b"".join(
                (
                    size.to_bytes(4, "big"),
                    ident,
                    keep_ms.to_bytes(4, "big"),
                    len(about).to_bytes(2, "big"),
                    about,
                    answer,
                )
            )
        )
