"""The log on Apache Kafka through aiokafka.

Appends go through an idempotent producer with acks=all and wait for every
acknowledgement. Reads use a consumer without a group: the node assigns itself the
topics it follows and seeks to the offsets kept in its own PostgreSQL, so the
position it trusts is the one committed with the data (Kafka's group offsets are
never used). aiokafka's errors become ``LogUnavailable`` here, and the broker's
refusals (an ACL, rejected credentials) ``LogForbidden`` naming the topic.

Credentials: a secured broker (deploy/kafka/kafka.sh starts one) wants SASL/SCRAM.
``KafkaLog(bootstrap)`` without ``credentials`` reads ``KAFKA_SASL_USERNAME``,
``KAFKA_SASL_PASSWORD``, ``KAFKA_SASL_MECHANISM`` (default SCRAM-SHA-512) and
``KAFKA_SECURITY_PROTOCOL`` (default SASL_PLAINTEXT) from the environment when it is
built, so scripts and tests that know only the bootstrap reach a secured broker; no
``KAFKA_SASL_USERNAME`` means PLAINTEXT. The composition root passes
``credentials=`` explicitly (``None`` for PLAINTEXT).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)
from aiokafka.helpers import create_ssl_context

from sync.log import LogForbidden, LogRecord, LogUnavailable

log = logging.getLogger("idres.sync.kafka")
_TOPIC_EXISTS = 36  # Kafka protocol error code TOPIC_ALREADY_EXISTS
_TOPIC_AUTHORIZATION_FAILED = 29
_CLUSTER_AUTHORIZATION_FAILED = 31
DEFAULT_MECHANISM = "SCRAM-SHA-512"
DEFAULT_SECURITY_PROTOCOL = "SASL_PLAINTEXT"
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
SECURITY_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
# One block is one message, and one operation may be as large as a request body
# (16 MiB by default): room for that and a block's framing.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaCredentials:
    """Who this node is to the broker: a SASL user (Kafka principal ``User:<username>``)."""

    username: str
    password: str = field(repr=False)  # never in a log line or a traceback
    mechanism: str = DEFAULT_MECHANISM
    # SASL_SSL in production; the test broker listens on loopback with SASL_PLAINTEXT.
    security_protocol: str = DEFAULT_SECURITY_PROTOCOL

    def __post_init__(self) -> None:
        if not self.username:
            raise ValueError("Kafka SASL username is empty")
        if self.mechanism not in MECHANISMS:
            raise ValueError(f"Kafka SASL mechanism {self.mechanism!r}: one of {MECHANISMS}")
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ValueError(
                f"Kafka security protocol {self.security_protocol!r}: one of {SECURITY_PROTOCOLS}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaCredentials | None:
        """``KAFKA_SASL_*`` of ``env`` (default ``os.environ``); None without a username."""
        env = os.environ if env is None else env
        username = env.get("KAFKA_SASL_USERNAME")
        if not username:
            return None
        return cls(
            username=username,
            password=env.get("KAFKA_SASL_PASSWORD", ""),
            mechanism=env.get("KAFKA_SASL_MECHANISM") or DEFAULT_MECHANISM,
            security_protocol=env.get("KAFKA_SECURITY_PROTOCOL") or DEFAULT_SECURITY_PROTOCOL,
        )


def client_options(credentials: KafkaCredentials | None) -> dict[str, Any]:
    """The keyword arguments that make any aiokafka client authenticate as ``credentials``
    (producer, consumer and admin client take the same ones); {} for PLAINTEXT."""
    if credentials is None:
        return {}
    options: dict[str, Any] = {
        "security_protocol": credentials.security_protocol,
        "sasl_mechanism": credentials.mechanism,
        "sasl_plain_username": credentials.username,
        "sasl_plain_password": credentials.password,
    }
    if credentials.security_protocol == "SASL_SSL":
        options["ssl_context"] = create_ssl_context()  # the system's CAs
    return options


class _FromEnvironment:
    def __repr__(self) -> str:
        return "FROM_ENVIRONMENT"


FROM_ENVIRONMENT: Final = _FromEnvironment()


@contextlib.contextmanager
def _refusals(who: str, action: str, topic: str) -> Iterator[None]:
    """The broker's refusals as ``LogForbidden`` with the topic named; everything else
    passes through to the caller's own translation."""
    try:
        yield
    except (TopicAuthorizationFailedError, ClusterAuthorizationFailedError) as exc:
        raise LogForbidden(
            f"Kafka refused {who} to {action} topic {topic!r}: not allowed by its ACLs "
            "(see idres kafka-acl)",
            topic=topic,
        ) from exc
    except SaslAuthenticationFailed as exc:
        raise LogForbidden(
            f"Kafka refused the credentials of {who} ({action} {topic!r})", topic=topic
        ) from exc


def _flatten(args: tuple[object, ...]) -> Iterator[object]:
    for a in args:
        if isinstance(a, set | frozenset | list | tuple):
            yield from a
        else:
            yield a


class KafkaLog:
    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "idres",
        append_timeout: float = 15.0,
        replication_factor: int = 1,
        credentials: KafkaCredentials | _FromEnvironment | None = FROM_ENVIRONMENT,
    ) -> None:
        if isinstance(credentials, _FromEnvironment):
            credentials = KafkaCredentials.from_env()
        self._credentials = credentials
        self._options = client_options(credentials)
        self._who = f"user {credentials.username!r}" if credentials else "an anonymous client"
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._append_timeout = append_timeout
        self._replication = replication_factor
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._assigned: set[TopicPartition] = set()
        self._next: dict[TopicPartition, int] = {}
        self._known_topics: set[str] = set()
        self._readable: set[str] = set()

    def reader(self) -> KafkaLog:
        return KafkaLog(
            self._bootstrap,
            client_id=self._client_id,
            append_timeout=self._append_timeout,
            replication_factor=self._replication,
            credentials=self._credentials,
        )

    def _unreachable(self, exc: BaseException) -> LogUnavailable:
        # aiokafka logs a refused SASL handshake and then reports only that it could
        # not bootstrap, so with credentials both causes are named.
        why = " or refused the credentials of " + self._who if self._credentials else ""
        return LogUnavailable(f"Kafka at {self._bootstrap} is unreachable{why}: {exc}")

    async def ensure_topic(self, topic: str, *, compacted: bool = False) -> None:
        if topic in self._known_topics:
            return
        configs = {"cleanup.policy": "compact"} if compacted else {"retention.ms": "-1"}
        configs["max.message.bytes"] = str(MAX_MESSAGE_BYTES)
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._bootstrap, client_id=self._client_id, **self._options
        )
        try:
            try:
                await admin.start()
            except (KafkaError, OSError) as exc:
                raise self._unreachable(exc) from exc
            response = await admin.create_topics(
                [NewTopic(topic, 1, self._replication, topic_configs=configs)]
            )
            codes = {error[1] for error in response.topic_errors}
            # Kafka answers "not authorized" before "exists": a node may read or write
            # a topic that the operator (idres kafka-acl) or its owner created without
            # the right to create it. Then it is enough that the topic is there.
            refused = codes & {_TOPIC_AUTHORIZATION_FAILED, _CLUSTER_AUTHORIZATION_FAILED}
            if refused and topic not in await admin.list_topics():
                # Kafka hides a topic from whoever may not describe it, so "missing"
                # and "not yours to read" look alike here.
                raise LogForbidden(
                    f"Kafka refused {self._who} to create topic {topic!r} and does not "
                    "show it to them: it does not exist yet, or they may not read it "
                    "(see idres kafka-acl)",
                    topic=topic,
                )
        except LogUnavailable:
            raise
        except (KafkaError, OSError) as exc:
            raise LogUnavailable(
                f"Kafka at {self._bootstrap}: cannot create {topic}: {exc}"
            ) from exc
        finally:
            with contextlib.suppress(KafkaError, OSError):
                await admin.close()
        for code in codes - {0, _TOPIC_EXISTS, *refused}:
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
                **self._options,
            )
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise self._unreachable(exc) from exc
            self._producer = producer
        return self._producer

    async def append(self, topic: str, key: bytes, values: Sequence[bytes]) -> None:
        producer = await self._started_producer()
        try:
            with _refusals(self._who, "write", topic):
                async with asyncio.timeout(self._append_timeout):
                    sent = [await producer.send(topic, value, key=key) for value in values]
                    await asyncio.gather(*sent)
        except (KafkaError, OSError, TimeoutError, LogForbidden) as exc:
            # Start over with a fresh producer: a batch the old one still holds may yet
            # arrive, and readers drop the repeat by its block height.
            self._producer = None
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await producer.stop()
            if isinstance(exc, LogForbidden):
                raise
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
                **self._options,
            )
            try:
                await consumer.start()
            except (KafkaError, OSError) as exc:
                with contextlib.suppress(Exception):
                    await consumer.stop()
                raise self._unreachable(exc) from exc
            self._consumer = consumer
        return self._consumer

    async def _check_readable(self, topics: Iterable[str]) -> None:
        """Refuse, naming it, a topic this principal may not read, before the consumer
        is given it: aiokafka would otherwise ask for its metadata again every 100 ms
        for as long as it stays assigned, and return nothing. Asked once per topic (and
        again for a topic that does not exist yet, until it does)."""
        unknown = sorted(set(topics) - self._readable)
        if not unknown:
            return
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._bootstrap, client_id=self._client_id, **self._options
        )
        try:
            await admin.start()
            described = await admin.describe_topics(unknown)
        except (KafkaError, OSError) as exc:
            raise self._unreachable(exc) from exc
        finally:
            with contextlib.suppress(KafkaError, OSError):
                await admin.close()
        codes = {t["topic"]: t["error_code"] for t in described}
        refused = sorted(t for t, code in codes.items() if code == _TOPIC_AUTHORIZATION_FAILED)
        if refused:
            raise LogForbidden(
                f"Kafka refused {self._who} to read topic {', '.join(refused)!r}: not allowed "
                "by its ACLs (see idres kafka-acl)",
                topic=refused[0],
            )
        self._readable.update(t for t, code in codes.items() if code == 0)

    async def fetch(
        self, positions: Mapping[str, int], *, wait: float, max_records: int = 500
    ) -> list[LogRecord]:
        if self._credentials is not None:
            await self._check_readable(positions)
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
        except TopicAuthorizationFailedError as exc:
            # aiokafka names the refused topic(s) in the error's arguments
            named = sorted(str(a) for a in _flatten(exc.args) if a in positions)
            topic = ", ".join(named or sorted(positions))
            raise LogForbidden(
                f"Kafka refused {self._who} to read topic {topic!r}: not allowed by its ACLs "
                "(see idres kafka-acl)",
                topic=named[0] if len(named) == 1 else None,
            ) from exc
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
        if self._credentials is not None:
            await self._check_readable([topic])
        consumer = await self._started_consumer()
        tp = TopicPartition(topic, 0)
        try:
            with _refusals(self._who, "read", topic):
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
