"""Three real nodes with DNS faces, each on its own loopback address and one port.

super (bid:) ── backbone (88, gs1:6, oid:1.2.156, bid:ab12) ── sub (88.100, gs1:690,
oid:1.2.156.3001, bid:ab12: handed down whole)

DNS delegations carry no port, so a resolver walking them asks port 53 everywhere:
the faces take 53 when this process may bind it (CI runs as root), else one free port.
"""

from __future__ import annotations

import errno
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ed25519

from idres.assembly import API, NodeSpec, build_app, delegations, dns_server
from registry import httpsig
from registry.database import create_pool
from registry.service import bootstrap
from registry.store import PostgresStore
from resolver.cache import CacheConfig
from resolver.dns.server import DnsServer
from resolver.front import FrontDoor, open_front
from resolver.sockets import bind
from resolver.topology import Directory, Role
from schemas.identifiers import parse
from schemas.identifiers.did import b58encode
from schemas.record import DataFormat, HandleValue, Record
from sync.memory import MemoryLog
from sync.service import SyncConfig
from tests.conftest import with_database

ZONE = "idres.internal."
SECONDARY, SECONDARY_PORT = "127.0.55.1", 5355  # where a Knot secondary listens, when one runs
ADDRESSES = {"super": "127.0.53.1", "backbone": "127.0.53.2", "sub": "127.0.53.3"}
LAYOUT = [
    ("super", Role.SUPER, None, ("bid:",)),
    ("backbone", Role.BACKBONE, "super", ("88", "gs1:6", "oid:1.2.156", "bid:ab12")),
    ("sub", Role.SUBCHAIN, "backbone", ("88.100", "gs1:690", "oid:1.2.156.3001", "bid:ab12")),
]
DID = "did:bid:ab12:ef" + b58encode(bytes(range(1, 23)))
MAIN_DID = "did:bid:ef" + b58encode(bytes(range(2, 24)))
# (node, identifier, [(type, data, ttl)])
SEEDS = [
    (
        "sub",
        "88.100.1/ABC-123",
        [("URL", "https://example.com/products/ABC-123", 3600), ("EMAIL", "qa@example.com", 600)],
    ),
    ("sub", "06901234567892", [("URL", "https://example.com/gtin/06901234567892", 7200)]),
    ("sub", "1.2.156.3001.1", [("URL", "https://example.com/oid/1.2.156.3001.1", 86400)]),
    ("sub", DID, [("URL", "https://example.com/agents/ab12", 300)]),
    ("backbone", "88.7/LOT-1", [("URL", "https://example.com/lots/1", 86400)]),
    ("super", MAIN_DID, [("URL", "https://example.com/main", 86400)]),
]


@dataclass
class DnsNet:
    port: int
    urls: dict[str, str]
    servers: dict[str, DnsServer] = field(default_factory=dict)
    stores: dict[str, PostgresStore] = field(default_factory=dict)


def dns_port() -> int:
    """53 when every address may bind it, else a port they all may."""
    for port in (53, *random.sample(range(20000, 60000), 50)):
        held: list[socket.socket] = []
        try:
            for host in ADDRESSES.values():
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    held.append(socket.socket(socket.AF_INET, kind))
                    # as the server will: a connection in TIME-WAIT does not hold the port
                    held[-1].setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    held[-1].bind((host, port))
            return port
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EADDRINUSE):
                raise
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no port is free on every DNS address")


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
async def dns_net(pg_server_url: str, pg_template: str) -> AsyncIterator[DnsNet]:
    port = dns_port()
    sockets = {name: socket.create_server(("127.0.0.1", 0)) for name, *_ in LAYOUT}
    urls = {n: f"http://127.0.0.1:{s.getsockname()[1]}" for n, s in sockets.items()}
    specs = [
        NodeSpec(name=n, role=r, parent=p, url=urls[n], prefixes=px, dns=ADDRESSES[n])
        for n, r, p, px in LAYOUT
    ]
    keys = {n: ed25519.Ed25519PrivateKey.generate() for n, *_ in LAYOUT}
    signed = delegations(specs, keys)
    directory = Directory(signed, trust_anchor=signed[0].public_key)
    net = DnsNet(port=port, urls=urls)
    log = MemoryLog()
    admin = ed25519.Ed25519PrivateKey.generate()
    admin_conn = await asyncpg.connect(pg_server_url)
    databases: list[str] = []
    pools: list[asyncpg.Pool] = []
    runners: list[web.AppRunner] = []
    doors: list[FrontDoor] = []
    try:
        for name, role, _, _prefixes in LAYOUT:
            db = f"idres_dns_{uuid.uuid4().hex[:10]}"
            await admin_conn.execute(f'CREATE DATABASE "{db}" TEMPLATE "{pg_template}"')
            databases.append(db)
            pool = await create_pool(with_database(pg_server_url, db), max_size=4)
            pools.append(pool)
            store = PostgresStore(pool)
            await bootstrap(
                store,
                directory.kept_prefixes(name),  # not what it handed down whole
                httpsig.public_key_der(admin),
                now=int(time.time()),
            )
            for where, handle, values in SEEDS:
                if where == name:
                    await store.put(record(handle, values), actor="seed")
            app = build_app(
                name=name,
                role=role,
                store=store,
                directory=lambda: directory,
                max_body_bytes=1 << 20,
                upstream_timeout=1.0,
                cache=CacheConfig(negative_ttl=30),
                # each node keeps its chain: its blocks are its zones' serials
                node_key=keys[name],
                sync_log=log,
                sync_config=SyncConfig(announce=(directory.by_name[name],)),
            )
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            runners.append(runner)
            doors.append(await open_front(app[API], runner, sockets[name]))
            server = dns_server(
                app,
                name=name,
                sockets=bind(ADDRESSES[name], port),
                zone=ZONE,
                notify_to=((SECONDARY, SECONDARY_PORT),) if name == "sub" else (),
            )
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
