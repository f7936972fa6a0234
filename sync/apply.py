"""Apply another node's operations to this node's copy of its records.

Apply is idempotent by version: an operation at or below the version this node
already has of an identifier (live or deleted, as history remembers) changes
nothing, so a repeated or late block is harmless. Runs inside the caller's
transaction; nothing is appended to this node's outbox (the origin chain has it).
Private values arrive, and are stored, as their commitments (schemas/commitment.py):
this node can show that one exists and when it changed, never what it says.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence

import asyncpg

from registry.plan import diff
from registry.rows import VALUE_COLUMNS, fetch_records, value_to_row, write_answers
from resolver.topology import Directory
from schemas.commitment import encode as encode_committed
from schemas.identifiers import Namespace, RoutingKey, parse
from schemas.oplog import Operation
from schemas.record import HandleValue, Record
from sync.notices import CHANGED_CHANNEL, EVERYTHING


async def apply_operations(conn: asyncpg.Connection, ops: Sequence[Operation]) -> list[str]:
    """Apply ``ops`` (any order) in ``conn``'s transaction; the identifiers changed."""
    if not ops:
        return []
    handles = sorted({op.handle for op in ops})
    live_here = {
        r["handle"]: r["version"]
        for r in await conn.fetch(
            "SELECT handle, version FROM identifiers WHERE handle = ANY($1::text[])"
            " ORDER BY handle FOR UPDATE",
            handles,
        )
    }
    current = dict(live_here)
    for r in await conn.fetch(
        "SELECT handle, max(version) AS v FROM history WHERE handle = ANY($1::text[])"
        " GROUP BY handle",
        handles,
    ):
        current[r["handle"]] = max(current.get(r["handle"], 0), r["v"])
    # only records that exist have values to read (most replicated writes are new)
    records: dict[str, Record | None] = dict(await fetch_records(conn, sorted(live_here)))
    final: dict[str, Operation] = {}
    history = []
    for op in sorted(ops, key=lambda o: (o.handle, o.version)):
        if op.version <= current.get(op.handle, 0):
            continue  # already applied, or older than what is here
        current[op.handle] = op.version
        old = records.get(op.handle)
        changes = json.dumps(
            [{"index": c.index, "type": c.type, "change": c.change} for c in diff(old, op.record)]
        )
        snapshot = encode_committed(op.record) if op.record else None
        history.append((op.handle, op.version, op.op, op.actor, changes, snapshot))
        records[op.handle] = op.record
        final[op.handle] = op
    if not final:
        return []
    gone = sorted(h for h, op in final.items() if op.record is None)
    live = sorted(h for h, op in final.items() if op.record is not None)
    if gone:
        await conn.execute("DELETE FROM identifiers WHERE handle = ANY($1::text[])", gone)
        await write_answers(conn, dict.fromkeys(gone))
    if live:
        idents = [parse(h) for h in live]
        await conn.execute(
            "INSERT INTO identifiers (handle, scheme, routing_key, version)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])"
            " ON CONFLICT (handle) DO UPDATE SET version = excluded.version, updated_at = now()",
            live,
            [str(i.scheme) for i in idents],
            [str(i.routing) for i in idents],
            [final[h].version for h in live],
        )
        replaced = [h for h in live if h in live_here]
        if replaced:
            await conn.execute("DELETE FROM handle_values WHERE handle = ANY($1::text[])", replaced)
        rows = [value_to_row(h, v) for h in live for v in _values(final[h])]
        await conn.copy_records_to_table("handle_values", records=rows, columns=VALUE_COLUMNS)
        await write_answers(
            conn,
            {h: final[h].record for h in live},
            created=[h for h in live if h not in live_here],
        )
    await conn.copy_records_to_table(
        "history",
        records=history,
        columns=("handle", "version", "op", "actor", "changes", "record"),
    )
    return sorted(final)


def _values(op: Operation) -> tuple[HandleValue, ...]:
    return op.record.values if op.record is not None else ()


async def drop_unkept_answers(
    conn: asyncpg.Connection, directory: Directory, me: str, kept: Collection[str]
) -> int:
    """Delete the ``answers`` rows (schemas/sql/0006_answers.sql) of records this node
    neither holds nor keeps a copy of the chain of (a node restarted to follow fewer
    chains keeps their rows, and its edge would answer from them where its workers
    ask the next node); how many. Routed as the workers route: by each distinct
    routing key. Then every edge forgets all it kept."""
    gone = []
    for (text,) in await conn.fetch("SELECT DISTINCT routing_key FROM identifiers"):
        route = directory.route(me, _routing_key(text))
        if route.kind == "local" or (route.authority is not None and route.authority.name in kept):
            continue
        gone.append(text)
    if not gone:
        return 0
    dropped = await conn.fetchval(
        "WITH d AS (DELETE FROM answers a USING identifiers i WHERE a.handle = i.handle"
        " AND i.routing_key = ANY($1::text[]) RETURNING 1) SELECT count(*) FROM d",
        gone,
    )
    if dropped:
        await conn.execute("SELECT pg_notify($1, $2)", CHANGED_CHANNEL, EVERYTHING)
    return int(dropped)


def _routing_key(text: str) -> RoutingKey:
    """The RoutingKey ``str(RoutingKey)`` wrote (schemas.identifiers.model)."""
    namespace, _, labels = text.partition(":")
    ns = Namespace(namespace)
    if not labels:
        return RoutingKey(namespace=ns, labels=())
    if ns in (Namespace.HANDLE, Namespace.OID):
        return RoutingKey(namespace=ns, labels=tuple(labels.split(".")))
    if ns is Namespace.BID:  # one label: the sub-chain's code
        return RoutingKey(namespace=ns, labels=(labels,))
    return RoutingKey(namespace=ns, labels=tuple(labels))  # GS1, Ecode: digit by digit
