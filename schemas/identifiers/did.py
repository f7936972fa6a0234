"""Xinghuo DIDs: ``did:bid`` (on the main chain or a sub-chain) and ``did:cn``.

did:bid = "did:bid:" [sub-chain code ":"] key-type encoding suffix, where the code
is 4 lowercase letters or digits, key-type is e (Ed25519), z (SM2) or s (secp256k1),
encoding is f (Base58 in BIF's alphabet, ``base58.py``), s (Base64url, no padding: DID
Core idchar has no '+/=') or t (the Bech32 alphabet, data part only), and the suffix
decodes to 22 bytes (BIF RFC-003 §5.1). There is no checksum. did:cn names a handle
prefix: ``did:cn:88.100.1``.
"""

from __future__ import annotations

import base64
import binascii
import re

from schemas.errors import InvalidIdentifier
from schemas.identifiers.base58 import CHARS as _B58
from schemas.identifiers.base58 import b58decode as _b58decode
from schemas.identifiers.base58 import b58encode
from schemas.identifiers.handle import parse_prefix
from schemas.identifiers.model import Identifier, Namespace, RoutingKey, Scheme

__all__ = ["BECH32", "SERVED_METHODS", "b58encode", "method_of", "parse_did", "suffix_bytes"]

SUFFIX_BYTES = 22
KEY_TYPES = {"e": "Ed25519", "z": "SM2", "s": "secp256k1"}
ENCODINGS = {"f": "Base58", "s": "Base64url", "t": "Bech32"}
_CODE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


# DID Core §3.1: did = "did:" method-name ":" method-specific-id
_DID_SYNTAX = re.compile(
    r"did:([a-z0-9]+):(?:(?:[A-Za-z0-9._-]|%[0-9A-Fa-f]{2})*:)*(?:[A-Za-z0-9._-]|%[0-9A-Fa-f]{2})+"
)
SERVED_METHODS = ("bid", "cn")


def method_of(text: str) -> str | None:
    """The method of ``text`` if it is a DID by DID Core's syntax (any method), else None:
    a resolver tells a DID of a method it does not serve (methodNotSupported) from
    text that is no DID at all (invalidDid)."""
    match = _DID_SYNTAX.fullmatch(text)
    return match.group(1) if match else None


def parse_did(text: str) -> Identifier:
    method_end = text.find(":", 4)
    method = text[4:method_end].lower() if method_end > 0 else text[4:].lower()
    if method == "bid":
        return _parse_bid(text, method_end + 1)
    if method == "cn":
        return _parse_cn(text, method_end + 1)
    raise InvalidIdentifier(
        text, f"DID method {method!r} is not served (did:bid, did:cn)", position=4, scheme="DID"
    )


def _parse_bid(text: str, start: int) -> Identifier:
    parts = text[start:].split(":")
    if len(parts) > 2:
        raise InvalidIdentifier(
            text,
            "too many ':' (did:bid:[code:]id)",
            position=start + len(parts[0]) + len(parts[1]) + 1,
            scheme="did:bid",
        )
    code: str | None = None
    id_start = start
    if len(parts) == 2:
        code = parts[0]
        if len(code) != 4 or any(c not in _CODE_CHARS for c in code):
            raise InvalidIdentifier(
                text,
                f"sub-chain code {code!r} must be 4 lowercase letters or digits",
                position=start,
                scheme="did:bid",
            )
        id_start = start + 5
    ident = text[id_start:]
    if len(ident) < 3:
        raise InvalidIdentifier(
            text, "expected key type, encoding and suffix", position=id_start, scheme="did:bid"
        )
    if ident[0] not in KEY_TYPES:
        raise InvalidIdentifier(
            text,
            f"key type {ident[0]!r} unknown (e Ed25519, z SM2, s secp256k1)",
            position=id_start,
            scheme="did:bid",
        )
    if ident[1] not in ENCODINGS:
        raise InvalidIdentifier(
            text,
            f"encoding {ident[1]!r} unknown (f Base58, s Base64url, t Bech32)",
            position=id_start + 1,
            scheme="did:bid",
        )
    _check_suffix(text, ident[2:], ident[1], id_start + 2)
    labels = (code,) if code else ()
    return Identifier(
        scheme=Scheme.DID_BID,
        canonical="did:bid:" + text[start:],
        routing=RoutingKey(namespace=Namespace.BID, labels=labels),
    )


def _check_suffix(text: str, suffix: str, encoding: str, offset: int) -> None:
    name = ENCODINGS[encoding]
    alphabet = {"f": _B58, "s": _B64URL, "t": frozenset(BECH32)}[encoding]
    for k, ch in enumerate(suffix):
        if ch not in alphabet:
            raise InvalidIdentifier(
                text, f"{ch!r} is not a {name} character", position=offset + k, scheme="did:bid"
            )
    decoded = {"f": _b58decode, "s": _b64url_decode, "t": _bech32_data_decode}[encoding](suffix)
    if decoded is None or len(decoded) != SUFFIX_BYTES:
        got = "does not decode" if decoded is None else f"decodes to {len(decoded)} bytes"
        raise InvalidIdentifier(
            text,
            f"{name} suffix {got}; it must decode to {SUFFIX_BYTES} bytes",
            position=offset,
            scheme="did:bid",
        )


def _b64url_decode(s: str) -> bytes | None:
    if len(s) % 4 == 1:
        return None
    try:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except (binascii.Error, ValueError):
        return None


def _bech32_data_decode(s: str) -> bytes | None:
    bits = 0
    acc = 0
    out = bytearray()
    for ch in s:
        acc = (acc << 5) | BECH32.index(ch)
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    # BIP 173 conversion: leftover padding must be under 5 bits and all zero
    if bits >= 5 or acc & ((1 << bits) - 1):
        return None
    return bytes(out)


def _parse_cn(text: str, start: int) -> Identifier:
    segments = parse_prefix(text, text[start:], offset=start, scheme="did:cn")
    return Identifier(
        scheme=Scheme.DID_CN,
        canonical="did:cn:" + ".".join(segments),
        routing=RoutingKey(namespace=Namespace.HANDLE, labels=tuple(segments)),
    )


def suffix_bytes(did: str) -> tuple[str, bytes]:
    """The key-type letter and the 22 bytes of the suffix of ``did``, a did:bid as
    ``parse_did`` accepted it."""
    ident = did.rsplit(":", 1)[1]
    decoded = {"f": _b58decode, "s": _b64url_decode, "t": _bech32_data_decode}[ident[1]](ident[2:])
    if decoded is None:
        raise ValueError(f"{did!r} is not a parsed did:bid")
    return ident[0], decoded
