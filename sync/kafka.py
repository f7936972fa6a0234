"""The log on Apache Kafka through aiokafka.

Appends go through an idempotent producer with acks=all and wait for every
acknowledgement. Reads use a consumer without a group: the node assigns itself the
topics it follows and seeks to the offsets kept in its own PostgreSQL, so the
position it trusts is the one committed with the data (Kafka's group offsets are
never used). aiokafka's errors become ``LogUnavailable`` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from sync.log import LogRecord, LogUnavailable

log = logging.getLogger("idres.sync.kafka")
_TOPIC_EXISTS = 36  # Kafka protocol error code TOPIC_ALREADY_EXISTS
# One block is one message, and one operation may be as large as a request body
# (16 MiB by default): room for that and a block's framing.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024


class KafkaLog:
    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "idres",
        append_timeout: float = 15.0,
        replication_factor: int = 1,
    ) -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._append_timeout = append_timeout
        self._replication = replication_factor
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._assigned: set[TopicPartition] = set()
        self._next: dict[TopicPartition, int] = {}
        self._known_topics: set[str] = set()

    def reader(self) -> KafkaLog:
        return KafkaLog(
            self._bootstrap,
            client_id=self._client_id,
            append_timeout=self._append_timeout,
            replication_factor=self._replication,
        )

    async def ensure_topic(self, topic: str, *, compacted: bool = False) -> None:
        if topic in self._known_topics:
            return
        configs = {"cleanup.policy": "compact"} if compacted else {"retention.ms": "-1"}
        configs["max.message.bytes"] = str(MAX_MESSAGE_BYTES)
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, client_id=self._client_id)
        try:
            await admin.start()
            response = await admin.create_topics(
                [NewTopic(topic, 1, self._replication, topic_configs=configs)]
            )
        except (KafkaError, OSError) as exc:
            raise LogUnavailable(
                f"Kafka at {self._bootstrap}: cannot create {topic}: {exc}"
            ) from exc
        finally:
            with contextlib.suppress(KafkaError, OSError):
                await admin.close()
        for error in response.topic_errors:
            code = error[1]
            if code not in (0, _TOPIC_EXISTS):
                raise LogUnavailable(f"Kafka refused to create {topic}: error code {code}")
        self._known_topics.add(topic)

    async def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                acks="all",
                enable_idempotence=True,
                max_request_size=MAX_MESSAGE_BYTES,
                linger_ms=2,
            )
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise LogUnavailable(f"Kafka at {self._bootstrap} is unreachable: {exc}") from exc
            self._producer = producer
        return self._producer

    async def append(self, topic: str, key: bytes, values: Sequence[bytes]) -> None:
        producer = await self._started_producer()
        try:
            async with asyncio.timeout(self._append_timeout):
                sent = [await producer.send(topic, value, key=key) for value in values]
                await asyncio.gather(*sent)
        except (KafkaError, OSError, TimeoutError) as exc:
            # Start over with a fresh producer: a batch the old one still holds may yet
            # arrive, and readers drop the repeat by its block height.
            self._producer = None
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await producer.stop()
            raise LogUnavailable(
                f"Kafka did not acknowledge {len(values)} message(s) to {topic}: "
                f"{type(exc).__name__} {exc}"
            ) from exc

    async def _started_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_uncommitted",
                fetch_max_bytes=2 * MAX_MESSAGE_BYTES,
                max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
            )
            try:
                await consumer.start()
            except (KafkaError, OSError) as exc:
                with contextlib.suppress(Exception):
                    await consumer.stop()
                raise LogUnavailable(f"Kafka at {self._bootstrap} is unreachable: {exc}") from exc
            self._consumer = consumer
        return self._consumer

    async def fetch(
        self, positions: Mapping[str, int], *, wait: float, max_records: int = 500
    ) -> list[LogRecord]:
        consumer = await self._started_consumer()
        wanted = {TopicPartition(t, 0): o for t, o in positions.items()}
        try:
            if set(wanted) != self._assigned:
                consumer.assign(list(wanted))
                self._assigned = set(wanted)
                self._next = {}
            for tp, offset in wanted.items():
                if self._next.get(tp) != offset:
                    consumer.seek(tp, offset)
                    self._next[tp] = offset
            batches = await consumer.getmany(
                *wanted, timeout_ms=int(wait * 1000), max_records=max_records
            )
        except (KafkaError, OSError) as exc:
            raise LogUnavailable(f"reading from Kafka failed: {exc}") from exc
        out: list[LogRecord] = []
        for tp, messages in batches.items():
            for m in messages:
                out.append(
                    LogRecord(
                        topic=tp.topic, offset=m.offset, key=m.key or b"", value=m.value or b""
                    )
                )
                self._next[tp] = m.offset + 1
        out.sort(key=lambda r: (r.topic, r.offset))
        return out

    async def end_offset(self, topic: str) -> int:
        consumer = await self._started_consumer()
        tp = TopicPartition(topic, 0)
        try:
            ends = await consumer.end_offsets([tp])
        except (KafkaError, OSError) as exc:
            raise LogUnavailable(f"reading Kafka's end offset of {topic} failed: {exc}") from exc
        return int(ends[tp])

    async def close(self) -> None:
        for client in (self._producer, self._consumer):
            if client is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5):
                        await client.stop()
        self._producer = self._consumer = None
