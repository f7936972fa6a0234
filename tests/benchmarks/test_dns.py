"""The DNS benchmark's judgement of its own figures (benchmarks/dns.py)."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.dns import goals


def results(idres: float, knot: float, answered: float, p99: float | None) -> dict[str, Any]:
    held_at = int(0.8 * knot)
    latency = {"latency_ms": {99: p99}} if p99 is not None else {}
    return {
        "qps": {"idres": idres, "knot": knot},
        "ratio": round(idres / knot, 3),
        "held_at": held_at,
        "held": {"idres": {"qps": answered, **latency}, "knot": {"qps": held_at, **latency}},
    }


@pytest.mark.parametrize(
    ("idres", "answered", "p99", "met"),
    [
        (130_000, 119_000, 2.0, [True, True]),
        (110_000, 119_000, 2.0, [False, True]),  # 0.73x
        (130_000, 100_000, 2.0, [True, False]),  # could not hold 80% of Knot's rate
        (130_000, 119_000, 7.5, [True, False]),  # held it, p99 over 5 ms
        (130_000, 119_000, None, [True, False]),  # no latencies read: not met
    ],
)
def test_both_goals_are_judged_from_the_figures(
    idres: float, answered: float, p99: float | None, met: list[bool]
) -> None:
    judged = goals(results(idres, 150_000, answered, p99))
    assert [g["met"] for g in judged] == met
