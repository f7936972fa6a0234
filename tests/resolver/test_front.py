"""One port a node: the front door answers the common reads itself and hands every
other request to the application, on the same connection, in order."""

from __future__ import annotations

import asyncio
import dataclasses
import re

import aiohttp
import pytest

from registry import httpsig
from resolver.front import Shedder
from schemas.record import Permissions, Record
from tests.resolver.conftest import Net, record

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]
DID = "did:bid:ab12:ef" + "1" * 22


def statuses_of(answer: bytes) -> list[int]:
    """Status codes of back-to-back responses (a body runs straight into the next)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", answer)]


async def raw(url: str, data: bytes, *, half_close: bool = False) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    if half_close:
        writer.write_eof()
    await writer.drain()
    try:
        async with asyncio.timeout(10):
            return await reader.read()  # until the server closes
    finally:
        writer.close()


def by_app(head: bytes) -> bool:
    """Whether aiohttp wrote this answer (it names itself; the door does not)."""
    return b"aiohttp" in head


@pytest.mark.parametrize(
    ("request_line", "status", "app"),
    [
        # the reads the door answers
        (b"GET /api/handles/88.100.1/R1", 200, False),
        (b"GET /api/handles/88.100.1/R1?type=URL&index=1", 200, False),
        (b"GET /api/handles/88.100.1/R1?type=EMAIL", 200, False),
        (b"GET /api/handles/88.100.1/NONE", 404, False),
        (b"GET /api/handles/06901234567891", 400, False),
        (b"GET /api/handles/%FF", 400, False),
        (b"GET /api/handles/88.100.1/R1?recursive=maybe", 400, False),
        (b"GET /88.100.1/R1", 302, False),
        (b"GET /88.100.1/R1?noredirect", 200, False),
        # and everything else, by the application behind it, on the same port
        (b"GET /api/handles/88.100.1/R1?auth=true", 200, True),
        (b"GET /api/handles/88.100.1/R1/history", 404, True),
        (b"GET /metrics", 200, True),
        (b"GET /healthz", 200, True),
        (b"GET /api/directory", 200, True),
        (b"GET /openapi.json", 200, True),
        # a write the super node does not hold: 400/301 with Location, before any signature
        (b"PUT /api/handles/88.100.1/R1", 400, True),
        (b"DELETE /api/handles/88.100.1/R1", 400, True),
        (b"GET /api/nothing-here", 404, True),
        (b"NOT HTTP AT ALL", 400, True),
    ],
)
async def test_every_request_is_answered_on_the_one_port(
    net: Net, request_line: bytes, status: int, app: bool
) -> None:
    await net.stores["sub"].put(record("88.100.1/R1"), actor="t")
    answer = await raw(
        net.urls["super"], request_line + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert statuses_of(head) == [status], answer[:300]
    assert by_app(head) is app, head
    if status >= 400 and b"aiohttp" not in body[:40] and body.startswith(b"{"):
        assert b'"responseCode"' in body
        assert b'"message"' in body


async def test_the_door_and_the_application_send_the_same_answers(net: Net) -> None:
    await net.stores["sub"].put(record("88.100.1/SAME"), actor="t")
    wanted = [
        b"/api/handles/88.100.1/SAME",
        b"/api/handles/88.100.1/SAME?type=URL",
        b"/api/handles/88.100.1/MISSING",
        b"/88.100.1/SAME?noredirect",
    ]
    door = b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path for path in wanted)
    # a first request only the application answers: the rest of the connection is its
    app = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + door
    close = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    by_door = await raw(net.urls["super"], door + close)
    by_app_ = await raw(net.urls["super"], app + close)

    def bodies(answer: bytes) -> list[tuple[int, bytes]]:
        out = []
        for part in re.split(rb"(?=HTTP/1\.1 \d{3} )", answer)[1:]:
            head, _, body = part.partition(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", head, re.I)[1])  # type: ignore[index]
            out.append((statuses_of(head)[0], body[:length]))
        return out

    assert bodies(by_door)[: len(wanted)] == bodies(by_app_)[1 : 1 + len(wanted)]
    assert [s for s, _ in bodies(by_door)] == [200, 200, 404, 200, 200]


async def test_did_and_digital_link_reads_through_the_door(net: Net) -> None:
    await net.stores["sub"].put(record("06901234567892"), actor="t")
    async with aiohttp.ClientSession() as s:
        async with s.get(
            net.urls["super"] + "/01/06901234567892/10/LOT7", allow_redirects=False
        ) as resp:
            assert resp.status == 307
            assert resp.headers["Location"] == "https://example.com/p"
            assert "aiohttp" not in resp.headers.get("Server", "")
        async with s.get(
            net.urls["super"] + "/01/06901234567892",
            headers={"Accept": "application/linkset+json"},
        ) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/linkset+json"
        async with s.get(
            net.urls["super"] + "/api/handles/" + DID,
            headers={"Accept": "application/did-resolution"},
        ) as resp:
            body = await resp.json(content_type=None)
            assert resp.status == 404
            assert body["didResolutionMetadata"]["error"] == "notFound"


async def test_pipelined_reads_then_a_write_then_reads_come_back_in_order(net: Net) -> None:
    for n in range(3):
        await net.stores["sub"].put(record(f"88.100.1/P{n}"), actor="t")
    reads = b"".join(
        b"GET /api/handles/88.100.1/%s HTTP/1.1\r\nHost: x\r\n\r\n" % p for p in (b"P0", b"NOPE")
    )
    put = (
        b"PUT /api/handles/88.100.1/P9 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Content-Type: application/json\r\n\r\n{}"
    )
    later = b"GET /api/handles/88.100.1/P1 HTTP/1.1\r\nHost: x\r\n\r\n"
    last = b"GET /api/handles/88.100.1/P2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = await raw(net.urls["super"], reads + put + later + last)
    assert statuses_of(answer) == [200, 404, 400, 200, 200]  # the write is misdirected
    assert (
        answer.index(b"88.100.1/P0") < answer.index(b"88.100.1/P1") < answer.index(b"88.100.1/P2")
    )


async def test_a_signed_read_is_the_applications(net: Net) -> None:
    """A signature may see values that are not public: never answered from the cache."""
    await net.stores["sub"].put(record("88.100.1/SIGNED"), actor="t")
    answer = await raw(
        net.urls["super"],
        b"GET /api/handles/88.100.1/SIGNED HTTP/1.1\r\nHost: x\r\n"
        b"Signature-Input: sig1=();created=1\r\nSignature: sig1=:AAAA:\r\n"
        b"Connection: close\r\n\r\n",
    )
    head = answer.partition(b"\r\n\r\n")[0]
    assert by_app(head)
    assert statuses_of(head)[0] in (400, 401, 403)
    assert httpsig  # the registry's signatures decide it, not the door


async def test_too_many_pipelined_requests_get_a_503_and_a_close(net: Net) -> None:
    requests = b"".join(
        b"GET /api/handles/88.77/R%d HTTP/1.1\r\nHost: x\r\n\r\n" % n for n in range(300)
    )
    answer = await raw(net.urls["super"], requests)
    statuses = statuses_of(answer)
    assert statuses[-1] == 503
    assert set(statuses[:-1]) == {504}  # the hanging node, 0.5 s each, all at once
    assert len(statuses) <= 65  # no more lookups started than answers owed


async def test_a_half_closed_client_still_gets_its_answers(net: Net) -> None:
    await net.stores["sub"].put(record("88.100.1/HALF"), actor="t")
    answer = await raw(
        net.urls["super"],
        b"GET /api/handles/88.100.1/HALF HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /api/handles/88.100.1/NONE HTTP/1.1\r\nHost: x\r\n\r\n",
        half_close=True,
    )
    # (a connection handed to aiohttp closes at the client's EOF: aiohttp's own way)
    assert statuses_of(answer) == [200, 404]


async def test_one_client_leaving_does_not_cancel_anothers_shared_lookup(net: Net) -> None:
    await net.stores["sub"].put(record("88.100.1/SHARED"), actor="t")
    await net.stores["sub"].put(record("88.100.1/OTHER"), actor="t")
    host, port = net.urls["super"].removeprefix("http://").split(":")
    _, leaving = await asyncio.open_connection(host, int(port))
    leaving.write(b"GET /api/handles/88.100.1/SHARED HTTP/1.1\r\nHost: x\r\n\r\n")
    await leaving.drain()
    staying = asyncio.ensure_future(
        raw(
            net.urls["super"],
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


async def test_a_head_sent_too_slowly_is_a_408(net: Net) -> None:
    door = net.doors["super"]
    door.header_timeout = 0.5
    host, port = net.urls["super"].removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /api/handles/88.100.1/SLOW HTTP/1.1\r\nHost: x\r\n")  # and no more
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    assert statuses_of(answer) == [408]
    assert b"Connection: close" in answer


# --- overload: refused at once, not queued ----------------------------------------------


class Late(Shedder):
    """A loop that has run late for a while: ``very`` also refuses cached answers."""

    def __init__(self, *, very: bool) -> None:
        super().__init__()
        self.very = very

    def admit(self, now: float, *, cheap: bool) -> bool:
        return cheap and not self.very


@pytest.mark.parametrize("very", [False, True])
async def test_a_late_loop_sheds_with_503_and_retry_after(net: Net, very: bool) -> None:
    await net.stores["sub"].put(record("88.100.1/HOT"), actor="t")
    async with aiohttp.ClientSession() as s:
        async with s.get(net.urls["super"] + "/api/handles/88.100.1/HOT") as resp:
            assert resp.status == 200  # now cached
        door = net.doors["super"]
        door.shedder = Late(very=very)
        for path in ("/api/handles/88.100.1/HOT", "/api/handles/88.100.1/COLD", "/metrics"):
            async with s.get(net.urls["super"] + path) as resp:
                body = await resp.read()
                if path.endswith("HOT") and not very:
                    assert resp.status == 200
                    continue
                assert resp.status == 503, path
                assert resp.headers["Retry-After"] == "1"
                assert b'"responseCode":2' in body
        door.shedder = Shedder()  # the loop is on time again: answered at once
        door.shedder.observe(0.0, door.now)
        async with s.get(net.urls["super"] + "/api/handles/88.100.1/COLD") as resp:
            assert resp.status == 404
        async with s.get(net.urls["super"] + "/metrics") as resp:
            metrics = await resp.text()
    shed = dict(re.findall(r'idres_shed_total\{node="super",cost="(\w+)"\} (\d+)', metrics))
    assert shed == {"cached": "1" if very else "0", "lookup": "1", "handoff": "1"}


async def test_a_node_below_that_sheds_is_a_503_with_retry_after_here(net: Net) -> None:
    await net.stores["sub"].put(record("88.100.1/BUSY"), actor="t")
    net.doors["backbone"].shedder = Late(very=False)  # the next node refuses lookups
    url = net.urls["super"] + "/api/handles/88.100.1/BUSY"
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as resp:
            body = await resp.json()
            assert resp.status == 503  # not 502: the client may ask again, as told
            assert resp.headers["Retry-After"] == "1"
            assert body["responseCode"] == 2
            assert "HTTP 503" in body["message"]
        net.doors["backbone"].shedder = Shedder()  # the next node has room again
        net.doors["backbone"].shedder.observe(0.0, net.doors["backbone"].now)
        async with s.get(url) as resp:  # nothing was cached from the refusal
            assert resp.status == 200


async def test_a_write_shed_while_its_body_arrives_gets_its_503_not_a_reset(net: Net) -> None:
    """A client (or the node's edge) writes a whole request before it reads: the door's
    refusal must still reach it after the body it never read (RFC 9112 §9.6). A close
    with that body unread reset the connection, and the node's edge answered 502."""
    net.doors["super"].shedder = Late(very=False)
    body = b"x" * (4 << 20)  # past any socket buffer: the door must read it to be heard
    host, port = net.urls["super"].removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"PUT /api/handles/88.100.1/BIG HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    async with asyncio.timeout(10):
        await writer.drain()  # a reset here, or below, was the defect
        answer = await reader.read()
    writer.close()
    assert statuses_of(answer) == [503]
    assert b"Retry-After: 1\r\n" in answer
    assert b"Connection: close" in answer


async def test_every_401_names_a_challenge(net: Net) -> None:
    """RFC 9110 §11.6.1: a 401 carries WWW-Authenticate, whether the door answers it (a
    record with no public value) or the application does (an unsigned write)."""
    private = dataclasses.replace(
        record("88.100.1/SECRET").values[0],
        permissions=Permissions(
            admin_read=True, admin_write=True, public_read=False, public_write=False
        ),
    )
    await net.stores["sub"].put(Record(handle="88.100.1/SECRET", values=(private,)), actor="t")
    async with aiohttp.ClientSession() as s:
        async with s.get(net.urls["sub"] + "/api/handles/88.100.1/SECRET") as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"] == 'Handle realm="idres"'
        async with s.put(net.urls["sub"] + "/api/handles/88.100.1/NEW", json=[]) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"] == 'Handle realm="idres"'
        async with s.get(net.urls["sub"] + "/api/handles/88.100.1/NONE") as resp:
            assert resp.status == 404
            assert "WWW-Authenticate" not in resp.headers
