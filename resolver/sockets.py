"""The sockets of a node's other faces (DNS, the Handle protocol): bound before the
workers fork, which share them, and what reads their datagrams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import cast

UDP_BUFFER = 4 << 20  # bytes


def bind(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a listening TCP socket on ``host``:``port`` (0: one the kernel picks for
    both); bound before the workers fork, which share them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    tcp = socket.socket(family, socket.SOCK_STREAM)
    udp = socket.socket(family, socket.SOCK_DGRAM)
    try:
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((host, port))
        tcp.listen(1024)
        udp.bind((host, tcp.getsockname()[1]))
    except OSError:
        tcp.close()
        udp.close()
        raise
    # a burst waits in the kernel instead of being dropped at its default 208 KiB (the
    # edge's DNS socket asks the same; the kernel caps it at net.core.rmem_max)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_BUFFER)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UDP_BUFFER)
    tcp.setblocking(False)
    udp.setblocking(False)
    return udp, tcp


class Datagrams(asyncio.DatagramProtocol):
    """A UDP socket's requests: answered at once from what ``kept`` holds (no task, no
    parsing), else each by a task running ``answer``, at most ``max_pending`` at a time;
    more are dropped, as a loaded server drops them (the asker retries)."""

    def __init__(
        self,
        *,
        kept: Callable[[bytes], bytes | None],
        answer: Callable[[bytes, str], Awaitable[Sequence[bytes]]],
        max_pending: int,
        log: logging.Logger,
    ) -> None:
        self.kept = kept
        self.answer = answer
        self.max_pending = max_pending
        self.log = log
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: set[asyncio.Task[None]] = set()
        self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        kept = self.kept(data)
        if kept is not None:  # the answer as it went out before, under this request's id
            if self.transport is not None:
                self.transport.sendto(kept, addr)
            return
        if len(self.pending) >= self.max_pending:
            self.dropped += 1
            return
        task = asyncio.ensure_future(self._reply(data, addr))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _reply(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            packets = await self.answer(data, addr[0])
        except Exception:  # a bug must cost one answer, never the socket
            self.log.exception("no answer for a datagram from %s", addr[0])
            packets = ()
        out = self.transport
        if out is not None and not out.is_closing():
            for packet in packets:
                out.sendto(packet, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable from an asker
        pass


class Connections:
    """A face's TCP connections: at most ``max_open`` at once and ``max_per_peer`` from
    one address, so that no one client takes every connection (RFC 7766 §6.2.2)."""

    def __init__(self, *, max_open: int, max_per_peer: int, log: logging.Logger) -> None:
        self.max_open = max_open
        self.max_per_peer = max_per_peer
        self.log = log
        self.open: set[asyncio.BaseTransport] = set()
        self._per_peer: dict[str, int] = {}

    def admit(self, transport: asyncio.BaseTransport) -> str | None:
        """The peer address of a new connection, counted until ``release``; None when
        it is one too many (it is closed at once)."""
        peer = str((transport.get_extra_info("peername") or ("",))[0])
        if len(self.open) >= self.max_open or self._per_peer.get(peer, 0) >= self.max_per_peer:
            transport.close()
            return None
        self.open.add(transport)
        self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        return peer

    def release(self, transport: asyncio.BaseTransport, peer: str) -> None:
        if transport not in self.open:
            return
        self.open.discard(transport)
        left = self._per_peer.pop(peer, 1) - 1
        if left:
            self._per_peer[peer] = left

    @contextlib.asynccontextmanager
    async def held(self, writer: asyncio.StreamWriter) -> AsyncIterator[str | None]:
        """The connection's peer address while it is served (None: refused, closed at
        once); a peer that goes away or sits idle past a timeout ends it quietly, and a
        bug costs this connection, never the server."""
        peer = self.admit(writer.transport)
        if peer is None:
            yield None
            return
        try:
            yield peer
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        except Exception:
            self.log.exception("a TCP connection from %s failed", peer)
        finally:
            self.release(writer.transport, peer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def close(self) -> None:
        for transport in list(self.open):
            transport.close()
