"""The resolution hot path: a lean HTTP/1.1 listener beside a node's aiohttp app.

It answers one request, ``GET /api/handles/{identifier}`` with no query, through the
node's own Resolver: a cached answer is written as a pre-built status line and
headers plus the cached bytes; a miss is resolved as the API would. Everything else
is refused with a pointer to the API port. httptools parses; nothing is logged per
request.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from typing import cast
from urllib.parse import unquote_to_bytes

import httptools
import orjson

from registry.httpio import dump, error_body
from resolver.service import Answer, Resolver, decorate
from schemas.errors import IdresError, InvalidIdentifier
from schemas.identifiers import Identifier, parse

log = logging.getLogger("idres.fastpath")
PREFIX = b"/api/handles/"
MAX_PENDING = 64  # answers owed on one connection; reading pauses at half of it
MAX_URL = 8192  # bytes of request target
# A request must arrive whole within HEADER_TIMEOUT of its first byte, and a
# connection owing nothing and sending nothing is closed after IDLE_TIMEOUT: a client
# that dribbles headers or just holds the socket (slow-loris) costs a timer, not a slot.
HEADER_TIMEOUT = 10.0
IDLE_TIMEOUT = 30.0
_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    504: b"Gateway Timeout",
    508: b"Loop Detected",
}


def head(
    status: int, length: int, *, keep_alive: bool, source: bytes = b"", stale: bool = False
) -> bytes:
    """Status line and headers; the caller appends ``length`` bytes of JSON."""
    reason = _REASONS.get(status, b"Status")
    out = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
        status,
        reason,
        length,
    )
    if source:
        out += b"Idres-Source: " + source + b"\r\n"
    if stale:
        out += b"Idres-Stale: true\r\n"
    if not keep_alive:
        out += b"Connection: close\r\n"
    return out + b"\r\n"


def error(status: int, message: str, *, keep_alive: bool, code: int = 2) -> bytes:
    body = dump({"responseCode": code, "message": message})
    return head(status, len(body), keep_alive=keep_alive) + body


class _UrlTooLong(Exception):
    pass


class FastProtocol(asyncio.Protocol):
    """One connection. Answers go out in request order, even when pipelined.

    Bounded per connection: at most MAX_PENDING answers owed (past that the
    connection gets a 503 and closes), a URL of at most MAX_URL bytes, and no reading
    while the client is not reading what was written (transport write flow control).
    """

    def __init__(
        self,
        resolver: Resolver,
        *,
        header_timeout: float = HEADER_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.resolver = resolver
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.timer: asyncio.TimerHandle | None = None
        self.in_request = False  # between the first byte of a request and its end
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = bytearray()
        self.upgrade = False
        self.pending: deque[asyncio.Future[bytes]] = deque()
        self.closing = False  # no more requests are read; close after the last answer
        self.write_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport has the Transport methods without the base class
        self.transport = cast(asyncio.Transport, transport)
        self._arm(self.idle_timeout)

    def _arm(self, seconds: float | None) -> None:
        """One deadline per connection: for the request being read, or for idling."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer = None
        if seconds is not None and self.transport is not None:
            self.timer = asyncio.get_running_loop().call_later(seconds, self._expired)

    def _expired(self) -> None:
        self.timer = None
        if self.transport is None:
            return
        if self.in_request:  # RFC 9110 §15.5.9: tell it why, then close
            self.in_request = False
            self._finish(error(408, "request not received in time", keep_alive=False))
            if self.pending and self.transport is not None:  # answers still owed first
                self._arm(self.header_timeout)
        elif not self.pending:
            self.closing = True
            if self.transport.get_write_buffer_size():
                self.transport.abort()  # a client that reads nothing: close() would wait on it
            else:
                self.transport.close()

    def _idle_if_done(self) -> None:
        if not self.pending and not self.in_request and not self.closing:
            self._arm(self.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._arm(None)
        for future in self.pending:
            future.cancel()  # only this connection's waits: shared lookups run on
        self.pending.clear()
        self.transport = None

    def eof_received(self) -> bool:
        """A client that has sent everything (half-close) still gets its answers."""
        self.closing = True
        self._flush()
        return self.transport is not None  # keep the write side open until flushed

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._maybe_resume()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # the stream ended (an error, Connection: close): nothing more is read
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if not self.closing:  # the request may have been answered as it completed
                self._finish(error(400, "no protocol upgrades here", keep_alive=False))
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _UrlTooLong):
                self._finish(error(414, f"request target over {MAX_URL} bytes", keep_alive=False))
            else:  # a bug of ours, not the client's request
                log.exception("fast path failed on a request")
                self._finish(error(500, "internal server error", keep_alive=False))
        except httptools.HttpParserError as exc:
            self._finish(error(400, f"malformed HTTP request: {exc}", keep_alive=False))

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.in_request = True
        self._arm(self.header_timeout)

    def on_url(self, url: bytes) -> None:
        if len(self.url) + len(url) > MAX_URL:
            raise _UrlTooLong
        self.url += url

    def on_headers_complete(self) -> None:
        self.upgrade = self.parser.should_upgrade()

    def on_message_complete(self) -> None:
        self.in_request = False
        self._arm(None)  # until its answer is written; then the idle clock runs
        url, self.url = bytes(self.url), bytearray()
        keep_alive = self.parser.should_keep_alive()
        method = self.parser.get_method()
        if self.upgrade:
            self._finish(error(400, "no protocol upgrades here", keep_alive=False))
            return
        if len(self.pending) >= MAX_PENDING:
            self._finish(
                error(503, f"more than {MAX_PENDING} requests pipelined", keep_alive=False)
            )
            return
        if method == b"HEAD":  # a HEAD answer has no body, so none is sent (RFC 9110 §9.3.2)
            self._send(
                b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Length: 0\r\n\r\n"
            )
        elif method != b"GET":
            self._send(
                error(
                    405,
                    "this port answers GET /api/handles/{identifier}; use the "
                    "API port for anything else",
                    keep_alive=keep_alive,
                )
            )
        elif not url.startswith(PREFIX) or b"?" in url:
            self._send(
                error(
                    404,
                    "this port answers GET /api/handles/{identifier} without "
                    "a query; use the API port for anything else",
                    keep_alive=keep_alive,
                    code=100,
                )
            )
        else:
            self._lookup(url[len(PREFIX) :], keep_alive)
        if not keep_alive:
            self.closing = True
        self._idle_if_done()

    def _lookup(self, raw: bytes, keep_alive: bool) -> None:
        try:
            ident = parse(unquote_to_bytes(raw).decode("utf-8"))
        except UnicodeDecodeError:
            self._send(
                error(
                    400,
                    "identifier is not UTF-8 after percent-decoding",
                    keep_alive=keep_alive,
                    code=102,
                )
            )
            return
        except InvalidIdentifier as exc:
            body = dump(error_body(exc))
            self._send(head(400, len(body), keep_alive=keep_alive) + body)
            return
        if not ident.qualifiers:
            entry = self.resolver.cache.get(ident.canonical)
            if entry is not None:  # the hot path: no await, no objects but the bytes
                self.resolver.metrics.inc("idres_cache_hits_total")
                self._send(
                    head(entry.status, len(entry.body), keep_alive=keep_alive, source=b"cache")
                    + entry.body
                )
                return
        future = asyncio.ensure_future(self._resolve(ident, keep_alive))
        self.pending.append(future)
        future.add_done_callback(lambda _: self._flush())
        self._maybe_pause()

    async def _resolve(self, ident: Identifier, keep_alive: bool) -> bytes:
        try:
            answer = await self.resolver.resolve(ident)
            return _encode(answer, ident, keep_alive)
        except IdresError as exc:
            body = dump(error_body(exc))
            return head(exc.http_status, len(body), keep_alive=keep_alive) + body
        except Exception:
            log.exception("resolving %s failed", ident.canonical)
            return error(500, "internal server error", keep_alive=keep_alive)

    def _send(self, data: bytes) -> None:
        """An answer that is ready now: written at once when nothing is owed before it
        (the hot path), else queued behind the answers still being resolved."""
        if not self.pending and self.transport is not None and not self.closing:
            self.transport.write(data)
            if b"\r\nConnection: close\r\n" in data[:300]:
                self.closing = True
                self.transport.close()
            return
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        future.set_result(data)
        self.pending.append(future)
        self._flush()
        self._maybe_pause()

    def _flush(self) -> None:
        while self.transport is not None and self.pending and self.pending[0].done():
            future = self.pending.popleft()
            if future.cancelled():  # never skip an answer: the stream would shift
                self.transport.close()
                return
            data = future.result()
            self.transport.write(data)
            if b"\r\nConnection: close\r\n" in data[:300]:
                self.closing = True
                self.pending.clear()
                self.transport.close()
                return
        if self.transport is not None and self.closing and not self.pending:
            self.transport.close()
            return
        self._idle_if_done()
        self._maybe_resume()

    def _maybe_pause(self) -> None:
        if self.transport is not None and len(self.pending) >= MAX_PENDING // 2:
            self.transport.pause_reading()

    def _maybe_resume(self) -> None:
        if (
            self.transport is not None
            and not self.closing
            and not self.write_paused
            and len(self.pending) < MAX_PENDING // 2
        ):
            self.transport.resume_reading()

    def _finish(self, data: bytes) -> None:
        """A last answer (the stream cannot be parsed on), after those still pending."""
        self.closing = True
        if self.transport is not None:
            self.transport.pause_reading()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        future.set_result(data)
        self.pending.append(future)
        self._flush()


def _encode(answer: Answer, ident: Identifier, keep_alive: bool) -> bytes:
    body = answer.body
    if ident.qualifiers or answer.stale:
        body = dump(decorate(orjson.loads(body), ident, stale=answer.stale))
    return (
        head(
            answer.status,
            len(body),
            keep_alive=keep_alive,
            source=answer.source.encode(),
            stale=answer.stale,
        )
        + body
    )


async def serve_fast(
    resolver: Resolver,
    sock: socket.socket,
    *,
    header_timeout: float = HEADER_TIMEOUT,
    idle_timeout: float = IDLE_TIMEOUT,
) -> asyncio.Server:
    """Start the listener on an already bound socket."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: FastProtocol(resolver, header_timeout=header_timeout, idle_timeout=idle_timeout),
        sock=sock,
    )
