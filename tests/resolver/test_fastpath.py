"""The lean hot-path listener: the same answers as the API, in order, through real nodes."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from resolver.fastpath import serve_fast
from tests.resolver.conftest import Net, record

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]


@pytest_asyncio.fixture
async def fast(net: Net) -> AsyncIterator[str]:
    sock = socket.create_server(("127.0.0.1", 0))
    server = await serve_fast(net.resolvers["super"], sock)
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    server.close()
    await server.wait_closed()


def statuses_of(answer: bytes) -> list[int]:
    """Status codes of back-to-back responses (a body runs straight into the next)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


async def raw(address: str, data: bytes) -> bytes:
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    try:
        async with asyncio.timeout(5):
            return await reader.read()  # until the server closes
    finally:
        writer.close()


async def test_answers_are_the_apis_bytes_then_come_from_the_cache(net: Net, fast: str) -> None:
    await net.stores["sub"].put(record("88.100.1/FAST"), actor="t")
    async with aiohttp.ClientSession() as s:
        async with s.get(net.urls["super"] + "/api/handles/88.100.9/OTHER") as resp:
            assert resp.status == 404
        bodies = []
        for _ in range(2):
            async with s.get(f"http://{fast}/api/handles/88.100.1/FAST") as resp:
                bodies.append((resp.status, resp.headers["Idres-Source"], await resp.read()))
        async with s.get(net.urls["super"] + "/api/handles/88.100.1/FAST") as resp:
            via_api = await resp.read()
    assert [b[:2] for b in bodies] == [(200, "upstream"), (200, "cache")]
    assert bodies[0][2] == bodies[1][2] == via_api


@pytest.mark.parametrize(
    ("request_line", "status", "code"),
    [
        (b"GET /api/handles/88.100.1/NONE HTTP/1.1", 404, 100),
        (b"GET /api/handles/06901234567891 HTTP/1.1", 400, 102),
        (b"GET /api/handles/%FF HTTP/1.1", 400, 102),
        (b"GET /api/handles/88.100.1/X?auth=true HTTP/1.1", 404, 100),
        (b"GET /metrics HTTP/1.1", 404, 100),
        (b"PUT /api/handles/88.100.1/X HTTP/1.1", 405, 2),
        (b"GET /api/handles/88.77/HANG HTTP/1.1", 504, 2),
    ],
)
async def test_everything_else_gets_a_clear_json_answer(
    net: Net, fast: str, request_line: bytes, status: int, code: int
) -> None:
    answer = await raw(fast, request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), head
    assert b'"responseCode":%d' % code in body


async def test_pipelined_requests_are_answered_in_order(net: Net, fast: str) -> None:
    for n in range(3):
        await net.stores["sub"].put(record(f"88.100.1/P{n}"), actor="t")
    requests = b"".join(
        b"GET /api/handles/88.100.1/%s HTTP/1.1\r\nHost: x\r\n\r\n" % p
        for p in (b"P0", b"NOPE", b"P1", b"bad%20id", b"P2")
    )
    answer = await raw(
        fast, requests + b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    statuses = statuses_of(answer)
    handles = [part for part in (b"P0", b"P1", b"P2") if part in answer]
    assert statuses == [200, 404, 200, 400, 200, 404]
    assert (
        answer.index(b"88.100.1/P0") < answer.index(b"88.100.1/P1") < answer.index(b"88.100.1/P2")
    )
    assert handles == [b"P0", b"P1", b"P2"]


async def test_malformed_http_is_a_400_and_the_connection_closes(fast: str) -> None:
    answer = await raw(fast, b"NOT HTTP AT ALL\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"malformed HTTP request" in answer


async def test_a_malformed_request_after_pipelined_ones_comes_last(net: Net, fast: str) -> None:
    await net.stores["sub"].put(record("88.100.1/Q0"), actor="t")
    answer = await raw(
        fast,
        b"GET /api/handles/88.100.1/Q0 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /api/handles/bad id HTTP/1.1\r\n\r\n",
    )
    statuses = statuses_of(answer)
    assert statuses == [200, 400]


# --- regressions from review: a fake, slow resolver drives the listener -----------------


class SlowResolver:
    """Cache misses only; each lookup takes ``delay`` seconds."""

    def __init__(self, delay: float = 0.2) -> None:
        from resolver.metrics import Metrics

        self.delay = delay
        self.metrics = Metrics("fake")
        self.started = 0

        class NoCache:
            def get(self, key: str) -> None:
                return None

        self.cache = NoCache()

    async def resolve(self, ident: object) -> object:
        from resolver.service import Answer

        self.started += 1
        await asyncio.sleep(self.delay)
        handle = ident.canonical  # type: ignore[attr-defined]
        return Answer(
            status=200,
            body=b'{"responseCode":1,"handle":"%s"}' % handle.encode(),
            source="upstream",
        )


@pytest_asyncio.fixture
async def slow() -> AsyncIterator[tuple[str, SlowResolver]]:
    resolver = SlowResolver()
    sock = socket.create_server(("127.0.0.1", 0))
    server = await serve_fast(resolver, sock)  # type: ignore[arg-type]
    yield f"127.0.0.1:{sock.getsockname()[1]}", resolver
    server.close()
    await server.wait_closed()


async def test_one_client_leaving_does_not_cancel_anothers_shared_lookup(
    net: Net, fast: str
) -> None:
    await net.stores["sub"].put(record("88.100.1/SHARED"), actor="t")
    await net.stores["sub"].put(record("88.100.1/OTHER"), actor="t")
    host, port = fast.split(":")
    _, leaving = await asyncio.open_connection(host, int(port))
    leaving.write(b"GET /api/handles/88.100.1/SHARED HTTP/1.1\r\nHost: x\r\n\r\n")
    await leaving.drain()
    staying = asyncio.ensure_future(
        raw(
            fast,
            b"GET /api/handles/88.100.1/SHARED HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /api/handles/88.100.1/OTHER HTTP/1.1\r\nHost: x\r\nConnection: close"
            b"\r\n\r\n",
        )
    )
    await asyncio.sleep(0)
    leaving.close()  # the first asker of SHARED goes away mid-lookup
    answer = await staying
    assert statuses_of(answer) == [200, 200]
    assert answer.index(b"88.100.1/SHARED") < answer.index(b"88.100.1/OTHER")


async def test_too_many_pipelined_requests_get_a_503_and_a_close(
    slow: tuple[str, SlowResolver],
) -> None:
    address, resolver = slow
    requests = b"".join(
        b"GET /api/handles/88.100.1/R%d HTTP/1.1\r\nHost: x\r\n\r\n" % n for n in range(500)
    )
    answer = await raw(address, requests)
    statuses = statuses_of(answer)
    assert statuses[-1] == 503
    assert set(statuses[:-1]) == {200}
    assert resolver.started <= 64  # no more lookups than answers owed


async def test_an_overlong_url_is_414_without_holding_it(slow: tuple[str, SlowResolver]) -> None:
    answer = await raw(slow[0], b"GET /api/handles/" + b"A" * 100_000)
    assert statuses_of(answer) == [414]


async def test_a_half_closed_client_still_gets_its_answers(slow: tuple[str, SlowResolver]) -> None:
    host, port = slow[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /api/handles/88.100.1/SLOW HTTP/1.1\r\nHost: x\r\n\r\n")
    writer.write_eof()  # as nc -N does
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    assert statuses_of(answer) == [200]


async def test_head_and_upgrade_requests_keep_the_stream_in_step(
    slow: tuple[str, SlowResolver],
) -> None:
    answer = await raw(
        slow[0],
        b"HEAD /api/handles/x HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /api/handles/88.100.1/A HTTP/1.1\r\nHost: x\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert statuses_of(answer) == [405, 200]
    assert b"Content-Length: 0\r\n" in answer
    upgraded = await raw(
        slow[0],
        b"GET /api/handles/88.100.1/A HTTP/1.1\r\nHost: x\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    assert statuses_of(upgraded) == [400]
