"""A compiled front's cache-hot path beside nginx, on one core each in turn (issue 12).

``python -m benchmarks.compiled_front.bench [--keys N] [--seconds S] [--rounds R]
[--server fasthttp|nethttp|both]``

The prototype in this folder (``main.go``, Go, one OS thread serving: GOMAXPROCS=1 on
CPU 0) loads N cached answers, the same bytes as ``benchmarks/front_door.py`` serves,
and forwards whatever it does not hold to a backend (the Python node; here nothing
listens there, since every request of the mix is a hit). nginx (one worker, CPU 0)
serves the same bytes as static files; wrk (CPU 1, closed loop, 64 connections) asks
each in alternating rounds for one Zipf(1.1) mix, as in ``benchmarks.front_door``.
The binary is built with ``go build`` into ~/.cache/idres/compiled-front, rebuilt when
a source here is newer.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import dataset
from benchmarks.front_door import _cpus, zipf_paths
from benchmarks.resolution import WRK_LUA, Proc, ensure_tools, wait_port, wrk
from benchmarks.testbed import LOADGEN_CPU, SERVER_CPU, nginx, pin, rss_mb

HERE = Path(__file__).resolve().parent
BINARY = Path.home() / ".cache" / "idres" / "compiled-front"


def build() -> Path:
    """``go build`` the front into ~/.cache/idres unless the binary there is newer."""
    sources = [HERE / n for n in ("main.go", "go.mod", "go.sum")]
    if BINARY.exists() and BINARY.stat().st_mtime >= max(s.stat().st_mtime for s in sources):
        return BINARY
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["go", "build", "-o", str(BINARY), "."], cwd=HERE, check=True)
    return BINARY


def front(answers: Path, port: int, kind: str, backend: str) -> Proc:
    args = [str(build()), "-listen", f"127.0.0.1:{port}", "-answers", str(answers)]
    args += ["-backend", backend, "-server", kind]
    if (cpu := pin(SERVER_CPU)) is not None:
        args = ["taskset", "-c", cpu, *args]
    proc = Proc(args, env={"GOMAXPROCS": "1"}, ready="ready:")
    wait_port(port)
    return proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--server", choices=("fasthttp", "nethttp", "both"), default="fasthttp")
    args = ap.parse_args()
    ensure_tools()
    build()
    work = Path(tempfile.mkdtemp(prefix="idres-compiled-front-"))
    work.chmod(0o755)  # nginx's worker runs as another user and reads the files here
    paths = work / "paths.txt"
    paths.write_text("\n".join(zipf_paths(args.keys, 200_000)) + "\n")
    lua = work / "wrk.lua"
    lua.write_text(WRK_LUA)
    answers = work / "answers.txt"
    with answers.open("wb") as f:
        f.writelines(dataset.dump_lines(args.keys))
    wrk_cpu = pin(LOADGEN_CPU)
    if wrk_cpu is not None:  # wrk on the other core from here on
        os.sched_setaffinity(0, {int(wrk_cpu)})
    kinds = ["fasthttp", "nethttp"] if args.server == "both" else [args.server]
    ports = {"nginx": 18490} | {f"go {k}": 18491 + i for i, k in enumerate(kinds)}
    started = time.monotonic()
    servers = {"nginx": nginx(work, args.keys, ports["nginx"])}
    for kind in kinds:  # the backend: a port nothing listens on (every request is a hit)
        servers[f"go {kind}"] = front(answers, ports[f"go {kind}"], kind, "http://127.0.0.1:18499")
    print(f"set up {args.keys:,} identifiers in {time.monotonic() - started:.0f} s", flush=True)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    rss: dict[str, float] = {}
    try:
        for port in ports.values():  # warm each: nginx's open-file cache, Go's pages
            wrk(f"http://127.0.0.1:{port}", paths, lua, 3)
        for _ in range(args.rounds):
            for name, port in ports.items():
                result = wrk(f"http://127.0.0.1:{port}", paths, lua, args.seconds)
                results[name].append(result)
                print(
                    f"{name:>11}: {result['rps']:>9,.0f}/s closed loop, p99 "
                    f"{result['p99'] / 1000:.2f} ms, errors {result['errors']}, "
                    f"non-2xx {result['non2xx']}",
                    flush=True,
                )
        rss = {n: rss_mb(p.p.pid) for n, p in servers.items() if n != "nginx"}
    finally:
        for proc in servers.values():
            proc.stop()
    best = {name: max(rs, key=lambda r: r["rps"]) for name, rs in results.items()}
    summary = {
        "keys": args.keys,
        "machine": f"{platform.processor() or platform.machine()}, {len(_cpus())} CPUs"
        f" ({_cpus()[0] if _cpus() else '?'})",
        "rps": {n: r["rps"] for n, r in best.items()},
        "p99_ms": {n: r["p99"] / 1000 for n, r in best.items()},
        "ratio_to_nginx": {
            n: r["rps"] / best["nginx"]["rps"] for n, r in best.items() if n != "nginx"
        },
        "paired_ratios": {  # each round against nginx's round just before it
            n: [round(r["rps"] / g["rps"], 3) for r, g in zip(rs, results["nginx"], strict=True)]
            for n, rs in results.items()
            if n != "nginx"
        },
        "front_rss_mb": rss,
        "python": sys.version.split()[0],
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
