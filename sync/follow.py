"""Follow the chains of the nodes below this one: check each block, apply it, anchor it.

A node follows every chain of its descendants (a backbone its sub-chains, the super
node all of them). Each block is checked against the chain's tip (signature by the
node its parent delegated, links, Merkle root) and applied in one transaction with
the position reached, so a crash can neither skip nor repeat a block. A block this
node cannot accept goes to ``dead_letters`` with the reason, and the stream goes on.
A node anchors the blocks of its direct children into its own chain. What to do with
each block is decided in ``sync/judge.py``; this module reads, stores and keeps count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

import asyncpg

from registry.rows import announce_changed, append_outbox
from resolver.topology import Directory
from schemas.chain import (
    Block,
    Tip,
    anchor_of,
    decode_anchor,
    decode_block,
    tip_after,
)
from schemas.errors import EncodingError, StoreUnavailable
from schemas.oplog import Operation
from sync.apply import apply_operations
from sync.judge import Accept, Dead, Gap, Wait, followed, foreign_reason, judge
from sync.log import (
    DEAD_LETTER_TOPIC,
    DIRECTORY_TOPIC,
    Log,
    LogForbidden,
    LogRecord,
    LogUnavailable,
    chain_topic,
)
from sync.notices import ChainView, FollowerView, is_current
from sync.relay import block_hashes, store_blocks

log = logging.getLogger("idres.sync.follow")
FOLLOW_LOCK = 0x1D5E1  # advisory lock (class, hashtext(chain)): one follower per chain
_STALL_RETRY = 5.0  # seconds before a stalled chain is read again
_BLOCKS_PER_TRANSACTION = 64  # bounds a transaction's locks and size
_WAIT_RETRY = 0.2  # seconds before a chain waiting for a block below it is read again
_WAIT_STALLS = 30.0  # seconds of waiting after which the chain counts as stalled


@dataclass(frozen=True, slots=True, kw_only=True)
class Position:
    next_offset: int = 0
    tip_offset: int = -1  # where the last applied block was read: a gap rewinds to after it
    tip: Tip = field(default_factory=Tip)
    cut_at: float | None = None  # when the last applied block was cut (seconds)
    applied_at: float | None = None


class Follower:
    def __init__(
        self,
        pool: asyncpg.Pool,
        log: Log,
        *,
        me: str,
        directory: Callable[[], Directory],
        on_applied: Callable[[list[str]], None] = lambda handles: None,
        clock: Callable[[], float] = time.time,
        mirror_of: str | None = None,
        tips: Callable[[str], Awaitable[tuple[int, bytes] | None]] | None = None,
    ) -> None:
        self.pool = pool
        # asks a chain's node where its chain ends (sync/tips.py); None: never asked,
        # and a quiet chain's copy stops counting as current
        self.tips = tips
        self.confirmed: dict[str, float] = {}  # chain -> when its node confirmed our tip
        self.mirror_of = mirror_of
        self.log = log
        self.me = me
        self.directory = directory
        self.on_applied = on_applied
        self.clock = clock
        self.positions: dict[str, Position] = {}
        self.behind: dict[str, int] = {}
        self.refreshed_at = float("-inf")  # when ``behind`` was last worked out
        self.dead_letters = 0
        self.stalled: dict[str, tuple[str, float]] = {}  # chain -> (why, when to retry)
        # chain -> (why, where to read again from, since when): a block is missing
        self.gaps: dict[str, tuple[str, int, float]] = {}
        self.waiting: dict[str, float] = {}  # chain -> when to read it again
        self.waiting_since: dict[str, float] = {}  # chain -> since when, unbroken
        self._loaded = False

    async def load(self) -> None:
        try:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT chain, next_offset, tip_offset, height, block_hash, seq, head,"
                    " extract(epoch FROM cut_at) AS cut, extract(epoch FROM applied_at) AS at"
                    " FROM sync_positions"
                )
                self.dead_letters = int(
                    await conn.fetchval(
                        "SELECT count(*) FROM dead_letters WHERE chain <> $1", DIRECTORY_TOPIC
                    )
                )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StoreUnavailable(f"reading sync positions failed: {exc}") from exc
        self.positions = {
            r["chain"]: Position(
                next_offset=r["next_offset"],
                tip_offset=r["tip_offset"],
                tip=Tip(
                    height=r["height"], block_hash=r["block_hash"], seq=r["seq"], head=r["head"]
                ),
                cut_at=float(r["cut"]) if r["cut"] is not None else None,
                applied_at=float(r["at"]),
            )
            for r in rows
        }
        self._loaded = True

    def chains(self) -> list[str]:
        return followed(self.directory(), self.me, mirror_of=self.mirror_of)

    async def step(self, *, wait: float = 0.5) -> int:
        """Fetch what is new in the followed chains and apply it; blocks applied."""
        if not self._loaded:
            await self.load()
        now = self.clock()
        chains = [
            c
            for c in self.chains()
            if self.stalled.get(c, ("", 0.0))[1] <= now and self.waiting.get(c, 0.0) <= now
        ]
        if not chains:
            await asyncio.sleep(wait)
            return 0
        readable = []
        for chain in chains:
            try:
                await self.log.ensure_topic(chain_topic(chain))
            except LogForbidden as exc:  # one chain this node may not read: the rest go on
                self._stall(chain, str(exc))
                continue
            readable.append(chain)
        chains = readable
        if not chains:
            await asyncio.sleep(wait)
            return 0
        positions = {chain_topic(c): self.positions.get(c, Position()).next_offset for c in chains}
        try:
            records = await self.log.fetch(positions, wait=wait)
        except LogForbidden as exc:
            if exc.topic is None or not exc.topic.startswith("idres.chain."):
                raise
            self._stall(exc.topic.removeprefix("idres.chain."), str(exc))
            return 0
        by_chain: dict[str, list[LogRecord]] = {}
        for r in records:
            by_chain.setdefault(r.topic.removeprefix("idres.chain."), []).append(r)
        applied = 0
        # the deepest chains first: a block below is here before the anchor that names it
        depth = self.directory().ancestors
        for chain in sorted(by_chain, key=lambda c: -len(depth(c))):
            self.waiting.pop(chain, None)
            applied += await self._apply_batch(chain, by_chain[chain])
        for chain, (_, rewind_to, since) in list(self.gaps.items()):
            if chain in chains and chain not in by_chain and now - since >= _STALL_RETRY:
                await self._rewind(chain, rewind_to)  # at the end: read the chain again
        return applied

    async def _rewind(self, chain: str, offset: int) -> None:
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "SELECT pg_advisory_xact_lock($1, hashtext($2))", FOLLOW_LOCK, chain
                )
                position = await _stored_position(conn, chain)
                if position.tip_offset + 1 == offset:  # nothing applied meanwhile
                    position = replace(position, next_offset=offset)
                    await store_position(conn, chain, position)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StoreUnavailable(f"rewinding chain {chain} failed: {exc}") from exc
        self.positions[chain] = position
        reason, _, _ = self.gaps[chain]
        self.gaps[chain] = (reason, offset, self.clock())

    async def _apply_batch(self, chain: str, batch: list[LogRecord]) -> int:
        """Apply ``batch`` in transactions of up to ``_BLOCKS_PER_TRANSACTION`` blocks;
        one the database refuses is tried again alone, and the chain stalls at it."""
        applied = 0
        for n in range(0, len(batch), _BLOCKS_PER_TRANSACTION):
            chunk = batch[n : n + _BLOCKS_PER_TRANSACTION]
            try:
                applied += await self._apply_chunk(chain, chunk)
            except _Refused:
                for record in chunk:  # find the block it cannot store
                    try:
                        applied += await self._apply_chunk(chain, [record])
                    except _Refused as exc:
                        self._stall(
                            chain, f"block at offset {record.offset} cannot be stored: {exc}"
                        )
                        return applied
            if chain in self.stalled and chain not in self.waiting:
                log.warning("chain %s moves again", chain)
                del self.stalled[chain]
            if chain in self.waiting:
                break  # the rest is read again from the same place
        return applied

    def _stall(self, chain: str, why: str) -> None:
        if chain not in self.stalled:
            log.warning("chain %s stalled: %s (retrying)", chain, why)
        self.stalled[chain] = (why, self.clock() + _STALL_RETRY)

    async def _apply_chunk(self, chain: str, batch: list[LogRecord]) -> int:
        """Check and apply ``batch`` in one transaction, with the position it reaches."""
        directory = self.directory()
        node = directory.by_name.get(chain)
        decoded: list[tuple[LogRecord, Block | EncodingError]] = []
        for record in batch:  # decoding needs no database: done before the transaction
            try:
                decoded.append((record, decode_block(record.value)))
            except EncodingError as exc:
                decoded.append((record, exc))
        accepted: list[tuple[Block, list[Operation], list[tuple[str, int]]]] = []
        dead: list[tuple[LogRecord, str, bytes]] = []  # (where, why, what is kept)
        gap: str | None = None
        wait: str | None = None
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                # one follower per chain and database; the position it trusts is the
                # one stored, read under the lock (another process may have moved it)
                await conn.execute(
                    "SELECT pg_advisory_xact_lock($1, hashtext($2))", FOLLOW_LOCK, chain
                )
                position = await _stored_position(conn, chain)
                rewind_to = position.tip_offset + 1
                held = await _held_hashes(conn, chain, decoded, position.tip.height)
                below = await _anchored_hashes(conn, decoded)
                for record, block in decoded:
                    if record.offset != position.next_offset:
                        continue  # read from a position that was not the stored one
                    verdict = judge(
                        chain,
                        block,
                        tip=position.tip,
                        directory=directory,
                        held=held,
                        below=below,
                    )
                    if isinstance(verdict, Wait):
                        wait = verdict.why  # read it again, from here, in a moment
                        break
                    if isinstance(verdict, Accept):
                        b = verdict.block
                        accepted.append((b, verdict.ops, verdict.refs))
                        if verdict.foreign:  # one dead letter a block, however many
                            dead.append((record, foreign_reason(chain, verdict), record.value))
                        held[b.header.height] = b.hash
                        below[(chain, b.header.height)] = b.hash
                        position = Position(
                            next_offset=record.offset + 1,
                            tip_offset=record.offset,
                            tip=tip_after(b),
                            cut_at=b.header.at / 1000,
                        )
                        gap = None
                        continue
                    # A gap: a repeat out of order (an old producer's late batch), or a
                    # block after one refused here. Passed; if the missing block never
                    # comes, ``step`` reads the chain again from after its tip.
                    if isinstance(verdict, Gap):
                        gap = verdict.why
                    elif isinstance(verdict, Dead):
                        dead.append((record, verdict.why, record.value))
                    position = replace(position, next_offset=record.offset + 1)
                kept = [
                    (r, why, what)
                    for r, why, what in dead
                    if await keep_dead_letter(conn, chain, r.offset, why, what)
                ]
                changed: list[str] = []
                if accepted:
                    await store_blocks(conn, [(b, refs) for b, _, refs in accepted])
                    changed = await apply_operations(
                        conn, [op for _, ops, _ in accepted for op in ops]
                    )
                    # delivered at commit, with the change: every serving worker of
                    # this node forgets its cached answers for them then
                    await announce_changed(conn, changed)
                    if node is not None and node.parent == self.me:
                        anchors = [anchor_of(b) for b, _, _ in accepted]
                        await append_outbox(
                            conn, [(a.chain, a.height, "anchor", a.encode()) for a in anchors]
                        )
                await store_position(conn, chain, position)
        except _TRANSIENT as exc:
            raise StoreUnavailable(f"applying blocks of {chain} failed: {exc}") from exc
        except asyncpg.PostgresError as exc:
            raise _Refused(str(exc)) from exc
        self.positions[chain] = replace(position, applied_at=self.clock())
        if gap is not None:
            if chain not in self.gaps:
                log.warning("chain %s: %s", chain, gap)
                self.gaps[chain] = (gap, rewind_to, self.clock())
        elif accepted and chain in self.gaps:
            log.warning("chain %s: the missing block arrived", chain)
            del self.gaps[chain]
        if changed:
            self.on_applied(changed)
        if wait is None:
            self.waiting_since.pop(chain, None)
        else:
            now = self.clock()
            self.waiting[chain] = now + _WAIT_RETRY
            since = self.waiting_since.setdefault(chain, now)
            if now - since >= _WAIT_STALLS:  # the block never came: say so in /metrics
                self._stall(chain, wait)
        for record, reason, what in kept:
            self.dead_letters += 1
            log.warning("chain %s offset %d refused: %s", chain, record.offset, reason)
            with contextlib.suppress(LogUnavailable):  # dead_letters keeps it regardless
                await self.log.ensure_topic(DEAD_LETTER_TOPIC)
                await self.log.append(
                    DEAD_LETTER_TOPIC,
                    f"{chain}@{record.offset}".encode(),
                    [reason.encode() + b"\n" + what],
                )
        return len(accepted)

    async def refresh_behind(self) -> None:
        """How many blocks of each followed chain wait in the log (for /metrics)."""
        checked = self.clock()
        for chain in self.chains():
            try:
                end = await self.log.end_offset(chain_topic(chain))
            except LogForbidden as exc:
                self._stall(chain, str(exc))
                continue
            self.behind[chain] = max(0, end - self.positions.get(chain, Position()).next_offset)
        self.refreshed_at = checked

    async def confirm(self) -> None:
        """Ask the node of each chain read unhindered whether its chain ends where our
        copy does; if so, the copy is current as of the moment we asked (the node's
        answer covers every block it had cut by then, and we hold them all)."""
        if self.tips is None:
            return
        asked = self.clock()
        chains = [c for c in self.chains() if c not in self.stalled and c not in self.gaps]
        answers = await asyncio.gather(*(self.tips(c) for c in chains), return_exceptions=True)
        for chain, tip in zip(chains, answers, strict=True):
            # a chain with no block yet: an empty copy of an empty chain is current too
            ours = self.positions.get(chain, Position()).tip
            if tip == (ours.height, ours.block_hash):
                self.confirmed[chain] = asked

    async def confirm_forever(self, *, every: float = 1.0) -> None:
        """``confirm`` once a second, beside ``run``: a slow chain node delays only
        this, never the following of the log."""
        while True:
            started = self.clock()
            await self.confirm()
            await asyncio.sleep(max(0.0, every - (self.clock() - started)))

    def view(self) -> FollowerView:
        """What decides "current", as the sync process tells the serving workers."""
        chains = self.positions.keys() | self.behind.keys() | self.stalled.keys() | self.gaps.keys()
        return FollowerView(
            refreshed_at=self.refreshed_at,
            chains={
                c: ChainView(
                    behind=self.behind.get(c),
                    cut_at=self.positions[c].cut_at if c in self.positions else None,
                    hindered=c in self.stalled or c in self.gaps,
                    confirmed_at=self.confirmed.get(c),
                )
                for c in chains
            },
        )

    def current(self, chain: str, *, within: float = 3.0) -> bool:
        """Whether this node's copy of ``chain`` keeps up with the chain's node (see
        ``sync.notices.is_current``). An identifier missing from such a copy is
        missing, or was registered within the replication lag."""
        return is_current(self.view(), chain, now=self.clock(), within=within)

    async def run(self, *, metrics_interval: float = 1.0) -> None:
        last_refresh = 0.0
        backoff = 0.0
        while True:
            try:
                await self.step()
                if self.clock() - last_refresh >= metrics_interval:
                    await self.refresh_behind()
                    last_refresh = self.clock()
                backoff = 0.0
            except (LogUnavailable, StoreUnavailable) as exc:
                backoff = min(5.0, max(0.1, backoff * 2))
                log.warning("following: %s (retrying in %.1f s)", exc, backoff)
                self._loaded = False  # re-read positions: the last batch may not have landed
                await asyncio.sleep(backoff)

    def metrics_lines(self) -> list[str]:
        lines = [
            "# HELP idres_sync_behind_blocks Blocks of a followed chain not yet applied here.",
            "# TYPE idres_sync_behind_blocks gauge",
        ]
        for chain in sorted(self.behind):
            lines.append(f'idres_sync_behind_blocks{{chain="{chain}"}} {self.behind[chain]}')
        lines += [
            "# HELP idres_sync_delay_seconds From a block's cut at its node to applied here.",
            "# TYPE idres_sync_delay_seconds gauge",
        ]
        for chain, p in sorted(self.positions.items()):
            if p.cut_at is not None and p.applied_at is not None:
                delay = max(0.0, p.applied_at - p.cut_at)
                lines.append(f'idres_sync_delay_seconds{{chain="{chain}"}} {delay:.3f}')
        lines += [
            "# HELP idres_sync_applied_height The last block of a followed chain applied here.",
            "# TYPE idres_sync_applied_height gauge",
        ]
        for chain, p in sorted(self.positions.items()):
            lines.append(f'idres_sync_applied_height{{chain="{chain}"}} {p.tip.height}')
        lines += [
            "# HELP idres_sync_stalled A followed chain waiting at a block it cannot apply.",
            "# TYPE idres_sync_stalled gauge",
        ]
        for chain in sorted(self.positions.keys() | self.stalled.keys() | self.gaps.keys()):
            stalled = 1 if chain in self.stalled or chain in self.gaps else 0
            lines.append(f'idres_sync_stalled{{chain="{chain}"}} {stalled}')
        lines += [
            "# HELP idres_sync_dead_letters_total Blocks or their operations refused here.",
            "# TYPE idres_sync_dead_letters_total counter",
            f"idres_sync_dead_letters_total {self.dead_letters}",
        ]
        return lines


class _Refused(Exception):
    """The database refused to store checked blocks (not a lost connection)."""


# errors after which the same transaction may well succeed: retried whole, later
_TRANSIENT = (
    asyncpg.InterfaceError,
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.QueryCanceledError,
)


async def _held_hashes(
    conn: asyncpg.Connection,
    chain: str,
    decoded: list[tuple[LogRecord, Block | EncodingError]],
    tip: int,
) -> dict[int, bytes]:
    """The hashes of the blocks this node holds at the heights ``decoded`` repeats."""
    heights = [
        b.header.height for _, b in decoded if isinstance(b, Block) and b.header.height <= tip
    ]
    if not heights:
        return {}
    rows = await conn.fetch(
        "SELECT height, hash FROM chain_blocks WHERE chain = $1 AND height = ANY($2::bigint[])",
        chain,
        heights,
    )
    return {r["height"]: r["hash"] for r in rows}


async def _anchored_hashes(
    conn: asyncpg.Connection, decoded: list[tuple[LogRecord, Block | EncodingError]]
) -> dict[tuple[str, int], bytes]:
    """The hashes of the blocks of other chains that ``decoded``'s anchors name, where
    this node holds them."""
    wanted: list[tuple[str, int]] = []
    for _, block in decoded:
        if isinstance(block, Block):
            for entry in block.entries:
                if entry.kind == "anchor":
                    with contextlib.suppress(EncodingError):  # judged with its block
                        anchor = decode_anchor(entry.payload)
                        wanted.append((anchor.chain, anchor.height))
    return await block_hashes(conn, wanted)


async def _stored_position(conn: asyncpg.Connection, chain: str) -> Position:
    r = await conn.fetchrow(
        "SELECT next_offset, tip_offset, height, block_hash, seq, head,"
        " extract(epoch FROM cut_at) AS cut FROM sync_positions WHERE chain = $1",
        chain,
    )
    if r is None:
        return Position()
    return Position(
        next_offset=r["next_offset"],
        tip_offset=r["tip_offset"],
        tip=Tip(height=r["height"], block_hash=r["block_hash"], seq=r["seq"], head=r["head"]),
        cut_at=float(r["cut"]) if r["cut"] is not None else None,
    )


async def store_position(conn: asyncpg.Connection, chain: str, p: Position) -> None:
    await conn.execute(
        "INSERT INTO sync_positions (chain, next_offset, tip_offset, height, block_hash, seq,"
        " head, cut_at, applied_at) VALUES ($1, $2, $3, $4, $5, $6, $7,"
        " to_timestamp($8::float8), now()) ON CONFLICT (chain) DO UPDATE SET"
        " next_offset = excluded.next_offset, tip_offset = excluded.tip_offset,"
        " height = excluded.height, block_hash = excluded.block_hash, seq = excluded.seq,"
        " head = excluded.head, cut_at = excluded.cut_at, applied_at = excluded.applied_at",
        chain,
        p.next_offset,
        p.tip_offset,
        p.tip.height,
        p.tip.block_hash,
        p.tip.seq,
        p.tip.head,
        p.cut_at,
    )


async def keep_dead_letter(
    conn: asyncpg.Connection, chain: str, offset: int, reason: str, message: bytes
) -> bool:
    """Keep a refused message from ``chain``'s topic (a block, or a delegation on the
    directory's) with why; False if this very one was kept before."""
    return bool(
        await conn.fetchval(
            "INSERT INTO dead_letters (chain, log_offset, reason, message, digest)"
            " VALUES ($1, $2, $3, $4, sha256($4)) ON CONFLICT DO NOTHING RETURNING true",
            chain,
            offset,
            reason,
            message,
        )
    )
