"""The profiles of ``idres bench`` and its options: read when the CLI starts, so
nothing heavy is imported here (the benchmark itself is ``benchmarks.singles_day``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    keys: int  # identifiers in the dataset
    samples: int  # requests in the targets file (oha draws from it at random)
    peak_seconds: int  # the closed-loop wrk run
    step_seconds: float  # each open-loop step
    fractions: tuple[float, ...]  # steps, as fractions of the closed-loop peak
    spike: tuple[float, float, float]  # seconds before, during and after the spike
    kinds: tuple[str, ...]


PROFILES = {
    "singles-day": Profile(
        name="singles-day",
        keys=1_000_000,
        samples=500_000,
        peak_seconds=10,
        step_seconds=10,
        fractions=(0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.2),
        spike=(30, 30, 30),
        kinds=(
            "nginx",
            "aiohttp_floor",
            "idres_hot",
            "idres_cold",
            "dns",
        ),
    ),
    "quick": Profile(
        name="quick",
        keys=20_000,
        samples=20_000,
        peak_seconds=2,
        step_seconds=2,
        fractions=(0.1, 0.3, 0.8),
        spike=(3, 3, 3),
        kinds=("nginx", "aiohttp_floor", "idres_hot", "idres_cold", "dns"),
    ),
}


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--profile", choices=sorted(PROFILES), default="singles-day")
    ap.add_argument("--quick", action="store_true", help="the quick profile (about a minute)")
    ap.add_argument("--out", type=Path, help="the report folder (idres-bench-PROFILE-TIME)")
    ap.add_argument("--bound-ms", type=float, default=10.0, help="the p99 bound (10 ms)")
    ap.add_argument("--keys", type=int, help="identifiers in the dataset (the profile's)")
