"""Assemble and run one node: PostgreSQL, the store, the admin key, the HTTP API.

This is the only place that knows how the parts fit. The node binds its socket
once and forks its serving workers, which accept on it, each with its own event loop
and connection pool (all the registry's state lives in PostgreSQL), and one sync
process beside them (relay, follower, directory), which serves no request. The
workers hear what the sync process applies through PostgreSQL (sync/coherence.py).
If any of these processes dies, the node stops.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import uvloop
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from idres import edge
from idres.assembly import (
    API,
    AnonymousLimits,
    NodeSpec,
    build_app,
    build_sync,
    delegations,
    dns_server,
    handle_server,
    load_node_key,
    node_public_key,
)
from idres.config import NodeConfig
from idres.keyfiles import write_secret
from registry import httpsig
from registry.authz import Signer
from registry.database import create_pool, start_embedded
from registry.httpio import listener_limits
from registry.service import bootstrap
from registry.store import PostgresStore
from resolver.cache import CacheConfig, freeze_after_start
from resolver.front import open_front
from resolver.sockets import bind
from resolver.topology import Delegation, Directory, Role
from schemas.errors import IdresError
from schemas.identifiers import RoutingKey
from sync.audit import AuditConfig
from sync.kafka import KafkaCredentials, KafkaLog
from sync.service import SyncConfig
from sync.snapshot import SnapshotError
from sync.snapshot import load as load_snapshot

log = logging.getLogger("idres.node")
SYNC_NICE = 2  # the sync process yields a shared core to the serving processes
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def admin_public_key(config: NodeConfig) -> tuple[bytes, Path]:
    """The node admin's public key (DER), creating ``data_dir/admin.pem`` if none is set."""
    path = config.admin_key or config.data_dir.expanduser() / "admin.pem"
    if not path.exists():
        if config.admin_key is not None:
            raise SystemExit(f"idres: admin key {path} does not exist")
        write_secret(path, httpsig.private_key_pem(httpsig.generate_key()))
    pem = path.read_bytes()
    if b"PRIVATE KEY" in pem:
        return httpsig.public_key_der(httpsig.load_private_key(pem)), path
    public = load_pem_public_key(pem)
    return public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo), path


async def _bootstrap(url: str, served: tuple[RoutingKey, ...], admin_der: bytes) -> Signer:
    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        return await bootstrap(PostgresStore(pool), served, admin_der, now=int(time.time()))
    finally:
        await pool.close()


def run(config: NodeConfig) -> int:
    """Run the node until SIGINT or SIGTERM; the process's exit status.

    With a directory file, the node is the one its name designates there, and serves
    that delegation's prefixes. Alone, it is a one-node hierarchy: a super node whose
    delegation, signed with its own key (``DATA_DIR/node.pem``), holds the prefixes.
    """
    kafka_credentials(config)  # a mistake in them stops the node before it binds
    scheme = "https" if tls_context(config) is not None else "http"  # and in these
    sock = socket.create_server((config.host, config.port), backlog=1024)
    host, port = sock.getsockname()[:2]
    name, directory = _directory(config, f"{scheme}://{host}:{port}")
    me = directory.by_name[name]
    if config.mirror_of is not None:
        if config.mirror_of not in directory.by_name:
            raise SystemExit(
                f"idres serve: --mirror-of {config.mirror_of!r} is not in the directory"
            )
        if config.kafka is None:
            raise SystemExit("idres serve: --mirror-of reads the chains from Kafka: give --kafka")
        children = [d.name for d in directory.by_name.values() if d.parent == name]
        if me.prefixes or children:
            raise SystemExit(
                f"idres serve: a mirror holds no prefixes and has no nodes below it; "
                f"{name!r} has {', '.join([*me.prefixes, *children])}"
            )
    served = directory.kept_prefixes(name)
    url = config.database_url or start_embedded(config.data_dir / "pg")
    admin_der, admin_path = admin_public_key(config)
    admin_id = asyncio.run(_bootstrap(url, served, admin_der))
    node_key = load_node_key(config.data_dir.expanduser() / "node.pem")
    if node_public_key(node_key) != me.public_key:
        raise SystemExit(
            f"idres serve: {config.data_dir / 'node.pem'} is not the key the directory "
            f"gives node {name!r}; its chain could not be verified by anyone"
        )
    config = dataclasses.replace(config, name=name, prefixes=me.prefixes)
    if config.snapshot is not None:
        print(asyncio.run(_load_snapshot(url, config, directory)), flush=True)
    front = edge.binary() if config.front == "edge" else None
    if config.front == "edge" and front is None:
        print(
            f"idres: no {edge.BINARY} beside {sys.executable} (deploy/setup.sh builds it "
            "with Go); the workers' own front doors serve the port",
            file=sys.stderr,
            flush=True,
        )
    print(
        f"idres: serving {scheme}://{host}:{port} (prefixes {', '.join(config.prefixes)}; "
        + ("the compiled edge, " if front else "")
        + f"{config.workers} worker{'s' if config.workers > 1 else ''} and a sync process)",
        flush=True,
    )
    print(f"idres: admin key {admin_path}, key id {admin_id}", flush=True)
    if config.allow_seckey:
        print(
            "idres: HS_SECKEY secrets (Authorization: Basic) accepted on writes over TLS "
            "or from loopback",
            flush=True,
        )
    print(
        f"idres: chain {name} ({config.hash_alg}) "
        + (f"published to Kafka at {config.kafka}" if config.kafka else "kept locally"),
        flush=True,
    )
    dns: tuple[socket.socket, socket.socket] | None = None
    if config.dns_port is not None:
        dns_host = config.dns_host or config.host
        try:
            dns = bind(dns_host, config.dns_port)
        except OSError as exc:
            raise SystemExit(
                f"idres serve: cannot answer DNS on {dns_host}:{config.dns_port}: {exc.strerror}"
            ) from None
        print(
            f"idres: DNS on {dns_host}:{dns[1].getsockname()[1]} (UDP and TCP), "
            f"zone {config.dns_zone}",
            flush=True,
        )
    handle: tuple[socket.socket, socket.socket] | None = None
    if config.handle_port is not None:
        handle_host = config.handle_host or config.host
        try:
            handle = bind(handle_host, config.handle_port)
        except OSError as exc:
            raise SystemExit(
                f"idres serve: cannot answer the Handle protocol on "
                f"{handle_host}:{config.handle_port}: {exc.strerror}"
            ) from None
        print(
            f"idres: Handle protocol on {handle_host}:{handle[1].getsockname()[1]} (UDP and TCP)",
            flush=True,
        )
    return _supervise(sock, url, directory, config, node_key, front, Faces(dns, handle))


async def _load_snapshot(url: str, config: NodeConfig, directory: Directory) -> str:
    assert config.snapshot is not None
    assert config.name is not None
    started = time.monotonic()
    pool = await create_pool(url, min_size=1, max_size=1)
    try:
        loaded = await load_snapshot(
            pool, config.snapshot, directory, config.name, mirror_of=config.mirror_of
        )
    except (SnapshotError, OSError) as exc:
        raise SystemExit(f"idres serve: {exc}; nothing of it was loaded") from None
    finally:
        await pool.close()
    chains = ", ".join(f"{c} ({n} blocks)" for c, n in sorted(loaded.blocks.items())) or "none"
    skipped = "".join(f"; {c} not loaded: {why}" for c, why in sorted(loaded.skipped.items()))
    return (
        f"idres: snapshot {config.snapshot} of node {loaded.node}: loaded {chains}, "
        f"{len(loaded.records):,} records, in {time.monotonic() - started:.1f} s{skipped}"
    )


def _directory(config: NodeConfig, url: str) -> tuple[str, Directory]:
    if config.directory is None:
        node_key = load_node_key(config.data_dir.expanduser() / "node.pem")
        spec = NodeSpec(
            name="node", role=Role.SUPER, parent=None, url=url, prefixes=config.prefixes
        )
        signed = delegations([spec], {"node": node_key})
        return "node", Directory(signed, trust_anchor=signed[0].public_key)
    if not config.name or not config.trust_anchor:
        raise SystemExit("idres serve: --directory needs --name and --trust-anchor")
    try:
        entries = json.loads(config.directory.read_text())
        signed = [Delegation.from_json(e) for e in entries]
        anchor = base64.b64decode(config.trust_anchor, validate=True)
        directory = Directory(signed, trust_anchor=anchor)
    except (OSError, ValueError, IdresError) as exc:
        raise SystemExit(f"idres serve: directory {config.directory}: {exc}") from None
    if config.name not in directory.by_name:
        raise SystemExit(f"idres serve: {config.name!r} is not in {config.directory}")
    return config.name, directory


@dataclass(frozen=True, slots=True)
class Faces:
    """The sockets of the node's other protocols, bound before the workers fork: each a
    UDP (behind the edge, for DNS: the edge's forwards) and a listening TCP socket."""

    dns: tuple[socket.socket, socket.socket] | None = None
    handle: tuple[socket.socket, socket.socket] | None = None

    def sockets(self) -> tuple[socket.socket, ...]:
        return (*(self.dns or ()), *(self.handle or ()))


def _supervise(
    sock: socket.socket,
    url: str,
    directory: Directory,
    config: NodeConfig,
    node_key: ed25519.Ed25519PrivateKey,
    front: Path | None,
    faces: Faces,
) -> int:
    """Start the edge (with ``front``, its binary), fork the serving workers and the
    sync process; stop them all when told to or when one dies."""
    children: dict[int, str] = {}  # pid -> what it is, for the message when it dies
    behind_edge = front is not None
    placed: edge.Front | None = None
    if front is not None:
        # the edge takes the node's port; the workers accept on a socket of the node's
        placed = edge.put_in_front(
            front,
            sock,
            database_url=url,
            name=config.name or "node",
            max_entries=CacheConfig().max_entries if config.cache else 0,
            dns=faces.dns[0] if faces.dns is not None else None,
            handle=faces.handle[1] if faces.handle is not None else None,
            tls=(config.tls_cert, config.tls_key)
            if config.tls_cert is not None and config.tls_key is not None
            else None,
        )
        children[placed.process.pid] = "edge"
        sock = placed.workers
        if faces.dns is not None and placed.dns is not None:
            # the edge answers DNS over UDP; the workers hear what it does not hold
            faces = dataclasses.replace(faces, dns=(placed.dns, faces.dns[1]))
        if faces.handle is not None and placed.handle is not None:
            # and the Handle protocol over TCP (the CNRI client's connection a request)
            faces = dataclasses.replace(faces, handle=(faces.handle[0], placed.handle))

    def fork(what: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # its own loop; skip the parent's atexit (embedded server)
            status = 0
            _die_with(parent)
            try:
                uvloop.run(main())
            except BaseException:
                log.exception("%s failed", what)
                status = 1
            finally:
                sys.stdout.flush()
                os._exit(status)
        children[pid] = what

    def sync_process() -> Coroutine[Any, Any, None]:
        sock.close()  # it serves nothing: the port stays the workers'
        for held in faces.sockets():
            held.close()
        # Serving comes first: where the sync process and the serving processes (the
        # edge, a worker, the database's backends) all want the same core, the kernel
        # gives sync 655 parts against 1024 for each of them (CFS weights at nice 2).
        # Sync needs ~10% of a core at 100 writes/s; at nice 10 it fell behind whenever
        # a worker saturated the core (replication lag p99 1.5 s in `idres bench
        # --quick`), and at nice 5 (335) behind the edge and its database reads (p99
        # 2.5 s while a closed loop saturated the entry node, singles-day profile), so a
        # spike of reads slows it, and does not stop it
        os.nice(SYNC_NICE)
        return _sync(url, directory, config, node_key)

    fork("sync process", sync_process)
    for _ in range(config.workers):
        fork("worker", lambda: _worker(sock, url, directory, config, node_key, behind_edge, faces))
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    failed = False
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        what = children.pop(pid)
        if not stopping:
            failed = True
            stop(signal.SIGTERM, None)  # a worker or the sync died: the node goes, loudly
            print(f"idres: {what} {pid} exited ({status}); stopping", file=sys.stderr)
    sock.close()
    if placed is not None:
        placed.remove()
    return 1 if failed else 0


def tls_context(config: NodeConfig) -> ssl.SSLContext | None:
    """The node port's TLS (server side, TLS 1.2 or later, RFC 9325 §3.1.1), None for
    plain HTTP; a certificate that does not load stops the node, saying why."""
    if config.tls_cert is None and config.tls_key is None:
        return None
    if config.tls_cert is None or config.tls_key is None:
        raise SystemExit("idres serve: --tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise SystemExit(
            f"idres serve: cannot serve TLS with {config.tls_cert} and {config.tls_key}: {exc}"
        ) from None
    return context


def _die_with(parent: int) -> None:
    """This forked process gets SIGTERM when the node's process goes, however it goes
    (kill -9 included, which gives it no chance to stop its children): a worker or a
    sync process left alone would serve, or apply, for nobody (prctl(2),
    PR_SET_PDEATHSIG; Linux only, elsewhere nothing)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # it went before the line above took effect
        os._exit(1)


def kafka_credentials(config: NodeConfig) -> KafkaCredentials | None:
    """This node's Kafka principal from its configuration; None: PLAINTEXT."""
    if not config.kafka_user:
        return None
    try:
        return KafkaCredentials(
            username=config.kafka_user,
            password=config.kafka_password,
            mechanism=config.kafka_mechanism,
        )
    except ValueError as exc:
        raise SystemExit(f"idres serve: {exc}") from None


def _sync_config(config: NodeConfig, directory: Directory) -> SyncConfig:
    name = config.name or "node"
    return SyncConfig(
        alg=config.hash_alg,
        announce=(directory.by_name[name],),
        mirror_of=config.mirror_of,
        audit=AuditConfig(interval=config.verify_every),
    )


def _sync_log(config: NodeConfig) -> KafkaLog | None:
    name = config.name or "node"
    if not config.kafka:
        return None
    return KafkaLog(config.kafka, client_id=f"idres-{name}", credentials=kafka_credentials(config))


async def _sync(
    url: str, directory: Directory, config: NodeConfig, node_key: ed25519.Ed25519PrivateKey
) -> None:
    """The node's sync process: relay, follower, directory, and what the workers hear."""
    pool = await create_pool(url)
    sync_log = _sync_log(config)
    sync = build_sync(
        name=config.name or "node",
        pool=pool,
        directory=directory,
        node_key=node_key,
        sync_log=sync_log,
        sync_config=_sync_config(config, directory),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await sync.start()
    try:
        await stop.wait()
    finally:
        await sync.stop()
        await pool.close()
        if sync_log is not None:
            await sync_log.close()


async def _worker(
    sock: socket.socket,
    url: str,
    directory: Directory,
    config: NodeConfig,
    node_key: ed25519.Ed25519PrivateKey,
    behind_edge: bool,
    faces: Faces,
) -> None:
    """One serving worker: no sync loop runs here; it hears of the sync process's work
    on a connection of its own (sync/coherence.py). Behind the edge, its socket is the
    node's own and only the edge connects."""
    pool = await create_pool(url)
    name = config.name or "node"
    sync_log = _sync_log(config)  # never started here: it tells which chains are kept

    @contextlib.asynccontextmanager
    async def listen() -> AsyncIterator[asyncpg.Connection]:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            yield conn
        finally:
            await conn.close(timeout=2)

    app = build_app(
        node_key=node_key,
        sync_log=sync_log,
        sync_config=_sync_config(config, directory),
        sync_here=False,
        listen=listen,
        worker_header=True,
        behind_edge=behind_edge,
        name=name,
        role=directory.by_name[name].role,
        store=PostgresStore(pool),
        directory=lambda: directory,
        max_body_bytes=config.max_body_bytes,
        signature_max_age=config.signature_max_age,
        allow_seckey=config.allow_seckey,
        network=config.network,
        cache=None if config.cache else CacheConfig(max_entries=0),
        limits=AnonymousLimits(
            client_upstream_rate=config.client_upstream_rate,
            batch_upstream_max=config.batch_upstream_max,
            digital_link_host=config.digital_link_host,
        ),
    )
    runner = web.AppRunner(app, access_log=None, **listener_limits())
    await runner.setup()
    # one port: the front door answers the common reads, the app everything else
    # behind the edge, the edge speaks TLS to clients; the workers' socket is the node's
    tls = None if behind_edge else tls_context(config)
    door = await open_front(app[API], runner, sock, behind_edge=behind_edge, tls=tls)
    dns_face = None
    if faces.dns is not None:  # the workers share its sockets, as they share the port's
        dns_face = dns_server(
            app,
            name=name,
            sockets=faces.dns,
            zone=config.dns_zone,
            notify_to=config.dns_notify,
            transfer_to=frozenset(config.dns_transfer_to),
        )
        await dns_face.start()
    handle_face = None
    if faces.handle is not None:
        handle_face = handle_server(app, name=name, sockets=faces.handle)
        await handle_face.start()
    freeze_after_start()  # what start-up built is never walked by the collector again
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        if dns_face is not None:
            await dns_face.close()
        if handle_face is not None:
            await handle_face.close()
        door.close()  # before the pool its lookups use goes away
        await runner.cleanup()
        await pool.close()
        if sync_log is not None:
            await sync_log.close()
