"""Follow the chains of the nodes below this one: check each block, apply it, anchor it.

A node follows every chain of its descendants (a backbone its sub-chains, the super
node all of them). Each block is checked against the chain's tip (signature by the
node its parent delegated, links, Merkle root) and applied in one transaction with
the position reached, so a crash can neither skip nor repeat a block. A block this
node cannot accept goes to ``dead_letters`` with the reason, and the stream goes on.
A node anchors the blocks of its direct children into its own chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import asyncpg

from resolver.topology import Directory
from schemas.chain import (
    ChainError,
    Tip,
    anchor_of,
    check_block,
    decode_anchor,
    decode_block,
    tip_after,
)
from schemas.errors import EncodingError, IdresError, StoreUnavailable
from schemas.identifiers import parse
from schemas.oplog import Operation, decode_operation
from sync.apply import apply_operations
from sync.log import DEAD_LETTER_TOPIC, Log, LogRecord, LogUnavailable, chain_topic
from sync.relay import OUTBOX_CHANNEL, store_block

log = logging.getLogger("idres.sync.follow")


@dataclass(frozen=True, slots=True, kw_only=True)
class Position:
    next_offset: int = 0
    tip: Tip = field(default_factory=Tip)
    cut_at: float | None = None  # when the last applied block was cut (seconds)
    applied_at: float | None = None


def followed(directory: Directory, me: str) -> list[str]:
    """The chains ``me`` keeps a copy of: every node below it."""
    return sorted(
        name for name in directory.by_name if name != me and me in directory.ancestors(name)
    )


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
    ) -> None:
        self.pool = pool
        self.log = log
        self.me = me
        self.directory = directory
        self.on_applied = on_applied
        self.clock = clock
        self.positions: dict[str, Position] = {}
        self.behind: dict[str, int] = {}
        self.dead_letters = 0
        self._loaded = False

    async def load(self) -> None:
        try:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT chain, next_offset, height, block_hash, seq, head,"
                    " extract(epoch FROM cut_at) AS cut, extract(epoch FROM applied_at) AS at"
                    " FROM sync_positions"
                )
                self.dead_letters = int(await conn.fetchval("SELECT count(*) FROM dead_letters"))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StoreUnavailable(f"reading sync positions failed: {exc}") from exc
        self.positions = {
            r["chain"]: Position(
                next_offset=r["next_offset"],
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
        return followed(self.directory(), self.me)

    async def step(self, *, wait: float = 0.5) -> int:
        """Fetch what is new in the followed chains and apply it; blocks applied."""
        if not self._loaded:
            await self.load()
        chains = self.chains()
        if not chains:
            await asyncio.sleep(wait)
            return 0
        for chain in chains:
            await self.log.ensure_topic(chain_topic(chain))
        positions = {chain_topic(c): self.positions.get(c, Position()).next_offset for c in chains}
        records = await self.log.fetch(positions, wait=wait)
        by_chain: dict[str, list[LogRecord]] = {}
        for r in records:
            by_chain.setdefault(r.topic.removeprefix("idres.chain."), []).append(r)
        applied = 0
        for chain, batch in by_chain.items():
            applied += await self._apply_batch(chain, batch)
        return applied

    async def _apply_batch(self, chain: str, batch: list[LogRecord]) -> int:
        position = self.positions.get(chain, Position())
        changed: list[str] = []
        dead: list[tuple[LogRecord, str]] = []
        applied = 0
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                for record in batch:
                    if record.offset < position.next_offset:
                        continue
                    height = position.tip.height
                    try:
                        async with conn.transaction():  # a savepoint: one block, whole or not
                            position, handles = await self._apply_one(conn, chain, record, position)
                        changed += handles
                        applied += position.tip.height - height  # 0 for a repeat
                    except (
                        EncodingError,
                        asyncpg.IntegrityConstraintViolationError,
                        asyncpg.DataError,
                    ) as exc:
                        reason = str(exc)
                        if not isinstance(exc, EncodingError):
                            reason = f"this node cannot store the block: {exc}"
                        await conn.execute(
                            "INSERT INTO dead_letters (chain, log_offset, reason, message)"
                            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                            chain,
                            record.offset,
                            reason,
                            record.value,
                        )
                        dead.append((record, reason))
                        position = replace(position, next_offset=record.offset + 1)
                await conn.execute(
                    "INSERT INTO sync_positions (chain, next_offset, height, block_hash, seq,"
                    " head, cut_at, applied_at) VALUES ($1, $2, $3, $4, $5, $6,"
                    " to_timestamp($7::float8), now()) ON CONFLICT (chain) DO UPDATE SET"
                    " next_offset = excluded.next_offset, height = excluded.height,"
                    " block_hash = excluded.block_hash, seq = excluded.seq, head = excluded.head,"
                    " cut_at = excluded.cut_at, applied_at = excluded.applied_at",
                    chain,
                    position.next_offset,
                    position.tip.height,
                    position.tip.block_hash,
                    position.tip.seq,
                    position.tip.head,
                    position.cut_at,
                )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StoreUnavailable(f"applying blocks of {chain} failed: {exc}") from exc
        self.positions[chain] = replace(position, applied_at=self.clock())
        if changed:
            self.on_applied(changed)
        for record, reason in dead:
            self.dead_letters += 1
            log.warning("chain %s offset %d refused: %s", chain, record.offset, reason)
            with contextlib.suppress(LogUnavailable):  # dead_letters keeps it regardless
                await self.log.ensure_topic(DEAD_LETTER_TOPIC)
                await self.log.append(
                    DEAD_LETTER_TOPIC,
                    f"{chain}@{record.offset}".encode(),
                    [reason.encode() + b"\n" + record.value],
                )
        return applied

    async def _apply_one(
        self, conn: asyncpg.Connection, chain: str, record: LogRecord, position: Position
    ) -> tuple[Position, list[str]]:
        block = decode_block(record.value)
        h = block.header
        if h.chain != chain:
            raise ChainError(f"a block of chain {h.chain!r} on the topic of {chain!r}")
        if h.height <= position.tip.height:  # a repeat (a republished block): skip it
            stored = await conn.fetchval(
                "SELECT hash FROM chain_blocks WHERE chain = $1 AND height = $2", chain, h.height
            )
            if stored != block.hash:
                raise ChainError(
                    f"block {h.height} of chain {chain!r} differs from the block {h.height} "
                    "already applied (a fork or a forgery)"
                )
            return replace(position, next_offset=record.offset + 1), []
        directory = self.directory()
        node = directory.by_name.get(chain)
        if node is None:
            raise ChainError(f"chain {chain!r} is not in the directory")
        block = check_block(block, tip=position.tip, public_key_der=node.public_key)
        ops: list[Operation] = []
        refs: list[tuple[str, int]] = []
        for entry in block.entries:
            if entry.kind == "op":
                op = decode_operation(entry.payload)
                ops.append(op)
                refs.append((op.handle, op.version))
            else:
                anchor = decode_anchor(entry.payload)
                refs.append((anchor.chain, anchor.height))
        await store_block(conn, block, refs)
        changed = await apply_operations(conn, [op for op in ops if holds(directory, chain, op)])
        if node.parent == self.me:
            anchor = anchor_of(block)
            await conn.execute(
                "INSERT INTO outbox (handle, version, op, payload) VALUES ($1, $2, 'anchor', $3)",
                anchor.chain,
                anchor.height,
                anchor.encode(),
            )
            await conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")
        return (
            Position(
                next_offset=record.offset + 1,
                tip=tip_after(block),
                cut_at=h.at / 1000,
            ),
            changed,
        )

    async def refresh_behind(self) -> None:
        """How many blocks of each followed chain wait in the log (for /metrics)."""
        for chain in self.chains():
            end = await self.log.end_offset(chain_topic(chain))
            self.behind[chain] = max(0, end - self.positions.get(chain, Position()).next_offset)

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
            "# HELP idres_sync_dead_letters_total Blocks refused (see the dead_letters table).",
            "# TYPE idres_sync_dead_letters_total counter",
            f"idres_sync_dead_letters_total {self.dead_letters}",
        ]
        return lines


def holds(directory: Directory, chain: str, op: Operation) -> bool:
    """Whether ``chain``'s node is the authority for the operation's identifier: a chain
    can only replicate what its delegation covers (never another node's admin record)."""
    try:
        ident = parse(op.handle)
    except IdresError:
        return False
    found = directory.authority(ident.routing)
    return found is not None and found[1].name == chain
