"""The PostgreSQL record store against a real server: writes, history, atomicity."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import asyncpg
import pytest

from registry.authz import Signer
from registry.database import migrate
from registry.plan import Change, DeleteOp
from registry.service import RegistryPolicy
from registry.store import PostgresStore
from schemas.codec_json import public_answer
from schemas.errors import (
    IdentifierExists,
    IdentifierNotFound,
    InvalidIdentifier,
    InvalidValue,
    NotResponsible,
    StoreUnavailable,
)
from schemas.identifiers.prefix import parse_prefix
from schemas.record import DataFormat, HandleValue, Permissions, Record

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]
T = 1795420800


def value(index: int, url: str = "https://e.x/", type_: str = "URL") -> HandleValue:
    return HandleValue(index=index, type=type_, format=DataFormat.STRING, value=url, timestamp=T)


def record(handle: str = "88.100.1/ABC", *values: HandleValue) -> Record:
    return Record(handle=handle, values=values or (value(1),))


async def count(pool: asyncpg.Pool, table: str) -> int:
    n: int = await pool.fetchval(f"SELECT count(*) FROM {table}")
    return n


async def test_create_then_get_returns_the_same_record(pool: asyncpg.Pool) -> None:
    store = PostgresStore(pool)
    rec = record("88.100.1/ABC", value(1), value(2, "ops@example.com", "EMAIL"))
    result = await store.put(rec, actor="key:alice")
    assert (result.created, result.version) == (True, 1)
    assert await store.get("88.100.1/ABC") == rec
    assert await store.get("88.100.1/NOPE") is None


async def test_overwrite_false_refuses_an_existing_identifier_and_changes_nothing(
    pool: asyncpg.Pool,
) -> None:
    store = PostgresStore(pool)
    await store.put(record(), actor="a")
    with pytest.raises(IdentifierExists):
        await store.put(
            record("88.100.1/ABC", value(1, "https://other/")), actor="b", overwrite=False
        )
    assert (await store.get("88.100.1/ABC")) == record()
    assert len(await store.history("88.100.1/ABC")) == 1


async def test_history_records_every_version_who_when_and_what_changed(
    pool: asyncpg.Pool,
) -> None:
    store = PostgresStore(pool)
    v1 = record("88.100.1/ABC", value(1), value(2, "a@b.c", "EMAIL"))
    v2 = record("88.100.1/ABC", value(1, "https://new/"), value(3, "x:y"))
    await store.put(v1, actor="key:alice")
    replaced = await store.put(v2, actor="key:bob")
    assert (replaced.created, replaced.version) == (False, 2)
    deleted = await store.delete("88.100.1/ABC", actor="key:carol")
    assert deleted.version == 3
    assert await store.get("88.100.1/ABC") is None

    history = await store.history("88.100.1/ABC")
    assert [(h.version, h.op, h.actor) for h in history] == [
        (1, "create", "key:alice"),
        (2, "replace", "key:bob"),
        (3, "delete", "key:carol"),
    ]
    assert history[0].record == v1
    assert history[1].record == v2
    assert history[2].record is None
    assert history[1].changes == (
        Change(index=1, type="URL", change="modified"),
        Change(index=2, type="EMAIL", change="removed"),
        Change(index=3, type="URL", change="added"),
    )
    assert history[0].at <= history[1].at <= history[2].at


async def test_a_recreated_identifier_continues_its_version_numbers(pool: asyncpg.Pool) -> None:
    store = PostgresStore(pool)
    await store.put(record(), actor="a")
    await store.delete("88.100.1/ABC", actor="a")
    again = await store.put(record(), actor="a")
    assert (again.created, again.version) == (True, 3)


async def test_delete_of_an_unknown_identifier_is_not_found(pool: asyncpg.Pool) -> None:
    with pytest.raises(IdentifierNotFound):
        await PostgresStore(pool).delete("88.100.1/NOPE", actor="a")


@pytest.mark.parametrize(
    ("rec", "error"),
    [
        (record("88.100.1/a b"), InvalidIdentifier),
        (record("06901234567892".lstrip("0")), InvalidIdentifier),  # not canonical
        (record("88.100.1/X", value(1), value(1)), InvalidValue),
        (record("88.100.1/X", value(1, "not a url")), InvalidValue),
    ],
)
async def test_invalid_writes_leave_nothing_behind(
    pool: asyncpg.Pool, rec: Record, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await PostgresStore(pool).put(rec, actor="a")
    for table in ("identifiers", "handle_values", "history"):
        assert await count(pool, table) == 0


async def test_concurrent_replaces_serialise_into_consecutive_versions(
    pool: asyncpg.Pool,
) -> None:
    store = PostgresStore(pool)
    writes = [
        store.put(record("88.100.1/HOT", value(1, f"https://e.x/{n}")), actor=f"w{n}")
        for n in range(20)
    ]
    results = await asyncio.gather(*writes)
    assert sorted(r.version for r in results) == list(range(1, 21))
    assert sum(r.created for r in results) == 1
    history = await store.history("88.100.1/HOT")
    assert [h.version for h in history] == list(range(1, 21))
    final = await store.get("88.100.1/HOT")
    assert final == history[-1].record


async def test_concurrent_creates_without_overwrite_let_exactly_one_win(
    pool: asyncpg.Pool,
) -> None:
    store = PostgresStore(pool)
    results = await asyncio.gather(
        *[
            store.put(
                record("88.100.1/ONCE", value(1, f"https://e.x/{n}")),
                actor=f"w{n}",
                overwrite=False,
            )
            for n in range(10)
        ],
        return_exceptions=True,
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, IdentifierExists) for r in results if isinstance(r, Exception))
    assert len(await store.history("88.100.1/ONCE")) == 1


async def test_a_closed_pool_is_a_store_error_not_a_driver_error(pool: asyncpg.Pool) -> None:
    store = PostgresStore(pool)
    await pool.close()
    with pytest.raises(StoreUnavailable):
        await store.get("88.100.1/ABC")


async def test_migrations_apply_once(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await migrate(conn) == []
        names = [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")]
    assert names == [
        *("records", "registry", "sync", "value_salts", "coherence", "answers"),
        *("pending_challenges", "integrity", "handle_sessions"),
    ]


async def test_lookup_by_identifier_is_one_index_probe(pool: asyncpg.Pool) -> None:
    """At scale the planner must use the primary key, never a scan of the table."""
    await pool.execute(
        "INSERT INTO identifiers (handle, scheme, routing_key, version)"
        " SELECT '88.100.1/P' || g, 'handle', 'handle:88.100.1', 1"
        " FROM generate_series(1, 200000) g"
    )
    await pool.execute(
        "INSERT INTO handle_values (handle, idx, type, format, data, ttl, ttl_type, ts, perms,"
        " refs) SELECT '88.100.1/P' || g, i, 'URL', 'string', '\\x60'::bytea, 86400, 0, 0, 14,"
        " '\\x80'::bytea FROM generate_series(1, 200000) g, generate_series(1, 2) i"
    )
    await pool.execute("ANALYZE")
    plan = json.loads(
        await pool.fetchval(
            "EXPLAIN (FORMAT JSON) SELECT idx, type, format, data, ttl, ttl_type, ts, perms, refs"
            " FROM handle_values WHERE handle = $1 ORDER BY idx",
            "88.100.1/P4242",
        )
    )
    top = plan[0]["Plan"]
    assert top["Node Type"] in ("Index Scan", "Index Only Scan"), top
    assert top["Index Name"] == "handle_values_pkey"
    assert "Plans" not in top  # no sort, no second pass


async def test_purging_forgets_old_idempotency_keys_and_signatures(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO idempotency (scope, key, fingerprint, status, body,"
        " created_at) VALUES ('k', 'old', '\\x00', 200, '{}',"
        " now() - interval '2 days'), ('k', 'new', '\\x00', 200, '{}', now())"
    )
    await pool.execute(
        "INSERT INTO seen_signatures (digest, expires_at) VALUES"
        " ('\\x01', now() - interval '1 minute'), ('\\x02', now() + interval '1 minute')"
    )
    await PostgresStore(pool).purge_expired()
    assert [r["key"] for r in await pool.fetch("SELECT key FROM idempotency")] == ["new"]
    assert await count(pool, "seen_signatures") == 1


async def test_a_write_outside_the_nodes_prefixes_is_refused_before_any_row_lock(
    pool: asyncpg.Pool,
) -> None:
    """A backbone keeps copies of its children's records: a signed batch at the backbone
    naming them is refused without locking those rows (another transaction holds one)."""
    store = PostgresStore(pool)
    await store.put(record("88.100.5/COPY", value(1)), actor="replica")
    policy = RegistryPolicy(
        Signer(handle="0.NA/node.admin", index=300),
        (parse_prefix("88"),),
        delegated=((parse_prefix("88.100"), "sub-a"),),
    )
    holder = await pool.acquire()
    try:
        async with holder.transaction():
            await holder.execute(
                "SELECT 1 FROM identifiers WHERE handle = '88.100.5/COPY' FOR UPDATE"
            )
            # a guard against hanging (the lock is held until this block ends)
            applied = await asyncio.wait_for(
                store.apply([DeleteOp(handle="88.100.5/COPY")], actor="k", policy=policy), 30
            )
    finally:
        await pool.release(holder)
    assert applied.outcomes is not None
    (outcome,) = applied.outcomes
    assert isinstance(outcome, NotResponsible)
    assert "delegated to node 'sub-a'" in str(outcome)
    assert await store.get("88.100.5/COPY") is not None


async def test_every_write_rewrites_the_public_answer_the_edge_serves(pool: asyncpg.Pool) -> None:
    """The answers table holds, for each record, the bytes a reader is given (its public
    values), changed in the same transaction as the record; none when nothing is public."""
    store = PostgresStore(pool)

    async def stored(handle: str) -> tuple[bytes, float | None] | None:
        row = await pool.fetchrow("SELECT body, ttl FROM answers WHERE handle = $1", handle)
        return None if row is None else (bytes(row["body"]), row["ttl"])

    hidden = dataclasses.replace(
        value(2, "https://e.x/secret"), permissions=Permissions(public_read=False)
    )
    await store.put(record("88.100.1/ABC", value(1, "https://e.x/a"), hidden), actor="a")
    first = await stored("88.100.1/ABC")
    assert first is not None
    body = json.loads(first[0])
    assert [v["data"]["value"] for v in body["values"]] == ["https://e.x/a"]  # public only
    assert first[1] == 86400  # the value's TTL

    # values sent out of index order: the answer is what a read of the record encodes
    await store.put(
        record("88.100.1/ABC", value(7, "https://e.x/b7"), value(1, "https://e.x/b")), actor="a"
    )
    second = await stored("88.100.1/ABC")
    assert second is not None
    read = await store.get("88.100.1/ABC")
    assert read is not None
    answer = public_answer(read)
    assert answer is not None
    assert second[0] == answer.body
    assert [v["index"] for v in json.loads(second[0])["values"]] == [1, 7]

    await store.put(record("88.100.1/ABC", hidden), actor="a")
    assert await stored("88.100.1/ABC") is None  # nothing public: the workers answer

    await store.put(record("88.100.1/ABC", value(1, "https://e.x/c")), actor="a")
    await store.delete("88.100.1/ABC", actor="a")
    assert await stored("88.100.1/ABC") is None
