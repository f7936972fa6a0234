"""The resolution cache: answers kept for their TTL, negative answers briefly, and
expired answers kept a while longer to serve, marked stale, when upstream fails.

A plain data structure over an injected clock; nothing here awaits. Failures are
never stored: only a record (positive) or "not found" (negative) enters.

Rule of this module: what it holds is invisible to the garbage collector. Each
answer is kept as a plain tuple of bytes, int and floats, which the collector stops
tracking the first time it looks at it; a full collection then walks one
OrderedDict instead of a million objects (251 ms at 10^6 answers held as dataclass
instances; see benchmarks/RESULTS.md, issue 12). An ``Entry`` is made only for the
caller that asks.
"""

from __future__ import annotations

import gc
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

# (body, status, expires, stale_until): a tuple, never a subclass, so the collector
# untracks it (it untracks exact tuples of untracked values only)
_Stored = tuple[bytes, int, float, float]


class Entry(NamedTuple):
    body: bytes  # the answer, encoded once (JSON of the Handle REST shape)
    status: int  # 200 for a record, 404 for "not found"
    expires: float  # fresh until
    stale_until: float  # servable, marked stale, until (when upstream fails)

    @property
    def negative(self) -> bool:
        return self.status == 404


_entry = tuple.__new__  # an Entry from a stored tuple without a copy of its fields


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheConfig:
    max_entries: int = 1_000_000
    negative_ttl: float = 5.0
    max_ttl: float = 86_400.0
    stale_for: float = 3_600.0  # how long past its TTL an answer may be served stale


class Cache:
    """LRU over canonical identifiers. ``get`` returns only fresh entries;
    ``get_stale`` also those past their TTL but within the stale bound."""

    def __init__(
        self, config: CacheConfig = CacheConfig(), clock: Callable[[], float] | None = None
    ) -> None:
        import time

        self.config = config
        self._clock = clock or time.monotonic
        self._entries: OrderedDict[str, _Stored] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Entry | None:
        stored = self._entries.get(key)
        if stored is None or stored[2] <= self._clock():
            return None
        self._entries.move_to_end(key)
        return _entry(Entry, stored)

    def get_stale(self, key: str) -> Entry | None:
        stored = self._entries.get(key)
        if stored is None or stored[3] <= self._clock():
            return None
        return _entry(Entry, stored)

    def put_positive(self, key: str, body: bytes, ttl: float) -> Entry:
        now = self._clock()
        ttl = max(0.0, min(ttl, self.config.max_ttl))
        expires = now + ttl
        return self._store(key, (_compact(body), 200, expires, expires + self.config.stale_for))

    def put_negative(self, key: str, body: bytes) -> Entry:
        now = self._clock()
        # a "not found" is never served stale: the identifier may exist by now
        until = now + self.config.negative_ttl
        return self._store(key, (_compact(body), 404, until, until))

    def invalidate(self, keys: list[str]) -> None:
        """Forget ``keys``: a replicated change made the cached answers old."""
        for key in keys:
            self._entries.pop(key, None)

    def _store(self, key: str, stored: _Stored) -> Entry:
        self._entries[key] = stored
        self._entries.move_to_end(key)
        while len(self._entries) > self.config.max_entries:
            self._entries.popitem(last=False)
        return _entry(Entry, stored)


def freeze_after_start() -> None:
    """Move every object alive now out of the collector's sight, for good: called once
    a serving process has built its parts (its cache included) and before it serves.

    The cache's one OrderedDict stays tracked (its type always is), so each full
    collection walks every answer in it: 62 ms at 10^6. Frozen, it is never walked
    again, nor is anything else built at start-up. Only objects alive at the call are
    frozen (after a collection, so no garbage is kept); what is made later is
    collected as usual.
    """
    gc.collect()
    gc.freeze()


def _compact(body: bytes) -> bytes:
    """An exact-size copy. A body straight from orjson.dumps keeps the ~4 KiB buffer
    orjson wrote it in (measured: 100,000 answers of 225 bytes held 393 MB of memory;
    copied, 23 MB): at 1M cached answers, gigabytes a worker."""
    return memoryview(body).tobytes()


def record_ttl(ttls: list[tuple[int, bool]], now: float) -> float:
    """How long a record may be cached: its shortest value TTL (RFC 3651 §3.1).

    Each item is (ttl, absolute); an absolute TTL is a time since the epoch.
    """
    if not ttls:
        return 0.0
    return max(0.0, min(float(t) - now if absolute else float(t) for t, absolute in ttls))
