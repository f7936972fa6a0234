"""One node's sync: its relay (outbox to chain to log), its follower (the chains
below it, applied here), the directory on the log, and what the node's serving
workers learn of them (sync/coherence.py). ``idres serve`` runs it in a process of
its own; ``idres up`` starts it with each node's HTTP application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace

import asyncpg
import orjson
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ed25519

from registry.httpio import dump
from registry.store import PostgresStore
from resolver.service import Resolver
from resolver.topology import Delegation
from schemas.codec_cbor import encode_record
from schemas.codec_json import record_to_json
from schemas.errors import Forbidden, StoreUnavailable
from schemas.identifiers import Identifier
from schemas.record import Record
from sync import proof
from sync.apply import drop_unkept_answers
from sync.audit import Audit, AuditConfig
from sync.coherence import Publisher
from sync.directory import LiveDirectory, Refusal
from sync.follow import Follower, keep_dead_letter
from sync.judge import followed
from sync.log import DIRECTORY_TOPIC, Log, LogUnavailable
from sync.notices import FollowerView
from sync.relay import Relay, RelayConfig, load_tip
from sync.repair import Repaired, repair
from sync.snapshot import take as take_snapshot
from sync.tips import TIP_PATH, TipClient
from sync.verify import verify

logger = logging.getLogger("idres.sync")
JSON = "application/json"
NDJSON = "application/x-ndjson"  # idres verify's streamed report (idres/verify_client.py)
PROGRESS_EVERY = 0.5  # seconds between two progress lines of a streamed verify


def _json(
    status: int, body: dict[str, object], headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=dump(body), status=status, content_type=JSON, headers=headers)


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncConfig:
    alg: str = "sha256"  # or "sm3"
    follow: bool = True  # keep copies of the chains below this node
    announce: tuple[Delegation, ...] = ()  # delegations this node publishes on start
    mirror_of: str | None = None  # keep copies of what this other node keeps, and its chain
    # the continuous check (sync/audit.py)
    audit: AuditConfig = field(default_factory=AuditConfig)


def _same_public(chained: Record, here: Record) -> bool:
    """Whether the record in the chain is the one here, as far as a proof shows it: the
    same public values, and private values (commitments in the chain) at the same
    indexes."""

    def parts(r: Record) -> tuple[bytes, list[int]]:
        public = tuple(v for v in r.values if v.permissions.public_read)
        private = sorted(v.index for v in r.values if not v.permissions.public_read)
        return encode_record(replace(r, values=public)), private

    return parts(chained) == parts(here)


def _not_found(ident: Identifier) -> dict[str, object]:
    return {
        "responseCode": 100,
        "handle": ident.canonical,
        "message": f"identifier not found: {ident.canonical}",
    }


def _departs(ident: Identifier, fixed: Repaired) -> dict[str, object]:
    """The answer for a record that departs from its chain and could not be restored
    from it: a fault that asking again will not mend (no Retry-After)."""
    found = "; ".join(fixed.problems) or "it differs from its chain"
    lost = ", ".join(str(i) for h, i in fixed.withheld if h == ident.canonical)
    return {
        "responseCode": 2,
        "handle": ident.canonical,
        "message": f"this node's copy of {ident.canonical} was changed outside the registry "
        f"({found}); it was rewritten from its signed chain, but the private value(s) at "
        f"index {lost or '?'} cannot be restored from a chain, which carries only their "
        "commitments: they are withheld until the node's operator restores them",
    }


class Sync:
    def __init__(
        self,
        pool: asyncpg.Pool,
        key: ed25519.Ed25519PrivateKey,
        *,
        me: str,
        directory: LiveDirectory,
        log: Log | None,
        config: SyncConfig,
    ) -> None:
        self.pool = pool
        self.log = log
        self.config = config
        self.me = me
        self.directory = directory
        self.relay = Relay(pool, key, RelayConfig(chain=me, alg=config.alg), log=log)
        self.tips = TipClient(directory)
        self.follower = (
            Follower(
                pool,
                log,
                me=me,
                directory=directory,
                mirror_of=config.mirror_of,
                tips=self.tips,
            )
            if log is not None and config.follow
            else None
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._directory_log: Log | None = None
        directory.keep = self._keep_refused
        follower = self.follower
        self.publisher = Publisher(
            pool,
            view=follower.view if follower is not None else FollowerView,
            metrics=self.metrics_lines,
        )
        directory.on_adopted = self.publisher.adopted
        self.audit = Audit(pool, directory, me, mirror_of=config.mirror_of, config=config.audit)

    async def _keep_refused(self, offset: int, refusal: Refusal, raw: bytes) -> None:
        """A delegation refused from the directory topic, in dead_letters with why."""
        try:
            async with self.pool.acquire() as conn:
                await keep_dead_letter(conn, DIRECTORY_TOPIC, offset, refusal.reason, raw)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StoreUnavailable(f"keeping a refused delegation failed: {exc}") from exc

    async def start(self) -> None:
        self._supervise("status", self.publisher.run)  # first: the workers wait for it
        self._tasks.append(asyncio.create_task(self._drop_unkept(), name="sync-unkept"))
        if self.log is not None and self.config.announce:
            try:
                await self.directory.announce(self.log, self.config.announce)
            except LogUnavailable as exc:  # the node serves; the others learn of it later
                logger.warning("announcing this node's delegation failed: %s", exc)
        self._supervise("relay", self.relay.run)
        if self.log is not None:
            directory_log = self._directory_log = self.log.reader()  # its own consumer
            self._supervise("directory", lambda: self.directory.follow(directory_log))
        if self.follower is not None:
            self._supervise("follow", self.follower.run)
            self._supervise("tips", self.follower.confirm_forever)
        self._supervise("audit", self.audit.run)

    async def _drop_unkept(self) -> None:
        """Once at start: the answers of copies this node no longer keeps go (a node
        restarted with another --mirror-of, or not following)."""
        kept = (
            followed(self.directory(), self.me, mirror_of=self.config.mirror_of)
            if self.follower is not None
            else []
        )
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                dropped = await drop_unkept_answers(conn, self.directory(), self.me, kept)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            logger.warning("dropping the answers of copies no longer kept failed: %s", exc)
            return
        if dropped:
            logger.info("dropped the answers of %d records of chains no longer kept", dropped)

    def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run ``loop`` until stopped; if it fails, say why and start it again."""

        async def forever() -> None:
            while True:
                try:
                    await loop()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("sync %s failed; restarting it in 1 s", name)
                    await asyncio.sleep(1.0)

        self._tasks.append(asyncio.create_task(forever(), name=f"sync-{name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        # bounded: a task that does not finish within 10 s must not hold the node up
        done, pending = await asyncio.wait(self._tasks, timeout=10)
        for task in pending:
            logger.warning("sync %s did not stop within 10 s", task.get_name())
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                logger.warning("sync %s ended with %r", task.get_name(), task.exception())
        self._tasks.clear()
        await self.tips.close()
        if self._directory_log is not None and self._directory_log is not self.log:
            await self._directory_log.close()

    def held(self) -> list[str]:
        """The other chains this node keeps copies of (none when it follows nothing)."""
        return self.follower.chains() if self.follower is not None else []

    async def proof_answer(
        self, ident: Identifier, resolver: Resolver, store: PostgresStore
    ) -> web.Response:
        """``GET /api/handles/{id}?proof=true``: the record with its proof, from a node
        that holds the record's chain; elsewhere a referral toward that node."""
        me = self.relay.config.chain
        route = resolver.route(ident)
        if route.kind == "none":
            return _json(
                404,
                {
                    "responseCode": 100,
                    "handle": ident.canonical,
                    "message": f"identifier not found: {ident.canonical}",
                },
            )
        directory = self.directory()
        held = {me, *self.held()}
        chain = me if route.kind == "local" else (route.authority.name if route.authority else "")
        if chain not in held:
            referral = orjson.loads(resolver.referral(ident, route).body)
            referral["referral"]["url"] += "?proof=true"  # ask the next node for the proof
            return _json(200, referral)
        record = await store.get(ident.canonical)
        if record is None:
            return _json(
                404,
                {
                    "responseCode": 100,
                    "handle": ident.canonical,
                    "message": f"identifier not found: {ident.canonical}",
                },
            )
        built = await proof.build(self.pool, directory, chain, ident.canonical, held)
        if built is not None and built[1] is not None and not _same_public(built[1], record):
            # not what the chain says: a write waiting in the outbox, or a record changed
            # behind the registry's back, which is rewritten from the chain now
            fixed = await repair(self.pool, directory, me, [ident.canonical], found_by="proof")
            if fixed.repaired:
                record = await store.get(ident.canonical)
                built = await proof.build(self.pool, directory, chain, ident.canonical, held)
                if record is None or built is None or built[1] is None:
                    return _json(404, _not_found(ident))
                if not _same_public(built[1], record):
                    return _json(500, _departs(ident, fixed))
        top = built[0]["levels"][-1]["chain"] if built is not None else ""
        parent = directory.by_name[top].parent if top in directory.by_name else None
        pending = (
            built is None
            or built[1] is None
            or not _same_public(built[1], record)
            or parent in held  # its anchor in a chain kept here is not in a block yet
        )
        if pending or built is None:
            return _json(
                503,
                {
                    "responseCode": 2,
                    "handle": ident.canonical,
                    "message": "the record's latest version is not in a block of its chain, "
                    "or that block not yet anchored above; ask again in a moment (if this "
                    "persists, run idres verify)",
                },
                headers={"Retry-After": "1"},
            )
        # the chain holds private values as commitments: the answer shows what anyone may
        # read, and the proof checks exactly that (sync/proof.py)
        public = tuple(v for v in record.values if v.permissions.public_read)
        return _json(200, {**record_to_json(record, values=public), "proof": built[0]})

    async def _verify_and_repair(
        self, me: str, progress: Callable[[int, int], None] | None
    ) -> dict[str, object]:
        """The report of ``idres verify``; each record it found departing from its chain
        is rewritten from it (sync/repair.py) and named under ``repaired``."""
        report = await verify(
            self.pool, self.directory(), me, mirror_of=self.config.mirror_of, progress=progress
        )
        fixed = await repair(
            self.pool,
            self.directory(),
            me,
            [m.handle for m in report.mismatches],
            found_by="verify",
        )
        return {
            "node": me,
            **report.to_json(),
            "repaired": fixed.repaired,
            "withheld": [{"handle": h, "index": i} for h, i in fixed.withheld],
        }

    def install(self, app: web.Application, me: str, *, run: bool = True) -> None:
        """Add /api/sync/verify and /api/sync/snapshot; with ``run``, start the sync
        with the app (``idres up``; ``idres serve`` runs it in a process of its own)."""
        lock = asyncio.Lock()  # one check at a time: it reads every block and record

        async def check(request: web.Request) -> web.StreamResponse:
            # an operator's tool that reads every block: for this machine only
            if request.remote not in ("127.0.0.1", "::1"):
                raise Forbidden(
                    "verify is answered on the node's own machine only (it reads every "
                    "block and record); run idres verify there"
                )
            if NDJSON not in request.headers.get("Accept", ""):
                async with lock:  # and across this node's workers: see verify()
                    body = await self._verify_and_repair(me, None)
                return web.json_response(body)
            # streamed: a progress line every PROGRESS_EVERY, then the report
            response = web.StreamResponse(headers={"Content-Type": NDJSON})
            await response.prepare(request)
            counts = {"records": 0, "total": 0}

            def progress(records: int, total: int) -> None:
                counts.update(records=records, total=total)

            async def tell() -> None:
                while True:
                    await asyncio.sleep(PROGRESS_EVERY)
                    await response.write(dump({"progress": counts}) + b"\n")

            async with lock:
                teller = asyncio.create_task(tell())
                try:
                    body = await self._verify_and_repair(me, progress)
                finally:
                    teller.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                        await teller
            await response.write(dump({"report": body}) + b"\n")
            await response.write_eof()
            return response

        async def snapshot(request: web.Request) -> web.StreamResponse:
            # the whole of every chain held: an operator's tool, for this machine only
            if request.remote not in ("127.0.0.1", "::1"):
                raise Forbidden(
                    "snapshots are given on the node's own machine only; run idres "
                    "snapshot there and copy the file"
                )
            response = web.StreamResponse(
                headers={
                    "Content-Type": "application/vnd.idres.snapshot",
                    "Content-Disposition": f'attachment; filename="{me}.snapshot"',
                }
            )
            await response.prepare(request)
            async with lock:  # one at a time, like verify: each holds a connection long
                async for piece in take_snapshot(self.pool, me):
                    await response.write(piece)
            await response.write_eof()
            return response

        async def tip(request: web.Request) -> web.Response:
            # where this node's chain ends: the nodes that follow it learn from it that
            # their copy is current while the chain is quiet (sync/tips.py)
            # and whether writes wait in the outbox, uncut, in the same snapshot: a
            # relay that cannot cut must not keep the copies above current
            try:
                async with (
                    self.pool.acquire() as conn,
                    conn.transaction(isolation="repeatable_read", readonly=True),
                ):
                    ends = await load_tip(conn, me)
                    pending = bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM outbox)"))
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                raise StoreUnavailable(f"reading the chain's tip failed: {exc}") from exc
            return web.json_response(
                {
                    "chain": me,
                    "height": ends.height,
                    "hash": ends.block_hash.hex(),
                    "pending": pending,
                }
            )

        app.router.add_get(TIP_PATH, tip)
        app.router.add_get("/api/sync/verify", check)
        app.router.add_get("/api/sync/snapshot", snapshot)
        if run:
            app.cleanup_ctx.append(self.ctx)

    async def ctx(self, app: web.Application) -> AsyncIterator[None]:
        await self.start()
        yield
        await self.stop()

    def metrics_lines(self) -> list[str]:
        lines = [
            "# HELP idres_sync_published_height The last block of this node's chain published.",
            "# TYPE idres_sync_published_height gauge",
            f"idres_sync_published_height {self.relay.published}",
            "# HELP idres_sync_unpublished_blocks Blocks of this node's chain not yet in the log.",
            "# TYPE idres_sync_unpublished_blocks gauge",
            f"idres_sync_unpublished_blocks {max(0, self.relay.height - self.relay.published)}",
            "# HELP idres_sync_outbox_depth Accepted operations not yet in a block.",
            "# TYPE idres_sync_outbox_depth gauge",
            f"idres_sync_outbox_depth {self.relay.depth}",
            *self.directory.metrics_lines(),
        ]
        if self.follower is not None:
            lines += self.follower.metrics_lines()
        return lines + self.audit.metrics_lines()
