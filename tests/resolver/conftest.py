"""A small hierarchy of real nodes on loopback ports, each with its own database.

super (bid:) ── backbone (88, 86) ── sub (88.100, gs1:690, oid:1.2.156.3001)
                                 ├── hang (88.77): accepts and never answers
                                 └── junk (88.66): answers HTTP 200 with garbage
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ed25519

from idres.assembly import API, RESOLVER, NodeSpec, build_app, delegations
from registry import httpsig
from registry.database import create_pool
from registry.service import bootstrap
from registry.store import PostgresStore
from resolver.cache import CacheConfig
from resolver.front import FrontDoor, Shedder, open_front
from resolver.service import Resolver
from resolver.topology import Directory, Role, prefix_key
from schemas.record import DataFormat, HandleValue, Record
from tests.conftest import with_database

LAYOUT = [
    ("super", Role.SUPER, None, ("bid:",)),
    ("backbone", Role.BACKBONE, "super", ("88", "86", "gs1:6", "oid:1.2.156")),
    ("sub", Role.SUBCHAIN, "backbone", ("88.100", "gs1:690", "oid:1.2.156.3001")),
    ("hang", Role.SUBCHAIN, "backbone", ("88.77",)),
    ("junk", Role.SUBCHAIN, "backbone", ("88.66",)),
    ("evil", Role.SUBCHAIN, "backbone", ("88.55",)),
]
FAKES = {"hang", "junk", "evil"}
# the network's name every node accepts in a signature's @authority (redirected writes)
NETWORK = "net.idres.test"
# what a hijacked node (or one whose traffic is intercepted) answers: valid JSON of
# the Handle shape, with script where numbers and types belong
EVIL_RECORD = (
    b'{"responseCode":1,"handle":"88.55/X","values":[{"index":"<script>alert(1)</script>",'
    b'"type":"<img src=x onerror=alert(2)>","data":{"format":"string","value":"hi"},'
    b'"ttl":"<script>alert(3)</script>"}]}'
)


@dataclass
class Net:
    urls: dict[str, str]
    stores: dict[str, PostgresStore] = field(default_factory=dict)
    runners: dict[str, web.AppRunner] = field(default_factory=dict)
    resolvers: dict[str, Resolver] = field(default_factory=dict)
    doors: dict[str, FrontDoor] = field(default_factory=dict)
    admin: ed25519.Ed25519PrivateKey | None = None


class Fake:
    """A misbehaving node: ``hang`` never answers, ``junk`` answers garbage, ``evil``
    answers a record with script in it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.handlers: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def start(self, sock: socket.socket) -> None:
        self.server = await asyncio.start_server(self._handle, sock=sock)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            await reader.readuntil(b"\r\n\r\n")
            if self.name == "junk":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!")
                await writer.drain()
            elif self.name == "evil":
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(EVIL_RECORD), EVIL_RECORD)
                )
                await writer.drain()
            else:
                await asyncio.sleep(30)  # past every timeout
        except (asyncio.CancelledError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.handlers.discard(task)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.handlers):
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()


@pytest_asyncio.fixture
async def net(pg_server_url: str, pg_template: str) -> AsyncIterator[Net]:
    sockets = {name: socket.create_server(("127.0.0.1", 0)) for name, *_ in LAYOUT}
    urls = {n: f"http://127.0.0.1:{s.getsockname()[1]}" for n, s in sockets.items()}
    specs = [NodeSpec(name=n, role=r, parent=p, url=urls[n], prefixes=px) for n, r, p, px in LAYOUT]
    keys = {n: ed25519.Ed25519PrivateKey.generate() for n, *_ in LAYOUT}
    signed = delegations(specs, keys)
    directory = Directory(signed, trust_anchor=signed[0].public_key)
    net = Net(urls=urls, admin=ed25519.Ed25519PrivateKey.generate())
    admin_conn = await asyncpg.connect(pg_server_url)
    databases: list[str] = []
    pools: list[asyncpg.Pool] = []
    fakes: list[Fake] = []
    try:
        for name, _, _, prefixes in LAYOUT:
            if name in FAKES:
                fake = Fake(name)
                await fake.start(sockets[name])
                fakes.append(fake)
                continue
            db = f"idres_net_{uuid.uuid4().hex[:10]}"
            await admin_conn.execute(f'CREATE DATABASE "{db}" TEMPLATE "{pg_template}"')
            databases.append(db)
            pool = await create_pool(with_database(pg_server_url, db), max_size=4)
            pools.append(pool)
            store = PostgresStore(pool)

            await bootstrap(
                store,
                tuple(prefix_key(p) for p in prefixes),
                httpsig.public_key_der(net.admin),
                now=int(time.time()),
            )
            app = build_app(
                name=name,
                role=Role({n: r for n, r, *_ in LAYOUT}[name]),
                store=store,
                directory=lambda: directory,
                max_body_bytes=1 << 20,
                upstream_timeout=0.5,
                cache=CacheConfig(negative_ttl=30, stale_for=600),
                network=NETWORK,
            )
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            # one port a node, as idres serve runs it: the front door, then the app
            # Here every node shares one event loop and one core: the loop's lateness
            # and the lookups' delays are the whole network's, so a busy node would make
            # its neighbours shed. These doors never do; the tests of shedding set their
            # own (test_shedder.py, test_front.py).
            net.doors[name] = await open_front(
                app[API], runner, sockets[name], shedder=Shedder(standing=math.inf)
            )
            net.stores[name], net.runners[name] = store, runner
            net.resolvers[name] = app[RESOLVER]
        yield net
    finally:
        for door in net.doors.values():
            door.close()
        for runner in net.runners.values():
            await runner.cleanup()
        for fake in fakes:
            await fake.stop()
        for pool in pools:
            await pool.close()
        for db in databases:
            await admin_conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin_conn.close()


def record(handle: str, url: str = "https://example.com/p", ttl: int = 86400) -> Record:
    """A record with one URL value."""
    return Record(
        handle=handle,
        values=(
            HandleValue(
                index=1,
                type="URL",
                format=DataFormat.STRING,
                value=url,
                ttl=ttl,
                timestamp=int(time.time()),
            ),
        ),
    )
