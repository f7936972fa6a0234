"""How one node's parts fit: its store, its registry, its resolver, one aiohttp app.

``idres serve`` builds one of these per worker process; ``idres up`` builds six in
one process. Nothing here reads configuration: it is handed what it needs.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import asyncpg
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from idres.keyfiles import write_secret
from registry.api import RegistryAPI, RegistryConfig
from registry.clientcert import CLIENT_CERT, EDGE_CERT_HEADER
from registry.httpio import errors_middleware, listener_limits
from registry.store import PostgresStore
from resolver.api import DEFAULT_DIGITAL_LINK_HOST, ResolverAPI, local_answer
from resolver.batch import ReadBatcher
from resolver.budget import MAX_UPSTREAM_PER_BATCH, UPSTREAM_BUDGET, BudgetConfig
from resolver.cache import Cache, CacheConfig
from resolver.dns.names import DEFAULT_ZONE, zone_name
from resolver.dns.respond import DnsConfig, Face
from resolver.dns.server import DnsServer
from resolver.handle.admin import Admin
from resolver.handle.respond import HandleFace
from resolver.handle.server import HandleServer
from resolver.metrics import Metrics
from resolver.replies import EDGE_CLIENT, EDGE_SCHEME
from resolver.service import (
    HEARD_NEGATIVE_TTL,
    WITHHELD,
    Answer,
    Resolver,
    ResolverConfig,
    Withheld,
)
from resolver.topology import (
    Delegation,
    Directory,
    Role,
    Route,
    prefix_key,
    sign_delegation,
)
from resolver.transport import HttpTransport, NodeTransport
from schemas.identifiers import Identifier
from sync.coherence import Connect, Listener
from sync.directory import LiveDirectory
from sync.judge import followed
from sync.log import Log
from sync.service import Sync, SyncConfig

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSpec:
    """One node of the hierarchy, as the operator lays it out."""

    name: str
    role: Role
    parent: str | None
    url: str
    prefixes: tuple[str, ...]
    dns: str | None = None  # the address its DNS face answers on (glue in its parent's zone)
    handle: str | None = None  # ADDRESS:PORT of its Handle face (the referrals to it)


@dataclass(frozen=True, slots=True, kw_only=True)
class AnonymousLimits:
    """What an anonymous client may make a node do (see resolver/budget.py)."""

    client_upstream_rate: float = UPSTREAM_BUDGET.rate  # upstream lookups a second
    batch_upstream_max: int = MAX_UPSTREAM_PER_BATCH  # lookups one batch may start
    digital_link_host: str = DEFAULT_DIGITAL_LINK_HOST


def load_node_key(path: Path) -> ed25519.Ed25519PrivateKey:
    """The node's Ed25519 key (it signs delegations), made on first use."""
    if path.exists():
        key = load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise SystemExit(f"idres: {path} is not an Ed25519 private key")
        return key
    key = ed25519.Ed25519PrivateKey.generate()
    save_node_key(path, key)
    return key


def save_node_key(path: Path, key: ed25519.Ed25519PrivateKey) -> None:
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    write_secret(path, pem, replace=True)


def node_public_key(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def delegations(
    specs: list[NodeSpec], keys: dict[str, ed25519.Ed25519PrivateKey]
) -> list[Delegation]:
    """Each node's delegation, signed by its parent's key (the super node's by its own)."""
    issued = int(time.time())
    out = []
    for spec in specs:
        unsigned = Delegation(
            name=spec.name,
            role=spec.role,
            url=spec.url,
            parent=spec.parent,
            prefixes=spec.prefixes,
            public_key=node_public_key(keys[spec.name]),
            issued=issued,
            dns=spec.dns,
            handle=spec.handle,
        )
        issuer = keys[spec.parent] if spec.parent is not None else keys[spec.name]
        out.append(sign_delegation(unsigned, issuer))
    return out


@web.middleware
async def client_of_edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The client's address as the edge saw it, whether it spoke TLS to the edge, and
    the TLS client certificate it showed (the edge always sets or drops all three):
    the peer here is always the edge."""
    scheme = "https" if request.headers.get(EDGE_SCHEME) == "https" else "http"
    seen = request.clone(remote=request.headers.get(EDGE_CLIENT, "unknown"), scheme=scheme)
    cert = request.headers.get(EDGE_CERT_HEADER)
    if cert is not None and scheme == "https":
        seen[CLIENT_CERT] = cert
    return await handler(seen)


def build_app(
    *,
    name: str,
    role: Role,
    store: PostgresStore,
    directory: Callable[[], Directory],
    max_body_bytes: int,
    signature_max_age: int = 300,
    cache: CacheConfig | None = None,
    transport: NodeTransport | None = None,
    upstream_timeout: float = 2.0,
    node_key: ed25519.Ed25519PrivateKey | None = None,
    sync_log: Log | None = None,
    sync_config: SyncConfig | None = None,
    sync_here: bool = True,
    listen: Connect | None = None,
    worker_header: bool = False,
    behind_edge: bool = False,
    limits: AnonymousLimits | None = None,
    allow_seckey: bool = False,
    network: str | None = None,
) -> web.Application:
    """The node's app: registry writes for its prefixes, resolution for everything.

    With ``node_key`` the node keeps its signed chain (and, with ``sync_log``,
    publishes it, follows the chains below it and answers from their copies). The
    sync runs with the app when ``sync_here`` (``idres up``), else in a process of
    its own (``build_sync``, ``idres serve``); either way the app hears of what it
    applies through PostgreSQL (sync/coherence.py), on a connection ``listen``
    opens (default: one held from the store's pool). ``worker_header`` names the
    serving process in an ``Idres-Worker`` header of every answer aiohttp gives.
    ``behind_edge``: only the node's edge connects (a socket of the node's own), and
    the client it names in ``Idres-Client`` is the one budgets count.
    """
    if node_key is not None:
        live = LiveDirectory(directory(), trust_anchor=_anchor(directory()))
        directory = live
    me = directory().by_name[name]
    served = tuple(prefix_key(p) for p in me.prefixes)
    limits = limits or AnonymousLimits()
    app = web.Application(
        middlewares=[client_of_edge, errors_middleware] if behind_edge else [errors_middleware],
        client_max_size=max_body_bytes,
        handler_args=listener_limits(),
    )
    registry = RegistryAPI(
        store,
        RegistryConfig(
            served=served,
            delegated=lambda: directory().delegated_below(name),
            max_body_bytes=max_body_bytes,
            signature_max_age=signature_max_age,
            allow_seckey=allow_seckey,
            holder=lambda key: directory().holder_url(name, key),
            network=network,
        ),
    )
    registry.install(app, reads=False)
    metrics = Metrics(name)
    upstream = transport or HttpTransport(timeout=upstream_timeout)

    reads = ReadBatcher(store.get_many)  # concurrent lookups share one query

    async def local(ident: Identifier) -> Answer:
        return local_answer(await reads.get(ident.canonical), ident.canonical)[0]

    async def replica(ident: Identifier) -> tuple[Answer, float] | Withheld | None:
        record = await reads.get(ident.canonical)
        if record is None:
            return None
        answer, ttl = local_answer(record, ident.canonical)
        if answer.status != 200:  # not public: the node that holds it decides
            return WITHHELD
        return replace(answer, source="replica"), ttl

    mirror_of = (sync_config or SyncConfig()).mirror_of
    kept: list[tuple[Directory, frozenset[str]]] = []

    def keeps(route: Route) -> bool:
        """Whether this node keeps the chain that holds the route's identifier."""
        if route.authority is None or route.kind == "local":
            return False
        current = directory()
        if not kept or kept[0][0] is not current:  # the directory changed: work it out again
            kept[:] = [(current, frozenset(followed(current, name, mirror_of=mirror_of)))]
        return route.authority.name in kept[0][1]

    syncing = node_key is not None and sync_log is not None
    follows = syncing and (sync_config or SyncConfig()).follow
    resolver = Resolver(
        config=ResolverConfig(name=name, cache=cache or CacheConfig()),
        directory=directory,
        local=local,
        transport=upstream,
        metrics=metrics,
        replica=replica if follows else None,
        keeps=keeps,
    )
    resolver_api = ResolverAPI(
        resolver,
        registry,
        directory,
        metrics,
        role=role.value,
        digital_link_host=limits.digital_link_host,
        upstream_budget=BudgetConfig(
            rate=limits.client_upstream_rate, burst=5 * limits.client_upstream_rate
        ),
        max_upstream_per_batch=limits.batch_upstream_max,
    )
    resolver_api.install(app)

    async def close_transport(app: web.Application) -> None:
        await upstream.close()

    app.on_cleanup.append(close_transport)
    app[RESOLVER] = resolver
    app[API] = resolver_api
    app[DIRECTORY] = directory
    app[STORE] = store
    if worker_header:
        pid = str(os.getpid())

        async def name_worker(request: web.Request, response: web.StreamResponse) -> None:
            response.headers["Idres-Worker"] = pid

        app.on_response_prepare.append(name_worker)
    if node_key is not None:
        sync = Sync(
            store.pool,
            node_key,
            me=name,
            directory=live,
            log=sync_log,
            config=sync_config or SyncConfig(),
        )
        sync.install(app, name, run=sync_here)  # every worker reads the chains it keeps

        forgetters: list[Callable[[list[str] | None], None]] = []
        resolver.forgetters = forgetters

        def forget_all() -> None:  # a fresh cache: every answer held may be old
            resolver.cache = Cache(resolver.cache.config)
            for forget in forgetters:
                forget(None)

        def invalidate(keys: list[str]) -> None:
            resolver.cache.invalidate(keys)
            for forget in forgetters:
                forget(keys)

        listener = Listener(
            listen or store.pool.acquire,
            node=name,
            invalidate=invalidate,
            forget_all=forget_all,
            directory=live,
            # misses answered from memory: in the copies (HTTP), and in the node's own
            # records too (the DNS face: a name nobody registered costs no query)
            keep_known=True,
        )

        def absent(key: str) -> bool:
            known = listener.known
            return known is not None and known.absent(key)

        resolver.absent = absent

        def current(route: Route) -> bool:
            return route.authority is not None and listener.current(route.authority.name)

        resolver.current = current

        async def with_proof(ident: Identifier) -> web.Response:
            return await sync.proof_answer(ident, resolver, store)

        resolver_api.proof = with_proof
        metrics.extra.append(listener.metrics_lines)  # the sync's metrics, as it wrote them

        async def listening(app: web.Application) -> AsyncIterator[None]:
            listener.start()
            yield
            await listener.stop()

        app.cleanup_ctx.append(listening)
        app[SYNC] = sync
        app[LISTENER] = listener
    return app


def build_sync(
    *,
    name: str,
    pool: asyncpg.Pool,
    directory: Directory,
    node_key: ed25519.Ed25519PrivateKey,
    sync_log: Log | None,
    sync_config: SyncConfig,
) -> Sync:
    """A node's sync on its own, as its sync process runs it (no HTTP)."""
    live = LiveDirectory(directory, trust_anchor=_anchor(directory))
    return Sync(pool, node_key, me=name, directory=live, log=sync_log, config=sync_config)


def _anchor(directory: Directory) -> bytes:
    (root,) = (d for d in directory.by_name.values() if d.parent is None)
    return root.public_key


RESOLVER = web.AppKey("resolver", Resolver)
DIRECTORY: web.AppKey[Callable[[], Directory]] = web.AppKey("directory")
STORE = web.AppKey("store", PostgresStore)
API = web.AppKey("api", ResolverAPI)
SYNC = web.AppKey("sync", Sync)
LISTENER = web.AppKey("listener", Listener)


class _StoreZones:
    """A node's zones' content and serial, from its store (resolver.dns.transfer)."""

    def __init__(self, store: PostgresStore, chain: str) -> None:
        self.store = store
        self.chain = chain

    async def serial(self) -> int:
        return await self.store.chain_height(self.chain)

    def answers(
        self, routing_prefix: str, *, match: Literal["exact", "dotted", "digits"]
    ) -> AsyncGenerator[tuple[str, bytes], None]:
        return self.store.public_answers(routing_prefix, match=match)


def dns_server(
    app: web.Application,
    *,
    name: str,
    sockets: tuple[socket.socket, socket.socket],
    zone: str = DEFAULT_ZONE,
    notify_to: tuple[tuple[str, int], ...] = (),
    transfer_to: frozenset[str] | None = None,
) -> DnsServer:
    """The node's DNS face on ``sockets`` (``resolver.dns.server.bind``), answering from
    what the app's resolver reads; start it after the app's startup, close it before
    the app's cleanup. Its zones may be transferred by loopback and ``transfer_to``
    and the hosts of ``notify_to``, the secondaries it tells of each new block."""
    allowed = frozenset({"127.0.0.1", "::1", *(transfer_to or ()), *(h for h, _ in notify_to)})
    face = Face(
        name=name,
        directory=app[DIRECTORY],
        resolver=app[RESOLVER],
        config=DnsConfig(
            zone=zone_name(zone), negative_ttl=int(HEARD_NEGATIVE_TTL), transfer_to=allowed
        ),
        source=_StoreZones(app[STORE], name),
    )
    server = DnsServer(face, sockets, notify_to=notify_to)
    app[RESOLVER].metrics.extra.append(server.metrics_lines)
    return server


def handle_server(
    app: web.Application, *, name: str, sockets: tuple[socket.socket, socket.socket]
) -> HandleServer:
    """The node's Handle protocol face on ``sockets`` (``resolver.sockets.bind``),
    resolving as the app's resolver does and writing as its registry does; start it
    after the app's startup, close it before the app's cleanup."""
    host, port = sockets[1].getsockname()[:2]
    config = app[API].registry.config
    admin = Admin(store=app[STORE], served=config.served, delegated=config.delegated)
    face = HandleFace(
        name=name,
        directory=app[DIRECTORY],
        resolver=app[RESOLVER],
        address=(host, port),
        admin=admin,
    )
    server = HandleServer(face, sockets)
    app[RESOLVER].metrics.extra.append(server.metrics_lines)
    return server
