"""W3C DID resolution results for did:bid and did:cn, built from a resolved record, and
the media types a DID resolver answers in (the Universal Resolver's driver contract).

Pure: record JSON in, the DID Resolution result (didDocument and both metadata
blocks) out. HS_PUBKEY values become JsonWebKey2020 verification methods, URL-like
values services. ``negotiate`` picks the representation an ``Accept`` header asks for.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key

CONTENT_TYPE = "application/did-resolution"
# The Universal Resolver's driver contract (swagger/api-driver.yml) names the result
# by this type; its HTTP driver takes either (uni-resolver-core ResolveResult)
RESULT_LD = 'application/ld+json;profile="https://w3id.org/did-resolution"'
DOCUMENT_LD = "application/did+ld+json"
DOCUMENT_JSON = "application/did+json"
DID_CONTEXT = "https://www.w3.org/ns/did/v1"
RESOLUTION_CONTEXT = "https://w3id.org/did-resolution/v1"
# HTTP status of each error (the Universal Resolver's openapi.yaml, after DID
# Resolution's HTTP(S) binding): the body is the resolution result with the error
ERROR_STATUS = {
    "invalidDid": 400,
    "notFound": 404,
    "representationNotSupported": 406,
    "internalError": 500,
    "methodNotSupported": 501,
}


@dataclass(frozen=True, slots=True)
class Failure:
    """A resolution that found no document: its DID Resolution error and why."""

    error: str
    message: str
    http_status: int | None = None  # when not the error's own (a failure further down)

    @property
    def status(self) -> int:
        return self.http_status or ERROR_STATUS[self.error]


@dataclass(frozen=True, slots=True)
class Offer:
    """A representation this resolver answers in."""

    media_type: str  # as the Content-Type says it
    document: bool  # the bare DID document, not the resolution result
    ld: bool = True  # JSON-LD: the document keeps its @context


# In the order preferred when an Accept header rates several alike: the result first,
# as the Universal Resolver asks for it beside the document type it wants
OFFERS = (
    Offer(RESULT_LD, document=False),
    Offer(CONTENT_TYPE, document=False),
    Offer(DOCUMENT_LD, document=True),
    Offer(DOCUMENT_JSON, document=True, ld=False),  # DID Core §6.2: JSON, no @context
    Offer("application/did", document=True),  # DID Resolution's newer name for a document
    Offer("application/json", document=False),
)


def _split(text: str, sep: str) -> list[str]:
    """``text`` cut at ``sep`` outside double quotes (RFC 9110 §5.6.4 quoted-string)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _media(text: str) -> tuple[str, dict[str, str]]:
    """A media type or range: ``type/subtype`` lowercased, and its parameters."""
    head, *params = _split(text, ";")
    out: dict[str, str] = {}
    for param in params:
        name, _, value = param.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[name.strip().lower()] = value
    return head.strip().lower(), out


def _quality(offer: Offer, ranges: list[tuple[str, dict[str, str], float]]) -> float:
    """The weight ``ranges`` give ``offer``: that of the most specific range matching it
    (RFC 9110 §12.5.1); a range's parameters must all be the offer's own."""
    kind, params = _media(offer.media_type)
    best, weight = -1, 0.0
    for media, rparams, q in ranges:
        if media == "*/*":
            specificity = 0
        elif media.endswith("/*") and kind.startswith(media[:-1]):
            specificity = 1
        elif media == kind:
            if any(params.get(k) != v for k, v in rparams.items()):
                continue
            specificity = 2 + len(rparams)
        else:
            continue
        if specificity > best:
            best, weight = specificity, q
    return weight


def negotiate(accept: str) -> Offer | None:
    """The representation ``accept`` prefers (none given: the resolution result), or
    None when it accepts none of ours (representationNotSupported)."""
    ranges: list[tuple[str, dict[str, str], float]] = []
    for item in _split(accept, ","):
        if not item.strip():
            continue
        media, params = _media(item)
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 0.0
        ranges.append((media, params, q))
    if not ranges:
        return OFFERS[0]
    best: Offer | None = None
    top = 0.0
    for offer in OFFERS:
        q = _quality(offer, ranges)
        if q > top:
            best, top = offer, q
    return best


def render(result: dict[str, Any], offer: Offer) -> dict[str, Any]:
    """A successful result as ``offer`` represents it."""
    if not offer.document:
        return result
    document = dict(result["didDocument"])
    if not offer.ld:
        document.pop("@context", None)
    return document


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
        "didResolutionMetadata": {"contentType": DOCUMENT_LD},
        "didDocumentMetadata": {"updated": updated} if updated else {},
    }


def resolution_error(error: str, message: str) -> dict[str, Any]:
    """A failed resolution: ``invalidDid``, ``notFound``, ``methodNotSupported``,
    ``representationNotSupported`` or ``internalError``. The Universal Resolver reads
    the error and its ``errorMessage`` (uni-resolver-core HttpBindingClientUtil)."""
    return {
        "@context": RESOLUTION_CONTEXT,
        "didDocument": None,
        "didResolutionMetadata": {"error": error, "errorMessage": message},
        "didDocumentMetadata": {},
    }


def from_answer(did: str, status: int, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The resolution result of a resolved record's answer (Handle JSON), and its status."""
    if status == 404:
        return resolution_error("notFound", str(body.get("message"))), 404
    if status != 200 or body.get("responseCode") != 1:
        return resolution_error("internalError", str(body.get("message"))), status
    return resolution_result(did, body), 200
