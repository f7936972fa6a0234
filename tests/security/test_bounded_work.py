"""What one anonymous client can make a node do: bounded, whatever it sends.

Slow-loris connections, batch lookups that fan out upstream, cache-skipping reads,
script smuggled through an upstream answer, and the Host header of a Digital Link.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web

from registry.api import RegistryConfig, create_app
from registry.store import PostgresStore
from schemas.identifiers.prefix import parse_prefix
from tests.resolver.conftest import Net, record

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]
SLOW = 10  # slow-loris connections


Held = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _held(address: tuple[str, int], first: bytes) -> Held:
    """A connection that sent ``first`` and then nothing (kept open by its writer)."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(first)
    await writer.drain()
    return reader, writer


async def _closed(held: Held) -> bytes:
    """What the server sent before it closed the connection (b"" for nothing)."""
    reader, writer = held
    try:
        async with asyncio.timeout(30):  # a guard against hanging, not a timing claim
            return await reader.read()
    finally:
        writer.close()


@pytest_asyncio.fixture
async def fast(net: Net) -> AsyncIterator[tuple[str, int]]:
    """The super node's one port, its front door's clocks shortened."""
    door = net.doors["super"]
    door.header_timeout = door.idle_timeout = 0.5
    host, port = net.urls["super"].removeprefix("http://").split(":")
    yield host, int(port)


async def test_slow_loris_connections_to_the_front_door_are_closed(
    net: Net, fast: tuple[str, int]
) -> None:
    await net.stores["sub"].put(record("88.100.1/LORIS"), actor="t")
    # half a request line, headers without their end, and a connection that says nothing
    dribblers = [await _held(fast, b"GET /api/handles/88.100.1/LO") for _ in range(SLOW // 2)]
    dribblers += [
        await _held(fast, b"GET /api/handles/88.100.1/LORIS HTTP/1.1\r\nHost: x\r\n")
        for _ in range(SLOW // 2)
    ]
    silent = await _held(fast, b"")
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://{fast[0]}:{fast[1]}/api/handles/88.100.1/LORIS") as resp,
    ):
        assert resp.status == 200  # answered while the slow ones hold their sockets
    answers = await asyncio.gather(*(_closed(r) for r in dribblers))
    assert [a[:21] for a in answers] == [b"HTTP/1.1 408 Request "] * SLOW
    assert await _closed(silent) == b""


async def test_slow_loris_connections_to_the_api_listener_are_closed(pool: asyncpg.Pool) -> None:
    config = RegistryConfig(served=(parse_prefix("88.100"),))
    app = create_app(PostgresStore(pool), config, keepalive_timeout=0.5)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    address = sock.getsockname()
    try:
        slow = [
            await _held(address, b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n")
            for _ in range(SLOW)
        ]
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://{address[0]}:{address[1]}/openapi.json") as resp,
        ):
            assert resp.status == 200
        closed = await asyncio.gather(*(_closed(r) for r in slow))
        assert all(b"200 OK" not in c for c in closed)
    finally:
        await runner.cleanup()


async def test_a_batch_resolve_asks_the_next_node_a_bounded_number_of_times(net: Net) -> None:
    # 1,000 identifiers nobody asked for yet: each a lookup of the node below
    identifiers = [f"88.100.1/FAN{i}" for i in range(1000)]
    async with (
        aiohttp.ClientSession() as s,
        s.post(net.urls["super"] + "/api/resolve", json={"identifiers": identifiers}) as resp,
    ):
        body = await resp.json()
    assert resp.status == 200
    statuses = [r["status"] for r in body["results"]]
    asked = statuses.count(404)  # looked up below (nothing is registered there)
    refused = [r for r in body["results"] if r["status"] == 429]
    assert asked == 100
    assert len(refused) == 900
    assert "ask again" in refused[0]["message"]
    async with aiohttp.ClientSession() as s, s.get(net.urls["super"] + "/metrics") as resp:
        metrics = await resp.text()
    assert 'idres_upstream_requests_total{node="super",result="not_found"} 100' in metrics


async def test_auth_true_is_rate_limited_per_client(net: Net) -> None:
    await net.stores["sub"].put(record("88.100.1/AUTH"), actor="t")
    url = net.urls["super"] + "/api/handles/88.100.1/AUTH"
    async with aiohttp.ClientSession() as s:
        statuses = []
        for _ in range(12):  # the burst is 10, refilled at 1 a second
            async with s.get(url + "?auth=true") as resp:
                statuses.append(resp.status)
                last = await resp.json()
        async with s.get(url) as resp:
            plain = resp.status
    assert statuses.count(200) <= 11  # a second may pass: one more token
    assert statuses[-1] == 429
    assert "auth=true" in last["message"]
    assert plain == 200  # the cached answer is still everyone's


async def test_script_in_an_upstream_answer_never_reaches_the_page(net: Net) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.get(net.urls["super"] + "/88.55/X?noredirect", allow_redirects=False) as resp,
    ):
        text = await resp.text()
    assert resp.content_type == "text/html"
    assert "<script>" not in text
    assert "<img" not in text
    assert resp.status == 502  # the values are not what a record holds: not shown


async def test_script_in_a_stored_value_is_escaped(net: Net) -> None:
    from schemas.record import DataFormat, HandleValue, Record

    script = HandleValue(
        index=1,
        type="DESC",
        format=DataFormat.STRING,
        value="<script>alert(1)</script>",
        timestamp=int(time.time()),
    )
    await net.stores["sub"].put(Record(handle="88.100.1/XSS", values=(script,)), actor="t")
    async with (
        aiohttp.ClientSession() as s,
        s.get(net.urls["super"] + "/88.100.1/XSS?noredirect") as resp,
    ):
        text = await resp.text()
    assert resp.status == 200
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<td>1</td>" in text  # the index and the ttl, as numbers
    assert "<td>86400</td>" in text


async def test_the_host_header_cannot_change_which_product_a_digital_link_names(
    net: Net,
) -> None:
    await net.stores["sub"].put(record("06901234567892", "https://example.com/tea"), actor="t")
    await net.stores["sub"].put(record("06901234567908", "https://evil.example/"), actor="t")
    # the path names 06901234567892; the Host header tries to put another key first
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            net.urls["super"] + "/01/06901234567892",
            headers={"Host": "e/01/06901234567908?"},
            allow_redirects=False,
        ) as resp,
    ):
        location = resp.headers.get("Location")
    assert (resp.status, location) == (307, "https://example.com/tea")
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            net.urls["super"] + "/01/06901234567892",
            headers={"Host": "evil.example", "Accept": "application/linkset+json"},
        ) as resp,
    ):
        linkset = await resp.json(content_type=None)
    assert linkset["linkset"][0]["anchor"] == "https://id.gs1.org/01/06901234567892"


async def test_anonymous_history_shows_what_changed_and_when_not_who(net: Net) -> None:
    from schemas.record import DataFormat, HandleValue, Permissions, Record

    now = int(time.time())
    private = HandleValue(
        index=2,
        type="SECRET_KIND",
        format=DataFormat.STRING,
        value="s",
        timestamp=now,
        permissions=Permissions(public_read=False),
    )
    base = record("88.100.1/HIST")
    await net.stores["sub"].put(base, actor="300:0.NA/88.100.1")
    await net.stores["sub"].put(
        Record(handle=base.handle, values=(*base.values, private)), actor="300:0.NA/88.100.1"
    )
    async with (
        aiohttp.ClientSession() as s,
        s.get(net.urls["sub"] + "/api/handles/88.100.1/HIST/history") as resp,
    ):
        body = await resp.json()
    assert resp.status == 200
    entries = body["history"]
    assert [e["version"] for e in entries] == [1, 2]
    assert all("actor" not in e for e in entries)
    assert all("at" in e for e in entries)
    assert entries[0]["changes"] == [{"index": 1, "type": "URL", "change": "added"}]
    assert entries[1]["changes"] == [{"index": 2, "change": "added"}]  # its type is private
    assert "SECRET_KIND" not in str(body)
    with contextlib.suppress(KeyError):
        assert all(v["index"] != 2 for v in entries[1]["values"])


async def test_auth_true_forwarded_by_a_peer_node_is_not_counted_again(net: Net) -> None:
    """A node asks the one below for its clients' auth=true lookups, each already
    budgeted where it entered: from that node's address, naming it in Idres-Via, the
    lookups are not counted against it (or one client would use up everyone's)."""
    await net.stores["sub"].put(record("88.100.1/PEER"), actor="t")
    url = net.urls["backbone"] + "/api/handles/88.100.1/PEER?auth=true"
    async with aiohttp.ClientSession() as s:
        forwarded = []
        for _ in range(15):
            async with s.get(url, headers={"Idres-Via": "super"}) as resp:
                forwarded.append(resp.status)
        # a client that names a node it is not (its address is not that node's URL)
        # is still counted: here the nodes' URLs are on 127.0.0.1, so name a stranger
        strangers = []
        for _ in range(15):
            async with s.get(url, headers={"Idres-Via": "nobody"}) as resp:
                strangers.append(resp.status)
    assert forwarded == [200] * 15
    assert strangers[-1] == 429
