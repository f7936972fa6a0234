"""A node's front door: the one port its clients know.

Each connection starts here. ``resolver/router.py`` reads every request head and
decides; the reads it keeps (``GET /api/handles/{id}`` and its filters, ``GET
/{id}`` for browsers, Digital Link paths and DID documents) are answered here
through the node's own ``ResolverAPI``, a cached answer written straight from the
cache's bytes with no await; anything else hands the connection, with every byte not
yet answered, to the node's aiohttp application, which serves it from then on.
Answers leave in request order, pipelined or not.

Overload is refused at the door, not queued (``Shedder``): while the serving loop
runs late, or lookups stand in a queue, requests that would cost a lookup (or, while
the loop is late, a trip through aiohttp) get 503 with ``Retry-After`` at once; when
the loop runs very late cached answers are refused too. ``/metrics`` counts what was
shed.

A connection that sends half a head for HEADER_TIMEOUT gets 408 and is closed; one
that owes nothing and sends nothing for IDLE_TIMEOUT is closed: one sweep a second
for all of them, no timer per request.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import itertools
import logging
import socket
import ssl
from collections import deque
from collections.abc import Callable
from email.utils import formatdate
from typing import TYPE_CHECKING, cast
from urllib.parse import unquote_to_bytes

from aiohttp import web
from yarl import URL

from registry.httpio import query_bool, query_ints
from resolver import did, replies
from resolver.replies import Reply
from resolver.router import Kind, Read, Verdict, decide
from schemas.errors import IdresError, InvalidIdentifier
from schemas.identifiers import parse

if TYPE_CHECKING:
    from aiohttp.web_protocol import RequestHandler

    from resolver.api import ResolverAPI

log = logging.getLogger("idres.front")
MAX_KEYS = 200_000  # request targets remembered with their cache keys
MAX_PENDING = 64  # answers owed on one connection; reading pauses at half of it
HEADER_TIMEOUT = 10.0
IDLE_TIMEOUT = 30.0
# After a last answer the client may still be sending (a write's body the door refused
# unread): its bytes are read and dropped this long before the socket closes, so that a
# close with unread data (a reset) does not destroy the answer before the client reads it
# (RFC 9112 §9.6, "tear-down": half-close, then read until the client closes)
LINGER = 2.0
PROBE_EVERY = 0.005  # seconds between two looks at how late the serving loop runs
# Shedding (see Shedder): the loop's lateness past which work that costs more than a
# cached answer is refused, and past which everything is
LATE = 0.005
VERY_LATE = 0.025
STANDING = 0.1  # seconds the loop must run late before the door sheds
# A lookup (a read of this node's copies, or of the next node) that takes longer than
# this has waited in a queue: the database's, the next node's. While lookups are under
# way and none has been this quick for STANDING, new ones are refused
LOOKUP_TARGET = 0.05
RETRY_AFTER = 1
STALL_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)  # seconds
_DID = did.CONTENT_TYPE.encode()
_REASONS = {
    200: b"OK",
    302: b"Found",
    307: b"Temporary Redirect",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    408: b"Request Timeout",
    429: b"Too Many Requests",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    508: b"Loop Detected",
}


def encode(reply: Reply, *, keep_alive: bool, date: bytes = b"") -> bytes:
    """A reply on the wire, HTTP/1.1 (RFC 9112 §4, §6)."""
    out = b"HTTP/1.1 %d %s\r\n" % (reply.status, _REASONS.get(reply.status, b"Status"))
    if reply.content_type:
        out += b"Content-Type: " + reply.content_type.encode() + b"\r\n"
    out += b"Content-Length: %d\r\n" % len(reply.body)
    for name, value in reply.headers:
        raw = value.encode()
        if b"\r" in raw or b"\n" in raw:  # never split a head on a value from a record
            return encode(
                replies.page("", None, "the answer holds a value that is not valid", 502),
                keep_alive=keep_alive,
                date=date,
            )
        out += name.encode() + b": " + raw + b"\r\n"
    out += date
    if not keep_alive:
        out += b"Connection: close\r\n"
    return out + b"\r\n" + reply.body


class Shedder:
    """Whether to take on one more request, from two queues the door can see.

    Both follow CoDel (RFC 8289 §3): act on the minimum delay over an interval, not on
    a peak, so a burst passes and a standing queue does not.

    - The serving loop. The door probes it every PROBE_EVERY seconds; a probe that runs
      late means requests have waited that long in socket buffers. A loop that has not
      once been within ``late`` for ``standing`` seconds refuses work that costs more
      than a cached answer (a lookup, a trip through aiohttp); one not within
      ``very_late`` for that long refuses cached answers too.
    - The lookups. Each holds its client's connection until it lands, and a client
      with a fixed number of connections queues the rest of its requests behind it
      (where the door cannot see them). While lookups are under way and none has
      landed within ``lookup_target`` for ``standing`` seconds, new lookups are
      refused; cached answers still go out.

    The clock is passed in.
    """

    def __init__(
        self,
        *,
        late: float = LATE,
        very_late: float = VERY_LATE,
        standing: float = STANDING,
        lookup_target: float = LOOKUP_TARGET,
    ) -> None:
        self.late = late
        self.very_late = very_late
        self.standing = standing
        self.lookup_target = lookup_target
        self.on_time = 0.0  # the last probe within ``late``
        self.fairly_on_time = 0.0  # the last probe within ``very_late``
        self.worst = 0.0  # the latest probe's lateness (seconds)
        self.lookups = 0  # under way now
        self.quick_lookup = 0.0  # the last lookup within target, or with none under way

    def observe(self, lateness: float, now: float) -> None:
        self.worst = lateness
        if lateness <= self.late:
            self.on_time = now
        if lateness <= self.very_late:
            self.fairly_on_time = now

    def started(self, now: float) -> None:
        if not self.lookups:
            self.quick_lookup = now  # no queue before this one
        self.lookups += 1

    def landed(self, took: float, now: float) -> None:
        self.lookups -= 1
        if took <= self.lookup_target:
            self.quick_lookup = now

    def admit(self, now: float, *, cheap: bool) -> bool:
        """By the loop alone: a cached answer (``cheap``) or a trip through aiohttp."""
        if now - self.on_time < self.standing:
            return True
        return cheap and now - self.fairly_on_time < self.standing

    def admit_lookup(self, now: float) -> bool:
        if not self.admit(now, cheap=False):
            return False
        return not self.lookups or now - self.quick_lookup < self.standing


class FrontDoor:
    """The listener of one worker: its connections, its clock, its shedding."""

    def __init__(
        self,
        api: ResolverAPI,
        handler: Callable[[], RequestHandler],
        reserved: frozenset[bytes],
        *,
        header_timeout: float = HEADER_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        shedder: Shedder | None = None,
        behind_edge: bool = False,
    ) -> None:
        self.api = api
        # only the node's edge reaches this door: its "fill" asks are believed (a
        # client's own would make every read skip the cache)
        self.behind_edge = behind_edge
        self.resolver = api.resolver
        self.metrics = api.metrics
        self.handler = handler  # a new aiohttp RequestHandler, for a connection handed over
        self.reserved = reserved
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.shedder = shedder or Shedder()
        self.connections: set[FrontProtocol] = set()
        # request targets already read, and the cache key each names: parsing an
        # identifier costs a third of a cached answer (bytes and str only, so the
        # garbage collector never walks it)
        self.keys: dict[bytes, str] = {}
        self.shed = {"cached": 0, "lookup": 0, "handoff": 0}
        self.stalls = [0] * (len(STALL_BUCKETS) + 1)  # probes by lateness (histogram)
        self.handed = 0
        self.now = 0.0  # the loop's clock at the last probe
        self.date = b""  # the Date header (RFC 9110 §6.6.1), renewed every second
        self._server: asyncio.Server | None = None
        self._probe_timer: asyncio.TimerHandle | None = None
        self._sweep_timer: asyncio.TimerHandle | None = None

    async def start(self, sock: socket.socket, *, tls: ssl.SSLContext | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.now = loop.time()
        self.shedder.observe(0.0, self.now)
        self._renew_date()
        self._server = await loop.create_server(lambda: FrontProtocol(self), sock=sock, ssl=tls)
        self._probe(self.now + PROBE_EVERY)
        self._sweep()

    def close(self) -> None:
        for timer in (self._probe_timer, self._sweep_timer):
            if timer is not None:
                timer.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()

    def remember(self, target: bytes, key: str) -> str:
        if len(self.keys) >= MAX_KEYS:
            self.keys.clear()  # the hot targets come back within a few requests
        self.keys[target] = key
        return key

    def _renew_date(self) -> None:
        self.date = b"Date: " + formatdate(usegmt=True).encode() + b"\r\n"

    def _probe(self, due: float) -> None:
        loop = asyncio.get_running_loop()
        self.now = loop.time()
        lateness = max(0.0, self.now - due)
        self.shedder.observe(lateness, self.now)
        self.stalls[bisect.bisect_left(STALL_BUCKETS, lateness)] += 1
        due = self.now + PROBE_EVERY
        self._probe_timer = loop.call_at(due, self._probe, due)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        self._renew_date()
        now = loop.time()
        for conn in list(self.connections):
            conn.expire(now)
        self._sweep_timer = loop.call_later(1.0, self._sweep)

    def metrics_lines(self) -> list[str]:
        node = self.resolver.config.name
        lines = [
            "# HELP idres_shed_total Requests refused at the front door (503) while the "
            "serving loop ran late, by what they would have cost.",
            "# TYPE idres_shed_total counter",
        ]
        for what, n in sorted(self.shed.items()):
            lines.append(f'idres_shed_total{{node="{node}",cost="{what}"}} {n}')
        lines += [
            "# HELP idres_front_loop_lateness_seconds How late the serving loop ran at the "
            "front door's last probe.",
            "# TYPE idres_front_loop_lateness_seconds gauge",
            f'idres_front_loop_lateness_seconds{{node="{node}"}} {self.shedder.worst:.6f}',
            "# HELP idres_front_loop_stalls_seconds How late the serving loop ran at each "
            "probe (every 5 ms): the waits a request arriving then would have had.",
            "# TYPE idres_front_loop_stalls_seconds histogram",
            *(
                f'idres_front_loop_stalls_seconds_bucket{{node="{node}",le="{le}"}} {n}'
                for le, n in zip(
                    (*(f"{b:g}" for b in STALL_BUCKETS), "+Inf"),
                    itertools.accumulate(self.stalls),
                    strict=True,
                )
            ),
            f'idres_front_loop_stalls_seconds_count{{node="{node}"}} {sum(self.stalls)}',
            "# HELP idres_front_connections Connections the front door holds now.",
            "# TYPE idres_front_connections gauge",
            f'idres_front_connections{{node="{node}"}} {len(self.connections)}',
            "# HELP idres_front_handed_total Connections handed to the application.",
            "# TYPE idres_front_handed_total counter",
            f'idres_front_handed_total{{node="{node}"}} {self.handed}',
        ]
        return lines


class FrontProtocol(asyncio.Protocol):
    """One connection while the front door holds it."""

    def __init__(self, door: FrontDoor) -> None:
        self.door = door
        self.transport: asyncio.Transport | None = None
        self.buf = b""  # received, not yet taken by a request
        self.pending: deque[asyncio.Future[bytes]] = deque()
        self.closing = False  # nothing more is read; close after the last answer
        self.handing = False  # the rest of the stream goes to the application
        self.eof = False
        self.write_paused = False
        self.since = door.now  # the last sign of life: connected, a request, an answer
        self.head_since = 0.0  # when the head now in ``buf`` began (0: none)
        self.linger = False  # the last answer was sent with the client still sending
        self.lingering = 0.0  # when the lingering close began (0: not yet)

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport has the Transport methods without the base class
        self.transport = cast(asyncio.Transport, transport)
        self.door.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.door.connections.discard(self)
        for future in self.pending:
            future.cancel()  # this connection's waits only: shared lookups run on
        self.pending.clear()
        self.transport = None

    def eof_received(self) -> bool:
        """A client that has sent everything (half-close) still gets its answers."""
        self.eof = True
        if self.handing:
            if not self.pending:
                self._hand_over()
            return True
        self.closing = True
        self._flush()
        return self.transport is not None

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._maybe_resume()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.buf = self.buf + data if self.buf else data
        if self.handing:
            return
        self._serve()

    # the door's sweep
    def expire(self, now: float) -> None:
        if self.transport is None or self.handing:
            return
        if self.lingering:
            if now - self.lingering > LINGER:
                self.transport.abort()  # the answer has had its time; stop reading
            return
        if self.head_since and now - self.head_since > self.door.header_timeout:
            # RFC 9110 §15.5.9: say why, after the answers still owed
            self.head_since = 0.0
            self.buf = b""
            self._last(replies.error(_Timeout("request not received in time")))
        elif not self.pending and not self.buf and now - self.since > self.door.idle_timeout:
            self.closing = True
            if self.transport.get_write_buffer_size():
                self.transport.abort()  # a client that reads nothing: close() would wait
            else:
                self.transport.close()

    # requests
    def _serve(self) -> None:
        buf, start, door = self.buf, 0, self.door
        while not self.closing and start < len(buf):
            decision = decide(buf, start, door.reserved)
            if decision is Verdict.NEED:
                if start < len(buf) and not self.head_since:
                    self.head_since = door.now
                break
            self.head_since = 0.0
            if decision is Verdict.HANDOFF:
                self.buf = buf[start:]
                self._hand_off()
                return
            assert isinstance(decision, Read)
            start += decision.size
            self.since = door.now
            if len(self.pending) >= MAX_PENDING:
                self._last(replies.overloaded(RETRY_AFTER))
                break
            self._read(decision)
            if not decision.keep_alive:
                self.closing = True
        self.buf = buf[start:] if start < len(buf) and not self.closing else b""
        if self.closing and not self.pending and self.transport is not None:
            self._close()

    def _read(self, read: Read) -> None:
        door = self.door
        if read.kind is Kind.HANDLE and not read.query and _DID not in read.accept:
            door.metrics.inc("idres_requests_total", 'interface="rest"')
            key = door.keys.get(read.target)
            if key is None:
                try:
                    ident = parse(_text(read.target))
                except InvalidIdentifier as exc:
                    reply = replies.error(exc)
                    self._send(encode(reply, keep_alive=read.keep_alive, date=door.date))
                    return
                if not ident.qualifiers:
                    key = door.remember(read.target, ident.canonical)
            if read.fill and not (door.behind_edge and key is not None and b"%" not in read.target):
                # believed only from the node's edge (a client's own would make every
                # read skip the cache). The edge keeps answers by the target as sent:
                # percent-encoded spellings (endless for one identifier) do not fill
                # it, so they can neither make every read fresh (a database read each)
                # nor crowd its memory; they are answered here, from this cache
                read = dataclasses.replace(read, fill=False)
            if key is not None and not read.fill:
                entry = door.resolver.cache.get(key)
                if entry is not None:  # the hot path: no await, only the cache's bytes
                    if not door.shedder.admit(door.now, cheap=True):
                        self._shed("cached", read)
                        return
                    door.metrics.inc("idres_cache_hits_total")
                    self._send(
                        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\nIdres-Source: cache\r\n%s%s\r\n%s"
                        % (
                            entry.status,
                            _REASONS[entry.status],
                            len(entry.body),
                            door.date,
                            b"" if read.keep_alive else b"Connection: close\r\n",
                            entry.body,
                        )
                    )
                    return
        if not door.shedder.admit_lookup(door.now):
            self._shed("lookup", read)
            return
        future = asyncio.ensure_future(self._answer(read))
        self.pending.append(future)
        future.add_done_callback(self._landed)
        self._maybe_pause()

    async def _answer(self, read: Read) -> bytes:
        door = self.door
        loop = asyncio.get_running_loop()
        started = loop.time()
        door.shedder.started(started)
        try:
            reply = await self._reply(read)
        except IdresError as exc:
            reply = replies.error(exc)
        except Exception:
            log.exception("the front door failed on a read")
            reply = Reply(500, b'{"responseCode":2,"message":"internal server error"}')
        finally:
            now = loop.time()
            door.shedder.landed(now - started, now)
        return encode(reply, keep_alive=read.keep_alive, date=door.date)

    async def _reply(self, read: Read) -> Reply:
        api = self.door.api
        query = URL.build(query_string=read.query.decode("latin-1")).query if read.query else None
        if read.kind is Kind.PROXY:
            return await api.browse(
                read.target,
                accept=read.accept.decode("latin-1"),
                noredirect=query is not None and "noredirect" in query,
                accept_language=read.accept_language.decode("latin-1"),
                query=read.query.decode("latin-1"),
            )
        text = _text(read.target)
        if _DID in read.accept:
            api.metrics.inc("idres_requests_total", 'interface="rest"')
            return await api.did(text)
        if query is not None:  # the hot path counted its own
            api.metrics.inc("idres_requests_total", 'interface="rest"')
        ident = parse(text)
        recursive = query_bool(query, "recursive", True) if query is not None else True
        types = set(query.getall("type", [])) if query is not None else set()
        indexes = query_ints(query, "index") if query is not None else None
        if query is not None:
            query_bool(query, "publicOnly", False)  # unsigned reads see public values only
        return await api.read(
            ident,
            recursive=recursive,
            types=types,
            indexes=indexes,
            via=read.via,
            edge=read.fill and query is None,
        )

    def _shed(self, cost: str, read: Read) -> None:
        self.door.shed[cost] += 1
        self._send(
            encode(replies.overloaded(RETRY_AFTER), keep_alive=read.keep_alive, date=self.door.date)
        )

    # answers
    def _send(self, data: bytes) -> None:
        """An answer ready now: written at once when none is owed before it."""
        if not self.pending and self.transport is not None:
            self.transport.write(data)
            self.since = self.door.now
            return
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        future.set_result(data)
        self.pending.append(future)
        self._flush()
        self._maybe_pause()

    def _landed(self, future: asyncio.Future[bytes]) -> None:
        self._flush()

    def _flush(self) -> None:
        while self.transport is not None and self.pending and self.pending[0].done():
            future = self.pending.popleft()
            if future.cancelled():  # never skip an answer: the stream would shift
                self.transport.close()
                return
            self.transport.write(future.result())
            self.since = self.door.now
        if self.transport is None or self.pending:
            self._maybe_resume()
            return
        if self.handing:
            self._hand_over()
        elif self.closing:
            self._close()
        else:
            self._maybe_resume()

    def _last(self, reply: Reply) -> None:
        """A last answer after those still owed; what the client sends after it is read
        and dropped (``data_received``) until it closes or ``LINGER`` passes."""
        self.closing = True
        self.linger = True
        self._send(encode(reply, keep_alive=False, date=self.door.date))
        self._flush()

    def _close(self) -> None:
        transport = self.transport
        if transport is None:
            return
        if not self.linger or self.eof:
            transport.close()
            return
        if self.lingering:
            return
        self.lingering = self.door.now
        if transport.can_write_eof():
            transport.write_eof()  # after the answer: the client reads it to its end
        transport.resume_reading()

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

    # the application takes over
    def _hand_off(self) -> None:
        """The request at the start of ``buf`` and all after it are the application's,
        once every answer owed before it has been written."""
        if not self.door.shedder.admit(self.door.now, cheap=False):
            self.door.shed["handoff"] += 1
            self._last(replies.overloaded(RETRY_AFTER))
            return
        self.handing = True
        if self.transport is not None:
            self.transport.pause_reading()  # until the application reads
        if not self.pending:
            self._hand_over()

    def _hand_over(self) -> None:
        transport = self.transport
        if transport is None:
            return
        self.door.connections.discard(self)
        self.door.handed += 1
        self.transport = None
        handler = self.door.handler()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        rest, self.buf = self.buf, b""
        if rest:
            handler.data_received(rest)
        if self.eof:
            handler.eof_received()
        transport.resume_reading()


class _Timeout(IdresError):
    response_code = 2
    http_status = 408


def _text(target: bytes) -> str:
    try:
        return unquote_to_bytes(target).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidIdentifier(
            target.decode("latin-1"), "not UTF-8 after percent-decoding"
        ) from None


def reserved_of(app: web.Application) -> frozenset[bytes]:
    """The first path segments of the application's own routes (``api``, ``metrics``...),
    which the browser proxy's catch-all ``/{tail}`` never takes for an identifier."""
    out = set()
    for resource in app.router.resources():
        first = resource.canonical.lstrip("/").split("/", 1)[0]
        if first and not first.startswith("{"):
            out.add(first.encode())
    return frozenset(out)


async def open_front(
    api: ResolverAPI,
    runner: web.AppRunner,
    sock: socket.socket,
    *,
    header_timeout: float = HEADER_TIMEOUT,
    idle_timeout: float = IDLE_TIMEOUT,
    shedder: Shedder | None = None,
    behind_edge: bool = False,
    tls: ssl.SSLContext | None = None,
) -> FrontDoor:
    """Start a front door on an already bound socket, before ``runner``'s application
    (set up already): what the door does not answer, the application does. With
    ``tls`` the socket speaks HTTPS (the application sees ``request.secure``)."""
    server = runner.server
    if server is None:
        raise RuntimeError("set the runner up before opening its front door")
    door = FrontDoor(
        api,
        server,
        reserved_of(runner.app),
        header_timeout=header_timeout,
        idle_timeout=idle_timeout,
        shedder=shedder,
        behind_edge=behind_edge,
    )
    api.metrics.extra.append(door.metrics_lines)  # /metrics shows what was shed
    await door.start(sock, tls=tls)
    return door
