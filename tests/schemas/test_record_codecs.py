"""Record validation, the Handle REST JSON shape and the deterministic CBOR encoding."""

from __future__ import annotations

import base64
import json
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from schemas.codec_cbor import decode_record, encode_record, record_to_cbor_obj
from schemas.codec_json import record_to_json, values_from_json
from schemas.errors import EncodingError, InvalidValue
from schemas.record import (
    MAX_TIMESTAMP,
    AdminPerm,
    AdminRef,
    DataFormat,
    HandleValue,
    Permissions,
    Record,
    Reference,
    TtlType,
)

NOW = 1795420800  # 2026-11-23T08:00:00Z
ED_KEY = (
    ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32))
    .public_key()
    .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
)


def url_value(index: int = 1, url: str = "https://e.x/a") -> HandleValue:
    return HandleValue(
        index=index, type="URL", format=DataFormat.STRING, value=url, ttl=86400, timestamp=NOW
    )


# --- CBOR: byte vectors -------------------------------------------------------------

# RFC 8949 §4.2.1: keys ordered by their encoded bytes, so shorter keys first
# ("ttl" < "data" < "refs" < "type" < "index" < "perms" < "format" < ...).
URL_RECORD_CBOR = bytes.fromhex(
    "a3"  # map(3)
    "6176"
    "01"  # "v": 1
    "6668616e646c65"
    "6638382e312f41"  # "handle": "88.1/A"
    "6676616c756573"
    "81"
    "a9"  # "values": [ map(9)
    "6374746c"
    "1a00015180"  #   "ttl": 86400
    "6464617461"
    "6d68747470733a2f2f652e782f61"  # "data": "https://e.x/a"
    "6472656673"
    "80"  #   "refs": []
    "6474797065"
    "6355524c"  #   "type": "URL"
    "65696e646578"
    "01"  #   "index": 1
    "657065726d73"
    "0e"  #   "perms": 0b1110
    "66666f726d6174"
    "66737472696e67"  #   "format": "string"
    "6774746c54797065"
    "00"  #   "ttlType": 0
    "6974696d657374616d70"
    "1a6b03f280"  #   "timestamp": 1795420800 ]
)


def test_cbor_encoding_matches_the_byte_vector() -> None:
    record = Record(handle="88.1/A", values=(url_value(),))
    assert encode_record(record) == URL_RECORD_CBOR
    assert decode_record(URL_RECORD_CBOR) == record


def test_cbor_is_independent_of_value_order() -> None:
    a, b = url_value(1), url_value(2, "https://e.x/b")
    assert encode_record(Record(handle="88.1/A", values=(b, a))) == encode_record(
        Record(handle="88.1/A", values=(a, b))
    )


def test_cbor_rejects_a_non_deterministic_encoding_of_the_same_record() -> None:
    obj = cbor2.loads(URL_RECORD_CBOR)
    reordered = dict(reversed(obj.items()))  # "values" before "v": same content
    loose = cbor2.dumps(reordered, canonical=False)
    assert loose != URL_RECORD_CBOR
    with pytest.raises(EncodingError, match="deterministic"):
        decode_record(loose)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not CBOR"),
        (b"\xff\xff", "not CBOR"),
        (bytes.fromhex("a1617602"), "map of v, handle, values"),
        (cbor2.dumps({"v": 9, "handle": "88.1/A", "values": []}, canonical=True), "version 9"),
        (cbor2.dumps({"v": 1, "handle": "88.1/A", "values": [1]}, canonical=True), r"values\[0\]"),
        (
            cbor2.dumps({"v": 1, "handle": "88.1/A", "values": []}, canonical=True),
            "at least one value",
        ),
        (b"\x9f" * 100_000, "not CBOR"),  # deep nesting
        (URL_RECORD_CBOR[:-3], "not CBOR"),  # truncated
    ],
)
def test_cbor_decoder_rejects_bad_bytes_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(EncodingError, match=message):
        decode_record(data)


_values = st.lists(
    st.builds(
        HandleValue,
        index=st.integers(1, 2**31 - 1),
        type=st.sampled_from(["URL", "EMAIL", "DESC", "x.custom"]),
        format=st.just(DataFormat.BASE64),
        value=st.binary(max_size=64),
        ttl=st.integers(0, 2**31 - 1),
        ttl_type=st.sampled_from(TtlType),
        timestamp=st.integers(0, MAX_TIMESTAMP),
        permissions=st.builds(
            Permissions,
            admin_read=st.booleans(),
            admin_write=st.booleans(),
            public_read=st.booleans(),
            public_write=st.booleans(),
        ),
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda v: v.index,
)


@given(_values)
def test_cbor_round_trip_is_byte_stable(values: list[HandleValue]) -> None:
    record = Record(handle="88.100.1/X", values=tuple(values))
    data = encode_record(record)
    # the builders order keys themselves; sorting them again must change nothing
    assert data == cbor2.dumps(cbor2.loads(data), canonical=True)
    back = decode_record(data)
    assert back == record
    assert encode_record(back) == data


# --- JSON: the Handle REST shape ----------------------------------------------------


def test_json_shape_matches_the_handle_rest_api() -> None:
    record = Record(handle="88.100.1/ABC", values=(url_value(1, "https://example.com/p/ABC"),))
    assert record_to_json(record) == {
        "responseCode": 1,
        "handle": "88.100.1/ABC",
        "values": [
            {
                "index": 1,
                "type": "URL",
                "data": {"format": "string", "value": "https://example.com/p/ABC"},
                "ttl": 86400,
                "timestamp": "2026-11-23T08:00:00Z",
            }
        ],
    }


def test_json_round_trip_of_every_format() -> None:
    body: dict[str, Any] = {
        "values": [
            {
                "index": 1,
                "type": "URL",
                "data": {"format": "string", "value": "https://e.x/"},
                "ttl": 3600,
                "timestamp": "2026-11-23T08:00:00Z",
            },
            {
                "index": 2,
                "type": "BLOB",
                "data": {"format": "base64", "value": "AAEC"},
                "ttl": 86400,
                "timestamp": "2026-11-23T08:00:00Z",
                "permissions": "1100",
            },
            {
                "index": 3,
                "type": "HASH",
                "data": {"format": "hex", "value": "00ff"},
                "ttl": 1800000000,
                "ttlType": "absolute",
                "timestamp": "2026-11-23T08:00:00Z",
            },
            {
                "index": 100,
                "type": "HS_ADMIN",
                "data": {
                    "format": "admin",
                    "value": {
                        "handle": "0.NA/88.100.1",
                        "index": 300,
                        "permissions": "011111110011",
                    },
                },
                "ttl": 86400,
                "timestamp": "2026-11-23T08:00:00Z",
            },
            {
                "index": 300,
                "type": "HS_PUBKEY",
                "data": {"format": "key", "value": base64.b64encode(ED_KEY).decode()},
                "ttl": 86400,
                "timestamp": "2026-11-23T08:00:00Z",
            },
            {
                "index": 400,
                "type": "HS_VLIST",
                "data": {"format": "vlist", "value": [{"handle": "88.100.1/ADMIN", "index": 300}]},
                "ttl": 86400,
                "timestamp": "2026-11-23T08:00:00Z",
                "references": [{"handle": "88.100.1/OTHER", "index": 1}],
            },
        ]
    }
    values = values_from_json(body, now=NOW)
    record = Record(handle="88.100.1/ABC", values=values)
    out = record_to_json(record)
    assert out["values"] == body["values"]
    assert values[1].value == b"\x00\x01\x02"
    assert values[2].ttl_type is TtlType.ABSOLUTE
    admin = record.admins()[0]
    assert admin == AdminRef(
        handle="0.NA/88.100.1", index=300, permissions=AdminPerm.from_bits("011111110011")
    )
    assert admin.allows(AdminPerm.ADD_HANDLE)
    assert not admin.allows(AdminPerm.LIST_HANDLES)
    assert record.public_keys() == {300: ED_KEY}
    assert decode_record(encode_record(record)) == record


def test_json_shorthand_string_data_and_default_timestamp() -> None:
    (value,) = values_from_json(
        {"values": [{"index": 1, "type": "URL", "data": "https://e.x/"}]}, now=NOW
    )
    assert value == HandleValue(
        index=1,
        type="URL",
        format=DataFormat.STRING,
        value="https://e.x/",
        ttl=86400,
        timestamp=NOW,
    )


def _errors(body: Any) -> dict[str, str]:
    with pytest.raises(InvalidValue) as info:
        values_from_json(body, now=NOW)
    assert info.value.response_code == 202
    return {e.field: e.reason for e in info.value.errors}


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ([], "(body)", "JSON object"),
        ({"values": {}}, "values", "must be a list"),
        ({"values": [], "extra": 1}, "extra", "unknown field"),
        ({"values": []}, "values", "at least one value"),
        ({"values": [1]}, "values[0]", "JSON object"),
        (
            {"values": [{"index": 1, "type": "URL", "data": "https://e.x", "colour": "red"}]},
            "values[0].colour",
            "unknown field",
        ),
        ({"values": [{"type": "URL", "data": "https://e.x"}]}, "values[0].index", "required"),
        ({"values": [{"index": "1", "type": "URL", "data": "x:y"}]}, "values[0].index", "integer"),
        ({"values": [{"index": True, "type": "URL", "data": "x:y"}]}, "values[0].index", "integer"),
        ({"values": [{"index": 0, "type": "URL", "data": "x:y"}]}, "values[0].index", "from 1"),
        ({"values": [{"index": 2**31, "type": "URL", "data": "x:y"}]}, "values[0].index", "from 1"),
        ({"values": [{"index": 1, "type": "", "data": "x"}]}, "values[0].type", "type name"),
        ({"values": [{"index": 1, "type": "HS_NOPE", "data": "x"}]}, "values[0].type", "reserved"),
        (
            {"values": [{"index": 1, "type": "URL", "data": "not a url"}]},
            "values[0].data.value",
            "absolute URI",
        ),
        (
            {"values": [{"index": 1, "type": "EMAIL", "data": "nobody"}]},
            "values[0].data.value",
            "e-mail",
        ),
        (
            {"values": [{"index": 1, "type": "X", "data": {"format": "base64", "value": "!!"}}]},
            "values[0].data.value",
            "base64",
        ),
        (
            {"values": [{"index": 1, "type": "X", "data": {"format": "hex", "value": "0g"}}]},
            "values[0].data.value",
            "hex",
        ),
        (
            {"values": [{"index": 1, "type": "X", "data": {"format": "yaml", "value": "a"}}]},
            "values[0].data.format",
            "not one of",
        ),
        (
            {"values": [{"index": 1, "type": "X", "data": {"format": "string"}}]},
            "values[0].data.value",
            "required",
        ),
        (
            {"values": [{"index": 1, "type": "X", "data": {"format": "string", "value": 5}}]},
            "values[0].data.value",
            "must be a string",
        ),
        (
            {"values": [{"index": 1, "type": "X", "data": "a" * 65536}]},
            "values[0].data.value",
            "at most 65535",
        ),
        (
            {"values": [{"index": 1, "type": "HS_ADMIN", "data": "x"}]},
            "values[0].data.format",
            "must have format admin",
        ),
        (
            {
                "values": [
                    {
                        "index": 1,
                        "type": "X",
                        "data": {
                            "format": "admin",
                            "value": {"handle": "0.NA/1", "index": 1, "permissions": "1" * 12},
                        },
                    }
                ]
            },
            "values[0].data.format",
            "only for HS_ADMIN",
        ),
        (
            {
                "values": [
                    {
                        "index": 1,
                        "type": "HS_ADMIN",
                        "data": {
                            "format": "admin",
                            "value": {"handle": "0.NA/1", "index": 1, "permissions": "12"},
                        },
                    }
                ]
            },
            "values[0].data.value.permissions",
            "12 characters",
        ),
        (
            {
                "values": [
                    {
                        "index": 1,
                        "type": "HS_ADMIN",
                        "data": {
                            "format": "admin",
                            "value": {"handle": "no slash!", "index": 1, "permissions": "1" * 12},
                        },
                    }
                ]
            },
            "values[0].data.value.handle",
            "invalid",
        ),
        (
            {
                "values": [
                    {"index": 1, "type": "HS_PUBKEY", "data": {"format": "key", "value": "AAAA"}}
                ]
            },
            "values[0].data.value",
            "SubjectPublicKeyInfo",
        ),
        (
            {"values": [{"index": 1, "type": "URL", "data": "x:y", "ttl": -1}]},
            "values[0].ttl",
            "from 0",
        ),
        (
            {"values": [{"index": 1, "type": "URL", "data": "x:y", "ttlType": "sometimes"}]},
            "values[0].ttlType",
            "relative",
        ),
        (
            {"values": [{"index": 1, "type": "URL", "data": "x:y", "timestamp": "yesterday"}]},
            "values[0].timestamp",
            "ISO 8601",
        ),
        (
            {
                "values": [
                    {"index": 1, "type": "URL", "data": "x:y", "timestamp": "2026-11-23T08:00:00"}
                ]
            },
            "values[0].timestamp",
            "time zone",
        ),
        (
            {"values": [{"index": 1, "type": "URL", "data": "x:y", "permissions": "11"}]},
            "values[0].permissions",
            "4 characters",
        ),
        (
            {
                "values": [
                    {"index": 1, "type": "URL", "data": "x:y", "references": [{"handle": "88.1/A"}]}
                ]
            },
            "values[0].references[0].index",
            "required",
        ),
        (
            {
                "values": [
                    {"index": 1, "type": "URL", "data": "x:y"},
                    {"index": 1, "type": "EMAIL", "data": "a@b"},
                ]
            },
            "values[1].index",
            "already used by values[0]",
        ),
    ],
)
def test_invalid_values_name_the_field_and_the_reason(body: Any, field: str, reason: str) -> None:
    errors = _errors(body)
    assert field in errors, errors
    assert reason in errors[field]


def test_all_field_errors_come_back_together() -> None:
    errors = _errors(
        {
            "values": [
                {"index": 0, "type": "URL", "data": "nope"},
                {"index": 2, "type": "EMAIL", "data": "nobody", "ttl": "long"},
            ],
            "x": 1,
        }
    )
    assert set(errors) >= {"x", "values[0].index", "values[1].ttl"}


def test_other_key_types_are_refused() -> None:
    rsa_der = (
        rsa.generate_private_key(public_exponent=65537, key_size=1024)
        .public_key()
        .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    p384 = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    for der in (rsa_der, p384):
        errors = _errors(
            {
                "values": [
                    {
                        "index": 1,
                        "type": "HS_PUBKEY",
                        "data": {"format": "key", "value": base64.b64encode(der).decode()},
                    }
                ]
            }
        )
        assert "Ed25519 or ECDSA P-256" in errors["values[0].data.value"]
    p256 = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    (value,) = values_from_json(
        {
            "values": [
                {
                    "index": 1,
                    "type": "HS_PUBKEY",
                    "data": {"format": "key", "value": base64.b64encode(p256).decode()},
                }
            ]
        },
        now=NOW,
    )
    assert value.value == p256


def test_invalid_value_message_is_json_serialisable_and_bounded() -> None:
    body = {"values": [{"index": 0, "type": "URL", "data": "x"} for _ in range(50)]}
    with pytest.raises(InvalidValue) as info:
        values_from_json(body, now=NOW)
    assert info.value.message.endswith("more)")
    assert len(info.value.message) < 2000
    json.dumps([str(e) for e in info.value.errors])


def test_admin_data_and_operations_are_in_deterministic_key_order() -> None:
    from schemas.oplog import Operation, encode_operation

    admin = HandleValue(
        index=100,
        type="HS_ADMIN",
        format=DataFormat.ADMIN,
        timestamp=NOW,
        value=AdminRef(
            handle="0.NA/88.1", index=300, permissions=AdminPerm.from_bits("111111111111")
        ),
    )
    record = Record(handle="0.NA/88.1", values=(admin,))
    for data in (
        encode_record(record),
        encode_operation(
            Operation(
                op="replace",
                handle="0.NA/88.1",
                version=7,
                actor="300:0.NA/88.1",
                at=NOW,
                record=record,
            )
        ),
    ):
        assert data == cbor2.dumps(cbor2.loads(data), canonical=True)


def test_references_keep_their_order() -> None:
    refs = (Reference(handle="88.1/B", index=2), Reference(handle="88.1/A", index=1))
    record = Record(
        handle="88.1/A",
        values=(
            HandleValue(
                index=5, type="HS_VLIST", format=DataFormat.VLIST, value=refs, timestamp=NOW
            ),
        ),
    )
    assert decode_record(encode_record(record)).values[0].value == refs


def test_an_operation_with_a_spliced_record_encodes_as_if_built_whole() -> None:
    from schemas.oplog import Operation, decode_operation, encode_operation

    record = Record(handle="88.1/A", values=(url_value(),))
    op = Operation(
        op="create", handle="88.1/A", version=1, actor="300:0.NA/88.1", at=NOW, record=record
    )
    whole = cbor2.dumps(
        {
            "v": 1,
            "op": "create",
            "handle": "88.1/A",
            "version": 1,
            "actor": "300:0.NA/88.1",
            "at": NOW,
            "record": cbor2.loads(URL_RECORD_CBOR),
        },
        canonical=True,
    )
    assert encode_operation(op) == whole
    assert encode_operation(op, record_obj=record_to_cbor_obj(record)) == whole
    assert decode_operation(whole) == op
    deleted = Operation(op="delete", handle="88.1/A", version=2, actor="a", at=NOW, record=None)
    assert decode_operation(encode_operation(deleted)) == deleted


def test_a_peer_cannot_send_a_timestamp_past_year_9999() -> None:
    obj = cbor2.loads(URL_RECORD_CBOR)
    obj["values"][0]["timestamp"] = MAX_TIMESTAMP + 1
    with pytest.raises(EncodingError, match="1970 to 9999"):
        decode_record(cbor2.dumps(obj, canonical=True))
