"""A node's sync process and its serving workers, kept coherent through PostgreSQL.

The sync process sends; each serving worker listens on one dedicated connection:

- applied changes: ``registry.store.announce_changed`` NOTIFYs the changed identifiers inside the
  follower's apply transaction, so the notice is delivered exactly at commit; the
  worker forgets those cached answers (``idres_changed``, keys in payloads under
  8000 bytes, chunked: a worker reads nothing back to learn what changed);
- the follower's state and the sync metrics: ``Publisher`` rewrites one row of
  ``sync_status`` every STATUS_INTERVAL; each worker reads it as often, which also
  probes its connection. A view whose follower stopped looking at the log stops
  counting as current by itself (``sync.notices.is_current``); one that stops being
  rewritten for HEARTBEAT_LOST counts as nothing current;
- delegations adopted from the directory topic: rows of ``sync_directory`` and a
  NOTIFY on ``idres_directory``; each worker adopts the rows it has not seen.

A worker that loses its connection cannot know what it missed: it forgets its whole
cache and counts no chain current until it listens again (and forgets once more
then: what it cached while deaf may be old). It reconnects with backoff up to
MAX_BACKOFF, forgetting at each try, so while deaf nothing stays cached longer.

The bound, measured (tests/sync/test_coherence.py, a 2-core machine, node idle):
from COMMIT sent at the sync process to the invalidation in a worker, p50 0.19 ms,
p99 0.72 ms, max 2.2 ms over 200 commits; in a node of two workers under ``idres
serve``, no connection saw the old answer once the commit was visible to a poller
at 5 ms. What we state: a NOTIFY's delivery, milliseconds, plus however long the
worker's loop is busy; the test holds every worker to 1 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg

from resolver.known import Known
from resolver.topology import Delegation
from schemas.errors import EncodingError, StoreUnavailable
from sync.directory import LiveDirectory, decode_delegation, digest, encode_delegation
from sync.notices import (
    CHANGED_CHANNEL,
    DIRECTORY_CHANNEL,
    NOTHING_CURRENT,
    FollowerView,
    is_current,
    read_changed,
    view_from_json,
    view_to_json,
)

log = logging.getLogger("idres.sync.coherence")
STATUS_INTERVAL = 0.5  # seconds between two rewrites of sync_status, and two reads
HEARTBEAT_LOST = 3.0  # seconds without a new beat after which nothing is current
KNOWN_PAGE = 10_000  # identifiers a query while loading the known filter (~25 ms to add)
READ_TIMEOUT = 2.0  # a read on the listening connection slower than this: it is lost
MAX_BACKOFF = 2.0  # seconds between two tries to listen again
APPLICATION_NAME = "idres-coherence"  # how the listening connections show in pg_stat_activity

Connect = Callable[[], AbstractAsyncContextManager[Any]]  # yields an asyncpg connection


class Publisher:
    """The sync process's side: the follower's state, the sync metrics, and the
    delegations adopted, written where the workers read them."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        view: Callable[[], FollowerView],
        metrics: Callable[[], list[str]],
        interval: float = STATUS_INTERVAL,
    ) -> None:
        self.pool = pool
        self.view = view
        self.metrics = metrics
        self.interval = interval
        self.beat = 0
        self._unsent: list[Delegation] = []
        self._wake = asyncio.Event()

    def adopted(self, delegations: list[Delegation]) -> None:
        """Delegations the live directory took: written at the next publish, now."""
        self._unsent += delegations
        self._wake.set()

    async def publish(self) -> None:
        unsent = self._unsent[:]
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                if unsent:
                    await conn.executemany(
                        "INSERT INTO sync_directory (digest, delegation) VALUES ($1, $2)"
                        " ON CONFLICT DO NOTHING",
                        [(digest(d), encode_delegation(d)) for d in unsent],
                    )
                    await conn.execute("SELECT pg_notify($1, '')", DIRECTORY_CHANNEL)
                await conn.execute(
                    "INSERT INTO sync_status (only_row, beat, view, metrics, written_at)"
                    " VALUES (true, $1, $2, $3, now()) ON CONFLICT (only_row) DO UPDATE SET"
                    " beat = excluded.beat, view = excluded.view, metrics = excluded.metrics,"
                    " written_at = excluded.written_at",
                    self.beat + 1,
                    view_to_json(self.view()).decode(),
                    "\n".join(self.metrics()),
                )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StoreUnavailable(f"publishing the sync status failed: {exc}") from exc
        self.beat += 1
        del self._unsent[: len(unsent)]

    async def run(self) -> None:
        """Publish every ``interval`` (at once when a delegation was adopted)."""
        failing = False
        while True:
            self._wake.clear()
            try:
                await self.publish()
                if failing:
                    log.warning("sync status: published again")
                failing = False
            except StoreUnavailable as exc:
                if not failing:  # said once per outage; the workers stop counting current
                    log.warning("sync status: %s (retrying)", exc)
                failing = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)


class Listener:
    """A serving worker's side: one connection that listens, and what it heard."""

    def __init__(
        self,
        connect: Connect,
        *,
        node: str,
        invalidate: Callable[[list[str]], None],
        forget_all: Callable[[], None],
        directory: LiveDirectory | None = None,
        clock: Callable[[], float] = time.time,
        interval: float = STATUS_INTERVAL,
        keep_known: bool = False,
    ) -> None:
        self.connect = connect
        # which identifiers the node holds (resolver.known), loaded once listening and
        # kept by the notices: None until then, and again while deaf
        self.keep_known = keep_known
        self.known: Known | None = None
        self._loading: asyncio.Task[None] | None = None
        self.node = node
        self.invalidate = invalidate
        self.forget_all = forget_all
        self.directory = directory
        self.clock = clock
        self.interval = interval
        self.connected = False
        self.view = NOTHING_CURRENT
        self.sync_metrics: list[str] = []
        self.invalidated = 0  # identifiers forgotten on a notice
        self.resets = 0  # whole caches forgotten: a connection lost, a notice unread
        self.beat: int | None = None
        self.heard_at = -math.inf  # when a new beat was last read (this clock)
        self.directory_seq = 0  # the last sync_directory row adopted
        self._directory_due = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def current(self, chain: str) -> bool:
        """Whether this node's copy of ``chain`` is current, as far as this worker
        heard it: never while deaf, nor once the sync process's beat has stopped."""
        now = self.clock()
        return (
            self.connected
            and now - self.heard_at <= HEARTBEAT_LOST
            and is_current(self.view, chain, now=now)
        )

    def _changed(self, conn: object, pid: int, channel: str, payload: str) -> None:
        keys = read_changed(payload)
        if keys is None:
            log.warning("coherence: a notice asks to forget everything (%.40r)", payload)
            self._reset()
            if self.keep_known:  # any identifier may be new: what it held is not enough
                self.known = None
                self._load_known()
            return
        if self.known is not None:  # a change may be a new identifier
            self.known.update(keys)
        self.invalidate(keys)
        self.invalidated += len(keys)

    def _directory_notice(self, conn: object, pid: int, channel: str, payload: str) -> None:
        self._directory_due.set()

    def _reset(self) -> None:
        self.resets += 1
        self.forget_all()

    def _lost(self) -> None:
        """Deaf from now: forget every cached answer and count nothing current."""
        self.connected = False
        self.view = NOTHING_CURRENT
        self.beat = None
        self._stop_loading()
        self.known = None  # notices may be missed from now
        self._reset()

    async def run(self) -> None:
        """Listen until cancelled; each time the connection is lost, forget and retry."""
        backoff = 0.0
        while True:
            try:
                async with self.connect() as conn:
                    await self._listen(conn)
                log.warning("coherence: the listening connection was closed")
            except (
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                OSError,
                TimeoutError,
            ) as exc:
                log.warning("coherence: not listening: %s", exc)
            if self.connected:
                backoff = 0.0  # it had listened: try again at once, then back off
            self._lost()
            backoff = min(MAX_BACKOFF, max(0.05, backoff * 2))
            await asyncio.sleep(backoff)

    async def _listen(self, conn: Any) -> None:
        lost = asyncio.Event()

        def on_close(closed: object) -> None:
            lost.set()

        conn.add_termination_listener(on_close)
        try:
            await conn.execute(f"SET application_name = '{APPLICATION_NAME}'")
            await conn.add_listener(CHANGED_CHANNEL, self._changed)
            await conn.add_listener(DIRECTORY_CHANNEL, self._directory_notice)
            # listening from here: what was cached before may have missed a notice
            self.forget_all()
            if self.keep_known:
                self._load_known()
            await self._read_directory(conn)
            await self._read_status(conn)
            self.connected = True
            while not lost.is_set():
                self._directory_due.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._directory_due.wait(), self.interval)
                if lost.is_set():
                    break
                if self._directory_due.is_set():
                    await self._read_directory(conn)
                if self.known is not None and self.known.full and self._loading is None:
                    self._load_known()
                await self._read_status(conn)
        finally:
            with contextlib.suppress(Exception):
                conn.remove_termination_listener(on_close)
            if not conn.is_closed():
                # a pooled connection goes back as it came (registry.database._reset)
                with contextlib.suppress(Exception):
                    await conn.remove_listener(CHANGED_CHANNEL, self._changed)
                    await conn.remove_listener(DIRECTORY_CHANNEL, self._directory_notice)
                with contextlib.suppress(Exception):
                    await conn.execute("UNLISTEN *; RESET application_name")

    async def _read_status(self, conn: Any) -> None:
        row = await conn.fetchrow(
            "SELECT beat, view, metrics FROM sync_status", timeout=READ_TIMEOUT
        )
        if row is None:  # the sync process has not written yet
            return
        if row["beat"] != self.beat:
            self.beat, self.heard_at = row["beat"], self.clock()
            try:
                self.view = view_from_json(row["view"])
            except EncodingError as exc:
                log.warning("coherence: the follower's view is unreadable: %s", exc)
                self.view = NOTHING_CURRENT
            self.sync_metrics = row["metrics"].splitlines()

    def _load_known(self) -> None:
        """Load every identifier the node holds into a new filter, beside the listening
        (on a connection of its own, so the status is read meanwhile). Called once the
        listening has begun: a change committed after the load's reads is in a notice,
        and notices go into the new filter while it loads; it is trusted once full."""
        self._stop_loading()
        self._loading = asyncio.create_task(self._load(), name="coherence-known")

    def _stop_loading(self) -> None:
        if self._loading is not None:
            self._loading.cancel()
            self._loading = None

    async def _load(self) -> None:
        try:
            async with self.connect() as conn:
                rows = await conn.fetchval("SELECT count(*) FROM identifiers")
                known = Known.for_store(rows)
                self.known = known
                last = ""
                while True:
                    chunk = await conn.fetchval(
                        "SELECT array_agg(handle ORDER BY handle) FROM (SELECT handle FROM"
                        " identifiers WHERE handle > $1 ORDER BY handle LIMIT $2) page",
                        last,
                        KNOWN_PAGE,
                    )
                    if not chunk:
                        break
                    known.update(chunk)
                    last = chunk[-1]  # in the database's order, which ``>`` follows
                known.ready = True
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            # not fatal: misses are asked of the database, as without a filter
            log.warning("coherence: the known identifiers were not loaded: %s", exc)
        finally:
            if self._loading is asyncio.current_task():
                self._loading = None

    async def _read_directory(self, conn: Any) -> None:
        rows = await conn.fetch(
            "SELECT seq, delegation FROM sync_directory WHERE seq > $1 ORDER BY seq",
            self.directory_seq,
            timeout=READ_TIMEOUT,
        )
        if not rows:
            return
        found = []
        for r in rows:
            try:
                found.append(decode_delegation(bytes(r["delegation"])))
            except EncodingError as exc:  # the sync process wrote it: a bug, say so
                log.warning("coherence: directory row %d unreadable: %s", r["seq"], exc)
        self.directory_seq = rows[-1]["seq"]
        if self.directory is not None and found:
            self.directory.replay(found)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="coherence-listener")

    async def stop(self) -> None:
        self._stop_loading()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def metrics_lines(self) -> list[str]:
        node = f'node="{self.node}"'
        age = self.clock() - self.heard_at
        return [
            *self.sync_metrics,
            "# HELP idres_coherence_connected Whether this worker hears its node's sync "
            "process (1) or has forgotten its cache and waits to (0).",
            "# TYPE idres_coherence_connected gauge",
            f"idres_coherence_connected{{{node}}} {1 if self.connected else 0}",
            "# HELP idres_coherence_invalidations_total Cached identifiers this worker "
            "forgot on the sync process's notice of an applied change.",
            "# TYPE idres_coherence_invalidations_total counter",
            f"idres_coherence_invalidations_total{{{node}}} {self.invalidated}",
            "# HELP idres_coherence_resets_total Times this worker forgot its whole cache "
            "(its listening connection lost, or a notice unreadable).",
            "# TYPE idres_coherence_resets_total counter",
            f"idres_coherence_resets_total{{{node}}} {self.resets}",
            "# HELP idres_coherence_heartbeat_age_seconds Since this worker last read a "
            "new state from the sync process.",
            "# TYPE idres_coherence_heartbeat_age_seconds gauge",
            f"idres_coherence_heartbeat_age_seconds{{{node}}} "
            + (f"{age:.3f}" if math.isfinite(age) else "+Inf"),
            "# HELP idres_chain_current Whether this worker counts the node's copy of "
            "each followed chain current (1): a miss in it is a 404 with no hop.",
            "# TYPE idres_chain_current gauge",
            *(
                f'idres_chain_current{{{node},chain="{chain}"}} {int(self.current(chain))}'
                for chain in sorted(self.view.chains)
            ),
            "# HELP idres_known_identifiers Identifiers in this worker's filter of what "
            "the node holds (resolver.known; -1: not loaded, misses ask the database).",
            "# TYPE idres_known_identifiers gauge",
            f"idres_known_identifiers{{{node}}} "
            + str(self.known.count if self.known is not None and self.known.ready else -1),
        ]
