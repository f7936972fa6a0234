"""``idres bench``: the Singles' Day benchmark. Builds the dataset, starts a whole
network (1 super, 2 backbone, 3 sub-chain nodes as separate ``idres serve``
processes on Kafka, each with its own database), drives open-loop traffic at the
super node, and writes a report folder (``benchmarks/report.py``).

For each kind of traffic (nginx serving the same records as files, the ceiling; a
minimal aiohttp handler serving them from a dict, the framework's floor; idres
cache-hot and cache-cold, on its one port):

1. a closed-loop peak with wrk (labelled closed-loop: it is a throughput figure);
2. open-loop steps with oha at fractions of that peak, each latency taken from
   the request's intended send time (``benchmarks/loadgen.py``), up past saturation;
   2% of the read rate (at most WRITE_CAP a second) is written meanwhile, whichever
   server is measured (registrations and updates at the sub-chain nodes, replicated
   to the super node through sync), and the time from each write's acknowledgement
   to its arrival in the super node's database is the replication lag;
3. for idres cache-hot: a spike to 10x a base of half the held rate, as at midnight.

The server under test runs on CPU 0, the load generator on CPU 1; the other nodes,
their PostgreSQL and Kafka are not pinned and run under SCHED_IDLE (see
testbed.BACKGROUND_NICE); the super node's own PostgreSQL and this script are not
pinned (see the report's placement).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import re
import subprocess
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from benchmarks import dataset, loadgen, report
from benchmarks import dns as dns_bench
from benchmarks.profiles import PROFILES, Profile, add_arguments
from benchmarks.registration import machine
from benchmarks.resolution import (
    WRK_LUA,
    Proc,
    cache_counts,
    ensure_tools,
    kafka_down,
    kafka_up,
    warm,
)
from benchmarks.scratch import scratch
from benchmarks.testbed import (
    LOADGEN_CPU,
    SERVER_CPU,
    Network,
    Writes,
    background,
    cpus,
    edge_rss_mb,
    floor,
    nginx,
    nice_postgres,
    pin,
    same_bytes,
    workers_rss_mb,
)
from registry.database import start_embedded

T = TypeVar("T")
WRITE_SHARE = 0.02
# ... but no more than this many writes a second: every write costs the rest of the
# network ~4.5 ms of CPU on these 2 cores (3 nodes apply it, Kafka carries it; 320
# writes/s took 1.76 cores), which a real deployment spends on other machines
WRITE_CAP = 100.0
HELD_BOUNDS_MS = (10.0, 25.0, 50.0)  # p99 bounds the held rate is given at
# The midnight spike: 10x a base of half the held rate, i.e. 5x what the node holds
SPIKE_BASE = 0.5
# oha on one core keeps p99 honest to about this rate here (benchmarks/loadgen.py,
# --ceiling); steps above it would measure the generator as much as the server
GENERATOR_CEILING = 40_000
# oha keeps every result in memory until it exits and stalls as that grows: no phase
# longer than this many requests (a longer one is cut into phases one after another)
MAX_PHASE_REQUESTS = 400_000


DESCRIPTIONS = {
    "nginx": "nginx, 1 worker, the same records as static JSON files (the ceiling)",
    "aiohttp_floor": "aiohttp, 1 process, the records in a dict (the framework's floor)",
    "idres_hot": "idres super node, cache-hot, its one port (the compiled edge, resolver/edge, "
    "in front of one Python worker)",
    "idres_cold": "idres super node, caches off everywhere, its one port: each request "
    "one lookup in its replicated copies; misses asked down the tree",
}


# ---------------------------------------------------------------- load


def closed_loop_peak(port: int, paths: Path, seconds: int) -> dict[str, Any]:
    """wrk, 1 thread on the load generator's CPU, 64 connections: peak throughput."""
    lua = paths.with_suffix(".lua")
    lua.write_text(WRK_LUA)
    args = ["wrk", "-t1", "-c64", f"-d{seconds}s", "--timeout", "2s", "-s", str(lua)]
    if (cpu := pin(LOADGEN_CPU)) is not None:
        args = ["taskset", "-c", cpu, *args]
    out = subprocess.run(
        [*args, f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        env={**os.environ, "IDRES_PATHS": str(paths)},
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    raw = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    return {
        "rps": rps,
        "p50": raw["p50"] / 1000,
        "p99": raw["p99"] / 1000,
        "p999": raw["p999"] / 1000,
        "max": raw["max"] / 1000,
        "errors": raw["errors"],  # connect, read, write and timeout errors
        "non2xx": raw["non2xx"],  # the 5% missing identifiers (404) among them
    }


@dataclass
class Bench:
    profile: Profile
    work: Path
    bound_ms: float
    ids: list[str]
    writes: Writes | None = None
    write_seconds: float = 0.0
    kinds: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def targets(self, port: int) -> Path:
        path = self.work / f"targets-{port}.txt"
        if not path.exists():
            loadgen.write_targets(
                path, (("GET", f"http://127.0.0.1:{port}/api/handles/{i}") for i in self.ids)
            )
        return path

    def paths(self) -> Path:
        path = self.work / "paths.txt"
        if not path.exists():
            path.write_text("".join(f"/api/handles/{i}\n" for i in self.ids))
        return path

    async def writing(self, phase: str, reads: float, seconds: float, load: Awaitable[T]) -> T:
        """``load`` while 2% of ``reads`` a second (at most WRITE_CAP) are written; their
        lags are kept under ``phase`` too."""
        writer = None
        if self.writes is not None:
            self.writes.phase = phase
            rate = min(WRITE_SHARE * reads, WRITE_CAP)
            writer = asyncio.create_task(self.writes.run(rate, seconds))
            self.write_seconds += seconds
        result = await load
        if writer is not None:
            await writer
            assert self.writes is not None
            if self.writes.acked and not self.writes.lags:
                raise SystemExit(
                    f"{self.writes.acked} writes acknowledged, none reached the super node: "
                    "sync is not running (see the nodes' logs); no figure would be honest"
                )
        return result

    async def step(self, label: str, port: int, phases: list[loadgen.Phase]) -> loadgen.Result:
        seconds = max(p.start + p.duration for p in phases)
        offered = sum(p.rate * p.duration for p in phases) / seconds
        result = await self.writing(
            label.split(" @ ")[0].split(" to ")[0],
            offered,
            seconds,
            asyncio.to_thread(
                loadgen.run, self.targets(port), phases, cpus=pin(LOADGEN_CPU), label=label
            ),
        )
        _say(
            f"  {label:34s} offered {result.offered_rate:9,.0f}/s achieved "
            f"{result.achieved_rate:9,.0f}/s p50 {result.p50_ms:7.2f} p99 {result.p99_ms:8.2f} "
            f"p99.9 {result.p999_ms:8.2f} max {result.max_ms:8.1f} ms errors {result.errors} "
            f"timeouts {result.timeouts} lateness p99 {result.lateness_p99_ms:.1f} ms"
        )
        return result

    async def ladder(self, kind: str, port: int, extra: tuple[float, ...] = ()) -> None:
        seconds = self.profile.peak_seconds
        peak = await self.writing(  # a closed loop runs past WRITE_CAP / 2%: the cap
            f"{kind} closed loop",
            WRITE_CAP / WRITE_SHARE,
            seconds,
            asyncio.to_thread(closed_loop_peak, port, self.paths(), seconds),
        )
        _say(f"{kind}: closed-loop peak {peak['rps']:,.0f} req/s (wrk, labelled closed-loop)")
        rates = sorted({round(f * peak["rps"]) for f in self.profile.fractions} | set(extra))
        beyond = [r for r in rates if r > GENERATOR_CEILING]
        if beyond:
            self.skipped.append(
                f"{kind}: steps at {', '.join(_rate(r) for r in beyond)} not run: beyond "
                f"the {_rate(GENERATOR_CEILING)} the load generator keeps time to "
                "(benchmarks/loadgen.py)"
            )
        steps = []
        for rate in (r for r in rates if r <= GENERATOR_CEILING):
            phases = _cut(rate, self.profile.step_seconds, 0.0)
            steps.append((await self.step(f"{kind} @ {rate:,}/s", port, phases)).to_json())
        self.kinds[kind] = {
            "description": DESCRIPTIONS[kind],
            "closed_loop": peak,
            "steps": steps,
            "max_rate_under_bound": report.max_rate_under_bound(steps, self.bound_ms),
            # the held rate at several bounds, so that a ratio exists for every server
            "held": {f"{b:g}": report.max_rate_under_bound(steps, b) for b in HELD_BOUNDS_MS},
        }

    async def spike(
        self, port: int, capacity: float, factor: int, *, who: str = ""
    ) -> dict[str, Any]:
        before, during, after = self.profile.spike
        base = round(capacity * SPIKE_BASE)
        # never past what the generator keeps time to: beyond it the spike would
        # measure oha's own collapse (benchmarks/loadgen.py, --ceiling)
        extra = max(0, min(base * (factor - 1), GENERATOR_CEILING - base))
        phases = [
            *_cut(base, before + during + after, 0.0),
            *_cut(extra, during, before),
        ]
        label = f"{who} spike" if who else "spike"
        result = await self.step(f"{label} to {base + extra:,}/s from {base:,}/s", port, phases)
        if base + extra < base * factor:
            self.skipped.append(
                f"spike: {_rate(base + extra)} ({(base + extra) / base:.1f}x the base) instead "
                f"of {factor}x ({_rate(base * factor)}): the load generator keeps time only "
                f"to {_rate(GENERATOR_CEILING)}"
            )
        return {
            "factor": factor,
            "base_rate": base,
            "spike_rate": base + extra,
            "wanted_rate": base * factor,
            "spike_start": before,
            "spike_seconds": during,
            "result": result.to_json(),
            "hung": result.timeouts,
        }


def _cut(rate: float, seconds: float, start: float) -> list[loadgen.Phase]:
    """``rate`` for ``seconds`` from ``start``, as phases of at most MAX_PHASE_REQUESTS."""
    pieces = max(1, -(-round(rate * seconds) // MAX_PHASE_REQUESTS))
    length = seconds / pieces
    return [
        loadgen.Phase(rate=rate, duration=length, start=start + i * length) for i in range(pieces)
    ]


def _say(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------- the run


def run(profile: Profile, out: Path, *, bound_ms: float = 10.0, keys: int | None = None) -> Path:
    if keys is not None:
        profile = dataclasses.replace(profile, keys=keys)
    ensure_tools()
    loadgen.ensure_oha()
    started = dt.datetime.now(dt.UTC)
    work = scratch("idres-bench-")
    procs: list[Proc] = []
    kafka_env: dict[str, str] | None = None
    net: Network | None = None
    try:
        _say(f"idres bench --profile {profile.name}: work in {work}, report to {out}")
        pg = start_embedded(work / "pg")
        nice_postgres(work / "pg")
        entry_pg = start_embedded(work / "pg-entry")  # the super node's own, not niced
        bootstrap, kafka_env = kafka_up(work, place=background([]))
        net = Network(work, pg, bootstrap, entry_pg_url=entry_pg)
        asyncio.run(net.create_databases())
        t = time.monotonic()
        per_owner = asyncio.run(dataset.load({n: net.db(n) for n in net.ports}, profile.keys))
        _say(f"dataset: {profile.keys:,} identifiers loaded in {time.monotonic() - t:.0f} s")
        wanted = dataset.requests(profile.keys, profile.samples)
        bench = Bench(profile=profile, work=work, bound_ms=bound_ms, ids=wanted.ids)
        results: dict[str, Any] = {
            "profile": profile.name,
            "started": started.isoformat(timespec="seconds"),
            "machine": machine(),
            "cpu_placement": {
                "server under test": SERVER_CPU if cpus() > 1 else "any",
                "load generator (oha, wrk)": LOADGEN_CPU if cpus() > 1 else "any",
                "other nodes, their PostgreSQL, Kafka, the super node's own PostgreSQL, "
                "the writer": "not pinned",
                "niceness": "other nodes, their PostgreSQL, Kafka: SCHED_IDLE (sched(7)); the "
                "super node's own PostgreSQL: 0; its sync process: idres.node.SYNC_NICE",
                "cpus": str(cpus()),
            },
            "bound_ms": bound_ms,
            "dataset": {
                "identifiers": profile.keys,
                "by_scheme": dataset.by_scheme(min(profile.keys, 10_000)) | {"scale": "per 10,000"},
                "by_node": per_owner,
                "missing_share": round(wanted.missing / len(wanted.ids), 4),
                "zipf_s": 1.1,
                "requests_in_cycle": len(wanted.ids),
            },
            "method": method(profile, bound_ms),
        }

        reference_spikes: dict[str, Any] = {}

        async def references() -> None:
            if "nginx" in profile.kinds:
                port = loadgen.free_port()
                procs.append(nginx(work, profile.keys, port))
                await bench.ladder("nginx", port)
                # the same spike over nginx's own held rate: what one core can do at all
                reference_spikes["nginx"] = await bench.spike(
                    port, _capacity(bench.kinds["nginx"]), 10, who="nginx"
                )
                procs.pop().stop()
            if "aiohttp_floor" in profile.kinds:
                port = loadgen.free_port()
                procs.append(floor(work, profile.keys, port))
                await bench.ladder("aiohttp_floor", port)
                procs.pop().stop()

        # the network runs, and writes flow through it, while the references are measured
        # too: every server meets the same background on the machine
        net.start(cache=True)
        bench.writes = Writes(net, profile.keys)
        asyncio.run(references())

        async def hot() -> dict[str, Any]:
            assert net is not None
            same_bytes(net.ports["super"])
            await warm(net.ports["super"], sorted(set(wanted.ids)))
            cached = cache_counts(net.ports["super"]).get("idres_cache_entries", -1)
            rss = workers_rss_mb(net.procs[-1].p.pid)  # the super node: started last
            edge_rss = edge_rss_mb(net.procs[-1].p.pid)
            results["memory"] = {
                "cached_answers": cached,
                "workers_rss_mb": rss,
                "edge_rss_mb": edge_rss,
            }
            bench.skipped.append(
                f"Memory: the super node's worker held {cached:,} cached answers (every "
                f"identifier the load asks for) in {', '.join(f'{m:,.0f}' for m in rss)} MB "
                "resident after warming"
                + (f"; its edge, the same answers in {edge_rss:,.0f} MB." if edge_rss else ".")
            )
            spikes: dict[str, Any] = {}
            if "idres_hot" in profile.kinds:
                nginx_peak = (bench.kinds.get("nginx") or {}).get("closed_loop", {}).get("rps")
                extra = (round(0.8 * nginx_peak),) if nginx_peak else ()
                await bench.ladder("idres_hot", net.ports["super"], extra)
                capacity = _capacity(bench.kinds["idres_hot"])
                spikes["10"] = await bench.spike(net.ports["super"], capacity, 10)
            net.stop()
            return spikes

        spikes = asyncio.run(hot())

        async def cold() -> None:
            assert net is not None
            net.start(cache=False)
            if "idres_cold" in profile.kinds:
                await bench.ladder("idres_cold", net.ports["super"])
            net.stop()

        asyncio.run(cold())
        if "dns" in profile.kinds:  # the DNS face beside Knot, the network stopped
            results["dns"] = dns_bench.measure(
                work,
                keys=profile.keys,
                samples=max(50_000, 4 * profile.samples),
                seconds=2 * profile.step_seconds,
                rounds=2,
            )
        assert bench.writes is not None
        results["kinds"] = bench.kinds
        results["spike"] = spikes.get("10")
        results["spikes"] = spikes | reference_spikes
        results["replication"] = bench.writes.summary(bench.write_seconds)
        results["goals"] = goals(results)
        results["notes"] = bench.skipped + notes(results)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=1))
        summary = report.write_report(out, results)
        _say(f"report: {summary}")
        return summary
    finally:
        if net is not None:
            net.stop()
        for p in procs:
            p.stop()
        kafka_down(kafka_env)


def _capacity(kind: dict[str, Any] | None) -> float:
    """The held rate: the highest step rate held under the bound; where none held it
    (this shared machine keeps even nginx above 10 ms at times), under the loosest of
    HELD_BOUNDS_MS that one held; else the lowest step's rate. The same definition in
    every profile (the quick profile's spike is a miniature of the full one's)."""
    if not kind:
        return 0.0
    if kind["max_rate_under_bound"]:
        return float(kind["max_rate_under_bound"])
    for held in sorted((kind.get("held") or {}).items(), key=lambda item: float(item[0])):
        if held[1]:
            return float(held[1])
    return float(min((s["offered_rate"] for s in kind["steps"]), default=0.0))


def method(profile: Profile, bound_ms: float) -> list[str]:
    return [
        f"Dataset: {profile.keys:,} identifiers (85% Handle-style over 3 prefixes, 10% GTIN, "
        "4% OID, 1% did:bid) registered at 3 sub-chain nodes of the idres up layout (1 super, "
        "2 backbone, 3 sub-chain); the backbone and super nodes hold copies, as sync leaves them "
        "(placed with COPY: replicating the whole dataset through the log would take minutes).",
        f"Requests: {profile.samples:,} per cycle, Zipf(1.1) over the identifiers (hot keys "
        "spread over the key space), 5% identifiers nobody registered (answered 404, counted "
        "as answers, not errors).",
        "Entry point: the super node (1 worker), cache-hot (every requested key resolved once "
        "first) and cache-cold (caches off on every node), on its one port (the front door).",
        f"Peak: wrk, closed loop, 1 thread, 64 connections, {profile.peak_seconds} s, writes "
        "flowing: a throughput figure only; its latencies hide queueing.",
        f"Latency: oha 1.16.0 (crates.io) with --latency-correction, open loop at a fixed "
        f"rate for {profile.step_seconds:g} s per step, 64 connections, "
        "steps at " + ", ".join(f"{f:g}" for f in profile.fractions) + " x the closed-loop "
        "peak (and, for idres cache-hot, 0.8 x nginx's rate); latency from each request's "
        "intended send time, so queueing behind a stall is counted (no coordinated omission); "
        "1 s client timeout; an error is any answer other than 200/404, a transport error or "
        "a timeout.",
        f"A rate is sustained when p99 <= {bound_ms:g} ms, errors <= 0.1% and at least 95% of "
        "the offered rate is answered (report.max_rate_under_bound).",
        f"Writes: 2% of the read rate, at most {WRITE_CAP:g}/s, in signed batches of 10 (half "
        "new identifiers, half updates) at the sub-chain nodes, during every step and spike "
        "of every server, the references included; replication lag is from a write's "
        "acknowledgement to its version in the super node's database. The other five nodes, "
        "their PostgreSQL and Kafka run under SCHED_IDLE, on what the foreground leaves "
        "(they stand in for other machines); the super node's own PostgreSQL is a server of "
        "its own at nice 0, and its sync process is niced by idres itself.",
        "Spike: base 50% of the cache-hot held rate, then 10x the base for "
        f"{profile.spike[1]:g} s, {profile.spike[0]:g} s after the start; a request hangs if "
        "it is not answered within 1 s.",
        "References side by side in the same run: nginx (the ceiling) and a minimal aiohttp "
        "handler (the floor), each on 1 CPU like the idres super node.",
    ]


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    kinds = results["kinds"]
    out: list[dict[str, Any]] = []
    hot = kinds.get("idres_hot")
    nginx_peak = (kinds.get("nginx") or {}).get("closed_loop", {}).get("rps")
    if hot and nginx_peak:
        peak = hot["closed_loop"]["rps"]
        out.append(
            {
                "goal": "cache-hot resolution: requests/s vs nginx (closed-loop peak)",
                "target": ">= 1.0x nginx",
                "measured": f"{peak:,.0f}/s vs nginx {nginx_peak:,.0f}/s"
                f" = {peak / nginx_peak:.2f}x",
                "met": peak >= nginx_peak,
            }
        )
    nginx_held = (kinds.get("nginx") or {}).get("held") or {}
    for kind, share, what in (
        ("idres_hot", 0.8, "cache-hot held rate (open loop)"),
        ("idres_cold", 0.3, "caches off, every answer from the entry's copies: held rate"),
    ):
        held = (kinds.get(kind) or {}).get("held")
        if not held or not nginx_held:
            continue
        ratios = {b: _ratio(held.get(b), nginx_held.get(b)) for b in sorted(nginx_held, key=float)}
        measured = "; ".join(
            f"p99 <= {b} ms: {_held(held.get(b))} vs nginx {_held(nginx_held.get(b))}"
            + (f" = {r:.2f}x" if r is not None else "")
            for b, r in ratios.items()
        )
        judged = [r for r in ratios.values() if r is not None]
        met: bool | None = bool(judged) and all(r >= share for r in judged)
        if kind == "idres_hot" and (nginx_held.get("10") or 0) >= 30_000:
            met = bool(met) and (held.get("10") or 0) >= 20_000
            measured += " (nginx held 30,000/s at 10 ms: 20,000/s wanted there)"
        out.append(
            {
                "goal": what,
                "target": f">= {share:g}x nginx's held rate at the same p99 bound",
                "measured": measured,
                "met": met if judged else None,
            }
        )
    if results.get("dns"):
        out += dns_bench.goals(results["dns"])
    spikes = results.get("spikes") or {}
    if "10" in spikes:
        spike = spikes["10"]
        r = spike["result"]
        bound = float(results["bound_ms"])
        back = report.recovery(spike, bound)
        out.append(
            {
                "goal": "spike to 10x a base of 50% of the held rate (5x capacity)",
                "target": "every request answered or refused (503) within 1 s; accepted "
                f"p99 <= {bound:g} ms; p99 back within it <= 5 s after the spike",
                "measured": f"{r['timeouts']} of {r['sent']:,} not answered within 1 s, "
                f"{r.get('refused', 0):,} refused, accepted p99 "
                f"{r.get('accepted_p99_ms', r['p99_ms']):.1f} ms, back "
                + (f"{back:.0f} s after" if back is not None else "never within the run"),
                "met": r["timeouts"] == 0
                and r.get("accepted_p99_ms", r["p99_ms"]) <= bound
                and back is not None
                and back <= 5,
            }
        )
        if "nginx" in spikes:  # the reference, under the same spike of its own held rate
            ref = spikes["nginx"]
            rr = ref["result"]
            ref_back = report.recovery(ref, bound)
            out[-1]["measured"] += (
                f"; nginx, {ref['base_rate']:,} -> {ref['spike_rate']:,}/s: {rr['timeouts']:,} "
                f"of {rr['sent']:,} not answered within 1 s, p99 {rr['p99_ms']:.1f} ms, back "
                + (f"{ref_back:.0f} s after" if ref_back is not None else "never within the run")
            )
    rep = results.get("replication")
    if rep and rep["lag_ms"]["p99"] is not None:
        out.append(
            {
                "goal": "replication lag while reads run",
                "target": "p99 <= 1 s",
                "measured": f"p99 {rep['lag_ms']['p99']:,.0f} ms over {rep['writes']:,} writes "
                f"({rep['not_seen']} not seen); by what was read meanwhile, p99: "
                + ", ".join(
                    f"{phase} {lag['p99']:,.0f} ms"
                    for phase, lag in (rep.get("lag_by_phase_ms") or {}).items()
                ),
                "met": rep["lag_ms"]["p99"] <= 1000 and rep["not_seen"] == 0,
            }
        )
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    """a / b where both held a rate; None where nginx itself held none (no ratio)."""
    if not b:
        return None
    return (a or 0.0) / b


def notes(results: dict[str, Any]) -> list[str]:
    out = []
    for kind, k in results["kinds"].items():
        late = [s for s in k["steps"] if s["lateness_p99_ms"] > 5]
        if late:
            out.append(
                f"{kind}: at {', '.join(_rate(s['offered_rate']) for s in late)} "
                "oha's ticker itself ran late (lateness p99 > 5 ms): those steps measure the load "
                "generator as much as the server."
            )
    return out


def _rate(rate: float) -> str:
    return f"{rate:,.0f}/s"


def _held(rate: float | None) -> str:
    return _rate(rate) if rate else "none"


def run_args(args: argparse.Namespace) -> int:
    profile = PROFILES["quick" if args.quick else args.profile]
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or Path(f"idres-bench-{profile.name}-{stamp}")
    try:
        run(profile, out, bound_ms=args.bound_ms, keys=args.keys)
    except KeyboardInterrupt:
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="idres bench", description=__doc__.splitlines()[0])
    add_arguments(ap)
    return run_args(ap.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
