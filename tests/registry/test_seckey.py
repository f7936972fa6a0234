"""Handle.Net secret keys (Authorization: Basic, HS_SECKEY) on REST writes."""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from registry.api import create_app
from registry.authz import Signer
from registry.seckey import (
    SecretKeyCredentials,
    basic_credentials,
    check_secret,
    check_transport,
)
from schemas.errors import AuthenticationFailed, AuthenticationNeeded
from schemas.record import DataFormat, HandleValue, Permissions, Record
from tests.registry.conftest import Node

PRIVATE = Permissions(admin_read=True, admin_write=True, public_read=False, public_write=False)


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "signer", "secret"),
    [
        # pyhandle's form: the user percent-encoded (quote keeps '/'), the secret as is
        (
            basic("300%3A0.NA/88.100.1", "s3cret"),
            Signer(handle="0.NA/88.100.1", index=300),
            b"s3cret",
        ),
        (
            basic("300%3A0.NA%2F88.100.1", "a:b%20c"),
            Signer(handle="0.NA/88.100.1", index=300),
            b"a:b%20c",
        ),
        (basic("7%3A88.100.1%2FU%C3%9C", "x"), Signer(handle="88.100.1/UÜ", index=7), b"x"),
        ("bAsIc " + base64.b64encode(b"1%3Ah/x:").decode(), Signer(handle="h/x", index=1), b""),
    ],
)
def test_basic_credentials_read_handle_nets_form(
    header: str, signer: Signer, secret: bytes
) -> None:
    assert basic_credentials(header) == SecretKeyCredentials(signer=signer, secret=secret)


@pytest.mark.parametrize("header", [None, "Signature sig1=:abc:", "Bearer abc", "Handle version=0"])
def test_other_schemes_are_not_basic(header: str | None) -> None:
    assert basic_credentials(header) is None


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ("Basic !!!", "base64"),
        ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), "base64"),
        # the user's colon not percent-encoded: the first colon ends the user
        (basic("300:0.NA/88.100.1", "s"), "percent-encoded"),
        (basic("admin", "s"), "index:handle"),
        (basic("x%3A0.NA/1", "s"), "index:handle"),
        (basic("300%3A", "s"), "index:handle"),
    ],
)
def test_malformed_basic_credentials_fail_with_the_form_expected(header: str, says: str) -> None:
    with pytest.raises(AuthenticationFailed, match=says):
        basic_credentials(header)


@pytest.mark.parametrize(
    ("enabled", "secure", "peer", "refused"),
    [
        (False, True, "127.0.0.1", "--allow-seckey"),
        (False, False, "127.0.0.1", "--allow-seckey"),
        (True, False, "192.0.2.7", "only over https"),
        (True, False, None, "only over https"),
        (True, False, "unknown", "only over https"),
        (True, True, "192.0.2.7", None),
        (True, False, "127.0.0.1", None),
        (True, False, "::1", None),
        (True, False, "127.5.5.5", None),
    ],
)
def test_secret_keys_only_when_enabled_and_over_tls_or_loopback(
    enabled: bool, secure: bool, peer: str | None, refused: str | None
) -> None:
    if refused is None:
        check_transport(enabled=enabled, secure=secure, peer=peer)
    else:
        with pytest.raises(AuthenticationNeeded, match=refused):
            check_transport(enabled=enabled, secure=secure, peer=peer)


def _record(value: str | bytes, permissions: Permissions = PRIVATE, index: int = 300) -> Record:
    fmt = DataFormat.STRING if isinstance(value, str) else DataFormat.BASE64
    seckey = HandleValue(
        index=index, type="HS_SECKEY", format=fmt, value=value, permissions=permissions
    )
    return Record(handle="0.NA/88.100.1", values=(seckey,))


CREDS = SecretKeyCredentials(signer=Signer(handle="0.NA/88.100.1", index=300), secret=b"s3cret")


@pytest.mark.parametrize(
    ("record", "refused"),
    [
        (_record("s3cret"), None),
        (_record(b"s3cret"), None),
        (_record("s3cret "), "wrong secret key for 300:0.NA/88.100.1"),
        (_record("S3CRET"), "wrong secret key"),
        (_record("s3cret", index=301), "names no HS_SECKEY"),
        (None, "names no HS_SECKEY"),
        (_record("s3cret", Permissions()), "publicly readable"),
    ],
)
def test_the_secret_must_match_a_private_hs_seckey_at_its_index(
    record: Record | None, refused: str | None
) -> None:
    if refused is None:
        check_secret(record, CREDS)
    else:
        with pytest.raises(AuthenticationFailed, match=refused):
            check_secret(record, CREDS)


# --- over HTTP, against a real PostgreSQL -------------------------------------------


@pytest_asyncio.fixture
async def seckey_url(node: Node) -> AsyncIterator[str]:
    """The same store as ``node``, served by an app that accepts secret keys."""
    runner = web.AppRunner(
        create_app(node.store, replace(node.config, allow_seckey=True)), access_log=None
    )
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    host, port = sock.getsockname()
    yield f"http://{host}:{port}"
    await runner.cleanup()


async def _owner_with_secret(node: Node, secret: str) -> None:
    """``0.NA/88.100.1`` administered by its own HS_SECKEY at 300, made by the node admin."""
    values: list[dict[str, Any]] = [
        {
            "index": 100,
            "type": "HS_ADMIN",
            "data": {
                "format": "admin",
                "value": {"handle": "0.NA/88.100.1", "index": 300, "permissions": "111111111111"},
            },
        },
        {
            "index": 300,
            "type": "HS_SECKEY",
            "data": {"format": "string", "value": secret},
            "permissions": "1100",
        },
    ]
    async with node.admin_client() as admin:
        reply = await admin.put("0.NA/88.100.1", values)
    assert reply.status == 201, reply.body


async def _put(url: str, auth: str) -> tuple[int, dict[str, Any]]:
    body = {"values": [{"index": 1, "type": "URL", "data": "https://example.com/s"}]}
    async with (
        aiohttp.ClientSession() as session,
        session.put(
            url + "/api/handles/88.100.1/SEC", json=body, headers={"Authorization": auth}
        ) as resp,
    ):
        return resp.status, await resp.json()


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_basic_is_refused_with_how_to_enable_it_when_off(node: Node) -> None:
    await _owner_with_secret(node, "s3cret")
    status, body = await _put(node.url, basic("300%3A0.NA/88.100.1", "s3cret"))
    assert (status, body["responseCode"]) == (401, 402)
    assert "--allow-seckey" in body["message"]
    assert "IDRES_ALLOW_SECKEY" in body["message"]
    assert await node.store.get("88.100.1/SEC") is None


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_a_secret_key_writes_under_hs_admin_and_is_the_actor(
    node: Node, seckey_url: str
) -> None:
    await _owner_with_secret(node, "s3cret")
    status, body = await _put(seckey_url, basic("300%3A0.NA/88.100.1", "wrong"))
    assert (status, body["responseCode"]) == (401, 403)
    assert body["message"] == "wrong secret key for 300:0.NA/88.100.1"
    status, body = await _put(seckey_url, basic("300%3A0.NA/88.100.1", "s3cret"))
    assert (status, body["responseCode"]) == (201, 1), body
    history = await node.store.history("88.100.1/SEC")
    assert [e.actor for e in history] == ["300:0.NA/88.100.1"]
    # a secret that HS_ADMIN does not name may not write, however right it is
    async with node.admin_client() as admin:
        reply = await admin.put(
            "88.100.9/KEYS",
            [{"index": 5, "type": "HS_SECKEY", "data": "other", "permissions": "1100"}],
        )
    assert reply.status == 201, reply.body
    status, body = await _put(seckey_url, basic("5%3A88.100.9/KEYS", "other"))
    assert (status, body["responseCode"]) == (403, 400)
    assert "key 5:88.100.9/KEYS may not" in body["message"]
