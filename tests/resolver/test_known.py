"""The filter of identifiers a node holds: never wrong about what it was told, rarely
wrong about what it was not."""

from __future__ import annotations

from resolver.known import MIN_CAPACITY, Known


def test_every_identifier_added_is_never_taken_for_absent() -> None:
    known = Known(50_000)
    keys = [f"88.100.1/ITEM-{n}" for n in range(50_000)]
    known.update(keys)
    known.ready = True
    assert not any(known.absent(k) for k in keys)


def test_about_one_in_a_hundred_absent_identifiers_is_taken_for_present() -> None:
    known = Known(50_000)
    known.update(f"88.100.1/ITEM-{n}" for n in range(50_000))
    known.ready = True
    probes = [f"86.1000.5/MISSING{n:08d}" for n in range(20_000)]
    wrong = sum(not known.absent(k) for k in probes)
    # sized for MIN_CAPACITY keys at 1%: at half of that, far fewer
    assert wrong / len(probes) < 0.01
    assert known.capacity == MIN_CAPACITY


def test_nothing_is_certainly_absent_until_every_key_is_in() -> None:
    known = Known.for_store(10)
    assert not known.absent("88.100.1/ANY")
    known.ready = True
    assert known.absent("88.100.1/ANY")
    known.add("88.100.1/ANY")
    assert not known.absent("88.100.1/ANY")


def test_past_its_capacity_it_asks_to_be_built_again() -> None:
    known = Known(MIN_CAPACITY)
    known.update(str(n) for n in range(MIN_CAPACITY))
    assert not known.full
    known.add("one more")
    assert known.full
