"""The DNS face beside Knot DNS, on one core each in turn (issue 13).

One idres node (``idres serve``, one worker, holding every prefix of the dataset;
UDP answered by its edge unless ``--front python``) answers DNS on CPU 0, its own
PostgreSQL on the same core; Knot DNS (one UDP worker)
serves the same records from a zone file on CPU 0; dnsperf asks each in turn from CPU
1, a Zipf mix over the dataset's identifiers (``--missing``: a share of names nobody
registered, each asked once: every one is a query of the node's database). Each server is
warmed with one pass over the query file first. Rounds alternate, so drift on this
shared machine touches both; the figure of record is the ratio of the medians.
Then dnsperf holds idres at 80% of Knot's rate and reads every answer's latency.

    python -m benchmarks.dns [--keys 1000000] [--seconds 20] [--rounds 2] [--missing 0]
        [--front edge|python]

Needs Debian's knot and dnsperf (installed with apt-get when missing, as root).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg
import dns.message
import dns.query
import dns.rdatatype

from benchmarks import dataset, loadgen
from benchmarks.resolution import Proc, ensure_packages
from benchmarks.scratch import scratch
from benchmarks.testbed import LOADGEN_CPU, SERVER_CPU, children, pin
from registry.database import start_embedded
from registry.rows import ANSWER_COLUMNS, VALUE_COLUMNS, in_index_order, value_to_row
from resolver.dns.names import owner, zone_name
from resolver.dns.rdata import rrsets
from schemas.codec_json import public_answer
from schemas.identifiers import parse

ZONE = "idres.internal."
PREFIXES = ("88", "86", "gs1:6", "oid:1.2.156", "bid:ab12")
IDRES_PORT, KNOT_PORT, HTTP_PORT = 18553, 18554, 18580
HOST = "127.0.0.1"
# what each dataset identifier is asked for: the records a scanner or resolver wants
QTYPE = {"gtin": "NAPTR", "oid": "NAPTR", "handle": "URI", "did:bid": "URI"}


def name_of(identifier: str) -> str:
    found = owner(parse(identifier), zone_name(ZONE))
    assert found is not None
    return found.to_text()


def queries(work: Path, keys: int, samples: int, missing: float) -> Path:
    """dnsperf's input: one ``name TYPE`` a line, drawn as the HTTP benchmarks draw;
    ``missing``: the share of names nobody registered, each asked once in the file."""
    drawn = dataset.requests(keys, samples, missing=missing)
    path = work / "queries.txt"
    with path.open("w") as f:
        for ident in drawn.ids:
            f.write(f"{name_of(ident)} {QTYPE[str(parse(ident).scheme)]}\n")
    return path


def zone_file(work: Path, keys: int) -> Path:
    """The dataset as one zone, the records idres gives for each identifier."""
    path = work / "idres.zone"
    zone = zone_name(ZONE)
    with path.open("w") as f:
        f.write(f"$ORIGIN {ZONE}\n$TTL 86400\n")
        f.write(
            f"@ 60 SOA knot.ns hostmaster 1 3600 600 86400 60\n@ NS knot.ns\nknot.ns A {HOST}\n"
        )
        for n in range(keys):
            ident = parse(dataset.owner_and_id(n)[1])
            name = owner(ident, zone)
            assert name is not None
            for rrset in rrsets(name, ident, json.loads(dataset.body_of(n)), time.time()):
                f.write(rrset.to_text() + "\n")
    return path


async def load(url: str, keys: int, chunk: int = 50_000) -> None:
    """COPY the dataset into the node's database, answers table included."""
    conn = await asyncpg.connect(url)
    try:
        for start in range(0, keys, chunk):
            idents, values, answers = [], [], []
            for n in range(start, min(start + chunk, keys)):
                ident = parse(dataset.owner_and_id(n)[1])
                record = in_index_order(dataset.record_of(n))
                idents.append((ident.canonical, str(ident.scheme), str(ident.routing), 1))
                values += [value_to_row(ident.canonical, v) for v in record.values]
                public = public_answer(record)
                assert public is not None
                answers.append((ident.canonical, public.body, public.ttl, public.expires_at))
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "identifiers",
                    columns=("handle", "scheme", "routing_key", "version"),
                    records=idents,
                )
                await conn.copy_records_to_table(
                    "handle_values", columns=VALUE_COLUMNS, records=values
                )
                await conn.copy_records_to_table("answers", columns=ANSWER_COLUMNS, records=answers)
        # now, not during a measurement: autovacuum would take the node's core for a
        # minute after a million-row COPY (the first run after warming halved)
        await conn.execute("VACUUM ANALYZE")
        # the COPY went round the node, which hears of writes: everything may be new
        await conn.execute("NOTIFY idres_changed, '*'")
    finally:
        await conn.close()


def place_postgres(data_dir: Path, cpu: str) -> None:
    """Pin a running PostgreSQL (its postmaster and what it forked; the backends it
    forks later inherit it) to ``cpu``."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    if pin(cpu) is None:
        return
    for pid in [postmaster, *children(postmaster)]:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {int(cpu)})


def known(keys: int) -> None:
    """Wait until the node's worker has loaded its filter of the node's identifiers
    (after the notice ``load`` sends): until then every name costs a query."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://{HOST}:{HTTP_PORT}/metrics", timeout=5) as r:
                found = re.search(rb"idres_known_identifiers\{[^}]*\} (\d+)", r.read())
            if found and int(found.group(1)) >= keys:
                return
        time.sleep(0.5)
    raise SystemExit("the node's filter of its identifiers never loaded")


def start_idres(work: Path, url: str, front: str) -> Proc:
    args = [
        sys.executable, "-m", "idres", "serve", "--workers", "1", "--front", front,
        "--port", str(HTTP_PORT), "--dns-port", str(IDRES_PORT), "--dns-host", HOST,
        "--data-dir", str(work / "node"),
        *(a for p in PREFIXES for a in ("--prefix", p)),
    ]  # fmt: skip
    if (cpu := pin(SERVER_CPU)) is not None:
        args = ["taskset", "-c", cpu, *args]
    return Proc(args, env={"DATABASE_URL": url}, ready="DNS on")


def start_knot(work: Path, zone: Path) -> Proc:
    conf = work / "knot.conf"
    conf.write_text(f"""
server:
    rundir: "{work}"
    listen: {HOST}@{KNOT_PORT}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "{work}"
log:
  - target: stderr
    any: warning
zone:
  - domain: {ZONE}
    file: "{zone}"
    storage: "{work}"
    journal-content: none
    zonefile-sync: -1
""")
    knotd = shutil.which("knotd") or "/usr/sbin/knotd"
    args = [knotd, "-c", str(conf)]
    if (cpu := pin(SERVER_CPU)) is not None:
        args = ["taskset", "-c", cpu, *args]
    proc = Proc(args)
    deadline = time.monotonic() + 600  # a million names take Knot a while to load
    probe = dns.message.make_query(ZONE, "SOA")
    while True:
        try:
            if dns.query.udp(probe, HOST, port=KNOT_PORT, timeout=1).answer:
                return proc
        except Exception:
            pass
        if time.monotonic() > deadline or proc.p.poll() is not None:
            raise SystemExit("knotd did not start")
        time.sleep(0.5)


def dnsperf(
    port: int,
    data: Path,
    *,
    seconds: float,
    rate: int | None = None,
    verbose: bool = False,
    once: bool = False,
) -> dict[str, Any]:
    args = [
        "dnsperf", "-s", HOST, "-p", str(port), "-d", str(data), "-c", "8", "-q", "500",
        "-t", "2",
    ]  # fmt: skip
    args += ["-n", "1"] if once else ["-l", str(seconds)]
    if rate is not None:
        args += ["-Q", str(rate)]
    if verbose:
        args.append("-v")
    if (cpu := pin(LOADGEN_CPU)) is not None:
        args = ["taskset", "-c", cpu, *args]
    # to a file, read after: a pipe read while dnsperf runs costs a core's worth of
    # this process at the held rate (a line an answer with -v)
    with tempfile.TemporaryFile("w+") as sink:
        subprocess.run(args, stdout=sink, stderr=subprocess.PIPE, text=True, check=True)
        sink.seek(0)
        out = sink.read()
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    sent = re.search(r"Queries sent:\s+(\d+)", out)
    codes = dict(re.findall(r"(NOERROR|NXDOMAIN|SERVFAIL|REFUSED|FORMERR) (\d+)", out))
    result: dict[str, Any] = {
        "qps": float(qps.group(1)) if qps else 0.0,
        "sent": int(sent.group(1)) if sent else 0,
        "lost": int(lost.group(1)) if lost else 0,
        "codes": {k: int(v) for k, v in codes.items()},
    }
    if verbose:
        latencies = sorted(float(x) for x in re.findall(r"^> \S+ .* ([\d.]+)$", out, re.MULTILINE))
        result["latency_ms"] = (
            {q: round(1000 * loadgen.percentile(latencies, q), 3) for q in (50, 99, 99.9)}
            if latencies
            else {}
        )
        result["answered"] = len(latencies)
    return result


def warm_up(port: int, data: Path, passes: int = 3) -> list[dict[str, Any]]:
    """Passes over ``data`` until one loses no query, at most ``passes``."""
    done: list[dict[str, Any]] = []
    while len(done) < passes and (not done or done[-1]["lost"]):
        done.append(dnsperf(port, data, seconds=0, once=True))
    return done


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def measure(
    work: Path,
    *,
    keys: int,
    samples: int,
    seconds: float,
    rounds: int,
    missing: float = 0.0,
    front: str = "edge",
) -> dict[str, Any]:
    """The whole comparison, in ``work``; the results (see the module's docstring)."""
    ensure_packages((("knot", "knotd"), ("dnsperf", "dnsperf")))
    say(f"dns: {keys:,} identifiers, {samples:,} queries, in {work}")
    data = queries(work, keys, samples, missing)
    zone = zone_file(work, keys)
    pg = work / "pg-dns"
    url = start_embedded(pg)
    # the node's own database is part of the node: on its core, at its priority, as
    # Knot's zone is in Knot's memory (a miss is a query of it)
    place_postgres(pg, SERVER_CPU)
    node = start_idres(work, url, front)
    knot: Proc | None = None
    try:
        asyncio.run(load(url, keys))
        known(keys)
        knot = start_knot(work, zone)
        ports = {"knot": KNOT_PORT, "idres": IDRES_PORT}
        # passes over the queries (Knot's pages, the node's kept answers) until one
        # loses none: a query the node dropped while its workers filled at the database's
        # pace is not kept, and would be a miss in every round after
        warm = {name: warm_up(port, data) for name, port in ports.items()}
        say(f"dns: warmed {json.dumps(warm)}")
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ports}
        for _ in range(rounds):
            for name, port in ports.items():
                runs[name].append(dnsperf(port, data, seconds=seconds))
                say(f"dns: {name} {json.dumps(runs[name][-1])}")
        qps = {name: statistics.median(r["qps"] for r in rs) for name, rs in runs.items()}
        held = int(0.8 * qps["knot"])
        latency = {
            name: dnsperf(port, data, seconds=10, rate=held, verbose=True)
            for name, port in ports.items()
        }
        return {
            "command": f"python -m benchmarks.dns --keys {keys} --samples {samples} "
            f"--seconds {seconds:g} --rounds {rounds} --missing {missing:g} --front {front}",
            "machine": f"{platform.node()}, {os.cpu_count()} cores, {_cpu_model()}",
            "placement": {"servers": SERVER_CPU, "dnsperf": LOADGEN_CPU},
            "keys": keys,
            "samples": samples,
            "missing": missing,
            "front": front,
            "seconds": seconds,
            "warm": warm,
            "qps": qps,
            "ratio": round(qps["idres"] / qps["knot"], 3),
            "runs": runs,
            "held_at": held,
            "held": latency,
        }
    finally:
        if knot is not None:
            knot.stop()
        node.stop()


def goals(dns_results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's two goals, judged."""
    ratio = dns_results["ratio"]
    qps = dns_results["qps"]
    held = dns_results["held"]["idres"]
    p99 = held.get("latency_ms", {}).get(99)
    at = dns_results["held_at"]
    kept_up = held["qps"] >= 0.97 * at
    return [
        {
            "goal": "DNS queries/s vs Knot DNS, one core each (dnsperf, Zipf over the dataset)",
            "target": ">= 0.8x Knot",
            "measured": f"{qps['idres']:,.0f}/s vs Knot {qps['knot']:,.0f}/s = {ratio:.2f}x",
            "met": ratio >= 0.8,
        },
        {
            "goal": "DNS p99 at 80% of Knot's rate",
            "target": "<= 5 ms",
            "measured": f"offered {at:,}/s, answered {held['qps']:,.0f}/s, p99 "
            + (f"{p99:.2f} ms" if p99 is not None else "not read")
            + f" (Knot: {held_knot_p99(dns_results)})",
            "met": p99 is not None and p99 <= 5 and kept_up,
        },
    ]


def held_knot_p99(dns_results: dict[str, Any]) -> str:
    p99 = dns_results["held"]["knot"].get("latency_ms", {}).get(99)
    return f"{p99:.2f} ms" if p99 is not None else "not read"


def say(text: str) -> None:
    print(text, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=2_000_000, help="queries in the file")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--missing",
        type=float,
        default=0.0,
        help="share of names nobody registered, each unique (the HTTP benchmarks: 0.05)",
    )
    parser.add_argument(
        "--front",
        choices=("edge", "python"),
        default="edge",
        help="what answers UDP: the compiled edge (as idres serve does by default) or "
        "the workers themselves (--front python)",
    )
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    result = measure(
        scratch("idres-dns-"),
        keys=args.keys,
        samples=args.samples,
        seconds=args.seconds,
        rounds=args.rounds,
        missing=args.missing,
        front=args.front,
    )
    result["goals"] = goals(result)
    print(json.dumps(result, indent=2), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
