"""Check a node against the chains it holds: every block signed and linked, every
entry the one its block committed to, every record what the last operation on it
says, every child block anchored in its parent's chain. Reads only, in one snapshot;
reports all. A private value travels as a commitment (schemas/commitment.py): its
holder opens each commitment of its own chain with the value and salt it keeps;
other nodes compare the commitments they store with the chain's.

What it cannot see: blocks cut off the end of a chain together with the records they
wrote (compare heights with another node's, `idres_sync_applied_height`), and the
``history`` table, which it does not read. Blocks are checked with the key the
directory gives each node now, so a node whose key changed fails on its old blocks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg

from registry.store import fetch_records, fetch_salts
from resolver.topology import Directory
from schemas.chain import Tip, check_block, decode_anchor, decode_block, tip_after
from schemas.commitment import SaltMissing, commit_record
from schemas.commitment import encode as encode_record
from schemas.errors import EncodingError
from schemas.oplog import Operation, decode_operation
from schemas.record import Record
from sync.judge import followed, holds

_BATCH = 2000
_VERIFY_LOCK = 0x1D5E2


@dataclass(slots=True, kw_only=True)
class Report:
    chains: dict[str, int] = field(default_factory=dict)  # chain -> blocks checked
    records: int = 0
    anchors: int = 0
    pending: int = 0  # operations accepted but not yet in a block
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "ok": not self.problems,
            "chains": self.chains,
            "records": self.records,
            "anchors": self.anchors,
            "pending": self.pending,
            "problems": self.problems,
        }


async def verify(
    pool: asyncpg.Pool, directory: Directory, me: str, *, mirror_of: str | None = None
) -> Report:
    report = Report()
    held = [me, *followed(directory, me, mirror_of=mirror_of)]
    async with (
        pool.acquire() as conn,
        # one snapshot for every check: a write committing meanwhile is not a problem
        conn.transaction(readonly=True, isolation="repeatable_read"),
    ):
        # one check at a time per database, whichever worker was asked
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _VERIFY_LOCK)
        for chain in held:
            await _check_blocks(conn, directory, chain, report)
        await _check_records(conn, directory, me, report)
        for chain in held:
            parent = directory.by_name[chain].parent if chain in directory.by_name else None
            if parent is not None and parent in held:
                await _check_anchors(conn, chain, parent, report)
    return report


async def _rows(
    conn: asyncpg.Connection, query: str, *args: object
) -> AsyncIterator[asyncpg.Record]:
    async for row in conn.cursor(query, *args, prefetch=_BATCH):  # inside verify's transaction
        yield row


async def _check_blocks(
    conn: asyncpg.Connection, directory: Directory, chain: str, report: Report
) -> None:
    node = directory.by_name.get(chain)
    if node is None:
        report.problems.append(f"chain {chain!r} is held here but not in the directory")
        return
    tip, count = Tip(), 0
    blocks = _rows(
        conn,
        "SELECT height, hash, message FROM chain_blocks WHERE chain = $1 ORDER BY height",
        chain,
    )
    async for b in blocks:
        where = f"block {b['height']} of chain {chain!r}"
        try:
            block = check_block(decode_block(b["message"]), tip=tip, public_key_der=node.public_key)
        except EncodingError as exc:
            report.problems.append(f"{where}: {exc}")
            return  # everything after a broken link is unproven
        if block.hash != b["hash"]:
            report.problems.append(f"{where}: stored hash does not match the signed header")
        stored = await conn.fetch(
            "SELECT seq, kind, handle, version, hash, payload FROM chain_entries"
            " WHERE chain = $1 AND height = $2 ORDER BY seq",
            chain,
            b["height"],
        )
        expected = {e.seq: e for e in block.entries}
        for row in stored:
            e = expected.pop(row["seq"], None)
            same = (
                e is not None
                and e.hash == row["hash"]
                and e.payload == row["payload"]
                and e.kind == row["kind"]
                # the columns records are looked up by must say what the entry says
                and _names(e.kind, e.payload) == (row["handle"], row["version"])
            )
            if not same:
                report.problems.append(
                    f"entry {row['seq']} of chain {chain!r} differs from what {where} signed"
                    " (broken link: the stored entry was changed)"
                )
        for seq in sorted(expected):
            report.problems.append(f"entry {seq} of chain {chain!r} ({where}) is missing")
        tip, count = tip_after(block), count + 1
    report.chains[chain] = count


async def _check_records(
    conn: asyncpg.Connection, directory: Directory, me: str, report: Report
) -> None:
    report.pending = int(await conn.fetchval("SELECT count(*) FROM outbox WHERE op <> 'anchor'"))
    pending = {r["handle"] for r in await conn.fetch("SELECT DISTINCT handle FROM outbox")}
    # Each identifier's operations, this node's own chain first, newest first: the
    # first that applies here (its own, or from the chain that holds the identifier)
    # is what the record must be. Other chains' copies of their local records (each
    # node's 0.NA/node.admin) are in their logs but not applied here.
    ops = (
        "SELECT handle, version, chain, seq, height, payload FROM chain_entries"
        " WHERE kind = 'op' ORDER BY handle, (chain = $1) DESC, version DESC"
    )
    explained: set[str] = set()
    batch: list[tuple[asyncpg.Record, Operation]] = []

    async def check(rows: list[tuple[asyncpg.Record, Operation]]) -> None:
        names = [r["handle"] for r, _ in rows]
        records = await fetch_records(conn, names)
        salts = await fetch_salts(conn, [r["handle"] for r, _ in rows if r["chain"] == me])
        versions = {
            r["handle"]: r["version"]
            for r in await conn.fetch(
                "SELECT handle, version FROM identifiers WHERE handle = ANY($1::text[])", names
            )
        }
        for r, op in rows:
            handle = r["handle"]
            if handle in pending:
                continue  # a newer operation waits in the outbox
            report.records += 1
            link = (
                f"operation {r['seq']} (version {r['version']}) in block {r['height']} "
                f"of chain {r['chain']!r}"
            )
            have = records.get(handle)
            if op.record is None:
                if have is not None:
                    report.problems.append(f"{handle}: exists here, but {link} deleted it")
                continue
            if have is None:
                report.problems.append(f"{handle}: missing here, but {link} wrote it")
            elif versions.get(handle) != op.version:
                report.problems.append(
                    f"{handle}: version {versions.get(handle)} here, but {link} wrote version "
                    f"{op.version}"
                )
            else:
                if r["chain"] == me:  # the holder: its values in clear, with their salts
                    try:
                        have = commit_record(have, salts.get(handle, {}))
                    except SaltMissing as exc:
                        report.problems.append(f"{exc.message}: {link} cannot be checked")
                        continue
                if encode_record(have) != encode_record(op.record):
                    report.problems.append(
                        f"{handle}: {_difference(have, op.record)} differs from {link}"
                    )

    async for r in _rows(conn, ops, me):
        handle = r["handle"]
        if handle in explained:
            continue  # an older operation, or another chain's
        try:
            op = decode_operation(r["payload"])
        except EncodingError as exc:
            explained.add(handle)
            report.problems.append(
                f"{handle}: operation {r['seq']} of chain {r['chain']!r} cannot be read: {exc}"
            )
            continue
        if r["chain"] != me and not holds(directory, r["chain"], op):
            continue  # recorded in that chain, not applied here (not under its prefixes)
        explained.add(handle)
        batch.append((r, op))
        if len(batch) >= _BATCH:
            await check(batch)
            batch = []
    if batch:
        await check(batch)
    async for row in _rows(conn, "SELECT handle FROM identifiers ORDER BY handle"):
        if row["handle"] not in explained and row["handle"] not in pending:
            report.problems.append(f"{row['handle']}: a record here that no chain holds")


def _names(kind: str, payload: bytes) -> tuple[str, int] | None:
    """The identifier and version an entry is about (the anchored chain and height)."""
    try:
        if kind == "op":
            op = decode_operation(payload)
            return op.handle, op.version
        anchor = decode_anchor(payload)
        return anchor.chain, anchor.height
    except EncodingError:
        return None


def _difference(have: Record, want: Record) -> str:
    """Which part of ``have`` first departs from ``want``."""
    mine = {v.index: v for v in have.values}
    theirs = {v.index: v for v in want.values}
    for index in sorted(mine.keys() | theirs.keys()):
        a, b = mine.get(index), theirs.get(index)
        if (
            a is None
            or b is None
            or encode_record(Record(handle=have.handle, values=(a,)))
            != encode_record(Record(handle=have.handle, values=(b,)))
        ):
            return f"the value at index {index}"
    return "the record"


async def _check_anchors(conn: asyncpg.Connection, chain: str, parent: str, report: Report) -> None:
    anchored = {}
    for r in await conn.fetch(
        "SELECT seq, payload FROM chain_entries WHERE chain = $1 AND kind = 'anchor'"
        " AND handle = $2",
        parent,
        chain,
    ):
        anchor = decode_anchor(r["payload"])
        anchored[anchor.height] = (anchor.hash, r["seq"])
    for b in await conn.fetch(
        "SELECT height, hash FROM chain_blocks WHERE chain = $1 ORDER BY height", chain
    ):
        found = anchored.get(b["height"])
        if found is None:
            continue  # not anchored yet: the parent's next block will carry it
        if found[0] != b["hash"]:
            report.problems.append(
                f"block {b['height']} of chain {chain!r} is not the block anchored by entry "
                f"{found[1]} of chain {parent!r} (broken link)"
            )
        report.anchors += 1
