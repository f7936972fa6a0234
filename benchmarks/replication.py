"""Replication lag: from a registration acknowledged at a sub-chain node to the record
held at the super node, under a steady write rate, over a real Kafka broker.

Three `idres serve` processes (super, backbone, sub-chain), each with its own
database in one embedded PostgreSQL, publish and follow their chains on a
single-node Kafka 3.9 broker (deploy/kafka/kafka.sh, unless KAFKA_BOOTSTRAP is set).
An open-loop writer sends signed batches to the sub-chain node at a fixed rate
(default 2,000 registrations/s as 40 batches of 50 a second) and notes when each
batch is acknowledged. A poller asks the super node's database every 10 ms which of
the acknowledged identifiers it holds (its copy of the sub-chain's log entries, written
in the transaction that applies them). Lag = first seen at the super node minus
acknowledged (so it is at most 10 ms late, never early).

Reference, in the same run: the Kafka round trip alone (aiokafka producer with
acks=all to a consumer) at the same message rate as the sub-chain's blocks, the floor
any design on this broker pays for one hop. idres pays two log hops (sub-chain to
backbone is not on the path: the super node follows the sub-chain's topic itself)
plus cutting, checking and applying blocks.

    .venv/bin/python -m benchmarks.replication                 # 2,000/s for 30 s
    .venv/bin/python -m benchmarks.replication --rate 500 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from benchmarks.registration import machine
from benchmarks.resolution import create_databases, kafka_down, kafka_up, start_network
from registry import httpsig
from registry.client import ClientError, RegistryClient
from registry.database import start_embedded

ADMIN_ID = "300:0.NA/node.admin"


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "p999_ms": at(0.999),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


async def kafka_round_trip(bootstrap: str, rate: float, seconds: float) -> dict[str, Any]:
    """One-hop floor: produce (acks=all, idempotent) at ``rate``/s, consume, time each."""
    topic = f"idres.bench.{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await producer.start()
    await producer.send_and_wait(topic, b"warm")
    await consumer.start()
    sent: dict[int, float] = {}
    lags: list[float] = []
    total = int(rate * seconds)

    async def consume() -> None:
        while len(lags) < total:
            batches = await consumer.getmany(timeout_ms=500)
            now = time.perf_counter()
            for messages in batches.values():
                for m in messages:
                    if m.value != b"warm":
                        lags.append(now - sent[int(m.value or b"0")])

    task = asyncio.create_task(consume())
    start = time.perf_counter()
    for n in range(total):
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[n] = time.perf_counter()
        await producer.send(topic, str(n).encode() + b" " * 2000)  # about a block of ops
    try:
        await asyncio.wait_for(task, 30)
    finally:
        await producer.stop()
        await consumer.stop()
    return {"messages": total, **percentiles(lags)}


WATCHED = (
    ("sub", "idres_sync_outbox_depth"),
    ("sub", "idres_sync_unpublished_blocks"),
    ("super", 'idres_sync_behind_blocks{chain="sub"}'),
)


async def watch(
    urls: dict[str, str], timeline: list[dict[str, float]], stop: asyncio.Event
) -> None:
    """Sample where operations wait, once a second: the sub-chain's outbox (not yet cut),
    its blocks not yet in Kafka, and the super node's blocks not yet applied."""
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            sample = {"t": round(time.perf_counter() - started, 1)}
            for node, metric in WATCHED:
                try:
                    async with session.get(urls[node] + "/metrics") as response:
                        text = await response.text()
                except aiohttp.ClientError:
                    continue
                for line in text.splitlines():
                    if line.startswith(metric + " ") or line.startswith(metric + "{}"):
                        sample[f"{node}:{metric.split('{')[0]}"] = float(line.rsplit(" ", 1)[1])
            timeline.append(sample)
            await asyncio.sleep(1.0)


async def drive(
    urls: dict[str, str],
    key: httpsig.PrivateKey,
    super_db: str,
    rate: float,
    seconds: float,
    batch: int,
) -> dict[str, Any]:
    sub_url = urls["sub"]
    timeline: list[dict[str, float]] = []
    acked: dict[str, float] = {}
    seen: dict[str, float] = {}
    errors = 0
    late_starts = 0
    stop_polling = asyncio.Event()

    async def poll() -> None:
        # The super node stores each block's entries in the transaction that applies
        # them: reading its copy of the sub-chain's entries past the last seen is a
        # cheap range scan, and a handle there is a record held there.
        conn = await asyncpg.connect(super_db)
        last = 0
        try:
            while True:
                rows = await conn.fetch(
                    "SELECT seq, handle FROM chain_entries WHERE chain = 'sub' AND seq > $1"
                    " ORDER BY seq",
                    last,
                )
                now = time.perf_counter()
                for r in rows:
                    seen.setdefault(r["handle"], now)
                    last = r["seq"]
                done = stop_polling.is_set() and all(h in seen for h in acked)
                if done or time.perf_counter() > deadline:
                    return
                await asyncio.sleep(0.01)
        finally:
            await conn.close()

    async def send(client: RegistryClient, n: int) -> None:
        nonlocal errors
        handles = [f"88.100.9/R{n}-{i}" for i in range(batch)]
        ops = [
            {
                "op": "put",
                "handle": h,
                "values": [{"index": 1, "type": "URL", "data": f"https://e.x/{h}"}],
            }
            for h in handles
        ]
        try:
            reply = await client.batch(ops)
        except ClientError:
            errors += batch
            return
        now = time.perf_counter()
        if reply.status != 200:
            errors += batch
            return
        for h, result in zip(handles, reply.body.get("results", []), strict=False):
            if result.get("status") in (200, 201):
                acked[h] = now
            else:
                errors += 1

    deadline = time.perf_counter() + seconds + 60
    poller = asyncio.create_task(poll())
    watcher = asyncio.create_task(watch(urls, timeline, stop_polling))
    batches = int(rate * seconds / batch)
    interval = batch / rate
    async with RegistryClient(sub_url, key=key, key_id=ADMIN_ID, timeout=30) as client:
        tasks = []
        start = time.perf_counter()
        for n in range(batches):  # open loop: each batch leaves on schedule
            delay = start + n * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -interval:
                late_starts += 1
            tasks.append(asyncio.create_task(send(client, n)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    stop_polling.set()
    await poller
    await watcher
    lags = [seen[h] - acked[h] for h in acked if h in seen]
    return {
        "offered_per_s": rate,
        "acknowledged": len(acked),
        "acknowledged_per_s": round(len(acked) / elapsed, 1),
        "errors": errors,
        "batches_sent_late": late_starts,
        "not_seen_at_super": len(acked) - len(lags),
        **percentiles(lags),
        "timeline": timeline,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="registrations per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=50, help="registrations per request")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="idres-bench-repl-"))
    bootstrap, kafka_env = kafka_up(work)
    network: list[Any] = []
    try:
        url = start_embedded(work / "pg")
        asyncio.run(create_databases(url))
        ports: dict[str, int] = {}
        network, _ = start_network(
            work, url, cache=True, entry_workers=1, kafka=bootstrap, ports_out=ports
        )
        super_db = url.replace("/postgres?", "/bench_super?")
        blocks_per_s = min(args.rate / args.batch, 50.0)
        reference = asyncio.run(kafka_round_trip(bootstrap, blocks_per_s, min(args.seconds, 20)))
        result = asyncio.run(
            drive(
                {n: f"http://127.0.0.1:{p}" for n, p in ports.items()},
                httpsig.load_private_key((work / "sub" / "admin.pem").read_bytes()),
                super_db,
                args.rate,
                args.seconds,
                args.batch,
            )
        )
    finally:
        for proc in network:
            proc.stop()
        kafka_down(kafka_env)
    report = {
        "benchmark": "replication lag, sub-chain acknowledgement to held at the super node",
        "command": " ".join([sys.executable, *sys.argv]),
        "machine": machine(),
        "idres": result,
        "reference_kafka_one_hop": reference,
        "p99_ratio_to_kafka_one_hop": (
            round(result["p99_ms"] / reference["p99_ms"], 2)
            if result.get("p99_ms") and reference.get("p99_ms")
            else None
        ),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
