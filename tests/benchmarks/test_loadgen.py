"""The open-loop load generator: its arithmetic on made-up oha results, then oha against
a small aiohttp server that answers 200, 404, 500, late, or stalls the whole loop."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from benchmarks.loadgen import (
    BOUNDS_MS,
    CSV_HEADER,
    Phase,
    Result,
    Samples,
    bucket_index,
    ensure_oha,
    free_port,
    histogram,
    parse_csv,
    percentile,
    run,
    schedule,
    summarise,
    write_targets,
)

# -- pure arithmetic -------------------------------------------------------------------


def test_buckets_span_ten_microseconds_to_a_minute_in_ten_percent_steps() -> None:
    assert BOUNDS_MS[0] == 0.01
    assert BOUNDS_MS[-1] >= 60_000
    ratios = [b / a for a, b in itertools.pairwise(BOUNDS_MS)]
    assert all(1.09 < r < 1.11 for r in ratios)
    assert [bucket_index(b) for b in BOUNDS_MS] == list(range(len(BOUNDS_MS)))


@pytest.mark.parametrize(
    ("ms", "bound"),
    [
        (0.0, 0.01),
        (0.01, 0.01),
        (0.0101, BOUNDS_MS[1]),
        (1.0, 1.0),  # a value on a bound belongs to that bound's bucket
        (1.0001, BOUNDS_MS[BOUNDS_MS.index(1.0) + 1]),
        (10.0, 10.0),
        (9.99, 10.0),
        (1_000_000.0, BOUNDS_MS[-1]),  # past a minute: the last bucket
    ],
)
def test_a_value_lands_in_the_first_bucket_whose_bound_holds_it(ms: float, bound: float) -> None:
    i = bucket_index(ms)
    assert BOUNDS_MS[i] == bound
    assert ms <= BOUNDS_MS[i] or i == len(BOUNDS_MS) - 1
    assert i == 0 or ms > BOUNDS_MS[i - 1]
    counts = [count for _, count in histogram([ms])]
    assert counts.index(1) == i  # the histogram puts it in the same bucket


def test_a_histogram_counts_every_value_once() -> None:
    values = [0.05, 0.05, 0.2, 3.0, 3.0, 3.0, 250.0, 90_000.0]
    hist = histogram(values)
    assert [b for b, _ in hist] == list(BOUNDS_MS)
    assert sum(c for _, c in hist) == len(values)
    assert hist[bucket_index(3.0)][1] == 3
    assert hist[-1][1] == 1


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        (list(range(1, 101)), 50, 50),
        (list(range(1, 101)), 99, 99),
        (list(range(1, 101)), 99.9, 100),
        (list(range(1, 101)), 100, 100),
        (list(range(1, 1001)), 99.9, 999),
        ([7], 99, 7),
        ([], 99, 0),
    ],
)
def test_percentiles_are_nearest_rank(values: list[int], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


def test_oha_csv_rows_give_each_answers_tick() -> None:
    rows = [
        CSV_HEADER,
        "0.001958292,0.000016521,0.000819526,0.002151684,0.002190156,60,200",
        "0.0021,0.0000022,0,0.0005,0.0012,14,404",  # queued 0.7 ms, then 0.5 ms
        "0.003,0,0,0,0.0004,0,500",  # no body: no first byte, the tick is its start
    ]
    got = parse_csv(line + "\n" for line in rows)
    assert list(got.code) == [200, 404, 500]
    assert list(got.took_s) == [0.002190156, 0.0012, 0.0004]
    assert got.tick_s[0] == pytest.approx(0.001958292 + 0.002151684 - 0.002190156)
    assert got.tick_s[1] == pytest.approx(0.0014)
    assert got.tick_s[2] == 0.003
    assert list(got.dated) == [1, 1, 0]


def test_a_csv_that_is_not_ohas_is_refused() -> None:
    with pytest.raises(ValueError, match="header"):
        parse_csv(["timestamp,code,latency\n", "1,200,3\n"])


def samples_of(rows: Sequence[tuple[float, float, int]], *, dated: bool = True) -> Samples:
    """(tick s, tick to answer s, status) rows."""
    s = Samples()
    for tick, took, code in rows:
        s.tick_s.append(tick)
        s.took_s.append(took)
        s.code.append(code)
        s.dated.append(dated)
    return s


def stalled_ticker(rate: float, n: int, stall: tuple[int, int]) -> list[float]:
    """When oha's ticker woke for ticks 0..n-1: on time, except that it slept through
    ticks stall[0]..stall[1]-1 and woke for them all at once when the last was due."""
    first, end = stall
    return [(end - 1) / rate if first <= i < end else i / rate for i in range(n)]


def test_the_tickers_lateness_is_recovered_from_the_ranks() -> None:
    rate = 1000.0
    woke = stalled_ticker(rate, 100, (40, 60))
    due, late = schedule(samples_of([(w, 0.001, 200) for w in woke]), rate)
    assert list(late) == pytest.approx([w - i / rate for i, w in enumerate(woke)], abs=1e-12)
    assert list(due) == pytest.approx([i / rate for i in range(100)], abs=1e-12)
    assert max(late) == pytest.approx(0.019)


def test_unanswered_ticks_never_make_the_ticker_look_later() -> None:
    # With answers missing the ranks run behind the ticks, but the estimate stays a
    # lower bound, and is exact again once the ticker is back on time after them.
    rate = 1000.0
    woke = stalled_ticker(rate, 100, (40, 60))
    missing = {10, 45, 70, 71}
    rows = [(w, 0.001, 200) for i, w in enumerate(woke) if i not in missing]
    true = [w - i / rate for i, w in enumerate(woke) if i not in missing]
    _, late = schedule(samples_of(rows), rate)
    assert all(est <= real + 1e-12 for est, real in zip(late, true, strict=True))
    assert all(est >= real - 2 / rate for est, real in zip(late, true, strict=True))
    stalled = [est for (w, _, _), est in zip(rows, late, strict=True) if w == woke[45]]
    assert max(stalled) >= 0.018
    assert list(late)[-20:] == pytest.approx(true[-20:], abs=1e-12)


def test_latency_counts_from_when_the_request_was_due() -> None:
    # 100 req/s for 1 s from 0.5 s after t0. oha's ticker sleeps through ticks 20-49
    # (0.2 s to 0.49 s of its clock) and sends them at once when tick 49 is due;
    # every answer takes 1 ms from its tick. oha alone would say 1 ms for all.
    woke = stalled_ticker(100, 100, (20, 50))
    got = samples_of([(w, 0.001, 200) for w in woke])
    result = summarise([got], [Phase(rate=100, duration=1, start=0.5)], began_s=[0.5])
    assert result.phases[0]["began"] == 0.5
    assert result.sent == result.completed == 100
    assert result.errors == result.timeouts == 0
    assert result.p50_ms == 1.0  # 71 answers on time: 1 ms
    assert result.p90_ms == 191.0  # then 11, 21, ... 291 ms
    assert result.p99_ms == 281.0
    assert result.max_ms == 291.0
    assert result.lateness_max_ms == 290.0
    # the timeline places latency by due time: ticks 20-49 were due in second 0
    by_t = {row["t"]: row for row in result.timeline}
    assert by_t[0]["max_ms"] == 291.0
    assert by_t[1]["max_ms"] == 1.0
    assert by_t[0]["offered"] == by_t[1]["offered"] == by_t[1]["ok"] == 50


def test_errors_and_timeouts_follow_the_expected_statuses() -> None:
    # 1000 req/s for 6 ms: six requests due, four answered.
    rows = [
        (0.000, 0.001, 200),
        (0.001, 0.001, 404),  # an answer: not an error
        (0.002, 0.001, 500),
        (0.003, 1.2, 200),  # answered, but 1.2 s after it was due
    ]
    phase = Phase(rate=1000, duration=0.006)
    lenient = summarise([samples_of(rows)], [phase], began_s=[0.0], timeout=1.0)
    assert lenient.status == {"0": 2, "200": 2, "404": 1, "500": 1}
    assert (lenient.sent, lenient.completed) == (6, 4)
    assert (lenient.errors, lenient.timeouts) == (4, 3)
    assert lenient.max_ms == 1200.0
    assert sorted(lenient.histogram, key=lambda b: -b[1])[0][1] == 3  # 1 ms x 3
    assert lenient.histogram[bucket_index(1000.0)][1] == 2  # unanswered: at the timeout
    assert lenient.achieved_rate == round(2 / 0.006, 1)
    strict = summarise(
        [samples_of(rows)], [phase], began_s=[0.0], timeout=1.0, expected=frozenset({200})
    )
    assert (strict.errors, strict.timeouts) == (5, 3)


def test_a_503_in_time_is_a_refusal_not_an_error_and_stays_out_of_the_accepted_p99() -> None:
    # 100 req/s for 1 s: 60 answered in 2 ms, 30 shed at once, 5 shed too late, 5 lost
    rows = [(i / 100, 0.002, 200) for i in range(60)]
    rows += [(i / 100, 0.0005, 503) for i in range(60, 90)]
    rows += [(i / 100, 1.5, 503) for i in range(90, 95)]
    result = summarise([samples_of(rows)], [Phase(rate=100, duration=1)], began_s=[0.0])
    assert (result.refused, result.errors, result.timeouts) == (30, 10, 10)
    assert result.accepted_p99_ms == 2.0
    assert result.achieved_rate == 60.0
    assert result.timeline[0]["refused"] == 30
    assert result.timeline[0]["ok"] + 30 + result.timeline[0]["errors"] == 100


def test_answers_due_after_the_phase_are_left_out() -> None:
    # oha runs past the phase; those answers neither count nor hide missing ones.
    phase = Phase(rate=100, duration=1)
    rows = [(i / 100, 0.002, 200) for i in range(105)]
    whole = summarise([samples_of(rows)], [phase], began_s=[0.0])
    assert (whole.sent, whole.completed, whole.errors) == (100, 100, 0)
    holed = summarise([samples_of(rows[:50] + rows[52:])], [phase], began_s=[0.0])
    assert (holed.completed, holed.errors, holed.timeouts) == (98, 2, 2)


def test_a_ticker_always_a_little_late_loses_no_request_at_the_end() -> None:
    # Every tick 20 us late, as tokio's timer is at best: nothing to measure the
    # lateness against, so every due time comes out 20 us late, more than the
    # 16.7 us between ticks at 60,000 req/s; the last tick still counts.
    phase = Phase(rate=60_000, duration=0.1)
    rows = [(i / 60_000 + 20e-6, 0.001, 200) for i in range(6_000 + 300)]
    result = summarise([samples_of(rows)], [phase], began_s=[0.0])
    assert (result.sent, result.completed, result.errors) == (6_000, 6_000, 0)


def test_unanswered_requests_count_in_the_second_they_were_due() -> None:
    rows = [(i / 100, 0.002, 200) for i in range(300) if not 100 <= i < 150]
    result = summarise([samples_of(rows)], [Phase(rate=100, duration=3)], began_s=[0.0])
    assert [(r["ok"], r["errors"]) for r in result.timeline] == [(100, 0), (50, 50), (100, 0)]
    assert [r["p99_ms"] for r in result.timeline] == [2.0, 1000.0, 2.0]
    assert result.status == {"0": 50, "200": 250}


def test_answers_without_a_body_count_their_time_from_the_tick() -> None:
    rows = [(i / 100, 0.004, 404) for i in range(100)]
    phase = Phase(rate=100, duration=1)
    result = summarise([samples_of(rows, dated=False)], [phase], began_s=[0.0])
    assert (result.completed, result.errors, result.p99_ms) == (100, 0, 4.0)


@pytest.mark.parametrize(
    ("phase", "began", "second", "due"),
    [
        (Phase(rate=100, duration=10), 0.0, 3, 100),
        (Phase(rate=900, duration=2, start=4), 4.0, 4, 900),
        (Phase(rate=900, duration=2, start=4), 4.5, 4, 450),
        (Phase(rate=900, duration=2, start=4), 4.5, 5, 900),
        (Phase(rate=900, duration=2, start=4), 4.5, 6, 450),
        (Phase(rate=900, duration=2, start=4), 4.5, 7, 0),
        (Phase(rate=33.5, duration=1), 0.0, 0, 34),  # ticks 0..33: 33 / 33.5 s < 1 s
    ],
)
def test_requests_due_each_second(phase: Phase, began: float, second: int, due: int) -> None:
    assert phase.planned_in(began, second) == due
    total = sum(phase.planned_in(began, s) for s in range(int(began) - 1, int(began) + 12))
    assert total == phase.planned()


def test_targets_are_ohas_url_list(tmp_path: Path) -> None:
    path = tmp_path / "targets"
    write_targets(path, [("GET", "http://127.0.0.1:9/a"), ("GET", "http://127.0.0.1:9/b")])
    assert path.read_text() == "http://127.0.0.1:9/a\nhttp://127.0.0.1:9/b\n"
    with pytest.raises(ValueError, match="GET"):
        write_targets(path, [("HEAD", "http://127.0.0.1:9/a")])


def test_a_configured_oha_that_is_not_there_stops_the_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IDRES_OHA", str(tmp_path / "nope"))
    with pytest.raises(SystemExit, match="IDRES_OHA"):
        ensure_oha()


def test_without_oha_or_cargo_the_run_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("IDRES_OHA", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(SystemExit, match="cargo"):
        ensure_oha()


# -- oha against a real server ---------------------------------------------------------

# Responses are chosen by the order requests arrive in (oha draws URLs at random):
# /mix/TOKEN answers the n-th request by n % 20, /stall/TOKEN/N blocks the server's
# loop for 0.5 s on its N-th request.
SERVER = r"""
import asyncio, collections, sys, time
from aiohttp import web

arrived = collections.Counter()

def nth(request):
    key = request.match_info["token"]
    arrived[key] += 1
    return arrived[key] - 1

async def ok(request): return web.Response(text="ok")
async def mix(request):
    n = nth(request) % 20
    if n in (8, 18): return web.Response(status=404, text="missing")
    if n == 9: return web.Response(status=500, text="failed")
    if n == 19: await asyncio.sleep(1.5)
    return web.Response(text="ok")
async def slow(request):
    if nth(request) % 10 == 9: await asyncio.sleep(1.5)
    return web.Response(text="ok")
async def stall(request):
    if nth(request) == int(request.match_info["n"]):
        time.sleep(0.5)  # blocks the loop: every request waits, as in a GC pause
    return web.Response(text="ok")

app = web.Application()
app.router.add_get("/ok", ok)
app.router.add_get("/mix/{token}", mix)
app.router.add_get("/slow/{token}", slow)
app.router.add_get("/stall/{token}/{n}", stall)

async def main():
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    ensure_oha()  # builds it with cargo if it is missing
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def targets(tmp_path: Path, *urls: str) -> Path:
    path = tmp_path / "targets"
    write_targets(path, [("GET", url) for url in urls])
    return path


def token() -> str:
    return uuid.uuid4().hex


def test_statuses_errors_and_timeouts_are_counted(tmp_path: Path, server: str) -> None:
    # Of every 20 requests, 16 ok, 2 missing (404, expected), 1 fails (500), 1
    # answers after 1.5 s, past the 1 s timeout.
    result = run(
        targets(tmp_path, f"{server}/mix/{token()}"), [Phase(rate=200, duration=2)], label="mix"
    )
    assert result.label == "mix"
    assert result.sent == 400
    assert result.status == {"0": 20, "200": 320, "404": 40, "500": 20}
    assert result.timeouts == 20
    assert result.errors == 40  # the 500s and the timeouts; a 404 is an answer
    assert result.completed == 380
    assert result.achieved_rate == 180
    assert result.offered_rate == 200
    assert result.p99_ms == 1000.0  # 5% never answered: counted at the timeout
    assert result.p50_ms < 100
    assert sum(c for _, c in result.histogram) == 400
    assert sum(row["offered"] for row in result.timeline) == 400
    assert sum(row["ok"] + row["errors"] for row in result.timeline) == 400
    assert all(row["errors"] >= 15 for row in result.timeline[:2])
    again = Result.from_json(json.loads(json.dumps(result.to_json())))
    assert again == result


def test_a_slow_answer_counts_its_whole_wait(tmp_path: Path, server: str) -> None:
    result = run(
        targets(tmp_path, f"{server}/slow/{token()}"), [Phase(rate=50, duration=1)], timeout=3.0
    )
    assert result.errors == 0
    assert result.status == {"200": 50}
    assert result.max_ms >= 1500
    assert result.p90_ms < 100  # 1 in 10 answers after 1.5 s
    assert result.p99_ms >= 1500


def test_a_stalled_server_shows_in_the_tail(tmp_path: Path, server: str) -> None:
    # The 200th request blocks the server's loop for 0.5 s, about 1 s in. At
    # 200 req/s, ~100 requests are due during the stall; each waits for its end, so
    # the slowest 1% waited nearly the whole 0.5 s. A closed-loop generator would
    # have stopped sending and reported one slow request.
    result = run(targets(tmp_path, f"{server}/stall/{token()}/200"), [Phase(rate=200, duration=2)])
    assert result.errors == 0
    assert result.completed == 400  # the load kept coming during the stall
    assert result.p99_ms >= 400
    assert result.p90_ms >= 200
    assert result.p50_ms < 100
    slowest = max(result.timeline, key=lambda row: row["p99_ms"])
    assert slowest["t"] == 1
    assert slowest["max_ms"] >= 450


def test_a_spike_phase_adds_to_the_base_load(tmp_path: Path, server: str) -> None:
    # 100,000 URLs: oha reads them before the run, so the spike still starts on time.
    path = tmp_path / "targets"
    write_targets(path, (("GET", f"{server}/ok?{i}") for i in range(100_000)))
    base = Phase(rate=100, duration=3)
    spike = Phase(rate=300, duration=1, start=1)
    result = run(path, [base, spike])
    assert result.sent == result.completed == 600
    assert result.errors == 0
    assert result.duration == 3
    assert result.offered_rate == 200
    assert 1.0 <= result.phases[1]["began"] < 1.05
    offered = [row["offered"] for row in result.timeline]
    assert offered[0] == 100
    assert offered[1] >= 390  # 100 + 300, less what the release's delay put in second 2
    assert sum(offered) == 600
    assert result.p99_ms < 100


def test_a_server_that_is_not_there_is_all_timeouts(tmp_path: Path) -> None:
    result = run(
        targets(tmp_path, f"http://127.0.0.1:{free_port()}/x"), [Phase(rate=100, duration=0.5)]
    )
    assert result.status == {"0": 50}
    assert result.errors == result.timeouts == result.sent == 50
    assert result.p50_ms == 1000.0


def test_oha_failing_stops_the_run_with_its_message(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="oha failed"):
        run(targets(tmp_path, "not-a-url"), [Phase(rate=10, duration=0.5)])
