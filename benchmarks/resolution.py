"""Resolution benchmark: cache-hot at the entry node, and cold through three tiers,
side by side with nginx serving the same records as static files (the ceiling) and a
minimal aiohttp handler serving them from a dict (the framework's floor).

Load: wrk (Debian's package) at 64 connections, 2 threads, a Zipf(1.1) mix of keys
over every record. wrk is closed-loop: its figures are peak throughput, and its
latencies are labelled closed-loop (they hide queueing). Installs nginx and wrk with
apt-get when missing (as root).

    python benchmarks/resolution.py --keys 1000000
    python benchmarks/resolution.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import contextlib
import itertools
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric import ed25519

from benchmarks.loadgen import free_port
from benchmarks.registration import machine
from benchmarks.scratch import scratch
from idres.assembly import NodeSpec, delegations, node_public_key, save_node_key
from registry.database import create_pool, start_embedded
from registry.rows import VALUE_COLUMNS
from resolver.topology import Role

ROOT = Path(__file__).resolve().parent.parent
TS = 1795420800  # every record's timestamp, so idres and the static files match byte for byte
WRK_LUA = r"""
local paths = {}
for line in io.lines(os.getenv("IDRES_PATHS")) do paths[#paths + 1] = line end
local i = 0
init = function(args) math.randomseed(os.time() + math.random(1000)); i = math.random(#paths) end
request = function() i = i % #paths + 1; return wrk.format("GET", paths[i]) end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "errors": %d, "non2xx": %d, ' ..
    '"p50": %d, "p99": %d, "p999": %d, "max": %d}\n',
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
"""
FLOOR = r"""
import os, sys, socket
from aiohttp import web
records = {}
with open(sys.argv[1], "rb") as f:
    for line in f:
        path, _, body = line.rstrip(b"\n").partition(b" ")
        records[path.decode()] = body
async def handle(request):
    body = records.get(request.path)
    if body is None:
        return web.Response(status=404)
    return web.Response(body=body, content_type="application/json")
app = web.Application()
app.router.add_get("/{tail:.+}", handle)
sock = socket.socket(); sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", int(sys.argv[2]))); sock.listen(1024); sock.set_inheritable(True)
if os.fork() == 0:
    pass  # both processes accept on the one socket, as idres --workers 2 does
import uvloop
web.run_app(app, sock=sock, print=None, access_log=None, loop=uvloop.new_event_loop())
"""


def ensure_tools() -> None:
    ensure_packages((("wrk", "wrk"), ("nginx-light", "nginx")))


def ensure_packages(wanted: tuple[tuple[str, str], ...]) -> None:
    """Install each (Debian package, program) whose program is missing, with apt-get."""
    missing = [
        p for p, exe in wanted if not shutil.which(exe) and not Path("/usr/sbin/" + exe).exists()
    ]
    if missing:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise SystemExit(f"the benchmark needs Debian's {', '.join(missing)}: apt-get, as root")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *missing],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )


def body_of(n: int) -> bytes:
    """The exact answer idres gives for record n (checked against a live node)."""
    return (
        b'{"responseCode":1,"handle":"88.100.1/B%07d","values":[{"index":1,"type":"URL",'
        b'"data":{"format":"string","value":"https://example.com/p/%d"},"ttl":86400,'
        b'"timestamp":"2026-11-23T08:00:00Z"}]}' % (n, n)
    )


async def load_records(url: str, keys: int) -> None:
    pool = await create_pool(url, min_size=1, max_size=1)
    async with pool.acquire() as conn:
        for start in range(0, keys, 50_000):
            n = range(start, min(start + 50_000, keys))
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "identifiers",
                    columns=("handle", "scheme", "routing_key", "version"),
                    records=[(f"88.100.1/B{i:07d}", "handle", "handle:88.100.1", 1) for i in n],
                )
                await conn.copy_records_to_table(
                    "handle_values",
                    columns=VALUE_COLUMNS,
                    records=[
                        (
                            f"88.100.1/B{i:07d}",
                            1,
                            "URL",
                            "string",
                            b"https://example.com/p/%d" % i,
                            86400,
                            0,
                            TS,
                            14,
                            b"\x80",
                        )
                        for i in n
                    ],
                )
        await conn.execute("ANALYZE")
    await pool.close()


def zipf_paths(keys: int, samples: int, s: float = 1.1) -> list[str]:
    weights = itertools.accumulate(1.0 / (k**s) for k in range(1, keys + 1))
    cdf = list(weights)
    total = cdf[-1]
    rng = random.Random(7)
    ranks = list(range(keys))
    rng.shuffle(ranks)  # hot keys spread over the key space, not the first few
    return [
        f"/api/handles/88.100.1/B{ranks[bisect.bisect_left(cdf, rng.random() * total)]:07d}"
        for _ in range(samples)
    ]


def wrk(url: str, paths_file: Path, lua: Path, seconds: int) -> dict[str, Any]:
    proc = subprocess.run(
        ["wrk", "-t2", "-c64", f"-d{seconds}s", "--timeout", "2s", "-s", str(lua), url],
        capture_output=True,
        text=True,
        env={**os.environ, "IDRES_PATHS": str(paths_file)},
        check=True,
    )
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", proc.stdout).group(1))  # type: ignore[union-attr]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])
    return {"rps": rps, **result}


class Proc:
    def __init__(
        self, args: list[str], env: dict[str, str] | None = None, ready: str | None = None
    ) -> None:
        self.p = subprocess.Popen(  # own process group: stop() ends forked children too
            args,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if ready:
            assert self.p.stdout is not None
            said: list[str] = []
            for line in self.p.stdout:
                if ready in line:
                    break
                said.append(line)
            else:
                raise SystemExit(f"{' '.join(args[:8])} did not start:\n{''.join(said[-20:])}")
            # keep reading: a full pipe would stop the server at its next log line
            self.tail: collections.deque[str] = collections.deque(said[-20:], maxlen=200)
            threading.Thread(target=self.tail.extend, args=(self.p.stdout,), daemon=True).start()

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.p.pid, signal.SIGTERM)
        try:
            self.p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.p.pid, signal.SIGKILL)


def wait_port(port: int) -> None:
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def start_network(
    work: Path,
    url: str,
    cache: bool,
    entry_workers: int,
    kafka: str | None = None,
    ports_out: dict[str, int] | None = None,
    keys: dict[str, ed25519.Ed25519PrivateKey] | None = None,
) -> tuple[list[Proc], int]:
    # the same keys across runs on the same databases: the chains there stay valid
    keys = keys or {n: ed25519.Ed25519PrivateKey.generate() for n in ("super", "backbone", "sub")}
    ports = {n: free_port() for n in keys}
    specs = [
        NodeSpec(
            name="super",
            role=Role.SUPER,
            parent=None,
            url=f"http://127.0.0.1:{ports['super']}",
            prefixes=("bid:",),
        ),
        NodeSpec(
            name="backbone",
            role=Role.BACKBONE,
            parent="super",
            url=f"http://127.0.0.1:{ports['backbone']}",
            prefixes=("88",),
        ),
        NodeSpec(
            name="sub",
            role=Role.SUBCHAIN,
            parent="backbone",
            url=f"http://127.0.0.1:{ports['sub']}",
            prefixes=("88.100",),
        ),
    ]
    directory = work / "directory.json"
    directory.write_text(json.dumps([d.to_json() for d in delegations(specs, keys)]))
    import base64

    anchor = base64.b64encode(node_public_key(keys["super"])).decode()
    procs = []
    for name in ("sub", "backbone", "super"):
        save_node_key(work / name / "node.pem", keys[name])  # the key its delegation names
        args = [
            sys.executable,
            "-m",
            "idres",
            "serve",
            "--port",
            str(ports[name]),
            "--directory",
            str(directory),
            "--name",
            name,
            "--trust-anchor",
            anchor,
            "--workers",
            str(entry_workers if name == "super" else 1),
            # warm() sends 1,000-identifier batches from one client: lift the budget
            "--client-upstream-rate",
            "1e9",
            "--batch-upstream-max",
            "1000",
            "--data-dir",
            str(work / name),
        ]
        if not cache:
            args.append("--no-cache")
        if kafka is not None:
            args += ["--kafka", kafka]
        procs.append(
            Proc(
                args,
                env={"DATABASE_URL": url.replace("/postgres?", f"/bench_{name}?")},
                ready="idres: chain",
            )
        )
    if ports_out is not None:
        ports_out.update(ports)
    return procs, ports["super"]


async def create_databases(url: str) -> None:
    conn = await asyncpg.connect(url)
    for name in ("super", "backbone", "sub"):
        await conn.execute(f"DROP DATABASE IF EXISTS bench_{name} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE bench_{name}")
    await conn.close()
    for name in ("super", "backbone", "sub"):
        pool = await create_pool(url.replace("/postgres?", f"/bench_{name}?"), max_size=1)
        await pool.close()


def nginx(work: Path, keys: int, port: int) -> Proc:
    root = work / "www" / "api" / "handles" / "88.100.1"
    root.mkdir(parents=True)
    for n in range(keys):
        (root / f"B{n:07d}").write_bytes(body_of(n))
    return start_nginx(work, work / "www", port, workers=2, files=keys)


def start_nginx(
    work: Path, www: Path, port: int, *, workers: int, files: int, cpus: str | None = None
) -> Proc:
    """nginx serving ``www`` on ``port``, with as many files' handles kept open as the
    process may hold with room for connections (on this machine 20,000 files at most,
    a hard limit its worker cannot raise: the hot keys, not all of a million)."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if limit == resource.RLIM_INFINITY:
        limit = 1 << 20
    cached = max(1000, min(files, limit - 8192))
    conf = work / "nginx.conf"
    conf.write_text(f"""
worker_processes {workers};
worker_rlimit_nofile {limit};
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  open_file_cache max={cached} inactive=600s;
  open_file_cache_valid 600s;
  default_type application/json;
  client_body_temp_path {work}/tmp; proxy_temp_path {work}/tmp; fastcgi_temp_path {work}/tmp;
  uwsgi_temp_path {work}/tmp; scgi_temp_path {work}/tmp;
  server {{ listen 127.0.0.1:{port}; root {www}; }}
}}
""")
    (work / "tmp").mkdir(exist_ok=True)
    args = ["nginx", "-c", str(conf), "-g", "daemon off;"]
    proc = Proc(["taskset", "-c", cpus, *args] if cpus is not None else args)
    wait_port(port)
    return proc


async def warm(port: int, keys: list[str]) -> None:
    """Resolve every distinct key the load asks for, 1,000 per request, then once each
    through the node's port."""
    import aiohttp

    async with aiohttp.ClientSession() as s:
        limit = asyncio.Semaphore(4)

        async def one(chunk: list[str]) -> None:
            for _ in range(30):  # a node shedding load says when to ask again: do so
                async with (
                    limit,
                    s.post(
                        f"http://127.0.0.1:{port}/api/resolve", json={"identifiers": chunk}
                    ) as resp,
                ):
                    body = await resp.read()
                if resp.status != 503:
                    break
                await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
            assert resp.status == 200, f"warming: {resp.status} {body[:300]!r}"

        await asyncio.gather(*(one(keys[i : i + 1000]) for i in range(0, len(keys), 1000)))

        # then each as the load asks for it: the node's edge (resolver/edge) keeps only
        # what passed through it, under the request target exactly as sent
        from yarl import URL

        reads = asyncio.Semaphore(32)

        async def get(key: str) -> None:
            url = URL(f"http://127.0.0.1:{port}/api/handles/{key}", encoded=True)
            async with reads, s.get(url) as resp:
                await resp.read()

        await asyncio.gather(*(get(key) for key in keys))


def cache_counts(port: int) -> dict[str, int]:
    text = subprocess.run(
        ["curl", "-s", f"http://127.0.0.1:{port}/metrics"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts = {}
    for name in ("idres_cache_hits_total", "idres_cache_misses_total", "idres_cache_entries"):
        match = re.search(rf"^{name}{{[^}}]*}} (\S+)$", text, re.MULTILINE)
        counts[name] = int(float(match.group(1))) if match else -1
    return counts


def sources(port: int) -> dict[str, int]:
    """How the entry node answered: from its copies, or by asking the next node."""
    text = subprocess.run(
        ["curl", "-s", f"http://127.0.0.1:{port}/metrics"], capture_output=True, text=True
    ).stdout
    out = {}
    for name in ("idres_replica_answers_total", "idres_upstream_requests_total"):
        out[name] = int(
            sum(float(m) for m in re.findall(rf"^{name}{{[^}}]*}} (\S+)$", text, re.MULTILINE))
        )
    return out


def kafka_up(work: Path, *, place: Sequence[str] = ()) -> tuple[str, dict[str, str] | None]:
    """Start a broker (``place``: a command prefix, such as ``nice``, to run it under)."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        return os.environ["KAFKA_BOOTSTRAP"], None
    env = {**os.environ, "IDRES_STATE": str(work / "kafka")}
    out = subprocess.run(
        [*place, "bash", str(ROOT / "deploy/kafka/kafka.sh"), "start"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # KAFKA_BOOTSTRAP and the broker's SASL credentials, one KEY=VALUE a line: the
    # nodes this process starts inherit them (each authenticates as the operator,
    # as under ``idres up``)
    said = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    os.environ.update({k: v for k, v in said.items() if k.startswith("KAFKA_SASL_")})
    return said["KAFKA_BOOTSTRAP"], env


def kafka_down(env: dict[str, str] | None) -> None:
    """Stop the broker ``kafka_up`` started (None: it started none)."""
    if env is not None:
        subprocess.run(["bash", str(ROOT / "deploy/kafka/kafka.sh"), "stop"], env=env, check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="100k keys, 8 s per run")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.quick:
        args.keys, args.seconds = 100_000, 8
    ensure_tools()
    work = scratch("idres-resolve-")
    results: dict[str, Any] = {"machine": machine(), "keys": args.keys, "seconds": args.seconds}
    procs: list[Proc] = []
    keys = {n: ed25519.Ed25519PrivateKey.generate() for n in ("super", "backbone", "sub")}
    kafka_env: dict[str, str] | None = None
    try:
        url = start_embedded(work / "pg")
        asyncio.run(create_databases(url))
        asyncio.run(load_records(url.replace("/postgres?", "/bench_sub?"), args.keys))
        paths = work / "paths.txt"
        paths.write_text("\n".join(zipf_paths(args.keys, 500_000)) + "\n")
        lua = work / "zipf.lua"
        lua.write_text(WRK_LUA)
        print(
            f"# resolution benchmark\n\nmachine: {results['machine']}\nkeys: {args.keys:,}, "
            f"Zipf(1.1), wrk -t2 -c64 -d{args.seconds}s (closed loop)\n"
        )

        def run(label: str, port: int) -> dict[str, Any]:
            r = wrk(f"http://127.0.0.1:{port}", paths, lua, args.seconds)
            results[label] = r
            ref = results.get("nginx", r)["rps"]
            floor = results.get("aiohttp_floor", r)["rps"]
            print(
                f"{label:24s} {r['rps']:9,.0f} req/s  p50 {r['p50'] / 1000:6.2f} ms  "
                f"p99 {r['p99'] / 1000:6.2f} ms  p99.9 {r['p999'] / 1000:6.2f} ms  "
                f"max {r['max'] / 1000:7.1f} ms  errors {r['errors']}  non-2xx {r['non2xx']}  "
                f"= {r['rps'] / ref:.2f}x nginx, {r['rps'] / floor:.2f}x aiohttp floor",
                flush=True,
            )
            return r

        port = free_port()
        procs.append(nginx(work, args.keys, port))
        run("nginx", port)
        procs.pop().stop()

        dump = work / "records.txt"
        with dump.open("wb") as f:
            for n in range(args.keys):
                f.write(b"/api/handles/88.100.1/B%07d " % n + body_of(n) + b"\n")
        port = free_port()
        procs.append(Proc([sys.executable, "-c", FLOOR, str(dump), str(port)]))
        wait_port(port)
        run("aiohttp_floor", port)
        procs.pop().stop()

        # hot: one worker, so one cache, warmed with every key the load will ask for
        network, entry = start_network(work, url, cache=True, entry_workers=1, keys=keys)
        procs += network
        check = subprocess.run(
            ["curl", "-s", f"http://127.0.0.1:{entry}/api/handles/88.100.1/B0000042"],
            capture_output=True,
            check=True,
        ).stdout
        assert check == body_of(42), check  # the same bytes as the static files
        asyncio.run(
            warm(
                entry, sorted({p.removeprefix("/api/handles/") for p in paths.read_text().split()})
            )
        )
        run("idres_hot_1_worker", entry)
        results["idres_hot_1_worker"]["cache"] = cache_counts(entry)
        for p in network:
            p.stop()
        procs.clear()

        network, entry = start_network(work, url, cache=False, entry_workers=2, keys=keys)
        procs += network
        run("idres_cold_3_tiers", entry)
        for p in network:
            p.stop()
        procs.clear()

        # cold again, with the records replicated to the super node (sync on Kafka):
        # no cache anywhere, each request one lookup in the entry node's database.
        # The records are placed there directly, as replication leaves them (1M
        # registrations replicated through the log would take minutes more).
        bootstrap, kafka_env = kafka_up(work)
        asyncio.run(load_records(url.replace("/postgres?", "/bench_super?"), args.keys))
        network, entry = start_network(
            work, url, cache=False, entry_workers=2, kafka=bootstrap, keys=keys
        )
        procs += network
        run("idres_cold_replica_at_entry", entry)
        results["idres_cold_replica_at_entry"]["sources"] = sources(entry)
        if args.out:
            args.out.write_text(json.dumps(results, indent=2))
    finally:
        for p in procs:
            p.stop()
        kafka_down(kafka_env)


if __name__ == "__main__":
    main()
