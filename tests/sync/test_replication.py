"""A record written at a sub-chain node reaches its backbone and the super node,
checked, anchored and applied exactly once, over Kafka and over the in-process log."""

from __future__ import annotations

import asyncio
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from registry import httpsig
from registry.rows import append_outbox
from registry.service import bootstrap
from schemas.chain import decode_anchor, decode_block
from schemas.codec_json import record_to_json
from schemas.identifiers.prefix import parse_prefix
from sync import proof
from sync.follow import Follower
from sync.judge import followed
from sync.log import Log, chain_topic
from sync.verify import verify
from tests.sync.chains import Node, catch_up, flush, url_record

ADMIN_DER = httpsig.public_key_der(httpsig.generate_key())

pytestmark = pytest.mark.asyncio


async def test_followed_chains_are_the_nodes_below(network: dict[str, Node]) -> None:
    directory = network["super"].follower.directory()
    assert followed(directory, network["super"].name) == sorted(
        [network["backbone-1"].name, network["sub-a"].name]
    )
    assert followed(directory, network["sub-a"].name) == []


async def test_a_write_reaches_backbone_and_super_and_is_anchored(
    network: dict[str, Node],
) -> None:
    sub, backbone, top = network["sub-a"], network["backbone-1"], network["super"]
    # the sub-chain's own admin and prefix records: in its chain, never applied above
    await bootstrap(sub.store, (parse_prefix("88.100"),), ADMIN_DER, now=1_700_000_000)
    await sub.store.put(url_record("88.100.1/ABC", "https://a.example/1"), actor="t")
    await sub.store.put(url_record("88.100.1/ABC", "https://a.example/2"), actor="t")
    await sub.store.put(url_record("88.100.1/GONE", "https://a.example/x"), actor="t")
    await sub.store.delete("88.100.1/GONE", actor="t")
    await flush(sub)

    assert await catch_up(backbone) == 1
    async with sub.pool.acquire() as conn:  # the admin record is in the sub-chain's log
        assert await conn.fetchval(
            "SELECT count(*) FROM chain_entries WHERE handle = '0.NA/node.admin'"
        )
    got = await backbone.store.get("88.100.1/ABC")
    assert got is not None
    assert got.values[0].value == "https://a.example/2"
    assert await backbone.store.get("88.100.1/GONE") is None
    history = await backbone.store.history("88.100.1/ABC")
    assert [h.version for h in history] == [1, 2]
    assert await backbone.store.get("0.NA/node.admin") is None
    assert await backbone.store.get("0.NA/88.100") is None
    async with backbone.pool.acquire() as conn:
        anchors = await conn.fetch("SELECT handle, version, payload FROM outbox")
    assert [(a["handle"], a["version"]) for a in anchors] == [(sub.name, 1)]
    assert decode_anchor(anchors[0]["payload"]).chain == sub.name

    await flush(backbone)
    assert await catch_up(top) == 2  # the backbone's block and the sub-chain's
    got = await top.store.get("88.100.1/ABC")
    assert got is not None
    assert got.values[0].value == "https://a.example/2"
    async with top.pool.acquire() as conn:
        kinds = await conn.fetch(
            "SELECT chain, kind, handle FROM chain_entries ORDER BY chain, seq"
        )
        super_anchor = await conn.fetchval("SELECT handle FROM outbox")
    assert (backbone.name, "anchor", sub.name) in [tuple(r) for r in kinds]
    assert super_anchor == backbone.name  # the super node anchors the backbone's head


async def test_repeated_and_poison_messages(network: dict[str, Node], log: Log) -> None:
    sub, backbone = network["sub-a"], network["backbone-1"]
    await sub.store.put(url_record("88.100.1/A", "https://a.example/1"), actor="t")
    await flush(sub)
    async with sub.pool.acquire() as conn:
        first = await conn.fetchval("SELECT message FROM chain_blocks WHERE height = 1")
    topic = chain_topic(sub.name)
    # a repeat (a relay that died before recording its publish), then garbage
    await log.append(topic, sub.name.encode(), [first, b"\xa1\x61v\x09"])
    await sub.store.put(url_record("88.100.1/A", "https://a.example/2"), actor="t")
    await flush(sub)
    assert await catch_up(backbone) == 2
    got = await backbone.store.get("88.100.1/A")
    assert got is not None
    assert got.values[0].value == "https://a.example/2"
    assert [h.version for h in await backbone.store.history("88.100.1/A")] == [1, 2]
    async with backbone.pool.acquire() as conn:
        dead = await conn.fetch("SELECT log_offset, reason FROM dead_letters")
        position = await conn.fetchrow("SELECT next_offset, height FROM sync_positions")
    assert [(d["log_offset"], d["reason"]) for d in dead] == [
        (2, "block version 9 is not supported (this node reads 1)")
    ]
    assert (position["next_offset"], position["height"]) == (4, 2)
    assert backbone.follower.dead_letters == 1


async def test_a_forged_block_is_refused(network: dict[str, Node], log: Log) -> None:
    sub, backbone = network["sub-a"], network["backbone-1"]
    await sub.store.put(url_record("88.100.1/A", "https://a.example/1"), actor="t")
    while await sub.relay.cut() is not None:
        pass
    async with sub.pool.acquire() as conn:
        message = await conn.fetchval("SELECT message FROM chain_blocks WHERE height = 1")
    block = decode_block(message)
    # the same block cut and signed by a key the directory does not know
    from schemas.chain import Tip, cut_block

    forged = cut_block(
        chain=sub.name,
        alg="sha256",
        tip=Tip(),
        items=[(e.kind, e.payload) for e in block.entries],
        key=ed25519.Ed25519PrivateKey.generate(),
        at=block.header.at,
    )
    await log.ensure_topic(chain_topic(sub.name))
    await log.append(chain_topic(sub.name), sub.name.encode(), [forged.message()])
    await sub.relay.publish()
    assert await catch_up(backbone) == 1  # the genuine block, after the forged one
    async with backbone.pool.acquire() as conn:
        reasons = await conn.fetch("SELECT reason FROM dead_letters")
    assert [r["reason"] for r in reasons] == [
        f"block 1 of chain '{sub.name}' is not signed by its node"
    ]
    assert await backbone.store.get("88.100.1/A") is not None


async def test_the_chain_takes_operations_in_commit_order(network: dict[str, Node]) -> None:
    sub = network["sub-a"]
    async with sub.pool.acquire() as open_tx:
        tx = open_tx.transaction()
        await tx.start()
        await append_outbox(open_tx, [("88.100.1/OLD", 1, "create", b"early")])
        # a second write must not commit its outbox row before the open one: were it
        # chained now, the open one's row would land behind the head when it commits
        later = asyncio.create_task(
            sub.store.put(url_record("88.100.1/A", "https://a.example/1"), actor="t")
        )
        await asyncio.sleep(0.3)
        assert not later.done()
        block = await sub.relay.cut()
        assert block is None
        await tx.commit()
    await later
    block = await sub.relay.cut()
    assert block is not None
    assert block.entries[0].payload == b"early"
    assert block.header.count == 2


async def test_verify_names_a_tampered_record_and_the_broken_link(
    network: dict[str, Node],
) -> None:
    sub, backbone, top = network["sub-a"], network["backbone-1"], network["super"]
    await sub.store.put(url_record("88.100.1/ABC", "https://a.example/1"), actor="t")
    await sub.store.put(url_record("88.100.1/ABC", "https://a.example/2"), actor="t")
    await flush(sub)
    await catch_up(backbone)
    await flush(backbone)
    await catch_up(top)
    directory = top.follower.directory()
    clean = await verify(top.pool, directory, top.name)
    assert clean.problems == []
    assert clean.chains == {top.name: 0, backbone.name: 1, sub.name: 1}
    assert clean.anchors == 1  # the sub-chain's block, anchored in the backbone's chain
    assert clean.records >= 1

    # someone edits the super node's copy directly in PostgreSQL
    await top.pool.execute(
        "UPDATE handle_values SET data = 'https://evil.example/' WHERE handle = '88.100.1/ABC'"
    )
    report = await verify(top.pool, directory, top.name)
    assert report.problems == [
        f"88.100.1/ABC: the value at index 1 differs from operation 2 (version 2) in block 1 "
        f"of chain '{sub.name}'"
    ]
    # and someone rewrites the log entry to match
    await top.pool.execute(
        "UPDATE chain_entries SET payload = payload || '\\x00'::bytea WHERE seq = 2 AND chain = $1",
        sub.name,
    )
    again = await verify(top.pool, directory, top.name)
    assert (
        f"entry 2 of chain '{sub.name}' differs from what block 1 of chain '{sub.name}' signed"
        " (broken link: the stored entry was changed)"
    ) in again.problems
    # and someone points the lookup columns of the first operation elsewhere
    await top.pool.execute(
        "UPDATE chain_entries SET version = 0 WHERE seq = 1 AND chain = $1", sub.name
    )
    moved = await verify(top.pool, directory, top.name)
    assert (
        f"entry 1 of chain '{sub.name}' differs from what block 1 of chain '{sub.name}' signed"
        " (broken link: the stored entry was changed)"
    ) in moved.problems
    # a record that no chain ever carried
    await top.pool.execute(
        "INSERT INTO identifiers (handle, scheme, routing_key, version)"
        " VALUES ('88.100.1/SNEAKY', 'handle', 'handle:88.100.1', 1)"
    )
    last = await verify(top.pool, directory, top.name)
    assert "88.100.1/SNEAKY: a record here that no chain holds" in last.problems


def _clocked_follower(node: Node, log: Log, now: list[float]) -> Follower:
    """A second follower of ``node``'s chains whose clock the test moves."""
    return Follower(
        node.pool, log, me=node.name, directory=node.follower.directory, clock=lambda: now[0]
    )


async def _blocks(node: Node) -> list[bytes]:
    while await node.relay.cut() is not None:
        pass
    async with node.pool.acquire() as conn:
        rows = await conn.fetch("SELECT message FROM chain_blocks ORDER BY height")
    return [r["message"] for r in rows]


async def test_a_block_arriving_before_the_one_it_follows_waits_for_it(
    network: dict[str, Node], log: Log
) -> None:
    sub, backbone = network["sub-a"], network["backbone-1"]
    await sub.store.put(url_record("88.100.1/A", "https://a.example/1"), actor="t")
    first = await _blocks(sub)
    await sub.store.put(url_record("88.100.1/A", "https://a.example/2"), actor="t")
    both = await _blocks(sub)
    topic = chain_topic(sub.name)
    await log.ensure_topic(topic)
    # block 2 first (a late batch of an earlier producer), then 1, then 2 again
    await log.append(topic, sub.name.encode(), [both[1], first[0], both[1]])
    assert await catch_up(backbone) == 2
    got = await backbone.store.get("88.100.1/A")
    assert got is not None
    assert got.values[0].value == "https://a.example/2"
    assert backbone.follower.gaps == {}
    async with backbone.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 0


async def test_a_block_this_node_cannot_store_stalls_its_chain_until_it_can(
    network: dict[str, Node], log: Log
) -> None:
    sub, backbone = network["sub-a"], network["backbone-1"]
    now = [1000.0]
    follower = _clocked_follower(backbone, log, now)
    # a row in the way of block 1's first entry (as a half-restored backup might leave)
    await backbone.pool.execute(
        "INSERT INTO chain_entries (chain, seq, height, kind, handle, version, hash, payload)"
        " VALUES ($1, 1, 99, 'op', 'x', 1, '', '')",
        sub.name,
    )
    await sub.store.put(url_record("88.100.1/A", "https://a.example/1"), actor="t")
    await flush(sub)
    assert await follower.step(wait=2) == 0
    assert sub.name in follower.stalled
    assert f'idres_sync_stalled{{chain="{sub.name}"}} 1' in follower.metrics_lines()
    assert await follower.step(wait=0.2) == 0  # not read again before its retry time
    async with backbone.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 0  # not refused
        await conn.execute("DELETE FROM chain_entries WHERE height = 99")
    now[0] += 10
    assert await follower.step(wait=2) == 1
    assert follower.stalled == {}
    assert await backbone.store.get("88.100.1/A") is not None


async def test_after_a_refused_block_the_chain_is_read_again_from_its_tip(
    network: dict[str, Node], log: Log
) -> None:
    sub, backbone = network["sub-a"], network["backbone-1"]
    now = [1000.0]
    follower = _clocked_follower(backbone, log, now)
    await sub.store.put(url_record("88.100.1/A", "https://a.example/1"), actor="t")
    await sub.relay.cut()  # block 1: A
    await sub.store.put(url_record("88.100.1/B", "https://a.example/1"), actor="t")
    blocks = await _blocks(sub)  # block 2: B
    topic = chain_topic(sub.name)
    await log.ensure_topic(topic)
    # block 1 arrives damaged (refused), block 2 intact: 2 cannot be applied without 1
    await log.append(topic, sub.name.encode(), [blocks[0][:-1] + b"\x00", blocks[1]])
    assert await follower.step(wait=2) == 0
    assert sub.name in follower.gaps
    now[0] += 10
    await follower.step(wait=0.5)  # at the end of the log: back to after the tip
    assert follower.positions[sub.name].next_offset == 0
    await follower.step(wait=2)  # read again: still refused, kept once
    async with backbone.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 1


async def test_a_proof_checks_offline_and_fails_on_any_change(network: dict[str, Node]) -> None:
    sub, backbone, top = network["sub-a"], network["backbone-1"], network["super"]
    record = url_record("88.100.1/P", "https://a.example/p")
    await sub.store.put(record, actor="t")
    await flush(sub)
    await catch_up(backbone)
    await flush(backbone)  # the backbone's block anchors the sub-chain's
    await catch_up(top)
    await flush(top)  # the super node's block anchors the backbone's
    directory = top.follower.directory()
    held = {top.name, backbone.name, sub.name}
    built = await proof.build(top.pool, directory, sub.name, "88.100.1/P", held)
    assert built is not None
    doc, proved = built
    assert proved == record
    answer = {**record_to_json(record), "proof": doc}
    anchor = directory.by_name[top.name].public_key
    checked = proof.check(answer, anchor)
    assert checked.problems == []
    assert [c.split(":")[0] for c in checked.claims] == [
        "the delegations chain to the trusted super node key",
        "88.100.1/P as answered is version 1",
        f"block 1 of '{sub.name}' is anchored by entry 1 of block 1 of '{backbone.name}', "
        f"signed by '{backbone.name}'",
        f"block 1 of '{backbone.name}' is anchored by entry 1 of block 1 of '{top.name}', "
        f"signed by '{top.name}'",
    ]
    # json round trip: what a client saves is what it checks
    assert proof.check(json.loads(json.dumps(answer)), anchor).problems == []

    changed = json.loads(json.dumps(answer))
    changed["values"][0]["data"]["value"] = "https://evil.example/"
    assert proof.check(changed, anchor).problems == [
        "proof: the values answered differ from version 1 in the chain"
    ]
    bent = json.loads(json.dumps(answer))
    bent["proof"]["levels"][1]["payload"] = bent["proof"]["levels"][0]["payload"]
    assert "is not under the Merkle root" in proof.check(bent, anchor).problems[0]
    stranger = httpsig.public_key_der(httpsig.generate_key())
    assert "not the trusted one" in proof.check(answer, stranger).problems[0]


async def test_a_proof_from_the_wrong_chain_or_ending_early_does_not_hold(
    network: dict[str, Node],
) -> None:
    sub, backbone, top = network["sub-a"], network["backbone-1"], network["super"]
    # the sub-chain (88.100) signs a record under 88.200, which it does not hold
    forged = url_record("88.200.1/X", "https://evil.example/")
    await sub.store.put(forged, actor="t")
    await sub.store.put(url_record("88.100.1/P", "https://a.example/p"), actor="t")
    await flush(sub)
    await catch_up(backbone)
    directory = top.follower.directory()
    anchor = directory.by_name[top.name].public_key
    held = {sub.name}
    built = await proof.build(sub.pool, directory, sub.name, "88.200.1/X", held)
    assert built is not None
    answer = {**record_to_json(forged), "proof": built[0]}
    assert any("does not hold 88.200.1/X" in p for p in proof.check(answer, anchor).problems)
    # a proof that stops at the sub-chain (not yet anchored above) holds only as partial
    built = await proof.build(sub.pool, directory, sub.name, "88.100.1/P", held)
    assert built is not None
    answer = {**record_to_json(url_record("88.100.1/P", "https://a.example/p")), "proof": built[0]}
    ends = f"the proof ends at chain '{sub.name}', below the super node's chain"
    assert proof.check(answer, anchor).problems == [ends]
    assert proof.check(answer, anchor, partial=True).problems == []
    # and without a trust anchor it proves nothing about who signed
    untrusted = proof.check(answer, None)
    assert any(p.startswith("no trust anchor given") for p in untrusted.problems)
