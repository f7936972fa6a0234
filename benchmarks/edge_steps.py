"""Where the entry node's core goes while its edge serves open-loop load (issue 12).

The bench's network (``benchmarks.testbed``, as ``idres bench`` runs it) with a small
dataset, the super node cache-hot, then one oha step per rate, writes on or off. Per
step: latency, the CPU each part of the super node took (edge, worker, sync process,
its PostgreSQL), what the edge did (hits, forwards, fills, sheds), the super node's
lookups of the next node, and whether each worker counts each chain's copy current.

    python -m benchmarks.edge_steps 10000,20000,30000 [--writes] [--keys N] [--no-misses]

A diagnosis, not a benchmark of record: it has no references side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import dataset, loadgen
from benchmarks.resolution import kafka_down, kafka_up, warm
from benchmarks.scratch import scratch
from benchmarks.testbed import (
    LOADGEN_CPU,
    SERVER_CPU,
    Network,
    Writes,
    background,
    children,
    cpu_ticks_of,
    edge_rss_mb,
    is_edge,
    nice_postgres,
    niceness,
    pin,
    workers_rss_mb,
)
from registry.database import start_embedded

STEP_SECONDS = 5.0
_PY_SPY = Path(sys.executable).parent / "py-spy"  # --profile only; not a dependency


def _parts(node: int, pg_dir: Path) -> dict[str, list[int]]:
    parts: dict[str, list[int]] = {}
    for child in children(node):
        what = "edge" if is_edge(child) else "sync" if niceness(child) > 0 else "worker"
        parts.setdefault(what, []).append(child)
    for pidfile in pg_dir.rglob("postmaster.pid"):
        postmaster = int(pidfile.read_text().split()[0])
        parts["entry-pg"] = [postmaster, *children(postmaster)]
    return parts


def _cpu_times(cpu: str) -> list[int]:
    """cpu's times since boot in ticks: user nice system idle iowait irq softirq steal
    (proc(5), /proc/stat)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            return [int(x) for x in line.split()[1:9]]
    raise LookupError(cpu)


def _split(before: list[int], after: list[int]) -> dict[str, float]:
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    spent = [a - b for a, b in zip(after, before, strict=True)]
    total = sum(spent) or 1
    return {n: round(t / total, 2) for n, t in zip(names, spent, strict=True) if t}


def _metrics(port: int) -> str:
    return subprocess.run(
        ["curl", "-s", f"http://127.0.0.1:{port}/metrics"], capture_output=True, text=True
    ).stdout


def _gauge(text: str, name: str) -> str:
    m = re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.MULTILINE)
    return m.group(1) if m else "?"


def _counters(text: str) -> dict[str, float]:
    pattern = r"^(idres_edge_\w+_total|idres_upstream_requests_total)\{[^}]*\} (\S+)$"
    out: dict[str, float] = {}
    for m in re.finditer(pattern, text, re.MULTILINE):
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def _spy(pid: int, out: str) -> subprocess.Popen[bytes]:
    """py-spy on ``pid`` for most of a step, raw stacks to ``out``."""
    args = [str(_PY_SPY), "record", "--pid", str(pid), "-r", "200", "-d", "4", "-f", "raw"]
    return subprocess.Popen(
        [*args, "-o", out, "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rates", help="comma-separated open-loop rates, one step each")
    ap.add_argument("--writes", action="store_true", help="2%% writes, at most 100/s")
    ap.add_argument("--keys", type=int, default=20_000)
    ap.add_argument("--no-misses", action="store_true", help="leave out unregistered ids")
    ap.add_argument("--cold", action="store_true", help="caches off on every node")
    ap.add_argument("--profile", metavar="FILE", help="py-spy the super node's worker to FILE")
    ap.add_argument(
        "--warm-all", action="store_true", help="warm every identifier, not only those asked"
    )
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    if args.profile and not _PY_SPY.exists():
        raise SystemExit(
            f"--profile needs py-spy, which the project does not install: "
            f"{Path(sys.executable).parent / 'pip'} install py-spy"
        )
    work = scratch("idres-edge-steps-")
    pg = start_embedded(work / "pg")
    nice_postgres(work / "pg")
    entry_pg = start_embedded(work / "pg-entry")
    bootstrap, kenv = kafka_up(work, place=background([]))
    net = Network(work, pg, bootstrap, entry_pg_url=entry_pg)
    try:
        asyncio.run(net.create_databases())
        asyncio.run(dataset.load({n: net.db(n) for n in net.ports}, args.keys))
        wanted = dataset.requests(args.keys, args.keys)
        ids = [i for i in wanted.ids if not (args.no_misses and "MISSING" in i)]
        net.start(cache=not args.cold)
        port = net.ports["super"]
        if not args.cold:
            every = [dataset.owner_and_id(n)[1] for n in range(args.keys)] if args.warm_all else []
            asyncio.run(warm(port, sorted(set(ids) | set(every))))
        targets = work / "targets.txt"
        loadgen.write_targets(
            targets, (("GET", f"http://127.0.0.1:{port}/api/handles/{i}") for i in ids)
        )
        node = net.procs[-1].p.pid
        print(
            f"after warming: {_gauge(_metrics(port), 'idres_edge_entries')} answers kept, "
            f"edge {edge_rss_mb(node)} MB, "
            f"workers {workers_rss_mb(node)} MB resident",
            flush=True,
        )
        parts = _parts(node, work / "pg-entry")
        asyncio.run(_steps(net, port, targets, rates, parts, args))
    finally:
        net.stop()
        kafka_down(kenv)


async def _steps(
    net: Network,
    port: int,
    targets: Path,
    rates: list[int],
    parts: dict[str, list[int]],
    args: argparse.Namespace,
) -> None:
    for rate in rates:
        writes = Writes(net, args.keys) if args.writes else None
        task = (
            asyncio.create_task(writes.run(min(0.02 * rate, 100.0), STEP_SECONDS))
            if writes
            else None
        )
        spy = _spy(parts["worker"][0], f"{args.profile}.{rate}") if args.profile else None
        cpu0, seen0, t0 = cpu_ticks_of(parts), _counters(_metrics(port)), time.time()
        server0 = _cpu_times(SERVER_CPU)
        result = await asyncio.to_thread(
            loadgen.run,
            targets,
            [loadgen.Phase(rate=rate, duration=STEP_SECONDS)],
            cpus=pin(LOADGEN_CPU),
            label=str(rate),
        )
        cpu1, text, t1 = cpu_ticks_of(parts), _metrics(port), time.time()
        server = _split(server0, _cpu_times(SERVER_CPU))
        if task is not None:
            await task
        if spy is not None:
            await asyncio.to_thread(spy.wait)
        seen1 = _counters(text)
        cores = {w: round((cpu1[w] - cpu0.get(w, 0)) / 100 / (t1 - t0), 2) for w in cpu1}
        did: dict[str, object] = {
            k.removeprefix("idres_"): round(v - seen0.get(k, 0), 3 if "seconds" in k else None)
            for k, v in seen1.items()
        }
        if writes is not None:
            lags = sorted(writes.lags) or [0.0]
            did["writes acked/errors, lag p99 s"] = (
                f"{writes.acked}/{writes.errors}, {lags[int(0.99 * (len(lags) - 1))]:.2f}"
            )
        current = re.findall(r'^idres_chain_current\{[^}]*chain="([^"]+)"\} (\d)', text, re.M)
        print(
            f"{rate:>7,}/s: achieved {result.achieved_rate:,.0f}/s p50 {result.p50_ms:.2f} "
            f"p99 {result.p99_ms:.2f} max {result.max_ms:.1f} ms timeouts {result.timeouts}"
            f"\n   cores: {cores}\n   cpu {SERVER_CPU} (the entry node's): {server}"
            f"\n   counts: {did}\n   current: "
            + " ".join(f"{chain}={flag}" for chain, flag in current),
            flush=True,
        )
        await asyncio.sleep(2)


if __name__ == "__main__":
    main()
