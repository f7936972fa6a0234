"""Pending challenges in PostgreSQL (registry/challenges.py): taken once, by any
process of the node, never after their time, and bounded oldest first."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from registry.challenges import PendingChallenges

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]

NONCE = bytes(range(16))


async def test_a_challenge_is_taken_once_and_not_after_its_time(pool: asyncpg.Pool) -> None:
    numbers = iter([0, 7, 7, 8, 9])  # 0 is never a session id, nor one in use
    challenges = PendingChallenges(pool, ttl=60.0, session_ids=lambda: next(numbers))
    first = await challenges.open(b"request one", NONCE, now=100.0)
    second = await challenges.open(b"request two", NONCE, now=100.0)
    assert (first, second) == (7, 8)
    taken = await challenges.take(7, now=110.0)
    assert taken is not None
    assert (taken.request, taken.nonce, taken.at) == (b"request one", NONCE, 100.0)
    assert await challenges.take(7, now=110.0) is None  # used
    assert await challenges.take(8, now=161.0) is None  # expired
    assert await challenges.take(8, now=110.0) is None  # and gone with it
    assert await challenges.take(12345, now=110.0) is None  # never opened
    assert await challenges.take(0, now=110.0) is None  # not a session id


async def test_another_process_takes_what_one_opened_and_one_of_two_racers_wins(
    pool: asyncpg.Pool, db_url: str
) -> None:
    other_pool = await asyncpg.create_pool(db_url, min_size=2, max_size=2)
    try:
        here = PendingChallenges(pool)
        there = PendingChallenges(other_pool)
        session = await here.open(b"a write", NONCE, now=1000.0)
        taken = await asyncio.gather(
            there.take(session, now=1001.0), there.take(session, now=1001.0)
        )
        assert sorted(t is None for t in taken) == [False, True]
    finally:
        await other_pool.close()


async def test_pending_challenges_are_bounded_oldest_first(pool: asyncpg.Pool) -> None:
    challenges = PendingChallenges(pool, limit=3)
    opened = [await challenges.open(b"r%d" % n, NONCE, now=float(n)) for n in range(5)]
    assert await pool.fetchval("SELECT count(*) FROM pending_challenges") == 3
    assert await challenges.take(opened[1], now=5.0) is None
    assert await challenges.take(opened[4], now=5.0) is not None


async def test_pending_challenges_keep_a_bounded_number_of_request_bytes(
    pool: asyncpg.Pool,
) -> None:
    challenges = PendingChallenges(pool, max_bytes=1000)
    first = await challenges.open(bytes(600), NONCE, now=0.0)
    second = await challenges.open(bytes(300), NONCE, now=1.0)
    third = await challenges.open(bytes(300), NONCE, now=2.0)  # 1,200 bytes: the oldest goes
    assert await challenges.take(first, now=3.0) is None
    assert await challenges.take(second, now=3.0) is not None
    assert await challenges.take(third, now=3.0) is not None


async def test_opening_forgets_the_expired_ones(pool: asyncpg.Pool) -> None:
    challenges = PendingChallenges(pool, ttl=60.0)
    await challenges.open(b"old", NONCE, now=0.0)
    await challenges.open(b"new", NONCE, now=100.0)
    assert await pool.fetchval("SELECT array_agg(request) FROM pending_challenges") == [b"new"]
