"""did:bid addresses as BIF derives them from an Ed25519 public key, and the rule that a
did:bid registered with Ed25519 HS_PUBKEY values is the address of one of them.

BIF RFC-003 §4.1.1: hash the raw public key (SHA-256 for Ed25519 and secp256k1, SM3
for SM2), keep the last 22 bytes, encode them (here Base58, encoding 'f'), put the
key-type and encoding letters before them, then the sub-chain code and ':' if any,
then "did:bid:". BIF writes a public key as hex of 0xb0, the key-type and encoding
letters, and the raw key (RFC-003 §4.1.3: ``publicKeyHex``, "b06566..." for Ed25519).
Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key

from schemas.errors import FieldError, InvalidValue
from schemas.identifiers.base58 import b58encode
from schemas.identifiers.did import SUFFIX_BYTES, suffix_bytes
from schemas.identifiers.model import Identifier, Scheme

ED25519 = "e"
BASE58 = "f"
PUBLIC_KEY_PREFIX = 0xB0  # RFC-003 §4.1.3, fourth step


def address(raw: bytes, code: str | None = None) -> str:
    """The did:bid of an Ed25519 raw public key (32 bytes), on the main chain or, with
    ``code``, on that sub-chain (RFC-003 §4.1.1)."""
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, not {len(raw)}")
    suffix = b58encode(suffix_of(raw))
    return "did:bid:" + (f"{code}:" if code else "") + ED25519 + BASE58 + suffix


def public_key_hex(raw: bytes) -> str:
    """BIF's text form of an Ed25519 raw public key (``publicKeyHex``, RFC-003 §4.1.3)."""
    return bytes((PUBLIC_KEY_PREFIX, ord(ED25519), ord(BASE58))).hex() + raw.hex()


def raw_ed25519(der: bytes) -> bytes | None:
    """The raw key of a DER SubjectPublicKeyInfo if it is an Ed25519 key, else None."""
    try:
        key = load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        return None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        return None
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def suffix_of(raw: bytes) -> bytes:
    """The 22 bytes a did:bid suffix stands for: the last of the key's SHA-256."""
    return hashlib.sha256(raw).digest()[-SUFFIX_BYTES:]


def check_keys(ident: Identifier, keys: Mapping[int, bytes]) -> None:
    """Refuse a did:bid of key type 'e' whose record has Ed25519 HS_PUBKEY values
    (``keys``: DER by index, ``Record.public_keys``) none of which it is the address of;
    the error names the DID and each key's own address. Other DIDs, other key types
    and records without such keys pass: a BID document may list keys besides its own
    (RFC-004 §5.1, ``recovery``), so one match is enough."""
    if ident.scheme is not Scheme.DID_BID:
        return
    key_type, suffix = suffix_bytes(ident.canonical)
    if key_type != ED25519:
        return
    code = ident.routing.labels[0] if ident.routing.labels else None
    mismatched: list[tuple[int, str]] = []
    for index, der in sorted(keys.items()):
        raw = raw_ed25519(der)
        if raw is None:
            continue
        if suffix_of(raw) == suffix:
            return
        mismatched.append((index, address(raw, code)))
    if mismatched:
        raise InvalidValue(
            [
                FieldError(
                    field="handle",
                    reason=f"{ident.canonical} is not the address of the Ed25519 key at "
                    f"index {index}, whose address is {own} (BIF RFC-003 §4.1.1: the last "
                    "22 bytes of the key's SHA-256); register the DID its key gives, or "
                    "give the DID's own key",
                )
                for index, own in mismatched
            ]
        )
