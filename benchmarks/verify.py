"""``idres verify`` at scale: how many records a second it checks, beside a plain scan.

A super node holding its copy of a sub-chain of N records (as replication leaves it:
the sub-chain's signed blocks of 1,000 operations and their entries, the super
node's own chain anchoring each of them, the records, their values and public
answers) is loaded by COPY, built with the pure chain functions (``schemas.chain``,
``schemas.oplog``) rather than through the registry and the follower, so a million
records load in minutes. Every tenth record also holds a private value (a
commitment here, as at any node but its holder). Then, in the same run:

- the **reference**: a plain ``SELECT`` of the same rows verify reads (every entry
  of both chains with its payload, every block message, every identifier and value),
  streamed through asyncpg with nothing done to them;
- ``sync.verify.verify`` on the same database, as ``GET /api/sync/verify`` runs it
  (with the compiled checker of sync/native when it is built), with the CPU time of
  this process beside its wall time (the machine is shared: records per CPU second is
  what it would reach with a core of its own, PostgreSQL working on the other);
- then the same with the Python path only (``compiled=False``), the reference the
  compiled checker must agree with (``same_report``), unless ``--profile``.

    python -m benchmarks.verify --records 1000000 [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric import ed25519

from benchmarks.registration import machine
from idres.assembly import NodeSpec, delegations
from registry.database import create_pool, start_embedded
from registry.rows import ANSWER_COLUMNS, VALUE_COLUMNS, in_index_order, value_to_row
from resolver.topology import Directory, Role
from schemas.chain import Block, Kind, Tip, anchor_of, cut_block, tip_after
from schemas.codec_json import public_answer
from schemas.commitment import commit_record
from schemas.identifiers import parse
from schemas.oplog import Operation, encode_operation
from schemas.record import DataFormat, HandleValue, Permissions, Record
from sync.verify import verify

TS = 1795420800
PER_BLOCK = 1000  # operations in a sub-chain block (the relay's max_entries)
ANCHORS_PER_BLOCK = 64  # sub-chain blocks anchored in one super block
PRIVATE = Permissions(public_read=False)
BLOCK_COLUMNS = ("chain", "height", "hash", "first_seq", "last_seq", "head", "message", "cut_at")
ENTRY_COLUMNS = ("chain", "seq", "height", "kind", "handle", "version", "hash", "payload")


def record_of(n: int) -> Record:
    values = [
        HandleValue(
            index=1, type="URL", format=DataFormat.STRING, value=f"https://e.x/p/{n}", timestamp=TS
        )
    ]
    if n % 10 == 0:
        values.append(
            HandleValue(
                index=2,
                type="EMAIL",
                format=DataFormat.STRING,
                value=f"owner{n}@e.x",
                timestamp=TS,
                permissions=PRIVATE,
            )
        )
    return Record(handle=f"88.100.{n % 97}/V{n:09d}", values=tuple(values))


def _block_rows(block: Block, refs: list[tuple[str, int]]) -> tuple[tuple[Any, ...], list[Any]]:
    h = block.header
    row = (h.chain, h.height, block.hash, h.first, block.last_seq, h.head, block.message(), None)
    entries = [
        (h.chain, e.seq, h.height, e.kind, handle, version, e.hash, e.payload)
        for e, (handle, version) in zip(block.entries, refs, strict=True)
    ]
    return row, entries


async def load(pool: asyncpg.Pool, records: int) -> dict[str, Any]:
    """The super node's database as replication of ``records`` sub-chain records
    leaves it; returns the directory and the counts."""
    keys = {n: ed25519.Ed25519PrivateKey.generate() for n in ("super", "sub")}
    specs = [
        NodeSpec(name="super", role=Role.SUPER, parent=None, url="http://a", prefixes=()),
        NodeSpec(name="sub", role=Role.BACKBONE, parent="super", url="http://b", prefixes=("88",)),
    ]
    signed = delegations(specs, keys)
    directory = Directory(signed, trust_anchor=signed[0].public_key)
    sub_tip, super_tip = Tip(), Tip()
    anchors: list[tuple[Kind, bytes]] = []
    salt = bytes(16)  # the holder's; here only the commitment matters
    at = int(time.time() * 1000)
    async with pool.acquire() as conn:
        await conn.execute("ALTER TABLE chain_blocks ALTER cut_at DROP NOT NULL")
        for start in range(0, records, PER_BLOCK):
            idents, values, answers = [], [], []
            items: list[tuple[Kind, bytes]] = []
            refs = []
            for n in range(start, min(start + PER_BLOCK, records)):
                plain = record_of(n)
                committed = commit_record(plain, {2: salt})
                items.append(
                    (
                        "op",
                        encode_operation(
                            Operation(
                                op="create",
                                handle=plain.handle,
                                version=1,
                                actor="bench",
                                at=TS,
                                record=committed,
                            )
                        ),
                    )
                )
                refs.append((plain.handle, 1))
                ident = parse(plain.handle)
                idents.append((plain.handle, str(ident.scheme), str(ident.routing), 1))
                values += [value_to_row(plain.handle, v) for v in committed.values]
                a = public_answer(in_index_order(committed))
                assert a is not None
                answers.append((plain.handle, a.body, a.ttl, a.expires_at))
            block = cut_block(
                chain="sub", alg="sha256", tip=sub_tip, items=items, key=keys["sub"], at=at
            )
            sub_tip = tip_after(block)
            anchors.append(("anchor", anchor_of(block).encode()))
            blocks, entries = [], []
            row, rows = _block_rows(block, refs)
            blocks.append(row)
            entries += rows
            if len(anchors) == ANCHORS_PER_BLOCK or start + PER_BLOCK >= records:
                top = cut_block(
                    chain="super",
                    alg="sha256",
                    tip=super_tip,
                    items=anchors,
                    key=keys["super"],
                    at=at,
                )
                super_tip = tip_after(top)
                row, rows = _block_rows(
                    top,
                    [
                        ("sub", h)
                        for h in range(
                            block.header.height - len(anchors) + 1, block.header.height + 1
                        )
                    ],
                )
                blocks.append(row)
                entries += rows
                anchors = []
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "chain_blocks", records=blocks, columns=BLOCK_COLUMNS
                )
                await conn.copy_records_to_table(
                    "chain_entries", records=entries, columns=ENTRY_COLUMNS
                )
                await conn.copy_records_to_table(
                    "identifiers",
                    records=idents,
                    columns=("handle", "scheme", "routing_key", "version"),
                )
                await conn.copy_records_to_table(
                    "handle_values", records=values, columns=VALUE_COLUMNS
                )
                await conn.copy_records_to_table("answers", records=answers, columns=ANSWER_COLUMNS)
        await conn.execute("UPDATE chain_blocks SET cut_at = now()")
        await conn.execute("ALTER TABLE chain_blocks ALTER cut_at SET NOT NULL")
        await conn.execute("VACUUM ANALYZE")
    return {"directory": directory, "sub_blocks": sub_tip.height, "super_blocks": super_tip.height}


async def reference(pool: asyncpg.Pool) -> tuple[float, int]:
    """Seconds for a plain scan of the rows verify reads, and how many rows."""
    queries = (
        "SELECT chain, height, hash, message FROM chain_blocks ORDER BY chain, height",
        "SELECT chain, seq, height, kind, handle, version, hash, payload FROM chain_entries"
        " ORDER BY chain, seq",
        "SELECT handle, version FROM identifiers ORDER BY handle",
        "SELECT * FROM handle_values ORDER BY handle, idx",
    )
    rows = 0
    t = time.perf_counter()
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        for q in queries:
            async for _ in conn.cursor(q, prefetch=2000):
                rows += 1
    return time.perf_counter() - t, rows


def postgres_cpu(data_dir: Path) -> float | None:
    """CPU seconds of the PostgreSQL server in ``data_dir`` and of its live backends
    so far (Linux /proc; None elsewhere): verify's lookups run there, beside it."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, list[str]] = {}
    servers = set()
    try:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue  # ended meanwhile
            stats[int(pid)] = stat
            if str(data_dir).encode() in cmdline:
                servers.add(int(pid))
    except OSError:
        return None
    # fields after the name: state, ppid (index 1), ..., utime (11), stime (12)
    ours = [s for pid, s in stats.items() if pid in servers or int(s[1]) in servers]
    return sum(int(s[11]) + int(s[12]) for s in ours) / tick if servers else None


async def run(url: str, records: int, profile: bool, data_dir: Path) -> dict[str, Any]:
    pool = await create_pool(url, min_size=1, max_size=4)  # verify takes 3
    try:
        t = time.perf_counter()
        loaded = await load(pool, records)
        load_s = time.perf_counter() - t
        directory = loaded.pop("directory")
        ref_s, ref_rows = await reference(pool)
        profiler = cProfile.Profile() if profile else None
        runs = {}
        for name, compiled in (("compiled", True), ("python", False)):
            if profiler is not None and name == "python":
                continue  # profile the compiled checker only
            t, cpu, pg = time.perf_counter(), time.process_time(), postgres_cpu(data_dir)
            if profiler is not None:
                profiler.enable()
            report = await verify(pool, directory, "super", compiled=compiled)
            if profiler is not None:
                profiler.disable()
            verify_s = time.perf_counter() - t
            verify_cpu = time.process_time() - cpu  # this process's CPU: the machine's load aside
            pg_after = postgres_cpu(data_dir)
            pg_s = None if pg is None or pg_after is None else round(pg_after - pg, 2)
            runs[name] = (report, verify_s, verify_cpu, pg_s, os.getloadavg()[0])
        ref2_s, _ = await reference(pool)  # again after: the machine may have changed
    finally:
        await pool.close()
    report, verify_s, verify_cpu, pg_s, load_1m = runs["compiled"]
    out: dict[str, Any] = {
        "records": records,
        **loaded,
        "load_s": round(load_s, 1),
        "reference_scan_s": [round(ref_s, 2), round(ref2_s, 2)],
        "reference_rows": ref_rows,
        "verify_s": round(verify_s, 2),
        "verify_records_per_s": round(report.records / verify_s),
        "verify_vs_reference": round(verify_s / min(ref_s, ref2_s), 2),
        "verify_cpu_s": round(verify_cpu, 2),
        "verify_records_per_cpu_s": round(report.records / verify_cpu),
        "verify_postgres_cpu_s": pg_s,
        "load_average_1m_after": load_1m,
        "report": {k: v for k, v in report.to_json().items() if k != "problems"},
        "problems": report.problems[:5],
    }
    if "python" in runs:
        py_report, py_s, py_cpu, py_pg_s, py_load = runs["python"]
        out["python_verify"] = {
            "verify_s": round(py_s, 2),
            "verify_records_per_s": round(py_report.records / py_s),
            "verify_vs_reference": round(py_s / min(ref_s, ref2_s), 2),
            "verify_cpu_s": round(py_cpu, 2),
            "verify_records_per_cpu_s": round(py_report.records / py_cpu),
            "verify_postgres_cpu_s": py_pg_s,
            "load_average_1m_after": py_load,
            "same_report": py_report == report,
        }
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(30)
        out["profile"] = text.getvalue()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=265_000)
    ap.add_argument("--profile", action="store_true", help="cProfile the verify, print its top")
    ap.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="idres-verify-") as tmp:
        url = start_embedded(Path(tmp) / "pg")
        result = asyncio.run(run(url, args.records, args.profile, (Path(tmp) / "pg").resolve()))
    profile = result.pop("profile", None)
    result = {"machine": {**machine(), "load": os.getloadavg()}, **result}
    print(json.dumps(result, indent=2))
    if profile:
        print(profile)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
