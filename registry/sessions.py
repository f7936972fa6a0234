"""Handle.Net REST API sessions, kept in the node's PostgreSQL (table
``handle_sessions``, schemas/sql/0009) so that every process of the node knows them.

A session is opened with a random nonce; a signature over that nonce (and the
client's cnonce) with an HS_PUBKEY authenticates it once, using the nonce up; from
then on its id stands for that key. Unauthenticated sessions live ``pending_ttl``
seconds and authenticated ones ``idle_ttl`` seconds after their last use. At most
``max_pending`` wait for their signature: past that the oldest are dropped, never a
new one refused (a flood of POST /api/sessions then costs nobody a session that was
signed within seconds, as registry/challenges.py argues); at most ``max_sessions``
are authenticated: past that the least recently used goes.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import asyncpg

from registry.database import acquire

PENDING_TTL = 120.0  # seconds a new session waits for its signature
IDLE_TTL = 1800.0  # seconds an authenticated session lives after its last use
MAX_PENDING = 10_000
MAX_SESSIONS = 100_000
NONCE_BYTES = 32
_OPEN_LOCK = 0x1D7E5_0003  # openers take turns, so the bounds hold (any shared constant)


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    nonce: bytes | None  # None once used by a signature
    signer: str | None  # index:handle once authenticated
    key_hash: bytes | None = None  # SHA-256 of the HS_PUBKEY that authenticated it


class SessionStore:
    """The sessions of one node, in its PostgreSQL (``pool``). Times are the caller's
    clock, in seconds since the epoch. Raises StoreUnavailable when PostgreSQL cannot
    be reached."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        pending_ttl: float = PENDING_TTL,
        idle_ttl: float = IDLE_TTL,
        max_pending: int = MAX_PENDING,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self.pool = pool
        self.pending_ttl = pending_ttl
        self.idle_ttl = idle_ttl
        self.max_pending = max_pending
        self.max_sessions = max_sessions

    async def open(self, *, now: float) -> tuple[str, bytes]:
        """A new session: its id (43 URL-safe characters) and its nonce."""
        session_id = secrets.token_urlsafe(32)
        nonce = secrets.token_bytes(NONCE_BYTES)
        async with acquire(self.pool) as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _OPEN_LOCK)
            await self._expire(conn, now)
            await conn.execute(
                "DELETE FROM handle_sessions WHERE id_hash IN ("
                " SELECT id_hash FROM handle_sessions WHERE signer IS NULL"
                " ORDER BY opened_at DESC OFFSET $1)",
                max(self.max_pending - 1, 0),
            )
            await conn.execute(
                "INSERT INTO handle_sessions (id_hash, nonce, opened_at, used_at)"
                " VALUES ($1, $2, $3, $3)",
                _hash(session_id),
                nonce,
                now,
            )
        return session_id, nonce

    async def get(self, session_id: str, *, now: float) -> Session | None:
        """The session, its last use now; None when unknown, ended or expired."""
        async with acquire(self.pool) as conn:
            row = await conn.fetchrow(
                "UPDATE handle_sessions SET used_at = $2 WHERE id_hash = $1"
                " AND ((signer IS NULL AND opened_at >= $3)"
                " OR (signer IS NOT NULL AND used_at >= $4))"
                " RETURNING nonce, signer, key_hash",
                _hash(session_id),
                now,
                now - self.pending_ttl,
                now - self.idle_ttl,
            )
        if row is None:
            return None
        nonce, key_hash = row["nonce"], row["key_hash"]
        return Session(
            nonce=bytes(nonce) if nonce is not None else None,
            signer=row["signer"],
            key_hash=bytes(key_hash) if key_hash is not None else None,
        )

    async def authenticate(
        self, session_id: str, nonce: bytes, signer: str, key_hash: bytes, *, now: float
    ) -> bool:
        """Bind ``signer`` (and the hash of its key) to the session whose nonce is still
        ``nonce``, using it up; False when that nonce was used meanwhile (of two
        signatures racing, one wins)."""
        async with acquire(self.pool) as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _OPEN_LOCK)
            done = await conn.fetchval(
                "UPDATE handle_sessions SET signer = $3, key_hash = $4, nonce = NULL,"
                " used_at = $5 WHERE id_hash = $1 AND nonce = $2 RETURNING 1",
                _hash(session_id),
                nonce,
                signer,
                key_hash,
                now,
            )
            if done is None:
                return False
            await conn.execute(
                "DELETE FROM handle_sessions WHERE id_hash IN ("
                " SELECT id_hash FROM handle_sessions WHERE signer IS NOT NULL"
                " ORDER BY used_at DESC OFFSET $1)",
                self.max_sessions,
            )
        return True

    async def end(self, session_id: str) -> bool:
        """Forget the session; False when there was none."""
        async with acquire(self.pool) as conn:
            gone = await conn.fetchval(
                "DELETE FROM handle_sessions WHERE id_hash = $1 RETURNING 1", _hash(session_id)
            )
        return gone is not None

    async def _expire(self, conn: asyncpg.Connection, now: float) -> None:
        await conn.execute(
            "DELETE FROM handle_sessions WHERE (signer IS NULL AND opened_at < $1)"
            " OR (signer IS NOT NULL AND used_at < $2)",
            now - self.pending_ttl,
            now - self.idle_ttl,
        )


def _hash(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).digest()
