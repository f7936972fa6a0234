"""A signed write while anonymous clients flood a node with 10,000-delete batches.

Issue 11's measure: an unsigned ``POST /api/batch`` of 10,000 deletes must be refused
before it takes any row lock, so that a signed write of the same rows meanwhile
completes within 100 ms. One ``idres serve`` process on a fresh embedded PostgreSQL
holds 10,000 records; the benchmark measures signed single-record writes (PUT of one
of those records, one at a time) alone (the reference), then again while
``--flooders`` clients send anonymous 10,000-delete batches of the same records as
fast as they are answered. Each figure comes with its ratio to the reference.

    python -m benchmarks.anonymous_flood            # 300 writes each way, 4 flooders
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from benchmarks.registration import Server, batches, machine, signed_put
from registry import httpsig
from registry.database import start_embedded

ROWS = 10_000
LABEL = "FLOOD"


def handle(n: int) -> str:
    return f"88.100.1/{LABEL}-{n:08d}"  # as benchmarks.registration.batches names them


async def signed_writes(server: Server, count: int) -> list[float]:
    """Seconds each of ``count`` signed PUTs of existing records took, one at a time."""
    key = httpsig.load_private_key(server.key.read_bytes())
    out = []
    async with aiohttp.ClientSession() as s:
        for n in range(count):
            body = json.dumps(
                {"values": [{"index": 1, "type": "URL", "data": f"https://example.com/w/{n}"}]}
            ).encode()
            target, headers = signed_put(server.base, key, handle(n % ROWS), body)
            started = time.perf_counter()
            async with s.put(target, data=body, headers=headers) as resp:
                await resp.read()
                assert resp.status in (200, 201), resp.status
            out.append(time.perf_counter() - started)
    return out


async def flood(server: Server, stop: asyncio.Event, refused: list[float]) -> None:
    """Anonymous 10,000-delete batches until ``stop``; each answer's time in ``refused``."""
    body = json.dumps(
        {"operations": [{"op": "delete", "handle": handle(n)} for n in range(ROWS)]}
    ).encode()
    async with aiohttp.ClientSession() as s:
        while not stop.is_set():
            started = time.perf_counter()
            async with s.post(
                server.base + "/api/batch",
                data=body,
                headers={"Content-Type": "application/json"},
            ) as resp:
                await resp.read()
                assert resp.status == 401, f"an anonymous batch answered {resp.status}"
            refused.append(time.perf_counter() - started)


def summary(seconds: list[float]) -> dict[str, float]:
    ms = sorted(1000 * s for s in seconds)
    return {
        "n": len(ms),
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[max(0, int(len(ms) * 0.99) - 1)],
        "max_ms": ms[-1],
    }


async def run(writes: int, flooders: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="idres-flood-") as tmp:
        work = Path(tmp)
        url = start_embedded(work / "pg")
        async with Server(url, work, 1, "bench_flood") as server:
            await batches(server, ROWS, 1000, 2, LABEL)  # the records both sides touch
            await signed_writes(server, 20)  # warm the connection pool and caches
            alone = await signed_writes(server, writes)
            stop = asyncio.Event()
            refused: list[float] = []
            flooding = [asyncio.create_task(flood(server, stop, refused)) for _ in range(flooders)]
            await asyncio.sleep(1.0)  # the flood under way
            under = await signed_writes(server, writes)
            stop.set()
            await asyncio.gather(*flooding)
    a, b = summary(alone), summary(under)
    return {
        "machine": machine(),
        "method": (
            f"one idres serve (1 worker) with {ROWS} records; {writes} signed PUTs of those "
            f"records one at a time, alone, then while {flooders} clients send anonymous "
            f"{ROWS}-delete batches of the same records back to back"
        ),
        "signed_alone": a,
        "signed_under_flood": b,
        "p50_ratio": b["p50_ms"] / a["p50_ms"],
        "p99_ratio": b["p99_ms"] / a["p99_ms"],
        "anonymous_batches_refused": summary(refused),
        "goal": "signed write under flood within 100 ms",
        "goal_met": b["max_ms"] <= 100.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--flooders", type=int, default=4)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.writes, args.flooders)), indent=2))


if __name__ == "__main__":
    main()
