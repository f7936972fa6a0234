"""The log in one process: topics as lists, for a network run by ``idres up``.

It keeps what Kafka promises the rest of sync (ordered, acknowledged appends; reads
from any offset; waiting for new records), and nothing is durable: a restarted
``idres up`` republishes from PostgreSQL, where every block is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from sync.log import LogRecord, LogUnavailable


class MemoryLog:
    def __init__(self) -> None:
        self._topics: dict[str, list[tuple[bytes, bytes]]] = {}
        # set (and replaced) at each append: waiting on an Event is safe to cancel,
        # unlike a Condition under wait_for (its lock may be left released)
        self._appended = asyncio.Event()
        self._closed = False

    async def ensure_topic(self, topic: str, *, compacted: bool = False) -> None:
        self._topics.setdefault(topic, [])

    async def append(self, topic: str, key: bytes, values: Sequence[bytes]) -> None:
        if self._closed:
            raise LogUnavailable("the in-process log is closed")
        self._topics.setdefault(topic, []).extend((key, v) for v in values)
        appended, self._appended = self._appended, asyncio.Event()
        appended.set()

    def _ready(self, positions: Mapping[str, int], max_records: int) -> list[LogRecord]:
        out: list[LogRecord] = []
        for topic, offset in positions.items():
            records = self._topics.get(topic, ())
            for n in range(max(offset, 0), len(records)):
                if len(out) >= max_records:
                    return out
                key, value = records[n]
                out.append(LogRecord(topic=topic, offset=n, key=key, value=value))
        return out

    async def fetch(
        self, positions: Mapping[str, int], *, wait: float, max_records: int = 500
    ) -> list[LogRecord]:
        if self._closed:
            raise LogUnavailable("the in-process log is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            appended = self._appended  # taken before looking: no append slips between
            ready = self._ready(positions, max_records)
            remaining = deadline - loop.time()
            if ready or remaining <= 0:
                return ready
            try:
                await asyncio.wait_for(appended.wait(), remaining)
            except TimeoutError:
                return []

    async def end_offset(self, topic: str) -> int:
        return len(self._topics.get(topic, ()))

    def reader(self) -> MemoryLog:
        return self  # reads keep no state here

    async def close(self) -> None:
        self._closed = True
