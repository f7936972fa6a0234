"""Check a node against the chains it holds: every block signed and linked, every
entry the one its block committed to, every record what the last operation on it
says, every child block anchored in its parent's chain. Reads only, in one snapshot;
reports all. A private value travels as a commitment (schemas/commitment.py): its
holder opens each commitment of its own chain with the value and salt it keeps;
other nodes compare the commitments they store with the chain's.

One pass per chain, block by block: each block is checked, then the records its
operations wrote, fetched for the whole block at once and compared as CBOR
structures (sync/compare.py); an operation is read once. ``check_handles`` checks
chosen records the same way (the node's continuous check, sync/audit.py).

What it cannot see: blocks cut off the end of a chain together with the records they
wrote (compare heights with another node's, `idres_sync_applied_height`), and the
``history`` table, which it does not read. Blocks are checked with the key the
directory gives each node now, so a node whose key changed fails on its old blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from registry.authz import PREFIX_RECORD_PREFIX
from registry.rows import fetch_records, fetch_salts, in_index_order
from resolver.topology import Directory
from schemas.chain import Block, Tip, check_block, decode_anchor, decode_block, tip_after
from schemas.codec_json import public_answer
from schemas.commitment import SaltMissing, commit_record
from schemas.errors import EncodingError
from schemas.oplog import Operation, decode_operation
from sync import native
from sync.compare import NoSalt, OpFields, Unreadable, difference, op_fields, stored_map
from sync.judge import followed, holds
from sync.native import pages

_BATCH = 2000
_VERIFY_LOCK = 0x1D5E2
Progress = Callable[[int, int], None]  # (records checked, records to check)


@dataclass(frozen=True, slots=True, kw_only=True)
class Mismatch:
    """A record that departs from the operation its chain says it must equal: what
    a repair rewrites it from (sync/repair.py)."""

    handle: str
    chain: str
    seq: int
    payload: bytes  # the operation, as its block signed it


@dataclass(slots=True, kw_only=True)
class Report:
    chains: dict[str, int] = field(default_factory=dict)  # chain -> blocks checked
    records: int = 0
    anchors: int = 0
    pending: int = 0  # operations accepted but not yet in a block
    problems: list[str] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "ok": not self.problems,
            "chains": self.chains,
            "records": self.records,
            "anchors": self.anchors,
            "pending": self.pending,
            "problems": self.problems,
        }


@dataclass(frozen=True, slots=True)
class _Op:
    """One operation entry to check a record against."""

    chain: str
    seq: int
    height: int
    payload: bytes
    fields: OpFields


@dataclass(slots=True)
class _State:
    """What PostgreSQL holds of some identifiers: each one's last operation version
    in each chain, and its record (version, routing key, value rows in index order)."""

    last: dict[str, dict[str, int]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    values: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)


async def _fetch_state(conn: asyncpg.Connection, names: list[str]) -> _State:
    state = _State()
    if not names:
        return state
    for r in await conn.fetch(
        "SELECT handle, chain, max(version) FROM chain_entries"
        " WHERE kind = 'op' AND handle = ANY($1::text[]) GROUP BY handle, chain",
        names,
    ):
        state.last.setdefault(r[0], {})[r[1]] = r[2]
    for r in await conn.fetch(
        "SELECT i.handle, i.version, i.routing_key, v.idx, v.type, v.format, v.data, v.ttl,"
        " v.ttl_type, v.ts, v.perms, v.refs, v.salt FROM identifiers i LEFT JOIN handle_values v"
        " USING (handle) WHERE i.handle = ANY($1::text[]) ORDER BY i.handle, v.idx",
        names,
    ):
        handle = r[0]
        state.versions[handle] = r[1]
        state.keys[handle] = r[2]
        rows = state.values.setdefault(handle, [])
        if r[3] is not None:
            rows.append(tuple(r)[3:])
    return state


class _Scope:
    """Which chains' operations apply here: the follower's rule (sync.judge.holds).

    Parsing an identifier is most of that rule's cost, so for a Handle-style record
    stored here it is decided once per chain and routing key, the one stored with
    the record, after checking that the key is its text's prefix (a key changed in
    PostgreSQL then decides nothing: its record is parsed like any other).
    """

    def __init__(self, directory: Directory, me: str) -> None:
        self.directory, self.me = directory, me
        self._by_key: dict[tuple[str, str], bool] = {}

    def applies(self, chain: str, handle: str, routing_key: str | None = None) -> bool:
        if chain == self.me:
            return True  # its own chain: everything in it was written here
        if (
            routing_key is not None
            and routing_key.startswith(_HANDLE_KEY)
            and not routing_key.startswith(_PREFIX_RECORDS)
            and handle.startswith(routing_key[len(_HANDLE_KEY) :] + "/")
        ):
            key = (chain, routing_key)
            found = self._by_key.get(key)
            if found is None:
                found = self._by_key[key] = self._holds(chain, handle)
            return found
        return self._holds(chain, handle)

    def _holds(self, chain: str, handle: str) -> bool:
        probe = Operation(op="delete", handle=handle, version=1, actor="", at=0, record=None)
        return holds(self.directory, chain, probe)


_HANDLE_KEY = "handle:"
_PREFIX_RECORDS = "handle:0"  # 0.NA/...: decided record by record (sync.judge.scope)


async def verify(
    pool: asyncpg.Pool,
    directory: Directory,
    me: str,
    *,
    mirror_of: str | None = None,
    progress: Progress | None = None,
    compiled: bool = True,
) -> Report:
    """Check everything this node holds (see the module's docstring). Two connections
    share one snapshot: one reads blocks, entries and the records they wrote ahead,
    while the other's task checks what was read. ``compiled``: with the compiled
    checker where it is built (sync/native), which finds what the Python path finds."""
    report = Report()
    module = native.compiled() if compiled else None
    held = [me, *followed(directory, me, mirror_of=mirror_of)]
    async with (
        pool.acquire() as conn,
        pool.acquire() as ahead,
        # one snapshot for every check: a write committing meanwhile is not a problem
        conn.transaction(readonly=True, isolation="repeatable_read"),
        ahead.transaction(readonly=True, isolation="repeatable_read"),
    ):
        # one check at a time per database, whichever worker was asked
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _VERIFY_LOCK)
        snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
        await ahead.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        checker = _Records(conn, directory, me, report)
        await checker.load_pending()
        total = int(await conn.fetchval("SELECT count(*) FROM chain_entries WHERE kind = 'op'"))

        def tick() -> None:
            if progress is not None:
                progress(report.records, total)

        if module is not None:
            fast = module.Checker(me, checker.pending, checker.scope.applies)
            async with pages.spare(pool, snapshot) as side:
                for chain in held:
                    await _check_chain_compiled(
                        ahead, side, directory, chain, checker, tick, module, fast
                    )
        else:
            for chain in held:
                await _check_chain(ahead, directory, chain, report, checker, tick)
        await checker.unexplained()
        for chain in held:
            parent = directory.by_name[chain].parent if chain in directory.by_name else None
            if parent is not None and parent in held:
                await _check_anchors(conn, chain, parent, report)
    return report


async def check_handles(
    conn: asyncpg.Connection, directory: Directory, me: str, handles: Iterable[str]
) -> Report:
    """Check the records ``handles`` against their last operations, in ``conn``'s
    transaction (their blocks are not checked again)."""
    report = Report()
    checker = _Records(conn, directory, me, report)
    await checker.load_pending()
    names = sorted(set(handles))
    for start in range(0, len(names), _BATCH):
        part = names[start : start + _BATCH]
        ops: list[_Op] = []
        for r in await conn.fetch(
            "SELECT DISTINCT ON (handle, chain) handle, chain, seq, height, payload"
            " FROM chain_entries WHERE kind = 'op' AND handle = ANY($1::text[])"
            " ORDER BY handle, chain, version DESC",
            part,
        ):
            try:
                fields = op_fields(r["payload"])
            except Unreadable as exc:
                checker.unreadable(r["handle"], r["seq"], r["chain"], str(exc))
                continue
            ops.append(_Op(r["chain"], r["seq"], r["height"], r["payload"], fields))
        checker.agreeing = []
        await checker.check(ops)
        await checker.describe()
        await _check_answers(conn, checker.agreeing, report)
        written = {op.fields.handle for op in ops}
        for r in await conn.fetch(
            "SELECT handle FROM identifiers WHERE handle = ANY($1::text[]) ORDER BY handle",
            [h for h in part if h not in written and h not in checker.pending],
        ):
            report.problems.append(f"{r['handle']}: a record here that no chain holds")
    return report


async def _check_answers(conn: asyncpg.Connection, ops: Sequence[_Op], report: Report) -> None:
    """The public answer kept for each record (schemas/sql/0006_answers.sql, which the
    edge serves without a worker) against the one its chained record gives. Asked of
    the records a pass over changes checks, not of a full pass: it costs a decoding
    and a JSON encoding per record."""
    if not ops:
        return
    stored = {
        r["handle"]: (bytes(r["body"]), r["ttl"], r["expires_at"])
        for r in await conn.fetch(
            "SELECT handle, body, ttl, expires_at FROM answers WHERE handle = ANY($1::text[])",
            [op.fields.handle for op in ops],
        )
    }
    for op in ops:
        handle = op.fields.handle
        try:
            record = decode_operation(op.payload, check_form=False).record
        except EncodingError:
            continue  # said of its record already
        answer = (
            public_answer(in_index_order(record))
            if record is not None and not handle.startswith(PREFIX_RECORD_PREFIX + "/")
            else None
        )
        want = (answer.body, answer.ttl, answer.expires_at) if answer is not None else None
        if stored.get(handle) != want:
            report.problems.append(
                f"{handle}: its public answer (the answers table) differs from operation "
                f"{op.seq} of chain {op.chain!r}"
            )
            report.mismatches.append(
                Mismatch(handle=handle, chain=op.chain, seq=op.seq, payload=op.payload)
            )


async def _rows(
    conn: asyncpg.Connection, query: str, *args: object
) -> AsyncIterator[asyncpg.Record]:
    async for row in conn.cursor(query, *args, prefetch=_BATCH):  # inside verify's transaction
        yield row


Row = Mapping[str, Any]  # a row of chain_blocks or chain_entries, by column
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Read:
    """One stored block, its stored entries, and the state of the records they name."""

    block: Row
    entries: Sequence[Row]
    state: _State


async def _read(conn: asyncpg.Connection, chain: str) -> AsyncIterator[_Read]:
    """Each block of ``chain`` with its entries (the streams are in height and seq
    order) and the records its operations name."""
    entries = _rows(
        conn,
        "SELECT seq, height, kind, handle, version, hash, payload FROM chain_entries"
        " WHERE chain = $1 ORDER BY seq",
        chain,
    ).__aiter__()
    waiting: asyncpg.Record | None = None
    async for b in _rows(
        conn,
        "SELECT height, hash, message FROM chain_blocks WHERE chain = $1 ORDER BY height",
        chain,
    ):
        stored: list[asyncpg.Record] = []
        while True:
            if waiting is None:
                waiting = await anext(entries, None)
            if waiting is None or waiting["height"] > b["height"]:
                break
            if waiting["height"] == b["height"]:  # an entry of no stored block is passed
                stored.append(waiting)
            waiting = None
        names = sorted({r["handle"] for r in stored if r["kind"] == "op"})
        yield _Read(b, stored, await _fetch_state(conn, names))


async def _ahead(items: AsyncIterator[_T], depth: int = 2) -> AsyncIterator[_T]:
    """``items``, read by a task of their own up to ``depth`` ahead of the caller:
    while the caller checks one block, PostgreSQL reads the next."""
    queue: asyncio.Queue[_T | BaseException | None] = asyncio.Queue(depth)

    async def fill() -> None:
        try:
            async for item in items:
                await queue.put(item)
            await queue.put(None)
        except Exception as exc:  # handed to the reader, which raises it
            await queue.put(exc)

    task = asyncio.create_task(fill(), name="verify-read-ahead")
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _check_chain(
    ahead: asyncpg.Connection,
    directory: Directory,
    chain: str,
    report: Report,
    checker: _Records,
    tick: Callable[[], None],
) -> None:
    node = directory.by_name.get(chain)
    if node is None:
        report.problems.append(f"chain {chain!r} is held here but not in the directory")
        return
    tip, count, broken = Tip(), 0, False
    async for read in _ahead(_read(ahead, chain)):
        block = None if broken else _check_signed(node.public_key, chain, read.block, tip, report)
        broken = block is None
        if block is not None:
            tip, count = tip_after(block), count + 1
        await _check_entries(chain, read, block, report, checker)
        tick()
    report.chains[chain] = count


async def _check_chain_compiled(
    ahead: asyncpg.Connection,
    side: asyncpg.Connection | None,
    directory: Directory,
    chain: str,
    checker: _Records,
    tick: Callable[[], None],
    module: native.Module,
    fast: native.Checker,
) -> None:
    """``_check_chain`` with the compiled checker: it checks the blocks and records it
    can prove agree; a block it cannot is checked here in full, and the records it
    does not find as chained are decided here, so the findings are the same."""
    report = checker.report
    node = directory.by_name.get(chain)
    if node is None:
        report.problems.append(f"chain {chain!r} is held here but not in the directory")
        return
    fast.start()
    tip: Tip | None = Tip()  # None once a block did not check: nothing after it is proven
    count = 0
    async for b, fed in _ahead(pages.blocks(ahead, side, module, chain)):
        for page in fed:
            fast.feed(page)
        before = None if tip is None else (tip.height, tip.block_hash, tip.seq, tip.head)
        outcome = fast.check(chain, node.public_key, before, b["height"], b["hash"], b["message"])
        if outcome is None:  # checked here in full, and said what is wrong
            rows = fast.rows()
            names = sorted({r["handle"] for r in rows if r["kind"] == "op"})
            read = _Read(b, rows, await _fetch_state(checker.conn, names))
            block = None if tip is None else _check_signed(node.public_key, chain, b, tip, report)
            tip, count = (None, count) if block is None else (tip_after(block), count + 1)
            await _check_entries(chain, read, block, report, checker)
        else:
            after, records, undecided = outcome
            if after is not None:
                height, block_hash, seq, head = after
                tip = Tip(height=height, block_hash=block_hash, seq=seq, head=head)
                count += 1
            report.records += records
            await checker.check(
                [_Op(chain, seq, b["height"], p, op_fields(p)) for seq, p in undecided]
            )
            await checker.describe()
        tick()
    report.chains[chain] = count


def _check_signed(key: bytes, chain: str, b: Row, tip: Tip, report: Report) -> Block | None:
    """The stored block ``b`` checked against ``tip`` and its node's key; None (and the
    problem reported) when it does not check."""
    where = f"block {b['height']} of chain {chain!r}"
    try:
        block = check_block(decode_block(b["message"]), tip=tip, public_key_der=key)
    except EncodingError as exc:
        report.problems.append(f"{where}: {exc}")
        return None  # everything after a broken link is unproven
    if block.hash != b["hash"]:
        report.problems.append(f"{where}: stored hash does not match the signed header")
    return block


async def _check_entries(
    chain: str, read: _Read, block: Block | None, report: Report, checker: _Records
) -> None:
    """The stored entries of a block against what it signed (when it checked), then the
    records its operations wrote."""
    where = f"block {read.block['height']} of chain {chain!r}"
    signed = {e.seq: (e.kind, e.payload, e.hash) for e in block.entries} if block else {}
    ops: list[_Op] = []
    moved: list[_Op] = []
    for row in read.entries:
        seq, kind, payload = row["seq"], row["kind"], row["payload"]
        fields: OpFields | None = None
        if kind == "op":
            try:
                fields = op_fields(payload)
            except Unreadable as exc:
                checker.unreadable(row["handle"], seq, chain, str(exc))
        if block is not None:
            e = signed.pop(seq, None)
            same = (
                e is not None
                and e[2] == row["hash"]
                and e[1] == payload
                and e[0] == kind
                # the columns records are looked up by must say what the entry says
                and _names(kind, payload, fields) == (row["handle"], row["version"])
            )
            if not same:
                report.problems.append(
                    f"entry {seq} of chain {chain!r} differs from what {where} signed"
                    " (broken link: the stored entry was changed)"
                )
        if fields is not None:
            op = _Op(chain, seq, row["height"], payload, fields)
            # looked up under the identifier its row names: one that names another
            # is checked on its own
            (ops if fields.handle == row["handle"] else moved).append(op)
    for seq in sorted(signed):
        report.problems.append(f"entry {seq} of chain {chain!r} ({where}) is missing")
    checker.decide(ops, read.state)
    await checker.check(moved)
    await checker.describe()


async def check_blocks(
    conn: asyncpg.Connection,
    directory: Directory,
    me: str,
    blocks: Iterable[tuple[str, int]],
    report: Report,
) -> None:
    """Check the stored blocks (chain, height) in ``blocks``, each against the block
    before it as stored, with their entries and the records they wrote, in ``conn``'s
    transaction (the node's continuous check: blocks whose rows changed)."""
    checker = _Records(conn, directory, me, report)
    await checker.load_pending()
    for chain, height in sorted(set(blocks)):
        node = directory.by_name.get(chain)
        if node is None:
            continue
        rows = await conn.fetch(
            "SELECT height, hash, message FROM chain_blocks WHERE chain = $1"
            " AND height BETWEEN $2 - 1 AND $2 ORDER BY height",
            chain,
            height,
        )
        if not rows or rows[-1]["height"] != height:
            report.problems.append(f"block {height} of chain {chain!r} is missing")
            continue
        tip = Tip()
        if len(rows) == 2:  # the link to the block before, as stored (checked on its turn)
            with contextlib.suppress(EncodingError):
                tip = tip_after(decode_block(rows[0]["message"]))
        stored = await conn.fetch(
            "SELECT seq, height, kind, handle, version, hash, payload FROM chain_entries"
            " WHERE chain = $1 AND height = $2 ORDER BY seq",
            chain,
            height,
        )
        names = sorted({r["handle"] for r in stored if r["kind"] == "op"})
        read = _Read(rows[-1], list(stored), await _fetch_state(conn, names))
        block = _check_signed(node.public_key, chain, rows[-1], tip, report)
        await _check_entries(chain, read, block, report, checker)


def _link(op: _Op) -> str:
    return (
        f"operation {op.seq} (version {op.fields.version}) in block {op.height} "
        f"of chain {op.chain!r}"
    )


def _names(kind: str, payload: bytes, fields: OpFields | None) -> tuple[str, int] | None:
    """The identifier and version an entry is about (the anchored chain and height)."""
    if kind == "op":
        return (fields.handle, fields.version) if fields is not None else None
    try:
        anchor = decode_anchor(payload)
    except EncodingError:
        return None
    return anchor.chain, anchor.height


class _Records:
    """Checks records against the operations that must have written them."""

    def __init__(
        self, conn: asyncpg.Connection, directory: Directory, me: str, report: Report
    ) -> None:
        self.conn, self.directory, self.me, self.report = conn, directory, me, report
        self.scope = _Scope(directory, me)
        self.pending: set[str] = set()
        self.orphans: set[str] = set()  # records said to be held by no chain
        self.differing: list[tuple[_Op, str]] = []
        self.agreeing: list[_Op] | None = None  # when kept: the records found as chained

    async def load_pending(self) -> None:
        self.report.pending = int(
            await self.conn.fetchval("SELECT count(*) FROM outbox WHERE op <> 'anchor'")
        )
        self.pending = {
            r["handle"] for r in await self.conn.fetch("SELECT DISTINCT handle FROM outbox")
        }

    def unreadable(self, handle: str, seq: int, chain: str, why: str) -> None:
        self.report.problems.append(
            f"{handle}: operation {seq} of chain {chain!r} cannot be read: {why}"
        )

    async def check(self, ops: Sequence[_Op]) -> None:
        names = sorted({op.fields.handle for op in ops})
        if names:
            self.decide(ops, await _fetch_state(self.conn, names))

    def decide(self, ops: Sequence[_Op], state: _State) -> None:
        """Check the record of every operation in ``ops`` that is the one its record
        must equal: the last applying operation on it, this node's own chain first."""
        for op in ops:
            handle = op.fields.handle
            if handle in self.pending:
                continue  # a newer operation waits in the outbox
            last = state.last.get(handle, {})
            chosen = self._deciding(handle, last, state.keys.get(handle))
            if chosen is None:
                if handle in state.versions and handle not in self.orphans:
                    self.orphans.add(handle)
                    self.report.problems.append(f"{handle}: a record here that no chain holds")
                continue
            if chosen != (op.chain, op.fields.version):
                continue  # an older operation, or another chain's
            self._compare(op, state.versions.get(handle), state.values.get(handle, []))

    def _deciding(
        self, handle: str, last: dict[str, int], routing_key: str | None
    ) -> tuple[str, int] | None:
        if self.me in last:
            return self.me, last[self.me]
        if len(last) == 1:
            ((chain, version),) = last.items()
            return (chain, version) if self.scope.applies(chain, handle, routing_key) else None
        found = [(v, c) for c, v in last.items() if self.scope.applies(c, handle, routing_key)]
        if not found:
            return None
        v, c = max(found)
        return c, v

    def _compare(self, op: _Op, version: int | None, rows: list[tuple[Any, ...]]) -> None:
        self.report.records += 1
        want = op.fields.record
        if want is not None and version == op.fields.version:
            try:  # the common case first: nothing built for a record that agrees
                same = stored_map(op.fields.handle, rows, holder=op.chain == self.me) == want
            except NoSalt as exc:
                self.report.problems.append(
                    f"{op.fields.handle}: no salt for the private value {exc.index}: "
                    f"{_link(op)} cannot be checked"
                )
                return
            except Unreadable:
                same = False
            if same:
                if self.agreeing is not None:
                    self.agreeing.append(op)
                return
            self.differing.append((op, _link(op)))
        elif want is None:
            if version is None:
                return  # deleted, and gone
            self.report.problems.append(
                f"{op.fields.handle}: exists here, but {_link(op)} deleted it"
            )
        elif version is None:
            self.report.problems.append(
                f"{op.fields.handle}: missing here, but {_link(op)} wrote it"
            )
        else:
            self.report.problems.append(
                f"{op.fields.handle}: version {version} here, but {_link(op)} wrote version "
                f"{op.fields.version}"
            )
        self.report.mismatches.append(
            Mismatch(handle=op.fields.handle, chain=op.chain, seq=op.seq, payload=op.payload)
        )

    async def describe(self) -> None:
        """Say where each differing record departs from its operation (each decoded in
        full: only a record that differs gets here)."""
        for op, link in self.differing:
            handle = op.fields.handle
            try:
                want = decode_operation(op.payload, check_form=False).record
                have = (await fetch_records(self.conn, [handle])).get(handle)
                if have is not None and op.chain == self.me:
                    salts = await fetch_salts(self.conn, [handle])
                    have = commit_record(have, salts.get(handle, {}))
                where = (
                    difference(have, want)
                    if have is not None and want is not None
                    else "the record"
                )
            except (EncodingError, SaltMissing):
                where = "the record"
            self.report.problems.append(f"{handle}: {where} differs from {link}")
        self.differing.clear()

    async def unexplained(self) -> None:
        """Records here that no operation of any chain names."""
        async for row in _rows(
            self.conn,
            "SELECT handle FROM identifiers i WHERE NOT EXISTS (SELECT 1 FROM chain_entries e"
            " WHERE e.handle = i.handle AND e.kind = 'op') ORDER BY handle",
        ):
            if row["handle"] not in self.pending:
                self.report.problems.append(f"{row['handle']}: a record here that no chain holds")


async def _check_anchors(conn: asyncpg.Connection, chain: str, parent: str, report: Report) -> None:
    anchored = {}
    for r in await conn.fetch(
        "SELECT seq, payload FROM chain_entries WHERE chain = $1 AND kind = 'anchor'"
        " AND handle = $2",
        parent,
        chain,
    ):
        try:
            anchor = decode_anchor(r["payload"])
        except EncodingError as exc:  # the parent's block check names its hash too
            report.problems.append(
                f"entry {r['seq']} of chain {parent!r} anchors chain {chain!r} with a "
                f"payload that does not decode: {exc}"
            )
            continue
        anchored[anchor.height] = (anchor.hash, r["seq"])
    for b in await conn.fetch(
        "SELECT height, hash FROM chain_blocks WHERE chain = $1 ORDER BY height", chain
    ):
        found = anchored.get(b["height"])
        if found is None:
            continue  # not anchored yet: the parent's next block will carry it
        if found[0] != b["hash"]:
            report.problems.append(
                f"block {b['height']} of chain {chain!r} is not the block anchored by entry "
                f"{found[1]} of chain {parent!r} (broken link)"
            )
        report.anchors += 1
