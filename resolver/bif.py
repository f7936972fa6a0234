"""BID documents as Xinghuo's own resolvers answer them (BIF RFC-005 §5.1, the fields
of RFC-004 §5.1), built from a resolved did:bid record, so BIF tools (the BIF
Universal Resolver driver, caict-4iot-dev/uni-resolver-driver-did-bid) read idres.

A record maps to a BID document so: Ed25519 HS_PUBKEY values become ``publicKey``
entries (``type: "Ed25519"``, ``publicKeyHex`` as BIF writes keys: b0 65 66 + the raw
key); those whose address the DID is are its ``authentication``, the others its
``extension.recovery`` (RFC-004: keys that recover control); http(s) string values
become ``service`` entries; every other public value but HS_* becomes an
``extension.attributes`` entry ({key: type, value, format, encrypt: 0, desc}).
``extension.ttl`` is how long a cache may keep the answer (the shortest TTL of the
values), ``extension.type`` the value of a ``BIF_TYPE`` value if there is one (RFC-004
§6.1.7.2, e.g. 104 a smart device), else 999 (other); ``created`` and ``updated`` the
oldest and newest value timestamps. No ``proof``: idres's own proofs are its chains.

Pure: Handle JSON in, BIF JSON out; ``now`` is passed in.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from schemas.identifiers.bid_address import public_key_hex, raw_ed25519, suffix_of
from schemas.identifiers.did import suffix_bytes

VERSION = "1.0.0"  # RFC-005: the BID resolution protocol's version
# RFC-004 §6.1.5, the codes this resolver answers with
SUCCESS = 0
ERROR = 2
PROTOCOL_ERROR = 4
NOT_SUPPORTED = 5
NOT_FOUND = 6
FIELD_NOT_FOUND = 8
MESSAGES = {
    SUCCESS: "success",
    ERROR: "error",
    PROTOCOL_ERROR: "protocol error",
    NOT_SUPPORTED: "operation not supported",
    NOT_FOUND: "not found",
    FIELD_NOT_FOUND: "field not found",
}
TYPE_VALUE = "BIF_TYPE"  # a record value that sets extension.type
OTHER_TYPE = 999  # RFC-004 §6.1.7.2: 其他 (other)
FIELDS = {"public-keys": "publicKey", "attributes": "attributes"}  # RFC-005 §5.2.1-5.2.2


@dataclass(frozen=True, slots=True)
class Answer:
    """A BIF answer: its HTTP status and body."""

    status: int
    body: dict[str, Any]


def failure(code: int, detail: str, status: int) -> Answer:
    """An error as RFC-005 writes it: ``errorCode`` and ``message`` (the code's name, then
    what went wrong)."""
    return Answer(status, {"errorCode": code, "message": f"{MESSAGES[code]}: {detail}"})


def _success(data: dict[str, Any]) -> Answer:
    return Answer(200, {"errorCode": SUCCESS, "message": MESSAGES[SUCCESS], "data": data})


def document(did: str, record: dict[str, Any], *, now: float) -> dict[str, Any]:
    """The BID document of ``did`` from its record's answer (Handle JSON)."""
    _, own = suffix_bytes(did)
    keys: list[dict[str, Any]] = []
    authentication: list[str] = []
    recovery: list[str] = []
    services: list[dict[str, Any]] = []
    attributes: list[dict[str, Any]] = []
    kind = OTHER_TYPE
    ttls: list[float] = []
    stamps: list[str] = []
    for value in record.get("values", []):
        data = value.get("data", {})
        if not isinstance(data, dict):
            continue
        type_ = str(value.get("type", ""))
        index = value.get("index")
        stamps.append(str(value.get("timestamp", "")))
        ttl = value.get("ttl")
        if isinstance(ttl, int):
            ttls.append(ttl - now if value.get("ttlType") == "absolute" else ttl)
        text = data.get("value")
        if type_ == "HS_PUBKEY":
            raw = _raw_key(text)
            if raw is None:
                continue
            key_id = f"{did}#key-{index}"
            keys.append(
                {
                    "id": key_id,
                    "type": "Ed25519",
                    "controller": did,
                    "publicKeyHex": public_key_hex(raw),
                }
            )
            (authentication if suffix_of(raw) == own else recovery).append(key_id)
        elif type_.startswith("HS_"):
            continue
        elif type_ == TYPE_VALUE and isinstance(text, str) and text.isdigit():
            kind = int(text)
        elif data.get("format") == "string" and str(text).startswith(("http://", "https://")):
            services.append(
                {"id": f"{did}#{type_.lower()}-{index}", "type": type_, "serviceEndpoint": text}
            )
        else:
            attributes.append(
                {
                    "key": type_,
                    "desc": f"value {index} ({data.get('format')})",
                    "encrypt": 0,
                    "format": "text" if data.get("format") == "string" else "mixture",
                    "value": text if isinstance(text, str) else str(text),
                }
            )
    if not authentication:  # no key gives this address: every key speaks for it
        authentication, recovery = recovery, []
    extension: dict[str, Any] = {
        "ttl": max(0, int(min(ttls))) if ttls else 0,
        "type": kind,
    }
    if recovery:
        extension["recovery"] = recovery
    if attributes:
        extension["attributes"] = attributes
    out: dict[str, Any] = {
        "@context": ["https://www.w3.org/ns/did/v1"],
        "version": VERSION,
        "id": did,
    }
    if keys:
        out["publicKey"] = keys
    out["authentication"] = authentication
    out["extension"] = extension
    if services:
        out["service"] = services
    dated = sorted(s for s in stamps if s)
    if dated:
        out["created"], out["updated"] = dated[0], dated[-1]
    return out


def answer(did: str, status: int, record: dict[str, Any], field: str, *, now: float) -> Answer:
    """What ``GET {base}/{did}[/{field}]`` answers, from the record's answer (Handle JSON
    with its status): the document, or one of RFC-005 §5.2's fields of it."""
    if status == 404:
        return failure(NOT_FOUND, f"{did} is not registered", 404)
    if status != 200 or record.get("responseCode") != 1:
        return failure(ERROR, str(record.get("message")), status if status >= 400 else 502)
    doc = document(did, record, now=now)
    if not field:
        return _success({"didDocument": doc})
    name = FIELDS[field]
    held = doc.get(name, doc["extension"].get(name))
    if not held:
        return failure(FIELD_NOT_FOUND, f"{did} has no {name}", 404)
    return _success({"version": VERSION, "id": did, name: held})


def _raw_key(text: Any) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return raw_ed25519(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return None
