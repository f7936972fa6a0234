"""Fuzzing, briefly, of the front door's request routing, through its smallest seam:
FrontProtocol fed bytes over an in-memory transport (no socket), in front of a real
Resolver and directory and an in-memory application. Every request it keeps is
answered with a status it means, never a 500 of its own making or an exception out of
data_received; what it does not keep reaches the application whole."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from benchmarks.fuzz import seeds
from benchmarks.fuzz.targets import TARGETS
from tests.fuzz.strategies import FUZZ, inputs, run


def test_every_seed_gets_answers() -> None:
    assert all(TARGETS["front"].call(seed) for seed in seeds.front())


@FUZZ
@given(data=inputs(seeds.front()))
def test_raw_requests_are_answered_or_refused(data: bytes) -> None:
    run("front", data)


_LINE = st.sampled_from(
    [
        b"GET ",
        b"HEAD ",
        b"POST ",
        b"PRI * HTTP/2.0",
        b"/api/handles/",
        b"88.100.1/X",
        b"%",
        b"%FF",
        b"%2F",
        b"?",
        b"#",
        b" HTTP/1.1",
        b" HTTP/1.0",
        b"\r\n",
        b"\n",
        b"Host: x",
        b"Connection: close",
        b"Connection: keep-alive",
        b"Connection: Upgrade",
        b"Upgrade: h2c",
        b"Transfer-Encoding: chunked",
        b"Content-Length: 5",
        b"Content-Length: -1",
        b"0\r\n\r\n",
        b"5\r\nhello\r\n",
        b"\x00",
        b"\xff",
        b"06901234567892",
        b"did:bid:",
        b"https://h/01/",
    ]
)


@FUZZ
@given(chunk=st.integers(0, 255), pieces=st.lists(_LINE, max_size=24))
def test_requests_built_from_http_pieces_are_answered(chunk: int, pieces: list[bytes]) -> None:
    run("front", bytes([chunk]) + b"".join(pieces))


def test_every_dns_seed_is_answered() -> None:
    assert all(TARGETS["dns"].call(seed) for seed in seeds.dns_queries())


@FUZZ
@given(data=inputs(seeds.dns_queries()))
def test_dns_packets_are_answered_or_dropped_never_crash(data: bytes) -> None:
    run("dns", data)


def test_every_handle_seed_is_answered() -> None:
    assert all(TARGETS["handle"].call(seed) for seed in seeds.handle_requests())


@FUZZ
@given(data=inputs(seeds.handle_requests()))
def test_handle_datagrams_are_answered_or_dropped_never_crash(data: bytes) -> None:
    run("handle", data)
