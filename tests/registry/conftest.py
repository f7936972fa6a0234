"""A registry node on a loopback port, over a fresh real PostgreSQL database per test."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest_asyncio
from aiohttp import web

from registry import httpsig
from registry.api import RegistryConfig, create_app
from registry.client import RegistryClient
from registry.service import bootstrap
from registry.store import PostgresStore
from schemas.identifiers.prefix import delegated_prefix

SERVED = ("88.100", "gs1:690")
ROOT_KEY_ID = "300:0.NA/node.admin"


@dataclass
class Node:
    url: str
    store: PostgresStore
    pool: asyncpg.Pool
    admin: httpsig.PrivateKey
    config: RegistryConfig

    def client(
        self, key: httpsig.PrivateKey | None = None, key_id: str | None = None
    ) -> RegistryClient:
        return RegistryClient(self.url, key=key, key_id=key_id)

    def admin_client(self) -> RegistryClient:
        return self.client(self.admin, ROOT_KEY_ID)


@pytest_asyncio.fixture
async def node(pool: asyncpg.Pool) -> AsyncIterator[Node]:
    async with serving(pool, SERVED) as served:
        yield served


@pytest_asyncio.fixture
async def bid_node(pool: asyncpg.Pool) -> AsyncIterator[Node]:
    """A node that holds sub-chain ab12's DIDs (did:bid:ab12:...)."""
    async with serving(pool, ("bid:ab12",)) as served:
        yield served


@pytest_asyncio.fixture
async def main_chain_node(pool: asyncpg.Pool) -> AsyncIterator[Node]:
    """A node that holds the did:bid main chain (``bid:``, DIDs without a sub-chain
    code), as the super node of ``idres up`` does."""
    async with serving(pool, ("bid:",)) as served:
        yield served


@contextlib.asynccontextmanager
async def serving(pool: asyncpg.Pool, prefixes: tuple[str, ...]) -> AsyncIterator[Node]:
    store = PostgresStore(pool)
    admin = httpsig.generate_key()
    served = tuple(delegated_prefix(p) for p in prefixes)
    await bootstrap(store, served, httpsig.public_key_der(admin), now=int(time.time()))
    config = RegistryConfig(served=served, max_body_bytes=256 * 1024, max_batch=5000)
    runner = web.AppRunner(create_app(store, config), access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    host, port = sock.getsockname()
    try:
        yield Node(url=f"http://{host}:{port}", store=store, pool=pool, admin=admin, config=config)
    finally:
        await runner.cleanup()


async def delegate(node: Node, prefix: str) -> tuple[httpsig.PrivateKey, str]:
    """A new enterprise key that owns ``prefix``, delegated by the node admin."""
    key = httpsig.generate_key()
    async with node.admin_client() as admin:
        reply = await admin.delegate(prefix, httpsig.public_key_der(key))
    assert reply.status == 201, reply.body
    return key, f"300:0.NA/{prefix}"


async def add_limited_key(
    node: Node, owner: tuple[httpsig.PrivateKey, str], prefix: str, permissions: str
) -> tuple[httpsig.PrivateKey, str]:
    """The prefix owner adds a second key (index 301) to ``0.NA/prefix`` with only
    ``permissions`` (the 12-character HS_ADMIN form); returns that key and its id."""
    import base64

    key = httpsig.generate_key()
    der = base64.b64encode(httpsig.public_key_der(key)).decode()
    handle = f"0.NA/{prefix}"
    async with node.client(*owner) as c:
        record = (await c.get(handle)).body["values"]
        record += [
            {"index": 301, "type": "HS_PUBKEY", "data": {"format": "key", "value": der}},
            {
                "index": 101,
                "type": "HS_ADMIN",
                "data": {
                    "format": "admin",
                    "value": {"handle": handle, "index": 301, "permissions": permissions},
                },
            },
        ]
        assert (await c.put(handle, record)).status == 200
    return key, f"301:{handle}"
