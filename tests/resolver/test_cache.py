"""The resolution cache: TTLs, negative answers, stale bounds and eviction."""

from __future__ import annotations

import gc

from resolver.cache import Cache, CacheConfig, freeze_after_start, record_ttl


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_positive_answers_live_for_their_ttl_then_only_as_stale() -> None:
    clock = Clock()
    cache = Cache(CacheConfig(stale_for=60), clock)
    cache.put_positive("k", b"record", ttl=10)
    clock.now += 9.9
    assert cache.get("k") is not None
    clock.now += 0.2
    assert cache.get("k") is None
    stale = cache.get_stale("k")
    assert stale is not None
    assert stale.body == b"record"
    clock.now += 60
    assert cache.get_stale("k") is None


def test_negative_answers_are_brief_and_never_stale() -> None:
    clock = Clock()
    cache = Cache(CacheConfig(negative_ttl=2, stale_for=3600), clock)
    cache.put_negative("k", b"not found")
    entry = cache.get("k")
    assert entry is not None
    assert entry.negative
    clock.now += 2.01
    assert cache.get("k") is None
    assert cache.get_stale("k") is None


def test_ttls_are_capped_and_the_least_recently_used_is_evicted() -> None:
    clock = Clock()
    cache = Cache(CacheConfig(max_entries=2, max_ttl=100), clock)
    cache.put_positive("a", b"1", ttl=10**9)
    cache.put_positive("b", b"2", ttl=10)
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put_positive("c", b"3", ttl=10)
    assert cache.get("b") is None
    assert len(cache) == 2
    clock.now += 100.5
    assert cache.get("a") is None  # capped at max_ttl


def test_record_ttl_is_the_shortest_value_ttl() -> None:
    assert record_ttl([(86400, False), (60, False)], now=0) == 60
    assert record_ttl([(5000, True)], now=4000) == 1000  # absolute: an expiry time
    assert record_ttl([(100, True)], now=4000) == 0
    assert record_ttl([], now=0) == 0


def test_a_cached_answer_costs_its_size_not_the_encoders_buffer() -> None:
    """orjson writes each answer into a buffer of about 4 KiB and keeps it: cached as
    is, 50,000 answers of 200 bytes would hold some 200 MB (1M: gigabytes a worker)."""
    import orjson

    def resident_mb() -> int:
        with open("/proc/self/status") as f:
            return int(f.read().split("VmRSS:")[1].split()[0]) // 1024

    cache = Cache(CacheConfig(max_entries=100_000))
    before = resident_mb()
    for n in range(50_000):
        body = orjson.dumps({"responseCode": 1, "handle": f"88.100.1/M{n:07d}", "pad": "x" * 140})
        cache.put_positive(f"88.100.1/M{n:07d}", body, ttl=60)
    assert resident_mb() - before < 60  # about 25 MB: the entries and their bytes
    assert cache.get("88.100.1/M0000007") is not None


def test_the_answers_held_add_nothing_for_the_garbage_collector_to_walk() -> None:
    # a full collection stops the serving loop for as long as it walks every tracked
    # object: a million answers held must not be a million more of them
    cache = Cache(CacheConfig(max_entries=20_000))
    gc.collect()
    before = len(gc.get_objects())
    for n in range(10_000):
        cache.put_positive(f"88.100.1/B{n:07d}", b"record %d" % n, ttl=60)
        cache.put_negative(f"88.100.1/M{n:07d}", b"not found")
    hit = cache.get("88.100.1/B0000042")
    gc.collect()
    assert len(gc.get_objects()) - before < 100
    assert hit is not None
    assert (hit.body, hit.status, hit.negative) == (b"record 42", 200, False)
    missing = cache.get_stale("88.100.1/M0000042")
    assert missing is not None
    assert (missing.status, missing.negative) == (404, True)


def test_a_cache_built_before_the_freeze_is_not_walked_by_later_collections() -> None:
    cache = Cache(CacheConfig(max_entries=50_000))
    try:
        freeze_after_start()
        for n in range(50_000):
            cache.put_positive(f"88.100.1/B{n:07d}", b"record", ttl=60)
        gc.collect()
        assert gc.get_freeze_count() > 0
        assert not any(o is cache._entries for o in gc.get_objects())
        assert cache.get("88.100.1/B0049999") is not None
    finally:
        gc.unfreeze()
