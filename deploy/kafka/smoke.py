"""End-to-end smoke check of a Kafka broker with aiokafka.

Usage: python deploy/kafka/smoke.py 127.0.0.1:PORT   (exit 0 = ok)
Credentials: KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD / KAFKA_SASL_MECHANISM, as
kafka.sh prints them (none: PLAINTEXT).

Creates a fresh topic, produces with acks=all + idempotence, consumes in a
consumer group with manual commit, then checks a second consumer of the same
group resumes from the committed offset. Prints step timings to stderr.
"""

import asyncio
import sys
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from sync.kafka import KafkaCredentials, client_options

SASL = client_options(KafkaCredentials.from_env())

N, FIRST = 5, 3  # produce N messages; the first consumer commits after FIRST


def step(name: str, t0: float) -> float:
    print(f"  {name}: {time.monotonic() - t0:.2f}s", file=sys.stderr)
    return time.monotonic()


async def main(bootstrap: str) -> None:
    topic, group = f"smoke-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    tp = TopicPartition(topic, 0)
    t = t_all = time.monotonic()

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **SASL)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    t = step("create topic", t)

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **SASL
    )
    await producer.start()
    try:
        for i in range(N):
            md = await producer.send_and_wait(topic, f"m{i}".encode(), key=b"k")
            assert (md.partition, md.offset) == (0, i), md
            if i == 0:
                t = step("first produce (idempotent, acks=all)", t)
    finally:
        await producer.stop()
    t = step(f"produce {N}", t)

    def consumer() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            **SASL,
        )

    c1 = consumer()
    await c1.start()
    try:
        got = [await asyncio.wait_for(c1.getone(), 30) for _ in range(FIRST)]
        t = step("consumer 1 join + first reads", t)
        assert [m.value for m in got] == [f"m{i}".encode() for i in range(FIRST)], got
        await c1.commit({tp: FIRST})  # next offset to read, Kafka convention
        assert await c1.committed(tp) == FIRST
    finally:
        await c1.stop()  # leaves the group so consumer 2 gets the partition now
    t = step("commit + leave", t)

    c2 = consumer()
    await c2.start()
    try:
        m = await asyncio.wait_for(c2.getone(), 30)
        t = step("consumer 2 join + resume", t)
        assert await c2.committed(tp) == FIRST
        assert (m.offset, m.value) == (FIRST, f"m{FIRST}".encode()), m
    finally:
        await c2.stop()
    step("total", t_all)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: smoke.py HOST:PORT")
    try:
        asyncio.run(asyncio.wait_for(main(sys.argv[1]), 120))
    except Exception as e:  # any failure, incl. AssertionError, is a smoke failure
        print(f"SMOKE FAILED: {e!r}", file=sys.stderr)
        raise SystemExit(1) from e
    print("smoke ok", file=sys.stderr)
