"""``idres import``: register a file of identifiers in signed batches, resumably.

Rows become batch operations; each batch carries an Idempotency-Key derived from the
file and the batch's place in it, so a batch re-sent after an interruption is
answered from the server's record instead of being applied twice. A checkpoint
beside the file, written before the first batch leaves, names the run and lists the
batches already answered; per-row errors are collected and written to
``FILE.errors.jsonl`` at the end instead of stopping the import.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from registry.client import RegistryClient
from schemas.errors import IdresError

EXIT_OK = 0
EXIT_ROW_ERRORS = 1


@dataclass(slots=True, kw_only=True)
class Row:
    line: int
    op: dict[str, Any] | None
    error: str | None = None


@dataclass(slots=True)
class Progress:
    total: int
    out: TextIO = field(default=sys.stderr)
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)
    _last: float = 0.0

    def advance(self, n: int, failed: int) -> None:
        self.done += n
        self.failed += failed
        now = time.monotonic()
        if now - self._last >= 0.2 or self.done >= self.total:
            self._last = now
            self.draw()

    def draw(self) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(30 * frac)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else 0
        line = (
            f"[{bar:<30}] {self.done}/{self.total} {100 * frac:5.1f}% "
            f"{rate:,.0f}/s eta {eta:,.0f}s errors {self.failed}"
        )
        end = "\r" if self.out.isatty() and self.done < self.total else "\n"
        print(line, end=end, file=self.out, flush=True)


def read_rows(path: Path) -> Iterator[Row]:
    """Rows of a CSV (header: handle, then one column per value type, optionally
    TYPE:INDEX) or of JSON Lines ({"handle": ..., "values": [...]})."""
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        yield from _jsonl_rows(path)
    else:
        yield from _csv_rows(path)


def _jsonl_rows(path: Path) -> Iterator[Row]:
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
            except (UnicodeDecodeError, ValueError) as exc:
                yield Row(line=n, op=None, error=f"not JSON: {exc}")
                continue
            if not isinstance(item, dict) or "handle" not in item:
                yield Row(line=n, op=None, error='expected {"handle": ..., "values": [...]}')
                continue
            if _not_utf8(json.dumps(item, ensure_ascii=False)):
                yield Row(line=n, op=None, error="a string holds a lone surrogate (not UTF-8)")
                continue
            yield Row(line=n, op={"op": "put", **item})


def _csv_rows(path: Path) -> Iterator[Row]:
    # utf-8-sig: spreadsheets write a BOM; surrogateescape: bad bytes become row errors
    with path.open(encoding="utf-8-sig", newline="", errors="surrogateescape") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            return
        if not header or header[0].strip().lower() != "handle":
            yield Row(line=1, op=None, error="the first column of the header must be 'handle'")
            return
        columns: list[tuple[str, int]] = []
        for pos, name in enumerate(header[1:], start=1):
            type_, _, index = name.strip().partition(":")
            numbered = index.isascii() and index.isdigit() and len(index) <= 10
            columns.append((type_, int(index) if numbered else pos))
        for row in reader:
            line = reader.line_num
            if not row or not any(row):
                continue
            if len(row) != len(header):
                yield Row(
                    line=line, op=None, error=f"{len(row)} columns; the header has {len(header)}"
                )
                continue
            if any(_not_utf8(cell) for cell in row):
                yield Row(line=line, op=None, error="the line is not UTF-8")
                continue
            values = [
                {"index": index, "type": type_, "data": text}
                for (type_, index), text in zip(columns, row[1:], strict=True)
                if text
            ]
            yield Row(line=line, op={"op": "put", "handle": row[0], "values": values})


def _not_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _batches(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(slots=True)
class Checkpoint:
    """What a run has done, beside the file: resumed only for the same file and options.

    ``run`` names the run in every batch's Idempotency-Key: a resumed run re-sends a
    batch under the same key (answered from the first time), a new run under new ones.
    """

    path: Path
    identity: str
    run: str
    done: set[int]

    @classmethod
    def load(cls, path: Path, identity: str) -> tuple[Checkpoint, bool]:
        try:
            saved = json.loads(path.read_text())
            if saved["identity"] == identity:
                return cls(path, identity, str(saved["run"]), set(saved["done"])), True
        except (OSError, ValueError, KeyError, TypeError):
            pass  # absent, unreadable or another file's: start a new run
        return cls(path, identity, os.urandom(8).hex(), set()), False

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(
            json.dumps({"identity": self.identity, "run": self.run, "done": sorted(self.done)})
        )
        os.replace(tmp, self.path)  # never a half-written checkpoint


def _run_identity(path: Path, batch_size: int, replace: bool) -> str:
    """The file's content and the options that shape its batches."""
    h = hashlib.sha256(f"{batch_size}|{replace}|".encode())
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:32]


async def run_import(
    client: RegistryClient,
    path: Path,
    *,
    batch_size: int = 2000,
    concurrency: int = 2,
    replace: bool = False,
    progress: bool = True,
    out: TextIO = sys.stderr,
) -> int:
    if not await asyncio.to_thread(path.is_file):
        print(f"idres import: {path}: no such file", file=out)
        return 2
    identity = await asyncio.to_thread(_run_identity, path, batch_size, replace)
    checkpoint, resumed = Checkpoint.load(
        path.with_name(path.name + ".idres-import.json"), identity
    )
    # Saved before the first batch leaves: a batch the server commits after an
    # interruption is then re-sent under its run's key and answered from the first time,
    # where a new run would find its rows "already exist".
    checkpoint.save()
    error_file = path.with_name(path.name + ".errors.jsonl")
    if not resumed:
        error_file.unlink(missing_ok=True)  # a resumed run adds to its own earlier errors
    total = sum(1 for _ in read_rows(path))
    bar = Progress(total=total, out=out if progress else io.StringIO())
    queue: asyncio.Queue[tuple[int, list[Row]] | None] = asyncio.Queue(maxsize=concurrency * 2)

    async def send(number: int, batch: list[Row]) -> None:
        errors = [{"line": r.line, "message": r.error} for r in batch if r.op is None]
        good = [r for r in batch if r.op is not None]
        if good:
            ops = [{**r.op, "overwrite": replace} for r in good if r.op is not None]
            reply = await _send_with_retry(client, ops, f"import-{checkpoint.run}-{number}")
            if not reply.ok:
                raise IdresError(
                    f"batch {number} refused: HTTP {reply.status}: {reply.body.get('message', '')}"
                )
            errors += [
                {
                    "line": r.line,
                    "handle": res.get("handle"),
                    "responseCode": res["responseCode"],
                    "message": res.get("message"),
                }
                for r, res in zip(good, reply.body["results"], strict=True)
                if res["responseCode"] != 1
            ]
        if errors:  # written before the batch counts as done, so a crash cannot lose them
            with error_file.open("a", encoding="utf-8") as f:
                f.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in errors)
        checkpoint.done.add(number)
        checkpoint.save()
        bar.advance(len(batch), len(errors))

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            await send(*item)

    workers = [asyncio.create_task(worker()) for _ in range(max(1, concurrency))]
    try:
        for number, batch in enumerate(_batches(read_rows(path), batch_size)):
            if number in checkpoint.done:
                bar.advance(len(batch), 0)
                continue
            # wait for room in the queue, or for a worker to fail (then stop feeding)
            put = asyncio.ensure_future(queue.put((number, batch)))
            await asyncio.wait({put, *workers}, return_when=asyncio.FIRST_COMPLETED)
            if not put.done():
                put.cancel()
                break
        if all(not w.done() for w in workers):
            for _ in workers:
                await queue.put(None)
        await asyncio.gather(*workers)
    except IdresError as exc:
        print(f"\nidres import: {exc.message}; run the same command again to resume", file=out)
        return EXIT_ROW_ERRORS
    except asyncio.CancelledError:  # Ctrl-C: asyncio.run cancels us, then raises KeyboardInterrupt
        print(
            f"\nidres import: interrupted with {bar.done} of {bar.total} rows answered "
            f"({bar.failed} failed); run the same command again to resume",
            file=out,
        )
        raise
    finally:
        for w in workers:
            w.cancel()
    if bar.done < bar.total:
        bar.draw()
    failed = _count_lines(error_file)
    if failed:
        print(
            f"idres import: {bar.total - failed} registered, {failed} rows failed; "
            f"see {error_file}",
            file=out,
        )
        with error_file.open(encoding="utf-8") as f:
            for line in list(f)[:5]:
                e = json.loads(line)
                print(f"  line {e['line']}: {e['message']}", file=out)
    else:
        print(
            f"idres import: {bar.done} registered in {time.monotonic() - bar.started:.1f}s",
            file=out,
        )
    checkpoint.path.unlink(missing_ok=True)
    return EXIT_ROW_ERRORS if failed else EXIT_OK


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


async def _send_with_retry(client: RegistryClient, ops: list[dict[str, Any]], key: str) -> Any:
    """Send one batch; on a lost connection or a 5xx, send it again under the same key."""
    delay = 0.5
    for attempt in range(6):
        try:
            reply = await client.batch(ops, idempotency_key=key)
        except IdresError:
            if attempt == 5:
                raise
        else:
            if reply.status < 500:
                return reply
            if attempt == 5:
                return reply
        await asyncio.sleep(delay)
        delay = min(delay * 2, 8)
    raise AssertionError("unreachable")
