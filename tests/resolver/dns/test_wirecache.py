"""Kept DNS answers: the hand-read question key, and hits under the asker's ID and case."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import pytest

from resolver.dns.wirecache import MAX_KEEP, WireCache, read_question

NAME = "ABC-123._.1.100.88.handle.idres.internal."


def query(name: str = NAME, *, qid: int = 7, **kw: object) -> bytes:
    message = dns.message.make_query(name, "URI", id=qid, **kw)  # type: ignore[arg-type]
    return message.to_wire()


def test_the_key_ignores_case_and_the_id_and_keeps_what_shapes_the_answer() -> None:
    plain = read_question(query(use_edns=0))
    assert plain is not None
    assert read_question(query(NAME.lower(), qid=99, use_edns=0)) == plain
    no_edns = read_question(query())
    dnssec = read_question(query(want_dnssec=True))
    small = read_question(query(use_edns=0, payload=512))
    assert len({plain.key, no_edns.key if no_edns else b"", dnssec.key if dnssec else b""}) == 3
    assert small is not None
    assert small.key != plain.key
    wire = bytearray(query(use_edns=0))
    wire[2] &= ~0x01  # RD clear: a resolver's question, answered with referrals
    other = read_question(bytes(wire))
    assert other is not None
    assert other.key != plain.key


@pytest.mark.parametrize(
    "wire",
    [
        query()[:20],  # cut short
        query()[:2] + b"\x80" + query()[3:],  # a response
        query()[:2] + b"\x28" + query()[3:],  # opcode UPDATE
        query()[:5] + b"\x02" + query()[6:],  # two questions
        query()[:12] + b"\xc0\x0c\x00\x01\x00\x01",  # a pointer in the question
        dns.message.make_query(
            NAME, "URI", use_edns=0, options=[dns.edns.GenericOption(10, b"12345678")]
        ).to_wire(),  # a cookie: the slow path reads options
        dns.message.make_query(NAME, "URI", use_edns=1).to_wire(),  # EDNS version 1
        query(use_edns=False) + b"\x00",  # trailing junk
    ],
)
def test_anything_but_a_plain_query_takes_the_slow_path(wire: bytes) -> None:
    assert read_question(wire) is None


def answer_to(wire: bytes) -> bytes:
    message = dns.message.from_wire(wire)
    response = dns.message.make_response(message)
    return response.to_wire()


def test_a_hit_has_the_askers_id_and_case() -> None:
    cache = WireCache()
    first = query()
    asked = read_question(first)
    assert asked is not None
    cache.keep(asked, answer_to(first), 60, "88.100.1/ABC-123")
    second = query(NAME.replace("ABC", "aBc"), qid=4242)
    again = read_question(second)
    assert again is not None
    hit = cache.answer(second, again)
    assert hit is not None
    response = dns.message.from_wire(hit)
    assert response.id == 4242
    assert response.flags & dns.flags.QR
    assert response.question[0].name.labels[0] == b"aBc-123"


def test_answers_are_forgotten_by_identifier_all_at_once_and_in_time() -> None:
    now = [0.0]
    cache = WireCache(clock=lambda: now[0])
    wires = {name: query(name) for name in (NAME, "X._.1.100.88.handle.idres.internal.")}
    for name, wire in wires.items():
        asked = read_question(wire)
        assert asked is not None
        cache.keep(asked, answer_to(wire), 30, name)
    first = read_question(wires[NAME])
    assert first is not None
    cache.forget([NAME])
    assert cache.answer(wires[NAME], first) is None
    assert len(cache) == 1
    now[0] = 31  # past the TTL
    other = read_question(wires["X._.1.100.88.handle.idres.internal."])
    assert other is not None
    assert cache.answer(wires["X._.1.100.88.handle.idres.internal."], other) is None
    cache.keep(other, answer_to(wires[NAME]), 10 * MAX_KEEP, None)
    now[0] += MAX_KEEP + 1  # kept no longer than MAX_KEEP, whatever the TTL
    assert cache.answer(wires["X._.1.100.88.handle.idres.internal."], other) is None
    cache.keep(other, answer_to(wires[NAME]), 60, None)
    cache.forget(None)
    assert len(cache) == 0


def test_a_full_cache_forgets_its_oldest() -> None:
    cache = WireCache(max_entries=2)
    names = [f"N{i}._.1.100.88.handle.idres.internal." for i in range(3)]
    for name in names:
        wire = query(name)
        asked = read_question(wire)
        assert asked is not None
        cache.keep(asked, answer_to(wire), 60, name)
    assert len(cache) == 2
    oldest = read_question(query(names[0]))
    assert oldest is not None
    assert cache.answer(query(names[0]), oldest) is None
