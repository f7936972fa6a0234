"""Answers kept as the bytes that went out, keyed by the question as it came in.

A hit costs one look at the packet and a dictionary probe: the plain query a resolver
or a scanner sends (one question, no answer or authority, at most an OPT without
options) is read by hand here, and its response is the kept one under the query's ID
and with its question as asked (names compare without case, RFC 4343, and an asker
that varies case checks it gets its own back). Anything else is ``None``: the slow
path parses it whole. Entries are forgotten by identifier (a change to its record),
all at once (a directory change, a lost notice feed), or when their TTL runs out.
Nothing here does I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

HEADER = 12
OPT = 41
MAX_ENTRIES = 1_000_000
MAX_KEEP = 300.0  # seconds at most, whatever the TTL: a bound on what a lost notice costs
_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True, slots=True)
class Question:
    key: bytes  # the question lowercased, with what else shapes the answer
    end: int  # where the question ends in the packet


def read_question(wire: bytes) -> Question | None:
    """The cache key of a plain UDP query, or None for anything the slow path must read."""
    if len(wire) < HEADER + 5 or wire[2] & 0xF8 or wire[4:10] != b"\x00\x01\x00\x00\x00\x00":
        return None  # a response, an opcode other than QUERY, not one bare question
    arcount = wire[10] << 8 | wire[11]
    at = HEADER
    while True:
        if at >= len(wire):
            return None
        size = wire[at]
        if size == 0:
            break
        if size > 63:  # a pointer or a reserved label type: never in a plain question
            return None
        at += size + 1
    end = at + 5  # the root label, QTYPE, QCLASS
    if end > len(wire) or at - HEADER > 255:
        return None
    flags = wire[2] & 0x01  # RD
    payload = 0  # no EDNS: answers fit 512 bytes
    if arcount == 0:
        if end != len(wire):
            return None
    elif arcount == 1:
        # an OPT RR: root name, type 41, class = payload, TTL = rcode/version/flags,
        # RDLENGTH 0 (options, such as cookies, go the slow way)
        opt = wire[end:]
        if len(opt) != 11 or opt[0] != 0 or opt[1:3] != b"\x00\x29" or opt[9:11] != b"\x00\x00":
            return None
        if opt[6] != 0:  # EDNS version: BADVERS is the slow path's
            return None
        payload = max(512, min(opt[3] << 8 | opt[4], 1232))
        flags |= (opt[7] & 0x80) >> 6  # DO
    else:
        return None
    key = wire[HEADER:end].translate(_LOWER) + bytes((flags, payload >> 8, payload & 0xFF))
    return Question(key=key, end=end)


@dataclass(slots=True)
class _Entry:
    wire: bytes
    until: float
    ident: str | None


class WireCache:
    def __init__(
        self, max_entries: int = MAX_ENTRIES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[bytes, _Entry] = {}
        self._by_ident: dict[str, set[bytes]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def answer(self, wire: bytes, asked: Question) -> bytes | None:
        """The kept answer to ``wire`` under its ID and question, or None."""
        entry = self._entries.get(asked.key)
        if entry is None or entry.until <= self.clock():
            self.misses += 1
            return None
        self.hits += 1
        kept = entry.wire
        return wire[:2] + kept[2:HEADER] + wire[HEADER : asked.end] + kept[asked.end :]

    def keep(self, asked: Question, response: bytes, ttl: float, ident: str | None) -> None:
        if ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            oldest = next(iter(self._entries))
            self._drop(oldest)
        self._drop(asked.key)
        self._entries[asked.key] = _Entry(response, self.clock() + min(ttl, MAX_KEEP), ident)
        if ident is not None:
            self._by_ident.setdefault(ident, set()).add(asked.key)

    def forget(self, idents: list[str] | None) -> None:
        """Forget the answers about ``idents``; None: every answer."""
        if idents is None:
            self._entries.clear()
            self._by_ident.clear()
            return
        for ident in idents:
            for key in self._by_ident.pop(ident, ()):
                self._entries.pop(key, None)

    def _drop(self, key: bytes) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None and entry.ident is not None:
            keys = self._by_ident.get(entry.ident)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_ident[entry.ident]
