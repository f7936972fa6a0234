"""What grows with the identifiers a node holds (issue 12): the same cache-hot load at
the entry node with N identifiers cached, for several N in one run, with the garbage
collector's pauses read from the node's /metrics and, optionally, a py-spy profile.

    python -m benchmarks.cache_growth --keys 20000,1000000 --seconds 15 --profile /tmp/prof

Three tiers (super, backbone, sub; no Kafka) on one PostgreSQL; the records sit at the
sub node (COPY), the super node's cache is warmed with every one of the N identifiers,
then wrk (closed loop, 1 thread, 64 connections, CPU 1) asks a Zipf(1.1) mix of them of
the super node (CPU 0), at its one port (the front door).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from benchmarks.registration import machine
from benchmarks.resolution import (
    create_databases,
    load_records,
    start_network,
    wait_port,
    warm,
    zipf_paths,
)
from benchmarks.scratch import scratch
from benchmarks.singles_day import closed_loop_peak
from benchmarks.testbed import SERVER_CPU, pin, rss_mb
from registry.database import start_embedded


def gc_series(port: int) -> dict[str, float]:
    """The node's collector series: count, sum and longest pause by generation."""
    text = subprocess.run(
        ["curl", "-s", f"http://127.0.0.1:{port}/metrics"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    out = {}
    pattern = r'^(idres_gc_\w+)\{node="[^"]*",generation="(\d)"\} (\S+)$'
    for name, gen, value in re.findall(pattern, text, re.M):
        out[f"{name}[{gen}]"] = float(value)
    return out


def wrk(port: int, paths: Path, seconds: int) -> dict[str, Any]:
    """The singles-day closed-loop run (1 wrk thread on the generator's CPU, 64
    connections), with its latencies also under the names this report uses."""
    peak = closed_loop_peak(port, paths, seconds)
    return {**peak, "p99_ms": peak["p99"], "max_ms": peak["max"]}


def pauses(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for gen in "012":
        n = (
            after[f"idres_gc_collections_total[{gen}]"]
            - before[f"idres_gc_collections_total[{gen}]"]
        )
        total = (
            after[f"idres_gc_pause_seconds_sum[{gen}]"]
            - before[f"idres_gc_pause_seconds_sum[{gen}]"]
        )
        out[f"gen{gen}"] = {
            "collections": int(n),
            "pause_total_ms": round(1000 * total, 1),
            "pause_mean_ms": round(1000 * total / n, 3) if n else None,
            "longest_since_start_ms": round(1000 * after[f"idres_gc_pause_max_seconds[{gen}]"], 1),
        }
    return out


def one(work: Path, url: str, n: int, args: argparse.Namespace, keys: Any) -> dict[str, Any]:
    procs, entry = start_network(work, url, cache=True, entry_workers=1, keys=keys)
    try:
        port = entry  # one port: the front door
        wait_port(port)
        node = procs[-1].p.pid
        if (cpu := pin(SERVER_CPU)) is not None:
            subprocess.run(["taskset", "-apc", cpu, str(node)], check=True, capture_output=True)
        t = time.monotonic()
        asyncio.run(warm(entry, [f"88.100.1/B{i:07d}" for i in range(n)]))
        warmed = time.monotonic() - t
        paths = work / f"paths-{n}.txt"
        paths.write_text("\n".join(zipf_paths(n, 500_000)) + "\n")
        wrk(port, paths, 3)  # the connections and the loop warm
        before = gc_series(entry)
        result = wrk(port, paths, args.seconds)
        after = gc_series(entry)
        row = {
            "identifiers": n,
            "warm_seconds": round(warmed, 1),
            "rss_mb": round(rss_mb(node), 1),
            "wrk": result,
            "gc": pauses(before, after),
        }
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            spy = subprocess.Popen(
                [
                    *("py-spy", "record", "--nonblocking", "--rate", "250", "--format", "raw"),
                    *("--duration", str(args.seconds), "--pid", str(node)),
                    *("--output", str(args.profile / f"entry-{n}.txt")),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)
            row["wrk_profiled"] = wrk(port, paths, args.seconds)
            spy.wait()
        print(json.dumps(row), flush=True)
        return row
    finally:
        for p in procs:
            p.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", default="20000,1000000", help="comma-separated N")
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--profile", type=Path, help="a folder for py-spy's collapsed stacks")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    sizes = [int(k) for k in args.keys.split(",")]
    work = scratch("idres-growth-")
    keys = {n: ed25519.Ed25519PrivateKey.generate() for n in ("super", "backbone", "sub")}
    results: dict[str, Any] = {"machine": machine(), "seconds": args.seconds, "runs": []}
    print(f"# cache growth: {results['machine']}", flush=True)
    url = start_embedded(work / "pg")
    asyncio.run(create_databases(url))
    asyncio.run(load_records(url.replace("/postgres?", "/bench_sub?"), max(sizes)))
    for n in sizes:
        results["runs"].append(one(work, url, n, args, keys))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
