"""Inputs the fuzzers found that crash code outside schemas/' codecs: each is refused
with the documented error (or, for the directory and proofs, ignored or reported)
once its owner's fix lands."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import replace

import cbor2
import orjson
import pytest

from benchmarks.fuzz import seeds
from benchmarks.fuzz.seeds import delegations
from schemas.errors import EncodingError
from sync.proof import check

_HUGE = 2**20000  # a CBOR bignum (tag 2) past CPython's 4,300-digit str() limit


def _with_version(decode: Callable[[bytes], object], version: int) -> bytes:
    from schemas.oplog import decode_operation

    if decode is decode_operation:
        fields = {"op": "create", "handle": "x", "version": 1, "actor": "a", "at": 1}
        return cbor2.dumps({"v": version, **fields, "record": None})
    return cbor2.dumps({"v": version})


@pytest.mark.parametrize("what", ["operation", "block", "header", "anchor"])
def test_a_huge_bignum_version_of_an_operation_or_block_is_an_encoding_error(what: str) -> None:
    from schemas.chain import decode_anchor, decode_block, decode_header
    from schemas.oplog import decode_operation

    decode: Callable[[bytes], object] = {
        "operation": decode_operation,
        "block": decode_block,
        "header": decode_header,
        "anchor": decode_anchor,
    }[what]
    with pytest.raises(EncodingError):
        decode(_with_version(decode, _HUGE))


# a DER SubjectPublicKeyInfo whose algorithm OID (1.3.101.114) no library knows
def _unknown_key(der: bytes) -> bytes:
    return der.replace(bytes.fromhex("06032b6570"), bytes.fromhex("06032b6572"))


def test_a_child_of_a_node_whose_key_is_of_an_unknown_algorithm_is_ignored() -> None:
    """A backbone operator (or the super node) can delegate to a node with such a key;
    a delegation naming that node as parent must then be ignored, not stop the
    directory of every node that reads the topic."""
    from resolver.topology import Directory, Role, sign_delegation
    from sync.directory import LiveDirectory

    signed = delegations()
    live = LiveDirectory(Directory(signed, signed[0].public_key), signed[0].public_key)
    odd = replace(
        signed[1], name="odd", prefixes=("88.200",), public_key=_unknown_key(signed[1].public_key)
    )
    live.adopt([sign_delegation(odd, seeds.SUPER_KEY)])
    kid = replace(signed[1], name="kid", parent="odd", role=Role.SUBCHAIN, prefixes=("88.200.1",))
    live.adopt([kid])  # must not raise
    assert "kid" not in live().by_name


def test_a_proof_whose_super_node_key_is_of_an_unknown_algorithm_is_a_problem() -> None:

    answer = orjson.loads(seeds.proof()[0])
    odd = _unknown_key(delegations()[0].public_key)
    answer["proof"]["delegations"][0]["publicKey"] = base64.b64encode(odd).decode()
    result = check(answer, None, partial=True)  # must not raise
    assert result.problems
