"""Reads of many requests as one query: lookups asked for in the same turn of the
event loop are fetched together (``handle = ANY($1)``), so a busy node pays one
round trip and one plan per batch instead of per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

from schemas.record import Record

FetchMany = Callable[[Iterable[str]], Awaitable[dict[str, Record]]]


class ReadBatcher:
    def __init__(self, fetch_many: FetchMany, *, max_batch: int = 500) -> None:
        self._fetch_many = fetch_many
        self._max_batch = max_batch
        self._pending: dict[str, list[asyncio.Future[Record | None]]] = {}
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, handle: str) -> Record | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Record | None] = loop.create_future()
        self._pending.setdefault(handle, []).append(future)
        if len(self._pending) >= self._max_batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)  # after every request this turn has read
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        task = asyncio.ensure_future(self._fetch(batch))
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _fetch(self, batch: dict[str, list[asyncio.Future[Record | None]]]) -> None:
        try:
            found = await self._fetch_many(batch)
        except Exception as exc:  # every waiter gets the failure (StoreUnavailable)
            for futures in batch.values():
                for f in futures:
                    if not f.done():
                        f.set_exception(exc)
            return
        except asyncio.CancelledError:  # the app stopping: no waiter is left hanging
            for futures in batch.values():
                for f in futures:
                    f.cancel()
            raise
        for handle, futures in batch.items():
            record = found.get(handle)
            for f in futures:
                if not f.done():  # its caller may have gone
                    f.set_result(record)
