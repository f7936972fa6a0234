"""W3C DID resolution results for did:bid and did:cn, built from a resolved record.

Pure: record JSON in, the DID Resolution result (didDocument and both metadata
blocks) out. HS_PUBKEY values become JsonWebKey2020 verification methods, URL-like
values services.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key

CONTENT_TYPE = "application/did-resolution"
DID_CONTEXT = "https://www.w3.org/ns/did/v1"
RESOLUTION_CONTEXT = "https://w3id.org/did-resolution/v1"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwk(der: bytes) -> dict[str, str] | None:
    """RFC 8037 (OKP) or RFC 7518 §6.2 (EC P-256) JWK of a DER public key."""
    try:
        key = load_der_public_key(der)
    except ValueError:
        return None
    if isinstance(key, ed25519.Ed25519PublicKey):
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64url(key.public_bytes(Encoding.Raw, PublicFormat.Raw)),
        }
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        numbers = key.public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64url(numbers.x.to_bytes(32, "big")),
            "y": _b64url(numbers.y.to_bytes(32, "big")),
        }
    return None


def resolution_result(did: str, record: dict[str, Any]) -> dict[str, Any]:
    methods: list[dict[str, Any]] = []
    services: list[dict[str, Any]] = []
    updated = ""
    for value in record.get("values", []):
        data = value.get("data", {})
        updated = max(updated, str(value.get("timestamp", "")))
        if value.get("type") == "HS_PUBKEY" and isinstance(data, dict):
            try:
                key = jwk(base64.b64decode(data.get("value", ""), validate=True))
            except ValueError:
                key = None
            if key is not None:
                methods.append(
                    {
                        "id": f"{did}#key-{value['index']}",
                        "type": "JsonWebKey2020",
                        "controller": did,
                        "publicKeyJwk": key,
                    }
                )
        elif (
            isinstance(data, dict)
            and data.get("format") == "string"
            and str(data.get("value", "")).startswith(("http://", "https://"))
        ):
            services.append(
                {
                    "id": f"{did}#{value['type'].lower()}-{value['index']}",
                    "type": value["type"],
                    "serviceEndpoint": data["value"],
                }
            )
    document: dict[str, Any] = {
        "@context": [DID_CONTEXT, "https://w3id.org/security/suites/jws-2020/v1"],
        "id": did,
    }
    if methods:
        document["verificationMethod"] = methods
        document["authentication"] = [m["id"] for m in methods]
        document["assertionMethod"] = [m["id"] for m in methods]
    if services:
        document["service"] = services
    return {
        "@context": RESOLUTION_CONTEXT,
        "didDocument": document,
        "didResolutionMetadata": {"contentType": "application/did+ld+json"},
        "didDocumentMetadata": {"updated": updated} if updated else {},
    }


def resolution_error(error: str, message: str) -> dict[str, Any]:
    """A failed resolution: ``invalidDid``, ``notFound``, or ``internalError``."""
    return {
        "@context": RESOLUTION_CONTEXT,
        "didDocument": None,
        "didResolutionMetadata": {"error": error, "errorMessage": message},
        "didDocumentMetadata": {},
    }
