"""A new node starts from a snapshot of another node's chains, checks every block of
it, then reads only the rest of the log; a damaged or forged snapshot leaves nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import asyncpg
import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from idres.assembly import NodeSpec, delegations
from registry.store import PostgresStore
from resolver.topology import Directory, Role
from schemas.chain import decode_anchor
from schemas.commitment import CommittedValue
from schemas.record import DataFormat, HandleValue, Permissions, Record
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
from sync.follow import Follower
from sync.log import Log
from sync.snapshot import SnapshotError, load, take
from sync.verify import verify
from tests.sync.chains import Node, catch_up, flush, url_record
from tests.sync.conftest import NewPool

pytestmark = pytest.mark.asyncio


async def _propagate(network: dict[str, Node]) -> None:
    """Every pending write up the tree: cut, publish, applied and anchored above."""
    sub, backbone, top = network["sub-a"], network["backbone-1"], network["super"]
    await flush(sub)
    await catch_up(backbone)
    await flush(backbone)
    await catch_up(top)
    await flush(top)


def _with_mirror(top: Node) -> tuple[str, Directory]:
    """A mirror of the super node, delegated by it, and the directory that names it."""
    name = f"mirror-{top.name}"
    spec = NodeSpec(
        name=name, role=Role.BACKBONE, parent=top.name, url="http://127.0.0.1:9100", prefixes=()
    )
    keys = {name: ed25519.Ed25519PrivateKey.generate(), top.name: top.key}
    base = top.follower.directory()
    anchor = base.by_name[top.name].public_key
    mine = [d for d in delegations([spec], keys) if d.name == name]
    return name, Directory([*base.by_name.values(), *mine], trust_anchor=anchor)


async def _write_snapshot(node: Node, path: Path) -> Path:
    with path.open("wb") as f:
        async for piece in take(node.pool, node.name):
            f.write(piece)
    return path


def _rewrite(
    path: Path, change: Callable[[int, SnapshotBlock], SnapshotBlock | None], out: Path
) -> Path:
    """The file with its blocks changed (None drops one), its end made to match again."""
    splitter = FrameSplitter()
    items = [decode_item(body, i) for i, (_, body) in enumerate(splitter.feed(path.read_bytes()))]
    header = items[0]
    assert isinstance(header, SnapshotHeader)
    blocks = [
        changed
        for i, item in enumerate(items[1:-1])
        if isinstance(item, SnapshotBlock) and (changed := change(i, item)) is not None
    ]
    body = MAGIC + encode_header(header) + b"".join(encode_block(b) for b in blocks)
    end = encode_end(SnapshotEnd(blocks=len(blocks), digest=hashlib.sha256(body).digest()))
    out.write_bytes(body + end)
    return out


async def _held(pool: asyncpg.Pool) -> tuple[list[tuple[object, ...]], ...]:
    async with pool.acquire() as conn:
        return (
            [
                tuple(r)
                for r in await conn.fetch(
                    "SELECT chain, height, hash FROM chain_blocks ORDER BY 1, 2"
                )
            ],
            [
                tuple(r)
                for r in await conn.fetch(
                    "SELECT i.handle, i.version, v.idx, v.data FROM identifiers i"
                    " JOIN handle_values v USING (handle) ORDER BY 1, 3"
                )
            ],
            [
                tuple(r)
                for r in await conn.fetch("SELECT handle, version, op FROM history ORDER BY 1, 2")
            ],
        )


async def test_a_mirror_starts_from_a_snapshot_then_reads_only_the_rest_of_the_log(
    network: dict[str, Node], new_pool: NewPool, log: Log, tmp_path: Path
) -> None:
    sub, backbone, top = network["sub-a"], network["backbone-1"], network["super"]
    for n in range(30):  # S0..S19, ten of them twice
        await sub.store.put(url_record(f"88.100.1/S{n % 20}", f"https://e.x/{n}"), actor="t")
        if n % 10 == 9:
            await _propagate(network)  # several blocks on every chain
    path = await _write_snapshot(top, tmp_path / "super.snapshot")

    mirror = await new_pool()
    name, directory = _with_mirror(top)
    loaded = await load(mirror, path, directory, name, mirror_of=top.name)
    held_above = await _held(top.pool)
    assert loaded.node == top.name
    assert loaded.skipped == {}
    assert loaded.blocks == {
        c: sum(1 for chain, *_ in held_above[0] if chain == c)
        for c in (top.name, backbone.name, sub.name)
    }
    assert len(loaded.records) == 20
    # the same blocks, records (version 2 where written twice) and history as the super node
    assert await _held(mirror) == held_above
    report = await verify(mirror, directory, name, mirror_of=top.name)
    assert report.problems == []

    # then the log, from where the snapshot ends: only the blocks cut since
    await sub.store.put(url_record("88.100.1/AFTER", "https://e.x/after"), actor="t")
    await _propagate(network)
    follower = Follower(mirror, log, me=name, directory=lambda: directory, mirror_of=top.name)
    applied = 0
    while n := await follower.step(wait=2):
        applied += n
    assert applied == 3  # the sub-chain's new block, and one anchoring it on each chain above
    assert await _held(mirror) == await _held(top.pool)
    assert (await verify(mirror, directory, name, mirror_of=top.name)).problems == []

    # started again with the same file: it holds those chains now, so nothing is loaded
    again = await load(mirror, path, directory, name, mirror_of=top.name)
    assert again.blocks == {}
    assert set(again.skipped) == {top.name, backbone.name, sub.name}


async def test_a_snapshot_carries_private_values_only_as_their_commitments(
    network: dict[str, Node], new_pool: NewPool, tmp_path: Path
) -> None:
    sub, top = network["sub-a"], network["super"]
    secret = "recipe: 3 parts sulphur"
    private = HandleValue(
        index=2,
        type="DESC",
        format=DataFormat.STRING,
        value=secret,
        permissions=Permissions(public_read=False),
    )
    record = url_record("88.100.1/P", "https://e.x/p")
    await sub.store.put(Record(handle=record.handle, values=(*record.values, private)), actor="t")
    await _propagate(network)
    path = await _write_snapshot(top, tmp_path / "super.snapshot")
    assert secret.encode() not in path.read_bytes()  # a file that may travel anywhere

    mirror = await new_pool()
    name, directory = _with_mirror(top)
    await load(mirror, path, directory, name, mirror_of=top.name)
    copy = await PostgresStore(mirror).get("88.100.1/P")
    assert copy is not None
    assert copy.values[0] == record.values[0]
    assert isinstance(copy.values[1], CommittedValue)
    assert copy == await top.store.get("88.100.1/P")  # the super node's copy: the same
    async with mirror.acquire() as conn:
        assert not await conn.fetchval(
            "SELECT count(*) FROM handle_values WHERE position($1::bytea IN data) > 0",
            secret.encode(),
        )
    assert (await verify(mirror, directory, name, mirror_of=top.name)).problems == []


async def test_a_damaged_or_forged_snapshot_leaves_nothing_behind(
    network: dict[str, Node], new_pool: NewPool, tmp_path: Path
) -> None:
    sub, top = network["sub-a"], network["super"]
    for n in range(3):
        await sub.store.put(url_record(f"88.100.1/D{n}", f"https://e.x/{n}"), actor="t")
        await _propagate(network)
    good = await _write_snapshot(top, tmp_path / "good.snapshot")
    name, directory = _with_mirror(top)
    mirror = await new_pool()

    def forge(i: int, b: SnapshotBlock) -> SnapshotBlock:
        if b.chain != sub.name or i % 3 != 1:
            return b
        obj = cbor2.loads(b.message)  # a signature that is not the sub-chain node's
        obj["sig"] = bytes(64)
        return SnapshotBlock(chain=b.chain, message=cbor2.dumps(obj))

    def drop_one(i: int, b: SnapshotBlock) -> SnapshotBlock | None:
        return None if b.chain == sub.name and i % 3 == 1 else b

    data = good.read_bytes()
    cut = tmp_path / "cut.snapshot"
    cut.write_bytes(data[: len(data) // 2])
    no_end = tmp_path / "no-end.snapshot"
    no_end.write_bytes(data[: data.rindex(b"\x83cend") - 4])
    edited = tmp_path / "edited.snapshot"  # a value changed inside a signed block
    edited.write_bytes(data.replace(b"https://e.x/1", b"https://e.x/9"))
    spliced = tmp_path / "spliced.snapshot"  # the blocks hold, the header was changed
    spliced.write_bytes(data.replace(top.name.encode(), top.name.upper().encode(), 1))
    cases = {
        _rewrite(good, forge, tmp_path / "forged.snapshot"): f"of chain '{sub.name}'",
        _rewrite(good, drop_one, tmp_path / "gap.snapshot"): f"of chain '{sub.name}'",
        edited: "do not chain to head",
        cut: "ends inside a frame",
        no_end: "cut short",
        spliced: "damaged or spliced",
    }
    for path, message in cases.items():
        with pytest.raises(SnapshotError, match=message):
            await load(mirror, path, directory, name, mirror_of=top.name)
        assert await _held(mirror) == ([], [], []), path.name  # not one row kept
        assert await mirror.fetchval("SELECT count(*) FROM sync_positions") == 0


async def test_a_snapshot_whose_anchor_is_not_the_childs_block_is_refused(
    network: dict[str, Node], new_pool: NewPool, tmp_path: Path
) -> None:
    sub, backbone, top = network["sub-a"], network["backbone-1"], network["super"]
    await sub.store.put(url_record("88.100.1/A", "https://e.x/a"), actor="t")
    await flush(sub)
    await catch_up(backbone)
    async with backbone.pool.acquire() as conn:  # the backbone's operator forges the anchor
        payload = await conn.fetchval("SELECT payload FROM outbox WHERE op = 'anchor'")
        honest = decode_anchor(payload)
        forged = replace(honest, hash=bytes(32))
        await conn.execute("UPDATE outbox SET payload = $1 WHERE op = 'anchor'", forged.encode())
    await flush(backbone)  # signed by the backbone: every block checks on its own
    path = await _write_snapshot(backbone, tmp_path / "backbone.snapshot")

    mirror = await new_pool()
    name, directory = _with_mirror(top)
    with pytest.raises(SnapshotError, match="with a hash that is not the block's"):
        await load(mirror, path, directory, name, mirror_of=backbone.name)
    assert await _held(mirror) == ([], [], [])
