"""Challenges waiting for their answer, kept in the node's PostgreSQL (table
``pending_challenges``, schemas/sql/0007) so that whichever of its processes takes
the answer finds the challenge (RFC 3652 §3.5: the answer comes on a new connection).

A challenge is a request's bytes and the nonce sent for it, under a session id. It is
taken once (DELETE ... RETURNING: of two answers racing, one gets it), is good for
``ttl`` seconds, and at most ``limit`` of them, keeping ``max_bytes`` of requests
together, wait at once. Past that the oldest are dropped, never the new one refused:
an administrator answers within milliseconds, so a flood of unanswered requests must
outpace that to cost anyone a challenge, whereas refusing new challenges would let it
lock every administrator out for ``ttl`` seconds at a time. What is kept is bytes; the
caller decodes them again as it would any request, trusting nothing stored.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from registry.database import acquire

CHALLENGE_TTL = 60.0  # seconds an answer may take
MAX_CHALLENGES = 10_000  # pending at once; the oldest are dropped past this
MAX_CHALLENGE_BYTES = 32 << 20  # and the requests they keep, together (one may be 256 KiB)
MAX_SESSION_ID = 0xFFFF_FFFF  # <SessionId> is four octets (RFC 3652 §2.2.1); 0: no session
# Openers take turns, so the bounds hold with every process opening at once; any
# constant shared by the processes of a node will do.
_OPEN_LOCK = 0x1D7E5_0002

# The rows to drop so that ``$1 - 1`` challenges keeping at most ``$2`` bytes remain:
# the newest ones, counted and summed from the newest down.
_DROP_OLDEST = """
DELETE FROM pending_challenges WHERE session_id IN (
    SELECT session_id FROM (
        SELECT session_id,
               count(*) OVER newest_first AS newer,
               sum(octet_length(request)) OVER newest_first AS newer_bytes
        FROM pending_challenges
        WINDOW newest_first AS (ORDER BY opened_at DESC, session_id DESC ROWS UNBOUNDED PRECEDING)
    ) ranked
    WHERE newer >= $1 OR newer_bytes > $2
)
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    request: bytes  # as the opener kept it: to be decoded again, not trusted
    nonce: bytes
    at: float  # when it was opened, seconds since the epoch


class PendingChallenges:
    """The challenges of one node, in its PostgreSQL (``pool``). Times are the
    caller's clock, in seconds since the epoch (every process of a node shares it)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        ttl: float = CHALLENGE_TTL,
        limit: int = MAX_CHALLENGES,
        max_bytes: int = MAX_CHALLENGE_BYTES,
        session_ids: Callable[[], int] = lambda: secrets.randbelow(MAX_SESSION_ID) + 1,
    ) -> None:
        self.pool = pool
        self.ttl = ttl
        self.limit = limit
        self.max_bytes = max_bytes
        self.session_ids = session_ids

    async def open(self, request: bytes, nonce: bytes, *, now: float) -> int:
        """Keep ``request`` and ``nonce`` under a new session id, and return the id;
        expired challenges go first, then the oldest past the bounds. Raises
        StoreUnavailable when PostgreSQL cannot be reached."""
        async with acquire(self.pool) as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _OPEN_LOCK)
            await conn.execute(
                "DELETE FROM pending_challenges WHERE opened_at < $1", now - self.ttl
            )
            await conn.execute(_DROP_OLDEST, self.limit, self.max_bytes - len(request))
            while True:
                session = self.session_ids()
                if not 0 < session <= MAX_SESSION_ID:
                    continue
                kept = await conn.fetchval(
                    "INSERT INTO pending_challenges (session_id, request, nonce, opened_at)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT (session_id) DO NOTHING"
                    " RETURNING session_id",
                    session,
                    request,
                    nonce,
                    now,
                )
                if kept is not None:
                    return session

    async def take(self, session: int, *, now: float) -> Challenge | None:
        """The challenge of ``session``, forgotten as it is handed out; None when there
        is none (never opened, answered already, dropped, or expired)."""
        if not 0 < session <= MAX_SESSION_ID:
            return None
        async with acquire(self.pool) as conn:
            row = await conn.fetchrow(
                "DELETE FROM pending_challenges WHERE session_id = $1"
                " RETURNING request, nonce, opened_at",
                session,
            )
        if row is None or now - row["opened_at"] > self.ttl:
            return None
        return Challenge(
            request=bytes(row["request"]), nonce=bytes(row["nonce"]), at=row["opened_at"]
        )
