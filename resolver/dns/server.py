"""The DNS face's sockets: UDP and TCP on one address (RFC 1035 §4.2, RFC 7766).

Over TCP each message has a two-byte length; a connection may carry many queries,
answered in order, and is closed when idle for ``IDLE`` seconds, on a length no
message can have, or when ``MAX_TCP`` connections are open already. Over UDP at most
``MAX_PENDING`` queries wait for answers at once; more are dropped, as a loaded DNS
server drops (the asker retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Coroutine
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype

from resolver.dns.respond import Face, Transfer
from resolver.edge_forwards import EdgeForwards
from resolver.sockets import Connections, Datagrams
from resolver.wirecache import HEADER, Kept
from schemas.errors import IdresError

SERIAL_EVERY = 1.0  # seconds between readings of the zones' serial
DIRECTORY_EVERY = 0.1  # seconds between looks at the directory (kept referrals)
IDLE = 10.0  # RFC 7766 §6.2.3: "on the order of seconds"
MAX_TCP = 2000
MAX_TCP_PER_PEER = 200  # connections one address may hold
MAX_PENDING = 2000
log = logging.getLogger("idres.dns")


class DnsServer:
    """Serves ``face`` on a UDP and a TCP socket (``bind``)."""

    def __init__(
        self,
        face: Face,
        sockets: tuple[socket.socket, socket.socket],
        *,
        notify_to: tuple[tuple[str, int], ...] = (),
        every: float = SERIAL_EVERY,
    ) -> None:
        self.face = face
        self.sockets = sockets
        self.notify_to = notify_to  # secondaries told of each new serial (RFC 1996)
        self.every = every
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._conns = Connections(max_open=MAX_TCP, max_per_peer=MAX_TCP_PER_PEER, log=log)
        self._tasks: set[asyncio.Task[None]] = set()
        self._protocol: Datagrams | None = None
        self._edge: asyncio.Server | None = None  # the edge's connections, behind it

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sockets[1].getsockname()[:2]
        return host, port

    async def start(self) -> None:
        udp, tcp = self.sockets
        loop = asyncio.get_running_loop()
        self._tcp = await asyncio.start_server(self._serve, sock=tcp)
        if udp.family == socket.AF_UNIX:  # the edge answers UDP; it asks us the rest
            pending: set[asyncio.Task[None]] = set()
            self._edge = await loop.create_unix_server(
                lambda: EdgeForwards(self._for_edge, pending, log), sock=udp
            )
        else:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: Datagrams(
                    kept=self.face.cached, answer=self._datagram, max_pending=MAX_PENDING, log=log
                ),
                sock=udp,
            )
            self._protocol = protocol
            self._udp = transport
        if self.face.source is not None:
            self._spawn(self._watch())

    async def _for_edge(
        self, wire: bytes, peer: str, fill: bool
    ) -> tuple[bytes | None, Kept | None]:
        return await self.face.answer_for_edge(wire, peer=peer, fill=fill)

    async def _datagram(self, data: bytes, peer: str) -> list[bytes]:
        wire = await self.face.answer(data, tcp=False, peer=peer)
        return [wire] if isinstance(wire, bytes) else []

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self) -> None:
        """Keep the node's chain height (part of the zones' serial), forget kept answers
        when the directory changes, and NOTIFY the secondaries when either changes the
        serial."""
        assert self.face.source is not None
        ticks = max(1, round(self.every / DIRECTORY_EVERY))
        tick = 0
        told: int | None = None
        while True:
            self.face.check_directory()
            if tick == 0:
                try:
                    self.face.height = await self.face.source.serial()
                except IdresError as exc:  # the database away: the height stays
                    log.warning("dns: the node's chain height is unknown for now: %s", exc)
            tick = (tick + 1) % ticks
            serial = self.face.zone_serial()
            if serial != told:
                if self.notify_to and told is not None:
                    self._spawn(
                        notify(
                            self.face.apexes(),
                            list(self.notify_to),
                            serial,
                            source=self.address[0],
                        )
                    )
                told = serial
            await asyncio.sleep(DIRECTORY_EVERY)

    def metrics_lines(self) -> list[str]:
        """Prometheus series of this process's DNS face."""
        node = f'node="{self.face.name}"'
        wires = self.face.wires
        dropped = self._protocol.dropped if self._protocol is not None else 0
        return [
            "# HELP idres_dns_queries_total DNS queries this process answered.",
            "# TYPE idres_dns_queries_total counter",
            f"idres_dns_queries_total{{{node}}} {self.face.counted}",
            "# HELP idres_dns_kept_answers_total UDP queries answered from the kept answers.",
            "# TYPE idres_dns_kept_answers_total counter",
            f"idres_dns_kept_answers_total{{{node}}} {wires.hits if wires else 0}",
            "# HELP idres_dns_kept_entries Answers kept as they went out.",
            "# TYPE idres_dns_kept_entries gauge",
            f"idres_dns_kept_entries{{{node}}} {len(wires) if wires else 0}",
            "# HELP idres_dns_dropped_total UDP queries dropped: too many were waiting.",
            "# TYPE idres_dns_dropped_total counter",
            f"idres_dns_dropped_total{{{node}}} {dropped}",
            "# HELP idres_dns_serial The zones' serial: the node's chain height and the "
            "directory's newest issue time.",
            "# TYPE idres_dns_serial gauge",
            f"idres_dns_serial{{{node}}} {self.face.zone_serial()}",
        ]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._udp is not None:
            self._udp.close()
        if self._edge is not None:
            self._edge.close()
        if self._tcp is not None:
            self._tcp.close()
            self._conns.close()
            await self._tcp.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with self._conns.held(writer) as peer:
            if peer is None:
                return
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), IDLE)
                size = int.from_bytes(head, "big")
                if size < HEADER:  # no message is that short: the stream is lost
                    break
                wire = await asyncio.wait_for(reader.readexactly(size), IDLE)
                answer = await self.face.answer(wire, tcp=True, peer=peer)
                if answer is None:
                    break
                if isinstance(answer, Transfer):
                    async with contextlib.aclosing(answer.messages) as messages:
                        async for message in messages:
                            writer.write(len(message).to_bytes(2, "big") + message)
                            await asyncio.wait_for(writer.drain(), IDLE)
                    continue
                writer.write(len(answer).to_bytes(2, "big") + answer)
                await asyncio.wait_for(writer.drain(), IDLE)


async def notify(
    apexes: list[dns.name.Name],
    targets: list[tuple[str, int]],
    serial: int,
    *,
    source: str | None = None,
    tries: int = 5,
    wait: float = 2.0,
) -> None:
    """Tell each secondary that the zones changed (RFC 1996 §3.6: retry until it
    answers, a few times), from ``source``, the address the zones are served on, which
    a secondary's ACL names."""

    async def one(apex: dns.name.Name, host: str, port: int) -> None:
        message = dns.message.make_query(apex, dns.rdatatype.SOA)
        message.flags = dns.flags.AA  # and no RD; the opcode is set after: flags hold it
        message.set_opcode(dns.opcode.NOTIFY)
        for attempt in range(tries):
            try:
                reply = await dns.asyncquery.udp(
                    message, host, port=port, timeout=wait, source=source
                )
                if reply.rcode() == dns.rcode.NOERROR:
                    return
                log.warning(
                    "dns: %s:%d refused the NOTIFY of %s: %s",
                    host,
                    port,
                    apex,
                    dns.rcode.to_text(reply.rcode()),
                )
                return  # it answered: asking again would get the same
            except (dns.exception.DNSException, OSError, TimeoutError, ValueError):
                await asyncio.sleep(min(2**attempt * 0.2, 5))
        log.warning(
            "dns: %s:%d never answered the NOTIFY of %s serial %d", host, port, apex, serial
        )

    await asyncio.gather(*(one(a, h, p) for a in apexes for h, p in targets))
