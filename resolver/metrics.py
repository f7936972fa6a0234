"""Counters and a latency histogram, exposed in the Prometheus text format (0.0.4).

Plain integers bumped on the hot path; formatting happens only when scraped.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self, node: str) -> None:
        self.node = node
        self.counters: Counter[tuple[str, str]] = Counter()
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.extra: list[Callable[[], list[str]]] = []  # more series, e.g. sync's

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
        cumulative = 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self.buckets, strict=True):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f'{name}_bucket{{node="{self.node}",le="{le}"}} {cumulative}')
        lines.append(f'{name}_sum{{node="{self.node}"}} {self.latency_sum}')
        lines.append(f'{name}_count{{node="{self.node}"}} {self.latency_count}')
        for gauge, value in sorted(gauges.items()):
            lines.append(f"# TYPE {gauge} gauge")
            lines.append(f'{gauge}{{node="{self.node}"}} {value}')
        for source in self.extra:
            lines += source()
        return "\n".join(lines) + "\n"
