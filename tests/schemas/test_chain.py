"""The chain codec: hash links, Merkle roots and paths, signed blocks, anchors."""

from __future__ import annotations

import contextlib
import hashlib

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from schemas.chain import (
    GENESIS,
    Block,
    ChainError,
    Kind,
    Tip,
    _root,
    anchor_of,
    check_block,
    cut_block,
    decode_anchor,
    decode_block,
    digest,
    entry_hash,
    link,
    merkle_path,
    merkle_root,
    root_from_path,
    tip_after,
)
from schemas.errors import EncodingError

KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUB = KEY.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


START = Tip()


def _block(tip: Tip = START, n: int = 3, alg: str = "sha256", chain: str = "sub-a") -> Block:
    items = [("op", f"payload-{tip.seq + i}".encode()) for i in range(n)]
    return cut_block(chain=chain, alg=alg, tip=tip, items=items, key=KEY, at=1_700_000_000_000)


def test_sm3_is_the_standard_one() -> None:
    # GB/T 32905-2016 Appendix A, example 1: SM3("abc")
    assert digest("sm3", b"abc").hex() == (
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    )


def test_unknown_hash_algorithm_is_refused() -> None:
    with pytest.raises(ChainError, match="unknown hash algorithm 'md5'"):
        digest("md5", b"")


def test_merkle_root_follows_rfc6962() -> None:
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(3)]
    leaf = [hashlib.sha256(b"\x00" + h).digest() for h in leaves]
    left = hashlib.sha256(b"\x01" + leaf[0] + leaf[1]).digest()
    assert merkle_root("sha256", leaves) == hashlib.sha256(b"\x01" + left + leaf[2]).digest()
    assert merkle_root("sha256", leaves[:1]) == leaf[0]


@pytest.mark.parametrize("alg", ["sha256", "sm3"])
@pytest.mark.parametrize("size", [*range(0, 40), 63, 64, 65, 999, 1000, 1001])
def test_the_bottom_up_merkle_root_is_the_recursive_split(alg: str, size: int) -> None:
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(size)]
    recursive = (
        _root(alg, [digest(alg, b"\x00" + x) for x in leaves]) if leaves else digest(alg, b"")
    )
    assert merkle_root(alg, leaves) == recursive


@pytest.mark.parametrize("alg", ["sha256", "sm3"])
def test_a_link_hashes_each_entry_as_entry_hash_does(alg: str) -> None:
    items: list[tuple[Kind, bytes]] = [("op", b"a"), ("anchor", b"b"), ("op", b"")]
    prev = GENESIS
    for e in link(alg, "sub-a", 7, GENESIS, items):
        assert e.hash == entry_hash(alg, "sub-a", e.seq, e.kind, prev, e.payload)
        assert e.prev == prev
        prev = e.hash


@given(st.integers(min_value=1, max_value=70), st.data())
def test_every_merkle_path_proves_its_leaf(size: int, data: st.DataObject) -> None:
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(size)]
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    path = merkle_path("sha256", leaves, index)
    root = merkle_root("sha256", leaves)
    assert root_from_path("sha256", leaves[index], index, size, path) == root
    other = (index + 1) % size
    if other != index:  # the same path cannot prove the leaf at another place
        with contextlib.suppress(ChainError):
            assert root_from_path("sha256", leaves[index], other, size, path) != root


def test_merkle_path_of_wrong_length_is_refused() -> None:
    leaves = [bytes([i]) * 32 for i in range(5)]
    path = merkle_path("sha256", leaves, 2)
    with pytest.raises(ChainError, match="shorter"):
        root_from_path("sha256", leaves[2], 2, 5, path[:-1])
    with pytest.raises(ChainError, match="longer"):
        root_from_path("sha256", leaves[2], 2, 5, [*path, bytes(32)])


@pytest.mark.parametrize("alg", ["sha256", "sm3"])
def test_blocks_chain_and_check(alg: str) -> None:
    first = _block(alg=alg)
    assert first.header.prev == GENESIS
    assert first.header.first == 1
    again = check_block(decode_block(first.message()), tip=Tip(), public_key_der=PUB)
    assert again.hash == first.hash
    assert [e.hash for e in again.entries] == [e.hash for e in first.entries]
    second = _block(tip_after(first), n=2, alg=alg)
    assert second.header.prev == first.hash
    assert second.header.first == 4
    assert second.entries[0].prev == first.entries[-1].hash
    check_block(decode_block(second.message()), tip=tip_after(first), public_key_der=PUB)


def test_a_block_out_of_place_is_refused() -> None:
    first = _block()
    second = _block(tip_after(first))
    with pytest.raises(ChainError, match="does not follow 0"):
        check_block(decode_block(second.message()), tip=Tip(), public_key_der=PUB)
    forged_tip = Tip(height=1, block_hash=b"\x01" * 32, seq=3, head=first.header.head)
    with pytest.raises(ChainError, match="broken link"):
        check_block(decode_block(second.message()), tip=forged_tip, public_key_der=PUB)


def test_a_changed_entry_or_foreign_key_is_refused() -> None:
    block = _block()
    obj = cbor2.loads(block.message())
    obj["entries"][1][1] = b"tampered"
    tampered = decode_block(cbor2.dumps(obj))
    with pytest.raises(ChainError, match="do not chain to head"):
        check_block(tampered, tip=Tip(), public_key_der=PUB)
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    der = other.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ChainError, match="not signed by its node"):
        check_block(decode_block(block.message()), tip=Tip(), public_key_der=der)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"\xff\x00", "not CBOR"),
        (cbor2.dumps([1, 2]), "version number"),
        (cbor2.dumps({"v": 9, "header": b"", "sig": b"", "entries": []}), "version 9"),
        (cbor2.dumps({"v": 1, "header": "x", "sig": b"", "entries": []}), "byte strings"),
        (cbor2.dumps({"v": 1, "header": b"", "sig": b"", "entries": [["x", b""]]}), "entries"),
    ],
)
def test_malformed_blocks_say_why(message: bytes, reason: str) -> None:
    with pytest.raises(EncodingError, match=reason):
        decode_block(message)


def test_anchor_round_trip() -> None:
    block = _block()
    anchor = anchor_of(block)
    assert decode_anchor(anchor.encode()) == anchor
    assert anchor.hash == block.hash
    assert anchor.seq == 3
