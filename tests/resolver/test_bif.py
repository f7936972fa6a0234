"""BIF's own resolver shape (RFC-005 §5.1) at /bif/v1/did/{did}: what Xinghuo's tools
read, the keys checked with BIF's Java SDK (deploy/bif/sdk.sh)."""

from __future__ import annotations

import base64
import time
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from registry import httpsig
from resolver import bif
from schemas.codec_json import values_from_json
from schemas.identifiers.bid_address import address, public_key_hex
from schemas.record import Record
from tests.bif_sdk import sdk
from tests.resolver.conftest import Net

OWN = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
RECOVERY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34)))
DID = address(OWN.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
BASE = "/bif/v1/did/"


def b64(key: ed25519.Ed25519PrivateKey) -> str:
    return base64.b64encode(httpsig.public_key_der(key)).decode()


def raw_hex(key: ed25519.Ed25519PrivateKey) -> str:
    return public_key_hex(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


async def fetch(url: str) -> tuple[int, str, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        return resp.status, resp.content_type, await resp.json()


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_a_bid_document_as_bif_resolvers_answer_it(net: Net) -> None:
    values: list[dict[str, object]] = [
        {"index": 1, "type": "URL", "data": "https://example.com/device", "ttl": 3600},
        {"index": 2, "type": "DESC", "data": "pump 7"},
        {"index": 3, "type": "BIF_TYPE", "data": "104"},  # a smart device (RFC-004)
        {"index": 300, "type": "HS_PUBKEY", "data": {"format": "key", "value": b64(OWN)}},
        {"index": 301, "type": "HS_PUBKEY", "data": {"format": "key", "value": b64(RECOVERY)}},
    ]
    record = Record(handle=DID, values=values_from_json({"values": values}, now=int(time.time())))
    await net.stores["super"].put(record, actor="t")

    status, kind, body = await fetch(net.urls["sub"] + BASE + DID)  # resolved through the tree
    assert (status, kind) == (200, "application/json")
    assert (body["errorCode"], body["message"]) == (0, "success")
    doc = body["data"]["didDocument"]
    assert doc["@context"] == ["https://www.w3.org/ns/did/v1"]
    assert (doc["id"], doc["version"]) == (DID, "1.0.0")
    assert doc["publicKey"] == [
        {
            "id": f"{DID}#key-300",
            "type": "Ed25519",
            "controller": DID,
            "publicKeyHex": raw_hex(OWN),
        },
        {
            "id": f"{DID}#key-301",
            "type": "Ed25519",
            "controller": DID,
            "publicKeyHex": raw_hex(RECOVERY),
        },
    ]
    assert doc["authentication"] == [f"{DID}#key-300"]
    extension = doc["extension"]
    assert extension["recovery"] == [f"{DID}#key-301"]
    assert (extension["ttl"], extension["type"]) == (3600, 104)
    assert extension["attributes"] == [
        {
            "key": "DESC",
            "desc": "value 2 (string)",
            "encrypt": 0,
            "format": "text",
            "value": "pump 7",
        }
    ]
    assert doc["service"] == [
        {"id": f"{DID}#url-1", "type": "URL", "serviceEndpoint": "https://example.com/device"}
    ]
    assert doc["created"] <= doc["updated"]
    assert doc["updated"].endswith("Z")
    # BIF's own SDK reads the keys as BIF keys, and gives them the addresses BIF would
    hexes = [k["publicKeyHex"] for k in doc["publicKey"]]
    own, other = sdk("address", *hexes)["addresses"]
    assert own == DID
    assert other != DID

    status, _, body = await fetch(net.urls["super"] + BASE + DID + "/public-keys")
    assert (status, body["errorCode"]) == (200, 0)
    assert body["data"] == {"version": "1.0.0", "id": DID, "publicKey": doc["publicKey"]}
    status, _, body = await fetch(net.urls["super"] + BASE + DID + "/attributes")
    assert body["data"]["attributes"] == extension["attributes"]


@pytest.mark.postgres
@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("tail", "status", "code"),
    [
        (address(bytes(32), "ab12"), 404, 6),  # not registered
        (DID + "/verifiableCredentials", 404, 8),  # a field this resolver has not
        ("did:bid:AB12:xx", 400, 4),
        ("did:cn:88.100.1", 501, 5),  # a DID, but not a BID
        ("did:web:example.com", 501, 5),
    ],
)
async def test_failures_carry_rfc_004s_error_codes(
    net: Net, tail: str, status: int, code: int
) -> None:
    got, kind, body = await fetch(net.urls["super"] + BASE + tail)
    assert (got, kind, body["errorCode"]) == (status, "application/json", code)
    assert body["message"].startswith(bif.MESSAGES[code])
    assert "data" not in body


def test_a_document_without_its_own_key_lets_every_key_authenticate() -> None:
    record = {
        "responseCode": 1,
        "values": [
            {
                "index": 301,
                "type": "HS_PUBKEY",
                "data": {"format": "key", "value": b64(RECOVERY)},
                "ttl": int(time.time()) + 60,
                "ttlType": "absolute",
                "timestamp": "2026-01-01T00:00:00Z",
            },
            {
                "index": 4,
                "type": "BLOB",
                "data": {"format": "base64", "value": "AAE="},
                "ttl": 600,
                "timestamp": "2026-02-01T00:00:00Z",
            },
        ],
    }
    doc = bif.document(DID, record, now=time.time())
    assert doc["authentication"] == [f"{DID}#key-301"]
    assert "recovery" not in doc["extension"]
    assert 55 <= doc["extension"]["ttl"] <= 60  # an absolute TTL counts down from now
    assert doc["extension"]["type"] == bif.OTHER_TYPE
    (blob,) = doc["extension"]["attributes"]
    assert (blob["format"], blob["value"]) == ("mixture", "AAE=")
    assert (doc["created"], doc["updated"]) == ("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")
