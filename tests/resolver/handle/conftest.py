"""Three real nodes with Handle protocol faces, each on its own loopback address.

super (bid:) ── backbone (88, gs1:6) ── sub (88.100, gs1:690)

Each node's delegation names its Handle face (ADDRESS:PORT), so a node that refers a
client down the tree can name the next node's HS_SITE. The nodes' admin key (``ADMIN``,
which every served prefix names) is the test-only RSA key of tests/fixtures/handle/admin,
the kind CNRI's client signs with.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ed25519

from idres.assembly import API, NodeSpec, build_app, delegations, handle_server
from registry.database import create_pool
from registry.service import NODE_ADMIN, bootstrap
from registry.store import PostgresStore
from resolver.cache import CacheConfig
from resolver.front import FrontDoor, open_front
from resolver.handle.server import HandleServer
from resolver.sockets import bind
from resolver.topology import Directory, Role
from schemas.identifiers import parse
from schemas.record import DataFormat, HandleValue, Permissions, Record
from sync.memory import MemoryLog
from sync.service import SyncConfig
from tests.conftest import with_database

ADDRESSES = {"super": "127.0.54.1", "backbone": "127.0.54.2", "sub": "127.0.54.3"}
LAYOUT = [
    ("super", Role.SUPER, None, ("bid:",)),
    ("backbone", Role.BACKBONE, "super", ("88", "gs1:6")),
    ("sub", Role.SUBCHAIN, "backbone", ("88.100", "gs1:690")),
]
LONG = "https://example.com/" + "long-path/" * 10  # 120 bytes: 40 of them need 10+ packets
# (node, identifier, [(type, data, ttl)])
SEEDS = [
    (
        "sub",
        "88.100.1/ABC-123",
        [("URL", "https://example.com/products/ABC-123", 3600), ("EMAIL", "qa@example.com", 600)],
    ),
    ("sub", "88.100.1/MANY", [(f"URL.{n}", LONG, 60) for n in range(40)]),
    ("sub", "88.100.1/SOME", [(f"URL.{n}", LONG, 60) for n in range(12)]),
    ("backbone", "88.7/LOT-1", [("URL", "https://example.com/lots/1", 86400)]),
]
ADMIN_KEYS = Path(__file__).resolve().parents[2] / "fixtures" / "handle" / "admin"
ADMIN_KEY = ADMIN_KEYS / "rsa-test-key.pem"  # the private half, for HdlProbe --key
ADMIN = f"{NODE_ADMIN.handle}:{NODE_ADMIN.index}"  # HdlProbe --admin HANDLE:INDEX
PRIVATE = "88.100.1/PRIVATE"  # one public value, one only its admins may read
SECRET = "88.100.1/SECRET"  # no public value at all


@dataclass
class HandleNet:
    addresses: dict[str, tuple[str, int]]
    urls: dict[str, str]
    servers: dict[str, HandleServer] = field(default_factory=dict)
    stores: dict[str, PostgresStore] = field(default_factory=dict)


def record(handle: str, values: list[tuple[str, str, int]]) -> Record:
    now = int(time.time())
    return Record(
        handle=parse(handle).canonical,
        values=tuple(
            HandleValue(index=i, type=t, format=DataFormat.STRING, value=v, ttl=ttl, timestamp=now)
            for i, (t, v, ttl) in enumerate(values, start=1)
        ),
    )


@pytest_asyncio.fixture
async def handle_net(pg_server_url: str, pg_template: str) -> AsyncIterator[HandleNet]:
    faces = {name: bind(ADDRESSES[name], 0) for name, *_ in LAYOUT}
    where = {n: (ADDRESSES[n], tcp.getsockname()[1]) for n, (_, tcp) in faces.items()}
    sockets = {name: socket.create_server(("127.0.0.1", 0)) for name, *_ in LAYOUT}
    urls = {n: f"http://127.0.0.1:{s.getsockname()[1]}" for n, s in sockets.items()}
    specs = [
        NodeSpec(
            name=n,
            role=r,
            parent=p,
            url=urls[n],
            prefixes=px,
            handle=f"{where[n][0]}:{where[n][1]}",
        )
        for n, r, p, px in LAYOUT
    ]
    keys = {n: ed25519.Ed25519PrivateKey.generate() for n, *_ in LAYOUT}
    signed = delegations(specs, keys)
    directory = Directory(signed, trust_anchor=signed[0].public_key)
    net = HandleNet(addresses=where, urls=urls)
    log = MemoryLog()
    admin_der = (ADMIN_KEYS / "rsa-test-key.hspub.spki.der").read_bytes()
    admin_conn = await asyncpg.connect(pg_server_url)
    databases: list[str] = []
    pools: list[asyncpg.Pool] = []
    runners: list[web.AppRunner] = []
    doors: list[FrontDoor] = []
    try:
        for name, role, _, _prefixes in LAYOUT:
            db = f"idres_hdl_{uuid.uuid4().hex[:10]}"
            await admin_conn.execute(f'CREATE DATABASE "{db}" TEMPLATE "{pg_template}"')
            databases.append(db)
            pool = await create_pool(with_database(pg_server_url, db), max_size=4)
            pools.append(pool)
            store = PostgresStore(pool)
            await bootstrap(
                store,
                directory.kept_prefixes(name),
                admin_der,
                now=int(time.time()),
            )
            for at, handle, values in SEEDS:
                if at == name:
                    await store.put(record(handle, values), actor="seed")
            if name == "sub":
                now = int(time.time())
                hidden = Permissions(public_read=False)
                await store.put(
                    Record(
                        handle=PRIVATE,
                        values=(
                            HandleValue(
                                index=1,
                                type="URL",
                                format=DataFormat.STRING,
                                value="https://example.com/open",
                                timestamp=now,
                            ),
                            HandleValue(
                                index=2,
                                type="EMAIL",
                                format=DataFormat.STRING,
                                value="secret@example.com",
                                timestamp=now,
                                permissions=hidden,
                            ),
                        ),
                    ),
                    actor="seed",
                )
                await store.put(
                    Record(
                        handle=SECRET,
                        values=(
                            HandleValue(
                                index=1,
                                type="URL",
                                format=DataFormat.STRING,
                                value="https://example.com/hidden",
                                timestamp=now,
                                permissions=hidden,
                            ),
                        ),
                    ),
                    actor="seed",
                )
            app = build_app(
                name=name,
                role=role,
                store=store,
                directory=lambda: directory,
                max_body_bytes=1 << 20,
                upstream_timeout=1.0,
                cache=CacheConfig(negative_ttl=30),
                node_key=keys[name],
                sync_log=log,
                # no copies: a node answers only its own records, so referrals show
                sync_config=SyncConfig(announce=(directory.by_name[name],), follow=False),
            )
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            runners.append(runner)
            doors.append(await open_front(app[API], runner, sockets[name]))
            server = handle_server(app, name=name, sockets=faces[name])
            await server.start()
            net.servers[name] = server
            net.stores[name] = store
        yield net
    finally:
        for server in net.servers.values():
            await server.close()
        for door in doors:
            door.close()
        for runner in runners:
            await runner.cleanup()
        for pool in pools:
            await pool.close()
        for db in databases:
            await admin_conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin_conn.close()
