"""Nodes for the sync tests: a small hierarchy, each node with its own database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import ed25519

from idres.assembly import NodeSpec, delegations
from registry.database import create_pool
from registry.store import PostgresStore
from resolver.topology import Directory
from sync.follow import Follower
from sync.kafka import KafkaLog
from sync.log import Log
from sync.memory import MemoryLog
from sync.relay import Relay, RelayConfig
from tests.conftest import with_database
from tests.sync.chains import LAYOUT, Node

NewPool = Callable[[], Awaitable[asyncpg.Pool]]


@pytest_asyncio.fixture
async def new_pool(pg_server_url: str, pg_template: str) -> AsyncIterator[NewPool]:
    """Make fresh migrated databases (one per node), dropped after the test."""
    made: list[tuple[str, asyncpg.Pool]] = []

    async def make() -> asyncpg.Pool:
        name = f"idres_test_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(pg_server_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
        finally:
            await admin.close()
        pool = await create_pool(with_database(pg_server_url, name), min_size=1, max_size=4)
        made.append((name, pool))
        return pool

    yield make
    admin = await asyncpg.connect(pg_server_url)
    try:
        for name, pool in made:
            await pool.close()
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest_asyncio.fixture(params=["memory", "kafka"])
async def log(request: pytest.FixtureRequest) -> AsyncIterator[Log]:
    """Each test twice: on the in-process log and on the real Kafka broker."""
    if request.param == "memory":
        the_log: Log = MemoryLog()
    else:
        the_log = KafkaLog(request.getfixturevalue("kafka_bootstrap"))
    yield the_log
    await the_log.close()


@pytest_asyncio.fixture
async def network(new_pool: NewPool, log: Log) -> dict[str, Node]:
    """super -> backbone-1 -> sub-a in this process, on ``log``."""
    # unique names: the Kafka topics of one test must not meet another's
    run = uuid.uuid4().hex[:6]
    names = {name: f"{name}-{run}" for name, *_ in LAYOUT}
    keys = {names[n]: ed25519.Ed25519PrivateKey.generate() for n, *_ in LAYOUT}
    specs = [
        NodeSpec(
            name=names[n],
            role=role,
            parent=names[p] if p else None,
            url=f"http://127.0.0.1:{9000 + i}",
            prefixes=prefixes,
        )
        for i, (n, role, p, prefixes) in enumerate(LAYOUT)
    ]
    signed = delegations(specs, keys)
    directory = Directory(signed, trust_anchor=signed[0].public_key)
    nodes = {}
    for n, *_ in LAYOUT:
        pool = await new_pool()
        name = names[n]
        nodes[n] = Node(
            name=name,
            pool=pool,
            store=PostgresStore(pool),
            relay=Relay(pool, keys[name], RelayConfig(chain=name), log=log),
            follower=Follower(pool, log, me=name, directory=lambda: directory),
            key=keys[name],
        )
    return nodes
