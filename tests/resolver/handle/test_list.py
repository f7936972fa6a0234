"""List Handles (opcode 105) with CNRI's own client (HdlProbe list): the node admin
lists what it created, over as many messages as it takes; nobody else lists, and a
prefix the node does not hold is refused before any challenge."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from schemas.handle_wire import (
    ChallengeResponse,
    Envelope,
    ErrorResponse,
    Header,
    ListHandlesRequest,
    Message,
    OpCode,
    ResponseCode,
    decode_response,
    encode_message,
    udp_packets,
)
from tests.handle_probe import HANDLE_EXCEPTION, RESPONSE, aprobe
from tests.resolver.handle.conftest import ADMIN, ADMIN_KEY, HandleNet
from tests.resolver.handle.test_admin import admin, admin_answer, exchange

pytestmark = pytest.mark.asyncio

# what the sub node holds under 88.100.1 before a test adds to it (conftest SEEDS)
SEEDED = [
    "88.100.1/ABC-123",
    "88.100.1/MANY",
    "88.100.1/PRIVATE",
    "88.100.1/SECRET",
    "88.100.1/SOME",
]


async def listed(
    net: HandleNet,
    prefix: str,
    *,
    node: str = "sub",
    who: str | None = ADMIN,
    key: Path = ADMIN_KEY,
    expect: int = RESPONSE,
) -> dict[str, Any]:
    host, port = net.addresses[node]
    signed = ("--admin", who, "--key", str(key)) if who is not None else ()
    status, out = await aprobe("list", "--tcp", host, port, prefix, *signed)
    assert status == expect, out
    return out


async def test_the_admin_lists_the_handles_it_created_with_cnri_s_client(
    handle_net: HandleNet,
) -> None:
    made = [f"88.100.1/LISTED-{n}" for n in range(3)]
    for handle in made:
        out = await admin(handle_net, "create", handle, "--value", "1:URL:https://e.x/l")
        assert out["responseCode"] == 1, out
    out = await listed(handle_net, "0.NA/88.100.1")
    assert (out["responseCode"], out["opCode"]) == (1, OpCode.LIST_HANDLES), out
    assert out["handles"] == sorted(SEEDED + made)
    assert out["messages"] == 1
    assert out["flags"]["continuous"] is False
    # a bare prefix is taken as its prefix handle, as CNRI's HDLList sends it
    assert (await listed(handle_net, "88.100.1"))["handles"] == sorted(SEEDED + made)
    # a prefix record lists its own prefix's handles only: 88.100 has none of these
    assert (await listed(handle_net, "0.NA/88.100"))["handles"] == []


async def test_a_long_list_comes_in_several_messages_the_client_reads_to_the_last(
    handle_net: HandleNet,
) -> None:
    admin_ = handle_net.servers["sub"].face.admin
    assert admin_ is not None
    admin_.list_chunk = 2  # 5 handles: messages of 2, 2 and 1
    out = await listed(handle_net, "0.NA/88.100.1")
    assert out["responseCode"] == 1, out
    assert out["handles"] == SEEDED
    assert out["messages"] == 3
    assert out["flags"]["continuous"] is False  # the last message says it is the last
    admin_.list_chunk = 5  # a full message, then none: the first is the last
    out = await listed(handle_net, "0.NA/88.100.1")
    assert (out["handles"], out["messages"]) == (SEEDED, 1)


async def test_thousands_of_handles_come_500_a_message(handle_net: HandleNet) -> None:
    pool = handle_net.stores["sub"].pool
    await pool.execute(  # identifier rows alone: what a listing reads
        "INSERT INTO identifiers (handle, scheme, routing_key, version)"
        " SELECT format('88.100.1/BULK-%s', lpad(n::text, 5, '0')), 'handle',"
        " 'handle:88.100.1', 1 FROM generate_series(1, 2600) AS n"
    )
    out = await listed(handle_net, "0.NA/88.100.1")
    assert out["responseCode"] == 1, out
    bulk = [f"88.100.1/BULK-{n:05d}" for n in range(1, 2601)]
    assert out["handles"] == sorted(SEEDED + bulk)
    assert out["messages"] == 6  # 2,605 handles: five messages of 500, one of 105


async def test_an_unauthenticated_list_is_challenged_and_goes_no_further(
    handle_net: HandleNet,
) -> None:
    out = await listed(handle_net, "0.NA/88.100.1", who=None, expect=HANDLE_EXCEPTION)
    assert out["exceptionName"] == "UNABLE_TO_AUTHENTICATE", out
    # on the wire: RC 402 and a nonce, no handle
    request = Message(
        envelope=Envelope(),
        header=Header(opcode=OpCode.LIST_HANDLES, expiration=int(time.time()) + 600),
        body=ListHandlesRequest(handle=b"0.NA/88.100.1"),
    )
    challenge = await exchange(handle_net, request, request_id=41)
    assert challenge.header.response_code == ResponseCode.AUTHENTICATION_NEEDED
    assert isinstance(challenge.body, ChallengeResponse)


async def test_a_key_without_list_handles_on_the_prefix_is_refused(
    handle_net: HandleNet, tmp_path: Path
) -> None:
    other, other_public = tmp_path / "other.pem", tmp_path / "other.hspub"
    status, made = await aprobe("keygen-rsa", str(other), str(other_public))
    assert status == RESPONSE, made
    holder = await admin(
        handle_net, "create", "88.100.1/LISTER", "--value", f"300:HS_PUBKEY:file:{other_public}"
    )
    assert holder["responseCode"] == 1, holder
    out = await listed(handle_net, "0.NA/88.100.1", who="88.100.1/LISTER:300", key=other)
    assert out["responseCode"] == ResponseCode.INSUFFICIENT_PERMISSIONS, out
    assert "list the handles under 0.NA/88.100.1" in out["message"], out
    forged = await listed(handle_net, "0.NA/88.100.1", key=other)  # the admin's name, not key
    assert forged["responseCode"] == ResponseCode.AUTHENTICATION_FAILED, forged


@pytest.mark.parametrize(
    ("node", "prefix", "code", "says"),
    [
        pytest.param(
            "sub",
            "0.NA/88.7",
            ResponseCode.SERVER_NOT_RESP,
            "this node does not hold 0.NA/88.7",
            id="another node's prefix",
        ),
        pytest.param(
            "backbone",
            "0.NA/88.100.1",
            ResponseCode.SERVER_NOT_RESP,
            "delegated to node 'sub'",
            id="a prefix delegated further down",
        ),
        pytest.param(
            "sub",
            "88.100.1/ABC-123",
            ResponseCode.INVALID_HANDLE,
            "names a prefix handle",
            id="not a prefix handle",
        ),
    ],
)
async def test_a_prefix_the_node_cannot_list_is_refused_before_any_challenge(
    handle_net: HandleNet, node: str, prefix: str, code: ResponseCode, says: str
) -> None:
    out = await listed(handle_net, prefix, node=node)
    assert out["responseCode"] == code, out
    assert says in out["message"], out
    pool = handle_net.stores[node].pool
    assert await pool.fetchval("SELECT count(*) FROM pending_challenges") == 0


async def test_a_list_of_several_messages_answered_over_udp_says_to_ask_over_tcp(
    handle_net: HandleNet,
) -> None:
    """CNRI's client lists over TCP only; an answer to the challenge sent over UDP gets
    an error that says so, not the first message alone."""
    admin_ = handle_net.servers["sub"].face.admin
    assert admin_ is not None
    admin_.list_chunk = 2
    request = Message(
        envelope=Envelope(),
        header=Header(opcode=OpCode.LIST_HANDLES, expiration=int(time.time()) + 600),
        body=ListHandlesRequest(handle=b"0.NA/88.100.1"),
    )
    answer = admin_answer(await exchange(handle_net, request, request_id=51))
    (datagram,) = udp_packets(
        Envelope(session_id=answer.envelope.session_id, request_id=52), encode_message(answer)
    )
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.setblocking(False)
        await loop.sock_connect(udp, handle_net.addresses["sub"])
        await loop.sock_sendall(udp, datagram)
        reply = await asyncio.wait_for(loop.sock_recv(udp, 512), 5.0)
    message = decode_response(Envelope.decode(reply), reply[20:])
    assert message.header.response_code == ResponseCode.OPERATION_NOT_SUPPORTED
    assert isinstance(message.body, ErrorResponse)
    assert "ask over TCP" in message.body.message
