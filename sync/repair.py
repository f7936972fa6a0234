"""Records found departing from their signed chain, rewritten from it.

Whoever finds one (``idres verify``, the node's continuous check in sync/audit.py, a
proof asked for) calls ``repair`` with the mismatches a check reported. In one
transaction each record is checked again under its row lock (a write may have landed
since) and, if it still departs, rewritten as the operation its chain signed says:
its version, its values and its public answer; a record the chain deleted goes.
Then the node's edge and workers forget it (``announce_changed``), so the forged
value is served by no cache, and the finding is kept in ``integrity_findings``.

What the chain cannot give back: a private value of this node's own records travels
only as a commitment. If the stored value still opens it, it is kept; if not, it is
moved to ``withheld_values`` (served to no one, kept for the operator, who restores
it from a backup) and the record is served without it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import asyncpg

from registry.rows import (
    SALTED_COLUMNS,
    announce_changed,
    fetch_records,
    fetch_salts,
    value_to_row,
    write_answers,
)
from resolver.topology import Directory
from schemas.commitment import CommittedValue, opens
from schemas.errors import StoreUnavailable
from schemas.identifiers import parse
from schemas.oplog import decode_operation
from schemas.record import HandleValue, Record
from sync.verify import Mismatch, check_handles

log = logging.getLogger("idres.sync.repair")


@dataclass(slots=True, kw_only=True)
class Repaired:
    repaired: list[str] = field(default_factory=list)  # rewritten from the chain
    withheld: list[tuple[str, int]] = field(default_factory=list)  # private values taken out
    problems: list[str] = field(default_factory=list)  # what was found, as verify says it


async def repair(
    pool: asyncpg.Pool,
    directory: Directory,
    me: str,
    handles: Iterable[str],
    *,
    found_by: str,
) -> Repaired:
    """Check the records ``handles`` (those a check found departing) again, and rewrite
    from its chain each that still departs from it."""
    out = Repaired()
    names = sorted(set(handles))
    if not names:
        return out
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT 1 FROM identifiers WHERE handle = ANY($1::text[]) ORDER BY handle"
                " FOR UPDATE",
                names,
            )
            again = await check_handles(conn, directory, me, names)
            written: dict[str, Record | None] = {}
            for m in again.mismatches:
                problem = next((p for p in again.problems if p.startswith(m.handle + ":")), "")
                record = await _rewrite(conn, me, m, out)
                written[m.handle] = record
                out.repaired.append(m.handle)
                out.problems.append(problem)
                await conn.execute(
                    "INSERT INTO integrity_findings (handle, found_by, problem, repaired)"
                    " VALUES ($1, $2, $3, $4)",
                    m.handle,
                    found_by,
                    problem,
                    not any(h == m.handle for h, _ in out.withheld),
                )
            if written:
                await write_answers(conn, written)
                await announce_changed(conn, sorted(written))
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise StoreUnavailable(f"repairing records from their chain failed: {exc}") from exc
    for handle, problem in zip(out.repaired, out.problems, strict=True):
        log.warning("repaired %s from its chain (found by %s): %s", handle, found_by, problem)
    for handle, index in out.withheld:
        log.error(
            "%s: the private value at index %d no longer opens its commitment: withheld "
            "(withheld_values); restore it from a backup",
            handle,
            index,
        )
    return out


async def _rewrite(conn: asyncpg.Connection, me: str, m: Mismatch, out: Repaired) -> Record | None:
    op = decode_operation(m.payload, check_form=False)  # bound by its checked block
    if op.record is None:
        await conn.execute("DELETE FROM identifiers WHERE handle = $1", m.handle)
        return None
    rows: list[tuple[object, ...]] = []
    kept: list[HandleValue] = []
    lost: list[int] = []
    stored = (await fetch_records(conn, [m.handle])).get(m.handle)
    salts = (await fetch_salts(conn, [m.handle])).get(m.handle, {}) if m.chain == me else {}
    mine = {v.index: v for v in stored.values} if stored is not None else {}
    for v in op.record.values:
        if m.chain == me and isinstance(v, CommittedValue):
            # the holder's private value: only its own copy opens the commitment
            have, salt = mine.get(v.index), salts.get(v.index)
            if have is not None and salt is not None and opens(m.handle, v, have, salt):
                rows.append((*value_to_row(m.handle, have), salt))
                kept.append(have)
            else:
                lost.append(v.index)
            continue
        rows.append((*value_to_row(m.handle, v), None))
        kept.append(v)
    ident = parse(m.handle)
    await conn.execute(
        "INSERT INTO identifiers (handle, scheme, routing_key, version) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (handle) DO UPDATE SET version = excluded.version, updated_at = now()",
        m.handle,
        str(ident.scheme),
        str(ident.routing),
        op.version,
    )
    if lost:
        await conn.execute(
            "INSERT INTO withheld_values (handle, idx, type, format, data, ttl, ttl_type, ts,"
            " perms, refs, salt) SELECT handle, idx, type, format, data, ttl, ttl_type, ts,"
            " perms, refs, salt FROM handle_values WHERE handle = $1 AND idx = ANY($2::int[])",
            m.handle,
            lost,
        )
        out.withheld += [(m.handle, i) for i in lost]
    await conn.execute("DELETE FROM handle_values WHERE handle = $1", m.handle)
    await conn.copy_records_to_table("handle_values", records=rows, columns=SALTED_COLUMNS)
    return Record(handle=m.handle, values=tuple(kept))


async def finding_counts(conn: asyncpg.Connection) -> dict[tuple[str, bool], int]:
    """How many findings of each kind (found by, repaired) this node has kept."""
    return {
        (r["found_by"], r["repaired"]): r["n"]
        for r in await conn.fetch(
            "SELECT found_by, repaired, count(*) AS n FROM integrity_findings"
            " GROUP BY found_by, repaired"
        )
    }
