"""Which identifiers a node's copies hold, in memory: a Bloom filter.

A request for an identifier nobody registered (a typo, a scanner's stray code, a
probe) would otherwise cost a query of the node's database before the 404, and hold
its client's connection meanwhile. The filter answers "certainly not here" with no
I/O; "maybe here" still asks the database. It never forgets a key (no false
negatives), so a deleted identifier costs a query, as before; a key it holds wrongly
(about 1 in 100 at the size it was built for) costs the same.

Bloom, "Space/time trade-offs in hash coding with allowable errors", CACM 13(7), 1970;
the k positions come from two halves of one BLAKE2b digest (Kirsch and Mitzenmacher,
"Less hashing, same performance", 2006). Pure: the loading is ``sync.coherence``'s.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

FALSE_POSITIVES = 0.01  # the share of absent keys taken for present, at capacity
MIN_CAPACITY = 100_000


class Known:
    """A set of identifiers that can only say "not in it" for certain."""

    def __init__(self, capacity: int, *, false_positives: float = FALSE_POSITIVES) -> None:
        capacity = max(capacity, MIN_CAPACITY)
        # m = -n ln p / (ln 2)^2 bits, k = (m / n) ln 2 hashes
        self.bits = max(64, math.ceil(-capacity * math.log(false_positives) / math.log(2) ** 2))
        self.hashes = max(1, round(self.bits / capacity * math.log(2)))
        self.capacity = capacity
        self.count = 0  # keys added (a key added twice counts twice)
        self.ready = False  # every key of the store added: absence can be trusted
        self._array = bytearray((self.bits + 7) // 8)

    @classmethod
    def for_store(cls, rows: int) -> Known:
        """Room for a store of ``rows`` identifiers and as many again."""
        return cls(2 * rows)

    def _positions(self, key: str) -> list[int]:
        digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
        h1 = int.from_bytes(digest[:8], "little")
        h2 = int.from_bytes(digest[8:], "little") | 1
        m = self.bits
        return [(h1 + i * h2) % m for i in range(self.hashes)]

    def add(self, key: str) -> None:
        array = self._array
        for p in self._positions(key):
            array[p >> 3] |= 1 << (p & 7)
        self.count += 1

    def update(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.add(key)

    def __contains__(self, key: str) -> bool:
        array = self._array
        return all(array[p >> 3] & (1 << (p & 7)) for p in self._positions(key))

    def absent(self, key: str) -> bool:
        """Certainly not in the store (False while loading: nothing is certain yet)."""
        return self.ready and key not in self

    @property
    def full(self) -> bool:
        """Past its capacity: false positives grow; time to build it again."""
        return self.count > self.capacity
