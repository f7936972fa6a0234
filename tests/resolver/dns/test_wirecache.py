"""Kept DNS answers: keyed by the query's bytes after its ID, forgotten on changes."""

from __future__ import annotations

import dns.edns
import dns.message

from resolver.wirecache import MAX_KEEP, WireCache

NAME = "ABC-123._.1.100.88.handle.idres.internal."


def query(name: str = NAME, *, qid: int = 7) -> bytes:
    return dns.message.make_query(name, "URI", id=qid, use_edns=0).to_wire()


def answer_to(wire: bytes) -> bytes:
    return dns.message.make_response(dns.message.from_wire(wire)).to_wire()


def test_a_hit_is_the_kept_answer_under_the_askers_id() -> None:
    cache = WireCache()
    first = query()
    cache.keep(first, answer_to(first), 60, "88.100.1/ABC-123", cache.generation)
    hit = cache.answer(query(qid=4242))
    assert hit is not None
    response = dns.message.from_wire(hit)
    assert response.id == 4242
    assert response.question[0].name.labels[0] == b"ABC-123"
    assert cache.hits == 1


def test_any_other_byte_is_another_question() -> None:
    cache = WireCache()
    first = query()
    cache.keep(first, answer_to(first), 60, None, cache.generation)
    assert cache.answer(query(NAME.replace("ABC", "aBc"))) is None  # case: its own answer
    no_rd = bytearray(query())
    no_rd[2] &= ~0x01
    assert cache.answer(bytes(no_rd)) is None
    plain = dns.message.make_query(NAME, "URI", id=7).to_wire()  # no EDNS
    assert cache.answer(plain) is None
    assert cache.answer(b"\x00") is None


def test_answers_are_forgotten_by_identifier_all_at_once_and_in_time() -> None:
    now = [0.0]
    cache = WireCache(clock=lambda: now[0])
    other = "X._.1.100.88.handle.idres.internal."
    for name in (NAME, other):
        cache.keep(query(name), answer_to(query(name)), 30, name, cache.generation)
    cache.forget([NAME])
    assert cache.answer(query()) is None
    assert len(cache) == 1
    now[0] = 31  # past the TTL
    assert cache.answer(query(other)) is None
    cache.keep(query(other), answer_to(query(other)), 10 * MAX_KEEP, None, cache.generation)
    now[0] += MAX_KEEP + 1  # kept no longer than MAX_KEEP, whatever the TTL
    assert cache.answer(query(other)) is None
    cache.keep(query(other), answer_to(query(other)), 60, None, cache.generation)
    cache.forget(None)
    assert len(cache) == 0


def test_a_full_cache_forgets_its_oldest() -> None:
    one = len(query("N0._.1.100.88.handle.idres.internal.")) - 2
    one += len(answer_to(query("N0._.1.100.88.handle.idres.internal."))) - 2
    cache = WireCache(max_bytes=2 * one)
    names = [f"N{i}._.1.100.88.handle.idres.internal." for i in range(3)]
    for name in names:
        cache.keep(query(name), answer_to(query(name)), 60, name, cache.generation)
    assert len(cache) == 2
    assert cache.answer(query(names[0])) is None
    assert cache.answer(query(names[2])) is not None


def test_an_answer_worked_out_across_a_change_is_not_kept() -> None:
    cache = WireCache()
    read_at = cache.generation
    cache.forget(["88.100.1/ABC-123"])  # a notice arrived while the answer was made
    cache.keep(query(), answer_to(query()), 60, "88.100.1/ABC-123", read_at)
    assert cache.answer(query()) is None


def test_a_long_query_is_answered_but_never_kept() -> None:
    cache = WireCache()
    padded = dns.message.make_query(
        NAME, "URI", use_edns=0, options=[dns.edns.GenericOption(12, bytes(400))]
    ).to_wire()
    cache.keep(padded, answer_to(padded), 60, None, cache.generation)
    assert len(cache) == 0
