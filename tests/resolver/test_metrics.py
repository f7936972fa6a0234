"""The node's metrics: garbage-collector pauses timed by generation."""

from __future__ import annotations

import gc
import re

import pytest

from resolver.metrics import GcPauses, Metrics


class Clock:
    def __init__(self, *times: float) -> None:
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0)


@pytest.mark.parametrize(
    ("generation", "seconds", "bucket"),
    [(0, 0.00005, "0.0001"), (1, 0.003, "0.005"), (2, 0.251, "0.5"), (2, 3.0, "+Inf")],
)
def test_a_collection_lands_in_its_generation_and_bucket(
    generation: int, seconds: float, bucket: str
) -> None:
    pauses = GcPauses(clock=Clock(0.0, seconds))
    pauses("start", {"generation": generation})
    pauses("stop", {"generation": generation, "collected": 0, "uncollectable": 0})
    text = "\n".join(pauses.lines("n"))
    labels = f'node="n",generation="{generation}"'
    assert f'idres_gc_pause_seconds_bucket{{{labels},le="{bucket}"}} 1' in text
    assert f"idres_gc_collections_total{{{labels}}} 1" in text
    assert f"idres_gc_pause_max_seconds{{{labels}}} {seconds}" in text
    others = [g for g in range(3) if g != generation]
    for other in others:
        assert f'idres_gc_collections_total{{node="n",generation="{other}"}} 0' in text


def test_a_full_collection_in_the_process_shows_in_the_metrics() -> None:
    metrics = Metrics("n")

    def full_collections() -> int:
        text = metrics.render({})
        found = re.search(
            r'^idres_gc_collections_total\{node="n",generation="2"\} (\d+)$', text, re.M
        )
        assert found is not None
        return int(found.group(1))

    before = full_collections()
    gc.collect()
    assert full_collections() == before + 1
    assert gc.callbacks.count(metrics.gc) == 1  # installed once, however many Metrics
    Metrics("other")
    assert gc.callbacks.count(metrics.gc) == 1
