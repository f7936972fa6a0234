"""Counters and latency histograms, exposed in the Prometheus text format (0.0.4).

Plain integers bumped on the hot path; formatting happens only when scraped. The
garbage collector's pauses are timed process-wide, from ``gc.callbacks``: a full
collection stops the serving loop for as long as it walks every tracked object.
"""

from __future__ import annotations

import bisect
import gc
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
GC_PAUSE_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class GcPauses:
    """How long each collection took, by generation (0, 1, 2): a ``gc.callbacks``
    callable. Nothing here allocates on the callback's path but a float."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._started = 0.0
        self.buckets = [[0] * (len(GC_PAUSE_BUCKETS) + 1) for _ in range(3)]
        self.sums = [0.0, 0.0, 0.0]
        self.counts = [0, 0, 0]
        self.longest = [0.0, 0.0, 0.0]

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self._clock()
            return
        self.observe(info["generation"], self._clock() - self._started)

    def observe(self, generation: int, seconds: float) -> None:
        self.buckets[generation][bisect.bisect_left(GC_PAUSE_BUCKETS, seconds)] += 1
        self.sums[generation] += seconds
        self.counts[generation] += 1
        self.longest[generation] = max(self.longest[generation], seconds)

    def lines(self, node: str) -> list[str]:
        name = "idres_gc_pause_seconds"
        lines = [
            f"# HELP {name} Time the garbage collector stopped the process, by generation.",
            f"# TYPE {name} histogram",
        ]
        for gen in range(3):
            labels = f'node="{node}",generation="{gen}"'
            lines += _histogram(name, labels, GC_PAUSE_BUCKETS, self.buckets[gen])
            lines.append(f"{name}_sum{{{labels}}} {self.sums[gen]}")
            lines.append(f"{name}_count{{{labels}}} {self.counts[gen]}")
        name = "idres_gc_collections_total"
        lines += [f"# HELP {name} Collections by generation.", f"# TYPE {name} counter"]
        lines += [
            f'{name}{{node="{node}",generation="{gen}"}} {self.counts[gen]}' for gen in range(3)
        ]
        name = "idres_gc_pause_max_seconds"
        lines += [f"# HELP {name} The longest collection so far.", f"# TYPE {name} gauge"]
        lines += [
            f'{name}{{node="{node}",generation="{gen}"}} {self.longest[gen]}' for gen in range(3)
        ]
        return lines


GC_PAUSES = GcPauses()  # the collector is one per process, and so is its timing


def time_gc() -> GcPauses:
    """Time every collection of this process from now on (once, however often called)."""
    if GC_PAUSES not in gc.callbacks:
        gc.callbacks.append(GC_PAUSES)
    return GC_PAUSES


def _histogram(name: str, labels: str, bounds: tuple[float, ...], counts: list[int]) -> list[str]:
    lines = []
    cumulative = 0
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        cumulative += count
        le = "+Inf" if bound == float("inf") else repr(bound)
        lines.append(f'{name}_bucket{{{labels},le="{le}"}} {cumulative}')
    return lines


class Metrics:
    def __init__(self, node: str) -> None:
        self.node = node
        self.counters: Counter[tuple[str, str]] = Counter()
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.extra: list[Callable[[], list[str]]] = []  # more series, e.g. sync's
        self.gc = time_gc()

    def inc(self, name: str, label: str = "") -> None:
        self.counters[(name, label)] += 1

    def observe_upstream(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.latency_count += 1

    def render(self, gauges: dict[str, float]) -> str:
        lines: list[str] = []
        helps = {
            "idres_requests_total": "Resolution requests by interface.",
            "idres_cache_hits_total": "Answers served from the cache.",
            "idres_cache_misses_total": "Lookups the cache could not answer.",
            "idres_upstream_requests_total": "Requests to the next node, by result.",
            "idres_stale_answers_total": "Cached answers served past their TTL.",
            "idres_replica_answers_total": "Answers from this node's copy of a chain below.",
        }
        for name, text in helps.items():
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} counter")
            series = [(label, n) for (metric, label), n in self.counters.items() if metric == name]
            if not series:
                lines.append(f'{name}{{node="{self.node}"}} 0')
            for label, n in sorted(series):
                extra = f",{label}" if label else ""
                lines.append(f'{name}{{node="{self.node}"{extra}}} {n}')
        name = "idres_upstream_latency_seconds"
        lines.append(f"# HELP {name} Time to an answer from the next node.")
        lines.append(f"# TYPE {name} histogram")
        lines += _histogram(name, f'node="{self.node}"', LATENCY_BUCKETS, self.buckets)
        lines.append(f'{name}_sum{{node="{self.node}"}} {self.latency_sum}')
        lines.append(f'{name}_count{{node="{self.node}"}} {self.latency_count}')
        for gauge, value in sorted(gauges.items()):
            lines.append(f"# TYPE {gauge} gauge")
            lines.append(f'{gauge}{{node="{self.node}"}} {value}')
        lines += self.gc.lines(self.node)
        for source in self.extra:
            lines += source()
        return "\n".join(lines) + "\n"
