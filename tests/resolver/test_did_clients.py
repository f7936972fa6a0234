"""Stock DID clients against a node's Universal Resolver driver route: npm's
did-resolver (with the few-line HTTP driver its users write) and
@sphereon/did-uni-client, the documents they get checked with PyPI's pydid."""

from __future__ import annotations

import base64
import time
from typing import Any

import pydid
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from registry import httpsig
from resolver.did import DOCUMENT_JSON, DOCUMENT_LD, RESULT_LD
from schemas.codec_json import values_from_json
from schemas.identifiers.bid_address import address
from schemas.record import Record
from tests.did_clients import resolve_all
from tests.resolver.conftest import Net

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]
KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
_RAW = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
DID = address(_RAW)  # main chain: held by the super node
MISSING = address(_RAW, "ab12")  # sub-chain ab12: no such DID
CN = "did:cn:88.100.1"


async def put(net: Net, node: str, handle: str, values: list[dict[str, object]]) -> None:
    record = Record(
        handle=handle, values=values_from_json({"values": values}, now=int(time.time()))
    )
    await net.stores[node].put(record, actor="t")


def raw(key: ed25519.Ed25519PrivateKey) -> str:
    data = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def pick(outcomes: list[dict[str, Any]], via: str, did: str, accept: str | None = None) -> Any:
    (hit,) = (o for o in outcomes if (o["via"], o["did"], o.get("accept")) == (via, did, accept))
    return hit


async def registered(net: Net) -> ed25519.Ed25519PrivateKey:
    key = KEY  # a did:bid is registered with its own key (the address of its HS_PUBKEY)
    der = base64.b64encode(httpsig.public_key_der(key)).decode()
    await put(
        net,
        "super",
        DID,
        [
            {"index": 1, "type": "URL", "data": "https://example.com/agent"},
            {"index": 300, "type": "HS_PUBKEY", "data": {"format": "key", "value": der}},
        ],
    )
    await put(net, "sub", CN, [{"index": 1, "type": "URL", "data": "https://example.com/cn"}])
    return key


async def test_did_resolver_and_the_uni_client_read_a_node_as_their_driver(net: Net) -> None:
    key = await registered(net)
    cases = [{"did": DID}, {"did": CN}]
    outcomes = await resolve_all(net.urls["sub"], cases)  # a leaf: the DID is the super's
    mine = pick(outcomes, "did-resolver", DID)
    assert (mine["status"], mine["contentType"]) == (200, RESULT_LD)  # the default: the result
    result = mine["result"]
    assert result["didResolutionMetadata"] == {"contentType": DOCUMENT_LD}
    assert result["didDocumentMetadata"]["updated"].endswith("Z")
    document = pydid.DIDDocument.deserialize(result["didDocument"])
    assert document.id == DID
    (method,) = document.verification_method or []
    assert isinstance(method, pydid.VerificationMethod)
    assert method.public_key_jwk == {"kty": "OKP", "crv": "Ed25519", "x": raw(key)}
    assert [str(a) for a in document.authentication or []] == [f"{DID}#key-300"]
    (service,) = document.service or []
    assert service.service_endpoint == "https://example.com/agent"
    # the Universal Resolver clients get the same result, with no Accept of their own
    for via in ("uni-client", "uni-driver"):
        assert pick(outcomes, via, DID)["result"] == result, via
    cn = pick(outcomes, "uni-driver", CN)["result"]
    assert pydid.DIDDocument.deserialize(cn["didDocument"]).id == CN


@pytest.mark.parametrize(
    ("accept", "media", "context"),
    [
        (RESULT_LD, RESULT_LD, None),
        ("application/did-resolution", "application/did-resolution", None),
        (DOCUMENT_LD, DOCUMENT_LD, True),
        (DOCUMENT_JSON, DOCUMENT_JSON, False),
        # the Universal Resolver asks for the result beside the type it would take
        ("application/did-resolution,application/did", "application/did-resolution", None),
        (f"{DOCUMENT_JSON}, {RESULT_LD};q=0.5", DOCUMENT_JSON, False),
    ],
)
async def test_the_accept_header_picks_the_result_or_the_bare_document(
    net: Net, accept: str, media: str, context: bool | None
) -> None:
    await registered(net)
    outcomes = await resolve_all(net.urls["backbone"], [{"did": DID, "accept": accept}])
    mine = pick(outcomes, "did-resolver", DID, accept)
    assert (mine["status"], mine["contentType"]) == (200, media)
    document = mine["result"]["didDocument"]
    if context is None:  # the result: the document inside is JSON-LD
        assert mine["result"]["didResolutionMetadata"]["contentType"] == DOCUMENT_LD
    else:  # a bare document, which the driver wrapped
        assert ("@context" in document) is context
    assert pydid.DIDDocument.deserialize(document).id == DID


@pytest.mark.parametrize(
    ("did", "status", "error"),
    [
        (MISSING, 404, "notFound"),
        ("did:bid:AB12:xx", 400, "invalidDid"),  # a DID, but no did:bid
        ("did:example:123456", 501, "methodNotSupported"),
        ("did:web:example.com", 501, "methodNotSupported"),
    ],
)
async def test_failures_are_resolution_results_with_the_contracts_status(
    net: Net, did: str, status: int, error: str
) -> None:
    outcomes = await resolve_all(net.urls["super"], [{"did": did}])
    mine = pick(outcomes, "did-resolver", did)
    assert (mine["status"], mine["contentType"]) == (status, RESULT_LD)
    metadata = mine["result"]["didResolutionMetadata"]
    assert metadata["error"] == error
    assert metadata["errorMessage"]
    assert mine["result"]["didDocument"] is None
    # the uni client turns any status from 400 up into an error carrying the body
    assert f'"error":"{error}"' in pick(outcomes, "uni-client", did)["thrown"]


async def test_an_accept_the_resolver_cannot_answer_is_representation_not_supported(
    net: Net,
) -> None:
    await registered(net)
    outcomes = await resolve_all(net.urls["super"], [{"did": DID, "accept": "text/html"}])
    mine = pick(outcomes, "did-resolver", DID, "text/html")
    assert mine["status"] == 406
    assert mine["result"]["didResolutionMetadata"]["error"] == "representationNotSupported"
