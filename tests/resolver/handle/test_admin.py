"""Administration over the Handle protocol with CNRI's own client (HdlProbe on
net.handle:handle-client 9.3.1): writes answered with a challenge, signed with the
HS_PUBKEY an HS_ADMIN names, and carried out as a signed HTTP write is."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from resolver.handle.values import record_values, wire_value
from schemas.errors import InvalidValue
from schemas.handle_wire import (
    AUTH_TYPE_PUBKEY,
    ENVELOPE_SIZE,
    ChallengeAnswerRequest,
    ChallengeResponse,
    CreateHandleRequest,
    Envelope,
    HandleValue,
    Header,
    Message,
    OpCode,
    ResponseCode,
    decode_response,
    encode_message,
    sign_challenge,
    tcp_message,
)
from schemas.record import AdminPerm, AdminRef, DataFormat, Permissions, Reference, TtlType
from schemas.record import HandleValue as RecordValue
from tests.handle_probe import RESPONSE, aprobe
from tests.resolver.handle.conftest import ADMIN, ADMIN_KEY, ADMIN_KEYS, HandleNet

WAIT = 5.0
NEW = "88.100.1/HDL-NEW"


async def admin(
    net: HandleNet,
    command: str,
    handle: str,
    *args: str,
    transport: str = "--tcp",
    who: str = ADMIN,
    key: Path = ADMIN_KEY,
) -> dict[str, Any]:
    host, port = net.addresses["sub"]
    status, out = await aprobe(
        command, transport, host, port, handle, "--admin", who, "--key", str(key), *args
    )
    assert status == RESPONSE, out
    return out


async def resolve(net: HandleNet, handle: str) -> dict[str, Any]:
    host, port = net.addresses["sub"]
    status, out = await aprobe("resolve", "--tcp", host, port, handle)
    assert status == RESPONSE, out
    return out


def shown(out: dict[str, Any]) -> dict[int, tuple[str, str]]:
    return {v["index"]: (v["type"], v["data"]) for v in out["values"]}


async def http_get(net: HandleNet, path: str) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(net.urls["sub"] + path) as resp,
    ):
        return resp.status, await resp.json()


@pytest.mark.asyncio
async def test_an_admin_creates_edits_and_deletes_a_handle_with_cnri_s_client(
    handle_net: HandleNet,
) -> None:
    created = await admin(
        handle_net,
        "create",
        NEW,
        "--value",
        "1:URL:https://example.com/new",
        "--value",
        "2:EMAIL:ops@example.com",
    )
    assert (created["responseCode"], created["opCode"]) == (1, OpCode.CREATE_HANDLE), created
    assert shown(await resolve(handle_net, NEW)) == {
        1: ("URL", "https://example.com/new"),
        2: ("EMAIL", "ops@example.com"),
    }
    # as an HTTP write leaves it: the record, its history, the signer as the actor
    status, body = await http_get(handle_net, "/api/handles/" + NEW)
    assert status == 200, body
    assert [v["type"] for v in body["values"]] == ["URL", "EMAIL"]
    status, body = await http_get(handle_net, f"/api/handles/{NEW}/history")
    assert status == 200, body
    assert [(e["version"], e["op"]) for e in body["history"]] == [(1, "create")]
    history = await handle_net.stores["sub"].history(NEW)
    assert [e.actor for e in history] == ["300:0.NA/node.admin"]

    added = await admin(handle_net, "add", NEW, "--value", "3:URL.mobile:https://m.example.com/a")
    assert added["responseCode"] == 1, added
    again = await admin(handle_net, "add", NEW, "--value", "3:URL.mobile:https://m.example.com/b")
    assert again["responseCode"] == ResponseCode.VALUE_ALREADY_EXISTS, again
    modified = await admin(
        handle_net, "modify", NEW, "--value", "3:URL.mobile:https://m.example.com/v2"
    )
    assert modified["responseCode"] == 1, modified
    assert shown(await resolve(handle_net, NEW))[3] == ("URL.mobile", "https://m.example.com/v2")
    nowhere = await admin(handle_net, "modify", NEW, "--value", "9:URL:https://example.com/9")
    assert nowhere["responseCode"] == ResponseCode.VALUES_NOT_FOUND, nowhere

    removed = await admin(handle_net, "remove", NEW, "--index", "3")
    assert removed["responseCode"] == 1, removed
    assert set(shown(await resolve(handle_net, NEW))) == {1, 2}
    deleted = await admin(handle_net, "delete", NEW)
    assert deleted["responseCode"] == 1, deleted
    assert (await resolve(handle_net, NEW))["responseCode"] == ResponseCode.HANDLE_NOT_FOUND
    ops = [e.op for e in await handle_net.stores["sub"].history(NEW)]
    assert ops == ["create", "replace", "replace", "replace", "delete"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("transport", "extra"),
    [
        pytest.param("--udp", (), id="udp"),
        # RD: the final answer carries the digest of the challenge answer, which the
        # client checks against what it sent last
        pytest.param("--tcp", ("--digest",), id="tcp-digest"),
    ],
)
async def test_a_create_goes_through_the_same_challenge_over_udp_and_with_a_digest(
    handle_net: HandleNet, transport: str, extra: tuple[str, ...]
) -> None:
    handle = f"88.100.1/VIA-{transport[2:].upper()}"
    out = await admin(
        handle_net,
        "create",
        handle,
        "--value",
        "1:URL:https://example.com/via",
        *extra,
        transport=transport,
    )
    assert out["responseCode"] == 1, out
    assert shown(await resolve(handle_net, handle)) == {1: ("URL", "https://example.com/via")}


@pytest.mark.asyncio
async def test_a_key_the_node_does_not_hold_writes_nothing(
    handle_net: HandleNet, tmp_path: Path
) -> None:
    other, other_public = tmp_path / "other.pem", tmp_path / "other.hspub"
    status, made = await aprobe("keygen-rsa", str(other), str(other_public))
    assert status == RESPONSE, made
    forged = await admin(
        handle_net, "create", NEW, "--value", "1:URL:https://example.com/x", key=other
    )
    assert forged["responseCode"] == ResponseCode.AUTHENTICATION_FAILED, forged
    unknown = await admin(
        handle_net,
        "create",
        NEW,
        "--value",
        "1:URL:https://example.com/x",
        who="88.100.1/NO-SUCH-KEY:300",
        key=other,
    )
    assert unknown["responseCode"] == ResponseCode.INVALID_ADMIN, unknown
    assert await handle_net.stores["sub"].get(NEW) is None


@pytest.mark.asyncio
async def test_a_key_no_hs_admin_names_is_refused_as_over_http(
    handle_net: HandleNet, tmp_path: Path
) -> None:
    other, other_public = tmp_path / "other.pem", tmp_path / "other.hspub"
    status, made = await aprobe("keygen-rsa", str(other), str(other_public))
    assert status == RESPONSE, made
    # a record holding the key, in the Handle encoding CNRI writes: stored as DER
    holder = await admin(
        handle_net, "create", "88.100.1/KEYHOLDER", "--value", f"300:HS_PUBKEY:file:{other_public}"
    )
    assert holder["responseCode"] == 1, holder
    stored = await handle_net.stores["sub"].get("88.100.1/KEYHOLDER")
    assert stored is not None
    assert stored.public_keys()[300][:1] == b"\x30"  # DER SubjectPublicKeyInfo
    refused = await admin(
        handle_net,
        "create",
        NEW,
        "--value",
        "1:URL:https://example.com/x",
        who="88.100.1/KEYHOLDER:300",
        key=other,
    )
    assert refused["responseCode"] == ResponseCode.INSUFFICIENT_PERMISSIONS, refused
    assert "create 88.100.1/HDL-NEW" in refused["message"], refused
    assert await handle_net.stores["sub"].get(NEW) is None


@pytest.mark.asyncio
async def test_a_handle_outside_the_node_s_prefixes_is_not_its_to_write(
    handle_net: HandleNet,
) -> None:
    out = await admin(handle_net, "create", "88.7/ELSEWHERE", "--value", "1:URL:https://a.example")
    assert out["responseCode"] == ResponseCode.SERVER_NOT_RESP, out
    assert "this node does not hold 88.7/ELSEWHERE" in out["message"], out
    assert await handle_net.stores["sub"].get("88.7/ELSEWHERE") is None


# ---- the exchange byte by byte: a challenge answer is good once ------------------------


async def exchange(net: HandleNet, message: Message, *, request_id: int) -> Message:
    """Send one request on a new TCP connection (as the CNRI client does) and read
    its answer."""
    reader, writer = await asyncio.open_connection(*net.addresses["sub"])
    try:
        framed = tcp_message(
            Envelope(session_id=message.envelope.session_id, request_id=request_id),
            encode_message(message),
        )
        writer.write(framed)
        await writer.drain()
        head = await asyncio.wait_for(reader.readexactly(ENVELOPE_SIZE), WAIT)
        envelope = Envelope.decode(head)
        payload = await asyncio.wait_for(reader.readexactly(envelope.message_length), WAIT)
        return decode_response(envelope, payload)
    finally:
        writer.close()


def _request(opcode: OpCode, body: Any, *, session_id: int = 0) -> Message:
    return Message(
        envelope=Envelope(session_id=session_id),
        header=Header(opcode=opcode, expiration=int(time.time()) + 600),
        body=body,
    )


async def challenged_create(net: HandleNet, handle: bytes, *, request_id: int) -> Message:
    """The challenge to a create of ``handle`` (one URL value), sent as bytes."""
    value = HandleValue(index=1, type=b"URL", data=b"https://example.com/x", timestamp=1)
    create = _request(OpCode.CREATE_HANDLE, CreateHandleRequest(handle=handle, values=(value,)))
    challenge = await exchange(net, create, request_id=request_id)
    assert challenge.header.response_code == ResponseCode.AUTHENTICATION_NEEDED
    return challenge


def admin_answer(challenge: Message) -> Message:
    """The node admin's answer to ``challenge``, signed as CNRI's client signs it."""
    key = load_pem_private_key(ADMIN_KEY.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert isinstance(challenge.body, ChallengeResponse)
    assert challenge.request_digest is not None
    signed = sign_challenge(key, challenge.body.nonce, challenge.request_digest.digest)
    return _request(
        OpCode.CHALLENGE_RESPONSE,
        ChallengeAnswerRequest(
            auth_type=AUTH_TYPE_PUBKEY,
            key_handle=b"0.NA/node.admin",
            key_index=300,
            signed_response=signed,
        ),
        session_id=challenge.envelope.session_id,
    )


@pytest.mark.asyncio
async def test_a_challenge_answer_is_good_once(handle_net: HandleNet) -> None:
    challenge = await challenged_create(handle_net, b"88.100.1/ONCE", request_id=11)
    session = challenge.envelope.session_id
    assert session != 0
    answer = admin_answer(challenge)
    done = await exchange(handle_net, answer, request_id=12)
    assert (done.envelope.request_id, done.header.opcode) == (12, OpCode.CREATE_HANDLE)
    assert done.header.response_code == ResponseCode.SUCCESS
    replayed = await exchange(handle_net, answer, request_id=13)
    assert replayed.header.response_code == ResponseCode.AUTHEN_TIMEOUT
    stale = _request(answer.header.opcode, answer.body, session_id=session ^ 0x5A5A)
    assert (await exchange(handle_net, stale, request_id=14)).header.response_code == (
        ResponseCode.AUTHEN_TIMEOUT
    )
    history = await handle_net.stores["sub"].history("88.100.1/ONCE")
    assert [e.op for e in history] == ["create"]


@pytest.mark.asyncio
async def test_an_answer_after_sixty_seconds_is_refused_and_writes_nothing(
    handle_net: HandleNet,
) -> None:
    challenge = await challenged_create(handle_net, b"88.100.1/LATE", request_id=21)
    # the challenge as PostgreSQL keeps it for every process of the node, 61 s on
    aged = await handle_net.stores["sub"].pool.execute(
        "UPDATE pending_challenges SET opened_at = opened_at - 61 WHERE session_id = $1",
        challenge.envelope.session_id,
    )
    assert aged == "UPDATE 1"
    late = await exchange(handle_net, admin_answer(challenge), request_id=22)
    assert late.header.response_code == ResponseCode.AUTHEN_TIMEOUT
    assert await handle_net.stores["sub"].get("88.100.1/LATE") is None


@pytest.mark.asyncio
async def test_a_kept_request_is_decoded_again_not_trusted(handle_net: HandleNet) -> None:
    """What PostgreSQL hands back is checked as a request from the network is: bytes
    that do not decode to a write are refused, and nothing is written."""
    challenge = await challenged_create(handle_net, b"88.100.1/ODD", request_id=31)
    await handle_net.stores["sub"].pool.execute(  # cut short: no longer fills its length
        "UPDATE pending_challenges SET request = substring(request FROM 1 FOR 60)"
        " WHERE session_id = $1",
        challenge.envelope.session_id,
    )
    refused = await exchange(handle_net, admin_answer(challenge), request_id=32)
    assert refused.header.response_code == ResponseCode.ERROR
    assert await handle_net.stores["sub"].get("88.100.1/ODD") is None


# ---- pure parts: the values a client sends -------------------------------------------


_NOW = 1_800_000_000
_RECORD_VALUES = [
    pytest.param(
        RecordValue(index=1, type="URL", format=DataFormat.STRING, value="https://a.example"),
        id="text",
    ),
    pytest.param(
        RecordValue(index=2, type="BLOB", format=DataFormat.BASE64, value=b"\xff\x00\xfe"),
        id="bytes",
    ),
    pytest.param(
        RecordValue(
            index=100,
            type="HS_ADMIN",
            format=DataFormat.ADMIN,
            value=AdminRef(
                handle="0.NA/88.100.1",
                index=300,
                permissions=AdminPerm.ADD_HANDLE | AdminPerm.READ_VALUE | AdminPerm.LIST_HANDLES,
            ),
        ),
        id="hs-admin",
    ),
    pytest.param(
        RecordValue(
            index=200,
            type="HS_VLIST",
            format=DataFormat.VLIST,
            value=(Reference(handle="0.NA/88.100.1", index=300),),
        ),
        id="hs-vlist",
    ),
    pytest.param(
        RecordValue(
            index=300,
            type="HS_PUBKEY",
            format=DataFormat.KEY,
            value=(ADMIN_KEYS / "rsa-test-key.hspub.spki.der").read_bytes(),
            ttl=60,
            ttl_type=TtlType.ABSOLUTE,
            permissions=Permissions(public_read=False),
            references=(Reference(handle="88.100.1/X", index=1),),
        ),
        id="hs-pubkey-as-handed-out",
    ),
]


@pytest.mark.parametrize("value", _RECORD_VALUES)
def test_a_value_handed_out_comes_back_the_same_when_sent(value: RecordValue) -> None:
    stamped = dataclasses.replace(value, timestamp=_NOW - 5)
    assert record_values([wire_value(stamped)], now=_NOW) == (stamped,)


def test_a_key_in_cnri_s_encoding_is_kept_as_der_and_a_zero_timestamp_is_now() -> None:
    sent = HandleValue(
        index=300, type=b"HS_PUBKEY", data=(ADMIN_KEYS / "rsa-test-key.hspub").read_bytes()
    )
    (value,) = record_values([sent], now=_NOW)
    assert value.value == (ADMIN_KEYS / "rsa-test-key.hspub.spki.der").read_bytes()
    assert value.timestamp == _NOW


def test_bad_values_are_reported_together_by_field() -> None:
    sent = [
        HandleValue(index=1, type=b"HS_ADMIN", data=b"\x0f\xff"),
        HandleValue(index=2, type=b"HS_PUBKEY", data=b"\x00\x00\x00\x03DH_"),
        HandleValue(index=3, type=b"URL", data=b"not a uri"),
    ]
    with pytest.raises(InvalidValue) as caught:
        record_values(sent, now=_NOW)
    assert {e.field for e in caught.value.errors} == {
        "values[0].data.value",
        "values[1].data.value",
        "values[2].data.value",
    }
