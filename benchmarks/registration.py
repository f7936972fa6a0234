"""Registration benchmark: single writes, batches over HTTP, and ``idres import``.

Each run starts its own embedded PostgreSQL and a real ``idres serve`` process, and
measures, side by side on the same machine and run, the reference: a bare asyncpg
COPY of the same rows into the same schema (what PostgreSQL alone takes). Every
figure is printed with its ratio to that reference, since absolute numbers drift on
shared machines.

    python benchmarks/registration.py --rows 1000000 --workers 2
    python benchmarks/registration.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from yarl import URL

from benchmarks.loadgen import free_port
from benchmarks.scratch import scratch
from registry import httpsig
from registry.client import handle_path
from registry.database import create_pool, start_embedded
from registry.rows import VALUE_COLUMNS

ADMIN_ID = "300:0.NA/node.admin"
ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


async def copy_reference(url: str, rows: int) -> float:
    """Seconds for a bare COPY of what ``rows`` registrations write (no Python logic)."""
    admin = await asyncpg.connect(url)
    await admin.execute("DROP DATABASE IF EXISTS bench_copy WITH (FORCE)")
    await admin.execute("CREATE DATABASE bench_copy")
    await admin.close()
    pool = await create_pool(url.replace("/postgres?", "/bench_copy?"), min_size=1, max_size=1)
    payload = b"x" * 150
    started = time.perf_counter()
    async with pool.acquire() as conn:
        for start in range(0, rows, 5000):
            n = range(start, min(start + 5000, rows))
            handles = [f"88.100.1/COPY-{i:08d}" for i in n]
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "identifiers",
                    records=[(h, "handle", "handle:88.100.1", 1) for h in handles],
                    columns=("handle", "scheme", "routing_key", "version"),
                )
                await conn.copy_records_to_table(
                    "handle_values",
                    records=[
                        (h, i, t, "string", v.encode(), 86400, 0, 0, 14, b"\x80")
                        for h in handles
                        for i, t, v in (
                            (1, "URL", f"https://example.com/p/{h}"),
                            (2, "EMAIL", "ops@example.com"),
                        )
                    ],
                    columns=VALUE_COLUMNS,
                )
                await conn.copy_records_to_table(
                    "history",
                    records=[(h, 1, "create", ADMIN_ID, "[]", payload) for h in handles],
                    columns=("handle", "version", "op", "actor", "changes", "record"),
                )
                await conn.copy_records_to_table(
                    "outbox",
                    records=[(h, 1, "create", payload) for h in handles],
                    columns=("handle", "version", "op", "payload"),
                )
    elapsed = time.perf_counter() - started
    await pool.close()
    return elapsed


class Server:
    """``idres serve`` in its own process over a fresh database of the embedded server."""

    def __init__(self, url: str, workdir: Path, workers: int, name: str) -> None:
        self.url, self.workdir, self.workers, self.name = url, workdir, workers, name
        self.key = workdir / "admin.pem"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Server:
        admin = await asyncpg.connect(self.url)
        await admin.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {self.name}")
        await admin.close()
        if not self.key.exists():
            self.key.write_bytes(httpsig.private_key_pem(httpsig.generate_key()))
        env = {**os.environ, "DATABASE_URL": self.url.replace("/postgres?", f"/{self.name}?")}
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before timing
            [
                sys.executable,
                "-m",
                "idres",
                "serve",
                "--port",
                str(self.port),
                "--prefix",
                "88.100",
                "--admin-key",
                str(self.key),
                "--workers",
                str(self.workers),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "serving" not in line:
            raise SystemExit(f"idres serve did not start: {line}{self.proc.stdout.read()}")
        self.proc.stdout.readline()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=60)


def signed_put(
    base: str, key: httpsig.PrivateKey, handle: str, body: bytes
) -> tuple[URL, dict[str, str]]:
    path = handle_path(handle)
    headers = {"Content-Type": "application/json"}
    headers.update(
        httpsig.sign_request(
            method="PUT",
            path=path,
            query="",
            headers=headers,
            body=body,
            key=key,
            keyid=ADMIN_ID,
            created=int(time.time()),
            nonce=os.urandom(8).hex(),
            authority=httpsig.authority_of(base),
        )
    )
    return URL(base + path, encoded=True), headers


async def single_writes(server: Server, count: int, concurrency: int) -> dict[str, float]:
    key = httpsig.load_private_key(server.key.read_bytes())
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:

        async def worker() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                body = json.dumps(
                    {"values": [{"index": 1, "type": "URL", "data": f"https://example.com/p/{n}"}]}
                ).encode()
                target, headers = signed_put(
                    server.base, key, f"88.100.1/ONE-{concurrency}-{n}", body
                )
                t = time.perf_counter()
                async with s.put(target, data=body, headers=headers) as resp:
                    await resp.read()
                    assert resp.status == 201, resp.status
                latencies.append(time.perf_counter() - t)

        started = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rate": count / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1],
    }


async def batches(server: Server, rows: int, batch: int, concurrency: int, label: str) -> float:
    """Identifiers per second through POST /api/batch (bodies built before timing)."""
    key = httpsig.load_private_key(server.key.read_bytes())
    bodies = []
    for start in range(0, rows, batch):
        ops = [
            {
                "handle": f"88.100.1/{label}-{n:08d}",
                "values": [
                    {"index": 1, "type": "URL", "data": f"https://example.com/p/{n}"},
                    {"index": 2, "type": "EMAIL", "data": "ops@example.com"},
                ],
            }
            for n in range(start, min(start + batch, rows))
        ]
        bodies.append(json.dumps({"operations": ops}).encode())
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as s:

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                headers = {"Content-Type": "application/json"}
                headers.update(
                    httpsig.sign_request(
                        method="POST",
                        path="/api/batch",
                        query="",
                        headers=headers,
                        body=body,
                        key=key,
                        keyid=ADMIN_ID,
                        created=int(time.time()),
                        nonce=os.urandom(8).hex(),
                        authority=httpsig.authority_of(server.base),
                    )
                )
                async with s.post(server.base + "/api/batch", data=body, headers=headers) as r:
                    answer = await r.json()
                    created = sum(x["status"] == 201 for x in answer.get("results", []))
                    if r.status != 200 or created != len(answer["results"]):
                        raise SystemExit(f"batch failed: HTTP {r.status}, {created} created")

        started = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        return rows / (time.perf_counter() - started)


def import_file(server: Server, rows: int, workdir: Path, batch: int, concurrency: int) -> float:
    data = workdir / "import.csv"
    with data.open("w") as f:
        f.write("handle,URL,EMAIL\n")
        for n in range(rows):
            f.write(f"88.100.1/IMP-{n:08d},https://example.com/p/{n},ops@example.com\n")
    started = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "idres",
            "import",
            str(data),
            "--server",
            server.base,
            "--key",
            str(server.key),
            "--key-id",
            ADMIN_ID,
            "--batch-size",
            str(batch),
            "--concurrency",
            str(concurrency),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"idres import failed: {proc.stderr}")
    return elapsed


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="identifiers to import")
    ap.add_argument("--batch-rows", type=int, default=200_000, help="identifiers via batches")
    ap.add_argument("--singles", type=int, default=2_000, help="single PUTs per concurrency")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="100k import, 50k batched, 500 singles")
    ap.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.batch_rows, args.singles = 100_000, 50_000, 500
    workdir = scratch("idres-bench-")
    url = start_embedded(workdir / "pg")
    results: dict[str, Any] = {"machine": machine(), "args": vars(args) | {"out": None}}
    print(f"# registration benchmark\n\nmachine: {results['machine']}\n")
    copy_s = await copy_reference(url, args.rows)
    ref_rate = args.rows / copy_s
    results["copy_reference"] = {"seconds": copy_s, "rate": ref_rate}
    print(
        f"reference: bare asyncpg COPY of the rows {args.rows:,} registrations write "
        f"(identifiers, 2 values, history, outbox): {copy_s:.1f} s = {ref_rate:,.0f}/s"
    )
    async with Server(url, workdir, args.workers, "bench_reg") as server:
        seconds = import_file(server, args.rows, workdir, 2000, 4)
        results["import"] = {"seconds": seconds, "rate": args.rows / seconds}
        print(
            f"idres import of {args.rows:,} CSV rows (2000 per batch, 4 in flight): "
            f"{seconds:.1f} s = {args.rows / seconds:,.0f}/s "
            f"= {args.rows / seconds / ref_rate:.3f}x COPY"
        )
        for conc in (1, 16):
            r = await single_writes(server, args.singles, conc)
            results[f"single_c{conc}"] = r
            print(
                f"single signed PUTs, concurrency {conc:2d}: {r['rate']:8,.0f}/s "
                f"(p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms) "
                f"= {r['rate'] / ref_rate:.3f}x COPY"
            )
        for batch, conc in ((1000, 4), (5000, 2)):
            rate = await batches(server, args.batch_rows, batch, conc, f"B{batch}")
            results[f"batch_{batch}_c{conc}"] = {"rate": rate}
            print(
                f"POST /api/batch, {batch} per batch, {conc} in flight: {rate:8,.0f}/s "
                f"= {rate / ref_rate:.3f}x COPY"
            )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
