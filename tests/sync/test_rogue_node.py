"""A node's operator turned attacker: what it signs or publishes outside the space its
parent delegated is refused by every other node, and kept as a dead letter.

Each test runs on the in-process log and on the real Kafka broker, and each fails on
the code before the carving and follower rules (commit adab4b3).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from idres.assembly import node_public_key
from registry import httpsig
from registry.rows import append_outbox
from registry.service import NODE_ADMIN, bootstrap
from registry.store import PostgresStore
from resolver.topology import Delegation, Directory, Role, _index_of, sign_delegation
from schemas.chain import Anchor, decode_anchor
from schemas.codec_json import record_to_json
from schemas.identifiers.prefix import parse_prefix
from schemas.record import DataFormat, HandleValue, Record
from sync import proof
from sync.directory import LiveDirectory, Refusal
from sync.follow import Follower
from sync.judge import followed
from sync.log import Log
from sync.relay import Relay, RelayConfig
from tests.sync.chains import Node, catch_up, flush, url_record

pytestmark = pytest.mark.asyncio
NewPool = Callable[[], Awaitable[asyncpg.Pool]]


def _rogue(parent: Node, prefixes: tuple[str, ...]) -> tuple[Delegation, ed25519.Ed25519PrivateKey]:
    """A child that ``parent``'s operator signs with the parent's node key."""
    key = ed25519.Ed25519PrivateKey.generate()
    unsigned = Delegation(
        name=f"evil-{uuid.uuid4().hex[:6]}",
        role=Role.SUBCHAIN,
        url="http://127.0.0.1:9",
        parent=parent.name,
        prefixes=prefixes,
        public_key=node_public_key(key),
        issued=int(time.time()),
    )
    return sign_delegation(unsigned, parent.key), key


def _unchecked(directory: Directory, extra: Delegation) -> Directory:
    """The directory the attacker wishes every node held (built without the rules)."""
    by_name = {**directory.by_name, extra.name: extra}
    forged = Directory.__new__(Directory)
    forged._build(by_name, _index_of(by_name), directory.trust_anchor)
    return forged


async def _rogue_chain(
    new_pool: NewPool, log: Log, name: str, key: ed25519.Ed25519PrivateKey, records: list[Record]
) -> None:
    """The attacker's own node: its chain, signed with its key, published on ``log``."""
    pool = await new_pool()
    store = PostgresStore(pool)
    for record in records:
        await store.put(record, actor="evil")
    relay = Relay(pool, key, RelayConfig(chain=name), log=log)
    while await relay.cut() is not None:
        pass
    await relay.publish()


def _admin_record(key_der: bytes) -> Record:
    return Record(
        handle=NODE_ADMIN.handle,
        values=(
            HandleValue(
                index=NODE_ADMIN.index, type="HS_PUBKEY", format=DataFormat.KEY, value=key_der
            ),
        ),
    )


async def test_a_sub_chain_cannot_delegate_a_node_that_takes_over_the_super_node(
    network: dict[str, Node], log: Log, new_pool: NewPool
) -> None:
    sub, top = network["sub-a"], network["super"]
    anchor = top.follower.directory().trust_anchor
    live = LiveDirectory(top.follower.directory(), trust_anchor=anchor)
    kept: list[Refusal] = []
    refused = asyncio.Event()

    async def keep(offset: int, refusal: Refusal, raw: bytes) -> None:
        if refusal.delegation is not None and refusal.delegation.name == evil.name:
            kept.append(refusal)
            refused.set()

    live.keep = keep
    top.follower.directory = live
    await bootstrap(top.store, (), httpsig.public_key_der(httpsig.generate_key()), now=1)
    admin_before = await top.store.get(NODE_ADMIN.handle)

    # the attack: sub-a's operator signs a child claiming the world, announces
    # it on the directory topic, and publishes a block writing the super node's admin key
    evil, evil_key = _rogue(sub, ("0.NA", "88.300", "gs1:61", "10"))
    reader = log.reader()
    watching = asyncio.create_task(live.follow(reader, wait=0.2))
    try:
        await live.announce(log, [evil])
        await asyncio.wait_for(refused.wait(), 60)
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        if reader is not log:
            await reader.close()
    assert kept[0].reason == (
        f"does not verify: sub-chain node {sub.name!r} may not delegate "
        f"(it signed node {evil.name!r})"
    )
    assert evil.name not in live().by_name
    assert evil.name not in followed(live(), top.name)
    assert live.refused >= 1  # (other tests' networks share the topic on Kafka)

    attacker = httpsig.public_key_der(httpsig.generate_key())
    await _rogue_chain(
        new_pool,
        log,
        evil.name,
        evil_key,
        [_admin_record(attacker), url_record("88.300.1/X", "https://evil.example/")],
    )
    await catch_up(top)
    assert await top.store.get(NODE_ADMIN.handle) == admin_before  # the key is the super's own
    assert await top.store.get("88.300.1/X") is None


async def test_a_chain_writing_outside_its_prefixes_is_refused_and_kept(
    network: dict[str, Node],
) -> None:
    sub, backbone = network["sub-a"], network["backbone-1"]
    # sub-a's operator writes into its own database what is not its to write:
    # a sibling's identifier and the prefix record of its parent's prefix
    await sub.store.put(url_record("88.100.1/OK", "https://a.example/ok"), actor="t")
    await sub.store.put(url_record("88.200.5/X", "https://evil.example/"), actor="evil")
    await bootstrap(
        sub.store, (parse_prefix("88"),), httpsig.public_key_der(httpsig.generate_key()), now=1
    )
    await flush(sub)
    await catch_up(backbone)

    assert await backbone.store.get("88.100.1/OK") is not None  # the block's own writes land
    assert await backbone.store.get("88.200.5/X") is None
    assert await backbone.store.get("0.NA/88") is None
    async with backbone.pool.acquire() as conn:
        reasons = sorted(r["reason"] for r in await conn.fetch("SELECT reason FROM dead_letters"))
    assert reasons == [
        f"block 1 of '{sub.name}': 2 operation(s) not applied: "
        f"'{sub.name}' does not hold 88.200.5/X (version 1); "
        f"'{sub.name}' does not hold 0.NA/88 (version 1)"
    ]
    assert "idres_sync_dead_letters_total 1" in backbone.follower.metrics_lines()


async def test_an_anchor_of_a_block_that_is_not_the_childs_is_refused(
    network: dict[str, Node],
) -> None:
    sub, backbone, top = network["sub-a"], network["backbone-1"], network["super"]
    await sub.store.put(url_record("88.100.1/A", "https://a.example/a"), actor="t")
    await flush(sub)
    await catch_up(backbone)
    async with backbone.pool.acquire() as conn:  # the backbone's operator forges an anchor
        (real,) = await conn.fetch("SELECT payload FROM outbox WHERE op = 'anchor'")
        honest = decode_anchor(real["payload"])
        forged = Anchor(
            chain=honest.chain,
            height=honest.height,
            hash=bytes(32),
            seq=honest.seq,
            head=honest.head,
        )
        await conn.execute("DELETE FROM outbox")
        await append_outbox(conn, [(forged.chain, forged.height, "anchor", forged.encode())])
    await flush(backbone)
    await catch_up(top)

    async with top.pool.acquire() as conn:
        reasons = [r["reason"] for r in await conn.fetch("SELECT reason FROM dead_letters")]
        anchored = await conn.fetchval("SELECT count(*) FROM chain_entries WHERE kind = 'anchor'")
    assert len(reasons) == 1
    assert "with a hash that is not the block's" in reasons[0]
    assert anchored == 0  # the forged anchor is not stored
    assert await top.store.get("88.100.1/A") is not None  # the child's own block is


async def test_a_proof_through_a_node_a_sub_chain_delegated_does_not_hold(
    network: dict[str, Node], log: Log, new_pool: NewPool
) -> None:
    sub, top = network["sub-a"], network["super"]
    directory = top.follower.directory()
    # sub-a's operator makes a node for a piece of its own prefix and proves a record
    # there, leaving the super node out of it
    evil, evil_key = _rogue(sub, ("88.100.7",))
    record = url_record("88.100.7/X", "https://evil.example/x")
    await _rogue_chain(new_pool, log, evil.name, evil_key, [record])
    follower = Follower(top.pool, log, me=top.name, directory=lambda: _unchecked(directory, evil))
    while await follower.step(wait=2):
        pass  # the attacker's view: its blocks stored where it builds the proof
    built = await proof.build(
        top.pool, _unchecked(directory, evil), evil.name, record.handle, {evil.name}
    )
    assert built is not None
    answer = json.loads(json.dumps({**record_to_json(record), "proof": built[0]}))
    checked = proof.check(answer, directory.trust_anchor, partial=True)
    assert checked.problems == [
        f"sub-chain node {sub.name!r} may not delegate (it signed node {evil.name!r})"
    ]


async def test_a_proof_carries_only_the_path_from_the_super_node_to_the_holder(
    network: dict[str, Node],
) -> None:
    sub, backbone, top = network["sub-a"], network["backbone-1"], network["super"]
    record = url_record("88.100.1/PATH", "https://a.example/path")
    await sub.store.put(record, actor="t")
    await flush(sub)
    directory = top.follower.directory()
    await catch_up(top)
    built = await proof.build(top.pool, directory, sub.name, record.handle, {sub.name})
    assert built is not None
    answer = json.loads(json.dumps({**record_to_json(record), "proof": built[0]}))
    assert proof.check(answer, directory.trust_anchor, partial=True).problems == []
    # a sibling's delegation, well signed, is not part of the path: refused
    sibling, _ = _rogue(backbone, ("88.900",))
    padded = json.loads(json.dumps(answer))
    padded["proof"]["delegations"].append(sibling.to_json())
    assert proof.check(padded, directory.trust_anchor, partial=True).problems == [
        "proof: the delegations must be the path from the super node to the holder"
    ]
    many = json.loads(json.dumps(answer))
    many["proof"]["delegations"] *= 6  # 18 of them: refused before any is read
    assert proof.check(many, directory.trust_anchor, partial=True).problems == [
        "proof: at most 16 delegations, the path to the holder"
    ]
