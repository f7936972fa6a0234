"""did:bid addresses and BIF's Base58: RFC-003/RFC-005's vectors, and fresh keys from
BIF's own Java SDK (cn.bitfactory:bif-chain-sdk, through deploy/bif/sdk.sh)."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
)
from hypothesis import given
from hypothesis import strategies as st

from schemas.errors import InvalidValue
from schemas.identifiers import parse
from schemas.identifiers.base58 import ALPHABET, b58decode, b58encode
from schemas.identifiers.bid_address import address, check_keys, public_key_hex
from tests.bif_sdk import sdk

BITCOIN = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# RFC-005 §5.6.4 (and RFC-004 §6.1.6): the test private key, its public key as BIF
# writes it, and the DID of the document it signs
RFC_PRIVATE = "priSPKp8oiiAXGZaXFBMKEAoL2b6J6UDQCw4x39ereXYtyAejM"
RFC_PUBLIC_HEX = "b06566f76733ae048fda721d47afe8780b572636496c93253db86dc8d5427fc54e9a06"
RFC_DID = "did:bid:ef18F9AVK4SQLZPRrPkrVWwp9kbpdXHx"
PRIVATE_PREFIX = bytes((0x18, 0x9E, 0x99)) + b"ef"  # RFC-003 §4.1.2: "pri", 'e', 'f'


def raw_of(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def der_of(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def private_seed(text: str) -> bytes:
    """The Ed25519 seed of a BIF private key ("pri...")."""
    data = b58decode(text)
    assert data[:5] == PRIVATE_PREFIX, data.hex()
    return data[5:]


def test_bifs_alphabet_is_bitcoins_with_b_and_u_swapped() -> None:
    swapped = {"b": "B", "B": "b", "u": "U", "U": "u"}
    assert "".join(swapped.get(c, c) for c in BITCOIN) == ALPHABET


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"", ""),
        (b"\x00", "1"),
        (b"\x00\x00\x01", "112"),
        (bytes([57]), "z"),
        (bytes([10]), "b"),  # Bitcoin's 'B'
        (bytes([34]), "B"),  # Bitcoin's 'b'
        (bytes([27]), "u"),  # Bitcoin's 'U'
        (bytes([52]), "U"),  # Bitcoin's 'u'
        (b"\x01\x00", "5R"),
    ],
)
def test_b58_table(data: bytes, text: str) -> None:
    assert b58encode(data) == text
    assert b58decode(text) == data


@given(st.binary(max_size=40))
def test_b58_round_trip(data: bytes) -> None:
    assert b58decode(b58encode(data)) == data


def test_b58decode_names_the_character_not_in_the_alphabet() -> None:
    with pytest.raises(ValueError, match="'0' at position 2"):
        b58decode("ab0")


def test_the_rfc_vectors() -> None:
    seed = private_seed(RFC_PRIVATE)
    raw = raw_of(ed25519.Ed25519PrivateKey.from_private_bytes(seed))
    assert public_key_hex(raw) == RFC_PUBLIC_HEX
    assert address(raw) == RFC_DID
    assert address(raw, "ab12") == "did:bid:ab12:ef18F9AVK4SQLZPRrPkrVWwp9kbpdXHx"
    # RFC-003 §4.1.1's own steps: the last 22 bytes of the raw key's SHA-256, Base58
    assert RFC_DID.endswith(b58encode(hashlib.sha256(raw).digest()[-22:]))
    assert parse(RFC_DID).canonical == RFC_DID


def test_fresh_sdk_keys_give_the_addresses_idres_derives() -> None:
    keys = sdk("keygen", 20)["keys"]
    for key in keys:
        raw = bytes.fromhex(key["rawPublicKey"])
        assert address(raw) == key["address"]
        assert public_key_hex(raw) == key["publicKeyHex"]
        # the SDK's private key, read with BIF's Base58, is the seed of that public key
        seed = private_seed(key["privateKey"])
        assert raw_of(ed25519.Ed25519PrivateKey.from_private_bytes(seed)) == raw
        assert parse(key["address"]).canonical == key["address"]


def test_the_sdk_gives_keys_made_here_the_addresses_idres_derives() -> None:
    raws = [raw_of(ed25519.Ed25519PrivateKey.generate()) for _ in range(10)]
    hexes = [public_key_hex(r) for r in raws]
    assert sdk("address", *hexes)["addresses"] == [address(r) for r in raws]
    on_ab12 = sdk("address", "--code", "ab12", *hexes)["addresses"]
    assert on_ab12 == [address(r, "ab12") for r in raws]
    (vector,) = sdk("public", RFC_PRIVATE)["keys"]
    assert (vector["address"], vector["publicKeyHex"]) == (RFC_DID, RFC_PUBLIC_HEX)


def test_a_did_with_its_own_key_passes_and_others_name_both_addresses() -> None:
    own, other = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    did = parse(address(raw_of(own)))
    check_keys(did, {300: der_of(own)})
    check_keys(did, {300: der_of(other), 301: der_of(own)})  # a recovery key beside it
    sub = parse(address(raw_of(own), "ab12"))
    check_keys(sub, {300: der_of(own)})
    check_keys(did, {300: der_of(ec.generate_private_key(ec.SECP256R1()))})  # no Ed25519
    check_keys(did, {})
    check_keys(parse("did:bid:zf" + did.canonical[10:]), {300: der_of(other)})  # SM2: not ours
    with pytest.raises(InvalidValue) as caught:
        check_keys(did, {300: der_of(other)})
    message = caught.value.message
    assert did.canonical in message
    assert address(raw_of(other)) in message
    assert "index 300" in message
    with pytest.raises(InvalidValue, match=address(raw_of(other), "ab12")):
        check_keys(sub, {7: der_of(other)})
