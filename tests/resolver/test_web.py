"""What browsers, scanners and DID resolvers get from a node."""

from __future__ import annotations

import base64
import json
import time

import aiohttp
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from registry import httpsig
from schemas.codec_json import values_from_json
from schemas.identifiers.bid_address import address
from schemas.record import Record
from tests.resolver.conftest import Net

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]
KEY = httpsig.generate_key()
DID = address(KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))  # main chain


async def put(net: Net, node: str, handle: str, values: list[dict[str, object]]) -> None:
    record = Record(
        handle=handle, values=values_from_json({"values": values}, now=int(time.time()))
    )
    await net.stores[node].put(record, actor="t")


async def fetch(url: str, accept: str = "*/*") -> tuple[int, str, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(url, headers={"Accept": accept}, allow_redirects=False) as resp,
    ):
        return resp.status, await resp.text(), dict(resp.headers)


async def test_the_proxy_redirects_to_the_records_url_or_shows_it(net: Net) -> None:
    await put(
        net,
        "sub",
        "88.100.1/P",
        [
            {"index": 1, "type": "URL", "data": "https://example.com/p"},
            {"index": 2, "type": "DESC", "data": "<script>alert(1)</script>"},
        ],
    )
    await put(net, "sub", "88.100.1/NOURL", [{"index": 1, "type": "DESC", "data": "plain"}])
    status, _, headers = await fetch(net.urls["super"] + "/88.100.1/P")
    assert (status, headers["Location"]) == (302, "https://example.com/p")
    status, text, headers = await fetch(net.urls["super"] + "/88.100.1/P?noredirect")
    assert (status, headers["Content-Type"].split(";")[0]) == (200, "text/html")
    assert '<a href="https://example.com/p">' in text
    assert "<script>" not in text
    assert "&lt;script&gt;" in text
    status, text, _ = await fetch(net.urls["super"] + "/88.100.1/NOURL")
    assert (status, "plain" in text) == (200, True)
    status, text, _ = await fetch(net.urls["super"] + "/88.100.1/NOPE")
    assert status == 404
    assert "not found" in text
    status, text, _ = await fetch(net.urls["super"] + "/06901234567891")
    assert status == 400
    assert "expected 2" in text


async def test_a_digital_link_redirects_to_its_default_link_with_a_linkset(net: Net) -> None:
    await put(
        net,
        "sub",
        "06901234567892",
        [
            {"index": 1, "type": "URL", "data": "https://example.com/tea"},
            {"index": 2, "type": "gs1:defaultLink", "data": "https://example.com/tea/info"},
            {"index": 3, "type": "gs1:pip", "data": "https://example.com/tea/pip"},
        ],
    )
    url = net.urls["super"] + "/01/06901234567892/10/LOT7"
    status, _, headers = await fetch(url)
    assert (status, headers["Location"]) == (307, "https://example.com/tea/info")
    status, text, headers = await fetch(url, accept="application/linkset+json")
    assert headers["Content-Type"].startswith("application/linkset+json")
    entry = json.loads(text)["linkset"][0]
    assert entry["anchor"] == "https://id.gs1.org/01/06901234567892"  # the record's key
    assert entry["https://gs1.org/voc/defaultLink"] == [
        {"href": "https://example.com/tea/info", "title": "Default link"}
    ]
    assert entry["https://gs1.org/voc/pip"][0]["href"] == "https://example.com/tea/pip"


async def test_dids_resolve_to_w3c_resolution_results(net: Net) -> None:
    der = base64.b64encode(httpsig.public_key_der(KEY)).decode()
    await put(
        net,
        "super",
        DID,
        [
            {"index": 1, "type": "URL", "data": "https://example.com/agent"},
            {"index": 300, "type": "HS_PUBKEY", "data": {"format": "key", "value": der}},
        ],
    )
    accept = "application/did-resolution"
    status, text, headers = await fetch(net.urls["sub"] + "/api/handles/" + DID, accept)
    result = json.loads(text)
    assert (status, headers["Content-Type"].split(";")[0]) == (200, accept)
    document = result["didDocument"]
    assert document["id"] == DID
    assert document["verificationMethod"][0]["publicKeyJwk"]["kty"] == "OKP"
    assert document["authentication"] == [f"{DID}#key-300"]
    assert document["service"][0]["serviceEndpoint"] == "https://example.com/agent"
    status, text, _ = await fetch(
        net.urls["super"] + "/api/handles/did:bid:ab12:efGsChQR2U32pvwJcDNPoYHhGXL1Rgq", accept
    )
    assert (status, json.loads(text)["didResolutionMetadata"]["error"]) == (
        404,
        "notFound",
    )
    status, text, _ = await fetch(net.urls["super"] + "/api/handles/did:bid:AB12:xx", accept)
    assert (status, json.loads(text)["didResolutionMetadata"]["error"]) == (
        400,
        "invalidDid",
    )
