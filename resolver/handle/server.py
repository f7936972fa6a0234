"""The Handle face's sockets: UDP and TCP on one address, port 2641 by convention
(RFC 3652 §2.1).

Over TCP each message is an envelope and ``MessageLength`` bytes (§2.2.1); the CNRI
client sends one request a connection, but a connection may carry several, answered
in order, and is closed when idle for ``IDLE`` seconds, on an envelope no request can
have, or when ``MAX_TCP`` connections are open already. An answer of several messages
(a list of handles, §2.2.2.3 CN) is made a message at a time, each once the peer has
taken the ones before; over UDP it is refused (ask over TCP). Over UDP a request is one
datagram and an answer at most ``MAX_UDP_PACKETS`` packets of 512 bytes, which the
client puts together by their sequence numbers (§2.2.5); a longer answer is an error
that says to ask over TCP. At most ``MAX_PENDING`` UDP requests wait at once; more are
dropped (the client retries).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from dataclasses import replace
from typing import Any, cast

from resolver.edge_forwards import EdgeForwards
from resolver.handle.listing import Part
from resolver.handle.respond import HandleFace, Reply
from resolver.sockets import Connections, Datagrams
from resolver.wirecache import Kept
from schemas.handle_wire import (
    ENVELOPE_SIZE,
    MAX_MESSAGE_LENGTH,
    UDP_PACKET_SIZE,
    Envelope,
    ErrorResponse,
    HandleWireError,
    Message,
    ResponseCode,
    decode_request,
    encode_error_reply,
    encode_response,
    reply_envelope,
    tcp_message,
    udp_packets,
)

IDLE = 10.0  # seconds a TCP connection may sit between requests
MAX_TCP = 2000
MAX_TCP_PER_PEER = 200  # connections one address may hold
MAX_PENDING = 2000
# what one connection may hold unread while its request is worked out: a request and
# the next one, whole
MAX_BUFFERED = 2 * (ENVELOPE_SIZE + MAX_MESSAGE_LENGTH)
# What one UDP request may make this node send: 8 packets of 512 bytes, about 50 times
# the request (a UDP source is forgeable); a longer answer goes over TCP.
MAX_UDP_PACKETS = 8
log = logging.getLogger("idres.handle")


class Exchange:
    """One request's bytes in, the answer's out: the codec around ``face``, with no
    socket (the server's transports, or a fuzzer, hand it the bytes)."""

    def __init__(self, face: HandleFace) -> None:
        self.face = face
        self.refused = 0  # requests answered with a protocol error

    async def answer_datagram(self, data: bytes, peer: str) -> list[bytes]:
        """The packets answering one UDP request (none: nothing to answer, as for a
        datagram too short to hold an envelope)."""
        try:
            envelope = Envelope.decode(data)
        except HandleWireError:
            return []  # no request id to answer with: the asker could not match it
        payload = data[ENVELOPE_SIZE:]
        if envelope.sequence != 0 or envelope.message_length != len(payload):
            # a request over several datagrams, or one that lies about its length
            error = HandleWireError(
                ResponseCode.PROTOCOL_ERROR,
                f"a UDP request is one datagram: this one says {envelope.message_length} "
                f"bytes (packet {envelope.sequence}) and carries {len(payload)}; "
                "send longer requests over TCP",
                field="message_length",
                offset=16,
            )
            framing, reply = reply_envelope(envelope), self._refuse(envelope, error)
        else:
            framing, reply, more = await self.answer(envelope, data, peer)
            if more is not None:  # an answer of several messages: TCP only
                await more.aclose()
                request = decode_request(envelope, payload)  # it was answered: it decodes
                reply = self._reply(
                    request,
                    ResponseCode.OPERATION_NOT_SUPPORTED,
                    "the answer is several messages; ask over TCP",
                )
        try:
            return udp_packets(framing, reply, max_packets=MAX_UDP_PACKETS)
        except HandleWireError:
            request = decode_request(envelope, payload)  # it was answered: it decodes
            short = encode_response(
                request,
                ResponseCode.ERROR,
                ErrorResponse(
                    message=f"the answer is {len(reply)} bytes, more than "
                    f"{MAX_UDP_PACKETS} UDP packets carry; ask over TCP"
                ),
                now=int(time.time()),
            )
            return udp_packets(framing, short)

    async def answer(
        self, envelope: Envelope, message: bytes, peer: str
    ) -> tuple[Envelope, bytes, Continued | None]:
        """The envelope and payload answering one request (``message``: its envelope
        and payload), kept as sent when it may be; and the payloads of the answer's
        further messages, when it has some (a list of handles)."""
        generation = self.face.wires.generation if self.face.wires is not None else 0
        framing, out, reply, more = await self._worked_out(envelope, message, peer, fresh=False)
        if more is None and reply is not None and reply.keep is not None:
            self.face.keep(message, tcp_message(framing, out), reply, generation)
        return framing, out, more

    async def answer_for_edge(
        self, message: bytes, peer: str, fill: bool
    ) -> tuple[bytes | AsyncIterator[bytes] | None, Kept | None]:
        """The whole answer to a request the node's edge passed on (resolver/edge/
        handle.go), its messages one by one when it has several, None when the
        connection is to be closed; and, when ``fill``, how long the edge may keep it:
        then it is read fresh (never from this process's caches, which may not have
        heard of a change the edge has)."""
        try:
            envelope = Envelope.decode(message)
        except HandleWireError:  # an envelope past the cap: the stream is lost
            return None, None
        framing, out, reply, more = await self._worked_out(envelope, message, peer, fresh=fill)
        if more is not None:
            return _framed(framing, out, more), None
        kept = None
        if fill and reply is not None and reply.keep is not None:
            kept = Kept(reply.keep, reply.about)
        return tcp_message(framing, out), kept

    async def _worked_out(
        self, envelope: Envelope, message: bytes, peer: str, *, fresh: bool
    ) -> tuple[Envelope, bytes, Reply | None, Continued | None]:
        """The envelope and payload answering ``message``, the face's reply when the
        request reached it, and the further messages of an answer of several."""
        framing = reply_envelope(envelope)
        payload = message[ENVELOPE_SIZE:]
        try:
            request = decode_request(envelope, payload)
        except HandleWireError as error:
            return framing, self._refuse(envelope, error), None, None
        if envelope.encrypted or envelope.compressed:
            return (
                framing,
                self._reply(
                    request,
                    ResponseCode.OPERATION_NOT_SUPPORTED,
                    "compressed and encrypted messages are not served here",
                ),
                None,
                None,
            )
        reply = await self.face.answer(request, peer=peer, fresh=fresh)
        if reply.session_id is not None:
            framing = replace(framing, session_id=reply.session_id)
        if reply.opcode is not None:
            # framed for the request challenged; the digest stays that of ``request``'s
            # bytes as received (what the client checks it against)
            request = replace(request, header=replace(request.header, opcode=reply.opcode))
        if reply.more is not None:
            out, more = await Continued.first(request, reply)
            return framing, out, reply, more
        return (
            framing,
            encode_response(request, reply.code, reply.body, now=int(time.time())),
            reply,
            None,
        )

    def _refuse(self, envelope: Envelope, error: HandleWireError) -> bytes:
        self.refused += 1
        return encode_error_reply(envelope, error, now=int(time.time()))

    def _reply(self, request: Message, code: ResponseCode, message: str) -> bytes:
        return encode_response(request, code, ErrorResponse(message=message), now=int(time.time()))


class Continued:
    """The payloads after the first of an answer of several messages, each made when
    asked for. A message is flagged CN when another follows it (RFC 3652 §2.2.2.3),
    so each part is read before the one before it is encoded."""

    def __init__(
        self, request: Message, part: Part | None, more: AsyncGenerator[Part, None]
    ) -> None:
        self.request = request
        self.part = part
        self.more = more

    def __aiter__(self) -> Continued:
        return self

    async def __anext__(self) -> bytes:
        part = self.part
        if part is None:
            raise StopAsyncIteration
        self.part = await anext(self.more, None)
        code, body = part
        now = int(time.time())
        return encode_response(self.request, code, body, now=now, continuous=self.part is not None)

    async def aclose(self) -> None:
        self.part = None
        await self.more.aclose()

    @classmethod
    async def first(cls, request: Message, reply: Reply) -> tuple[bytes, Continued | None]:
        """The first payload of ``reply`` (whose ``more`` is set), and the rest."""
        assert reply.more is not None
        rest = cls(request, await anext(reply.more, None), reply.more)
        continuous = rest.part is not None
        now = int(time.time())
        out = encode_response(request, reply.code, reply.body, now=now, continuous=continuous)
        if not continuous:
            await rest.aclose()
            return out, None
        return out, rest


async def _framed(framing: Envelope, first: bytes, more: Continued) -> AsyncIterator[bytes]:
    """The messages of an answer of several, each framed for TCP."""
    try:
        yield tcp_message(framing, first)
        async for out in more:
            yield tcp_message(framing, out)
    finally:  # the edge may stop listening halfway
        await more.aclose()


class HandleServer:
    """Serves ``face`` on a UDP and a TCP socket (``resolver.sockets.bind``)."""

    def __init__(self, face: HandleFace, sockets: tuple[socket.socket, socket.socket]) -> None:
        self.face = face
        self.sockets = sockets
        self._udp: asyncio.DatagramTransport | None = None
        self._protocol: Datagrams | None = None
        self._tcp: asyncio.Server | None = None  # its own, or the edge's connections
        self.connections = Connections(max_open=MAX_TCP, max_per_peer=MAX_TCP_PER_PEER, log=log)
        self._tasks: set[asyncio.Task[None]] = set()
        self.exchange = Exchange(face)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sockets[1].getsockname()[:2]
        return host, port

    async def start(self) -> None:
        udp, tcp = self.sockets
        loop = asyncio.get_running_loop()
        if tcp.family == socket.AF_UNIX:  # the edge answers TCP; it asks us the rest
            pending: set[asyncio.Task[None]] = set()
            exchange = self.exchange
            self._tcp = await loop.create_unix_server(
                lambda: EdgeForwards(exchange.answer_for_edge, pending, log), sock=tcp
            )
        else:
            self._tcp = await loop.create_server(lambda: _Stream(self), sock=tcp)
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: Datagrams(
                kept=self._kept_datagram,
                answer=self.exchange.answer_datagram,
                max_pending=MAX_PENDING,
                log=log,
            ),
            sock=udp,
        )
        self._udp, self._protocol = transport, protocol

    def _kept_datagram(self, data: bytes) -> bytes | None:
        kept = self.face.kept(data)
        return kept if kept is not None and len(kept) <= UDP_PACKET_SIZE else None

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            self.connections.close()
            await self._tcp.wait_closed()

    def metrics_lines(self) -> list[str]:
        """Prometheus series of this process's Handle face."""
        node = f'node="{self.face.name}"'
        dropped = self._protocol.dropped if self._protocol is not None else 0
        wires = self.face.wires
        return [
            "# HELP idres_handle_requests_total Handle protocol requests this process answered.",
            "# TYPE idres_handle_requests_total counter",
            f"idres_handle_requests_total{{{node}}} {self.face.answered}",
            "# HELP idres_handle_kept_answers_total Requests answered from the kept answers.",
            "# TYPE idres_handle_kept_answers_total counter",
            f"idres_handle_kept_answers_total{{{node}}} {wires.hits if wires else 0}",
            "# HELP idres_handle_kept_entries Answers kept as they went out.",
            "# TYPE idres_handle_kept_entries gauge",
            f"idres_handle_kept_entries{{{node}}} {len(wires) if wires else 0}",
            "# HELP idres_handle_refused_total Handle requests answered with a protocol error.",
            "# TYPE idres_handle_refused_total counter",
            f"idres_handle_refused_total{{{node}}} {self.exchange.refused}",
            "# HELP idres_handle_dropped_total UDP requests dropped: too many were waiting.",
            "# TYPE idres_handle_dropped_total counter",
            f"idres_handle_dropped_total{{{node}}} {dropped}",
        ]


class _Stream(asyncio.Protocol):
    """One TCP connection: envelopes and messages read as they arrive; a request with a
    kept answer is answered at once (no task), others in order, one task at a time;
    idle for ``IDLE`` seconds, or past what a request may be, it is closed."""

    def __init__(self, server: HandleServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self.buffer = bytearray()
        self.busy = False  # a request is being worked out: the next ones wait for it
        self.idle: asyncio.TimerHandle | None = None
        self.writable: asyncio.Future[None] | None = None  # set while the peer lags

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.peer = self.server.connections.admit(transport)
        if self.peer is not None:
            self._wait()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.resume_writing()
        if self.transport is not None and self.peer is not None:
            self.server.connections.release(self.transport, self.peer)

    def pause_writing(self) -> None:
        if self.writable is None:
            self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > MAX_BUFFERED:  # a client that will not wait its turn
            self._close()
        elif not self.busy:
            self._next()

    def _next(self) -> None:
        """Answer the whole requests buffered, in order, until one needs a task."""
        buffer, transport = self.buffer, self.transport
        assert transport is not None
        while len(buffer) >= ENVELOPE_SIZE:
            length = int.from_bytes(buffer[16:20], "big")
            if length > MAX_MESSAGE_LENGTH:  # no request is that long: the stream is lost
                self._close()
                return
            if len(buffer) < ENVELOPE_SIZE + length:
                break
            message = bytes(buffer[: ENVELOPE_SIZE + length])
            del buffer[: ENVELOPE_SIZE + length]
            kept = self.server.face.kept(message)
            if kept is not None:
                transport.write(kept)
                continue
            self.busy = True
            self.server.spawn(self._answer(message))
            return
        self._wait()

    async def _answer(self, message: bytes) -> None:
        try:
            envelope = Envelope.decode(message)
            framing, out, more = await self.server.exchange.answer(
                envelope, message, self.peer or ""
            )
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(tcp_message(framing, out))
            if more is not None:
                await self._write_all(framing, more)
        except HandleWireError:  # an envelope past the cap: the stream is lost
            self._close()
            return
        except Exception:  # a bug must cost one connection, never the server
            log.exception("handle: a TCP connection from %s failed", self.peer)
            self._close()
            return
        self.busy = False
        if self.transport is not None and not self.transport.is_closing():
            self._next()

    async def _write_all(self, framing: Envelope, more: Continued) -> None:
        """The further messages of an answer, each made once the peer has taken what
        was written before (a long list is never held whole); a peer that takes
        nothing for ``IDLE`` seconds loses the connection."""
        try:
            async for out in more:
                if self.writable is not None:
                    await self.writable
                if self.transport is None or self.transport.is_closing():
                    break
                self.transport.write(tcp_message(framing, out))
                self._wait()
        finally:
            await more.aclose()

    def _wait(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(IDLE, self._close)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
