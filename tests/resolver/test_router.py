"""The front door's router: request bytes in, a decision out (no sockets)."""

from __future__ import annotations

import pytest

from resolver.router import MAX_HEAD, Kind, Read, Verdict, decide

RESERVED = frozenset((b"api", b"metrics", b"healthz", b"openapi.json"))
GET = b"GET /api/handles/88.100.1/A HTTP/1.1\r\nHost: x\r\n\r\n"


def read(data: bytes, start: int = 0) -> Read:
    decision = decide(data, start, RESERVED)
    assert isinstance(decision, Read), decision
    return decision


@pytest.mark.parametrize(
    ("data", "kind", "target", "query"),
    [
        (GET, Kind.HANDLE, b"88.100.1/A", b""),
        (
            b"GET /api/handles/88.100.1%2FA?type=URL&index=1,2 HTTP/1.1\r\n\r\n",
            Kind.HANDLE,
            b"88.100.1%2FA",
            b"type=URL&index=1,2",
        ),
        (
            b"GET /api/handles/x?recursive=false&publicOnly HTTP/1.1\r\n\r\n",
            Kind.HANDLE,
            b"x",
            b"recursive=false&publicOnly",
        ),
        (b"GET /88.100.1/ABC HTTP/1.1\r\n\r\n", Kind.PROXY, b"88.100.1/ABC", b""),
        (
            b"GET /01/09506000134352/10/LOT7?noredirect HTTP/1.1\r\n\r\n",
            Kind.PROXY,
            b"01/09506000134352/10/LOT7",
            b"noredirect",
        ),
    ],
)
def test_the_reads_it_keeps(data: bytes, kind: Kind, target: bytes, query: bytes) -> None:
    decision = read(data)
    assert (decision.kind, decision.target, decision.query) == (kind, target, query)
    assert decision.size == len(data)
    assert decision.keep_alive


@pytest.mark.parametrize(
    "data",
    [
        # other methods and routes: the application's
        b"POST /api/handles/x HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        b"PUT /api/handles/x HTTP/1.1\r\n\r\n",
        b"HEAD /api/handles/x HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\n\r\n",
        b"GET /api/directory HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET /api/handles/ HTTP/1.1\r\n\r\n",
        b"GET /api/handles/88.100.1/A/history HTTP/1.1\r\n\r\n",
        # parameters the door does not answer
        b"GET /api/handles/x?auth=true HTTP/1.1\r\n\r\n",
        b"GET /api/handles/x?proof=true HTTP/1.1\r\n\r\n",
        b"GET /api/handles/x?type=URL&other=1 HTTP/1.1\r\n\r\n",
        b"GET /88.100.1/A?linkType=all HTTP/1.1\r\n\r\n",
        # a body, a signature, an upgrade: never answered as a plain read
        b"GET /api/handles/x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        b"GET /api/handles/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /api/handles/x HTTP/1.1\r\nSignature: sig1=:AA==:\r\n\r\n",
        b"GET /api/handles/x HTTP/1.1\r\nAuthorization: x\r\n\r\n",
        b"GET /api/handles/x HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        b"GET /api/handles/x HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        # heads the application's parser must judge (RFC 9112 §2.2, §3, §5)
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET /api/handles/x HTTP/2.0\r\n\r\n",
        b"GET  /api/handles/x HTTP/1.1\r\n\r\n",
        b"GET /api/handles/x HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET /api/handles/x HTTP/1.1\r\n folded\r\n\r\n",
        b"GET /api/handles/x HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
        b"GET /api/handles/x HTTP/1.1\r\nHo\x00st: x\r\n\r\n",
        b"GET /api/handles/x HTTP/1.1\r\nHo(st: x\r\n\r\n",
        b"GET /api/handles/x\x7f HTTP/1.1\r\n\r\n",
        b"GET /api/handles/x#frag HTTP/1.1\r\n\r\n",
        b"GET http://x/api/handles/x HTTP/1.1\r\n\r\n",
        b"\r\nGET /api/handles/x HTTP/1.1\r\n\r\n",
        b"GET /api/handles/x HTTP/1.1\r\nIdres-Via: a\r\nIdres-Via: b\r\n\r\n",
        b"GET /api/handles/x HTTP/1.1\r\nIdres-Via: " + b",".join([b"n"] * 33) + b"\r\n\r\n",
        b"GET /api/handles/" + b"A" * MAX_HEAD + b" HTTP/1.1\r\n\r\n",
    ],
)
def test_everything_else_goes_to_the_application(data: bytes) -> None:
    assert decide(data, 0, RESERVED) is Verdict.HANDOFF


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GE",
        b"GET /api/handles/x HTTP/1.1\r\n",
        b"GET /api/handles/x HTTP/1.1\r\nHost: x\r\n\r",
    ],
)
def test_an_unfinished_head_waits_for_more(data: bytes) -> None:
    assert decide(data, 0, RESERVED) is Verdict.NEED


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"GET /api/handles/x HTTP/1.1\r\n\r\n", True),
        (b"GET /api/handles/x HTTP/1.1\r\nConnection: close\r\n\r\n", False),
        (b"GET /api/handles/x HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n", False),
        # 1.0 connections are closed after their answer, keep-alive asked or not
        (b"GET /api/handles/x HTTP/1.0\r\n\r\n", False),
        (b"GET /api/handles/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", False),
    ],
)
def test_whether_the_connection_stays_open(head: bytes, keep_alive: bool) -> None:
    assert read(head).keep_alive is keep_alive


def test_pipelined_requests_are_read_one_after_another() -> None:
    data = GET + b"GET /88.100.1/B HTTP/1.1\r\nAccept: text/html\r\n\r\n" + b"POST /x"
    first = read(data)
    second = read(data, first.size)
    assert (second.kind, second.target, second.accept) == (Kind.PROXY, b"88.100.1/B", b"text/html")
    assert decide(data, first.size + second.size, RESERVED) is Verdict.HANDOFF


def test_the_headers_it_passes_on() -> None:
    decision = read(
        b"GET /api/handles/did:bid:x HTTP/1.1\r\nACCEPT: application/did-resolution\r\n"
        b"accept: text/html\r\nIdres-Via: super, backbone-1\r\nContent-Length: 0\r\n\r\n"
    )
    assert decision.accept == b"application/did-resolution, text/html"
    assert decision.via == ("super", "backbone-1")


def test_a_browser_reads_language_is_passed_on() -> None:
    # a Digital Link's default may depend on it (gs1:defaultLinkMulti)
    decision = read(
        b"GET /01/06901234567892 HTTP/1.1\r\nAccept-Language: fr-CH, fr;q=0.9\r\n"
        b"accept-language: en;q=0.5\r\n\r\n"
    )
    assert (decision.kind, decision.accept_language) == (
        Kind.PROXY,
        b"fr-CH, fr;q=0.9, en;q=0.5",
    )
