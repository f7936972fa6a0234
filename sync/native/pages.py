"""What the compiled checker of ``idres verify`` reads, fetched as PostgreSQL's binary
COPY (whole pages of rows as bytes, no Python object per row): each block of a chain
with the pages of entries that reach it, and with each page the state of the records
its operations name (as ``sync.verify._fetch_state`` reads it).

Entries come in seq order, a page at a time (the primary key (chain, seq) serves
them), so that the checker merges them with the blocks exactly as ``sync.verify._read``
does; a block's pages are read until an entry above its height has come, or the last.
With a second connection in the same snapshot, a page's records are read on it while
the first reads the next page's entries and last operations: PostgreSQL's lookups by
identifier are most of the time a check takes, and so they run on two of its cores.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg

from sync.native import Module, Page

PAGE = 2000  # entries a page
SPARE_WAIT = 0.5  # seconds to wait for a third connection
PAGES_AHEAD = 2
_BLOCKS_AHEAD = 8  # block rows a fetch (a block message holds every entry's payload)
_BLOCKS = (
    "SELECT height, hash, message FROM chain_blocks WHERE chain = $1 AND height > $2"
    " ORDER BY height LIMIT $3"
)
_ENTRIES = (
    "SELECT seq, height, kind, handle, version, hash, payload FROM chain_entries"
    " WHERE chain = {chain} AND seq > {after} ORDER BY seq LIMIT {limit}"
)
# ANY(ARRAY(...)): PostgreSQL looks the page's identifiers up in the index; with
# "IN (SELECT ...)" it plans a hash join over the whole table
_NAMES = (
    "ARRAY(SELECT handle FROM chain_entries"
    " WHERE chain = {chain} AND seq > {after} AND seq <= {upto} AND kind = 'op')"
)
_LAST = (
    "SELECT handle, chain, max(version) FROM chain_entries"
    " WHERE kind = 'op' AND handle = ANY({names}) GROUP BY handle, chain"
)
# the checker puts each record's values in index order
_RECORDS = (
    "SELECT i.handle, i.version, i.routing_key, v.idx, v.type, v.format, v.data, v.ttl,"
    " v.ttl_type, v.ts, v.perms, v.refs, v.salt FROM identifiers i LEFT JOIN handle_values v"
    " USING (handle) WHERE i.handle = ANY({names})"
)


@dataclass(frozen=True, slots=True)
class _Conn:
    """A connection, the lock its users take turns with, and the reads on it. A read is
    never cancelled halfway: PostgreSQL would abort the snapshot's transaction, which
    the next chain reads in; a reader that stops waits for them (``settle``)."""

    conn: asyncpg.Connection
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reads: list[asyncio.Future[bytes]] = field(default_factory=list)

    def start(self, query: str) -> asyncio.Future[bytes]:
        """The rows of ``query`` as binary COPY, read in a task of their own."""
        self.reads[:] = [r for r in self.reads if not r.done()]  # the ones awaited
        read = asyncio.ensure_future(self._copy(query))
        self.reads.append(read)
        return read

    async def copy(self, query: str) -> bytes:
        return await asyncio.shield(self.start(query))

    async def _copy(self, query: str) -> bytes:
        parts: list[bytes] = []

        async def sink(chunk: bytes) -> None:
            parts.append(chunk)

        async with self.lock:
            await self.conn.copy_from_query(query, output=sink, format="binary")
        return b"".join(parts)

    async def settle(self) -> None:
        await asyncio.gather(*self.reads, return_exceptions=True)
        self.reads.clear()


@dataclass(frozen=True, slots=True)
class _Fetched:
    page: Page
    last: bytes  # the last operations on its identifiers
    records: asyncio.Future[bytes] | None  # their records, being read; None: no entries


_Item = _Fetched | BaseException | None  # a page, what stopped the reading, the end


async def _pages(
    main: _Conn, side: _Conn, module: Module, literal: str, out: asyncio.Queue[_Item]
) -> None:
    """Every page of entries of the chain ``literal`` names, into ``out``: a page's
    records read on ``side`` while ``main`` goes on."""
    try:
        await _fill(main, side, module, literal, out)
    except Exception as exc:  # handed to the reader, which raises it
        await out.put(exc)


async def _fill(
    main: _Conn, side: _Conn, module: Module, literal: str, out: asyncio.Queue[_Item]
) -> None:
    after = 0
    while True:
        page = module.Page(await main.copy(_ENTRIES.format(chain=literal, after=after, limit=PAGE)))
        last, records = b"", None
        if page.count:
            names = _NAMES.format(chain=literal, after=after, upto=int(page.last_seq))
            records = side.start(_RECORDS.format(names=names))
            last = await main.copy(_LAST.format(names=names))
            after = int(page.last_seq)
        await out.put(_Fetched(page, last, records))
        if page.count < PAGE:
            await out.put(None)
            return


async def blocks(
    conn: asyncpg.Connection, side: asyncpg.Connection | None, module: Module, chain: str
) -> AsyncIterator[tuple[asyncpg.Record, list[Page]]]:
    """Each stored block of ``chain`` in height order, with the pages to feed the
    checker before it, read inside the transactions of ``conn`` and ``side`` (which
    share one snapshot; without ``side``, all on ``conn``)."""
    main = _Conn(conn)
    other = _Conn(side) if side is not None else main
    # COPY takes no parameters: the chain's name goes in as PostgreSQL quotes it
    async with main.lock:
        literal = await conn.fetchval("SELECT quote_literal($1::text)", chain)
    fetched: asyncio.Queue[_Item] = asyncio.Queue(PAGES_AHEAD)
    producer = asyncio.create_task(_pages(main, other, module, literal, fetched))
    try:
        height, highest, done = 0, 0, False
        while True:
            async with other.lock:
                rows = await other.conn.fetch(_BLOCKS, chain, height, _BLOCKS_AHEAD)
            for b in rows:
                pages: list[Page] = []
                while not done and highest <= b["height"]:
                    item = await fetched.get()
                    if isinstance(item, BaseException):
                        raise item
                    if item is None:
                        done = True
                        break
                    if item.records is not None:
                        item.page.add_state(item.last, await item.records)
                        highest = max(highest, int(item.page.max_height))
                    pages.append(item.page)
                yield b, pages
            if len(rows) < _BLOCKS_AHEAD:
                return
            height = rows[-1]["height"]
    finally:
        producer.cancel()  # where it waits: its reads go on to their end
        await asyncio.gather(producer, return_exceptions=True)
        await main.settle()
        await other.settle()


@contextlib.asynccontextmanager
async def spare(pool: asyncpg.Pool, snapshot: str) -> AsyncIterator[asyncpg.Connection | None]:
    """A third connection in ``snapshot`` if the pool has one free soon, else None: the
    compiled checker reads records on it beside the others (``blocks``)."""
    if not pool.get_idle_size() and pool.get_size() >= pool.get_max_size():
        yield None  # every connection taken: none is waited for
        return
    try:  # another task may take the free one first
        conn = await pool.acquire(timeout=SPARE_WAIT)
    except TimeoutError:
        yield None
        return
    try:
        async with conn.transaction(readonly=True, isolation="repeatable_read"):
            await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            yield conn
    finally:
        await pool.release(conn)
