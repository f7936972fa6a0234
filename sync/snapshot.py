"""Snapshots: write the chains a node holds to a file, and start a new node from one.

``take`` reads every block this node holds in one repeatable-read transaction and
yields the file (schemas/snapshot.py) in pieces. ``load`` checks every block of the
file as the follower checks the log (signature against the directory's key, links,
Merkle root), stores the blocks, builds the records from their operations, and
sets the node's position in each chain after the last block, all in one
transaction: a file that fails anywhere leaves nothing behind. The follower then
reads the log from there.

Positions come from the blocks, not from the file: the first copy of block h+1 on
a chain's topic is at offset h or later (one message a block, published in height
order, never removed), so reading from offset h misses nothing; any copies of
blocks already loaded that sit after it are recognised by hash and passed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from registry.rows import append_outbox
from resolver.topology import Directory
from schemas.chain import (
    Anchor,
    Block,
    Tip,
    anchor_of,
    check_block,
    decode_anchor,
    decode_block,
    tip_after,
)
from schemas.errors import EncodingError, IdresError
from schemas.oplog import Operation
from schemas.snapshot import (
    MAGIC,
    FrameSplitter,
    SnapshotBlock,
    SnapshotEnd,
    SnapshotHeader,
    decode_item,
    encode_block,
    encode_end,
    encode_header,
)
from sync.apply import apply_operations
from sync.follow import FOLLOW_LOCK, Position, store_position
from sync.judge import anchor_problem, entries_of, followed, forged_anchor, holds
from sync.relay import block_hashes, store_blocks

_CHUNK = 1 << 20
_BATCH_ENTRIES = 20_000  # entries stored and applied together while loading


class SnapshotError(IdresError):
    """A snapshot that cannot be loaded; nothing of it was kept."""

    response_code = 202
    http_status = 400


async def take(pool: asyncpg.Pool, me: str) -> AsyncIterator[bytes]:
    """The snapshot file of every chain this node holds, in pieces of about 1 MiB."""
    async with (
        pool.acquire() as conn,
        conn.transaction(readonly=True, isolation="repeatable_read"),
    ):
        chains = [r["chain"] for r in await conn.fetch("SELECT DISTINCT chain FROM chain_blocks")]
        sha = hashlib.sha256()
        out = bytearray(MAGIC)
        out += encode_header(
            SnapshotHeader(node=me, taken_at=int(time.time() * 1000), chains=tuple(sorted(chains)))
        )
        blocks = 0
        async for row in conn.cursor(
            "SELECT chain, message FROM chain_blocks ORDER BY chain, height", prefetch=256
        ):
            out += encode_block(SnapshotBlock(chain=row["chain"], message=row["message"]))
            blocks += 1
            if len(out) >= _CHUNK:
                sha.update(out)
                yield bytes(out)
                out.clear()
        sha.update(out)
        yield bytes(out) + encode_end(SnapshotEnd(blocks=blocks, digest=sha.digest()))


@dataclass(slots=True)
class Loaded:
    node: str = ""  # the node the snapshot was taken from
    taken_at: float = 0.0
    blocks: dict[str, int] = field(default_factory=dict)  # chain -> blocks loaded
    records: set[str] = field(default_factory=set)  # identifiers written or changed
    skipped: dict[str, str] = field(default_factory=dict)  # chain -> why it was not loaded


async def load(
    pool: asyncpg.Pool,
    path: Path,
    directory: Directory,
    me: str,
    *,
    mirror_of: str | None = None,
) -> Loaded:
    """Load the chains of ``path`` this node keeps and does not hold yet.

    Raises SnapshotError (naming the item and what is wrong) and keeps nothing when
    any block it would load fails its checks, or the file is damaged or cut short.
    """
    wanted = set(followed(directory, me, mirror_of=mirror_of))
    loaded = Loaded()
    try:
        async with pool.acquire() as conn, conn.transaction():
            for chain in sorted(wanted):  # no follower of these chains runs meanwhile
                await conn.execute(
                    "SELECT pg_advisory_xact_lock($1, hashtext($2))", FOLLOW_LOCK, chain
                )
            held = {
                r["chain"]
                for r in await conn.fetch(
                    "SELECT chain FROM sync_positions UNION SELECT DISTINCT chain FROM chain_blocks"
                )
            }
            for chain in sorted(wanted & held):
                loaded.skipped[chain] = "already held here"
            if not wanted - held:  # a restart with the same option: the file is not read
                return loaded
            loader = _Loader(conn, directory, me, loaded)
            try:
                await _read(path, loader, lambda c: c in wanted and c not in held)
            except EncodingError as exc:
                raise SnapshotError(f"snapshot {path}: {exc}") from exc
            await loader.flush()
            await loader.check_anchors(path)
            for chain, tip in loader.tips.items():
                await store_position(
                    conn,
                    chain,
                    Position(
                        next_offset=tip.height,
                        tip_offset=tip.height - 1,
                        tip=tip,
                        cut_at=loader.cut_at[chain],
                    ),
                )
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        # the store refused or went away, or the file cannot be read: all rolled back
        raise SnapshotError(f"loading snapshot {path} failed: {exc}") from exc
    return loaded


async def _read(path: Path, loader: _Loader, loads: Callable[[str], bool]) -> None:
    splitter = FrameSplitter()
    sha = hashlib.sha256(MAGIC)
    header: SnapshotHeader | None = None
    blocks = 0
    end: SnapshotEnd | None = None
    with path.open("rb") as f:  # a startup step: nothing else runs on this loop yet
        while chunk := f.read(_CHUNK):
            for offset, body in splitter.feed(chunk):
                index = blocks + (header is not None)
                if end is not None:
                    raise EncodingError(f"snapshot item {index} follows its end (byte {offset})")
                item = decode_item(body, index)
                if isinstance(item, SnapshotEnd):
                    if item.blocks != blocks or item.digest != sha.digest():
                        raise EncodingError(
                            f"the end says {item.blocks} blocks and a digest the file does "
                            f"not match ({blocks} blocks read): damaged or spliced"
                        )
                    end = item
                    continue
                sha.update(len(body).to_bytes(4, "big") + body)
                if isinstance(item, SnapshotHeader):
                    if header is not None:
                        raise EncodingError(f"snapshot item {index} is a second header")
                    header = item
                    loader.loaded.node, loader.loaded.taken_at = item.node, item.taken_at / 1000
                    continue
                if header is None:
                    raise EncodingError("the snapshot does not start with its header")
                blocks += 1
                if item.chain not in header.chains:
                    raise EncodingError(
                        f"snapshot item {index}: chain {item.chain!r} is not in the header"
                    )
                if loads(item.chain):
                    await loader.add(item, index)
    splitter.finish()
    if end is None:
        raise EncodingError("the snapshot is cut short (no end item)")


class _Loader:
    def __init__(
        self, conn: asyncpg.Connection, directory: Directory, me: str, loaded: Loaded
    ) -> None:
        self.conn = conn
        self.directory = directory
        self.me = me
        self.loaded = loaded
        self.tips: dict[str, Tip] = {}
        self.cut_at: dict[str, float] = {}
        self.pending: list[tuple[Block, list[Operation], list[tuple[str, int]]]] = []
        self.entries = 0
        self.anchors: list[tuple[str, int, Anchor]] = []  # (chain, height, anchor) loaded

    async def check_anchors(self, path: Path) -> None:
        """Every anchor loaded names a block held here (the file's or from before) with
        that block's hash; an anchor of a chain this node does not keep is not checked."""
        if not self.anchors:
            return
        held = await block_hashes(self.conn, [(a.chain, a.height) for _, _, a in self.anchors])
        kept = set(followed(self.directory, self.me)) | set(self.tips)
        for chain, height, anchor in self.anchors:
            have = held.get((anchor.chain, anchor.height))
            if have is None and anchor.chain not in kept:
                continue
            if have != anchor.hash:
                why = (
                    forged_anchor(chain, height, anchor)
                    if have is not None
                    else f"block {height} of {chain!r} anchors block {anchor.height} of "
                    f"{anchor.chain!r}, which the snapshot does not hold"
                )
                raise SnapshotError(f"snapshot {path}: {why}")

    async def add(self, item: SnapshotBlock, index: int) -> None:
        node = self.directory.by_name.get(item.chain)
        if node is None:
            self.loaded.skipped[item.chain] = "not in this node's directory"
            return
        tip = self.tips.get(item.chain, Tip())
        try:
            block = decode_block(item.message)
            if block.header.chain != item.chain:
                raise EncodingError(f"it is a block of chain {block.header.chain!r}")
            block = check_block(block, tip=tip, public_key_der=node.public_key)
            ops, refs = entries_of(block)
        except EncodingError as exc:
            raise EncodingError(
                f"snapshot item {index} (block {tip.height + 1} of chain {item.chain!r}): {exc}"
            ) from exc
        self.tips[item.chain] = tip_after(block)
        self.cut_at[item.chain] = block.header.at / 1000
        self.loaded.blocks[item.chain] = self.loaded.blocks.get(item.chain, 0) + 1
        for entry in block.entries:
            if entry.kind == "anchor":
                anchor = decode_anchor(entry.payload)
                why = anchor_problem(item.chain, block.header.height, anchor, self.directory)
                if why is not None:
                    raise EncodingError(f"snapshot item {index}: {why}")
                self.anchors.append((item.chain, block.header.height, anchor))
        self.pending.append(
            (block, [op for op in ops if holds(self.directory, item.chain, op)], refs)
        )
        self.entries += len(block.entries)
        if self.entries >= _BATCH_ENTRIES:
            await self.flush()

    async def flush(self) -> None:
        if not self.pending:
            return
        await store_blocks(self.conn, [(b, refs) for b, _, refs in self.pending])
        ops = [op for _, block_ops, _ in self.pending for op in block_ops]
        self.loaded.records.update(await apply_operations(self.conn, ops))
        # a child's blocks are anchored in this node's chain, as the follower does
        anchors = [
            anchor_of(b)
            for b, _, _ in self.pending
            if (node := self.directory.by_name.get(b.header.chain)) is not None
            and node.parent == self.me
        ]
        if anchors:
            await append_outbox(
                self.conn, [(a.chain, a.height, "anchor", a.encode()) for a in anchors]
            )
        self.pending.clear()
        self.entries = 0
