"""A record's rows in PostgreSQL, and the queries the store and sync share: values to
rows and back, records read in index order, private values' salts, the public answers
table, the outbox, and the notices of changed identifiers.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import asyncpg

from registry.authz import PREFIX_RECORD_PREFIX
from schemas.codec_cbor import decode_data, decode_refs, encode_data, encode_refs
from schemas.codec_json import public_answer
from schemas.commitment import COMMITMENT_FORMAT, CommittedValue
from schemas.record import DataFormat, HandleValue, Permissions, Record, TtlType
from sync.notices import CHANGED_CHANNEL, changed_payloads

VALUE_COLUMNS = (
    "handle",
    "idx",
    "type",
    "format",
    "data",
    "ttl",
    "ttl_type",
    "ts",
    "perms",
    "refs",
)


# the holder's own rows also keep each private value's salt (schemas/commitment.py);
# VALUE_COLUMNS alone leaves it NULL, as for public values and other nodes' copies
SALTED_COLUMNS = (*VALUE_COLUMNS, "salt")


_SELECT_MANY = (
    "SELECT handle, idx, type, format, data, ttl, ttl_type, ts, perms, refs"
    " FROM handle_values WHERE handle = ANY($1::text[]) ORDER BY handle, idx"
)


async def fetch_salts(
    conn: asyncpg.Connection, handles: Iterable[str]
) -> dict[str, dict[int, bytes]]:
    """The salts of the private values this node holds, by handle and index."""
    names = list(handles)
    if not names:
        return {}
    out: dict[str, dict[int, bytes]] = {}
    for r in await conn.fetch(
        "SELECT handle, idx, salt FROM handle_values"
        " WHERE handle = ANY($1::text[]) AND salt IS NOT NULL",
        names,
    ):
        out.setdefault(r["handle"], {})[r["idx"]] = r["salt"]
    return out


OUTBOX_LOCK = 0x1D5E0  # advisory lock: one transaction at a time appends to the outbox


async def append_outbox(
    conn: asyncpg.Connection, rows: Sequence[tuple[str, int, str, bytes]]
) -> None:
    """Append (handle, version, op, payload) rows to the outbox, in this transaction.

    The lock, held to commit, makes the outbox's order its commit order: a row
    numbered after another cannot commit before it, so the relay may take every
    visible row in order and never see one appear behind it later.
    """
    await conn.execute("SELECT pg_advisory_xact_lock($1)", OUTBOX_LOCK)
    await conn.copy_records_to_table(
        "outbox", records=rows, columns=("handle", "version", "op", "payload")
    )
    await conn.execute("NOTIFY idres_outbox")  # delivered at commit: wakes the relay


async def fetch_records(conn: asyncpg.Connection, handles: Iterable[str]) -> dict[str, Record]:
    names = list(handles)
    if not names:
        return {}
    grouped: dict[str, list[HandleValue]] = {}
    for r in await conn.fetch(_SELECT_MANY, names):
        grouped.setdefault(r["handle"], []).append(_row_to_value(r))
    return {h: Record(handle=h, values=tuple(vs)) for h, vs in grouped.items()}


async def announce_changed(conn: asyncpg.Connection, keys: list[str]) -> None:
    """Tell the node's edge and serving workers that ``keys`` changed, when ``conn``'s
    transaction commits (PostgreSQL delivers a transaction's notices at its commit, or
    never): a write here, or an apply by sync (sync/coherence.py)."""
    if keys:
        await conn.executemany(
            "SELECT pg_notify($1, $2)", [(CHANGED_CHANNEL, p) for p in changed_payloads(keys)]
        )


async def write_answers(
    conn: asyncpg.Connection,
    written: Mapping[str, Record | None],
    *,
    created: Collection[str] = (),
) -> None:
    """Rewrite the public answer of each identifier in ``written`` (its record as the
    caller's transaction has just stored it; None: deleted) in schemas/sql/0006_answers.sql;
    ``created``: those of them that did not exist before this transaction.
    Values in index order, as every read returns them (``fetch_records``): the edge
    serves the bytes a worker would (tests/registry/test_store.py holds them equal).
    Encoded from memory, not read back: a read back cost a third of a batch's rate."""
    rows = [
        (h, a.body, a.ttl, a.expires_at)
        for h, record in sorted(written.items())
        # a node's own 0.NA/ records (its admin key, its prefixes' grants) are held
        # here but resolved by no node from here (no node serves prefix 0)
        if record is not None
        and not h.startswith(PREFIX_RECORD_PREFIX + "/")
        and (a := public_answer(in_index_order(record))) is not None
    ]
    # a row can exist only for an identifier that did (a replace, a delete, an apply
    # of one held here): a registration of a new one has none to delete
    await conn.execute(
        "DELETE FROM answers WHERE handle = ANY($1::text[])",
        sorted(h for h in written if h not in created),
    )
    if rows:
        await conn.copy_records_to_table("answers", records=rows, columns=ANSWER_COLUMNS)


def in_index_order(record: Record) -> Record:
    """``record`` with its values as a read returns them (``_SELECT_MANY``: by index)."""
    values = tuple(sorted(record.values, key=_index))
    return record if values == record.values else Record(handle=record.handle, values=values)


def _index(value: HandleValue) -> int:
    return value.index


ANSWER_COLUMNS = ("handle", "body", "ttl", "expires_at")


def value_to_row(handle: str, v: HandleValue) -> tuple[Any, ...]:
    return (
        handle,
        v.index,
        v.type,
        COMMITMENT_FORMAT if isinstance(v, CommittedValue) else v.format.value,
        encode_data(v),
        v.ttl,
        v.ttl_type.value,
        v.timestamp,
        v.permissions.as_int(),
        encode_refs(v.references),
    )


def _row_to_value(r: asyncpg.Record) -> HandleValue:
    if r["format"] == COMMITMENT_FORMAT:  # another node's private value, as it travels
        return CommittedValue(
            index=r["idx"],
            type=r["type"],
            format=DataFormat.HEX,
            value=r["data"],
            ttl=r["ttl"],
            ttl_type=TtlType(r["ttl_type"]),
            timestamp=r["ts"],
            permissions=Permissions.from_bits(format(r["perms"], "04b")),
        )
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
