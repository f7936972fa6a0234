"""What sync needs of a log, held against Apache Kafka and the in-process twin alike."""

from __future__ import annotations

import time
import uuid

import pytest

from sync.log import Log

pytestmark = pytest.mark.asyncio


def _topic() -> str:
    return f"idres.test.{uuid.uuid4().hex[:8]}"


async def test_appends_come_back_in_order_from_any_offset(log: Log) -> None:
    topic = _topic()
    await log.ensure_topic(topic)
    await log.ensure_topic(topic)  # a second time is harmless
    assert await log.end_offset(topic) == 0
    await log.append(topic, b"sub-a", [b"block-1", b"block-2"])
    await log.append(topic, b"sub-a", [b"block-3"])
    assert await log.end_offset(topic) == 3
    got = await log.fetch({topic: 0}, wait=10)
    while len(got) < 3:  # Kafka may hand over part of what is there
        got += await log.fetch({topic: got[-1].offset + 1}, wait=10)
    assert [(r.offset, r.key, r.value) for r in got] == [
        (0, b"sub-a", b"block-1"),
        (1, b"sub-a", b"block-2"),
        (2, b"sub-a", b"block-3"),
    ]
    later = await log.fetch({topic: 2}, wait=10)
    assert [(r.offset, r.value) for r in later] == [(2, b"block-3")]
    again = await log.fetch({topic: 0}, wait=10)  # reading again from the start
    assert again[0].value == b"block-1"


async def test_reads_several_topics_and_waits_for_new_records(log: Log) -> None:
    a, b = _topic(), _topic()
    for t in (a, b):
        await log.ensure_topic(t)
    started = time.monotonic()
    assert await log.fetch({a: 0, b: 0}, wait=0.3) == []
    assert time.monotonic() - started >= 0.25  # it waited, then answered empty
    await log.append(b, b"k", [b"x"])
    got = await log.fetch({a: 0, b: 0}, wait=10)
    assert [(r.topic, r.value) for r in got] == [(b, b"x")]
