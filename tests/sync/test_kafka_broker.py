"""The real Kafka broker the suite runs on: a produce/consume/commit round trip."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from sync.kafka import KafkaCredentials, client_options

pytestmark = [pytest.mark.kafka, pytest.mark.asyncio]


# the suite's broker takes SASL/SCRAM logins (deploy/kafka/kafka.sh prints the admin's)
def auth() -> dict[str, Any]:
    return client_options(KafkaCredentials.from_env())  # read when the broker is up


async def test_produce_consume_in_a_group_and_commit(kafka_bootstrap: str) -> None:
    topic = f"idres-test-{uuid.uuid4().hex[:8]}"
    group = f"g-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True, **auth()
    )
    await producer.start()
    try:
        for n in range(3):
            await producer.send_and_wait(topic, f"op-{n}".encode(), key=b"88.100.1/ABC")
    finally:
        await producer.stop()

    first = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **auth(),
    )
    await first.start()
    try:
        got = []
        async with asyncio.timeout(60):
            while len(got) < 2:
                msg = await first.getone()
                got.append((msg.key, msg.value))
        assert got == [(b"88.100.1/ABC", b"op-0"), (b"88.100.1/ABC", b"op-1")]
        # commit only what was processed: the third message stays unacknowledged
        tp = TopicPartition(topic, msg.partition)
        await first.commit({tp: msg.offset + 1})
        assert await first.committed(tp) == msg.offset + 1
    finally:
        await first.stop()

    # A new member of the same group resumes at the committed position.
    second = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **auth(),
    )
    await second.start()
    try:
        async with asyncio.timeout(60):
            msg = await second.getone()
        assert (msg.key, msg.value) == (b"88.100.1/ABC", b"op-2")
    finally:
        await second.stop()
