"""A value without public read never leaves its holder in clear (issue 11): its chain,
the log and the databases above hold a salted commitment that the holder's value and
salt open, and nothing that reads as the value. Over Kafka and the in-process log."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import asyncpg
import cbor2
import pytest
from aiokafka import AIOKafkaConsumer

from registry.rows import fetch_salts
from schemas.codec_cbor import record_to_cbor_obj
from schemas.codec_json import record_to_json
from schemas.commitment import COMMITTED_TYPE, CommittedValue, opens
from schemas.record import DataFormat, HandleValue, Permissions, Record
from sync import proof
from sync.kafka import KafkaLog
from sync.log import Log, chain_topic
from sync.verify import verify
from tests.sync.chains import Node, catch_up, flush

pytestmark = pytest.mark.asyncio

HANDLE = "88.100.1/PRIVATE"
SECRET = "buyer-7731@corp.example"  # an EMAIL only the holder's admins may read
PRIVATE = Permissions(public_read=False)


def _record(secret: str = SECRET, url: str = "https://e.x/p") -> Record:
    return Record(
        handle=HANDLE,
        values=(
            HandleValue(index=1, type="URL", format=DataFormat.STRING, value=url),
            HandleValue(
                index=2,
                type="EMAIL",
                format=DataFormat.STRING,
                value=secret,
                permissions=PRIVATE,
            ),
        ),
    )


async def _propagate(network: dict[str, Node]) -> None:
    sub, backbone, top = network["sub-a"], network["backbone-1"], network["super"]
    await flush(sub)
    await catch_up(backbone)
    await flush(backbone)
    await catch_up(top)


def _consumer_options() -> dict[str, Any]:
    """What a client of the broker needs besides its address: SASL when the test
    broker asks for it (tests/conftest.py puts its credentials in the environment)."""
    if "KAFKA_SASL_USERNAME" not in os.environ:
        return {}
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": os.environ.get("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
        "sasl_plain_username": os.environ["KAFKA_SASL_USERNAME"],
        "sasl_plain_password": os.environ["KAFKA_SASL_PASSWORD"],
    }


async def _published(log: Log, topic: str, request: pytest.FixtureRequest) -> list[bytes]:
    """Every message of ``topic``, read as any other client of the log would read it:
    on Kafka with a plain consumer of its own, not through idres."""
    if not isinstance(log, KafkaLog):
        return [r.value for r in await log.fetch({topic: 0}, wait=1)]
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=request.getfixturevalue("kafka_bootstrap"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **_consumer_options(),
    )
    await consumer.start()
    try:
        out: list[bytes] = []
        async with asyncio.timeout(60):
            while not out:  # every block was acknowledged before flush returned
                batches = await consumer.getmany(timeout_ms=1000)
                out += [m.value for msgs in batches.values() for m in msgs if m.value]
        return out
    finally:
        await consumer.stop()


async def _bytes_anywhere(pool: asyncpg.Pool, needle: bytes) -> list[str]:
    """Which stored columns of a node's database hold ``needle``."""
    found = []
    async with pool.acquire() as conn:
        for table, column in (
            ("handle_values", "data"),
            ("history", "record"),
            ("chain_entries", "payload"),
            ("chain_blocks", "message"),
            ("outbox", "payload"),
            ("answers", "body"),
        ):
            if await conn.fetchval(
                f"SELECT count(*) FROM {table} WHERE position($1::bytea IN {column}) > 0", needle
            ):
                found.append(f"{table}.{column}")
    return found


async def test_a_private_value_leaves_its_holder_only_as_a_commitment(
    network: dict[str, Node], log: Log, request: pytest.FixtureRequest
) -> None:
    sub, backbone, top = network["sub-a"], network["backbone-1"], network["super"]
    await sub.store.put(_record(), actor="t")
    await _propagate(network)

    # what a sibling, a mirror or any reader of the log sees: the public value, and
    # that a private value exists, never its bytes (nor its type)
    messages = await _published(log, chain_topic(sub.name), request)
    assert any(b"https://e.x/p" in m for m in messages)  # the right bytes were read
    assert not [m for m in messages if SECRET.encode() in m]
    assert not [m for m in messages if b"EMAIL" in m]

    # the parent and the super node keep the commitment as such, nothing in clear
    for above in (backbone, top):
        assert await _bytes_anywhere(above.pool, SECRET.encode()) == []
        copy = await above.store.get(HANDLE)
        assert copy is not None
        assert copy.values[0].value == "https://e.x/p"
        committed = copy.values[1]
        assert isinstance(committed, CommittedValue)
        assert (committed.index, committed.type, committed.permissions) == (
            2,
            COMMITTED_TYPE,
            PRIVATE,
        )
        # the answer its edge serves, applied with the copy: the public value only
        answer = json.loads(
            await above.pool.fetchval("SELECT body FROM answers WHERE handle = $1", HANDLE)
        )
        assert [v["index"] for v in answer["values"]] == [1]
    # the holder's chain itself (what its snapshots carry) is committed too; only its
    # own values and history keep the value, where its admins read it (test_api.py
    # covers the signed read of a private value at its node)
    assert await _bytes_anywhere(sub.pool, SECRET.encode()) == [
        "handle_values.data",
        "history.record",
    ]
    held = await sub.store.get(HANDLE)
    assert held is not None
    assert held.values[1].value == SECRET

    directory = sub.follower.directory()
    for node in (sub, backbone, top):
        report = await verify(node.pool, directory, node.name)
        assert report.problems == [], node.name
        assert report.records >= 1


async def test_the_commitment_opens_with_the_holders_value_and_salt_only(
    network: dict[str, Node],
) -> None:
    sub, backbone = network["sub-a"], network["backbone-1"]
    await sub.store.put(_record(), actor="t")
    await flush(sub)
    await catch_up(backbone)

    copy = await backbone.store.get(HANDLE)
    assert copy is not None
    committed = copy.values[1]
    # what the holder shows a reader it allows: the value, and the salt it keeps
    held = await sub.store.get(HANDLE)
    assert held is not None
    async with sub.pool.acquire() as conn:
        salt = (await fetch_salts(conn, [HANDLE]))[HANDLE][2]
    shown = held.values[1]
    assert opens(HANDLE, committed, shown, salt)
    assert not opens(HANDLE, committed, _record("buyer-7732@corp.example").values[1], salt)
    assert not opens(HANDLE, committed, shown, bytes(16))


async def test_a_parents_history_says_that_a_private_value_changed_not_what(
    network: dict[str, Node],
) -> None:
    sub, backbone = network["sub-a"], network["backbone-1"]
    await sub.store.put(_record(), actor="t")
    await sub.store.put(_record(url="https://e.x/q"), actor="t")  # the private value kept
    await sub.store.put(_record("buyer-9@corp.example", url="https://e.x/q"), actor="t")
    await flush(sub)
    await catch_up(backbone)

    history = await backbone.store.history(HANDLE)
    changes = [[(c.index, c.type, c.change) for c in h.changes] for h in history]
    assert changes == [
        [(1, "URL", "added"), (2, COMMITTED_TYPE, "added")],
        [(1, "URL", "modified")],  # an unchanged value keeps its salt and commitment
        [(2, COMMITTED_TYPE, "modified")],
    ]
    for entry in history:
        assert entry.record is not None
        assert isinstance(entry.record.values[1], CommittedValue)
    assert await _bytes_anywhere(backbone.pool, b"buyer-") == []


async def test_verify_finds_a_private_value_changed_behind_the_chains_back(
    network: dict[str, Node],
) -> None:
    sub, backbone = network["sub-a"], network["backbone-1"]
    await sub.store.put(_record(), actor="t")
    await flush(sub)
    await catch_up(backbone)
    directory = sub.follower.directory()

    # at the holder: the value no longer opens the commitment its chain signed
    async with sub.pool.acquire() as conn:
        await conn.execute(
            "UPDATE handle_values SET data = $1 WHERE handle = $2 AND idx = 2",
            b"attacker@evil.example",
            HANDLE,
        )
    report = await verify(sub.pool, directory, sub.name)
    assert [p for p in report.problems if p.startswith(f"{HANDLE}: the value at index 2")]

    # its salt lost: the commitment cannot be opened, and verify says so
    async with sub.pool.acquire() as conn:
        await conn.execute("UPDATE handle_values SET salt = NULL WHERE handle = $1", HANDLE)
    report = await verify(sub.pool, directory, sub.name)
    assert [p for p in report.problems if "no salt for the private value 2" in p]

    # at the parent: a commitment that is not the chain's
    async with backbone.pool.acquire() as conn:
        await conn.execute(
            "UPDATE handle_values SET data = $1 WHERE handle = $2 AND idx = 2",
            bytes(32),
            HANDLE,
        )
    report = await verify(backbone.pool, directory, backbone.name)
    assert [p for p in report.problems if p.startswith(f"{HANDLE}: the value at index 2")]


async def test_an_operation_left_in_the_outbox_by_an_older_idres_leaves_committed(
    network: dict[str, Node], log: Log, request: pytest.FixtureRequest
) -> None:
    sub, backbone = network["sub-a"], network["backbone-1"]
    await sub.store.put(_record(), actor="t")
    # as an idres before commitments left it: the operation in clear, no salt kept
    old = cbor2.dumps(
        {
            "v": 1,
            "at": 1_700_000_000,
            "op": "create",
            "actor": "t",
            "handle": HANDLE,
            "record": record_to_cbor_obj(_record()),
            "version": 1,
        },
        canonical=True,
    )
    async with sub.pool.acquire() as conn:
        await conn.execute("UPDATE outbox SET payload = $1", old)
        await conn.execute("UPDATE handle_values SET salt = NULL")
    await flush(sub)
    await catch_up(backbone)

    messages = await _published(log, chain_topic(sub.name), request)
    assert not [m for m in messages if SECRET.encode() in m]
    copy = await backbone.store.get(HANDLE)
    assert copy is not None
    assert isinstance(copy.values[1], CommittedValue)
    directory = sub.follower.directory()
    for node in (sub, backbone):  # the holder kept the new salt: its commitment opens
        assert (await verify(node.pool, directory, node.name)).problems == []


async def test_a_record_with_a_private_value_has_a_proof_that_shows_only_the_public_ones(
    network: dict[str, Node],
) -> None:
    sub, backbone, top = network["sub-a"], network["backbone-1"], network["super"]
    record = _record()
    await sub.store.put(record, actor="t")
    await _propagate(network)
    await flush(top)
    directory = top.follower.directory()
    held = {top.name, backbone.name, sub.name}
    built = await proof.build(top.pool, directory, sub.name, HANDLE, held)
    assert built is not None
    public = tuple(v for v in record.values if v.permissions.public_read)
    answer = json.loads(json.dumps({**record_to_json(record, values=public), "proof": built[0]}))
    checked = proof.check(answer, directory.trust_anchor)
    assert checked.problems == []
    assert SECRET not in json.dumps(answer)  # neither the answer nor its proof shows it
    # the private value cannot be slipped into the answer: the proof covers what is shown
    leaked = {**answer, "values": record_to_json(record)["values"]}
    assert proof.check(leaked, directory.trust_anchor).problems == [
        "proof: the values answered differ from version 1 in the chain"
    ]


async def test_a_repair_restores_public_values_and_withholds_a_private_one_it_cannot(
    network: dict[str, Node],
) -> None:
    from sync.repair import repair  # issue 16: what the chain can give back, and not

    sub = network["sub-a"]
    await sub.store.put(_record(), actor="t")
    await flush(sub)
    directory = sub.follower.directory()
    # a public value changed at the holder: the chain has it in clear
    async with sub.pool.acquire() as conn:
        await conn.execute(
            "UPDATE handle_values SET data = $1 WHERE handle = $2 AND idx = 1",
            b"https://evil.example/",
            HANDLE,
        )
    fixed = await repair(sub.pool, directory, sub.name, [HANDLE], found_by="verify")
    assert (fixed.repaired, fixed.withheld) == ([HANDLE], [])
    record = await sub.store.get(HANDLE)
    assert record is not None
    assert [v.value for v in record.values] == ["https://e.x/p", SECRET]  # the secret kept
    assert (await verify(sub.pool, directory, sub.name)).problems == []

    # a private value changed: the chain holds only its commitment, so it is withheld
    async with sub.pool.acquire() as conn:
        await conn.execute(
            "UPDATE handle_values SET data = $1 WHERE handle = $2 AND idx = 2",
            b"attacker@evil.example",
            HANDLE,
        )
    fixed = await repair(sub.pool, directory, sub.name, [HANDLE], found_by="verify")
    assert fixed.withheld == [(HANDLE, 2)]
    record = await sub.store.get(HANDLE)
    assert record is not None
    assert [v.index for v in record.values] == [1]  # the forged value is served to no one
    async with sub.pool.acquire() as conn:
        kept = await conn.fetch("SELECT idx, data FROM withheld_values WHERE handle = $1", HANDLE)
        findings = await conn.fetch(
            "SELECT found_by, repaired FROM integrity_findings WHERE handle = $1 ORDER BY id",
            HANDLE,
        )
    assert [(r["idx"], bytes(r["data"])) for r in kept] == [(2, b"attacker@evil.example")]
    assert [(r["found_by"], r["repaired"]) for r in findings] == [
        ("verify", True),
        ("verify", False),
    ]
