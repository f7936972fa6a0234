"""Run every fuzz target for N inputs under atheris and print what each found.

    python -m benchmarks.fuzz.run --runs 1000000 [--only chain,oplog] [--out DIR]

Each target runs in its own process (``python -m benchmarks.fuzz.<target>``). libFuzzer
stops at the first crash or hang (``-timeout=1``: an input over a second), so the
runner records it and starts the target again for the inputs still owed, its corpus
kept; ``crashes`` counts distinct failing inputs, kept under ``--out``. One line a
target: inputs executed, crashes, hangs, wall seconds.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.fuzz.targets import TARGETS

_DONE = re.compile(rb"^Done (\d+) in ", re.MULTILINE)
_FAILED = re.compile(rb"Uncaught Python exception|ALARM: working on the last Unit|out-of-memory")


@dataclass(slots=True, kw_only=True)
class Outcome:
    target: str
    inputs: int = 0
    crashes: list[Path] = field(default_factory=list)
    hangs: list[Path] = field(default_factory=list)
    known: int = 0  # inputs that hit a crash named by --known
    seconds: float = 0.0


def fuzz(
    name: str, runs: int, out: Path, *, known: tuple[str, ...] = (), max_restarts: int = 20
) -> Outcome:
    """Run ``name`` for ``runs`` inputs in total, restarting after each failure."""
    outcome = Outcome(target=name)
    corpus = out / "corpus" / name
    artifacts = out / "artifacts" / name
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    for old in artifacts.iterdir():  # this run's findings only
        old.unlink()
    from benchmarks.fuzz.harness import seed_corpus

    for seed in seed_corpus(name).iterdir():
        (corpus / seed.name).write_bytes(seed.read_bytes())
    started = time.monotonic()
    for _ in range(max_restarts + 1):
        owed = runs - outcome.inputs
        if owed <= 0:
            break
        count = out / f"{name}.count"
        count.write_text("0")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                f"benchmarks.fuzz.{name}",
                f"-atheris_runs={owed}",
                "-timeout=1",
                "-rss_limit_mb=2048",
                f"-artifact_prefix={artifacts}/",
                str(corpus),
            ],
            capture_output=True,
            check=False,
            env={
                **os.environ,
                "IDRES_FUZZ_COUNT": str(count),
                "IDRES_FUZZ_ARTIFACTS": str(artifacts),
                "IDRES_FUZZ_KNOWN": "\n".join(known),
            },
        )
        log = done.stdout + done.stderr
        with (out / f"{name}.log").open("ab") as f:
            f.write(log)
        finished = _DONE.findall(log)
        executed, hit = (int(n) for n in [*count.read_text().split(), "0", "0"][:2])
        outcome.inputs += int(finished[-1]) if finished else executed
        outcome.known += hit
        if finished:
            continue  # (libFuzzer's alarm may end the process after "Done", in shutdown)
        if _FAILED.search(log) is None:  # failed outside any input (an import error)
            print(f"{name}: exit {done.returncode}", log[-3000:].decode(errors="replace"))
            break
    outcome.crashes = sorted(p for p in artifacts.glob("crash-*") if p.suffix != ".txt")
    outcome.hangs = sorted(artifacts.glob("timeout-*"))
    outcome.seconds = time.monotonic() - started
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000, help="inputs per target")
    parser.add_argument("--only", default="", help="comma-separated targets (default: all)")
    parser.add_argument(
        "--known",
        action="append",
        default=[],
        help="a crash already reported ('Type: message' substring): counted, not stopped at",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "idres-fuzz",
        help="where corpora, logs and failing inputs go",
    )
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(TARGETS)
    print(f"atheris/libFuzzer, {args.runs} inputs per target, -timeout=1 s, -max_len=4096")
    for k in args.known:
        print(f"known crash, counted apart: {k!r}")
    print(
        f"{'target':<12} {'inputs':>10} {'crashes':>8} {'hangs':>6} {'known':>6} {'wall s':>7}"
        "  entry points"
    )
    failed = False
    for name in names:
        o = fuzz(name, args.runs, args.out, known=tuple(args.known))
        failed |= bool(o.crashes or o.hangs) or o.inputs < args.runs
        print(
            f"{name:<12} {o.inputs:>10} {len(o.crashes):>8} {len(o.hangs):>6} {o.known:>6} "
            f"{o.seconds:>7.0f}  {TARGETS[name].what}",
            flush=True,
        )
        for path in (*o.crashes, *o.hangs):
            print(f"    {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
