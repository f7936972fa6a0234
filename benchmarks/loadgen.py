"""Open-loop HTTP load through oha, each latency measured from the request's intended
send time, so a server that stalls cannot hide its queue behind a load generator that
waited for it (coordinated omission).

Parsing and the arithmetic (``parse_csv``, ``schedule``, ``summarise``, ``histogram``,
``percentile``) do no I/O; ``run`` drives oha processes and reads what they wrote.

What oha 1.16.0 measures (its src/client.rs, ``work_until_with_qps_latency_correction``,
and src/printer.rs, ``print_csv``): a ticker task sleeps until start + i / rate and
sends tick i, the ``Instant`` it woke, down an unbounded channel; each of the ``-c``
connection tasks takes the next tick, sends one request and waits for its answer.
With ``--latency-correction`` the CSV's ``request-duration`` runs from the tick, so
time queued for a busy connection counts; but a tick is when the ticker *woke*, and
tokio's timer rounds up to the millisecond and a busy core delays it further, so
``schedule`` recovers that lateness from the ticks' ranks and adds it: the latencies
here run from the intended time. The CSV lists only requests that got an HTTP answer
(any status), sorted by start; ``request-start`` is relative to oha's own start and
``Response-delay`` is start to first body byte, so a tick is start + first byte -
duration (an answer without a body has no first byte: its tick is taken as its start,
its lateness as 0).

oha's ceiling here (2 shared vCPUs, Firecracker VM), oha 1.16.0 with the flags of
``oha_args`` pinned to cpu 1, nginx (1 worker, a 60-byte file, keep-alive) pinned to
cpu 0, 64 connections, 10 s a step, two runs (2026-11-23; another user's load on the
machine now and then):

    .venv/bin/python -m benchmarks.loadgen --ceiling --rates 20000,30000,40000,50000,60000,80000

    offered  achieved  p50 ms    p99 ms        max ms  ticker late  errors     busy: oha  nginx
                                                         p99 ms
     20,000    20,000    1.25    2.31-2.33        13      1.9            0          30%  31-35%
     30,000    30,000    1.38    2.60-2.71        25      1.9            0          41%  42-48%
     40,000    40,000    1.55    3.25-3.60        25      2.0            0          55%  62-64%
     50,000    50,000    1.60    5.59-15.7        25      2.0            0          75%     77%
     60,000    60,000    1.69    25.9-32.6        47      2.0-3.0        0       82-87%     90%
     80,000   43-49 k  800-940  1,508-1,650    1,690      5        310-370 k        99%     99%

Why not vegeta (github.com/tsenart/vegeta v12.13.0, the first choice): measured the
same way with this module's earlier vegeta version (pinned to cpu 1, nginx on cpu 0,
10 s a step), its own tail set in early: p99 5.3 ms at 5,000 req/s, 7.7 ms at 10,000,
27 ms at 15,000, 349 ms at 20,000 (its core ~97% busy), and at 25,000 it collapsed
(3,028 answered per s). oha holds p99 to ~40,000 req/s on the same core.

So trust p99 to ~40,000 req/s; from 50,000 both cores are three quarters busy and the
tail is the pair's (read each run's nginx row as the floor of what can be measured);
80,000 collapses. p50 carries the ticker's half millisecond of rounding.

Long phases cost more: oha keeps every result in one in-memory queue until it exits,
and each time the queue doubles (2^16, 2^17, ... results) copying it stalls the whole
process: ~5, 13, 25, 47, 90 ms at 2^16 ... 2^20 (at 40,000 req/s: 1.6, 3.3, 6.6, 13 and
26 s in). That is the ~25 ms max above, and past ~500,000 requests a phase pays in
its tail: 40,000 req/s gave p99 10.8 ms over 15 s and 24-76 ms over 30 s, and 50,000
req/s for 15 s collapsed (18,000 never answered). Keep fast phases under ~400,000
requests (10 s at 40,000 req/s). oha's memory grows with it (~400 MB at 1.8 million).

Reading results back: oha prints its CSV as it exits (~2 us of its core a row: a
phase that ends while another runs takes a little from it); for 1.8 million rows
``parse_csv`` takes ~2.5 s and ``summarise`` ~3 s, ~460 MB at peak.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import errno
import math
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OHA_VERSION = "1.16.0"
CSV_HEADER = "request-start,DNS,DNS+dialup,Response-delay,request-duration,bytes,status"
# oha runs this much past each phase and the ticks due after the phase are dropped
# from the results: its ticker stops at the first tick that wakes past the deadline,
# so without a margin the last millisecond or so of every phase (the timer's
# rounding) would never be sent and would count as errors in every step.
MARGIN_S = 0.05
# Due times come out a little late (``schedule`` finds lateness from below, ~20 us
# short here), so an answer counts in the phase when it was due at most this much
# after the phase's last tick (or before the next tick, if that is later); any
# excess over the phase's count is dropped, latest first. So only where answers are
# missing, and only above 5,000 req/s, can an answer due after the end stand in for
# a missing one: at most rate x 0.2 ms of them (12 at 60,000 req/s).
LATE_DATING_S = 0.0002

# Latency histogram: 24 log-spaced buckets per decade (each 10^(1/24) = 1.10x wider
# than the last) from 0.01 ms to 60 s; a bucket is named by its upper bound and
# holds the values above the previous bound. Values past 60 s land in the last one.
HIST_MIN_MS = 0.01
HIST_MAX_MS = 60_000.0
BUCKETS_PER_DECADE = 24
_HIST_BUCKETS = math.ceil(math.log10(HIST_MAX_MS / HIST_MIN_MS) * BUCKETS_PER_DECADE) + 1
BOUNDS_MS: tuple[float, ...] = tuple(
    float(f"{HIST_MIN_MS * 10 ** (i / BUCKETS_PER_DECADE):.4g}") for i in range(_HIST_BUCKETS)
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Phase:
    """Constant-rate load from ``start`` seconds after the run's t0, for ``duration``."""

    rate: float  # requests per second
    duration: float  # seconds
    start: float = 0.0  # seconds after t0

    def planned(self) -> int:
        """Requests due: oha's tick i is due at i / rate, and those before the end count."""
        if self.rate <= 0 or self.duration <= 0:
            raise ValueError(f"a phase needs a positive rate and duration: {self}")
        return _due_before(self.rate, self.duration)

    def planned_in(self, began: float, second: int) -> int:
        """Requests due in second [second, second + 1) after t0 when the phase began at
        ``began`` s after t0."""
        n = self.planned()
        before_end = min(n, _due_before(self.rate, second + 1 - began))
        return before_end - min(n, _due_before(self.rate, second - began))


def _due_before(rate: float, seconds: float) -> int:
    """How many of the ticks 0, 1/rate, 2/rate, ... fall before ``seconds``."""
    return max(0, math.ceil(round(seconds * rate, 6)))


@dataclass(slots=True)
class Samples:
    """One oha process's answers, column by column (a million rows fit in ~20 MB)."""

    tick_s: array[float] = field(default_factory=lambda: array("d"))  # s after oha began
    took_s: array[float] = field(default_factory=lambda: array("d"))  # tick to answer
    code: array[int] = field(default_factory=lambda: array("H"))
    dated: bytearray = field(default_factory=bytearray)  # 1: the tick is exact

    def __len__(self) -> int:
        return len(self.code)


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """What one run measured; latencies in ms from each request's intended send time.

    Every request due in the phases is counted: one without an HTTP answer (oha's CSV
    leaves out timeouts, refused connections and requests still queued at the end
    alike) is an error and a timeout, and enters the percentiles at ``timeout``, a
    lower bound of its latency; one answered later than ``timeout`` after its intended
    time (oha times a request from when it leaves) is a timeout too.

    ``timeline`` has one entry per second since t0, each request in the second it was
    due: ``offered`` (requests due), ``ok``/``refused``/``errors`` (ok + refused +
    errors = offered, requests never answered included), and ``p50_ms``/``p99_ms``/
    ``max_ms``, so a stall shows where its victims arrived.
    """

    label: str
    offered_rate: float  # planned requests / duration, req/s
    duration: float  # s, from the first phase's start to the last phase's end
    phases: list[dict[str, float]]  # rate, duration, start, began (s after t0, measured)
    sent: int  # requests due, answered or not (oha does not count those it started)
    completed: int  # HTTP answers of any status
    achieved_rate: float  # answers with an expected status in time / duration, req/s
    status: dict[str, int]  # "0" counts requests that got no HTTP answer
    errors: int  # status not expected, no answer, or an answer after the timeout
    timeouts: int  # no answer, or an answer after the timeout (a subset of errors)
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    lateness_p99_ms: float  # how late oha's ticker woke, a lower bound (see schedule)
    lateness_max_ms: float
    histogram: list[list[float]]  # [upper bound ms, count] for every bucket of BOUNDS_MS
    timeline: list[dict[str, float]]
    # 503s answered in time: the server refused at once (shed), neither an answer nor
    # an error; and the p99 of the requests it took (answered with an expected status)
    refused: int = 0
    accepted_p99_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        return cls(**data)


def ensure_oha() -> Path:
    """An oha binary: $IDRES_OHA, else oha on PATH, else one built in the cache."""
    if configured := os.environ.get("IDRES_OHA"):
        if not os.access(configured, os.X_OK):
            raise SystemExit(f"IDRES_OHA={configured} is not an executable file")
        return Path(configured)
    if on_path := shutil.which("oha"):
        return Path(on_path)
    root = Path.home() / ".cache" / "idres" / "oha"
    cached = root / "bin" / "oha"
    if os.access(cached, os.X_OK):
        return cached
    rustup_cargo = Path.home() / ".cargo" / "bin" / "cargo"
    cargo = shutil.which("cargo") or (str(rustup_cargo) if rustup_cargo.exists() else None)
    if cargo is None:
        raise SystemExit(
            "the load generator oha is missing and cargo is not installed to build it: "
            f"install Rust (https://rustup.rs) or set IDRES_OHA to an oha {OHA_VERSION} binary"
        )
    subprocess.run(
        [cargo, "install", "oha", "--version", OHA_VERSION, "--locked", "--root", str(root)],
        check=True,
    )
    return cached


def write_targets(path: Path, requests: Iterable[tuple[str, str]]) -> None:
    """oha's ``--urls-from-file``: one URL a line, each request a GET."""
    with path.open("w") as f:
        for method, url in requests:
            if method != "GET" or not url or any(c.isspace() for c in url):
                raise ValueError(f"oha sends one GET per URL line, not {method} {url!r}")
            f.write(f"{url}\n")


def parse_csv(lines: Iterable[str]) -> Samples:
    """oha's ``--output-format csv``: its header, then one row per HTTP answer."""
    samples = Samples()
    tick, took, code, dated = samples.tick_s, samples.took_s, samples.code, samples.dated
    rows = iter(lines)
    header = next(rows, "").strip()
    if header != CSV_HEADER:
        raise ValueError(f"not oha {OHA_VERSION}'s CSV: the header is {header!r}")
    for line in rows:
        start, _, _, first_byte, duration, _, status = line.split(",")
        d = float(duration)
        if first_byte == "0":  # no body, no first byte: the tick is at most the start
            tick.append(float(start))
            dated.append(0)
        else:
            tick.append(float(start) + float(first_byte) - d)
            dated.append(1)
        took.append(d)
        code.append(int(status))
    return samples


def schedule(samples: Samples, rate: float) -> tuple[array[float], array[float]]:
    """Per answer, when it was due (s after oha began) and how late the ticker woke.

    Ticks wake in order, never early: tick i wakes at w_i >= i / rate. Sorted by tick,
    the k-th answer is tick i = k + h, h the unanswered ticks before it, so
    e_k = w - k / rate = lateness + h / rate. h never decreases, so e_k minus the
    least e_j from k on is at most the lateness, and falls short of it only by the
    lateness of the most punctual later tick (tens of microseconds while oha keeps
    up) plus 1/rate per answer missing in between: a lower bound, near the truth
    whenever the ticker catches up. Answers without a tick count as on time.
    """
    n = len(samples)
    tick = samples.tick_s
    lateness = array("d", bytes(8 * n))
    order = sorted((i for i in range(n) if samples.dated[i]), key=tick.__getitem__)
    interval = 1.0 / rate  # as oha computes it
    excess = [tick[i] - k * interval for k, i in enumerate(order)]
    least = math.inf
    for k in range(len(order) - 1, -1, -1):
        if excess[k] < least:
            least = excess[k]
        lateness[order[k]] = excess[k] - least
    due = array("d", (t - late for t, late in zip(tick, lateness, strict=True)))
    return due, lateness


def bucket_index(ms: float) -> int:
    """The first bucket whose (rounded, as written) upper bound holds ``ms``."""
    return min(bisect.bisect_left(BOUNDS_MS, ms), _HIST_BUCKETS - 1)


def histogram(values_ms: Iterable[float]) -> list[list[float]]:
    ordered = sorted(values_ms)
    counts: list[int] = []
    below = 0
    for bound in BOUNDS_MS[:-1]:  # a bucket holds (previous bound, bound]
        upto = bisect.bisect_right(ordered, bound)
        counts.append(upto - below)
        below = upto
    counts.append(len(ordered) - below)
    return [[bound, count] for bound, count in zip(BOUNDS_MS, counts, strict=True)]


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q% of the values at or below it."""
    if not ordered:
        return 0.0
    rank = math.ceil(round(q / 100 * len(ordered), 9))  # 99.9% of 1000 is 999, not 999.0...1
    return ordered[min(max(rank, 1), len(ordered)) - 1]


REFUSED = 503  # shed by the server, with Retry-After (resolver/front.py)


def summarise(
    samples: Sequence[Samples],
    phases: Sequence[Phase],
    *,
    began_s: Sequence[float],
    timeout: float = 1.0,
    expected: frozenset[int] = frozenset({200, 404}),
    label: str = "",
) -> Result:
    """One Result from each phase's samples (``samples[i]`` came from ``phases[i]``,
    which began ``began_s[i]`` s after t0)."""
    if not len(samples) == len(phases) == len(began_s):
        raise ValueError(f"{len(samples)} sample sets, {len(began_s)} starts, {len(phases)} phases")
    latencies: array[float] = array("d")  # s from intended send to answer
    lateness: array[float] = array("d")
    by_second: dict[int, list[float]] = {}
    ok_per_s: Counter[int] = Counter()
    errors_per_s: Counter[int] = Counter()
    offered_per_s: Counter[int] = Counter()
    status: Counter[int] = Counter()
    refused_per_s: Counter[int] = Counter()
    accepted: array[float] = array("d")
    errors = timeouts = 0
    for phase, got, began in zip(phases, samples, began_s, strict=True):
        due, late = schedule(got, phase.rate)
        end = phase.duration + max(0.0, LATE_DATING_S - 1 / phase.rate)
        kept = [i for i in range(len(got)) if due[i] < end]  # not the margin
        planned = phase.planned()
        if len(kept) > planned:
            kept = sorted(kept, key=due.__getitem__)[:planned]
        seconds = range(math.floor(began), math.ceil(began + phase.duration))
        last = seconds[-1]
        answered: dict[int, list[float]] = {}
        failed: Counter[int] = Counter()
        refused_at: Counter[int] = Counter()
        took_s, code = got.took_s, got.code
        for i in kept:
            took = took_s[i] + late[i]
            second = int(began + due[i] + 1e-9)  # due >= 0; 1e-9: float noise at 1.0
            if second > last:  # due a hair after the end
                second = last
            bucket = answered.get(second)
            if bucket is None:
                bucket = answered[second] = []
            bucket.append(took)
            if took > timeout or code[i] not in expected:
                if code[i] == REFUSED and took <= timeout:
                    refused_at[second] += 1
                else:
                    failed[second] += 1
                    timeouts += took > timeout
            else:
                accepted.append(took)
        for second, took_there in answered.items():
            latencies.extend(took_there)
            by_second.setdefault(second, []).extend(took_there)
            ok_per_s[second] += len(took_there) - failed[second] - refused_at[second]
        errors_per_s.update(failed)
        refused_per_s.update(refused_at)
        errors += failed.total()
        lateness.extend(late[i] for i in kept if got.dated[i])
        status.update(code[i] for i in kept)
        unanswered = planned - len(kept)
        status[0] += unanswered
        errors += unanswered
        timeouts += unanswered
        latencies.extend([timeout] * unanswered)
        # Each unanswered request goes to the second it was due: the running deficit
        # of answers against requests due, never undone by an answer dated a hair
        # into the next second.
        deficit = attributed = 0
        for second in seconds:
            due_now = phase.planned_in(began, second)
            if due_now:
                offered_per_s[second] += due_now
            deficit += due_now - len(answered.get(second, ()))
            missing = min(unanswered, max(attributed, deficit)) - attributed
            if missing:
                attributed += missing
                by_second.setdefault(second, []).extend([timeout] * missing)
                errors_per_s[second] += missing

    first = min(p.start for p in phases)
    duration = max(p.start + p.duration for p in phases) - first
    sent = sum(p.planned() for p in phases)
    ordered = sorted(latencies)
    late_ordered = sorted(lateness)
    timeline: list[dict[str, float]] = []
    for t in range(0, max(offered_per_s) + 1):
        intended = sorted(by_second.get(t, ()))
        timeline.append(
            {
                "t": t,
                "offered": offered_per_s.get(t, 0),
                "ok": ok_per_s.get(t, 0),
                "errors": errors_per_s.get(t, 0),
                "refused": refused_per_s.get(t, 0),
                "p50_ms": _ms(percentile(intended, 50)),
                "p99_ms": _ms(percentile(intended, 99)),
                "max_ms": _ms(intended[-1] if intended else 0),
            }
        )
    return Result(
        label=label,
        offered_rate=round(sum(p.rate * p.duration for p in phases) / duration, 1),
        duration=duration,
        phases=[
            {"rate": p.rate, "duration": p.duration, "start": p.start, "began": round(b, 4)}
            for p, b in zip(phases, began_s, strict=True)
        ],
        sent=sent,
        completed=status.total() - status[0],
        achieved_rate=round(sum(ok_per_s.values()) / duration, 1),
        status={str(code): n for code, n in sorted(status.items()) if n},
        errors=errors,
        timeouts=timeouts,
        p50_ms=_ms(percentile(ordered, 50)),
        p90_ms=_ms(percentile(ordered, 90)),
        p99_ms=_ms(percentile(ordered, 99)),
        p999_ms=_ms(percentile(ordered, 99.9)),
        max_ms=_ms(ordered[-1] if ordered else 0),
        lateness_p99_ms=_ms(percentile(late_ordered, 99)),
        lateness_max_ms=_ms(late_ordered[-1] if late_ordered else 0),
        histogram=histogram(s * 1000 for s in ordered),
        timeline=timeline,
        refused=refused_per_s.total(),
        accepted_p99_ms=_ms(percentile(sorted(accepted), 99)),
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def oha_args(
    oha: Path, phase: Phase, urls: Path, *, timeout: float, connections: int, threads: int | None
) -> list[str]:
    # -w: at the deadline oha's connection tasks finish the request they are on
    # (bounded by -t) and report it, instead of aborting it unreported; ticks still
    # queued for a connection are dropped unreported either way, and count as
    # unanswered. Without -w every step would lose the requests in flight at its end.
    # -t runs from when a request leaves, not from its tick, hence the check in
    # summarise. --disable-compression: no Accept-Encoding, the body as served.
    args = [
        str(oha),
        "--no-tui",
        "-q",
        repr(float(phase.rate)),
        "--latency-correction",
        "-c",
        str(connections),
        "-z",
        f"{round((phase.duration + MARGIN_S) * 1000)}ms",
        "-t",
        f"{max(1, round(timeout * 1000))}ms",
        "-w",
        "--disable-compression",
        "--urls-from-file",
        str(urls),
        "--output-format",
        "csv",
    ]
    if threads is not None:
        args += ["--worker-threads", str(threads)]
    return args


def run(
    targets: Path,
    phases: list[Phase],
    *,
    timeout: float = 1.0,
    cpus: str | None = None,
    expected: frozenset[int] = frozenset({200, 404}),
    label: str = "",
    connections: int = 64,
) -> Result:
    """Each phase is one oha process started ``phase.start`` s after t0; concurrent
    phases add up. Blocks until every phase has finished and its answers are in. Each
    request goes to a URL of ``targets`` drawn at random (oha's way). ``connections``
    caps each phase's keep-alive connections; ``cpus`` pins oha (taskset) and sets
    its tokio worker threads to the number of cpus."""
    if not phases:
        raise ValueError("run needs at least one phase")
    for phase in phases:
        phase.planned()  # a phase without rate or duration fails here, not in oha
    oha = ensure_oha()
    data = targets.read_bytes()
    if not data.strip():
        raise ValueError(f"no targets in {targets}")
    # oha reads its URLs (half a second for 500,000) before its clock starts, and it
    # reads them from a FIFO: all but the last line ahead of t0, the last line when
    # the phase is to start, so it starts on time and parses while nothing runs. Its
    # clock starts ~10 ms after that release (it builds its client); ``began`` is the
    # release.
    held = data.rstrip(b"\n").rfind(b"\n") + 1
    threads = None if cpus is None else _count_cpus(cpus)
    order = sorted(range(len(phases)), key=lambda i: phases[i].start)
    with tempfile.TemporaryDirectory(prefix="idres-loadgen-") as tmp:
        work = Path(tmp)
        procs: dict[int, subprocess.Popen[bytes]] = {}
        fifos: dict[int, int] = {}
        began: dict[int, float] = {}
        try:
            for i in order:
                urls = work / f"urls{i}"
                os.mkfifo(urls)
                args = oha_args(
                    oha,
                    phases[i],
                    urls,
                    timeout=timeout,
                    connections=connections,
                    threads=threads,
                )
                if cpus is not None:
                    args = ["taskset", "-c", cpus, *args]
                with (
                    (work / f"phase{i}.csv").open("wb") as out,
                    (work / f"phase{i}.log").open("wb") as log,
                ):
                    procs[i] = subprocess.Popen(args, stdout=out, stderr=log)
                fifos[i] = _open_fifo(urls, procs[i], work, i)
                _write(fifos[i], data[:held], procs[i], work, i)
            t0 = time.monotonic()
            for i in order:
                delay = t0 + phases[i].start - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                _write(fifos.pop(i), data[held:], procs[i], work, i, close=True)
                began[i] = time.monotonic() - t0
            for i, proc in procs.items():
                if proc.wait() != 0:
                    raise SystemExit(f"oha failed ({proc.returncode}): {_said(work, i)}")
        finally:
            for fd in fifos.values():
                os.close(fd)
            for proc in procs.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        samples = []
        for i in range(len(phases)):
            with (work / f"phase{i}.csv").open() as f:
                samples.append(parse_csv(f))
    return summarise(
        samples,
        phases,
        began_s=[began[i] for i in range(len(phases))],
        timeout=timeout,
        expected=expected,
        label=label,
    )


def _count_cpus(cpus: str) -> int:
    """Cpus in a taskset list such as "1", "0,2" or "2-3"."""
    count = 0
    for part in cpus.split(","):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


def _said(work: Path, i: int) -> str:
    return (work / f"phase{i}.log").read_text(errors="replace")[-2000:].strip()


def _open_fifo(path: Path, proc: subprocess.Popen[bytes], work: Path, i: int) -> int:
    """The FIFO's write end, once oha has opened it to read (or a clear stop if oha
    died before it did, rather than a wait for ever)."""
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
        else:
            os.set_blocking(fd, True)
            return fd
        if proc.poll() is not None:
            raise SystemExit(f"oha failed ({proc.returncode}): {_said(work, i)}")
        time.sleep(0.002)


def _write(
    fd: int, data: bytes, proc: subprocess.Popen[bytes], work: Path, i: int, *, close: bool = False
) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except BrokenPipeError:
        proc.wait()
        raise SystemExit(f"oha failed ({proc.returncode}): {_said(work, i)}") from None
    finally:
        if close:
            os.close(fd)


def _steps(values: str) -> Iterator[float]:
    return (float(v) for v in values.split(","))


def ceiling(
    rates: Iterable[float], seconds: float, loadgen_cpu: int, server_cpu: int, connections: int
) -> None:
    """oha against nginx serving one small file, one step per rate, with how busy each
    of the two cpus was in the middle of the step (all processes on it, shared)."""
    if seconds <= 2:
        raise SystemExit("a step of the ceiling needs more than 2 s")
    with tempfile.TemporaryDirectory(prefix="idres-ceiling-") as tmp:
        work = Path(tmp)
        (work / "www").mkdir()
        (work / "www" / "x").write_bytes(b'{"responseCode":1,"values":[]}' + b" " * 30)
        port = free_port()
        conf = work / "nginx.conf"
        conf.write_text(
            f"worker_processes 1; pid {work}/nginx.pid; error_log {work}/error.log;\n"
            "worker_rlimit_nofile 65536; events { worker_connections 30000; }\n"
            "http { access_log off; keepalive_requests 10000000; default_type application/json;"
            f" client_body_temp_path {work}; proxy_temp_path {work};"
            f" fastcgi_temp_path {work}; uwsgi_temp_path {work}; scgi_temp_path {work};"
            f" server {{ listen 127.0.0.1:{port}; root {work}/www; }} }}\n"
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        server = subprocess.Popen(
            ["taskset", "-c", str(server_cpu), nginx, "-c", str(conf), "-g", "daemon off;"]
        )
        try:
            time.sleep(0.5)
            targets = work / "targets.txt"
            write_targets(targets, [("GET", f"http://127.0.0.1:{port}/x")])
            print(
                f"oha {OHA_VERSION} on cpu {loadgen_cpu}, nginx on cpu {server_cpu},"
                f" {connections} connections, {seconds:g} s a step"
            )
            for rate in rates:
                busy: list[float] = []
                watch = threading.Thread(
                    target=_watch, args=((loadgen_cpu, server_cpu), seconds - 2, busy)
                )
                watch.start()
                r = run(
                    targets,
                    [Phase(rate=rate, duration=seconds)],
                    cpus=str(loadgen_cpu),
                    connections=connections,
                )
                watch.join()
                print(
                    f"offered {rate:7,.0f}  achieved {r.achieved_rate:7,.0f}  "
                    f"p50 {r.p50_ms:7.2f}  p99 {r.p99_ms:8.2f}  max {r.max_ms:7.1f} ms  "
                    f"ticker late p99 {r.lateness_p99_ms:5.2f} ms  errors {r.errors:7,}  "
                    f"cpu busy: oha {busy[0]:3.0f}%  nginx {busy[1]:3.0f}%",
                    flush=True,
                )
        finally:
            server.terminate()
            server.wait()


def _watch(cpus: Sequence[int], seconds: float, busy: list[float]) -> None:
    """How busy each cpu was, in percent, from 1 s after now for ``seconds``."""
    time.sleep(1)
    before = [_cpu_jiffies(cpu) for cpu in cpus]
    time.sleep(seconds)
    for (busy0, total0), (busy1, total1) in zip(before, map(_cpu_jiffies, cpus), strict=True):
        busy.append(100 * (busy1 - busy0) / max(1, total1 - total0))


def _cpu_jiffies(cpu: int) -> tuple[int, int]:
    """(busy, total) time of one cpu since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name == f"cpu{cpu}":
                ticks = [int(t) for t in fields]
                return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # less idle, iowait
    raise SystemExit(f"no cpu {cpu} in /proc/stat")


_ISSUED: set[int] = set()  # ports this process has handed out


def free_port() -> int:
    """A loopback port free now, below the ephemeral range: a port the kernel hands
    out (bind to 0) can be taken by any outgoing connection before the server that
    was told it binds it (a directory names each node's port before it starts).
    Never the same port twice in one process: six ports picked for one network are
    all free when picked, and none is bound until its node starts."""
    ranges = Path("/proc/sys/net/ipv4/ip_local_port_range")
    low = int(ranges.read_text().split()[0]) if ranges.exists() else 32768
    while True:
        port = random.randrange(10_000, max(10_001, low))
        if port in _ISSUED:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ISSUED.add(port)
        return port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ceiling", action="store_true", help="measure oha against nginx")
    ap.add_argument("--rates", default="20000,40000,60000,80000")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--loadgen-cpu", type=int, default=1)
    ap.add_argument("--server-cpu", type=int, default=0)
    args = ap.parse_args()
    if args.ceiling:
        ceiling(
            _steps(args.rates), args.seconds, args.loadgen_cpu, args.server_cpu, args.connections
        )


if __name__ == "__main__":
    main()
