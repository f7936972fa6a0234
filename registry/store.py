"""The record store: a Protocol, and its PostgreSQL implementation over asyncpg.

Each write is one transaction that changes the record's rows and appends its
version history; a failed write leaves nothing behind. asyncpg errors are
translated here into the domain's StoreUnavailable.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

import asyncpg

from schemas.codec_cbor import (
    decode_data,
    decode_record,
    decode_refs,
    encode_data,
    encode_record,
    encode_refs,
)
from schemas.errors import (
    IdentifierExists,
    IdentifierNotFound,
    IdresError,
    InvalidIdentifier,
    StoreUnavailable,
)
from schemas.identifiers import Identifier, parse
from schemas.record import DataFormat, HandleValue, Permissions, Record, TtlType, check_values

Op = Literal["create", "replace", "delete"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    index: int
    type: str
    change: Literal["added", "modified", "removed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteResult:
    handle: str
    version: int
    created: bool
    changes: tuple[Change, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    version: int
    op: Op
    actor: str
    at: datetime
    changes: tuple[Change, ...]
    record: Record | None  # the record after the change; None after a delete


class RecordStore(Protocol):
    async def get(self, handle: str) -> Record | None: ...

    async def put(self, record: Record, *, actor: str, overwrite: bool = True) -> WriteResult: ...

    async def delete(self, handle: str, *, actor: str) -> WriteResult: ...

    async def history(self, handle: str) -> list[HistoryEntry]: ...


def diff(old: Record | None, new: Record | None) -> tuple[Change, ...]:
    """What changed between two versions of a record, by index."""
    before = {v.index: v for v in old.values} if old else {}
    after = {v.index: v for v in new.values} if new else {}
    out: list[Change] = []
    for index in sorted(before.keys() | after.keys()):
        a, b = before.get(index), after.get(index)
        if a is None and b is not None:
            out.append(Change(index=index, type=b.type, change="added"))
        elif b is None and a is not None:
            out.append(Change(index=index, type=a.type, change="removed"))
        elif a is not None and b is not None and _content(a) != _content(b):
            out.append(Change(index=index, type=b.type, change="modified"))
    return tuple(out)


def _content(v: HandleValue) -> tuple[Any, ...]:
    # A new timestamp alone is not a change of the value.
    return (v.type, v.format, v.value, v.ttl, v.ttl_type, v.permissions, v.references)


_SELECT_VALUES = (
    "SELECT idx, type, format, data, ttl, ttl_type, ts, perms, refs"
    " FROM handle_values WHERE handle = $1 ORDER BY idx"
)


class PostgresStore:
    """RecordStore on PostgreSQL; the pool's schema is migrated by ``create_pool``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except IdresError:
            raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StoreUnavailable(f"database error: {exc}") from exc

    async def get(self, handle: str) -> Record | None:
        async with self._conn() as conn:
            rows = await conn.fetch(_SELECT_VALUES, handle)
        if not rows:
            return None
        return Record(handle=handle, values=tuple(_row_to_value(r) for r in rows))

    async def put(self, record: Record, *, actor: str, overwrite: bool = True) -> WriteResult:
        ident = _canonical(record.handle)
        check_values(record.values)
        # Two tries: a create that races another create of the same identifier
        # finds nothing to lock, loses the insert, and on the second try replaces it.
        for _attempt in range(2):
            result = await self._put_once(record, ident, actor=actor, overwrite=overwrite)
            if result is not None:
                return result
        raise StoreUnavailable(f"{record.handle}: concurrent writes kept conflicting; retry")

    async def _put_once(
        self, record: Record, ident: Identifier, *, actor: str, overwrite: bool
    ) -> WriteResult | None:
        async with self._conn() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT version FROM identifiers WHERE handle = $1 FOR UPDATE", record.handle
            )
            old: Record | None = None
            if row is None:
                # history outlives deletes, so a re-created identifier continues its versions
                version = await conn.fetchval(
                    "INSERT INTO identifiers (handle, scheme, routing_key, version)"
                    " SELECT $1, $2, $3, coalesce(max(version), 0) + 1"
                    " FROM history WHERE handle = $1"
                    " ON CONFLICT (handle) DO NOTHING RETURNING version",
                    record.handle,
                    str(ident.scheme),
                    str(ident.routing),
                )
                if version is None:
                    if not overwrite:
                        raise IdentifierExists(record.handle)
                    return None
            else:
                if not overwrite:
                    raise IdentifierExists(record.handle)
                old_rows = await conn.fetch(_SELECT_VALUES, record.handle)
                old = Record(handle=record.handle, values=tuple(_row_to_value(r) for r in old_rows))
                version = row["version"] + 1
                await conn.execute(
                    "UPDATE identifiers SET version = $2, updated_at = now() WHERE handle = $1",
                    record.handle,
                    version,
                )
                await conn.execute("DELETE FROM handle_values WHERE handle = $1", record.handle)
            await conn.executemany(
                "INSERT INTO handle_values"
                " (handle, idx, type, format, data, ttl, ttl_type, ts, perms, refs)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                [_value_to_row(record.handle, v) for v in record.values],
            )
            changes = diff(old, record)
            await _append_history(
                conn,
                record.handle,
                version,
                "create" if old is None else "replace",
                actor,
                changes,
                encode_record(record),
            )
        return WriteResult(
            handle=record.handle, version=version, created=old is None, changes=changes
        )

    async def delete(self, handle: str, *, actor: str) -> WriteResult:
        async with self._conn() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT version FROM identifiers WHERE handle = $1 FOR UPDATE", handle
            )
            if row is None:
                raise IdentifierNotFound(handle)
            old_rows = await conn.fetch(_SELECT_VALUES, handle)
            old = Record(handle=handle, values=tuple(_row_to_value(r) for r in old_rows))
            await conn.execute("DELETE FROM identifiers WHERE handle = $1", handle)
            version = row["version"] + 1
            changes = diff(old, None)
            await _append_history(conn, handle, version, "delete", actor, changes, None)
        return WriteResult(handle=handle, version=version, created=False, changes=changes)

    async def history(self, handle: str) -> list[HistoryEntry]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT version, op, actor, at, changes, record FROM history"
                " WHERE handle = $1 ORDER BY version",
                handle,
            )
        return [
            HistoryEntry(
                version=r["version"],
                op=r["op"],
                actor=r["actor"],
                at=r["at"],
                changes=tuple(Change(**c) for c in json.loads(r["changes"])),
                record=decode_record(r["record"]) if r["record"] is not None else None,
            )
            for r in rows
        ]


def _canonical(handle: str) -> Identifier:
    ident = parse(handle)
    if ident.canonical != handle:
        raise InvalidIdentifier(
            handle, f"store records under the canonical form {ident.canonical!r}"
        )
    return ident


async def _append_history(
    conn: asyncpg.Connection,
    handle: str,
    version: int,
    op: Op,
    actor: str,
    changes: tuple[Change, ...],
    record: bytes | None,
) -> None:
    await conn.execute(
        "INSERT INTO history (handle, version, op, actor, changes, record)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6)",
        handle,
        version,
        op,
        actor,
        json.dumps([{"index": c.index, "type": c.type, "change": c.change} for c in changes]),
        record,
    )


def _value_to_row(handle: str, v: HandleValue) -> tuple[Any, ...]:
    return (
        handle,
        v.index,
        v.type,
        str(v.format),
        encode_data(v),
        v.ttl,
        int(v.ttl_type),
        v.timestamp,
        int(v.permissions.to_bits(), 2),
        encode_refs(v.references),
    )


def _row_to_value(r: asyncpg.Record) -> HandleValue:
    fmt = DataFormat(r["format"])
    return HandleValue(
        index=r["idx"],
        type=r["type"],
        format=fmt,
        value=decode_data(fmt, r["data"]),
        ttl=r["ttl"],
        ttl_type=TtlType(r["ttl_type"]),
        timestamp=r["ts"],
        permissions=Permissions.from_bits(format(r["perms"], "04b")),
        references=decode_refs(r["refs"]),
    )
