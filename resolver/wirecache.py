"""Answers kept as the bytes that went out, keyed by the request's bytes but for its ID
(and, for the Handle protocol, its expiration time).

A hit costs a dictionary probe: a packet equal, but for its ID, to one answered
before gets that answer under its own ID, with no parsing at all, so it is right by
construction (the question, its case, the flags and the EDNS fields are all in the
key). Only UDP answers the slow path worked out in full are kept. Entries are
forgotten by identifier (a change to its record), all at once (a directory change, a
lost notice feed), or when their TTL runs out, at most MAX_KEEP. Nothing here does I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

HEADER = 12  # a DNS message's header (RFC 1035 §4.1.1)
MAX_BYTES = 256 << 20  # what the kept queries and answers may take, all together
MAX_QUERY = 300  # bytes: a longer query (padding, options) is answered, never kept
# seconds at most, whatever the TTL: a bound on what a notice lost without the feed
# noticing would cost (a lost feed forgets everything at once)
MAX_KEEP = 3600.0


@dataclass(frozen=True, slots=True)
class Kept:
    """How long an answer may be kept (its least TTL), and the identifier it is about
    (None: the directory's, a referral say, forgotten when the directory changes)."""

    ttl: float
    about: str | None


class WireCache:
    def __init__(
        self, max_bytes: int = MAX_BYTES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_bytes = max_bytes
        self.clock = clock
        # the query after its ID -> (the answer after its ID, kept until, identifier)
        self._entries: dict[bytes, tuple[bytes, float, str | None]] = {}
        self._by_ident: dict[str, set[bytes]] = {}
        self.bytes = 0
        self.hits = 0
        # moves at every forget: an answer worked out across one may be old
        self.generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def answer(self, wire: bytes) -> bytes | None:
        """The kept answer to the DNS query ``wire`` under its ID, or None."""
        found = self.get(wire[2:])
        return None if found is None else wire[:2] + found

    def keep(
        self, wire: bytes, response: bytes, ttl: float, ident: str | None, generation: int
    ) -> None:
        """Keep ``response`` to the DNS query ``wire`` for ``ttl`` seconds (see ``put``)."""
        if len(wire) >= HEADER:
            self.put(wire[2:], response[2:], ttl, ident, generation)

    def get(self, key: bytes) -> bytes | None:
        """What was kept under ``key``, or None."""
        entry = self._entries.get(key)
        if entry is None or entry[1] <= self.clock():
            return None
        self.hits += 1
        return entry[0]

    def put(self, key: bytes, tail: bytes, ttl: float, ident: str | None, generation: int) -> None:
        """Keep ``tail`` under ``key`` for ``ttl`` seconds (at most MAX_KEEP), unless
        something was forgotten since ``generation`` was read (the answer may predate
        the change), or the key is longer than a question worth keeping."""
        if ttl <= 0 or len(key) > MAX_QUERY or generation != self.generation:
            return
        self._drop(key)
        self.bytes += len(key) + len(tail)
        while self.bytes > self.max_bytes and self._entries:
            self._drop(next(iter(self._entries)))  # the oldest
        self._entries[key] = (tail, self.clock() + min(ttl, MAX_KEEP), ident)
        if ident is not None:
            self._by_ident.setdefault(ident, set()).add(key)

    def forget(self, idents: list[str] | None) -> None:
        """Forget the answers about ``idents``; None: every answer."""
        self.generation += 1
        if idents is None:
            self._entries.clear()
            self._by_ident.clear()
            self.bytes = 0
            return
        for ident in idents:
            for key in self._by_ident.pop(ident, ()):
                entry = self._entries.pop(key, None)
                if entry is not None:
                    self.bytes -= len(key) + len(entry[0])

    def _drop(self, key: bytes) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= len(key) + len(entry[0])
        if entry is not None and entry[2] is not None:
            keys = self._by_ident.get(entry[2])
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_ident[entry[2]]
