"""Fuzzing, briefly, of the schemas' parsers and decoders: identifiers, record JSON,
record CBOR, operations, blocks, headers, anchors and snapshot frames. Each input
is accepted or refused with the domain's 4xx error, never anything else (the long
run is benchmarks/fuzz; these replay its targets under Hypothesis)."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.fuzz import seeds
from benchmarks.fuzz.targets import TARGETS, identifier_text
from schemas.codec_cbor import decode_record
from schemas.errors import EncodingError, IdresError, ServerError, shown
from tests.fuzz.strategies import FUZZ, expect, inputs, run

SCHEMA_TARGETS = ["identifiers", "record_json", "cbor_record", "oplog", "chain", "snapshot"]


@pytest.mark.parametrize("name", SCHEMA_TARGETS)
def test_every_seed_is_accepted_so_mutations_start_from_valid_input(name: str) -> None:
    assert all(TARGETS[name].call(seed) for seed in seeds.SEEDS[name]())


def test_identifier_seeds_each_parse() -> None:
    from schemas.identifiers import parse
    from schemas.identifiers.prefix import parse_prefix

    assert all(parse(s) for s in seeds.identifiers())
    assert all(parse_prefix(s) for s in seeds.prefixes())


# identifiers as users type them: the characters every scheme's grammar turns on
_IDENT_CHARS = st.sampled_from(
    [*"0123456789./:-_%?#@ABCXZabcdefsztuvwxyz", "\u00e9", "\ud800", "\x00", " ", "\u200b"]
)
_IDENT_HEADS = st.sampled_from(
    [
        "",
        "did:bid:",
        "did:cn:",
        "https://h/01/",
        "http://h/414/",
        "urn:oid:",
        "oid:",
        "ecode:",
        "gtin:",
        "gln:",
        "sscc:",
        "hdl:",
        "doi:10.",
        "88.100.1/",
        "gs1:",
        "bid:",
        "10.",
    ]
)


@FUZZ
@given(head=_IDENT_HEADS, tail=st.text(_IDENT_CHARS, max_size=40))
def test_identifier_text_of_any_scheme_is_parsed_or_refused(head: str, tail: str) -> None:
    expect(lambda: identifier_text(head + tail))


@FUZZ
@given(data=inputs(seeds.SEEDS["identifiers"]()))
def test_identifier_bytes_are_parsed_or_refused(data: bytes) -> None:
    run("identifiers", data)


_JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            "string",
            "base64",
            "hex",
            "admin",
            "key",
            "vlist",
            "absolute",
            "1110",
            "2026-11-23T08:00:00Z",
            "9999-12-31T23:59:59+14:00",
            "AAAA",
            "zz",
            "HS_ADMIN",
            "HS_PUBKEY",
            "HS_VLIST",
            "URL",
            "EMAIL",
            "88.100.1/X",
        ]
    ),
    st.text(max_size=12),
)
_JSON = st.recursive(
    _JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "index",
                    "type",
                    "data",
                    "ttl",
                    "ttlType",
                    "timestamp",
                    "permissions",
                    "references",
                    "format",
                    "value",
                    "handle",
                    "x",
                ]
            ),
            inner,
            max_size=6,
        ),
    ),
    max_leaves=20,
)


@FUZZ
@given(values=st.lists(_JSON, max_size=4))
def test_record_json_of_any_shape_is_decoded_or_refused(values: list[object]) -> None:
    import orjson

    run("record_json", orjson.dumps({"values": values}))


@FUZZ
@given(data=inputs(seeds.SEEDS["record_json"]()))
def test_record_json_bytes_are_decoded_or_refused(data: bytes) -> None:
    run("record_json", data)


@FUZZ
@given(data=inputs(seeds.SEEDS["cbor_record"]()))
def test_record_cbor_is_decoded_or_refused(data: bytes) -> None:
    run("cbor_record", data)


@FUZZ
@given(data=inputs(seeds.SEEDS["oplog"]()))
def test_operations_are_decoded_or_refused(data: bytes) -> None:
    run("oplog", data)


@FUZZ
@given(data=inputs(seeds.SEEDS["chain"]()))
def test_blocks_headers_and_anchors_are_decoded_or_refused(data: bytes) -> None:
    run("chain", data)


@FUZZ
@given(data=inputs(seeds.SEEDS["snapshot"]()))
def test_snapshot_frames_are_read_or_refused(data: bytes) -> None:
    run("snapshot", data)


# --- inputs the long run found, kept as a table -----------------------------------------

_HUGE = 2**20000  # a CBOR bignum (tag 2) past CPython's 4,300-digit str() limit


def test_a_record_whose_version_is_a_huge_bignum_is_an_encoding_error() -> None:
    data = cbor2.dumps({"v": _HUGE, "handle": "88.1/x", "values": []})
    with pytest.raises(EncodingError, match="integer of 20001 bits"):
        decode_record(data)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (_HUGE, "<an integer of 20001 bits>"),
        ([_HUGE], "<a list>"),
        (-(2**70), "<an integer of 71 bits>"),
        (True, "True"),
        ("x" * 100, "'" + "x" * 56 + "..."),
        (2, "2"),
    ],
    ids=["bignum", "list-of-bignum", "71-bit", "bool", "long-text", "small"],
)
def test_shown_bounds_any_decoded_value_for_a_message(value: object, text: str) -> None:
    assert shown(value) == text


def test_bad_input_errors_are_4xx_and_server_errors_are_not_bad_input() -> None:
    from benchmarks.fuzz.targets import is_bad_input

    assert is_bad_input(EncodingError("x"))
    assert not is_bad_input(ServerError("x"))
    assert not is_bad_input(ValueError("x"))
    assert not isinstance(ValueError("x"), IdresError)


# CBOR maps with the field names the decoders look for and values of every CBOR type,
# encoded deterministically (RFC 8949 §4.2.1) so they pass the form check and reach
# the field checks behind it, where byte mutation seldom gets
_FIELDS = [
    "v",
    "op",
    "handle",
    "version",
    "actor",
    "at",
    "record",
    "values",
    "index",
    "type",
    "format",
    "data",
    "ttl",
    "ttlType",
    "timestamp",
    "perms",
    "refs",
    "commit",
    "header",
    "sig",
    "entries",
    "chain",
    "height",
    "alg",
    "prev",
    "first",
    "count",
    "head",
    "root",
    "hash",
    "seq",
]
_CBOR_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**65), 2**65),
    st.sampled_from(
        [
            0,
            1,
            2,
            15,
            16,
            4095,
            4096,
            2**31,
            "create",
            "delete",
            "string",
            "admin",
            "vlist",
            "hex",
            "key",
            "sha256",
            "sm3",
            "op",
            "anchor",
            "88.1/x",
            "URL",
        ]
    ),
    st.binary(max_size=40),
    st.text(max_size=8),
)
_CBOR = st.recursive(
    _CBOR_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(_FIELDS), inner, max_size=9)
    ),
    max_leaves=12,
)


@settings(FUZZ, max_examples=150)  # generating nested maps is the slow part
@given(obj=st.dictionaries(st.sampled_from(_FIELDS), _CBOR, max_size=8))
def test_cbor_maps_of_the_right_field_names_are_decoded_or_refused(obj: dict[str, object]) -> None:
    data = cbor2.dumps(obj, canonical=True)
    for name in ("cbor_record", "oplog", "chain"):
        run(name, data)
