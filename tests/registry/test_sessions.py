"""Handle REST sessions in PostgreSQL (registry/sessions.py): shared by processes,
authenticated once, expired when idle, bounded in number."""

from __future__ import annotations

import asyncio
import hashlib

import asyncpg
import pytest

from registry.sessions import Session, SessionStore

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]
KEY = hashlib.sha256(b"an HS_PUBKEY").digest()


async def test_a_session_is_authenticated_once_and_seen_by_every_process(
    pool: asyncpg.Pool, db_url: str
) -> None:
    here = SessionStore(pool)
    other_pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
    try:
        there = SessionStore(other_pool)  # another worker of the same node
        sid, nonce = await here.open(now=1000.0)
        assert len(nonce) == 32
        assert await there.get(sid, now=1001.0) == Session(nonce=nonce, signer=None)
        # two signatures over the same nonce racing: one wins, the nonce is used up
        won = await asyncio.gather(
            here.authenticate(sid, nonce, "300:0.NA/x", KEY, now=1002.0),
            there.authenticate(sid, nonce, "300:0.NA/x", KEY, now=1002.0),
        )
        assert sorted(won) == [False, True]
        assert await there.get(sid, now=1003.0) == Session(
            nonce=None, signer="300:0.NA/x", key_hash=KEY
        )
        assert await here.get("no such session", now=1003.0) is None
        assert await there.end(sid)
        assert await here.get(sid, now=1004.0) is None
        assert not await here.end(sid)
    finally:
        await other_pool.close()


async def test_sessions_expire_unsigned_quickly_and_signed_when_idle(pool: asyncpg.Pool) -> None:
    sessions = SessionStore(pool, pending_ttl=10.0, idle_ttl=100.0)
    waiting, _ = await sessions.open(now=0.0)
    assert await sessions.get(waiting, now=10.0) is not None
    assert await sessions.get(waiting, now=20.1) is None
    signed, nonce = await sessions.open(now=0.0)
    assert await sessions.authenticate(signed, nonce, "300:0.NA/x", KEY, now=5.0)
    assert await sessions.get(signed, now=100.0) is not None  # each use keeps it alive
    assert await sessions.get(signed, now=199.0) is not None
    assert await sessions.get(signed, now=299.5) is None


async def test_sessions_are_bounded_dropping_the_oldest_never_refusing(pool: asyncpg.Pool) -> None:
    sessions = SessionStore(pool, max_pending=3, max_sessions=2)
    opened = [await sessions.open(now=float(i)) for i in range(5)]
    alive = [s for s, _ in opened if await sessions.get(s, now=5.0) is not None]
    assert alive == [s for s, _ in opened[2:]]  # the newest three wait
    for i, (sid, nonce) in enumerate(opened[2:]):
        assert await sessions.authenticate(sid, nonce, "300:0.NA/x", KEY, now=10.0 + i)
    signed = [s for s, _ in opened[2:] if await sessions.get(s, now=20.0) is not None]
    assert signed == [s for s, _ in opened[3:]]  # the least recently used went
    count = await pool.fetchval("SELECT count(*) FROM handle_sessions")
    assert count == 2
    # what is kept is the id's SHA-256, never the id
    kept = {bytes(r["id_hash"]) for r in await pool.fetch("SELECT id_hash FROM handle_sessions")}
    assert kept == {hashlib.sha256(s.encode()).digest() for s in signed}
