"""What the compiled checker of ``idres verify`` reads, fetched as PostgreSQL's binary
COPY (whole pages of rows as bytes, no Python object per row): each block of a chain
with the pages of entries that reach it, and with each page the state of the records
its operations name (as ``sync.verify._fetch_state`` reads it).

Entries come in seq order, a page at a time (the primary key (chain, seq) serves
them), so that the checker merges them with the blocks exactly as ``sync.verify._read``
does; a block's pages are read until an entry above its height has come, or the last.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg

from sync.native import Module, Page

PAGE = 2000  # entries a page
_BLOCKS_AHEAD = 8  # block rows a fetch (a block message holds every entry's payload)
_ENTRIES = (
    "SELECT seq, height, kind, handle, version, hash, payload FROM chain_entries"
    " WHERE chain = {chain} AND seq > {after} ORDER BY seq LIMIT {limit}"
)
_NAMES = (
    "SELECT handle FROM chain_entries"
    " WHERE chain = {chain} AND seq > {after} AND seq <= {upto} AND kind = 'op'"
)
_LAST = (
    "SELECT handle, chain, max(version) FROM chain_entries"
    " WHERE kind = 'op' AND handle IN ({names}) GROUP BY handle, chain"
)
_RECORDS = (
    "SELECT i.handle, i.version, i.routing_key, v.idx, v.type, v.format, v.data, v.ttl,"
    " v.ttl_type, v.ts, v.perms, v.refs, v.salt FROM identifiers i LEFT JOIN handle_values v"
    " USING (handle) WHERE i.handle IN ({names}) ORDER BY i.handle, v.idx"
)


async def _copy(conn: asyncpg.Connection, query: str) -> bytes:
    parts: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        parts.append(chunk)

    await conn.copy_from_query(query, output=sink, format="binary")
    return b"".join(parts)


async def blocks(
    conn: asyncpg.Connection, module: Module, chain: str
) -> AsyncIterator[tuple[asyncpg.Record, list[Page]]]:
    """Each stored block of ``chain`` in height order, with the pages to feed the
    checker before it (inside the caller's transaction)."""
    # COPY takes no parameters: the chain's name goes in as PostgreSQL quotes it
    literal = await conn.fetchval("SELECT quote_literal($1::text)", chain)
    after, highest, done = 0, 0, False
    async for b in conn.cursor(
        "SELECT height, hash, message FROM chain_blocks WHERE chain = $1 ORDER BY height",
        chain,
        prefetch=_BLOCKS_AHEAD,
    ):
        pages: list[Page] = []
        while not done and highest <= b["height"]:
            page = module.Page(
                await _copy(conn, _ENTRIES.format(chain=literal, after=after, limit=PAGE))
            )
            if page.count:
                names = _NAMES.format(chain=literal, after=after, upto=int(page.last_seq))
                page.add_state(
                    await _copy(conn, _LAST.format(names=names)),
                    await _copy(conn, _RECORDS.format(names=names)),
                )
                after, highest = int(page.last_seq), max(highest, int(page.max_height))
            done = page.count < PAGE
            pages.append(page)
        yield b, pages
