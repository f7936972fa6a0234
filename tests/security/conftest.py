"""A registry node sized for attacks: a 10,000-operation batch fits its limits."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio
from aiohttp import web

from registry import httpsig
from registry.api import RegistryConfig, create_app
from registry.service import bootstrap
from registry.store import PostgresStore
from schemas.identifiers.prefix import parse_prefix
from tests.registry.conftest import SERVED, Node
from tests.resolver.conftest import net  # noqa: F401  (the five-node network, as a fixture)


@pytest_asyncio.fixture
async def big_node(pool: asyncpg.Pool) -> AsyncIterator[Node]:
    store = PostgresStore(pool)
    admin = httpsig.generate_key()
    served = tuple(parse_prefix(p) for p in SERVED)
    await bootstrap(store, served, httpsig.public_key_der(admin), now=int(time.time()))
    config = RegistryConfig(served=served, max_body_bytes=4 * 1024 * 1024, max_batch=10_000)
    runner = web.AppRunner(create_app(store, config), access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    host, port = sock.getsockname()
    yield Node(url=f"http://{host}:{port}", store=store, pool=pool, admin=admin, config=config)
    await runner.cleanup()
