"""``idres verify`` against a node: its report, read as the node streams it, with the
progress on stderr (a line redrawn on a terminal; otherwise one every
NOT_A_TTY_EVERY seconds, so a log is not flooded)."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiohttp
import orjson

NDJSON = "application/x-ndjson"
TTY_EVERY = 0.2  # seconds between two redraws on a terminal
NOT_A_TTY_EVERY = 10.0  # seconds between two progress lines into a file or pipe


@dataclass(slots=True)
class Shown:
    """The progress line: records checked of how many, rate, and time left."""

    out: TextIO = field(default=sys.stderr)
    started: float = field(default_factory=time.monotonic)
    shown_at: float = -math.inf  # the first update is shown
    drawn: bool = False

    def update(self, checked: int, total: int, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        tty = self.out.isatty()
        if now - self.shown_at < (TTY_EVERY if tty else NOT_A_TTY_EVERY):
            return
        self.shown_at = now
        print(self.line(checked, total, now), end="\r" if tty else "\n", file=self.out, flush=True)
        self.drawn = tty

    def line(self, checked: int, total: int, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = checked / elapsed
        share = f" ({100 * checked / total:.0f}%)" if total else ""
        left = f", about {max(total - checked, 0) / rate:,.0f} s left" if rate > 0 and total else ""
        return f"verify: {checked:,} of {total:,} records checked{share}, {rate:,.0f}/s{left}"

    def done(self, checked: int, *, now: float | None = None) -> None:
        """The last line, whatever came before: how many, how long, how fast."""
        elapsed = max((time.monotonic() if now is None else now) - self.started, 1e-9)
        print(
            f"verify: {checked:,} records checked in {elapsed:,.1f} s ({checked / elapsed:,.0f}/s)"
            + " " * 20 * self.drawn,  # over what a redrawn line left
            file=self.out,
            flush=True,
        )


async def fetch_report(
    session: aiohttp.ClientSession, url: str, *, progress: Shown | None
) -> tuple[int, dict[str, Any] | None]:
    """The HTTP status and the node's report (None unless 200). A node that streams
    (``Accept: application/x-ndjson``) sends progress lines, then the report."""
    async with session.get(url, headers={"Accept": NDJSON}) as response:
        if response.status != 200:
            return response.status, None
        if response.content_type != NDJSON:  # a node that does not stream
            return 200, await response.json()
        report: dict[str, Any] | None = None
        async for raw in response.content:
            line = orjson.loads(raw)
            if "report" in line:
                report = line["report"]
            elif progress is not None and "progress" in line:
                progress.update(line["progress"]["records"], line["progress"]["total"])
        if report is None:
            raise ValueError("the node's answer ended before its report")
        if progress is not None:
            progress.done(int(report.get("records", 0)))
        return 200, report
