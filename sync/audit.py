"""The node's continuous check: what changed in its database since the last pass,
against its signed chains, every INTERVAL; everything again every FULL_EVERY.

Runs in the node's sync process. A pass asks PostgreSQL which rows of the records
(``identifiers``, ``handle_values``, ``answers``) and of the chains (``chain_blocks``,
``chain_entries``) were written by a transaction newer than the oldest one still
running when the last pass began (their ``xmin``: every write leaves it, through the
registry or not, an ``UPDATE`` typed into psql included), checks those records and
blocks as ``idres verify`` does (sync/verify.py), and repairs what departs
(sync/repair.py). The first pass after start is a full one. Record rows written with
a ``history`` row in the same transaction (every registry write and apply) are passed
over: a change that writes one too is found by the full pass only.

What a pass over changes cannot see: a row deleted outright (no row is left to
carry an xmin) and a row frozen by an aggressive ``VACUUM FREEZE`` between two
passes; the full pass finds both. What it states in /metrics: when the last pass of
each kind ended and took, the records it checked, the problems it found, and every
finding kept in ``integrity_findings`` (by whoever found it: verify, a proof, here).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from resolver.topology import Directory
from schemas.errors import StoreUnavailable
from sync.repair import finding_counts, repair
from sync.verify import Report, check_blocks, check_handles, verify

log = logging.getLogger("idres.sync.audit")
INTERVAL = 30.0  # seconds between two passes over what changed
FULL_EVERY = 6 * 3600.0  # seconds between two full passes
COUNTS_EVERY = 2.0  # seconds between two reads of the findings kept (for /metrics)

# Rows written by a transaction at least as new as $1 (a 32-bit xid): age() counts
# back from now, so "no older than $1" is "age at most age($1)"; frozen rows are old.
# A write through the registry or an apply leaves a history row in the same transaction
# (the same xmin): rows with one are passed over, so a pass costs what was changed
# behind the registry's back, not every write (their blocks are checked below).
_CHANGED_RECORDS = """
SELECT t.handle FROM (
    SELECT handle, xmin AS x FROM identifiers WHERE age(xmin) <= age($1::text::xid)
    UNION ALL SELECT handle, xmin FROM handle_values WHERE age(xmin) <= age($1::text::xid)
    UNION ALL SELECT handle, xmin FROM answers WHERE age(xmin) <= age($1::text::xid)
) t
WHERE NOT EXISTS (SELECT 1 FROM history h WHERE h.handle = t.handle AND h.xmin = t.x)
GROUP BY t.handle
"""
_CHANGED_BLOCKS = """
SELECT chain, height FROM chain_blocks WHERE age(xmin) <= age($1::text::xid)
UNION SELECT chain, height FROM chain_entries WHERE age(xmin) <= age($1::text::xid)
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditConfig:
    interval: float = INTERVAL  # 0: no passes (the findings are still counted)
    full_every: float = FULL_EVERY


@dataclass(slots=True)
class _Pass:
    at: float = 0.0  # when it ended (seconds since the epoch); 0: never
    seconds: float = 0.0
    records: int = 0
    problems: int = 0
    count: int = 0


class Audit:
    def __init__(
        self,
        pool: asyncpg.Pool,
        directory: Callable[[], Directory],
        me: str,
        *,
        mirror_of: str | None = None,
        config: AuditConfig = AuditConfig(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pool, self.directory, self.me = pool, directory, me
        self.mirror_of, self.config, self.clock = mirror_of, config, clock
        self.passes = {"full": _Pass(), "changes": _Pass()}
        self.checked = 0  # records checked by every pass so far
        self.findings: dict[tuple[str, bool], int] = {}
        self.withheld = 0
        self._since: str | None = None  # the xid horizon of the last pass's start

    async def run(self) -> None:
        """Pass after pass until cancelled (a full one first); with no interval, no
        passes: only the findings others keep are read, for /metrics."""
        if self.config.interval <= 0:
            while True:
                await self.refresh_counts()
                await asyncio.sleep(COUNTS_EVERY)
        next_full = 0.0
        while True:
            started = self.clock()
            try:
                if started >= next_full:
                    await self.full_pass()
                    next_full = started + self.config.full_every
                else:
                    await self.changes_pass()
            except StoreUnavailable as exc:
                log.warning("continuous check: %s (trying again next pass)", exc)
            deadline = started + self.config.interval
            while (left := deadline - self.clock()) > 0:
                await self.refresh_counts()
                await asyncio.sleep(min(COUNTS_EVERY, left))

    async def full_pass(self) -> Report:
        t = time.monotonic()
        try:
            horizon = await self._horizon()
            report = await verify(self.pool, self.directory(), self.me, mirror_of=self.mirror_of)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"a full pass failed: {exc}") from exc
        self._since = horizon
        await self._after(report, "full", time.monotonic() - t)
        return report

    async def changes_pass(self) -> Report:
        if self._since is None:
            return await self.full_pass()
        t = time.monotonic()
        directory = self.directory()
        try:
            async with (
                self.pool.acquire() as conn,
                conn.transaction(readonly=True, isolation="repeatable_read"),
            ):
                horizon = await _horizon_of(conn)
                handles = [r["handle"] for r in await conn.fetch(_CHANGED_RECORDS, self._since)]
                blocks = [
                    (r["chain"], r["height"])
                    for r in await conn.fetch(_CHANGED_BLOCKS, self._since)
                ]
                report = await check_handles(conn, directory, self.me, handles)
                await check_blocks(conn, directory, self.me, blocks, report)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"a pass over what changed failed: {exc}") from exc
        self._since = horizon
        await self._after(report, "changes", time.monotonic() - t)
        return report

    async def _horizon(self) -> str:
        async with self.pool.acquire() as conn:
            return await _horizon_of(conn)

    async def _after(self, report: Report, kind: str, seconds: float) -> None:
        done = self.passes[kind]
        done.at, done.seconds, done.records = self.clock(), seconds, report.records
        done.problems, done.count = len(report.problems), done.count + 1
        self.checked += report.records
        if report.problems:
            log.error(
                "continuous check (%s pass): %d problem(s), e.g. %s",
                kind,
                len(report.problems),
                report.problems[0],
            )
        if report.mismatches:
            await repair(
                self.pool,
                self.directory(),
                self.me,
                [m.handle for m in report.mismatches],
                found_by="audit",
            )
        await self.refresh_counts()

    async def refresh_counts(self) -> None:
        try:
            async with self.pool.acquire() as conn:
                self.findings = await finding_counts(conn)
                self.withheld = int(await conn.fetchval("SELECT count(*) FROM withheld_values"))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            log.warning("continuous check: reading the findings failed: %s", exc)

    def metrics_lines(self) -> list[str]:
        lines = [
            "# HELP idres_verify_last_pass_timestamp_seconds When the node's continuous "
            "check last ended a pass (full: everything; changes: what changed since the "
            "pass before); 0: never.",
            "# TYPE idres_verify_last_pass_timestamp_seconds gauge",
            *(
                f'idres_verify_last_pass_timestamp_seconds{{kind="{k}"}} {p.at:.3f}'
                for k, p in self.passes.items()
            ),
            "# HELP idres_verify_last_pass_seconds How long that pass took.",
            "# TYPE idres_verify_last_pass_seconds gauge",
            *(
                f'idres_verify_last_pass_seconds{{kind="{k}"}} {p.seconds:.3f}'
                for k, p in self.passes.items()
            ),
            "# HELP idres_verify_last_pass_records Records that pass checked.",
            "# TYPE idres_verify_last_pass_records gauge",
            *(
                f'idres_verify_last_pass_records{{kind="{k}"}} {p.records}'
                for k, p in self.passes.items()
            ),
            "# HELP idres_verify_last_pass_problems Problems that pass found (records "
            "departing from their chain, broken links...).",
            "# TYPE idres_verify_last_pass_problems gauge",
            *(
                f'idres_verify_last_pass_problems{{kind="{k}"}} {p.problems}'
                for k, p in self.passes.items()
            ),
            "# HELP idres_verify_passes_total Passes of the continuous check.",
            "# TYPE idres_verify_passes_total counter",
            *(f'idres_verify_passes_total{{kind="{k}"}} {p.count}' for k, p in self.passes.items()),
            "# HELP idres_verify_records_checked_total Records the continuous check checked.",
            "# TYPE idres_verify_records_checked_total counter",
            f"idres_verify_records_checked_total {self.checked}",
            "# HELP idres_integrity_findings_total Records found departing from their "
            "signed chain (changed behind the registry's back), by who found them and "
            "whether they were rewritten from the chain (integrity_findings).",
            "# TYPE idres_integrity_findings_total counter",
        ]
        for by in ("verify", "audit", "proof"):
            for fixed in (True, False):
                n = self.findings.get((by, fixed), 0)
                lines.append(
                    f'idres_integrity_findings_total{{found_by="{by}",'
                    f'repaired="{str(fixed).lower()}"}} {n}'
                )
        lines += [
            "# HELP idres_withheld_values Private values taken out of service because they "
            "no longer open their commitment in the chain (withheld_values): restore them.",
            "# TYPE idres_withheld_values gauge",
            f"idres_withheld_values {self.withheld}",
        ]
        return lines


async def _horizon_of(conn: asyncpg.Connection) -> str:
    """The oldest transaction still running now, as a 32-bit xid: every write older
    than it is visible to a pass that starts now."""
    value = await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
    return str(int(value) % (1 << 32))
