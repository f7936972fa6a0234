"""The report folder of ``idres bench``: ``summary.md`` with every table and the goals,
raw latency histograms as JSON, and PNG charts drawn with matplotlib (no display).

``write_report(out, results)`` takes one dict, laid out as below; every latency is in
milliseconds, every rate in requests per second, every time in seconds. A step is a
``benchmarks.loadgen.Result.to_json()``.

    {
      "profile": "singles-day" | "quick",
      "started": "2026-11-11T00:00:00+00:00",          # ISO 8601
      "machine": {"cpu": str, "cpus": int, "python": str, "platform": str, ...},
      "cpu_placement": {"server": "0", "loadgen": "1", ...},   # role -> taskset list
      "bound_ms": 10.0,                                 # the p99 bound of the goals
      "dataset": {"identifiers": int, "by_scheme": {str: int}, "by_node": {str: int},
                  "missing_share": 0.05, "zipf_s": 1.1},
      "method": [str, ...],                             # one line each, in order
      "kinds": {                                        # "nginx" and "aiohttp_floor" are
        "nginx": {                                      # the references; others are idres
          "description": str,
          "closed_loop": {"rps": float, "p50": float, "p99": float, "p999": float,
                          "max": float, "errors": int, ...} | None,   # wrk, in ms
          "steps": [Result.to_json(), ...],             # ascending offered rate
          "max_rate_under_bound": float | None,         # optional: computed if absent
        },
        "aiohttp_floor": {...}, "idres_hot": {...}, "idres_cold": {...},
      },
      "spike": {"base_rate": float, "spike_rate": float,   # spike_rate: the total offered
                "spike_start": float, "spike_seconds": float,   # during the spike
                "result": Result.to_json(), "hung": int} | None,
      "spikes": {name: spike, ...},                     # optional: more spikes, same layout
      "replication": {"writes": int, "write_rate": float,
                      "lag_ms": {"p50": float, "p99": float, "max": float},
                      "errors": int} | None,
      "goals": [{"goal": str, "target": str, "measured": str, "met": bool | None}],
      "notes": [str, ...],
    }

A step is *within the bound* when its p99 (from intended send time) is at most
``bound_ms``, at most 0.1% of its requests are errors (timeouts included: one stray
reset in a million requests should not sink a step, one in a hundred must), and it
achieved at least 95% of its offered rate. The highest rate sustained is the highest
step of the unbroken run of steps within the bound from the lowest one up: a lucky
step above a failed one does not count.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from benchmarks.loadgen import Result

REFERENCES = {"nginx": "ceiling", "aiohttp_floor": "framework floor"}
MAX_ERROR_SHARE = 0.001
MIN_ACHIEVED_SHARE = 0.95
PERCENTILES = (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9"))


def _json(step: Result | Mapping[str, Any]) -> Mapping[str, Any]:
    return step.to_json() if isinstance(step, Result) else step


def shortfall(step: Result | Mapping[str, Any], bound_ms: float) -> str:
    """Why a step is not within the bound ("" when it is)."""
    s = _json(step)
    why = []
    if s["p99_ms"] > bound_ms:
        why.append(f"p99 {fmt_ms(s['p99_ms'])} ms > {bound_ms:g} ms")
    if s["sent"] and s["errors"] / s["sent"] > MAX_ERROR_SHARE:
        why.append(f"errors {100 * s['errors'] / s['sent']:.2g}%")
    if s["achieved_rate"] < MIN_ACHIEVED_SHARE * s["offered_rate"]:
        why.append(f"achieved {100 * s['achieved_rate'] / s['offered_rate']:.0f}% of offered")
    return "; ".join(why)


def max_rate_under_bound(
    steps: Sequence[Result | Mapping[str, Any]], bound_ms: float
) -> float | None:
    """The highest offered rate of the unbroken run of steps within the bound, from
    the lowest step up; None when even the lowest step is not."""
    best = None
    for step in sorted((_json(s) for s in steps), key=lambda s: s["offered_rate"]):
        if shortfall(step, bound_ms):
            break
        best = float(step["offered_rate"])
    return best


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "—"
    if ms < 1:
        return f"{ms:.3f}"
    if ms < 10:
        return f"{ms:.2f}"
    if ms < 100:
        return f"{ms:.1f}"
    return f"{ms:,.0f}"


def fmt_rate(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:,.0f}"


def fmt_ratio(num: float | None, den: float | None) -> str:
    return "—" if not num or not den else f"{num / den:.2f}x"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def histogram_name(kind: str, step: Mapping[str, Any]) -> str:
    return f"{kind}-{round(step['offered_rate'])}.json"


def sustained(kind: Mapping[str, Any], bound_ms: float) -> float | None:
    if "max_rate_under_bound" in kind:
        rate: float | None = kind["max_rate_under_bound"]
        return rate
    return max_rate_under_bound(kind["steps"], bound_ms)


# -- summary.md ------------------------------------------------------------------------


def summary(results: Mapping[str, Any], charts: Sequence[str]) -> str:
    bound = float(results["bound_ms"])
    kinds: Mapping[str, Mapping[str, Any]] = results["kinds"]
    machine = results.get("machine", {})
    lines = [
        f"# idres benchmark: {results['profile']}",
        "",
        f"Started {results['started']} on {machine.get('cpu', 'an unknown CPU')}"
        f" ({machine.get('cpus', '?')} cores), Python {machine.get('python', '?')},"
        f" {machine.get('platform', '?')}.",
        "",
        "## Method",
        "",
        *(f"- {line}" for line in results["method"]),
        "",
        "## CPU placement",
        "",
        *table(["role", "cpus"], [[r, str(c)] for r, c in results["cpu_placement"].items()]),
        "",
    ]
    lines += dataset_section(results.get("dataset"))
    lines += [f"## Open loop, step by step (p99 bound {bound:g} ms)", ""]
    lines += [
        "Latencies are measured from each request's intended send time. A step is within",
        "the bound when p99 ≤ the bound, errors ≤ 0.1% and at least 95% of the offered",
        "rate was achieved; ✗ marks the steps that are not, with the reason.",
        "",
    ]
    for name, kind in kinds.items():
        lines += kind_section(name, kind, bound)
    lines += ratios_section(kinds, bound)
    lines += closed_loop_section(kinds)
    for stem, spike in spikes(results).items():
        lines += spike_section(stem, spike, bound)
    lines += replication_section(results.get("replication"))
    lines += goals_section(results.get("goals", []))
    if results.get("notes"):
        lines += ["## Notes", "", *(f"- {n}" for n in results["notes"]), ""]
    lines += ["## Charts", ""]
    lines += [f"![{Path(c).stem}]({c})" for c in charts]
    return "\n".join(lines) + "\n"


def dataset_section(dataset: Mapping[str, Any] | None) -> list[str]:
    if not dataset:
        return []
    lines = [
        "## Dataset",
        "",
        f"{dataset['identifiers']:,} identifiers; {100 * dataset['missing_share']:.0f}% of"
        f" the requests ask for one that does not exist (404, expected); keys drawn"
        f" Zipf(s = {dataset['zipf_s']}).",
        "",
    ]
    for title, key in (("scheme", "by_scheme"), ("node", "by_node")):
        if dataset.get(key):
            rows = [
                [k, f"{v:,}" if isinstance(v, int) else str(v)] for k, v in dataset[key].items()
            ]
            lines += table([title, "identifiers"], rows)
            lines.append("")
    return lines


def kind_section(name: str, kind: Mapping[str, Any], bound: float) -> list[str]:
    rows = []
    for step in kind["steps"]:
        why = shortfall(step, bound)
        rows.append(
            [
                fmt_rate(step["offered_rate"]),
                fmt_rate(step["achieved_rate"]),
                fmt_ms(step["p50_ms"]),
                fmt_ms(step["p99_ms"]),
                fmt_ms(step["p999_ms"]),
                fmt_ms(step["max_ms"]),
                f"{step['errors']:,}",
                f"{step['timeouts']:,}",
                fmt_ms(step["lateness_p99_ms"]),
                f"✗ {why}" if why else "✓",
                f"[json](histograms/{histogram_name(name, step)})",
            ]
        )
    best = sustained(kind, bound)
    return [
        f"### {name}",
        "",
        kind.get("description", ""),
        "",
        *table(
            [
                "offered req/s",
                "achieved req/s",
                "p50 ms",
                "p99 ms",
                "p99.9 ms",
                "max ms",
                "errors",
                "timeouts",
                "generator late p99 ms",
                "within bound",
                "histogram",
            ],
            rows,
        ),
        "",
        f"Highest rate sustained with p99 ≤ {bound:g} ms: **"
        + (f"{fmt_rate(best)} req/s" if best is not None else "none of the steps")
        + "**.",
        "",
    ]


def ratios_section(kinds: Mapping[str, Mapping[str, Any]], bound: float) -> list[str]:
    refs = {r: sustained(kinds[r], bound) for r in REFERENCES if r in kinds}
    rows = []
    for name, kind in kinds.items():
        best = sustained(kind, bound)
        rows.append(
            [
                name + (f" ({REFERENCES[name]})" if name in REFERENCES else ""),
                fmt_rate(best),
                *(fmt_ratio(best, refs.get(r)) for r in REFERENCES),
            ]
        )
    return [
        f"## Highest rate sustained with p99 ≤ {bound:g} ms, against the references",
        "",
        *table(["kind", "req/s", "vs nginx (ceiling)", "vs aiohttp floor"], rows),
        "",
    ]


def closed_loop_section(kinds: Mapping[str, Mapping[str, Any]]) -> list[str]:
    measured = {n: k["closed_loop"] for n, k in kinds.items() if k.get("closed_loop")}
    if not measured:
        return []
    refs = {r: measured[r]["rps"] for r in REFERENCES if r in measured}
    rows = [
        [
            name,
            fmt_rate(c["rps"]),
            fmt_ms(c["p50"]),
            fmt_ms(c["p99"]),
            fmt_ms(c["p999"]),
            fmt_ms(c["max"]),
            f"{c['errors']:,}",
            *(fmt_ratio(c["rps"], refs.get(r)) for r in REFERENCES),
        ]
        for name, c in measured.items()
    ]
    return [
        "## Closed-loop peak throughput",
        "",
        "Closed loop: each connection waits for its answer before sending again, so these",
        "latencies hide queueing; the throughput is the peak, not a rate kept within a bound.",
        "",
        *table(
            [
                "kind",
                "req/s",
                "p50 ms",
                "p99 ms",
                "p99.9 ms",
                "max ms",
                "errors",
                "vs nginx",
                "vs aiohttp floor",
            ],
            rows,
        ),
        "",
    ]


def spike_phases(spike: Mapping[str, Any]) -> tuple[float, float]:
    """The spike's window (s after t0) as it happened: from the second phase's start."""
    start = float(spike["spike_start"])
    phases = spike["result"].get("phases", [])
    if len(phases) > 1:
        start = float(phases[1].get("began", start))
    return start, start + float(spike["spike_seconds"])


def recovery(spike: Mapping[str, Any], bound: float) -> float | None:
    """Seconds from the spike's end until the per-second p99 is within the bound again
    (and stays there); None when it never is."""
    start, end = spike_phases(spike)
    timeline = spike["result"]["timeline"]
    over = [row["t"] for row in timeline if row["t"] + 1 > start and row["p99_ms"] > bound]
    if not over:
        return 0.0
    if over[-1] >= timeline[-1]["t"]:
        return None
    return max(0.0, float(over[-1]) + 1 - end)


def window(timeline: Sequence[Mapping[str, Any]], start: float, end: float) -> dict[str, float]:
    rows = [r for r in timeline if start <= r["t"] and r["t"] + 1 <= end + 1e-9]
    return {
        "p99_ms": max((r["p99_ms"] for r in rows), default=0.0),
        "errors": sum(r["errors"] for r in rows),
        "ok": sum(r["ok"] for r in rows),
    }


def spikes(results: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """File stem -> spike: "spike" for ``results["spike"]``, "spike-NAME" for each other
    entry of an optional ``results["spikes"]`` (name -> spike, same layout)."""
    main = results.get("spike")
    found: dict[str, Mapping[str, Any]] = {"spike": main} if main else {}
    for name, spike in (results.get("spikes") or {}).items():
        if spike and spike != main:
            found[f"spike-{name}"] = spike
    return found


def spike_section(stem: str, spike: Mapping[str, Any], bound: float) -> list[str]:
    r = spike["result"]
    start, end = spike_phases(spike)
    during = window(r["timeline"], start, end)
    before = window(r["timeline"], 0, start)
    back = recovery(spike, bound)
    rows = [
        ["base rate", f"{fmt_rate(spike['base_rate'])} req/s"],
        [
            "spike",
            f"{fmt_rate(spike['spike_rate'])} req/s for {spike['spike_seconds']:g} s"
            f" from {start:.1f} s",
        ],
        ["sent / answered", f"{r['sent']:,} / {r['completed']:,}"],
        ["errors (timeouts)", f"{r['errors']:,} ({r['timeouts']:,})"],
        ["requests that never got an answer", f"{spike.get('hung', 0):,}"],
        [
            "p50 / p99 / p99.9 / max, whole run",
            " / ".join(fmt_ms(r[k]) for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms")) + " ms",
        ],
        ["worst per-second p99 before the spike", f"{fmt_ms(before['p99_ms'])} ms"],
        ["worst per-second p99 during the spike", f"{fmt_ms(during['p99_ms'])} ms"],
        ["errors during the spike", f"{during['errors']:,}"],
        [
            f"back within {bound:g} ms p99",
            "never, within the run" if back is None else f"{back:.0f} s after the spike",
        ],
        ["generator late, p99", f"{fmt_ms(r['lateness_p99_ms'])} ms"],
    ]
    return [
        f"## Spike: {fmt_rate(spike['base_rate'])} to {fmt_rate(spike['spike_rate'])} req/s",
        "",
        *table(["measure", "value"], rows),
        "",
        f"Timeline, latency and errors per second: [{stem}.json]({stem}.json), `{stem}.png`.",
        "",
    ]


def replication_section(replication: Mapping[str, Any] | None) -> list[str]:
    if not replication:
        return []
    lag = replication["lag_ms"]
    return [
        "## Replication lag",
        "",
        f"{replication['writes']:,} writes at {fmt_rate(replication['write_rate'])} per s;"
        f" lag p50 {fmt_ms(lag['p50'])} ms, p99 {fmt_ms(lag['p99'])} ms,"
        f" max {fmt_ms(lag['max'])} ms; {replication['errors']:,} errors"
        + (
            " (" + "; ".join(f"{n:,}: {why}" for why, n in kinds.items()) + ")."
            if (kinds := replication.get("error_kinds"))
            else "."
        ),
        "",
    ]


def goals_section(goals: Sequence[Mapping[str, Any]]) -> list[str]:
    if not goals:
        return []
    met = {True: "yes", False: "**no**", None: "not measured"}
    return [
        "## Goals",
        "",
        *table(
            ["goal", "target", "measured", "met"],
            [[g["goal"], g["target"], g["measured"], met[g["met"]]] for g in goals],
        ),
        "",
    ]


# -- charts ----------------------------------------------------------------------------


def latency_chart(path: Path, kinds: Mapping[str, Mapping[str, Any]], bound: float) -> None:
    fig = Figure(figsize=(15, 5), layout="constrained")
    axes = fig.subplots(1, len(PERCENTILES), sharey=True)
    for ax, (key, title) in zip(axes, PERCENTILES, strict=True):
        for name, kind in kinds.items():
            points = [
                (s["offered_rate"], s[key], bool(shortfall(s, bound)))
                for s in kind["steps"]
                if s[key] > 0
            ]
            if not points:
                continue
            (line,) = ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=name)
            failed = [p for p in points if p[2]]
            if failed:  # steps not within the bound (p99, errors or throughput)
                ax.plot(
                    [p[0] for p in failed],
                    [p[1] for p in failed],
                    "x",
                    color=line.get_color(),
                    markersize=11,
                    markeredgewidth=2,
                )
        ax.axhline(bound, color="crimson", linestyle="--", linewidth=1, label=f"bound {bound:g} ms")
        ax.set_yscale("log")
        ax.set_title(f"{title} latency from intended send time")
        ax.set_xlabel("offered load (requests/s)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms, log scale)")
    axes[-1].legend(title="x marks a step not within the bound", loc="upper left")
    fig.suptitle("Latency against offered load (open loop)")
    fig.savefig(path, dpi=110)


def spike_chart(path: Path, spike: Mapping[str, Any], bound: float) -> None:
    timeline = spike["result"]["timeline"]
    t = [row["t"] + 0.5 for row in timeline]  # each second drawn at its middle
    start, end = spike_phases(spike)
    fig = Figure(figsize=(11, 9), layout="constrained")
    top, mid, low = fig.subplots(3, 1, sharex=True)
    top.plot(t, [r["offered"] for r in timeline], label="offered", color="grey", linestyle="--")
    top.plot(t, [r["ok"] for r in timeline], label="answered (expected status)", linewidth=2)
    top.set_ylabel("requests/s")
    top.set_title("Throughput")
    kept = [(x, r) for x, r in zip(t, timeline, strict=True) if r["p99_ms"] > 0]
    mid.plot([x for x, _ in kept], [r["p99_ms"] for _, r in kept], "o-", label="p99")
    mid.plot([x for x, _ in kept], [r["max_ms"] for _, r in kept], ".:", label="max")
    mid.axhline(bound, color="crimson", linestyle="--", linewidth=1, label=f"bound {bound:g} ms")
    if kept:
        mid.set_yscale("log")
    mid.set_ylabel("ms from intended send (log)")
    mid.set_title("Latency of the requests due in each second")
    share = [
        100 * r["errors"] / (r["ok"] + r["errors"]) if r["ok"] + r["errors"] else 0.0
        for r in timeline
    ]
    low.plot(t, share, color="crimson", label="errors")
    low.set_ylabel("% of answers")
    low.set_xlabel("seconds since the start of the run")
    low.set_title("Error rate (timeouts and unexpected statuses)")
    for ax in (top, mid, low):
        ax.axvspan(start, end, color="orange", alpha=0.2, label="spike")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right")
    fig.suptitle(
        f"Spike: {spike['base_rate']:,.0f} → {spike['spike_rate']:,.0f} req/s"
        f" for {spike['spike_seconds']:g} s"
    )
    fig.savefig(path, dpi=110)


def histogram_chart(
    path: Path, name: str, steps: Sequence[Mapping[str, Any]], bound: float
) -> None:
    """Per step: the share of requests in each bucket, and (log-log, where the tail
    shows) the share slower than each latency."""
    fig = Figure(figsize=(13, 5), layout="constrained")
    density, tail = fig.subplots(1, 2)
    used = [i for s in steps for i, (_, c) in enumerate(s["histogram"]) if c]
    for step in steps:
        hist = step["histogram"][min(used, default=0) : max(used, default=0) + 2]
        total = sum(c for _, c in step["histogram"]) or 1
        bounds = [b for b, _ in hist]
        label = f"{step['offered_rate']:,.0f} req/s"
        density.step(bounds, [100 * c / total for _, c in hist], where="pre", label=label)
        slower, above = [], total
        for _, count in hist:
            above -= count
            slower.append(100 * above / total)
        kept = [(b, s) for b, s in zip(bounds, slower, strict=True) if s > 0]
        tail.plot([b for b, _ in kept], [s for _, s in kept], drawstyle="steps-post", label=label)
    for ax in (density, tail):
        ax.axvline(bound, color="crimson", linestyle="--", linewidth=1, label=f"bound {bound:g} ms")
        ax.set_xscale("log")
        ax.set_xlabel("latency from intended send time (ms, log scale)")
        ax.grid(True, which="both", alpha=0.3)
    density.set_ylabel("% of requests per bucket (buckets 10% wide)")
    density.set_title("Distribution")
    density.legend(title="offered")
    tail.set_yscale("log")
    tail.set_ylabel("% of requests slower (log scale)")
    tail.set_title("Tail: 1% slower is p99, 0.1% is p99.9")
    for share in (1.0, 0.1):
        tail.axhline(share, color="grey", linestyle=":", linewidth=1)
    fig.suptitle(f"{name}: latency per offered load")
    fig.savefig(path, dpi=110)


def write_report(out: Path, results: Mapping[str, Any]) -> Path:
    """Write the report folder; returns the path of ``summary.md``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "histograms").mkdir(exist_ok=True)
    bound = float(results["bound_ms"])
    kinds: Mapping[str, Mapping[str, Any]] = results["kinds"]
    for name, kind in kinds.items():
        for step in kind["steps"]:
            raw = {
                "kind": name,
                "offered_rate": step["offered_rate"],
                "unit": "ms from intended send time; [upper bound, count] per bucket",
                **{k: step[k] for k in ("sent", "p50_ms", "p99_ms", "p999_ms", "max_ms")},
                "histogram": step["histogram"],
            }
            (out / "histograms" / histogram_name(name, step)).write_text(json.dumps(raw) + "\n")
    charts = []
    if any(kind["steps"] for kind in kinds.values()):
        latency_chart(out / "latency-vs-load.png", kinds, bound)
        charts.append("latency-vs-load.png")
    for stem, spike in spikes(results).items():
        (out / f"{stem}.json").write_text(json.dumps(spike, indent=1) + "\n")
        spike_chart(out / f"{stem}.png", spike, bound)
        charts.append(f"{stem}.png")
    for name, kind in kinds.items():
        if kind["steps"]:
            histogram_chart(out / f"histogram-{name}.png", name, kind["steps"], bound)
            charts.append(f"histogram-{name}.png")
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    path = out / "summary.md"
    path.write_text(summary(results, charts))
    return path
