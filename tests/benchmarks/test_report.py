"""The report folder from made-up results: which step counts as sustained, what the
summary says, and that every chart and histogram file is written and non-trivial."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from benchmarks.loadgen import Result, histogram
from benchmarks.report import max_rate_under_bound, recovery, shortfall, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def step(
    rate: float,
    p99: float,
    *,
    errors: int = 0,
    timeouts: int = 0,
    achieved: float | None = None,
    seconds: int = 10,
) -> Result:
    """A step of ``seconds`` at ``rate`` whose latencies are spread below ``p99``."""
    rng = random.Random(rate)
    sent = int(rate * seconds)
    latencies = [rng.uniform(p99 / 10, p99) for _ in range(min(sent, 2000))]
    return Result(
        label=f"step {rate}",
        offered_rate=rate,
        duration=seconds,
        phases=[{"rate": rate, "duration": seconds, "start": 0.0, "began": 0.01}],
        sent=sent,
        completed=sent - timeouts,
        achieved_rate=rate if achieved is None else achieved,
        status={"0": timeouts, "200": sent - errors, "500": errors - timeouts},
        errors=errors,
        timeouts=timeouts,
        p50_ms=p99 / 2,
        p90_ms=p99 * 0.9,
        p99_ms=p99,
        p999_ms=p99 * 1.5,
        max_ms=p99 * 3,
        lateness_p99_ms=0.4,
        lateness_max_ms=1.2,
        histogram=histogram(latencies),
        timeline=[
            {
                "t": t,
                "offered": rate,
                "ok": rate,
                "errors": 0,
                "p50": p99 / 2,
                "p99": p99,
                "max": p99 * 3,
            }
            for t in range(seconds)
        ],
    )


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param([step(1000, 1), step(2000, 3), step(4000, 9.9)], 4000, id="all-within"),
        pytest.param([step(1000, 1), step(2000, 3), step(4000, 25)], 2000, id="p99-over"),
        pytest.param([step(4000, 25), step(1000, 1), step(2000, 3)], 2000, id="unsorted"),
        pytest.param(
            [step(1000, 1), step(2000, 30), step(4000, 5)], 1000, id="lucky-step-above-a-failure"
        ),
        pytest.param([step(1000, 1), step(2000, 2, errors=10)], 2000, id="errors-0.05%-tolerated"),
        pytest.param([step(1000, 1), step(2000, 2, errors=40)], 1000, id="errors-0.2%-not"),
        pytest.param(
            [step(1000, 1), step(2000, 2, errors=30, timeouts=30)], 1000, id="timeouts-are-errors"
        ),
        pytest.param([step(1000, 1), step(2000, 2, achieved=1800)], 1000, id="achieved-90%"),
        pytest.param([step(1000, 1), step(2000, 2, achieved=1950)], 2000, id="achieved-97.5%"),
        pytest.param([step(1000, 11)], None, id="lowest-over"),
        pytest.param([], None, id="no-steps"),
    ],
)
def test_the_highest_rate_sustained_is_the_top_of_the_unbroken_run(
    steps: list[Result], expected: float | None
) -> None:
    assert max_rate_under_bound(steps, 10.0) == expected
    assert max_rate_under_bound([s.to_json() for s in steps], 10.0) == expected


def test_a_step_says_why_it_is_over_the_bound() -> None:
    assert shortfall(step(1000, 5), 10.0) == ""
    why = shortfall(step(2000, 12.5, errors=100, achieved=1000), 10.0)
    assert why == "p99 12.5 ms > 10 ms; errors 0.5%; achieved 50% of offered"


def spike_result() -> dict[str, Any]:
    # base 1,000 req/s for 30 s; +9,000 req/s from 10 s to 15 s; p99 over the bound
    # from 10 s until 17 s, i.e. 2 s after the spike ended
    timeline = []
    for t in range(30):
        spiking = 10 <= t < 15
        slow = 10 <= t < 17
        timeline.append(
            {
                "t": t,
                "offered": 10_000.0 if spiking else 1000.0,
                "ok": 6000 if spiking else 1000,
                "errors": 400 if spiking else 0,
                "p50_ms": 40.0 if slow else 0.8,
                "p99_ms": 900.0 if slow else 3.0,
                "max_ms": 1000.0 if slow else 6.0,
            }
        )
    result = step(1000, 900).to_json() | {
        "timeline": timeline,
        "phases": [
            {"rate": 1000, "duration": 30, "start": 0.0, "began": 0.01},
            {"rate": 9000, "duration": 5, "start": 10.0, "began": 10.0},
        ],
        "errors": 2000,
        "timeouts": 1500,
    }
    return {
        "base_rate": 1000.0,
        "spike_rate": 10_000.0,
        "spike_start": 10.0,
        "spike_seconds": 5.0,
        "result": result,
        "hung": 0,
    }


def test_recovery_counts_from_the_end_of_the_spike() -> None:
    spike = spike_result()
    assert recovery(spike, 10.0) == 2.0
    for row in spike["result"]["timeline"]:
        row["p99_ms"] = 3.0
    assert recovery(spike, 10.0) == 0.0
    spike["result"]["timeline"][-1]["p99_ms"] = 50.0  # still over at the end of the run
    assert recovery(spike, 10.0) is None


def results() -> dict[str, Any]:
    def kind(description: str, rates_p99: list[tuple[float, float]], rps: float) -> dict[str, Any]:
        return {
            "description": description,
            "closed_loop": {
                "rps": rps,
                "p50": 1.2,
                "p99": 8.5,
                "p999": 20.0,
                "max": 41.0,
                "errors": 0,
            },
            "steps": [step(rate, p99).to_json() for rate, p99 in rates_p99],
        }

    return {
        "profile": "quick",
        "started": "2026-11-11T00:00:00+00:00",
        "machine": {"cpu": "Test CPU", "cpus": 2, "python": "3.11.7", "platform": "Linux"},
        "cpu_placement": {"server": "0", "loadgen": "1"},
        "bound_ms": 10.0,
        "dataset": {
            "identifiers": 100_000,
            "by_scheme": {"handle": 60_000, "gs1": 40_000, "scale": "per 100,000"},
            "by_node": {"sub-a": 50_000, "sub-b": 50_000},
            "missing_share": 0.05,
            "zipf_s": 1.1,
        },
        "method": ["Open loop with vegeta, one process per phase.", "Steps of 10 s."],
        "kinds": {
            "nginx": kind("static files", [(2000, 0.5), (4000, 0.7), (8000, 1.1)], 30_000),
            "aiohttp_floor": kind("a dict", [(2000, 1.0), (4000, 2.5), (8000, 40.0)], 12_000),
            "idres_hot": kind("warm cache", [(2000, 2.0), (4000, 12.0), (8000, 300.0)], 6000),
        },
        "spike": spike_result(),
        "spikes": {"5": spike_result() | {"spike_rate": 5000.0}, "10": spike_result()},
        "replication": {
            "writes": 20_000,
            "write_rate": 2000.0,
            "lag_ms": {"p50": 45.0, "p99": 180.0, "max": 420.0},
            "errors": 0,
        },
        "goals": [
            {
                "goal": "hot p99 at 4,000 req/s",
                "target": "≤ 10 ms",
                "measured": "12 ms",
                "met": False,
            },
            {"goal": "no errors at base load", "target": "0", "measured": "0", "met": True},
            {"goal": "replication p99", "target": "≤ 1 s", "measured": "—", "met": None},
        ],
        "notes": ["made-up figures for a test"],
    }


def test_the_report_folder_holds_summary_histograms_and_charts(tmp_path: Path) -> None:
    summary = write_report(tmp_path / "report", results())
    out = tmp_path / "report"
    assert summary == out / "summary.md"
    for png in ("latency-vs-load.png", "spike.png", "spike-5.png", "histogram-idres_hot.png"):
        data = (out / png).read_bytes()
        assert data.startswith(PNG), png
        assert len(data) > 20_000, png  # axes, lines and labels, not an empty canvas
    for kind in ("nginx", "aiohttp_floor", "idres_hot"):
        for rate in (2000, 4000, 8000):
            raw = json.loads((out / "histograms" / f"{kind}-{rate}.json").read_text())
            assert raw["kind"] == kind
            assert sum(c for _, c in raw["histogram"]) == 2000
    spike = json.loads((out / "spike.json").read_text())
    assert spike["result"]["timeline"][12]["p99_ms"] == 900.0
    assert json.loads((out / "spike-5.json").read_text())["spike_rate"] == 5000.0
    assert not (out / "spike-10.json").exists()  # the same spike as the main one
    assert json.loads((out / "results.json").read_text())["profile"] == "quick"


def test_the_summary_has_every_table_and_the_goals(tmp_path: Path) -> None:
    text = write_report(tmp_path, results()).read_text()
    assert text.startswith("# idres benchmark: quick\n")
    assert "Test CPU (2 cores)" in text
    assert "- Open loop with vegeta, one process per phase.\n- Steps of 10 s.\n" in text
    assert "| loadgen | 1 |" in text
    assert "| gs1 | 40,000 |" in text
    assert "| scale | per 100,000 |" in text
    # a step within the bound, and one over it with the reason
    assert "| 2,000 | 2,000 | 1.00 | 2.00 | 3.00 | 6.00 | 0 | 0 | 0.400 | ✓ |" in text
    assert (
        "| 4,000 | 4,000 | 6.00 | 12.0 | 18.0 | 36.0 | 0 | 0 | 0.400 | ✗ p99 12.0 ms > 10" in text
    )
    assert "(histograms/idres_hot-4000.json)" in text
    assert text.count("Highest rate sustained with p99 ≤ 10 ms: **") == 3
    assert "Highest rate sustained with p99 ≤ 10 ms: **8,000 req/s**" in text
    assert "Highest rate sustained with p99 ≤ 10 ms: **4,000 req/s**" in text
    assert "Highest rate sustained with p99 ≤ 10 ms: **2,000 req/s**" in text
    # ratios of the sustained rates and of the closed-loop peaks to the references
    assert "| idres_hot | 2,000 | 0.25x | 0.50x |" in text
    assert "## Closed-loop peak throughput" in text
    assert "| idres_hot | 6,000 | 1.20 | 8.50 | 20.0 | 41.0 | 0 | 0.20x | 0.50x |" in text
    # the spike: its window, its recovery, its hung requests
    assert "## Spike: 1,000 to 10,000 req/s" in text
    assert "| spike | 10,000 req/s for 5 s from 10.0 s |" in text
    assert "## Spike: 1,000 to 5,000 req/s" in text
    assert "[spike-5.json](spike-5.json)" in text
    assert "| back within 10 ms p99 | 2 s after the spike |" in text
    assert "| worst per-second p99 during the spike | 900 ms |" in text
    assert "lag p50 45.0 ms, p99 180 ms, max 420 ms" in text
    assert "| hot p99 at 4,000 req/s | ≤ 10 ms | 12 ms | **no** |" in text
    assert "| no errors at base load | 0 | 0 | yes |" in text
    assert "| replication p99 | ≤ 1 s | — | not measured |" in text
    assert "![latency-vs-load](latency-vs-load.png)" in text
    assert "![spike](spike.png)" in text


def test_a_report_without_spike_replication_or_closed_loop(tmp_path: Path) -> None:
    bare = results() | {"spike": None, "spikes": {}, "replication": None, "goals": [], "notes": []}
    for kind in bare["kinds"].values():
        kind["closed_loop"] = None
    kinds = bare["kinds"]
    kinds["idres_hot"]["max_rate_under_bound"] = 3000.0  # given, not computed
    text = write_report(tmp_path, bare).read_text()
    assert not (tmp_path / "spike.png").exists()
    assert not (tmp_path / "spike.json").exists()
    assert "## Spike" not in text
    assert "## Closed-loop" not in text
    assert "## Goals" not in text
    assert "Highest rate sustained with p99 ≤ 10 ms: **3,000 req/s**" in text
