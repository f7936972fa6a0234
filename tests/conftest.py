"""Real servers for the tests: PostgreSQL (DATABASE_URL or embedded) and Apache Kafka.

Each test that asks for ``db_url`` gets a fresh database cloned from a migrated
template. Kafka is ``KAFKA_BOOTSTRAP`` if set, else a single-node KRaft broker that
``deploy/kafka/kafka.sh`` starts once for the session. That broker wants SASL/SCRAM:
its admin credentials go into ``os.environ`` (``KAFKA_SASL_*``), where ``KafkaLog``
and the ``idres`` processes the tests start find them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio

from registry.database import create_pool, migrate, start_embedded

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DB = "idres_test_template"


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return start_embedded(tmp_path_factory.mktemp("pg") / "data")


@pytest.fixture(scope="session")
def pg_template(pg_server_url: str) -> str:
    """A database with every migration applied, cloned for each test."""

    async def build() -> None:
        conn = await asyncpg.connect(pg_server_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
        finally:
            await conn.close()
        conn = await asyncpg.connect(with_database(pg_server_url, TEMPLATE_DB))
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(build())
    return TEMPLATE_DB


@pytest_asyncio.fixture
async def db_url(pg_server_url: str, pg_template: str) -> AsyncIterator[str]:
    name = f"idres_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    finally:
        await admin.close()
    yield with_database(pg_server_url, name)
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest_asyncio.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(db_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


KAFKA_SCRIPT = ROOT / "deploy" / "kafka" / "kafka.sh"


class KafkaControl:
    """Stop and resume the suite's broker (same port, same data): a Kafka outage."""

    def __init__(self, state: str) -> None:
        self.env = {**os.environ, "IDRES_STATE": state}

    def _run(self, command: str) -> None:
        done = subprocess.run(
            ["bash", str(KAFKA_SCRIPT), command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"kafka.sh {command}: {done.stderr}"

    def stop(self) -> None:
        self._run("stop")

    def resume(self) -> None:
        self._run("resume")


@pytest.fixture(scope="session")
def kafka_control(kafka_bootstrap: str) -> KafkaControl:
    state = os.environ.get("IDRES_KAFKA_STATE")
    if not state:
        pytest.skip(
            "the broker at KAFKA_BOOTSTRAP was not started by this project's scripts, "
            "so the suite cannot stop and resume it (set IDRES_KAFKA_STATE to its state dir)"
        )
    return KafkaControl(state)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    if bootstrap:
        yield bootstrap
        return
    script = KAFKA_SCRIPT
    state = str(tmp_path_factory.mktemp("kafka"))
    os.environ["IDRES_KAFKA_STATE"] = state  # for kafka_control
    env = {**os.environ, "IDRES_STATE": state}
    started = subprocess.run(
        ["bash", str(script), "start"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if started.returncode != 0:
        pytest.fail(f"the Kafka broker did not start:\n{started.stdout}\n{started.stderr}")
    printed = dict(
        ln.split("=", 1) for ln in started.stdout.splitlines() if ln.startswith("KAFKA_")
    )
    # The broker's admin: every KafkaLog built without credentials, and every idres
    # process a test starts, authenticates as it (tests of ACLs make their own users).
    for key in ("KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
        if key in printed:
            os.environ[key] = printed[key]
    try:
        yield printed["KAFKA_BOOTSTRAP"]
    finally:
        subprocess.run(
            ["bash", str(script), "stop"], env=env, capture_output=True, timeout=120, check=False
        )
