"""The record store: a Protocol, and its PostgreSQL implementation over asyncpg.

A batch of writes is one transaction: it locks the identifiers it touches, lets a
policy decide each operation against the current records, then changes the rows,
appends version history and the outbound log in bulk (COPY). A failure leaves
nothing behind. asyncpg errors become the domain's StoreUnavailable here.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import (
    AsyncGenerator,
    Callable,
    Iterable,
    Sequence,
)
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

import asyncpg

from registry.database import acquire
from registry.plan import (
    AllowAll,
    Change,
    DeleteOp,
    Op,
    Planned,
    Policy,
    PutOp,
    WriteOp,
    op_handle,
    plan,
)
from registry.rows import (
    SALTED_COLUMNS,
    announce_changed,
    append_outbox,
    fetch_records,
    fetch_salts,
    value_to_row,
    write_answers,
)
from schemas.codec_cbor import (
    dumps_ordered,
    record_to_cbor_obj,
)
from schemas.commitment import (
    SALT_BYTES,
    commit_record,
    is_private,
)
from schemas.commitment import decode as decode_stored_record
from schemas.commitment import record_obj as committed_record_obj
from schemas.errors import (
    Forbidden,
    IdresError,
    InvalidIdentifier,
    InvalidValue,
    StoreUnavailable,
)
from schemas.identifiers import Identifier, Namespace, RoutingKey, parse
from schemas.oplog import Operation, encode_operation
from schemas.record import (
    Record,
    check_values,
    same_content,
)

IDEMPOTENCY_TTL = 24 * 3600
Match = Literal["exact", "dotted", "digits"]  # how a listing matches routing keys
_RETRIES = 3  # conflicts between concurrent batches roll back and retry whole


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteResult:
    handle: str
    version: int
    created: bool
    changes: tuple[Change, ...]


Outcome = WriteResult | IdresError


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    version: int
    op: Op
    actor: str
    at: datetime
    changes: tuple[Change, ...]
    record: Record | None  # the record after the change; None after a delete


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredResponse:
    status: int
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Guard:
    """What makes a signed write safe to retry and impossible to replay."""

    scope: str  # the signing key's id
    replay_token: bytes | None  # refused if seen before (RFC 9421 §7.2.2)
    replay_expires: int  # until when the token must be remembered
    idempotency_key: str | None
    fingerprint: bytes  # sha-256 of what the request asks, to refuse key reuse


@dataclass(frozen=True, slots=True, kw_only=True)
class Applied:
    outcomes: list[Outcome] | None  # None when an earlier response was replayed
    response: StoredResponse | None


class IdempotencyMismatch(IdresError):
    """An Idempotency-Key reused for a different request."""

    response_code = 202
    http_status = 422


class RecordStore(Protocol):
    async def get(self, handle: str) -> Record | None: ...

    async def put(self, record: Record, *, actor: str, overwrite: bool = True) -> WriteResult: ...

    async def delete(self, handle: str, *, actor: str) -> WriteResult: ...

    async def history(self, handle: str) -> list[HistoryEntry]: ...


class PostgresStore:
    """RecordStore on PostgreSQL; the pool's schema is migrated by ``create_pool``."""

    def __init__(self, pool: asyncpg.Pool, *, clock: Callable[[], float] = time.time) -> None:
        self._pool = pool
        self._clock = clock

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    def _conn(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        return acquire(self._pool)

    # --- reads -----------------------------------------------------------------------

    async def get(self, handle: str) -> Record | None:
        return (await self.get_many([handle])).get(handle)

    async def get_many(self, handles: Iterable[str]) -> dict[str, Record]:
        async with self._conn() as conn:
            return await fetch_records(conn, handles)

    async def salts(self, handle: str) -> dict[int, bytes]:
        """The salts of ``handle``'s private values, by index (only at their holder):
        shown with a value, they let its reader check it against the chain."""
        async with self._conn() as conn:
            return (await fetch_salts(conn, [handle])).get(handle, {})

    async def list_handles(
        self,
        routing_prefix: str,
        *,
        match: Match,
        page: int,
        page_size: int,
    ) -> tuple[int, list[str]]:
        """Identifiers under a prefix: its routing key exactly (handle prefixes), it or
        its dotted descendants (OIDs: 1.2.156.1 does not hold 1.2.156.10), or every
        routing key that starts with it (GS1 and Ecode, delegated digit by digit)."""
        where, args = _under(routing_prefix, match)
        n = len(args)
        async with self._conn() as conn:
            total = await conn.fetchval(f"SELECT count(*) FROM identifiers WHERE {where}", *args)
            rows = await conn.fetch(
                f"SELECT handle FROM identifiers WHERE {where} ORDER BY handle"
                f" LIMIT ${n + 1} OFFSET ${n + 2}",
                *args,
                page_size,
                page * page_size,
            )
        return int(total), [r["handle"] for r in rows]

    async def handles_after(
        self, routing_prefix: str, *, match: Match, after: str, limit: int
    ) -> list[str]:
        """At most ``limit`` identifiers under a prefix (as ``list_handles`` matches
        them) that sort after ``after``, in order: a listing of any length read a page
        at a time from its last identifier, each page one short query on the index."""
        where, args = _under(routing_prefix, match)
        n = len(args)
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT handle FROM identifiers WHERE {where} AND handle > ${n + 1}"
                f" ORDER BY handle LIMIT ${n + 2}",
                *args,
                after,
                limit,
            )
        return [r["handle"] for r in rows]

    async def public_answers(
        self, routing_prefix: str, *, match: Match, batch: int = 500
    ) -> AsyncGenerator[tuple[str, bytes], None]:
        """Every identifier under a prefix (as ``list_handles`` matches it) that has a
        public answer, with that answer's bytes, in handle order: a zone's records for a
        transfer (resolver/dns/transfer.py). Read in one snapshot, a batch at a time."""
        where, args = _under(routing_prefix, match)
        async with self._conn() as conn, conn.transaction(isolation="repeatable_read"):
            cursor = conn.cursor(
                "SELECT handle, a.body FROM identifiers JOIN answers a USING (handle)"
                f" WHERE {where} ORDER BY handle",
                *args,
                prefetch=batch,
            )
            async for row in cursor:
                yield row["handle"], bytes(row["body"])

    async def chain_height(self, chain: str) -> int:
        """How many blocks of ``chain`` this node holds (0: none yet)."""
        async with self._conn() as conn:
            height = await conn.fetchval(
                "SELECT coalesce(max(height), 0) FROM chain_blocks WHERE chain = $1", chain
            )
        return int(height)

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
                # the holder's own history keeps its private values in clear;
                # a copy of another node's keeps their commitments
                record=decode_stored_record(r["record"], clear_private=True)
                if r["record"] is not None
                else None,
            )
            for r in rows
        ]

    # --- writes ----------------------------------------------------------------------

    async def put(self, record: Record, *, actor: str, overwrite: bool = True) -> WriteResult:
        return await self._single(PutOp(record=record, overwrite=overwrite), actor)

    async def delete(self, handle: str, *, actor: str) -> WriteResult:
        return await self._single(DeleteOp(handle=handle), actor)

    async def _single(self, op: WriteOp, actor: str) -> WriteResult:
        applied = await self.apply([op], actor=actor)
        assert applied.outcomes is not None
        (outcome,) = applied.outcomes
        if isinstance(outcome, IdresError):
            raise outcome
        return outcome

    async def apply(
        self,
        ops: Sequence[WriteOp],
        *,
        actor: str,
        policy: Policy | None = None,
        guard: Guard | None = None,
        render: Callable[[list[Outcome]], StoredResponse] | None = None,
        validated: bool = False,
    ) -> Applied:
        """Apply ``ops`` in one transaction; each gets its own outcome.

        Operations that are malformed, refused by ``policy`` or in conflict with the
        current records fail alone; the rest commit together, or none do. With a
        ``guard`` the signature is refused if seen before and an Idempotency-Key
        replays the response ``render`` made the first time. ``validated`` says the
        caller already ran ``check_values`` on every record (as the JSON decoder does).
        """
        policy = policy or AllowAll()
        outcomes: list[Outcome | None] = [None] * len(ops)
        valid: list[tuple[int, WriteOp, Identifier]] = []
        seen: dict[str, int] = {}
        for pos, op in enumerate(ops):
            try:
                ident = _canonical(op_handle(op))
                if isinstance(op, PutOp) and not validated:
                    check_values(op.record.values)
                if ident.canonical in seen:
                    first = seen[ident.canonical]
                    raise InvalidValue.single(
                        f"operations[{pos}]",
                        f"{ident.canonical} is already written by operations[{first}]",
                    )
                seen[ident.canonical] = pos
                policy.admissible(ident)  # before any lock: not this node's, not locked
                valid.append((pos, op, ident))
            except IdresError as exc:
                outcomes[pos] = exc
        for attempt in range(_RETRIES):
            try:
                async with self._conn() as conn, conn.transaction():
                    return await self._apply_in(conn, valid, outcomes, actor, policy, guard, render)
            except StoreUnavailable as exc:
                retryable = isinstance(
                    exc.__cause__,
                    (
                        asyncpg.UniqueViolationError,
                        asyncpg.DeadlockDetectedError,
                        asyncpg.SerializationError,
                    ),
                )
                if not retryable or attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def _apply_in(
        self,
        conn: asyncpg.Connection,
        valid: list[tuple[int, WriteOp, Identifier]],
        first_outcomes: list[Outcome | None],
        actor: str,
        policy: Policy,
        guard: Guard | None,
        render: Callable[[list[Outcome]], StoredResponse] | None,
    ) -> Applied:
        outcomes = list(first_outcomes)
        policy.begin()
        now = self._clock()
        if guard is not None:
            replayed = await _check_guard(conn, guard, now)
            if replayed is not None:
                return Applied(outcomes=None, response=replayed)
        handles = sorted(ident.canonical for _, _, ident in valid)
        # Lock in a fixed order so concurrent batches cannot deadlock each other.
        existing = {
            r["handle"]: r["version"]
            for r in await conn.fetch(
                "SELECT handle, version FROM identifiers WHERE handle = ANY($1::text[])"
                " ORDER BY handle FOR UPDATE",
                handles,
            )
        }
        old_records = await fetch_records(conn, existing)
        context_names = {h for _, op, _ in valid for h in policy.prefix_handles(op)}
        others = sorted(context_names - old_records.keys())
        # The records the decisions rest on (prefix records) stay as read until commit:
        # a revocation committing meanwhile waits, or this transaction sees it.
        await conn.execute(
            "SELECT 1 FROM identifiers WHERE handle = ANY($1::text[]) ORDER BY handle FOR SHARE",
            others,
        )
        context = await fetch_records(conn, others)
        context.update({h: r for h, r in old_records.items() if h in context_names})
        fresh = [h for h in handles if h not in existing]
        last_version = (
            {
                r["handle"]: r["v"]
                for r in await conn.fetch(
                    "SELECT handle, max(version) AS v FROM history"
                    " WHERE handle = ANY($1::text[]) GROUP BY handle",
                    fresh,
                )
            }
            if fresh
            else {}
        )

        planned, refused = plan(valid, old_records, existing, last_version, context, policy)
        for pos, exc in refused.items():
            outcomes[pos] = exc
        await _write(conn, planned, actor, int(now))
        for p in planned:
            outcomes[p.position] = WriteResult(
                handle=p.handle, version=p.version, created=p.op == "create", changes=p.changes
            )
        final = [o for o in outcomes if o is not None]
        assert len(final) == len(outcomes)
        response = render(final) if render is not None else None
        if guard is not None and guard.idempotency_key is not None and response is not None:
            await conn.execute(
                "UPDATE idempotency SET status = $3, body = $4 WHERE scope = $1 AND key = $2",
                guard.scope,
                guard.idempotency_key,
                response.status,
                response.body,
            )
        return Applied(outcomes=final, response=response)

    async def purge_expired(self) -> None:
        """Forget signatures past their window and idempotency keys past a day."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        async with self._conn() as conn:
            await conn.execute("DELETE FROM seen_signatures WHERE expires_at < $1", now)
            await conn.execute(
                "DELETE FROM idempotency WHERE created_at < $1",
                now - timedelta(seconds=IDEMPOTENCY_TTL),
            )


async def _check_guard(conn: asyncpg.Connection, guard: Guard, now: float) -> StoredResponse | None:
    if guard.idempotency_key is not None:
        # A concurrent request with the same key waits here for the first to commit.
        inserted = await conn.fetchval(
            "INSERT INTO idempotency (scope, key, fingerprint) VALUES ($1, $2, $3)"
            " ON CONFLICT (scope, key) DO NOTHING RETURNING true",
            guard.scope,
            guard.idempotency_key,
            guard.fingerprint,
        )
        if not inserted:
            row = await conn.fetchrow(
                "SELECT fingerprint, status, body FROM idempotency WHERE scope = $1 AND key = $2",
                guard.scope,
                guard.idempotency_key,
            )
            if row["fingerprint"] != guard.fingerprint:
                raise IdempotencyMismatch(
                    f"Idempotency-Key {guard.idempotency_key!r} was used for a different "
                    "request; use a new key for a new request"
                )
            if row["status"] is not None:
                return StoredResponse(status=row["status"], body=row["body"])
    if guard.replay_token is not None:
        fresh = await conn.fetchval(
            "INSERT INTO seen_signatures (digest, expires_at) VALUES ($1, $2)"
            " ON CONFLICT (digest) DO NOTHING RETURNING true",
            guard.replay_token,
            datetime.fromtimestamp(max(guard.replay_expires, now), UTC),
        )
        if not fresh:
            raise Forbidden(
                "replayed request: this signature was already used; sign the "
                "request anew (or send an Idempotency-Key to retry safely)"
            )
    return None


async def _write(conn: asyncpg.Connection, planned: list[Planned], actor: str, now: int) -> None:
    if not planned:
        return
    salts = await _salts_for(conn, planned)  # before the old rows, and their salts, go
    # inserted in key order, as the lock was taken, so concurrent batches cannot deadlock
    creates = sorted((p for p in planned if p.op == "create"), key=lambda p: p.handle)
    replaces = [p for p in planned if p.op == "replace"]
    deletes = [p for p in planned if p.op == "delete"]
    if creates:
        await conn.execute(
            "INSERT INTO identifiers (handle, scheme, routing_key, version)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])",
            [p.handle for p in creates],
            [str(p.ident.scheme) for p in creates],
            [str(p.ident.routing) for p in creates],
            [p.version for p in creates],
        )
    if replaces:
        await conn.execute(
            "UPDATE identifiers AS i SET version = u.v, updated_at = now()"
            " FROM unnest($1::text[], $2::bigint[]) AS u(h, v) WHERE i.handle = u.h",
            [p.handle for p in replaces],
            [p.version for p in replaces],
        )
        await conn.execute(
            "DELETE FROM handle_values WHERE handle = ANY($1::text[])", [p.handle for p in replaces]
        )
    if deletes:
        await conn.execute(
            "DELETE FROM identifiers WHERE handle = ANY($1::text[])", [p.handle for p in deletes]
        )
    rows = [
        (*value_to_row(p.handle, v), salts[p.handle].get(v.index))
        for p in planned
        if p.new
        for v in p.new.values
    ]
    if rows:
        await conn.copy_records_to_table("handle_values", records=rows, columns=SALTED_COLUMNS)
    await write_answers(
        conn, {p.handle: p.new for p in planned}, created={p.handle for p in creates}
    )
    # the node's edge keeps answers from the answers table, local records' too: it
    # forgets them when this commits, as it does what sync applies
    await announce_changed(conn, sorted({p.handle for p in planned}))
    history, outbox = [], []
    for p in planned:
        # the record's CBOR structure is built once, for the history and the log alike
        record_obj = record_to_cbor_obj(p.new) if p.new is not None else None
        snapshot = dumps_ordered(record_obj) if record_obj is not None else None
        # what travels: each private value as its commitment, never in clear
        sent = commit_record(p.new, salts[p.handle]) if p.new is not None else None
        if sent is not p.new and sent is not None:
            record_obj = committed_record_obj(sent)
        changes = json.dumps(
            [{"index": c.index, "type": c.type, "change": c.change} for c in p.changes]
        )
        history.append((p.handle, p.version, p.op, actor, changes, snapshot))
        payload = encode_operation(
            Operation(
                op=p.op, handle=p.handle, version=p.version, actor=actor, at=now, record=sent
            ),
            record_obj=record_obj,
        )
        outbox.append((p.handle, p.version, p.op, payload))
    await conn.copy_records_to_table(
        "history",
        records=history,
        columns=("handle", "version", "op", "actor", "changes", "record"),
    )
    await append_outbox(conn, outbox)


async def _salts_for(
    conn: asyncpg.Connection, planned: list[Planned]
) -> dict[str, dict[int, bytes]]:
    """The salt of each private value the planned records will hold, by handle and
    index: the one it had while its content stays the same (so its commitment, and
    what parents' history says of it, stay the same too), a fresh one otherwise."""
    out: dict[str, dict[int, bytes]] = {p.handle: {} for p in planned}
    private = [p for p in planned if p.new is not None and any(map(is_private, p.new.values))]
    if not private:
        return out
    kept = await fetch_salts(conn, [p.handle for p in private if p.old is not None])
    for p in private:
        assert p.new is not None
        before = {v.index: v for v in p.old.values} if p.old is not None else {}
        for v in p.new.values:
            if not is_private(v):
                continue
            old, salt = before.get(v.index), kept.get(p.handle, {}).get(v.index)
            if old is None or salt is None or not same_content(old, v):
                salt = os.urandom(SALT_BYTES)
            out[p.handle][v.index] = salt
    return out


def listing_match(prefix: RoutingKey) -> Match:
    """Which identifiers a listing of ``prefix`` holds: a handle or did:bid prefix its
    own routing key only (88.100.1/x is under 0.NA/88.100.1, not 0.NA/88.100), an OID
    arc its dotted descendants too, a GS1 or Ecode prefix every key it starts."""
    if prefix.namespace in (Namespace.HANDLE, Namespace.BID):
        return "exact"
    if prefix.namespace is Namespace.OID:
        return "dotted"
    return "digits"


def _under(routing_prefix: str, match: Match) -> tuple[str, list[str]]:
    """The WHERE clause (on ``identifiers.routing_key``) of the identifiers under a
    prefix, and its arguments (see ``PostgresStore.list_handles``)."""
    below = _like_prefix(routing_prefix + ("." if match == "dotted" else ""))
    return {
        "exact": ("routing_key = $1", [routing_prefix]),
        "dotted": ("(routing_key = $1 OR routing_key LIKE $2)", [routing_prefix, below]),
        "digits": ("routing_key LIKE $1", [below]),
    }[match]


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _canonical(handle: str) -> Identifier:
    ident = parse(handle)
    if ident.canonical != handle:
        raise InvalidIdentifier(
            handle, f"store records under the canonical form {ident.canonical!r}"
        )
    return ident
