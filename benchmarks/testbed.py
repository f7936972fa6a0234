"""The network under test for ``idres bench``: the six nodes of ``idres up``'s layout
as ``idres serve`` processes on Kafka, each with its own database; the writes that
flow through them while the reads run, and the lag of each to the super node; and
the two references, nginx and a bare aiohttp handler, serving the same records."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric import ed25519

from benchmarks import dataset, loadgen
from benchmarks.resolution import FLOOR, Proc, start_nginx, wait_port
from idres.assembly import NodeSpec, delegations, node_public_key, save_node_key
from idres.keyfiles import write_secret
from idres.network import LAYOUT
from registry import httpsig
from registry.client import ClientError, RegistryClient
from registry.database import create_pool
from schemas.identifiers import parse

ADMIN_ID = "300:0.NA/node.admin"
SERVER_CPU, LOADGEN_CPU = "0", "1"
# In a real deployment the other nodes, their databases and Kafka run on other
# machines; here they share the 2 cores with the server under test and the load
# generator (at 320 writes/s they take 1.76 cores; idle, 0.32). They run under
# SCHED_IDLE (sched(7)): they take only what the foreground leaves, and a waking
# foreground process does not wait for them. At nice 10 they took a quarter of the
# server's core under load (benchmarks/edge_steps.py, "nice" on CPU 0: 0.23-0.29 at
# 10,000-30,000/s), which no other machine would; pinned to the generator's core at nice
# 10 they starved it (20,000/s: 6,509/s answered). The super node's own sync process is
# niced by ``idres serve`` itself and stays on its core.
BACKGROUND_NICE = 10


def background(args: list[str]) -> list[str]:
    """``args`` run as a stand-in for another machine (see BACKGROUND_NICE)."""
    return ["chrt", "--idle", "0", "nice", "-n", str(BACKGROUND_NICE), *args]


KEPT = 100  # identifiers 0..99 are never updated: same_bytes compares them with the files


class Network:
    """The six nodes of ``idres up``'s layout as ``idres serve`` processes on Kafka."""

    def __init__(self, work: Path, pg_url: str, kafka: str, *, entry_pg_url: str = "") -> None:
        """``entry_pg_url``: a PostgreSQL of the super node's own, at the foreground's
        priority (its reads are the entry node's work); the other nodes' databases are in
        ``pg_url``, which may run niced. Empty: one server for all."""
        self.work, self.pg_url, self.kafka = work, pg_url, kafka
        self.entry_pg_url = entry_pg_url or pg_url
        self.keys = {name: ed25519.Ed25519PrivateKey.generate() for name, *_ in LAYOUT}
        self.ports = {name: loadgen.free_port() for name, *_ in LAYOUT}
        self.admin_path = work / "admin.pem"
        write_secret(self.admin_path, httpsig.private_key_pem(httpsig.generate_key()))
        self.admin = httpsig.load_private_key(self.admin_path.read_bytes())
        specs = [
            NodeSpec(
                name=name,
                role=role,
                parent=parent,
                url=f"http://127.0.0.1:{self.ports[name]}",
                prefixes=prefixes,
            )
            for name, role, parent, _, prefixes in LAYOUT
        ]
        self.directory = work / "directory.json"
        self.directory.write_text(json.dumps([d.to_json() for d in delegations(specs, self.keys)]))
        self.anchor = base64.b64encode(node_public_key(self.keys["super"])).decode()
        self.procs: list[Proc] = []

    def server(self, name: str) -> str:
        return self.entry_pg_url if name == "super" else self.pg_url

    def db(self, name: str) -> str:
        return self.server(name).replace("/postgres?", f"/bench_{name.replace('-', '_')}?")

    async def create_databases(self) -> None:
        for name in self.ports:
            conn = await asyncpg.connect(self.server(name))
            try:
                db = "bench_" + name.replace("-", "_")
                await conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
                await conn.execute(f"CREATE DATABASE {db}")
            finally:
                await conn.close()
        for name in self.ports:  # migrated
            await (await create_pool(self.db(name), min_size=1, max_size=1)).close()

    def start(self, *, cache: bool) -> None:
        for name, *_ in reversed(LAYOUT):  # children first: parents find them up
            save_node_key(self.work / name / "node.pem", self.keys[name])
            args = [
                *(sys.executable, "-m", "idres", "serve", "--port", str(self.ports[name])),
                *("--directory", str(self.directory), "--name", name),
                *("--trust-anchor", self.anchor, "--data-dir", str(self.work / name)),
                *("--admin-key", str(self.admin_path), "--kafka", self.kafka),
                # the bench warms caches with 1,000-identifier batches from one client:
                # lift the anonymous client's upstream budget for it
                *("--client-upstream-rate", "1e9", "--batch-upstream-max", "1000"),
            ]
            if name == "super":
                if cpus() > 1:
                    args = ["taskset", "-c", SERVER_CPU, *args]
            else:  # the rest of the network stands in for other machines: see BACKGROUND_NICE
                args = background(args)
            if not cache:
                args.append("--no-cache")
            env = {"DATABASE_URL": self.db(name)}
            self.procs.append(Proc(args, env=env, ready="idres: chain"))
        wait_port(self.ports["super"])

    def stop(self) -> None:
        for p in self.procs:
            p.stop()
        self.procs.clear()


def cpus() -> int:
    """How many CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state first; proc(5))."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_ticks(pid: int) -> int:
    """CPU ``pid`` has used, user and system, in clock ticks (proc(5))."""
    fields = _stat(pid)
    return int(fields[11]) + int(fields[12])


def cpu_ticks_of(parts: Mapping[str, list[int]]) -> dict[str, int]:
    """CPU each part's processes have used together, in clock ticks (a process gone
    since counts nothing)."""
    out = {}
    for what, pids in parts.items():
        total = 0
        for pid in pids:
            with contextlib.suppress(OSError):
                total += cpu_ticks(pid)
        out[what] = total
    return out


def niceness(pid: int) -> int:
    return int(_stat(pid)[16])


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def nice_postgres(data_dir: Path) -> None:
    """Place a running PostgreSQL as ``background`` places a process (its postmaster and
    the processes it has forked; the backends it forks later inherit both)."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    for pid in [postmaster, *children(postmaster)]:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, BACKGROUND_NICE)
            os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))


def workers_rss_mb(pid: int) -> list[float]:
    """The resident memory of each serving worker ``idres serve`` (``pid``) forked: its
    children at niceness 0 (its sync process runs niced)."""
    out = []
    for child in children(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if niceness(child) == 0 and not is_edge(child):
                out.append(round(rss_mb(child), 1))
    return out


def edge_rss_mb(pid: int) -> float | None:
    """The resident memory of the edge ``idres serve`` (``pid``) started, if any."""
    for child in children(pid):
        with contextlib.suppress(OSError):
            if is_edge(child):
                return round(rss_mb(child), 1)
    return None


def is_edge(pid: int) -> bool:
    """Whether ``pid`` is a node's edge (resolver/edge)."""
    return Path(f"/proc/{pid}/comm").read_text().strip() == "idres-edge"


def pin(cpu_list: str) -> str | None:
    """``cpu_list`` for taskset, or None on one CPU (nothing to keep apart)."""
    return cpu_list if cpus() > 1 else None


@dataclass
class Writes:
    """Registrations and updates at the sub-chain nodes, open loop, in batches of 10;
    each acknowledged write is then watched for in the super node's database."""

    net: Network
    keys: int
    acked: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    lags: list[float] = field(default_factory=list)
    by_phase: dict[str, list[float]] = field(default_factory=dict)  # the same lags, by phase
    phase: str = ""  # what the reads were meanwhile (set before each run)
    not_seen: int = 0
    counter: int = 0

    def failed(self, why: str, n: int = 1) -> None:
        """Count ``n`` writes not acknowledged, by why (the report lists the reasons)."""
        self.errors += n
        why = why[:160]
        self.error_kinds[why] = self.error_kinds.get(why, 0) + n

    async def run(self, rate: float, seconds: float) -> None:
        if rate <= 0:
            return
        phase = self.phase
        batch = 10
        pending: dict[str, tuple[int, float]] = {}
        done = asyncio.Event()
        rng = random.Random(int(rate * 1000) + self.counter)
        clients: dict[str, RegistryClient] = {}

        async def send(node: str, prefix: str) -> None:
            ops: list[dict[str, Any]] = []
            chosen: set[str] = set()  # one operation an identifier a batch (else a 400)
            for _ in range(batch):
                self.counter += 1
                if self.counter % 2:  # a new identifier
                    handle = f"{prefix}.9/W{self.counter:09d}"
                else:  # an update of an existing one of this node
                    while True:
                        n = rng.randrange(KEPT, self.keys)
                        owner, text = dataset.owner_and_id(n)
                        if owner == node and parse(text).canonical not in chosen:
                            break
                    handle = parse(text).canonical
                chosen.add(handle)
                url = f"https://example.com/w/{self.counter}"
                ops.append(
                    {
                        "op": "put",
                        "handle": handle,
                        "values": [{"index": 1, "type": "URL", "data": url}],
                    }
                )
            try:
                reply = await clients[node].batch(ops)
            except ClientError as exc:
                self.failed(f"the request: {exc}", batch)
                return
            now = time.monotonic()
            if reply.status != 200:
                self.failed(f"HTTP {reply.status}: {reply.body.get('message', '')}", batch)
                return
            for result in reply.body.get("results", []):
                if result.get("status") in (200, 201):
                    self.acked += 1
                    pending[result["handle"]] = (int(result["version"]), now)
                else:
                    self.failed(f"one write: {result.get('status')} {result.get('message', '')}")

        async def watch() -> None:
            conn = await asyncpg.connect(self.net.db("super"))
            try:
                while not (done.is_set() and not pending):
                    if pending:
                        rows = await conn.fetch(
                            "SELECT handle, version FROM identifiers WHERE handle = ANY($1)",
                            list(pending),
                        )
                        now = time.monotonic()
                        for r in rows:
                            version, at = pending.get(r["handle"], (1 << 62, 0.0))
                            if r["version"] >= version:
                                self.lags.append(now - at)
                                self.by_phase.setdefault(phase, []).append(now - at)
                                del pending[r["handle"]]
                    if done.is_set() and time.monotonic() > deadline:
                        self.not_seen += len(pending)
                        return
                    await asyncio.sleep(0.02)
            finally:
                await conn.close()

        deadline = time.monotonic() + seconds + 30
        watcher = asyncio.create_task(watch())
        tasks = []
        interval = batch / rate
        nodes = list(dataset.HANDLE_PREFIXES)
        async with contextlib.AsyncExitStack() as stack:
            for node, _ in nodes:
                url = f"http://127.0.0.1:{self.net.ports[node]}"
                clients[node] = await stack.enter_async_context(
                    RegistryClient(url, key=self.net.admin, key_id=ADMIN_ID, timeout=10)
                )
            start = time.monotonic()
            for i in range(int(rate * seconds / batch)):  # open loop: each on schedule
                delay = start + i * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(send(*nodes[i % len(nodes)])))
            await asyncio.gather(*tasks)
        done.set()
        await watcher

    def summary(self, seconds: float) -> dict[str, Any]:
        ordered = sorted(self.lags)

        def pick(q: float) -> float | None:
            return round(1000 * loadgen.percentile(ordered, q), 1) if ordered else None

        by_phase = {}
        for phase, lags in self.by_phase.items():
            lags = sorted(lags)
            by_phase[phase] = {
                "writes": len(lags),
                "p99": round(1000 * loadgen.percentile(lags, 99), 1),
                "max": round(1000 * lags[-1], 1),
            }
        return {
            "writes": self.acked,
            "write_rate": round(self.acked / seconds, 1) if seconds else 0.0,
            "lag_ms": {"p50": pick(50), "p99": pick(99), "max": pick(100)},
            "lag_by_phase_ms": by_phase,
            "errors": self.errors,
            "error_kinds": self.error_kinds,
            "not_seen": self.not_seen,
        }


def nginx(work: Path, keys: int, port: int) -> Proc:
    dataset.static_files(work / "www", keys)
    return start_nginx(work, work / "www", port, workers=1, files=keys, cpus=pin(SERVER_CPU))


def floor(work: Path, keys: int, port: int) -> Proc:
    records = work / "records.txt"
    with records.open("wb") as f:
        f.writelines(dataset.dump_lines(keys))
    script = FLOOR.replace("if os.fork() == 0:\n    pass", "if False:\n    pass")  # 1 process
    args = [sys.executable, "-c", script, str(records), str(port)]
    if (cpu := pin(SERVER_CPU)) is not None:
        args = ["taskset", "-c", cpu, *args]
    proc = Proc(args)
    wait_port(port)
    return proc


def same_bytes(port: int) -> None:
    """idres answers exactly the bytes nginx and the floor serve (one of each scheme)."""
    for n in (0, 90, 95, 99):
        ident = parse(dataset.owner_and_id(n)[1]).canonical
        answer = subprocess.run(
            ["curl", "-s", f"http://127.0.0.1:{port}/api/handles/{ident}"],
            capture_output=True,
            check=True,
        ).stdout
        if answer != dataset.body_of(n):
            raise SystemExit(f"idres answers {answer!r} for {ident}, the files hold other bytes")
