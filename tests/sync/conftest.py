"""Nodes for the sync tests: a small hierarchy, each node with its own database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
import pytest_asyncio

from registry.database import create_pool
from sync.kafka import KafkaLog
from sync.log import Log
from sync.memory import MemoryLog
from tests.conftest import with_database

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
