"""``idres up``: a whole network on one machine, one process, real PostgreSQL.

One super node, two backbone nodes and three sub-chain nodes, each on its own port
with its own database in one embedded PostgreSQL server; the node keys, the data and
the seeded examples stay in the data directory, so a restart keeps everything.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ed25519

from idres import edge
from idres.assembly import (
    API,
    NodeSpec,
    build_app,
    delegations,
    dns_server,
    handle_server,
    load_node_key,
)
from idres.keyfiles import write_secret
from registry import httpsig
from registry.database import create_pool, start_embedded
from registry.httpio import listener_limits
from registry.service import bootstrap
from registry.store import PostgresStore
from resolver.cache import CacheConfig
from resolver.dns.names import DEFAULT_ZONE, owner, zone_name
from resolver.dns.server import DnsServer
from resolver.front import FrontDoor, open_front
from resolver.handle.server import HandleServer
from resolver.sockets import bind
from resolver.topology import Directory, Role
from schemas.codec_json import values_from_json
from schemas.errors import IdentifierExists
from schemas.identifiers import parse
from schemas.identifiers.did import b58encode
from schemas.record import Record
from sync.kafka import KafkaLog
from sync.log import Log
from sync.memory import MemoryLog
from sync.service import SyncConfig

# (name, role, parent, port offset, prefixes)
LAYOUT: tuple[tuple[str, Role, str | None, int, tuple[str, ...]], ...] = (
    ("super", Role.SUPER, None, 0, ("bid:",)),
    # backbone-1 hands sub-chain code ab12 down to sub-b whole (the code space is flat)
    ("backbone-1", Role.BACKBONE, "super", 1, ("88", "gs1:6", "bid:ab12")),
    ("backbone-2", Role.BACKBONE, "super", 2, ("86", "oid:1.2.156", "ecode:1")),
    ("sub-a", Role.SUBCHAIN, "backbone-1", 10, ("88.100", "gs1:690")),
    ("sub-b", Role.SUBCHAIN, "backbone-1", 11, ("88.200", "bid:ab12")),
    ("sub-c", Role.SUBCHAIN, "backbone-2", 12, ("86.1000", "oid:1.2.156.3001", "ecode:1000")),
)
_DID_SUFFIX = b58encode(bytes(range(1, 23)))
# each node's DNS face, in LAYOUT's order: an address of its own, one port for all, as
# a delegation gives an address and no port
DNS_ADDRESSES = tuple(f"127.0.53.{n}" for n in range(1, len(LAYOUT) + 1))

# (node, identifier, values): one example of each scheme, where the layout puts it
SEEDS: tuple[tuple[str, str, list[dict[str, object]]], ...] = (
    (
        "sub-a",
        "88.100.1/ABC-123",
        [
            {"index": 1, "type": "URL", "data": "https://example.com/products/ABC-123"},
            {"index": 2, "type": "EMAIL", "data": "quality@example.com"},
        ],
    ),
    (
        "sub-a",
        "06901234567892",
        [
            {"index": 1, "type": "URL", "data": "https://example.com/gtin/06901234567892"},
            {"index": 2, "type": "DESC", "data": "Green tea, 500 g"},
        ],
    ),
    (
        "sub-b",
        "88.200.7/LOT-42",
        [{"index": 1, "type": "URL", "data": "https://example.com/batches/LOT-42"}],
    ),
    (
        "sub-b",
        f"did:bid:ab12:ef{_DID_SUFFIX}",
        [{"index": 1, "type": "URL", "data": "https://example.com/agents/ab12"}],
    ),
    (
        "sub-c",
        "86.1000.12/x",
        [{"index": 1, "type": "URL", "data": "https://example.com/parallel/x"}],
    ),
    (
        "sub-c",
        "1.2.156.3001.1",
        [{"index": 1, "type": "URL", "data": "https://example.com/oid/1.2.156.3001.1"}],
    ),
    (
        "sub-c",
        "ecode:10001000000000000001",
        [{"index": 1, "type": "URL", "data": "https://example.com/ecode/1000100"}],
    ),
    (
        "super",
        f"did:bid:ef{_DID_SUFFIX}",
        [{"index": 1, "type": "URL", "data": "https://example.com/main-chain/agent"}],
    ),
)


@dataclass
class Running:
    specs: list[NodeSpec]
    runners: list[web.AppRunner]
    doors: list[FrontDoor]
    pools: list[asyncpg.Pool]
    logs: list[Log]
    transport: str  # how the chains travel, for the summary
    anchor: bytes  # the super node's public key (DER)
    edges: list[edge.Front] = field(default_factory=list)
    dns: list[DnsServer] = field(default_factory=list)
    handle: list[HandleServer] = field(default_factory=list)


def _bind(host: str, port: int) -> socket.socket:
    try:
        return socket.create_server((host, port), backlog=1024)
    except OSError as exc:
        raise SystemExit(
            f"idres up: cannot listen on {host}:{port}: {exc.strerror}; "
            "is another idres up running? (--base-port moves the network)"
        ) from None


@dataclass
class Prepared:
    """What ``prepare`` made ready before the event loop: keys, PostgreSQL, sockets."""

    home: Path
    url: str
    keys: dict[str, ed25519.Ed25519PrivateKey]
    admin_der: bytes
    sockets: list[socket.socket]
    host: str
    # each node's DNS face: its address, and its UDP and TCP sockets (none: no DNS)
    dns: list[tuple[str, tuple[socket.socket, socket.socket]]] = field(default_factory=list)
    # each node's Handle face, on the same address as its DNS face (none: no Handle)
    handle: list[tuple[str, tuple[socket.socket, socket.socket]]] = field(default_factory=list)


def prepare(
    data_dir: Path,
    *,
    host: str = "127.0.0.1",
    base_port: int = 8000,
    dns_port: int = 0,
    handle_port: int = 0,
) -> Prepared:
    """The blocking part of starting: files, the embedded server, the listening sockets."""
    home = data_dir.expanduser() / "up"
    (home / "keys").mkdir(parents=True, exist_ok=True)
    url = start_embedded(home / "pg")
    keys = {name: load_node_key(home / "keys" / f"{name}.pem") for name, *_ in LAYOUT}
    admin_path = home / "keys" / "admin.pem"
    if not admin_path.exists():
        write_secret(admin_path, httpsig.private_key_pem(httpsig.generate_key()))
    admin_der = httpsig.public_key_der(httpsig.load_private_key(admin_path.read_bytes()))
    sockets = [
        _bind(host, base_port + offset) if base_port else _bind(host, 0)
        for _, _, _, offset, _ in LAYOUT
    ]
    dns = [(address, _bind_dns(address, dns_port)) for address in DNS_ADDRESSES] if dns_port else []
    handle = (
        [(address, _bind_handle(address, handle_port)) for address in DNS_ADDRESSES]
        if handle_port
        else []
    )
    return Prepared(
        home=home,
        url=url,
        keys=keys,
        admin_der=admin_der,
        sockets=sockets,
        host=host,
        dns=dns,
        handle=handle,
    )


def _bind_dns(address: str, port: int) -> tuple[socket.socket, socket.socket]:
    try:
        return bind(address, port)
    except OSError as exc:
        raise SystemExit(
            f"idres up: cannot answer DNS on {address}:{port}: {exc.strerror} "
            "(--dns-port moves it, --dns-port 0 turns it off)"
        ) from None


def _bind_handle(address: str, port: int) -> tuple[socket.socket, socket.socket]:
    try:
        return bind(address, port)
    except OSError as exc:
        raise SystemExit(
            f"idres up: cannot answer the Handle protocol on {address}:{port}: {exc.strerror} "
            "(--handle-port moves it, --handle-port 0 turns it off)"
        ) from None


async def start(prepared: Prepared, *, kafka: str | None = None) -> Running:
    url, sockets, host = prepared.url, prepared.sockets, prepared.host
    specs = [
        NodeSpec(
            name=name,
            role=role,
            parent=parent,
            prefixes=prefixes,
            url=f"http://{host}:{sock.getsockname()[1]}",
            dns=prepared.dns[i][0] if prepared.dns else None,
            handle=_where(prepared.handle[i]) if prepared.handle else None,
        )
        for i, ((name, role, parent, _, prefixes), sock) in enumerate(
            zip(LAYOUT, sockets, strict=True)
        )
    ]
    signed = delegations(specs, prepared.keys)
    directory = Directory(signed, trust_anchor=signed[0].public_key)
    # In process, one log serves every node. On Kafka each node has its own clients:
    # a consumer shared by six followers would be re-pointed by each in turn.
    shared: Log = MemoryLog()
    running = Running(
        specs=specs,
        runners=[],
        doors=[],
        pools=[],
        logs=[],
        transport=f"Kafka at {kafka}" if kafka else "the in-process log",
        anchor=signed[0].public_key,
    )
    admin = await asyncpg.connect(url)
    try:
        existing = {r["datname"] for r in await admin.fetch("SELECT datname FROM pg_database")}
        for spec in specs:
            db = _database(spec.name)
            if db not in existing:
                await admin.execute(f'CREATE DATABASE "{db}"')
    finally:
        await admin.close()
    front = edge.binary()
    for i, (spec, sock) in enumerate(zip(specs, sockets, strict=True)):
        node_url = url.replace("/postgres?", f"/{_database(spec.name)}?")
        pool = await create_pool(node_url, min_size=1, max_size=8)
        running.pools.append(pool)
        store = PostgresStore(pool)
        served = directory.kept_prefixes(spec.name)
        await bootstrap(store, served, prepared.admin_der, now=int(time.time()))
        await _seed(store, spec.name)
        if not kafka:
            # The in-process log starts empty: every block is published again, from
            # offset 0, and followers read it again from there, skipping the blocks
            # they hold (by height and hash) and applying the rest.
            async with pool.acquire() as conn:
                await conn.execute("DELETE FROM sync_published")
                await conn.execute("UPDATE sync_positions SET next_offset = 0, tip_offset = -1")
        log = KafkaLog(kafka, client_id=f"idres-up-{spec.name}") if kafka else shared
        running.logs.append(log)
        app = build_app(
            name=spec.name,
            role=spec.role,
            store=store,
            directory=lambda: directory,
            max_body_bytes=16 * 1024 * 1024,
            node_key=prepared.keys[spec.name],
            sync_log=log,
            sync_config=SyncConfig(announce=(directory.by_name[spec.name],)),
            behind_edge=front is not None,
        )
        runner = web.AppRunner(app, access_log=None, **listener_limits())
        await runner.setup()
        # one port a node: the edge (when built) answers the reads it keeps, the front
        # door the other common reads, the app the rest
        forwards = None  # where the edge passes on the DNS queries it does not hold
        handle_forwards = None  # and the Handle requests over TCP
        if front is not None:
            placed = edge.put_in_front(
                front,
                sock,
                database_url=node_url,
                name=spec.name,
                max_entries=CacheConfig().max_entries,
                dns=prepared.dns[len(running.dns)][1][0] if prepared.dns else None,
                handle=prepared.handle[i][1][1] if prepared.handle else None,
            )
            running.edges.append(placed)
            sock = placed.workers
            forwards = placed.dns
            handle_forwards = placed.handle
        door = await open_front(app[API], runner, sock, behind_edge=front is not None)
        running.doors.append(door)
        running.runners.append(runner)
        if prepared.dns:
            udp, tcp = prepared.dns[len(running.dns)][1]
            if forwards is not None:
                udp = forwards  # the edge answers UDP; the workers what it does not hold
            server = dns_server(app, name=spec.name, sockets=(udp, tcp))
            await server.start()
            running.dns.append(server)
        if prepared.handle:
            udp, tcp = prepared.handle[i][1]
            if handle_forwards is not None:
                tcp = handle_forwards  # the edge answers TCP; the workers what it does not hold
            faced = handle_server(app, name=spec.name, sockets=(udp, tcp))
            await faced.start()
            running.handle.append(faced)
    return running


def _where(bound: tuple[str, tuple[socket.socket, socket.socket]]) -> str:
    """A Handle face's ``ADDRESS:PORT``, as its delegation names it."""
    address, (_, tcp) = bound
    return f"{address}:{tcp.getsockname()[1]}"


def _database(node: str) -> str:
    return "idres_" + node.replace("-", "_")


async def _seed(store: PostgresStore, node: str) -> None:
    now = int(time.time())
    for where, handle, values in SEEDS:
        if where != node:
            continue
        record = Record(
            handle=parse(handle).canonical, values=values_from_json({"values": values}, now=now)
        )
        with contextlib.suppress(IdentifierExists):  # seeded on an earlier start
            await store.put(record, actor="seed", overwrite=False)


async def stop(running: Running) -> None:
    for placed in running.edges:
        placed.process.terminate()
    for placed in running.edges:
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(placed.process.wait, 10)
        if placed.process.returncode is None:
            placed.process.kill()
    for server in running.dns:
        await server.close()
    for faced in running.handle:
        await faced.close()
    for door in running.doors:
        door.close()
    for runner in running.runners:
        await runner.cleanup()
    for pool in running.pools:
        await pool.close()
    for placed in running.edges:
        placed.remove()  # after the doors that accepted on its socket
    for log in running.logs:
        await log.close()


def summary(running: Running, data_dir: Path) -> str:
    lines = [
        "idres up: a network of 6 nodes on this machine; records replicate up the tree "
        f"over {running.transport}"
        + ("; each node's port is its compiled edge" if running.edges else ""),
        "",
    ]
    width = max(len(s.name) for s in running.specs)
    dns_port = running.dns[0].address[1] if running.dns else None
    for spec in running.specs:
        where = f"dns {spec.dns}:{dns_port}  " if spec.dns else ""
        where += f"handle {spec.handle}  " if spec.handle else ""
        lines.append(
            f"  {spec.name:<{width}}  {spec.role.value:<8}  {spec.url:<22}  {where}"
            f"{', '.join(spec.prefixes)}"
        )
    entry = running.specs[0].url
    urls = {spec.name: spec.url for spec in running.specs}
    lines += ["", "examples (ask the super node; it finds the node that holds each):"]
    for node, handle, _ in SEEDS:
        lines.append(f"  {handle:<45} held by {node}")
    lines += [
        "",
        "try:",
        f"  .venv/bin/idres resolve 88.100.1/ABC-123 06901234567892 --server {entry}",
        f"  curl {entry}/api/handles/88.100.1/ABC-123",
        # a referral: backbone-2 keeps no copy of backbone-1's tree (asked of a node that
        # keeps one, such as the super node, recursive=false is answered from the copy)
        f"  curl '{urls['backbone-2']}/api/handles/88.200.7/LOT-42?recursive=false'",
        f"  curl {entry}/metrics",
        *(
            [
                f"  dig @{running.specs[0].dns} -p {dns_port} +short NAPTR "
                f"{_dns_name('06901234567892')}",
                f"  dig @{running.specs[3].dns} -p {dns_port} +norec URI "
                f"{_dns_name('88.100.1/ABC-123')}",
            ]
            if running.dns
            else []
        ),
        *(
            [
                "  bash deploy/handle/client.sh run resolve --udp "
                + " ".join(running.specs[0].handle.split(":"))
                + " 88.100.1/ABC-123"
            ]
            if running.specs[0].handle
            else []
        ),
        "",
        "super node key (the trust anchor for idres verify --proof): "
        + base64.b64encode(running.anchor).decode(),
        f"data: {data_dir.expanduser() / 'up'} (kept across restarts); "
        f"admin key id 300:0.NA/node.admin, key {data_dir.expanduser() / 'up/keys/admin.pem'}",
        "Ctrl-C stops the network.",
    ]
    return "\n".join(lines)


def _dns_name(identifier: str) -> str:
    name = owner(parse(identifier), zone_name(DEFAULT_ZONE))
    return name.to_text() if name is not None else identifier


async def up(prepared: Prepared, data_dir: Path, *, kafka: str | None = None) -> None:
    running = await start(prepared, kafka=kafka)
    print(summary(running, data_dir), flush=True)
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_event.set)
    try:
        await stop_event.wait()
    finally:
        print("idres up: stopping", flush=True)
        await stop(running)
