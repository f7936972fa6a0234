"""The front door's cache-hot path beside nginx, on one core each in turn.

``python -m benchmarks.front_door [--keys N] [--seconds S] [--rounds R]``

A node's front door (``resolver/front.py``, with the node's real ResolverAPI, Resolver
and Cache) holds N answers in its cache, as an entry node does at the peak, and
serves them under uvloop on CPU 0; nginx (one worker, CPU 0) serves the same bytes
as static files. wrk (CPU 1, closed loop, 64 connections) asks both for the same
Zipf(1.1) mix of identifiers, in alternating rounds, so the ratio is taken side by
side on this shared machine. This measures the door and the cache alone: no
PostgreSQL, no sync, no writes (``idres bench`` measures the whole node).

After the runs it prints the door's /metrics garbage-collector series and its
resident memory, the figures issue 12 asks for at 1M cached identifiers.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import os
import platform
import random
import re
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks import dataset
from benchmarks.resolution import WRK_LUA, Proc, ensure_tools, wait_port, wrk
from benchmarks.testbed import LOADGEN_CPU, SERVER_CPU, nginx, pin, rss_mb
from schemas.identifiers import parse


def _serve(port: int, keys: int) -> None:
    """The server side: a front door over a filled cache (run in its own process)."""
    import uvloop
    from aiohttp import web

    from benchmarks.fuzz.targets import _listener
    from resolver.front import open_front

    api = _listener().api  # a real ResolverAPI, Resolver and Directory; no store behind
    cache = api.resolver.cache
    for n in range(keys):
        cache.put_positive(parse(dataset.owner_and_id(n)[1]).canonical, dataset.body_of(n), 1e9)

    async def metrics(request: web.Request) -> web.Response:
        response: web.Response = await api.metrics_text(request)
        return response

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.create_server(("127.0.0.1", port), backlog=1024)
        await open_front(api, runner, sock)
        print(f"ready: {len(cache):,} answers cached", flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


def zipf_paths(keys: int, samples: int, s: float = 1.1) -> list[str]:
    cdf = list(itertools.accumulate(1.0 / (k**s) for k in range(1, keys + 1)))
    rng = random.Random(7)
    ranks = list(range(keys))
    rng.shuffle(ranks)  # the hot identifiers spread over every scheme
    return [
        "/api/handles/"
        + parse(
            dataset.owner_and_id(ranks[bisect.bisect_left(cdf, rng.random() * cdf[-1])])[1]
        ).canonical
        for _ in range(samples)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve is not None:
        _serve(args.serve, args.keys)
        return
    ensure_tools()
    work = Path(tempfile.mkdtemp(prefix="idres-front-"))
    work.chmod(0o755)  # nginx's worker runs as another user and reads the files here
    paths = work / "paths.txt"
    paths.write_text("\n".join(zipf_paths(args.keys, 200_000)) + "\n")
    lua = work / "wrk.lua"
    lua.write_text(WRK_LUA)
    wrk_cpu = pin(LOADGEN_CPU)
    if wrk_cpu is not None:  # wrk on the other core from here on
        os.sched_setaffinity(0, {int(wrk_cpu)})
    ports = {"nginx": 18480, "front door": 18481}
    started = time.monotonic()
    servers = {"nginx": nginx(work, args.keys, ports["nginx"])}
    door_args = [sys.executable, "-m", "benchmarks.front_door"]
    door_args += ["--serve", str(ports["front door"]), "--keys", str(args.keys)]
    if (cpu := pin(SERVER_CPU)) is not None:
        door_args = ["taskset", "-c", cpu, *door_args]
    servers["front door"] = Proc(door_args, ready="ready:")
    wait_port(ports["front door"])
    print(f"set up {args.keys:,} identifiers in {time.monotonic() - started:.0f} s", flush=True)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    try:
        for port in ports.values():  # warm both: nginx's open-file cache, the door's keys
            wrk(f"http://127.0.0.1:{port}", paths, lua, 3)
        for _ in range(args.rounds):
            for name, port in ports.items():
                result = wrk(f"http://127.0.0.1:{port}", paths, lua, args.seconds)
                results[name].append(result)
                print(
                    f"{name:>10}: {result['rps']:>9,.0f}/s closed loop, p99 "
                    f"{result['p99'] / 1000:.1f} ms, errors {result['errors']}, "
                    f"non-2xx {result['non2xx']}",
                    flush=True,
                )
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['front door']}/metrics") as r:
            metrics = r.read().decode()
        rss = rss_mb(servers["front door"].p.pid)  # taskset execs: the same process
    finally:
        for proc in servers.values():
            proc.stop()
    best = {name: max(r["rps"] for r in rs) for name, rs in results.items()}
    gc_lines = [
        line
        for line in metrics.splitlines()
        if line.startswith("idres_gc_") and "_bucket" not in line
    ]
    summary = {
        "keys": args.keys,
        "machine": f"{platform.processor() or platform.machine()}, {len(_cpus())} CPUs",
        "rps": best,
        "ratio": best["front door"] / best["nginx"],
        "rounds": results,
        "door_rss_mb": rss,
        "gc": gc_lines,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}, indent=1))


def _cpus() -> list[str]:
    text = Path("/proc/cpuinfo").read_text()
    return re.findall(r"^model name\s*:\s*(.*)$", text, re.M)


if __name__ == "__main__":
    main()
