"""The node's own chain: cut blocks from the outbox, then publish them to the log.

The registry appends each accepted operation to ``outbox`` in the transaction that
made it, one appending transaction at a time, so the outbox's order is its commit
order. The relay takes the visible rows in that order, numbers and chains them,
signs the block, and in one transaction stores block and entries and removes the rows. Then it
publishes every stored block past the last acknowledged one. A crash anywhere
repeats a step, never loses one; readers drop a block they already have by height.

Before its first cut the relay re-encodes any operation the outbox still holds from
before commitments (format 1 with a value without public read in clear): such a
row, written by an older idres, would otherwise carry the value out of its holder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg
import cbor2
from cryptography.hazmat.primitives.asymmetric import ed25519

from registry.rows import fetch_salts
from schemas.chain import Block, Kind, Tip, cut_block
from schemas.commitment import SALT_BYTES, commit_record, in_clear, record_from_obj
from schemas.errors import EncodingError, StoreUnavailable
from schemas.oplog import Operation, encode_operation
from sync.log import Log, LogUnavailable, chain_topic

log = logging.getLogger("idres.sync.relay")
OUTBOX_CHANNEL = "idres_outbox"
_LOCK_CLASS = 0x1D5E  # advisory lock (class, hashtext(chain)): one relay per chain


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayConfig:
    chain: str
    alg: str = "sha256"
    max_entries: int = 1000
    max_bytes: int = 1024 * 1024
    idle_poll: float = 0.5  # seconds between looks when nothing woke the relay
    max_backoff: float = 5.0  # between publishing attempts while the log is down


async def load_tip(conn: asyncpg.Connection, chain: str) -> Tip:
    row = await conn.fetchrow(
        "SELECT height, hash, last_seq, head FROM chain_blocks WHERE chain = $1"
        " ORDER BY height DESC LIMIT 1",
        chain,
    )
    if row is None:
        return Tip()
    return Tip(height=row["height"], block_hash=row["hash"], seq=row["last_seq"], head=row["head"])


async def block_hashes(
    conn: asyncpg.Connection, wanted: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], bytes]:
    """The hashes of the blocks (chain, height) in ``wanted`` that this node holds."""
    if not wanted:
        return {}
    rows = await conn.fetch(
        "SELECT b.chain, b.height, b.hash FROM chain_blocks b"
        " JOIN unnest($1::text[], $2::bigint[]) AS w(chain, height)"
        " ON b.chain = w.chain AND b.height = w.height",
        [c for c, _ in wanted],
        [h for _, h in wanted],
    )
    return {(r["chain"], r["height"]): r["hash"] for r in rows}


async def store_blocks(
    conn: asyncpg.Connection, blocks: Sequence[tuple[Block, Sequence[tuple[str, int]]]]
) -> None:
    """Blocks and their entries; each entry's ref names its identifier and version."""
    await conn.executemany(
        "INSERT INTO chain_blocks (chain, height, hash, first_seq, last_seq, head, message,"
        " cut_at) VALUES ($1, $2, $3, $4, $5, $6, $7, to_timestamp($8::float8 / 1000))",
        [
            (
                b.header.chain,
                b.header.height,
                b.hash,
                b.header.first,
                b.last_seq,
                b.header.head,
                b.message(),
                b.header.at,
            )
            for b, _ in blocks
        ],
    )
    await conn.copy_records_to_table(
        "chain_entries",
        records=[
            (b.header.chain, e.seq, b.header.height, e.kind, handle, version, e.hash, e.payload)
            for b, refs in blocks
            for e, (handle, version) in zip(b.entries, refs, strict=True)
        ],
        columns=("chain", "seq", "height", "kind", "handle", "version", "hash", "payload"),
    )


# the first bytes of an operation of format 1: a map of 7, then "v": 1 (schemas.oplog)
_FORMAT_1 = b"\xa7\x61v\x01"


async def recommit_outbox(conn: asyncpg.Connection) -> int:
    """Re-encode, in ``conn``'s transaction, every outbox operation of format 1 that
    carries a private value in clear; how many. A value the record still holds at
    that version gets a salt kept beside it (so verify can open its commitment);
    an older one gets a salt thrown away: nobody can read it from the chain, and
    its holder no longer answers it anyway."""
    rows = await conn.fetch(
        "SELECT seq, payload FROM outbox WHERE op <> 'anchor' AND substr(payload, 1, 4) = $1"
        " ORDER BY seq",
        _FORMAT_1,
    )
    changed = 0
    for row in rows:
        try:
            obj = cbor2.loads(row["payload"])
            record = record_from_obj(obj["record"], clear_private=True)
        except (EncodingError, ValueError, KeyError, TypeError, cbor2.CBORDecodeError):
            continue  # not an operation this node wrote: cutting it changes nothing
        private = in_clear(record)
        if not private:
            continue
        current = await conn.fetchval(
            "SELECT version FROM identifiers WHERE handle = $1", obj["handle"]
        )
        kept = (await fetch_salts(conn, [record.handle])).get(record.handle, {})
        salts = {i: kept.get(i) or os.urandom(SALT_BYTES) for i in private}
        if current == obj["version"]:
            await conn.executemany(
                "UPDATE handle_values SET salt = $3 WHERE handle = $1 AND idx = $2"
                " AND salt IS NULL",
                [(record.handle, i, salt) for i, salt in salts.items()],
            )
            kept = (await fetch_salts(conn, [record.handle])).get(record.handle, {})
            salts.update(kept)
        payload = encode_operation(
            Operation(
                op=obj["op"],
                handle=obj["handle"],
                version=obj["version"],
                actor=obj["actor"],
                at=obj["at"],
                record=commit_record(record, salts),
            )
        )
        await conn.execute("UPDATE outbox SET payload = $2 WHERE seq = $1", row["seq"], payload)
        changed += 1
    return changed


class Relay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        key: ed25519.Ed25519PrivateKey,
        config: RelayConfig,
        *,
        log: Log | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pool = pool
        self.key = key
        self.config = config
        self.log = log
        self.clock = clock
        self.published = 0
        self.depth = 0  # outbox rows, as last counted
        self.height = 0  # the last block cut, as last counted
        self._wake = asyncio.Event()
        self._failing_since: float | None = None
        self._recommitted = False  # the outbox holds no operation of format 1 in clear

    async def cut(self) -> Block | None:
        """One block from the outbox, if it holds any row (None if not, or if another
        relay of this chain is cutting)."""
        c = self.config
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                if not await conn.fetchval(
                    "SELECT pg_try_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS, c.chain
                ):
                    return None  # another relay of this chain is at work
                if not self._recommitted:
                    n = await recommit_outbox(conn)
                    if n:
                        log.warning(
                            "relay %s: %d operations re-encoded with commitments", c.chain, n
                        )
                # every visible row, in order: no row can commit behind them later
                # (registry.store.append_outbox serializes appends to commit order)
                rows = await conn.fetch(
                    "SELECT seq, op, handle, version, payload FROM outbox ORDER BY seq LIMIT $1",
                    c.max_entries,
                )
                taken: list[asyncpg.Record] = []
                size = 0
                for r in rows:
                    size += len(r["payload"])
                    if taken and size > c.max_bytes:
                        break
                    taken.append(r)
                if not taken:
                    return None
                items: list[tuple[Kind, bytes]] = [
                    ("anchor" if r["op"] == "anchor" else "op", r["payload"]) for r in taken
                ]
                block = cut_block(
                    chain=c.chain,
                    alg=c.alg,
                    tip=await load_tip(conn, c.chain),
                    items=items,
                    key=self.key,
                    at=int(self.clock() * 1000),
                )
                await store_blocks(conn, [(block, [(r["handle"], r["version"]) for r in taken])])
                await conn.execute(
                    "DELETE FROM outbox WHERE seq = ANY($1::bigint[])", [r["seq"] for r in taken]
                )
            self._recommitted = True  # at commit: the rows it re-encoded are cut with it
            return block
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StoreUnavailable(f"cutting a block of {c.chain} failed: {exc}") from exc

    async def publish(self) -> int:
        """Publish stored blocks the log has not acknowledged; how many were sent."""
        if self.log is None:
            return 0
        chain = self.config.chain
        topic = chain_topic(chain)
        sent = 0
        await self.log.ensure_topic(topic)
        while True:
            async with self.pool.acquire() as conn:
                done = await conn.fetchval(
                    "SELECT height FROM sync_published WHERE chain = $1", chain
                )
                rows = await conn.fetch(
                    "SELECT height, message FROM chain_blocks WHERE chain = $1 AND height > $2"
                    " ORDER BY height LIMIT 64",
                    chain,
                    done or 0,
                )
            if not rows:
                return sent
            await self.log.append(topic, chain.encode(), [r["message"] for r in rows])
            async with self.pool.acquire() as conn:
                await conn.execute(
                    "INSERT INTO sync_published (chain, height) VALUES ($1, $2)"
                    " ON CONFLICT (chain) DO UPDATE SET height = GREATEST("
                    "sync_published.height, excluded.height)",
                    chain,
                    rows[-1]["height"],
                )
            sent += len(rows)
            self.published = rows[-1]["height"]

    async def count(self) -> None:
        """Refresh ``depth`` and ``height`` (for /metrics)."""
        async with self.pool.acquire() as conn:
            self.depth = int(await conn.fetchval("SELECT count(*) FROM outbox"))
            self.height = int(
                await conn.fetchval(
                    "SELECT coalesce(max(height), 0) FROM chain_blocks WHERE chain = $1",
                    self.config.chain,
                )
            )
            done = await conn.fetchval(
                "SELECT height FROM sync_published WHERE chain = $1", self.config.chain
            )
            self.published = max(self.published, done or 0)

    def wake(self, *args: object) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Cut and publish until cancelled; a database or log outage only delays."""
        listener: asyncpg.pool.PoolConnectionProxy | None = None
        store_down_since: float | None = None
        backoff, retry_at, counted_at = 0.0, 0.0, 0.0
        try:
            while True:
                self._wake.clear()  # a write committing from here on wakes the wait below
                delay = self.config.idle_poll
                try:
                    if listener is None:
                        listener = await self.pool.acquire()
                        await listener.add_listener(OUTBOX_CHANNEL, self.wake)
                    if self.clock() - counted_at >= 1.0:
                        await self.count()
                        counted_at = self.clock()
                    while await self.cut() is not None:
                        pass
                    if store_down_since is not None:
                        log.warning("relay %s: the database is back", self.config.chain)
                    store_down_since = None
                except (
                    StoreUnavailable,
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                    OSError,
                ) as exc:
                    if store_down_since is None:  # said once per outage, not per retry
                        store_down_since = self.clock()
                        log.warning("relay %s: cutting paused: %s", self.config.chain, exc)
                    if listener is not None:
                        # UNLISTEN before it goes back: the pool's reset leaves session
                        # state alone (registry.database._reset)
                        with contextlib.suppress(Exception):
                            await listener.remove_listener(OUTBOX_CHANNEL, self.wake)
                        with contextlib.suppress(Exception):
                            await self.pool.release(listener)
                        listener = None
                    delay = 1.0
                if self.clock() >= retry_at:
                    try:
                        await self.publish()
                        if self._failing_since is not None:
                            log.warning(
                                "relay %s: the log is back after %.1f s",
                                self.config.chain,
                                self.clock() - self._failing_since,
                            )
                        self._failing_since, backoff = None, 0.0
                    except (
                        LogUnavailable,
                        StoreUnavailable,
                        asyncpg.PostgresError,
                        asyncpg.InterfaceError,
                        OSError,
                    ) as exc:
                        if self._failing_since is None:
                            self._failing_since = self.clock()
                            log.warning("relay %s: publishing paused: %s", self.config.chain, exc)
                        backoff = min(self.config.max_backoff, max(0.1, backoff * 2))
                        retry_at = self.clock() + backoff
                if backoff:
                    delay = min(delay, max(0.0, retry_at - self.clock()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
        finally:
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.remove_listener(OUTBOX_CHANNEL, self.wake)
                with contextlib.suppress(Exception):
                    await self.pool.release(listener)
