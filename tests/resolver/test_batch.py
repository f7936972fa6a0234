"""Concurrent reads share one query, and each caller still gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import asyncpg
import pytest

from registry.store import PostgresStore
from resolver.batch import ReadBatcher
from schemas.errors import StoreUnavailable
from schemas.record import DataFormat, HandleValue, Record

pytestmark = [pytest.mark.asyncio, pytest.mark.postgres]


def _record(n: int) -> Record:
    return Record(
        handle=f"88.100.1/R{n}",
        values=(
            HandleValue(index=1, type="URL", format=DataFormat.STRING, value=f"https://e.x/{n}"),
        ),
    )


async def test_reads_in_one_turn_are_one_query(pool: asyncpg.Pool) -> None:
    store = PostgresStore(pool)
    for n in range(0, 40, 2):  # the odd ones do not exist
        await store.put(_record(n), actor="t")
    batches: list[list[str]] = []

    async def fetch_many(handles: Iterable[str]) -> dict[str, Record]:
        names = list(handles)
        batches.append(names)
        return await store.get_many(names)

    reads = ReadBatcher(fetch_many)
    wanted = [f"88.100.1/R{n}" for n in range(40)] + ["88.100.1/R2"] * 3  # repeats too
    got = await asyncio.gather(*(reads.get(h) for h in wanted))
    assert len(batches) == 1
    assert sorted(batches[0]) == sorted(set(wanted))
    for handle, record in zip(wanted, got, strict=True):
        n = int(handle.rsplit("R", 1)[1])
        assert record == (_record(n) if n % 2 == 0 else None)


async def test_a_failed_query_fails_every_reader(pool: asyncpg.Pool) -> None:
    store = PostgresStore(pool)
    reads = ReadBatcher(store.get_many)
    await pool.close()
    results = await asyncio.gather(
        *(reads.get(f"88.100.1/R{n}") for n in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, StoreUnavailable) for r in results)
