"""The DID resolver's content negotiation and method check, as tables (no sockets)."""

from __future__ import annotations

import pytest

from resolver import did
from schemas.identifiers.did import method_of


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        ("", did.RESULT_LD),
        ("*/*", did.RESULT_LD),
        ("application/*", did.RESULT_LD),
        ("application/ld+json", did.RESULT_LD),
        ('application/ld+json;profile="https://w3id.org/did-resolution"', did.RESULT_LD),
        ('application/ld+json; profile="https://example.com/other"', None),
        ("application/did-resolution", "application/did-resolution"),
        ("application/did+ld+json", "application/did+ld+json"),
        ("APPLICATION/DID+JSON", "application/did+json"),
        ("application/did", "application/did"),
        ("application/json", "application/json"),
        ("application/did+json, application/did-resolution", "application/did-resolution"),
        ("application/did+json;q=0.9, application/did+ld+json;q=0.8", "application/did+json"),
        ("application/did+ld+json, */*;q=0.1", "application/did+ld+json"),
        ("application/did+ld+json;q=0, */*", did.RESULT_LD),
        ("text/html", None),
        ("text/html;q=x", None),
    ],
)
def test_negotiate_picks_the_representation_the_accept_header_prefers(
    accept: str, media: str | None
) -> None:
    offer = did.negotiate(accept)
    assert (offer.media_type if offer else None) == media


@pytest.mark.parametrize(
    ("text", "method"),
    [
        ("did:bid:efGsChQR2U32pvwJcDNPoYHhGXL1Rgq", "bid"),
        ("did:cn:88.100.1", "cn"),
        ("did:example:123456", "example"),
        ("did:web:example.com%3A8443:user", "web"),
        ("did:Web:example.com", None),  # method names are lowercase
        ("did:web:", None),
        ("did:web:a b", None),
        ("did:web:a%zz", None),
        ("88.100.1/x", None),
    ],
)
def test_method_of_tells_dids_of_any_method_from_what_is_no_did(
    text: str, method: str | None
) -> None:
    assert method_of(text) == method
