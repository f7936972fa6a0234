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
        self._changed = asyncio.Condition()
        self._closed = False

    async def ensure_topic(self, topic: str, *, compacted: bool = False) -> None:
        self._topics.setdefault(topic, [])

    async def append(self, topic: str, key: bytes, values: Sequence[bytes]) -> None:
        if self._closed:
            raise LogUnavailable("the in-process log is closed")
        self._topics.setdefault(topic, []).extend((key, v) for v in values)
        async with self._changed:
            self._changed.notify_all()

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
        ready = self._ready(positions, max_records)
        if ready or wait <= 0:
            return ready
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: bool(self._ready(positions, 1))), wait
                )
            except TimeoutError:
                return []
        return self._ready(positions, max_records)

    def reader(self) -> MemoryLog:
        return self  # reads keep no state here

    async def end_offset(self, topic: str) -> int:
        return len(self._topics.get(topic, ()))

    async def close(self) -> None:
        self._closed = True
